//! HTTP API (axum) and the web console. Handlers ask the pipeline core through its command
//! channel, so the core stays the only owner of live state.
//!
//! One file per area, each with a `routes()` and an OpenAPI fragment in `openapi/`:
//! `health` (liveness, readiness, metrics, the OpenAPI document), `alarms` (list, read,
//! acknowledge, shelve, reset, SSE stream, KPIs from `kpis`), `devices` (devices, sensors,
//! history), `console` (pages, assets, login and session), `tickets`, `incidents` (incident
//! reports of real fires) and `drills`.
//! `routes` merges the areas into [`router`]; `guard` holds what applies to every request
//! (request timeout); `server` runs the connection loop (connection cap, header timeout).
//!
//! Imports point one way: `routes` → the area files → `extract` (extractors, `ask`),
//! `area` (the route list), `auth`, `error` and `state`; none of those imports an area.

mod alarm_history;
mod alarms;
mod area;
pub mod auth;
mod commission;
mod config;
mod console;
mod devices;
mod drills;
mod duty;
mod error;
mod extract;
mod guard;
mod health;
mod incidents;
mod kpis;
pub mod openapi;
mod reports;
mod routes;
pub mod server;
mod state;
mod tickets;

pub use config::{HttpConfig, TokenConfig};
pub use error::ApiError;
pub use routes::router;
pub use state::AppState;

use std::net::SocketAddr;

use tokio_util::task::TaskTracker;

/// The API could not listen on its address.
#[derive(Debug, thiserror::Error)]
#[error("http: cannot listen on {addr}: {source}")]
pub struct ListenError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// Binds `config.listen` and serves the API and the console on `tasks` until
/// `state.shutdown`, under the connection cap and the header-read timeout of `config`
/// (`server.rs`); returns the address it listens on (the port when `listen` asked for port 0).
pub async fn serve(
    config: &HttpConfig,
    state: AppState,
    tasks: &TaskTracker,
    supervisor: &crate::supervisor::Supervisor,
) -> Result<SocketAddr, ListenError> {
    let listen = config.listen;
    let failed = |source| ListenError {
        addr: listen,
        source,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(failed)?;
    let addr = listener.local_addr().map_err(failed)?;
    let stop = state.shutdown.clone();
    let metrics = state.metrics.clone();
    server::spawn(
        listener,
        router(state),
        config,
        metrics,
        stop,
        tasks,
        supervisor,
    );
    Ok(addr)
}

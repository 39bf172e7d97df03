//! HTTP API (axum): health, metrics, alarms (list, get, acknowledge, shelve, reset, SSE
//! stream), devices and sensors. Handlers ask the pipeline core through its command channel,
//! so the core stays the only owner of live state.
//!
//! Import loop inside this folder, on purpose: the handler files share [`AppState`] and
//! [`ApiError`] from here and the extractors of `routes.rs`, which assembles their routes.

pub mod auth;
mod config;
mod console;
mod drills;
mod error;
mod kpis;
mod routes;
mod tickets;

pub use config::{HttpConfig, TokenConfig};
pub use error::ApiError;
pub use routes::router;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::alarms::AlarmEvent;
use crate::metrics::Metrics;
use crate::pipeline::Command;
use crate::store::LocalStore;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub commands: mpsc::Sender<Command>,
    pub store: LocalStore,
    pub alarm_stream: broadcast::Sender<Arc<AlarmEvent>>,
    /// Drill starts and ends, sent on the alarm stream as `drill` events.
    pub drill_stream: broadcast::Sender<Arc<crate::drills::DrillEvent>>,
    pub metrics: Arc<Metrics>,
    pub auth: Arc<auth::Authenticator>,
    pub max_body_bytes: usize,
    /// Whether readiness needs the MQTT connection.
    pub mqtt_required: bool,
    /// Ends long-lived responses (SSE) so graceful shutdown does not wait on them forever.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Console users (login checks passwords here).
    pub users: crate::users::UserStore,
    pub login_limiter: Arc<crate::users::LoginLimiter>,
    /// Mark the session cookie `Secure`.
    pub secure_cookie: bool,
    /// Hazard tickets (workflow, ledger, attachments).
    pub tickets: crate::tickets::Tickets,
}

/// The API could not listen on its address.
#[derive(Debug, thiserror::Error)]
#[error("http: cannot listen on {addr}: {source}")]
pub struct ListenError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// Binds `listen` and serves the API and the console on `tasks` until `state.shutdown`;
/// returns the address it listens on (the port when `listen` asked for port 0).
pub async fn serve(
    listen: SocketAddr,
    state: AppState,
    tasks: &TaskTracker,
) -> Result<SocketAddr, ListenError> {
    let failed = |source| ListenError {
        addr: listen,
        source,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(failed)?;
    let addr = listener.local_addr().map_err(failed)?;
    let stop = state.shutdown.clone();
    let app = router(state);
    tasks.spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            warn!(error = %e, "HTTP server stopped with an error");
        }
    });
    Ok(addr)
}

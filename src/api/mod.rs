//! HTTP API (axum) and the web console. Handlers ask the pipeline core through its command
//! channel, so the core stays the only owner of live state.
//!
//! One file per area, each with a `routes()` and an OpenAPI fragment in `openapi/`:
//! `health` (liveness, readiness, metrics, the OpenAPI document), `alarms` (list, read,
//! acknowledge, shelve, reset, SSE stream, KPIs from `kpis`), `devices` (devices, sensors,
//! history), `console` (pages, assets, login and session), `tickets` and `drills`.
//! `routes` merges the areas into [`router`].
//!
//! Imports point one way: `routes` → the area files → `extract` (extractors, `ask`),
//! `area` (the route list), `auth`, `error` and `state`; none of those imports an area.

mod alarms;
mod area;
pub mod auth;
mod config;
mod console;
mod devices;
mod drills;
mod error;
mod extract;
mod health;
mod kpis;
pub mod openapi;
mod routes;
mod state;
mod tickets;

pub use auth::{Principal, Role};
pub use config::{HttpConfig, TokenConfig};
pub use error::ApiError;
pub use routes::router;
pub use state::AppState;

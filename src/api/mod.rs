//! HTTP API (axum): health, metrics, alarms (list, get, acknowledge, shelve, reset, SSE
//! stream), devices and sensors. Handlers ask the pipeline core through its command channel,
//! so the core stays the only owner of live state.

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

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};

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

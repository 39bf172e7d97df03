//! `AppState`: what every handler can reach. The handlers never own live state: they ask the
//! pipeline core through `commands`, read the local store, or subscribe to the broadcasts.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};

use super::auth;
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
    /// Requests not answered within this get 408 (the alarm stream is exempt).
    pub request_timeout: std::time::Duration,
    /// Whether readiness needs the MQTT connection.
    pub mqtt_required: bool,
    /// Ends long-lived responses (SSE) so graceful shutdown does not wait on them forever.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Console users (login checks passwords here).
    pub users: crate::users::UserStore,
    /// Decides console logins before their password is checked.
    pub login_throttle: Arc<crate::users::LoginThrottle>,
    /// Mark the session cookie `Secure`.
    pub secure_cookie: bool,
    /// Hazard tickets (workflow, ledger, attachments).
    pub tickets: crate::tickets::Tickets,
    /// The duty log's rooms and who was on duty when (the unattended flag).
    pub duty: Arc<crate::duty::Duty>,
}

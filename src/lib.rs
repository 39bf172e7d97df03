//! campusguard: a safety-monitoring gateway for school campuses.
//!
//! A reading flows through these modules, in this order:
//!
//! - [`ingest`]: MQTT (device protocol v1) and Modbus pollers turn device traffic into
//!   [`IngestEvent`](model::IngestEvent)s on a bounded channel.
//! - [`pipeline`]: the core task. Owns the device registry, the live cache, the
//!   [`rules`] engine and the [`alarms`] book; evaluates every reading in order per sensor.
//! - [`rules`]: device profiles and the rule engine (thresholds, delays, rate of rise,
//!   staleness, sensor faults) → condition changes.
//! - [`alarms`]: the ISA-18.2 lifecycle; transitions are journaled in the [`store`] before
//!   they are broadcast.
//! - [`store`]: the local SQLite store (history of readings, alarms, journal) and the
//!   time-series sink (InfluxDB v2/v1 with a disk spool).
//! - [`tickets`]: hazard tickets — alarm → ticket policies, the rectification workflow,
//!   the ledger export (SQLite or PostgreSQL).
//! - [`api`]: HTTP (axum): health, metrics, alarms with an SSE stream, devices, sensors.
//! - [`access`]: identity — roles, the caller ([`Principal`](access::Principal)) and its
//!   school scope; below `api`, `users` and `tickets`, which all import it from here.
//! - [`users`]: console users (argon2 hashes in the local store) and their sessions.
//! - [`broker`]: the optional embedded MQTT broker; [`demo`] runs broker, gateway and
//!   simulator in one process.
//!
//! [`run`] starts everything and stops it in order on one shutdown signal.

pub mod access;
pub mod alarms;
pub mod api;
pub mod broker;
pub mod config;
pub mod demo;
pub mod drills;
pub mod ingest;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod rules;
pub mod store;
pub mod tickets;
pub mod users;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::QoS;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::alarms::AlarmEvent;
use crate::config::Config;
use crate::metrics::Metrics;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Tickets(#[from] tickets::TicketError),
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    #[error(transparent)]
    Users(#[from] users::UserError),
    #[error("mqtt: {0}")]
    Mqtt(String),
    #[error("http: cannot listen on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A started gateway: where it listens, its metrics, and the handle to wait for it.
pub struct Gateway {
    pub http_addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    tracker: TaskTracker,
}

impl Gateway {
    /// Waits until every task has stopped (after `shutdown` was cancelled).
    pub async fn wait(self) {
        self.tracker.wait().await;
    }
}

/// How long the stages get to drain and flush after the shutdown signal.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// Starts the gateway. It runs until `shutdown` is cancelled; then ingest stops first, the
/// core drains, the history writer flushes, and the HTTP server closes.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Gateway, StartError> {
    // Both ring and aws-lc-rs are in the tree, so rustls needs to be told which one to use
    // before the first TLS connection (`mqtts://`); an error means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = Arc::new(Metrics::new());
    let tracker = TaskTracker::new();
    if config.broker.embedded {
        broker::start(&config.broker)?;
    }
    let store = store::LocalStore::open(&config.storage).await?;
    let user_store = users::UserStore::new(store.pool().clone());
    user_store.seed(&config.users).await?;
    let tickets = tickets::Tickets::open(&config.tickets, &config.storage.data_dir).await?;

    let (ingest_tx, ingest_rx) = mpsc::channel(config.pipeline.ingest_capacity);
    let (history_tx, history_rx) = mpsc::channel(config.pipeline.history_capacity);
    let (command_tx, command_rx) = mpsc::channel(64);
    let (alarm_stream, _) = broadcast::channel::<Arc<AlarmEvent>>(config.alarms.stream_buffer);
    // Drill changes are rare (people start them); a small buffer is plenty.
    let (drill_stream, _) = broadcast::channel::<Arc<drills::DrillEvent>>(64);

    // Ingest stops on its own token, before the rest (so the core can drain what is queued).
    let ingest_stop = CancellationToken::new();
    let mqtt_link = ingest::mqtt::MqttLink::new(&config.mqtt).map_err(StartError::Mqtt)?;
    let alarm_mqtt = if config.alarms.publish_mqtt {
        let (tx, rx) = mpsc::channel::<Arc<AlarmEvent>>(1024);
        tracker.spawn(publish_alarms(
            mqtt_link.client.clone(),
            config.mqtt.topic_prefix.clone(),
            rx,
        ));
        Some(tx)
    } else {
        None
    };
    // Write-back actions run through the poller, between polls (off unless configured).
    let mut modbus_writer = None;
    if !config.modbus.devices.is_empty() {
        if config.modbus.actions.is_empty() {
            tracker.spawn(ingest::modbus::run(
                config.modbus.clone(),
                ingest_tx.clone(),
                metrics.modbus.clone(),
                ingest_stop.clone(),
            ));
        } else {
            let (writer, writes) = ingest::modbus::write_channel();
            modbus_writer = Some(writer);
            tracker.spawn(ingest::modbus::run_with_writes(
                config.modbus.clone(),
                ingest_tx.clone(),
                metrics.modbus.clone(),
                writes,
                ingest_stop.clone(),
            ));
        }
    }
    tracker.spawn(ingest::mqtt::run(
        config.mqtt.clone(),
        mqtt_link,
        ingest_tx,
        metrics.clone(),
        ingest_stop.clone(),
    ));

    let timeseries = if config.timeseries.kind != store::timeseries::TimeseriesKind::None {
        let (tx, rx) = mpsc::channel(64);
        let ts_config = config.timeseries.clone();
        let data_dir = config.storage.data_dir.clone();
        let stats = metrics.timeseries.clone();
        // The sink stops when the core drops its sender (after the core has drained), not on
        // the shutdown signal, so nothing the core forwards is left behind.
        tracker.spawn(async move {
            let result =
                store::timeseries::run(ts_config, data_dir, rx, stats, CancellationToken::new())
                    .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "time-series sink stopped");
            }
        });
        Some(tx)
    } else {
        None
    };
    let core_config = pipeline::CoreConfig {
        profiles: Arc::new(config.profiles.clone()),
        devices: config.devices.clone(),
        max_unregistered_devices: config.pipeline.max_unregistered_devices,
        tick: config.rules.tick,
        modbus: config.modbus.clone(),
    };
    let core = pipeline::Core::new(
        &core_config,
        store.clone(),
        pipeline::CoreOutputs {
            history: history_tx,
            alarm_stream: alarm_stream.clone(),
            alarm_mqtt,
            drill_stream: drill_stream.clone(),
            timeseries,
            actions: modbus_writer,
        },
        metrics.clone(),
    )
    .await?;
    // Subscribed before the core starts, so no alarm event is missed.
    tracker.spawn(tickets::policy::run(
        tickets.clone(),
        alarm_stream.subscribe(),
        shutdown.clone(),
    ));
    tracker.spawn(tickets::run_supervision(tickets.clone(), shutdown.clone()));
    tracker.spawn(core.run(ingest_rx, command_rx, shutdown.clone()));
    tracker.spawn(store::local::run_history_writer(
        store.clone(),
        config.storage.clone(),
        history_rx,
        metrics.clone(),
        shutdown.clone(),
    ));

    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|source| StartError::Http {
            addr: config.http.listen,
            source,
        })?;
    let http_addr = listener.local_addr().map_err(|source| StartError::Http {
        addr: config.http.listen,
        source,
    })?;
    let app = api::router(api::AppState {
        commands: command_tx,
        store: store.clone(),
        alarm_stream,
        drill_stream,
        metrics: metrics.clone(),
        auth: Arc::new(api::auth::Authenticator::new(
            &config.http,
            users::sessions::SessionTable::new(config.users.session_ttl, config.users.max_sessions),
        )),
        max_body_bytes: config.http.max_body_bytes,
        mqtt_required: true,
        shutdown: shutdown.clone(),
        users: user_store,
        login_limiter: Arc::new(users::LoginLimiter::new(
            config.users.max_failed_logins,
            config.users.lockout,
        )),
        secure_cookie: config.users.secure_cookie,
        tickets,
    });
    let http_stop = shutdown.clone();
    tracker.spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { http_stop.cancelled().await })
            .await;
        if let Err(e) = served {
            warn!(error = %e, "HTTP server stopped with an error");
        }
    });
    info!(http = %http_addr, "campusguard started");

    // Shutdown order: ingest first; the core ends when ingest's senders are gone.
    let stop = shutdown.clone();
    tracker.spawn(async move {
        stop.cancelled().await;
        ingest_stop.cancel();
    });
    tracker.close();
    Ok(Gateway {
        http_addr,
        metrics,
        tracker,
    })
}

/// Runs the gateway until `shutdown`, then waits for it to stop within [`SHUTDOWN_DEADLINE`].
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    let gateway = start(config, shutdown.clone()).await?;
    shutdown.cancelled().await;
    if tokio::time::timeout(SHUTDOWN_DEADLINE, gateway.wait())
        .await
        .is_err()
    {
        warn!("stages did not stop within {SHUTDOWN_DEADLINE:?}; exiting anyway");
    }
    Ok(())
}

/// Publishes alarm events to `<prefix>/<school>/alarms` (QoS 1, not retained).
async fn publish_alarms(
    client: rumqttc::AsyncClient,
    prefix: String,
    mut rx: mpsc::Receiver<Arc<AlarmEvent>>,
) {
    while let Some(event) = rx.recv().await {
        let topic = format!("{prefix}/{}/alarms", event.alarm.school);
        let payload = match serde_json::to_vec(&*event) {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "alarm event not encodable");
                continue;
            }
        };
        if let Err(e) = client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
        {
            warn!(error = %e, "alarm publish failed; MQTT connection closed");
            break;
        }
    }
}

/// SIGINT or SIGTERM, as one future.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

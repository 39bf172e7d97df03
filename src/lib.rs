//! campusguard: a safety-monitoring gateway for school campuses.
//!
//! A reading flows through these modules, in this order ([`start`] wires them together and
//! names every edge between them):
//!
//! - [`ingest`]: MQTT (device protocol v1) and Modbus pollers turn device traffic into
//!   [`IngestEvent`](model::IngestEvent)s on a bounded channel; the MQTT connection also
//!   publishes the alarm copy.
//! - [`pipeline`]: the core task. Owns the device registry, the live cache, the
//!   [`rules`] engine, the [`alarms`] book and the [`drills`] book; evaluates every reading in
//!   order per sensor; starts the actions rules name.
//! - [`rules`]: device profiles and the rule engine (thresholds, delays, rate of rise,
//!   staleness, sensor faults) → condition changes.
//! - [`alarms`]: the ISA-18.2 lifecycle; transitions are journaled in the [`store`] before
//!   they are broadcast.
//! - [`actions`]: a raised alarm's rule may name an action (e.g. switch a cabinet's fan on):
//!   run without blocking the core, written through Modbus, journaled on the alarm.
//! - [`drills`]: drill and maintenance mode per school or building (alarms marked as drill,
//!   no tickets).
//! - [`store`]: the local SQLite store (history of readings, alarms, journal) and the
//!   time-series sink (InfluxDB v2/v1 with a disk spool).
//! - [`tickets`]: hazard tickets — alarm → ticket policies, the rectification workflow,
//!   the ledger export (SQLite or PostgreSQL).
//! - [`notify`]: notifications — reads alarm transitions from the outbox and escalates
//!   unacknowledged alarms step by step to WeCom / DingTalk / Feishu robots, e-mail and
//!   webhooks (durable delivery table, rate limits, coalescing), and ticket events; every
//!   attempt is journaled on its alarm.
//! - [`api`]: HTTP (axum): health, metrics, alarms with an SSE stream, devices, sensors,
//!   drills, tickets, and the web console.
//! - [`access`]: identity — roles, the caller ([`Principal`](access::Principal)) and its
//!   school scope; below `api`, `users` and `tickets`, which all import it from here.
//! - [`users`]: console users (argon2 hashes in the local store) and their sessions.
//! - [`duty`]: the duty log's control rooms (`[[duty.rooms]]`) and who was on duty when, for
//!   the API's "unattended" flag on alarms raised while nobody was signed on.
//!
//! Around them: [`model`] holds the types every stage shares (readings, sensor ids, the name
//! rules of the device protocol); [`metrics`] counts and logs notable events for `/metrics`;
//! [`init`] writes a first configuration with fresh secrets;
//! [`logging`] fits log lines to where stderr goes (terminal, file, journald);
//! [`secrets`] reads `*_file` secrets (and systemd credentials);
//! [`redact`] keeps credentials out of config errors and `Debug` output; [`schools`] is the district's list of
//! schools (`[[schools]]`) that tickets, reports and drill targets read; [`health`] holds the
//! gateway's own faults (the local history or the alarm journal cannot write, a task died),
//! which the core raises as `fault` alarms and `/readyz` reports; [`supervisor`] starts every
//! long-running task, reporting and, where safe, restarting one that ends or panics;
//! [`config`] is the top floor, composing every component's config section and cross-checking
//! them; [`broker`] is the optional embedded MQTT broker; [`demo`] runs broker, gateway and
//! simulator in one process; [`systemd`] tells systemd when the gateway is ready and feeds
//! its watchdog from the core's heartbeat.
//!
//! [`run`] starts everything and stops it in order on one shutdown signal.
//!
//! `ARCHITECTURE.md` at the repository root is the longer map: the stages, what each folder may
//! import, every edge with its capacity and full-policy, and one reading's walk from an MQTT
//! publish to the console and a hazard ticket, naming the function at each step.

pub mod access;
pub mod actions;
pub mod alarms;
pub mod api;
pub mod broker;
pub mod config;
pub mod demo;
pub mod drills;
pub mod duty;
pub mod health;
pub mod ingest;
pub mod init;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod pipeline;
pub mod redact;
pub mod rules;
pub mod schools;
pub mod secrets;
pub mod store;
pub mod supervisor;
pub mod systemd;
pub mod tickets;
pub mod users;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

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
    #[error(transparent)]
    Http(#[from] api::ListenError),
    #[error("notifications: {0}")]
    Notify(String),
}

/// A started gateway: where it listens, its metrics, and the handle to wait for it.
pub struct Gateway {
    pub http_addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    tasks: TaskTracker,
    supervisor: supervisor::Supervisor,
}

impl Gateway {
    /// Fault injection: makes the running task `name` panic (see [`supervisor`]); false when
    /// there is no such task. Reachable only from inside the process (tests).
    pub fn inject_task_panic(&self, name: &str) -> bool {
        self.supervisor.inject_panic(name)
    }

    /// Waits until every task has stopped (after `shutdown` was cancelled).
    pub async fn wait(self) {
        self.tasks.wait().await;
    }
}

/// How long the stages get to drain and flush after the shutdown signal.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// API → core commands (acknowledge, shelve, lists). Served after each round's readings, a
/// few per round: a few queued are plenty.
const COMMAND_CAPACITY: usize = 64;
/// Core → time-series sink, in batches (one per core round).
const TIMESERIES_CAPACITY: usize = 64;
/// Core → MQTT alarm publisher, in events.
const ALARM_MQTT_CAPACITY: usize = 1024;
/// Core → drill stream, in events. Drills start and end by hand: a small buffer is plenty.
const DRILL_STREAM_CAPACITY: usize = 64;
/// Notifier → core reports (notes to journal, channel faults). Each is one delivery attempt,
/// and attempts are paced by the channels' rate limits: a few hundred is plenty.
const NOTIFY_REPORT_CAPACITY: usize = 256;

/// Starts the gateway. It runs until `shutdown` is cancelled; then ingest stops first, the
/// core drains, the history writer flushes, and the HTTP server closes.
///
/// The whole topology is here: the shared state, every edge between stages with its capacity
/// and what happens when it is full, then the stages in the order a reading flows.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Gateway, StartError> {
    let metrics = Arc::new(Metrics::new());
    let tasks = TaskTracker::new();
    // Every long-running task is spawned through it: an end or panic is logged, counted,
    // raised as a `task:<name>` fault and, where safe, restarted (see `supervisor`).
    let supervisor = supervisor::Supervisor::new(&tasks, &metrics, &shutdown);
    // Sources stop on their own token, first, so the core can drain what they queued.
    let ingest_stop = CancellationToken::new();

    // Shared state: the embedded broker, the local store, console users, the ticket store.
    if config.broker.embedded {
        broker::start(&config.broker)?;
    }
    let store = store::LocalStore::open(&config.storage).await?;
    let users = users::UserStore::open(store.pool().clone(), &config.users).await?;
    let tickets = tickets::Tickets::open(&config.tickets, &config.storage.data_dir)
        .await?
        .with_min_free_bytes(config.storage.min_free_bytes);

    // The edges, all bounded; each comment says what happens when the edge is full.
    // ingest → core: sources wait (MQTT stops reading; the broker keeps the messages).
    let (ingest_tx, ingest_rx) = mpsc::channel(config.pipeline.ingest_capacity);
    // API → core: the handler waits (the core serves readings first, then a few commands).
    let (command_tx, command_rx) = mpsc::channel(COMMAND_CAPACITY);
    // core → local history: the core never waits. When full, readings wait in the core's
    // backlog (acks held) and beyond 20 000 are shed (counted, acks released); while history
    // cannot write, the writer keeps taking batches, releases their acks and sheds (counted).
    // See `Core::hand_to_history` and `store::local::run_history_writer`.
    let (history_tx, history_rx) = mpsc::channel(config.pipeline.history_capacity);
    // core → time series: the core waits (the sink spools to disk while its store is down).
    let ts_on = config.timeseries.kind != store::timeseries::TimeseriesKind::None;
    let (ts_tx, ts_rx) = bounded_if(ts_on, TIMESERIES_CAPACITY);
    // core → alarm stream (broadcast): the core never waits; a lagging SSE client gets `resync`.
    let (alarm_stream, _) = broadcast::channel(config.alarms.stream_buffer);
    // alarm outbox → ticket policy: its own durable cursor (opened here, before the core
    // starts); it reads at its own pace, moves the cursor only once the ticket database took
    // the work, and never holds the core up. Never full: the journal is the queue.
    let ticket_outbox = store.outbox_reader(tickets::policy::CONSUMER).await?;
    // core → MQTT alarm copy: the newest is dropped and counted (`alarm_publish_dropped`).
    let (alarm_mqtt_tx, alarm_mqtt_rx) =
        bounded_if(config.alarms.publish_mqtt, ALARM_MQTT_CAPACITY);
    // core → drill stream (broadcast): like the alarm stream.
    let (drill_stream, _) = broadcast::channel(DRILL_STREAM_CAPACITY);
    // alarm outbox → notifier: its own durable cursor (opened here, before the core starts, so
    // it sees every transition); it reads at its own pace and never holds the core up.
    let notifier = notify::open(&config.notify, &store, &config.storage).await?;
    // notifier → core (attempts to journal as `notified` notes, `notify:<channel>` faults): a
    // sender waits when it is full — its delivery is already recorded in the delivery table;
    // only the note waits. The core takes at most a few dozen per round.
    let (notify_tx, notify_rx) = mpsc::channel(NOTIFY_REPORT_CAPACITY);

    // The stages, in the order a reading flows. MQTT takes the last ingest sender: the core
    // ends once every source has stopped and it has drained the channel.
    let actions = start_modbus(&config, &ingest_tx, &metrics, &ingest_stop, &supervisor);
    let mqtt = &config.mqtt;
    // MQTT traffic for a device the config polls over Modbus is refused (`source_mismatch`).
    let modbus_devices = config.modbus.devices.iter().map(|d| d.device_key());
    ingest::mqtt::start(
        mqtt,
        modbus_devices.collect(),
        ingest_tx,
        alarm_mqtt_rx,
        &metrics,
        &ingest_stop,
        &supervisor,
    )
    .map_err(StartError::Mqtt)?;
    let inputs = pipeline::CoreInputs {
        ingest: ingest_rx,
        commands: command_rx,
        notify: notify_rx,
    };
    let outputs = pipeline::CoreOutputs {
        history: history_tx,
        timeseries: ts_tx,
        alarm_stream: alarm_stream.clone(),
        alarm_mqtt: alarm_mqtt_tx,
        drill_stream: drill_stream.clone(),
        actions,
    };
    let core = core_config(&config);
    pipeline::start(
        &core,
        &store,
        inputs,
        outputs,
        &metrics,
        &shutdown,
        &supervisor,
    )
    .await?;
    let storage = &config.storage;
    store::start_history(
        &store,
        storage,
        history_rx,
        &metrics,
        &shutdown,
        &supervisor,
    );
    if let Some(rx) = ts_rx {
        let dir = &storage.data_dir;
        store::timeseries::start(
            &config.timeseries,
            dir,
            rx,
            &metrics.timeseries,
            &supervisor,
        );
    }
    tickets::start(
        &tickets,
        ticket_outbox,
        store.clone(),
        &shutdown,
        &supervisor,
    );
    if let Some(notifier) = notifier {
        let context = notify_context(&config, &tickets);
        notifier
            .start(context, notify_tx, &metrics, &shutdown, &supervisor)
            .map_err(StartError::Notify)?;
    }
    // Console sessions live in the local store; revocations by `campusguard users` are read
    // every second, expired sessions pruned every minute.
    let sessions = users::sessions::SessionTable::open(store.pool().clone(), &config.users);
    let sessions = Arc::new(sessions.await?);
    users::sessions::start(sessions.clone(), &shutdown, &supervisor);
    // The duty log's shifts since the horizon, in memory for the API's unattended flag (read
    // once here; sign-ons and handovers through the API update it).
    let duty_since = model::now_ms().saturating_sub(duty::HORIZON_MS);
    let duty_shifts = store.shifts_since(duty_since).await?;
    let duty = Arc::new(duty::Duty::new(
        config.duty.clone(),
        duty_since,
        duty_shifts.into_iter().map(|s| {
            let interval = duty::Interval {
                on_at: s.on_at,
                off_at: s.off_at,
            };
            (s.room, s.id, interval)
        }),
    ));
    let state = api::AppState {
        commands: command_tx,
        store,
        alarm_stream,
        drill_stream,
        metrics: metrics.clone(),
        auth: Arc::new(api::auth::Authenticator::new(&config.http, sessions)),
        max_body_bytes: config.http.max_body_bytes,
        request_timeout: config.http.request_timeout,
        mqtt_required: true,
        shutdown: shutdown.clone(),
        users,
        login_throttle: users::LoginThrottle::from_config(&config.users),
        secure_cookie: config.users.secure_cookie,
        tickets,
        duty,
    };
    // clients → HTTP: at most http.max_connections open (lowered to leave 256 descriptors);
    // at the cap the loop stops accepting and new clients wait in the kernel's accept queue.
    // A header not complete within http.header_read_timeout closes its connection; a request
    // not answered within http.request_timeout gets 408 (the alarm stream is exempt).
    let http_addr = api::serve(&config.http, state, &tasks, &supervisor).await?;
    info!(http = %http_addr, "campusguard started");

    // Shutdown order: ingest first; the core ends when ingest's senders are gone.
    let stop = shutdown.clone();
    tasks.spawn(async move {
        stop.cancelled().await;
        ingest_stop.cancel();
    });
    tasks.close();
    Ok(Gateway {
        http_addr,
        metrics,
        tasks,
        supervisor,
    })
}

/// Modbus ingest and the actions rules name, as one block. The pollers send on the ingest →
/// core edge. core → actions: runs go through the pollers, between polls, at most
/// `actions::MAX_RUNS` at once; one more is refused, counted and raised as a `fault` alarm;
/// their results come back on a channel that cannot fill (one slot per run). Off unless
/// `[[modbus.actions]]` are configured.
fn start_modbus(
    config: &Config,
    ingest: &mpsc::Sender<model::IngestEvent>,
    metrics: &Metrics,
    stop: &CancellationToken,
    supervisor: &supervisor::Supervisor,
) -> actions::Actions {
    let (actions, writes) = actions::start(&config.modbus, metrics.actions.clone());
    if !config.modbus.devices.is_empty() {
        let poll = ingest::modbus::run(
            config.modbus.clone(),
            ingest.clone(),
            metrics.modbus.clone(),
            writes,
            stop.clone(),
        );
        supervisor.once("modbus", poll);
    }
    actions
}

/// What the notifier reads besides `[notify]`: profiles, the configured devices, tickets.
fn notify_context(config: &Config, tickets: &tickets::Tickets) -> notify::Context {
    let devices = config
        .devices
        .iter()
        .map(|d| {
            let info = model::DeviceInfo {
                profile: Some(d.profile.clone()),
                building: d.building.clone(),
                room: d.room.clone(),
                name: d.name.clone(),
            };
            (model::DeviceKey::new(&d.school, &d.id), info)
        })
        .chain(
            config
                .modbus
                .devices
                .iter()
                .map(|d| (d.device_key(), d.device_info())),
        )
        .collect();
    notify::Context {
        profiles: Arc::new(config.profiles.clone()),
        devices,
        tickets: tickets.clone(),
    }
}

/// The core's slice of the configuration.
fn core_config(config: &Config) -> pipeline::CoreConfig {
    pipeline::CoreConfig {
        profiles: Arc::new(config.profiles.clone()),
        devices: config.devices.clone(),
        max_unregistered_devices: config.pipeline.max_unregistered_devices,
        max_unregistered_points: config.pipeline.max_points_per_unregistered_device,
        tick: config.rules.tick,
        modbus: config.modbus.clone(),
    }
}

/// A bounded channel when `on`, else neither end (an edge that is not configured).
fn bounded_if<T>(
    on: bool,
    capacity: usize,
) -> (Option<mpsc::Sender<T>>, Option<mpsc::Receiver<T>>) {
    if on {
        let (tx, rx) = mpsc::channel(capacity);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    }
}

/// Runs the gateway until `shutdown`, then waits for it to stop within [`SHUTDOWN_DEADLINE`].
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    let gateway = start(config, shutdown.clone()).await?;
    // Under systemd: READY=1, the watchdog fed from the core's heartbeat, STOPPING=1.
    systemd::supervise(gateway.metrics.clone(), shutdown.clone());
    shutdown.cancelled().await;
    if tokio::time::timeout(SHUTDOWN_DEADLINE, gateway.wait())
        .await
        .is_err()
    {
        warn!("stages did not stop within {SHUTDOWN_DEADLINE:?}; exiting anyway");
    }
    Ok(())
}

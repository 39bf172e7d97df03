//! The MQTT side of the simulator: connects one rumqttc client for the whole campus, drives the
//! pure [`Simulation`] with real time, and publishes what it produces. This is where simulated
//! devices meet the broker, upstream of the gateway's MQTT ingest.
//!
//! - The rumqttc event loop is polled in its own task and never publishes (publishing from the
//!   polling task can deadlock, rumqttc #1025); after an error it sleeps with a capped backoff
//!   before polling again (rumqttc has none of its own, #703).
//! - On every ConnAck the publisher re-sends the retained `meta` and `status` of every device.
//! - Telemetry of the devices is spread evenly over the interval, not sent in one burst. It is
//!   offered with `try_publish` into a bounded request queue: while the broker is unreachable
//!   the readings are dropped and counted, like a sensor without a buffer.
//! - Last Will: one MQTT connection carries one Last Will, so it cannot stand for each
//!   simulated device. A real device sets its own LWT (`<prefix>/<school>/<device>/status` =
//!   `offline`, retained); the simulator instead publishes `offline` explicitly on shutdown and
//!   in the `device-offline` scenario.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::campus::Campus;
use crate::scenario::ScheduledScenario;
use crate::sim::{ConfigError, Message, MessageKind, Simulation, SimulationSettings};

/// Everything [`run`] needs. `Debug` hides the password.
#[derive(Clone)]
pub struct SimConfig {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    /// First topic level(s); `campus` in production, a unique prefix in tests.
    pub topic_prefix: String,
    /// Telemetry period of each device.
    pub interval: Duration,
    pub seed: u64,
    pub username: Option<String>,
    pub password: Option<String>,
    pub scenarios: Vec<ScheduledScenario>,
    pub campus: Campus,
    /// Fraction (0.0–1.0) of devices that publish on single-point topics
    /// (`.../telemetry/<point>`, no `ts`) instead of one JSON object, so both forms are used.
    pub use_single_point_topics_for: f64,
    /// QoS of telemetry and garbage (meta and status always use QoS 1).
    pub telemetry_qos: QoS,
    /// Size of the huge payload of the `garbage` scenario (1 MiB by default). A broker with a
    /// smaller limit drops the connection on it; the simulator then reconnects.
    pub garbage_huge_bytes: usize,
    /// Longest reconnect backoff after a connection error.
    pub max_backoff: Duration,
}

impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("client_id", &self.client_id)
            .field("topic_prefix", &self.topic_prefix)
            .field("interval", &self.interval)
            .field("seed", &self.seed)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("scenarios", &self.scenarios)
            .field("devices", &self.campus.devices.len())
            .field(
                "use_single_point_topics_for",
                &self.use_single_point_topics_for,
            )
            .field("telemetry_qos", &self.telemetry_qos)
            .field("garbage_huge_bytes", &self.garbage_huge_bytes)
            .field("max_backoff", &self.max_backoff)
            .finish()
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 1883,
            client_id: format!("campusguard-sim-{}", std::process::id()),
            topic_prefix: "campus".to_owned(),
            interval: Duration::from_secs(1),
            seed: 2024,
            username: None,
            password: None,
            scenarios: Vec::new(),
            campus: Campus::demo(),
            use_single_point_topics_for: 0.2,
            telemetry_qos: QoS::AtLeastOnce,
            garbage_huge_bytes: 1 << 20,
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Capacity of the rumqttc request queue: a few intervals' worth of campus telemetry.
const REQUEST_QUEUE: usize = 1024;
/// How long shutdown may spend sending `offline` statuses and disconnecting.
const FAREWELL_DEADLINE: Duration = Duration::from_secs(3);

/// Counters of one run, logged when it ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublishStats {
    pub telemetry: u64,
    pub garbage: u64,
    pub births: u64,
    /// Messages dropped because the request queue was full (broker unreachable or slow).
    pub dropped: u64,
}

/// Runs the simulated campus until `shutdown` is cancelled: birth messages, then telemetry every
/// `interval` per device, scenarios as scheduled. On shutdown it publishes `offline` for every
/// device (bounded by a short deadline), disconnects, and publishes nothing more.
pub async fn run(config: SimConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut sim = build_simulation(&config)?;

    let mut options = MqttOptions::new(&config.client_id, &config.host, config.port);
    options
        .set_keep_alive(Duration::from_secs(15))
        .set_clean_session(true)
        .set_request_channel_capacity(REQUEST_QUEUE)
        // Room for the huge garbage payload plus headers.
        .set_max_packet_size(64 * 1024, config.garbage_huge_bytes.max(64 * 1024) + 4096);
    if let Some(user) = &config.username {
        options.set_credentials(user.clone(), config.password.clone().unwrap_or_default());
    }
    let (client, eventloop) = AsyncClient::new(options, REQUEST_QUEUE);

    // The link state tells the publisher when to (re)send birth messages.
    let (connected_tx, mut connected_rx) = watch::channel(Link::default());
    let poller_stop = CancellationToken::new();
    let poller = tokio::spawn(poll_eventloop(
        eventloop,
        connected_tx,
        poller_stop.clone(),
        config.max_backoff,
        format!("{}:{}", config.host, config.port),
    ));

    let result = publish_loop(&mut sim, &client, &config, &mut connected_rx, &shutdown).await;

    // Farewell only while connected; otherwise nobody would hear it.
    let up = connected_rx.borrow().up;
    if up {
        let farewell = async {
            for message in sim.farewell_messages() {
                send_reliable(&client, &message).await?;
            }
            client.disconnect().await.context("disconnect")
        };
        match tokio::time::timeout(FAREWELL_DEADLINE, farewell).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "Simulator could not say goodbye"),
            Err(_) => tracing::warn!("Simulator shutdown: offline statuses timed out"),
        }
    }
    // The poller ends when the broker closes after our Disconnect; stop it anyway after the
    // deadline, or at once when there is no connection to close.
    let mut poller = poller;
    let wait = if up {
        FAREWELL_DEADLINE
    } else {
        Duration::ZERO
    };
    if tokio::time::timeout(wait, &mut poller).await.is_err() {
        poller_stop.cancel();
        let _ = poller.await;
    }
    let stats = result?;
    tracing::info!(
        telemetry = stats.telemetry,
        garbage = stats.garbage,
        births = stats.births,
        dropped = stats.dropped,
        "Simulator stopped"
    );
    Ok(())
}

/// Builds the simulation and checks the network settings; every problem in one error.
fn build_simulation(config: &SimConfig) -> Result<Simulation, ConfigError> {
    let sim = Simulation::new(SimulationSettings {
        campus: config.campus.clone(),
        topic_prefix: config.topic_prefix.clone(),
        seed: config.seed,
        scenarios: config.scenarios.clone(),
        single_point_fraction: config.use_single_point_topics_for,
        garbage_huge_bytes: config.garbage_huge_bytes,
    });
    let mut problems = match &sim {
        Ok(_) => Vec::new(),
        Err(e) => e.problems.clone(),
    };
    if config.interval.is_zero() {
        problems.push("interval must be positive".to_owned());
    }
    if config.host.is_empty() {
        problems.push("broker host is empty".to_owned());
    }
    if config.client_id.is_empty() {
        problems.push("client id is empty".to_owned());
    }
    match sim {
        Ok(sim) if problems.is_empty() => Ok(sim),
        _ => Err(ConfigError { problems }),
    }
}

/// The broker connection as the poller sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Link {
    /// ConnAcks so far: a new one means a new session that needs the birth messages.
    sessions: u64,
    up: bool,
}

/// Polls the rumqttc event loop: reports ConnAcks, backs off after errors, never publishes.
async fn poll_eventloop(
    mut eventloop: EventLoop,
    connected: watch::Sender<Link>,
    stop: CancellationToken,
    max_backoff: Duration,
    broker: String,
) {
    let mut backoff = Duration::from_millis(100);
    let mut disconnecting = false;
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                tracing::info!(%broker, session_present = ack.session_present, "Simulator connected");
                backoff = Duration::from_millis(100);
                connected.send_modify(|link| {
                    link.sessions += 1;
                    link.up = true;
                });
            }
            // Keep reading until the broker closes: closing a socket with unread PUBACKs in
            // it sends a TCP reset, and the broker may then drop our last publishes.
            Ok(Event::Outgoing(Outgoing::Disconnect)) => disconnecting = true,
            Ok(_) => {}
            Err(_) if disconnecting => return,
            Err(e) => {
                connected.send_if_modified(|link| std::mem::replace(&mut link.up, false));
                tracing::warn!(%broker, error = %e, retry_in_ms = backoff.as_millis() as u64, "Simulator MQTT connection failed");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
}

/// Publishes meta/status with QoS 1, waiting for room in the queue.
async fn send_reliable(client: &AsyncClient, message: &Message) -> anyhow::Result<()> {
    client
        .publish(
            message.topic.as_str(),
            QoS::AtLeastOnce,
            message.retain,
            message.payload.clone(),
        )
        .await
        .with_context(|| format!("publish to {}", message.topic))
}

/// Offers a telemetry or garbage message; a full queue drops it and counts.
fn offer(client: &AsyncClient, message: Message, qos: QoS, stats: &mut PublishStats) {
    let kind = message.kind;
    match client.try_publish(message.topic, qos, message.retain, message.payload) {
        Ok(()) => match kind {
            MessageKind::Garbage => stats.garbage += 1,
            _ => stats.telemetry += 1,
        },
        Err(_) => {
            stats.dropped += 1;
            // Log the first drop and then every thousandth, not each one.
            if stats.dropped % 1000 == 1 {
                tracing::warn!(
                    dropped = stats.dropped,
                    "Simulator request queue full, dropping telemetry"
                );
            }
        }
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The simulation loop: waits for the first connection, then steps through the devices one slot
/// at a time (`interval / devices` apart) until shutdown.
async fn publish_loop(
    sim: &mut Simulation,
    client: &AsyncClient,
    config: &SimConfig,
    connected: &mut watch::Receiver<Link>,
    shutdown: &CancellationToken,
) -> anyhow::Result<PublishStats> {
    let mut stats = PublishStats::default();
    tokio::select! {
        () = shutdown.cancelled() => return Ok(stats),
        changed = connected.wait_for(|link| link.sessions > 0) => {
            changed.context("MQTT event loop ended before connecting")?;
        }
    }
    let mut births_for_session = connected.borrow().sessions;
    let send_birth = |sim: &Simulation, stats: &mut PublishStats| {
        let birth = sim.birth_messages();
        stats.births += birth.len() as u64;
        birth
    };
    for message in send_birth(sim, &mut stats) {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(stats),
            sent = send_reliable(client, &message) => sent?,
        }
    }

    let devices = sim.device_count();
    let slot = config.interval / u32::try_from(devices.max(1)).unwrap_or(u32::MAX);
    let start = Instant::now();
    let mut next = start;
    let mut index = 0usize;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(stats),
            () = tokio::time::sleep_until(next) => {}
        }
        let sessions = connected.borrow().sessions;
        if sessions > births_for_session {
            births_for_session = sessions;
            tracing::info!("Simulator reconnected, re-sending meta and status");
            for message in send_birth(sim, &mut stats) {
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(stats),
                    sent = send_reliable(client, &message) => sent?,
                }
            }
        }
        let elapsed = start.elapsed();
        let ts = unix_ms();
        for message in sim.advance(elapsed, ts) {
            if message.kind == MessageKind::Status {
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(stats),
                    sent = send_reliable(client, &message) => sent?,
                }
            } else {
                offer(client, message, config.telemetry_qos, &mut stats);
            }
        }
        for message in sim.telemetry(index, elapsed, ts) {
            offer(client, message, config.telemetry_qos, &mut stats);
        }
        index = (index + 1) % devices.max(1);
        next += slot;
        // After a stall (a slow broker, a suspended laptop) restart the schedule instead of
        // catching up in a burst.
        let now = Instant::now();
        if now > next + config.interval {
            next = now;
        }
    }
}

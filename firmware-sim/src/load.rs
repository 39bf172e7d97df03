//! The load generator: N devices × M points published at a target total rate (readings/s) for a
//! duration or a message count, over one or more MQTT connections, to measure how much the
//! broker and the gateway's ingest take. It sits where the devices sit, upstream of the broker,
//! and always stops: by count, by duration, by a hard cap, or on shutdown.
//!
//! Messages are protocol v1 telemetry objects (`ts` plus one member per point). With a
//! `profile` they carry that profile's points and each device publishes its retained `meta`
//! first (cleared again at the end), so a gateway accepts the readings as known devices; without
//! one they carry generic points `p0..p{M-1}` of unknown devices, which a gateway counts.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::campus::Profile;
use crate::device::{DeviceModel, PointValue};
use crate::sim::ConfigError;

/// What to send and how fast. `Debug` hides the password.
#[derive(Clone)]
pub struct LoadConfig {
    pub host: String,
    pub port: u16,
    /// Base client id; connection `i` uses `<client_id>-<i>`.
    pub client_id: String,
    /// Topic prefix; use a unique one so the load does not mix with real devices.
    pub topic_prefix: String,
    /// The `<school>` level of the load devices' topics.
    pub school: String,
    pub devices: usize,
    /// Points per message when `profile` is `None`.
    pub points: usize,
    /// Use this profile's points (and publish `meta`) instead of generic points.
    pub profile: Option<Profile>,
    /// Target total rate in readings per second (messages/s = rate / points per message).
    pub rate: f64,
    /// Stop after this long (capped at [`MAX_LOAD_DURATION`]).
    pub duration: Option<Duration>,
    /// Stop after this many telemetry messages in total.
    pub count: Option<u64>,
    pub qos: QoS,
    /// Number of MQTT connections; devices are split evenly between them.
    pub connections: usize,
    pub username: Option<String>,
    pub password: Option<String>,
    pub seed: u64,
}

impl fmt::Debug for LoadConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("client_id", &self.client_id)
            .field("topic_prefix", &self.topic_prefix)
            .field("school", &self.school)
            .field("devices", &self.devices)
            .field("points", &self.points)
            .field("profile", &self.profile)
            .field("rate", &self.rate)
            .field("duration", &self.duration)
            .field("count", &self.count)
            .field("qos", &self.qos)
            .field("connections", &self.connections)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("seed", &self.seed)
            .finish()
    }
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 1883,
            client_id: format!("campusguard-load-{}", std::process::id()),
            topic_prefix: format!("load-{}", unix_ms()),
            school: "load".to_owned(),
            devices: 100,
            points: 10,
            profile: None,
            rate: 1000.0,
            duration: None,
            count: None,
            qos: QoS::AtMostOnce,
            connections: 1,
            username: None,
            password: None,
            seed: 7,
        }
    }
}

/// No load run lasts longer than this, whatever it was asked.
pub const MAX_LOAD_DURATION: Duration = Duration::from_secs(3600);
/// The duration used when neither a duration nor a count is given.
pub const DEFAULT_LOAD_DURATION: Duration = Duration::from_secs(10);
/// How long to wait after the last publish for the queue to drain and QoS 1 acks to arrive.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);
const REQUEST_QUEUE: usize = 4096;

/// What a load run achieved.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadReport {
    /// Messages handed to the MQTT clients.
    pub messages_published: u64,
    /// Messages written to the broker connection.
    pub messages_sent: u64,
    /// Messages acknowledged by the broker (QoS 1 only).
    pub messages_acked: u64,
    /// Readings in the sent messages (messages × points per message).
    pub readings_sent: u64,
    pub points_per_message: usize,
    /// From the first publish until the last message was written (or acked for QoS 1).
    pub elapsed: Duration,
    pub target_readings_per_s: f64,
    pub achieved_readings_per_s: f64,
    pub achieved_messages_per_s: f64,
    pub connection_errors: u64,
    pub topic_prefix: String,
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "prefix            {}", self.topic_prefix)?;
        writeln!(
            f,
            "messages          {} published, {} sent, {} acked",
            self.messages_published, self.messages_sent, self.messages_acked
        )?;
        writeln!(
            f,
            "readings sent     {} ({} per message)",
            self.readings_sent, self.points_per_message
        )?;
        writeln!(f, "elapsed           {:.3} s", self.elapsed.as_secs_f64())?;
        writeln!(
            f,
            "rate              {:.0} readings/s achieved, {:.0} target ({:.0} messages/s)",
            self.achieved_readings_per_s, self.target_readings_per_s, self.achieved_messages_per_s
        )?;
        write!(f, "connection errors {}", self.connection_errors)
    }
}

/// Counters shared by a connection's publisher and its event-loop poller.
#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    sent: AtomicU64,
    acked: AtomicU64,
    errors: AtomicU64,
}

/// Runs the load and reports what it achieved. Bounded in count and time; `shutdown` ends it
/// early with a report of what was sent until then.
pub async fn load(config: LoadConfig, shutdown: CancellationToken) -> anyhow::Result<LoadReport> {
    let problems = validate(&config);
    if !problems.is_empty() {
        return Err(ConfigError { problems }.into());
    }
    let points_per_message = config.profile.map_or(config.points, |p| p.points().len());
    let duration = match (config.duration, config.count) {
        (Some(d), _) => d.min(MAX_LOAD_DURATION),
        (None, Some(_)) => MAX_LOAD_DURATION,
        (None, None) => DEFAULT_LOAD_DURATION,
    };
    let messages_per_s = config.rate / points_per_message as f64;
    let connections = config.connections.min(config.devices);

    // Every connection comes up (and publishes its meta) before the clock starts.
    let mut workers = Vec::with_capacity(connections);
    for c in 0..connections {
        let first = config.devices * c / connections;
        let last = config.devices * (c + 1) / connections;
        let count_share = config
            .count
            .map(|n| n * (c as u64 + 1) / connections as u64 - n * c as u64 / connections as u64);
        let worker = Worker::connect(&config, c, first..last, &shutdown).await?;
        workers.push((
            worker,
            count_share,
            (last - first) as f64 / config.devices as f64,
        ));
    }

    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(workers.len());
    for (worker, count, share) in workers {
        let config = config.clone();
        let shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let result = worker
                .publish(&config, messages_per_s * share, count, deadline, &shutdown)
                .await;
            (worker, result)
        }));
    }
    let mut finished = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (worker, result) = task.await.context("load worker panicked")?;
        result?;
        finished.push(worker);
    }
    let mut report = LoadReport {
        points_per_message,
        target_readings_per_s: config.rate,
        topic_prefix: config.topic_prefix.clone(),
        ..LoadReport::default()
    };
    for worker in &finished {
        worker.drain(config.qos).await;
    }
    report.elapsed = start.elapsed();
    for worker in finished {
        // Snapshot before the cleanup publishes; the meta publishes are not load.
        let c = &worker.counters;
        let meta = worker.meta_published;
        report.messages_published += c.published.load(Ordering::Relaxed).saturating_sub(meta);
        report.messages_sent += c.sent.load(Ordering::Relaxed).saturating_sub(meta);
        report.messages_acked += c.acked.load(Ordering::Relaxed).saturating_sub(meta);
        report.connection_errors += c.errors.load(Ordering::Relaxed);
        worker.finish(&config).await;
    }
    report.readings_sent = report.messages_sent * points_per_message as u64;
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    report.achieved_readings_per_s = report.readings_sent as f64 / secs;
    report.achieved_messages_per_s = report.messages_sent as f64 / secs;
    Ok(report)
}

fn validate(config: &LoadConfig) -> Vec<String> {
    let mut problems = Vec::new();
    if config.devices == 0 {
        problems.push("devices must be at least 1".to_owned());
    }
    if config.profile.is_none() && config.points == 0 {
        problems.push("points must be at least 1".to_owned());
    }
    if !(config.rate.is_finite() && config.rate > 0.0) {
        problems.push(format!("rate {} must be a positive number", config.rate));
    }
    if config.connections == 0 {
        problems.push("connections must be at least 1".to_owned());
    }
    if config.duration.is_some_and(|d| d.is_zero()) {
        problems.push("duration must be positive".to_owned());
    }
    if config.count == Some(0) {
        problems.push("count must be at least 1".to_owned());
    }
    for (what, value) in [("school", &config.school)] {
        if !crate::campus::is_topic_segment(value) {
            problems.push(format!("{what} `{value}` is not a valid topic level"));
        }
    }
    if config.topic_prefix.is_empty()
        || !config
            .topic_prefix
            .split('/')
            .all(crate::campus::is_topic_segment)
    {
        problems.push(format!(
            "topic prefix `{}` must be non-empty levels without wildcards",
            config.topic_prefix
        ));
    }
    problems
}

/// One MQTT connection and the devices it publishes for.
struct Worker {
    client: AsyncClient,
    counters: Arc<Counters>,
    poller: tokio::task::JoinHandle<()>,
    poller_stop: CancellationToken,
    devices: std::ops::Range<usize>,
    models: Vec<DeviceModel>,
    rng: StdRng,
    /// Retained meta messages sent before the load (QoS 1, counted by the poller too).
    meta_published: u64,
}

impl Worker {
    async fn connect(
        config: &LoadConfig,
        index: usize,
        devices: std::ops::Range<usize>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let mut options = MqttOptions::new(
            format!("{}-{index}", config.client_id),
            &config.host,
            config.port,
        );
        options
            .set_keep_alive(Duration::from_secs(15))
            .set_request_channel_capacity(REQUEST_QUEUE)
            .set_inflight(500);
        if let Some(user) = &config.username {
            options.set_credentials(user.clone(), config.password.clone().unwrap_or_default());
        }
        let (client, mut eventloop) = AsyncClient::new(options, REQUEST_QUEUE);
        // The first ConnAck is awaited here, so connection problems fail fast.
        let first = tokio::select! {
            () = shutdown.cancelled() => anyhow::bail!("shut down before connecting"),
            polled = tokio::time::timeout(Duration::from_secs(10), eventloop.poll()) => polled,
        };
        match first {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {}
            Ok(Ok(other)) => anyhow::bail!("unexpected first MQTT event {other:?}"),
            Ok(Err(e)) => {
                return Err(e).with_context(|| {
                    format!("load: cannot connect to {}:{}", config.host, config.port)
                })
            }
            Err(_) => anyhow::bail!(
                "load: no ConnAck from {}:{} within 10 s",
                config.host,
                config.port
            ),
        }
        let counters = Arc::new(Counters::default());
        let poller_stop = CancellationToken::new();
        let poller = tokio::spawn(poll_counting(
            eventloop,
            counters.clone(),
            poller_stop.clone(),
        ));
        let mut rng = StdRng::seed_from_u64(config.seed.wrapping_add(index as u64));
        let models = match config.profile {
            Some(profile) => devices
                .clone()
                .map(|_| DeviceModel::new(profile, &mut rng))
                .collect(),
            None => Vec::new(),
        };
        let mut worker = Self {
            client,
            counters,
            poller,
            poller_stop,
            devices,
            models,
            rng,
            meta_published: 0,
        };
        if let Some(profile) = config.profile {
            for device in worker.devices.clone() {
                let meta = serde_json::json!({
                    "profile": profile.as_str(),
                    "building": "load",
                    "room": format!("{device}"),
                    "name": format!("load device {device}"),
                });
                worker
                    .client
                    .publish(
                        meta_topic(config, device),
                        QoS::AtLeastOnce,
                        true,
                        meta.to_string(),
                    )
                    .await
                    .context("publish load meta")?;
                worker.counters.published.fetch_add(1, Ordering::Relaxed);
                worker.meta_published += 1;
            }
        }
        Ok(worker)
    }

    /// Publishes round-robin over this worker's devices at `messages_per_s` until `count`
    /// messages, the deadline or shutdown.
    async fn publish(
        &self,
        config: &LoadConfig,
        messages_per_s: f64,
        count: Option<u64>,
        deadline: Instant,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let mut rng = self.rng.clone();
        let start = Instant::now();
        let period = 1.0 / messages_per_s;
        let mut sent: u64 = 0;
        let mut device = self.devices.start;
        let generic: Vec<String> = (0..config.points).map(|p| format!("p{p}")).collect();
        loop {
            if count.is_some_and(|n| sent >= n) || shutdown.is_cancelled() {
                return Ok(());
            }
            let due = start + Duration::from_secs_f64(sent as f64 * period);
            if due >= deadline {
                return Ok(());
            }
            if due > Instant::now() {
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep_until(due) => {}
                }
            }
            let ts = unix_ms();
            let payload = match config.profile {
                Some(_) => {
                    let model = &self.models[device - self.devices.start];
                    model.sample(start.elapsed(), &mut rng).to_json(Some(ts))
                }
                None => generic_json(&generic, sent, ts),
            };
            let topic = format!(
                "{}/{}/{}/telemetry",
                config.topic_prefix,
                config.school,
                device_id(device)
            );
            // Publish first: a message the queue already took is counted, not dropped by a
            // deadline that fired in the same poll.
            tokio::select! {
                biased;
                published = self.client.publish(topic, config.qos, false, payload) => {
                    published.context("load publish")?;
                }
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep_until(deadline) => return Ok(()),
            }
            self.counters.published.fetch_add(1, Ordering::Relaxed);
            sent += 1;
            device += 1;
            if device == self.devices.end {
                device = self.devices.start;
            }
        }
    }

    /// Waits (bounded) until every published message was written, and acked for QoS 1.
    async fn drain(&self, qos: QoS) {
        let deadline = Instant::now() + DRAIN_DEADLINE;
        loop {
            let published = self.counters.published.load(Ordering::Relaxed);
            let done = match qos {
                QoS::AtMostOnce => self.counters.sent.load(Ordering::Relaxed),
                _ => self.counters.acked.load(Ordering::Relaxed),
            };
            if done >= published || Instant::now() >= deadline || self.poller.is_finished() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Clears retained meta, disconnects, and stops the poller.
    async fn finish(self, config: &LoadConfig) {
        let cleanup = async {
            if config.profile.is_some() {
                for device in self.devices.clone() {
                    self.client
                        .publish(
                            meta_topic(config, device),
                            QoS::AtLeastOnce,
                            true,
                            Vec::new(),
                        )
                        .await?;
                }
            }
            self.client.disconnect().await
        };
        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(5), cleanup).await {
            tracing::warn!(error = %e, "Load generator could not clean up");
        }
        let mut poller = self.poller;
        if tokio::time::timeout(Duration::from_secs(5), &mut poller)
            .await
            .is_err()
        {
            self.poller_stop.cancel();
            let _ = poller.await;
        }
    }
}

fn device_id(index: usize) -> String {
    format!("dev-{index:06}")
}

fn meta_topic(config: &LoadConfig, device: usize) -> String {
    format!(
        "{}/{}/{}/meta",
        config.topic_prefix,
        config.school,
        device_id(device)
    )
}

/// A telemetry object with generic points `p0..`: cheap, varying, finite values.
fn generic_json(points: &[String], seq: u64, ts_ms: i64) -> String {
    let base = 20.0 + (seq % 100) as f64 / 10.0;
    let mut out = String::with_capacity(32 + points.len() * 12);
    out.push_str(&format!("{{\"ts\":{ts_ms}"));
    for (i, name) in points.iter().enumerate() {
        let value = PointValue::Number(base + i as f64);
        out.push_str(&format!(",\"{name}\":{}", value.to_json()));
    }
    out.push('}');
    out
}

/// Polls a load connection's event loop, counting writes and acks; reconnects with a capped
/// backoff after errors (rumqttc has none, #703) and never publishes (#1025).
async fn poll_counting(mut eventloop: EventLoop, counters: Arc<Counters>, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    let mut disconnecting = false;
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Outgoing(Outgoing::Publish(_))) => {
                counters.sent.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                counters.acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Event::Incoming(Packet::ConnAck(_))) => backoff = Duration::from_millis(100),
            // Read until the broker closes, so no unread PUBACK turns our close into a reset.
            Ok(Event::Outgoing(Outgoing::Disconnect)) => disconnecting = true,
            Ok(_) => {}
            Err(_) if disconnecting => return,
            Err(e) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "Load connection failed");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

pub(crate) fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

//! `campusguard-sim bench`: the end-to-end benchmark of issue 7. Every mode starts its own
//! processes on loopback (private Mosquitto, private VictoriaMetrics, the release gateway or
//! Node-RED; see [`rig`]), drives them with the load generator ([`crate::load`]), prints what it
//! measured, and ends with markdown tables. Everything is bounded in count and time, and every
//! child is killed and every temporary directory removed when a run ends, fails or is
//! interrupted.
//!
//! Modes, in the order `all` runs them:
//! - `broker`: the broker alone — the same JSON telemetry published as fast as the publisher can
//!   (several connections) to Mosquitto, counted by a do-nothing C subscriber (`mosquitto_sub`),
//!   QoS 0 and 1. This is the limit the others are compared with.
//! - `e2e`: the same load into the gateway (decode, rules, live cache, local history, TSDB sink
//!   into VictoriaMetrics) at fractions of the broker limit.
//! - `latency`: publish → `alarm` SSE event of a probe device, idle, under background load and
//!   under a flood of concurrent API readers (alarm lists and KPIs), next to publish → plain
//!   subscriber.
//! - `soak`: 1,000 devices × 10 points at 1 message/s each; RSS every 10 s.
//! - `nodered`: the same load through a Node-RED flow (MQTT in → threshold function → InfluxDB
//!   out into the same kind of VictoriaMetrics); see `bench/nodered/`.

mod latency;
mod rig;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use rumqttc::QoS;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::load::{load, LoadConfig, LoadReport};
use rig::{metric, Service, TempDir, READINGS_TOTAL};

/// Topic prefix and school level of every benchmark topic.
const PREFIX: &str = "bench";
const SCHOOL: &str = "load";
const PROBE_DEVICE: &str = "probe-0";
/// After the load stops, how long the gateway / Node-RED may take to drain at most.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Broker,
    E2e,
    Latency,
    Soak,
    Nodered,
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum NodeRedFlow {
    /// `flows.json`: MQTT in → function → InfluxDB out, one write per message.
    PerReading,
    /// `flows-batch.json`: MQTT in → function → join (count/timeout) → InfluxDB batch, the fair
    /// peer of the gateway's batched writes.
    Batch,
}

impl NodeRedFlow {
    fn file(self) -> &'static str {
        match self {
            Self::PerReading => "flows.json",
            Self::Batch => "flows-batch.json",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::PerReading => "per-reading",
            Self::Batch => "join + batch",
        }
    }
}

#[derive(Clone, Debug, Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    pub mode: Mode,
    /// QoS levels for broker, e2e and nodered (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0,1")]
    pub qos: Vec<u8>,
    /// How long the broker limit is measured per QoS.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub broker_duration: Duration,
    /// How long each e2e / nodered step publishes.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Offered load of the e2e steps as fractions of the broker limit.
    #[arg(long, value_delimiter = ',', default_value = "0.5,0.8,1.0")]
    pub fractions: Vec<f64>,
    /// Offered loads of the e2e steps in readings/s (instead of --fractions), e.g. `20000,40000`.
    #[arg(long, value_delimiter = ',')]
    pub rates: Vec<f64>,
    /// Broker limit in messages/s to use instead of measuring it (key: the QoS), e.g. `0=85000,1=25000`.
    #[arg(long, value_delimiter = ',')]
    pub broker_limit: Vec<String>,
    /// Offered load of `nodered` as a fraction of the broker limit.
    #[arg(long, default_value_t = 1.0)]
    pub nodered_fraction: f64,
    /// Offered load of `nodered` in readings/s (instead of --nodered-fraction).
    #[arg(long)]
    pub nodered_rate: Option<f64>,
    /// Publisher connections of the load generator.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    #[arg(long, default_value_t = 1000)]
    pub devices: usize,
    /// Readings per message, comma-separated (e.g. `1,10`): every chosen mode runs once per
    /// message shape, each beside the broker limit measured for that shape in the same run.
    #[arg(
        long = "points-per-message",
        alias = "points",
        value_delimiter = ',',
        default_value = "10"
    )]
    pub points_per_message: Vec<usize>,
    /// The message shape of the pass under way (set from `--points-per-message`).
    #[arg(skip)]
    pub points: usize,
    /// Node-RED flows for `nodered` (comma-separated): `per-reading` (one InfluxDB write per
    /// message) and/or `batch` (join + InfluxDB batch node).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "per-reading,batch"
    )]
    pub nodered_flow: Vec<NodeRedFlow>,
    /// Alarm-latency samples (over-threshold publishes) per phase.
    #[arg(long, default_value_t = 200)]
    pub samples: usize,
    /// Probe period: an over-threshold and a normal reading each this far apart.
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    pub probe_interval: Duration,
    /// Background load of the latency run, readings/s.
    #[arg(long, default_value_t = 10_000.0)]
    pub background_rate: f64,
    /// Concurrent API readers of the latency run's reader phase: each loops over
    /// `GET /api/v1/alarms`, `/api/v1/alarms?state=all` and `/api/v1/alarms/kpis`; 0 skips it.
    #[arg(long, default_value_t = 200)]
    pub readers: usize,
    /// QoS of the latency probe and its background load.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub latency_qos: u8,
    /// How long the soak runs.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub soak_duration: Duration,
    /// The gateway binary (default: `campusguard` next to this binary, i.e. target/release).
    #[arg(long)]
    pub gateway_bin: Option<PathBuf>,
    /// Folder with Node-RED's package.json, node_modules (`npm ci`), flows.json, settings.js.
    #[arg(long, default_value = "bench/nodered")]
    pub nodered_dir: PathBuf,
}

fn qos(level: u8) -> QoS {
    if level == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    }
}

/// Runs the chosen mode(s) and prints the tables; `shutdown` (Ctrl-C) stops it, cleaning up.
pub async fn run(args: BenchArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    for q in &args.qos {
        anyhow::ensure!(*q <= 1, "--qos takes 0 and 1");
    }
    anyhow::ensure!(
        args.fractions.iter().all(|f| *f > 0.0 && *f <= 2.0),
        "--fractions must be in (0, 2]"
    );
    anyhow::ensure!(
        args.rates.iter().all(|r| r.is_finite() && *r > 0.0),
        "--rates must be positive"
    );
    anyhow::ensure!(
        !args.points_per_message.is_empty()
            && args.points_per_message.iter().all(|p| *p > 0)
            && args.devices > 0
            && args.connections > 0
    );
    let mut results = Results::default();
    let work = async {
        for &points in &args.points_per_message {
            let args = BenchArgs {
                points,
                ..args.clone()
            };
            println!("--- {points} reading(s) per message ---");
            run_shape(&args, &mut results, &shutdown).await?;
        }
        anyhow::Ok(())
    };
    let outcome = tokio::select! {
        () = shutdown.cancelled() => Err(anyhow::anyhow!("interrupted")),
        outcome = work => outcome,
    };
    println!("\n{}", results.markdown(&args));
    outcome
}

/// Every chosen mode for one message shape (`args.points` readings per message).
async fn run_shape(
    args: &BenchArgs,
    results: &mut Results,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let args = args.clone();
    let shutdown = shutdown.clone();
    let shape_broker: Vec<BrokerResult>;
    {
        let mode = args.mode;
        let mut broker = Vec::new();
        if matches!(mode, Mode::Broker | Mode::E2e | Mode::Nodered | Mode::All) {
            for &q in &args.qos {
                let limit = match given_limit(&args, q)? {
                    Some(msgs) => BrokerResult::given(q, msgs, args.points),
                    None => broker_limit(&args, q, &shutdown).await?,
                };
                println!("{}", limit.line());
                broker.push(limit);
            }
        }
        results.broker.extend(broker.iter().cloned());
        shape_broker = broker;
        if matches!(mode, Mode::E2e | Mode::All) {
            for limit in shape_broker.clone() {
                let limit_readings = limit.delivered_msgs_per_s * args.points as f64;
                let steps: Vec<(f64, f64)> = if args.rates.is_empty() {
                    args.fractions
                        .iter()
                        .map(|f| (*f, f * limit_readings))
                        .collect()
                } else {
                    args.rates
                        .iter()
                        .map(|r| (r / limit_readings.max(1e-9), *r))
                        .collect()
                };
                for (fraction, rate) in steps {
                    let r = e2e_step(&args, limit.qos, rate, &shutdown).await?;
                    let r = E2eRow {
                        fraction,
                        limit_msgs_per_s: limit.delivered_msgs_per_s,
                        ..r
                    };
                    println!("{}", r.line());
                    results.e2e.push(r);
                }
            }
        }
        if matches!(mode, Mode::Latency | Mode::All) {
            let mut phases = vec![(0.0, 0), (args.background_rate, 0)];
            if args.readers > 0 {
                phases.push((0.0, args.readers));
            }
            for (background, readers) in phases {
                let r = latency_run(&args, background, readers, &shutdown).await?;
                println!("{}", r.line());
                results.latency.push(r);
            }
        }
        if matches!(mode, Mode::Soak | Mode::All) {
            let r = soak(&args, &shutdown).await?;
            println!("{}", r.line());
            results.soak.push(r);
        }
        if matches!(mode, Mode::Nodered | Mode::All) {
            for (limit, flow) in shape_broker
                .iter()
                .flat_map(|l| args.nodered_flow.iter().map(move |f| (l.clone(), *f)))
            {
                let rate = args.nodered_rate.unwrap_or(
                    limit.delivered_msgs_per_s * args.nodered_fraction * args.points as f64,
                );
                let nr = nodered_step(&args, limit.qos, rate, flow, &shutdown).await?;
                // The gateway at the same offered load: from the e2e sweep when it had that
                // step, else measured now.
                let same = |e: &&E2eRow| {
                    e.qos == limit.qos
                        && e.load.points_per_message == args.points
                        && (e.offered_readings_per_s - rate).abs() < 1.0
                };
                let gw = match results.e2e.iter().find(same) {
                    Some(e) => e.clone(),
                    None => {
                        let limit_readings = limit.delivered_msgs_per_s * args.points as f64;
                        E2eRow {
                            fraction: rate / limit_readings.max(1e-9),
                            limit_msgs_per_s: limit.delivered_msgs_per_s,
                            ..e2e_step(&args, limit.qos, rate, &shutdown).await?
                        }
                    }
                };
                let row = NodeRedRow { nodered: nr, gw };
                println!("{}", row.line());
                results.nodered.push(row);
            }
        }
    }
    Ok(())
}

/// The machine's load average (1, 5, 15 min) for every printed figure: the machine may be
/// shared, and CPU time per message is the figure that depends least on it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .map_or_else(
            || "load average unknown".to_owned(),
            |l| format!("load average {l}"),
        )
}

fn given_limit(args: &BenchArgs, q: u8) -> anyhow::Result<Option<f64>> {
    for item in &args.broker_limit {
        let (k, v) = item
            .split_once('=')
            .context("--broker-limit takes QOS=MSGS_PER_S")?;
        if k.trim() == q.to_string() {
            let v: f64 = v.trim().parse().context("--broker-limit value")?;
            anyhow::ensure!(v > 0.0, "--broker-limit must be positive");
            return Ok(Some(v));
        }
    }
    Ok(None)
}

fn load_config(args: &BenchArgs, port: u16, q: u8, rate: f64, duration: Duration) -> LoadConfig {
    LoadConfig {
        port,
        client_id: format!("bench-load-{}", std::process::id()),
        topic_prefix: PREFIX.to_owned(),
        school: SCHOOL.to_owned(),
        devices: args.devices,
        points: args.points,
        profile: None,
        rate,
        duration: Some(duration),
        count: None,
        qos: qos(q),
        connections: args.connections,
        ..LoadConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Broker limit

#[derive(Clone, Debug, Default)]
struct BrokerResult {
    qos: u8,
    measured: bool,
    published_msgs_per_s: f64,
    delivered: u64,
    published: u64,
    delivered_msgs_per_s: f64,
    points: usize,
    mosquitto_cpu_share: f64,
}

impl BrokerResult {
    fn given(qos: u8, msgs: f64, points: usize) -> Self {
        Self {
            qos,
            delivered_msgs_per_s: msgs,
            points,
            ..Self::default()
        }
    }

    fn line(&self) -> String {
        if !self.measured {
            return format!(
                "broker QoS {}: limit given as {:.0} msgs/s",
                self.qos, self.delivered_msgs_per_s
            );
        }
        let mut line = format!(
            "broker QoS {}: publisher {:.0} msgs/s; mosquitto_sub got {} of {} at {:.0} msgs/s = {:.0} readings/s; mosquitto CPU {:.0} % of a core",
            self.qos,
            self.published_msgs_per_s,
            self.delivered,
            self.published,
            self.delivered_msgs_per_s,
            self.delivered_msgs_per_s * self.points as f64,
            self.mosquitto_cpu_share * 100.0
        );
        if self.delivered_msgs_per_s >= 0.95 * self.published_msgs_per_s {
            line.push_str(
                "\n  note: delivery kept up with the publisher, so the publisher may be the limit \
                 (try more --connections)",
            );
        }
        line
    }
}

/// Counts newline-terminated messages of `mosquitto_sub` and when the first and last came.
#[derive(Default)]
struct SubCount {
    lines: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

async fn broker_limit(
    args: &BenchArgs,
    q: u8,
    shutdown: &CancellationToken,
) -> anyhow::Result<BrokerResult> {
    use tokio::io::AsyncReadExt as _;
    let dir = TempDir::new("broker")?;
    let mosquitto = rig::mosquitto(dir.path()).await?;
    let mut sub = tokio::process::Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &mosquitto.port.to_string()])
        .args(["-q", &q.to_string(), "-t", &format!("{PREFIX}/#")])
        .args(["-i", &format!("bench-sub-{}", std::process::id())])
        .stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("start mosquitto_sub (package mosquitto-clients)")?;
    let mut stdout = sub.stdout.take().context("mosquitto_sub stdout")?;
    let count = std::sync::Arc::new(std::sync::Mutex::new(SubCount::default()));
    let counter = {
        let count = count.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 1 << 16];
            while let Ok(n) = stdout.read(&mut buf).await {
                if n == 0 {
                    return;
                }
                let now = Instant::now();
                let lines = buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
                if let Ok(mut c) = count.lock() {
                    c.lines += lines;
                    c.first.get_or_insert(now);
                    c.last = Some(now);
                }
            }
        })
    };
    // mosquitto_sub subscribes right after connecting; give it a moment.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let cpu0 = mosquitto.cpu_secs();
    let t0 = Instant::now();
    // "As fast as the publisher can": a target rate far above any broker.
    let config = load_config(args, mosquitto.port, q, 1e9, args.broker_duration);
    let report = load(config, shutdown.clone()).await?;
    // Wait until delivery stops (idle 1 s), at most DRAIN_LIMIT.
    let deadline = Instant::now() + DRAIN_LIMIT;
    loop {
        let (lines, last) = count.lock().map(|c| (c.lines, c.last)).unwrap_or((0, None));
        if lines >= report.messages_sent
            || last.is_some_and(|l| l.elapsed() > Duration::from_secs(1))
            || Instant::now() >= deadline
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = mosquitto.cpu_secs() - cpu0;
    let _ = sub.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(5), counter).await;
    let c = count
        .lock()
        .map(|c| (c.lines, c.first, c.last))
        .unwrap_or((0, None, None));
    let (delivered, first, last) = c;
    let span = match (first, last) {
        (Some(f), Some(l)) => l.duration_since(f).as_secs_f64().max(1e-3),
        _ => 1.0,
    };
    Ok(BrokerResult {
        qos: q,
        measured: true,
        published_msgs_per_s: report.achieved_messages_per_s,
        delivered,
        published: report.messages_sent,
        delivered_msgs_per_s: delivered as f64 / span,
        points: args.points,
        mosquitto_cpu_share: cpu / wall.max(1e-3),
    })
}

// ---------------------------------------------------------------------------------------------
// The gateway rig

/// Mosquitto + VictoriaMetrics + the gateway (or Node-RED), in one temporary directory.
struct Rig {
    // Drop order: children first, then the directory.
    gateway: Option<Service>,
    node_red: Option<Service>,
    vm: Service,
    mosquitto: Service,
    _dir: TempDir,
}

fn gateway_bin(args: &BenchArgs) -> anyhow::Result<PathBuf> {
    if let Some(bin) = &args.gateway_bin {
        return Ok(bin.clone());
    }
    let me = std::env::current_exe().context("locate this binary")?;
    let bin = me
        .parent()
        .context("binary has no folder")?
        .join("campusguard");
    anyhow::ensure!(
        bin.exists(),
        "{} not found: cargo build --release -p campusguard, or pass --gateway-bin",
        bin.display()
    );
    Ok(bin)
}

/// A site profile `bench` with number points `p0..`, each with a plain `high` rule at 1000 (no
/// on-delay, so a probe reading raises at once; the load's values stay far below).
fn profiles_toml(points: usize) -> String {
    let mut out =
        String::from("[profiles.bench]\nlabel = \"bench\"\nlabel_en = \"Benchmark device\"\n");
    for p in 0..points {
        let _ = write!(
            out,
            "\n[profiles.bench.points.p{p}]\nkind = \"number\"\n\n[[profiles.bench.rules]]\n\
             id = \"p{p}_high\"\nkind = \"high\"\npoint = \"p{p}\"\nclass = \"supervisory\"\nalarm = 1000.0\n"
        );
    }
    out
}

fn gateway_toml(dir: &Path, mqtt: u16, http: u16, vm: u16, devices: usize) -> String {
    let d = dir.display();
    let mut out = format!(
        "[mqtt]\nurl = \"mqtt://127.0.0.1:{mqtt}\"\nclient_id = \"bench-gateway\"\nclean_session = true\n\
         topic_prefix = \"{PREFIX}\"\n\n[http]\nlisten = \"127.0.0.1:{http}\"\npublic_read = true\n\n\
         [storage]\ndata_dir = \"{d}/gateway-data\"\n\n[timeseries]\nkind = \"influxdb1\"\n\
         url = \"http://127.0.0.1:{vm}\"\ndatabase = \"bench\"\n\n[rules]\nprofiles_file = \"{d}/profiles.toml\"\n"
    );
    let mut device = |id: &str| {
        let _ = write!(
            out,
            "\n[[devices]]\nid = \"{id}\"\nschool = \"{SCHOOL}\"\nprofile = \"bench\"\n"
        );
    };
    device(PROBE_DEVICE);
    for i in 0..devices {
        // The load generator's device ids (load.rs `device_id`).
        device(&format!("dev-{i:06}"));
    }
    out
}

async fn gateway_rig(args: &BenchArgs) -> anyhow::Result<Rig> {
    let bin = gateway_bin(args)?;
    let dir = TempDir::new("gateway")?;
    let mosquitto = rig::mosquitto(dir.path()).await?;
    let vm = rig::victoria_metrics(dir.path()).await?;
    let http = rig::free_port()?;
    std::fs::write(dir.path().join("profiles.toml"), profiles_toml(args.points))?;
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        gateway_toml(dir.path(), mosquitto.port, http, vm.port, args.devices),
    )?;
    let gateway = rig::gateway(dir.path(), &bin, &config, http).await?;
    Ok(Rig {
        gateway: Some(gateway),
        node_red: None,
        vm,
        mosquitto,
        _dir: dir,
    })
}

/// Samples a counter (and the gateway's queues) every 500 ms while `run` runs; returns the
/// maximum queue depths seen.
async fn with_queue_sampler<T>(
    gw: Option<&Service>,
    run: impl std::future::Future<Output = T>,
) -> (T, f64, f64) {
    let Some(gw) = gw else {
        return (run.await, 0.0, 0.0);
    };
    let mut ingest_max: f64 = 0.0;
    let mut history_max: f64 = 0.0;
    tokio::pin!(run);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            out = &mut run => return (out, ingest_max, history_max),
            _ = tick.tick() => {
                let text = rig::gateway_metrics(gw).await;
                ingest_max = ingest_max.max(metric(&text, "campusguard_ingest_queue_depth").unwrap_or(0.0));
                history_max = history_max.max(metric(&text, "campusguard_history_queue_depth").unwrap_or(0.0));
            }
        }
    }
}

/// Polls `value` until it reaches `target` or stops growing for `idle`; bounded by
/// [`DRAIN_LIMIT`]. Returns the last value and when it last grew.
async fn drain<F, Fut>(target: f64, idle: Duration, value: F) -> (f64, Instant)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = f64>,
{
    let deadline = Instant::now() + DRAIN_LIMIT;
    let mut last = value().await;
    let mut grew = Instant::now();
    while last < target && grew.elapsed() < idle && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = value().await;
        if now > last {
            last = now;
            grew = Instant::now();
        }
    }
    (last, grew)
}

// ---------------------------------------------------------------------------------------------
// End to end

#[derive(Clone, Debug, Default)]
struct E2eRow {
    qos: u8,
    fraction: f64,
    limit_msgs_per_s: f64,
    offered_readings_per_s: f64,
    published_readings: u64,
    load: LoadReport,
    /// Readings the gateway accepted during the load window, per second.
    accepted_per_s: f64,
    /// Published but not yet accepted when the publisher finished.
    backlog_at_end: f64,
    drain_secs: f64,
    ingest_queue_max: f64,
    history_queue_max: f64,
    cpu_s_per_million: f64,
    mosquitto_cpu_s_per_million: f64,
    peak_rss_mib: f64,
    vm_rows: f64,
    /// VM rows per second from the start until the last row arrived.
    vm_rows_per_s: f64,
    /// Gateway CPU time per message it accepted, in microseconds.
    cpu_us_per_msg: f64,
    /// Publish → `alarm` SSE event of the probe device during the step (and the broker's own).
    alarm: latency::Latencies,
}

impl E2eRow {
    fn ratio(&self) -> f64 {
        self.accepted_per_s
            / (self.limit_msgs_per_s * self.load.points_per_message as f64).max(1e-9)
    }

    fn msgs_per_s(&self) -> f64 {
        self.accepted_per_s / self.load.points_per_message.max(1) as f64
    }

    fn keeps_up(&self) -> bool {
        // Less than a second of load still queued when the publisher stopped.
        self.backlog_at_end
            <= self
                .offered_readings_per_s
                .min(self.load.achieved_readings_per_s)
                .max(1.0)
    }

    fn line(&self) -> String {
        format!(
            "e2e QoS {} {} reading(s)/msg at {:.0} % of the broker limit ({:.0} msgs/s) ({:.0} readings/s offered, {:.0} achieved by the publisher): \
             gateway accepted {:.0} readings/s ({:.0} msgs/s) = {:.2} of the broker limit; backlog at end {:.0} readings ({}), \
             drained in {:.1} s; ingest queue max {:.0}, history queue max {:.0}; \
             CPU {:.2} s per million readings, {:.1} µs per message (mosquitto {:.2} s/M); peak RSS {:.0} MiB; \
             alarm p50/p99/max {} (broker p99 {:.1} ms); VM rows {:.0} of {} published ({:.0} rows/s); {}",
            self.qos,
            self.load.points_per_message,
            self.fraction * 100.0,
            self.limit_msgs_per_s,
            self.offered_readings_per_s,
            self.load.achieved_readings_per_s,
            self.accepted_per_s,
            self.msgs_per_s(),
            self.ratio(),
            self.backlog_at_end,
            if self.keeps_up() { "keeps up" } else { "FALLING BEHIND" },
            self.drain_secs,
            self.ingest_queue_max,
            self.history_queue_max,
            self.cpu_s_per_million,
            self.cpu_us_per_msg,
            self.mosquitto_cpu_s_per_million,
            self.peak_rss_mib,
            self.alarm_text(),
            latency::percentiles(&self.alarm.broker_ms).1,
            self.vm_rows,
            self.published_readings,
            self.vm_rows_per_s,
            load_average(),
        )
    }

    fn alarm_text(&self) -> String {
        let (p50, p99, max) = latency::percentiles(&self.alarm.alarm_ms);
        let mut text = format!(
            "{p50:.1}/{p99:.1}/{max:.1} ms (n={})",
            self.alarm.alarm_ms.len()
        );
        if self.alarm.alarm_missing > 0 {
            let _ = write!(text, " {} missing", self.alarm.alarm_missing);
        }
        text
    }
}

async fn e2e_step(
    args: &BenchArgs,
    q: u8,
    rate: f64,
    shutdown: &CancellationToken,
) -> anyhow::Result<E2eRow> {
    println!(
        "e2e QoS {q}: {rate:.0} readings/s for {:?} …",
        args.duration
    );
    let mut rig = gateway_rig(args).await?;
    let gw = rig.gateway.take().context("gateway")?;
    let gw_ref = &gw;
    let readings = move || async move {
        metric(&rig::gateway_metrics(gw_ref).await, READINGS_TOTAL).unwrap_or(0.0)
    };
    let r0 = readings().await;
    let rows0 = rig::vm_influx_rows(&rig.vm).await;
    let vm = &rig.vm;
    let (c0, m0) = (gw.cpu_secs(), rig.mosquitto.cpu_secs());
    let t0 = Instant::now();
    let config = load_config(args, rig.mosquitto.port, q, rate, args.duration);
    // The alarm probe runs beside the load: one over-threshold reading per two probe
    // intervals, over the step's duration (after a second of load).
    let topic = format!("{PREFIX}/{SCHOOL}/{PROBE_DEVICE}/telemetry");
    let probe_samples = (args
        .duration
        .saturating_sub(Duration::from_secs(2))
        .as_secs_f64()
        / (2.0 * args.probe_interval.as_secs_f64()).max(1e-3)) as usize;
    let probe = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        latency::probe(
            rig.mosquitto.port,
            gw.port,
            &topic,
            qos(q),
            probe_samples.max(1),
            args.probe_interval,
            shutdown,
        )
        .await
    };
    let ((report, ingest_max, history_max), alarm) = tokio::join!(
        with_queue_sampler(Some(&gw), load(config, shutdown.clone())),
        probe
    );
    let report = report?;
    let alarm = alarm.unwrap_or_else(|e| {
        println!("  alarm probe failed: {e:#}");
        latency::Latencies::default()
    });
    let t_end = Instant::now();
    let r_end = readings().await;
    let target = r0 + report.readings_sent as f64;
    let (r_final, _) = drain(target, Duration::from_secs(3), readings).await;
    let drain_secs = t_end.elapsed().as_secs_f64();
    let cpu = gw.cpu_secs() - c0;
    let mosquitto_cpu = rig.mosquitto.cpu_secs() - m0;
    let (hwm, _) = gw.rss_kib();
    // The TSDB sink flushes every second; wait until VictoriaMetrics stops growing.
    let (rows, rows_at) = drain(rows0 + (r_final - r0), Duration::from_secs(3), move || {
        rig::vm_influx_rows(vm)
    })
    .await;
    let mut gw = gw;
    gw.check_alive()?;
    let accepted_total = r_final - r0;
    let millions = (accepted_total / 1e6).max(1e-9);
    Ok(E2eRow {
        qos: q,
        fraction: 1.0,
        limit_msgs_per_s: 0.0,
        offered_readings_per_s: rate,
        published_readings: report.readings_sent,
        accepted_per_s: (r_end - r0) / t_end.duration_since(t0).as_secs_f64().max(1e-3),
        backlog_at_end: report.readings_sent as f64 - (r_end - r0),
        drain_secs,
        ingest_queue_max: ingest_max,
        history_queue_max: history_max,
        cpu_s_per_million: cpu / millions,
        mosquitto_cpu_s_per_million: mosquitto_cpu / millions,
        peak_rss_mib: hwm as f64 / 1024.0,
        vm_rows: rows - rows0,
        vm_rows_per_s: (rows - rows0) / rows_at.duration_since(t0).as_secs_f64().max(1e-3),
        cpu_us_per_msg: cpu * 1e6
            / (accepted_total / report.points_per_message.max(1) as f64).max(1.0),
        alarm,
        load: report,
    })
}

// ---------------------------------------------------------------------------------------------
// Alarm latency

#[derive(Clone, Debug, Default)]
struct LatencyRow {
    points: usize,
    background: f64,
    background_achieved: f64,
    /// Concurrent API readers during the probe, their answered requests per second and the
    /// requests that failed (error status, timeout).
    readers: usize,
    reader_requests_per_s: f64,
    reader_errors: u64,
    samples: latency::Latencies,
}

impl LatencyRow {
    /// What ran beside the probe, for the table.
    fn background_label(&self) -> String {
        if self.readers > 0 {
            format!(
                "{} API readers ({:.0} requests/s, {} failed)",
                self.readers, self.reader_requests_per_s, self.reader_errors
            )
        } else if self.background > 0.0 {
            format!("{:.0} readings/s", self.background_achieved)
        } else {
            "idle".to_owned()
        }
    }

    fn line(&self) -> String {
        let (a50, a99, amax) = latency::percentiles(&self.samples.alarm_ms);
        let (b50, b99, bmax) = latency::percentiles(&self.samples.broker_ms);
        format!(
            "latency beside {}: alarm n={} p50 {a50:.1} ms p99 {a99:.1} ms max {amax:.1} ms \
             ({} missing); broker n={} p50 {b50:.1} ms p99 {b99:.1} ms max {bmax:.1} ms",
            self.background_label(),
            self.samples.alarm_ms.len(),
            self.samples.alarm_missing,
            self.samples.broker_ms.len(),
        )
    }
}

async fn latency_run(
    args: &BenchArgs,
    background: f64,
    readers: usize,
    shutdown: &CancellationToken,
) -> anyhow::Result<LatencyRow> {
    println!(
        "latency: {} samples every {:?} with {background:.0} readings/s background and {readers} API readers …",
        args.samples,
        args.probe_interval * 2
    );
    let rig = gateway_rig(args).await?;
    let gw = rig.gateway.as_ref().context("gateway")?;
    let stop_load = shutdown.child_token();
    let load_task = (background > 0.0).then(|| {
        // Long enough for the whole probe; stopped as soon as the probe is done.
        let duration = args.probe_interval * 2 * args.samples as u32 + Duration::from_secs(30);
        let config = load_config(
            args,
            rig.mosquitto.port,
            args.latency_qos,
            background,
            duration,
        );
        tokio::spawn(load(config, stop_load.clone()))
    });
    let flood = ReaderFlood::start(gw.port, readers, &stop_load);
    if load_task.is_some() || readers > 0 {
        // Let the background load settle first.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let flood_started = Instant::now();
    let flood_before = flood.answered();
    let topic = format!("{PREFIX}/{SCHOOL}/{PROBE_DEVICE}/telemetry");
    let samples = latency::probe(
        rig.mosquitto.port,
        gw.port,
        &topic,
        qos(args.latency_qos),
        args.samples,
        args.probe_interval,
        shutdown,
    )
    .await;
    let reader_requests_per_s =
        (flood.answered() - flood_before) as f64 / flood_started.elapsed().as_secs_f64().max(1e-3);
    stop_load.cancel();
    let reader_errors = flood.stop().await;
    let background_achieved = match load_task {
        Some(task) => match task.await {
            Ok(Ok(report)) => report.achieved_readings_per_s,
            _ => 0.0,
        },
        None => 0.0,
    };
    Ok(LatencyRow {
        points: args.points,
        background,
        background_achieved,
        readers,
        reader_requests_per_s,
        reader_errors,
        samples: samples?,
    })
}

/// API readers in a loop, each over the alarm list (from the core), the list of all alarms and
/// the KPIs (both from the local store), one request at a time, until `stop`.
struct ReaderFlood {
    answered: std::sync::Arc<std::sync::atomic::AtomicU64>,
    failed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ReaderFlood {
    const PATHS: [&'static str; 3] = [
        "/api/v1/alarms",
        "/api/v1/alarms?state=all",
        "/api/v1/alarms/kpis",
    ];

    fn start(port: u16, readers: usize, stop: &CancellationToken) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::Arc;
        let answered = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let tasks = (0..readers)
            .map(|i| {
                let (answered, failed, stop) = (answered.clone(), failed.clone(), stop.clone());
                tokio::spawn(async move {
                    // Readers start at different paths so all three are always in flight.
                    for path in Self::PATHS.iter().cycle().skip(i % Self::PATHS.len()) {
                        let request = tokio::select! {
                            _ = stop.cancelled() => return,
                            r = rig::http_get(port, path) => r,
                        };
                        match request {
                            Ok(_) => answered.fetch_add(1, Ordering::Relaxed),
                            Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                })
            })
            .collect();
        Self {
            answered,
            failed,
            tasks,
        }
    }

    fn answered(&self) -> u64 {
        self.answered.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits for the readers (after their stop token was cancelled); the failed requests.
    async fn stop(self) -> u64 {
        for task in self.tasks {
            let _ = task.await;
        }
        self.failed.load(std::sync::atomic::Ordering::Relaxed)
    }
}

// ---------------------------------------------------------------------------------------------
// Soak

#[derive(Clone, Debug, Default)]
struct SoakRow {
    duration: Duration,
    sensors: usize,
    rate: f64,
    accepted_per_s: f64,
    rss_mib: Vec<f64>,
    peak_rss_mib: f64,
    cpu_s_per_million: f64,
}

impl SoakRow {
    fn stats(&self) -> (f64, f64, f64, f64) {
        let first = self.rss_mib.first().copied().unwrap_or(0.0);
        let last = self.rss_mib.last().copied().unwrap_or(0.0);
        let min = self.rss_mib.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.rss_mib.iter().copied().fold(0.0, f64::max);
        (first, if min.is_finite() { min } else { 0.0 }, max, last)
    }

    fn line(&self) -> String {
        let (first, min, max, last) = self.stats();
        format!(
            "soak {:?}: {} sensors at {:.0} readings/s offered, {:.0} accepted/s; RSS MiB first {first:.1} min {min:.1} max {max:.1} last {last:.1} \
             ({} samples every 10 s); peak RSS {:.1} MiB; CPU {:.2} s per million readings",
            self.duration,
            self.sensors,
            self.rate,
            self.accepted_per_s,
            self.rss_mib.len(),
            self.peak_rss_mib,
            self.cpu_s_per_million
        )
    }
}

async fn soak(args: &BenchArgs, shutdown: &CancellationToken) -> anyhow::Result<SoakRow> {
    // 1 message/s per device.
    let rate = (args.devices * args.points) as f64;
    println!(
        "soak: {} devices × {} points at 1 msg/s each for {:?} …",
        args.devices, args.points, args.soak_duration
    );
    let rig = gateway_rig(args).await?;
    let gw = rig.gateway.as_ref().context("gateway")?;
    let r0 = metric(&rig::gateway_metrics(gw).await, READINGS_TOTAL).unwrap_or(0.0);
    let c0 = gw.cpu_secs();
    let t0 = Instant::now();
    let config = load_config(args, rig.mosquitto.port, 1, rate, args.soak_duration);
    let run = load(config, shutdown.clone());
    tokio::pin!(run);
    let mut rss = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    let report = loop {
        tokio::select! {
            report = &mut run => break report?,
            _ = tick.tick() => {
                // The first tick fires at once: the RSS before the load.
                rss.push(gw.rss_kib().1 as f64 / 1024.0);
            }
        }
    };
    rss.push(gw.rss_kib().1 as f64 / 1024.0);
    let secs = t0.elapsed().as_secs_f64().max(1e-3);
    let r1 = metric(&rig::gateway_metrics(gw).await, READINGS_TOTAL).unwrap_or(0.0);
    let _ = report;
    Ok(SoakRow {
        duration: args.soak_duration,
        sensors: args.devices * args.points,
        rate,
        accepted_per_s: (r1 - r0) / secs,
        peak_rss_mib: gw.rss_kib().0 as f64 / 1024.0,
        cpu_s_per_million: (gw.cpu_secs() - c0) / ((r1 - r0) / 1e6).max(1e-9),
        rss_mib: rss,
    })
}

// ---------------------------------------------------------------------------------------------
// Node-RED

#[derive(Clone, Debug, Default)]
struct NodeRedStep {
    qos: u8,
    points: usize,
    flow: Option<NodeRedFlow>,
    offered_readings_per_s: f64,
    published_readings: u64,
    vm_rows: f64,
    vm_rows_per_s: f64,
    cpu_s_per_million: f64,
    peak_rss_mib: f64,
}

#[derive(Clone, Debug, Default)]
struct NodeRedRow {
    nodered: NodeRedStep,
    gw: E2eRow,
}

impl NodeRedRow {
    fn ratio(&self) -> f64 {
        self.gw.vm_rows_per_s / self.nodered.vm_rows_per_s.max(1e-9)
    }

    fn line(&self) -> String {
        format!(
            "nodered ({}) QoS {} {} reading(s)/msg: {:.0} readings/s offered; Node-RED wrote {:.0} of {} readings into VM at {:.0}/s \
             (CPU {:.2} s per million, peak RSS {:.0} MiB); gateway {:.0}/s; gateway/Node-RED = {:.1}",
            self.nodered.flow.map_or("?", NodeRedFlow::label),
            self.nodered.qos,
            self.nodered.points,
            self.nodered.offered_readings_per_s,
            self.nodered.vm_rows,
            self.nodered.published_readings,
            self.nodered.vm_rows_per_s,
            self.nodered.cpu_s_per_million,
            self.nodered.peak_rss_mib,
            self.gw.vm_rows_per_s,
            self.ratio()
        )
    }
}

async fn nodered_step(
    args: &BenchArgs,
    q: u8,
    rate: f64,
    flow: NodeRedFlow,
    shutdown: &CancellationToken,
) -> anyhow::Result<NodeRedStep> {
    println!(
        "nodered ({}) QoS {q}: {rate:.0} readings/s for {:?} …",
        flow.label(),
        args.duration
    );
    let nodered_dir = std::fs::canonicalize(&args.nodered_dir).with_context(|| {
        format!(
            "{} not found (run from the repository root or pass --nodered-dir)",
            args.nodered_dir.display()
        )
    })?;
    let red_js = nodered_dir.join("node_modules/node-red/red.js");
    anyhow::ensure!(
        red_js.exists(),
        "{} missing: run `npm ci` in {}",
        red_js.display(),
        nodered_dir.display()
    );
    let dir = TempDir::new("nodered")?;
    let mosquitto = rig::mosquitto(dir.path()).await?;
    let vm = rig::victoria_metrics(dir.path()).await?;
    // The user dir is private; its node_modules is the installed one (for the influxdb nodes).
    let user_dir = dir.path().join("user");
    std::fs::create_dir_all(&user_dir)?;
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        nodered_dir.join("node_modules"),
        user_dir.join("node_modules"),
    )
    .context("link node_modules")?;
    let port = rig::free_port()?;
    let env = [
        ("BENCH_NODERED_PORT", port.to_string()),
        ("BENCH_NODERED_USERDIR", user_dir.display().to_string()),
        ("BENCH_MQTT_PORT", mosquitto.port.to_string()),
        ("BENCH_MQTT_QOS", q.to_string()),
        ("BENCH_MQTT_TOPIC", format!("{PREFIX}/#")),
        ("BENCH_VM_PORT", vm.port.to_string()),
        ("BENCH_NODERED_FLOW", flow.file().to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let node_red = rig::node_red(
        dir.path(),
        &red_js,
        &nodered_dir.join("settings.js"),
        port,
        &env,
    )
    .await?;
    let rig = Rig {
        gateway: None,
        node_red: Some(node_red),
        vm,
        mosquitto,
        _dir: dir,
    };
    let nr = rig.node_red.as_ref().context("node-red")?;
    let rows0 = rig::vm_influx_rows(&rig.vm).await;
    let c0 = nr.cpu_secs();
    let t0 = Instant::now();
    let config = load_config(args, rig.mosquitto.port, q, rate, args.duration);
    let report = load(config, shutdown.clone()).await?;
    let vm = &rig.vm;
    let (rows, rows_at) = drain(
        rows0 + report.readings_sent as f64,
        Duration::from_secs(5),
        move || rig::vm_influx_rows(vm),
    )
    .await;
    let cpu = nr.cpu_secs() - c0;
    let (hwm, _) = nr.rss_kib();
    let got = rows - rows0;
    Ok(NodeRedStep {
        qos: q,
        points: args.points,
        flow: Some(flow),
        offered_readings_per_s: rate,
        published_readings: report.readings_sent,
        vm_rows: got,
        vm_rows_per_s: got / rows_at.duration_since(t0).as_secs_f64().max(1e-3),
        cpu_s_per_million: cpu / (got / 1e6).max(1e-9),
        peak_rss_mib: hwm as f64 / 1024.0,
    })
}

// ---------------------------------------------------------------------------------------------
// Results

#[derive(Default)]
struct Results {
    broker: Vec<BrokerResult>,
    e2e: Vec<E2eRow>,
    latency: Vec<LatencyRow>,
    soak: Vec<SoakRow>,
    nodered: Vec<NodeRedRow>,
}

impl Results {
    /// Markdown tables of everything measured, to paste into the README.
    fn markdown(&self, args: &BenchArgs) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Load: {} devices × {:?} points per JSON message, {} publisher connections (rumqttc), loopback; {} at the end.\n",
            args.devices, args.points_per_message, args.connections, load_average()
        );
        if !self.broker.is_empty() {
            let _ = writeln!(
                out,
                "Broker limit (Mosquitto → mosquitto_sub, a C subscriber):\n"
            );
            let _ = writeln!(out, "| QoS | readings/msg | publisher msgs/s | delivered msgs/s | readings/s | delivered/published | mosquitto CPU |");
            let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
            for b in &self.broker {
                if b.measured {
                    let _ = writeln!(
                        out,
                        "| {} | {} | {:.0} | {:.0} | {:.0} | {}/{} | {:.0} % |",
                        b.qos,
                        b.points,
                        b.published_msgs_per_s,
                        b.delivered_msgs_per_s,
                        b.delivered_msgs_per_s * b.points as f64,
                        b.delivered,
                        b.published,
                        b.mosquitto_cpu_share * 100.0
                    );
                } else {
                    let _ = writeln!(
                        out,
                        "| {} | {} | – | {:.0} (given) | {:.0} | – | – |",
                        b.qos,
                        b.points,
                        b.delivered_msgs_per_s,
                        b.delivered_msgs_per_s * b.points as f64
                    );
                }
            }
            out.push('\n');
        }
        if !self.e2e.is_empty() {
            let _ = writeln!(out, "End to end (publisher → Mosquitto → gateway → local history + VictoriaMetrics), {:?} per step:\n", args.duration);
            let _ = writeln!(out, "| QoS | readings/msg | broker limit msgs/s | offered | accepted readings/s | msgs/s | ratio to broker limit | backlog at end | alarm p50/p99/max | broker p99 | gateway µs CPU / msg | gateway CPU-s / M readings | mosquitto CPU-s / M | peak RSS | in VM / published |");
            let _ = writeln!(
                out,
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            );
            for e in &self.e2e {
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.0} | {:.0} % ({:.0}/s) | {:.0} | {:.0} | {:.2} | {:.0} ({}) | {} | {:.1} ms | {:.1} | {:.2} | {:.2} | {:.0} MiB | {:.0}/{} |",
                    e.qos,
                    e.load.points_per_message,
                    e.limit_msgs_per_s,
                    e.fraction * 100.0,
                    e.offered_readings_per_s,
                    e.accepted_per_s,
                    e.msgs_per_s(),
                    e.ratio(),
                    e.backlog_at_end,
                    if e.keeps_up() { "keeps up" } else { "behind" },
                    e.alarm_text(),
                    latency::percentiles(&e.alarm.broker_ms).1,
                    e.cpu_us_per_msg,
                    e.cpu_s_per_million,
                    e.mosquitto_cpu_s_per_million,
                    e.peak_rss_mib,
                    e.vm_rows,
                    e.published_readings
                );
            }
            out.push('\n');
        }
        if !self.latency.is_empty() {
            let _ = writeln!(out, "Alarm latency (publish → `alarm` event on the SSE stream) and broker latency (publish → plain rumqttc subscriber), QoS {}:\n", args.latency_qos);
            let _ = writeln!(out, "| readings/msg | beside the probe | samples | alarm p50 | alarm p99 | alarm max | broker p50 | broker p99 | broker max |");
            let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|---:|");
            for l in &self.latency {
                let (a50, a99, amax) = latency::percentiles(&l.samples.alarm_ms);
                let (b50, b99, bmax) = latency::percentiles(&l.samples.broker_ms);
                let _ = writeln!(
                    out,
                    "| {} | {} | {}{} | {a50:.1} ms | {a99:.1} ms | {amax:.1} ms | {b50:.1} ms | {b99:.1} ms | {bmax:.1} ms |",
                    l.points,
                    l.background_label(),
                    l.samples.alarm_ms.len(),
                    if l.samples.alarm_missing > 0 { format!(" ({} missing)", l.samples.alarm_missing) } else { String::new() },
                );
            }
            out.push('\n');
        }
        for s in &self.soak {
            let (first, min, max, last) = s.stats();
            let _ = writeln!(
                out,
                "Soak ({} sensors at 1 reading/s each, {:?}, RSS every 10 s):\n",
                s.sensors, s.duration
            );
            let series: Vec<String> = s.rss_mib.iter().map(|r| format!("{r:.1}")).collect();
            let _ = writeln!(out, "RSS series (MiB): {}\n", series.join(" "));
            let _ = writeln!(out, "| accepted readings/s | RSS first | min | max | last | peak (VmHWM) | CPU-s / M readings |");
            let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|");
            let _ = writeln!(
                out,
                "| {:.0} | {first:.1} MiB | {min:.1} MiB | {max:.1} MiB | {last:.1} MiB | {:.1} MiB | {:.2} |\n",
                s.accepted_per_s, s.peak_rss_mib, s.cpu_s_per_million
            );
        }
        if !self.nodered.is_empty() {
            let _ = writeln!(out, "Node-RED (mqtt in → function threshold → influxdb out, into VictoriaMetrics) vs the gateway, same load, {:?}:\n", args.duration);
            let _ = writeln!(out, "| flow | QoS | readings/msg | offered readings/s | Node-RED readings/s into VM | in VM / published | CPU-s / M | µs CPU / msg | peak RSS | gateway readings/s into VM | gateway µs CPU / msg | gateway / Node-RED |");
            let _ = writeln!(
                out,
                "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            );
            for n in &self.nodered {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {:.0} | {:.0} | {:.0}/{} | {:.2} | {:.1} | {:.0} MiB | {:.0} | {:.1} | {:.1} |",
                    n.nodered.flow.map_or("?", NodeRedFlow::label),
                    n.nodered.qos,
                    n.nodered.points,
                    n.nodered.offered_readings_per_s,
                    n.nodered.vm_rows_per_s,
                    n.nodered.vm_rows,
                    n.nodered.published_readings,
                    n.nodered.cpu_s_per_million,
                    n.nodered.cpu_s_per_million * n.nodered.points as f64,
                    n.nodered.peak_rss_mib,
                    n.gw.vm_rows_per_s,
                    n.gw.cpu_us_per_msg,
                    n.ratio()
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_config_lists_the_load_devices_and_the_probe() {
        let text = gateway_toml(Path::new("/tmp/x"), 1, 2, 3, 3);
        assert!(text.contains("id = \"dev-000002\""));
        assert!(!text.contains("dev-000003"));
        assert!(text.contains(&format!("id = \"{PROBE_DEVICE}\"")));
        assert!(text.contains("url = \"http://127.0.0.1:3\""));
        let profiles = profiles_toml(2);
        assert!(profiles.contains("[profiles.bench.points.p1]"));
        assert!(profiles.contains("id = \"p0_high\""));
        assert!(!profiles.contains("p2"));
    }

    #[test]
    fn a_given_broker_limit_is_read_per_qos() {
        let cli = crate::cli::Cli::try_parse_from([
            "campusguard-sim",
            "bench",
            "e2e",
            "--broker-limit",
            "0=85000,1=25000",
        ]);
        let Ok(crate::cli::Cli {
            command: crate::cli::Command::Bench(args),
        }) = cli
        else {
            panic!("bench e2e did not parse");
        };
        assert_eq!(given_limit(&args, 1).ok().flatten(), Some(25000.0));
        assert_eq!(given_limit(&args, 0).ok().flatten(), Some(85000.0));
    }

    #[test]
    fn both_message_shapes_and_both_node_red_flows_are_asked_for_by_name() {
        let cli = crate::cli::Cli::try_parse_from([
            "campusguard-sim",
            "bench",
            "e2e",
            "--points-per-message",
            "1,10",
            "--nodered-flow",
            "batch",
        ]);
        let Ok(crate::cli::Cli {
            command: crate::cli::Command::Bench(args),
        }) = cli
        else {
            panic!("bench e2e did not parse");
        };
        assert_eq!(args.points_per_message, vec![1, 10]);
        assert_eq!(args.nodered_flow, vec![NodeRedFlow::Batch]);
        assert_eq!(NodeRedFlow::Batch.file(), "flows-batch.json");
        // The old spelling still works.
        let old =
            crate::cli::Cli::try_parse_from(["campusguard-sim", "bench", "e2e", "--points", "5"]);
        let Ok(crate::cli::Cli {
            command: crate::cli::Command::Bench(args),
        }) = old
        else {
            panic!("--points did not parse");
        };
        assert_eq!(args.points_per_message, vec![5]);
    }

    #[test]
    fn the_batch_flow_joins_readings_before_the_influxdb_batch_node() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/nodered/flows-batch.json");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let flow: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let nodes = flow.as_array().cloned().unwrap_or_default();
        let of_type = |t: &str| nodes.iter().find(|n| n["type"] == t).cloned();
        let join = of_type("join").unwrap_or_default();
        assert_eq!(
            join["wires"][0][0], "bench-out",
            "join feeds the batch node"
        );
        assert_eq!(
            of_type("influxdb batch").unwrap_or_default()["id"],
            "bench-out"
        );
        assert!(
            of_type("influxdb out").is_none(),
            "no per-message writes in the batch flow"
        );
    }

    use clap::Parser as _;
}

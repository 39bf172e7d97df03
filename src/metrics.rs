//! Gateway metrics (Prometheus text at `/metrics`) and the logging of notable events, together:
//! one method per event logs and counts. Labels are low-cardinality (source, reason, class),
//! never per sensor.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tracing::warn;

use crate::actions::ActionStats;
use crate::alarms::{AlarmEvent, Transition};
use crate::ingest::modbus::ModbusStats;
use crate::ingest::mqtt::decode::Reject;
use crate::model::{AlarmClass, Source};
use crate::rules::EngineStats;
use crate::store::timeseries::stats::TimeseriesStats;

type Labels = Vec<(String, String)>;

/// Every counter and gauge of the gateway. Hot-path counters are resolved once at start, so
/// counting costs one atomic add.
pub struct Metrics {
    registry: Registry,
    readings_mqtt: Counter,
    readings_modbus: Counter,
    rejected: HashMap<Reject, Counter>,
    alarms_raised: HashMap<AlarmClass, Counter>,
    alarm_transitions: Counter,
    /// Notifications by channel and result (sent, retry, rate_limited, failed).
    notifications: Family<Labels, Counter>,
    /// What the rules engine did with the readings it was given (its [`EngineStats`]).
    rules_readings: RulesReadings,
    pub unregistered_readings: Counter,
    pub alarm_publish_dropped: Counter,
    pub mqtt_connected: Gauge,
    pub mqtt_connection_errors: Counter,
    pub mqtt_acks_failed: Counter,
    pub history_rows_written: Counter,
    pub history_write_errors: Counter,
    pub journal_write_errors: Counter,
    /// Readings evaluated by the rules but not kept in the local history because it could not
    /// write or keep up (their acks are sent anyway, so ingest and alarms never stall).
    pub history_shed_readings: Counter,
    /// Long-running tasks that ended or panicked, by task (each end counts, restarted or not).
    task_restarts: Family<Labels, Counter>,
    /// The gateway's own faults (history, journal, tasks), for the core and `/readyz`.
    pub health: Arc<crate::health::Health>,
    pub sse_clients: Gauge,
    /// Open HTTP connections, and the cap on them.
    pub http_connections: Gauge,
    pub http_max_connections: Gauge,
    /// Connections closed because their request header did not arrive in time.
    pub http_header_timeouts: Counter,
    pub http_accept_errors: Counter,
    /// Console logins: passwords checked (`success`, `failure`) and attempts refused before
    /// any check (`throttled`).
    login_attempts: LoginAttempts,
    /// At most one log line per 10 s about throttled logins.
    pub login_log: RateLimitedLog,
    /// Messages waiting in the ingest → core channel (sampled at scrape).
    pub ingest_queue_depth: Gauge,
    /// Batches waiting in the core → history channel (sampled at scrape).
    pub history_queue_depth: Gauge,
    pub active_alarms: Gauge,
    reject_log: RateLimitedLog,
    /// Counters of the time-series sink (rendered at scrape).
    pub timeseries: Arc<TimeseriesStats>,
    /// Counters of the Modbus pollers (rendered at scrape).
    pub modbus: Arc<ModbusStats>,
    /// Counters of actions (rendered at scrape, as `modbus_actions_*`).
    pub actions: Arc<ActionStats>,
    /// When the pipeline core last turned its loop (a stalled core stops beating).
    pub core_heartbeat: Heartbeat,
    /// When these metrics were made (≈ process start), for `process_start_time_seconds`.
    started: std::time::SystemTime,
}

/// The time of a task's last loop turn, on the monotonic clock: the task beats, a watchdog
/// (systemd's, `/readyz`) reads how long ago that was. Cheap enough to beat every turn.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    start: std::time::Instant,
    /// Milliseconds after `start` of the last beat.
    last_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl Heartbeat {
    pub fn new() -> Self {
        Self {
            start: std::time::Instant::now(),
            last_ms: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }

    pub fn beat(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long ago the last beat was (since creation when it never beat).
    pub fn age(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(std::sync::atomic::Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("campusguard");
        let readings = Family::<Labels, Counter>::default();
        registry.register("readings", "Readings accepted, by source", readings.clone());
        let source = |s: Source| {
            readings
                .get_or_create(&vec![("source".into(), s.as_str().into())])
                .clone()
        };
        let readings_mqtt = source(Source::Mqtt);
        let readings_modbus = source(Source::Modbus);

        let rejected_family = Family::<Labels, Counter>::default();
        registry.register(
            "rejected",
            "Messages or points rejected at ingest, by reason",
            rejected_family.clone(),
        );
        let rejected = Reject::ALL
            .iter()
            .map(|r| {
                let c = rejected_family
                    .get_or_create(&vec![("reason".into(), r.as_str().into())])
                    .clone();
                (*r, c)
            })
            .collect();

        let raised_family = Family::<Labels, Counter>::default();
        registry.register(
            "alarms_raised",
            "Alarms raised, by class",
            raised_family.clone(),
        );
        let alarms_raised = AlarmClass::ALL
            .iter()
            .map(|c| {
                let counter = raised_family
                    .get_or_create(&vec![("class".into(), c.as_str().into())])
                    .clone();
                (*c, counter)
            })
            .collect();

        let notifications = Family::<Labels, Counter>::default();
        registry.register(
            "notifications",
            "Notifications by channel and result: sent, retry (failed, tried again), \
             rate_limited (the channel said too fast), failed (given up or refused)",
            notifications.clone(),
        );

        let rules_family = Family::<Labels, Gauge>::default();
        registry.register(
            "rules_readings",
            "Readings the rules engine was given since start, by outcome",
            rules_family.clone(),
        );
        let outcome = |o: &str| {
            rules_family
                .get_or_create(&vec![("outcome".into(), o.into())])
                .clone()
        };
        let rules_readings = RulesReadings {
            evaluated: outcome("evaluated"),
            unregistered: outcome("unregistered"),
            unknown_point: outcome("unknown_point"),
            wrong_type: outcome("wrong_type"),
            out_of_range: outcome("out_of_range"),
        };

        let logins = Family::<Labels, Counter>::default();
        registry.register(
            "login_attempts",
            "Console logins by result: success and failure had their password checked, throttled were refused before",
            logins.clone(),
        );
        let login = |r: &str| {
            logins
                .get_or_create(&vec![("result".into(), r.into())])
                .clone()
        };
        let login_attempts = LoginAttempts {
            success: login("success"),
            failure: login("failure"),
            throttled: login("throttled"),
        };

        let task_restarts = Family::<Labels, Counter>::default();
        registry.register(
            "task_restarts",
            "Long-running tasks that ended or panicked, by task",
            task_restarts.clone(),
        );
        let mut counter = |name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let unregistered_readings = counter(
            "unregistered_readings",
            "Readings of devices neither in config nor announced by meta",
        );
        let alarm_transitions = counter("alarm_transitions", "Alarm state transitions journaled");
        let alarm_publish_dropped = counter(
            "alarm_publish_dropped",
            "Alarm events not published over MQTT because its queue was full",
        );
        let mqtt_connection_errors = counter("mqtt_connection_errors", "MQTT connection errors");
        let mqtt_acks_failed = counter(
            "mqtt_acks_failed",
            "PUBACKs not sent because the connection was gone (the broker redelivers)",
        );
        let history_rows_written =
            counter("history_rows_written", "Readings written to local history");
        let history_write_errors = counter("history_write_errors", "Failed local-history writes");
        let journal_write_errors = counter("journal_write_errors", "Failed alarm-journal writes");
        let history_shed_readings = counter(
            "history_shed_readings",
            "Readings evaluated but not kept in the local history (it could not write or keep up)",
        );
        let http_header_timeouts = counter(
            "http_header_timeouts",
            "HTTP connections closed because a request header did not arrive in time",
        );
        let http_accept_errors = counter("http_accept_errors", "Failed HTTP accepts");

        let mut gauge = |name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        Self {
            mqtt_connected: gauge("mqtt_connected", "1 while connected to the MQTT broker"),
            sse_clients: gauge("sse_clients", "Connected alarm-stream clients"),
            http_connections: gauge("http_connections", "Open HTTP connections"),
            http_max_connections: gauge(
                "http_max_connections",
                "Most HTTP connections open at once (beyond it new ones wait to be accepted)",
            ),
            ingest_queue_depth: gauge("ingest_queue_depth", "Messages waiting for the core"),
            history_queue_depth: gauge(
                "history_queue_depth",
                "Batches waiting for the history writer",
            ),
            active_alarms: gauge("active_alarms", "Alarms not yet cleared"),
            registry,
            readings_mqtt,
            readings_modbus,
            rejected,
            alarms_raised,
            alarm_transitions,
            notifications,
            rules_readings,
            unregistered_readings,
            alarm_publish_dropped,
            mqtt_connection_errors,
            mqtt_acks_failed,
            history_rows_written,
            history_write_errors,
            journal_write_errors,
            history_shed_readings,
            task_restarts,
            health: Arc::new(crate::health::Health::new()),
            http_header_timeouts,
            http_accept_errors,
            login_attempts,
            login_log: RateLimitedLog::new(Duration::from_secs(10)),
            reject_log: RateLimitedLog::new(Duration::from_secs(10)),
            timeseries: Arc::new(TimeseriesStats::default()),
            modbus: Arc::new(ModbusStats::default()),
            actions: Arc::new(ActionStats::default()),
            core_heartbeat: Heartbeat::new(),
            started: std::time::SystemTime::now(),
        }
    }

    fn modbus_lines(&self) -> Vec<(&'static str, &'static str, &'static str, f64)> {
        let m = self.modbus.snapshot();
        let get = |counter: &std::sync::atomic::AtomicU64| {
            counter.load(std::sync::atomic::Ordering::Relaxed) as f64
        };
        vec![
            (
                "modbus_requests",
                "counter",
                "Modbus read requests sent",
                m.requests as f64,
            ),
            (
                "modbus_timeouts",
                "counter",
                "Modbus requests that timed out",
                m.timeouts as f64,
            ),
            (
                "modbus_exceptions",
                "counter",
                "Modbus exception answers",
                m.exceptions as f64,
            ),
            (
                "modbus_decode_errors",
                "counter",
                "Modbus points that did not decode",
                m.decode_errors as f64,
            ),
            (
                "modbus_reconnects",
                "counter",
                "Modbus reconnections",
                m.reconnects as f64,
            ),
            (
                "modbus_failed_polls",
                "counter",
                "Modbus device polls that failed",
                m.failed_polls as f64,
            ),
            (
                "modbus_polls",
                "counter",
                "Modbus device polls",
                m.polls as f64,
            ),
            (
                "modbus_writes",
                "counter",
                "Modbus writes of actions done",
                m.writes as f64,
            ),
            (
                "modbus_failed_writes",
                "counter",
                "Modbus writes of actions that failed",
                m.failed_writes as f64,
            ),
            (
                "modbus_actions_unmatched",
                "counter",
                "Raised alarms whose rule names an action the device does not configure",
                get(&self.actions.unmatched),
            ),
            (
                "modbus_actions_rejected",
                "counter",
                "Action runs refused because too many were running",
                get(&self.actions.rejected),
            ),
        ]
    }

    pub fn reading_accepted(&self, source: Source, n: u64) {
        match source {
            Source::Mqtt => self.readings_mqtt.inc_by(n),
            Source::Modbus => self.readings_modbus.inc_by(n),
        };
    }

    pub fn readings_total(&self, source: Source) -> u64 {
        match source {
            Source::Mqtt => self.readings_mqtt.get(),
            Source::Modbus => self.readings_modbus.get(),
        }
    }

    /// Counts a rejection and logs it, at most once per reason every 10 s (with how many were
    /// suppressed), naming the topic.
    pub fn reject(&self, reason: Reject, topic: &str) {
        if let Some(c) = self.rejected.get(&reason) {
            c.inc();
        }
        if let Some(suppressed) = self.reject_log.allow(reason.as_str()) {
            warn!(
                topic,
                reason = reason.as_str(),
                suppressed,
                "rejected MQTT message"
            );
        }
    }

    pub fn rejected_total(&self, reason: Reject) -> u64 {
        self.rejected.get(&reason).map_or(0, |c| c.get())
    }

    /// Counts an alarm transition once it is journaled (and, when it raised an alarm, the
    /// alarm by class). The core calls it for every transition, whatever caused it.
    pub fn alarm_journaled(&self, event: &AlarmEvent) {
        self.alarm_transitions.inc();
        if event.transition == Transition::Raised {
            if let Some(c) = self.alarms_raised.get(&event.alarm.class) {
                c.inc();
            }
        }
    }

    /// Counts `n` notifications of `channel` with `result` (one label set per configured
    /// channel and result: low cardinality).
    pub fn notification(&self, channel: &str, result: &str, n: u64) {
        if n > 0 {
            self.notifications
                .get_or_create(&vec![
                    ("channel".into(), channel.into()),
                    ("result".into(), result.into()),
                ])
                .inc_by(n);
        }
    }

    /// Publishes the rules engine's counts (the core samples them after every round).
    pub fn rules_stats(&self, stats: &EngineStats) {
        let r = &self.rules_readings;
        for (gauge, value) in [
            (&r.evaluated, stats.readings_evaluated),
            (&r.unregistered, stats.readings_unregistered),
            (&r.unknown_point, stats.readings_unknown_point),
            (&r.wrong_type, stats.readings_wrong_type),
            (&r.out_of_range, stats.readings_out_of_range),
        ] {
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        }
    }

    /// Prometheus text exposition (OpenMetrics).
    /// Counts an end or panic of `task` (see [`crate::supervisor`]).
    pub fn task_ended(&self, task: &str) {
        self.task_restarts
            .get_or_create(&vec![("task".into(), task.into())])
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        // Stats kept outside the registry go before the closing `# EOF`.
        let body_end = out.rfind("# EOF").unwrap_or(out.len());
        out.truncate(body_end);
        let ts = self.timeseries.snapshot();
        let oldest = ts.oldest_spooled_age.map_or(0.0, |d| d.as_secs_f64());
        for (name, kind, help, value) in [
            (
                "timeseries_lines_written",
                "counter",
                "Lines the time-series store accepted",
                ts.lines_written as f64,
            ),
            (
                "timeseries_batches_ok",
                "counter",
                "Batches written to the time-series store",
                ts.batches_ok as f64,
            ),
            (
                "timeseries_batches_failed",
                "counter",
                "Batch writes that failed and were retried or spooled",
                ts.batches_failed as f64,
            ),
            (
                "timeseries_batches_rejected",
                "counter",
                "Batches the store refused as bad data (moved aside)",
                ts.batches_rejected as f64,
            ),
            (
                "timeseries_batches_replayed",
                "counter",
                "Spooled batches written later",
                ts.batches_replayed as f64,
            ),
            (
                "timeseries_dropped_lines",
                "counter",
                "Lines dropped because the spool was full (drop_oldest)",
                ts.dropped_lines as f64,
            ),
            (
                "timeseries_spool_bytes",
                "gauge",
                "Bytes waiting in the disk spool",
                ts.spool_bytes as f64,
            ),
            (
                "timeseries_spool_oldest_age_seconds",
                "gauge",
                "Age of the oldest spooled batch",
                oldest,
            ),
            (
                "core_heartbeat_age_seconds",
                "gauge",
                "Time since the pipeline core last turned its loop (it turns at least once per rules.tick)",
                self.core_heartbeat.age().as_secs_f64(),
            ),
        ]
        .into_iter()
        .chain(self.modbus_lines())
        {
            let suffix = if kind == "counter" { "_total" } else { "" };
            out.push_str(&format!(
                "# HELP campusguard_{name} {help}.\n# TYPE campusguard_{name} {kind}\ncampusguard_{name}{suffix} {value}\n"
            ));
        }
        out.push_str(&build_info());
        out.push_str(&process_metrics(self.started));
        out.push_str("# EOF\n");
        out
    }
}

/// `campusguard_build_info{version,profile}` = 1: which build is running.
fn build_info() -> String {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    format!(
        "# HELP campusguard_build_info The running build.\n# TYPE campusguard_build_info gauge\ncampusguard_build_info{{version=\"{}\",profile=\"{profile}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// The standard `process_*` metrics, read from `/proc/self` at scrape (Linux; a value that
/// cannot be read is left out rather than reported as 0).
fn process_metrics(started: std::time::SystemTime) -> String {
    let mut out = String::new();
    let mut line = |name: &str, kind: &str, help: &str, value: Option<f64>| {
        if let Some(value) = value {
            let suffix = if kind == "counter" { "_total" } else { "" };
            out.push_str(&format!(
                "# HELP {name} {help}.\n# TYPE {name} {kind}\n{name}{suffix} {value}\n"
            ));
        }
    };
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    // Fields after the command name (which may hold spaces) in `(...)`: state is index 0,
    // utime 11, stime 12, vsize 20 (proc(5) numbers them 3, 14, 15, 23).
    let fields: Vec<&str> = stat
        .as_deref()
        .and_then(|s| s.rsplit_once(')'))
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    // USER_HZ is 100 on every Linux architecture we ship for.
    let cpu = field(11).zip(field(12)).map(|(u, s)| (u + s) / 100.0);
    line(
        "process_cpu_seconds",
        "counter",
        "User and system CPU time",
        cpu,
    );
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    line(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory",
        rss_kb.map(|kb| kb * 1024.0),
    );
    line(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory",
        field(20),
    );
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|dir| dir.count() as f64);
    line(
        "process_open_fds",
        "gauge",
        "Open file descriptors",
        open_fds,
    );
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse::<f64>().ok())
        });
    line(
        "process_max_fds",
        "gauge",
        "Limit on open file descriptors",
        max_fds,
    );
    let start = started
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs_f64());
    line(
        "process_start_time_seconds",
        "gauge",
        "Start time since the Unix epoch",
        start,
    );
    out
}

/// How a console login attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginResult {
    Success,
    Failure,
    Throttled,
}

struct LoginAttempts {
    success: Counter,
    failure: Counter,
    throttled: Counter,
}

impl Metrics {
    /// Counts a login attempt by how it ended.
    pub fn login_attempt(&self, result: LoginResult) {
        let l = &self.login_attempts;
        match result {
            LoginResult::Success => l.success.inc(),
            LoginResult::Failure => l.failure.inc(),
            LoginResult::Throttled => l.throttled.inc(),
        };
    }
}

/// The `rules_readings` gauges, one per outcome.
struct RulesReadings {
    evaluated: Gauge,
    unregistered: Gauge,
    unknown_point: Gauge,
    wrong_type: Gauge,
    out_of_range: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Lets a log line through at most once per `interval` per key and reports how many were held
/// back in between.
pub struct RateLimitedLog {
    interval: Duration,
    state: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl RateLimitedLog {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(suppressed)` when the caller should log now.
    pub fn allow(&self, key: &'static str) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match state.get_mut(key) {
            Some((last, suppressed)) if now.duration_since(*last) < self.interval => {
                *suppressed += 1;
                None
            }
            Some((last, suppressed)) => {
                let n = *suppressed;
                *last = now;
                *suppressed = 0;
                Some(n)
            }
            None => {
                state.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarms::AlarmBook;
    use crate::model::{ConditionChange, SensorId, Severity, Value};

    fn line(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
    }

    #[test]
    fn a_heartbeat_ages_until_the_next_beat() {
        let heartbeat = Heartbeat::new();
        std::thread::sleep(Duration::from_millis(30));
        assert!(heartbeat.age() >= Duration::from_millis(30));
        heartbeat.beat();
        assert!(heartbeat.age() < Duration::from_millis(30));
        // Clones share the beat (the core beats, the watchdog reads).
        let reader = heartbeat.clone();
        std::thread::sleep(Duration::from_millis(30));
        assert!(reader.age() >= Duration::from_millis(30));
        heartbeat.beat();
        assert!(reader.age() < Duration::from_millis(30));
    }

    #[test]
    fn the_rules_engine_counts_are_exported_as_gauges_by_outcome() {
        let metrics = Metrics::new();
        metrics.rules_stats(&EngineStats {
            readings_evaluated: 7,
            readings_wrong_type: 2,
            ..EngineStats::default()
        });
        let text = metrics.render();
        let gauge = |o: &str| {
            line(
                &text,
                &format!("campusguard_rules_readings{{outcome=\"{o}\"}}"),
            )
        };
        assert_eq!(gauge("evaluated"), Some(7.0), "{text}");
        assert_eq!(gauge("wrong_type"), Some(2.0));
        assert_eq!(gauge("out_of_range"), Some(0.0));
        assert!(
            text.contains("# TYPE campusguard_rules_readings gauge"),
            "{text}"
        );
    }

    #[test]
    fn a_raised_alarm_is_counted_once_by_class_and_each_transition_once() {
        let metrics = Metrics::new();
        let mut book = AlarmBook::default();
        let change = |severity| ConditionChange {
            sensor: SensorId::new("xhsy", "hd-1", "temp_c"),
            rule: "heat_fixed".into(),
            class: AlarmClass::Fire,
            severity,
            value: Some(Value::Number(60.0)),
            threshold: Some(57.0),
            reading_ts_ms: 1000,
            message: "temp_c 60 ≥ 57".into(),
        };
        let raised = book.apply(&change(Some(Severity::Alarm)), 10_000, false);
        let cleared = book.apply(&change(None), 10_001, false);
        for event in raised.iter().chain(&cleared) {
            metrics.alarm_journaled(event);
        }
        let text = metrics.render();
        let raised = line(&text, "campusguard_alarms_raised_total{class=\"fire\"}");
        assert_eq!(raised, Some(1.0), "{text}");
        assert_eq!(
            line(&text, "campusguard_alarm_transitions_total"),
            Some(2.0)
        );
    }

    #[test]
    fn metrics_carry_build_info_and_this_process_s_numbers() {
        let text = Metrics::new().render();
        let version = env!("CARGO_PKG_VERSION");
        assert!(
            text.contains(&format!("campusguard_build_info{{version=\"{version}\"")),
            "{text}"
        );
        let rss = line(&text, "process_resident_memory_bytes ").unwrap();
        assert!(rss > 1_000_000.0, "{rss}");
        let open = line(&text, "process_open_fds ").unwrap();
        let max = line(&text, "process_max_fds ").unwrap();
        assert!(open >= 3.0 && max >= open, "{open} {max}");
        assert!(line(&text, "process_cpu_seconds_total ").unwrap() >= 0.0);
        assert!(line(&text, "process_start_time_seconds ").unwrap() > 1.7e9);
        assert!(line(&text, "campusguard_core_heartbeat_age_seconds ").unwrap() >= 0.0);
        assert!(text.ends_with("# EOF\n"));
    }
}

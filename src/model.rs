//! The data types every stage shares: a [`Reading`] flows from ingest through the pipeline to the
//! rules, the live cache and the stores; a [`ConditionChange`] flows from the rules to the alarms.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A sensor is named by its path `<school>/<device>/<point>` (device protocol v1).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SensorId {
    pub school: Arc<str>,
    pub device: Arc<str>,
    pub point: Arc<str>,
}

impl SensorId {
    pub fn new(school: &str, device: &str, point: &str) -> Self {
        Self {
            school: school.into(),
            device: device.into(),
            point: point.into(),
        }
    }

    /// The device-level pseudo sensor `<school>/<device>/status` that carries device faults
    /// (offline, silent).
    pub fn device_status(school: &Arc<str>, device: &Arc<str>) -> Self {
        Self {
            school: school.clone(),
            device: device.clone(),
            point: STATUS_POINT.into(),
        }
    }

    /// Parses `school/device/point`; `None` unless there are exactly three non-empty parts.
    pub fn parse(path: &str) -> Option<Self> {
        let mut parts = path.split('/');
        let (school, device, point) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || school.is_empty() || device.is_empty() || point.is_empty() {
            return None;
        }
        Some(Self::new(school, device, point))
    }

    pub fn device_key(&self) -> DeviceKey {
        DeviceKey {
            school: self.school.clone(),
            device: self.device.clone(),
        }
    }
}

/// The point name of the device-level pseudo sensor.
pub const STATUS_POINT: &str = "status";

/// Longest school or device id, in characters (device protocol v1).
pub const MAX_ID_CHARS: usize = 64;

/// A school or device id (one MQTT topic level, one part of a sensor path): 1–64 characters of
/// `[A-Za-z0-9_-]` (device protocol v1). Ids come from topics anyone on the broker can publish
/// to, and end up in logs, file names of exports, metrics and the console: nothing else fits.
pub fn valid_name(s: &str) -> bool {
    (1..=MAX_ID_CHARS).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A point name of device protocol v1: 1–64 chars of `[A-Za-z0-9_-]`, and not the reserved
/// `ts` or `status`.
pub fn valid_point(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name != "ts"
        && name != STATUS_POINT
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl fmt::Display for SensorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.school, self.device, self.point)
    }
}

impl Serialize for SensorId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SensorId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let path = std::borrow::Cow::<'de, str>::deserialize(d)?;
        SensorId::parse(&path)
            .ok_or_else(|| serde::de::Error::custom(format!("bad sensor path `{path}`")))
    }
}

/// A device is named by `<school>/<device>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceKey {
    pub school: Arc<str>,
    pub device: Arc<str>,
}

impl DeviceKey {
    pub fn new(school: &str, device: &str) -> Self {
        Self {
            school: school.into(),
            device: device.into(),
        }
    }
}

impl fmt::Display for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.school, self.device)
    }
}

impl Serialize for DeviceKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A point's value: a number or a boolean. Numbers are always finite (ingest rejects NaN/inf).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Bool(bool),
    Number(f64),
}

impl Value {
    /// Numeric view: booleans are 1.0 / 0.0.
    pub fn as_f64(self) -> f64 {
        match self {
            Value::Number(v) => v,
            Value::Bool(b) => f64::from(u8::from(b)),
        }
    }

    pub fn as_bool(self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(b),
            Value::Number(_) => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Number(v) => write!(f, "{v}"),
        }
    }
}

/// Where a reading came from; a tag in storage and a label in metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Mqtt,
    Modbus,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Mqtt => "mqtt",
            Source::Modbus => "modbus",
        }
    }
}

/// Whether the value can be trusted. `Uncertain` marks a reading stamped with gateway time
/// because the device sent none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    Good,
    Uncertain,
}

/// One value of one sensor at one time: the unit of data flowing through the gateway.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reading {
    pub sensor: SensorId,
    /// Unix time in milliseconds (device time, or gateway time when the device sent none).
    pub ts_ms: i64,
    pub value: Value,
    pub quality: Quality,
    pub source: Source,
}

/// Alarm classes, highest priority first (the derived `Ord` follows declaration order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmClass {
    Fire,
    Gas,
    Supervisory,
    Fault,
}

impl AlarmClass {
    pub const ALL: [AlarmClass; 4] = [
        AlarmClass::Fire,
        AlarmClass::Gas,
        AlarmClass::Supervisory,
        AlarmClass::Fault,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlarmClass::Fire => "fire",
            AlarmClass::Gas => "gas",
            AlarmClass::Supervisory => "supervisory",
            AlarmClass::Fault => "fault",
        }
    }

    /// Fire and gas alarms latch, as on a fire panel: they stay active until an operator resets
    /// them.
    pub fn latches(self) -> bool {
        matches!(self, AlarmClass::Fire | AlarmClass::Gas)
    }
}

/// The two levels of a two-level rule; single-level rules raise `Alarm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Alarm,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Alarm => "alarm",
        }
    }
}

/// What the rules engine tells the alarm manager: the condition of one (sensor, rule) pair
/// changed. `severity: None` means the condition returned to normal.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConditionChange {
    pub sensor: SensorId,
    pub rule: Arc<str>,
    pub class: AlarmClass,
    pub severity: Option<Severity>,
    /// The value that caused the change (`None` for time-driven changes such as staleness).
    pub value: Option<Value>,
    /// The threshold that was crossed, where the rule has one.
    pub threshold: Option<f64>,
    /// Unix-ms timestamp of the reading that caused the change; gateway time for time-driven
    /// changes.
    pub reading_ts_ms: i64,
    /// Human-readable reason, e.g. `temp_c 61.2 ≥ 57 (alarm)`.
    pub message: String,
}

/// Gateway wall-clock time in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What a device told us about itself (retained MQTT `meta`, or the config, which wins).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub building: Option<String>,
    #[serde(default)]
    pub room: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// Acknowledges one source message (an MQTT PUBACK) once everything sent before it is durable.
pub trait Acknowledge: Send + Sync {
    fn acknowledge(&self, id: u16);
}

/// A message to acknowledge once the readings sent before it are durable. It travels through
/// the pipeline behind those readings. Every holder ([`DurableAck::share`]) must release it
/// before the ack is sent: the local history writer once they are committed, and the
/// time-series sink once they are written to the store or to its disk spool. A crash before
/// then means no ack, and the broker delivers the message again (at-least-once). A holder that
/// drops its share without releasing it keeps the message unacknowledged.
pub struct DurableAck {
    inner: Arc<AckInner>,
}

struct AckInner {
    sink: Arc<dyn Acknowledge>,
    id: u16,
    /// Holders that have not released yet.
    holders: AtomicUsize,
}

impl DurableAck {
    pub fn new(sink: Arc<dyn Acknowledge>, id: u16) -> Self {
        DurableAck {
            inner: Arc::new(AckInner {
                sink,
                id,
                holders: AtomicUsize::new(1),
            }),
        }
    }

    /// One more holder that must release before the ack is sent.
    pub fn share(&self) -> Self {
        self.inner.holders.fetch_add(1, Ordering::AcqRel);
        DurableAck {
            inner: self.inner.clone(),
        }
    }

    /// This holder's part is durable; the last one to release sends the ack.
    pub fn release(self) {
        if self.inner.holders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.sink.acknowledge(self.inner.id);
        }
    }
}

impl fmt::Debug for DurableAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DurableAck({})", self.inner.id)
    }
}

impl PartialEq for DurableAck {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// A hash map for the pipeline's hot internal maps (registry, rules index), keyed by names
/// and ids: foldhash instead of SipHash, a few percent of the core's CPU per reading under
/// load. Seeded per process; the keys come from the config or from topics checked against
/// `valid_name`, and the maps they grow are bounded (`max_unregistered_devices`).
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// What an ingest source (MQTT, Modbus) sends into the pipeline. Readings of one sensor are
/// sent in order on one channel, so the pipeline sees them in order.
#[derive(Debug, PartialEq)]
pub enum IngestEvent {
    /// Decoded, validated readings (one telemetry message or one poll cycle of one device).
    Readings(Vec<Reading>),
    /// The device said (or its Last Will said, or the Modbus poller decided) it is online or
    /// offline.
    Status {
        device: DeviceKey,
        online: bool,
        ts_ms: i64,
    },
    /// The device announced itself (retained `meta`).
    Meta { device: DeviceKey, info: DeviceInfo },
    /// What one source read at once (MQTT: the messages rumqttc had already read from the
    /// socket), in order, with the acks of those messages riding behind their readings: the
    /// core takes them in one wake-up, and releases the acks once everything before them is
    /// durable.
    Batch {
        events: Vec<IngestEvent>,
        acks: Vec<DurableAck>,
    },
}

/// A reading with what the time-series store needs to tag it: the measurement is the device's
/// profile (`unknown` for an unregistered device), tags are school, building, room, device,
/// point and source.
#[derive(Clone, Debug, PartialEq)]
pub struct TaggedReading {
    pub reading: Reading,
    pub profile: Arc<str>,
    pub building: Arc<str>,
    pub room: Arc<str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Acks(Mutex<Vec<u16>>);

    impl Acknowledge for Acks {
        fn acknowledge(&self, id: u16) {
            self.0.lock().unwrap().push(id);
        }
    }

    #[test]
    fn a_shared_ack_is_sent_once_after_its_last_holder_releases() {
        let acks = Arc::new(Acks::default());
        let history = DurableAck::new(acks.clone(), 7);
        let timeseries = history.share();
        history.release();
        assert!(acks.0.lock().unwrap().is_empty());
        timeseries.release();
        assert_eq!(*acks.0.lock().unwrap(), vec![7]);
    }

    #[test]
    fn a_dropped_share_keeps_the_message_unacknowledged() {
        let acks = Arc::new(Acks::default());
        let history = DurableAck::new(acks.clone(), 9);
        drop(history.share());
        history.release();
        assert!(acks.0.lock().unwrap().is_empty());
    }

    #[test]
    fn ids_are_one_to_sixty_four_plain_ascii_characters() {
        for ok in ["xhsy", "cab-1", "hd_101", "A", &"x".repeat(64)] {
            assert!(valid_name(ok), "{ok:?} refused");
        }
        let long = "x".repeat(65);
        for bad in [
            "",
            &long,
            "a/b",
            "a+b",
            "a#b",
            "a b",
            "a.b",
            "学校",
            "a\u{0}b",
            "a\nb",
            "a\u{202e}b",
        ] {
            assert!(!valid_name(bad), "{bad:?} accepted");
        }
    }
}

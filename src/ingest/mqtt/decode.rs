//! Device protocol v1 decoding: topic → (school, device, kind), payload → readings.
//!
//! Pure functions over untrusted bytes: every failure is a [`Reject`] reason (a metrics label),
//! never a panic. A telemetry message with some bad points keeps its good ones: one broken point
//! must not blind the device's other sensors; each bad point is counted.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::model::{
    valid_name, valid_point, DeviceInfo, DeviceKey, Quality, Reading, SensorId, Source, Value,
};

/// Why a message or a point was rejected. The `as_str` names are metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reject {
    BadTopic,
    TooLarge,
    BadJson,
    NotAnObject,
    BadTimestamp,
    WrongType,
    NotFinite,
    TooManyPoints,
    BadPointName,
    UnknownPoint,
    BadStatus,
    BadMeta,
    Empty,
    /// MQTT traffic for a device the config polls over Modbus: refused, so a publisher on the
    /// broker can neither feed its rules nor trigger its write-back actions.
    SourceMismatch,
}

impl Reject {
    pub const ALL: [Reject; 14] = [
        Reject::BadTopic,
        Reject::TooLarge,
        Reject::BadJson,
        Reject::NotAnObject,
        Reject::BadTimestamp,
        Reject::WrongType,
        Reject::NotFinite,
        Reject::TooManyPoints,
        Reject::BadPointName,
        Reject::UnknownPoint,
        Reject::BadStatus,
        Reject::BadMeta,
        Reject::Empty,
        Reject::SourceMismatch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reject::BadTopic => "bad_topic",
            Reject::TooLarge => "too_large",
            Reject::BadJson => "bad_json",
            Reject::NotAnObject => "not_an_object",
            Reject::BadTimestamp => "bad_timestamp",
            Reject::WrongType => "wrong_type",
            Reject::NotFinite => "not_finite",
            Reject::TooManyPoints => "too_many_points",
            Reject::BadPointName => "bad_point_name",
            Reject::UnknownPoint => "unknown_point",
            Reject::BadStatus => "bad_status",
            Reject::BadMeta => "bad_meta",
            Reject::Empty => "empty",
            Reject::SourceMismatch => "source_mismatch",
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a topic under the prefix is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicKind<'a> {
    Telemetry,
    SinglePoint(&'a str),
    Meta,
    Status,
}

/// Parses `<prefix>/<school>/<device>/<kind>[/<point>]`.
pub fn parse_topic<'a>(prefix: &str, topic: &'a str) -> Result<(DeviceKey, TopicKind<'a>), Reject> {
    let rest = topic
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or(Reject::BadTopic)?;
    let mut parts = rest.split('/');
    // Ids are 1-64 characters of `[A-Za-z0-9_-]`: nothing longer or stranger reaches the
    // registry, the logs or the stores.
    let school = parts
        .next()
        .filter(|s| valid_name(s))
        .ok_or(Reject::BadTopic)?;
    let device = parts
        .next()
        .filter(|s| valid_name(s))
        .ok_or(Reject::BadTopic)?;
    let kind = match (parts.next(), parts.next(), parts.next()) {
        (Some("telemetry"), None, None) => TopicKind::Telemetry,
        (Some("telemetry"), Some(point), None) if valid_point(point) => {
            TopicKind::SinglePoint(point)
        }
        (Some("telemetry"), Some(_), None) => return Err(Reject::BadPointName),
        (Some("meta"), None, None) => TopicKind::Meta,
        (Some("status"), None, None) => TopicKind::Status,
        _ => return Err(Reject::BadTopic),
    };
    Ok((DeviceKey::new(school, device), kind))
}

/// Earliest and latest accepted device timestamps (2000-01-01 .. 2100-01-01, Unix ms): a device
/// clock that far off is broken, and its readings would land in the wrong place in history.
const TS_MIN_MS: i64 = 946_684_800_000;
const TS_MAX_MS: i64 = 4_102_444_800_000;
/// How far ahead of the gateway's clock a device timestamp may be. Beyond it the device clock
/// is wrong: stored, the reading would sit in the history past every retention prune and be the
/// sensor's "latest" value for as long.
pub const MAX_FUTURE_MS: i64 = 24 * 3600 * 1000;

/// The result of decoding one telemetry message: the good readings and the reasons of the bad
/// points (in order).
#[derive(Debug, Default, PartialEq)]
pub struct Decoded {
    pub readings: Vec<Reading>,
    pub rejected: Vec<Reject>,
}

/// Decodes a telemetry JSON object. `Err` rejects the whole message; `Ok` may still carry
/// rejected points.
pub fn decode_telemetry(
    device: &DeviceKey,
    payload: &[u8],
    max_points: usize,
    now_ms: i64,
) -> Result<Decoded, Reject> {
    if payload.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Reject::Empty);
    }
    let mut de = serde_json::Deserializer::from_slice(payload);
    let raw = de
        .deserialize_any(TelemetryVisitor { max_points })
        .map_err(|e| classify_json_error(&e))?;
    de.end().map_err(|_| Reject::BadJson)?;
    let raw = raw?;
    let (ts_ms, quality) = match raw.ts {
        Some(ts) if ts > now_ms.saturating_add(MAX_FUTURE_MS) => return Err(Reject::BadTimestamp),
        Some(ts) => (ts, Quality::Good),
        None => (now_ms, Quality::Uncertain),
    };
    let mut decoded = Decoded {
        readings: Vec::with_capacity(raw.points.len()),
        rejected: raw.rejected,
    };
    for (name, value) in raw.points {
        decoded.readings.push(Reading {
            sensor: SensorId {
                school: device.school.clone(),
                device: device.device.clone(),
                point: name,
            },
            ts_ms,
            value,
            quality,
            source: Source::Mqtt,
        });
    }
    Ok(decoded)
}

/// Decodes a single-point payload: a plain number or `true`/`false`.
pub fn decode_single_point(
    device: &DeviceKey,
    point: &str,
    payload: &[u8],
    max_bytes: usize,
    now_ms: i64,
) -> Result<Reading, Reject> {
    if payload.len() > max_bytes.min(64) {
        return Err(Reject::TooLarge);
    }
    let text = std::str::from_utf8(payload)
        .map_err(|_| Reject::WrongType)?
        .trim();
    let value = match text {
        "" => return Err(Reject::Empty),
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        t => {
            let v: f64 = t.parse().map_err(|_| Reject::WrongType)?;
            if !v.is_finite() {
                return Err(Reject::NotFinite);
            }
            Value::Number(v)
        }
    };
    Ok(Reading {
        sensor: SensorId {
            school: device.school.clone(),
            device: device.device.clone(),
            point: point.into(),
        },
        ts_ms: now_ms,
        value,
        quality: Quality::Uncertain,
        source: Source::Mqtt,
    })
}

/// Decodes a `status` payload: `online` or `offline`. An empty (retained-clear) payload is
/// `Ok(None)`.
pub fn decode_status(payload: &[u8]) -> Result<Option<bool>, Reject> {
    match std::str::from_utf8(payload).map(str::trim) {
        Ok("") => Ok(None),
        Ok("online") => Ok(Some(true)),
        Ok("offline") => Ok(Some(false)),
        _ => Err(Reject::BadStatus),
    }
}

/// Decodes a `meta` payload. An empty (retained-clear) payload is `Ok(None)`. Unknown members
/// are ignored (firmware may announce more than we use); over-long strings are rejected.
pub fn decode_meta(payload: &[u8]) -> Result<Option<DeviceInfo>, Reject> {
    if payload.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(None);
    }
    if payload.len() > 4096 {
        return Err(Reject::TooLarge);
    }
    let info: DeviceInfo = serde_json::from_slice(payload).map_err(|_| Reject::BadMeta)?;
    let too_long = [&info.profile, &info.building, &info.room, &info.name]
        .iter()
        .any(|f| f.as_ref().is_some_and(|s| s.chars().count() > 128));
    if too_long {
        return Err(Reject::BadMeta);
    }
    Ok(Some(info))
}

fn classify_json_error(e: &serde_json::Error) -> Reject {
    // Our visitor reports semantic rejections through custom errors carrying the reason name.
    let msg = e.to_string();
    for r in [Reject::NotAnObject, Reject::TooManyPoints] {
        if msg.starts_with(r.as_str()) {
            return r;
        }
    }
    Reject::BadJson
}

struct RawTelemetry {
    ts: Option<i64>,
    /// Point names as the reading will hold them (one allocation per point).
    points: Vec<(Arc<str>, Value)>,
    rejected: Vec<Reject>,
}

struct TelemetryVisitor {
    max_points: usize,
}

impl<'de> Visitor<'de> for TelemetryVisitor {
    type Value = Result<RawTelemetry, Reject>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object of points")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut raw = RawTelemetry {
            ts: None,
            points: Vec::new(),
            rejected: Vec::new(),
        };
        let mut bad_ts = false;
        let mut members = 0usize;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            members += 1;
            if members > self.max_points + 1 {
                return Err(de::Error::custom(Reject::TooManyPoints.as_str()));
            }
            let value: PointValue = map.next_value()?;
            if key == "ts" {
                match value {
                    PointValue::Int(ts) if (TS_MIN_MS..TS_MAX_MS).contains(&ts) => {
                        raw.ts = Some(ts)
                    }
                    _ => bad_ts = true,
                }
                continue;
            }
            if !valid_point(&key) {
                raw.rejected.push(Reject::BadPointName);
                continue;
            }
            if raw.points.iter().any(|(name, _)| **name == *key) {
                // A duplicate member: JSON leaves it undefined; we keep the first.
                raw.rejected.push(Reject::BadJson);
                continue;
            }
            match value {
                PointValue::Bool(b) => raw.points.push((key.into(), Value::Bool(b))),
                PointValue::Int(i) => raw.points.push((key.into(), Value::Number(i as f64))),
                PointValue::Float(f) if f.is_finite() => {
                    raw.points.push((key.into(), Value::Number(f)))
                }
                PointValue::Float(_) => raw.rejected.push(Reject::NotFinite),
                PointValue::Other => raw.rejected.push(Reject::WrongType),
            }
        }
        if bad_ts {
            // A message whose time we cannot trust is rejected whole: storing it at gateway time
            // would silently misplace it.
            return Ok(Err(Reject::BadTimestamp));
        }
        Ok(Ok(raw))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(de::Error::custom(Reject::NotAnObject.as_str()))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(E::custom(Reject::NotAnObject.as_str()))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(E::custom(Reject::NotAnObject.as_str()))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(E::custom(Reject::NotAnObject.as_str()))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(E::custom(Reject::NotAnObject.as_str()))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(E::custom(Reject::NotAnObject.as_str()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(E::custom(Reject::NotAnObject.as_str()))
    }
}

/// One member's value, without allocating for the nested junk we reject anyway.
enum PointValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Other,
}

impl<'de> de::Deserialize<'de> for PointValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PointValueVisitor)
    }
}

struct PointValueVisitor;

impl<'de> Visitor<'de> for PointValueVisitor {
    type Value = PointValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number or a boolean")
    }
    fn visit_bool<E>(self, v: bool) -> Result<PointValue, E> {
        Ok(PointValue::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<PointValue, E> {
        Ok(PointValue::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<PointValue, E> {
        Ok(i64::try_from(v).map_or(PointValue::Float(v as f64), PointValue::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<PointValue, E> {
        Ok(PointValue::Float(v))
    }
    fn visit_str<E>(self, _: &str) -> Result<PointValue, E> {
        Ok(PointValue::Other)
    }
    fn visit_unit<E>(self) -> Result<PointValue, E> {
        Ok(PointValue::Other)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<PointValue, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(PointValue::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PointValue, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(PointValue::Other)
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;

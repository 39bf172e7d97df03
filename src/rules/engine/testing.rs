//! Helpers the engine's test modules share: a reading of the test device `s1/d1`, an engine
//! with that device registered, and device overrides written as in the gateway config.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::time::Instant;

use super::RuleEngine;
use crate::model::{DeviceKey, Quality, Reading, SensorId, Severity, Source, Value};
use crate::rules::config::{ProfileSet, RuleOverride};

pub(super) const A: Option<Severity> = Some(Severity::Alarm);
pub(super) const N: Option<Severity> = None;
/// Device time of offset zero (2025-11-28T03:20:00Z).
pub(super) const BASE_MS: i64 = 1_764_300_000_000;

/// A reading of point `point` of the test device `s1/d1`.
pub(super) fn reading(point: &str, value: Value, ts_ms: i64) -> Reading {
    Reading {
        sensor: SensorId::new("s1", "d1", point),
        ts_ms,
        value,
        quality: Quality::Good,
        source: Source::Mqtt,
    }
}

/// The `overrides` of a device as the gateway config writes them, e.g.
/// `overrides.heat_fixed = { alarm = 45.0 }`.
pub(super) fn overrides_from(text: &str) -> BTreeMap<String, RuleOverride> {
    #[derive(serde::Deserialize)]
    struct Device {
        #[serde(default)]
        overrides: BTreeMap<String, RuleOverride>,
    }
    toml::from_str::<Device>(text)
        .expect("overrides parse")
        .overrides
}

/// An engine over the built-in profiles with `s1/d1` registered as `profile`, and the
/// registration time.
pub(super) fn engine_with(profile: &str) -> (RuleEngine, DeviceKey, Instant) {
    let mut engine = RuleEngine::new(Arc::new(ProfileSet::builtin()));
    let key = DeviceKey::new("s1", "d1");
    let start = Instant::now();
    engine
        .register_device(&key, profile, &BTreeMap::new(), start)
        .expect("profile exists");
    (engine, key, start)
}

//! One registered device: its profile, the overrides it was registered with, its
//! [`Liveness`] (offline, stale) and its [`Point`]s. A re-registration builds a fresh device and
//! [`Device::take_over`] moves the live state of the old one into it.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::time::Instant;

use super::point::Point;
use super::staleness::Liveness;
use crate::model::{ConditionChange, DeviceKey, FastMap};
use crate::rules::config::{Profile, RuleOverride};

pub(super) struct Device {
    pub(super) profile: Arc<str>,
    /// The overrides as asked for (before invalid ones were dropped), so an identical
    /// re-registration is recognised as a no-op.
    pub(super) overrides: BTreeMap<String, RuleOverride>,
    pub(super) liveness: Liveness,
    /// In point-name order (deterministic ticks); `point_index` finds them by name.
    pub(super) points: Vec<Point>,
    point_index: FastMap<Arc<str>, usize>,
}

impl Device {
    /// A device of `profile` whose rules use `usable` (validated) overrides; `asked` is what
    /// the caller gave, kept to recognise an identical re-registration.
    pub(super) fn new(
        key: &DeviceKey,
        profile_name: &str,
        profile: &Profile,
        usable: &BTreeMap<String, RuleOverride>,
        asked: &BTreeMap<String, RuleOverride>,
        now: Instant,
    ) -> Device {
        let points: Vec<Point> = profile
            .points
            .iter()
            .map(|(name, spec)| Point::new(key, name, spec, profile, usable, now))
            .collect();
        let point_index = points
            .iter()
            .enumerate()
            .map(|(i, p)| (p.sensor.point.clone(), i))
            .collect();
        Device {
            profile: profile_name.into(),
            overrides: asked.clone(),
            liveness: Liveness::new(key, profile.stale_after, now),
            points,
            point_index,
        }
    }

    pub(super) fn point(&self, name: &str) -> Option<&Point> {
        self.point_index.get(name).and_then(|&i| self.points.get(i))
    }

    pub(super) fn point_mut(&mut self, name: &str) -> Option<&mut Point> {
        self.point_index
            .get(name)
            .and_then(|&i| self.points.get_mut(i))
    }

    /// Moves the live state of the device's previous registration into this one: liveness,
    /// and per point (by name) its faults, last value and the rules of unchanged id. Every
    /// condition still active in what is left of `old` gets a clearing change (`now_ms`).
    pub(super) fn take_over(&mut self, old: Device, now_ms: i64, out: &mut Vec<ConditionChange>) {
        self.liveness.carry_over(&old.liveness);
        let mut old_points = old.points;
        for point in &mut self.points {
            if let Some(previous) = old_points
                .iter_mut()
                .find(|p| p.sensor.point == point.sensor.point)
            {
                point.carry_over(previous);
            }
        }
        for previous in old_points {
            previous.retire(now_ms, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::model::{AlarmClass, SensorId, Severity, Value};
    use crate::rules::engine::testing::{engine_with, overrides_from, reading, A, BASE_MS, N};

    #[test]
    fn re_registering_with_an_override_keeps_the_active_condition_and_uses_new_numbers() {
        let (mut engine, key, start) = engine_with("heat_detector");
        let sensor = SensorId::new("s1", "d1", "temp_c");
        let mut out = Vec::new();
        engine.on_reading(
            &reading("temp_c", Value::Number(52.0), BASE_MS),
            start,
            &mut out,
        );
        assert_eq!(out.len(), 1);
        // Same profile, same overrides: nothing changes.
        engine
            .register_device(&key, "heat_detector", &BTreeMap::new(), start)
            .expect("registers");
        assert!(engine.condition_active(&sensor, "heat_fixed"));
        engine
            .register_device(
                &key,
                "heat_detector",
                &overrides_from("overrides.heat_fixed = { alarm = 51.0 }"),
                start,
            )
            .expect("registers");
        assert!(engine.condition_active(&sensor, "heat_fixed"));
        out.clear();
        engine.on_reading(
            &reading("temp_c", Value::Number(52.0), BASE_MS + 1000),
            start,
            &mut out,
        );
        // The override made warning (50) < alarm (51) valid: 52 is now an alarm.
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].severity, A);
        assert_eq!(engine.device_count(), 1);
    }

    #[test]
    fn re_registering_without_a_rule_clears_its_active_condition() {
        let (mut engine, key, start) = engine_with("heat_detector");
        let mut out = Vec::new();
        engine.on_reading(
            &reading("temp_c", Value::Number(58.0), BASE_MS),
            start,
            &mut out,
        );
        engine.on_reading(
            &reading("temp_c", Value::Number(999.0), BASE_MS + 1),
            start,
            &mut out,
        );
        out.clear();
        engine
            .register_device_emitting(
                &key,
                "heat_detector",
                &overrides_from("overrides.heat_fixed = { enabled = false }"),
                start,
                BASE_MS + 5,
                &mut out,
            )
            .expect("registers");
        let got: Vec<(&str, Option<Severity>)> =
            out.iter().map(|c| (&*c.rule, c.severity)).collect();
        assert_eq!(
            got,
            vec![("heat_fixed", N)],
            "the range fault is carried over"
        );
        assert_eq!(out[0].class, AlarmClass::Fire);
        assert!(engine.condition_active(&SensorId::new("s1", "d1", "temp_c"), "temp_c_range"));
        out.clear();
        engine
            .register_device_emitting(
                &key,
                "server_room",
                &BTreeMap::new(),
                start,
                BASE_MS,
                &mut out,
            )
            .expect("registers");
        assert!(out.is_empty(), "temp_c keeps its range fault: {out:?}");
        engine
            .register_device_emitting(
                &key,
                "smoke_detector",
                &BTreeMap::new(),
                start,
                BASE_MS,
                &mut out,
            )
            .expect("registers");
        let got: Vec<(&str, Option<Severity>)> =
            out.iter().map(|c| (&*c.rule, c.severity)).collect();
        assert_eq!(got, vec![("temp_c_range", N)]);
    }

    #[test]
    fn an_invalid_override_is_ignored_not_applied() {
        let (mut engine, key, start) = engine_with("heat_detector");
        engine
            .register_device(
                &key,
                "heat_detector",
                &overrides_from("overrides.heat_fixed = { alarm = 45.0 }"),
                start,
            )
            .expect("registers");
        let mut out = Vec::new();
        engine.on_reading(
            &reading("temp_c", Value::Number(46.0), BASE_MS),
            start,
            &mut out,
        );
        assert!(
            out.is_empty(),
            "warning 50 ≥ alarm 45 must not be applied: {out:?}"
        );
    }

    #[test]
    fn a_removed_device_clears_its_conditions_and_its_readings_are_unregistered() {
        let (mut engine, key, start) = engine_with("heat_detector");
        let other = crate::model::DeviceKey::new("s1", "d2");
        engine
            .register_device(&other, "heat_detector", &BTreeMap::new(), start)
            .expect("registers");
        let sensor = SensorId::new("s1", "d1", "temp_c");
        let mut out = Vec::new();
        engine.on_reading(
            &reading("temp_c", Value::Number(70.0), BASE_MS),
            start,
            &mut out,
        );
        assert!(engine.condition_active(&sensor, "heat_fixed"));
        out.clear();
        assert!(engine.remove_device(&key, BASE_MS + 1, &mut out));
        assert!(
            out.iter().any(|c| c.sensor == sensor
                && c.rule.as_ref() == "heat_fixed"
                && c.severity.is_none()),
            "{out:?}"
        );
        assert!(!engine.condition_active(&sensor, "heat_fixed"));
        assert!(matches!(
            engine.check_point(&key, "temp_c"),
            crate::rules::PointCheck::UnregisteredDevice
        ));
        // The device after it in the list is still found (its index moved).
        assert!(matches!(
            engine.check_point(&other, "temp_c"),
            crate::rules::PointCheck::Known
        ));
        assert!(!engine.remove_device(&key, BASE_MS + 2, &mut out));
    }
}

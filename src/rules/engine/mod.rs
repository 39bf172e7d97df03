//! The rule engine: a synchronous, deterministic state machine between the pipeline and the
//! alarm manager. The pipeline feeds it every reading of a registered device, in order per
//! sensor, plus device status and a periodic tick; it answers with [`ConditionChange`]s, one per
//! change of a (sensor, rule) condition's severity, never a repeat.
//!
//! No I/O and no tasks: time comes in as [`Instant`] (delays, staleness) and as Unix ms
//! (timestamps of time-driven changes). Rate of rise uses the readings' device time. State is
//! O(devices × rules); the per-reading path does three hash look-ups by `&str` and allocates
//! only when it emits a change.
//!
//! This file is the facade: the registry of devices and the dispatch of readings, status and
//! ticks. Below it, following one reading:
//! - `device`: a registered device, and how a re-registration takes over its live state;
//! - `staleness`: the device-level `offline` and `stale` faults;
//! - `point`: one point, judging sensor faults first, then its rules in profile order;
//! - `sensor_fault`: physical range (`<point>_range`) and stuck value (`<point>_stuck`);
//! - `rule`: one rule, dispatching to its kind and emitting its changes;
//! - `threshold` (high/low, two levels, deadband), `state` (boolean), `rate` (rate of rise);
//! - `gate`: the on-/off-delay every rule kind goes through.
//!
//! Each file imports only the ones below it; the children's test modules drive the engine
//! through this facade (a loop in tests only). The rule cases run from data files in
//! `src/rules/testdata/cases/` (`cases`).

mod device;
mod gate;
mod point;
mod rate;
mod rule;
mod sensor_fault;
mod staleness;
mod state;
mod threshold;

#[cfg(test)]
mod cases;
#[cfg(test)]
mod testing;

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::time::Instant;

use self::device::Device;
use self::point::Judged;
use self::staleness::StatusRules;
use super::config::{PointKind, ProfileSet, RuleOverride};
use crate::model::{ConditionChange, DeviceKey, FastMap, Reading, SensorId, Severity};

/// Whether the engine knows a point of a device (the ingest rejects unknown points).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointCheck {
    Known,
    UnknownPoint,
    UnregisteredDevice,
}

/// `register_device` was given a profile name the profile set does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown device profile `{0}`")]
pub struct UnknownProfile(pub String);

/// Counters for `/metrics`: what happened to the readings the engine was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Readings evaluated against a point's rules (in range, right type).
    pub readings_evaluated: u64,
    /// Readings of devices that are not registered (ignored).
    pub readings_unregistered: u64,
    /// Readings of a point the device's profile does not have (ignored).
    pub readings_unknown_point: u64,
    /// A number for a bool point (other than 0/1), a bool for a number point, or a non-finite
    /// number (ignored).
    pub readings_wrong_type: u64,
    /// Readings outside the point's physical range (sensor fault, not evaluated).
    pub readings_out_of_range: u64,
}

/// The rule state of every registered device. Owned by one task (the pipeline), which calls it
/// in reading order per sensor. `condition_active` equals the last severity emitted for the
/// (sensor, rule), so a consumer of the change stream can track it without sharing the engine.
pub struct RuleEngine {
    profiles: Arc<ProfileSet>,
    /// school → device → index into `devices`; nested so a reading is found by `&str` without
    /// cloning its names.
    index: FastMap<Arc<str>, FastMap<Arc<str>, usize>>,
    /// In registration order, so ticks emit in a deterministic order. A device is removed only
    /// when it is decommissioned ([`RuleEngine::remove_device`]).
    devices: Vec<Device>,
    status_rules: StatusRules,
    stats: EngineStats,
}

impl RuleEngine {
    pub fn new(profiles: Arc<ProfileSet>) -> Self {
        Self {
            profiles,
            index: FastMap::default(),
            devices: Vec::new(),
            status_rules: StatusRules::default(),
            stats: EngineStats::default(),
        }
    }

    pub fn profiles(&self) -> &Arc<ProfileSet> {
        &self.profiles
    }

    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    fn device_index(&self, school: &str, device: &str) -> Option<usize> {
        self.index.get(school)?.get(device).copied()
    }

    fn device(&self, school: &str, device: &str) -> Option<&Device> {
        self.device_index(school, device)
            .and_then(|i| self.devices.get(i))
    }

    fn device_mut(&mut self, school: &str, device: &str) -> Option<&mut Device> {
        self.device_index(school, device)
            .and_then(|i| self.devices.get_mut(i))
    }

    /// Gives a device (from config or MQTT meta) its profile and per-rule overrides. Calling it
    /// again with the same profile and overrides changes nothing; with others it rebuilds the
    /// device's rules and keeps the live state of rules whose id is unchanged (their next
    /// reading is judged with the new numbers) and of the device (stale, offline). Overrides
    /// naming an unknown rule, or making a rule invalid, are logged and ignored: the gateway
    /// config checks them first with [`ProfileSet::validate_overrides`].
    ///
    /// A re-registration that removes a rule with an active condition loses that condition's
    /// clearing change here; [`RuleEngine::register_device_emitting`] returns it.
    pub fn register_device(
        &mut self,
        key: &DeviceKey,
        profile: &str,
        overrides: &BTreeMap<String, RuleOverride>,
        now: Instant,
    ) -> Result<(), UnknownProfile> {
        let mut dropped = Vec::new();
        self.register_device_emitting(
            key,
            profile,
            overrides,
            now,
            crate::model::now_ms(),
            &mut dropped,
        )?;
        if !dropped.is_empty() {
            tracing::warn!(device = %key, conditions = dropped.len(), "re-registration removed active conditions");
        }
        Ok(())
    }

    /// [`RuleEngine::register_device`], and a clearing change (`now_ms`) for every active
    /// condition whose rule or point the new profile/overrides no longer have.
    pub fn register_device_emitting(
        &mut self,
        key: &DeviceKey,
        profile: &str,
        overrides: &BTreeMap<String, RuleOverride>,
        now: Instant,
        now_ms: i64,
        out: &mut Vec<ConditionChange>,
    ) -> Result<(), UnknownProfile> {
        let profiles = Arc::clone(&self.profiles);
        let spec = profiles
            .profile(profile)
            .ok_or_else(|| UnknownProfile(profile.to_string()))?;
        let existing = self.device_index(&key.school, &key.device);
        if let Some(device) = existing.and_then(|i| self.devices.get(i)) {
            if &*device.profile == profile && device.overrides == *overrides {
                return Ok(());
            }
        }
        let usable: BTreeMap<String, RuleOverride> = overrides
            .iter()
            .filter(
                |(rule, ov)| match profiles.validate_override(profile, rule, ov) {
                    Ok(()) => true,
                    Err(error) => {
                        tracing::warn!(device = %key, %error, "device override ignored");
                        false
                    }
                },
            )
            .map(|(rule, ov)| (rule.clone(), ov.clone()))
            .collect();
        let fresh = Device::new(key, profile, spec, &usable, overrides, now);
        match existing.and_then(|i| self.devices.get_mut(i)) {
            Some(slot) => {
                let old = std::mem::replace(slot, fresh);
                slot.take_over(old, now_ms, out);
            }
            None => {
                self.devices.push(fresh);
                self.index
                    .entry(key.school.clone())
                    .or_default()
                    .insert(key.device.clone(), self.devices.len() - 1);
            }
        }
        Ok(())
    }

    /// Forgets a device (decommissioned): its readings are unregistered from now on, and every
    /// condition it still holds gets a clearing change (`now_ms`). False when it was not
    /// registered.
    pub fn remove_device(
        &mut self,
        key: &DeviceKey,
        now_ms: i64,
        out: &mut Vec<ConditionChange>,
    ) -> bool {
        let Some(i) = self.device_index(&key.school, &key.device) else {
            return false;
        };
        if let Some(devices) = self.index.get_mut(&key.school) {
            devices.remove(&key.device);
        }
        let mut old = self.devices.remove(i);
        // Later devices moved down by one.
        for slot in self.index.values_mut().flat_map(|d| d.values_mut()) {
            if *slot > i {
                *slot -= 1;
            }
        }
        old.liveness.retire(now_ms, &self.status_rules, out);
        for point in old.points {
            point.retire(now_ms, out);
        }
        true
    }

    /// The profile name a device is registered with.
    pub fn device_profile(&self, key: &DeviceKey) -> Option<&str> {
        self.device(&key.school, &key.device).map(|d| &*d.profile)
    }

    pub fn check_point(&self, key: &DeviceKey, point: &str) -> PointCheck {
        match self.device(&key.school, &key.device) {
            None => PointCheck::UnregisteredDevice,
            Some(device) if device.point(point).is_some() => PointCheck::Known,
            Some(_) => PointCheck::UnknownPoint,
        }
    }

    /// The kind of a point of a registered device (lets the ingest reject wrong types).
    pub fn point_kind(&self, key: &DeviceKey, point: &str) -> Option<PointKind> {
        self.device(&key.school, &key.device)?
            .point(point)
            .map(|p| p.kind)
    }

    /// Evaluates one reading: clears the device's `stale` fault, then range check (out of range
    /// → `<point>_range` fault, value not evaluated further), stuck check, and every rule of the
    /// point in profile order. Readings of unregistered devices or unknown points only count.
    pub fn on_reading(&mut self, r: &Reading, now: Instant, out: &mut Vec<ConditionChange>) {
        let Some(i) = self.device_index(&r.sensor.school, &r.sensor.device) else {
            self.stats.readings_unregistered += 1;
            return;
        };
        let Some(device) = self.devices.get_mut(i) else {
            return;
        };
        device.liveness.heard(now, r.ts_ms, &self.status_rules, out);
        let Some(point) = device.point_mut(&r.sensor.point) else {
            self.stats.readings_unknown_point += 1;
            return;
        };
        let Some(value) = point.typed(r.value) else {
            self.stats.readings_wrong_type += 1;
            return;
        };
        match point.evaluate(value, r.ts_ms, now, out) {
            Judged::OutOfRange => self.stats.readings_out_of_range += 1,
            Judged::Evaluated => self.stats.readings_evaluated += 1,
        }
    }

    /// The device (or its Last Will, or the Modbus poller) says it is online or offline:
    /// offline raises the `offline` fault on `<school>/<device>/status`, online clears it.
    /// Status of an unregistered device is ignored.
    pub fn on_status(
        &mut self,
        key: &DeviceKey,
        online: bool,
        _now: Instant,
        now_ms: i64,
        out: &mut Vec<ConditionChange>,
    ) {
        let Some(i) = self.device_index(&key.school, &key.device) else {
            return;
        };
        if let Some(device) = self.devices.get_mut(i) {
            device
                .liveness
                .set_online(online, now_ms, &self.status_rules, out);
        }
    }

    /// Time-driven changes, raise only: `stale` for a device silent for its profile's
    /// `stale_after` (counted from registration if never heard; not while it is offline, which
    /// already says so), and conditions whose on-delay ran out while the last value still
    /// violates. Silence never clears anything.
    pub fn on_tick(&mut self, now: Instant, now_ms: i64, out: &mut Vec<ConditionChange>) {
        for device in &mut self.devices {
            device.liveness.tick(now, now_ms, &self.status_rules, out);
            for point in &mut device.points {
                point.tick(now, now_ms, out);
            }
        }
    }

    /// Seeds the engine with a condition that held before a restart (from the alarms restored
    /// out of the journal), so the next normal reading clears it instead of going unnoticed.
    /// Returns false when the device or rule is not registered (yet): the caller retries after
    /// the device registers.
    pub fn restore_condition(&mut self, sensor: &SensorId, rule: &str, severity: Severity) -> bool {
        let Some(device) = self.device_mut(&sensor.school, &sensor.device) else {
            return false;
        };
        if *sensor.point == *crate::model::STATUS_POINT {
            return device.liveness.restore(rule);
        }
        device
            .point_mut(&sensor.point)
            .is_some_and(|point| point.restore(rule, severity))
    }

    /// Whether the condition of (sensor, rule) currently holds (as last emitted). The alarm
    /// manager refuses an operator reset of a latched alarm while it does.
    pub fn condition_active(&self, sensor: &SensorId, rule: &str) -> bool {
        let Some(device) = self.device(&sensor.school, &sensor.device) else {
            return false;
        };
        if *sensor.point == *crate::model::STATUS_POINT {
            return device.liveness.is_active(rule);
        }
        device
            .point(&sensor.point)
            .is_some_and(|point| point.is_active(rule))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{engine_with, reading, BASE_MS};
    use super::*;
    use crate::model::Value;

    #[test]
    fn check_point_tells_known_unknown_points_and_unregistered_devices() {
        let (mut engine, key, start) = engine_with("chem_cabinet");
        assert_eq!(engine.check_point(&key, "voc_ppm"), PointCheck::Known);
        assert_eq!(
            engine.check_point(&key, "co2_ppm"),
            PointCheck::UnknownPoint
        );
        assert_eq!(engine.check_point(&key, "status"), PointCheck::UnknownPoint);
        let stranger = DeviceKey::new("s1", "nobody");
        assert_eq!(
            engine.check_point(&stranger, "temp_c"),
            PointCheck::UnregisteredDevice
        );
        assert_eq!(engine.point_kind(&key, "fan_on"), Some(PointKind::Bool));
        assert_eq!(engine.device_profile(&key), Some("chem_cabinet"));

        let mut out = Vec::new();
        let unknown = Reading {
            sensor: SensorId::new("s1", "d1", "co2_ppm"),
            ..reading("x", Value::Number(5000.0), BASE_MS)
        };
        engine.on_reading(&unknown, start, &mut out);
        let stray = Reading {
            sensor: SensorId::new("s1", "nobody", "temp_c"),
            ..reading("x", Value::Number(90.0), BASE_MS)
        };
        engine.on_reading(&stray, start, &mut out);
        engine.on_status(&stranger, false, start, BASE_MS, &mut out);
        engine.on_reading(
            &reading("fan_on", Value::Number(7.0), BASE_MS),
            start,
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        let stats = engine.stats();
        assert_eq!(stats.readings_unknown_point, 1);
        assert_eq!(stats.readings_unregistered, 1);
        assert_eq!(stats.readings_wrong_type, 1);
        assert_eq!(
            engine.register_device(&key, "toaster", &BTreeMap::new(), start),
            Err(UnknownProfile("toaster".into()))
        );
    }

    #[test]
    fn condition_active_follows_the_emitted_conditions() {
        let (mut engine, key, start) = engine_with("heat_detector");
        let sensor = SensorId::new("s1", "d1", "temp_c");
        let status = SensorId::device_status(&key.school, &key.device);
        let mut out = Vec::new();
        engine.on_reading(
            &reading("temp_c", Value::Number(60.0), BASE_MS),
            start,
            &mut out,
        );
        assert!(engine.condition_active(&sensor, "heat_fixed"));
        assert!(!engine.condition_active(&sensor, "heat_rate_of_rise"));
        engine.on_reading(
            &reading("temp_c", Value::Number(900.0), BASE_MS + 1000),
            start,
            &mut out,
        );
        assert!(engine.condition_active(&sensor, "temp_c_range"));
        assert!(
            engine.condition_active(&sensor, "heat_fixed"),
            "a fault does not clear fire"
        );
        engine.on_reading(
            &reading("temp_c", Value::Number(20.0), BASE_MS + 2000),
            start,
            &mut out,
        );
        assert!(!engine.condition_active(&sensor, "heat_fixed"));
        assert!(!engine.condition_active(&sensor, "temp_c_range"));
        engine.on_status(&key, false, start, BASE_MS, &mut out);
        assert!(engine.condition_active(&status, "offline"));
        assert!(!engine.condition_active(&status, "stale"));
        assert!(!engine.condition_active(&SensorId::new("s1", "x", "temp_c"), "heat_fixed"));
    }
}

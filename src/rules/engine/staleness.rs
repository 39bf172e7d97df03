//! Device-level faults on `<school>/<device>/status`: `offline` (the device, its Last Will or
//! the Modbus poller says so) and `stale` (no reading of any point for the profile's
//! `stale_after`; GB 50166 wants a silent fire detector reported within 100 s). Both are
//! `fault` class and stamped with gateway time, since no reading caused them.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::model::{AlarmClass, ConditionChange, DeviceKey, SensorId, Severity};
use crate::rules::config::{OFFLINE_RULE, STALE_RULE};

/// The two status rule ids, allocated once per engine and shared by every change.
pub(super) struct StatusRules {
    offline: Arc<str>,
    stale: Arc<str>,
}

impl Default for StatusRules {
    fn default() -> Self {
        StatusRules {
            offline: OFFLINE_RULE.into(),
            stale: STALE_RULE.into(),
        }
    }
}

/// Whether a device is heard from and says it is online.
pub(super) struct Liveness {
    status_sensor: SensorId,
    stale_after: Option<Duration>,
    /// Last reading of any point (registration time until the first one).
    last_heard: Instant,
    stale: bool,
    offline: bool,
}

impl Liveness {
    /// A device just registered: not stale, not offline, the stale clock starting `now`.
    pub(super) fn new(key: &DeviceKey, stale_after: Option<Duration>, now: Instant) -> Liveness {
        Liveness {
            status_sensor: SensorId::device_status(&key.school, &key.device),
            stale_after: stale_after.filter(|d| !d.is_zero()),
            last_heard: now,
            stale: false,
            offline: false,
        }
    }

    /// Keeps the clock and faults of the device's previous registration (the new profile's
    /// `stale_after` applies from now on).
    pub(super) fn carry_over(&mut self, old: &Liveness) {
        self.last_heard = old.last_heard;
        self.stale = old.stale;
        self.offline = old.offline;
    }

    /// A reading of any point (known or not) arrived: restarts the stale clock and clears
    /// `stale`, stamped with the reading's time.
    pub(super) fn heard(
        &mut self,
        now: Instant,
        ts_ms: i64,
        rules: &StatusRules,
        out: &mut Vec<ConditionChange>,
    ) {
        self.last_heard = now;
        if self.stale {
            self.stale = false;
            out.push(self.change(
                &rules.stale,
                None,
                ts_ms,
                "reading received (normal)".to_string(),
            ));
        }
    }

    /// Offline raises the `offline` fault, online clears it; a repeat changes nothing.
    pub(super) fn set_online(
        &mut self,
        online: bool,
        now_ms: i64,
        rules: &StatusRules,
        out: &mut Vec<ConditionChange>,
    ) {
        if online == self.offline {
            self.offline = !online;
            let (severity, message) = if online {
                (None, "device online (normal)")
            } else {
                (Some(Severity::Alarm), "device offline")
            };
            out.push(self.change(&rules.offline, severity, now_ms, message.into()));
        }
    }

    /// Raises `stale` once the device has been silent for `stale_after`, unless it is offline
    /// (which already says so). Silence never clears anything.
    pub(super) fn tick(
        &mut self,
        now: Instant,
        now_ms: i64,
        rules: &StatusRules,
        out: &mut Vec<ConditionChange>,
    ) {
        let Some(after) = self.stale_after else {
            return;
        };
        if !self.stale && !self.offline && now.saturating_duration_since(self.last_heard) >= after {
            self.stale = true;
            let message = format!(
                "no reading for {} (stale)",
                humantime::format_duration(after)
            );
            out.push(self.change(&rules.stale, Some(Severity::Alarm), now_ms, message));
        }
    }

    /// Seeds `offline` or `stale` from before a restart; false for another rule id.
    pub(super) fn restore(&mut self, rule: &str) -> bool {
        match rule {
            OFFLINE_RULE => self.offline = true,
            STALE_RULE => self.stale = true,
            _ => return false,
        }
        true
    }

    /// The device is decommissioned: clears `offline` and `stale` if they hold.
    pub(super) fn retire(
        &mut self,
        now_ms: i64,
        rules: &StatusRules,
        out: &mut Vec<ConditionChange>,
    ) {
        if std::mem::take(&mut self.offline) {
            out.push(self.change(&rules.offline, None, now_ms, "device decommissioned".into()));
        }
        if std::mem::take(&mut self.stale) {
            out.push(self.change(&rules.stale, None, now_ms, "device decommissioned".into()));
        }
    }

    /// Whether `offline` or `stale` (named by `rule`) holds.
    pub(super) fn is_active(&self, rule: &str) -> bool {
        match rule {
            OFFLINE_RULE => self.offline,
            STALE_RULE => self.stale,
            _ => false,
        }
    }

    fn change(
        &self,
        rule: &Arc<str>,
        severity: Option<Severity>,
        ts_ms: i64,
        message: String,
    ) -> ConditionChange {
        ConditionChange {
            sensor: self.status_sensor.clone(),
            rule: rule.clone(),
            class: AlarmClass::Fault,
            severity,
            value: None,
            threshold: None,
            reading_ts_ms: ts_ms,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::model::{AlarmClass, SensorId};
    use crate::rules::engine::testing::{engine_with, BASE_MS};

    #[test]
    fn device_faults_are_on_the_status_sensor_with_gateway_time() {
        let (mut engine, key, start) = engine_with("smoke_detector");
        let mut out = Vec::new();
        engine.on_tick(
            start + Duration::from_secs(100),
            BASE_MS + 100_000,
            &mut out,
        );
        engine.on_status(
            &key,
            false,
            start + Duration::from_secs(101),
            BASE_MS + 101_000,
            &mut out,
        );
        assert_eq!(out.len(), 2, "{out:#?}");
        for (c, ts_ms) in out.iter().zip([BASE_MS + 100_000, BASE_MS + 101_000]) {
            assert_eq!(c.sensor, SensorId::new("s1", "d1", "status"));
            assert_eq!(c.class, AlarmClass::Fault);
            assert_eq!(c.value, None);
            assert_eq!(c.reading_ts_ms, ts_ms);
        }
        assert_eq!(&*out[0].rule, "stale");
        assert_eq!(&*out[1].rule, "offline");
    }
}

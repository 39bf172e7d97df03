//! One point of a registered device (`<school>/<device>/<point>`): the sensor faults judged
//! first ([`Range`], [`Stuck`]), then every [`Rule`] of the point in profile order. Also what
//! a re-registration does to a point: carry its live state over, or retire it.

use std::collections::BTreeMap;

use tokio::time::Instant;

use super::rule::Rule;
use super::sensor_fault::{fault_change, Range, Stuck};
use crate::model::{ConditionChange, DeviceKey, SensorId, Severity, Value};
use crate::rules::config::{PointKind, PointSpec, Profile, RuleOverride};

/// What became of a reading given to [`Point::evaluate`] (the engine counts it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Judged {
    /// Outside the physical range: a sensor fault, not given to the rules.
    OutOfRange,
    /// Given to the stuck check and every rule.
    Evaluated,
}

pub(super) struct Point {
    pub(super) sensor: SensorId,
    pub(super) kind: PointKind,
    range: Range,
    stuck: Option<Stuck>,
    /// Last value evaluated by the rules, for changes a tick raises.
    last_value: Option<Value>,
    pub(super) rules: Vec<Rule>,
}

/// Message of the clearing change of a condition a re-registration removed.
const RETIRED: &str = "no longer configured for this device (normal)";

impl Point {
    /// The point `name` of a device with `profile`, with the device's (validated) overrides
    /// applied; disabled and incomplete rules are left out.
    pub(super) fn new(
        key: &DeviceKey,
        name: &str,
        spec: &PointSpec,
        profile: &Profile,
        overrides: &BTreeMap<String, RuleOverride>,
        now: Instant,
    ) -> Point {
        let rules = profile
            .rules
            .iter()
            .filter(|r| r.point == name)
            .filter_map(|r| {
                let spec = match overrides.get(&r.id) {
                    Some(ov) => r.with_override(ov),
                    None => r.clone(),
                };
                if !spec.is_enabled() {
                    return None;
                }
                let rule = Rule::new(&spec);
                if rule.is_none() {
                    tracing::warn!(device = %key, rule = %r.id, "rule is incomplete, skipped");
                }
                rule
            })
            .collect();
        Point {
            sensor: SensorId::new(&key.school, &key.device, name),
            kind: spec.kind,
            range: Range::new(name, spec),
            stuck: Stuck::new(name, spec, now),
            last_value: None,
            rules,
        }
    }

    /// The value as this point's kind, or `None` if it does not fit: a number for a bool point
    /// other than 0/1, a bool for a number point, a non-finite number.
    pub(super) fn typed(&self, value: Value) -> Option<Value> {
        match (self.kind, value) {
            (PointKind::Number, Value::Number(v)) if v.is_finite() => Some(value),
            (PointKind::Bool, Value::Bool(_)) => Some(value),
            // Modbus coils and some firmware send booleans as 0/1.
            (PointKind::Bool, Value::Number(v)) if v == 0.0 || v == 1.0 => {
                Some(Value::Bool(v == 1.0))
            }
            _ => None,
        }
    }

    /// Range check, stuck check, then every rule of the point, in profile order.
    pub(super) fn evaluate(
        &mut self,
        value: Value,
        ts_ms: i64,
        now: Instant,
        out: &mut Vec<ConditionChange>,
    ) -> Judged {
        if !self.range.admits(&self.sensor, value, ts_ms, out) {
            return Judged::OutOfRange;
        }
        if let Some(stuck) = &mut self.stuck {
            stuck.check(&self.sensor, value, now, ts_ms, out);
        }
        self.last_value = Some(value);
        for rule in &mut self.rules {
            rule.evaluate(&self.sensor, value, ts_ms, now, out);
        }
        Judged::Evaluated
    }

    /// Raises the conditions whose on-delay ran out while the last value still violates.
    pub(super) fn tick(&mut self, now: Instant, now_ms: i64, out: &mut Vec<ConditionChange>) {
        // A faulty sensor's last good value is not fresh enough to raise on.
        let Some(value) = self.last_value.filter(|_| !self.range.fault) else {
            return;
        };
        for rule in &mut self.rules {
            rule.tick(&self.sensor, value, now, now_ms, out);
        }
    }

    /// Seeds a condition that held before a restart; false if the point has no such rule.
    pub(super) fn restore(&mut self, rule: &str, severity: Severity) -> bool {
        if *self.range.rule == *rule {
            self.range.fault = true;
            return true;
        }
        if let Some(stuck) = self.stuck.as_mut().filter(|s| *s.rule == *rule) {
            stuck.active = true;
            return true;
        }
        match self.rules.iter_mut().find(|r| *r.id == *rule) {
            Some(r) => {
                r.restore(severity);
                true
            }
            None => false,
        }
    }

    /// Whether the condition of `rule` on this point holds (as last emitted).
    pub(super) fn is_active(&self, rule: &str) -> bool {
        if *self.range.rule == *rule {
            return self.range.fault;
        }
        if let Some(stuck) = self.stuck.as_ref().filter(|s| *s.rule == *rule) {
            return stuck.active;
        }
        self.rules
            .iter()
            .any(|r| *r.id == *rule && r.active().is_some())
    }

    /// Takes over the live state of the same point of the device's previous registration;
    /// what cannot be taken over stays in `old` for [`Point::retire`].
    pub(super) fn carry_over(&mut self, old: &mut Point) {
        self.last_value = old.last_value;
        if self.range.is_checked() {
            self.range.fault = std::mem::take(&mut old.range.fault);
        }
        if let (Some(new), Some(previous)) = (&mut self.stuck, &mut old.stuck) {
            new.carry_over(previous);
        }
        for rule in &mut self.rules {
            if let Some(previous) = old.rules.iter_mut().find(|r| r.id == rule.id) {
                rule.carry_over(previous);
            }
        }
    }

    /// Clears every condition still active on a point (or rule) that a re-registration
    /// removed, so the alarm manager is not left with a condition nobody will ever clear.
    pub(super) fn retire(self, now_ms: i64, out: &mut Vec<ConditionChange>) {
        if self.range.fault {
            out.push(fault_change(
                &self.sensor,
                self.range.rule.clone(),
                None,
                None,
                None,
                now_ms,
                RETIRED.into(),
            ));
        }
        if let Some(stuck) = self.stuck.as_ref().filter(|s| s.active) {
            out.push(fault_change(
                &self.sensor,
                stuck.rule.clone(),
                None,
                None,
                None,
                now_ms,
                RETIRED.into(),
            ));
        }
        for rule in self.rules.iter().filter(|r| r.active().is_some()) {
            out.push(rule.retired(&self.sensor, now_ms, RETIRED));
        }
    }
}

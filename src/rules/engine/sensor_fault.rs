//! Sensor faults of one point, judged before its rules: a number outside the point's physical
//! range (`<point>_range`; the value is then not evaluated, so a broken sensor never raises a
//! fire) and a number unchanged for `stuck_after` (`<point>_stuck`). Both are `fault` class
//! conditions on the point's own sensor.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::model::{AlarmClass, ConditionChange, SensorId, Severity, Value};
use crate::rules::config::{PointSpec, RANGE_RULE_SUFFIX, STUCK_RULE_SUFFIX};

/// The physical-range check of a point and whether its fault is active. Every point has the
/// rule id (so a restored `<point>_range` condition finds it); only points with a usable
/// `range` check anything.
pub(super) struct Range {
    bounds: Option<(f64, f64)>,
    pub(super) rule: Arc<str>,
    pub(super) fault: bool,
}

/// The stuck-value check of a point with `stuck_after`.
pub(super) struct Stuck {
    pub(super) rule: Arc<str>,
    after: Duration,
    value: Option<f64>,
    since: Instant,
    pub(super) active: bool,
}

/// A `fault` class change of a point's sensor.
pub(super) fn fault_change(
    sensor: &SensorId,
    rule: Arc<str>,
    severity: Option<Severity>,
    value: Option<Value>,
    threshold: Option<f64>,
    ts_ms: i64,
    message: String,
) -> ConditionChange {
    ConditionChange {
        sensor: sensor.clone(),
        rule,
        class: AlarmClass::Fault,
        severity,
        value,
        threshold,
        reading_ts_ms: ts_ms,
        message,
    }
}

impl Range {
    pub(super) fn new(point: &str, spec: &PointSpec) -> Range {
        Range {
            bounds: spec
                .range
                .filter(|[min, max]| min < max)
                .map(|[min, max]| (min, max)),
            rule: format!("{point}{RANGE_RULE_SUFFIX}").into(),
            fault: false,
        }
    }

    pub(super) fn is_checked(&self) -> bool {
        self.bounds.is_some()
    }

    /// Judges a value: `false` if it is a number outside the range (raising the fault on the
    /// first such value); `true` otherwise, clearing an active fault.
    pub(super) fn admits(
        &mut self,
        sensor: &SensorId,
        value: Value,
        ts_ms: i64,
        out: &mut Vec<ConditionChange>,
    ) -> bool {
        let (Value::Number(v), Some((min, max))) = (value, self.bounds) else {
            return true;
        };
        if v < min || v > max {
            if !self.fault {
                self.fault = true;
                out.push(fault_change(
                    sensor,
                    self.rule.clone(),
                    Some(Severity::Alarm),
                    Some(value),
                    Some(if v < min { min } else { max }),
                    ts_ms,
                    format!(
                        "{} {v} outside range [{min}, {max}] (sensor fault)",
                        sensor.point
                    ),
                ));
            }
            return false;
        }
        if self.fault {
            self.fault = false;
            out.push(fault_change(
                sensor,
                self.rule.clone(),
                None,
                Some(value),
                None,
                ts_ms,
                format!("{} {v} back within range (normal)", sensor.point),
            ));
        }
        true
    }
}

impl Stuck {
    /// The stuck check of a point, if it has a non-zero `stuck_after`; the first value starts
    /// the clock.
    pub(super) fn new(point: &str, spec: &PointSpec, now: Instant) -> Option<Stuck> {
        spec.stuck_after
            .filter(|d| !d.is_zero())
            .map(|after| Stuck {
                rule: format!("{point}{STUCK_RULE_SUFFIX}").into(),
                after,
                value: None,
                since: now,
                active: false,
            })
    }

    /// The same number for `after` raises the fault; any other number clears it. Booleans are
    /// not checked.
    pub(super) fn check(
        &mut self,
        sensor: &SensorId,
        value: Value,
        now: Instant,
        ts_ms: i64,
        out: &mut Vec<ConditionChange>,
    ) {
        let Value::Number(v) = value else {
            return;
        };
        let point = &sensor.point;
        let (severity, message) = if self.value == Some(v) {
            if self.active || now.saturating_duration_since(self.since) < self.after {
                return;
            }
            self.active = true;
            let after = humantime::format_duration(self.after);
            (
                Some(Severity::Alarm),
                format!("{point} unchanged at {v} for {after} (sensor stuck)"),
            )
        } else {
            self.value = Some(v);
            self.since = now;
            if !self.active {
                return;
            }
            self.active = false;
            (None, format!("{point} changed to {v} (normal)"))
        };
        out.push(fault_change(
            sensor,
            self.rule.clone(),
            severity,
            Some(value),
            None,
            ts_ms,
            message,
        ));
    }

    /// Takes over the clock and the active fault of the same point's previous registration.
    pub(super) fn carry_over(&mut self, previous: &mut Stuck) {
        self.value = previous.value;
        self.since = previous.since;
        self.active = std::mem::take(&mut previous.active);
    }
}

//! High and low rules: a value at or beyond a level raises it (two levels, `warning` and
//! `alarm`), and once active a level holds until the value goes back past it by the
//! `deadband`, so a value hovering at a level does not chatter. This file judges one value;
//! the on-/off-delays are the [`Gate`](super::gate::Gate)'s.

use crate::model::{Severity, Value};
use crate::rules::config::{RuleKind, RuleSpec};

/// Which side of its levels a threshold rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Abnormal at or above a level.
    High,
    /// Abnormal at or below a level.
    Low,
}

/// The numbers of a `high` or `low` rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Threshold {
    direction: Direction,
    warning: Option<f64>,
    alarm: Option<f64>,
    /// Zero or positive (an unusable deadband counts as none).
    deadband: f64,
}

impl Threshold {
    /// The threshold of a `high`/`low` rule; `None` for another kind or without any level.
    pub(super) fn compile(spec: &RuleSpec) -> Option<Threshold> {
        let direction = match spec.kind {
            RuleKind::High => Direction::High,
            RuleKind::Low => Direction::Low,
            RuleKind::State | RuleKind::RateOfRise => return None,
        };
        let deadband = spec
            .deadband
            .filter(|d| d.is_finite() && *d > 0.0)
            .unwrap_or(0.0);
        (spec.warning.is_some() || spec.alarm.is_some()).then_some(Threshold {
            direction,
            warning: spec.warning,
            alarm: spec.alarm,
            deadband,
        })
    }

    /// The severity `value` reaches, with hysteresis: a level is reached at `value >= level`
    /// (high) and, once `active`, held while `value >= level - deadband`; mirrored for low.
    pub(super) fn target(&self, value: f64, active: Option<Severity>) -> Option<Severity> {
        let deadband = self.deadband;
        let holds = |level: Option<f64>, severity: Severity| {
            level.is_some_and(|l| match self.direction {
                Direction::High => {
                    value >= l || (active >= Some(severity) && value >= l - deadband)
                }
                Direction::Low => value <= l || (active >= Some(severity) && value <= l + deadband),
            })
        };
        if holds(self.alarm, Severity::Alarm) {
            Some(Severity::Alarm)
        } else if holds(self.warning, Severity::Warning) {
            Some(Severity::Warning)
        } else {
            None
        }
    }

    /// The level a severity corresponds to.
    fn level(&self, severity: Severity) -> Option<f64> {
        match severity {
            Severity::Warning => self.warning,
            Severity::Alarm => self.alarm,
        }
    }

    /// `(threshold, message)` of a change from `previous` to `next`: going up names the level
    /// reached, going down the level left, e.g. `temp_c 61.2 ≥ 57 (alarm)` or
    /// `temp_c 27.9 back below 30 (normal)`. `word` is `next` in words.
    pub(super) fn describe(
        &self,
        point: &str,
        value: Value,
        previous: Option<Severity>,
        next: Option<Severity>,
        word: &str,
    ) -> (Option<f64>, String) {
        let high = self.direction == Direction::High;
        if next > previous {
            let level = next.and_then(|s| self.level(s));
            let sign = if high { "≥" } else { "≤" };
            let shown = level.map_or(String::new(), |l| format!(" {sign} {l}"));
            (level, format!("{point} {value}{shown} ({word})"))
        } else {
            let level = previous.and_then(|s| self.level(s));
            let side = if high { "below" } else { "above" };
            let shown = level.map_or(String::new(), |l| format!(" back {side} {l}"));
            (level, format!("{point} {value}{shown} ({word})"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AlarmClass, SensorId};
    use crate::rules::engine::testing::{engine_with, reading, A, BASE_MS};

    #[test]
    fn a_fire_change_carries_class_threshold_value_timestamp_and_message() {
        let (mut engine, _key, start) = engine_with("heat_detector");
        let mut out = Vec::new();
        engine.on_reading(
            &reading("temp_c", Value::Number(61.2), BASE_MS),
            start,
            &mut out,
        );
        let fire = out
            .iter()
            .find(|c| &*c.rule == "heat_fixed")
            .expect("fire raised");
        assert_eq!(fire.sensor, SensorId::new("s1", "d1", "temp_c"));
        assert_eq!(fire.class, AlarmClass::Fire);
        assert_eq!(fire.severity, A);
        assert_eq!(fire.threshold, Some(57.0));
        assert_eq!(fire.value, Some(Value::Number(61.2)));
        assert_eq!(fire.reading_ts_ms, BASE_MS);
        assert_eq!(fire.message, "temp_c 61.2 ≥ 57 (alarm)");
    }

    #[test]
    fn a_low_rule_names_the_level_reached_going_down_and_the_level_left_going_up() {
        let low = Threshold {
            direction: Direction::Low,
            warning: Some(5.0),
            alarm: Some(0.0),
            deadband: 1.0,
        };
        let warning = Some(Severity::Warning);
        let alarm = Some(Severity::Alarm);
        assert_eq!(low.target(0.5, alarm), alarm, "held within the deadband");
        assert_eq!(low.target(1.5, alarm), warning);
        assert_eq!(
            low.describe("temp_c", Value::Number(-1.0), warning, alarm, "alarm"),
            (Some(0.0), "temp_c -1 ≤ 0 (alarm)".to_string())
        );
        assert_eq!(
            low.describe("temp_c", Value::Number(6.5), warning, None, "normal"),
            (Some(5.0), "temp_c 6.5 back above 5 (normal)".to_string())
        );
    }
}

//! Rate-of-rise rules: a value rising at `per_minute` or faster, measured over a `window` of
//! the readings' device time (heat detectors: 8.3 °C/min). [`RateOfRise`] holds the rule's
//! numbers, [`RateHistory`] the samples of one sensor, bounded at [`RATE_SAMPLES_CAP`].

use std::collections::VecDeque;

use crate::model::Severity;
use crate::rules::config::{RuleKind, RuleSpec};

/// Most samples a rate-of-rise rule keeps per sensor: one every `window / 128` covers the window.
pub(super) const RATE_SAMPLES_CAP: usize = 130;
const RATE_SAMPLE_SLOTS: i64 = 128;

/// The numbers of a `rate_of_rise` rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct RateOfRise {
    per_minute: f64,
    /// At least one second.
    window_ms: i64,
    severity: Severity,
}

/// `(device ts_ms, value)` samples of one sensor for one rate-of-rise rule, and the last rate
/// computed (for messages). Empty and unallocated for the other rule kinds.
#[derive(Debug, Default)]
pub(super) struct RateHistory {
    pub(super) samples: VecDeque<(i64, f64)>,
    last_rate: f64,
}

impl RateOfRise {
    /// The numbers of a `rate_of_rise` rule; `None` for another kind or without a positive
    /// `per_minute` and a `window`.
    pub(super) fn compile(spec: &RuleSpec) -> Option<RateOfRise> {
        if spec.kind != RuleKind::RateOfRise {
            return None;
        }
        let per_minute = spec.per_minute.filter(|r| r.is_finite() && *r > 0.0)?;
        let window_ms = i64::try_from(spec.window?.as_millis())
            .unwrap_or(i64::MAX)
            .max(1000);
        Some(RateOfRise {
            per_minute,
            window_ms,
            severity: spec.severity.unwrap_or(Severity::Alarm),
        })
    }

    /// Records the reading and judges the rise; `None` while the history is too short to
    /// judge, which leaves the condition and its timers as they are.
    pub(super) fn target(
        &self,
        history: &mut RateHistory,
        ts_ms: i64,
        value: f64,
    ) -> Option<Option<Severity>> {
        let rate = history.rate(ts_ms, value, self.window_ms)?;
        history.last_rate = rate;
        Some((rate >= self.per_minute).then_some(self.severity))
    }

    /// `(threshold, message)` of a change, e.g. `temp_c rising 9.0/min ≥ 8.3/min (alarm)`.
    pub(super) fn describe(
        &self,
        point: &str,
        history: &RateHistory,
        next: Option<Severity>,
        word: &str,
    ) -> (Option<f64>, String) {
        let per_minute = self.per_minute;
        let sign = if next.is_some() { "≥" } else { "<" };
        (
            Some(per_minute),
            format!(
                "{point} rising {:.1}/min {sign} {per_minute}/min ({word})",
                history.last_rate
            ),
        )
    }
}

impl RateHistory {
    /// An empty history with room for a window of samples (one allocation, made up front).
    pub(super) fn with_window_capacity() -> RateHistory {
        RateHistory {
            samples: VecDeque::with_capacity(RATE_SAMPLES_CAP),
            last_rate: 0.0,
        }
    }

    /// Rise per minute over the samples within `window_ms` of device time, once they span at
    /// least half the window. Keeps at most [`RATE_SAMPLES_CAP`] samples.
    fn rate(&mut self, ts_ms: i64, value: f64, window_ms: i64) -> Option<f64> {
        let samples = &mut self.samples;
        if samples.back().is_some_and(|(t, _)| ts_ms < *t) {
            // The device clock went back: the history no longer lines up.
            samples.clear();
        }
        let oldest_kept = ts_ms.saturating_sub(window_ms);
        while samples.front().is_some_and(|(t, _)| *t < oldest_kept) {
            samples.pop_front();
        }
        let rate = samples.front().and_then(|(t0, v0)| {
            let span_ms = ts_ms.saturating_sub(*t0);
            (span_ms > 0 && span_ms >= window_ms / 2)
                .then(|| (value - v0) * 60_000.0 / span_ms as f64)
        });
        let spacing = (window_ms / RATE_SAMPLE_SLOTS).max(1);
        if samples.back().is_none_or(|(t, _)| ts_ms - *t >= spacing) {
            if samples.len() >= RATE_SAMPLES_CAP {
                samples.pop_front();
            }
            samples.push_back((ts_ms, value));
        }
        rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;
    use crate::rules::engine::testing::{engine_with, reading, BASE_MS};

    #[test]
    fn rate_samples_stay_bounded_under_a_fast_sensor() {
        let (mut engine, _key, start) = engine_with("heat_detector");
        let mut out = Vec::new();
        for i in 0..10_000i64 {
            engine.on_reading(
                &reading("temp_c", Value::Number(20.0), BASE_MS + i * 10),
                start,
                &mut out,
            );
        }
        let device = &engine.devices[0];
        let rule = device.points[0]
            .rules
            .iter()
            .find(|r| &*r.id == "heat_rate_of_rise")
            .expect("rule");
        assert!(rule.history.samples.len() <= RATE_SAMPLES_CAP);
        assert!(rule.history.samples.capacity() <= 2 * RATE_SAMPLES_CAP);
        assert!(out.is_empty());
    }

    #[test]
    fn a_device_clock_going_back_starts_the_history_over() {
        let rate = RateOfRise {
            per_minute: 8.3,
            window_ms: 60_000,
            severity: Severity::Alarm,
        };
        let mut history = RateHistory::with_window_capacity();
        let at = |s: i64| BASE_MS + s * 1000;
        assert_eq!(rate.target(&mut history, at(0), 20.0), None);
        assert_eq!(
            rate.target(&mut history, at(30), 25.0),
            Some(Some(Severity::Alarm)),
            "10 °C/min over half the window"
        );
        // The clock jumps back 20 s: the old samples no longer line up, so no judgement
        // until the new ones span half the window again.
        assert_eq!(rate.target(&mut history, at(10), 25.0), None);
        assert_eq!(history.samples.len(), 1);
        assert_eq!(rate.target(&mut history, at(39), 26.0), None);
        assert_eq!(
            rate.target(&mut history, at(40), 26.0),
            Some(None),
            "2 °C/min since the jump"
        );
    }
}

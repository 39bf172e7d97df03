//! One configured rule of one point: its kind-specific check ([`Threshold`], [`StateCheck`],
//! [`RateOfRise`]), its [`Gate`] (on-/off-delay, last emitted severity) and the change it emits
//! when that severity moves. [`super::point`] runs a point's rules in profile order.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::gate::Gate;
use super::rate::{RateHistory, RateOfRise};
use super::state::StateCheck;
use super::threshold::Threshold;
use crate::model::{AlarmClass, ConditionChange, SensorId, Severity, Value};
use crate::rules::config::{RuleKind, RuleSpec};

/// What a rule judges a value by.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Check {
    Threshold(Threshold),
    State(StateCheck),
    RateOfRise(RateOfRise),
}

impl Check {
    /// Builds the check of a rule; `None` if the rule lacks what its kind needs (an unvalidated
    /// profile set must not crash the engine).
    fn compile(spec: &RuleSpec) -> Option<Check> {
        match spec.kind {
            RuleKind::High | RuleKind::Low => Threshold::compile(spec).map(Check::Threshold),
            RuleKind::State => StateCheck::compile(spec).map(Check::State),
            RuleKind::RateOfRise => RateOfRise::compile(spec).map(Check::RateOfRise),
        }
    }
}

pub(super) struct Rule {
    pub(super) id: Arc<str>,
    class: AlarmClass,
    check: Check,
    on_delay: Duration,
    off_delay: Duration,
    gate: Gate,
    /// The samples of a rate-of-rise rule; empty (unallocated) for other kinds.
    pub(super) history: RateHistory,
}

fn severity_word(severity: Option<Severity>) -> &'static str {
    severity.map_or("normal", Severity::as_str)
}

impl Rule {
    /// The rule of a (profile or overridden) spec; `None` if it is incomplete.
    pub(super) fn new(spec: &RuleSpec) -> Option<Rule> {
        let check = Check::compile(spec)?;
        let history = match check {
            Check::RateOfRise(_) => RateHistory::with_window_capacity(),
            _ => RateHistory::default(),
        };
        Some(Rule {
            id: spec.id.as_str().into(),
            class: spec.class,
            check,
            on_delay: spec.on_delay.unwrap_or_default(),
            off_delay: spec.off_delay.unwrap_or_default(),
            gate: Gate::default(),
            history,
        })
    }

    /// The severity last emitted (`None`: normal).
    pub(super) fn active(&self) -> Option<Severity> {
        self.gate.active
    }

    /// Seeds the condition that held before a restart.
    pub(super) fn restore(&mut self, severity: Severity) {
        self.gate.active = Some(severity);
    }

    /// Evaluates one in-range value of the rule's point.
    pub(super) fn evaluate(
        &mut self,
        sensor: &SensorId,
        value: Value,
        ts_ms: i64,
        now: Instant,
        out: &mut Vec<ConditionChange>,
    ) {
        let raw = match &self.check {
            Check::Threshold(threshold) => threshold.target(value.as_f64(), self.gate.active),
            Check::State(state) => match state.target(value) {
                Some(raw) => raw,
                None => return,
            },
            Check::RateOfRise(rate) => {
                match rate.target(&mut self.history, ts_ms, value.as_f64()) {
                    Some(raw) => raw,
                    // Not enough history to judge: leave the condition and its timers as they are.
                    None => return,
                }
            }
        };
        if let Some(next) = self.gate.feed(raw, now, self.on_delay, self.off_delay) {
            out.push(self.change(sensor, next, value, ts_ms));
        }
    }

    /// Raises the condition if its on-delay ran out while `value` (the point's last) still
    /// violates; `now_ms` stamps the change.
    pub(super) fn tick(
        &mut self,
        sensor: &SensorId,
        value: Value,
        now: Instant,
        now_ms: i64,
        out: &mut Vec<ConditionChange>,
    ) {
        if let Some(next) = self.gate.tick(now, self.on_delay) {
            out.push(self.change(sensor, next, value, now_ms));
        }
    }

    /// The change to emit when the severity goes from `self.gate.active` to `next`; updates the
    /// gate. Only called on a change, so formatting here is off the hot path.
    fn change(
        &mut self,
        sensor: &SensorId,
        next: Option<Severity>,
        value: Value,
        ts_ms: i64,
    ) -> ConditionChange {
        let previous = self.gate.active;
        self.gate.active = next;
        let point = &*sensor.point;
        let word = severity_word(next);
        let (threshold, message) = match &self.check {
            Check::Threshold(threshold) => threshold.describe(point, value, previous, next, word),
            Check::State(_) => (
                None,
                StateCheck::describe(point, value, next, self.on_delay, word),
            ),
            Check::RateOfRise(rate) => rate.describe(point, &self.history, next, word),
        };
        ConditionChange {
            sensor: sensor.clone(),
            rule: self.id.clone(),
            class: self.class,
            severity: next,
            value: Some(value),
            threshold,
            reading_ts_ms: ts_ms,
            message,
        }
    }

    /// Takes over the live state of the rule of the same id of the previous registration:
    /// what was emitted always; the delay timers only if the numbers are unchanged; the rate
    /// samples if both are rate-of-rise rules.
    pub(super) fn carry_over(&mut self, previous: &mut Rule) {
        let gate = std::mem::take(&mut previous.gate);
        self.gate = if self.check == previous.check {
            gate
        } else {
            // New numbers: keep what was emitted, restart the delay timers.
            Gate::restarted(gate.active)
        };
        if let (Check::RateOfRise(_), Check::RateOfRise(_)) = (&self.check, &previous.check) {
            std::mem::swap(&mut self.history, &mut previous.history);
        }
    }

    /// The clearing change of an active condition whose rule a re-registration removed.
    pub(super) fn retired(&self, sensor: &SensorId, now_ms: i64, message: &str) -> ConditionChange {
        ConditionChange {
            sensor: sensor.clone(),
            rule: self.id.clone(),
            class: self.class,
            severity: None,
            value: None,
            threshold: None,
            reading_ts_ms: now_ms,
            message: message.into(),
        }
    }
}

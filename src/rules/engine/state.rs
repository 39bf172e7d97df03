//! State rules: a boolean point (smoke, door open, fan on) is abnormal while it equals
//! `active_when`, at one severity. The [`Gate`](super::gate::Gate) adds the on-delay that turns
//! "door open" into "door open for 5 minutes".

use std::time::Duration;

use crate::model::{Severity, Value};
use crate::rules::config::{RuleKind, RuleSpec};

/// The numbers of a `state` rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct StateCheck {
    active_when: bool,
    severity: Severity,
}

impl StateCheck {
    /// The check of a `state` rule; `None` for another kind or without `active_when`.
    pub(super) fn compile(spec: &RuleSpec) -> Option<StateCheck> {
        if spec.kind != RuleKind::State {
            return None;
        }
        Some(StateCheck {
            active_when: spec.active_when?,
            severity: spec.severity.unwrap_or(Severity::Alarm),
        })
    }

    /// The severity a value implies; `None` if the value is not a boolean (a state rule on a
    /// number point, which validation rejects): the condition is then left as it is.
    pub(super) fn target(&self, value: Value) -> Option<Option<Severity>> {
        value
            .as_bool()
            .map(|b| (b == self.active_when).then_some(self.severity))
    }

    /// The message of a change, e.g. `door_open = true for 5m (alarm)`; the on-delay is named
    /// when it made the condition wait.
    pub(super) fn describe(
        point: &str,
        value: Value,
        next: Option<Severity>,
        on_delay: Duration,
        word: &str,
    ) -> String {
        let held = if next.is_some() && !on_delay.is_zero() {
            format!(" for {}", humantime::format_duration(on_delay))
        } else {
            String::new()
        };
        format!("{point} = {value}{held} ({word})")
    }
}

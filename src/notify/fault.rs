//! The system fault of a notification channel: `notify:<channel>` (通知通道失败), raised when a
//! channel fails for good (bad URL, signature refused) or keeps failing, and cleared by its next
//! success. The notifier only reports; the pipeline core owns the alarm book and applies the
//! condition change this module builds ([`fault_change`]), like an action's device fault.
//!
//! This is the one place that decides how the fault looks (its pseudo sensor, rule and
//! message): when the gateway gets a common convention for its own fault alarms, re-point
//! [`fault_change`] and [`is_fault`] and nothing else changes.

use crate::model::{AlarmClass, ConditionChange, SensorId, Severity};

/// The rule id prefix of a channel's fault.
pub const FAULT_RULE_PREFIX: &str = "notify:";

/// The pseudo school and device that carry the gateway's own faults (not a campus).
pub const SYSTEM_SCHOOL: &str = "system";
const NOTIFY_DEVICE: &str = "notify";

/// The rule id of `channel`'s fault.
pub fn fault_rule(channel: &str) -> String {
    format!("{FAULT_RULE_PREFIX}{channel}")
}

/// Whether `rule` is a channel's fault (the core restores these itself, not the rules engine).
pub fn is_fault(rule: &str) -> bool {
    rule.starts_with(FAULT_RULE_PREFIX)
}

/// The change of `channel`'s fault condition: raised with `failure` (why), cleared with `None`.
pub fn fault_change(channel: &str, failure: Option<&str>, now_ms: i64) -> ConditionChange {
    let message = match failure {
        Some(why) => format!("通知通道失败：{channel}：{why}"),
        None => format!("通知通道恢复：{channel}"),
    };
    ConditionChange {
        sensor: SensorId::new(SYSTEM_SCHOOL, NOTIFY_DEVICE, channel),
        rule: fault_rule(channel).into(),
        class: AlarmClass::Fault,
        severity: failure.map(|_| Severity::Alarm),
        value: None,
        threshold: None,
        reading_ts_ms: now_ms,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarms::{AlarmBook, AlarmState, Transition};

    #[test]
    fn a_failure_raises_the_channel_fault_once_and_a_success_clears_it() {
        let mut book = AlarmBook::default();
        let raised = book
            .apply(&fault_change("duty-room", Some("HTTP 403"), 10), 10, false)
            .expect("raised");
        assert_eq!(raised.transition, Transition::Raised);
        assert_eq!(&*raised.alarm.rule, "notify:duty-room");
        assert_eq!(raised.alarm.sensor.to_string(), "system/notify/duty-room");
        assert_eq!(raised.alarm.class, AlarmClass::Fault);
        assert_eq!(raised.alarm.message, "通知通道失败：duty-room：HTTP 403");
        assert!(is_fault(&raised.alarm.rule));
        // Failing again changes nothing: one fault per channel.
        assert!(book
            .apply(&fault_change("duty-room", Some("HTTP 403"), 11), 11, false)
            .is_none());
        let cleared = book
            .apply(&fault_change("duty-room", None, 12), 12, false)
            .expect("cleared");
        assert_eq!(cleared.transition, Transition::Cleared);
        assert_eq!(cleared.alarm.state, AlarmState::ClearedUnacked);
        assert!(!is_fault("heat_fixed"));
    }
}

//! What a finished (or refused) action run does to the alarms: a journal note on the alarm
//! whose rule named the action (transition `action`, user `system`), and the change of the
//! device's `action_failed:<action>` fault condition — raised when the run failed, cleared
//! when it succeeded. The pipeline core applies both (it owns the alarm book).

use crate::alarms::{Alarm, AlarmEvent, Transition, SYSTEM_USER};
use crate::model::{AlarmClass, ConditionChange, SensorId, Severity};
use crate::rules::config::ACTION_FAILED_RULE_PREFIX;

use super::runner::ActionDone;

/// The rule id of the device fault a failed `action` raises.
pub fn failed_rule(action: &str) -> String {
    format!("{ACTION_FAILED_RULE_PREFIX}{action}")
}

/// Whether `rule` is an action's fault. Restored ones are the core's own, not the rule
/// engine's: they need no restoring there (a later successful run clears them in the book).
pub fn is_fault(rule: &str) -> bool {
    rule.starts_with(ACTION_FAILED_RULE_PREFIX)
}

/// The journal note of a run (on `alarm`, its state now) and the change of the device's
/// `action_failed:<action>` fault condition: raised on failure, cleared on success.
pub fn outcome(done: &ActionDone, alarm: Alarm, now: i64) -> (AlarmEvent, ConditionChange) {
    let action = &done.action;
    let (comment, severity, message) = match &done.result {
        Ok(description) => (
            format!("{action}: {description}"),
            None,
            format!("action `{action}` succeeded (normal)"),
        ),
        Err(error) => (
            format!("{action} failed: {error}"),
            Some(Severity::Alarm),
            format!("action `{action}` failed: {error}"),
        ),
    };
    let change = ConditionChange {
        sensor: SensorId::device_status(&alarm.school, &alarm.device),
        rule: failed_rule(action).into(),
        class: AlarmClass::Fault,
        severity,
        value: None,
        threshold: None,
        reading_ts_ms: now,
        message,
    };
    let event = AlarmEvent {
        transition: Transition::Action,
        at: now,
        user: SYSTEM_USER.to_string(),
        comment: Some(comment),
        false_alarm: false,
        disposition: None,
        alarm,
    };
    (event, change)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarms::AlarmBook;

    fn gas_alarm() -> Alarm {
        let change = ConditionChange {
            sensor: SensorId::parse("xhsy/cab-1/lel_pct").expect("sensor path"),
            rule: "lel_high".into(),
            class: AlarmClass::Gas,
            severity: Some(Severity::Alarm),
            value: None,
            threshold: Some(40.0),
            reading_ts_ms: 1,
            message: "lel_pct high".into(),
        };
        AlarmBook::default()
            .apply(&change, 1, false)
            .expect("raised")
            .alarm
    }

    #[test]
    fn a_failed_run_is_noted_on_its_alarm_and_raises_the_device_fault() {
        let gas = gas_alarm();
        let done = ActionDone {
            alarm: gas.clone(),
            action: "exhaust_fan_on".into(),
            result: Err("no answer".into()),
        };
        let (note, fault) = outcome(&done, gas.clone(), 7);
        assert_eq!(note.transition, Transition::Action);
        assert_eq!((note.alarm.id, note.at), (gas.id, 7));
        assert_eq!(note.user, SYSTEM_USER);
        assert_eq!(
            note.comment.as_deref(),
            Some("exhaust_fan_on failed: no answer")
        );
        assert_eq!(fault.sensor.to_string(), "xhsy/cab-1/status");
        assert_eq!(&*fault.rule, "action_failed:exhaust_fan_on");
        assert!(is_fault(&fault.rule));
        assert_eq!(fault.class, AlarmClass::Fault);
        assert_eq!(fault.severity, Some(Severity::Alarm));
        assert_eq!(fault.message, "action `exhaust_fan_on` failed: no answer");
    }

    #[test]
    fn a_good_run_is_noted_with_what_was_written_and_clears_the_device_fault() {
        let gas = gas_alarm();
        let done = ActionDone {
            alarm: gas.clone(),
            action: "exhaust_fan_on".into(),
            result: Ok("writing coil 0 = true of unit 1 via 10.0.3.17:502".into()),
        };
        let (note, fault) = outcome(&done, gas, 7);
        assert_eq!(
            note.comment.as_deref(),
            Some("exhaust_fan_on: writing coil 0 = true of unit 1 via 10.0.3.17:502")
        );
        assert_eq!(&*fault.rule, "action_failed:exhaust_fan_on");
        assert_eq!(fault.severity, None, "a condition change that clears");
        assert!(!is_fault("lel_high"));
    }
}

//! The lifecycle as tables: (condition changes and operator actions) → (transitions, state).

use super::*;
use crate::alarms::{AlarmState, Transition};
use crate::model::{AlarmClass, ConditionChange, SensorId, Severity, Value};

fn change(class: AlarmClass, severity: Option<Severity>) -> ConditionChange {
    ConditionChange {
        sensor: SensorId::new("xhsy", "hd-1", "temp_c"),
        rule: "r".into(),
        class,
        severity,
        value: Some(Value::Number(60.0)),
        threshold: Some(57.0),
        reading_ts_ms: 1000,
        message: "temp_c 60 ≥ 57".into(),
    }
}

enum Step {
    Cond(Option<Severity>),
    Ack,
    ResetIt,
}
use Step::*;

/// (name, steps, expected transitions, state of the open alarm at the end)
type Case = (
    &'static str,
    Vec<Step>,
    Vec<Option<Transition>>,
    Option<AlarmState>,
);

const W: Option<Severity> = Some(Severity::Warning);
const A: Option<Severity> = Some(Severity::Alarm);

fn play(class: AlarmClass, steps: &[Step]) -> (Vec<Option<Transition>>, AlarmBook) {
    let mut book = AlarmBook::default();
    let mut out = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let now = 10_000 + i as i64;
        let id = book.open().next().map(|a| a.id).unwrap_or(0);
        let t = match step {
            Cond(s) => book
                .apply(&change(class, *s), now, false)
                .map(|e| e.transition),
            Ack => book
                .acknowledge(id, "op", None, now)
                .ok()
                .map(|e| e.transition),
            ResetIt => book
                .reset(id, "op", None, false, now)
                .ok()
                .map(|e| e.transition),
        };
        out.push(t);
    }
    (out, book)
}

#[test]
fn non_latching_lifecycle_follows_isa_18_2() {
    use Transition::*;
    let cases: Vec<Case> = vec![
        (
            "raise",
            vec![Cond(A)],
            vec![Some(Raised)],
            Some(AlarmState::ActiveUnacked),
        ),
        (
            "repeat updates nothing",
            vec![Cond(A), Cond(A)],
            vec![Some(Raised), None],
            Some(AlarmState::ActiveUnacked),
        ),
        (
            "ack",
            vec![Cond(A), Ack],
            vec![Some(Raised), Some(Acknowledged)],
            Some(AlarmState::ActiveAcked),
        ),
        (
            "ack then clear closes",
            vec![Cond(A), Ack, Cond(None)],
            vec![Some(Raised), Some(Acknowledged), Some(Cleared)],
            None,
        ),
        (
            "clear before ack",
            vec![Cond(A), Cond(None)],
            vec![Some(Raised), Some(Cleared)],
            Some(AlarmState::ClearedUnacked),
        ),
        (
            "clear then ack closes",
            vec![Cond(A), Cond(None), Ack],
            vec![Some(Raised), Some(Cleared), Some(Acknowledged)],
            None,
        ),
        (
            "returns while cleared_unacked",
            vec![Cond(A), Cond(None), Cond(A)],
            vec![Some(Raised), Some(Cleared), Some(Reraised)],
            Some(AlarmState::ActiveUnacked),
        ),
        (
            "escalation needs a new ack",
            vec![Cond(W), Ack, Cond(A)],
            vec![Some(Raised), Some(Acknowledged), Some(Escalated)],
            Some(AlarmState::ActiveUnacked),
        ),
        (
            "de-escalation keeps the ack",
            vec![Cond(A), Ack, Cond(W)],
            vec![Some(Raised), Some(Acknowledged), Some(Deescalated)],
            Some(AlarmState::ActiveAcked),
        ),
        (
            "normal without alarm is nothing",
            vec![Cond(None)],
            vec![None],
            None,
        ),
        (
            "double ack refused",
            vec![Cond(A), Ack, Ack],
            vec![Some(Raised), Some(Acknowledged), None],
            Some(AlarmState::ActiveAcked),
        ),
        (
            "supervisory cannot be reset",
            vec![Cond(A), Cond(None), ResetIt],
            vec![Some(Raised), Some(Cleared), None],
            Some(AlarmState::ClearedUnacked),
        ),
    ];
    for (name, steps, expected, state) in cases {
        let (got, book) = play(AlarmClass::Supervisory, &steps);
        assert_eq!(got, expected, "{name}");
        assert_eq!(book.open().next().map(|a| a.state), state, "{name}");
    }
}

#[test]
fn fire_alarms_latch_until_reset_and_reset_is_refused_while_the_condition_holds() {
    use Transition::*;
    let cases: Vec<Case> = vec![
        (
            "stays active after normal",
            vec![Cond(A), Cond(None)],
            vec![Some(Raised), Some(ReturnedToNormal)],
            Some(AlarmState::ActiveUnacked),
        ),
        (
            "reset refused while active",
            vec![Cond(A), ResetIt],
            vec![Some(Raised), None],
            Some(AlarmState::ActiveUnacked),
        ),
        (
            "reset after normal closes",
            vec![Cond(A), Cond(None), ResetIt],
            vec![Some(Raised), Some(ReturnedToNormal), Some(Reset)],
            None,
        ),
        (
            "acked then normal still latched",
            vec![Cond(A), Ack, Cond(None)],
            vec![Some(Raised), Some(Acknowledged), Some(ReturnedToNormal)],
            Some(AlarmState::ActiveAcked),
        ),
        (
            "comes back before reset",
            vec![Cond(A), Ack, Cond(None), Cond(A)],
            vec![
                Some(Raised),
                Some(Acknowledged),
                Some(ReturnedToNormal),
                Some(Reraised),
            ],
            Some(AlarmState::ActiveUnacked),
        ),
    ];
    for (name, steps, expected, state) in cases {
        let (got, book) = play(AlarmClass::Fire, &steps);
        assert_eq!(got, expected, "{name}");
        assert_eq!(book.open().next().map(|a| a.state), state, "{name}");
    }
}

#[test]
fn one_alarm_per_sensor_and_rule_and_new_ids_after_close() {
    let mut book = AlarmBook::default();
    let a = book
        .apply(&change(AlarmClass::Gas, A), 1, false)
        .unwrap()
        .alarm
        .id;
    assert!(book.apply(&change(AlarmClass::Gas, A), 2, false).is_none());
    assert_eq!(book.len(), 1);
    book.apply(&change(AlarmClass::Gas, None), 3, false);
    book.reset(a, "op", Some("checked".into()), false, 4)
        .unwrap();
    assert!(book.is_empty());
    let b = book
        .apply(&change(AlarmClass::Gas, A), 5, false)
        .unwrap()
        .alarm
        .id;
    assert!(b > a);
}

#[test]
fn restored_book_continues_ids_and_keys() {
    let mut book = AlarmBook::default();
    let event = book.apply(&change(AlarmClass::Fire, A), 1, false).unwrap();
    let mut restored = AlarmBook::restore(vec![event.alarm.clone()], 41);
    // A repeat updates the restored alarm, never a second one.
    assert!(restored
        .apply(&change(AlarmClass::Fire, A), 2, false)
        .is_none());
    assert_eq!(restored.len(), 1);
    let other = ConditionChange {
        rule: "other".into(),
        ..change(AlarmClass::Fire, A)
    };
    assert_eq!(restored.apply(&other, 3, false).unwrap().alarm.id, 42);
}

#[test]
fn shelving_needs_a_bounded_future_expiry_and_expires_by_itself() {
    let mut book = AlarmBook::default();
    let id = book
        .apply(&change(AlarmClass::Fault, A), 0, false)
        .unwrap()
        .alarm
        .id;
    assert!(book.shelve(id, "op", 0, "x".into(), 10).is_err());
    assert!(book
        .shelve(id, "op", 10 + MAX_SHELVE_MS + 1, "x".into(), 10)
        .is_err());
    let e = book
        .shelve(id, "op", 1000, "sensor being replaced".into(), 10)
        .unwrap();
    assert_eq!(e.transition, Transition::Shelved);
    assert!(book.expire_shelves(999).is_empty());
    let expired = book.expire_shelves(1000);
    assert_eq!(expired.len(), 1);
    assert!(book.get(id).unwrap().shelved.is_none());
}

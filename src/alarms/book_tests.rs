//! The lifecycle as tables: (condition changes and operator actions) → (transitions, state).

use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::access::Role;
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
                .reset(id, "op", None, None, now)
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
    let reset = book
        .reset(a, "op", Some("checked".into()), Some(Disposition::False), 4)
        .unwrap();
    // The disposition rides on the reset event; `false` also sets the older flag.
    assert_eq!(reset.disposition, Some(Disposition::False));
    assert!(reset.false_alarm);
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

fn shelve_as(role: Role, until_ms: i64, reason: &str) -> ShelveRequest {
    ShelveRequest {
        user: role.as_str().into(),
        role,
        until_ms,
        reason: reason.into(),
    }
}

fn op(until_ms: i64, reason: &str) -> ShelveRequest {
    shelve_as(Role::Operator, until_ms, reason)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap()
}

fn raised(book: &mut AlarmBook, class: AlarmClass) -> u64 {
    book.apply(&change(class, A), 0, false).unwrap().alarm.id
}

#[test]
fn shelving_needs_a_bounded_future_expiry_and_expires_by_itself() {
    let mut book = AlarmBook::default();
    let t0 = Instant::now();
    let id = raised(&mut book, AlarmClass::Fault);
    assert!(book.shelve(id, op(0, "x"), 10, t0).is_err());
    assert!(book
        .shelve(id, op(10 + MAX_SHELVE_MS + 1, "x"), 10, t0)
        .is_err());
    let e = book
        .shelve(id, op(1000, "sensor being replaced"), 10, t0)
        .unwrap();
    assert_eq!(e.transition, Transition::Shelved);
    assert!(book
        .expire_shelves(999, t0 + Duration::from_millis(989))
        .is_empty());
    let expired = book.expire_shelves(1000, t0 + Duration::from_millis(990));
    assert_eq!(expired.len(), 1);
    assert!(book.get(id).unwrap().shelved.is_none());
}

#[test]
fn only_operators_and_admins_shelve_fire_and_gas_alarms() {
    let mut book = AlarmBook::default();
    let t0 = Instant::now();
    let fire = raised(&mut book, AlarmClass::Fire);
    let until = 3_600_000;
    assert_eq!(
        book.shelve(fire, shelve_as(Role::LabManager, until, "x"), 0, t0),
        Err(AlarmError::ShelveNotAllowed(fire))
    );
    assert!(book.get(fire).unwrap().shelved.is_none());
    assert!(book.shelve(fire, op(until, "detector test"), 0, t0).is_ok());
    let mut book = AlarmBook::default();
    let gas = book
        .apply(
            &ConditionChange {
                rule: "lel".into(),
                ..change(AlarmClass::Gas, A)
            },
            0,
            false,
        )
        .unwrap()
        .alarm
        .id;
    let refused = book.shelve(gas, shelve_as(Role::LabManager, until, "x"), 0, t0);
    assert!(refused.as_ref().is_err_and(AlarmError::is_forbidden));
    let admin = shelve_as(Role::Admin, until, "sensor swap");
    assert!(book.shelve(gas, admin, 0, t0).is_ok());
    // A lab manager may shelve the other classes.
    let door = raised(&mut book, AlarmClass::Supervisory);
    let lab = shelve_as(Role::LabManager, until, "door propped for delivery");
    assert!(book.shelve(door, lab, 0, t0).is_ok());
}

#[test]
fn a_shelve_is_extended_past_a_day_from_its_first_shelve_only_by_an_admin() {
    let mut book = AlarmBook::default();
    let t0 = Instant::now();
    let id = raised(&mut book, AlarmClass::Fault);
    let hour = 3_600_000;
    book.shelve(id, op(20 * hour, "a"), 0, t0).unwrap();
    // 18 h later: extending to 24 h after the first shelve is fine, a minute more is not.
    let later = 18 * hour;
    let t1 = t0 + Duration::from_secs(18 * 3600);
    book.shelve(id, op(24 * hour, "b"), later, t1).unwrap();
    let refused = book.shelve(id, op(24 * hour + 60_000, "c"), later, t1);
    assert_eq!(
        refused,
        Err(AlarmError::ShelveTooLong {
            id,
            since_ms: 0,
            max_hours: 24
        })
    );
    assert_eq!(
        book.get(id).unwrap().shelved.as_ref().unwrap().until_ms,
        24 * hour
    );
    let admin = shelve_as(Role::Admin, later + 20 * hour, "waiting for the part");
    let e = book.shelve(id, admin, later, t1).unwrap();
    assert_eq!(e.alarm.shelved.as_ref().unwrap().since_ms, Some(0));
    // Once a shelve has run out, the next one starts a new run.
    let end = t1 + Duration::from_secs(20 * 3600);
    assert_eq!(book.expire_shelves(later + 20 * hour, end).len(), 1);
    let again = later + 20 * hour + 1;
    let e = book
        .shelve(id, op(again + 23 * hour, "d"), again, end)
        .unwrap();
    assert_eq!(e.alarm.shelved.unwrap().since_ms, Some(again));
}

#[test]
fn a_wall_clock_jump_neither_ends_nor_prolongs_a_shelve() {
    let mut book = AlarmBook::default();
    let t0 = Instant::now();
    let id = raised(&mut book, AlarmClass::Fault);
    let start_ms = 1_000_000;
    let hour = Duration::from_secs(3600);
    book.shelve(id, op(start_ms + ms(hour), "x"), start_ms, t0)
        .unwrap();
    // The wall clock jumps two days ahead a minute later: the shelve stays.
    let jumped = start_ms + 2 * MAX_SHELVE_MS;
    let a_minute = t0 + Duration::from_secs(60);
    assert!(book.expire_shelves(jumped, a_minute).is_empty());
    assert!(book.get(id).unwrap().shelved.is_some());
    // The wall clock jumps a day back: the shelve still ends after its hour.
    let back = start_ms - MAX_SHELVE_MS;
    assert!(book
        .expire_shelves(back, t0 + hour - Duration::from_millis(1))
        .is_empty());
    let ended = book.expire_shelves(back, t0 + hour);
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].transition, Transition::Unshelved);
}

#[test]
fn a_restored_shelve_ends_after_the_time_it_had_left() {
    let mut book = AlarmBook::default();
    let t0 = Instant::now();
    let id = raised(&mut book, AlarmClass::Fault);
    let e = book.shelve(id, op(10_000, "x"), 0, t0).unwrap();
    // Restarted 4 s later: 6 s left, counted from the first tick after the restart.
    let mut restored = AlarmBook::restore(vec![e.alarm], id);
    let t1 = t0 + Duration::from_secs(100);
    assert!(restored.expire_shelves(4_000, t1).is_empty());
    let later_wall = 4_000 + 2 * MAX_SHELVE_MS;
    let jumped = restored.expire_shelves(later_wall, t1 + Duration::from_millis(5_999));
    assert!(jumped.is_empty(), "a jump after the restart ended it");
    assert_eq!(
        restored
            .expire_shelves(4_000, t1 + Duration::from_secs(6))
            .len(),
        1
    );
}

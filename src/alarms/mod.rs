//! Alarms: the ISA-18.2 lifecycle of every (sensor, rule) alarm, driven by the rules engine's
//! condition changes and by operators (acknowledge, shelve, reset).
//!
//! [`AlarmBook`] is a pure state machine (no I/O): the core task feeds it and then journals
//! and broadcasts the [`AlarmEvent`]s it returns. One open alarm per (sensor, rule): a repeat
//! updates it, never creates a second.
//!
//! States: `active_unacked` → `active_acked` → `cleared`; `active_unacked` → `cleared_unacked`
//! when the condition returns to normal before anyone acknowledged. `fire` and `gas` alarms
//! latch: they stay active after the condition clears until an operator resets them.

pub mod book;
mod config;
pub mod export;

pub use book::{AlarmBook, AlarmError, ShelveRequest, MAX_SHELVE_MS};
pub use config::AlarmsConfig;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::{AlarmClass, SensorId, Severity, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmState {
    ActiveUnacked,
    ActiveAcked,
    ClearedUnacked,
    Cleared,
}

impl AlarmState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::ActiveUnacked => "active_unacked",
            AlarmState::ActiveAcked => "active_acked",
            AlarmState::ClearedUnacked => "cleared_unacked",
            AlarmState::Cleared => "cleared",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            AlarmState::ActiveUnacked,
            AlarmState::ActiveAcked,
            AlarmState::ClearedUnacked,
            AlarmState::Cleared,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    pub fn is_active(self) -> bool {
        matches!(self, AlarmState::ActiveUnacked | AlarmState::ActiveAcked)
    }
}

/// A shelved alarm is hidden from the board until `until_ms` (Unix ms; shown to people — the
/// book ends the shelve on the monotonic clock, so a wall-clock jump neither ends nor prolongs
/// it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shelve {
    pub until_ms: i64,
    pub reason: String,
    pub by: String,
    /// Unix ms of the first shelve of an unbroken run of shelves (extensions keep it): a run
    /// longer than [`MAX_SHELVE_MS`](book::MAX_SHELVE_MS) from here needs an admin. `None` in
    /// alarms journaled before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<i64>,
}

/// One alarm: the state of one (sensor, rule) pair from raise to close.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
    pub id: u64,
    pub sensor: SensorId,
    pub school: Arc<str>,
    pub device: Arc<str>,
    pub point: Arc<str>,
    pub rule: Arc<str>,
    pub class: AlarmClass,
    pub severity: Severity,
    pub state: AlarmState,
    /// The last value that changed the condition.
    pub value: Option<Value>,
    pub threshold: Option<f64>,
    pub message: String,
    /// Unix ms.
    pub raised_at: i64,
    pub updated_at: i64,
    /// Unix ms of the reading behind the last transition.
    pub reading_ts: i64,
    pub cleared_at: Option<i64>,
    /// Whether the condition holds now (a latched alarm may be active with the condition gone).
    pub condition_active: bool,
    pub acked_by: Option<String>,
    pub acked_at: Option<i64>,
    pub ack_comment: Option<String>,
    pub shelved: Option<Shelve>,
    /// Raised while its school or building was in drill mode.
    pub drill: bool,
    /// How many times the condition came back while this alarm was open.
    pub occurrences: u32,
}

impl Alarm {
    pub fn key(&self) -> (SensorId, Arc<str>) {
        (self.sensor.clone(), self.rule.clone())
    }

    /// Open = not yet `cleared`.
    pub fn is_open(&self) -> bool {
        self.state != AlarmState::Cleared
    }
}

/// What happened to an alarm; journaled and streamed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    Raised,
    /// The condition came back while the alarm was cleared_unacked.
    Reraised,
    Escalated,
    Deescalated,
    /// A latched alarm's condition returned to normal; it now waits for a reset.
    ReturnedToNormal,
    Cleared,
    Acknowledged,
    Reset,
    Shelved,
    Unshelved,
    /// An action the alarm's rule names ran (or failed: see the comment). A journal
    /// note: the alarm itself did not change.
    Action,
    /// A notification attempt about the alarm (channel, step and result in the comment). A
    /// journal note: the alarm itself did not change. Consumers of the outbox that act on
    /// transitions (tickets, notifications) ignore it, so notifying never feeds back.
    Notified,
}

impl Transition {
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Raised => "raised",
            Transition::Reraised => "reraised",
            Transition::Escalated => "escalated",
            Transition::Deescalated => "deescalated",
            Transition::ReturnedToNormal => "returned_to_normal",
            Transition::Cleared => "cleared",
            Transition::Acknowledged => "acknowledged",
            Transition::Reset => "reset",
            Transition::Shelved => "shelved",
            Transition::Unshelved => "unshelved",
            Transition::Action => "action",
            Transition::Notified => "notified",
        }
    }

    /// A note journaled on the alarm (an action ran, a notification went out): the alarm's
    /// state is not changed by it.
    pub fn is_note(self) -> bool {
        matches!(self, Transition::Action | Transition::Notified)
    }
}

/// One transition with who did it, and the alarm as it is after it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlarmEvent {
    pub transition: Transition,
    /// Unix ms of the transition (gateway time).
    pub at: i64,
    /// `system` for rule-driven transitions, else the token / user name.
    pub user: String,
    pub comment: Option<String>,
    /// Operator said the (latched) alarm was false, e.g. a detector fault. Set with
    /// `disposition: false` (and kept for readers of the journal from before dispositions).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub false_alarm: bool,
    /// What the operator said the reset alarm was: a real fire, a false alarm or a test. Only
    /// on a `reset`; the ticket policy acts on it (real fire → incident report, false →
    /// maintenance ticket, test → nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<Disposition>,
    /// Flattened, so a stream event carries id, sensor, class, state, … at the top level.
    #[serde(flatten)]
    pub alarm: Alarm,
}

/// What a reset alarm turned out to be, as the operator says when resetting it (the console asks
/// for every `fire` alarm; for other classes it is optional).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// A real fire (or gas release): a fire alarm opens an incident report (信息报告).
    Real,
    /// A false alarm, e.g. a faulty detector: a fire alarm files a maintenance ticket.
    False,
    /// A test of the detector or the system: nothing is filed.
    Test,
}

impl Disposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Real => "real",
            Disposition::False => "false",
            Disposition::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Disposition::Real, Disposition::False, Disposition::Test]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

/// The name journaled for transitions the gateway makes by itself.
pub const SYSTEM_USER: &str = "system";

//! [`AlarmBook`]: the open alarms and their lifecycle. Pure and synchronous: the caller passes
//! the time, as Unix ms (what people see and the journal records) and, where something expires,
//! as a monotonic [`Instant`] (what decides when it expires).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Alarm, AlarmEvent, AlarmState, Disposition, Shelve, Transition, SYSTEM_USER};
use crate::access::Role;
use crate::model::{AlarmClass, ConditionChange, SensorId};

/// Why an operator action was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AlarmError {
    #[error("alarm {0} not found or already closed")]
    NotFound(u64),
    #[error("alarm {id} is {state}: nothing to acknowledge")]
    AlreadyAcknowledged { id: u64, state: &'static str },
    #[error("alarm {0} cannot be reset: its condition still holds")]
    ConditionActive(u64),
    #[error(
        "alarm {0} is not latched (only fire and gas alarms are reset; others clear by themselves)"
    )]
    NotLatched(u64),
    #[error("alarm {0} is already cleared")]
    NotActive(u64),
    #[error("shelve expiry must be in the future and at most {max_hours} h away")]
    BadShelveExpiry { max_hours: i64 },
    #[error("alarm {0} is a fire or gas alarm: only an operator or an admin may shelve it")]
    ShelveNotAllowed(u64),
    #[error(
        "alarm {id} has been shelved since {since_ms} (Unix ms): only an admin may extend the shelve past {max_hours} h from then"
    )]
    ShelveTooLong {
        id: u64,
        since_ms: i64,
        max_hours: i64,
    },
}

impl AlarmError {
    /// Refusals because of who asked (the API answers 403), not of the alarm's state.
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            AlarmError::ShelveNotAllowed(_) | AlarmError::ShelveTooLong { .. }
        )
    }
}

/// A request to shelve an alarm.
#[derive(Debug, Clone)]
pub struct ShelveRequest {
    pub user: String,
    pub role: Role,
    /// Unix ms, at most [`MAX_SHELVE_MS`] ahead.
    pub until_ms: i64,
    pub reason: String,
}

/// The open alarms (everything not `cleared`), keyed by id and by (sensor, rule).
#[derive(Debug, Default)]
pub struct AlarmBook {
    alarms: BTreeMap<u64, Alarm>,
    by_key: HashMap<(SensorId, Arc<str>), u64>,
    next_id: u64,
    /// When each shelve ends, on the monotonic clock. A shelve restored from the store gets its
    /// deadline at the first [`AlarmBook::expire_shelves`] (from the time left on its wall
    /// clock expiry then).
    shelve_deadlines: HashMap<u64, Instant>,
}

/// Longest shelve: an alarm never disappears from the board for more than a day unnoticed.
pub const MAX_SHELVE_MS: i64 = 24 * 3600 * 1000;

impl AlarmBook {
    /// A book holding the alarms restored from the journal; new ids start above `max_id`.
    pub fn restore(open: Vec<Alarm>, max_id: u64) -> Self {
        let mut book = Self {
            next_id: max_id + 1,
            ..Self::default()
        };
        for alarm in open.into_iter().filter(Alarm::is_open) {
            book.next_id = book.next_id.max(alarm.id + 1);
            book.by_key.insert(alarm.key(), alarm.id);
            book.alarms.insert(alarm.id, alarm);
        }
        book
    }

    pub fn get(&self, id: u64) -> Option<&Alarm> {
        self.alarms.get(&id)
    }

    pub fn open(&self) -> impl Iterator<Item = &Alarm> {
        self.alarms.values()
    }

    pub fn len(&self) -> usize {
        self.alarms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.alarms.is_empty()
    }

    /// Applies a rules-engine condition change; returns the transition, if any.
    /// `drill` marks a newly raised alarm as a drill.
    pub fn apply(
        &mut self,
        change: &ConditionChange,
        now_ms: i64,
        drill: bool,
    ) -> Option<AlarmEvent> {
        let key = (change.sensor.clone(), change.rule.clone());
        let existing = self.by_key.get(&key).copied();
        match (existing, change.severity) {
            (None, None) => None,
            (None, Some(severity)) => {
                let id = self.next_id;
                self.next_id += 1;
                let alarm = Alarm {
                    id,
                    sensor: change.sensor.clone(),
                    school: change.sensor.school.clone(),
                    device: change.sensor.device.clone(),
                    point: change.sensor.point.clone(),
                    rule: change.rule.clone(),
                    class: change.class,
                    severity,
                    state: AlarmState::ActiveUnacked,
                    value: change.value,
                    threshold: change.threshold,
                    message: change.message.clone(),
                    raised_at: now_ms,
                    updated_at: now_ms,
                    reading_ts: change.reading_ts_ms,
                    cleared_at: None,
                    condition_active: true,
                    acked_by: None,
                    acked_at: None,
                    ack_comment: None,
                    shelved: None,
                    drill,
                    occurrences: 1,
                };
                self.by_key.insert(key, id);
                self.alarms.insert(id, alarm);
                self.event(id, Transition::Raised, now_ms, SYSTEM_USER, None, false)
            }
            (Some(id), Some(severity)) => {
                let alarm = self.alarms.get_mut(&id)?;
                let previous = alarm.severity;
                let was_active = alarm.condition_active;
                update_from(alarm, change, now_ms);
                alarm.severity = severity;
                alarm.condition_active = true;
                let transition = if alarm.state == AlarmState::ClearedUnacked || !was_active {
                    // The condition came back: count it, and make someone look again.
                    alarm.occurrences += 1;
                    alarm.state = AlarmState::ActiveUnacked;
                    Transition::Reraised
                } else if severity > previous {
                    alarm.state = AlarmState::ActiveUnacked;
                    Transition::Escalated
                } else if severity < previous {
                    Transition::Deescalated
                } else {
                    return None;
                };
                self.event(id, transition, now_ms, SYSTEM_USER, None, false)
            }
            (Some(id), None) => {
                let alarm = self.alarms.get_mut(&id)?;
                if !alarm.condition_active {
                    return None;
                }
                update_from(alarm, change, now_ms);
                alarm.condition_active = false;
                if alarm.class.latches() {
                    return self.event(
                        id,
                        Transition::ReturnedToNormal,
                        now_ms,
                        SYSTEM_USER,
                        None,
                        false,
                    );
                }
                alarm.state = match alarm.state {
                    AlarmState::ActiveUnacked => AlarmState::ClearedUnacked,
                    _ => AlarmState::Cleared,
                };
                alarm.cleared_at = Some(now_ms);
                self.event(id, Transition::Cleared, now_ms, SYSTEM_USER, None, false)
            }
        }
    }

    /// Operator acknowledges: `active_unacked` → `active_acked`, `cleared_unacked` → `cleared`.
    pub fn acknowledge(
        &mut self,
        id: u64,
        user: &str,
        comment: Option<String>,
        now_ms: i64,
    ) -> Result<AlarmEvent, AlarmError> {
        let alarm = self.alarms.get_mut(&id).ok_or(AlarmError::NotFound(id))?;
        alarm.state = match alarm.state {
            AlarmState::ActiveUnacked => AlarmState::ActiveAcked,
            AlarmState::ClearedUnacked => {
                alarm.cleared_at.get_or_insert(now_ms);
                AlarmState::Cleared
            }
            other => {
                return Err(AlarmError::AlreadyAcknowledged {
                    id,
                    state: other.as_str(),
                })
            }
        };
        alarm.acked_by = Some(user.to_string());
        alarm.acked_at = Some(now_ms);
        alarm.ack_comment = comment.clone();
        alarm.updated_at = now_ms;
        self.event(id, Transition::Acknowledged, now_ms, user, comment, false)
            .ok_or(AlarmError::NotFound(id))
    }

    /// Operator resets a latched (fire, gas) alarm whose condition no longer holds, saying what
    /// it was (`disposition`, journaled with the reset). Resetting implies acknowledging.
    pub fn reset(
        &mut self,
        id: u64,
        user: &str,
        comment: Option<String>,
        disposition: Option<Disposition>,
        now_ms: i64,
    ) -> Result<AlarmEvent, AlarmError> {
        let alarm = self.alarms.get_mut(&id).ok_or(AlarmError::NotFound(id))?;
        if !alarm.class.latches() {
            return Err(AlarmError::NotLatched(id));
        }
        if alarm.condition_active {
            return Err(AlarmError::ConditionActive(id));
        }
        if alarm.acked_by.is_none() || alarm.state == AlarmState::ActiveUnacked {
            alarm.acked_by = Some(user.to_string());
            alarm.acked_at = Some(now_ms);
        }
        alarm.state = AlarmState::Cleared;
        alarm.cleared_at = Some(now_ms);
        alarm.updated_at = now_ms;
        let mut event = self
            .event(id, Transition::Reset, now_ms, user, comment, false)
            .ok_or(AlarmError::NotFound(id))?;
        event.false_alarm = disposition == Some(Disposition::False);
        event.disposition = disposition;
        Ok(event)
    }

    /// Shelves an open alarm until `request.until_ms` (at most [`MAX_SHELVE_MS`] ahead).
    /// `fire` and `gas` alarms are shelved only by operators and admins; shelving an alarm that
    /// is shelved extends the run of shelves, which only an admin may take past
    /// [`MAX_SHELVE_MS`] from its first shelve. The shelve ends at `now` + the time asked for,
    /// on the monotonic clock.
    pub fn shelve(
        &mut self,
        id: u64,
        request: ShelveRequest,
        now_ms: i64,
        now: Instant,
    ) -> Result<AlarmEvent, AlarmError> {
        let ShelveRequest {
            user,
            role,
            until_ms,
            reason,
        } = request;
        let max_hours = MAX_SHELVE_MS / 3_600_000;
        if until_ms <= now_ms || until_ms - now_ms > MAX_SHELVE_MS {
            return Err(AlarmError::BadShelveExpiry { max_hours });
        }
        let alarm = self.alarms.get_mut(&id).ok_or(AlarmError::NotFound(id))?;
        if matches!(alarm.class, AlarmClass::Fire | AlarmClass::Gas)
            && !matches!(role, Role::Operator | Role::Admin)
        {
            return Err(AlarmError::ShelveNotAllowed(id));
        }
        // Still shelved: this extends the run. (An older shelve without `since_ms` may have
        // begun as much as a whole shelve before its expiry.)
        let since_ms = match &alarm.shelved {
            Some(s) => s.since_ms.unwrap_or(s.until_ms - MAX_SHELVE_MS),
            None => now_ms,
        };
        if until_ms - since_ms > MAX_SHELVE_MS && role != Role::Admin {
            return Err(AlarmError::ShelveTooLong {
                id,
                since_ms,
                max_hours,
            });
        }
        alarm.shelved = Some(Shelve {
            until_ms,
            reason: reason.clone(),
            by: user.clone(),
            since_ms: Some(since_ms),
        });
        alarm.updated_at = now_ms;
        let left = Duration::from_millis(u64::try_from(until_ms - now_ms).unwrap_or(0));
        self.shelve_deadlines.insert(id, now + left);
        self.event(id, Transition::Shelved, now_ms, &user, Some(reason), false)
            .ok_or(AlarmError::NotFound(id))
    }

    /// Ends shelves whose time is up on the monotonic clock (`now`); `now_ms` is the wall time
    /// journaled for the transition.
    pub fn expire_shelves(&mut self, now_ms: i64, now: Instant) -> Vec<AlarmEvent> {
        let mut expired = Vec::new();
        for alarm in self.alarms.values() {
            let Some(shelve) = &alarm.shelved else {
                continue;
            };
            let deadline = *self.shelve_deadlines.entry(alarm.id).or_insert_with(|| {
                // Restored from the store: what was left of it when the gateway came back.
                let left = u64::try_from(shelve.until_ms - now_ms).unwrap_or(0);
                now + Duration::from_millis(left)
            });
            if deadline <= now {
                expired.push(alarm.id);
            }
        }
        expired
            .into_iter()
            .filter_map(|id| {
                self.shelve_deadlines.remove(&id);
                let alarm = self.alarms.get_mut(&id)?;
                alarm.shelved = None;
                alarm.updated_at = now_ms;
                self.event(id, Transition::Unshelved, now_ms, SYSTEM_USER, None, false)
            })
            .collect()
    }

    /// Builds the event for `id` and drops the alarm from the book once it is `cleared`.
    fn event(
        &mut self,
        id: u64,
        transition: Transition,
        at: i64,
        user: &str,
        comment: Option<String>,
        false_alarm: bool,
    ) -> Option<AlarmEvent> {
        let alarm = if self.alarms.get(&id)?.is_open() {
            self.alarms.get(&id)?.clone()
        } else {
            let alarm = self.alarms.remove(&id)?;
            self.by_key.remove(&alarm.key());
            self.shelve_deadlines.remove(&id);
            alarm
        };
        Some(AlarmEvent {
            transition,
            at,
            user: user.to_string(),
            comment,
            false_alarm,
            disposition: None,
            alarm,
        })
    }
}

fn update_from(alarm: &mut Alarm, change: &ConditionChange, now_ms: i64) {
    alarm.value = change.value.or(alarm.value);
    alarm.threshold = change.threshold.or(alarm.threshold);
    alarm.message = change.message.clone();
    alarm.reading_ts = change.reading_ts_ms;
    alarm.updated_at = now_ms;
}

#[cfg(test)]
#[path = "book_tests.rs"]
mod tests;

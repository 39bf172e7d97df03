//! [`AlarmBook`]: the open alarms and their lifecycle. Pure and synchronous.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{Alarm, AlarmEvent, AlarmState, Shelve, Transition, SYSTEM_USER};
use crate::model::{ConditionChange, SensorId};

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
}

/// The open alarms (everything not `cleared`), keyed by id and by (sensor, rule).
#[derive(Debug, Default)]
pub struct AlarmBook {
    alarms: BTreeMap<u64, Alarm>,
    by_key: HashMap<(SensorId, Arc<str>), u64>,
    next_id: u64,
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

    /// Operator resets a latched (fire, gas) alarm whose condition no longer holds. Resetting
    /// implies acknowledging.
    pub fn reset(
        &mut self,
        id: u64,
        user: &str,
        comment: Option<String>,
        false_alarm: bool,
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
        self.event(id, Transition::Reset, now_ms, user, comment, false_alarm)
            .ok_or(AlarmError::NotFound(id))
    }

    /// Shelves an open alarm until `until_ms` (at most [`MAX_SHELVE_MS`] ahead).
    pub fn shelve(
        &mut self,
        id: u64,
        user: &str,
        until_ms: i64,
        reason: String,
        now_ms: i64,
    ) -> Result<AlarmEvent, AlarmError> {
        if until_ms <= now_ms || until_ms - now_ms > MAX_SHELVE_MS {
            return Err(AlarmError::BadShelveExpiry {
                max_hours: MAX_SHELVE_MS / 3_600_000,
            });
        }
        let alarm = self.alarms.get_mut(&id).ok_or(AlarmError::NotFound(id))?;
        alarm.shelved = Some(Shelve {
            until_ms,
            reason: reason.clone(),
            by: user.to_string(),
        });
        alarm.updated_at = now_ms;
        self.event(id, Transition::Shelved, now_ms, user, Some(reason), false)
            .ok_or(AlarmError::NotFound(id))
    }

    /// Ends shelves that have expired.
    pub fn expire_shelves(&mut self, now_ms: i64) -> Vec<AlarmEvent> {
        let expired: Vec<u64> = self
            .alarms
            .values()
            .filter(|a| a.shelved.as_ref().is_some_and(|s| s.until_ms <= now_ms))
            .map(|a| a.id)
            .collect();
        expired
            .into_iter()
            .filter_map(|id| {
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
            alarm
        };
        Some(AlarmEvent {
            transition,
            at,
            user: user.to_string(),
            comment,
            false_alarm,
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

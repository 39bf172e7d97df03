//! Drill (maintenance) mode per school or building: while a drill covers a device, the alarms
//! it raises are marked `drill` (the ticket policy files nothing for them and the console
//! shows them without sound). Drills always end: each has an expiry (at most
//! [`MAX_DRILL_DURATION`] ahead) and the core ends it on its tick once it passes.
//!
//! [`DrillBook`] is pure state (no I/O), owned by the core like the alarm book; the core
//! stores every change in the local store before it broadcasts it. A drill's `until` is wall
//! time (shown, stored, checked when it starts); when it ends is decided on the monotonic clock,
//! so a wall-clock jump neither ends a drill early nor makes it hide real fires for longer.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// The longest a drill may run; a forgotten drill must not hide real fires for days.
pub const MAX_DRILL_DURATION: Duration = Duration::from_secs(24 * 3600);

/// At most this many drills are active at once (a bound on the core's memory and on the
/// per-alarm lookup); starting one more is refused.
pub const MAX_ACTIVE_DRILLS: usize = 1000;

/// One drill: who started it, where, why, and until when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Drill {
    pub id: u64,
    pub school: String,
    /// `None` = the whole school.
    pub building: Option<String>,
    pub started_by: String,
    pub reason: String,
    /// Unix ms.
    pub started_at: i64,
    /// Unix ms; the drill ends by itself then.
    pub until: i64,
    /// Unix ms; set when it ended (early or at expiry).
    pub ended_at: Option<i64>,
    /// Who ended it early; `system` at expiry.
    pub ended_by: Option<String>,
}

impl Drill {
    /// Whether this drill covers a device of `school` in `building`.
    pub fn covers(&self, school: &str, building: Option<&str>) -> bool {
        self.school == school
            && match &self.building {
                None => true,
                Some(b) => building == Some(b.as_str()),
            }
    }

    fn same_scope(&self, school: &str, building: Option<&str>) -> bool {
        self.school == school && self.building.as_deref() == building
    }
}

/// What happened to a drill; stored and streamed (SSE event `drill`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillChange {
    Started,
    Ended,
    Expired,
}

/// A drill change with the drill as it is after it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DrillEvent {
    pub change: DrillChange,
    #[serde(flatten)]
    pub drill: Drill,
}

/// A drill to start, checked by the API (scope, reason) and by the book (expiry, overlap).
#[derive(Clone, Debug)]
pub struct NewDrill {
    pub school: String,
    pub building: Option<String>,
    pub started_by: String,
    pub reason: String,
    pub until: i64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DrillError {
    #[error("drill {0} not found or already ended")]
    NotFound(u64),
    #[error("`until` must be in the future and at most 24 h ahead")]
    BadExpiry,
    #[error("drill {0} already covers this scope; end it first")]
    Overlap(u64),
    #[error("too many active drills (at most {MAX_ACTIVE_DRILLS})")]
    TooMany,
    #[error("drill store: {0}")]
    Store(String),
}

/// The active drills.
#[derive(Debug, Default)]
pub struct DrillBook {
    active: Vec<Drill>,
    /// When each drill ends, on the monotonic clock. Drills restored from the store get theirs
    /// at the first [`DrillBook::expire`] (from the time left on their `until` then).
    deadlines: HashMap<u64, Instant>,
}

impl DrillBook {
    /// From the store's unexpired drills (expired ones end at the first tick).
    pub fn restore(active: Vec<Drill>) -> Self {
        Self {
            active,
            deadlines: HashMap::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    pub fn active(&self) -> &[Drill] {
        &self.active
    }

    /// Checks a new drill against the clock and the drills already running.
    pub fn check(&self, new: &NewDrill, now_ms: i64) -> Result<(), DrillError> {
        let max = i64::try_from(MAX_DRILL_DURATION.as_millis()).unwrap_or(i64::MAX);
        if new.until <= now_ms || new.until > now_ms.saturating_add(max) {
            return Err(DrillError::BadExpiry);
        }
        if let Some(d) = self
            .active
            .iter()
            .find(|d| d.same_scope(&new.school, new.building.as_deref()))
        {
            return Err(DrillError::Overlap(d.id));
        }
        if self.active.len() >= MAX_ACTIVE_DRILLS {
            return Err(DrillError::TooMany);
        }
        Ok(())
    }

    /// Adds a drill the store has given an id; it ends `until - now_ms` after `now`.
    pub fn insert(&mut self, drill: Drill, now_ms: i64, now: Instant) {
        self.deadlines
            .insert(drill.id, deadline(&drill, now_ms, now));
        self.active.push(drill);
    }

    /// The id of a drill covering a device of `school` in `building`, if any.
    pub fn covering(&self, school: &str, building: Option<&str>) -> Option<u64> {
        self.active
            .iter()
            .find(|d| d.covers(school, building))
            .map(|d| d.id)
    }

    pub fn get(&self, id: u64) -> Option<&Drill> {
        self.active.iter().find(|d| d.id == id)
    }

    /// Ends a drill early; returns it as ended.
    pub fn end(&mut self, id: u64, by: &str, now_ms: i64) -> Result<DrillEvent, DrillError> {
        let at = self
            .active
            .iter()
            .position(|d| d.id == id)
            .ok_or(DrillError::NotFound(id))?;
        let mut drill = self.active.swap_remove(at);
        self.deadlines.remove(&id);
        drill.ended_at = Some(now_ms);
        drill.ended_by = Some(by.to_string());
        Ok(DrillEvent {
            change: DrillChange::Ended,
            drill,
        })
    }

    /// Ends every drill whose time is up on the monotonic clock (`now`); it is recorded as
    /// ended at its `until`, or at `now_ms` if the wall clock is behind that.
    pub fn expire(&mut self, now_ms: i64, now: Instant) -> Vec<DrillEvent> {
        for drill in &self.active {
            self.deadlines
                .entry(drill.id)
                .or_insert_with(|| deadline(drill, now_ms, now));
        }
        let due = |d: &Drill, deadlines: &HashMap<u64, Instant>| {
            deadlines.get(&d.id).is_some_and(|end| *end <= now)
        };
        if !self.active.iter().any(|d| due(d, &self.deadlines)) {
            return Vec::new();
        }
        let (expired, active): (Vec<Drill>, Vec<Drill>) = std::mem::take(&mut self.active)
            .into_iter()
            .partition(|d| due(d, &self.deadlines));
        self.active = active;
        for drill in &expired {
            self.deadlines.remove(&drill.id);
        }
        expired
            .into_iter()
            .map(|mut drill| {
                drill.ended_at = Some(drill.until.min(now_ms));
                drill.ended_by = Some(crate::alarms::SYSTEM_USER.to_string());
                DrillEvent {
                    change: DrillChange::Expired,
                    drill,
                }
            })
            .collect()
    }
}

/// When `drill` ends on the monotonic clock, from the time left on its `until` at `now_ms`.
fn deadline(drill: &Drill, now_ms: i64, now: Instant) -> Instant {
    now + Duration::from_millis(u64::try_from(drill.until - now_ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drill(id: u64, building: Option<&str>, until: i64) -> Drill {
        Drill {
            id,
            school: "s1".into(),
            building: building.map(Into::into),
            started_by: "op".into(),
            reason: "fire drill".into(),
            started_at: 0,
            until,
            ended_at: None,
            ended_by: None,
        }
    }

    fn new(building: Option<&str>, until: i64) -> NewDrill {
        NewDrill {
            school: "s1".into(),
            building: building.map(Into::into),
            started_by: "op".into(),
            reason: "r".into(),
            until,
        }
    }

    #[test]
    fn a_building_drill_covers_only_that_building_and_a_school_drill_every_one() {
        let mut book = DrillBook::default();
        let t0 = Instant::now();
        book.insert(drill(1, Some("A"), 1000), 0, t0);
        assert_eq!(book.covering("s1", Some("A")), Some(1));
        assert_eq!(book.covering("s1", Some("B")), None);
        assert_eq!(book.covering("s1", None), None);
        assert_eq!(book.covering("s2", Some("A")), None);
        book.insert(drill(2, None, 1000), 0, t0);
        assert_eq!(book.covering("s1", Some("B")), Some(2));
        assert_eq!(book.covering("s1", None), Some(2));
    }

    #[test]
    fn expiry_must_be_ahead_within_a_day_and_one_drill_per_scope() {
        let mut book = DrillBook::default();
        let day = 24 * 3600 * 1000;
        assert_eq!(book.check(&new(None, 100), 100), Err(DrillError::BadExpiry));
        assert_eq!(
            book.check(&new(None, 100 + day + 1), 100),
            Err(DrillError::BadExpiry)
        );
        assert_eq!(book.check(&new(None, 100 + day), 100), Ok(()));
        book.insert(drill(7, Some("A"), 5000), 100, Instant::now());
        assert_eq!(
            book.check(&new(Some("A"), 1000), 100),
            Err(DrillError::Overlap(7))
        );
        // A school-wide drill may run alongside a building drill.
        assert_eq!(book.check(&new(None, 1000), 100), Ok(()));
    }

    #[test]
    fn drills_expire_at_their_until_and_end_early_once() {
        let mut book = DrillBook::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        book.insert(drill(1, Some("A"), 1000), 0, t0);
        book.insert(drill(2, None, 2000), 0, t0);
        assert!(book.expire(999, at(999)).is_empty());
        let ended = book.expire(1500, at(1500));
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].change, DrillChange::Expired);
        assert_eq!(ended[0].drill.ended_at, Some(1000));
        assert_eq!(book.covering("s1", Some("A")), Some(2));
        let e = book.end(2, "op", 1600).unwrap();
        assert_eq!(
            (e.change, e.drill.ended_at, e.drill.ended_by.as_deref()),
            (DrillChange::Ended, Some(1600), Some("op"))
        );
        assert_eq!(book.end(2, "op", 1700), Err(DrillError::NotFound(2)));
        assert!(book.is_empty());
    }

    #[test]
    fn a_wall_clock_jump_neither_ends_nor_prolongs_a_drill() {
        let mut book = DrillBook::default();
        let t0 = Instant::now();
        let hour = 3_600_000;
        let start = 10 * hour;
        book.insert(drill(1, None, start + hour), start, t0);
        // The wall clock jumps a day ahead: the drill goes on.
        assert!(book
            .expire(start + 25 * hour, t0 + Duration::from_secs(1))
            .is_empty());
        assert_eq!(book.covering("s1", None), Some(1));
        // It jumps back: the drill still ends after its hour (recorded at the wall time then).
        let back = start - 5 * hour;
        let hour_later = t0 + Duration::from_secs(3600);
        assert!(book
            .expire(back, hour_later - Duration::from_millis(1))
            .is_empty());
        let ended = book.expire(back, hour_later);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].drill.ended_at, Some(back));
        // A restored drill runs for the time it had left when the gateway came back.
        let mut restored = DrillBook::restore(vec![drill(2, None, start + hour)]);
        let t1 = t0 + Duration::from_secs(7200);
        assert!(restored.expire(start + hour / 2, t1).is_empty());
        let half = Duration::from_secs(1800);
        assert!(restored
            .expire(start + 30 * hour, t1 + half - Duration::from_millis(1))
            .is_empty());
        assert_eq!(restored.expire(start + hour, t1 + half).len(), 1);
    }
}

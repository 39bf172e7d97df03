//! The duty log (值班记录): control rooms (`[[duty.rooms]]`), each watching some schools, where
//! operators sign on and hand over shifts. The shifts live in the local store
//! (`store/duty.rs`); the API (`api/duty.rs`) signs people on and off and writes the day's log.
//!
//! This module holds the config and [`Duty`], the API's view of who was on duty when: every
//! shift since a horizon (31 days back, moving forward as new shifts come), in memory, so the
//! board can flag an alarm raised while nobody was signed on in a room covering its school
//! ("unattended") without a store read per alarm or per stream event. The pipeline core never reads it: the flag is an
//! API-side annotation, so the alarm path cannot wait on it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use crate::access::Principal;
use crate::model::valid_name;
use crate::schools::Schools;

/// The most staff a shift may be planned for.
pub const MAX_STAFF_PER_SHIFT: u32 = 10;
/// How far back the in-memory shifts reach at start (older alarms get no unattended flag).
pub const HORIZON_MS: i64 = 31 * 86_400_000;

/// `[duty]`: the control rooms. No rooms = no duty log (the routes answer 404 or empty lists,
/// and no alarm is ever flagged unattended).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DutyConfig {
    #[serde(default)]
    pub rooms: Vec<DutyRoom>,
}

/// One `[[duty.rooms]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DutyRoom {
    /// As the API and the console name it (`中控室`, `north-gate`): 1-64 characters.
    pub name: String,
    /// The school ids (as in `[[schools]]` and device topics) whose alarms this room answers.
    pub schools: Vec<String>,
    /// How many people a shift is planned for: fewer signed on is "short-staffed", more is
    /// allowed (a handover overlaps two shifts) and shown.
    #[serde(default = "default_staff")]
    pub staff_per_shift: u32,
}

fn default_staff() -> u32 {
    2
}

impl DutyConfig {
    /// Every problem: bad or duplicate room names, unknown or repeated schools, staff out of
    /// 1..=10. `schools` is the `[[schools]]` list (empty: any valid school id is accepted).
    pub fn validate(&self, schools: &Schools) -> Vec<String> {
        let mut problems = Vec::new();
        let mut names = HashSet::new();
        for room in &self.rooms {
            let name = room.name.trim();
            if name.is_empty() || name.chars().count() > 64 || name != room.name {
                problems.push(format!(
                    "duty.rooms `{}`: name must be 1-64 characters without leading or trailing spaces",
                    room.name
                ));
            }
            if !names.insert(room.name.as_str()) {
                problems.push(format!("duty.rooms `{}`: listed twice", room.name));
            }
            if room.schools.is_empty() {
                problems.push(format!(
                    "duty.rooms `{}`: schools must name at least one school",
                    room.name
                ));
            }
            let mut seen = HashSet::new();
            for school in &room.schools {
                if !valid_name(school) {
                    problems.push(format!(
                        "duty.rooms `{}`: school `{school}` must be 1-64 characters of `A-Z a-z 0-9 _ -`",
                        room.name
                    ));
                } else if !schools.is_empty() && schools.get(school).is_none() {
                    problems.push(format!(
                        "duty.rooms `{}`: school `{school}` is not in [[schools]]",
                        room.name
                    ));
                }
                if !seen.insert(school.as_str()) {
                    problems.push(format!(
                        "duty.rooms `{}`: school `{school}` listed twice",
                        room.name
                    ));
                }
            }
            if !(1..=MAX_STAFF_PER_SHIFT).contains(&room.staff_per_shift) {
                problems.push(format!(
                    "duty.rooms `{}`: staff_per_shift must be 1..={MAX_STAFF_PER_SHIFT}, not {}",
                    room.name, room.staff_per_shift
                ));
            }
        }
        problems
    }
}

/// A shift's time on duty: `[on_at, off_at)`, open while `off_at` is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub on_at: i64,
    pub off_at: Option<i64>,
}

impl Interval {
    pub fn covers(&self, at: i64) -> bool {
        self.on_at <= at && self.off_at.is_none_or(|off| at < off)
    }
}

/// The rooms and who was on duty when (see the module doc).
#[derive(Debug, Default)]
pub struct Duty {
    config: DutyConfig,
    /// Alarms raised before this get no unattended flag (the shifts before it are not kept).
    /// It moves forward as shifts older than [`HORIZON_MS`] are dropped, so a gateway that runs
    /// for months keeps about a month of shifts in memory.
    horizon_ms: AtomicI64,
    /// Per room (in config order): shift id → interval.
    shifts: RwLock<Vec<Vec<(i64, Interval)>>>,
}

impl Duty {
    /// The rooms of `config` with the shifts given (room name, id, interval) since `horizon_ms`.
    pub fn new(
        config: DutyConfig,
        horizon_ms: i64,
        shifts: impl IntoIterator<Item = (String, i64, Interval)>,
    ) -> Self {
        let mut by_room = vec![Vec::new(); config.rooms.len()];
        for (room, id, interval) in shifts {
            if let Some(i) = config.rooms.iter().position(|r| r.name == room) {
                by_room[i].push((id, interval));
            }
        }
        Self {
            config,
            horizon_ms: AtomicI64::new(horizon_ms),
            shifts: RwLock::new(by_room),
        }
    }

    pub fn rooms(&self) -> &[DutyRoom] {
        &self.config.rooms
    }

    pub fn room(&self, name: &str) -> Option<&DutyRoom> {
        self.config.rooms.iter().find(|r| r.name == name)
    }

    /// Whether `who` may see `room`: it watches at least one school of their scope.
    pub fn may_see(who: &Principal, room: &DutyRoom) -> bool {
        room.schools.iter().any(|s| who.may_see_school(s))
    }

    /// A shift was signed on or off: the interval is (re)placed.
    pub fn record(&self, room: &str, id: i64, interval: Interval) {
        let Some(i) = self.config.rooms.iter().position(|r| r.name == room) else {
            return;
        };
        let mut shifts = self.shifts.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(list) = shifts.get_mut(i) {
            match list.iter_mut().find(|(sid, _)| *sid == id) {
                Some(entry) => entry.1 = interval,
                None => list.push((id, interval)),
            }
        }
        // Shifts that ended more than a horizon ago go; alarms before it lose their flag.
        let cutoff = interval.on_at.saturating_sub(HORIZON_MS);
        if cutoff > self.horizon_ms.load(Ordering::Relaxed) {
            self.horizon_ms.store(cutoff, Ordering::Relaxed);
            for list in shifts.iter_mut() {
                list.retain(|(_, shift)| shift.off_at.is_none_or(|off| off >= cutoff));
            }
        }
    }

    /// Whether an alarm of `school` raised at `raised_at` was raised with nobody signed on in
    /// any room covering the school. `None` when no room covers the school, or the alarm is
    /// older than the shifts kept in memory.
    pub fn unattended(&self, school: &str, raised_at: i64) -> Option<bool> {
        if raised_at < self.horizon_ms.load(Ordering::Relaxed) {
            return None;
        }
        let shifts = self.shifts.read().unwrap_or_else(PoisonError::into_inner);
        let mut covered = false;
        for (room, list) in self.config.rooms.iter().zip(shifts.iter()) {
            if !room.schools.iter().any(|s| s == school) {
                continue;
            }
            covered = true;
            if list.iter().any(|(_, iv)| iv.covers(raised_at)) {
                return Some(false);
            }
        }
        covered.then_some(true)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::schools::{School, SchoolKind};

    fn room(name: &str, schools: &[&str], staff: u32) -> DutyRoom {
        DutyRoom {
            name: name.into(),
            schools: schools.iter().map(|s| s.to_string()).collect(),
            staff_per_shift: staff,
        }
    }

    #[test]
    fn unknown_schools_duplicate_rooms_and_bad_staff_counts_are_refused() {
        let schools = Schools::new(vec![School {
            id: "xhsy".into(),
            name: "新华实验小学".into(),
            code: None,
            kind: SchoolKind::Primary,
        }]);
        let config = DutyConfig {
            rooms: vec![
                room("中控室", &["xhsy"], 2),
                room("中控室", &["xhsy"], 2),
                room("北门", &["nope"], 0),
                room("西门", &[], 11),
            ],
        };
        let problems = config.validate(&schools);
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(problems[0].contains("listed twice"));
        assert!(problems[1].contains("`nope` is not in [[schools]]"));
        assert!(problems[2].contains("staff_per_shift"));
        assert!(problems[3].contains("at least one school"));
        let good = DutyConfig {
            rooms: vec![room("中控室", &["xhsy"], 1)],
        };
        assert!(good.validate(&schools).is_empty());
        assert!(DutyConfig::default().validate(&schools).is_empty());
        let parsed: DutyConfig =
            toml::from_str("[[rooms]]\nname = \"中控室\"\nschools = [\"xhsy\"]\n").unwrap();
        assert_eq!(parsed.rooms[0].staff_per_shift, 2);
    }

    #[test]
    fn an_alarm_is_unattended_only_where_a_room_covers_its_school_and_nobody_was_on() {
        let config = DutyConfig {
            rooms: vec![room("a", &["xhsy", "dfzx"], 2), room("b", &["dfzx"], 2)],
        };
        let duty = Duty::new(
            config,
            100,
            [(
                "a".to_string(),
                1,
                Interval {
                    on_at: 1000,
                    off_at: Some(2000),
                },
            )],
        );
        assert_eq!(duty.unattended("xhsy", 1500), Some(false));
        assert_eq!(duty.unattended("xhsy", 2000), Some(true));
        assert_eq!(duty.unattended("xhsy", 999), Some(true));
        assert_eq!(duty.unattended("other", 1500), None);
        assert_eq!(duty.unattended("xhsy", 50), None, "before the horizon");
        // Room b signs on (open shift): dfzx is attended from then on, xhsy is not.
        duty.record(
            "b",
            2,
            Interval {
                on_at: 3000,
                off_at: None,
            },
        );
        assert_eq!(duty.unattended("dfzx", 5000), Some(false));
        assert_eq!(duty.unattended("xhsy", 5000), Some(true));
        duty.record(
            "b",
            2,
            Interval {
                on_at: 3000,
                off_at: Some(4000),
            },
        );
        assert_eq!(duty.unattended("dfzx", 5000), Some(true));
        assert_eq!(duty.unattended("dfzx", 3500), Some(false));
        // A shift more than a horizon later: the old shifts go, and so does their answer.
        let later = 3000 + HORIZON_MS + 10_000;
        duty.record(
            "a",
            3,
            Interval {
                on_at: later,
                off_at: None,
            },
        );
        assert_eq!(
            duty.unattended("dfzx", 3500),
            None,
            "before the moved horizon"
        );
        assert_eq!(duty.unattended("xhsy", later + 1), Some(false));
        let kept: usize = duty
            .shifts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(Vec::len)
            .sum();
        assert_eq!(kept, 1, "only the new shift is kept");
    }
}

//! The on-delay and off-delay of every rule kind: a [`Gate`] turns the raw condition each
//! reading implies (threshold, state or rate of rise) into the severity the engine emits, so a
//! condition is raised only after holding for `on_delay` and cleared only after being normal
//! for `off_delay`. Pure bookkeeping on [`Instant`]s; [`super::rule`] owns one per rule.

use std::time::Duration;

use tokio::time::Instant;

use crate::model::Severity;

const LEVELS: [Severity; 2] = [Severity::Warning, Severity::Alarm];

fn level_index(severity: Severity) -> usize {
    match severity {
        Severity::Warning => 0,
        Severity::Alarm => 1,
    }
}

/// On-/off-delay bookkeeping of one (sensor, rule) condition. `raw` is what the latest value
/// says; `active` is what was last emitted. Each level has its own timers.
#[derive(Debug, Default)]
pub(super) struct Gate {
    pub(super) active: Option<Severity>,
    /// Since when `raw` has been continuously at or above each level (warning, alarm).
    up_since: [Option<Instant>; 2],
    /// Since when `raw` has been continuously below each level.
    down_since: [Option<Instant>; 2],
}

impl Gate {
    /// A gate that remembers what was emitted but restarts every delay timer (the rule's
    /// numbers changed, so time held under the old numbers does not count).
    pub(super) fn restarted(active: Option<Severity>) -> Gate {
        Gate {
            active,
            ..Gate::default()
        }
    }

    /// Feeds the raw condition of a new reading; returns the severity to emit if it changes.
    pub(super) fn feed(
        &mut self,
        raw: Option<Severity>,
        now: Instant,
        on_delay: Duration,
        off_delay: Duration,
    ) -> Option<Option<Severity>> {
        for (i, level) in LEVELS.into_iter().enumerate() {
            if raw >= Some(level) {
                self.up_since[i].get_or_insert(now);
                self.down_since[i] = None;
            } else {
                self.up_since[i] = None;
                self.down_since[i].get_or_insert(now);
            }
        }
        let up = self.delayed_up(now, on_delay);
        let next = if up > self.active {
            up
        } else if raw < self.active {
            self.delayed_down(raw, now, off_delay)
        } else {
            self.active
        };
        (next != self.active).then_some(next)
    }

    /// A tick may raise (an on-delay ran out while the last value still violates), never clear.
    pub(super) fn tick(&self, now: Instant, on_delay: Duration) -> Option<Option<Severity>> {
        let up = self.delayed_up(now, on_delay);
        (up > self.active).then_some(up)
    }

    /// The highest level held continuously for `on_delay`.
    fn delayed_up(&self, now: Instant, on_delay: Duration) -> Option<Severity> {
        LEVELS.into_iter().rev().find(|level| {
            self.up_since[level_index(*level)]
                .is_some_and(|since| now.saturating_duration_since(since) >= on_delay)
        })
    }

    /// Going down: a level above `raw` is kept until it has been left for `off_delay`.
    fn delayed_down(
        &self,
        raw: Option<Severity>,
        now: Instant,
        off_delay: Duration,
    ) -> Option<Severity> {
        LEVELS
            .into_iter()
            .rev()
            .filter(|level| Some(*level) <= self.active && Some(*level) > raw)
            .find(|level| {
                self.down_since[level_index(*level)]
                    .is_some_and(|since| now.saturating_duration_since(since) < off_delay)
            })
            .map_or(raw, Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Option<Severity> = Some(Severity::Warning);
    const A: Option<Severity> = Some(Severity::Alarm);

    #[test]
    fn each_level_has_its_own_on_delay_timer_and_a_tick_never_clears() {
        let on = Duration::from_secs(60);
        let off = Duration::from_secs(120);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut gate = Gate::default();
        assert_eq!(gate.feed(W, at(0), on, off), None);
        assert_eq!(gate.feed(A, at(30), on, off), None);
        // Warning has held 60 s, alarm only 30 s.
        assert_eq!(gate.feed(A, at(60), on, off), Some(W));
        gate.active = W;
        assert_eq!(gate.tick(at(89), on), None);
        assert_eq!(gate.tick(at(90), on), Some(A));
        gate.active = A;
        // Normal from 100 s: the alarm is held for the off-delay, then drops straight to normal.
        assert_eq!(gate.feed(None, at(100), on, off), None);
        assert_eq!(gate.feed(None, at(219), on, off), None);
        assert_eq!(gate.tick(at(500), on), None, "a tick never clears");
        assert_eq!(gate.feed(None, at(220), on, off), Some(None));
    }
}

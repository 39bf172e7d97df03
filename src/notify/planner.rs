//! The escalation planner: which steps of which alarms are due. Pure (no I/O, time passed in),
//! so its rules are unit-tested here; [`super::escalate`] feeds it the alarm transitions from
//! the outbox and queues what it plans.
//!
//! - An alarm escalates while it is `active_unacked`: each route (`[[notify.routes]]`, one
//!   step) that takes its class and school is due `after` the start of the alarm's *episode*,
//!   and again every `repeat`. An episode starts when the alarm is raised, or when it becomes
//!   unacknowledged again after someone had acknowledged it (escalated, or back after a reset
//!   latch): escalation starts over. An alarm that returns to normal and comes back while still
//!   unacknowledged keeps its episode (a chattering alarm does not restart the clock).
//! - An acknowledgement stops it: nothing more is planned, and what is still queued for the
//!   alarm is cancelled. So is a reset or a clear.
//! - A cleared-unacknowledged alarm is reported once as cleared, to the channels that were told
//!   about it in this episode.
//! - Shelved alarms are not notified while shelved (steps that fall due then are skipped; the
//!   escalation goes on when the shelve ends). Drill alarms are not notified unless
//!   `notify.drills = "marked"`.
//! - A repeat missed while the gateway was down is not sent late: only the latest repeat is.
//! - A `digest` route's deliveries wait for the next digest boundary (on the local clock) and go
//!   out together.
//!
//! Each planned step has an idempotency key ([`step_key`]): alarm id, episode start, step
//! (route number), repeat number and channel. Queued keys are how the planner is rebuilt after a
//! restart ([`Planner::restore`]).

use std::collections::{BTreeSet, HashMap};

use super::config::{DrillMode, RouteConfig};
use crate::alarms::{AlarmEvent, AlarmState};

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Queue step `route` (0-based), repeat `repeat`, of the alarm's episode, not before
    /// `not_before` (Unix ms).
    Step {
        event: Box<AlarmEvent>,
        episode: i64,
        route: usize,
        repeat: u32,
        not_before: i64,
    },
    /// Tell `channels` (those told in this episode) that the alarm cleared unacknowledged.
    Cleared {
        event: Box<AlarmEvent>,
        episode: i64,
        channels: Vec<String>,
    },
    /// Drop what is still queued for the alarm.
    Cancel { alarm_id: u64, why: &'static str },
}

/// One alarm being watched.
#[derive(Debug, Clone)]
struct Tracked {
    /// The latest transition (its alarm is the alarm now).
    event: AlarmEvent,
    /// Unix ms when the current episode started.
    episode: i64,
    /// Route index → the highest repeat queued in this episode.
    fired: HashMap<usize, u32>,
    /// Channels told about the alarm in this episode.
    told: BTreeSet<String>,
    cleared_told: bool,
}

/// The planner's memory: the alarms not yet closed that it has seen.
pub struct Planner {
    routes: Vec<RouteConfig>,
    drills: DrillMode,
    offset_ms: i64,
    tracked: HashMap<u64, Tracked>,
}

/// `alarm:<id>:<episode>:` — every key of one episode starts so.
pub fn episode_prefix(alarm_id: u64, episode: i64) -> String {
    format!("alarm:{alarm_id}:{episode}:")
}

/// The idempotency key of a step: alarm, episode, step number (1-based), repeat, channel.
pub fn step_key(alarm_id: u64, episode: i64, route: usize, repeat: u32, channel: &str) -> String {
    format!(
        "{}r{}:n{repeat}:{channel}",
        episode_prefix(alarm_id, episode),
        route + 1
    )
}

/// The idempotency key of the cleared report.
pub fn cleared_key(alarm_id: u64, episode: i64, channel: &str) -> String {
    format!("{}cleared:{channel}", episode_prefix(alarm_id, episode))
}

/// The step in words: `第1步`, `第2步·第3次重复`.
pub fn step_label(route: usize, repeat: u32) -> String {
    if repeat == 0 {
        format!("第{}步", route + 1)
    } else {
        format!("第{}步·第{repeat}次重复", route + 1)
    }
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl Planner {
    pub fn new(routes: Vec<RouteConfig>, drills: DrillMode, offset_ms: i64) -> Self {
        Self {
            routes,
            drills,
            offset_ms,
            tracked: HashMap::new(),
        }
    }

    pub fn routes(&self) -> &[RouteConfig] {
        &self.routes
    }

    /// Alarms being watched.
    pub fn len(&self) -> usize {
        self.tracked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracked.is_empty()
    }

    /// Takes up an open alarm after a restart: its latest transition, its episode, and the keys
    /// already queued for that episode (which steps fired, who was told).
    pub fn restore(&mut self, event: AlarmEvent, episode: i64, keys: &[String]) {
        let id = event.alarm.id;
        let prefix = episode_prefix(id, episode);
        let mut tracked = Tracked {
            event,
            episode,
            fired: HashMap::new(),
            told: BTreeSet::new(),
            cleared_told: false,
        };
        for key in keys {
            let Some(rest) = key.strip_prefix(&prefix) else {
                continue;
            };
            if let Some(channel) = rest.strip_prefix("cleared:") {
                tracked.cleared_told = true;
                tracked.told.insert(channel.to_string());
                continue;
            }
            // r<step>:n<repeat>:<channel>
            let mut parts = rest.splitn(3, ':');
            let step = parts
                .next()
                .and_then(|p| p.strip_prefix('r'))
                .and_then(|p| p.parse::<usize>().ok());
            let repeat = parts
                .next()
                .and_then(|p| p.strip_prefix('n'))
                .and_then(|p| p.parse::<u32>().ok());
            if let (Some(step), Some(repeat), Some(channel)) = (step, repeat, parts.next()) {
                let route = step.saturating_sub(1);
                let last = tracked.fired.entry(route).or_insert(repeat);
                *last = (*last).max(repeat);
                tracked.told.insert(channel.to_string());
            }
        }
        self.tracked.insert(id, tracked);
    }

    /// Records that `channel` was told about the alarm in its current episode.
    pub fn told(&mut self, alarm_id: u64, channel: &str) {
        if let Some(t) = self.tracked.get_mut(&alarm_id) {
            t.told.insert(channel.to_string());
        }
    }

    /// Takes one transition from the outbox; returns what it asks for at once.
    pub fn on_event(&mut self, event: &AlarmEvent) -> Vec<Plan> {
        if event.transition.is_note() {
            return Vec::new();
        }
        let alarm = &event.alarm;
        let id = alarm.id;
        match alarm.state {
            AlarmState::ActiveUnacked => {
                let was = self.tracked.get(&id).map(|t| t.event.alarm.state);
                let new_episode = matches!(was, None | Some(AlarmState::ActiveAcked))
                    || event.transition == crate::alarms::Transition::Raised;
                if new_episode {
                    self.tracked.insert(
                        id,
                        Tracked {
                            event: event.clone(),
                            episode: event.at,
                            fired: HashMap::new(),
                            told: BTreeSet::new(),
                            cleared_told: false,
                        },
                    );
                } else if let Some(t) = self.tracked.get_mut(&id) {
                    t.event = event.clone();
                }
                Vec::new()
            }
            AlarmState::ClearedUnacked => {
                let Some(t) = self.tracked.get_mut(&id) else {
                    return Vec::new();
                };
                t.event = event.clone();
                let mut plans = vec![Plan::Cancel {
                    alarm_id: id,
                    why: "cleared before delivery",
                }];
                if !t.cleared_told && !t.told.is_empty() {
                    t.cleared_told = true;
                    plans.push(Plan::Cleared {
                        event: Box::new(event.clone()),
                        episode: t.episode,
                        channels: t.told.iter().cloned().collect(),
                    });
                }
                plans
            }
            AlarmState::ActiveAcked => match self.tracked.get_mut(&id) {
                Some(t) => {
                    t.event = event.clone();
                    vec![Plan::Cancel {
                        alarm_id: id,
                        why: "acknowledged before delivery",
                    }]
                }
                None => Vec::new(),
            },
            AlarmState::Cleared => match self.tracked.remove(&id) {
                Some(_) => vec![Plan::Cancel {
                    alarm_id: id,
                    why: "closed before delivery",
                }],
                None => Vec::new(),
            },
        }
    }

    /// The steps due at `now` (Unix ms), each planned once.
    pub fn due(&mut self, now: i64) -> Vec<Plan> {
        let mut plans = Vec::new();
        for t in self.tracked.values_mut() {
            let alarm = &t.event.alarm;
            if alarm.state != AlarmState::ActiveUnacked
                || alarm.shelved.as_ref().is_some_and(|s| s.until_ms > now)
                || (alarm.drill && self.drills == DrillMode::Off)
            {
                continue;
            }
            for (i, route) in self.routes.iter().enumerate() {
                if !route.takes(alarm.class, &alarm.school) {
                    continue;
                }
                let start = t.episode.saturating_add(ms(route.after));
                if now < start {
                    continue;
                }
                let repeat = match route.repeat {
                    Some(period) => {
                        u32::try_from((now - start) / ms(period).max(1)).unwrap_or(u32::MAX)
                    }
                    None => 0,
                };
                if t.fired.get(&i).is_some_and(|&last| last >= repeat) {
                    continue;
                }
                t.fired.insert(i, repeat);
                let not_before = match route.digest {
                    Some(period) => next_boundary(now, ms(period).max(1), self.offset_ms),
                    None => now,
                };
                plans.push(Plan::Step {
                    event: Box::new(t.event.clone()),
                    episode: t.episode,
                    route: i,
                    repeat,
                    not_before,
                });
            }
        }
        plans
    }
}

/// The first multiple of `period` on the local clock at or after `now`.
fn next_boundary(now: i64, period: i64, offset_ms: i64) -> i64 {
    let local = now + offset_ms;
    let rem = local.rem_euclid(period);
    if rem == 0 {
        now
    } else {
        now + (period - rem)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::alarms::{AlarmBook, Shelve, Transition};
    use crate::model::{AlarmClass, ConditionChange, SensorId, Severity};

    fn route(classes: &[AlarmClass], after: u64, channels: &[&str]) -> RouteConfig {
        RouteConfig {
            classes: classes.to_vec(),
            schools: None,
            after: Duration::from_secs(after),
            channels: channels.iter().map(|c| c.to_string()).collect(),
            repeat: None,
            digest: None,
        }
    }

    fn planner() -> Planner {
        let mut repeat = route(&[AlarmClass::Fire], 0, &["duty"]);
        repeat.repeat = Some(Duration::from_secs(300));
        Planner::new(
            vec![
                repeat,
                route(&[AlarmClass::Fire], 60, &["safety"]),
                route(&[AlarmClass::Fire], 180, &["principal"]),
            ],
            DrillMode::Off,
            8 * 3_600_000,
        )
    }

    fn change(severity: Option<Severity>) -> ConditionChange {
        ConditionChange {
            sensor: SensorId::new("xhsy", "hd-1", "temp_c"),
            rule: "heat_fixed".into(),
            class: AlarmClass::Fire,
            severity,
            value: None,
            threshold: None,
            reading_ts_ms: 0,
            message: "hot".into(),
        }
    }

    fn steps(plans: &[Plan]) -> Vec<(usize, u32)> {
        plans
            .iter()
            .filter_map(|p| match p {
                Plan::Step { route, repeat, .. } => Some((*route, *repeat)),
                _ => None,
            })
            .collect()
    }

    const S: i64 = 1000;

    #[test]
    fn an_unacknowledged_fire_climbs_the_steps_and_repeats_the_first() {
        let mut book = AlarmBook::default();
        let mut p = planner();
        let raised = book
            .apply(&change(Some(Severity::Alarm)), 0, false)
            .expect("raised");
        assert!(p.on_event(&raised).is_empty());
        assert_eq!(steps(&p.due(0)), [(0, 0)]);
        assert!(p.due(59 * S).is_empty(), "nothing new before 60 s");
        assert_eq!(steps(&p.due(60 * S)), [(1, 0)]);
        assert!(p.due(61 * S).is_empty(), "each step once");
        assert_eq!(steps(&p.due(180 * S)), [(2, 0)]);
        assert_eq!(steps(&p.due(300 * S)), [(0, 1)]);
        // Down from 301 s to 1000 s: only the latest repeat (3 at 900 s) is sent, not 2 and 3.
        assert_eq!(steps(&p.due(1000 * S)), [(0, 3)]);
    }

    #[test]
    fn an_acknowledgement_stops_the_escalation_and_cancels_what_is_queued() {
        let mut book = AlarmBook::default();
        let mut p = planner();
        let raised = book
            .apply(&change(Some(Severity::Alarm)), 0, false)
            .expect("raised");
        p.on_event(&raised);
        assert_eq!(steps(&p.due(0)), [(0, 0)]);
        let acked = book
            .acknowledge(raised.alarm.id, "op", None, 30 * S)
            .expect("acked");
        assert_eq!(
            p.on_event(&acked),
            [Plan::Cancel {
                alarm_id: raised.alarm.id,
                why: "acknowledged before delivery"
            }]
        );
        assert!(p.due(60 * S).is_empty(), "step 2 never comes");
        assert!(p.due(3600 * S).is_empty());
    }

    #[test]
    fn unacknowledged_again_after_an_acknowledgement_starts_a_new_episode() {
        let mut book = AlarmBook::default();
        let mut p = planner();
        let mut warning = change(Some(Severity::Warning));
        warning.class = AlarmClass::Fire;
        let raised = book.apply(&warning, 0, false).expect("raised");
        p.on_event(&raised);
        p.due(0);
        let acked = book
            .acknowledge(raised.alarm.id, "op", None, S)
            .expect("acked");
        p.on_event(&acked);
        let escalated = book
            .apply(&change(Some(Severity::Alarm)), 100 * S, false)
            .expect("escalated");
        assert_eq!(escalated.transition, Transition::Escalated);
        p.on_event(&escalated);
        let plans = p.due(100 * S);
        assert_eq!(steps(&plans), [(0, 0)]);
        match &plans[0] {
            Plan::Step { episode, .. } => assert_eq!(*episode, 100 * S),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            steps(&p.due(160 * S)),
            [(1, 0)],
            "60 s after the new episode"
        );
    }

    #[test]
    fn cleared_unacknowledged_is_reported_once_to_those_told() {
        let mut book = AlarmBook::default();
        let mut p = Planner::new(
            vec![route(&[AlarmClass::Supervisory], 0, &["duty"])],
            DrillMode::Off,
            0,
        );
        let mut sup = change(Some(Severity::Alarm));
        sup.class = AlarmClass::Supervisory;
        let raised = book.apply(&sup, 0, false).expect("raised");
        let id = raised.alarm.id;
        p.on_event(&raised);
        assert_eq!(steps(&p.due(0)), [(0, 0)]);
        p.told(id, "duty");
        let mut normal = sup.clone();
        normal.severity = None;
        let cleared = book.apply(&normal, 10 * S, false).expect("cleared");
        assert_eq!(cleared.alarm.state, AlarmState::ClearedUnacked);
        let plans = p.on_event(&cleared);
        assert!(plans.iter().any(
            |p| matches!(p, Plan::Cleared { channels, .. } if channels == &["duty".to_string()])
        ));
        // It chatters: back and cleared again, still unacknowledged: no second report, and the
        // episode goes on (no second step 1).
        let back = book.apply(&sup, 20 * S, false).expect("back");
        p.on_event(&back);
        assert!(p.due(20 * S).is_empty());
        let again = book.apply(&normal, 30 * S, false).expect("cleared again");
        assert!(!p
            .on_event(&again)
            .iter()
            .any(|p| matches!(p, Plan::Cleared { .. })));
    }

    #[test]
    fn shelved_and_drill_alarms_notify_nobody_unless_drills_are_marked() {
        let mut book = AlarmBook::default();
        let mut p = planner();
        let raised = book
            .apply(&change(Some(Severity::Alarm)), 0, true)
            .expect("raised");
        assert!(raised.alarm.drill);
        p.on_event(&raised);
        assert!(p.due(0).is_empty(), "a drill notifies nobody");
        let mut marked = Planner::new(planner().routes.clone(), DrillMode::Marked, 0);
        marked.on_event(&raised);
        assert_eq!(steps(&marked.due(0)), [(0, 0)]);

        let mut other = change(Some(Severity::Alarm));
        other.sensor = SensorId::new("xhsy", "hd-2", "temp_c");
        let mut shelved = book.apply(&other, 0, false).expect("raised");
        shelved.alarm.shelved = Some(Shelve {
            until_ms: 120 * S,
            reason: "maintenance".into(),
            by: "op".into(),
            since_ms: Some(0),
        });
        shelved.transition = Transition::Shelved;
        let mut q = planner();
        q.on_event(&shelved);
        assert!(q.due(0).is_empty());
        assert!(q.due(100 * S).is_empty());
        // The shelve is over: what is due now goes out (the current repeat of step 1 and
        // step 2; step 3 comes at 180 s).
        assert_eq!(steps(&q.due(130 * S)), [(0, 0), (1, 0)]);
    }

    #[test]
    fn a_restored_alarm_does_not_queue_again_what_was_queued_before_the_restart() {
        let mut book = AlarmBook::default();
        let raised = book
            .apply(&change(Some(Severity::Alarm)), 0, false)
            .expect("raised");
        let id = raised.alarm.id;
        let keys = vec![
            step_key(id, 0, 0, 0, "duty"),
            step_key(id, 0, 1, 0, "safety"),
            "alarm:99:0:r1:n0:duty".to_string(),
        ];
        let mut p = planner();
        p.restore(raised, 0, &keys);
        // Step 3 was due while the gateway was down: sent now, late. Steps 1 and 2 are not.
        assert_eq!(steps(&p.due(200 * S)), [(2, 0)]);
    }

    #[test]
    fn a_digest_step_waits_for_the_next_boundary_of_the_local_clock() {
        assert_eq!(next_boundary(3_600_000, 3_600_000, 0), 3_600_000);
        assert_eq!(next_boundary(3_600_001, 3_600_000, 0), 7_200_000);
        // 1 h boundaries in UTC+8 fall on whole local hours (and so whole UTC hours).
        assert_eq!(next_boundary(1, 3_600_000, 8 * 3_600_000), 3_600_000);
        // A day in UTC+8 starts at 16:00 UTC.
        assert_eq!(next_boundary(1, 86_400_000, 8 * 3_600_000), 16 * 3_600_000);
        assert_eq!(step_label(0, 0), "第1步");
        assert_eq!(step_label(1, 3), "第2步·第3次重复");
        assert_eq!(step_key(7, 5, 1, 2, "mail"), "alarm:7:5:r2:n2:mail");
    }
}

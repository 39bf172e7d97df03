//! Alarm → ticket policies. A task subscribed to the alarm broadcast (events arrive after they
//! are journaled) decides per rule — `never`, `on_raise`, `if_active_for`, `repeats` — when an
//! alarm becomes a ticket. One open ticket per (sensor, rule): a raise while one is open
//! appends an occurrence. Drill alarms never make tickets. A raise within the recurrence window
//! after the ticket closed opens a new ticket at once, linking the old one. A `fire` alarm
//! reset as a false alarm files a maintenance ticket for the detector.
//!
//! The decisions are here: which [`Policy`] and category an alarm gets
//! ([`PolicyConfig::for_alarm`], [`PolicyConfig::category_for`]), its grade and description.
//! Tickets are filed, appended to and looked up only through the [`Tickets`] service.
//!
//! Pending timers (`if_active_for`) and repeat windows live in memory: after a restart, an
//! alarm still active is judged again from its next raise.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::config::{default_class_categories, default_class_policies, Policy, PolicyConfig};
use super::model::{Category, Grade};
use super::Tickets;
use crate::alarms::{Alarm, AlarmEvent, Transition};
use crate::model::{now_ms, AlarmClass, Severity};

/// How often pending `if_active_for` timers are checked.
const TIMER_TICK: Duration = Duration::from_millis(250);

/// The rule key of the maintenance ticket a false fire alarm files (separate from the rule's
/// own ticket).
pub const FALSE_ALARM_SUFFIX: &str = "#false_alarm";

impl PolicyConfig {
    /// The policy of an alarm: its rule's, else its class's, else the class default.
    pub fn for_alarm(&self, class: AlarmClass, rule: &str) -> Policy {
        self.rule
            .get(rule)
            .or_else(|| self.class.get(&class))
            .copied()
            // A class left out of `[tickets.policy.class]` keeps its default.
            .or_else(|| default_class_policies().get(&class).copied())
            .unwrap_or(Policy::Never)
    }

    /// The category of an alarm's ticket: its rule's, else its class's, else the default.
    pub fn category_for(&self, class: AlarmClass, rule: &str) -> Category {
        self.rule_category
            .get(rule)
            .or_else(|| self.category.get(&class))
            .copied()
            .or_else(|| default_class_categories().get(&class).copied())
            .unwrap_or(Category::Other)
    }
}

/// What the policy does with one alarm event; pure, so the table of cases is unit-tested.
#[derive(Debug, PartialEq)]
pub enum Decision {
    Nothing,
    /// Append to the open ticket if there is one; else apply the policy.
    Raise,
    /// File the false-alarm maintenance ticket.
    FalseAlarm,
    /// The alarm is no longer active: drop its pending timer.
    Inactive,
}

pub fn decide(event: &AlarmEvent, fire_false_alarm_ticket: bool) -> Decision {
    let alarm = &event.alarm;
    if alarm.drill {
        return Decision::Nothing;
    }
    match event.transition {
        // A note about a notification changes nothing the policy looks at.
        Transition::Notified => Decision::Nothing,
        Transition::Raised | Transition::Reraised => Decision::Raise,
        Transition::Reset
            if event.false_alarm && alarm.class == AlarmClass::Fire && fire_false_alarm_ticket =>
        {
            Decision::FalseAlarm
        }
        _ if !alarm.state.is_active() || !alarm.condition_active => Decision::Inactive,
        _ => Decision::Nothing,
    }
}

struct Pending {
    due_ms: i64,
    alarm: Alarm,
}

/// The policy task's memory.
struct PolicyState {
    tickets: Tickets,
    /// Alarm id → the `if_active_for` timer.
    pending: HashMap<u64, Pending>,
    /// (sensor, rule) → raise times within the repeat window.
    repeats: HashMap<(String, String), VecDeque<i64>>,
}

/// Runs until shutdown (or the alarm stream closes).
pub async fn run(
    tickets: Tickets,
    mut alarms: broadcast::Receiver<Arc<AlarmEvent>>,
    shutdown: CancellationToken,
) {
    let mut state = PolicyState {
        tickets,
        pending: HashMap::new(),
        repeats: HashMap::new(),
    };
    let mut tick = tokio::time::interval(TIMER_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => state.fire_due_timers(now_ms()).await,
            received = alarms.recv() => match received {
                Ok(event) => state.handle(&event).await,
                Err(RecvError::Lagged(n)) => {
                    warn!(missed = n, "ticket policy fell behind the alarm stream; missed events are not turned into tickets");
                }
                Err(RecvError::Closed) => return,
            },
        }
    }
}

fn grade_for(alarm: &Alarm) -> Grade {
    if matches!(alarm.class, AlarmClass::Fire | AlarmClass::Gas)
        && alarm.severity == Severity::Alarm
    {
        Grade::Major
    } else {
        Grade::General
    }
}

fn describe(alarm: &Alarm) -> String {
    format!(
        "{}（传感器 {}，规则 {}）",
        alarm.message, alarm.sensor, alarm.rule
    )
}

impl PolicyState {
    async fn handle(&mut self, event: &AlarmEvent) {
        let config = self.tickets.config.clone();
        let alarm = &event.alarm;
        match decide(event, config.policy.fire_false_alarm_ticket) {
            Decision::Nothing => {
                if let Some(p) = self.pending.get_mut(&alarm.id) {
                    p.alarm = alarm.clone();
                }
            }
            Decision::Inactive => {
                self.pending.remove(&alarm.id);
            }
            Decision::FalseAlarm => {
                let rule_key = format!("{}{FALSE_ALARM_SUFFIX}", alarm.rule);
                let description = format!(
                    "火灾探测器误报，需检修或更换（传感器 {}，规则 {}；复位说明：{}）",
                    alarm.sensor,
                    alarm.rule,
                    event.comment.as_deref().unwrap_or("无")
                );
                self.file(
                    alarm,
                    &rule_key,
                    description,
                    Category::Fire,
                    Grade::General,
                    None,
                )
                .await;
            }
            Decision::Raise => self.on_raise(alarm).await,
        }
    }

    async fn on_raise(&mut self, alarm: &Alarm) {
        let config = self.tickets.config.clone();
        match self.tickets.append_occurrence(alarm, &alarm.rule).await {
            Ok(Some(_)) => return,
            Ok(None) => {}
            Err(e) => {
                warn!(alarm = alarm.id, error = %e, "cannot look up the open ticket of an alarm");
                return;
            }
        }
        let policy = config.policy.for_alarm(alarm.class, &alarm.rule);
        if policy == Policy::Never {
            return;
        }
        let window = i64::try_from(config.policy.recurrence_window.as_millis()).unwrap_or(0);
        match self.tickets.recently_closed(alarm, now_ms() - window).await {
            Ok(Some(previous)) => {
                self.file_for(alarm, Some(previous)).await;
                return;
            }
            Ok(None) => {}
            Err(e) => warn!(alarm = alarm.id, error = %e, "cannot look up closed tickets"),
        }
        match policy {
            Policy::Never => {}
            Policy::OnRaise => self.file_for(alarm, None).await,
            Policy::IfActiveFor(d) => {
                let due_ms = alarm.raised_at + i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4);
                self.pending.insert(
                    alarm.id,
                    Pending {
                        due_ms,
                        alarm: alarm.clone(),
                    },
                );
            }
            Policy::Repeats { count, within } => {
                let now = now_ms();
                let within = i64::try_from(within.as_millis()).unwrap_or(i64::MAX / 4);
                let times = self
                    .repeats
                    .entry((alarm.sensor.to_string(), alarm.rule.to_string()))
                    .or_default();
                times.push_back(now);
                while times.front().is_some_and(|t| *t < now - within) {
                    times.pop_front();
                }
                // Bounded: only `count` raises matter.
                while times.len() > count as usize {
                    times.pop_front();
                }
                if times.len() >= count as usize {
                    times.clear();
                    self.file_for(alarm, None).await;
                }
            }
        }
    }

    async fn fire_due_timers(&mut self, now: i64) {
        let due: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.due_ms <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(p) = self.pending.remove(&id) {
                debug!(alarm = id, "alarm still active after its policy delay");
                self.file_for(&p.alarm, None).await;
            }
        }
    }

    async fn file_for(&self, alarm: &Alarm, previous: Option<String>) {
        let category = self
            .tickets
            .config
            .policy
            .category_for(alarm.class, &alarm.rule);
        self.file(
            alarm,
            &alarm.rule,
            describe(alarm),
            category,
            grade_for(alarm),
            previous,
        )
        .await;
    }

    async fn file(
        &self,
        alarm: &Alarm,
        rule_key: &str,
        description: String,
        category: Category,
        grade: Grade,
        previous: Option<String>,
    ) {
        if let Err(e) = self
            .tickets
            .file_from_alarm(alarm, rule_key, description, category, grade, previous)
            .await
        {
            warn!(alarm = alarm.id, sensor = %alarm.sensor, error = %e, "alarm ticket not filed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarms::AlarmState;
    use crate::model::SensorId;
    use crate::tickets::TicketsConfig;

    fn event(transition: Transition, class: AlarmClass, state: AlarmState) -> AlarmEvent {
        let sensor = SensorId::new("xhsy", "d", "p");
        AlarmEvent {
            transition,
            at: 0,
            user: "op".into(),
            comment: None,
            false_alarm: false,
            alarm: Alarm {
                id: 1,
                school: sensor.school.clone(),
                device: sensor.device.clone(),
                point: sensor.point.clone(),
                sensor,
                rule: "r".into(),
                class,
                severity: Severity::Alarm,
                state,
                value: None,
                threshold: None,
                message: String::new(),
                raised_at: 0,
                updated_at: 0,
                reading_ts: 0,
                cleared_at: None,
                condition_active: state.is_active(),
                acked_by: None,
                acked_at: None,
                ack_comment: None,
                shelved: None,
                drill: false,
                occurrences: 1,
            },
        }
    }

    #[test]
    fn decisions_follow_the_table_of_transitions() {
        use AlarmState::{ActiveAcked, ActiveUnacked};
        use Transition::*;
        let cases = [
            (
                Raised,
                AlarmClass::Gas,
                ActiveUnacked,
                false,
                Decision::Raise,
            ),
            (
                Reraised,
                AlarmClass::Supervisory,
                ActiveUnacked,
                false,
                Decision::Raise,
            ),
            (
                Acknowledged,
                AlarmClass::Gas,
                ActiveAcked,
                false,
                Decision::Nothing,
            ),
            (
                Transition::Cleared,
                AlarmClass::Supervisory,
                AlarmState::Cleared,
                false,
                Decision::Inactive,
            ),
            (
                Reset,
                AlarmClass::Fire,
                AlarmState::Cleared,
                true,
                Decision::FalseAlarm,
            ),
            (
                Reset,
                AlarmClass::Fire,
                AlarmState::Cleared,
                false,
                Decision::Inactive,
            ),
            (
                Reset,
                AlarmClass::Gas,
                AlarmState::Cleared,
                true,
                Decision::Inactive,
            ),
            (
                Notified,
                AlarmClass::Fire,
                AlarmState::Cleared,
                false,
                Decision::Nothing,
            ),
        ];
        for (transition, class, state, false_alarm, expected) in cases {
            let mut e = event(transition, class, state);
            e.false_alarm = false_alarm;
            assert_eq!(decide(&e, true), expected, "{transition:?} {class:?}");
        }
        let mut drill = event(Raised, AlarmClass::Gas, ActiveUnacked);
        drill.alarm.drill = true;
        assert_eq!(decide(&drill, true), Decision::Nothing);
        let mut reset = event(Reset, AlarmClass::Fire, AlarmState::Cleared);
        reset.false_alarm = true;
        assert_eq!(decide(&reset, false), Decision::Inactive);
    }

    #[test]
    fn a_rule_policy_overrides_the_class_policy() {
        let cfg: TicketsConfig =
            toml::from_str("[policy.rule]\nlel_high = \"never\"\n").expect("parses");
        assert_eq!(
            cfg.policy.for_alarm(AlarmClass::Gas, "lel_high"),
            Policy::Never
        );
        assert_eq!(
            cfg.policy.for_alarm(AlarmClass::Gas, "voc_high"),
            Policy::OnRaise
        );
    }
}

//! Alarm → ticket policies. The policy task reads alarm transitions from the durable alarm
//! outbox (consumer [`CONSUMER`], its own cursor) at its own pace and decides per rule —
//! `never`, `on_raise`, `if_active_for`, `repeats` — when an alarm becomes a ticket. One open
//! ticket per (sensor, rule): a raise while one is open appends an occurrence. Drill alarms
//! never make tickets. A raise within the recurrence window after the ticket closed opens a new
//! ticket at once, linking the old one. A `fire` alarm reset as a false alarm files a
//! maintenance ticket for the detector; one reset as a real fire opens the draft of its
//! incident report (信息报告, [`super::incidents`]), once per alarm; one reset as a test files
//! nothing.
//!
//! The decisions are here: which [`Policy`] and category an alarm gets
//! ([`PolicyConfig::for_alarm`], [`PolicyConfig::category_for`]), its grade and description.
//! Tickets are filed, appended to and looked up only through the [`Tickets`] service.
//!
//! Nothing is lost when the ticket database is slow or down: the cursor moves past an entry
//! only after the ticket database accepted its work; a database error stops the task at that
//! entry and it retries with backoff (the alarm path never notices — the core only journals).
//! Replays after a crash are harmless: a sensor ticket is unique per open (sensor, rule) and an
//! occurrence per (ticket, reading time). Pending `if_active_for` timers are rebuilt at start
//! from the open alarms in the local store; a timer whose alarm already has a ticket files
//! nothing. Repeat windows live in memory: after a restart they start empty.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::config::{default_class_categories, default_class_policies, Policy, PolicyConfig};
use super::model::{Category, Grade};
use super::{TicketError, Tickets};
use crate::alarms::{Alarm, AlarmEvent, Disposition, Transition};
use crate::model::{now_ms, AlarmClass, Severity};
use crate::store::{LocalStore, OutboxReader, StoreError};

/// The outbox consumer name of the ticket policy.
pub const CONSUMER: &str = "tickets";

/// How often pending `if_active_for` timers are checked.
const TIMER_TICK: Duration = Duration::from_millis(250);
/// Outbox entries taken per read.
const BATCH: usize = 64;
/// Waits between retries while the ticket database (or the local store) fails.
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

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
    /// A fire alarm reset as a real fire: open the draft of its incident report.
    Incident,
    /// The alarm is no longer active: drop its pending timer.
    Inactive,
}

pub fn decide(event: &AlarmEvent, fire_false_alarm_ticket: bool) -> Decision {
    let alarm = &event.alarm;
    // Before the drill check: an operator who says a fire alarm raised during a drill was a
    // real fire is believed.
    if event.transition == Transition::Reset
        && event.disposition == Some(Disposition::Real)
        && alarm.class == AlarmClass::Fire
    {
        return Decision::Incident;
    }
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

/// Why a step of the policy task has to be tried again.
#[derive(Debug, thiserror::Error)]
enum Retry {
    #[error(transparent)]
    Tickets(#[from] TicketError),
    #[error("local store: {0}")]
    Store(#[from] StoreError),
}

/// A ticket error worth retrying: the database did not take the work. Anything else (a ticket
/// the workflow refuses) would fail the same way again, so it is logged and passed over.
fn retry_or_skip(result: Result<(), TicketError>, alarm: &Alarm) -> Result<(), TicketError> {
    match result {
        Err(e @ TicketError::Database(_)) => Err(e),
        Err(e) => {
            warn!(alarm = alarm.id, sensor = %alarm.sensor, error = %e, "alarm ticket refused; passed over");
            Ok(())
        }
        Ok(()) => Ok(()),
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
    /// The last outbox seq whose effects are in this memory: a batch retried after an error
    /// does not count its repeats twice.
    handled: i64,
}

/// What woke the task.
enum Wake {
    Tick,
    Outbox,
}

/// Runs until shutdown. `reader` is the policy's outbox cursor (opened before the core
/// started); `store` is read once at start to rebuild the pending timers.
pub async fn run(
    tickets: Tickets,
    mut reader: OutboxReader,
    store: LocalStore,
    shutdown: CancellationToken,
) {
    let mut state = PolicyState {
        tickets,
        pending: HashMap::new(),
        repeats: HashMap::new(),
        handled: reader.cursor(),
    };
    let mut backoff = RETRY_MIN;
    loop {
        match store.load_open_alarms().await {
            Ok((open, _)) => {
                let n = state.restore_timers(open);
                if n > 0 {
                    info!(
                        timers = n,
                        "ticket policy: pending timers rebuilt from open alarms"
                    );
                }
                break;
            }
            Err(e) => {
                warn!(error = %e, retry_in = ?backoff, "ticket policy: cannot read open alarms; retrying");
                if sleep_or_stop(&shutdown, &mut backoff).await {
                    return;
                }
            }
        }
    }
    let mut tick = tokio::time::interval(TIMER_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backoff = RETRY_MIN;
    loop {
        let wake = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => Wake::Tick,
            _ = reader.wait() => Wake::Outbox,
        };
        let work = async {
            match wake {
                Wake::Tick => state.fire_due_timers(now_ms()).await,
                Wake::Outbox => state.take_batch(&mut reader).await,
            }
        };
        // A call to a database that is down can wait for its pool's acquire timeout; shutdown
        // does not wait for it (nothing uncommitted is lost: the entry comes again).
        let step = tokio::select! {
            _ = shutdown.cancelled() => return,
            step = work => step,
        };
        match step {
            Ok(()) => backoff = RETRY_MIN,
            Err(e) => {
                warn!(error = %e, cursor = reader.cursor(), retry_in = ?backoff, "ticket policy: alarm not turned into its ticket yet; retrying");
                if sleep_or_stop(&shutdown, &mut backoff).await {
                    return;
                }
            }
        }
    }
}

/// Sleeps `backoff` (then doubles it up to [`RETRY_MAX`]); true when shutdown came first.
async fn sleep_or_stop(shutdown: &CancellationToken, backoff: &mut Duration) -> bool {
    let stop = tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(*backoff) => false,
    };
    *backoff = (*backoff * 2).min(RETRY_MAX);
    stop
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
    /// The `if_active_for` timers of the alarms still active: each due at its raise plus the
    /// policy's delay (at once when that has passed while the gateway was down).
    fn restore_timers(&mut self, open: Vec<Alarm>) -> usize {
        let policies = &self.tickets.config.policy;
        let mut n = 0;
        for alarm in open {
            if alarm.drill || !alarm.state.is_active() || !alarm.condition_active {
                continue;
            }
            if let Policy::IfActiveFor(d) = policies.for_alarm(alarm.class, &alarm.rule) {
                let due_ms = alarm.raised_at + i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4);
                self.pending.insert(alarm.id, Pending { due_ms, alarm });
                n += 1;
            }
        }
        n
    }

    /// One batch from the outbox. The cursor moves past an entry that touched the ticket
    /// database as soon as that entry is done, and past the rest at the end of the batch; an
    /// error leaves it before the failed entry.
    async fn take_batch(&mut self, reader: &mut OutboxReader) -> Result<(), Retry> {
        let batch = reader.fetch(BATCH).await?;
        for entry in &batch.entries {
            if entry.seq <= self.handled {
                continue;
            }
            let wrote = self.handle(&entry.event).await?;
            self.handled = entry.seq;
            if wrote {
                reader.commit(entry.seq).await?;
            }
        }
        self.handled = self.handled.max(batch.up_to);
        reader.commit(batch.up_to).await?;
        Ok(())
    }

    /// Applies one event; true when it may have written to the ticket database.
    async fn handle(&mut self, event: &AlarmEvent) -> Result<bool, TicketError> {
        let config = self.tickets.config.clone();
        let alarm = &event.alarm;
        match decide(event, config.policy.fire_false_alarm_ticket) {
            Decision::Nothing => {
                if let Some(p) = self.pending.get_mut(&alarm.id) {
                    p.alarm = alarm.clone();
                }
                Ok(false)
            }
            Decision::Inactive => {
                self.pending.remove(&alarm.id);
                Ok(false)
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
                .await?;
                Ok(true)
            }
            Decision::Raise => {
                self.on_raise(alarm).await?;
                Ok(true)
            }
            Decision::Incident => {
                self.pending.remove(&alarm.id);
                let opened = self.tickets.open_incident_for_alarm(event).await;
                match opened {
                    Err(e @ TicketError::Database(_)) => Err(e),
                    Err(e) => {
                        warn!(alarm = alarm.id, error = %e, "incident report refused; passed over");
                        Ok(true)
                    }
                    Ok(_) => Ok(true),
                }
            }
        }
    }

    async fn on_raise(&mut self, alarm: &Alarm) -> Result<(), TicketError> {
        let config = self.tickets.config.clone();
        if self
            .tickets
            .append_occurrence(alarm, &alarm.rule)
            .await?
            .is_some()
        {
            return Ok(());
        }
        let policy = config.policy.for_alarm(alarm.class, &alarm.rule);
        if policy == Policy::Never {
            return Ok(());
        }
        let window = i64::try_from(config.policy.recurrence_window.as_millis()).unwrap_or(0);
        if let Some(previous) = self
            .tickets
            .recently_closed(alarm, now_ms() - window)
            .await?
        {
            return self.file_for(alarm, Some(previous)).await;
        }
        match policy {
            Policy::Never => {}
            Policy::OnRaise => self.file_for(alarm, None).await?,
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
                    self.file_for(alarm, None).await?;
                }
            }
        }
        Ok(())
    }

    /// Files the tickets of the timers that are due. A timer stays until its ticket is in the
    /// database (or the alarm already has one).
    async fn fire_due_timers(&mut self, now: i64) -> Result<(), Retry> {
        let due: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.due_ms <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(p) = self.pending.get(&id) else {
                continue;
            };
            let alarm = p.alarm.clone();
            debug!(alarm = id, "alarm still active after its policy delay");
            let has_ticket = self
                .tickets
                .store
                .alarm_has_ticket(
                    &alarm.sensor.to_string(),
                    &alarm.rule,
                    i64::try_from(alarm.id).unwrap_or(i64::MAX),
                )
                .await?;
            if !has_ticket {
                self.file_for(&alarm, None).await?;
            }
            self.pending.remove(&id);
        }
        Ok(())
    }

    async fn file_for(&self, alarm: &Alarm, previous: Option<String>) -> Result<(), TicketError> {
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
        .await
    }

    async fn file(
        &self,
        alarm: &Alarm,
        rule_key: &str,
        description: String,
        category: Category,
        grade: Grade,
        previous: Option<String>,
    ) -> Result<(), TicketError> {
        let filed = self
            .tickets
            .file_from_alarm(alarm, rule_key, description, category, grade, previous)
            .await
            .map(|_| ());
        retry_or_skip(filed, alarm)
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
            disposition: None,
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
    fn a_fire_reset_as_real_opens_an_incident_even_in_drill_and_a_test_files_nothing() {
        let reset = |class, disposition, drill| {
            let mut e = event(Transition::Reset, class, AlarmState::Cleared);
            e.disposition = disposition;
            e.false_alarm = disposition == Some(Disposition::False);
            e.alarm.drill = drill;
            decide(&e, true)
        };
        use AlarmClass::{Fire, Gas};
        use Disposition::{False, Real, Test};
        assert_eq!(reset(Fire, Some(Real), false), Decision::Incident);
        assert_eq!(reset(Fire, Some(Real), true), Decision::Incident);
        assert_eq!(reset(Fire, Some(False), false), Decision::FalseAlarm);
        assert_eq!(reset(Fire, Some(False), true), Decision::Nothing);
        assert_eq!(reset(Fire, Some(Test), false), Decision::Inactive);
        assert_eq!(reset(Fire, None, false), Decision::Inactive);
        // Only fire alarms have incident reports.
        assert_eq!(reset(Gas, Some(Real), false), Decision::Inactive);
        // Only a reset says what an alarm was.
        let mut ack = event(Transition::Acknowledged, Fire, AlarmState::ActiveAcked);
        ack.disposition = Some(Real);
        assert_eq!(decide(&ack, true), Decision::Nothing);
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

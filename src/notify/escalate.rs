//! The escalation task: reads alarm transitions from the alarm outbox (consumer `notify`) at its
//! own pace, drives the [`Planner`], and turns what it plans into queued deliveries (rendered
//! messages in the delivery table), waking the senders of the channels concerned. It never sits
//! on the alarm path: the core journals, the outbox wakes this task, and a slow or dead channel
//! only ever delays its own sender.
//!
//! Handling is idempotent (deliveries are keyed), so the outbox cursor is committed only after a
//! batch's deliveries are queued: a crash in between replays the batch and queues nothing twice.
//! At start the planner is rebuilt from the open alarms in the local store (each one's episode
//! from its journal) and the deliveries already queued.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::config::{DrillMode, NotifyConfig};
use super::deliveries::{Deliveries, NewDelivery};
use super::message::Renderer;
use super::planner::{cleared_key, episode_prefix, step_key, step_label, Plan, Planner};
use crate::alarms::{AlarmEvent, AlarmState, Transition};
use crate::model::now_ms;
use crate::store::{JournalEntry, LocalStore, OutboxReader, StoreError};

/// How often due steps are looked for.
const TICK: Duration = Duration::from_millis(200);
/// Outbox entries taken per batch.
const BATCH: usize = 256;
/// Announced devices are read again at most this often (a message naming an unknown device).
const DIRECTORY_REFRESH: Duration = Duration::from_secs(5);

pub struct Escalation {
    pub(super) reader: OutboxReader,
    pub(super) store: LocalStore,
    pub(super) deliveries: Deliveries,
    pub(super) planner: Planner,
    pub(super) renderer: Renderer,
    /// Channel name → the schools it takes (`None`: all).
    pub(super) channel_schools: HashMap<String, Option<Vec<String>>>,
    pub(super) wake: HashMap<String, Arc<Notify>>,
    pub(super) drills: DrillMode,
    pub(super) last_directory_refresh: Option<tokio::time::Instant>,
}

impl Escalation {
    pub fn new(
        config: &NotifyConfig,
        reader: OutboxReader,
        store: LocalStore,
        deliveries: Deliveries,
        renderer: Renderer,
        wake: HashMap<String, Arc<Notify>>,
    ) -> Self {
        Self {
            reader,
            store,
            deliveries,
            planner: Planner::new(config.routes.clone(), config.drills, config.offset_ms()),
            renderer,
            channel_schools: config
                .channels
                .iter()
                .map(|c| (c.name.clone(), c.schools.clone()))
                .collect(),
            wake,
            drills: config.drills,
            last_directory_refresh: None,
        }
    }

    /// Runs until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.restore().await {
                Ok(n) => {
                    if n > 0 {
                        info!(alarms = n, "notifications: open alarms taken up again");
                    }
                    break;
                }
                Err(e) => {
                    warn!(error = %e, retry_in = ?backoff, "notifications: cannot read open alarms; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut backoff = Duration::from_millis(200);
        loop {
            let step = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.reader.wait() => self.take_batch().await,
                _ = tick.tick() => {
                    let plans = self.planner.due(now_ms());
                    self.apply(plans).await
                }
            };
            match step {
                Ok(()) => backoff = Duration::from_millis(200),
                Err(e) => {
                    // The local store failed: nothing was committed; the same entries and steps
                    // come again (keys make that harmless).
                    warn!(error = %e, retry_in = ?backoff, "notifications: queueing failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        info!("notification planner stopped");
    }

    /// Rebuilds the planner from the open alarms and the queued deliveries.
    async fn restore(&mut self) -> Result<usize, StoreError> {
        let (open, _) = self.store.load_open_alarms().await?;
        let mut n = 0;
        for alarm in open {
            let journal = self.store.journal(alarm.id).await?;
            let (episode, last) = episode_of(&journal);
            let episode = episode.unwrap_or(alarm.raised_at);
            let keys = self
                .deliveries
                .keys_with_prefix(alarm.id, &episode_prefix(alarm.id, episode))
                .await?;
            let (transition, at, user) = match last {
                Some(e) => (
                    parse_transition(&e.transition).unwrap_or(Transition::Raised),
                    e.at,
                    e.user.clone(),
                ),
                None => (
                    Transition::Raised,
                    alarm.raised_at,
                    crate::alarms::SYSTEM_USER.into(),
                ),
            };
            let event = AlarmEvent {
                transition,
                at,
                user,
                comment: None,
                false_alarm: false,
                disposition: None,
                alarm,
            };
            self.planner.restore(event, episode, &keys);
            n += 1;
        }
        // Whatever became due while the gateway was down.
        let plans = self.planner.due(now_ms());
        self.apply(plans).await?;
        Ok(n)
    }

    /// One batch of outbox entries: plan, queue, then commit the cursor.
    async fn take_batch(&mut self) -> Result<(), StoreError> {
        let batch = self.reader.fetch(BATCH).await?;
        let mut plans = Vec::new();
        for entry in &batch.entries {
            plans.extend(self.planner.on_event(&entry.event));
        }
        plans.extend(self.planner.due(now_ms()));
        self.apply(plans).await?;
        self.reader.commit(batch.up_to).await
    }

    /// Queues the deliveries of `plans` (and cancels what they cancel) and wakes the senders.
    async fn apply(&mut self, plans: Vec<Plan>) -> Result<(), StoreError> {
        if plans.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let mut new = Vec::new();
        let mut told = Vec::new();
        for plan in plans {
            match plan {
                Plan::Cancel { alarm_id, why } => {
                    self.deliveries.cancel_alarm(alarm_id, now, why).await?;
                }
                Plan::Step {
                    event,
                    episode,
                    route,
                    repeat,
                    not_before,
                } => {
                    self.know_device(&event).await;
                    let Some(config) = self.planner.routes().get(route) else {
                        continue;
                    };
                    let digest = config.digest.is_some();
                    let channels = config.channels.clone();
                    let message = self.renderer.alarm(
                        &event,
                        "alarm",
                        &step_label(route, repeat),
                        self.drills == DrillMode::Marked,
                    );
                    for channel in channels {
                        if !self.takes(&channel, &event.alarm.school) {
                            continue;
                        }
                        told.push((event.alarm.id, channel.clone()));
                        new.push(NewDelivery {
                            key: step_key(event.alarm.id, episode, route, repeat, &channel),
                            channel,
                            kind: "alarm".into(),
                            alarm_id: Some(event.alarm.id),
                            digest,
                            message: message.clone(),
                            not_before,
                        });
                    }
                }
                Plan::Cleared {
                    event,
                    episode,
                    channels,
                } => {
                    let message = self.renderer.alarm(
                        &event,
                        "cleared",
                        "恢复通知",
                        self.drills == DrillMode::Marked,
                    );
                    for channel in channels {
                        new.push(NewDelivery {
                            key: cleared_key(event.alarm.id, episode, &channel),
                            channel,
                            kind: "cleared".into(),
                            alarm_id: Some(event.alarm.id),
                            digest: false,
                            message: message.clone(),
                            not_before: now,
                        });
                    }
                }
            }
        }
        self.deliveries.enqueue(&new, now).await?;
        for (alarm, channel) in told {
            self.planner.told(alarm, &channel);
        }
        for d in &new {
            if let Some(wake) = self.wake.get(&d.channel) {
                wake.notify_one();
            }
        }
        Ok(())
    }

    fn takes(&self, channel: &str, school: &str) -> bool {
        match self.channel_schools.get(channel) {
            Some(None) => true,
            Some(Some(schools)) => schools.iter().any(|s| s == school),
            None => false,
        }
    }

    /// Makes sure the directory has the alarm's device if it announced itself since.
    async fn know_device(&mut self, event: &AlarmEvent) {
        let key = event.alarm.sensor.device_key();
        if self.renderer.directory.knows(&key) {
            return;
        }
        let fresh = self
            .last_directory_refresh
            .is_some_and(|at| at.elapsed() < DIRECTORY_REFRESH);
        if fresh {
            return;
        }
        self.last_directory_refresh = Some(tokio::time::Instant::now());
        match self.store.announced_devices().await {
            Ok(devices) => self.renderer.directory.add_announced(devices),
            Err(e) => warn!(error = %e, "notifications: cannot read announced devices"),
        }
    }
}

/// The start of the alarm's current episode from its journal (the last raise, or the last time
/// it became unacknowledged again after an acknowledgement), and its last transition that was
/// not a note.
fn episode_of(journal: &[JournalEntry]) -> (Option<i64>, Option<&JournalEntry>) {
    let mut episode = None;
    let mut previous: Option<&JournalEntry> = None;
    for entry in journal {
        if matches!(entry.transition.as_str(), "action" | "notified") {
            continue;
        }
        let unacked = entry.state == AlarmState::ActiveUnacked.as_str();
        let was_acked = previous.is_some_and(|p| p.state == AlarmState::ActiveAcked.as_str());
        if entry.transition == "raised" || (unacked && was_acked) {
            episode = Some(entry.at);
        }
        previous = Some(entry);
    }
    (episode, previous)
}

fn parse_transition(s: &str) -> Option<Transition> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(transition: &str, state: &str, at: i64) -> JournalEntry {
        JournalEntry {
            seq: at,
            alarm_id: 1,
            at,
            transition: transition.into(),
            user: "system".into(),
            comment: None,
            state: state.into(),
            severity: "alarm".into(),
            value: None,
            false_alarm: false,
            disposition: None,
        }
    }

    #[test]
    fn the_episode_is_found_again_in_the_journal() {
        let journal = [
            entry("raised", "active_unacked", 10),
            entry("notified", "active_unacked", 11),
            entry("acknowledged", "active_acked", 20),
            entry("escalated", "active_unacked", 30),
            entry("notified", "active_unacked", 31),
            entry("returned_to_normal", "active_unacked", 40),
        ];
        let (episode, last) = episode_of(&journal);
        assert_eq!(episode, Some(30));
        assert_eq!(
            last.map(|e| e.transition.as_str()),
            Some("returned_to_normal")
        );
        let (episode, _) = episode_of(&journal[..2]);
        assert_eq!(episode, Some(10));
        assert_eq!(
            parse_transition("returned_to_normal"),
            Some(Transition::ReturnedToNormal)
        );
        assert_eq!(parse_transition("nonsense"), None);
    }
}

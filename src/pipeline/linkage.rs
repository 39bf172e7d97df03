//! Write-back (linkage): when an alarm is raised (or comes back) and its rule names an
//! `action`, run the alarm device's `[[modbus.actions]]` entry of that name, e.g. switch the
//! cabinet's exhaust fan on at a gas or ventilation alarm.
//!
//! ```text
//! core: Raised/Reraised ──Core::start_action──► spawned run (at most MAX_RUNS at once)
//!     ──ModbusWriter::execute_on(device, action)──► poller (between two polls) ──►
//!     ActionDone on a bounded channel ──Core::action_done──► journal `action` on the alarm,
//!     and raise (failure) / clear (success) the device's `action_failed:<action>` fault
//! ```
//!
//! The core never waits for a device: the run is a task of its own and its result comes back
//! as an internal event. Off unless configured: a rule naming an action that the device does
//! not configure does nothing (debug log, `modbus_actions_unmatched` counter).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tracing::{debug, warn};

use super::Core;
use crate::alarms::{Alarm, AlarmEvent, Transition, SYSTEM_USER};
use crate::ingest::modbus::{ModbusConfig, ModbusStats, ModbusWriter};
use crate::model::{now_ms, AlarmClass, ConditionChange, DeviceKey, SensorId, Severity};
use crate::rules::config::ACTION_FAILED_RULE_PREFIX;

/// Action runs in flight at once. One more is refused at once: counted
/// (`modbus_actions_rejected`), journaled on its alarm and raised as the device's
/// `action_failed:<action>` fault, like a failed write.
pub const MAX_RUNS: usize = 16;

/// Longest a run may take. The poller answers within the poll in progress plus the device's
/// timeout; this only bounds a run (and its slot) if something upstream hangs.
const RUN_DEADLINE: Duration = Duration::from_secs(30);

/// A finished (or refused) action run, back at the core.
#[derive(Debug)]
pub struct ActionDone {
    /// The alarm as it was when the run started.
    pub alarm: Alarm,
    pub action: String,
    /// What was written, or why nothing was.
    pub result: Result<String, String>,
}

/// The core's side of write-back: which actions exist, and the slots and channel of runs.
pub struct Linkage {
    writer: Option<ModbusWriter>,
    /// (device, action name) of every configured action.
    configured: HashSet<(DeviceKey, String)>,
    runs: Arc<Semaphore>,
    done_tx: mpsc::Sender<ActionDone>,
    done_rx: Option<mpsc::Receiver<ActionDone>>,
    stats: Arc<ModbusStats>,
}

impl Linkage {
    /// `writer` is `None` when no action is configured (or the poller is not running).
    pub fn new(
        config: &ModbusConfig,
        writer: Option<ModbusWriter>,
        stats: Arc<ModbusStats>,
    ) -> Self {
        let configured = config
            .actions
            .iter()
            .filter_map(|action| match config.action_devices(action)[..] {
                [device] => Some((device.device_key(), action.name.clone())),
                // Refused at load.
                _ => None,
            })
            .collect();
        // Never full: every run holds a slot until its result is queued, and there are at
        // most MAX_RUNS slots.
        let (done_tx, done_rx) = mpsc::channel(MAX_RUNS);
        Self {
            writer,
            configured,
            runs: Arc::new(Semaphore::new(MAX_RUNS)),
            done_tx,
            done_rx: Some(done_rx),
            stats,
        }
    }

    /// The results of runs, for the core's loop (once; later calls get a closed channel).
    pub fn take_results(&mut self) -> mpsc::Receiver<ActionDone> {
        self.done_rx.take().unwrap_or_else(|| mpsc::channel(1).1)
    }

    /// Starts `action` for a raised `alarm`. Returns a result at once when the run cannot
    /// start because every slot is taken; `None` when it started or nothing is configured.
    fn start(&self, alarm: &Alarm, action: &str) -> Option<ActionDone> {
        let device = alarm.sensor.device_key();
        let writer = self.writer.as_ref().filter(|_| {
            self.configured
                .contains(&(device.clone(), action.to_owned()))
        });
        let Some(writer) = writer else {
            self.stats.actions_unmatched.fetch_add(1, Ordering::Relaxed);
            debug!(device = %device, rule = %alarm.rule, action, "rule names an action the device does not configure");
            return None;
        };
        let Ok(slot) = self.runs.clone().try_acquire_owned() else {
            self.stats.actions_rejected.fetch_add(1, Ordering::Relaxed);
            warn!(device = %device, action, "write-back not run: too many runs in flight");
            return Some(ActionDone {
                alarm: alarm.clone(),
                action: action.to_owned(),
                result: Err(format!(
                    "not run: {MAX_RUNS} write-back actions were already running"
                )),
            });
        };
        let writer = writer.clone();
        let done = self.done_tx.clone();
        let alarm = alarm.clone();
        let action = action.to_owned();
        tokio::spawn(async move {
            let result =
                match tokio::time::timeout(RUN_DEADLINE, writer.execute_on(&device, &action)).await
                {
                    Ok(Ok(report)) => Ok(report.description),
                    Ok(Err(error)) => Err(error.to_string()),
                    Err(_) => Err(format!("no answer within {RUN_DEADLINE:?}")),
                };
            // Fails only when the core has stopped (shutdown): nobody is left to journal it.
            let _ = done
                .send(ActionDone {
                    alarm,
                    action,
                    result,
                })
                .await;
            drop(slot);
        });
        None
    }
}

/// The rule id of the device fault a failed `action` raises.
pub fn failed_rule(action: &str) -> String {
    format!("{ACTION_FAILED_RULE_PREFIX}{action}")
}

/// The journal note of a run (on `alarm`, its state now) and the change of the device's
/// `action_failed:<action>` fault condition: raised on failure, cleared on success.
pub fn outcome(done: &ActionDone, alarm: Alarm, now: i64) -> (AlarmEvent, ConditionChange) {
    let action = &done.action;
    let (comment, severity, message) = match &done.result {
        Ok(description) => (
            format!("{action}: {description}"),
            None,
            format!("write-back `{action}` succeeded (normal)"),
        ),
        Err(error) => (
            format!("{action} failed: {error}"),
            Some(Severity::Alarm),
            format!("write-back `{action}` failed: {error}"),
        ),
    };
    let change = ConditionChange {
        sensor: SensorId::device_status(&alarm.school, &alarm.device),
        rule: failed_rule(action).into(),
        class: AlarmClass::Fault,
        severity,
        value: None,
        threshold: None,
        reading_ts_ms: now,
        message,
    };
    let event = AlarmEvent {
        transition: Transition::Action,
        at: now,
        user: SYSTEM_USER.to_string(),
        comment: Some(comment),
        false_alarm: false,
        alarm,
    };
    (event, change)
}

impl Core {
    /// Starts the action the rule of a raised alarm names, if any (never waits).
    pub(super) fn start_action(&mut self, alarm: &Alarm) {
        let Some(action) = self
            .engine
            .device_profile(&alarm.sensor.device_key())
            .and_then(|profile| self.engine.profiles().rule_action(profile, &alarm.rule))
        else {
            return;
        };
        if let Some(refused) = self.linkage.start(alarm, action) {
            self.record_action(&refused, alarm.clone());
        }
    }

    /// A run finished: journal it with its alarm and raise or clear the device fault.
    pub(super) async fn action_done(&mut self, done: ActionDone) {
        let alarm = match self.book.get(done.alarm.id) {
            Some(alarm) => alarm.clone(),
            // Closed meanwhile: the store has its last state (journaled before broadcast), so
            // the note does not show a closed alarm as open.
            None => match self.store.alarm(done.alarm.id).await {
                Ok(Some(alarm)) => alarm,
                _ => done.alarm.clone(),
            },
        };
        self.record_action(&done, alarm);
    }

    fn record_action(&mut self, done: &ActionDone, alarm: Alarm) {
        let now = now_ms();
        let (note, fault) = outcome(done, alarm, now);
        self.pending.push(note);
        if let Some(event) = self.book.apply(&fault, now, false) {
            self.pending.push(event);
        }
    }
}

/// Restored `action_failed:*` faults are the core's own, not the rule engine's: they need no
/// restoring there (a later successful run clears them through the book).
pub fn is_action_fault(rule: &str) -> bool {
    rule.starts_with(ACTION_FAILED_RULE_PREFIX)
}

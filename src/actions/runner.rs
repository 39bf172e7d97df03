//! The runs of actions: which (device, action) pairs are configured, a slot per run (at most
//! [`MAX_RUNS`] at once), a deadline per run, and the bounded channel their results come back
//! to the pipeline core on.
//!
//! Edges and what happens when they are full:
//! - core → runs: [`Actions::run`] never waits; with every slot taken, one more run is refused
//!   at once (counted in `modbus_actions_rejected`, and its result says so).
//! - run → Modbus write queue (bounded, `modbus::WriteHandle`): the run waits, within its
//!   deadline; the core does not.
//! - runs → core results: one slot per run, so it never fills.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tracing::{debug, warn};

use crate::alarms::Alarm;
use crate::ingest::modbus::{ModbusConfig, WriteHandle};
use crate::model::DeviceKey;

/// Action runs in flight at once. One more is refused at once: counted
/// (`modbus_actions_rejected`), journaled on its alarm and raised as the device's
/// `action_failed:<action>` fault, like a failed write.
pub const MAX_RUNS: usize = 16;

/// Longest a run may take. The poller answers within the poll in progress plus the device's
/// timeout; this only bounds a run (and its slot) if something upstream hangs.
const RUN_DEADLINE: Duration = Duration::from_secs(30);

/// Counters of actions, rendered in `/metrics` (under their `modbus_actions_*` names).
#[derive(Debug, Default)]
pub struct ActionStats {
    /// Raised alarms whose rule names an action the device does not configure (nothing ran).
    pub unmatched: AtomicU64,
    /// Runs refused because [`MAX_RUNS`] were running (each also raises a `fault` alarm).
    pub rejected: AtomicU64,
}

/// A finished (or refused) run, back at the core.
#[derive(Debug)]
pub struct ActionDone {
    /// The alarm as it was when the run started.
    pub alarm: Alarm,
    pub action: String,
    /// What was written, or why nothing was.
    pub result: Result<String, String>,
}

/// The core's handle to actions: which exist, and the slots and result channel of runs.
pub struct Actions {
    /// `None` when no action is configured.
    transport: Option<WriteHandle>,
    /// (device, action name) of every configured action.
    configured: HashSet<(DeviceKey, String)>,
    runs: Arc<Semaphore>,
    done_tx: mpsc::Sender<ActionDone>,
    done_rx: Option<mpsc::Receiver<ActionDone>>,
    stats: Arc<ActionStats>,
}

impl Actions {
    /// The actions `config` defines, written through `transport` (see [`super::start`]).
    pub fn new(
        config: &ModbusConfig,
        transport: Option<WriteHandle>,
        stats: Arc<ActionStats>,
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
            transport,
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

    /// Runs `action` (which the rule of the raised `alarm` names) on the alarm's device, in a
    /// task of its own; never waits. Returns a result at once when the run cannot start
    /// because every slot is taken; `None` when it started, or when the device does not
    /// configure the action (nothing to do).
    pub fn run(&self, alarm: &Alarm, action: &str) -> Option<ActionDone> {
        let device = alarm.sensor.device_key();
        let transport = self.transport.as_ref().filter(|_| {
            self.configured
                .contains(&(device.clone(), action.to_owned()))
        });
        let Some(transport) = transport else {
            self.stats.unmatched.fetch_add(1, Ordering::Relaxed);
            debug!(device = %device, rule = %alarm.rule, action, "rule names an action the device does not configure");
            return None;
        };
        let Ok(slot) = self.runs.clone().try_acquire_owned() else {
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            warn!(device = %device, action, "action not run: too many runs in flight");
            return Some(ActionDone {
                alarm: alarm.clone(),
                action: action.to_owned(),
                result: Err(format!("not run: {MAX_RUNS} actions were already running")),
            });
        };
        let transport = transport.clone();
        let done = self.done_tx.clone();
        let alarm = alarm.clone();
        let action = action.to_owned();
        tokio::spawn(async move {
            let result =
                match tokio::time::timeout(RUN_DEADLINE, transport.write(&device, &action)).await {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarms::AlarmBook;
    use crate::ingest::modbus::{self, WriteCommands};
    use crate::model::{AlarmClass, ConditionChange, SensorId, Severity};

    const CABINET: &str = r#"
        [[devices]]
        id = "cab-1"
        school = "xhsy"
        transport = "tcp"
        address = "127.0.0.1:1"
        unit = 1
        points = [{ name = "fan_on", table = "coil", address = 0, type = "bool" }]
        [[actions]]
        name = "exhaust_fan_on"
        device = "cab-1"
        table = "coil"
        address = 0
        value = true
    "#;

    /// Actions over a write queue nobody serves yet: runs wait for an answer until the
    /// returned commands are served or dropped.
    fn actions() -> (Actions, WriteCommands, Arc<ActionStats>) {
        let config: ModbusConfig = toml::from_str(CABINET).expect("test config parses");
        assert_eq!(config.validate(), Vec::<String>::new());
        let (handle, writes) = modbus::write_channel();
        let stats = Arc::new(ActionStats::default());
        (
            Actions::new(&config, Some(handle), stats.clone()),
            writes,
            stats,
        )
    }

    /// A gas alarm raised on `device`'s `lel_pct`.
    fn alarm(device: &str) -> Alarm {
        let mut book = AlarmBook::default();
        let change = ConditionChange {
            sensor: SensorId::parse(&format!("xhsy/{device}/lel_pct")).expect("sensor path"),
            rule: "lel_high".into(),
            class: AlarmClass::Gas,
            severity: Some(Severity::Alarm),
            value: None,
            threshold: Some(40.0),
            reading_ts_ms: 1,
            message: "lel_pct high".into(),
        };
        book.apply(&change, 1, false).expect("raised").alarm
    }

    #[tokio::test]
    async fn an_action_the_device_does_not_configure_runs_nothing_and_is_counted() {
        let (actions, _writes, stats) = actions();
        assert!(actions.run(&alarm("cab-2"), "exhaust_fan_on").is_none());
        assert!(actions.run(&alarm("cab-1"), "fan_off").is_none());
        assert_eq!(stats.unmatched.load(Ordering::Relaxed), 2);
        assert_eq!(
            actions.runs.available_permits(),
            MAX_RUNS,
            "nothing started"
        );
    }

    #[tokio::test]
    async fn one_run_more_than_max_runs_is_refused_at_once_and_the_slots_come_back() {
        let (mut actions, writes, stats) = actions();
        let mut results = actions.take_results();
        let gas = alarm("cab-1");
        for _ in 0..MAX_RUNS {
            assert!(actions.run(&gas, "exhaust_fan_on").is_none(), "started");
        }
        let refused = actions
            .run(&gas, "exhaust_fan_on")
            .expect("refused at once");
        assert_eq!(refused.alarm.id, gas.id);
        assert_eq!(
            refused.result,
            Err(format!("not run: {MAX_RUNS} actions were already running"))
        );
        assert_eq!(stats.rejected.load(Ordering::Relaxed), 1);

        // The transport goes away: every waiting run comes back with the reason and frees its
        // slot, so the next run starts again.
        drop(writes);
        for _ in 0..MAX_RUNS {
            let done = tokio::time::timeout(Duration::from_secs(10), results.recv())
                .await
                .expect("a result in time")
                .expect("results channel open");
            assert_eq!(done.action, "exhaust_fan_on");
            assert_eq!(
                done.result,
                Err("the Modbus poller is not running".to_owned())
            );
        }
        tokio::time::timeout(Duration::from_secs(10), async {
            while actions.runs.available_permits() < MAX_RUNS {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("slots released");
        assert!(actions.run(&gas, "exhaust_fan_on").is_none(), "started");
        assert_eq!(stats.rejected.load(Ordering::Relaxed), 1);
    }
}

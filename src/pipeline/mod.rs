//! The pipeline core: one task that owns the device registry, the live cache, the rules engine
//! and the alarm book. It takes [`IngestEvent`]s from every source in arrival order (so readings
//! of one sensor are evaluated in order), evaluates rules, journals alarm transitions before
//! broadcasting them, and hands readings on to the local history writer.
//!
//! Its edges, with their capacities and what happens when each is full, are all named in
//! [`crate::start`], and built by [`start`] here. Commands from the API are served before
//! readings, so the console stays responsive under load.
//!
//! Import loop inside this folder, on purpose: `drills.rs` is another `impl Core`
//! block (split by topic), so it and this file use each other. Action runs are
//! [`crate::actions`]; the core only starts them and records their results.

pub mod commission;
mod config;
mod drills;
mod registry;

pub use config::{CoreConfig, DeviceConfig, PipelineConfig};
pub use registry::{DeviceEntry, LiveValue, Registration};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::actions::{ActionDone, Actions};
use crate::alarms::{Alarm, AlarmBook, AlarmError, AlarmEvent, ShelveRequest};
use crate::drills::{Drill, DrillBook, DrillError, DrillEvent, NewDrill};
use crate::ingest::mqtt::decode::Reject;
use crate::metrics::Metrics;
use crate::model::{
    now_ms, ConditionChange, DeviceInfo, DeviceKey, DurableAck, IngestEvent, Reading, SensorId,
    Severity,
};
use crate::notify;
use crate::rules::{PointCheck, RuleEngine};
use crate::store::local::HistoryBatch;
use crate::store::timeseries::TimeseriesBatch;
use crate::store::LocalStore;
use crate::supervisor::Supervisor;
use registry::Registry;

/// Requests from the API to the core, each with its reply channel.
pub enum Command {
    Acknowledge {
        id: u64,
        user: String,
        comment: Option<String>,
        reply: oneshot::Sender<Result<AlarmEvent, AlarmError>>,
    },
    Shelve {
        id: u64,
        request: ShelveRequest,
        reply: oneshot::Sender<Result<AlarmEvent, AlarmError>>,
    },
    Reset {
        id: u64,
        user: String,
        comment: Option<String>,
        /// What the alarm was (real fire, false alarm, test), journaled with the reset.
        disposition: Option<crate::alarms::Disposition>,
        reply: oneshot::Sender<Result<AlarmEvent, AlarmError>>,
    },
    OpenAlarms {
        reply: oneshot::Sender<Vec<Alarm>>,
    },
    Devices {
        reply: oneshot::Sender<Vec<DeviceEntry>>,
    },
    Sensors {
        reply: oneshot::Sender<Vec<(SensorId, LiveValue)>>,
    },
    StartDrill {
        drill: NewDrill,
        reply: oneshot::Sender<Result<Drill, DrillError>>,
    },
    EndDrill {
        id: u64,
        user: String,
        reply: oneshot::Sender<Result<Drill, DrillError>>,
    },
    /// The active drills.
    Drills {
        reply: oneshot::Sender<Vec<Drill>>,
    },
    /// Register (or re-register) a device from the console, at once (see `commission.rs`).
    Commission {
        change: commission::Commission,
        reply: oneshot::Sender<Result<DeviceEntry, commission::CommissionError>>,
    },
    /// Forget a device commissioned from the console.
    Decommission {
        device: DeviceKey,
        reply: oneshot::Sender<Result<(), commission::CommissionError>>,
    },
}

/// Where the core's outputs go.
pub struct CoreOutputs {
    pub history: mpsc::Sender<HistoryBatch>,
    pub alarm_stream: broadcast::Sender<Arc<AlarmEvent>>,
    pub alarm_mqtt: Option<mpsc::Sender<Arc<AlarmEvent>>>,
    /// Drill starts and ends, for the SSE stream (a slow client lags, like alarms).
    pub drill_stream: broadcast::Sender<Arc<DrillEvent>>,
    /// The time-series sink, when one is configured. When full, the core waits (the sink
    /// spools to disk while the store is down, so it only fills under `spool_full =
    /// "backpressure"`).
    pub timeseries: Option<mpsc::Sender<TimeseriesBatch>>,
    /// Runs the actions rules name (never waits; results come back to the core's loop).
    pub actions: Actions,
}

/// What the core takes in: readings and device events from every source, the API's
/// requests, and the notifier's reports (attempts to journal, channel faults).
pub struct CoreInputs {
    pub ingest: mpsc::Receiver<IngestEvent>,
    pub commands: mpsc::Receiver<Command>,
    pub notify: mpsc::Receiver<notify::Report>,
}

/// Builds the core (registers the configured devices, restores open alarms and announced
/// devices from the store) and runs it on `tasks` until every ingest sender is gone.
pub async fn start(
    config: &CoreConfig,
    store: &LocalStore,
    inputs: CoreInputs,
    outputs: CoreOutputs,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
    supervisor: &Supervisor,
) -> Result<(), crate::store::StoreError> {
    let core = Core::new(config, store.clone(), outputs, metrics.clone()).await?;
    // Not restartable: it owns the alarm book and its inputs. Its end is reported (`task:core`
    // on `/readyz`, the counter); no fault alarm, since the core is what raises them.
    supervisor.once("core", core.run(inputs, shutdown.clone()));
    Ok(())
}

/// Events taken from the ingest channel at a wake-up (`recv_many`), at most. An MQTT batch
/// holds up to 64 messages, so this is kept small: the round's size is bounded by
/// [`ROUND_READINGS`] (and the history and sink batches, and their channels' memory, by it).
const DRAIN_BATCH: usize = 8;
/// Readings taken per round, about: more events are taken while the round holds fewer, so a
/// round is at most this plus one wake-up's `DRAIN_BATCH` events (an MQTT batch is taken
/// whole). The round ends with its alarms journaled and broadcast and its readings handed on.
const ROUND_READINGS: usize = 4096;
/// Readings waiting for room in the history writer's queue, at most; beyond, they are shed.
const HISTORY_BACKLOG: usize = 20_000;
/// Transitions waiting for the alarm journal to write again, at most.
const JOURNAL_BACKLOG: usize = 10_000;
/// How long after a failed journal write the next one is tried (meanwhile alarms are delivered
/// unjournaled, without trying the failing store on every round).
const JOURNAL_RETRY: Duration = Duration::from_secs(1);
/// API commands served after each round (besides the one a round may be woken for): enough
/// that operators' acknowledgements never wait long behind a stream of readings, few enough
/// that a flood of list requests adds little to a round.
const COMMANDS_PER_ROUND: usize = 8;
/// Notification notes taken per round (a summary's report names many alarms), so a round, and
/// the alarms raised in the next one, stay short.
const NOTES_PER_ROUND: usize = 256;

pub struct Core {
    engine: RuleEngine,
    book: AlarmBook,
    drills: DrillBook,
    registry: Registry,
    store: LocalStore,
    out: CoreOutputs,
    metrics: Arc<Metrics>,
    tick: Duration,
    /// Transitions waiting to be journaled and broadcast at the end of this round.
    pending: Vec<AlarmEvent>,
    /// `notified` notes, journaled after the round's transitions (never in their transaction,
    /// so a burst of notes does not delay an alarm).
    notes: Vec<AlarmEvent>,
    /// Restored alarm conditions whose device has not registered yet.
    pending_restore: Vec<(SensorId, Arc<str>, Severity)>,
    changes: Vec<ConditionChange>,
    history_batch: HistoryBatch,
    /// Readings the history writer's queue had no room for, tried again each round (bounded by
    /// [`HISTORY_BACKLOG`]; see [`Core::hand_to_history`]).
    history_backlog: HistoryBatch,
    /// Transitions whose journal write failed, oldest first: written before newer ones at the
    /// next try (see [`Core::journal`]).
    journal_backlog: Vec<AlarmEvent>,
    journal_retry_at: Option<Instant>,
    /// The [`crate::health::Health`] generation last turned into fault alarms.
    health_seen: u64,
    /// Announcements to save in the local store at the next flush.
    announced: Vec<(DeviceKey, DeviceInfo)>,
}

impl Core {
    /// Builds the core: registers configured devices and restores open alarms from the store.
    pub async fn new(
        config: &CoreConfig,
        store: LocalStore,
        out: CoreOutputs,
        metrics: Arc<Metrics>,
    ) -> Result<Self, crate::store::StoreError> {
        let mut engine = RuleEngine::new(config.profiles.clone());
        let mut registry = Registry::new(
            config.max_unregistered_devices,
            config.max_unregistered_points,
        );
        let now = Instant::now();
        for device in &config.devices {
            let key = DeviceKey::new(&device.school, &device.id);
            // The profile was checked at load.
            if let Err(e) = engine.register_device(&key, &device.profile, &device.overrides, now) {
                warn!(device = %key, error = ?e, "device not registered");
                continue;
            }
            registry.register_config(key, device);
        }
        for device in &config.modbus.devices {
            let key = device.device_key();
            let info = device.device_info();
            if let Some(profile) = &info.profile {
                if let Err(e) = engine.register_device(&key, profile, &BTreeMap::new(), now) {
                    warn!(device = %key, error = ?e, "Modbus device not registered");
                    continue;
                }
            }
            registry.register_configured(key, info);
        }
        let (open, max_id) = store.load_open_alarms().await?;
        // Conditions of devices not registered yet (announced by meta later) wait for them.
        let pending_restore = open
            .iter()
            .filter(|a| {
                a.condition_active
                    && !crate::actions::is_fault(&a.rule)
                    && !notify::is_fault(&a.rule)
                    && !crate::health::is_fault(&a.rule)
            })
            .filter(|a| !engine.restore_condition(&a.sensor, &a.rule, a.severity))
            .map(|a| (a.sensor.clone(), a.rule.clone(), a.severity))
            .collect();
        if !open.is_empty() {
            info!(count = open.len(), "restored open alarms");
        }
        let book = AlarmBook::restore(open, max_id);
        // Drills that expired while the gateway was down end at the first tick.
        let drills = DrillBook::restore(store.active_drills().await?);
        metrics.active_alarms.set(book.len() as i64);
        let mut core = Self {
            engine,
            book,
            drills,
            registry,
            store,
            out,
            metrics,
            tick: config.tick,
            pending: Vec::new(),
            notes: Vec::new(),
            pending_restore,
            changes: Vec::new(),
            history_batch: HistoryBatch::default(),
            history_backlog: HistoryBatch::default(),
            journal_backlog: Vec::new(),
            journal_retry_at: None,
            health_seen: u64::MAX,
            announced: Vec::new(),
        };
        // Commissioned devices before announced ones: the console wins over meta.
        for device in core.store.commissioned_devices().await? {
            let key = DeviceKey::new(&device.school, &device.device);
            if let Err(e) = commission::Commission::from_stored(key.clone(), &device)
                .and_then(|change| core.commission(change).map(|_| ()))
            {
                warn!(device = %key, error = %e, "commissioned device not registered");
            }
        }
        let announced = core.store.announced_devices().await?;
        if !announced.is_empty() {
            info!(
                count = announced.len(),
                "devices known from earlier announcements"
            );
        }
        for (device, info) in announced {
            core.apply_meta(device, info, now, false);
        }
        Ok(core)
    }

    /// Runs until every ingest sender is gone (sources stop first at shutdown), then flushes.
    pub async fn run(mut self, inputs: CoreInputs, shutdown: CancellationToken) {
        let CoreInputs {
            mut ingest,
            mut commands,
            mut notify,
        } = inputs;
        let mut tick = tokio::time::interval(self.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut commands_open = true;
        let mut notify_open = true;
        let mut action_results = self.out.actions.take_results();
        let mut events = Vec::with_capacity(DRAIN_BATCH);
        loop {
            // Alarm transitions and readings first, API commands after them: a flood of API
            // readers never stands between a reading and its alarm. Commands are not starved
            // under a steady stream of readings: up to `COMMANDS_PER_ROUND` are served after
            // every round, once the round's alarms are out.
            tokio::select! {
                biased;
                Some(done) = action_results.recv() => self.action_done(done).await,
                // One wake-up takes whatever is queued (up to DRAIN_BATCH events, each an
                // MQTT batch or a poll cycle), more while the round is small.
                n = ingest.recv_many(&mut events, DRAIN_BATCH) => {
                    if n == 0 { break };
                    for event in events.drain(..) {
                        self.handle_ingest(event);
                    }
                    while self.history_batch.readings.len() < ROUND_READINGS {
                        match ingest.try_recv() {
                            Ok(event) => self.handle_ingest(event),
                            Err(_) => break,
                        }
                    }
                    self.metrics.ingest_queue_depth.set(ingest.len() as i64);
                }
                _ = tick.tick() => {
                    self.handle_tick();
                    self.expire_drills().await;
                    self.retry_journal().await;
                }
                report = notify.recv(), if notify_open => match report {
                    Some(report) => {
                        self.notify_report(report);
                        while self.notes.len() < NOTES_PER_ROUND {
                            match notify.try_recv() {
                                Ok(report) => self.notify_report(report),
                                Err(_) => break,
                            }
                        }
                    }
                    None => notify_open = false,
                },
                command = commands.recv(), if commands_open => match command {
                    Some(command) => self.handle_command(command).await,
                    None => commands_open = false,
                },
                // Sources stop on shutdown and drop their senders; this is a backstop for a
                // source that does not.
                _ = shutdown.cancelled(), if ingest.is_empty() && ingest.sender_strong_count() == 0 => break,
            }
            self.flush().await;
            for _ in 0..COMMANDS_PER_ROUND {
                match commands.try_recv() {
                    Ok(command) => self.handle_command(command).await,
                    Err(_) => break,
                }
            }
            // At least once per `tick` even when idle: a core stuck anywhere stops beating.
            self.metrics.core_heartbeat.beat();
        }
        self.flush().await;
        info!("pipeline core stopped");
    }

    fn handle_ingest(&mut self, event: IngestEvent) {
        let now = Instant::now();
        match event {
            IngestEvent::Readings(readings) => {
                // One message or poll cycle comes from one source: counted once per event.
                let source = readings.first().map(|r| r.source);
                let mut accepted = 0;
                for reading in readings {
                    accepted += u64::from(self.handle_reading(reading, now));
                }
                if let Some(source) = source {
                    self.metrics.reading_accepted(source, accepted);
                }
            }
            IngestEvent::Status {
                device,
                online,
                ts_ms,
            } => {
                self.registry.status(&device, online, ts_ms);
                self.engine
                    .on_status(&device, online, now, now_ms(), &mut self.changes);
            }
            IngestEvent::Meta { device, info } => self.apply_meta(device, info, now, true),
            IngestEvent::Batch { events, acks } => {
                for event in events {
                    self.handle_ingest(event);
                }
                // Behind the batch's readings: released once they are durable.
                self.history_batch.acks.extend(acks);
            }
        }
        self.apply_changes();
    }

    /// A device's meta, announced now (`save`) or stored from before a restart: registers the
    /// device with the rules engine under its profile. A new or changed announcement is saved
    /// at the next flush, so after a restart the readings the broker redelivers before the
    /// retained meta are evaluated at once.
    fn apply_meta(&mut self, device: DeviceKey, info: DeviceInfo, now: Instant, save: bool) {
        let to_save = (save && self.registry.info(&device) != Some(&info)).then(|| info.clone());
        let announced = info.profile.is_some();
        let profile = self.registry.meta(&device, info);
        if announced && profile.is_none() && !self.registry.is_owned(&device) {
            // Refused: the registry is full.
            self.metrics.reject(Reject::BadMeta, &device.to_string());
        }
        let Some(profile) = profile else { return };
        match self
            .engine
            .register_device(&device, &profile, &BTreeMap::new(), now)
        {
            Ok(()) => {
                if save {
                    info!(device = %device, profile = %profile, "device announced itself");
                }
                let engine = &mut self.engine;
                self.pending_restore.retain(|(sensor, rule, severity)| {
                    sensor.device_key() != device
                        || !engine.restore_condition(sensor, rule, *severity)
                });
                if let Some(info) = to_save {
                    self.announced.push((device, info));
                }
            }
            Err(_) => {
                self.registry.unregister(&device);
                self.metrics.reject(Reject::BadMeta, &device.to_string());
            }
        }
    }

    /// True when the reading was accepted (evaluated, cached and passed on to the stores).
    fn handle_reading(&mut self, reading: Reading, now: Instant) -> bool {
        let key = reading.sensor.device_key();
        match self.engine.check_point(&key, &reading.sensor.point) {
            PointCheck::UnknownPoint => {
                self.metrics
                    .reject(Reject::UnknownPoint, &reading.sensor.to_string());
                return false;
            }
            PointCheck::UnregisteredDevice => {
                if !self.registry.admits_point(&reading.sensor) {
                    let sensor = reading.sensor.to_string();
                    self.metrics.reject(Reject::TooManyPoints, &sensor);
                    return false;
                }
                self.metrics.unregistered_readings.inc();
            }
            PointCheck::Known => {}
        }
        self.engine.on_reading(&reading, now, &mut self.changes);
        self.registry.reading(&key, &reading);
        self.history_batch.readings.push(reading);
        true
    }

    fn handle_tick(&mut self) {
        self.engine
            .on_tick(Instant::now(), now_ms(), &mut self.changes);
        self.apply_changes();
        self.apply_health();
        let expired = self.book.expire_shelves(now_ms(), Instant::now());
        self.pending.extend(expired);
    }

    /// Turns the gateway's own faults (history, journal, tasks) into `fault` alarms, when they
    /// changed. The first time, it also clears open system faults restored from before a
    /// restart whose condition no longer holds.
    fn apply_health(&mut self) {
        let now = now_ms();
        let health = self.metrics.health.clone();
        let first = self.health_seen == u64::MAX;
        let Some((seen, changes)) = health.changes_since(self.health_seen, now) else {
            return;
        };
        self.health_seen = seen;
        if first {
            self.clear_restored_faults(&health, now);
        }
        for change in changes {
            if let Some(event) = self.book.apply(&change, now, false) {
                self.pending.push(event);
            }
        }
    }

    fn clear_restored_faults(&mut self, health: &crate::health::Health, now: i64) {
        let stale: Vec<ConditionChange> = self
            .book
            .open()
            .filter(|a| a.condition_active && crate::health::is_fault(&a.rule))
            .filter(|a| !health.holds_rule(&a.rule))
            .map(|a| ConditionChange {
                sensor: a.sensor.clone(),
                rule: a.rule.clone(),
                class: a.class,
                severity: None,
                value: None,
                threshold: None,
                reading_ts_ms: now,
                message: format!("{}（重启后已恢复）", a.message),
            })
            .collect();
        for change in stale {
            if let Some(event) = self.book.apply(&change, now, false) {
                self.pending.push(event);
            }
        }
    }

    fn apply_changes(&mut self) {
        let now = now_ms();
        // Alarms raised (or back) whose rule may name an action (rare: no allocation
        // otherwise).
        let mut raised = Vec::new();
        for change in self.changes.drain(..) {
            let drill = drills::under_drill(&self.drills, &self.registry, &change.sensor);
            if let Some(event) = self.book.apply(&change, now, drill) {
                if matches!(
                    event.transition,
                    crate::alarms::Transition::Raised | crate::alarms::Transition::Reraised
                ) {
                    raised.push(event.alarm.clone());
                }
                self.pending.push(event);
            }
        }
        for alarm in raised {
            self.start_action(&alarm);
        }
    }

    /// Starts the action the rule of a raised alarm names, if any (never waits).
    fn start_action(&mut self, alarm: &Alarm) {
        let Some(action) = self
            .engine
            .device_profile(&alarm.sensor.device_key())
            .and_then(|profile| self.engine.profiles().rule_action(profile, &alarm.rule))
        else {
            return;
        };
        if let Some(refused) = self.out.actions.run(alarm, action) {
            self.record_action(&refused, alarm.clone());
        }
    }

    /// A run finished: journal it with its alarm and raise or clear the device fault.
    async fn action_done(&mut self, done: ActionDone) {
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

    /// A notifier report: a `notified` note on each alarm the attempt named (its state from the
    /// book when open; an alarm gone from the book is closed), or the change of a channel's
    /// `notify:<channel>` fault. No I/O: the notes are journaled at the end of the round.
    fn notify_report(&mut self, report: notify::Report) {
        let now = now_ms();
        match report {
            notify::Report::Attempt { alarms, comment } => {
                for snapshot in alarms {
                    let alarm = match self.book.get(snapshot.id) {
                        Some(open) => open.clone(),
                        None => Alarm {
                            state: crate::alarms::AlarmState::Cleared,
                            ..snapshot
                        },
                    };
                    self.notes.push(AlarmEvent {
                        transition: crate::alarms::Transition::Notified,
                        at: now,
                        user: crate::alarms::SYSTEM_USER.to_string(),
                        comment: Some(comment.clone()),
                        false_alarm: false,
                        disposition: None,
                        alarm,
                    });
                }
            }
            notify::Report::Channel { channel, failure } => {
                let change = notify::fault_change(&channel, failure.as_deref(), now);
                if let Some(event) = self.book.apply(&change, now, false) {
                    self.pending.push(event);
                }
            }
        }
    }

    fn record_action(&mut self, done: &ActionDone, alarm: Alarm) {
        let now = now_ms();
        let (note, fault) = crate::actions::outcome(done, alarm, now);
        self.pending.push(note);
        // Counted as raised (like every transition) when the flush journals it.
        if let Some(event) = self.book.apply(&fault, now, false) {
            self.pending.push(event);
        }
    }

    /// Journals pending transitions, then broadcasts them; then hands readings to history.
    async fn flush(&mut self) {
        for (device, info) in std::mem::take(&mut self.announced) {
            if let Err(e) = self.store.save_announced_device(&device, &info).await {
                warn!(device = %device, error = %e, "could not save a device announcement");
            }
        }
        if !self.pending.is_empty() {
            let events = std::mem::take(&mut self.pending);
            self.journal(&events).await;
            self.metrics.active_alarms.set(self.book.len() as i64);
            for event in events {
                // Every transition passes here once, whoever caused it (rules, operators,
                // write-back): the one place alarms are counted.
                self.metrics.alarm_journaled(&event);
                let event = Arc::new(event);
                // No receivers is fine (nobody watching).
                let _ = self.out.alarm_stream.send(event.clone());
                if let Some(mqtt) = &self.out.alarm_mqtt {
                    if mqtt.try_send(event).is_err() {
                        self.metrics.alarm_publish_dropped.inc();
                    }
                }
            }
        }
        if !self.notes.is_empty() {
            // After the round's alarms are out; on the stream (the alarm's page shows them),
            // not on the MQTT copy (its queue is for alarms).
            let notes = std::mem::take(&mut self.notes);
            self.journal(&notes).await;
            for note in notes {
                self.metrics.alarm_journaled(&note);
                let _ = self.out.alarm_stream.send(Arc::new(note));
            }
        }
        if let Some(ts) = &self.out.timeseries {
            if !self.history_batch.readings.is_empty() {
                let readings = self
                    .history_batch
                    .readings
                    .iter()
                    .map(|r| self.registry.tag(r))
                    .collect();
                // A source message is acknowledged once both the local history and the
                // time-series sink hold its readings.
                let acks = self
                    .history_batch
                    .acks
                    .iter()
                    .map(DurableAck::share)
                    .collect();
                if let Err(unsent) = ts.send(TimeseriesBatch { readings, acks }).await {
                    // Holding the acks would stop ingest (and alarms) at the broker's
                    // in-flight window; the local history still has the readings.
                    unsent.0.acks.into_iter().for_each(DurableAck::release);
                    error!("time-series sink is gone; readings not sent to the store");
                }
            }
        }
        self.metrics.rules_stats(&self.engine.stats());
        if !self.history_batch.readings.is_empty() || !self.history_batch.acks.is_empty() {
            let batch = std::mem::take(&mut self.history_batch);
            self.hand_to_history(batch);
        } else if !self.history_backlog.acks.is_empty() || !self.history_backlog.readings.is_empty()
        {
            self.hand_to_history(HistoryBatch::default());
        }
    }

    /// Hands readings (and their acks) to the history writer without waiting: the rules have
    /// evaluated them already, and nothing downstream of the alarm book may hold up the core.
    /// When the writer's queue is full they wait in a backlog here, tried again every round
    /// (at least every tick), acks held (the broker slows ingest to what the disk takes); beyond
    /// [`HISTORY_BACKLOG`] readings, or when the writer is gone, the backlog is shed: counted
    /// (`campusguard_history_shed_readings_total`) and its acks released, so ingest, and alarms,
    /// never stop at the broker's in-flight window.
    fn hand_to_history(&mut self, batch: HistoryBatch) {
        let mut backlog = std::mem::take(&mut self.history_backlog);
        backlog.readings.extend(batch.readings);
        backlog.acks.extend(batch.acks);
        self.metrics
            .history_queue_depth
            .set((self.out.history.max_capacity() - self.out.history.capacity()) as i64);
        let unsent = match self.out.history.try_send(backlog) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(unsent)) => {
                if unsent.readings.len() <= HISTORY_BACKLOG {
                    self.history_backlog = unsent;
                    return;
                }
                warn!(
                    rows = unsent.readings.len(),
                    "local history cannot keep up; readings shed (evaluated, not stored locally)"
                );
                unsent
            }
            Err(mpsc::error::TrySendError::Closed(unsent)) => {
                error!("local history writer is gone; readings not stored locally");
                unsent
            }
        };
        self.metrics
            .history_shed_readings
            .inc_by(unsent.readings.len() as u64);
        unsent.acks.into_iter().for_each(DurableAck::release);
    }

    /// Writes transitions durably before anyone sees them. When the write fails (disk full,
    /// I/O error) the alarms are delivered anyway, at once — an operator must see a fire even
    /// when the disk is broken, and the alarm stays actionable (the book holds it) — the fault
    /// `storage:journal` is raised, and the transitions wait in a backlog (at most
    /// [`JOURNAL_BACKLOG`], oldest dropped beyond it) that is written, in order, before newer
    /// ones at the next try, [`JOURNAL_RETRY`] later; that write clears the fault.
    async fn journal(&mut self, events: &[AlarmEvent]) {
        if self.journal_retry_at.is_some_and(|at| Instant::now() < at) {
            self.journal_backlog.extend_from_slice(events);
            self.bound_journal_backlog();
            return;
        }
        let mut batch = std::mem::take(&mut self.journal_backlog);
        let retrying = !batch.is_empty();
        if retrying {
            batch.extend_from_slice(events);
        }
        // Each alarm's row names its building, for the alarm history's filters.
        let registry = &self.registry;
        let building_of = |alarm: &Alarm| {
            let key = DeviceKey {
                school: alarm.school.clone(),
                device: alarm.device.clone(),
            };
            registry.building(&key).map(str::to_owned)
        };
        let written = if retrying { &batch[..] } else { events };
        let result = self.store.record_placed_events(written, building_of).await;
        match result {
            Ok(()) => {
                if self.journal_retry_at.take().is_some() {
                    info!("alarm journal writes again; backlog written");
                    self.metrics.health.clear(&crate::health::JOURNAL);
                }
            }
            Err(e) => {
                self.metrics.journal_write_errors.inc();
                if self.journal_retry_at.is_none() {
                    error!(error = %e, transitions = events.len(), "alarm journal write failed; delivering alarms unjournaled, retrying");
                }
                let why = e.to_string();
                self.metrics.health.raise(&crate::health::JOURNAL, why);
                if !retrying {
                    batch.extend_from_slice(events);
                }
                self.journal_backlog = batch;
                self.bound_journal_backlog();
                self.journal_retry_at = Some(Instant::now() + JOURNAL_RETRY);
            }
        }
    }

    /// Writes the journal backlog once its retry is due, so the fault clears without waiting
    /// for a new transition.
    async fn retry_journal(&mut self) {
        let due = self.journal_retry_at.is_some_and(|at| Instant::now() >= at);
        if due && !self.journal_backlog.is_empty() {
            self.journal(&[]).await;
        }
    }

    fn bound_journal_backlog(&mut self) {
        if self.journal_backlog.len() > JOURNAL_BACKLOG {
            let dropped = self.journal_backlog.len() - JOURNAL_BACKLOG;
            self.journal_backlog.drain(..dropped);
            error!(
                dropped,
                "alarm journal backlog full; oldest unjournaled transitions dropped"
            );
        }
    }

    async fn handle_command(&mut self, command: Command) {
        let now = now_ms();
        match command {
            Command::Acknowledge {
                id,
                user,
                comment,
                reply,
            } => {
                let result = self.book.acknowledge(id, &user, comment, now);
                self.reply_after_flush(result, reply).await;
            }
            Command::Shelve { id, request, reply } => {
                let result = self.book.shelve(id, request, now, Instant::now());
                self.reply_after_flush(result, reply).await;
            }
            Command::Reset {
                id,
                user,
                comment,
                disposition,
                reply,
            } => {
                // The book knows the latched state; the engine knows whether the condition
                // still holds. Refresh the alarm's view from the engine first.
                let result = match self.book.get(id) {
                    Some(alarm)
                        if self.engine.condition_active(&alarm.sensor, &alarm.rule)
                            || alarm.condition_active =>
                    {
                        Err(AlarmError::ConditionActive(id))
                    }
                    _ => self.book.reset(id, &user, comment, disposition, now),
                };
                self.reply_after_flush(result, reply).await;
            }
            Command::OpenAlarms { reply } => {
                let _ = reply.send(self.book.open().cloned().collect());
            }
            Command::Devices { reply } => {
                let _ = reply.send(self.registry.devices());
            }
            Command::Sensors { reply } => {
                let _ = reply.send(self.registry.sensors());
            }
            Command::StartDrill { drill, reply } => self.start_drill(drill, reply).await,
            Command::EndDrill { id, user, reply } => self.end_drill(id, &user, reply).await,
            Command::Drills { reply } => {
                let _ = reply.send(self.drills.active().to_vec());
            }
            Command::Commission { change, reply } => {
                let _ = reply.send(self.commission(change));
            }
            Command::Decommission { device, reply } => {
                let _ = reply.send(self.decommission(&device));
            }
        }
    }

    async fn reply_after_flush(
        &mut self,
        result: Result<AlarmEvent, AlarmError>,
        reply: oneshot::Sender<Result<AlarmEvent, AlarmError>>,
    ) {
        if let Ok(event) = &result {
            self.pending.push(event.clone());
            self.flush().await;
        }
        let _ = reply.send(result);
    }
}

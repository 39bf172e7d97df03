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
use tokio_util::task::TaskTracker;
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
        false_alarm: bool,
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
    tasks: &TaskTracker,
) -> Result<(), crate::store::StoreError> {
    let core = Core::new(config, store.clone(), outputs, metrics.clone()).await?;
    tasks.spawn(core.run(inputs, shutdown.clone()));
    Ok(())
}

/// Readings drained from the ingest channel per round before alarms are flushed.
const DRAIN_BATCH: usize = 512;
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
        loop {
            tokio::select! {
                biased;
                command = commands.recv(), if commands_open => match command {
                    Some(command) => self.handle_command(command).await,
                    None => commands_open = false,
                },
                Some(done) = action_results.recv() => self.action_done(done).await,
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
                event = ingest.recv() => {
                    let Some(event) = event else { break };
                    self.handle_ingest(event);
                    for _ in 0..DRAIN_BATCH {
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
                }
                // Sources stop on shutdown and drop their senders; this is a backstop for a
                // source that does not.
                _ = shutdown.cancelled(), if ingest.is_empty() && ingest.sender_strong_count() == 0 => break,
            }
            self.flush().await;
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
            IngestEvent::Ack(ack) => self.history_batch.acks.push(ack),
            IngestEvent::Meta { device, info } => self.apply_meta(device, info, now, true),
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
        let expired = self.book.expire_shelves(now_ms(), Instant::now());
        self.pending.extend(expired);
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
            self.metrics
                .history_queue_depth
                .set((self.out.history.max_capacity() - self.out.history.capacity()) as i64);
            if self.out.history.send(batch).await.is_err() {
                error!("local history writer is gone; readings not stored locally");
            }
        }
    }

    /// Writes transitions durably before anyone sees them. A failing store is retried a few
    /// times; after that the alarm is delivered anyway (an operator must see a fire even when
    /// the disk is broken) and the failure is logged and counted.
    async fn journal(&self, events: &[AlarmEvent]) {
        let mut delay = Duration::from_millis(50);
        for attempt in 1..=3 {
            let building_of = |alarm: &Alarm| {
                let key = DeviceKey {
                    school: alarm.school.clone(),
                    device: alarm.device.clone(),
                };
                self.registry.building(&key).map(str::to_owned)
            };
            match self.store.record_placed_events(events, building_of).await {
                Ok(()) => return,
                Err(e) => {
                    self.metrics.journal_write_errors.inc();
                    warn!(error = %e, attempt, "alarm journal write failed");
                    tokio::time::sleep(delay).await;
                    delay *= 4;
                }
            }
        }
        error!(
            transitions = events.len(),
            "alarm journal unavailable; delivering alarms unjournaled"
        );
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
                false_alarm,
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
                    _ => self.book.reset(id, &user, comment, false_alarm, now),
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

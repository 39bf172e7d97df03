//! The Modbus poller: one task per connection (a TCP address, or a serial port) polls the
//! devices behind it in turn and sends their readings and health into the pipeline.
//!
//! Devices sharing a connection (several unit ids behind one gateway or on one RS-485 line)
//! are never polled concurrently: one task owns the connection and walks a schedule of due
//! times. Every connect and request is wrapped in `tokio::time::timeout` (tokio-modbus has no
//! timeout of its own, tokio-modbus #113), and after a timeout the connection is dropped and
//! reopened, because a reused context can hand a late answer to the next request (#324). A
//! device that times out gives up the rest of its cycle (so it costs at most its timeout) and
//! is backed off (interval doubling up to `max_backoff`), so its neighbours keep their pace;
//! devices on other connections run in other tasks and are not affected at all.
//!
//! Health: after `offline_after` consecutive failed polls a device is reported
//! `IngestEvent::Status { online: false }`; its first good poll reports `online: true` (also
//! the very first success after start).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, timeout, Instant};
use tokio_modbus::client::{Client as _, Context, Reader, Writer};
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::{ExceptionCode, Slave};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::actions::{WriteCommands, WriteError, WriteReport};
use super::codec::{encode_value, Table};
use super::config::{ActionValue, ConnectionKey, ModbusDeviceConfig, Parity, Transport};
use super::registers::{
    bridges_gap, decode_point, plan_reads, plan_reads_of, BlockData, CoalesceLimits, ReadBlock,
};
use super::{ModbusConfig, ModbusStats};
use crate::model::{now_ms, DeviceKey, IngestEvent, Quality, Reading, SensorId, Source};

/// Wait before retrying a request that failed with a transient error (capped by the timeout).
const RETRY_DELAY: Duration = Duration::from_millis(100);
/// At most one decode-error log line per device in this period (the counter counts them all).
const DECODE_LOG_PERIOD: Duration = Duration::from_secs(60);

/// Why one request (a connect, a read of a poll, or a write-back) failed, or why a poll
/// produced nothing.
#[derive(Debug, Error)]
pub enum RequestError {
    #[error("cannot resolve `{address}`: {source}")]
    Resolve { address: String, source: io::Error },
    #[error("cannot connect to `{connection}`: {source}")]
    Connect {
        connection: ConnectionKey,
        source: io::Error,
    },
    #[error("connecting to `{connection}` took longer than {timeout:?}")]
    ConnectTimeout {
        connection: ConnectionKey,
        timeout: Duration,
    },
    #[error("no answer to {request} within {timeout:?}")]
    Timeout { request: String, timeout: Duration },
    #[error("exception {code} ({}) answering {request}", exception_name(*.code))]
    Exception { request: String, code: u8 },
    #[error("transport error on {request}: {source}")]
    Transport {
        request: String,
        source: tokio_modbus::Error,
    },
    #[error("no point of the device could be decoded")]
    NothingDecoded,
}

/// The standard name of a Modbus exception code.
pub fn exception_name(code: u8) -> &'static str {
    match code {
        1 => "illegal function",
        2 => "illegal data address",
        3 => "illegal data value",
        4 => "server device failure",
        5 => "acknowledge",
        6 => "server device busy",
        8 => "memory parity error",
        10 => "gateway path unavailable",
        11 => "gateway target device failed to respond",
        _ => "non-standard exception",
    }
}

impl RequestError {
    /// Worth another attempt within the same cycle: a busy device, a dropped connection. A
    /// timeout is not: it already cost the whole budget.
    fn is_transient(&self) -> bool {
        match self {
            RequestError::Exception { code, .. } => {
                matches!(
                    ExceptionCode::new(*code),
                    ExceptionCode::ServerDeviceBusy | ExceptionCode::Acknowledge
                )
            }
            RequestError::Transport { .. } | RequestError::Connect { .. } => true,
            _ => false,
        }
    }

    /// After this error the rest of the device's cycle is skipped (it would only wait again).
    fn ends_cycle(&self) -> bool {
        matches!(
            self,
            RequestError::Timeout { .. }
                | RequestError::ConnectTimeout { .. }
                | RequestError::Connect { .. }
                | RequestError::Resolve { .. }
        )
    }
}

/// Polls every configured device until `shutdown`, sending readings and status changes to
/// `out`. Returns after `shutdown` is cancelled and every connection task has stopped (a task
/// whose pipeline is gone stops early). Expects a config that passed [`ModbusConfig::validate`];
/// a device without a usable address is logged and skipped. Without write-back; see
/// [`run_with_writes`].
pub async fn run(
    config: ModbusConfig,
    out: mpsc::Sender<IngestEvent>,
    stats: Arc<ModbusStats>,
    shutdown: CancellationToken,
) {
    run_inner(config, out, stats, None, shutdown).await;
}

/// [`run`], also executing the write-back actions sent through the
/// [`ModbusWriter`](super::actions::ModbusWriter)
/// paired with `writes`.
pub async fn run_with_writes(
    config: ModbusConfig,
    out: mpsc::Sender<IngestEvent>,
    stats: Arc<ModbusStats>,
    writes: WriteCommands,
    shutdown: CancellationToken,
) {
    run_inner(config, out, stats, Some(writes), shutdown).await;
}

/// Pending writes per connection; more are answered `Busy`.
const CONNECTION_WRITE_QUEUE: usize = 8;

async fn run_inner(
    config: ModbusConfig,
    out: mpsc::Sender<IngestEvent>,
    stats: Arc<ModbusStats>,
    writes: Option<WriteCommands>,
    shutdown: CancellationToken,
) {
    let limits = CoalesceLimits::from(&config);
    let policy = HealthPolicy {
        offline_after: config.offline_after.max(1),
        max_backoff: config.max_backoff,
    };
    let actions = resolve_actions(&config);
    let mut connections: BTreeMap<ConnectionKey, Vec<ModbusDeviceConfig>> = BTreeMap::new();
    for device in config.devices {
        match device.connection_key() {
            Some(key) => connections.entry(key).or_default().push(device),
            None => {
                warn!(device = %device.id, "Modbus device has no address or serial port, not polled")
            }
        }
    }
    info!(
        connections = connections.len(),
        devices = connections.values().map(Vec::len).sum::<usize>(),
        actions = actions.len(),
        "Modbus poller starting"
    );
    let tracker = TaskTracker::new();
    let mut write_queues: HashMap<ConnectionKey, mpsc::Sender<ConnectionWrite>> = HashMap::new();
    for (key, devices) in connections {
        let mut task = ConnectionTask::new(key.clone(), devices, &limits, policy, stats.clone());
        if writes.is_some() && actions.values().any(|a| a.connection == key) {
            let (tx, rx) = mpsc::channel(CONNECTION_WRITE_QUEUE);
            write_queues.insert(key, tx);
            task.writes = Some(rx);
        }
        tracker.spawn(task.run(out.clone(), shutdown.clone()));
    }
    if let Some(writes) = writes {
        tracker.spawn(dispatch_writes(
            writes,
            actions,
            write_queues,
            shutdown.clone(),
        ));
    }
    tracker.close();
    // Nothing to poll still means "running until shutdown" to the caller.
    tokio::join!(tracker.wait(), shutdown.cancelled());
}

/// A configured action, resolved to its device and connection.
#[derive(Debug, Clone)]
struct ResolvedAction {
    name: String,
    device: DeviceKey,
    connection: ConnectionKey,
    unit: u8,
    timeout: Duration,
    write: WriteOp,
}

#[derive(Debug, Clone)]
enum WriteOp {
    Coil(u16, bool),
    Register(u16, u16),
    Registers(u16, Vec<u16>),
}

impl std::fmt::Display for WriteOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteOp::Coil(address, on) => write!(f, "writing coil {address} = {on}"),
            WriteOp::Register(address, word) => {
                write!(f, "writing holding {address} = {word:#06x}")
            }
            WriteOp::Registers(address, words) => {
                write!(
                    f,
                    "writing holding {address}+{} = {words:04x?}",
                    words.len()
                )
            }
        }
    }
}

/// Configured actions by (device, name): names are unique per device, so one profile rule's
/// `action = "exhaust_fan_on"` can mean a different write on every cabinet.
fn resolve_actions(config: &ModbusConfig) -> HashMap<(DeviceKey, String), ResolvedAction> {
    let mut resolved = HashMap::new();
    for action in &config.actions {
        let Some(device) = config.action_devices(action).first().copied() else {
            warn!(action = %action.name, "Modbus action names no configured device, ignored");
            continue;
        };
        let Some(connection) = device.connection_key() else {
            continue;
        };
        let write = match action.value {
            ActionValue::Bool(on) => WriteOp::Coil(action.address, on),
            ActionValue::Number(value) => {
                match encode_value(value, action.effective_type(), action.order) {
                    Ok(words) if words.len() == 1 => WriteOp::Register(action.address, words[0]),
                    Ok(words) => WriteOp::Registers(action.address, words),
                    Err(reason) => {
                        warn!(action = %action.name, %reason, "Modbus action value cannot be encoded, ignored");
                        continue;
                    }
                }
            }
        };
        resolved.insert(
            (device.device_key(), action.name.clone()),
            ResolvedAction {
                name: action.name.clone(),
                device: device.device_key(),
                connection,
                unit: device.unit,
                timeout: device.timeout,
                write,
            },
        );
    }
    resolved
}

/// A resolved action on its way to the connection task that owns the device's line.
struct ConnectionWrite {
    action: ResolvedAction,
    reply: oneshot::Sender<Result<WriteReport, WriteError>>,
}

/// Routes write commands to the connection tasks; never waits on one connection, so a slow
/// line cannot hold up writes to another.
async fn dispatch_writes(
    mut writes: WriteCommands,
    actions: HashMap<(DeviceKey, String), ResolvedAction>,
    queues: HashMap<ConnectionKey, mpsc::Sender<ConnectionWrite>>,
    shutdown: CancellationToken,
) {
    loop {
        let command = tokio::select! {
            () = shutdown.cancelled() => return,
            command = writes.rx.recv() => match command {
                Some(command) => command,
                None => return,
            },
        };
        let action = match &command.device {
            Some(device) => actions.get(&(device.clone(), command.action.clone())),
            None => {
                // By name alone: only when exactly one device has an action of that name.
                let mut named = actions.values().filter(|a| a.name == command.action);
                match (named.next(), named.next()) {
                    (Some(action), None) => Some(action),
                    (Some(_), Some(_)) => {
                        let _ = command
                            .reply
                            .send(Err(WriteError::Ambiguous(command.action)));
                        continue;
                    }
                    _ => None,
                }
            }
        };
        let Some(action) = action else {
            let error = match command.device {
                Some(device) => WriteError::NotOnDevice {
                    action: command.action,
                    device,
                },
                None => WriteError::UnknownAction(command.action),
            };
            let _ = command.reply.send(Err(error));
            continue;
        };
        let Some(queue) = queues.get(&action.connection) else {
            let _ = command.reply.send(Err(WriteError::NotRunning));
            continue;
        };
        let write = ConnectionWrite {
            action: action.clone(),
            reply: command.reply,
        };
        match queue.try_send(write) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(write)) => {
                let _ = write.reply.send(Err(WriteError::Busy {
                    action: write.action.name,
                }));
            }
            Err(mpsc::error::TrySendError::Closed(write)) => {
                let _ = write.reply.send(Err(WriteError::NotRunning));
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct HealthPolicy {
    offline_after: u32,
    max_backoff: Duration,
}

/// One device's schedule and health inside its connection task.
struct DeviceState {
    config: ModbusDeviceConfig,
    key: DeviceKey,
    point_names: Vec<Arc<str>>,
    blocks: Vec<ReadBlock>,
    next_due: Instant,
    consecutive_failures: u32,
    /// `None` until the first status was reported.
    online: Option<bool>,
    last_decode_log: Option<Instant>,
}

impl DeviceState {
    /// Next due time after a good poll: keep the phase, skip cycles that are already past.
    fn schedule_after_success(&mut self, due: Instant, now: Instant) {
        let interval = self.config.interval;
        let mut next = due + interval;
        if next <= now {
            let behind = now.duration_since(due).as_nanos() / interval.as_nanos().max(1);
            let skip = u32::try_from(behind).unwrap_or(u32::MAX);
            next = due + interval.saturating_mul(skip.saturating_add(1));
        }
        self.next_due = next;
    }

    /// Back-off after a failed poll: one interval for the first failure, then doubling, capped
    /// at `max_backoff` (but never faster than the interval).
    fn schedule_after_failure(&mut self, now: Instant, max_backoff: Duration) {
        let doublings = self.consecutive_failures.saturating_sub(1).min(16);
        let delay = self
            .config
            .interval
            .saturating_mul(1 << doublings)
            .min(max_backoff.max(self.config.interval));
        self.next_due = now + delay;
    }
}

/// What one poll produced.
struct PollOutcome {
    readings: Vec<Reading>,
    failure: Option<RequestError>,
}

struct ConnectionTask {
    key: ConnectionKey,
    transport: Transport,
    /// Serial line settings (the same for every device on the line, checked by validate).
    line: (u32, Parity, u8, u8),
    devices: Vec<DeviceState>,
    context: Option<Context>,
    connected_once: bool,
    policy: HealthPolicy,
    limits: CoalesceLimits,
    stats: Arc<ModbusStats>,
    /// Write-back actions for devices on this connection, run between polls.
    writes: Option<mpsc::Receiver<ConnectionWrite>>,
}

impl ConnectionTask {
    fn new(
        key: ConnectionKey,
        devices: Vec<ModbusDeviceConfig>,
        limits: &CoalesceLimits,
        policy: HealthPolicy,
        stats: Arc<ModbusStats>,
    ) -> Self {
        let start = Instant::now();
        let transport = devices.first().map_or(Transport::Tcp, |d| d.transport);
        let line = devices.first().map_or((9600, Parity::N, 8, 1), |d| {
            (d.baud, d.parity, d.data_bits, d.stop_bits)
        });
        let count = u32::try_from(devices.len()).unwrap_or(u32::MAX).max(1);
        let devices = devices
            .into_iter()
            .enumerate()
            .map(|(i, config)| {
                // Spread the first polls of a connection over one interval, so a gateway's
                // units are not all due at the same instant.
                let spread = config.interval / count * u32::try_from(i).unwrap_or(0);
                DeviceState {
                    key: config.device_key(),
                    point_names: config
                        .points
                        .iter()
                        .map(|p| p.name.as_str().into())
                        .collect(),
                    blocks: plan_reads(&config.points, limits),
                    next_due: start + spread,
                    consecutive_failures: 0,
                    online: None,
                    last_decode_log: None,
                    config,
                }
            })
            .collect();
        Self {
            key,
            transport,
            line,
            devices,
            context: None,
            connected_once: false,
            policy,
            limits: *limits,
            stats,
            writes: None,
        }
    }

    async fn run(mut self, out: mpsc::Sender<IngestEvent>, shutdown: CancellationToken) {
        debug!(connection = %self.key, devices = self.devices.len(), "Modbus connection task started");
        loop {
            let Some((index, due)) = self
                .devices
                .iter()
                .enumerate()
                .min_by_key(|(_, d)| d.next_due)
                .map(|(i, d)| (i, d.next_due))
            else {
                return;
            };
            tokio::select! {
                // Writes first: an alarm's action should not wait behind routine polls.
                biased;
                () = shutdown.cancelled() => break,
                Some(write) = next_write(&mut self.writes) => {
                    let result = self.execute_write(&write.action).await;
                    let _ = write.reply.send(result);
                    continue;
                }
                () = sleep_until(due) => {}
            }
            let started = Instant::now();
            let lateness =
                u64::try_from(started.duration_since(due).as_millis()).unwrap_or(u64::MAX);
            self.stats.record_lateness(lateness);
            let ts_ms = now_ms();
            let outcome = tokio::select! {
                () = shutdown.cancelled() => break,
                outcome = self.poll_device(index, ts_ms) => outcome,
            };
            let events = self.account(index, due, outcome, ts_ms);
            for event in events {
                // Back-pressure: when the pipeline is full the poller waits here, and polls
                // late, rather than buffering readings without bound or dropping them.
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    sent = out.send(event) => if sent.is_err() {
                        debug!(connection = %self.key, "pipeline closed, Modbus connection task stops");
                        return;
                    }
                }
            }
        }
        if let Some(mut context) = self.context.take() {
            let _ = timeout(Duration::from_millis(200), context.disconnect()).await;
        }
        debug!(connection = %self.key, "Modbus connection task stopped");
    }

    /// Updates health and schedule after a poll, and returns the events to send.
    fn account(
        &mut self,
        index: usize,
        due: Instant,
        outcome: PollOutcome,
        ts_ms: i64,
    ) -> Vec<IngestEvent> {
        let policy = self.policy;
        let stats = self.stats.clone();
        let key = self.key.clone();
        let device = &mut self.devices[index];
        let mut events = Vec::with_capacity(2);
        ModbusStats::add(&stats.polls, 1);
        let now = Instant::now();
        match &outcome.failure {
            None => {
                if device.consecutive_failures > 0 {
                    info!(device = %device.key, failures = device.consecutive_failures, "Modbus device answers again");
                }
                device.consecutive_failures = 0;
                device.schedule_after_success(due, now);
                if device.online != Some(true) {
                    device.online = Some(true);
                    events.push(IngestEvent::Status {
                        device: device.key.clone(),
                        online: true,
                        ts_ms,
                    });
                }
            }
            Some(error) => {
                ModbusStats::add(&stats.failed_polls, 1);
                device.consecutive_failures = device.consecutive_failures.saturating_add(1);
                device.schedule_after_failure(now, policy.max_backoff);
                // Logged on the first failure of a streak and when it turns offline; the
                // counters carry the rest.
                if device.consecutive_failures == 1 {
                    warn!(device = %device.key, connection = %key, error = %error, "Modbus poll failed");
                } else {
                    debug!(device = %device.key, connection = %key, error = %error, failures = device.consecutive_failures, "Modbus poll failed again");
                }
                if device.consecutive_failures >= policy.offline_after
                    && device.online != Some(false)
                {
                    warn!(device = %device.key, connection = %key, failures = device.consecutive_failures, error = %error, "Modbus device offline");
                    device.online = Some(false);
                    events.push(IngestEvent::Status {
                        device: device.key.clone(),
                        online: false,
                        ts_ms,
                    });
                }
            }
        }
        if !outcome.readings.is_empty() {
            ModbusStats::add(
                &stats.readings,
                u64::try_from(outcome.readings.len()).unwrap_or(u64::MAX),
            );
            events.push(IngestEvent::Readings(outcome.readings));
        }
        events
    }

    /// One cycle of one device: every read block in turn. Readings of the blocks that
    /// answered are kept even when another block failed (the cycle still counts as failed).
    async fn poll_device(&mut self, index: usize, ts_ms: i64) -> PollOutcome {
        let mut readings = Vec::new();
        let mut failure = None;
        let mut decode_failures = 0usize;
        let mut block_index = 0;
        while block_index < self.devices[index].blocks.len() {
            let data = match self.read_with_retries(index, block_index).await {
                Ok(data) => data,
                Err(error) if self.split_refused_block(index, block_index, &error) => {
                    // Read the first of the smaller blocks now, in this same cycle.
                    continue;
                }
                Err(error) => {
                    let ends_cycle = error.ends_cycle();
                    failure = Some(error);
                    if ends_cycle {
                        break;
                    }
                    block_index += 1;
                    continue;
                }
            };
            let device = &mut self.devices[index];
            let block = &device.blocks[block_index];
            for &point_index in &block.points {
                let point = &device.config.points[point_index];
                match decode_point(point, block, &data) {
                    Ok(value) => readings.push(Reading {
                        sensor: SensorId {
                            school: device.key.school.clone(),
                            device: device.key.device.clone(),
                            point: device.point_names[point_index].clone(),
                        },
                        ts_ms,
                        value,
                        quality: Quality::Good,
                        source: Source::Modbus,
                    }),
                    Err(error) => {
                        decode_failures += 1;
                        ModbusStats::add(&self.stats.decode_errors, 1);
                        let now = Instant::now();
                        if device
                            .last_decode_log
                            .is_none_or(|at| now.duration_since(at) >= DECODE_LOG_PERIOD)
                        {
                            device.last_decode_log = Some(now);
                            warn!(device = %device.key, error = %error, "Modbus value cannot be decoded");
                        }
                    }
                }
            }
            block_index += 1;
        }
        if failure.is_none() && readings.is_empty() && decode_failures > 0 {
            failure = Some(RequestError::NothingDecoded);
        }
        PollOutcome { readings, failure }
    }

    /// Many devices answer "illegal data address" to a read that spans unmapped registers. When
    /// a read that bridges a gap is refused so, it is replaced for good by reads without gaps.
    /// Returns whether it did that.
    fn split_refused_block(
        &mut self,
        index: usize,
        block_index: usize,
        error: &RequestError,
    ) -> bool {
        let refused = matches!(
            error,
            RequestError::Exception { code, .. }
                if ExceptionCode::new(*code) == ExceptionCode::IllegalDataAddress
        );
        let device = &mut self.devices[index];
        let Some(block) = device.blocks.get(block_index) else {
            return false;
        };
        if !refused || !bridges_gap(block, &device.config.points) {
            return false;
        }
        let no_gaps = CoalesceLimits {
            max_register_gap: 0,
            max_bit_gap: 0,
            ..self.limits
        };
        let split = plan_reads_of(&device.config.points, block.points.clone(), &no_gaps);
        warn!(
            device = %device.key,
            table = block.table.as_str(),
            start = block.start,
            count = block.count,
            reads = split.len(),
            "Modbus device refuses a read across unused addresses; reading those points without gaps from now on"
        );
        device.blocks.splice(block_index..=block_index, split);
        true
    }

    async fn read_with_retries(
        &mut self,
        index: usize,
        block_index: usize,
    ) -> Result<BlockData, RequestError> {
        let (retries, pause, request_timeout) = {
            let config = &self.devices[index].config;
            (config.retries, config.pause, config.timeout)
        };
        let mut attempt = 0;
        loop {
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            match self.read_once(index, block_index).await {
                Ok(data) => return Ok(data),
                Err(error) if attempt < retries && error.is_transient() => {
                    attempt += 1;
                    debug!(device = %self.devices[index].key, error = %error, attempt, "Modbus request retried");
                    tokio::time::sleep(RETRY_DELAY.min(request_timeout)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn read_once(
        &mut self,
        index: usize,
        block_index: usize,
    ) -> Result<BlockData, RequestError> {
        let request_timeout = self.devices[index].config.timeout;
        let unit = self.devices[index].config.unit;
        let block = self.devices[index].blocks[block_index].clone();
        let stats = self.stats.clone();
        let context = self.connect(request_timeout).await?;
        context.set_slave(Slave(unit));
        ModbusStats::add(&stats.requests, 1);
        let request = format!(
            "reading {} {}+{} of unit {unit}",
            block.table.as_str(),
            block.start,
            block.count
        );
        match timeout(request_timeout, read_block(context, &block)).await {
            Err(_elapsed) => {
                ModbusStats::add(&stats.timeouts, 1);
                // A late answer would otherwise be read as the answer to the next request.
                self.context = None;
                Err(RequestError::Timeout {
                    request,
                    timeout: request_timeout,
                })
            }
            Ok(Err(source)) => {
                ModbusStats::add(&stats.transport_errors, 1);
                self.context = None;
                Err(RequestError::Transport { request, source })
            }
            Ok(Ok(Err(code))) => {
                ModbusStats::add(&stats.exceptions, 1);
                Err(RequestError::Exception {
                    request,
                    code: u8::from(code),
                })
            }
            Ok(Ok(Ok(data))) => {
                ModbusStats::add(&stats.responses, 1);
                Ok(data)
            }
        }
    }

    async fn execute_write(&mut self, action: &ResolvedAction) -> Result<WriteReport, WriteError> {
        let stats = self.stats.clone();
        let request = format!("{} of unit {}", action.write, action.unit);
        let result = match self.connect(action.timeout).await {
            Err(error) => Err(error),
            Ok(context) => {
                context.set_slave(Slave(action.unit));
                ModbusStats::add(&stats.requests, 1);
                let written = match &action.write {
                    WriteOp::Coil(address, on) => {
                        timeout(action.timeout, context.write_single_coil(*address, *on)).await
                    }
                    WriteOp::Register(address, word) => {
                        timeout(
                            action.timeout,
                            context.write_single_register(*address, *word),
                        )
                        .await
                    }
                    WriteOp::Registers(address, words) => {
                        timeout(
                            action.timeout,
                            context.write_multiple_registers(*address, words),
                        )
                        .await
                    }
                };
                match written {
                    Err(_elapsed) => {
                        ModbusStats::add(&stats.timeouts, 1);
                        self.context = None;
                        Err(RequestError::Timeout {
                            request: request.clone(),
                            timeout: action.timeout,
                        })
                    }
                    Ok(Err(source)) => {
                        ModbusStats::add(&stats.transport_errors, 1);
                        self.context = None;
                        Err(RequestError::Transport {
                            request: request.clone(),
                            source,
                        })
                    }
                    Ok(Ok(Err(code))) => {
                        ModbusStats::add(&stats.exceptions, 1);
                        Err(RequestError::Exception {
                            request: request.clone(),
                            code: u8::from(code),
                        })
                    }
                    Ok(Ok(Ok(()))) => {
                        ModbusStats::add(&stats.responses, 1);
                        Ok(())
                    }
                }
            }
        };
        match result {
            Ok(()) => {
                ModbusStats::add(&stats.writes, 1);
                let description = format!("{request} via {}", self.key);
                info!(action = %action.name, device = %action.device, %description, "Modbus write-back done");
                Ok(WriteReport {
                    action: action.name.clone(),
                    device: action.device.clone(),
                    description,
                })
            }
            Err(error) => {
                ModbusStats::add(&stats.failed_writes, 1);
                warn!(action = %action.name, device = %action.device, error = %error, "Modbus write-back failed");
                Err(WriteError::Failed {
                    action: action.name.clone(),
                    device: action.device.clone(),
                    error,
                })
            }
        }
    }

    /// The open context, connecting first if there is none.
    async fn connect(&mut self, connect_timeout: Duration) -> Result<&mut Context, RequestError> {
        if self.context.is_none() {
            let opened = timeout(
                connect_timeout,
                open(self.key.clone(), self.transport, self.line),
            )
            .await;
            let context = match opened {
                Err(_elapsed) => {
                    ModbusStats::add(&self.stats.timeouts, 1);
                    ModbusStats::add(&self.stats.connect_errors, 1);
                    return Err(RequestError::ConnectTimeout {
                        connection: self.key.clone(),
                        timeout: connect_timeout,
                    });
                }
                Ok(Err(error)) => {
                    ModbusStats::add(&self.stats.connect_errors, 1);
                    return Err(error);
                }
                Ok(Ok(context)) => context,
            };
            if self.connected_once {
                ModbusStats::add(&self.stats.reconnects, 1);
            }
            self.connected_once = true;
            debug!(connection = %self.key, transport = self.transport.as_str(), "Modbus connection opened");
            self.context = Some(context);
        }
        match self.context.as_mut() {
            Some(context) => Ok(context),
            // Just set above; kept as an error rather than a panic.
            None => Err(RequestError::Connect {
                connection: self.key.clone(),
                source: io::Error::other("connection vanished"),
            }),
        }
    }
}

/// Opens a new client context for the connection.
async fn open(
    key: ConnectionKey,
    transport: Transport,
    line: (u32, Parity, u8, u8),
) -> Result<Context, RequestError> {
    let connect_error = |source: io::Error| RequestError::Connect {
        connection: key.clone(),
        source,
    };
    match (&key, transport) {
        (ConnectionKey::Network(address), transport) => {
            let socket_address = tokio::net::lookup_host(address.as_str())
                .await
                .map_err(|source| RequestError::Resolve {
                    address: address.clone(),
                    source,
                })?
                .next()
                .ok_or_else(|| RequestError::Resolve {
                    address: address.clone(),
                    source: io::Error::new(io::ErrorKind::NotFound, "no address"),
                })?;
            let stream = tokio::net::TcpStream::connect(socket_address)
                .await
                .map_err(connect_error)?;
            // Requests are small and latency matters more than packet count.
            stream.set_nodelay(true).map_err(connect_error)?;
            Ok(if transport == Transport::RtuOverTcp {
                tokio_modbus::client::rtu::attach(stream)
            } else {
                tokio_modbus::client::tcp::attach(stream)
            })
        }
        (ConnectionKey::Serial(path), _) => {
            let (baud, parity, data_bits, stop_bits) = line;
            let builder = tokio_serial::new(path.as_str(), baud)
                .parity(match parity {
                    Parity::N => tokio_serial::Parity::None,
                    Parity::E => tokio_serial::Parity::Even,
                    Parity::O => tokio_serial::Parity::Odd,
                })
                .data_bits(match data_bits {
                    5 => tokio_serial::DataBits::Five,
                    6 => tokio_serial::DataBits::Six,
                    7 => tokio_serial::DataBits::Seven,
                    _ => tokio_serial::DataBits::Eight,
                })
                .stop_bits(if stop_bits == 2 {
                    tokio_serial::StopBits::Two
                } else {
                    tokio_serial::StopBits::One
                });
            let port = tokio_serial::SerialStream::open(&builder)
                .map_err(|e| connect_error(io::Error::other(e)))?;
            Ok(tokio_modbus::client::rtu::attach(port))
        }
    }
}

/// The next write for this connection; never resolves when it takes none.
async fn next_write(
    writes: &mut Option<mpsc::Receiver<ConnectionWrite>>,
) -> Option<ConnectionWrite> {
    match writes {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn read_block(context: &mut Context, block: &ReadBlock) -> tokio_modbus::Result<BlockData> {
    let (start, count) = (block.start, block.count);
    Ok(match block.table {
        Table::Coil => context.read_coils(start, count).await?.map(BlockData::Bits),
        Table::Discrete => context
            .read_discrete_inputs(start, count)
            .await?
            .map(BlockData::Bits),
        Table::Holding => context
            .read_holding_registers(start, count)
            .await?
            .map(BlockData::Words),
        Table::Input => context
            .read_input_registers(start, count)
            .await?
            .map(BlockData::Words),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::modbus::codec::{DataType, WordOrder};
    use crate::ingest::modbus::config::ModbusPointConfig;

    fn device(interval_ms: u64) -> DeviceState {
        let config = ModbusDeviceConfig {
            id: "d".into(),
            school: "s".into(),
            profile: None,
            building: None,
            room: None,
            name: None,
            transport: Transport::Tcp,
            address: Some("127.0.0.1:1".into()),
            serial: None,
            baud: 9600,
            parity: Parity::N,
            data_bits: 8,
            stop_bits: 1,
            unit: 1,
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_millis(100),
            retries: 0,
            pause: Duration::ZERO,
            points: vec![ModbusPointConfig {
                name: "p".into(),
                table: Table::Holding,
                address: 0,
                data_type: DataType::U16,
                order: WordOrder::ABCD,
                bit: None,
                scale: 1.0,
                offset: 0.0,
                unit: None,
            }],
        };
        DeviceState {
            key: config.device_key(),
            point_names: vec!["p".into()],
            blocks: Vec::new(),
            next_due: Instant::now(),
            consecutive_failures: 0,
            online: None,
            last_decode_log: None,
            config,
        }
    }

    #[test]
    fn a_good_poll_keeps_the_phase_and_skips_cycles_already_missed() {
        let mut d = device(1000);
        let due = Instant::now();
        d.schedule_after_success(due, due + Duration::from_millis(30));
        assert_eq!(d.next_due, due + Duration::from_millis(1000));
        // A poll that ran 2.5 intervals late does not try to catch up with a burst.
        d.schedule_after_success(due, due + Duration::from_millis(2500));
        assert_eq!(d.next_due, due + Duration::from_millis(3000));
    }

    #[test]
    fn failing_polls_back_off_by_doubling_up_to_the_cap() {
        let mut d = device(1000);
        let now = Instant::now();
        let mut delays = Vec::new();
        for _ in 0..7 {
            d.consecutive_failures += 1;
            d.schedule_after_failure(now, Duration::from_secs(30));
            delays.push((d.next_due - now).as_secs());
        }
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 30, 30]);
        // A cap below the interval never makes polling faster than the interval.
        d.schedule_after_failure(now, Duration::from_millis(10));
        assert_eq!(d.next_due - now, Duration::from_secs(1));
    }

    #[test]
    fn exception_names_follow_the_modbus_specification() {
        assert_eq!(exception_name(2), "illegal data address");
        assert_eq!(exception_name(6), "server device busy");
        assert_eq!(exception_name(0x42), "non-standard exception");
        let busy = RequestError::Exception {
            request: "reading holding 0+2 of unit 1".into(),
            code: 6,
        };
        assert!(busy.is_transient());
        assert!(!busy.ends_cycle());
        let timeout = RequestError::Timeout {
            request: "reading holding 0+2 of unit 1".into(),
            timeout: Duration::from_millis(5),
        };
        assert!(!timeout.is_transient());
        assert!(timeout.ends_cycle());
    }
}

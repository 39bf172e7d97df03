//! One connection task: owns a connection ([`Link`]) and polls the devices behind it in turn,
//! walking their schedules ([`DeviceState`]); between two polls it writes the actions queued
//! for its devices ([`super::write`]).
//!
//! Devices sharing a connection (several unit ids behind one gateway or on one RS-485 line)
//! are never polled concurrently. A device that times out gives up the rest of its cycle (so it
//! costs at most its timeout) and is backed off; devices on other connections run in other
//! tasks and are not affected at all. Transient errors (device busy, connection reset) are
//! retried within the cycle, up to the device's `retries`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_modbus::ExceptionCode;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::config::{ConnectionKey, ModbusDeviceConfig, Parity, Transport};
use super::error::RequestError;
use super::link::Link;
use super::registers::{bridges_gap, decode_point, plan_reads_of, BlockData, CoalesceLimits};
use super::schedule::{DeviceState, HealthPolicy, PollOutcome};
use super::stats::ModbusStats;
use super::write::{next_write, ConnectionWrite};
use crate::model::{now_ms, IngestEvent, Quality, Reading, SensorId, Source};

/// Wait before retrying a request that failed with a transient error (capped by the timeout).
const RETRY_DELAY: Duration = Duration::from_millis(100);
/// At most one decode-error log line per device in this period (the counter counts them all).
const DECODE_LOG_PERIOD: Duration = Duration::from_secs(60);

pub(crate) struct ConnectionTask {
    link: Link,
    devices: Vec<DeviceState>,
    policy: HealthPolicy,
    limits: CoalesceLimits,
    stats: Arc<ModbusStats>,
    /// Actions for devices on this connection, written between polls (`None`: no action).
    writes: Option<mpsc::Receiver<ConnectionWrite>>,
}

impl ConnectionTask {
    pub(crate) fn new(
        key: ConnectionKey,
        devices: Vec<ModbusDeviceConfig>,
        limits: &CoalesceLimits,
        policy: HealthPolicy,
        stats: Arc<ModbusStats>,
        writes: Option<mpsc::Receiver<ConnectionWrite>>,
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
                DeviceState::new(config, limits, start + spread)
            })
            .collect();
        Self {
            link: Link::new(key, transport, line, stats.clone()),
            devices,
            policy,
            limits: *limits,
            stats,
            writes,
        }
    }

    pub(crate) async fn run(mut self, out: mpsc::Sender<IngestEvent>, shutdown: CancellationToken) {
        debug!(connection = %self.link.key(), devices = self.devices.len(), "Modbus connection task started");
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
                    write.execute(&mut self.link, &self.stats).await;
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
            let events = self.devices[index].account(
                due,
                outcome,
                ts_ms,
                self.policy,
                &self.stats,
                self.link.key(),
            );
            for event in events {
                // Back-pressure: when the pipeline is full the poller waits here, and polls
                // late, rather than buffering readings without bound or dropping them.
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    sent = out.send(event) => if sent.is_err() {
                        debug!(connection = %self.link.key(), "pipeline closed, Modbus connection task stops");
                        return;
                    }
                }
            }
        }
        self.link.close().await;
        debug!(connection = %self.link.key(), "Modbus connection task stopped");
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
        let device = &self.devices[index];
        let (retries, pause, budget, unit) = (
            device.config.retries,
            device.config.pause,
            device.config.timeout,
            device.config.unit,
        );
        let block = device.blocks[block_index].clone();
        let mut attempt = 0;
        loop {
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            match self.link.read(unit, &block, budget).await {
                Ok(data) => return Ok(data),
                Err(error) if attempt < retries && error.is_transient() => {
                    attempt += 1;
                    debug!(device = %self.devices[index].key, error = %error, attempt, "Modbus request retried");
                    tokio::time::sleep(RETRY_DELAY.min(budget)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

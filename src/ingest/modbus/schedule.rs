//! One device's schedule and health inside its connection task: when it is due next (keeping
//! its phase after a good poll, backing off after failed ones) and when it turns offline or
//! online again. No I/O: the connection task ([`super::connection`]) polls, this decides.
//!
//! Health: after `offline_after` consecutive failed polls a device is reported
//! `IngestEvent::Status { online: false }`; its first good poll reports `online: true` (also
//! the very first success after start). A device that times out is backed off (interval
//! doubling up to `max_backoff`), so its neighbours on the line keep their pace.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::config::{ConnectionKey, ModbusDeviceConfig};
use super::error::RequestError;
use super::registers::{plan_reads, CoalesceLimits, ReadBlock};
use super::stats::ModbusStats;
use crate::model::{DeviceKey, IngestEvent, Reading};

/// When a device counts as offline, and how far a failing one is backed off.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HealthPolicy {
    pub(crate) offline_after: u32,
    pub(crate) max_backoff: Duration,
}

/// What one poll of a device produced: the readings of the blocks that answered, and why the
/// poll failed, if it did.
pub(crate) struct PollOutcome {
    pub(crate) readings: Vec<Reading>,
    pub(crate) failure: Option<RequestError>,
}

/// One device's schedule and health inside its connection task.
pub(crate) struct DeviceState {
    pub(crate) config: ModbusDeviceConfig,
    pub(crate) key: DeviceKey,
    pub(crate) point_names: Vec<Arc<str>>,
    /// The reads of one cycle (coalesced; split for good when the device refuses a gap).
    pub(crate) blocks: Vec<ReadBlock>,
    pub(crate) next_due: Instant,
    consecutive_failures: u32,
    /// `None` until the first status was reported.
    online: Option<bool>,
    pub(crate) last_decode_log: Option<Instant>,
}

impl DeviceState {
    /// A device first due at `first_due`, its reads planned with `limits`.
    pub(crate) fn new(
        config: ModbusDeviceConfig,
        limits: &CoalesceLimits,
        first_due: Instant,
    ) -> Self {
        Self {
            key: config.device_key(),
            point_names: config
                .points
                .iter()
                .map(|p| p.name.as_str().into())
                .collect(),
            blocks: plan_reads(&config.points, limits),
            next_due: first_due,
            consecutive_failures: 0,
            online: None,
            last_decode_log: None,
            config,
        }
    }

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

    /// Updates health and schedule after the poll that was `due`, and returns the events to
    /// send (a status change, the readings).
    pub(crate) fn account(
        &mut self,
        due: Instant,
        outcome: PollOutcome,
        ts_ms: i64,
        policy: HealthPolicy,
        stats: &ModbusStats,
        connection: &ConnectionKey,
    ) -> Vec<IngestEvent> {
        let mut events = Vec::with_capacity(2);
        ModbusStats::add(&stats.polls, 1);
        let now = Instant::now();
        match &outcome.failure {
            None => {
                if self.consecutive_failures > 0 {
                    info!(device = %self.key, failures = self.consecutive_failures, "Modbus device answers again");
                }
                self.consecutive_failures = 0;
                self.schedule_after_success(due, now);
                if self.online != Some(true) {
                    self.online = Some(true);
                    events.push(IngestEvent::Status {
                        device: self.key.clone(),
                        online: true,
                        ts_ms,
                    });
                }
            }
            Some(error) => {
                ModbusStats::add(&stats.failed_polls, 1);
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.schedule_after_failure(now, policy.max_backoff);
                // Logged on the first failure of a streak and when it turns offline; the
                // counters carry the rest.
                if self.consecutive_failures == 1 {
                    warn!(device = %self.key, connection = %connection, error = %error, "Modbus poll failed");
                } else {
                    debug!(device = %self.key, connection = %connection, error = %error, failures = self.consecutive_failures, "Modbus poll failed again");
                }
                if self.consecutive_failures >= policy.offline_after && self.online != Some(false) {
                    warn!(device = %self.key, connection = %connection, failures = self.consecutive_failures, error = %error, "Modbus device offline");
                    self.online = Some(false);
                    events.push(IngestEvent::Status {
                        device: self.key.clone(),
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::modbus::codec::{DataType, Table, WordOrder};
    use crate::ingest::modbus::config::{ModbusPointConfig, Parity, Transport};

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
        DeviceState::new(config, &CoalesceLimits::default(), Instant::now())
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
}

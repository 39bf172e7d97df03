//! Counters of the Modbus ingest and of the action writes it carries, rendered in `/metrics`
//! (`crate::metrics`). Low cardinality: no per-device labels.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of the Modbus ingest, rendered in `/metrics`. Low cardinality: no per-device labels.
#[derive(Debug, Default)]
pub struct ModbusStats {
    /// Requests sent (reads of polls, and the writes of actions).
    pub requests: AtomicU64,
    /// Normal (non-exception) responses received.
    pub responses: AtomicU64,
    /// Requests or connects that ran out of their timeout.
    pub timeouts: AtomicU64,
    /// Modbus exception responses (illegal address, device busy, ...).
    pub exceptions: AtomicU64,
    /// Points whose registers could not be turned into a value (NaN, short response).
    pub decode_errors: AtomicU64,
    /// Connections (re)opened after the first one of a connection task.
    pub reconnects: AtomicU64,
    /// Failed connection attempts (refused, unreachable, serial port missing).
    pub connect_errors: AtomicU64,
    /// Transport and protocol errors other than timeouts (connection reset, mismatched reply).
    pub transport_errors: AtomicU64,
    /// Readings sent to the pipeline.
    pub readings: AtomicU64,
    /// Action writes done, and failed.
    pub writes: AtomicU64,
    pub failed_writes: AtomicU64,
    /// Poll cycles of one device, and those of them that failed.
    pub polls: AtomicU64,
    pub failed_polls: AtomicU64,
    /// Largest lateness of a poll cycle start behind its schedule, in milliseconds.
    pub max_lateness_ms: AtomicU64,
    /// Poll cycles by lateness: `lateness_buckets[i]` counts cycles that started at most
    /// `LATENESS_BUCKETS_MS[i]` ms late (not cumulative); the last one counts the rest.
    pub lateness_buckets: [AtomicU64; LATENESS_BUCKETS_MS.len() + 1],
}

/// Upper bounds (ms) of the poll-cycle lateness histogram.
pub const LATENESS_BUCKETS_MS: [u64; 12] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];

/// A plain copy of [`ModbusStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ModbusStatsSnapshot {
    pub requests: u64,
    pub responses: u64,
    pub timeouts: u64,
    pub exceptions: u64,
    pub decode_errors: u64,
    pub reconnects: u64,
    pub connect_errors: u64,
    pub transport_errors: u64,
    pub readings: u64,
    pub writes: u64,
    pub failed_writes: u64,
    pub polls: u64,
    pub failed_polls: u64,
    pub max_lateness_ms: u64,
    pub lateness_buckets: [u64; LATENESS_BUCKETS_MS.len() + 1],
}

impl ModbusStatsSnapshot {
    /// Upper bound (ms) of the bucket holding quantile `q` (0..=1) of poll-cycle lateness;
    /// `None` without cycles, `u64::MAX` when it is beyond the last bucket.
    pub fn lateness_quantile_ms(&self, q: f64) -> Option<u64> {
        let total: u64 = self.lateness_buckets.iter().sum();
        if total == 0 {
            return None;
        }
        // Rounded up so that q = 0.99 of 100 cycles is the 99th.
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, count) in self.lateness_buckets.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(LATENESS_BUCKETS_MS.get(i).copied().unwrap_or(u64::MAX));
            }
        }
        Some(u64::MAX)
    }
}

impl ModbusStats {
    pub fn snapshot(&self) -> ModbusStatsSnapshot {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ModbusStatsSnapshot {
            requests: get(&self.requests),
            responses: get(&self.responses),
            timeouts: get(&self.timeouts),
            exceptions: get(&self.exceptions),
            decode_errors: get(&self.decode_errors),
            reconnects: get(&self.reconnects),
            connect_errors: get(&self.connect_errors),
            transport_errors: get(&self.transport_errors),
            readings: get(&self.readings),
            writes: get(&self.writes),
            failed_writes: get(&self.failed_writes),
            polls: get(&self.polls),
            failed_polls: get(&self.failed_polls),
            max_lateness_ms: get(&self.max_lateness_ms),
            lateness_buckets: std::array::from_fn(|i| get(&self.lateness_buckets[i])),
        }
    }

    pub(crate) fn record_lateness(&self, lateness_ms: u64) {
        self.max_lateness_ms
            .fetch_max(lateness_ms, Ordering::Relaxed);
        let bucket = LATENESS_BUCKETS_MS
            .iter()
            .position(|&bound| lateness_ms <= bound)
            .unwrap_or(LATENESS_BUCKETS_MS.len());
        Self::add(&self.lateness_buckets[bucket], 1);
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

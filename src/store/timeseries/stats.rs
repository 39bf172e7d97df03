//! The sink's counters and gauges, shared with `/metrics`. In a file of their own that imports
//! nothing above the store, so `metrics` can import them without a loop through the sink's task.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::model::now_ms;

use super::spool::Spool;

/// Counters and gauges of the sink, shared with `/metrics`.
#[derive(Debug, Default)]
pub struct TimeseriesStats {
    pub lines_written: AtomicU64,
    pub batches_ok: AtomicU64,
    /// Write attempts that failed and will be retried (store down, 5xx, 429, timeout).
    pub batches_failed: AtomicU64,
    /// Batches the store refused as bad data (4xx), moved aside.
    pub batches_rejected: AtomicU64,
    pub lines_rejected: AtomicU64,
    /// Readings that cannot be written as line protocol (non-finite number, bad measurement).
    pub lines_unencodable: AtomicU64,
    /// Batches written from the spool.
    pub batches_replayed: AtomicU64,
    pub spool_bytes: AtomicU64,
    pub spool_lines: AtomicU64,
    /// Unix ms at which the oldest batch still in the spool was spooled; 0 when empty.
    pub oldest_spooled_ms: AtomicI64,
    /// Lines lost: dropped for room (`drop_oldest`), unspoolable, or damaged on disk.
    pub dropped_lines: AtomicU64,
}

/// A plain copy of [`TimeseriesStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeseriesSnapshot {
    pub lines_written: u64,
    pub batches_ok: u64,
    pub batches_failed: u64,
    pub batches_rejected: u64,
    pub lines_rejected: u64,
    pub lines_unencodable: u64,
    pub batches_replayed: u64,
    pub spool_bytes: u64,
    pub spool_lines: u64,
    /// Age of the oldest spooled batch; `None` when the spool is empty.
    pub oldest_spooled_age: Option<Duration>,
    pub dropped_lines: u64,
}

impl TimeseriesStats {
    pub fn snapshot(&self) -> TimeseriesSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let oldest = self.oldest_spooled_ms.load(Ordering::Relaxed);
        TimeseriesSnapshot {
            lines_written: get(&self.lines_written),
            batches_ok: get(&self.batches_ok),
            batches_failed: get(&self.batches_failed),
            batches_rejected: get(&self.batches_rejected),
            lines_rejected: get(&self.lines_rejected),
            lines_unencodable: get(&self.lines_unencodable),
            batches_replayed: get(&self.batches_replayed),
            spool_bytes: get(&self.spool_bytes),
            spool_lines: get(&self.spool_lines),
            oldest_spooled_age: (oldest != 0).then(|| {
                Duration::from_millis(u64::try_from(now_ms().saturating_sub(oldest)).unwrap_or(0))
            }),
            dropped_lines: get(&self.dropped_lines),
        }
    }

    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn publish_spool(&self, spool: &Spool) {
        self.spool_bytes.store(spool.bytes(), Ordering::Relaxed);
        self.spool_lines.store(spool.lines(), Ordering::Relaxed);
        self.oldest_spooled_ms
            .store(spool.oldest_spooled_ms().unwrap_or(0), Ordering::Relaxed);
    }
}

//! Modbus ingest: polls Modbus TCP, RTU and RTU-over-TCP devices and turns their registers into
//! [`Reading`](crate::model::Reading)s with `source = modbus`.
//!
//! ```text
//! [modbus] config ──► config::validate ──► poller::run ──(one task per connection)──►
//!     registers::plan_reads (coalesced reads) ──► tokio-modbus ──► registers::decode_point
//!     ──► IngestEvent::Readings / IngestEvent::Status ──► pipeline (bounded channel)
//! ```
//!
//! - [`config`]: the `[modbus]` section and its validation.
//! - [`registers`]: coalescing points into reads, decoding bits and registers.
//! - [`poller`]: connection tasks, timeouts, back-off, device health.

pub mod config;
pub mod poller;
pub mod registers;

use std::sync::atomic::{AtomicU64, Ordering};

pub use config::{
    ConnectionKey, DataType, ModbusConfig, ModbusDeviceConfig, ModbusPointConfig, Parity, Table,
    Transport, WordOrder,
};
pub use poller::run;

/// Counters of the Modbus ingest, rendered in `/metrics`. Low cardinality: no per-device labels.
#[derive(Debug, Default)]
pub struct ModbusStats {
    /// Read requests sent.
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
    /// Poll cycles of one device, and those of them that failed.
    pub polls: AtomicU64,
    pub failed_polls: AtomicU64,
    /// Largest lateness of a poll cycle start behind its schedule, in milliseconds.
    pub max_lateness_ms: AtomicU64,
}

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
    pub polls: u64,
    pub failed_polls: u64,
    pub max_lateness_ms: u64,
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
            polls: get(&self.polls),
            failed_polls: get(&self.failed_polls),
            max_lateness_ms: get(&self.max_lateness_ms),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

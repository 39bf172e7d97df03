//! Modbus ingest: polls Modbus TCP, RTU and RTU-over-TCP devices and turns their registers into
//! [`Reading`](crate::model::Reading)s with `source = modbus`; it is also the transport of the
//! gateway's actions (`crate::actions`), writing a device's `[[modbus.actions]]` entry between
//! two polls.
//!
//! ```text
//! [modbus] config ──► config::validate ──► poller::run ──(one task per connection)──►
//!     connection: schedule (due times, health) ──► registers::plan_reads (coalesced reads)
//!     ──► link (tokio-modbus, timeouts) ──► registers::decode_point
//!     ──► IngestEvent::Readings / IngestEvent::Status ──► pipeline (bounded channel)
//! actions ──WriteHandle::write──► write::dispatch ──► the device's connection task (between polls)
//! ```
//!
//! The files, bottom up (each imports only the ones above it):
//! - [`codec`]: tables, value types, word orders; numbers ⇄ registers.
//! - [`config`]: the `[modbus]` section and its validation.
//! - [`registers`]: coalescing points into reads, decoding bits and registers.
//! - [`stats`]: the counters rendered in `/metrics`.
//! - `error`: why a request failed, and whether to retry it.
//! - `link`: one connection and one request on it (connect, timeout, reconnect).
//! - `write`: the write handle of actions, their dispatch and execution.
//! - `schedule`: one device's due times, back-off and health.
//! - `connection`: one task per connection: polls, retries, writes between polls.
//! - `poller`: [`run`] groups devices by connection and starts the tasks.
//!
//! How the gateway wires it in (`start` in `lib.rs`): `config/` runs
//! [`ModbusConfig::validate`] with the other checks at load; `crate::actions::start` creates the
//! write channel ([`write_channel`]) when `[[modbus.actions]]` exist; `start_modbus` in `lib.rs`
//! spawns [`run`] with the ingest sender, the [`ModbusStats`] that `/metrics` renders and the
//! write commands; the pipeline core registers each Modbus device (profile, building, room)
//! like a `[[devices]]` entry.
//!
//! Health and faults: a poll fails on a timeout, a refused or failed connection, or an
//! exception answer; a point that does not decode (NaN, short answer) is counted and left out,
//! and a poll where no point decodes fails too. After `offline_after` failed polls in a row
//! the device is reported offline (the gateway's `fault` alarm); its next good poll reports it
//! online.

pub mod codec;
pub mod config;
mod connection;
mod error;
mod link;
mod poller;
pub mod registers;
mod schedule;
pub mod stats;
mod write;

pub use codec::{DataType, Table, WordOrder};
pub use config::{
    ActionValue, ConnectionKey, ModbusActionConfig, ModbusConfig, ModbusDeviceConfig,
    ModbusPointConfig, Parity, Transport,
};
pub use error::{exception_name, RequestError};
pub use poller::run;
pub use stats::{ModbusStats, ModbusStatsSnapshot, LATENESS_BUCKETS_MS};
pub use write::{write_channel, WriteCommands, WriteError, WriteHandle, WriteReport};

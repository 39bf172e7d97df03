//! Stores: the embedded local store (SQLite: rolling history of readings, alarms and their
//! journal) that the API and console read, and the time-series sink (InfluxDB v2 / v1 with a
//! disk spool) that keeps every reading for the long term.

pub mod alarm_history;
pub mod backup;
mod commissioned;
mod config;
mod devices;
mod drills;
pub mod duty;
pub mod history;
pub mod local;
pub mod outbox;
pub mod timeseries;

pub use alarm_history::{AlarmFilter, AlarmPage, HistoryCursor, HistoryRow};
pub use commissioned::{CommissionedDevice, DeviceAudit};
pub use config::StorageConfig;
pub use duty::{DutyEvent, Shift};
pub use history::HistoryPoint;
pub use local::{start_history, JournalEntry, LocalStore, StoreError};
pub use outbox::{OutboxEntry, OutboxReader};

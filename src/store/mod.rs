//! Stores: the embedded local store (SQLite: rolling history of readings, alarms and their
//! journal) that the API and console read.

mod config;
pub mod local;

pub use config::StorageConfig;
pub use local::{HistoryPoint, JournalEntry, LocalStore, StoreError};

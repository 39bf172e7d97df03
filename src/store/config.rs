//! `[storage]`: the data directory and the local history.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Everything the gateway keeps on disk lives here (SQLite file, spool, attachments).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// How long readings stay in the local history (the time-series store keeps them longer).
    #[serde(default = "default_retention", with = "humantime_serde")]
    pub history_retention: Duration,
    /// Readings written per transaction, at most. The writer commits whenever its queue runs
    /// empty (group commit), so this only bounds a transaction under load.
    #[serde(default = "default_batch")]
    pub history_batch_size: usize,
    /// How often readings older than the retention are deleted.
    #[serde(default = "default_prune", with = "humantime_serde")]
    pub prune_interval: Duration,
    /// Free bytes the data directory's filesystem keeps for the journal and history: below it,
    /// attachment uploads answer 507 (0: no floor).
    #[serde(default = "default_min_free_bytes")]
    pub min_free_bytes: u64,
    /// How long cleared alarms and their journal are kept (the control room's record).
    #[serde(default = "default_alarm_retention", with = "humantime_serde")]
    pub alarm_retention: Duration,
    /// The newest this many alarms are kept whatever their age.
    #[serde(default = "default_alarm_keep")]
    pub alarm_retention_min_count: u64,
}

fn default_min_free_bytes() -> u64 {
    256 << 20
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}
fn default_retention() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
/// A transaction of readings is held in memory while it is written.
const MAX_HISTORY_BATCH: usize = 1_000_000;

fn default_batch() -> usize {
    50_000
}
fn default_prune() -> Duration {
    Duration::from_secs(600)
}
/// A year and a day: last year's same-day alarms are still there on its anniversary.
fn default_alarm_retention() -> Duration {
    Duration::from_secs(366 * 24 * 3600)
}
fn default_alarm_keep() -> u64 {
    1_000_000
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            history_retention: default_retention(),
            history_batch_size: default_batch(),
            prune_interval: default_prune(),
            min_free_bytes: default_min_free_bytes(),
            alarm_retention: default_alarm_retention(),
            alarm_retention_min_count: default_alarm_keep(),
        }
    }
}

impl StorageConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.data_dir.as_os_str().is_empty() {
            problems.push("storage.data_dir must not be empty".into());
        }
        if !(1..=MAX_HISTORY_BATCH).contains(&self.history_batch_size) {
            problems.push(format!(
                "storage.history_batch_size must be between 1 and {MAX_HISTORY_BATCH}"
            ));
        }
        if self.prune_interval.is_zero() {
            problems.push("storage intervals must be greater than 0".into());
        }
        if self.history_retention < Duration::from_secs(60) {
            problems.push("storage.history_retention must be at least 1 minute".into());
        }
        // A duty record shorter than a month is no record; GB 25506 asks for a year.
        if self.alarm_retention < Duration::from_secs(30 * 24 * 3600) {
            problems.push("storage.alarm_retention must be at least 30 days".into());
        }
        problems
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("campusguard.db")
    }

    /// The local history of readings has its own file, so alarm journal writes never wait for
    /// history writes.
    pub fn history_path(&self) -> PathBuf {
        self.data_dir.join("history.db")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alarm_record_is_kept_a_year_by_default_and_never_less_than_30_days() {
        let config = StorageConfig::default();
        assert!(config.alarm_retention >= Duration::from_secs(365 * 24 * 3600));
        assert_eq!(config.alarm_retention_min_count, 1_000_000);
        assert!(config.validate().is_empty());
        let short = StorageConfig {
            alarm_retention: Duration::from_secs(29 * 24 * 3600),
            ..StorageConfig::default()
        };
        assert!(short
            .validate()
            .iter()
            .any(|p| p.contains("storage.alarm_retention")));
        let parsed: StorageConfig =
            toml::from_str("alarm_retention = \"400d\"\nalarm_retention_min_count = 5")
                .unwrap_or_default();
        assert_eq!(parsed.alarm_retention, Duration::from_secs(400 * 24 * 3600));
        assert_eq!(parsed.alarm_retention_min_count, 5);
    }
}

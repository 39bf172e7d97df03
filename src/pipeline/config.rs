//! `[pipeline]` and `[[devices]]`: the bounds of the core's channels and registry, and the
//! devices registered in config. [`CoreConfig`] is the slice of the whole configuration the
//! core runs on; `lib.rs` builds it, so the core never sees the rest.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::ingest::modbus::ModbusConfig;
use crate::rules::{ProfileSet, RuleOverride};

/// `[pipeline]`: the channels between stages. Every one is bounded.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Ingest → core channel, in messages (a message holds one device's readings). When full,
    /// ingest waits (back-pressure to the broker / Modbus poller); nothing is dropped.
    #[serde(default = "default_ingest_capacity")]
    pub ingest_capacity: usize,
    /// Core → local-history writer, in batches (one per core round, up to a few thousand
    /// readings each). When full, the core waits. Small: the writer takes what is queued into
    /// one transaction anyway, and a deep queue only holds memory under overload.
    #[serde(default = "default_history_capacity")]
    pub history_capacity: usize,
    /// Devices that are neither configured nor announced are tracked for commissioning up to
    /// this many; beyond it their readings are still counted and stored, but not listed.
    #[serde(default = "default_max_unregistered")]
    pub max_unregistered_devices: usize,
    /// Distinct points an unregistered (listed) device may have; readings of a further point
    /// are refused and counted (`rejected{reason="too_many_points"}`), so a device that invents
    /// point names cannot grow the live cache, the history or the time-series store.
    #[serde(default = "default_max_unregistered_points")]
    pub max_points_per_unregistered_device: usize,
}

fn default_max_unregistered() -> usize {
    10_000
}
fn default_max_unregistered_points() -> usize {
    64
}

fn default_ingest_capacity() -> usize {
    4096
}
fn default_history_capacity() -> usize {
    32
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            ingest_capacity: default_ingest_capacity(),
            history_capacity: default_history_capacity(),
            max_unregistered_devices: default_max_unregistered(),
            max_points_per_unregistered_device: default_max_unregistered_points(),
        }
    }
}

impl PipelineConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.ingest_capacity == 0 || self.history_capacity == 0 {
            problems.push("pipeline: channel capacities must be at least 1".into());
        }
        if self.max_points_per_unregistered_device == 0 {
            problems.push("pipeline.max_points_per_unregistered_device must be at least 1".into());
        }
        problems
    }
}

/// `[[devices]]`: a device registered in config. Config wins over what the device announces in
/// its `meta`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    pub id: String,
    pub school: String,
    pub profile: String,
    #[serde(default)]
    pub building: Option<String>,
    #[serde(default)]
    pub room: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// Per-rule overrides, e.g. `overrides.heat_fixed = { alarm = 50.0 }`.
    #[serde(default)]
    pub overrides: BTreeMap<String, RuleOverride>,
}

/// What the core runs on: its slice of the configuration, validated at load.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Device profiles (built-in and the site's) with their rules.
    pub profiles: Arc<ProfileSet>,
    /// `[[devices]]`.
    pub devices: Vec<DeviceConfig>,
    /// `pipeline.max_unregistered_devices`.
    pub max_unregistered_devices: usize,
    /// `pipeline.max_points_per_unregistered_device`.
    pub max_unregistered_points: usize,
    /// `rules.tick`: how often on-delays, staleness, shelve and drill expiry are evaluated.
    pub tick: Duration,
    /// `[modbus]`: its devices are registered like `[[devices]]`.
    pub modbus: ModbusConfig,
}

//! Commissioning from the console: the core registers a device with its profile, place and
//! threshold overrides the moment the API asks (the next reading is judged by them, no
//! restart), or forgets it. A device in the config file is read-only here. The API stores the
//! change (and its audit) once the core has taken it; at start the core registers the stored
//! devices again ([`Commission::from_stored`]).

use std::collections::BTreeMap;

use tokio::time::Instant;
use tracing::info;

use super::{Core, DeviceEntry};
use crate::model::{now_ms, DeviceInfo, DeviceKey};
use crate::rules::config::RuleOverride;
use crate::store::CommissionedDevice;

/// A device to register: what it is (the profile is required) and its overrides.
#[derive(Debug, Clone)]
pub struct Commission {
    pub device: DeviceKey,
    pub info: DeviceInfo,
    pub overrides: BTreeMap<String, RuleOverride>,
}

impl Commission {
    /// The stored form back into a change (overrides as stored JSON).
    pub fn from_stored(
        device: DeviceKey,
        stored: &CommissionedDevice,
    ) -> Result<Self, CommissionError> {
        Ok(Self {
            device,
            info: stored.info.clone(),
            overrides: parse_overrides(&stored.overrides)?,
        })
    }
}

/// Overrides as the API and the store spell them: `{"<rule id>": {"alarm": 45.0, …}}`.
pub fn parse_overrides(
    value: &serde_json::Value,
) -> Result<BTreeMap<String, RuleOverride>, CommissionError> {
    serde_json::from_value(value.clone())
        .map_err(|e| CommissionError::Invalid(format!("overrides: {e}")))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommissionError {
    #[error("device {0} is defined in the config file and is read-only in the console")]
    ReadOnly(DeviceKey),
    #[error("device {0} is not commissioned from the console")]
    NotCommissioned(DeviceKey),
    #[error("{0}")]
    Invalid(String),
}

impl Core {
    /// Registers `change` with the rules engine and the registry. Conditions the new profile
    /// or overrides no longer have are cleared (by the next flush).
    pub(super) fn commission(
        &mut self,
        change: Commission,
    ) -> Result<DeviceEntry, CommissionError> {
        let Commission {
            device,
            info,
            overrides,
        } = change;
        if self.registry.is_configured(&device) {
            return Err(CommissionError::ReadOnly(device));
        }
        let profile = info
            .profile
            .clone()
            .ok_or_else(|| CommissionError::Invalid("a device needs a profile".into()))?;
        let profiles = self.engine.profiles().clone();
        if profiles.profile(&profile).is_none() {
            return Err(CommissionError::Invalid(format!(
                "unknown profile `{profile}`"
            )));
        }
        let problems = profiles.validate_overrides(&profile, &overrides);
        if !problems.is_empty() {
            return Err(CommissionError::Invalid(problems.join("; ")));
        }
        self.engine
            .register_device_emitting(
                &device,
                &profile,
                &overrides,
                Instant::now(),
                now_ms(),
                &mut self.changes,
            )
            .map_err(|e| CommissionError::Invalid(e.to_string()))?;
        self.registry.commission(&device, info);
        self.apply_changes();
        // Alarms restored at start for this device can be tracked now.
        let engine = &mut self.engine;
        self.pending_restore.retain(|(sensor, rule, severity)| {
            sensor.device_key() != device || !engine.restore_condition(sensor, rule, *severity)
        });
        info!(device = %device, profile = %profile, "device commissioned");
        self.registry
            .entry_of(&device)
            .cloned()
            .ok_or(CommissionError::NotCommissioned(device))
    }

    /// Forgets a commissioned device: its open conditions clear, its readings are unregistered.
    pub(super) fn decommission(&mut self, device: &DeviceKey) -> Result<(), CommissionError> {
        if self.registry.is_configured(device) {
            return Err(CommissionError::ReadOnly(device.clone()));
        }
        self.engine
            .remove_device(device, now_ms(), &mut self.changes);
        self.apply_changes();
        self.registry.remove(device);
        info!(device = %device, "device decommissioned");
        Ok(())
    }
}

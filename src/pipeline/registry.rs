//! The device registry and live cache, owned by the core: which devices exist (configured,
//! announced by meta, or only heard from), their status, and the last value of every sensor.

use std::sync::Arc;

use serde::Serialize;

use super::config::DeviceConfig;
use crate::model::{
    DeviceInfo, DeviceKey, FastMap, Quality, Reading, SensorId, Source, TaggedReading, Value,
};

/// How the gateway knows a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Registration {
    /// In `[[devices]]` (wins over meta).
    Config,
    /// Announced by retained `meta` with a known profile.
    Meta,
    /// Commissioned from the console (stored in the local store; wins over meta).
    Console,
    /// Only heard from: listed for commissioning, no rules apply.
    Unregistered,
}

/// A device as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceEntry {
    pub device: DeviceKey,
    pub school: String,
    pub id: String,
    pub registration: Registration,
    #[serde(flatten)]
    pub info: DeviceInfo,
    /// From the device's `status` (or the Modbus poller); `None` until it says.
    pub online: Option<bool>,
    pub last_seen_ms: Option<i64>,
    pub readings: u64,
    pub source: Option<Source>,
    /// Time-series tags, kept as shared strings so tagging a reading never allocates.
    #[serde(skip)]
    pub tags: DeviceTags,
    /// Distinct points in the live cache (bounded for unregistered devices).
    #[serde(skip)]
    points: usize,
}

/// Measurement (the profile, `unknown` when there is none), building and room.
#[derive(Debug, Clone)]
pub struct DeviceTags {
    pub profile: Arc<str>,
    pub building: Arc<str>,
    pub room: Arc<str>,
}

impl Default for DeviceTags {
    fn default() -> Self {
        Self::from_info(&DeviceInfo::default())
    }
}

impl DeviceTags {
    fn from_info(info: &DeviceInfo) -> Self {
        Self {
            profile: info.profile.as_deref().unwrap_or("unknown").into(),
            building: info.building.as_deref().unwrap_or("").into(),
            room: info.room.as_deref().unwrap_or("").into(),
        }
    }
}

/// The last value of a sensor.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LiveValue {
    pub value: Value,
    pub ts: i64,
    pub quality: Quality,
    pub source: Source,
}

/// At most this many devices are tracked in all (configured, announced, heard from); a meta
/// flood beyond it is refused (counted as `bad_meta`), so memory stays bounded.
pub const MAX_DEVICES: usize = 100_000;

pub struct Registry {
    devices: FastMap<DeviceKey, DeviceEntry>,
    live: FastMap<SensorId, LiveValue>,
    unregistered: usize,
    max_unregistered: usize,
    /// Distinct points an unregistered device may have in the live cache.
    max_unregistered_points: usize,
}

impl Registry {
    pub fn new(max_unregistered: usize, max_unregistered_points: usize) -> Self {
        Self {
            devices: FastMap::default(),
            live: FastMap::default(),
            unregistered: 0,
            max_unregistered,
            max_unregistered_points,
        }
    }

    /// Whether a reading of `sensor` may be taken: always, except a new point of an
    /// unregistered device that already has its maximum number of points.
    pub fn admits_point(&self, sensor: &SensorId) -> bool {
        let Some(entry) = self.devices.get(&sensor.device_key()) else {
            return true;
        };
        entry.registration != Registration::Unregistered
            || entry.points < self.max_unregistered_points
            || self.live.contains_key(sensor)
    }

    fn entry(key: DeviceKey, registration: Registration, info: DeviceInfo) -> DeviceEntry {
        DeviceEntry {
            school: key.school.to_string(),
            id: key.device.to_string(),
            device: key,
            registration,
            online: None,
            last_seen_ms: None,
            readings: 0,
            source: None,
            tags: DeviceTags::from_info(&info),
            info,
            points: 0,
        }
    }

    pub fn register_config(&mut self, key: DeviceKey, device: &DeviceConfig) {
        let info = DeviceInfo {
            profile: Some(device.profile.clone()),
            building: device.building.clone(),
            room: device.room.clone(),
            name: device.name.clone(),
        };
        self.register_configured(key, info);
    }

    /// A device the config defines (`[[devices]]` or `[[modbus.devices]]`).
    pub fn register_configured(&mut self, key: DeviceKey, info: DeviceInfo) {
        self.devices
            .insert(key.clone(), Self::entry(key, Registration::Config, info));
    }

    /// A device commissioned from the console: registered with `info`, whatever it was.
    pub fn commission(&mut self, key: &DeviceKey, info: DeviceInfo) {
        match self.devices.get_mut(key) {
            Some(entry) => {
                if entry.registration == Registration::Unregistered {
                    self.unregistered = self.unregistered.saturating_sub(1);
                }
                entry.registration = Registration::Console;
                entry.tags = DeviceTags::from_info(&info);
                entry.info = info;
            }
            None => {
                self.devices.insert(
                    key.clone(),
                    Self::entry(key.clone(), Registration::Console, info),
                );
            }
        }
    }

    /// A decommissioned device is forgotten (its live values too); if it reports again it is
    /// listed as unregistered.
    pub fn remove(&mut self, key: &DeviceKey) {
        if let Some(entry) = self.devices.remove(key) {
            if entry.registration == Registration::Unregistered {
                self.unregistered = self.unregistered.saturating_sub(1);
            }
            self.live
                .retain(|sensor, _| *sensor.school != *key.school || *sensor.device != *key.device);
        }
    }

    /// The entry of a device, if known.
    pub fn entry_of(&self, key: &DeviceKey) -> Option<&DeviceEntry> {
        self.devices.get(key)
    }

    /// Records a meta announcement. Returns the profile to register with the rules engine, or
    /// `None` when config or the console already owns the device or the meta names no profile.
    pub fn meta(&mut self, key: &DeviceKey, info: DeviceInfo) -> Option<String> {
        if let Some(entry) = self.devices.get_mut(key) {
            if matches!(
                entry.registration,
                Registration::Config | Registration::Console
            ) {
                return None;
            }
            if entry.registration == Registration::Unregistered && info.profile.is_some() {
                self.unregistered = self.unregistered.saturating_sub(1);
                entry.registration = Registration::Meta;
            }
            entry.tags = DeviceTags::from_info(&info);
            entry.info = info;
            return entry.info.profile.clone();
        }
        let profile = info.profile.clone()?;
        // Announcements come from the network: bound how many devices they can create.
        if self.devices.len() >= MAX_DEVICES {
            return None;
        }
        self.devices.insert(
            key.clone(),
            Self::entry(key.clone(), Registration::Meta, info),
        );
        Some(profile)
    }

    /// What is known of a device (from config or meta).
    pub fn info(&self, key: &DeviceKey) -> Option<&DeviceInfo> {
        self.devices.get(key).map(|entry| &entry.info)
    }

    /// The building a device is in (from config or meta), if known.
    pub fn building(&self, key: &DeviceKey) -> Option<&str> {
        self.devices.get(key)?.info.building.as_deref()
    }

    /// Whether config or the console owns the device (its meta changes nothing).
    pub fn is_owned(&self, key: &DeviceKey) -> bool {
        self.devices
            .get(key)
            .is_some_and(|d| matches!(d.registration, Registration::Config | Registration::Console))
    }

    pub fn is_configured(&self, key: &DeviceKey) -> bool {
        self.devices
            .get(key)
            .is_some_and(|d| d.registration == Registration::Config)
    }

    /// Meta named a profile the rules do not know: the device stays unregistered.
    pub fn unregister(&mut self, key: &DeviceKey) {
        if let Some(entry) = self.devices.get_mut(key) {
            if entry.registration == Registration::Meta {
                entry.registration = Registration::Unregistered;
                self.unregistered += 1;
            }
        }
    }

    pub fn status(&mut self, key: &DeviceKey, online: bool, ts_ms: i64) {
        if let Some(entry) = self.tracked(key) {
            entry.online = Some(online);
            entry.last_seen_ms = Some(entry.last_seen_ms.unwrap_or(ts_ms).max(ts_ms));
        }
    }

    pub fn reading(&mut self, key: &DeviceKey, reading: &Reading) {
        let new_point = !self.live.contains_key(&reading.sensor);
        let tracked = match self.tracked(key) {
            Some(entry) => {
                entry.readings += 1;
                entry.points += usize::from(new_point);
                entry.last_seen_ms = Some(
                    entry
                        .last_seen_ms
                        .unwrap_or(reading.ts_ms)
                        .max(reading.ts_ms),
                );
                entry.source = Some(reading.source);
                true
            }
            None => false,
        };
        if !tracked {
            return;
        }
        let live = LiveValue {
            value: reading.value,
            ts: reading.ts_ms,
            quality: reading.quality,
            source: reading.source,
        };
        match self.live.get_mut(&reading.sensor) {
            // Out-of-order device timestamps never move the live value backwards.
            Some(existing) if existing.ts > reading.ts_ms => {}
            Some(existing) => *existing = live,
            None => {
                self.live.insert(reading.sensor.clone(), live);
            }
        }
    }

    /// The entry of a device, creating an unregistered one while under the cap.
    fn tracked(&mut self, key: &DeviceKey) -> Option<&mut DeviceEntry> {
        if !self.devices.contains_key(key) {
            if self.unregistered >= self.max_unregistered || self.devices.len() >= MAX_DEVICES {
                return None;
            }
            self.unregistered += 1;
            self.devices.insert(
                key.clone(),
                Self::entry(
                    key.clone(),
                    Registration::Unregistered,
                    DeviceInfo::default(),
                ),
            );
        }
        self.devices.get_mut(key)
    }

    /// The time-series form of a reading: with its device's profile, building and room.
    pub fn tag(&self, reading: &Reading) -> TaggedReading {
        let tags = self
            .devices
            .get(&reading.sensor.device_key())
            .map(|d| d.tags.clone())
            .unwrap_or_default();
        TaggedReading {
            reading: reading.clone(),
            profile: tags.profile,
            building: tags.building,
            room: tags.room,
        }
    }

    pub fn devices(&self) -> Vec<DeviceEntry> {
        let mut all: Vec<DeviceEntry> = self.devices.values().cloned().collect();
        all.sort_by(|a, b| a.device.cmp(&b.device));
        all
    }

    pub fn sensors(&self) -> Vec<(SensorId, LiveValue)> {
        let mut all: Vec<(SensorId, LiveValue)> =
            self.live.iter().map(|(k, v)| (k.clone(), *v)).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Quality, Value};

    fn reading(device: &str, point: &str) -> Reading {
        Reading {
            sensor: SensorId::new("xhsy", device, point),
            ts_ms: 1,
            value: Value::Number(1.0),
            quality: Quality::Good,
            source: Source::Mqtt,
        }
    }

    #[test]
    fn an_unregistered_device_gets_at_most_its_maximum_of_points() {
        let mut registry = Registry::new(10, 3);
        let key = DeviceKey::new("xhsy", "stray");
        for point in ["a", "b", "c"] {
            let r = reading("stray", point);
            assert!(registry.admits_point(&r.sensor), "{point}");
            registry.reading(&key, &r);
        }
        let fourth = reading("stray", "d");
        assert!(!registry.admits_point(&fourth.sensor));
        // Known points keep flowing; a configured device is not limited.
        assert!(registry.admits_point(&reading("stray", "b").sensor));
        registry.register_configured(DeviceKey::new("xhsy", "cab"), DeviceInfo::default());
        for i in 0..10 {
            let r = reading("cab", &format!("p{i}"));
            assert!(registry.admits_point(&r.sensor));
            registry.reading(&r.sensor.device_key(), &r);
        }
        assert_eq!(registry.sensors().len(), 13);
    }
}

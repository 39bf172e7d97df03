//! The rule engine. STUB: to be filled in.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::time::Instant;

use super::config::{ProfileSet, RuleOverride};
use crate::model::{ConditionChange, DeviceKey, Reading, SensorId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointCheck {
    Known,
    UnknownPoint,
    UnregisteredDevice,
}

#[derive(Debug)]
pub struct UnknownProfile(pub String);

pub struct RuleEngine {
    _profiles: Arc<ProfileSet>,
}

impl RuleEngine {
    pub fn new(profiles: Arc<ProfileSet>) -> Self {
        Self {
            _profiles: profiles,
        }
    }
    pub fn register_device(
        &mut self,
        _key: &DeviceKey,
        _profile: &str,
        _overrides: &BTreeMap<String, RuleOverride>,
        _now: Instant,
    ) -> Result<(), UnknownProfile> {
        Ok(())
    }
    pub fn check_point(&self, _key: &DeviceKey, _point: &str) -> PointCheck {
        PointCheck::UnregisteredDevice
    }
    pub fn on_reading(&mut self, _r: &Reading, _now: Instant, _out: &mut Vec<ConditionChange>) {}
    pub fn on_status(
        &mut self,
        _key: &DeviceKey,
        _online: bool,
        _now: Instant,
        _now_ms: i64,
        _out: &mut Vec<ConditionChange>,
    ) {
    }
    pub fn on_tick(&mut self, _now: Instant, _now_ms: i64, _out: &mut Vec<ConditionChange>) {}
    pub fn condition_active(&self, _sensor: &SensorId, _rule: &str) -> bool {
        false
    }
}

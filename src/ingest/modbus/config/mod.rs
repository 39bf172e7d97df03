//! The `[modbus]` config section: devices to poll, how to reach them, their register maps, and
//! the writes actions can run (`[[modbus.actions]]`).
//!
//! Parsed once at load (`deny_unknown_fields`, named defaults, humantime durations); then
//! [`ModbusConfig::validate`] ([`validate`]) cross-checks everything serde cannot and returns
//! every problem at once, each naming the device and point. The poller ([`super::poller`])
//! trusts a validated config. The value types (`Table`, `DataType`, `WordOrder`) live one floor
//! down, in [`super::codec`].
//!
//! - `mod.rs`: the types, their defaults and what they say about a device (its key, its
//!   connection).
//! - [`validate`]: the checks.

#[cfg(test)]
mod tests;
mod validate;

use std::time::Duration;

use serde::Deserialize;

use super::codec::{DataType, Table, WordOrder};
use crate::model::{DeviceInfo, DeviceKey};

/// The `[modbus]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusConfig {
    /// A device is reported offline after this many consecutive failed polls.
    #[serde(default = "default_offline_after")]
    pub offline_after: u32,
    /// Registers two points of one device may be apart and still be read in one request (the
    /// unused registers in between are read and thrown away).
    #[serde(default = "default_max_register_gap")]
    pub max_register_gap: u16,
    /// The same for coils and discrete inputs.
    #[serde(default = "default_max_bit_gap")]
    pub max_bit_gap: u16,
    /// Upper bound of registers per read request (the protocol allows 125).
    #[serde(default = "default_max_registers_per_read")]
    pub max_registers_per_read: u16,
    /// Upper bound of coils / discrete inputs per read request (the protocol allows 2000).
    #[serde(default = "default_max_bits_per_read")]
    pub max_bits_per_read: u16,
    /// Longest wait between polls of a failing device (back-off doubles the interval up to this).
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    #[serde(default)]
    pub devices: Vec<ModbusDeviceConfig>,
    /// Writes an action can run, by name (off unless configured; `crate::actions` runs them).
    #[serde(default)]
    pub actions: Vec<ModbusActionConfig>,
}

impl Default for ModbusConfig {
    fn default() -> Self {
        Self {
            offline_after: default_offline_after(),
            max_register_gap: default_max_register_gap(),
            max_bit_gap: default_max_bit_gap(),
            max_registers_per_read: default_max_registers_per_read(),
            max_bits_per_read: default_max_bits_per_read(),
            max_backoff: default_max_backoff(),
            devices: Vec::new(),
            actions: Vec::new(),
        }
    }
}

fn default_offline_after() -> u32 {
    3
}
fn default_max_register_gap() -> u16 {
    8
}
fn default_max_bit_gap() -> u16 {
    32
}
fn default_max_registers_per_read() -> u16 {
    MAX_REGISTERS_PER_READ
}
fn default_max_bits_per_read() -> u16 {
    MAX_BITS_PER_READ
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}

/// Protocol limit of registers in one FC3/FC4 read.
pub const MAX_REGISTERS_PER_READ: u16 = 125;
/// Protocol limit of bits in one FC1/FC2 read.
pub const MAX_BITS_PER_READ: u16 = 2000;

/// One `[[modbus.actions]]` entry: a write to one coil or holding register of a configured
/// device, e.g. switching a cabinet's exhaust fan on; a rule names it by `name` and
/// `crate::actions` runs it when the rule's alarm rises on that device.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusActionConfig {
    /// What rules call it by.
    pub name: String,
    /// `id` of a `[[modbus.devices]]` entry; the write goes over that device's connection to
    /// its unit id.
    pub device: String,
    /// The device's school, needed only when the id is used in more than one school.
    #[serde(default)]
    pub school: Option<String>,
    /// `coil` (FC5) or `holding` (FC6 for 16-bit types, FC16 for wider ones).
    pub table: Table,
    pub address: u16,
    /// For `holding`: how `value` is encoded (default u16). For `coil`: bool (the default).
    #[serde(default, rename = "type")]
    pub data_type: Option<DataType>,
    #[serde(default)]
    pub order: WordOrder,
    /// `true`/`false` for a coil; the raw number for a register (no scale/offset applied).
    pub value: ActionValue,
}

/// The value an action writes.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ActionValue {
    Bool(bool),
    Number(f64),
}

impl ModbusActionConfig {
    /// The type written: given, or bool for a coil and u16 for a register.
    pub fn effective_type(&self) -> DataType {
        self.data_type.unwrap_or(if self.table.is_bits() {
            DataType::Bool
        } else {
            DataType::U16
        })
    }
}

/// One `[[modbus.devices]]` entry: one unit id behind one connection.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusDeviceConfig {
    /// Sensor paths are `<school>/<id>/<point>`.
    pub id: String,
    pub school: String,
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub building: Option<String>,
    #[serde(default)]
    pub room: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    pub transport: Transport,
    /// `host:port` for `tcp` and `rtu_over_tcp`.
    #[serde(default)]
    pub address: Option<String>,
    /// Serial device path for `rtu`, e.g. `/dev/ttyUSB0`.
    #[serde(default)]
    pub serial: Option<String>,
    #[serde(default = "default_baud")]
    pub baud: u32,
    #[serde(default)]
    pub parity: Parity,
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    /// Modbus unit (slave) id, 1..=247.
    pub unit: u8,
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Budget of one request (connect, or read); a dead unit costs at most this per cycle.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Extra attempts of a request that failed with a transient error (device busy, connection
    /// reset) within one cycle. Timeouts are never retried within the cycle: they already cost
    /// the whole budget, and the device is backed off instead.
    #[serde(default)]
    pub retries: u32,
    /// Pause before each request to this device, for slow devices and RS-485 turnaround.
    #[serde(default, with = "humantime_serde")]
    pub pause: Duration,
    pub points: Vec<ModbusPointConfig>,
}

fn default_baud() -> u32 {
    9600
}
fn default_data_bits() -> u8 {
    8
}
fn default_stop_bits() -> u8 {
    1
}
fn default_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_timeout() -> Duration {
    Duration::from_millis(500)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Tcp,
    Rtu,
    RtuOverTcp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Rtu => "rtu",
            Transport::RtuOverTcp => "rtu_over_tcp",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
pub enum Parity {
    #[default]
    N,
    E,
    O,
}

/// One `[[modbus.devices.points]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusPointConfig {
    pub name: String,
    pub table: Table,
    /// Zero-based protocol address (register 40001 is holding address 0).
    pub address: u16,
    #[serde(rename = "type")]
    pub data_type: DataType,
    #[serde(default)]
    pub order: WordOrder,
    /// For `bool` in a holding/input register: the bit, 0 = least significant.
    #[serde(default)]
    pub bit: Option<u8>,
    /// value = raw * scale + offset (numbers only).
    #[serde(default = "default_scale")]
    pub scale: f64,
    #[serde(default)]
    pub offset: f64,
    /// Engineering unit, for documentation (the profile defines the unit the rules use).
    #[serde(default)]
    pub unit: Option<String>,
}

fn default_scale() -> f64 {
    1.0
}

/// Where a device's requests go: devices with the same key share one connection task and are
/// polled in turn.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConnectionKey {
    /// `tcp` or `rtu_over_tcp` to `host:port`.
    Network(String),
    /// `rtu` on a serial device.
    Serial(String),
}

impl std::fmt::Display for ConnectionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectionKey::Network(a) => write!(f, "{a}"),
            ConnectionKey::Serial(s) => write!(f, "{s}"),
        }
    }
}

impl ModbusDeviceConfig {
    /// `<school>/<id>`.
    pub fn device_key(&self) -> DeviceKey {
        DeviceKey::new(&self.school, &self.id)
    }

    /// What the config says about the device (profile, building, room, name), for the
    /// gateway's device registry.
    pub fn device_info(&self) -> DeviceInfo {
        DeviceInfo {
            profile: self.profile.clone(),
            building: self.building.clone(),
            room: self.room.clone(),
            name: self.name.clone(),
        }
    }

    /// The connection this device shares with others; `None` when the address or serial port
    /// the transport needs is missing (a validation error).
    pub fn connection_key(&self) -> Option<ConnectionKey> {
        match self.transport {
            Transport::Tcp | Transport::RtuOverTcp => self
                .address
                .as_ref()
                .map(|a| ConnectionKey::Network(a.trim().to_owned())),
            Transport::Rtu => self
                .serial
                .as_ref()
                .map(|s| ConnectionKey::Serial(s.trim().to_owned())),
        }
    }

    /// Serial line settings, compared between devices sharing one serial port.
    fn line_settings(&self) -> (u32, Parity, u8, u8) {
        (self.baud, self.parity, self.data_bits, self.stop_bits)
    }
}

impl ModbusConfig {
    /// The devices an action's `device` (and `school`) name; exactly one in a valid config.
    pub fn action_devices(&self, action: &ModbusActionConfig) -> Vec<&ModbusDeviceConfig> {
        self.devices
            .iter()
            .filter(|d| {
                d.id == action.device && action.school.as_ref().is_none_or(|s| *s == d.school)
            })
            .collect()
    }
}

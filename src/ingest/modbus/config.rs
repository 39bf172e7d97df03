//! The `[modbus]` config section: devices to poll, how to reach them, and their register maps.
//!
//! Parsed once at load (`deny_unknown_fields`, named defaults, humantime durations); then
//! [`ModbusConfig::validate`] cross-checks everything serde cannot (type/table combinations,
//! overlapping or out-of-range addresses, unit ids, connection conflicts) and returns every
//! problem at once, each naming the device and point. The poller ([`super::poller`]) trusts a
//! validated config.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde::Deserialize;

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
    /// Write-back actions a rule can name (off unless configured).
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
/// device, e.g. switching a cabinet's exhaust fan on when a gas or ventilation alarm rises.
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

/// The four Modbus data tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// FC1, read-write bits.
    Coil,
    /// FC2, read-only bits.
    Discrete,
    /// FC3, read-write registers.
    Holding,
    /// FC4, read-only registers.
    Input,
}

impl Table {
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Coil => "coil",
            Table::Discrete => "discrete",
            Table::Holding => "holding",
            Table::Input => "input",
        }
    }

    /// Coils and discrete inputs hold bits; holding and input registers hold 16-bit words.
    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coil | Table::Discrete)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataType {
    Bool,
    U16,
    I16,
    U32,
    I32,
    F32,
    U64,
    I64,
    F64,
}

impl DataType {
    /// Registers this type spans (a `bool` is one bit, or one bit of one register).
    pub fn register_count(self) -> u16 {
        match self {
            DataType::Bool | DataType::U16 | DataType::I16 => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            DataType::U64 | DataType::I64 | DataType::F64 => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Bool => "bool",
            DataType::U16 => "u16",
            DataType::I16 => "i16",
            DataType::U32 => "u32",
            DataType::I32 => "i32",
            DataType::F32 => "f32",
            DataType::U64 => "u64",
            DataType::I64 => "i64",
            DataType::F64 => "f64",
        }
    }
}

/// Byte and word order of a value, named after a 32-bit value `0xAABBCCDD`:
/// - `ABCD`: big-endian words, most significant word first (the Modbus default),
/// - `CDAB`: big-endian words, least significant word first ("word swap"),
/// - `BADC`: bytes swapped inside each word, most significant word first,
/// - `DCBA`: fully little-endian.
///
/// For 64-bit types the same rule applies to four words (`CDAB` = word order reversed). For
/// 16-bit types only the byte swap matters (`BADC`/`DCBA` swap, `ABCD`/`CDAB` do not).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
pub enum WordOrder {
    #[default]
    ABCD,
    CDAB,
    BADC,
    DCBA,
}

impl WordOrder {
    /// Least significant word comes first.
    pub fn words_reversed(self) -> bool {
        matches!(self, WordOrder::CDAB | WordOrder::DCBA)
    }

    /// The two bytes of each word are swapped.
    pub fn bytes_swapped(self) -> bool {
        matches!(self, WordOrder::BADC | WordOrder::DCBA)
    }
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
    /// Collects every problem of the section, each naming the device and point, so the user
    /// can fix them in one pass. Empty means valid.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, message: String| {
            if !ok {
                problems.push(message);
            }
        };
        check(
            self.offline_after >= 1,
            "modbus.offline_after must be at least 1".into(),
        );
        check(
            (4..=MAX_REGISTERS_PER_READ).contains(&self.max_registers_per_read),
            format!(
                "modbus.max_registers_per_read must be 4..={MAX_REGISTERS_PER_READ} (a 64-bit value spans 4)"
            ),
        );
        check(
            (1..=MAX_BITS_PER_READ).contains(&self.max_bits_per_read),
            format!("modbus.max_bits_per_read must be 1..={MAX_BITS_PER_READ}"),
        );
        check(
            !self.max_backoff.is_zero(),
            "modbus.max_backoff must be greater than 0".into(),
        );

        let mut seen_ids: HashSet<(&str, &str)> = HashSet::new();
        // Per connection: the transport and serial settings of the first device using it.
        let mut connections: HashMap<ConnectionKey, (&ModbusDeviceConfig, usize)> = HashMap::new();
        for (index, device) in self.devices.iter().enumerate() {
            let who = if device.id.is_empty() {
                format!("modbus device #{}", index + 1)
            } else {
                format!("modbus device `{}`", device.id)
            };
            validate_device(device, &who, &mut problems);
            if !seen_ids.insert((device.school.as_str(), device.id.as_str())) {
                problems.push(format!(
                    "{who}: duplicate device id `{}` in school `{}`",
                    device.id, device.school
                ));
            }
            if let Some(key) = device.connection_key() {
                match connections.get(&key) {
                    None => {
                        connections.insert(key, (device, index));
                    }
                    Some((first, first_index)) => {
                        if first.transport != device.transport {
                            problems.push(format!(
                                "{who}: connection `{key}` is used as {} here but as {} by device #{} `{}`",
                                device.transport.as_str(),
                                first.transport.as_str(),
                                first_index + 1,
                                first.id
                            ));
                        } else if device.transport == Transport::Rtu
                            && first.line_settings() != device.line_settings()
                        {
                            problems.push(format!(
                                "{who}: serial port `{key}` has different baud/parity/data/stop bits than device `{}` on the same line",
                                first.id
                            ));
                        }
                    }
                }
            }
        }
        // Names are unique per device: a rule's `action` picks the one of the alarm's device.
        let mut action_names: HashSet<(&str, &str, &str)> = HashSet::new();
        for (index, action) in self.actions.iter().enumerate() {
            let who = format!("modbus action `{}`", action.name);
            if !is_path_component(&action.name) {
                problems.push(format!(
                    "modbus action #{}: name `{}` must be non-empty without `/`, `+`, `#` or spaces",
                    index + 1,
                    action.name
                ));
            }
            let devices = self.action_devices(action);
            if let [device] = devices.as_slice() {
                if !action_names.insert((
                    action.name.as_str(),
                    device.school.as_str(),
                    device.id.as_str(),
                )) {
                    problems.push(format!(
                        "{who}: duplicate action name for device `{}/{}`",
                        device.school, device.id
                    ));
                }
            }
            match devices.len() {
                0 => problems.push(format!(
                    "{who}: no [[modbus.devices]] with id `{}`{}",
                    action.device,
                    action
                        .school
                        .as_ref()
                        .map(|s| format!(" in school `{s}`"))
                        .unwrap_or_default()
                )),
                1 => {}
                _ => problems.push(format!(
                    "{who}: device id `{}` is used in several schools; add `school`",
                    action.device
                )),
            }
            validate_action(action, &who, &mut problems);
        }
        problems
    }

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

fn validate_action(action: &ModbusActionConfig, who: &str, problems: &mut Vec<String>) {
    let data_type = action.effective_type();
    match (action.table, data_type, action.value) {
        (Table::Coil, DataType::Bool, ActionValue::Bool(_)) => {}
        (Table::Coil, DataType::Bool, ActionValue::Number(_)) => {
            problems.push(format!("{who}: a coil takes `value = true` or `false`"));
        }
        (Table::Coil, other, _) => problems.push(format!(
            "{who}: a coil is written as bool, not {}",
            other.as_str()
        )),
        (Table::Holding, DataType::Bool, _) => problems.push(format!(
            "{who}: a holding register is written as a number type (u16, i16, ..., f64), not bool"
        )),
        (Table::Holding, _, ActionValue::Bool(_)) => {
            problems.push(format!("{who}: a holding register takes a number `value`"));
        }
        (Table::Holding, data_type, ActionValue::Number(value)) => {
            if let Err(reason) = super::registers::encode_value(value, data_type, action.order) {
                problems.push(format!("{who}: {reason}"));
            }
            let last = u32::from(action.address) + u32::from(data_type.register_count()) - 1;
            if last > u32::from(u16::MAX) {
                problems.push(format!(
                    "{who}: {} at address {} runs past 65535",
                    data_type.as_str(),
                    action.address
                ));
            }
        }
        (Table::Discrete | Table::Input, _, _) => problems.push(format!(
            "{who}: table {} is read-only; write to coil or holding",
            action.table.as_str()
        )),
    }
}

fn is_path_component(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && !matches!(c, '/' | '+' | '#'))
}

/// Which points (name, bit) use each (table, address) of a device.
type Occupancy<'a> = BTreeMap<(Table, u32), Vec<(&'a str, Option<u8>)>>;

fn validate_device(device: &ModbusDeviceConfig, who: &str, problems: &mut Vec<String>) {
    let mut check = |ok: bool, message: String| {
        if !ok {
            problems.push(format!("{who}: {message}"));
        }
    };
    check(
        is_path_component(&device.id),
        format!(
            "id `{}` must be non-empty without `/`, `+`, `#` or spaces",
            device.id
        ),
    );
    check(
        is_path_component(&device.school),
        format!(
            "school `{}` must be non-empty without `/`, `+`, `#` or spaces",
            device.school
        ),
    );
    check(
        (1..=247).contains(&device.unit),
        format!(
            "unit {} is out of range: 1..=247 (0 is broadcast, 248..=255 are reserved)",
            device.unit
        ),
    );
    check(
        !device.interval.is_zero(),
        "interval must be greater than 0".into(),
    );
    check(
        !device.timeout.is_zero(),
        "timeout must be greater than 0".into(),
    );
    check(
        device.retries <= 10,
        format!("retries {} is more than 10", device.retries),
    );
    match device.transport {
        Transport::Tcp | Transport::RtuOverTcp => {
            match device.address.as_deref() {
                None => check(
                    false,
                    format!(
                        "transport {} needs `address = \"host:port\"`",
                        device.transport.as_str()
                    ),
                ),
                Some(address) => check(
                    is_host_port(address),
                    format!("address `{address}` is not `host:port` with a port 1..=65535"),
                ),
            }
            check(
                device.serial.is_none(),
                format!(
                    "`serial` is only for transport rtu, not {}",
                    device.transport.as_str()
                ),
            );
        }
        Transport::Rtu => {
            check(
                device
                    .serial
                    .as_deref()
                    .is_some_and(|s| !s.trim().is_empty()),
                "transport rtu needs `serial = \"/dev/...\"`".into(),
            );
            check(
                device.address.is_none(),
                "`address` is only for transports tcp and rtu_over_tcp, not rtu".into(),
            );
            check(device.baud > 0, "baud must be greater than 0".into());
            check(
                (5..=8).contains(&device.data_bits),
                format!("data_bits {} must be 5..=8", device.data_bits),
            );
            check(
                matches!(device.stop_bits, 1 | 2),
                format!("stop_bits {} must be 1 or 2", device.stop_bits),
            );
        }
    }
    check(!device.points.is_empty(), "has no points".into());

    let mut names = HashSet::new();
    // (table, register) -> point name (and bit, for bits of a register), to find overlaps.
    let mut occupied: Occupancy = BTreeMap::new();
    for point in &device.points {
        let at = format!("point `{}`", point.name);
        check(
            is_path_component(&point.name),
            format!("{at}: name must be non-empty without `/`, `+`, `#` or spaces"),
        );
        check(
            point.name != crate::model::STATUS_POINT,
            format!("{at}: `status` is reserved for the device status"),
        );
        check(
            names.insert(point.name.as_str()),
            format!("{at}: duplicate point name"),
        );
        match (point.table.is_bits(), point.data_type) {
            (true, DataType::Bool) => {
                check(
                    point.bit.is_none(),
                    format!(
                        "{at}: `bit` is only for bool in holding/input registers, not in {}",
                        point.table.as_str()
                    ),
                );
            }
            (true, other) => check(
                false,
                format!(
                    "{at}: type {} cannot be read from table {} (only bool)",
                    other.as_str(),
                    point.table.as_str()
                ),
            ),
            (false, DataType::Bool) => match point.bit {
                None => check(
                    false,
                    format!(
                        "{at}: bool in a {} register needs `bit` (0..=15)",
                        point.table.as_str()
                    ),
                ),
                Some(bit) => check(bit <= 15, format!("{at}: bit {bit} must be 0..=15")),
            },
            (false, _) => check(
                point.bit.is_none(),
                format!("{at}: `bit` is only for type bool"),
            ),
        }
        if point.data_type == DataType::Bool {
            check(
                point.scale == 1.0 && point.offset == 0.0,
                format!("{at}: scale/offset do not apply to bool"),
            );
        } else {
            check(
                point.scale.is_finite() && point.scale != 0.0,
                format!("{at}: scale must be a finite non-zero number"),
            );
            check(
                point.offset.is_finite(),
                format!("{at}: offset must be a finite number"),
            );
        }
        let width = if point.table.is_bits() {
            1
        } else {
            u32::from(point.data_type.register_count())
        };
        let last = u32::from(point.address) + width - 1;
        if last > u32::from(u16::MAX) {
            check(
                false,
                format!(
                    "{at}: {} at address {} spans {width} registers and runs past 65535",
                    point.data_type.as_str(),
                    point.address
                ),
            );
            continue;
        }
        for address in u32::from(point.address)..=last {
            occupied
                .entry((point.table, address))
                .or_default()
                .push((point.name.as_str(), point.bit));
        }
    }
    let mut reported = HashSet::new();
    for ((table, address), users) in &occupied {
        if users.len() < 2 {
            continue;
        }
        // Several bools on different bits of one register share it legitimately.
        let all_distinct_bits = users.iter().all(|(_, bit)| bit.is_some())
            && users
                .iter()
                .map(|(_, bit)| bit)
                .collect::<HashSet<_>>()
                .len()
                == users.len();
        if all_distinct_bits {
            continue;
        }
        let names: Vec<&str> = users.iter().map(|(name, _)| *name).collect();
        if reported.insert(names.clone()) {
            check(
                false,
                format!(
                    "points {} overlap at {} address {address}",
                    names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    table.as_str()
                ),
            );
        }
    }
}

/// `host:port` with a non-empty host and a port 1..=65535 (`[v6]:port` accepted).
fn is_host_port(address: &str) -> bool {
    let address = address.trim();
    let Some((host, port)) = address.rsplit_once(':') else {
        return false;
    };
    !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ModbusConfig {
        #[derive(Deserialize)]
        struct Root {
            modbus: ModbusConfig,
        }
        toml::from_str::<Root>(text).expect("config parses").modbus
    }

    const GOOD: &str = r#"
        [modbus]
        [[modbus.devices]]
        id = "cab-1"
        school = "xhsy"
        profile = "chem_cabinet"
        transport = "tcp"
        address = "127.0.0.1:5020"
        unit = 1
        interval = "1s"
        timeout = "500ms"
        [[modbus.devices.points]]
        name = "temp_c"
        table = "holding"
        address = 0
        type = "f32"
        order = "CDAB"
        [[modbus.devices.points]]
        name = "fan_on"
        table = "coil"
        address = 0
        type = "bool"
        [[modbus.devices.points]]
        name = "alarm_a"
        table = "holding"
        address = 8
        type = "bool"
        bit = 0
        [[modbus.devices.points]]
        name = "alarm_b"
        table = "holding"
        address = 8
        type = "bool"
        bit = 1
    "#;

    #[test]
    fn a_valid_config_parses_with_defaults_and_has_no_problems() {
        let config = parse(GOOD);
        assert_eq!(config.offline_after, 3);
        assert_eq!(config.devices[0].timeout, Duration::from_millis(500));
        assert_eq!(config.devices[0].points[0].order, WordOrder::CDAB);
        assert_eq!(config.devices[0].points[1].scale, 1.0);
        assert_eq!(config.validate(), Vec::<String>::new());
    }

    #[test]
    fn unknown_keys_are_rejected_at_parse() {
        let text = GOOD.replace("unit = 1", "unit = 1\nspeed = 3");
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Root {
            modbus: ModbusConfig,
        }
        let error = toml::from_str::<Root>(&text).expect_err("unknown key");
        assert!(error.to_string().contains("speed"), "{error}");
    }

    #[test]
    fn every_problem_is_reported_at_once_naming_device_and_point() {
        let text = r#"
            [modbus]
            [[modbus.devices]]
            id = "cab-1"
            school = "xhsy"
            transport = "tcp"
            address = "127.0.0.1:5020"
            unit = 0
            interval = "0s"
            [[modbus.devices.points]]
            name = "temp_c"
            table = "coil"
            address = 0
            type = "f32"
            [[modbus.devices.points]]
            name = "fan"
            table = "holding"
            address = 0
            type = "bool"
            [[modbus.devices.points]]
            name = "big"
            table = "input"
            address = 65534
            type = "f64"
            [[modbus.devices.points]]
            name = "a"
            table = "holding"
            address = 10
            type = "u32"
            [[modbus.devices.points]]
            name = "b"
            table = "holding"
            address = 11
            type = "u16"

            [[modbus.devices]]
            id = "cab-1"
            school = "xhsy"
            transport = "rtu"
            address = "127.0.0.1:5020"
            unit = 248
            [[modbus.devices.points]]
            name = "x"
            table = "holding"
            address = 0
            type = "u16"
            bit = 3
        "#;
        let problems = parse(text).validate();
        let expect = [
            "modbus device `cab-1`: unit 0 is out of range",
            "modbus device `cab-1`: interval must be greater than 0",
            "point `temp_c`: type f32 cannot be read from table coil",
            "point `fan`: bool in a holding register needs `bit`",
            "point `big`: f64 at address 65534 spans 4 registers and runs past 65535",
            "points `a`, `b` overlap at holding address 11",
            "unit 248 is out of range",
            "transport rtu needs `serial",
            "`address` is only for transports tcp and rtu_over_tcp",
            "point `x`: `bit` is only for type bool",
            "duplicate device id `cab-1`",
        ];
        for fragment in expect {
            assert!(
                problems.iter().any(|p| p.contains(fragment)),
                "missing `{fragment}` in {problems:#?}"
            );
        }
        assert_eq!(problems.len(), expect.len(), "{problems:#?}");
    }

    #[test]
    fn devices_on_one_serial_line_must_agree_on_line_settings() {
        let text = r#"
            [[modbus.devices]]
            id = "a"
            school = "s"
            transport = "rtu"
            serial = "/dev/ttyUSB0"
            unit = 1
            points = [{ name = "t", table = "input", address = 0, type = "i16" }]
            [[modbus.devices]]
            id = "b"
            school = "s"
            transport = "rtu"
            serial = "/dev/ttyUSB0"
            baud = 19200
            unit = 2
            points = [{ name = "t", table = "input", address = 0, type = "i16" }]
        "#;
        let problems = parse(text).validate();
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(problems[0].contains("different baud"), "{problems:#?}");
    }

    #[test]
    fn one_address_cannot_speak_both_tcp_and_rtu_over_tcp() {
        let text = r#"
            [[modbus.devices]]
            id = "a"
            school = "s"
            transport = "tcp"
            address = "10.0.0.5:502"
            unit = 1
            points = [{ name = "t", table = "input", address = 0, type = "i16" }]
            [[modbus.devices]]
            id = "b"
            school = "s"
            transport = "rtu_over_tcp"
            address = "10.0.0.5:502"
            unit = 2
            points = [{ name = "t", table = "input", address = 0, type = "i16" }]
        "#;
        let problems = parse(&format!("[modbus]\n{text}")).validate();
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(
            problems[0].contains("used as rtu_over_tcp here but as tcp by device #1 `a`"),
            "{problems:#?}"
        );
    }

    #[test]
    fn the_documented_example_config_parses_and_validates() {
        let config = parse(include_str!("../../../config/modbus-sim.example.toml"));
        assert_eq!(config.validate(), Vec::<String>::new());
        assert_eq!(config.devices.len(), 2);
        assert_eq!(config.devices[0].points.len(), 7);
        assert_eq!(config.devices[1].points[6].bit, Some(1));
        assert_eq!(config.actions[0].value, ActionValue::Bool(true));
    }

    #[test]
    fn write_back_actions_are_checked_against_devices_tables_and_types() {
        let text = format!(
            "{GOOD}{}",
            r#"
            [[modbus.actions]]
            name = "fan-on"
            device = "cab-1"
            table = "coil"
            address = 0
            value = true
            [[modbus.actions]]
            name = "setpoint"
            device = "cab-1"
            table = "holding"
            address = 10
            type = "f32"
            order = "CDAB"
            value = 12.5
            [[modbus.actions]]
            name = "fan-on"
            device = "cab-1"
            table = "coil"
            address = 1
            value = true
            [[modbus.actions]]
            name = "fan-on"
            device = "cab-9"
            table = "discrete"
            address = 0
            value = true
            [[modbus.actions]]
            name = "too-big"
            device = "cab-1"
            table = "holding"
            address = 0
            value = 70000
            [[modbus.actions]]
            name = "coil-number"
            device = "cab-1"
            table = "coil"
            address = 0
            value = 1
        "#
        );
        let config = parse(&text);
        assert_eq!(config.actions[1].value, ActionValue::Number(12.5));
        let problems = config.validate();
        let expect = [
            "modbus action `fan-on`: duplicate action name for device `xhsy/cab-1`",
            "modbus action `fan-on`: no [[modbus.devices]] with id `cab-9`",
            "modbus action `fan-on`: table discrete is read-only",
            "modbus action `too-big`: value 70000 is not a whole number in the range of u16",
            "modbus action `coil-number`: a coil takes `value = true` or `false`",
        ];
        for fragment in expect {
            assert!(
                problems.iter().any(|p| p.contains(fragment)),
                "missing `{fragment}` in {problems:#?}"
            );
        }
        assert_eq!(problems.len(), expect.len(), "{problems:#?}");
    }
}

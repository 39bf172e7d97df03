//! Validation of the `[modbus]` section: everything serde cannot check (type/table
//! combinations, overlapping or out-of-range addresses, unit ids, connection conflicts, the
//! actions' devices, tables and values), every problem at once, each naming the device, point
//! or action.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{
    ActionValue, ConnectionKey, ModbusActionConfig, ModbusConfig, ModbusDeviceConfig, Transport,
    MAX_BITS_PER_READ, MAX_REGISTERS_PER_READ,
};
use crate::ingest::modbus::codec::{encode_value, DataType, Table};

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
            if let Err(reason) = encode_value(value, data_type, action.order) {
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
        crate::model::valid_name(&device.id),
        format!(
            "id `{}` must be 1-64 characters of `A-Z a-z 0-9 _ -`",
            device.id
        ),
    );
    check(
        crate::model::valid_name(&device.school),
        format!(
            "school `{}` must be 1-64 characters of `A-Z a-z 0-9 _ -`",
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

//! The `[modbus]` section as data: parse, defaults, and the problems validation finds.

use std::time::Duration;

use serde::Deserialize;

use super::*;
use crate::ingest::modbus::codec::WordOrder;

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
    let config = parse(include_str!("../../../../config/modbus-sim.example.toml"));
    assert_eq!(config.validate(), Vec::<String>::new());
    assert_eq!(config.devices.len(), 2);
    assert_eq!(config.devices[0].points.len(), 7);
    assert_eq!(config.devices[1].points[6].bit, Some(1));
    assert_eq!(config.actions[0].value, ActionValue::Bool(true));
}

#[test]
fn actions_are_checked_against_devices_tables_and_types() {
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

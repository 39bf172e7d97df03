//! Loading, environment overrides, positions in errors, and semantic checks.

use std::path::Path;

use super::*;

fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_toml(
        text,
        Path::new("gw.toml"),
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

#[test]
fn an_empty_file_gives_the_documented_defaults() {
    let c = load("", &[]).unwrap();
    assert_eq!(c.mqtt.url, "mqtt://127.0.0.1:1883");
    assert_eq!(c.mqtt.topic_prefix, "campus");
    assert!(!c.mqtt.clean_session);
    assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.storage.data_dir, Path::new("data"));
    assert!(!c.broker.embedded);
}

#[test]
fn environment_variables_override_keys_and_keep_types() {
    let c = load(
        "[mqtt]\nurl = \"mqtt://10.0.0.1:1883\"\n",
        &[
            ("CAMPUSGUARD_MQTT__URL", "mqtt://127.0.0.1:2883"),
            ("CAMPUSGUARD_HTTP__LISTEN", "127.0.0.1:9999"),
            ("CAMPUSGUARD_STORAGE__DATA_DIR", "/tmp/cg"),
            ("CAMPUSGUARD_BROKER__EMBEDDED", "true"),
            ("CAMPUSGUARD_MQTT__INFLIGHT", "7"),
            ("OTHER_VAR", "ignored"),
        ],
    )
    .unwrap();
    assert_eq!(c.mqtt.url, "mqtt://127.0.0.1:2883");
    assert_eq!(c.http.listen.to_string(), "127.0.0.1:9999");
    assert_eq!(c.storage.data_dir, Path::new("/tmp/cg"));
    assert!(c.broker.embedded);
    assert_eq!(c.mqtt.inflight, 7);
}

#[test]
fn syntax_and_type_errors_name_file_line_and_column() {
    let cases = [
        ("[mqtt]\nurl = \n", "gw.toml:2:"),
        ("[http]\nlisten = \"not an address\"\n", "gw.toml:2:10:"),
        ("[mqtt]\ninflight = \"many\"\n", "gw.toml:2:12:"),
        (
            "[storage]\nhistory_retention = \"7 parsecs\"\n",
            "gw.toml:2:21:",
        ),
        (
            "[mqtt]\nurl = \"mqtt://x\"\nbogus_key = 1\n",
            "gw.toml:3:1:",
        ),
        ("[nonsense]\n", "gw.toml:1:"),
    ];
    for (text, prefix) in cases {
        let err = load(text, &[]).unwrap_err().to_string();
        assert!(err.starts_with(prefix), "{text:?} gave {err}");
    }
    let err = load("[mqtt]\ninflight = \"many\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid type"), "{err}");
}

#[test]
fn semantic_problems_are_all_reported_at_once() {
    let text = r#"
[mqtt]
url = "http://broker"
topic_prefix = "campus/#"

[[http.tokens]]
name = "ops"
token = "short"
role = "operator"

[[devices]]
id = "hd-1"
school = "xhsy"
profile = "heat_detector"

[[devices]]
id = "hd-1"
school = "xhsy"
profile = "heat_detector"

[[devices]]
id = "x-1"
school = "xhsy"
profile = "no_such_profile"
"#;
    let err = load(text, &[]).unwrap_err();
    let ConfigError::Invalid { problems, .. } = &err else {
        panic!("expected semantic errors, got {err}");
    };
    let all = problems.join("\n");
    for needle in [
        "mqtt.url `http://broker` must start with mqtt://",
        "mqtt.topic_prefix",
        "shorter than 16 characters",
        "device xhsy/hd-1: duplicate device",
        "device xhsy/x-1: unknown profile `no_such_profile`",
    ] {
        assert!(all.contains(needle), "missing `{needle}` in:\n{all}");
    }
}

#[test]
fn line_and_column_count_characters_not_bytes() {
    assert_eq!(line_col("ab\n温度 = x", 10), (2, 4));
    assert_eq!(line_col("", 0), (1, 1));
}

/// A Modbus cabinet on `profile`, and the given `[[modbus.actions]]` text.
fn modbus_cabinet(profile: Option<&str>, actions: &str) -> String {
    let profile = profile.map_or(String::new(), |p| format!("profile = \"{p}\""));
    format!(
        r#"
[[modbus.devices]]
id = "cab-7"
school = "xhsy"
{profile}
transport = "tcp"
address = "127.0.0.1:5020"
unit = 1
points = [{{ name = "fan_on", table = "coil", address = 0, type = "bool" }}]
{actions}
"#
    )
}

const FAN_ON: &str = r#"
[[modbus.actions]]
name = "exhaust_fan_on"
device = "cab-7"
table = "coil"
address = 0
value = true
"#;

#[test]
fn an_action_named_by_a_rule_of_its_device_profile_loads() {
    // chem_cabinet's gas and ventilation rules name `exhaust_fan_on`.
    let config = load(&modbus_cabinet(Some("chem_cabinet"), FAN_ON), &[]).unwrap();
    assert_eq!(
        config.profiles.rule_action("chem_cabinet", "lel_high"),
        Some("exhaust_fan_on")
    );
    assert_eq!(
        config.profiles.rule_action("chem_cabinet", "door_open"),
        None
    );
}

#[test]
fn actions_no_rule_can_run_are_refused_naming_action_device_and_profile() {
    let typo = FAN_ON.replace("exhaust_fan_on", "exhaust_fan_onn");
    let duplicate = format!("{FAN_ON}{}", FAN_ON.replace("address = 0", "address = 1"));
    let cases = [
        (
            modbus_cabinet(Some("chem_cabinet"), &typo),
            "modbus action `exhaust_fan_onn` of device xhsy/cab-7: no rule of profile \
             `chem_cabinet` names it (`action = \"exhaust_fan_onn\"`), so it would never run",
        ),
        (
            modbus_cabinet(Some("heat_detector"), FAN_ON),
            "modbus action `exhaust_fan_on` of device xhsy/cab-7: no rule of profile \
             `heat_detector` names it",
        ),
        (
            modbus_cabinet(None, FAN_ON),
            "modbus action `exhaust_fan_on` of device xhsy/cab-7: the device has no profile, \
             so no rule can run the action",
        ),
        (
            modbus_cabinet(Some("chem_cabinet"), &duplicate),
            "modbus action `exhaust_fan_on`: duplicate action name for device `xhsy/cab-7`",
        ),
        (
            modbus_cabinet(
                Some("chem_cabinet"),
                &FAN_ON.replace("device = \"cab-7\"", "device = \"cab-8\""),
            ),
            "modbus action `exhaust_fan_on`: no [[modbus.devices]] with id `cab-8`",
        ),
    ];
    for (text, want) in cases {
        let err = load(&text, &[]).unwrap_err();
        let ConfigError::Invalid { problems, .. } = &err else {
            panic!("expected semantic errors, got {err}");
        };
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(problems[0].starts_with(want), "{problems:#?}");
    }
}

#[test]
fn debug_output_of_a_config_never_shows_a_secret() {
    let text = r#"
[mqtt]
username = "gw"
password = "SECRET-mqtt-password"

[[http.tokens]]
name = "ops"
token = "SECRET-api-token-0123456789"
role = "operator"

[timeseries]
kind = "influxdb2"
url = "http://127.0.0.1:8086"
org = "o"
bucket = "b"
token = "SECRET-tsdb-token"

[[users.seed]]
name = "admin"
role = "admin"
password = "SECRET-admin-password"

[tickets]
database_url = "postgres://campus:SECRET-pg-password@127.0.0.1:5432/test"
"#;
    let c = load(text, &[]).unwrap();
    let debug = format!("{c:?} {c:#?}");
    assert!(!debug.contains("SECRET"), "{debug}");
    // What is not secret is still there to debug with.
    assert!(
        debug.contains("postgres://campus:***@127.0.0.1:5432/test"),
        "{debug}"
    );
    assert!(debug.contains("\"ops\""));
}

#[test]
fn credentials_in_the_mqtt_url_are_refused_without_echoing_them() {
    let err = load("[mqtt]\nurl = \"mqtt://gw:SECRET-pw@10.0.0.1:1883\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("must not carry credentials"), "{err}");
    assert!(!err.contains("SECRET"), "{err}");
}

#[test]
fn url_passwords_are_redacted() {
    use crate::redact::url as r;
    assert_eq!(
        r("postgres://u:p@h:5432/db?x=1"),
        "postgres://u:***@h:5432/db?x=1"
    );
    assert_eq!(r("postgres://u@h/db"), "postgres://u@h/db");
    assert_eq!(
        r("postgres://h/db?user=u&password=x@y"),
        "postgres://h/db?user=u&password=***"
    );
    assert_eq!(r("sqlite://data/tickets.db"), "sqlite://data/tickets.db");
    assert_eq!(r("not a url"), "not a url");
}

#[test]
fn config_errors_never_echo_a_credential() {
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "[tickets]\ndatabase_url = \"mysql://ops:Pg-SECRET-1@db/tickets\"\n",
            vec![],
        ),
        (
            "[timeseries]\nkind = \"influxdb2\"\nurl = \"https://u:Ts-SECRET-2@influx:8086\"\norg = \"o\"\nbucket = \"b\"\ntoken = \"Tk-SECRET-3-abcdefgh\"\n",
            vec![],
        ),
        (
            "[timeseries]\nkind = \"influxdb1\"\nurl = \"http://influx:8086/?password=Tq-SECRET-4\"\ndatabase = \"d\"\n",
            vec![],
        ),
        (
            "[mqtt]\nurl = \"gw:Mq-SECRET-5@10.0.0.1:1883\"\n",
            vec![],
        ),
        // A type error on a secret names the value it did not like.
        (
            "[[users.seed]]\nname = \"admin\"\nrole = \"admin\"\npassword = 87654321987\n",
            vec![],
        ),
        (
            "[[http.tokens]]\nname = \"x\"\nrole = \"operator\"\ntoken = [\"Ar-SECRET-6\"]\n",
            vec![],
        ),
        (
            "",
            vec![(
                "CAMPUSGUARD_TICKETS__DATABASE_URL",
                "mysql://u:Env-SECRET-7@h/db",
            )],
        ),
        (
            "[mqtt]\ninflight = 1\n",
            vec![("CAMPUSGUARD_MQTT__PASSWORD", "[\"Env-SECRET-8\"]")],
        ),
    ];
    for (text, env) in cases {
        let err = load(text, &env).expect_err(text).to_string();
        for secret in [
            "SECRET-1",
            "SECRET-2",
            "SECRET-3",
            "SECRET-4",
            "SECRET-5",
            "87654321987",
            "SECRET-6",
            "SECRET-7",
            "SECRET-8",
        ] {
            assert!(!err.contains(secret), "{secret} echoed for {text:?}: {err}");
        }
        assert!(!err.trim().is_empty());
    }
}

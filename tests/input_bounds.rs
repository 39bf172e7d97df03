//! Bounds on what devices may send, over real MQTT into a whole gateway: school and device ids
//! outside `[A-Za-z0-9_-]{1,64}` are bad topics, a timestamp more than a day ahead is refused,
//! MQTT traffic for a device the config polls over Modbus is refused (`source_mismatch`) and
//! raises nothing, and an unregistered device cannot invent more points than the cap. Every
//! refusal is counted by reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::*;

const POINTS_CAP: usize = 4;

fn extra_toml(modbus_port: u16) -> String {
    format!(
        r#"
[pipeline]
max_points_per_unregistered_device = {POINTS_CAP}

[[devices]]
id = "room-1"
school = "xhsy"
profile = "test_room"

# Polled over Modbus (nothing answers on this port; the device just stays offline).
[[modbus.devices]]
id = "mb-1"
school = "xhsy"
profile = "test_cabinet"
transport = "tcp"
address = "127.0.0.1:{modbus_port}"
unit = 1
interval = "1s"
timeout = "200ms"
points = [
  {{ name = "lel_pct", table = "holding", address = 4, type = "i32", scale = 0.001 }},
]
"#
    )
}

async fn rejected(gw: &TestGateway, reason: &str) -> f64 {
    gw.metric(&format!(
        "campusguard_rejected_total{{reason=\"{reason}\"}}"
    ))
    .await
}

async fn wait_for_count(gw: &TestGateway, reason: &str, want: f64) {
    let mut last = 0.0;
    for _ in 0..250 {
        last = rejected(gw, reason).await;
        if last >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(last, want, "rejected{{reason={reason}}}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_timestamps_modbus_devices_and_invented_points_are_bounded_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::embedded("bounds", dir.path());
    setup.extra_toml = extra_toml(free_port());
    let gw = TestGateway::start(&setup).await;
    let dev = Device::connect(gw.mqtt_port, &unique("bounds-dev")).await;

    // Ids: too long, a space, a dot, a non-ASCII letter, a control character.
    let long = "d".repeat(65);
    for (school, device) in [
        ("xhsy", long.as_str()),
        (long.as_str(), "room-1"),
        ("xhsy", "room 1"),
        ("xhsy", "room.1"),
        ("学校", "room-1"),
        ("xhsy", "room\u{7}1"),
    ] {
        dev.publish(&gw.topic(school, device, "telemetry"), r#"{"temp_c":45}"#)
            .await;
    }
    wait_for_count(&gw, "bad_topic", 6.0).await;
    // The longest id allowed is fine (an unregistered device, listed).
    let ok = "d".repeat(64);
    dev.publish(&gw.topic("xhsy", &ok, "telemetry"), r#"{"temp_c":20}"#)
        .await;

    // Timestamps: two days ahead is refused; an hour ahead (a device clock a bit fast) is kept.
    let now = campusguard::model::now_ms();
    let ahead = |ms: i64| format!(r#"{{"ts":{},"temp_c":45}}"#, now + ms);
    dev.publish(
        &gw.topic("xhsy", "room-1", "telemetry"),
        ahead(2 * 24 * 3_600_000),
    )
    .await;
    wait_for_count(&gw, "bad_timestamp", 1.0).await;
    dev.publish(&gw.topic("xhsy", "room-1", "telemetry"), ahead(3_600_000))
        .await;

    // A Modbus device's name over MQTT: readings, single points, status and meta are refused.
    for (kind, payload) in [
        ("telemetry", r#"{"lel_pct":45}"#),
        ("telemetry/lel_pct", "45"),
        ("status", "online"),
        ("meta", r#"{"profile":"test_cabinet"}"#),
    ] {
        dev.publish(&gw.topic("xhsy", "mb-1", kind), payload).await;
    }
    wait_for_count(&gw, "source_mismatch", 4.0).await;

    // An unregistered device with ten invented points keeps the first four.
    let many: Vec<String> = (0..10).map(|i| format!(r#""p{i}":{i}"#)).collect();
    dev.publish(
        &gw.topic("xhsy", "stray-1", "telemetry"),
        format!("{{{}}}", many.join(",")),
    )
    .await;
    wait_for_count(&gw, "too_many_points", 6.0).await;
    dev.publish(&gw.topic("xhsy", "stray-1", "telemetry"), r#"{"p1":7}"#)
        .await;

    let sensors = eventually(
        "the readings that were kept",
        Duration::from_secs(5),
        || {
            let gw = &gw;
            async move {
                let (_, sensors) = gw.get_json("/api/v1/sensors", Some(OPERATOR_TOKEN)).await;
                let list = sensors.as_array()?.clone();
                let p1 = list
                    .iter()
                    .find(|s| s["sensor"] == "xhsy/stray-1/p1")
                    .map(|s| s["value"].clone());
                (p1 == Some(serde_json::json!(7.0))).then_some(list)
            }
        },
    )
    .await;
    let paths: Vec<&str> = sensors
        .iter()
        .filter_map(|s| s["sensor"].as_str())
        .collect();
    let stray = paths.iter().filter(|p| p.contains("/stray-1/")).count();
    assert_eq!(stray, POINTS_CAP, "{paths:?}");
    assert!(
        paths.contains(&format!("xhsy/{ok}/temp_c").as_str()),
        "{paths:?}"
    );
    assert!(paths.contains(&"xhsy/room-1/temp_c"), "{paths:?}");
    assert!(!paths.iter().any(|p| p.contains("mb-1")), "{paths:?}");
    assert!(!paths.iter().any(|p| p.contains(&long)), "{paths:?}");
    // The hour-ahead reading is the live value; the refused one never was.
    let room = sensors
        .iter()
        .find(|s| s["sensor"] == "xhsy/room-1/temp_c")
        .unwrap();
    assert!(room["ts"].as_i64().unwrap() < now + 2 * 3_600_000, "{room}");
    // Nothing of the Modbus device's spoofed readings raised an alarm.
    let (_, alarms) = gw
        .get_json("/api/v1/alarms?state=all", Some(OPERATOR_TOKEN))
        .await;
    let spoofed = alarms
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["device"] == "mb-1" && a["rule"] == "lel_high")
        .count();
    assert_eq!(spoofed, 0, "{alarms}");
    drop(dev);
    gw.stop().await;
}

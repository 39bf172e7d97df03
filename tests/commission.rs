//! Commissioning from the console end to end: an unregistered device registered over the API
//! raises an alarm by its new profile on its next reading, without a restart; an override
//! changes the threshold at once; every change is audited (who, before, after); the device is
//! registered again after a restart; config-file devices are read-only; roles and school
//! scope are enforced; decommissioning clears its condition and makes it unregistered again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const SCHOOL: &str = "xhsy";
const ADMIN: &str = "test-commission-admin-token-0123";
const LAB_MANAGER: &str = "test-commission-labmgr-token-012";

fn extra_toml() -> String {
    format!(
        r#"
[[http.tokens]]
name = "admin-1"
token = "{ADMIN}"
role = "admin"

[[http.tokens]]
name = "lab-manager-xhsy"
token = "{LAB_MANAGER}"
role = "lab_manager"
schools = ["{SCHOOL}"]

[[devices]]
id = "room-1"
school = "{SCHOOL}"
profile = "test_room"
"#
    )
}

async fn send(
    gw: &TestGateway,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method.parse().unwrap(), gw.url(path))
        .bearer_auth(token)
        .timeout(Duration::from_secs(20));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The open `temp_high` alarm of `device`, once it satisfies `ok`.
async fn alarm_of(
    gw: &TestGateway,
    device: &str,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    eventually(what, Duration::from_secs(10), || {
        let ok = &ok;
        async move {
            let (_, alarms) = gw.get_json("/api/v1/alarms", Some(OPERATOR_TOKEN)).await;
            alarms
                .as_array()?
                .iter()
                .find(|a| a["device"] == device && a["rule"] == "temp_high" && ok(a))
                .cloned()
        }
    })
    .await
}

async fn device_entry(gw: &TestGateway, device: &str) -> Option<Value> {
    let (_, devices) = gw.get_json("/api/v1/devices", Some(OPERATOR_TOKEN)).await;
    devices
        .as_array()?
        .iter()
        .find(|d| d["id"] == device)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_registered_from_the_console_raises_alarms_at_once_and_overrides_apply_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::mosquitto("commission", dir.path());
    setup.extra_toml = extra_toml();
    let gw = TestGateway::start(&setup).await;
    let dev = Device::connect(gw.mqtt_port, &unique("commission-dev")).await;
    let telemetry = gw.topic(SCHOOL, "new-1", "telemetry");

    // Heard from, but unregistered: no rules apply.
    dev.publish(&telemetry, r#"{"temp_c":45}"#).await;
    eventually(
        "the unregistered device",
        Duration::from_secs(10),
        || async {
            let d = device_entry(&gw, "new-1").await?;
            (d["registration"] == "unregistered").then_some(())
        },
    )
    .await;

    // Roles and scope: an operator may not, a lab manager not for another school.
    let new_device = json!({"school": SCHOOL, "device": "new-1", "profile": "test_room",
        "building": "实验楼", "room": "301", "name": "三楼实验室"});
    let (status, _) = send(
        &gw,
        "POST",
        "/api/v1/devices",
        OPERATOR_TOKEN,
        Some(new_device.clone()),
    )
    .await;
    assert_eq!(status, 403);
    let elsewhere = json!({"school": "dfzx", "device": "new-1", "profile": "test_room"});
    let (status, _) = send(&gw, "POST", "/api/v1/devices", LAB_MANAGER, Some(elsewhere)).await;
    assert_eq!(status, 403);
    // Unknown profile, unknown rule in an override: refused, nothing registered.
    let bad = json!({"school": SCHOOL, "device": "new-1", "profile": "no_such_profile"});
    let (status, body) = send(&gw, "POST", "/api/v1/devices", ADMIN, Some(bad)).await;
    assert_eq!(status, 400, "{body}");
    let bad = json!({"school": SCHOOL, "device": "new-1", "profile": "test_room",
        "overrides": {"no_such_rule": {"alarm": 1.0}}});
    let (status, body) = send(&gw, "POST", "/api/v1/devices", ADMIN, Some(bad)).await;
    assert_eq!(status, 400, "{body}");
    // A config-file device is read-only.
    let config_device = json!({"school": SCHOOL, "device": "room-1", "profile": "test_room"});
    let (status, body) = send(&gw, "POST", "/api/v1/devices", ADMIN, Some(config_device)).await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = send(
        &gw,
        "PATCH",
        "/api/v1/devices/xhsy/room-1",
        ADMIN,
        Some(json!({"room": "2"})),
    )
    .await;
    assert_eq!(status, 409);
    let (status, _) = send(&gw, "DELETE", "/api/v1/devices/xhsy/room-1", ADMIN, None).await;
    assert_eq!(status, 409);
    assert_eq!(
        device_entry(&gw, "new-1").await.unwrap()["registration"],
        "unregistered"
    );

    // The lab manager of the school registers it.
    let (status, body) = send(
        &gw,
        "POST",
        "/api/v1/devices",
        LAB_MANAGER,
        Some(new_device.clone()),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["registration"], "console");
    assert_eq!(body["building"], "实验楼");
    let (status, _) = send(&gw, "POST", "/api/v1/devices", ADMIN, Some(new_device)).await;
    assert_eq!(status, 409, "registered twice");

    // Its next reading is judged by the profile: 35 °C is a warning (30), not yet an alarm (40).
    dev.publish(&telemetry, r#"{"temp_c":35}"#).await;
    let alarm = alarm_of(&gw, "new-1", "a warning by the new profile", |a| {
        a["severity"] == "warning"
    })
    .await;
    assert_eq!(alarm["class"], "supervisory");

    // An override lowers the alarm level to 33: the next 35 is an alarm, at once.
    let overrides = json!({"temp_high": {"alarm": 33.0}});
    let (status, body) = send(
        &gw,
        "PUT",
        "/api/v1/devices/xhsy/new-1/overrides",
        ADMIN,
        Some(overrides.clone()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["overrides"], overrides);
    let (status, body) = send(
        &gw,
        "PUT",
        "/api/v1/devices/xhsy/new-1/overrides",
        ADMIN,
        Some(json!({"temp_high": {"alarm": "high"}})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    dev.publish(&telemetry, r#"{"temp_c":35.5}"#).await;
    let alarm = alarm_of(&gw, "new-1", "an alarm by the override", |a| {
        a["severity"] == "alarm"
    })
    .await;
    assert_eq!(alarm["threshold"], 33.0);

    // Edit: the room changes, at once in the device list.
    let (status, body) = send(
        &gw,
        "PATCH",
        "/api/v1/devices/xhsy/new-1",
        ADMIN,
        Some(json!({"room": "302"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(device_entry(&gw, "new-1").await.unwrap()["room"], "302");

    // The audit: who, what, before and after.
    let (status, audit) = send(
        &gw,
        "GET",
        "/api/v1/devices/xhsy/new-1/audit",
        OPERATOR_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let audit = audit["audit"].as_array().unwrap().clone();
    let actions: Vec<&str> = audit
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["register", "overrides", "edit"]);
    assert_eq!(audit[0]["user"], "lab-manager-xhsy");
    assert!(audit[0]["before"].is_null());
    assert_eq!(audit[0]["after"]["info"]["profile"], "test_room");
    assert_eq!(audit[1]["user"], "admin-1");
    assert_eq!(audit[1]["before"]["overrides"], json!({}));
    assert_eq!(audit[1]["after"]["overrides"], overrides);
    assert_eq!(audit[2]["before"]["info"]["room"], "301");
    assert_eq!(audit[2]["after"]["info"]["room"], "302");
    assert!(audit.iter().all(|e| e["at"].as_i64().unwrap() > 0));

    // After a restart it is registered again, with its override.
    drop(dev);
    gw.stop().await;
    let gw = TestGateway::start(&setup).await;
    let entry = device_entry(&gw, "new-1")
        .await
        .expect("commissioned device after restart");
    assert_eq!(entry["registration"], "console");
    assert_eq!(entry["room"], "302");
    let dev = Device::connect(gw.mqtt_port, &unique("commission-dev2")).await;
    dev.publish(&telemetry, r#"{"temp_c":20}"#).await;
    alarm_of(&gw, "new-1", "the alarm back to normal", |a| {
        a["condition_active"] == false
    })
    .await;

    // Decommissioned: its readings are unregistered again, and audited.
    dev.publish(&telemetry, r#"{"temp_c":35.5}"#).await;
    alarm_of(&gw, "new-1", "the alarm again", |a| {
        a["condition_active"] == true
    })
    .await;
    let (status, body) = send(&gw, "DELETE", "/api/v1/devices/xhsy/new-1", ADMIN, None).await;
    assert_eq!(status, 200, "{body}");
    alarm_of(&gw, "new-1", "its condition cleared", |a| {
        a["condition_active"] == false
    })
    .await;
    dev.publish(&telemetry, r#"{"temp_c":45}"#).await;
    eventually("unregistered again", Duration::from_secs(10), || async {
        let d = device_entry(&gw, "new-1").await?;
        (d["registration"] == "unregistered").then_some(())
    })
    .await;
    let (_, audit) = send(&gw, "GET", "/api/v1/devices/xhsy/new-1/audit", ADMIN, None).await;
    let last = audit["audit"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "decommission");
    assert!(last["after"].is_null());
    let (status, _) = send(&gw, "DELETE", "/api/v1/devices/xhsy/new-1", ADMIN, None).await;
    assert_eq!(status, 404);
    drop(dev);
    gw.stop().await;
}

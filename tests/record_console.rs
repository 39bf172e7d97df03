//! The control room's record in a real browser (`tests/console/record_pages.mjs`, Playwright
//! with Debian's Chromium): an admin registers an unregistered device from the devices page
//! and its next reading raises an alarm by its new profile, without a restart; an override
//! edited there changes the threshold at once and appears in the audit; the history page
//! lists and exports the alarm. Screenshots land in `target/console-artifacts/` (or
//! `$CG_CONSOLE_ARTIFACTS`).
//!
//! Needs `node`, `/usr/bin/chromium` and `npm ci` in `tests/console` (done here when missing).
//! Outside CI the test is skipped when node or Chromium is absent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const EXTRA: &str = r#"
[[users.seed]]
name = "admin.record"
role = "admin"
password = "record-admin-pass-1"

[[devices]]
id = "room-1"
school = "xhsy"
profile = "test_room"
"#;

/// The open `temp_high` alarm of new-1, once `ok` holds for it.
async fn alarm_of(gw: &TestGateway, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    eventually(what, Duration::from_secs(10), || {
        let ok = &ok;
        async move {
            let (_, alarms) = gw.get_json("/api/v1/alarms", Some(OPERATOR_TOKEN)).await;
            alarms
                .as_array()?
                .iter()
                .find(|a| a["device"] == "new-1" && a["rule"] == "temp_high" && ok(a))
                .cloned()
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_commissions_a_device_and_edits_its_threshold_in_the_console() {
    if let Err(why) = browser_ready() {
        if std::env::var_os("CI").is_some() {
            panic!("browser tests need their tools in CI: {why}");
        }
        eprintln!("SKIPPED record console browser test: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::embedded("record-console", dir.path());
    setup.extra_toml = EXTRA.into();
    let gw = TestGateway::start(&setup).await;
    let dev = Device::connect(gw.mqtt_port, &unique("record-console-dev")).await;
    let topic = gw.topic("xhsy", "new-1", "telemetry");
    // Heard from, unregistered: 45 °C raises nothing.
    dev.publish(&topic, r#"{"temp_c":45}"#).await;
    gw.wait_until(Duration::from_secs(10), || async {
        let (_, devices) = gw.get_json("/api/v1/devices", Some(OPERATOR_TOKEN)).await;
        devices
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["id"] == "new-1"))
    })
    .await;

    let mut script = BrowserScript::start(
        "record_pages.mjs",
        &[
            format!("http://{}", gw.http),
            console_artifacts().display().to_string(),
        ],
        &[(
            "CG_USER",
            json!({"name": "admin.record", "password": "record-admin-pass-1"}).to_string(),
        )],
    );
    let run = async {
        while let Some(line) = script.next_line().await {
            if line == "NEED reading 35" {
                // Registered in the console: the next reading is judged by test_room at once,
                // 35 °C is a warning (30) below the alarm level (40).
                dev.publish(&topic, r#"{"temp_c":35}"#).await;
                let alarm = alarm_of(&gw, "a warning by the new profile", |a| {
                    a["severity"] == "warning"
                })
                .await;
                assert_eq!(alarm["class"], "supervisory");
                script.answer("done").await;
            }
            if line == "NEED reading 35.5" {
                // The override (alarm 33) edited in the console holds for the next reading.
                dev.publish(&topic, r#"{"temp_c":35.5}"#).await;
                let alarm = alarm_of(&gw, "an alarm by the override", |a| {
                    a["severity"] == "alarm"
                })
                .await;
                assert_eq!(alarm["threshold"], 33.0);
                script.answer("done").await;
            }
        }
        script.finish().await;
    };
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the browser test finishes within 120 s");
    // The audit names the console user.
    let (_, audit) = gw
        .get_json("/api/v1/devices/xhsy/new-1/audit", Some(OPERATOR_TOKEN))
        .await;
    let actions: Vec<&str> = audit["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["register", "overrides"]);
    assert_eq!(audit["audit"][1]["user"], "admin.record");
    drop(dev);
    gw.stop().await;
}

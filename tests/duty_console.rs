//! The duty log in a real browser (`tests/console/duty_page.mjs`, Playwright with Debian's
//! Chromium): an operator signs on in the console, a fire is raised and acknowledged, then
//! reset as a real fire and its incident report filed, the
//! day's duty log lists it, the print layout hides the console and prints A4, the handover
//! notes are shown for the next shift, and a fire raised with nobody on duty carries the
//! unattended badge on the board. Screenshots land in `target/console-artifacts/` (or
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
name = "op.duty"
role = "operator"
password = "duty-operator-pass-1"

[[schools]]
id = "xhsy"
name = "新华实验小学"

[[devices]]
id = "det-1"
school = "xhsy"
profile = "test_room"
building = "实验楼"

[[devices]]
id = "det-2"
school = "xhsy"
profile = "test_room"
building = "教学楼"

[[duty.rooms]]
name = "中控室"
schools = ["xhsy"]
staff_per_shift = 2
"#;

/// The open `temp_fire` alarm of `device`.
async fn fire_of(gw: &TestGateway, device: &str) -> Value {
    fire_where(gw, device, "the fire on the board", |_| true).await
}

/// The `temp_fire` alarm of `device` once its condition has cleared (latched, resettable).
async fn cleared_of(gw: &TestGateway, device: &str) -> Value {
    fire_where(gw, device, "the fire's condition cleared", |a| {
        a["condition_active"] == false
    })
    .await
}

async fn fire_where(
    gw: &TestGateway,
    device: &str,
    what: &str,
    ok: impl Fn(&Value) -> bool + Copy,
) -> Value {
    eventually(what, Duration::from_secs(10), || async move {
        let (_, alarms) = gw.get_json("/api/v1/alarms", Some(OPERATOR_TOKEN)).await;
        alarms
            .as_array()?
            .iter()
            .find(|a| a["device"] == device && a["rule"] == "temp_fire" && ok(a))
            .cloned()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_on_handles_a_fire_and_prints_the_days_duty_log() {
    if let Err(why) = browser_ready() {
        if std::env::var_os("CI").is_some() {
            panic!("browser tests need their tools in CI: {why}");
        }
        eprintln!("SKIPPED duty console browser test: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::embedded("duty-console", dir.path());
    setup.extra_toml = EXTRA.into();
    let gw = TestGateway::start(&setup).await;
    let dev = Device::connect(gw.mqtt_port, &unique("duty-console-dev")).await;

    let mut script = BrowserScript::start(
        "duty_page.mjs",
        &[
            format!("http://{}", gw.http),
            console_artifacts().display().to_string(),
        ],
        &[(
            "CG_USER",
            json!({"name": "op.duty", "password": "duty-operator-pass-1"}).to_string(),
        )],
    );
    let mut fires = Vec::new();
    let run = async {
        while let Some(line) = script.next_line().await {
            if let Some(device) = line.strip_prefix("NEED fire ") {
                dev.publish(&gw.topic("xhsy", device, "telemetry"), r#"{"temp_c":65}"#)
                    .await;
                fires.push(fire_of(&gw, device).await);
                script.answer("done").await;
            }
            if let Some(device) = line.strip_prefix("NEED normal ") {
                dev.publish(&gw.topic("xhsy", device, "telemetry"), r#"{"temp_c":21}"#)
                    .await;
                cleared_of(&gw, device).await;
                script.answer("done").await;
            }
        }
        script.finish().await;
    };
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the browser test finishes within 120 s");
    // The API agrees with what the browser showed: the first fire attended, the second not.
    assert_eq!(fires.len(), 2);
    assert_eq!(fires[0]["unattended"], false);
    assert_eq!(fires[1]["unattended"], true);
    // The console user signed on and off with the notes.
    let (_, now) = gw
        .get_json("/api/v1/duty/shifts", Some(OPERATOR_TOKEN))
        .await;
    let last_handover = &now["rooms"][0]["last_handover"];
    assert_eq!(last_handover["user"], "op.duty");
    assert_eq!(last_handover["display_name"], "李明");
    assert!(last_handover["notes"]
        .as_str()
        .unwrap()
        .contains("门锁松动"));
    // The fire reset as real left one submitted incident report, as the console filed it.
    let (status, list) = gw
        .get_json(
            &format!("/api/v1/incidents?alarm_id={}", fires[0]["id"]),
            Some(OPERATOR_TOKEN),
        )
        .await;
    assert_eq!(status, 200, "{list}");
    let reports = list["incidents"].as_array().unwrap();
    assert_eq!(reports.len(), 1, "{list}");
    assert_eq!(reports[0]["status"], "submitted", "{list}");
    assert_eq!(reports[0]["reported_119_by"], "李明", "{list}");
    drop(dev);
    gw.stop().await;
}

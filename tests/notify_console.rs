//! The link in a notification, on a phone: a gateway notifies a webhook (the receiver in this
//! test) of a fire; the link from the received message is opened by Chromium at 375×812
//! (`tests/console/alarm_page.mjs`), which logs in, comes back to the alarm's page and
//! acknowledges it there — and the next escalation step is never sent. Screenshots land in
//! `target/console-artifacts/` (or `$CG_CONSOLE_ARTIFACTS`).
//!
//! Needs `node`, `/usr/bin/chromium` and `npm ci` in `tests/console` (done here when missing).
//! Outside CI the test is skipped when node or Chromium is absent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/receiver.rs"]
mod receiver;
mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;
use tokio_util::sync::CancellationToken;

/// Step 2 comes this long after the raise, unless someone acknowledges first.
const STEP_TWO: Duration = Duration::from_secs(25);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_in_a_message_opens_the_alarm_on_a_phone_and_acknowledging_there_stops_the_next_step(
) {
    if let Err(why) = browser_ready() {
        if std::env::var_os("CI").is_some() {
            panic!("browser tests need their tools in CI: {why}");
        }
        eprintln!("SKIPPED alarm page browser test: {why}");
        return;
    }
    let rx = receiver::Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let mut setup = Setup::embedded("notify-console", dir.path());
    setup.extra_toml = format!(
        r#"
[[devices]]
id = "room-1"
school = "xhsy"
profile = "test_room"
building = "教学楼A"
room = "201"

[[users.seed]]
name = "op.night"
role = "operator"
password = "night-shift-pass-1"

[notify]
console_url = "http://127.0.0.1:{http}/"

[[notify.channels]]
name = "duty"
kind = "webhook"
url = "{duty}"

[[notify.channels]]
name = "principal"
kind = "webhook"
url = "{principal}"

[[notify.routes]]
classes = ["fire"]
after = "0s"
channels = ["duty"]

[[notify.routes]]
classes = ["fire"]
after = "{step_two}s"
channels = ["principal"]
"#,
        duty = rx.url("/webhook/duty"),
        principal = rx.url("/webhook/principal"),
        step_two = STEP_TWO.as_secs(),
    );
    let mut config = setup.config();
    config.http.listen = ([127, 0, 0, 1], http).into();
    let shutdown = CancellationToken::new();
    let gateway = campusguard::start(config, shutdown.clone()).await.unwrap();
    let mqtt_ok = Instant::now() + Duration::from_secs(10);
    while gateway.metrics.mqtt_connected.get() != 1 {
        assert!(Instant::now() < mqtt_ok, "gateway connects to its broker");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dev = Device::connect(setup.mqtt_port, &unique("notify-console-dev")).await;
    let topic = format!("{}/xhsy/room-1/telemetry", setup.prefix);
    for temp in [24.0, 25.0, 31.0] {
        dev.publish(&topic, format!(r#"{{"temp_c":{temp}}}"#)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    dev.publish(&topic, r#"{"temp_c":82.0}"#).await;
    let raised_at = Instant::now();
    rx.wait_for("the duty room's message", Duration::from_secs(10), |got| {
        got.iter().any(|g| g.path == "/webhook/duty")
    })
    .await;
    let message = rx.got_by("/webhook/duty").remove(0);
    let id = message.body["id"].as_u64().unwrap();
    let link = message.body["notification"]["link"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(link, format!("http://127.0.0.1:{http}/#/alarms/{id}"));
    // Let the note of the delivery reach the journal before the page reads it.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let artifacts = std::env::var_os("CG_CONSOLE_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/console-artifacts"));
    let out = tokio::process::Command::new("node")
        .arg(repo().join("tests/console/alarm_page.mjs"))
        .arg(&link)
        .arg(&artifacts)
        .env(
            "CG_USER",
            json!({"name": "op.night", "password": "night-shift-pass-1"}).to_string(),
        )
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("the browser test finishes within a minute")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines() {
        println!("[browser] {line}");
    }
    assert!(
        out.status.success() && stdout.contains("3 passed, 0 failed")
            || stdout.contains("4 passed, 0 failed"),
        "browser test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        raised_at.elapsed() < STEP_TWO,
        "the acknowledgement must come before step 2 for this test to mean anything"
    );

    // The acknowledgement made on the phone is the alarm's.
    let client = reqwest::Client::new();
    let alarm: serde_json::Value = client
        .get(format!("http://127.0.0.1:{http}/api/v1/alarms/{id}"))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(alarm["state"], "active_acked", "{alarm}");
    assert_eq!(alarm["acked_by"], "op.night");
    assert_eq!(alarm["ack_comment"], "值班员已到现场，确认为实验加热");
    // Past the time of step 2: the principal was never told.
    if let Some(wait) = (STEP_TWO + Duration::from_secs(2)).checked_sub(raised_at.elapsed()) {
        tokio::time::sleep(wait).await;
    }
    assert!(
        rx.got_by("/webhook/principal").is_empty(),
        "step 2 went out after the acknowledgement"
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), gateway.wait())
        .await
        .expect("gateway stops");
}

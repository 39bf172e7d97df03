//! The web console in a real browser: starts a whole gateway in-process (embedded broker,
//! console users seeded from config), publishes chemical-cabinet readings over MQTT, and runs
//! the Playwright suite `tests/console/run.mjs` against it with Debian's Chromium. The suite
//! asks for a fire over its stdout (`NEED fire`); this test publishes it over MQTT and answers
//! on its stdin. Screenshots land in `target/console-artifacts/`.
//!
//! Needs `node`, `/usr/bin/chromium` and `npm ci` in `tests/console` (done here when
//! `node_modules` is missing). Outside CI the test is skipped when node or Chromium is absent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const OWN: &str = "cga";
const OTHER: &str = "cgb";

fn users_toml() -> String {
    format!(
        r#"
[[users.seed]]
name = "op.li"
role = "operator"
password = "operator-pass-1"

[[users.seed]]
name = "lab.wang"
role = "lab_manager"
schools = ["{OWN}"]
password = "lab-pass-12345"

[[users.seed]]
name = "safety.zhao"
role = "school_safety"
schools = ["{OWN}"]
password = "safety-pass-123"

[[users.seed]]
name = "bureau.chen"
role = "bureau"
password = "bureau-pass-123"

[[users.seed]]
name = "admin"
role = "admin"
password = "admin-pass-1234"
"#
    )
}

fn users_json() -> serde_json::Value {
    json!({
        "operator": {"name": "op.li", "password": "operator-pass-1"},
        "lab": {"name": "lab.wang", "password": "lab-pass-12345", "school": OWN},
        "safety": {"name": "safety.zhao", "password": "safety-pass-123", "school": OWN},
        "bureau": {"name": "bureau.chen", "password": "bureau-pass-123"},
        "admin": {"name": "admin", "password": "admin-pass-1234"},
    })
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether the browser toolchain is here; installs the npm package when only it is missing.
fn browser_ready() -> Result<(), String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Err(format!("{chromium} not found (apt-get install -y chromium)"));
    }
    let node = std::process::Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Err("node not found".into());
    }
    let dir = repo().join("tests/console");
    if !dir.join("node_modules/playwright-core").exists() {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .map_err(|e| format!("npm ci: {e}"))?;
        if !status.success() {
            return Err("npm ci in tests/console failed".into());
        }
    }
    Ok(())
}

async fn announce(gw: &TestGateway, dev: &Device, school: &str, id: &str, meta: &str) {
    dev.publish_retained(&gw.topic(school, id, "meta"), meta.to_string())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_uses_the_console_in_a_real_browser() {
    if let Err(why) = browser_ready() {
        if std::env::var_os("CI").is_some() {
            panic!("browser tests need their tools in CI: {why}");
        }
        eprintln!("SKIPPED console browser tests: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::embedded("console", dir.path());
    setup.extra_toml = users_toml();
    let gw = TestGateway::start(&setup).await;
    let dev = Device::connect(gw.mqtt_port, &unique("console-dev")).await;

    let cabinet = |name: &str| {
        format!(r#"{{"profile":"chem_cabinet","building":"实验楼","room":"301","name":"{name}"}}"#)
    };
    announce(&gw, &dev, OWN, "cab-1", &cabinet("危化品柜1")).await;
    announce(&gw, &dev, OWN, "cab-2", &cabinet("危化品柜2")).await;
    announce(&gw, &dev, OTHER, "cab-9", &cabinet("其他学校柜")).await;
    announce(
        &gw,
        &dev,
        OWN,
        "heat-a201",
        r#"{"profile":"heat_detector","building":"教学楼A","room":"201","name":"教室201感温"}"#,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    dev.publish(&gw.topic(OWN, "heat-a201", "telemetry"), r#"{"temp_c":24.0}"#)
        .await;

    // Six hours of cabinet history, one reading every 20 minutes, then the current values.
    let now = campusguard::model::now_ms();
    for (school, id) in [(OWN, "cab-1"), (OWN, "cab-2"), (OTHER, "cab-9")] {
        let topic = gw.topic(school, id, "telemetry");
        for i in (1..=18).rev() {
            let ts = now - i * 20 * 60_000;
            let temp = 21.0 + ((i % 6) as f64) * 0.7;
            dev.publish(&topic, format!(r#"{{"ts":{ts},"temp_c":{temp}}}"#))
                .await;
        }
        dev.publish(
            &topic,
            r#"{"temp_c":23.4,"rh_pct":41.5,"voc_ppm":0.8,"lel_pct":2,"fan_on":true,"airflow_mps":0.6,"door_open":false}"#,
        )
        .await;
    }
    // Cabinet 2 leaks flammable gas: a gas alarm, acknowledged so it does not ring.
    let mut stream = AlarmStream::open(&gw, OPERATOR_TOKEN).await;
    dev.publish(&gw.topic(OWN, "cab-2", "telemetry"), r#"{"lel_pct":31}"#)
        .await;
    let gas = stream
        .next_matching(Duration::from_secs(5), |e| {
            e["transition"] == "raised" && e["rule"] == "lel_high"
        })
        .await;
    let (status, _) = gw
        .post_json(
            &format!("/api/v1/alarms/{}/ack", gas["id"]),
            Some(OPERATOR_TOKEN),
            json!({"comment": "通风处理中"}),
        )
        .await;
    assert_eq!(status, 200);
    // Let the history writer flush.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let artifacts = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("target"))
        .join("console-artifacts");
    let fixture = json!({
        "fire_sensor": format!("{OWN}/heat-a201/temp_c"),
        "fire_rule": "heat_fixed",
        "own_cabinet": format!("{OWN}/cab-1"),
        "alarmed_cabinet": format!("{OWN}/cab-2"),
        "other_cabinet": format!("{OTHER}/cab-9"),
    });
    let mut child = tokio::process::Command::new("node")
        .arg(repo().join("tests/console/run.mjs"))
        .arg(format!("http://{}", gw.http))
        .arg(&artifacts)
        .env("CG_USERS", users_json().to_string())
        .env("CG_FIXTURE", fixture.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut last = String::new();
    let run = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            println!("[browser] {line}");
            if line == "NEED fire" {
                dev.publish(&gw.topic(OWN, "heat-a201", "telemetry"), r#"{"temp_c":82.0}"#)
                    .await;
                stdin.write_all(b"fire published\n").await.unwrap();
                stdin.flush().await.unwrap();
            }
            if !line.trim().is_empty() {
                last = line;
            }
        }
        child.wait().await.unwrap()
    };
    let status = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the browser suite finishes within 240 s");
    println!("screenshots in {}", artifacts.display());
    assert!(status.success(), "browser suite failed: {last}");
    assert!(last.ends_with(" 0 failed"), "{last}");
    gw.stop().await;
}

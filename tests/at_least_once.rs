//! At-least-once ingest: a QoS 1 message is acknowledged only after its readings are committed,
//! so a `kill -9` mid-stream loses nothing: the broker redelivers what was not acknowledged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(config: &std::path::Path) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_campusguard"))
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info,rumqttd=warn")
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(config.with_file_name("gateway.log"))
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        Self { child }
    }

    fn kill9(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_ready(http: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{http}/readyz")).await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gateway not ready within 15 s");
}

#[tokio::test]
async fn kill_9_mid_stream_loses_no_qos1_reading() {
    // A broker set up as the README asks of a deployment: the queue of the gateway's persistent
    // session must not drop messages while the gateway is down or catching up.
    let broker = PrivateMosquitto::start("max_queued_messages 0\nmax_inflight_messages 100");
    let port = broker.port;
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("alo");
    let client_id = format!("{prefix}-gw");
    let http = free_port();
    std::fs::write(dir.path().join("profiles.toml"), TEST_PROFILES).unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[mqtt]
url = "mqtt://127.0.0.1:{port}"
client_id = "{client_id}"
clean_session = false
topic_prefix = "{prefix}"
reconnect_min = "100ms"
reconnect_max = "500ms"

[http]
listen = "127.0.0.1:{http}"
public_read = true

[storage]
data_dir = "{data}"

[rules]
profiles_file = "profiles.toml"
"#,
            data = dir.path().join("data").display(),
        ),
    )
    .unwrap();

    let mut gateway = Daemon::start(&config);
    wait_ready(http).await;
    // Let the subscriptions settle.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let dev = Device::connect(port, &unique("alo-dev")).await;
    let topic = format!("{prefix}/xhsy/room-1/telemetry");
    dev.publish_retained(
        &format!("{prefix}/xhsy/room-1/meta"),
        r#"{"profile":"test_room"}"#,
    )
    .await;
    const N: i64 = 3000;
    // Recent device time: the local history prunes readings older than its retention.
    let base = campusguard::model::now_ms() - 600_000;
    let mut killed_at = None;
    for i in 0..N {
        dev.publish(
            &topic,
            format!(r#"{{"ts":{},"temp_c":{}}}"#, base + i, i % 25),
        )
        .await;
        if i == N / 3 {
            // Mid-stream: no flush, no graceful anything.
            gateway.kill9();
            killed_at = Some(i);
            gateway = Daemon::start(&config);
        }
        if i % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }
    assert!(killed_at.is_some());
    wait_ready(http).await;

    let url = format!(
        "http://127.0.0.1:{http}/api/v1/sensors/xhsy/room-1/temp_c/history?from={base}&to={}&limit=100000",
        base + N
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut distinct = BTreeSet::new();
    while Instant::now() < deadline {
        let body: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
        distinct = body["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["ts"].as_i64().unwrap())
            .collect();
        if distinct.len() as i64 == N {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let missing: Vec<i64> = (0..N)
        .filter(|i| !distinct.contains(&(base + i)))
        .take(10)
        .collect();
    if distinct.len() as i64 != N {
        let log = std::fs::read_to_string(dir.path().join("gateway.log")).unwrap_or_default();
        eprintln!("gateway log:\n{log}");
    }
    assert_eq!(
        distinct.len() as i64,
        N,
        "missing (first 10, as offsets): {missing:?}"
    );
    drop(gateway);
}

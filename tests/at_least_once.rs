//! At-least-once ingest under `kill -9`: a QoS 1 message is acknowledged only after its
//! readings are committed to the local history *and* held by the time-series sink (written to
//! the store or to its disk spool). So a `kill -9` mid-stream loses nothing, locally or in the
//! TSDB: the broker redelivers what was not acknowledged. Active alarms survive the kill.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
#[path = "support/tsdb.rs"]
mod tsdb;

use std::time::Duration;

use support::*;
use tsdb::VictoriaMetrics;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_no_qos1_reading_locally_or_in_the_tsdb_and_alarms_survive() {
    // A broker set up as the README asks of a deployment: the queue of the gateway's persistent
    // session must not drop messages while the gateway is down or catching up.
    let broker = PrivateMosquitto::start("max_queued_messages 0\nmax_inflight_messages 100");
    let vm = VictoriaMetrics::start().await;
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

[timeseries]
kind = "influxdb2"
url = "{vm}"
org = "district"
bucket = "campus"
token = "not-checked-by-victoria-metrics"
flush_interval = "200ms"
"#,
            data = dir.path().join("data").display(),
            vm = vm.url(),
        ),
    )
    .unwrap();

    let mut gateway = GatewayProcess::start(&config);
    wait_ready(http).await;
    // Let the subscriptions settle.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let dev = Device::connect(port, &unique("alo-dev")).await;
    for room in ["room-1", "room-hot"] {
        dev.publish_retained(
            &format!("{prefix}/xhsy/{room}/meta"),
            r#"{"profile":"test_room"}"#,
        )
        .await;
    }
    // An alarm that is active when the gateway is killed.
    dev.publish(
        &format!("{prefix}/xhsy/room-hot/telemetry"),
        r#"{"temp_c":45}"#,
    )
    .await;
    let alarms_url = format!("http://127.0.0.1:{http}/api/v1/alarms?state=active");
    let active_alarm = || async {
        let body: serde_json::Value = reqwest::get(&alarms_url).await.ok()?.json().await.ok()?;
        body.as_array()?
            .iter()
            .find(|a| a["rule"] == "temp_high")
            .and_then(|a| a["id"].as_i64())
    };
    let alarm_id = eventually("the temp_high alarm", Duration::from_secs(10), active_alarm).await;

    let topic = format!("{prefix}/xhsy/room-1/telemetry");
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
            gateway.kill9();
            killed_at = Some(i);
            gateway = GatewayProcess::start(&config);
        }
        if i % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }
    assert!(killed_at.is_some());
    wait_ready(http).await;

    let fail_log = |what: &str| format!("{what}; gateway log:\n{}", gateway.log_text());
    // Local history: every reading, once per timestamp.
    let local = wait_for_local_timestamps(http, "room-1", base, base + N, N as usize).await;
    assert_eq!(
        local.len() as i64,
        N,
        "{}",
        fail_log("local history incomplete")
    );

    // The TSDB: every reading (a redelivered one may be a duplicate of the same point).
    let selector = r#"{__name__="test_room_value",device="room-1",point="temp_c"}"#;
    let distinct = vm.wait_for_timestamps(selector, N as usize).await;
    let missing: Vec<i64> = (0..N)
        .filter(|i| !distinct.contains(&(base + i)))
        .take(10)
        .collect();
    assert_eq!(
        distinct.len() as i64,
        N,
        "{}",
        fail_log(&format!("TSDB missing (first 10, as offsets): {missing:?}"))
    );

    // The alarm that was active before the kill is still active, with its identity.
    assert_eq!(
        active_alarm().await,
        Some(alarm_id),
        "{}",
        fail_log("active alarm lost")
    );
    drop(gateway);
}

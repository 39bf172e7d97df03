//! The alarm path keeps working while storage and tasks fail, with real parts: the data
//! directory on a real, full tmpfs; a task made to panic inside the running gateway; uploads
//! refused by quota and free-space floor.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const DEVICE: &str = r#"
[[devices]]
id = "room-1"
school = "xhsy"
profile = "test_room"
"#;

/// A size-limited tmpfs mounted by the test (needs root, as CI runs); unmounted on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .ok()?;
        status.success().then(|| Self {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Writes `path` until the filesystem is full (ENOSPC); returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).unwrap();
    let mut written = 0u64;
    for chunk in [1 << 20, 4096, 512] {
        let buf = vec![0x5a_u8; chunk];
        while file.write_all(&buf).is_ok() {
            written += chunk as u64;
        }
    }
    let _ = file.sync_all();
    written
}

async fn readyz(gw: &TestGateway) -> (u16, Value) {
    gw.get_json("/readyz", None).await
}

async fn open_alarm(gw: &TestGateway, rule: &str) -> Option<Value> {
    let (status, alarms) = gw.get_json("/api/v1/alarms", Some(OPERATOR_TOKEN)).await;
    assert_eq!(status, 200, "{alarms}");
    alarms
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule"] == rule)
        .cloned()
}

/// Timestamps of room-1's temp_c in the local history between `from` and `to`.
async fn history(gw: &TestGateway, from: i64, to: i64) -> Vec<i64> {
    let path =
        format!("/api/v1/sensors/xhsy/room-1/temp_c/history?from={from}&to={to}&limit=100000");
    let (status, body) = gw.get_json(&path, Some(OPERATOR_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    body["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["ts"].as_i64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_neither_delays_nor_silences_a_fire_alarm_and_history_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let Some(tmpfs) = Tmpfs::mount(&data, "8m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs (not root?); the disk-full test needs one");
        return;
    };
    let mut setup = Setup::mosquitto("iso-disk", &data);
    setup.extra_toml = DEVICE.to_string();
    // No free-space floor here: this test fills the disk on purpose. A small batch, so the
    // writer keeps 100 readings for its retry and sheds the rest of what comes meanwhile.
    setup.storage_toml = "min_free_bytes = 0\nhistory_batch_size = 100".to_string();
    let gw = TestGateway::start(&setup).await;
    let mut stream = AlarmStream::open(&gw, OPERATOR_TOKEN).await;
    let dev = Device::connect(gw.mqtt_port, &unique("iso-disk-dev")).await;
    let topic = gw.topic("xhsy", "room-1", "telemetry");
    let publish = |ts: i64, temp: f64| {
        let (dev, topic) = (&dev, topic.clone());
        async move {
            dev.publish(&topic, format!(r#"{{"ts":{ts},"temp_c":{temp}}}"#))
                .await
        }
    };

    // Healthy: readings reach the history.
    let base = campusguard::model::now_ms() - 60_000;
    for i in 0..20 {
        publish(base + i, 20.0).await;
    }
    gw.wait_until(Duration::from_secs(10), || async {
        history(&gw, base, base + 1000).await.len() == 20
    })
    .await;
    let (status, ready) = readyz(&gw).await;
    assert_eq!(status, 200, "{ready}");

    // The disk fills up.
    let filler = data.join("filler");
    let filled = fill(&filler);
    eprintln!("filled the data tmpfs with {filled} bytes");

    // Readings keep coming; the history cannot take them.
    let during = base + 10_000;
    const DURING: i64 = 300;
    for i in 0..DURING {
        publish(during + i, 21.0).await;
    }
    gw.wait_until(Duration::from_secs(10), || async {
        gw.metric("campusguard_history_write_errors_total").await >= 1.0
    })
    .await;

    // A fire reading raises its alarm on the SSE stream within 1 s.
    let fire_ts = campusguard::model::now_ms();
    let sent = Instant::now();
    publish(fire_ts, 65.0).await;
    let fire = stream
        .next_matching(Duration::from_secs(1), |e| {
            e["rule"] == "temp_fire" && e["transition"] == "raised"
        })
        .await;
    let latency = sent.elapsed();
    eprintln!("fire alarm on the stream {latency:?} after its reading, disk full");
    assert!(latency < Duration::from_secs(1));

    // /readyz names the reason; the storage fault is on the board.
    let (status, ready) = readyz(&gw).await;
    assert_eq!(status, 503, "{ready}");
    let journal_errors = gw.metric("campusguard_journal_write_errors_total").await;
    eprintln!("readyz with the disk full: {ready}; journal write errors: {journal_errors}");
    if journal_errors > 0.0 {
        assert!(ready["faults"]["storage:journal"].is_string(), "{ready}");
    }
    assert!(
        ready["faults"]["storage:history"].is_string(),
        "readyz: {ready}"
    );
    gw.wait_until(Duration::from_secs(3), || async {
        open_alarm(&gw, "storage:history").await.is_some()
    })
    .await;
    let fault = open_alarm(&gw, "storage:history").await.unwrap();
    assert_eq!(fault["class"], "fault", "{fault}");
    assert_eq!(fault["school"], "system", "{fault}");
    assert!(
        fault["message"]
            .as_str()
            .unwrap()
            .starts_with("本地历史写入失败"),
        "{fault}"
    );

    // The fire alarm is actionable even though its journal write failed with the disk full.
    let id = fire["id"].as_u64().unwrap();
    let (status, body) = gw
        .post_json(
            &format!("/api/v1/alarms/{id}/ack"),
            Some(OPERATOR_TOKEN),
            json!({"comment": "现场确认"}),
        )
        .await;
    assert_eq!(status, 200, "ack with a full disk: {body}");

    // Space is freed: history writes again, the faults clear, readiness returns.
    std::fs::remove_file(&filler).unwrap();
    gw.wait_until(Duration::from_secs(15), || async {
        readyz(&gw).await.0 == 200
    })
    .await;
    stream
        .next_matching(Duration::from_secs(5), |e| {
            e["rule"] == "storage:history" && e["transition"] == "cleared"
        })
        .await;
    let fault = open_alarm(&gw, "storage:history").await;
    assert!(
        fault
            .as_ref()
            .is_none_or(|f| f["condition_active"] == false),
        "{fault:?}"
    );

    // Nothing is missing beyond what was counted as shed.
    // Sent while the history could not write: the DURING readings and the fire reading.
    let sent = DURING as usize + 1;
    let shed = gw.metric("campusguard_history_shed_readings_total").await as usize;
    let expected = (sent - shed).min(DURING as usize);
    gw.wait_until(Duration::from_secs(10), || async {
        history(&gw, during, during + DURING).await.len() >= expected
    })
    .await;
    let stored = history(&gw, during, during + DURING).await.len()
        + usize::from(history(&gw, fire_ts, fire_ts + 1).await.contains(&fire_ts));
    eprintln!("while the disk was full: {stored} of {sent} readings stored, {shed} shed");
    assert_eq!(stored + shed, sent);
    assert!(
        shed > 0,
        "the writer kept more than history_batch_size readings"
    );
    // The acknowledgement, made while the journal could not write, is in the journal now.
    let (status, alarm) = gw
        .get_json(&format!("/api/v1/alarms/{id}"), Some(OPERATOR_TOKEN))
        .await;
    assert_eq!(status, 200, "{alarm}");
    let transitions: Vec<&str> = alarm["journal"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| j["transition"].as_str())
        .collect();
    assert!(
        transitions.contains(&"raised") && transitions.contains(&"acknowledged"),
        "{alarm}"
    );

    drop(dev);
    gw.stop().await;
    drop(tmpfs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_killed_by_fault_injection_is_restarted_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::mosquitto("iso-task", dir.path());
    setup.extra_toml = DEVICE.to_string();
    let gw = TestGateway::start(&setup).await;
    let mut stream = AlarmStream::open(&gw, OPERATOR_TOKEN).await;
    assert_eq!(readyz(&gw).await.0, 200);

    assert!(!gw.inject_task_panic("no-such-task"));
    assert!(gw.inject_task_panic("history-writer"));
    let restarts = r#"campusguard_task_restarts_total{task="history-writer"}"#;
    gw.wait_until(Duration::from_secs(5), || async {
        gw.metric(restarts).await == 1.0
    })
    .await;
    let (status, ready) = readyz(&gw).await;
    assert_eq!(status, 503, "{ready}");
    let why = ready["faults"]["task:history-writer"].as_str().unwrap();
    assert!(why.contains("panicked"), "{ready}");
    let raised = stream
        .next_matching(Duration::from_secs(3), |e| {
            e["rule"] == "task:history-writer" && e["transition"] == "raised"
        })
        .await;
    assert_eq!(raised["class"], "fault");
    assert_eq!(raised["sensor"], "system/task/history-writer");

    // The restarted writer stores readings again (and acknowledges them).
    let dev = Device::connect(gw.mqtt_port, &unique("iso-task-dev")).await;
    let topic = gw.topic("xhsy", "room-1", "telemetry");
    let ts = campusguard::model::now_ms();
    dev.publish(&topic, format!(r#"{{"ts":{ts},"temp_c":22.5}}"#))
        .await;
    gw.wait_until(Duration::from_secs(10), || async {
        history(&gw, ts, ts + 1).await.contains(&ts)
    })
    .await;

    // Once the new run has lasted a while, the fault clears and the gateway is ready again.
    stream
        .next_matching(Duration::from_secs(15), |e| {
            e["rule"] == "task:history-writer" && e["transition"] == "cleared"
        })
        .await;
    assert_eq!(readyz(&gw).await.0, 200);
    assert_eq!(gw.metric(restarts).await, 1.0);

    drop(dev);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_fault_open_at_a_restart_clears_once_its_condition_no_longer_holds() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::mosquitto("iso-restart", dir.path());
    let gw = TestGateway::start(&setup).await;
    assert!(gw.inject_task_panic("sessions"));
    gw.wait_until(Duration::from_secs(5), || async {
        open_alarm(&gw, "task:sessions")
            .await
            .is_some_and(|a| a["condition_active"] == true)
    })
    .await;
    // Stopped before the restarted run has lasted long enough to clear the fault.
    gw.stop().await;

    let gw = TestGateway::start(&setup).await;
    gw.wait_until(Duration::from_secs(5), || async {
        open_alarm(&gw, "task:sessions")
            .await
            .is_some_and(|a| a["condition_active"] == false)
    })
    .await;
    assert_eq!(readyz(&gw).await.0, 200);
    gw.stop().await;
}

/// A ticket of school xhsy to attach evidence to.
async fn new_ticket(gw: &TestGateway) -> String {
    let (status, t) = gw
        .post_json(
            "/api/v1/tickets",
            Some(OPERATOR_TOKEN),
            json!({
                "school": "xhsy",
                "location": "实验楼 101",
                "category": "building",
                "description": "灭火器过期",
            }),
        )
        .await;
    assert_eq!(status, 201, "{t}");
    t["id"].as_str().unwrap().to_string()
}

/// A PNG (by content) of `size` bytes, distinct per `seed`.
fn png(size: usize, seed: u8) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.resize(size, seed);
    bytes
}

async fn upload(gw: &TestGateway, ticket: &str, bytes: Vec<u8>) -> (u16, Value) {
    let form = reqwest::multipart::Form::new().text("kind", "before").part(
        "file",
        reqwest::multipart::Part::bytes(bytes).file_name("photo.png"),
    );
    let response = reqwest::Client::new()
        .post(gw.url(&format!("/api/v1/tickets/{ticket}/attachments")))
        .bearer_auth(OPERATOR_TOKEN)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_over_the_attachments_quota_or_under_the_free_space_floor_answer_507() {
    // Quota: 3000 bytes in all.
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::mosquitto("iso-quota", dir.path());
    setup.extra_toml = "[tickets]\nattachment_max_bytes = 2000\n\
                        attachments_max_total_bytes = 3000\n"
        .to_string();
    let gw = TestGateway::start(&setup).await;
    let ticket = new_ticket(&gw).await;
    let (status, body) = upload(&gw, &ticket, png(1500, 1)).await;
    assert_eq!(status, 201, "{body}");
    // The same file again takes no room.
    assert_eq!(upload(&gw, &ticket, png(1500, 1)).await.0, 201);
    let (status, body) = upload(&gw, &ticket, png(1400, 2)).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = upload(&gw, &ticket, png(200, 3)).await;
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["error"], "insufficient_storage", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("attachments_max_total_bytes"),
        "{body}"
    );
    gw.stop().await;

    // Free-space floor: more than any disk here has free.
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::mosquitto("iso-floor", dir.path());
    setup.storage_toml = "min_free_bytes = 1125899906842624".to_string();
    let gw = TestGateway::start(&setup).await;
    let ticket = new_ticket(&gw).await;
    let (status, body) = upload(&gw, &ticket, png(100, 4)).await;
    assert_eq!(status, 507, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("min_free_bytes"),
        "{body}"
    );
    gw.stop().await;
}

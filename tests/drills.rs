//! Drill mode end to end: the API starts and ends drills for a school or a building, alarms
//! raised under a drill are marked `drill` (and file no tickets), drills end by themselves at
//! their expiry, survive a restart while unexpired, and only scoped alarm handlers may run them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use support::*;

const SCHOOL: &str = "xhsy";
const OTHER: &str = "other";
const SCOPED_TOKEN: &str = "test-scoped-operator-token-0123";

/// A scoped operator, and a ticket policy that files the fire rule's alarms at once (so a
/// drill alarm filing nothing is a real difference).
fn extra_toml() -> String {
    format!(
        r#"
[[http.tokens]]
name = "operator-xhsy"
token = "{SCOPED_TOKEN}"
role = "operator"
schools = ["{SCHOOL}"]

[tickets.policy.rule]
temp_fire = "on_raise"
"#
    )
}

async fn announce(gw: &TestGateway, dev: &Device, school: &str, id: &str, building: &str) {
    dev.publish(
        &gw.topic(school, id, "meta"),
        format!(r#"{{"profile":"test_room","building":"{building}","room":"1","name":"{id}"}}"#),
    )
    .await;
}

async fn fire(gw: &TestGateway, dev: &Device, school: &str, id: &str) {
    dev.publish(&gw.topic(school, id, "telemetry"), r#"{"temp_c":80.0}"#)
        .await;
}

fn raised_fire(e: &serde_json::Value, device: &str) -> bool {
    e["transition"] == "raised" && e["rule"] == "temp_fire" && e["device"] == device
}

async fn delete(gw: &TestGateway, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new().delete(gw.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

async fn active_ids(gw: &TestGateway, token: &str) -> Vec<u64> {
    let (status, body) = gw.get_json("/api/v1/drills", Some(token)).await;
    assert_eq!(status, 200, "{body}");
    body.as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_u64().unwrap())
        .collect()
}

/// The `drill` events of the alarm stream, read raw (the support stream keeps only alarms).
async fn drill_events(
    gw: &TestGateway,
    token: &str,
) -> tokio::sync::mpsc::Receiver<serde_json::Value> {
    let resp = reqwest::Client::new()
        .get(gw.url("/api/v1/alarms/stream"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (tx, rx) = tokio::sync::mpsc::channel(100);
    tokio::spawn(async move {
        let mut body = resp.bytes_stream();
        let mut buf = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                if !frame.lines().any(|l| l.trim() == "event: drill") {
                    continue;
                }
                let data: String = frame
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if tx.send(serde_json::from_str(&data).unwrap()).await.is_err() {
                    return;
                }
            }
        }
    });
    rx
}

async fn next_drill_event(
    rx: &mut tokio::sync::mpsc::Receiver<serde_json::Value>,
) -> serde_json::Value {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a drill event within 5 s")
        .expect("stream open")
}

async fn tickets_of(gw: &TestGateway, sensor: &str) -> usize {
    let (status, body) = gw.get_json("/api/v1/tickets", Some(OPERATOR_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let list = body
        .as_array()
        .or_else(|| body["tickets"].as_array())
        .cloned()
        .unwrap_or_default();
    list.iter().filter(|t| t["sensor"] == sensor).count()
}

#[tokio::test]
async fn a_building_drill_marks_its_alarms_files_no_tickets_and_ends_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::embedded("drill", dir.path());
    setup.extra_toml = extra_toml();
    let gw = TestGateway::start(&setup).await;
    let dev = Device::connect(gw.mqtt_port, &unique("drill-dev")).await;
    for (id, building) in [("a-1", "A"), ("b-1", "B"), ("a-2", "A"), ("a-3", "A")] {
        announce(&gw, &dev, SCHOOL, id, building).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut alarms = AlarmStream::open(&gw, OPERATOR_TOKEN).await;
    let mut drills = drill_events(&gw, OPERATOR_TOKEN).await;

    let before = campusguard::model::now_ms();
    let (status, drill) = gw
        .post_json(
            "/api/v1/drills",
            Some(OPERATOR_TOKEN),
            json!({"school": SCHOOL, "building": "A", "duration": "10m", "reason": "消防演练"}),
        )
        .await;
    assert_eq!(status, 201, "{drill}");
    let id = drill["id"].as_u64().unwrap();
    assert_eq!(drill["building"], "A");
    assert_eq!(drill["started_by"], "operator-1");
    let until = drill["until"].as_i64().unwrap();
    assert!(
        (before + 600_000..=before + 602_000).contains(&until),
        "{drill}"
    );
    let started = next_drill_event(&mut drills).await;
    assert_eq!(
        (started["change"].clone(), started["id"].clone()),
        (json!("started"), json!(id))
    );
    assert_eq!(active_ids(&gw, OPERATOR_TOKEN).await, vec![id]);

    fire(&gw, &dev, SCHOOL, "a-1").await;
    fire(&gw, &dev, SCHOOL, "b-1").await;
    let mut marked = std::collections::HashMap::new();
    for _ in 0..2 {
        let e = alarms
            .next_matching(Duration::from_secs(5), |e| {
                raised_fire(e, "a-1") || raised_fire(e, "b-1")
            })
            .await;
        marked.insert(
            e["device"].as_str().unwrap().to_string(),
            e["drill"].clone(),
        );
    }
    assert_eq!(marked["a-1"], json!(true), "building A is in drill");
    assert_eq!(marked["b-1"], json!(false), "building B is not");
    // The policy files the fire rule on raise: for b-1, not for the drill alarm of a-1.
    let b1 = format!("{SCHOOL}/b-1/temp_c");
    gw.wait_until(Duration::from_secs(5), || async {
        tickets_of(&gw, &b1).await == 1
    })
    .await;
    assert_eq!(tickets_of(&gw, &format!("{SCHOOL}/a-1/temp_c")).await, 0);

    // Ended early: the next alarm in building A is real again.
    let (status, ended) = delete(&gw, &format!("/api/v1/drills/{id}"), Some(OPERATOR_TOKEN)).await;
    assert_eq!(status, 200, "{ended}");
    assert_eq!(ended["ended_by"], "operator-1");
    assert!(ended["ended_at"].as_i64().is_some(), "{ended}");
    assert_eq!(next_drill_event(&mut drills).await["change"], "ended");
    assert!(active_ids(&gw, OPERATOR_TOKEN).await.is_empty());
    let (status, _) = delete(&gw, &format!("/api/v1/drills/{id}"), Some(OPERATOR_TOKEN)).await;
    assert_eq!(status, 404);
    fire(&gw, &dev, SCHOOL, "a-2").await;
    let e = alarms
        .next_matching(Duration::from_secs(5), |e| raised_fire(e, "a-2"))
        .await;
    assert_eq!(e["drill"], false);

    // A school-wide drill given as `until` ends by itself at that time.
    let until = campusguard::model::now_ms() + 1500;
    let (status, drill) = gw
        .post_json(
            "/api/v1/drills",
            Some(OPERATOR_TOKEN),
            json!({"school": SCHOOL, "until": until, "reason": "短时演练"}),
        )
        .await;
    assert_eq!(status, 201, "{drill}");
    assert_eq!(drill["building"], serde_json::Value::Null);
    assert_eq!(next_drill_event(&mut drills).await["change"], "started");
    let expired = next_drill_event(&mut drills).await;
    assert_eq!(expired["change"], "expired", "{expired}");
    assert_eq!(expired["ended_at"], json!(until));
    assert!(campusguard::model::now_ms() >= until);
    assert!(active_ids(&gw, OPERATOR_TOKEN).await.is_empty());
    fire(&gw, &dev, SCHOOL, "a-3").await;
    let e = alarms
        .next_matching(Duration::from_secs(5), |e| raised_fire(e, "a-3"))
        .await;
    assert_eq!(e["drill"], false, "the drill has expired");
    gw.stop().await;
}

#[tokio::test]
async fn an_unexpired_drill_survives_a_restart_and_an_expired_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::mosquitto("drill-restart", dir.path());
    setup.extra_toml = extra_toml();
    let gw = TestGateway::start(&setup).await;
    let (status, long) = gw
        .post_json(
            "/api/v1/drills",
            Some(OPERATOR_TOKEN),
            json!({"school": SCHOOL, "duration": 30, "reason": "全校演练"}),
        )
        .await;
    assert_eq!(status, 201, "{long}");
    // A number is minutes.
    let span = long["until"].as_i64().unwrap() - long["started_at"].as_i64().unwrap();
    // The expiry is fixed when the request arrives, the start when the core stores it.
    assert!(
        (30 * 60_000 - 1_000..=30 * 60_000).contains(&span),
        "{span}"
    );
    let (status, short) = gw
        .post_json(
            "/api/v1/drills",
            Some(OPERATOR_TOKEN),
            json!({"school": OTHER, "building": "B", "duration": "1s", "reason": "short"}),
        )
        .await;
    assert_eq!(status, 201, "{short}");
    gw.stop().await;
    // The short drill expires while the gateway is down.
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let gw = TestGateway::start(&setup).await;
    let (_, listed) = gw.get_json("/api/v1/drills", Some(OPERATOR_TOKEN)).await;
    let listed = listed.as_array().unwrap().clone();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0], long, "the same drill, unchanged");
    let dev = Device::connect(gw.mqtt_port, &unique("drill-restart-dev")).await;
    let mut alarms = AlarmStream::open(&gw, OPERATOR_TOKEN).await;
    announce(&gw, &dev, SCHOOL, "r-1", "C").await;
    announce(&gw, &dev, OTHER, "r-2", "B").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    fire(&gw, &dev, SCHOOL, "r-1").await;
    fire(&gw, &dev, OTHER, "r-2").await;
    let e = alarms
        .next_matching(Duration::from_secs(5), |e| raised_fire(e, "r-1"))
        .await;
    assert_eq!(
        e["drill"], true,
        "the restored school-wide drill covers r-1"
    );
    let e = alarms
        .next_matching(Duration::from_secs(5), |e| raised_fire(e, "r-2"))
        .await;
    assert_eq!(e["drill"], false, "the expired drill ended at the restart");
    gw.stop().await;
}

#[tokio::test]
async fn only_scoped_alarm_handlers_run_drills_and_bad_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::embedded("drill-auth", dir.path());
    setup.extra_toml = extra_toml();
    let gw = TestGateway::start(&setup).await;
    let body = json!({"school": OTHER, "duration": "1h", "reason": "演练"});

    assert_eq!(gw.get_json("/api/v1/drills", None).await.0, 401);
    assert_eq!(
        gw.post_json("/api/v1/drills", None, body.clone()).await.0,
        401
    );
    assert_eq!(delete(&gw, "/api/v1/drills/1", None).await.0, 401);
    assert_eq!(
        gw.post_json("/api/v1/drills", Some("not-a-token"), body.clone())
            .await
            .0,
        401
    );
    // The bureau reads but does not run drills.
    let (status, err) = gw
        .post_json("/api/v1/drills", Some(BUREAU_TOKEN), body.clone())
        .await;
    assert_eq!(status, 403, "{err}");
    // A scoped operator: not for another school.
    let (status, err) = gw
        .post_json("/api/v1/drills", Some(SCOPED_TOKEN), body.clone())
        .await;
    assert_eq!(status, 403, "{err}");
    let (status, other) = gw
        .post_json("/api/v1/drills", Some(OPERATOR_TOKEN), body.clone())
        .await;
    assert_eq!(status, 201, "{other}");
    let other_id = other["id"].as_u64().unwrap();
    let path = format!("/api/v1/drills/{other_id}");
    assert_eq!(delete(&gw, &path, Some(SCOPED_TOKEN)).await.0, 403);
    assert_eq!(delete(&gw, &path, Some(BUREAU_TOKEN)).await.0, 403);
    // The scoped operator does not see it; the bureau does.
    assert!(active_ids(&gw, SCOPED_TOKEN).await.is_empty());
    assert_eq!(active_ids(&gw, BUREAU_TOKEN).await, vec![other_id]);
    // One drill per scope at a time.
    let (status, err) = gw
        .post_json("/api/v1/drills", Some(OPERATOR_TOKEN), body.clone())
        .await;
    assert_eq!(status, 409, "{err}");
    // Own school: fine.
    let (status, own) = gw
        .post_json(
            "/api/v1/drills",
            Some(SCOPED_TOKEN),
            json!({"school": SCHOOL, "building": "A", "duration": "45m", "reason": "演练"}),
        )
        .await;
    assert_eq!(status, 201, "{own}");
    assert_eq!(own["started_by"], "operator-xhsy");

    let bad = [
        json!({"school": SCHOOL, "duration": "25h", "reason": "x"}),
        json!({"school": SCHOOL, "duration": "0s", "reason": "x"}),
        json!({"school": SCHOOL, "duration": 0, "reason": "x"}),
        json!({"school": SCHOOL, "duration": "soon", "reason": "x"}),
        json!({"school": SCHOOL, "reason": "x"}),
        json!({"school": SCHOOL, "duration": "1h", "until": 1, "reason": "x"}),
        json!({"school": SCHOOL, "until": 1, "reason": "x"}),
        json!({"school": SCHOOL, "duration": "1h", "reason": "  "}),
        json!({"school": "a/b", "duration": "1h", "reason": "x"}),
    ];
    for b in bad {
        let (status, err) = gw
            .post_json("/api/v1/drills", Some(OPERATOR_TOKEN), b.clone())
            .await;
        assert_eq!(status, 400, "{b} → {err}");
    }
    // Missing or unknown fields are the JSON extractor's 422.
    for b in [
        json!({"school": SCHOOL, "duration": "1h"}),
        json!({"school": SCHOOL, "duration": "1h", "reason": "x", "loud": true}),
    ] {
        let (status, err) = gw
            .post_json("/api/v1/drills", Some(OPERATOR_TOKEN), b.clone())
            .await;
        assert_eq!(status, 422, "{b} → {err}");
    }
    assert_eq!(
        delete(&gw, "/api/v1/drills/abc", Some(OPERATOR_TOKEN))
            .await
            .0,
        400
    );
    assert_eq!(
        delete(&gw, "/api/v1/drills/999", Some(OPERATOR_TOKEN))
            .await
            .0,
        404
    );
    let (status, ended) = delete(&gw, &path, Some(OPERATOR_TOKEN)).await;
    assert_eq!(status, 200, "{ended}");
    gw.stop().await;
}

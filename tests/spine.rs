//! End-to-end tests of the spine: real MQTT brokers (the machine's Mosquitto, and the embedded
//! one), the whole gateway in-process, the HTTP API and the SSE stream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

const SCHOOL: &str = "xhsy";

async fn register_room(gw: &TestGateway, dev: &Device, id: &str) {
    dev.publish(
        &gw.topic(SCHOOL, id, "meta"),
        r#"{"profile":"test_room","building":"A","room":"101","name":"教室101"}"#,
    )
    .await;
}

fn is(alarm_event: &serde_json::Value, transition: &str, rule: &str) -> bool {
    alarm_event["transition"] == transition && alarm_event["rule"] == rule
}

/// Publish over-threshold readings → alarm on SSE; ack via API → transition on the stream;
/// back to normal → cleared; and the same alarm is journaled with who and when.
async fn alarm_lifecycle_over(setup: Setup) {
    let gw = TestGateway::start(&setup).await;
    let dev = Device::connect(gw.mqtt_port, &unique("dev")).await;
    let mut stream = AlarmStream::open(&gw, OPERATOR_TOKEN).await;
    register_room(&gw, &dev, "room-1").await;
    let topic = gw.topic(SCHOOL, "room-1", "telemetry");

    dev.publish(&topic, r#"{"temp_c":22.0}"#).await;
    dev.publish(&topic, r#"{"ts":1764300000000,"temp_c":42.5}"#)
        .await;
    let raised = stream
        .next_matching(Duration::from_secs(5), |e| is(e, "raised", "temp_high"))
        .await;
    assert_eq!(raised["class"], "supervisory");
    assert_eq!(raised["severity"], "alarm");
    assert_eq!(raised["state"], "active_unacked");
    assert_eq!(raised["sensor"], format!("{SCHOOL}/room-1/temp_c"));
    assert_eq!(raised["school"], SCHOOL);
    assert_eq!(raised["device"], "room-1");
    assert_eq!(raised["point"], "temp_c");
    assert_eq!(raised["value"], 42.5);
    assert_eq!(raised["threshold"], 40.0);
    assert_eq!(raised["reading_ts"], 1764300000000i64);
    let id = raised["id"].as_u64().unwrap();

    // A repeat updates the open alarm; it never makes a second one.
    dev.publish(&topic, r#"{"temp_c":43.0}"#).await;
    let (_, active) = gw
        .get_json("/api/v1/alarms?state=active", Some(OPERATOR_TOKEN))
        .await;
    let ours: Vec<_> = active
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["rule"] == "temp_high")
        .collect();
    assert_eq!(ours.len(), 1, "{active}");

    let (status, acked) = gw
        .post_json(
            &format!("/api/v1/alarms/{id}/ack"),
            Some(OPERATOR_TOKEN),
            json!({"comment": "值班员已到现场"}),
        )
        .await;
    assert_eq!(status, 200, "{acked}");
    let on_stream = stream
        .next_matching(Duration::from_secs(5), |e| {
            is(e, "acknowledged", "temp_high")
        })
        .await;
    assert_eq!(on_stream["state"], "active_acked");
    assert_eq!(on_stream["user"], "operator-1");

    dev.publish(&topic, r#"{"temp_c":21.0}"#).await;
    let cleared = stream
        .next_matching(Duration::from_secs(5), |e| is(e, "cleared", "temp_high"))
        .await;
    assert_eq!(cleared["state"], "cleared");
    assert_eq!(cleared["id"].as_u64(), Some(id));

    let (_, detail) = gw
        .get_json(&format!("/api/v1/alarms/{id}"), Some(OPERATOR_TOKEN))
        .await;
    let journal: Vec<&str> = detail["journal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["transition"].as_str().unwrap())
        .collect();
    assert_eq!(journal, ["raised", "acknowledged", "cleared"]);
    assert_eq!(detail["journal"][1]["user"], "operator-1");
    assert_eq!(detail["journal"][1]["comment"], "值班员已到现场");

    // The same event went out over MQTT to <prefix>/<school>/alarms: checked via history API
    // and metrics instead (no extra subscriber): every transition was journaled.
    assert!(gw.metric("campusguard_alarm_transitions_total").await >= 3.0);
    gw.stop().await;
}

#[tokio::test]
async fn alarm_lifecycle_through_mosquitto() {
    let dir = tempfile::tempdir().unwrap();
    alarm_lifecycle_over(Setup::mosquitto("life", dir.path())).await;
}

#[tokio::test]
async fn alarm_lifecycle_through_the_embedded_broker() {
    let dir = tempfile::tempdir().unwrap();
    alarm_lifecycle_over(Setup::embedded("emb", dir.path())).await;
}

#[tokio::test]
async fn active_alarms_survive_a_restart_and_clear_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::mosquitto("restart", dir.path());
    let gw = TestGateway::start(&setup).await;
    let dev = Device::connect(gw.mqtt_port, &unique("dev")).await;
    let mut stream = AlarmStream::open(&gw, OPERATOR_TOKEN).await;
    register_room(&gw, &dev, "room-2").await;
    let topic = gw.topic(SCHOOL, "room-2", "telemetry");
    dev.publish(&topic, r#"{"temp_c":61.0}"#).await;
    // Rules of a point are evaluated in profile order: temp_high, then temp_fire.
    let warm = stream
        .next_matching(Duration::from_secs(5), |e| is(e, "raised", "temp_high"))
        .await;
    let fire = stream
        .next_matching(Duration::from_secs(5), |e| is(e, "raised", "temp_fire"))
        .await;
    drop(stream);
    gw.stop().await;

    let gw = TestGateway::start(&setup).await;
    let (_, active) = gw.get_json("/api/v1/alarms", Some(OPERATOR_TOKEN)).await;
    let ids: Vec<u64> = active
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_u64().unwrap())
        .collect();
    assert!(ids.contains(&fire["id"].as_u64().unwrap()), "{active}");
    assert!(ids.contains(&warm["id"].as_u64().unwrap()), "{active}");
    // Fire alarms come first on the list.
    assert_eq!(active[0]["class"], "fire");

    // After the restart the engine still knows the conditions held: a normal reading clears
    // the non-latching alarm and returns the latched fire alarm to normal (awaiting reset).
    let mut stream = AlarmStream::open(&gw, OPERATOR_TOKEN).await;
    register_room(&gw, &dev, "room-2").await;
    // Reset is refused while the fire condition still holds.
    let fire_id = fire["id"].as_u64().unwrap();
    let (status, body) = gw
        .post_json(
            &format!("/api/v1/alarms/{fire_id}/reset"),
            Some(OPERATOR_TOKEN),
            json!({}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    dev.publish(&topic, r#"{"temp_c":20.0}"#).await;
    stream
        .next_matching(Duration::from_secs(5), |e| is(e, "cleared", "temp_high"))
        .await;
    stream
        .next_matching(Duration::from_secs(5), |e| {
            is(e, "returned_to_normal", "temp_fire")
        })
        .await;
    let (status, body) = gw
        .post_json(
            &format!("/api/v1/alarms/{fire_id}/reset"),
            Some(OPERATOR_TOKEN),
            json!({"comment": "现场确认无火情", "false_alarm": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "cleared");
    gw.stop().await;
}

#[tokio::test]
async fn a_silent_device_raises_its_own_fault_and_keeps_its_other_alarms() {
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::start(&Setup::mosquitto("stale", dir.path())).await;
    let dev = Device::connect(gw.mqtt_port, &unique("dev")).await;
    let mut stream = AlarmStream::open(&gw, OPERATOR_TOKEN).await;
    register_room(&gw, &dev, "room-3").await;
    dev.publish(&gw.topic(SCHOOL, "room-3", "telemetry"), r#"{"temp_c":45}"#)
        .await;
    let high = stream
        .next_matching(Duration::from_secs(5), |e| is(e, "raised", "temp_high"))
        .await;
    // test_room has stale_after = 2s.
    let stale = stream
        .next_matching(Duration::from_secs(6), |e| is(e, "raised", "stale"))
        .await;
    assert_eq!(stale["class"], "fault");
    assert_eq!(stale["sensor"], format!("{SCHOOL}/room-3/status"));
    let (_, active) = gw.get_json("/api/v1/alarms", Some(OPERATOR_TOKEN)).await;
    let still = active
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == high["id"])
        .expect("silence never clears the temperature alarm");
    assert_eq!(still["state"], "active_unacked");

    // Status offline is a fault of its own.
    dev.publish(&gw.topic(SCHOOL, "room-3", "status"), "offline")
        .await;
    let offline = stream
        .next_matching(Duration::from_secs(5), |e| is(e, "raised", "offline"))
        .await;
    assert_eq!(offline["class"], "fault");
    gw.stop().await;
}

#[tokio::test]
async fn malformed_payloads_are_counted_by_reason_and_the_gateway_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::start(&Setup::mosquitto("garbage", dir.path())).await;
    let dev = Device::connect(gw.mqtt_port, &unique("dev")).await;
    register_room(&gw, &dev, "room-4").await;
    let t = gw.topic(SCHOOL, "room-4", "telemetry");
    let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let corpus: Vec<(String, Vec<u8>)> = vec![
        (t.clone(), br#"{"temp_c": 2"#.to_vec()),
        (t.clone(), vec![0xde, 0xad, 0xbe, 0xef, 0x00]),
        (t.clone(), vec![b'x'; 1 << 20]),
        (t.clone(), br#"{"temp_c": NaN}"#.to_vec()),
        (t.clone(), br#"{"temp_c": "hot"}"#.to_vec()),
        (t.clone(), deep.into_bytes()),
        (t.clone(), br#"{"no_such_point": 1}"#.to_vec()),
        (format!("{t}/temp_c"), b"inf".to_vec()),
        (gw.topic(SCHOOL, "room-4", "status"), b"sideways".to_vec()),
    ];
    for (topic, payload) in corpus {
        dev.publish(&topic, payload).await;
    }
    // Then a good reading, which must still get through.
    dev.publish(&t, r#"{"temp_c":23.5}"#).await;
    let expect = [
        ("bad_json", 3.0),
        ("too_large", 1.0),
        ("wrong_type", 1.0),
        ("not_an_object", 1.0),
        ("unknown_point", 1.0),
        ("not_finite", 1.0),
        ("bad_status", 1.0),
    ];
    let gw_ref = &gw;
    gw.wait_until(Duration::from_secs(5), || async move {
        let mut all = true;
        for (reason, n) in expect {
            let got = gw_ref
                .metric(&format!(
                    "campusguard_rejected_total{{reason=\"{reason}\"}}"
                ))
                .await;
            all &= got == n;
        }
        all
    })
    .await;
    gw.wait_until(Duration::from_secs(5), || async {
        let (_, sensors) = gw.get_json("/api/v1/sensors", Some(OPERATOR_TOKEN)).await;
        sensors
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["sensor"] == format!("{SCHOOL}/room-4/temp_c") && s["value"] == 23.5)
    })
    .await;
    let (status, _) = gw.get_json("/healthz", None).await;
    assert_eq!(status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn unregistered_devices_are_listed_for_commissioning() {
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::start(&Setup::mosquitto("unreg", dir.path())).await;
    let dev = Device::connect(gw.mqtt_port, &unique("dev")).await;
    register_room(&gw, &dev, "known-1").await;
    dev.publish(
        &gw.topic(SCHOOL, "known-1", "telemetry"),
        r#"{"temp_c":20}"#,
    )
    .await;
    dev.publish(&gw.topic(SCHOOL, "mystery-9", "telemetry"), r#"{"x":1}"#)
        .await;
    gw.wait_until(Duration::from_secs(5), || async {
        let (_, list) = gw
            .get_json("/api/v1/devices?unregistered=true", Some(OPERATOR_TOKEN))
            .await;
        let ids: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap())
            .collect();
        ids == ["mystery-9"]
    })
    .await;
    assert_eq!(
        gw.metric("campusguard_unregistered_readings_total").await,
        1.0
    );
    gw.stop().await;
}

#[tokio::test]
async fn history_of_a_sensor_comes_back_from_the_local_store() {
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::start(&Setup::mosquitto("hist", dir.path())).await;
    let dev = Device::connect(gw.mqtt_port, &unique("dev")).await;
    register_room(&gw, &dev, "room-5").await;
    // Recent device time: the local history prunes readings older than its retention.
    let base = campusguard::model::now_ms() - 600_000;
    for i in 0..20 {
        dev.publish(
            &gw.topic(SCHOOL, "room-5", "telemetry"),
            format!(
                r#"{{"ts":{},"temp_c":{},"door_open":{}}}"#,
                base + i * 1000,
                20 + i,
                i % 2 == 0
            ),
        )
        .await;
    }
    let path = format!(
        "/api/v1/sensors/{SCHOOL}/room-5/temp_c/history?from={base}&to={}",
        base + 60_000
    );
    gw.wait_until(Duration::from_secs(5), || async {
        let (_, h) = gw.get_json(&path, Some(OPERATOR_TOKEN)).await;
        h["points"].as_array().is_some_and(|p| p.len() == 20)
    })
    .await;
    let (_, h) = gw.get_json(&path, Some(OPERATOR_TOKEN)).await;
    assert_eq!(h["points"][0], json!({"ts": base, "value": 20.0}));
    assert_eq!(h["points"][19], json!({"ts": base + 19_000, "value": 39.0}));
    let (_, d) = gw
        .get_json(
            &format!(
                "/api/v1/sensors/{SCHOOL}/room-5/door_open/history?from={base}&to={}",
                base + 60_000
            ),
            Some(OPERATOR_TOKEN),
        )
        .await;
    assert_eq!(d["points"][0]["value"], true);
    gw.stop().await;
}

#[tokio::test]
async fn the_api_refuses_what_the_caller_may_not_do() {
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::start(&Setup::mosquitto("auth", dir.path())).await;
    let dev = Device::connect(gw.mqtt_port, &unique("dev")).await;
    let mut stream = AlarmStream::open(&gw, OPERATOR_TOKEN).await;
    register_room(&gw, &dev, "room-6").await;
    dev.publish(&gw.topic(SCHOOL, "room-6", "telemetry"), r#"{"temp_c":45}"#)
        .await;
    let id = stream
        .next_matching(Duration::from_secs(5), |e| is(e, "raised", "temp_high"))
        .await["id"]
        .as_u64()
        .unwrap();
    let ack = format!("/api/v1/alarms/{id}/ack");
    assert_eq!(gw.post_json(&ack, None, json!({})).await.0, 401);
    assert_eq!(
        gw.post_json(&ack, Some("wrong-token-xxxxxxxxxxxx"), json!({}))
            .await
            .0,
        401
    );
    // The bureau reviews; it does not operate the control room.
    assert_eq!(
        gw.post_json(&ack, Some(BUREAU_TOKEN), json!({})).await.0,
        403
    );
    // Reads need a token unless public_read is on.
    assert_eq!(gw.get_json("/api/v1/alarms", None).await.0, 401);
    // Bad input: 4xx with a JSON error body.
    let (s, body) = gw
        .post_json("/api/v1/alarms/abc/ack", Some(OPERATOR_TOKEN), json!({}))
        .await;
    assert_eq!((s, body["error"].as_str()), (400, Some("bad_request")));
    let (s, _) = gw
        .post_json(
            &format!("/api/v1/alarms/{id}/shelve"),
            Some(OPERATOR_TOKEN),
            json!({"duration": "forever", "reason": "x"}),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = gw
        .post_json("/api/v1/alarms/999999/ack", Some(OPERATOR_TOKEN), json!({}))
        .await;
    assert_eq!(s, 404);
    let big = json!({"comment": "x".repeat(100_000)});
    let (s, _) = gw.post_json(&ack, Some(OPERATOR_TOKEN), big).await;
    assert_eq!(s, 413);
    // Shelving works with a reason and shows on the alarm.
    let (s, body) = gw
        .post_json(
            &format!("/api/v1/alarms/{id}/shelve"),
            Some(OPERATOR_TOKEN),
            json!({"duration": "30m", "reason": "传感器更换中"}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["shelved"]["reason"], "传感器更换中");
    // A non-latching alarm cannot be reset.
    let (s, _) = gw
        .post_json(
            &format!("/api/v1/alarms/{id}/reset"),
            Some(OPERATOR_TOKEN),
            json!({}),
        )
        .await;
    assert_eq!(s, 409);
    gw.stop().await;
}

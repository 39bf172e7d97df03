//! The duty log end to end against a real gateway and Mosquitto: a fire raised with nobody on
//! duty is flagged unattended on the board and in the log; an operator signs on (twice is a
//! 409; a second and a third person show the staffing), a fire is raised, acknowledged and
//! reset during the shift, the shift is handed over with notes; the day's log lists the alarm
//! and its acknowledgement in the shift, and its CSV and XLSX read back with Chinese headers.
//! Roles and school scopes: a lab manager or the bureau cannot sign on, a school-scoped
//! operator sees only its school's room, only the shift's own person (or an admin) hands it
//! over. Without rooms the routes answer empty lists and 404s and nothing is flagged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Cursor;
use std::time::Duration;

use calamine::Reader as _;
use serde_json::{json, Value};
use support::*;

const ROOM: &str = "中控室";
const EAST: &str = "东校区";
const OPERATOR2_TOKEN: &str = "test-operator2-token-0123456789";
const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcd";
const LAB_TOKEN: &str = "test-lab-token-0123456789abcdef";
const DFZX_TOKEN: &str = "test-dfzx-operator-token-012345";
const NOTES: &str = "3 号危化品柜门锁松动，已报修；=SUM(A1) 不是公式";

fn extra_toml(rooms: bool) -> String {
    let rooms = if rooms {
        format!(
            r#"
[[duty.rooms]]
name = "{ROOM}"
schools = ["xhsy"]
staff_per_shift = 2

[[duty.rooms]]
name = "{EAST}"
schools = ["dfzx"]
"#
        )
    } else {
        String::new()
    };
    format!(
        r#"
[[http.tokens]]
name = "operator-2"
token = "{OPERATOR2_TOKEN}"
role = "operator"

[[http.tokens]]
name = "admin-1"
token = "{ADMIN_TOKEN}"
role = "admin"

[[http.tokens]]
name = "lab-1"
token = "{LAB_TOKEN}"
role = "lab_manager"

[[http.tokens]]
name = "operator-dfzx"
token = "{DFZX_TOKEN}"
role = "operator"
schools = ["dfzx"]

[[devices]]
id = "det-1"
school = "xhsy"
profile = "test_room"
building = "实验楼"
{rooms}
"#
    )
}

async fn send(gw: &TestGateway, path: &str, token: &str, body: Value) -> (u16, Value) {
    gw.post_json(path, Some(token), body).await
}

/// The open `temp_fire` alarm of det-1 once `ok` holds for it.
async fn fire(gw: &TestGateway, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    eventually(what, Duration::from_secs(10), || {
        let ok = &ok;
        async move {
            let (_, alarms) = gw.get_json("/api/v1/alarms", Some(OPERATOR_TOKEN)).await;
            alarms
                .as_array()?
                .iter()
                .find(|a| a["device"] == "det-1" && a["rule"] == "temp_fire" && ok(a))
                .cloned()
        }
    })
    .await
}

/// Raises a fire on det-1, acknowledges it (as `token`, with `comment`), lets it return to
/// normal and resets it; returns the alarm as first seen.
async fn fire_handled(gw: &TestGateway, dev: &Device, token: &str, comment: &str) -> Value {
    let topic = gw.topic("xhsy", "det-1", "telemetry");
    dev.publish(&topic, r#"{"temp_c":65}"#).await;
    let alarm = fire(gw, "a fire", |a| a["state"] == "active_unacked").await;
    let id = alarm["id"].as_u64().unwrap();
    let (status, _) = send(
        gw,
        &format!("/api/v1/alarms/{id}/ack"),
        token,
        json!({"comment": comment}),
    )
    .await;
    assert_eq!(status, 200);
    dev.publish(&topic, r#"{"temp_c":20}"#).await;
    fire(gw, "the fire back to normal", |a| {
        a["id"] == id && a["condition_active"] == false
    })
    .await;
    let (status, body) = send(
        gw,
        &format!("/api/v1/alarms/{id}/reset"),
        token,
        json!({"comment": "现场确认"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    alarm
}

async fn get_bytes(
    gw: &TestGateway,
    path: &str,
    token: &str,
) -> (reqwest::header::HeaderMap, Vec<u8>) {
    let resp = reqwest::Client::new()
        .get(gw.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{path}");
    let headers = resp.headers().clone();
    (headers, resp.bytes().await.unwrap().to_vec())
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The local date (UTC+8, the default `tickets.utc_offset_hours`) of Unix ms `at`.
fn local_day(at: i64) -> String {
    let days = (at + 8 * 3_600_000).div_euclid(86_400_000);
    let (y, m, d) = campusguard::tickets::time::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shift_signs_on_handles_a_fire_hands_over_and_the_days_log_lists_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::mosquitto("duty", dir.path());
    setup.extra_toml = extra_toml(true);
    let gw = TestGateway::start(&setup).await;
    let dev = Device::connect(gw.mqtt_port, &unique("duty-dev")).await;
    let room_q = urlencode(ROOM);

    // Nobody on duty: both rooms short-staffed; a scoped operator sees only its school's room.
    let (status, now) = gw
        .get_json("/api/v1/duty/shifts", Some(OPERATOR_TOKEN))
        .await;
    assert_eq!(status, 200);
    let names: Vec<&str> = now["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [ROOM, EAST]);
    assert_eq!(now["rooms"][0]["staffing"], "short");
    let (_, scoped) = gw.get_json("/api/v1/duty/shifts", Some(DFZX_TOKEN)).await;
    assert_eq!(scoped["rooms"].as_array().unwrap().len(), 1);
    assert_eq!(scoped["rooms"][0]["name"], EAST);
    let (status, _) = gw
        .get_json(
            &format!("/api/v1/duty/shifts?room={room_q}"),
            Some(DFZX_TOKEN),
        )
        .await;
    assert_eq!(status, 404);

    // A fire with nobody signed on: unattended on the board (list, page and stream), handled
    // by the admin.
    let mut stream = AlarmStream::open(&gw, OPERATOR_TOKEN).await;
    let topic = gw.topic("xhsy", "det-1", "telemetry");
    dev.publish(&topic, r#"{"temp_c":65}"#).await;
    let streamed = stream
        .next_matching(Duration::from_secs(10), |e| {
            e["rule"] == "temp_fire" && e["transition"] == "raised"
        })
        .await;
    assert_eq!(streamed["unattended"], true, "{streamed}");
    let lonely = fire(&gw, "the unattended fire", |a| {
        a["state"] == "active_unacked"
    })
    .await;
    assert_eq!(lonely["unattended"], true, "{lonely}");
    let lonely_id = lonely["id"].as_u64().unwrap();
    let (_, one) = gw
        .get_json(&format!("/api/v1/alarms/{lonely_id}"), Some(OPERATOR_TOKEN))
        .await;
    assert_eq!(one["unattended"], true);
    let (status, acked) = send(
        &gw,
        &format!("/api/v1/alarms/{lonely_id}/ack"),
        ADMIN_TOKEN,
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    // The action's answer carries the flag too (a board that takes it keeps the badge).
    assert_eq!(acked["unattended"], true, "{acked}");
    assert_eq!(acked["transition"], "acknowledged");
    dev.publish(&topic, r#"{"temp_c":20}"#).await;
    fire(&gw, "back to normal", |a| {
        a["id"] == lonely_id && a["condition_active"] == false
    })
    .await;
    let (status, _) = send(
        &gw,
        &format!("/api/v1/alarms/{lonely_id}/reset"),
        ADMIN_TOKEN,
        json!({}),
    )
    .await;
    assert_eq!(status, 200);

    // Sign on; a second time is refused; who may not sign on is told so.
    let (status, on) = send(
        &gw,
        "/api/v1/duty/shifts",
        OPERATOR_TOKEN,
        json!({"room": ROOM, "display_name": "李明"}),
    )
    .await;
    assert_eq!(status, 201, "{on}");
    let shift_id = on["shift"]["id"].as_i64().unwrap();
    assert_eq!(on["shift"]["display_name"], "李明");
    assert_eq!(on["shift"]["user"], "operator-1");
    assert_eq!(on["room"]["staffing"], "short");
    let (status, again) = send(
        &gw,
        "/api/v1/duty/shifts",
        OPERATOR_TOKEN,
        json!({"room": ROOM}),
    )
    .await;
    assert_eq!(status, 409, "{again}");
    for token in [LAB_TOKEN, BUREAU_TOKEN] {
        let (status, _) = send(&gw, "/api/v1/duty/shifts", token, json!({"room": ROOM})).await;
        assert_eq!(status, 403);
    }
    let (status, _) = send(
        &gw,
        "/api/v1/duty/shifts",
        DFZX_TOKEN,
        json!({"room": ROOM}),
    )
    .await;
    assert_eq!(
        status, 404,
        "a room outside the scope does not exist for the caller"
    );
    let (status, _) = send(
        &gw,
        "/api/v1/duty/shifts",
        OPERATOR_TOKEN,
        json!({"room": "nope"}),
    )
    .await;
    assert_eq!(status, 404);
    // Two is the plan; a third (an admin helping out) is allowed and shown as over.
    let (status, second) = send(
        &gw,
        "/api/v1/duty/shifts",
        OPERATOR2_TOKEN,
        json!({"room": ROOM}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(second["room"]["staffing"], "full");
    assert_eq!(second["shift"]["display_name"], "operator-2");
    let (status, third) = send(
        &gw,
        "/api/v1/duty/shifts",
        ADMIN_TOKEN,
        json!({"room": ROOM}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(third["room"]["staffing"], "over");
    assert_eq!(third["room"]["on_duty"].as_array().unwrap().len(), 3);
    let admin_shift = third["shift"]["id"].as_i64().unwrap();

    // A fire during the shift: attended; acknowledged and reset by the operator on duty.
    let handled = fire_handled(&gw, &dev, OPERATOR_TOKEN, "值班员到场确认").await;
    assert_eq!(handled["unattended"], false, "{handled}");
    let streamed = stream
        .next_matching(Duration::from_secs(10), |e| {
            e["id"] == handled["id"] && e["transition"] == "acknowledged"
        })
        .await;
    assert_eq!(streamed["unattended"], false, "{streamed}");
    let handled_id = handled["id"].as_i64().unwrap();
    assert_ne!(handled_id as u64, lonely_id);

    // The handover: only the shift's own person (or an admin); once.
    let path = format!("/api/v1/duty/shifts/{shift_id}/handover");
    let (status, _) = send(&gw, &path, OPERATOR2_TOKEN, json!({"notes": "x"})).await;
    assert_eq!(status, 403);
    let (status, off) = send(&gw, &path, OPERATOR_TOKEN, json!({"notes": NOTES})).await;
    assert_eq!(status, 200, "{off}");
    assert!(off["shift"]["off_at"].as_i64().is_some());
    let (status, _) = send(&gw, &path, OPERATOR_TOKEN, json!({"notes": NOTES})).await;
    assert_eq!(status, 409);
    let (status, _) = send(
        &gw,
        &format!("/api/v1/duty/shifts/{admin_shift}/handover"),
        ADMIN_TOKEN,
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let (_, now) = gw
        .get_json(
            &format!("/api/v1/duty/shifts?room={room_q}"),
            Some(BUREAU_TOKEN),
        )
        .await;
    let room = &now["rooms"][0];
    assert_eq!(room["on_duty"].as_array().unwrap().len(), 1);
    assert_eq!(room["on_duty"][0]["user"], "operator-2");
    // The admin signed off last, without notes; the operator's notes are in the log.
    assert_eq!(room["last_handover"]["user"], "admin-1");

    // A drill of the room's school that day, started and ended by the operator on duty.
    let (status, drill) = send(
        &gw,
        "/api/v1/drills",
        OPERATOR2_TOKEN,
        json!({"school": "xhsy", "duration": "30m", "reason": "疏散演练"}),
    )
    .await;
    assert_eq!(status, 201, "{drill}");
    let resp = reqwest::Client::new()
        .delete(gw.url(&format!("/api/v1/drills/{}", drill["id"])))
        .bearer_auth(OPERATOR2_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    // The day's log: the shifts, the handled fire and its acknowledgement in the shift, the
    // unattended one outside any shift, the drill.
    let day = local_day(handled["raised_at"].as_i64().unwrap());
    let log_path = format!("/api/v1/duty/log?room={room_q}&date={day}");
    let (status, log) = gw.get_json(&log_path, Some(BUREAU_TOKEN)).await;
    assert_eq!(status, 200, "{log}");
    assert_eq!(log["date"], day.as_str());
    // No [[schools]] list here: the names are the ids.
    assert_eq!(log["school_names"], json!(["xhsy"]));
    let shifts = log["shifts"].as_array().unwrap();
    assert_eq!(shifts.len(), 3);
    let mine = shifts.iter().find(|s| s["id"] == shift_id).unwrap();
    assert_eq!(mine["notes"], NOTES);
    let events = log["events"].as_array().unwrap();
    let of = |id: i64, transition: &str| {
        events
            .iter()
            .find(|e| e["alarm_id"] == id && e["transition"] == transition)
            .unwrap_or_else(|| panic!("no {transition} of {id} in {events:?}"))
            .clone()
    };
    let raised = of(handled_id, "raised");
    assert_eq!(raised["unattended"], false);
    assert_eq!(raised["class"], "fire");
    assert!(raised["shift_ids"]
        .as_array()
        .unwrap()
        .contains(&json!(shift_id)));
    let ack = of(handled_id, "acknowledged");
    assert_eq!(ack["user"], "operator-1");
    assert_eq!(ack["comment"], "值班员到场确认");
    assert!(ack["shift_ids"]
        .as_array()
        .unwrap()
        .contains(&json!(shift_id)));
    assert!(of(handled_id, "reset")["shift_ids"]
        .as_array()
        .unwrap()
        .contains(&json!(shift_id)));
    let drills = log["drills"].as_array().unwrap();
    assert_eq!(drills.len(), 1, "{drills:?}");
    assert_eq!(drills[0]["reason"], "疏散演练");
    assert!(drills[0]["ended_at"].as_i64().is_some());
    let lonely_raised = of(lonely_id as i64, "raised");
    assert_eq!(lonely_raised["unattended"], true);
    assert_eq!(lonely_raised["shift_ids"], json!([]));
    // Default date: today (the same day unless the test ran across local midnight).
    let (status, _) = gw
        .get_json(
            &format!("/api/v1/duty/log?room={room_q}"),
            Some(OPERATOR_TOKEN),
        )
        .await;
    assert_eq!(status, 200);
    for bad in ["date=2026-02-30", "date=06-12-2026", "format=pdf"] {
        let (status, _) = gw
            .get_json(
                &format!("/api/v1/duty/log?room={room_q}&{bad}"),
                Some(OPERATOR_TOKEN),
            )
            .await;
        assert_eq!(status, 400, "{bad}");
    }
    let (status, _) = gw.get_json(&log_path, Some(DFZX_TOKEN)).await;
    assert_eq!(status, 404);

    // CSV: BOM, Chinese headers, the timeline with the handover notes as text.
    let (headers, body) = get_bytes(&gw, &format!("{log_path}&format=csv"), BUREAU_TOKEN).await;
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert!(headers["content-disposition"]
        .to_str()
        .unwrap()
        .contains("attachment"));
    assert!(body.starts_with("\u{FEFF}".as_bytes()));
    let mut reader = csv::Reader::from_reader(&body[3..]);
    let head = reader.headers().unwrap().clone();
    assert_eq!(&head[0], "时间");
    assert_eq!(&head[1], "事项");
    assert_eq!(&head[10], "无人值守");
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let find = |what: &str, id: i64| {
        rows.iter()
            .find(|r| &r[1] == what && r[3] == id.to_string())
            .unwrap_or_else(|| panic!("no {what} of {id} in the CSV"))
    };
    assert_eq!(&find("报警", handled_id)[4], "火警");
    assert!(find("报警", handled_id)[9].contains("李明"));
    assert_eq!(&find("确认", handled_id)[7], "operator-1");
    assert_eq!(&find("报警", lonely_id as i64)[10], "是");
    assert_eq!(&find("报警", handled_id)[10], "");
    assert!(rows.iter().any(|r| &r[1] == "接班" && &r[7] == "李明"));
    assert!(rows
        .iter()
        .any(|r| &r[1] == "演练开始" && &r[6] == "疏散演练" && &r[7] == "operator-2"));
    assert!(rows.iter().any(|r| &r[1] == "演练结束"));
    let handover = rows
        .iter()
        .find(|r| &r[1] == "交班" && &r[7] == "李明")
        .unwrap();
    assert!(handover[8].contains("门锁松动"));
    // Rows in time order.
    let times: Vec<String> = rows.iter().map(|r| r[0].to_string()).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted);

    // XLSX: the same rows, read back with calamine.
    let (headers, body) = get_bytes(&gw, &format!("{log_path}&format=xlsx"), BUREAU_TOKEN).await;
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .contains("spreadsheetml"));
    let mut book = calamine::Xlsx::new(Cursor::new(body)).unwrap();
    let sheet = book.worksheet_range("值班记录").unwrap();
    let mut sheet_rows = sheet.rows();
    let header = sheet_rows.next().unwrap();
    assert_eq!(header[1].to_string(), "事项");
    assert_eq!(header[9].to_string(), "在岗值班人员");
    let data: Vec<_> = sheet_rows.collect();
    assert_eq!(data.len(), rows.len());
    assert!(data.iter().any(|r| r[1] == "交班" && r[8] == NOTES));
    // English on request.
    let (_, body) = get_bytes(
        &gw,
        &format!("{log_path}&format=csv&lang=en"),
        OPERATOR_TOKEN,
    )
    .await;
    let mut reader = csv::Reader::from_reader(&body[3..]);
    assert_eq!(&reader.headers().unwrap()[1], "What");
    drop(stream);
    drop(dev);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_duty_rooms_the_routes_are_empty_and_no_alarm_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::mosquitto("duty-none", dir.path());
    setup.extra_toml = extra_toml(false);
    let gw = TestGateway::start(&setup).await;
    let (status, now) = gw
        .get_json("/api/v1/duty/shifts", Some(OPERATOR_TOKEN))
        .await;
    assert_eq!(status, 200);
    assert_eq!(now["rooms"], json!([]));
    let (status, _) = send(
        &gw,
        "/api/v1/duty/shifts",
        OPERATOR_TOKEN,
        json!({"room": ROOM}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = gw
        .get_json(
            &format!("/api/v1/duty/log?room={}", urlencode(ROOM)),
            Some(OPERATOR_TOKEN),
        )
        .await;
    assert_eq!(status, 404);
    let dev = Device::connect(gw.mqtt_port, &unique("duty-none-dev")).await;
    dev.publish(&gw.topic("xhsy", "det-1", "telemetry"), r#"{"temp_c":65}"#)
        .await;
    let alarm = fire(&gw, "a fire", |_| true).await;
    assert!(alarm.get("unattended").is_none(), "{alarm}");
    drop(dev);
    gw.stop().await;
}

//! The alarm history end to end: a journal of 20,000 alarms (10,000 of them matching one
//! filter) read page by page with `next_cursor`, exported as CSV and XLSX with the filter
//! applied and read back (csv, calamine) and counted; an alarm raised through MQTT carries its
//! device's building; a token scoped to another school sees none of it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::io::Cursor;
use std::time::Duration;

use calamine::Reader as _;
use campusguard::alarms::{Alarm, AlarmEvent, AlarmState, Transition};
use campusguard::model::{AlarmClass, SensorId, Severity};
use campusguard::store::{LocalStore, StorageConfig};
use support::*;

const SCHOOL: &str = "xhsy";
const OTHER: &str = "dfzx";
const OTHER_TOKEN: &str = "test-dfzx-operator-token-012345";
const BUILDING: &str = "实验楼";
/// The matching alarms are raised one a second from here (2026-11-01 00:00 UTC).
const T0: i64 = 1_793_491_200_000;
const MATCHING: usize = 10_000;

fn extra_toml() -> String {
    format!(
        r#"
[[http.tokens]]
name = "operator-dfzx"
token = "{OTHER_TOKEN}"
role = "operator"
schools = ["{OTHER}"]

[[devices]]
id = "lab-1"
school = "{SCHOOL}"
profile = "test_room"
building = "{BUILDING}"
room = "301"
"#
    )
}

fn event(id: u64, school: &str, class: AlarmClass, at: i64, message: &str) -> AlarmEvent {
    let sensor = SensorId::new(school, &format!("det-{}", id % 50), "smoke");
    AlarmEvent {
        transition: Transition::Raised,
        at,
        user: "system".into(),
        comment: None,
        false_alarm: false,
        disposition: None,
        alarm: Alarm {
            id,
            school: sensor.school.clone(),
            device: sensor.device.clone(),
            point: sensor.point.clone(),
            sensor,
            rule: "smoke".into(),
            class,
            severity: Severity::Alarm,
            state: AlarmState::Cleared,
            value: None,
            threshold: Some(0.5),
            message: message.into(),
            raised_at: at,
            updated_at: at,
            reading_ts: at,
            cleared_at: Some(at + 60_000),
            condition_active: false,
            acked_by: Some("值班员甲".into()),
            acked_at: Some(at + 5_000),
            ack_comment: Some("已到场".into()),
            shelved: None,
            drill: false,
            occurrences: 1,
        },
    }
}

/// 20,000 alarms: 10,000 fires of SCHOOL in BUILDING one a second from T0 (the selection), and
/// 10,000 that each miss it by one filter (other class, other school, other building, before
/// T0).
async fn fill(data_dir: &std::path::Path) {
    let store = LocalStore::open(&StorageConfig {
        data_dir: data_dir.to_path_buf(),
        ..StorageConfig::default()
    })
    .await
    .unwrap();
    let mut events = Vec::with_capacity(2 * MATCHING);
    for i in 0..MATCHING as u64 {
        let at = T0 + i as i64 * 1000;
        // One message starts like a formula: it must come back as text.
        let message = if i == 7 { "=1+1" } else { "烟感报警" };
        events.push((
            event(2 * i + 1, SCHOOL, AlarmClass::Fire, at, message),
            true,
        ));
        let (school, class, at) = match i % 4 {
            0 => (SCHOOL, AlarmClass::Supervisory, at),
            1 => (OTHER, AlarmClass::Fire, at),
            2 => (SCHOOL, AlarmClass::Fire, at), // other building
            _ => (SCHOOL, AlarmClass::Fire, T0 - 1 - i as i64),
        };
        let other_building = i % 4 == 2;
        events.push((
            event(2 * i + 2, school, class, at, "烟感报警"),
            !other_building,
        ));
    }
    for chunk in events.chunks(2000) {
        let (batch, in_building): (Vec<AlarmEvent>, Vec<bool>) = chunk.iter().cloned().unzip();
        let buildings: std::collections::HashMap<u64, bool> = batch
            .iter()
            .zip(&in_building)
            .map(|(e, b)| (e.alarm.id, *b))
            .collect();
        store
            .record_placed_events(&batch, |a| {
                Some(
                    if buildings[&a.id] {
                        BUILDING
                    } else {
                        "教学楼"
                    }
                    .to_string(),
                )
            })
            .await
            .unwrap();
    }
    store.close().await;
}

fn selection() -> String {
    format!(
        "school={SCHOOL}&class=fire&building={}&from={T0}&to={}",
        urlencode(BUILDING),
        T0 + MATCHING as i64 * 1000
    )
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn get(gw: &TestGateway, path: &str, token: &str) -> reqwest::Response {
    let resp = reqwest::Client::new()
        .get(gw.url(path))
        .bearer_auth(token)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{path}");
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_alarms_page_and_export_as_csv_and_xlsx_with_the_filters_applied() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path()).await;
    let mut setup = Setup::embedded("alarm-history", dir.path());
    setup.extra_toml = extra_toml();
    let gw = TestGateway::start(&setup).await;

    // Pages of 1000 with the cursor: every match once, newest first, nothing else.
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("/api/v1/alarms/history?{}&limit=1000", selection());
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page: serde_json::Value = get(&gw, &path, OPERATOR_TOKEN).await.json().await.unwrap();
        pages += 1;
        for a in page["alarms"].as_array().unwrap() {
            assert_eq!(a["school"], SCHOOL);
            assert_eq!(a["class"], "fire");
            assert_eq!(a["building"], BUILDING);
            ids.push(a["id"].as_u64().unwrap());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(pages <= 11, "more pages than alarms");
    }
    let expected: Vec<u64> = (0..MATCHING as u64).rev().map(|i| 2 * i + 1).collect();
    assert_eq!(ids, expected);

    // CSV: BOM, Chinese headers, every match once, the formula-like message as text.
    let resp = get(
        &gw,
        &format!("/api/v1/alarms/history?{}&format=csv", selection()),
        OPERATOR_TOKEN,
    )
    .await;
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert!(resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("attachment"));
    let body = resp.bytes().await.unwrap();
    assert!(body.starts_with("\u{FEFF}".as_bytes()));
    let mut reader = csv::Reader::from_reader(&body[3..]);
    let headers = reader.headers().unwrap().clone();
    assert_eq!(&headers[0], "编号");
    assert_eq!(&headers[1], "报警时间");
    assert_eq!(&headers[3], "楼栋");
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), MATCHING);
    let csv_ids: BTreeSet<u64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    assert_eq!(csv_ids, expected.iter().copied().collect());
    assert!(rows
        .iter()
        .all(|r| &r[2] == SCHOOL && &r[3] == BUILDING && &r[7] == "火警"));
    assert!(rows.iter().any(|r| &r[10] == "'=1+1"));
    // Local time (UTC+8 by default): the newest alarm.
    assert_eq!(&rows[0][1], "2026-11-01 10:46:39");

    // XLSX: the same rows, read back with calamine.
    let resp = get(
        &gw,
        &format!("/api/v1/alarms/history?{}&format=xlsx", selection()),
        OPERATOR_TOKEN,
    )
    .await;
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("spreadsheetml"));
    let body = resp.bytes().await.unwrap();
    let mut book = calamine::Xlsx::new(Cursor::new(body.to_vec())).unwrap();
    let sheet = book.worksheet_range("报警记录").unwrap();
    let mut sheet_rows = sheet.rows();
    let header = sheet_rows.next().unwrap();
    assert_eq!(header[0].to_string(), "编号");
    assert_eq!(header[9].to_string(), "状态");
    let data: Vec<_> = sheet_rows.collect();
    assert_eq!(data.len(), MATCHING);
    let xlsx_ids: BTreeSet<u64> = data
        .iter()
        .map(|r| r[0].to_string().parse().unwrap())
        .collect();
    assert_eq!(xlsx_ids, csv_ids);
    assert!(data.iter().all(|r| r[9] == "已恢复"));
    assert!(data.iter().any(|r| r[10] == "=1+1"));

    // English headers on request; no filter but the time: both schools' 20,000 less the
    // 2,500 before T0.
    let end = T0 + MATCHING as i64 * 1000;
    let path = format!("/api/v1/alarms/history?from={T0}&to={end}&format=csv&lang=en");
    let resp = get(&gw, &path, OPERATOR_TOKEN).await;
    let body = resp.bytes().await.unwrap();
    let mut reader = csv::Reader::from_reader(&body[3..]);
    assert_eq!(&reader.headers().unwrap()[1], "Raised at");
    assert_eq!(reader.records().count(), 2 * MATCHING - MATCHING / 4);

    // A token of the other school: nothing of SCHOOL, in pages or exports.
    let page: serde_json::Value = get(
        &gw,
        &format!("/api/v1/alarms/history?{}", selection()),
        OTHER_TOKEN,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(page["alarms"].as_array().unwrap().len(), 0);
    let body = get(
        &gw,
        "/api/v1/alarms/history?format=csv&limit=5",
        OTHER_TOKEN,
    )
    .await
    .bytes()
    .await
    .unwrap();
    let mut reader = csv::Reader::from_reader(&body[3..]);
    let schools: BTreeSet<String> = reader
        .records()
        .map(|r| r.unwrap()[2].to_string())
        .collect();
    assert_eq!(schools, BTreeSet::from([OTHER.to_string()]));

    // Bad filters are refused, naming the parameter.
    for bad in [
        "class=smoke",
        "state=open",
        "cursor=x",
        "from=2&to=1",
        "format=pdf",
    ] {
        let resp = reqwest::Client::new()
            .get(gw.url(&format!("/api/v1/alarms/history?{bad}")))
            .bearer_auth(OPERATOR_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{bad}");
    }

    // An alarm raised now through MQTT carries its device's building from the config.
    let dev = Device::connect(gw.mqtt_port, &unique("history-dev")).await;
    dev.publish(&gw.topic(SCHOOL, "lab-1", "telemetry"), r#"{"temp_c":45}"#)
        .await;
    let path = format!(
        "/api/v1/alarms/history?building={}&from={}",
        urlencode(BUILDING),
        T0 + 86_400_000
    );
    let found = eventually(
        "the live alarm in the history",
        Duration::from_secs(10),
        || {
            let (gw, path) = (&gw, &path);
            async move {
                let (_, page) = gw.get_json(path, Some(OPERATOR_TOKEN)).await;
                page["alarms"].as_array()?.first().cloned()
            }
        },
    )
    .await;
    assert_eq!(found["device"], "lab-1");
    assert_eq!(found["building"], BUILDING);
    assert_eq!(found["rule"], "temp_high");
    gw.stop().await;
}

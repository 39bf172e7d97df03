//! Issue 15 against a whole gateway (embedded broker, SQLite tickets, HTTP): schools as data,
//! the five-in-place fields and places in the ledger, the reporting calendar with frozen
//! snapshots and the district file, the statistics API and the drill history.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use campusguard::access::{Principal, Role};
use campusguard::tickets::time::{local_date, month_range};
use serde_json::{json, Value};
use support::*;

const SAFETY_TOKEN: &str = "report-safety-token-0123456789ab";
const SAFETY2_TOKEN: &str = "report-safety2-token-0123456789a";
const OTHER_SAFETY_TOKEN: &str = "report-other-safety-token-012345";
const OFFSET: i64 = 8 * 3_600_000;

/// Three schools as data, devices with a place, and school-scoped tokens.
fn schools_toml() -> String {
    format!(
        r#"
[[schools]]
id = "xhsy"
name = "新华实验小学"
code = "XH"
kind = "primary"

[[schools]]
id = "dfzx"
name = "东方中学"
kind = "middle"

[[schools]]
id = "yey"
name = "实验幼儿园"
code = "YEY"
kind = "kindergarten"

[[devices]]
id = "cab-2"
school = "xhsy"
profile = "test_room"
building = "实验楼"
room = "301"

[[http.tokens]]
name = "safety-1"
token = "{SAFETY_TOKEN}"
role = "school_safety"
schools = ["xhsy"]

[[http.tokens]]
name = "safety-2"
token = "{SAFETY2_TOKEN}"
role = "school_safety"
schools = ["xhsy"]

[[http.tokens]]
name = "safety-dfzx"
token = "{OTHER_SAFETY_TOKEN}"
role = "school_safety"
schools = ["dfzx"]
"#
    )
}

fn this_month() -> String {
    let (y, m, _) = local_date(campusguard::model::now_ms(), OFFSET);
    format!("{y:04}-{m:02}")
}

async fn get_bytes(gw: &TestGateway, path: &str, token: &str) -> (u16, Vec<u8>, Option<String>) {
    let resp = reqwest::Client::new()
        .get(gw.url(path))
        .bearer_auth(token)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let hash = resp
        .headers()
        .get("x-content-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, resp.bytes().await.unwrap().to_vec(), hash)
}

/// The sheet's rows as text, header first.
fn xlsx_rows(bytes: Vec<u8>) -> Vec<Vec<String>> {
    use calamine::Reader;
    let mut book: calamine::Xlsx<_> =
        calamine::open_workbook_from_rs(std::io::Cursor::new(bytes)).unwrap();
    let range = book.worksheet_range("隐患台账").unwrap();
    range
        .rows()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect()
}

fn csv_rows(bytes: &[u8]) -> Vec<Vec<String>> {
    assert!(bytes.starts_with(&[0xEF, 0xBB, 0xBF]), "BOM");
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(&bytes[3..]);
    reader
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect()
}

fn column(rows: &[Vec<String>], header: &str) -> usize {
    rows[0]
        .iter()
        .position(|h| h == header)
        .unwrap_or_else(|| panic!("no column {header} in {:?}", rows[0]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitted_month_stays_byte_for_byte_the_same_after_its_tickets_change_and_carries_the_five_in_place(
) {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::embedded("reports", dir.path());
    setup.extra_toml = schools_toml();
    let gw = TestGateway::start(&setup).await;
    let month = this_month();

    // A hazard registered by place, with the five in place given at assignment.
    let (status, t) = gw
        .post_json(
            "/api/v1/tickets",
            Some(SAFETY_TOKEN),
            json!({"school": "xhsy", "building": "教学楼", "room": "204", "category": "fire",
                   "description": "灭火器压力不足", "funding": "公用经费 300 元"}),
        )
        .await;
    assert_eq!(status, 201, "{t}");
    let id = t["id"].as_str().unwrap().to_string();
    assert!(
        id.starts_with("XH-"),
        "the [[schools]] code numbers it: {id}"
    );
    assert_eq!(t["location"], "教学楼 204");
    assert_eq!(t["school_name"], "新华实验小学");
    let (status, t) = gw
        .post_json(
            &format!("/api/v1/tickets/{id}/actions/assign"),
            Some(SAFETY_TOKEN),
            json!({"version": 1, "responsible_person": "王老师", "measures": "更换灭火器",
                   "contingency_plan": "临时调配两具灭火器"}),
        )
        .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["contingency_plan"], "临时调配两具灭火器");
    assert_eq!(t["funding"], "公用经费 300 元");

    // Only the school's own school_safety submits; the bureau and another school may not.
    let submit = format!("/api/v1/reports/xhsy/{month}/submit");
    for token in [BUREAU_TOKEN, OTHER_SAFETY_TOKEN, OPERATOR_TOKEN] {
        let (status, body) = gw.post_json(&submit, Some(token), json!({})).await;
        assert_eq!(status, 403, "{token}: {body}");
        assert!(
            body["message_zh"].as_str().unwrap().starts_with("无权"),
            "{body}"
        );
    }
    let (status, snap) = gw.post_json(&submit, Some(SAFETY_TOKEN), json!({})).await;
    assert_eq!(status, 201, "{snap}");
    assert_eq!(snap["row_count"], 1);
    assert_eq!(snap["submitted_by"], "safety-1");
    let (status, again) = gw.post_json(&submit, Some(SAFETY2_TOKEN), json!({})).await;
    assert_eq!(status, 409, "a month is submitted once: {again}");
    assert_eq!(again["message_zh"], "该月已上报，月报已冻结，不能重复上报");

    let report = |format: &str| format!("/api/v1/reports/xhsy/{month}?format={format}");
    let (status, csv_before, hash) = get_bytes(&gw, &report("csv"), BUREAU_TOKEN).await;
    assert_eq!(status, 200);
    assert_eq!(hash.as_deref(), snap["sha256"].as_str());
    let (_, xlsx_before, _) = get_bytes(&gw, &report("xlsx"), BUREAU_TOKEN).await;
    let (_, json_before, _) = get_bytes(&gw, &report("json"), SAFETY_TOKEN).await;
    // The other school cannot read it.
    assert_eq!(
        get_bytes(&gw, &report("csv"), OTHER_SAFETY_TOKEN).await.0,
        404
    );

    // The five in place, read back from CSV and XLSX.
    for rows in [csv_rows(&csv_before), xlsx_rows(xlsx_before.clone())] {
        assert_eq!(rows.len(), 2, "{rows:?}");
        let row = &rows[1];
        assert_eq!(row[column(&rows, "学校")], "新华实验小学");
        assert_eq!(row[column(&rows, "位置")], "教学楼 204");
        assert_eq!(row[column(&rows, "责任单位")], "办公室");
        assert_eq!(row[column(&rows, "责任人")], "王老师");
        assert_eq!(row[column(&rows, "整改措施")], "更换灭火器");
        assert_eq!(row[column(&rows, "整改资金")], "公用经费 300 元");
        assert!(!row[column(&rows, "整改时限")].is_empty());
        assert_eq!(row[column(&rows, "应急预案")], "临时调配两具灭火器");
        assert_eq!(row[column(&rows, "状态")], "整改中");
    }

    // The ticket changes after the submission, and a new one is filed: the live ledger shows
    // it, the frozen month does not.
    let (status, _) = gw
        .post_json(
            &format!("/api/v1/tickets/{id}/actions/report"),
            Some(SAFETY_TOKEN),
            json!({"version": 2, "rectification": "已更换两具灭火器"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = gw
        .post_json(
            "/api/v1/tickets",
            Some(SAFETY2_TOKEN),
            json!({"school": "xhsy", "location": "食堂", "category": "food_water", "description": "留样柜温度偏高"}),
        )
        .await;
    assert_eq!(status, 201);
    let (_, live, _) = get_bytes(
        &gw,
        &format!("/api/v1/tickets/export?month={month}&format=csv"),
        BUREAU_TOKEN,
    )
    .await;
    let live = csv_rows(&live);
    assert_eq!(live.len(), 3);
    assert_eq!(live[1][column(&live, "状态")], "待验收");
    for (format, before) in [
        ("csv", &csv_before),
        ("xlsx", &xlsx_before),
        ("json", &json_before),
    ] {
        let (status, after, _) = get_bytes(&gw, &report(format), BUREAU_TOKEN).await;
        assert_eq!(status, 200);
        assert!(&after == before, "{format} changed after submission");
    }

    // The calendar: xhsy submitted (today is before the 28th's end, or late after it), the
    // others missing; a school-scoped reader sees only its school.
    let (status, cal) = gw
        .get_json(
            &format!("/api/v1/reports?month={month}"),
            Some(BUREAU_TOKEN),
        )
        .await;
    assert_eq!(status, 200, "{cal}");
    let statuses: Vec<(String, String)> = cal["schools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["school"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let (_, _, day) = local_date(campusguard::model::now_ms(), OFFSET);
    let expected_xhsy = if day <= 28 { "submitted" } else { "late" };
    assert_eq!(
        statuses,
        vec![
            ("xhsy".to_string(), expected_xhsy.to_string()),
            ("dfzx".to_string(), "missing".to_string()),
            ("yey".to_string(), "missing".to_string()),
        ]
    );
    assert_eq!(cal["schools"][0]["name"], "新华实验小学");
    let (_, mine) = gw
        .get_json(
            &format!("/api/v1/reports?month={month}"),
            Some(OTHER_SAFETY_TOKEN),
        )
        .await;
    assert_eq!(mine["schools"].as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(mine["schools"][0]["school"], "dfzx");

    // The district file joins the frozen months: one row, the frozen state.
    let (status, district, _) = get_bytes(
        &gw,
        &format!("/api/v1/reports/district/{month}?format=xlsx"),
        BUREAU_TOKEN,
    )
    .await;
    assert_eq!(status, 200);
    let rows = xlsx_rows(district);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[1][column(&rows, "编号")], id);
    assert_eq!(rows[1][column(&rows, "状态")], "整改中");
    assert_eq!(
        gw.get_json("/api/v1/reports?month=2026-13", Some(BUREAU_TOKEN))
            .await
            .0,
        400
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_month_submitted_after_its_due_day_is_late_and_one_before_it_is_submitted_on_sqlite() {
    calendar_and_frozen_bytes(None).await;
}

#[tokio::test]
async fn a_month_submitted_after_its_due_day_is_late_and_one_before_it_is_submitted_on_postgres() {
    let schema = format!(
        "r_{}",
        unique("pg").replace(['-'], "_").to_ascii_lowercase()
    );
    calendar_and_frozen_bytes(Some(schema)).await;
}

/// The calendar's statuses and a frozen month's bytes, on SQLite or in a PostgreSQL schema
/// (dropped at the end).
async fn calendar_and_frozen_bytes(schema: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let schools = campusguard::schools::Schools::new(
        ["a", "b", "c"]
            .iter()
            .map(|id| campusguard::schools::School {
                id: id.to_string(),
                name: format!("{id} 学校"),
                code: None,
                kind: campusguard::schools::SchoolKind::Primary,
            })
            .collect(),
    );
    let config = campusguard::tickets::TicketsConfig {
        schools,
        database_url: schema.as_ref().map(|_| pg_url()),
        schema: schema.clone(),
        ..campusguard::tickets::TicketsConfig::default()
    };
    let tickets = campusguard::tickets::Tickets::open(&config, dir.path())
        .await
        .unwrap();
    let safety = |school: &str| Principal {
        name: format!("safety-{school}"),
        role: Some(Role::SchoolSafety),
        schools: Some(Arc::from(vec![school.to_string()])),
    };
    let due = tickets.school_due_at("2026-10").unwrap();
    // The end of 28 October, Beijing time.
    let (start, _) = month_range(2026, 10, OFFSET);
    assert_eq!(due, start + 28 * 86_400_000);
    let filed: campusguard::tickets::NewTicket = serde_json::from_value(json!({
        "school": "a", "building": "教学楼", "room": "101", "category": "fire",
        "description": "灭火器过期", "found_at": start + 86_400_000,
        "funding": "公用经费", "contingency_plan": "临时配备",
    }))
    .unwrap();
    let ticket = tickets.file(&safety("a"), filed).await.unwrap();
    tickets
        .submit_report_at(&safety("a"), "a", "2026-10", due - 3_600_000)
        .await
        .unwrap();
    let (snapshot, frozen) = tickets
        .snapshot_bytes(
            &safety("a"),
            "a",
            "2026-10",
            campusguard::tickets::export::Format::Json,
        )
        .await
        .unwrap();
    assert_eq!(snapshot.row_count, 1);
    let rows: Value = serde_json::from_slice(&frozen).unwrap();
    assert_eq!(rows[0]["funding"], "公用经费");
    assert_eq!(rows[0]["contingency_plan"], "临时配备");
    assert_eq!(rows[0]["location"], "教学楼 101");
    // A change after the submission does not reach the frozen month.
    let input: campusguard::tickets::ActionInput = serde_json::from_value(json!({
        "version": ticket.version, "responsible_person": "王老师", "measures": "更换",
    }))
    .unwrap();
    tickets
        .act(
            &safety("a"),
            &ticket.id,
            campusguard::tickets::Action::Assign,
            input,
        )
        .await
        .unwrap();
    let (_, again) = tickets
        .snapshot_bytes(
            &safety("a"),
            "a",
            "2026-10",
            campusguard::tickets::export::Format::Json,
        )
        .await
        .unwrap();
    assert_eq!(again, frozen);
    // Another school's reader does not get it.
    assert!(tickets
        .snapshot_bytes(
            &safety("b"),
            "a",
            "2026-10",
            campusguard::tickets::export::Format::Csv
        )
        .await
        .is_err());
    tickets
        .submit_report_at(&safety("b"), "b", "2026-10", due + 3_600_000)
        .await
        .unwrap();
    let err = tickets
        .submit_report_at(&safety("c"), "c", "2026-10", start - 1)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not started"), "{err}");
    // A school that is not in [[schools]] has no month to submit.
    let unknown = tickets
        .submit_report_at(&safety("z"), "z", "2026-10", due - 1)
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, campusguard::tickets::TicketError::NotFound(_)),
        "{unknown}"
    );
    let bureau = Principal {
        name: "bureau".into(),
        role: Some(Role::Bureau),
        schools: None,
    };
    let cal = tickets.calendar(&bureau, "2026-10").await.unwrap();
    let statuses: Vec<_> = cal
        .schools
        .iter()
        .map(|s| (s.school.as_str(), serde_json::to_value(s.status).unwrap()))
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("a", json!("submitted")),
            ("b", json!("late")),
            ("c", json!("missing")),
        ]
    );
    assert!(cal.schools[2].past_due);
    // The district file is due by the end of 1 November.
    assert_eq!(
        tickets.district_due_at("2026-10").unwrap(),
        month_range(2026, 11, OFFSET).0 + 86_400_000
    );
    let bureau_file = tickets
        .district_file(
            &bureau,
            "2026-10",
            campusguard::tickets::export::Format::Csv,
        )
        .await
        .unwrap()
        .0;
    assert!(String::from_utf8_lossy(&bureau_file).contains(&ticket.id));
    if let Some(schema) = schema {
        tickets.store.drop_schema(&schema).await.unwrap();
    }
    tickets.store.close().await;
}

fn group<'a>(stats: &'a Value, key: &str) -> &'a Value {
    stats["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == key)
        .unwrap_or_else(|| panic!("no group {key} in {stats}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stats_api_counts_by_school_category_grade_and_month_within_the_callers_scope() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::embedded("stats", dir.path());
    setup.extra_toml = schools_toml();
    let gw = TestGateway::start(&setup).await;
    let now = campusguard::model::now_ms();
    let file = |school: &str, category: &str, grade: &str, found_at: i64, deadline: i64| {
        json!({"school": school, "location": "操场", "category": category, "grade": grade,
               "description": "围栏松动", "found_at": found_at, "deadline_at": deadline})
    };
    let day = 86_400_000;
    // xhsy: two open (one overdue, supervised), one fixed on the spot and verified.
    let (_, a) = gw
        .post_json(
            "/api/v1/tickets",
            Some(SAFETY_TOKEN),
            file("xhsy", "building", "general", now - day, now - 3_600_000),
        )
        .await;
    let (_, _b) = gw
        .post_json(
            "/api/v1/tickets",
            Some(SAFETY_TOKEN),
            file("xhsy", "fire", "major", now - day, now + 10 * day),
        )
        .await;
    let mut fixed = file("xhsy", "fire", "general", now - day, now + day);
    fixed["fix_now"] = json!({"rectification": "当场紧固"});
    let (status, c) = gw
        .post_json("/api/v1/tickets", Some(SAFETY_TOKEN), fixed)
        .await;
    assert_eq!(status, 201, "{c}");
    let (status, _) = gw
        .post_json(
            &format!(
                "/api/v1/tickets/{}/actions/verify",
                c["id"].as_str().unwrap()
            ),
            Some(SAFETY2_TOKEN),
            json!({"version": c["version"]}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = gw
        .post_json(
            &format!(
                "/api/v1/tickets/{}/actions/supervise",
                a["id"].as_str().unwrap()
            ),
            Some(BUREAU_TOKEN),
            json!({"version": 1}),
        )
        .await;
    assert_eq!(status, 200);
    // dfzx: one open.
    let (status, _) = gw
        .post_json(
            "/api/v1/tickets",
            Some(OTHER_SAFETY_TOKEN),
            file("dfzx", "traffic", "general", now - day, now + day),
        )
        .await;
    assert_eq!(status, 201);

    let from = now - 2 * day;
    let (status, by_school) = gw
        .get_json(
            &format!("/api/v1/stats/tickets?by=school&from={from}"),
            Some(BUREAU_TOKEN),
        )
        .await;
    assert_eq!(status, 200, "{by_school}");
    let xhsy = group(&by_school, "xhsy");
    assert_eq!(xhsy["label"], "新华实验小学");
    assert_eq!(
        [
            &xhsy["found"],
            &xhsy["open"],
            &xhsy["overdue"],
            &xhsy["supervised"],
            &xhsy["closed"]
        ],
        [&json!(3), &json!(2), &json!(1), &json!(1), &json!(1)],
        "{xhsy}"
    );
    assert_eq!(group(&by_school, "dfzx")["open"], 1);
    // Every listed school is there, a quiet one with zeros.
    assert_eq!(group(&by_school, "yey")["found"], 0);

    let (_, by_category) = gw
        .get_json(
            &format!("/api/v1/stats/tickets?by=category&from={from}"),
            Some(BUREAU_TOKEN),
        )
        .await;
    assert_eq!(group(&by_category, "fire")["found"], 2);
    assert_eq!(group(&by_category, "fire")["label"], "消防安全");
    assert_eq!(group(&by_category, "traffic")["open"], 1);
    let (_, by_grade) = gw
        .get_json(
            &format!("/api/v1/stats/tickets?by=grade&from={from}"),
            Some(SAFETY_TOKEN),
        )
        .await;
    // A school-scoped caller counts its school only.
    assert_eq!(group(&by_grade, "general")["found"], 2, "{by_grade}");
    assert_eq!(group(&by_grade, "major")["found"], 1);

    // Twelve months up to this one: the tickets are in the last, the others are empty.
    let (y, m, _) = local_date(now, OFFSET);
    let (fy, fm) = if m == 12 { (y, 1) } else { (y - 1, m + 1) };
    let (status, by_month) = gw
        .get_json(
            &format!("/api/v1/stats/tickets?by=month&from={fy:04}-{fm:02}&to={y:04}-{m:02}"),
            Some(BUREAU_TOKEN),
        )
        .await;
    assert_eq!(status, 200, "{by_month}");
    let months = by_month["groups"].as_array().unwrap();
    assert_eq!(months.len(), 12);
    let last = &months[11];
    assert_eq!(last["key"], format!("{y:04}-{m:02}"));
    // Found yesterday: this month, unless today is the 1st.
    let found_this_month: u64 = months.iter().map(|g| g["found"].as_u64().unwrap()).sum();
    assert_eq!(found_this_month, 4);
    assert_eq!(last["open"], 3);
    assert_eq!(months[0]["found"], 0);

    for bad in [
        "by=week",
        "from=2026-1",
        "from=x",
        "from=2026-11&to=2026-10",
    ] {
        let (status, body) = gw
            .get_json(&format!("/api/v1/stats/tickets?{bad}"), Some(BUREAU_TOKEN))
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_drills_stay_in_the_history_and_count_against_the_target_of_the_school_kind() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::embedded("drill-history", dir.path());
    setup.extra_toml = schools_toml();
    let gw = TestGateway::start(&setup).await;
    let (status, drill) = gw
        .post_json(
            "/api/v1/drills",
            Some(OPERATOR_TOKEN),
            json!({"school": "yey", "duration": "30m", "reason": "消防疏散演练"}),
        )
        .await;
    assert_eq!(status, 201, "{drill}");
    let resp = reqwest::Client::new()
        .delete(gw.url(&format!("/api/v1/drills/{}", drill["id"])))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // Gone from the active list, kept in the history.
    let (_, active) = gw.get_json("/api/v1/drills", Some(BUREAU_TOKEN)).await;
    assert!(active.as_array().unwrap().is_empty(), "{active}");
    let month = this_month();
    let (status, history) = gw
        .get_json(
            &format!("/api/v1/drills/history?from={month}&to={month}"),
            Some(BUREAU_TOKEN),
        )
        .await;
    assert_eq!(status, 200, "{history}");
    let drills = history["drills"].as_array().unwrap();
    assert_eq!(drills.len(), 1, "{history}");
    assert_eq!(drills[0]["school"], "yey");
    assert!(drills[0]["ended_at"].is_i64());
    let compliance = |school: &str| {
        history["compliance"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["school"] == school)
            .cloned()
            .unwrap()
    };
    let yey = compliance("yey");
    assert_eq!(
        [
            &yey["kind"],
            &yey["held"],
            &yey["required"],
            &yey["compliant"]
        ],
        [&json!("kindergarten"), &json!(1), &json!(1), &json!(true)]
    );
    let xhsy = compliance("xhsy");
    assert_eq!(
        [&xhsy["held"], &xhsy["required"], &xhsy["compliant"]],
        [&json!(0), &json!(1), &json!(false)]
    );
    assert_eq!(xhsy["per_school_year"], 8);
    // A school-scoped reader sees its school only, and may not ask for another.
    let (_, mine) = gw
        .get_json("/api/v1/drills/history", Some(SAFETY_TOKEN))
        .await;
    assert!(mine["drills"].as_array().unwrap().is_empty(), "{mine}");
    assert_eq!(mine["compliance"].as_array().unwrap().len(), 1);
    assert_eq!(
        gw.get_json("/api/v1/drills/history?school=yey", Some(SAFETY_TOKEN))
            .await
            .0,
        403
    );
    gw.stop().await;
}

//! Incident reports (信息报告) on a whole gateway with real Mosquitto and PostgreSQL (the test
//! cluster of `support::pg_url()`, one schema per test, dropped at the end): resetting a fire
//! alarm as a real fire opens the draft of its report — also when the ticket database was
//! unreachable at the reset (a TCP relay in front of PostgreSQL is cut) — a false alarm files
//! the detector's maintenance ticket, a test files nothing; the API's scope checks and
//! validation. The console's side (the reset dialog, the report form, the bureau's list, the
//! board on a phone, the chart on the alarm page) is `tests/console/incidents.mjs`, run from
//! the last test here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use campusguard::tickets::{Tickets, TicketsConfig};
use serde_json::{json, Value};
use support::*;

const SAFETY_TOKEN: &str = "test-incident-safety-token-01234";
const OTHER_TOKEN: &str = "test-incident-other-school-token";

/// A PostgreSQL schema of one test, dropped when the test ends (also when it panicked).
struct Schema(String);

impl Schema {
    fn new() -> Self {
        Self(format!(
            "t_{}",
            unique("incidents").replace('-', "_").to_ascii_lowercase()
        ))
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let schema = self.0.clone();
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use sqlx::Executor;
                sqlx::any::install_default_drivers();
                if let Ok(pool) = sqlx::AnyPool::connect(&pg_url()).await {
                    let _ = pool
                        .execute(format!("DROP SCHEMA IF EXISTS {schema} CASCADE").as_str())
                        .await;
                    pool.close().await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Tickets in `schema` of the database at `url`; fire detectors room-1…room-4 in 实验楼 of
/// xhsy, one in dfzx; a school-safety token for each school.
fn extra_toml(url: &str, schema: &Schema) -> String {
    let mut devices = String::new();
    for n in 1..=4 {
        devices.push_str(&format!(
            "[[devices]]\nid = \"room-{n}\"\nschool = \"xhsy\"\nprofile = \"test_room\"\nbuilding = \"实验楼\"\nroom = \"30{n}\"\n\n"
        ));
    }
    format!(
        r#"
[tickets]
database_url = "{url}"
schema = "{schema}"
# Fail fast while the database is unreachable (the policy retries).
acquire_timeout = "1s"

[[http.tokens]]
name = "safety-xhsy"
token = "{SAFETY_TOKEN}"
role = "school_safety"
schools = ["xhsy"]

[[http.tokens]]
name = "safety-dfzx"
token = "{OTHER_TOKEN}"
role = "school_safety"
schools = ["dfzx"]

{devices}
[[devices]]
id = "room-9"
school = "dfzx"
profile = "test_room"
building = "教学楼"
room = "101"
"#,
        schema = schema.0
    )
}

async fn start(tag: &str, dir: &std::path::Path, url: &str, schema: &Schema) -> TestGateway {
    let mut setup = Setup::mosquitto(tag, dir);
    setup.extra_toml = extra_toml(url, schema);
    TestGateway::start(&setup).await
}

/// The open `temp_fire` alarm of `device` once `ok` holds for it.
async fn fire_alarm(gw: &TestGateway, device: &str, ok: impl Fn(&Value) -> bool) -> Value {
    eventually(
        &format!("the fire alarm of {device}"),
        Duration::from_secs(10),
        || {
            let ok = &ok;
            async move {
                let (_, alarms) = gw.get_json("/api/v1/alarms", Some(OPERATOR_TOKEN)).await;
                alarms
                    .as_array()?
                    .iter()
                    .find(|a| a["device"] == device && a["rule"] == "temp_fire" && ok(a))
                    .cloned()
            }
        },
    )
    .await
}

/// Raises the fire alarm of `device` (60 °C) and brings the temperature back (20 °C): latched,
/// ready for a reset. Returns its id.
async fn latched_fire(gw: &TestGateway, dev: &Device, school: &str, device: &str) -> u64 {
    let topic = gw.topic(school, device, "telemetry");
    dev.publish(&topic, r#"{"temp_c":22}"#).await;
    dev.publish(&topic, r#"{"temp_c":60}"#).await;
    fire_alarm(gw, device, |a| a["condition_active"] == true).await;
    dev.publish(&topic, r#"{"temp_c":20}"#).await;
    let alarm = fire_alarm(gw, device, |a| a["condition_active"] == false).await;
    alarm["id"].as_u64().unwrap()
}

async fn reset(gw: &TestGateway, id: u64, body: Value) -> (u16, Value) {
    gw.post_json(
        &format!("/api/v1/alarms/{id}/reset"),
        Some(OPERATOR_TOKEN),
        body,
    )
    .await
}

async fn request(
    gw: &TestGateway,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, gw.url(path))
        .json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn incidents(gw: &TestGateway, query: &str, token: &str) -> Vec<Value> {
    let (status, body) = gw
        .get_json(&format!("/api/v1/incidents{query}"), Some(token))
        .await;
    assert_eq!(status, 200, "{body}");
    body["incidents"].as_array().unwrap().clone()
}

/// The reset entry of an alarm's journal.
async fn reset_entry(gw: &TestGateway, id: u64) -> Value {
    let (_, alarm) = gw
        .get_json(&format!("/api/v1/alarms/{id}"), Some(OPERATOR_TOKEN))
        .await;
    alarm["journal"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["transition"] == "reset")
        .cloned()
        .unwrap_or_else(|| panic!("no reset in the journal: {alarm}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_fire_opens_its_report_a_false_alarm_files_a_ticket_and_a_test_files_nothing() {
    let schema = Schema::new();
    let dir = tempfile::tempdir().unwrap();
    let gw = start("incidents-reset", dir.path(), &pg_url(), &schema).await;
    let dev = Device::connect(gw.mqtt_port, &unique("incidents-dev")).await;
    let mut ids = Vec::new();
    for n in 1..=4 {
        ids.push(latched_fire(&gw, &dev, "xhsy", &format!("room-{n}")).await);
    }
    let [real, test, false_alarm, legacy] = ids[..] else {
        unreachable!()
    };

    // Refused before anything happens: an unknown disposition, or one that contradicts the
    // older flag.
    let (status, body) = reset(&gw, real, json!({"disposition": "maybe"})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = reset(
        &gw,
        real,
        json!({"disposition": "real", "false_alarm": true}),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    // In outbox order: real, test, false, and false in the older spelling.
    let (status, body) = reset(
        &gw,
        real,
        json!({"disposition": "real", "comment": "实验室酒精灯引燃纸张"}),
    )
    .await;
    assert_eq!(
        (status, &body["disposition"]),
        (200, &json!("real")),
        "{body}"
    );
    let (status, body) = reset(
        &gw,
        test,
        json!({"disposition": "test", "comment": "季度测试"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = reset(&gw, false_alarm, json!({"disposition": "false"})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = reset(&gw, legacy, json!({"false_alarm": true})).await;
    assert_eq!(status, 200, "{body}");

    // Each disposition is journaled with its reset.
    for (id, disposition, false_flag) in [
        (real, "real", false),
        (test, "test", false),
        (false_alarm, "false", true),
        (legacy, "false", true),
    ] {
        let entry = reset_entry(&gw, id).await;
        assert_eq!(entry["disposition"], disposition, "{entry}");
        assert_eq!(entry["false_alarm"], false_flag, "{entry}");
    }

    // The two false alarms file their maintenance tickets; once they are there, the policy has
    // handled the real fire and the test before them.
    let maintenance = eventually(
        "two maintenance tickets",
        Duration::from_secs(20),
        || async {
            let (_, body) = gw.get_json("/api/v1/tickets", Some(OPERATOR_TOKEN)).await;
            let list: Vec<Value> = body["tickets"]
                .as_array()?
                .iter()
                .filter(|t| t["rule"] == "temp_fire#false_alarm")
                .cloned()
                .collect();
            (list.len() >= 2).then_some(list)
        },
    )
    .await;
    let mut devices: Vec<&str> = maintenance
        .iter()
        .map(|t| t["device"].as_str().unwrap())
        .collect();
    devices.sort_unstable();
    assert_eq!(devices, ["room-3/temp_c", "room-4/temp_c"]);

    // The real fire opened one draft report, with time and place from its alarm; the test
    // opened nothing.
    let list = incidents(&gw, "", OPERATOR_TOKEN).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    let draft = &list[0];
    let (_, alarm) = gw
        .get_json(&format!("/api/v1/alarms/{real}"), Some(OPERATOR_TOKEN))
        .await;
    assert_eq!(draft["alarm_id"], real);
    assert_eq!(draft["status"], "draft");
    assert_eq!(draft["school"], "xhsy");
    assert_eq!(
        (&draft["building"], &draft["room"]),
        (&json!("实验楼"), &json!("301"))
    );
    assert_eq!(draft["location"], "实验楼 301");
    assert_eq!(draft["occurred_at"], alarm["raised_at"]);
    assert_eq!(draft["created_by"], "operator-1");
    let what = draft["what_happened"].as_str().unwrap();
    assert!(
        what.contains("实验室酒精灯引燃纸张") && what.contains("xhsy/room-1/temp_c"),
        "{what}"
    );
    let id = draft["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("XHSY-INC-"), "{id}");

    // The console's form fills the draft in (200, the same report) and submits it.
    let now = campusguard::model::now_ms();
    let (status, filled) = gw
        .post_json(
            "/api/v1/incidents",
            Some(OPERATOR_TOKEN),
            json!({
                "alarm_id": real, "actions_taken": "值班员用灭火器扑灭，疏散301学生",
                "deaths": 0, "injuries": 1, "reported_119_by": "张老师",
                "reported_119_at": now - 60_000, "status": "submitted",
            }),
        )
        .await;
    assert_eq!(status, 200, "{filled}");
    assert_eq!(filled["id"], id.as_str());
    assert_eq!(filled["status"], "submitted");
    assert_eq!(filled["injuries"], 1);
    assert_eq!(filled["version"], 2);
    assert_eq!(filled["submitted_by"], "operator-1");
    assert!(filled["what_happened"].as_str().unwrap().contains("酒精灯"));
    // Submitted is frozen.
    let (status, body) = gw
        .post_json(
            "/api/v1/incidents",
            Some(OPERATOR_TOKEN),
            json!({"alarm_id": real, "injuries": 2}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        incidents(&gw, "?status=submitted", BUREAU_TOKEN)
            .await
            .len(),
        1
    );
    let of_alarm = |id: u64| format!("?school=xhsy&alarm_id={id}");
    assert_eq!(incidents(&gw, &of_alarm(real), BUREAU_TOKEN).await.len(), 1);
    assert_eq!(incidents(&gw, &of_alarm(test), BUREAU_TOKEN).await.len(), 0);
    drop(dev);
    gw.stop().await;
}

/// The reset of a fire alarm of room-1 as a real fire, as the outbox carries it.
fn real_fire_reset(alarm_id: u64) -> campusguard::alarms::AlarmEvent {
    let now = campusguard::model::now_ms();
    serde_json::from_value(json!({
        "transition": "reset", "at": now, "user": "op", "comment": "起火", "disposition": "real",
        "id": alarm_id, "sensor": "xhsy/room-1/temp_c", "school": "xhsy", "device": "room-1",
        "point": "temp_c", "rule": "temp_fire", "class": "fire", "severity": "alarm",
        "state": "cleared", "value": 21.0, "threshold": 57.0, "message": "back to normal",
        "raised_at": now - 60_000, "updated_at": now, "reading_ts": now, "cleared_at": now,
        "condition_active": false, "acked_by": "op", "acked_at": now, "ack_comment": null,
        "shelved": null, "drill": false, "occurrences": 1,
    }))
    .unwrap()
}

/// Two ticket services (two gateways on one database, or a replay racing the first try) open
/// the report of one alarm at once, and again later: one report.
async fn one_report_per_alarm(a: &Tickets, b: &Tickets) {
    let event = real_fire_reset(7);
    let (first, second) = tokio::join!(
        a.open_incident_for_alarm(&event),
        b.open_incident_for_alarm(&event)
    );
    let opened: Vec<_> = [first.unwrap(), second.unwrap()]
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(opened.len(), 1, "{opened:#?}");
    assert!(a.open_incident_for_alarm(&event).await.unwrap().is_none());
    // Another alarm gets its own, numbered next.
    let other = a
        .open_incident_for_alarm(&real_fire_reset(8))
        .await
        .unwrap()
        .expect("a second alarm's report");
    assert_eq!(
        other.id.rsplit('-').next(),
        Some("0002"),
        "gap-free numbers: {}",
        other.id
    );
    let bureau = campusguard::access::Principal::new("b", campusguard::access::Role::Bureau, None);
    let all = a
        .incidents(
            &bureau,
            campusguard::tickets::incidents::IncidentFilter {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_eq!(opened[0].what_happened, all[1].what_happened);
    assert!(opened[0].what_happened.contains("复位说明：起火"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_alarm_opens_one_report_however_often_and_concurrently_it_is_asked_on_sqlite_and_postgres(
) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Tickets::open(&TicketsConfig::default(), dir.path())
        .await
        .unwrap();
    one_report_per_alarm(&sqlite, &sqlite).await;
    sqlite.store.close().await;

    let schema = Schema::new();
    let config = TicketsConfig {
        database_url: Some(pg_url()),
        schema: Some(schema.0.clone()),
        ..TicketsConfig::default()
    };
    let a = Tickets::open(&config, dir.path()).await.unwrap();
    let b = Tickets::open(&config, dir.path()).await.unwrap();
    one_report_per_alarm(&a, &b).await;
    a.store.close().await;
    b.store.close().await;
}

/// A TCP relay in front of PostgreSQL that can be cut (listener closed, connections dropped)
/// and restored on the same port: what an unreachable database server looks like to the pool.
struct Relay {
    port: u16,
    target: SocketAddr,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Self {
        let relay = Self {
            port: free_port(),
            target,
            tasks: Arc::default(),
        };
        relay.up().await;
        relay
    }

    async fn up(&self) {
        // tokio sets SO_REUSEADDR: the port binds again although cut connections linger.
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        let (target, tasks) = (self.target, self.tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let pipe = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().unwrap().push(pipe);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    fn down(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// `url` with its host and port replaced by the relay's.
    fn url(&self, url: &str) -> String {
        let mut url = reqwest::Url::parse(url).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(self.port)).unwrap();
        url.to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_as_a_real_fire_while_the_ticket_database_is_unreachable_opens_the_report_once_it_is_back(
) {
    let schema = Schema::new();
    let real = reqwest::Url::parse(&pg_url()).unwrap();
    let target: SocketAddr = tokio::net::lookup_host((
        real.host_str().unwrap().to_string(),
        real.port().unwrap_or(5432),
    ))
    .await
    .unwrap()
    .next()
    .unwrap();
    let relay = Relay::start(target).await;
    let dir = tempfile::tempdir().unwrap();
    let gw = start("incidents-down", dir.path(), &relay.url(&pg_url()), &schema).await;
    // The schema is migrated before the cut.
    eventually("the ticket database", Duration::from_secs(15), || async {
        let (status, _) = gw.get_json("/api/v1/incidents", Some(OPERATOR_TOKEN)).await;
        (status == 200).then_some(())
    })
    .await;
    let dev = Device::connect(gw.mqtt_port, &unique("incidents-down-dev")).await;
    let id = latched_fire(&gw, &dev, "xhsy", "room-1").await;

    relay.down();
    // The reset is the alarm path's: it does not wait for the ticket database (its time is
    // printed for the record, not asserted).
    let started = std::time::Instant::now();
    let (status, body) = reset(&gw, id, json!({"disposition": "real"})).await;
    println!(
        "reset answered in {:?} with the ticket database cut",
        started.elapsed()
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "cleared");
    // Really unreachable: the API cannot read the reports.
    let (status, body) = gw.get_json("/api/v1/incidents", Some(OPERATOR_TOKEN)).await;
    assert_eq!(status, 500, "{body}");
    // Give the policy time to try (and fail) a few times.
    tokio::time::sleep(Duration::from_secs(2)).await;

    relay.up().await;
    let list = eventually("the report opened", Duration::from_secs(30), || async {
        let (status, body) = gw.get_json("/api/v1/incidents", Some(OPERATOR_TOKEN)).await;
        let list = body["incidents"].as_array()?.clone();
        (status == 200 && !list.is_empty()).then_some(list)
    })
    .await;
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(list[0]["alarm_id"], id);
    assert_eq!(list[0]["status"], "draft");
    // Once: a retried entry does not open a second report.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(incidents(&gw, "", OPERATOR_TOKEN).await.len(), 1);
    drop(dev);
    gw.stop().await;
    relay.down();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_filed_read_and_edited_within_the_callers_schools_and_bad_input_is_refused() {
    let schema = Schema::new();
    let dir = tempfile::tempdir().unwrap();
    let gw = start("incidents-api", dir.path(), &pg_url(), &schema).await;
    let now = campusguard::model::now_ms();
    let post = |token: Option<&'static str>, body: Value| {
        let gw = &gw;
        async move { gw.post_json("/api/v1/incidents", token, body).await }
    };
    let canteen = json!({
        "school": "xhsy", "occurred_at": now - 3_600_000, "building": "食堂",
        "what_happened": "厨房油锅起火", "actions_taken": "灭火毯扑灭",
    });

    // Who may file: the school's people, not the bureau, not another school, not anonymous.
    assert_eq!(post(Some(BUREAU_TOKEN), canteen.clone()).await.0, 403);
    assert_eq!(post(Some(OTHER_TOKEN), canteen.clone()).await.0, 403);
    assert_eq!(post(None, canteen.clone()).await.0, 401);
    let (status, mine) = post(Some(SAFETY_TOKEN), canteen.clone()).await;
    assert_eq!(status, 201, "{mine}");
    assert_eq!(mine["status"], "draft");
    assert_eq!(mine["location"], "食堂");
    assert_eq!(mine["created_by"], "safety-xhsy");
    let id = mine["id"].as_str().unwrap().to_string();
    let (status, theirs) = post(
        Some(OTHER_TOKEN),
        json!({"school": "dfzx", "occurred_at": now - 7_200_000, "location": "教学楼 101"}),
    )
    .await;
    assert_eq!(status, 201, "{theirs}");

    // Bad input is refused with 400 (or 422 for a body that is not the shape), nothing stored.
    let with = |patch: Value| {
        let mut body = canteen.clone();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    for (body, expected) in [
        (with(json!({"deaths": -1})), 400),
        (with(json!({"injuries": 10_001})), 400),
        (with(json!({"occurred_at": now / 1000})), 400),
        (with(json!({"occurred_at": now + 86_400_000})), 400),
        (with(json!({"what_happened": "火".repeat(4001)})), 400),
        (with(json!({"building": "楼".repeat(201)})), 400),
        (with(json!({"reported_119_by": "王老师"})), 400),
        (with(json!({"reported_119_at": now})), 400),
        (
            with(json!({"actions_taken": "", "status": "submitted"})),
            400,
        ),
        (with(json!({"alarm_id": 999_999})), 400),
        (with(json!({"version": 1})), 400),
        (json!({"occurred_at": now, "location": "操场"}), 400),
        (json!({"school": "xhsy", "location": "操场"}), 400),
        (json!({"school": "xhsy", "occurred_at": now}), 400),
        (with(json!({"injuries": "two"})), 422),
        (with(json!({"casualties": 1})), 422),
    ] {
        let (status, answer) = post(Some(SAFETY_TOKEN), body.clone()).await;
        assert_eq!(status, expected, "{body} → {answer}");
    }

    // Reading: the bureau sees every school's, a school its own; another school's is 404.
    assert_eq!(incidents(&gw, "", BUREAU_TOKEN).await.len(), 2);
    let own = incidents(&gw, "", SAFETY_TOKEN).await;
    assert_eq!(own.len(), 1);
    assert_eq!(own[0]["id"], id.as_str());
    assert_eq!(incidents(&gw, "?school=dfzx", SAFETY_TOKEN).await.len(), 0);
    assert_eq!(incidents(&gw, "?school=dfzx", BUREAU_TOKEN).await.len(), 1);
    let window = format!("?from={}&to={}", now - 8_000_000, now - 5_000_000);
    let in_window = incidents(&gw, &window, BUREAU_TOKEN).await;
    assert_eq!(in_window.len(), 1);
    assert_eq!(in_window[0]["school"], "dfzx");
    let path = format!("/api/v1/incidents/{id}");
    assert_eq!(gw.get_json(&path, Some(OTHER_TOKEN)).await.0, 404);
    assert_eq!(gw.get_json(&path, None).await.0, 401);
    let (status, read) = gw.get_json(&path, Some(BUREAU_TOKEN)).await;
    assert_eq!(
        (status, &read["what_happened"]),
        (200, &json!("厨房油锅起火"))
    );
    for query in ["?status=closed", "?from=10&to=5", "?limit=x"] {
        let (status, body) = gw
            .get_json(&format!("/api/v1/incidents{query}"), Some(BUREAU_TOKEN))
            .await;
        assert_eq!(status, 400, "{query}: {body}");
    }

    // Editing: the version last seen, the school's people only; submitting freezes it.
    let patch = |token: &'static str, body: Value| {
        let (gw, path) = (&gw, path.clone());
        async move { request(gw, reqwest::Method::PATCH, &path, Some(token), body).await }
    };
    assert_eq!(
        patch(BUREAU_TOKEN, json!({"version": 1, "injuries": 1}))
            .await
            .0,
        403
    );
    assert_eq!(
        patch(OTHER_TOKEN, json!({"version": 1, "injuries": 1}))
            .await
            .0,
        404
    );
    assert_eq!(patch(SAFETY_TOKEN, json!({"injuries": 1})).await.0, 400);
    assert_eq!(
        patch(SAFETY_TOKEN, json!({"version": 1, "school": "dfzx"}))
            .await
            .0,
        400
    );
    let (status, edited) = patch(SAFETY_TOKEN, json!({"version": 1, "injuries": 1})).await;
    assert_eq!((status, &edited["version"]), (200, &json!(2)), "{edited}");
    let (status, stale) = patch(SAFETY_TOKEN, json!({"version": 1, "deaths": 0})).await;
    assert_eq!(
        (status, &stale["error"]),
        (409, &json!("stale_version")),
        "{stale}"
    );
    let (status, submitted) = patch(
        SAFETY_TOKEN,
        json!({"version": 2, "status": "submitted", "reported_119_by": "李师傅", "reported_119_at": now - 3_500_000}),
    )
    .await;
    assert_eq!(status, 200, "{submitted}");
    assert_eq!(submitted["status"], "submitted");
    assert_eq!(submitted["submitted_by"], "safety-xhsy");
    assert_eq!(submitted["injuries"], 1);
    let (status, frozen) = patch(SAFETY_TOKEN, json!({"version": 3, "injuries": 2})).await;
    assert_eq!(status, 409, "{frozen}");
    let (_, unchanged) = gw.get_json(&path, Some(BUREAU_TOKEN)).await;
    assert_eq!(
        (&unchanged["injuries"], &unchanged["version"]),
        (&json!(1), &json!(3))
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_console_an_operator_acks_on_a_phone_resets_a_real_fire_files_its_report_and_the_bureau_sees_it(
) {
    if let Err(why) = browser_ready() {
        if std::env::var_os("CI").is_some() {
            panic!("browser tests need their tools in CI: {why}");
        }
        eprintln!("SKIPPED incidents console browser test: {why}");
        return;
    }
    let schema = Schema::new();
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::embedded("incidents-console", dir.path());
    setup.extra_toml = format!(
        "{}\n{}",
        extra_toml(&pg_url(), &schema),
        r#"
[[users.seed]]
name = "op.incident"
role = "operator"
password = "incident-operator-pass-1"

[[users.seed]]
name = "bureau.incident"
role = "bureau"
password = "incident-bureau-pass-1"
"#
    );
    let gw = TestGateway::start(&setup).await;
    let dev = Device::connect(gw.mqtt_port, &unique("incidents-console-dev")).await;
    let topic = gw.topic("xhsy", "room-1", "telemetry");
    // A few readings before the fire, for the chart around it.
    for t in [22.0, 23.5, 25.0] {
        dev.publish(&topic, format!(r#"{{"temp_c":{t}}}"#)).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    dev.publish(&topic, r#"{"temp_c":61}"#).await;
    let alarm = fire_alarm(&gw, "room-1", |a| a["state"] == "active_unacked").await;
    let id = alarm["id"].as_u64().unwrap();

    let mut script = BrowserScript::start(
        "incidents.mjs",
        &[
            format!("http://{}", gw.http),
            id.to_string(),
            console_artifacts().display().to_string(),
        ],
        &[(
            "CG_USERS",
            json!({
                "operator": {"name": "op.incident", "password": "incident-operator-pass-1"},
                "bureau": {"name": "bureau.incident", "password": "incident-bureau-pass-1"},
            })
            .to_string(),
        )],
    );
    let mut reported = None;
    let run = async {
        while let Some(line) = script.next_line().await {
            if line == "NEED back to normal" {
                dev.publish(&topic, r#"{"temp_c":21}"#).await;
                fire_alarm(&gw, "room-1", |a| a["condition_active"] == false).await;
                script.answer("done").await;
            }
            if let Some(number) = line.strip_prefix("INCIDENT ") {
                reported = Some(number.to_string());
            }
        }
        script.finish().await;
    };
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the browser test finishes within 120 s");

    // One report for the alarm, the one the console submitted, as the operator wrote it; the
    // reset's disposition is in the alarm's journal.
    let list = incidents(&gw, "", BUREAU_TOKEN).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    let report = &list[0];
    assert_eq!(Some(report["id"].as_str().unwrap()), reported.as_deref());
    assert_eq!(report["alarm_id"], id);
    assert_eq!(report["status"], "submitted");
    assert_eq!(report["injuries"], 1);
    assert_eq!(report["reported_119_by"], "张老师");
    assert_eq!(report["submitted_by"], "op.incident");
    let entry = reset_entry(&gw, id).await;
    assert_eq!(entry["disposition"], "real");
    assert_eq!(entry["user"], "op.incident");
    drop(dev);
    gw.stop().await;
}

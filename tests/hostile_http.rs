//! The API under hostile HTTP, driven by the OpenAPI document (merged from
//! `src/api/openapi/*.json`): every documented operation is served and no other method is;
//! every mutating operation without a token → 401 and with a role outside its `x-roles` → 403,
//! changing nothing;
//! oversized bodies → 413; path traversal in asset and attachment routes never serves a file;
//! SQL metacharacters in every string parameter change nothing and break nothing; a thousand
//! idle SSE clients do not keep a new one from connecting or alarms from flowing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LAB_TOKEN: &str = "test-lab-manager-token-01234567";
const SAFETY_TOKEN: &str = "test-school-safety-token-012345";
const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcd";
const SCHOOL: &str = "xhsy";
/// Written into the data directory; no request may ever return it.
const CANARY: &str = "CANARY-7f3a9c-must-never-be-served";
/// Small, so the over-limit upload stays quick.
const ATTACHMENT_MAX: usize = 64 * 1024;
/// The default `http.max_body_bytes`.
const MAX_BODY: usize = 64 * 1024;
const WEB_USER: &str = "web.bureau";
const WEB_PASSWORD: &str = "web-bureau-pass-1";

/// The document the gateway serves at `/api/v1/openapi.json`.
fn openapi() -> Value {
    campusguard::api::openapi::document()
        .expect("the OpenAPI fragments merge")
        .clone()
}
const ROLES: [&str; 5] = [
    "operator",
    "lab_manager",
    "school_safety",
    "bureau",
    "admin",
];
/// Routes another branch adds; until it is merged they answer 404 "no such endpoint".
const PENDING_PATHS: [&str; 2] = ["/api/v1/drills", "/api/v1/drills/{id}"];

fn token_of(role: &str) -> &'static str {
    match role {
        "operator" => OPERATOR_TOKEN,
        "lab_manager" => LAB_TOKEN,
        "school_safety" => SAFETY_TOKEN,
        "bureau" => BUREAU_TOKEN,
        "admin" => ADMIN_TOKEN,
        other => panic!("unknown role {other}"),
    }
}

fn extra_toml() -> String {
    format!(
        r#"
[[http.tokens]]
name = "lab-1"
token = "{LAB_TOKEN}"
role = "lab_manager"

[[http.tokens]]
name = "safety-1"
token = "{SAFETY_TOKEN}"
role = "school_safety"

[[http.tokens]]
name = "admin-1"
token = "{ADMIN_TOKEN}"
role = "admin"

[[users.seed]]
name = "{WEB_USER}"
role = "bureau"
password = "{WEB_PASSWORD}"

[tickets]
attachment_max_bytes = {ATTACHMENT_MAX}

[[devices]]
id = "room-1"
school = "{SCHOOL}"
profile = "test_room"

[[devices]]
id = "room-2"
school = "{SCHOOL}"
profile = "test_room"
"#
    )
}

struct Operation {
    method: String,
    path: String,
    roles: Vec<String>,
    public: bool,
    json_body: bool,
    multipart: bool,
    /// String-typed path and query parameters (not `token`).
    string_params: Vec<(String, String)>,
    /// Names of the query parameters.
    query_params: Vec<String>,
}

impl Operation {
    fn mutating(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
    }
    fn pending(&self) -> bool {
        PENDING_PATHS.contains(&self.path.as_str())
    }
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let mut node = doc;
            for part in r.trim_start_matches("#/").split('/') {
                node = &node[part];
            }
            node
        }
        None => v,
    }
}

fn operations() -> Vec<Operation> {
    let doc = openapi();
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let roles: Vec<String> = op["x-roles"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_string())
                .collect();
            let body = &op["requestBody"]["content"];
            let string_params = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| resolve(&doc, p))
                        .filter(|p| p["name"] != "token")
                        .filter(|p| resolve(&doc, &p["schema"])["type"] == "string")
                        .map(|p| {
                            (
                                p["in"].as_str().unwrap().to_string(),
                                p["name"].as_str().unwrap().to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let query_params = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| resolve(&doc, p))
                        .filter(|p| p["in"] == "query")
                        .filter_map(|p| p["name"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            ops.push(Operation {
                query_params,
                method: method.to_uppercase(),
                path: path.clone(),
                roles,
                public: op["security"].as_array().unwrap().is_empty(),
                json_body: body.get("application/json").is_some(),
                multipart: body.get("multipart/form-data").is_some(),
                string_params,
            });
        }
    }
    ops
}

/// The ids the operations act on.
struct Fixture {
    alarm_id: u64,
    ticket_id: String,
    sha256: String,
    /// The school the ids belong to (and bodies name).
    school: &'static str,
    /// An active drill of that school, if any.
    drill_id: Option<u64>,
    /// An incident report (draft) of that school.
    incident_id: String,
    /// A shift open in that school's duty room (named after the school).
    shift_id: i64,
}

impl Fixture {
    /// `path` with its parameters filled in (`overrides` first, percent-encoded).
    fn fill(&self, path: &str, overrides: &BTreeMap<String, String>) -> String {
        let mut out = String::new();
        for segment in path.split('/').skip(1) {
            out.push('/');
            let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
                out.push_str(segment);
                continue;
            };
            let value = match overrides.get(name) {
                Some(v) => encode(v),
                None => match (path, name) {
                    (p, "id") if p.starts_with("/api/v1/alarms") => self.alarm_id.to_string(),
                    (p, "id") if p.starts_with("/api/v1/tickets") => self.ticket_id.clone(),
                    (p, "id") if p.starts_with("/api/v1/incidents") => self.incident_id.clone(),
                    (p, "id") if p.starts_with("/api/v1/duty") => self.shift_id.to_string(),
                    (p, "id") if p.starts_with("/api/v1/drills") => {
                        self.drill_id.unwrap_or(1).to_string()
                    }
                    (_, "id") => "1".into(),
                    (_, "sha256") => self.sha256.clone(),
                    (_, "school") => self.school.into(),
                    (_, "device") => "room-1".into(),
                    (_, "point") => "temp_c".into(),
                    (_, "file") => "app.js".into(),
                    (_, "month") => this_month(),
                    (_, other) => panic!("no value for path parameter {other}"),
                },
            };
            out.push_str(&value);
        }
        out
    }

    /// A body the operation accepts from a role it allows.
    fn body(&self, op: &Operation) -> Value {
        let action = op.path.rsplit('/').next().unwrap_or("");
        match (op.method.as_str(), op.path.as_str()) {
            (_, p) if p.ends_with("/shelve") => {
                json!({"duration": "30m", "reason": "hostile test"})
            }
            (_, p) if p.ends_with("/ack") || p.ends_with("/reset") => json!({"comment": "x"}),
            ("POST", "/api/v1/tickets") => ticket_of(self.school),
            (_, p) if p.contains("/actions/") => match action {
                "assign" => json!({"version": 1, "responsible_person": "王", "measures": "m"}),
                "defer" => {
                    json!({"version": 1, "plan": "p", "interim_measures": "i", "deadline_at": 4_000_000_000_000i64})
                }
                "report" | "fix_now" => json!({"version": 1, "rectification": "r"}),
                "reject" => json!({"version": 1, "reason": "r"}),
                _ => json!({"version": 1}),
            },
            ("POST", "/login") => json!({"name": WEB_USER, "password": WEB_PASSWORD}),
            ("POST", "/api/v1/drills") => {
                json!({"school": self.school, "duration": "10m", "reason": "hostile test"})
            }
            ("POST", "/api/v1/devices") => {
                json!({"school": self.school, "device": "stray-1", "profile": "test_room"})
            }
            ("POST", "/api/v1/incidents") => incident_of(self.school),
            ("PATCH", "/api/v1/incidents/{id}") => json!({"version": 1, "injuries": 0}),
            ("POST", "/api/v1/duty/shifts") => json!({"room": self.school}),
            (_, p) if p.ends_with("/handover") => json!({"notes": "hostile test"}),
            _ => json!({}),
        }
    }
}

/// The current month in Beijing time (the month a ticket filed now is numbered in).
fn this_month() -> String {
    let (y, m, _) =
        campusguard::tickets::time::local_date(campusguard::model::now_ms(), 8 * 3_600_000);
    format!("{y:04}-{m:02}")
}

fn new_ticket() -> Value {
    ticket_of(SCHOOL)
}

fn ticket_of(school: &str) -> Value {
    json!({"school": school, "location": "实验楼 301", "category": "lab_chemical", "description": "通风不足"})
}

/// An incident report filed by hand (no alarm), a draft.
fn incident_of(school: &str) -> Value {
    json!({"school": school, "occurred_at": campusguard::model::now_ms() - 60_000, "location": "实验楼 301", "what_happened": "实验室起火"})
}

/// Percent-encodes everything but unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

enum Auth<'a> {
    None,
    Bearer(&'a str),
    Cookie(&'a str),
}

async fn send(
    gw: &TestGateway,
    method: &str,
    path_and_query: &str,
    auth: Auth<'_>,
    body: Option<&Value>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client.request(method.parse().unwrap(), gw.url(path_and_query));
    req = match auth {
        Auth::None => req,
        Auth::Bearer(t) => req.bearer_auth(t),
        // As the console does: a browser sends its origin with every mutation.
        Auth::Cookie(c) => req
            .header("cookie", c)
            .header("origin", format!("http://{}", gw.http)),
    };
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A request as written, bytes on a raw socket (no client-side path normalisation).
async fn raw(gw: &TestGateway, request_line_path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    s.write_all(
        format!("GET {request_line_path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("answer within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn is_no_such_endpoint(status: u16, body: &Value) -> bool {
    status == 404 && body["message"] == "no such endpoint"
}

/// Row counts of every table of both databases (the alarm journal without `system` entries:
/// the rules may journal on their own, people may not).
async fn snapshot(data_dir: &Path) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for db in ["campusguard.db", "tickets.db"] {
        let url = format!("sqlite://{}?mode=ro", data_dir.join(db).display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert!(!tables.is_empty(), "{db} has no tables");
        for t in tables {
            let sql = match t.as_str() {
                "readings" | "alarms" | "sqlite_sequence" => continue,
                "alarm_journal" => {
                    "SELECT COUNT(*) FROM alarm_journal WHERE user != 'system'".into()
                }
                _ => format!("SELECT COUNT(*) FROM \"{t}\""),
            };
            let n: i64 = sqlx::query_scalar(&sql).fetch_one(&pool).await.unwrap();
            counts.insert(format!("{db}:{t}"), n);
        }
        pool.close().await;
    }
    counts
}

struct Env {
    gw: TestGateway,
    dev: Device,
    fx: Fixture,
    _dir: tempfile::TempDir,
}

async fn raise_alarm(gw: &TestGateway, dev: &Device, device: &str, temp: f64) {
    dev.publish(
        &gw.topic(SCHOOL, device, "telemetry"),
        format!(r#"{{"temp_c":{temp}}}"#),
    )
    .await;
}

/// A gateway with an unacknowledged alarm and a registered ticket with one attachment.
async fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::embedded("hostile", dir.path());
    setup.extra_toml = extra_toml();
    let gw = TestGateway::start(&setup).await;
    std::fs::write(dir.path().join("canary.txt"), CANARY).unwrap();
    let dev = Device::connect(gw.mqtt_port, &unique("dev")).await;
    raise_alarm(&gw, &dev, "room-1", 45.0).await;
    let mut alarm_id = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while alarm_id.is_none() && Instant::now() < deadline {
        let (_, alarms) = gw.get_json("/api/v1/alarms", Some(OPERATOR_TOKEN)).await;
        alarm_id = alarms
            .as_array()
            .and_then(|a| a.iter().find(|a| a["rule"] == "temp_high"))
            .and_then(|a| a["id"].as_u64());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let alarm_id = alarm_id.expect("temp_high alarm raised within 10 s");
    let (status, t) = gw
        .post_json("/api/v1/tickets", Some(ADMIN_TOKEN), new_ticket())
        .await;
    assert_eq!(status, 201, "{t}");
    let ticket_id = t["id"].as_str().unwrap().to_string();
    let jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F'];
    let resp = upload(&gw, &ticket_id, Some(ADMIN_TOKEN), jpeg).await;
    assert_eq!(resp.0, 201, "{}", resp.1);
    let sha256 = resp.1["sha256"].as_str().unwrap().to_string();
    let (status, i) = gw
        .post_json("/api/v1/incidents", Some(ADMIN_TOKEN), incident_of(SCHOOL))
        .await;
    assert_eq!(status, 201, "{i}");
    Env {
        gw,
        dev,
        fx: Fixture {
            alarm_id,
            ticket_id,
            sha256,
            school: SCHOOL,
            drill_id: None,
            incident_id: i["id"].as_str().unwrap().to_string(),
            shift_id: 1,
        },
        _dir: dir,
    }
}

async fn upload(gw: &TestGateway, id: &str, token: Option<&str>, bytes: Vec<u8>) -> (u16, Value) {
    let form = reqwest::multipart::Form::new().text("kind", "before").part(
        "file",
        reqwest::multipart::Part::bytes(bytes).file_name("p.jpg"),
    );
    let mut req = reqwest::Client::new()
        .post(gw.url(&format!("/api/v1/tickets/{id}/attachments")))
        .multipart(form);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The state the mutating operations could change.
async fn observable(env: &Env) -> Value {
    let (_, alarm) = env
        .gw
        .get_json(
            &format!("/api/v1/alarms/{}", env.fx.alarm_id),
            Some(ADMIN_TOKEN),
        )
        .await;
    let (_, ticket) = env
        .gw
        .get_json(
            &format!("/api/v1/tickets/{}", env.fx.ticket_id),
            Some(ADMIN_TOKEN),
        )
        .await;
    let (_, tickets) = env.gw.get_json("/api/v1/tickets", Some(ADMIN_TOKEN)).await;
    let (_, incidents) = env
        .gw
        .get_json("/api/v1/incidents", Some(ADMIN_TOKEN))
        .await;
    json!({
        "incidents": incidents["incidents"],
        "alarm_state": alarm["state"],
        "alarm_journal": alarm["journal"].as_array().map(Vec::len),
        "alarm_shelved": alarm["shelved"],
        "ticket_state": ticket["state"],
        "ticket_version": ticket["version"],
        "ticket_supervised": ticket["supervised"],
        "attachments": ticket["attachments"].as_array().map(Vec::len),
        "tickets": tickets["tickets"].as_array().map(Vec::len),
    })
}

#[test]
fn the_openapi_document_describes_every_operation_with_roles_and_security() {
    let doc = openapi();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.0"));
    assert!(doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer");
    assert!(doc["components"]["securitySchemes"]["cookie"]["in"] == "cookie");
    let paths = doc["paths"].as_object().unwrap();
    for route in [
        "/healthz",
        "/api/v1/alarms",
        "/api/v1/alarms/stream",
        "/api/v1/alarms/kpis",
        "/api/v1/alarms/{id}/ack",
        "/api/v1/alarms/{id}/shelve",
        "/api/v1/alarms/{id}/reset",
        "/api/v1/sensors/{school}/{device}/{point}/history",
        "/login",
        "/assets/{file}",
        "/api/v1/session",
        "/api/v1/tickets",
        "/api/v1/tickets/export",
        "/api/v1/tickets/{id}/actions/verify",
        "/api/v1/tickets/{id}/attachments",
        "/api/v1/tickets/{id}/attachments/{sha256}",
        "/api/v1/stats/tickets",
        "/api/v1/drills",
        "/api/v1/drills/{id}",
    ] {
        assert!(paths.contains_key(route), "{route} missing");
    }
    let mut ids = std::collections::HashSet::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let what = format!("{method} {path}");
            assert!(
                ["get", "post", "put", "patch", "delete"].contains(&method.as_str()),
                "{what}"
            );
            assert!(ids.insert(op["operationId"].as_str().unwrap()), "{what}");
            let roles = op["x-roles"].as_array().expect("x-roles");
            assert!(
                roles.iter().all(|r| ROLES.contains(&r.as_str().unwrap())),
                "{what}"
            );
            let security = op["security"].as_array().expect("security");
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|c| c.starts_with('2')),
                "{what}: no success response"
            );
            if security.is_empty() {
                assert!(roles.is_empty(), "{what}: public but x-roles given");
            } else {
                assert!(!roles.is_empty(), "{what}: secured but no x-roles");
                assert!(responses.contains_key("401"), "{what}: no 401");
                if roles.len() < ROLES.len() {
                    assert!(responses.contains_key("403"), "{what}: no 403");
                }
            }
            if op["requestBody"]["content"]
                .get("application/json")
                .is_some()
            {
                assert!(responses.contains_key("413"), "{what}: no 413");
            }
            // Every path parameter is declared.
            let declared: Vec<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| resolve(&doc, p))
                        .filter(|p| p["in"] == "path")
                        .map(|p| p["name"].as_str().unwrap())
                        .collect()
                })
                .unwrap_or_default();
            for seg in path.split('/') {
                if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    assert!(declared.contains(&name), "{what}: {name} undeclared");
                }
            }
            for r in responses.values() {
                let r = resolve(&doc, r);
                assert!(
                    r["description"].is_string(),
                    "{what}: response without description"
                );
            }
        }
    }
}

/// Status of a request without credentials or body, and whether it was the router's "no such
/// endpoint" (the body is read only for a 404: a stream would never end).
async fn probe(gw: &TestGateway, method: &str, path: &str) -> (u16, bool) {
    let resp = reqwest::Client::new()
        .request(method.parse().unwrap(), gw.url(path))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = if status == 404 {
        resp.json().await.unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    (status, is_no_such_endpoint(status, &body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_served_and_no_undocumented_method_is() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::embedded("methods", dir.path());
    let gw = TestGateway::start(&setup).await;
    let fx = Fixture {
        alarm_id: 1,
        ticket_id: "XHSY-2026-0001".into(),
        sha256: "0".repeat(64),
        school: SCHOOL,
        drill_id: None,
        incident_id: "XHSY-INC-202612-0001".into(),
        shift_id: 1,
    };
    let doc = openapi();
    let mut checked = 0;
    let mut problems = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let url = fx.fill(path, &BTreeMap::new());
        for method in ["get", "post", "put", "patch", "delete"] {
            let documented = item.get(method).is_some();
            let (status, no_such_endpoint) = probe(&gw, &method.to_uppercase(), &url).await;
            let served = status != 405 && !no_such_endpoint;
            if documented != served {
                problems.push(format!(
                    "{} {path}: documented {documented}, answered {status}",
                    method.to_uppercase()
                ));
            }
            checked += 1;
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked >= 150, "only {checked} probes");
    // Not vacuous: an unknown path and an unrouted method are told apart.
    assert_eq!(probe(&gw, "GET", "/api/v1/no-such-area").await, (404, true));
    assert_eq!(probe(&gw, "PUT", "/healthz").await.0, 405);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutating_operation_refuses_anonymous_and_wrong_roles_and_changes_nothing() {
    let env = start().await;
    let gw = &env.gw;
    let (status, served) = gw.get_json("/api/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(served, openapi());

    // A console session of a bureau user: cookies count like tokens.
    let resp = reqwest::Client::new()
        .post(gw.url("/login"))
        .json(&json!({"name": WEB_USER, "password": WEB_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let cookie = resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();

    let before = observable(&env).await;
    let rows = snapshot(&gw.data_dir).await;
    let mut checked = 0;
    for op in operations().iter().filter(|o| o.mutating() && !o.public) {
        let path = env.fx.fill(&op.path, &BTreeMap::new());
        let body = env.fx.body(op);
        let what = format!("{} {}", op.method, op.path);
        let mut attempts: Vec<(&str, Auth, u16)> = vec![
            ("no token", Auth::None, 401),
            (
                "unknown token",
                Auth::Bearer("not-a-token-of-this-gateway"),
                401,
            ),
        ];
        for role in ROLES.iter().filter(|r| !op.roles.iter().any(|a| a == *r)) {
            attempts.push((role, Auth::Bearer(token_of(role)), 403));
        }
        if !op.roles.iter().any(|r| r == "bureau") {
            attempts.push(("bureau session", Auth::Cookie(&cookie), 403));
        }
        for (who, auth, expected) in attempts {
            let (status, answer) = if op.multipart {
                let token = match auth {
                    Auth::Bearer(t) => Some(t),
                    Auth::None => None,
                    Auth::Cookie(_) => continue,
                };
                let jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3];
                upload(gw, &env.fx.ticket_id, token, jpeg).await
            } else {
                send(gw, &op.method, &path, auth, op.json_body.then_some(&body)).await
            };
            if op.pending() && is_no_such_endpoint(status, &answer) {
                eprintln!("skipping {what}: not merged yet");
                break;
            }
            assert_eq!(status, expected, "{what} as {who}: {answer}");
            assert!(answer["error"].is_string(), "{what} as {who}: {answer}");
            checked += 1;
        }
    }
    assert!(checked >= 60, "only {checked} refusals checked");
    assert_eq!(
        observable(&env).await,
        before,
        "a refused request changed state"
    );
    assert_eq!(
        snapshot(&gw.data_dir).await,
        rows,
        "a refused request changed rows"
    );

    // The same requests from an allowed role do work (the refusals above were not vacuous).
    let ack = format!("/api/v1/alarms/{}/ack", env.fx.alarm_id);
    let (status, body) = send(gw, "POST", &ack, Auth::Bearer(OPERATOR_TOKEN), None).await;
    assert_eq!(status, 200, "{body}");
    let supervise = format!("/api/v1/tickets/{}/actions/supervise", env.fx.ticket_id);
    let (status, body) = send(
        gw,
        "POST",
        &supervise,
        Auth::Cookie(&cookie),
        Some(&json!({"version": before["ticket_version"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(observable(&env).await, before);
    drop(env.dev);
    env.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused_with_413() {
    let env = start().await;
    let gw = &env.gw;
    let before = observable(&env).await;
    let filler = "x".repeat(MAX_BODY + 1024);
    let mut checked = 0;
    for op in operations().iter().filter(|o| o.json_body) {
        let path = env.fx.fill(&op.path, &BTreeMap::new());
        let role = op.roles.first().map(String::as_str);
        let auth = role.map_or(Auth::None, |r| Auth::Bearer(token_of(r)));
        // Valid JSON of the operation's shape, just too big.
        let mut body = env.fx.body(op);
        body["padding"] = json!(filler);
        let (status, answer) = send(gw, &op.method, &path, auth, Some(&body)).await;
        if op.pending() && is_no_such_endpoint(status, &answer) {
            continue;
        }
        assert_eq!(status, 413, "{} {}: {answer}", op.method, op.path);
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} bodies checked");

    // Without a Content-Length (chunked), the limit still holds.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..80)
        .map(|i| {
            Ok(if i == 0 {
                b"{\"comment\":\"".to_vec()
            } else {
                vec![b'y'; 1024]
            })
        })
        .collect();
    let resp = reqwest::Client::new()
        .post(gw.url(&format!("/api/v1/alarms/{}/ack", env.fx.alarm_id)))
        .bearer_auth(OPERATOR_TOKEN)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);

    // Attachments have their own limit (tickets.attachment_max_bytes).
    let mut big = vec![0xFF, 0xD8, 0xFF, 0xE0];
    big.resize(ATTACHMENT_MAX + 1, 0);
    let (status, answer) = upload(gw, &env.fx.ticket_id, Some(ADMIN_TOKEN), big).await;
    assert_eq!(status, 413, "{answer}");
    let after = observable(&env).await;
    assert_eq!(after, before, "a refused body changed state");
    let mut fits = vec![0xFF, 0xD8, 0xFF, 0xE0, 7];
    fits.resize(ATTACHMENT_MAX - 1024, 1);
    assert_eq!(
        upload(gw, &env.fx.ticket_id, Some(ADMIN_TOKEN), fits)
            .await
            .0,
        201
    );
    drop(env.dev);
    env.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_traversal_never_serves_a_file() {
    let env = start().await;
    let gw = &env.gw;
    let canary_path = gw.data_dir.join("canary.txt");
    let canary_abs = canary_path.display().to_string();
    let attachments = format!("/api/v1/tickets/{}/attachments", env.fx.ticket_id);
    let evil = [
        "..%2f..%2f..%2f..%2fetc%2fpasswd".to_string(),
        "%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd".into(),
        "%2e%2e/%2e%2e/%2e%2e/etc/passwd".into(),
        "../../../../etc/passwd".into(),
        "....//....//....//etc/passwd".into(),
        "..%5c..%5c..%5cetc%5cpasswd".into(),
        "%252e%252e%252fetc%252fpasswd".into(),
        "..%2fcanary.txt".into(),
        "..%2f..%2fcanary.txt".into(),
        "%2fetc%2fpasswd".into(),
        "/etc/passwd".into(),
        encode(&canary_abs),
        "app.js%00".into(),
        "app.js%00.png".into(),
        "%00".into(),
        "..%00/etc/passwd".into(),
        "..%c0%af..%c0%afetc%c0%afpasswd".into(),
        format!("{}%2f..%2f..%2fcanary.txt", env.fx.sha256),
        format!("..%2f..%2fticket-attachments%2f{}", env.fx.sha256),
    ];
    let bases = [
        "/assets/".to_string(),
        format!("{attachments}/"),
        "/api/v1/tickets/".into(),
    ];
    let mut checked = 0;
    for base in &bases {
        for e in &evil {
            let path = format!("{base}{e}");
            let (status, text) = raw(gw, &path, Some(ADMIN_TOKEN)).await;
            assert!([400, 404].contains(&status), "{path}: {status}\n{text}");
            assert!(!text.contains("root:"), "{path} served /etc/passwd");
            assert!(!text.contains(CANARY), "{path} served the canary");
            checked += 1;
        }
    }
    assert_eq!(checked, bases.len() * evil.len());
    // The real asset and attachment are still served.
    assert_eq!(raw(gw, "/assets/app.js", None).await.0, 200);
    let (status, _) = raw(
        gw,
        &format!("{attachments}/{}", env.fx.sha256),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    drop(env.dev);
    env.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_metacharacters_in_string_parameters_change_nothing() {
    let env = start().await;
    let gw = &env.gw;
    let payloads = [
        "' OR 1=1 --",
        "' OR '1'='1",
        "\"; DROP TABLE alarms; --",
        "'); DROP TABLE tickets; --",
        "1; DELETE FROM users",
        "%",
        "_",
        "%%",
        "*",
        "\\",
        "学校' OR 1=1 --",
        "\u{202e}' UNION SELECT password_hash FROM users --",
        "x\u{0}y",
    ];
    let before = observable(&env).await;
    let rows = snapshot(&gw.data_dir).await;
    let mut checked = 0;
    for op in operations() {
        for (place, name) in &op.string_params {
            for p in payloads {
                let mut overrides = BTreeMap::new();
                let mut query = String::new();
                if place == "path" {
                    overrides.insert(name.clone(), p.to_string());
                } else {
                    query = format!("?{name}={}", encode(p));
                    if op.path == "/api/v1/alarms" {
                        query.push_str("&state=all");
                    }
                    if op.path == "/api/v1/tickets/export" && name != "month" {
                        query.push_str("&month=2026-11");
                    }
                }
                let path = format!("{}{query}", env.fx.fill(&op.path, &overrides));
                let role = op.roles.first().map(String::as_str).unwrap_or("admin");
                let body = env.fx.body(&op);
                let (status, answer) = send(
                    gw,
                    &op.method,
                    &path,
                    Auth::Bearer(token_of(role)),
                    op.json_body.then_some(&body),
                )
                .await;
                let what = format!("{} {path}", op.method);
                if op.pending() && is_no_such_endpoint(status, &answer) {
                    continue;
                }
                assert!(status < 500, "{what}: {status} {answer}");
                if op.mutating() {
                    assert!(status >= 400, "{what} succeeded: {answer}");
                }
                // A school filter that names no school matches nothing.
                if name == "school" && status == 200 {
                    let list = answer
                        .as_array()
                        .or_else(|| answer["tickets"].as_array())
                        .or_else(|| answer["points"].as_array());
                    if let Some(list) = list {
                        assert!(list.is_empty(), "{what} matched rows: {answer}");
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 200, "only {checked} requests");
    assert_eq!(observable(&env).await, before, "state changed");
    assert_eq!(
        snapshot(&gw.data_dir).await,
        rows,
        "rows changed or tables gone"
    );
    // Still fully working.
    let (status, t) = gw
        .post_json("/api/v1/tickets", Some(ADMIN_TOKEN), new_ticket())
        .await;
    assert_eq!(status, 201, "{t}");
    drop(env.dev);
    env.gw.stop().await;
}

/// The soft open-files limit of this process, raised towards `want` with `prlimit` (no unsafe
/// code here) if it is lower.
fn ensure_nofile(want: u64) -> u64 {
    let read = || {
        std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| {
                l.lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
            })
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let soft = read();
    if soft < want {
        let _ = std::process::Command::new("prlimit")
            .arg(format!("--pid={}", std::process::id()))
            .arg(format!("--nofile={want}:"))
            .status();
    }
    read()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_sse_clients_do_not_block_new_clients_or_alarms() {
    const IDLE: usize = 1000;
    // Each idle client is two descriptors here (client and server side).
    let limit = ensure_nofile(4 * IDLE as u64);
    assert!(
        limit >= 2 * IDLE as u64 + 500,
        "open-files limit {limit} too low for {IDLE} clients (ulimit -n)"
    );
    let env = start().await;
    let gw = &env.gw;
    let base = gw.metrics.sse_clients.get();
    let addr = gw.http;
    let opened = Instant::now();
    let idle: Vec<tokio::net::TcpStream> = futures::stream::iter(0..IDLE)
        .map(|_| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(
                format!(
                    "GET /api/v1/alarms/stream?token={OPERATOR_TOKEN} HTTP/1.1\r\nHost: x\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
            // Read the response head, then never read again.
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut byte))
                    .await
                    .expect("stream answers")
                    .unwrap();
                assert_eq!(n, 1, "connection closed");
                head.push(byte[0]);
            }
            assert!(
                head.starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&head)
            );
            s
        })
        .buffer_unordered(50)
        .collect::<Vec<_>>()
        .await;
    eprintln!(
        "{IDLE} idle SSE clients connected in {:?}",
        opened.elapsed()
    );
    assert_eq!(idle.len(), IDLE);
    assert_eq!(gw.metrics.sse_clients.get() - base, IDLE as i64);

    // A new client connects and gets an alarm raised after it, within 5 s.
    let started = Instant::now();
    let mut stream = tokio::time::timeout(
        Duration::from_secs(5),
        AlarmStream::open(gw, OPERATOR_TOKEN),
    )
    .await
    .expect("a new SSE client connects within 5 s");
    raise_alarm(gw, &env.dev, "room-2", 45.0).await;
    let event = stream
        .next_matching(Duration::from_secs(5), |e| {
            e["device"] == "room-2" && e["transition"] == "raised"
        })
        .await;
    eprintln!(
        "new client got the alarm {:?} after connecting",
        started.elapsed()
    );
    assert_eq!(event["school"], SCHOOL);
    // The API still answers.
    let t = Instant::now();
    // Generous: this machine's load, not the gateway, dominates the time here.
    let (status, alarms) = tokio::time::timeout(
        Duration::from_secs(10),
        gw.get_json("/api/v1/alarms", Some(OPERATOR_TOKEN)),
    )
    .await
    .expect("API answers within 10 s");
    assert_eq!(status, 200);
    assert!(alarms.as_array().unwrap().len() >= 2);
    eprintln!(
        "GET /api/v1/alarms with {IDLE} idle streams: {:?}",
        t.elapsed()
    );
    drop(idle);
    drop(stream);
    drop(env.dev);
    env.gw.stop().await;
}

/// The `YYYY-MM` of a ticket from its number `<CODE>-<YYYYMM>-<NNNN>`.
fn month_of(ticket_id: &str) -> String {
    let yyyymm = ticket_id.split('-').nth(1).expect("a ticket number");
    format!("{}-{}", &yyyymm[..4], &yyyymm[4..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_description_that_looks_like_a_formula_comes_back_as_text_in_csv_and_xlsx() {
    use calamine::{Data, Reader};
    let env = start().await;
    let gw = &env.gw;
    let formula = r#"=HYPERLINK("http://x","y")"#;
    let mut ticket = new_ticket();
    ticket["description"] = json!(formula);
    ticket["location"] = json!("@SUM(A1:A9)");
    let (status, t) = gw
        .post_json("/api/v1/tickets", Some(ADMIN_TOKEN), ticket)
        .await;
    assert_eq!(status, 201, "{t}");
    let number = t["id"].as_str().unwrap().to_string();
    let month = month_of(&number);
    let export = |format: &str| {
        let url = gw.url(&format!(
            "/api/v1/tickets/export?month={month}&format={format}"
        ));
        async move {
            let resp = reqwest::Client::new()
                .get(url)
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 200);
            resp.bytes().await.unwrap().to_vec()
        }
    };

    // CSV: the cell is text with a leading `'`, which spreadsheets do not evaluate or show.
    let csv = export("csv").await;
    let mut reader = csv::Reader::from_reader(&csv[3..]);
    let row = reader
        .records()
        .map(Result::unwrap)
        .find(|r| &r[0] == number.as_str())
        .expect("the ticket is in the CSV ledger");
    assert_eq!(&row[5], format!("'{formula}"));
    assert_eq!(&row[2], "'@SUM(A1:A9)");

    // XLSX read back with calamine: a string cell, and no formula anywhere in the sheet.
    let xlsx = export("xlsx").await;
    let mut book = calamine::Xlsx::new(std::io::Cursor::new(xlsx)).unwrap();
    let name = book.sheet_names()[0].clone();
    let sheet = book.worksheet_range(&name).unwrap();
    let row = sheet
        .rows()
        .find(|r| r[0] == Data::String(number.clone()))
        .expect("the ticket is in the XLSX ledger");
    assert_eq!(row[5], Data::String(formula.to_string()));
    assert_eq!(row[2], Data::String("@SUM(A1:A9)".into()));
    let formulas = book.worksheet_formula(&name).unwrap();
    assert!(
        formulas.used_cells().all(|(_, _, f)| f.is_empty()),
        "the XLSX ledger holds a formula"
    );
    drop(env.dev);
    env.gw.stop().await;
}

/// One part of a multipart body: name, file name, bytes.
type Part<'a> = (&'a str, Option<&'a str>, &'a [u8]);

/// A multipart upload built by hand.
async fn upload_parts(gw: &TestGateway, id: &str, parts: &[Part<'_>]) -> u16 {
    let mut body = Vec::new();
    for (name, filename, bytes) in parts {
        body.extend_from_slice(b"--XBOUNDARYX\r\n");
        let filename = filename
            .map(|f| format!("; filename=\"{f}\""))
            .unwrap_or_default();
        body.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"{name}\"{filename}\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--XBOUNDARYX--\r\n");
    reqwest::Client::new()
        .post(gw.url(&format!("/api/v1/tickets/{id}/attachments")))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "multipart/form-data; boundary=XBOUNDARYX")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_multipart_field_is_bounded_and_attachments_are_served_as_downloads() {
    let env = start().await;
    let gw = &env.gw;
    let id = env.fx.ticket_id.clone();
    let jpeg: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 9, 9];
    let before = observable(&env).await;
    let long_kind = "b".repeat(10_000);
    let cases: Vec<(&str, Vec<Part>, u16)> = vec![
        (
            "a 10 kB kind",
            vec![
                ("kind", None, long_kind.as_bytes()),
                ("file", Some("p.jpg"), jpeg),
            ],
            413,
        ),
        (
            "two files",
            vec![("file", Some("a.jpg"), jpeg), ("file", Some("b.jpg"), jpeg)],
            400,
        ),
        (
            "two kinds",
            vec![("kind", None, b"before"), ("kind", None, b"after")],
            400,
        ),
        (
            "an unknown field",
            vec![("note", None, b"x"), ("file", Some("p.jpg"), jpeg)],
            400,
        ),
        ("no file", vec![("kind", None, b"after")], 400),
    ];
    for (what, parts, expected) in cases {
        assert_eq!(upload_parts(gw, &id, &parts).await, expected, "{what}");
    }
    // A part header that never ends is not buffered without bound.
    let endless = format!(
        "--XBOUNDARYX\r\nContent-Disposition: form-data; name=\"file\"\r\nX-Pad: {}",
        "p".repeat(ATTACHMENT_MAX + 64 * 1024)
    );
    let status = reqwest::Client::new()
        .post(gw.url(&format!("/api/v1/tickets/{id}/attachments")))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "multipart/form-data; boundary=XBOUNDARYX")
        .body(endless)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 413);
    // Not multipart at all.
    let status = reqwest::Client::new()
        .post(gw.url(&format!("/api/v1/tickets/{id}/attachments")))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 415);
    assert_eq!(
        observable(&env).await,
        before,
        "a refused upload changed state"
    );
    // A well-formed one still works.
    let parts: [Part; 2] = [("kind", None, b"after"), ("file", Some("p.jpg"), jpeg)];
    assert_eq!(upload_parts(gw, &id, &parts).await, 201);

    // Downloads: the sniffed type, never re-sniffed, as an attachment with a plain name.
    let resp = reqwest::Client::new()
        .get(gw.url(&format!(
            "/api/v1/tickets/{id}/attachments/{}",
            env.fx.sha256
        )))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let header = |name: &str| resp.headers()[name].to_str().unwrap().to_string();
    assert_eq!(header("content-type"), "image/jpeg");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(
        header("content-disposition"),
        format!("attachment; filename=\"{}.jpg\"", env.fx.sha256)
    );
    assert!(header("content-security-policy").contains("sandbox"));
    // The stored file is complete under its final name; no temporary file is left behind.
    let dir = gw.data_dir.join("ticket-attachments");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&env.fx.sha256), "{names:?}");
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    drop(env.dev);
    env.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fire_alarms_are_shelved_only_by_operators_and_admins_and_only_an_admin_shelves_past_a_day()
{
    let env = start().await;
    let gw = &env.gw;
    raise_alarm(gw, &env.dev, "room-2", 60.0).await;
    let find = |rule: &'static str| async move {
        let (_, alarms) = gw.get_json("/api/v1/alarms", Some(OPERATOR_TOKEN)).await;
        alarms.as_array().and_then(|a| {
            a.iter()
                .find(|a| a["device"] == "room-2" && a["rule"] == rule)
                .and_then(|a| a["id"].as_u64())
        })
    };
    let fire = eventually("the fire alarm", Duration::from_secs(10), || {
        find("temp_fire")
    })
    .await;
    let high = eventually("the high alarm", Duration::from_secs(10), || {
        find("temp_high")
    })
    .await;
    let shelve = |id: u64, token: &'static str, duration: &'static str| async move {
        let path = format!("/api/v1/alarms/{id}/shelve");
        let body = json!({"duration": duration, "reason": "detector under test"});
        gw.post_json(&path, Some(token), body).await
    };

    // A lab manager: not a fire alarm, but the supervisory one of the same room.
    let (status, answer) = shelve(fire, LAB_TOKEN, "1h").await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer["message"]
        .as_str()
        .unwrap()
        .contains("operator or an admin"));
    let (status, answer) = shelve(high, LAB_TOKEN, "1h").await;
    assert_eq!(status, 200, "{answer}");

    // An operator shelves the fire alarm and may extend the run up to 24 h from its start …
    let (status, first) = shelve(fire, OPERATOR_TOKEN, "20h").await;
    assert_eq!(status, 200, "{first}");
    let since = first["shelved"]["since_ms"].as_i64().unwrap();
    let (status, answer) = shelve(fire, OPERATOR_TOKEN, "23h").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["shelved"]["since_ms"].as_i64(), Some(since));
    // … but not past it; an admin may.
    let (status, answer) = shelve(fire, OPERATOR_TOKEN, "24h").await;
    assert_eq!(status, 403, "{answer}");
    let (_, alarm) = gw
        .get_json(&format!("/api/v1/alarms/{fire}"), Some(OPERATOR_TOKEN))
        .await;
    let until = alarm["shelved"]["until_ms"].as_i64().unwrap();
    assert!(until <= since + 24 * 3_600_000, "{alarm}");
    let (status, answer) = shelve(fire, ADMIN_TOKEN, "24h").await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["shelved"]["until_ms"].as_i64().unwrap() > since + 24 * 3_600_000);
    // Every refusal left the journal alone: raised, shelved ×3 (operator, operator, admin).
    let shelves = alarm_journal(gw, fire)
        .await
        .iter()
        .filter(|e| e["transition"] == "shelved")
        .count();
    assert_eq!(shelves, 3);
    drop(env.dev);
    env.gw.stop().await;
}

async fn alarm_journal(gw: &TestGateway, id: u64) -> Vec<Value> {
    let (status, alarm) = gw
        .get_json(&format!("/api/v1/alarms/{id}"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(status, 200, "{alarm}");
    alarm["journal"].as_array().cloned().unwrap_or_default()
}

/// A client that sends a request header one byte at a time, `every` apart, and never finishes
/// it. Resolves to when the server closed the connection (`None` if it was still open at
/// `give_up`).
async fn slow_header_client(
    addr: std::net::SocketAddr,
    every: Duration,
    give_up: Duration,
) -> (tokio::task::JoinHandle<Option<Instant>>, Instant) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let opened = Instant::now();
    let task = tokio::spawn(async move {
        let header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
            .iter()
            .copied();
        let mut bytes = header.chain(std::iter::repeat(b'a'));
        let deadline = tokio::time::Instant::now() + give_up;
        let mut tick = tokio::time::interval(every);
        let mut buf = [0u8; 256];
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return None,
                read = stream.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return Some(Instant::now()),
                    Ok(_) => {}
                },
                _ = tick.tick() => {
                    let byte = [bytes.next().unwrap_or(b'a')];
                    if stream.write_all(&byte).await.is_err() {
                        return Some(Instant::now());
                    }
                }
            }
        }
    });
    (task, opened)
}

/// Open file descriptors of this process (clients and the in-process gateway alike).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_slow_header_connections_do_not_keep_a_new_client_from_healthz() {
    const SLOW: usize = 500;
    let limit = ensure_nofile(4096);
    assert!(
        limit >= 2 * SLOW as u64 + 600,
        "open-files limit {limit} too low"
    );
    let dir = tempfile::tempdir().unwrap();
    // The shipped limits (header read timeout, connection cap).
    let gw = TestGateway::start(&Setup::embedded("slowloris", dir.path())).await;
    let base = gw.metrics.http_connections.get();
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let (task, _) =
            slow_header_client(gw.http, Duration::from_millis(500), Duration::from_secs(8)).await;
        slow.push(task);
    }
    gw.wait_until(Duration::from_secs(10), || async {
        gw.metrics.http_connections.get() - base >= SLOW as i64
    })
    .await;
    let started = Instant::now();
    let resp = reqwest::Client::new()
        .get(gw.url("/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .expect("/healthz answers within 2 s beside 500 slow-header connections");
    assert_eq!(resp.status().as_u16(), 200);
    eprintln!(
        "/healthz beside {SLOW} slow-header connections: {:?}",
        started.elapsed()
    );
    // The slow ones are all still being read (none was served: no header ever completed).
    assert!(gw.metrics.http_connections.get() - base >= SLOW as i64);
    for task in slow {
        task.abort();
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_new_clients_wait_and_slow_headers_are_closed_by_the_timeout() {
    const CAP: usize = 50;
    const SLOW: usize = 150;
    ensure_nofile(4096);
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::embedded("cap", dir.path());
    setup.http_toml = format!("max_connections = {CAP}\nheader_read_timeout = \"1s\"\n");
    let gw = TestGateway::start(&setup).await;
    let fds_before = open_fds();
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let (task, opened) =
            slow_header_client(gw.http, Duration::from_millis(200), Duration::from_secs(15)).await;
        slow.push((task, opened));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The cap holds: the server took 50; the other 100 wait in the accept queue, costing the
    // process no descriptor.
    assert_eq!(gw.metrics.http_connections.get(), CAP as i64);
    let grown = open_fds() - fds_before;
    assert!(
        grown <= SLOW + CAP + 10,
        "{grown} descriptors for {SLOW} clients"
    );
    // Every slow client is closed by the header timeout, a wave of 50 per second; a new client
    // then gets its answer.
    let started = Instant::now();
    let resp = reqwest::Client::new()
        .get(gw.url("/healthz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("/healthz answers once the slow connections time out");
    assert_eq!(resp.status().as_u16(), 200);
    eprintln!(
        "/healthz behind {SLOW} slow clients at a cap of {CAP}: {:?}",
        started.elapsed()
    );
    for (task, opened) in slow {
        let closed = task
            .await
            .unwrap()
            .expect("the server closed a slow-header connection");
        // Closed after the timeout, never before: at most 3 waves of 1 s (+ scheduling).
        let held = closed - opened;
        assert!(held >= Duration::from_millis(900), "closed after {held:?}");
    }
    assert!(gw.metrics.http_header_timeouts.get() >= SLOW as u64);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_not_answered_in_time_gets_408_and_the_alarm_stream_is_exempt() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::embedded("timeout", dir.path());
    setup.http_toml = "request_timeout = \"1s\"\n".into();
    // A login's wait must fit in half the request timeout.
    setup.extra_toml = format!(
        "[users]\nlogin_delay = \"100ms\"\nlogin_delay_max = \"500ms\"\n\n\
         [[devices]]\nid = \"room-1\"\nschool = \"{SCHOOL}\"\nprofile = \"test_room\"\n"
    );
    let gw = TestGateway::start(&setup).await;
    let dev = Device::connect(gw.mqtt_port, &unique("timeout-dev")).await;
    let mut stream = AlarmStream::open(&gw, OPERATOR_TOKEN).await;

    // A body promised but never sent: the handler waits for it, the timeout answers.
    let mut s = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    let started = Instant::now();
    s.write_all(
        format!(
            "POST /api/v1/alarms/1/ack HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OPERATOR_TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut head))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    let head = String::from_utf8_lossy(&head[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(started.elapsed() >= Duration::from_millis(900));

    // The stream opened before is still open well past the request timeout, and delivers.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    raise_alarm(&gw, &dev, "room-1", 45.0).await;
    let event = stream
        .next_matching(Duration::from_secs(5), |e| e["transition"] == "raised")
        .await;
    assert_eq!(event["device"], "room-1");
    drop(stream);
    drop(dev);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_parallel_guesses_get_at_most_the_documented_checks_and_the_owner_still_logs_in(
) {
    const GUESSES: usize = 200;
    // The policy of README "Logins and sessions", with short delays: slots for one name at 0,
    // 100, 300 and 700 ms, then one per login_delay_max (1 s) from 1.5 s on; an attempt is
    // admitted only for a slot at most 1 s away. So guesses arriving within T seconds are
    // checked at most 4 + ⌈T⌉ times — and one address at most login_address_failures (10).
    const BURST_BOUND: f64 = 4.0;
    const ADDRESS_BOUND: f64 = 10.0;
    ensure_nofile(2048);
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::embedded("guesses", dir.path());
    setup.extra_toml = r#"
[users]
login_delay = "100ms"
login_delay_max = "1s"
login_address_failures = 10
login_address_window = "15m"

[[users.seed]]
name = "op.zhang"
role = "operator"
password = "the-real-password-1"
"#
    .into();
    let gw = TestGateway::start(&setup).await;
    let attempts = |result: &str| {
        let gw = &gw;
        let name = format!("campusguard_login_attempts_total{{result=\"{result}\"}}");
        async move { gw.metric(&name).await }
    };

    // 200 guesses at once from 127.0.0.1, each on its own connection.
    let url = gw.url("/login");
    let client = reqwest::Client::new();
    let burst = Instant::now();
    let statuses: Vec<u16> = futures::future::join_all((0..GUESSES).map(|i| {
        let (url, client) = (url.clone(), client.clone());
        async move {
            client
                .post(url)
                .json(&json!({"name": "op.zhang", "password": format!("guess-{i}")}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    }))
    .await;
    // Every guess had arrived by the time the last answer came.
    let span = burst.elapsed().as_secs_f64().ceil();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    let wrong = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(refused + wrong, GUESSES, "{statuses:?}");
    let evaluated = attempts("failure").await;
    assert_eq!(evaluated, wrong as f64);
    assert!(
        (1.0..=BURST_BOUND + span).contains(&evaluated) && evaluated <= ADDRESS_BOUND,
        "{evaluated} of {GUESSES} parallel guesses (within {span} s) had their password checked"
    );
    assert_eq!(attempts("throttled").await, refused as f64);
    eprintln!(
        "{GUESSES} parallel guesses within {span} s: {evaluated} checked, {refused} refused with 429"
    );

    // The owner, from another address, waits for a turn at most and gets in.
    let owner = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let mut tries = 0;
    let status = loop {
        tries += 1;
        let resp = owner
            .post(gw.url("/login"))
            .json(&json!({"name": "op.zhang", "password": "the-real-password-1"}))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        if status != 429 || tries == 3 {
            break status;
        }
        let wait: u64 = resp.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(wait <= 2, "told to wait {wait} s");
        tokio::time::sleep(Duration::from_secs(wait)).await;
    };
    assert_eq!(status, 200, "the owner was locked out");
    assert_eq!(attempts("success").await, 1.0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_post_from_another_origin_or_not_json_is_refused_and_a_bearer_call_is_not() {
    let env = start().await;
    let gw = &env.gw;
    let resp = reqwest::Client::new()
        .post(gw.url("/login"))
        .json(&json!({"name": WEB_USER, "password": WEB_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let before = observable(&env).await;
    let supervise = gw.url(&format!(
        "/api/v1/tickets/{}/actions/supervise",
        env.fx.ticket_id
    ));
    let body = json!({"version": before["ticket_version"]}).to_string();
    let ours = format!("http://{}", gw.http);
    let post = |headers: Vec<(&'static str, String)>, body: String| {
        let mut req = reqwest::Client::new()
            .post(supervise.clone())
            .header("cookie", cookie.clone())
            .body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let json_type = || ("content-type", "application/json".to_string());
    type Headers = Vec<(&'static str, String)>;
    let cases: Vec<(&str, Headers, u16, &str)> = vec![
        (
            "another origin",
            vec![json_type(), ("origin", "http://evil.example".into())],
            403,
            "cross_origin",
        ),
        ("no origin at all", vec![json_type()], 403, "cross_origin"),
        (
            "a browser saying cross-site",
            vec![
                json_type(),
                ("origin", ours.clone()),
                ("sec-fetch-site", "cross-site".into()),
            ],
            403,
            "cross_origin",
        ),
        (
            "a form's text/plain",
            vec![
                ("content-type", "text/plain".into()),
                ("origin", "http://evil.example".into()),
            ],
            415,
            "unsupported_media_type",
        ),
        (
            "form-urlencoded from our own origin",
            vec![
                ("content-type", "application/x-www-form-urlencoded".into()),
                ("origin", ours.clone()),
            ],
            415,
            "unsupported_media_type",
        ),
    ];
    for (what, headers, status, code) in cases {
        let (got, answer) = post(headers, body.clone()).await;
        assert_eq!(
            (got, answer["error"].as_str()),
            (status, Some(code)),
            "{what}: {answer}"
        );
    }
    assert_eq!(
        observable(&env).await,
        before,
        "a refused cookie POST changed state"
    );
    // The console itself (same origin, JSON) may; so may a browser that only says same-origin.
    let (status, answer) = post(vec![json_type(), ("origin", ours.clone())], body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    let unsupervise = json!({"version": answer["version"]}).to_string();
    let resp = reqwest::Client::new()
        .post(gw.url(&format!(
            "/api/v1/tickets/{}/actions/unsupervise",
            env.fx.ticket_id
        )))
        .header("cookie", cookie.clone())
        .header("content-type", "application/json")
        .header("sec-fetch-site", "same-origin")
        .body(unsupervise)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // A bearer-token call needs no origin (scripts are not browsers).
    let (status, answer) = send(
        gw,
        "POST",
        &format!("/api/v1/alarms/{}/ack", env.fx.alarm_id),
        Auth::Bearer(OPERATOR_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    drop(env.dev);
    env.gw.stop().await;
}

// ---- Two schools and school-scoped tokens of every role -----------------------------------

/// The other school: everything of it is out of reach of tokens scoped to [`SCHOOL`].
const OTHER: &str = "dfzx";

/// A token of `role` scoped to `school`.
fn scoped_token(school: &str, role: &str) -> String {
    format!("scope-{school}-{role}-token-0123456789")
}

/// How a route must treat the other school, per operation (`METHOD path`, or a prefix ending
/// in `*`). Every documented operation needs an entry: a route added without one fails the
/// test, naming it.
#[derive(Debug, Clone, Copy)]
enum Scope {
    /// Serves nothing of any school (pages, assets, health, metrics, the document): the other
    /// school's id appears in no answer.
    NoSchoolData,
    /// Acts on or shows the caller's own session only.
    OwnSession,
    /// A list or summary, read with each of these queries (`{month}` is filled in), and with
    /// `school=<other>` added when the operation has a `school` parameter: a scoped caller
    /// gets an answer without a trace of the other school; one of the other school sees it.
    List(&'static [&'static str]),
    /// Reads one object of the other school (path ids): refused (403 or 404).
    Get,
    /// Acts on the other school (path ids or the body's school): refused (403 or 404) and
    /// nothing changes; a caller of that school gets past the scope check.
    Act,
    /// The alarm-system health: counts, compared between scopes.
    Kpis,
    /// The live stream: none of the other school's alarms or drills.
    Stream,
}

const SCHOOL_SCOPE: &[(&str, Scope)] = &[
    ("GET /healthz", Scope::NoSchoolData),
    ("GET /readyz", Scope::NoSchoolData),
    ("GET /metrics", Scope::NoSchoolData),
    ("GET /api/v1/openapi.json", Scope::NoSchoolData),
    ("GET /", Scope::NoSchoolData),
    ("GET /login", Scope::NoSchoolData),
    ("GET /assets/{file}", Scope::NoSchoolData),
    ("POST /login", Scope::OwnSession),
    ("POST /logout", Scope::OwnSession),
    ("GET /api/v1/session", Scope::OwnSession),
    ("DELETE /api/v1/session", Scope::OwnSession),
    ("GET /api/v1/alarms", Scope::List(&["", "state=all"])),
    ("GET /api/v1/alarms/stream", Scope::Stream),
    ("GET /api/v1/alarms/kpis", Scope::Kpis),
    (
        "GET /api/v1/alarms/history",
        Scope::List(&[
            "",
            "state=active_unacked",
            "format=csv",
            "format=csv&lang=en",
        ]),
    ),
    ("GET /api/v1/alarms/{id}", Scope::Get),
    ("POST /api/v1/alarms/{id}/ack", Scope::Act),
    ("POST /api/v1/alarms/{id}/shelve", Scope::Act),
    ("POST /api/v1/alarms/{id}/reset", Scope::Act),
    (
        "GET /api/v1/devices",
        Scope::List(&["", "unregistered=true"]),
    ),
    ("POST /api/v1/devices", Scope::Act),
    ("PATCH /api/v1/devices/{school}/{device}", Scope::Act),
    ("DELETE /api/v1/devices/{school}/{device}", Scope::Act),
    (
        "PUT /api/v1/devices/{school}/{device}/overrides",
        Scope::Act,
    ),
    ("GET /api/v1/devices/{school}/{device}/audit", Scope::Get),
    ("GET /api/v1/sensors", Scope::List(&[""])),
    (
        "GET /api/v1/sensors/{school}/{device}/{point}/history",
        Scope::Get,
    ),
    ("GET /api/v1/drills", Scope::List(&[""])),
    ("POST /api/v1/drills", Scope::Act),
    ("DELETE /api/v1/drills/{id}", Scope::Act),
    (
        "GET /api/v1/tickets",
        Scope::List(&["", "state=registered"]),
    ),
    ("POST /api/v1/tickets", Scope::Act),
    (
        "GET /api/v1/tickets/export",
        Scope::List(&["month={month}", "month={month}&format=json&lang=en"]),
    ),
    ("GET /api/v1/tickets/{id}", Scope::Get),
    ("GET /api/v1/tickets/{id}/history", Scope::Get),
    ("POST /api/v1/tickets/{id}/actions/*", Scope::Act),
    ("GET /api/v1/tickets/{id}/attachments", Scope::Get),
    ("POST /api/v1/tickets/{id}/attachments", Scope::Act),
    ("GET /api/v1/tickets/{id}/attachments/{sha256}", Scope::Get),
    ("GET /api/v1/stats/tickets", Scope::List(&["", "by=school"])),
    ("GET /api/v1/incidents", Scope::List(&["", "status=draft"])),
    ("POST /api/v1/incidents", Scope::Act),
    ("GET /api/v1/incidents/{id}", Scope::Get),
    ("PATCH /api/v1/incidents/{id}", Scope::Act),
    ("GET /api/v1/drills/history", Scope::List(&[""])),
    ("GET /api/v1/duty/shifts", Scope::List(&["", "room=dfzx"])),
    ("POST /api/v1/duty/shifts", Scope::Act),
    ("POST /api/v1/duty/shifts/{id}/handover", Scope::Act),
    (
        "GET /api/v1/duty/log",
        Scope::List(&["room=dfzx", "room=dfzx&format=csv"]),
    ),
    ("GET /api/v1/reports", Scope::List(&["month={month}"])),
    ("POST /api/v1/reports/{school}/{month}/submit", Scope::Act),
    ("GET /api/v1/reports/{school}/{month}", Scope::Get),
    (
        "GET /api/v1/reports/district/{month}",
        Scope::List(&["format=json", "format=csv"]),
    ),
];

/// The expectation of an operation; panics naming it when there is none.
fn scope_of(op: &Operation) -> Scope {
    let key = format!("{} {}", op.method, op.path);
    SCHOOL_SCOPE
        .iter()
        .find(|(k, _)| {
            *k == key
                || k.strip_suffix('*')
                    .is_some_and(|prefix| key.starts_with(prefix))
        })
        .map(|(_, scope)| *scope)
        .unwrap_or_else(|| {
            panic!(
                "no cross-school expectation for `{key}`: add one to SCHOOL_SCOPE in \
                 tests/hostile_http.rs (how must a token scoped to another school be treated?)"
            )
        })
}

fn two_schools_toml() -> String {
    let mut toml = String::new();
    for school in [SCHOOL, OTHER] {
        // A duty room per school, named after it.
        toml.push_str(&format!(
            "[[duty.rooms]]\nname = \"{school}\"\nschools = [\"{school}\"]\n\n"
        ));
        for role in ROLES {
            toml.push_str(&format!(
                "[[http.tokens]]\nname = \"{school}-{role}\"\ntoken = \"{}\"\nrole = \"{role}\"\nschools = [\"{school}\"]\n\n",
                scoped_token(school, role)
            ));
        }
        for device in ["room-1", "room-2"] {
            if school == SCHOOL {
                continue; // in extra_toml already
            }
            toml.push_str(&format!(
                "[[devices]]\nid = \"{device}\"\nschool = \"{school}\"\nprofile = \"test_room\"\n\n"
            ));
        }
    }
    toml
}

/// Whether an answer shows anything of the other school (its id, its ticket numbers).
fn shows_other(body: &str) -> bool {
    body.to_ascii_lowercase().contains(OTHER)
}

/// A request as `token` (or none): status and body text.
async fn call(
    gw: &TestGateway,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .request(method.parse().unwrap(), gw.url(path))
        .timeout(Duration::from_secs(20));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// An operation's request against `fx`: path, query variants and body.
fn requests(op: &Operation, fx: &Fixture, queries: &[&str], month: &str) -> Vec<String> {
    let path = fx.fill(&op.path, &BTreeMap::new());
    let mut out = Vec::new();
    for q in queries {
        let q = q.replace("{month}", month);
        let mut variants = vec![q.clone()];
        if op.query_params.iter().any(|p| p == "school") {
            let sep = if q.is_empty() { "" } else { "&" };
            variants.push(format!("{q}{sep}school={}", fx.school));
        }
        for v in variants {
            out.push(if v.is_empty() {
                path.clone()
            } else {
                format!("{path}?{v}")
            });
        }
    }
    out
}

/// Follows the alarm stream as `token`, collecting its text until `until` appears in it.
fn follow_stream(
    gw: &TestGateway,
    token: String,
    until: String,
) -> tokio::task::JoinHandle<String> {
    let url = gw.url("/api/v1/alarms/stream");
    tokio::spawn(async move {
        let resp = reqwest::Client::new()
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let mut body = resp.bytes_stream();
        let mut text = String::new();
        while !text.contains(&until) {
            match tokio::time::timeout(Duration::from_secs(10), body.next()).await {
                Ok(Some(Ok(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
                _ => panic!("the stream ended or stalled before `{until}`:\n{text}"),
            }
        }
        text
    })
}

/// What the scoped refusals could change, of the other school.
async fn other_school_state(gw: &TestGateway, fx: &Fixture) -> Value {
    let admin = Some(ADMIN_TOKEN);
    let (_, alarm) = gw
        .get_json(&format!("/api/v1/alarms/{}", fx.alarm_id), admin)
        .await;
    let (_, ticket) = gw
        .get_json(&format!("/api/v1/tickets/{}", fx.ticket_id), admin)
        .await;
    let (_, drills) = gw.get_json("/api/v1/drills", admin).await;
    let (_, tickets) = gw
        .get_json(&format!("/api/v1/tickets?school={OTHER}"), admin)
        .await;
    let (_, incidents) = gw
        .get_json(&format!("/api/v1/incidents?school={OTHER}"), admin)
        .await;
    json!({
        "incidents": incidents["incidents"],
        "alarm": [alarm["state"], alarm["shelved"], alarm["journal"].as_array().map(Vec::len)],
        "ticket": [ticket["state"], ticket["version"], ticket["attachments"].as_array().map(Vec::len)],
        "drills": drills,
        "tickets": tickets["tickets"].as_array().map(Vec::len),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_the_other_school_to_school_scoped_tokens_of_every_role() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::embedded("two-schools", dir.path());
    setup.extra_toml = format!("{}\n{}", extra_toml(), two_schools_toml());
    let gw = TestGateway::start(&setup).await;
    let dev = Device::connect(gw.mqtt_port, &unique("two-schools-dev")).await;
    let other = |role: &str| scoped_token(OTHER, role);

    // The other school's data: an open alarm, a ticket with an attachment, a drill, history,
    // an unregistered device.
    for school in [SCHOOL, OTHER] {
        dev.publish(&gw.topic(school, "room-1", "telemetry"), r#"{"temp_c":45}"#)
            .await;
    }
    dev.publish(&gw.topic(OTHER, "stray-1", "telemetry"), r#"{"temp_c":20}"#)
        .await;
    let alarm_id = eventually("the other school's alarm", Duration::from_secs(10), || {
        let gw = &gw;
        async move {
            let (_, alarms) = gw.get_json("/api/v1/alarms", Some(ADMIN_TOKEN)).await;
            alarms.as_array()?.iter().find_map(|a| {
                (a["school"] == OTHER && a["rule"] == "temp_high").then(|| a["id"].as_u64())?
            })
        }
    })
    .await;
    let (status, t) = gw
        .post_json("/api/v1/tickets", Some(&other("admin")), ticket_of(OTHER))
        .await;
    assert_eq!(status, 201, "{t}");
    let ticket_id = t["id"].as_str().unwrap().to_string();
    let month = month_of(&ticket_id);
    let jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F'];
    let (status, a) = upload(&gw, &ticket_id, Some(&other("admin")), jpeg).await;
    assert_eq!(status, 201, "{a}");
    let sha256 = a["sha256"].as_str().unwrap().to_string();
    let drill = json!({"school": OTHER, "building": "实验楼", "duration": "1h", "reason": "演练"});
    let (status, d) = gw
        .post_json("/api/v1/drills", Some(&other("operator")), drill)
        .await;
    assert_eq!(status, 201, "{d}");
    let (status, i) = gw
        .post_json(
            "/api/v1/incidents",
            Some(&other("admin")),
            incident_of(OTHER),
        )
        .await;
    assert_eq!(status, 201, "{i}");
    // The other school's duty room, with its operator on duty.
    let (status, shift) = gw
        .post_json(
            "/api/v1/duty/shifts",
            Some(&other("operator")),
            json!({"room": OTHER}),
        )
        .await;
    assert_eq!(status, 201, "{shift}");
    // The other school's month, submitted: a frozen report to be refused to us.
    let (status, r) = gw
        .post_json(
            &format!("/api/v1/reports/{OTHER}/{month}/submit"),
            Some(&other("school_safety")),
            json!({}),
        )
        .await;
    assert_eq!(status, 201, "{r}");
    // The devices that published once go stale after 2 s (`test_room`) and raise a fault each:
    // wait until both schools' are raised before alarm counts are compared between scopes.
    eventually(
        "both schools' stale faults",
        Duration::from_secs(10),
        || {
            let gw = &gw;
            async move {
                let (_, alarms) = gw.get_json("/api/v1/alarms", Some(ADMIN_TOKEN)).await;
                let alarms = alarms.as_array()?;
                let stale = |school: &str| {
                    alarms.iter().any(|a| {
                        a["school"] == school && a["device"] == "room-1" && a["rule"] == "stale"
                    })
                };
                (stale(SCHOOL) && stale(OTHER)).then_some(())
            }
        },
    )
    .await;
    let fx = Fixture {
        alarm_id,
        ticket_id,
        sha256,
        school: OTHER,
        drill_id: d["id"].as_u64(),
        incident_id: i["id"].as_str().unwrap().to_string(),
        shift_id: shift["shift"]["id"].as_i64().unwrap(),
    };
    let own_tokens: Vec<(&str, String)> = ROLES
        .iter()
        .map(|r| (*r, scoped_token(SCHOOL, r)))
        .collect();

    let before = other_school_state(&gw, &fx).await;
    let rows = snapshot(&gw.data_dir).await;
    let mut checked = 0;
    let mut acts = Vec::new();
    let mut streamed = false;
    for op in operations() {
        let what = format!("{} {}", op.method, op.path);
        let allowed = op.roles.first().map(String::as_str);
        match scope_of(&op) {
            Scope::OwnSession => {}
            Scope::NoSchoolData => {
                if op.method != "GET" {
                    continue;
                }
                for path in requests(&op, &fx, &[""], &month) {
                    for token in [None, Some(own_tokens[0].1.as_str())] {
                        let (status, body) = call(&gw, "GET", &path, token, None).await;
                        assert!(status < 500, "{what}: {status}");
                        assert!(!shows_other(&body), "{what} shows {OTHER}: {body}");
                        checked += 1;
                    }
                }
            }
            Scope::List(queries) => {
                for path in requests(&op, &fx, queries, &month) {
                    for (role, token) in &own_tokens {
                        let (status, body) = call(&gw, &op.method, &path, Some(token), None).await;
                        let refused = [403, 404].contains(&status);
                        assert!(
                            refused || (status == 200 && !shows_other(&body)),
                            "{what} ({path}) as {SCHOOL} {role}: {status} {body}"
                        );
                        checked += 1;
                    }
                    // Not vacuous: the other school's own caller sees its data there.
                    let role = allowed.expect("a secured list");
                    let (status, body) =
                        call(&gw, &op.method, &path, Some(&other(role)), None).await;
                    assert_eq!(status, 200, "{what} ({path}) as {OTHER} {role}: {body}");
                    assert!(
                        shows_other(&body),
                        "{what} ({path}) shows {OTHER} nothing: {body}"
                    );
                }
            }
            Scope::Get => {
                let path = fx.fill(&op.path, &BTreeMap::new());
                for (role, token) in &own_tokens {
                    let (status, body) = call(&gw, &op.method, &path, Some(token), None).await;
                    assert!(
                        [403, 404].contains(&status),
                        "{what} as {SCHOOL} {role}: {status} {body}"
                    );
                    checked += 1;
                }
                let role = allowed.expect("a secured read");
                let (status, body) = call(&gw, &op.method, &path, Some(&other(role)), None).await;
                assert_eq!(status, 200, "{what} as {OTHER} {role}: {body}");
            }
            Scope::Act => {
                let path = fx.fill(&op.path, &BTreeMap::new());
                let body = fx.body(&op);
                for (role, token) in &own_tokens {
                    let (status, answer) = if op.multipart {
                        let jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 3];
                        let (s, a) = upload(&gw, &fx.ticket_id, Some(token), jpeg).await;
                        (s, a.to_string())
                    } else {
                        let body = op.json_body.then_some(&body);
                        call(&gw, &op.method, &path, Some(token), body).await
                    };
                    assert!(
                        [403, 404].contains(&status),
                        "{what} on {OTHER} as {SCHOOL} {role}: {status} {answer}"
                    );
                    checked += 1;
                }
                acts.push((op, path, body));
            }
            Scope::Kpis => {
                let kpis = |token: String| {
                    let gw = &gw;
                    async move {
                        let (status, k) = gw.get_json("/api/v1/alarms/kpis", Some(&token)).await;
                        assert_eq!(status, 200, "{k}");
                        k
                    }
                };
                let all = kpis(ADMIN_TOKEN.into()).await["alarms_last_hour"].clone();
                let theirs = kpis(other("operator")).await["alarms_last_hour"].clone();
                assert!(
                    theirs.as_u64() >= Some(1),
                    "the other school raised nothing"
                );
                for (role, token) in &own_tokens {
                    let ours = kpis(token.clone()).await;
                    assert!(!shows_other(&ours.to_string()), "{what}: {ours}");
                    assert_eq!(
                        ours["alarms_last_hour"].as_u64().unwrap() + theirs.as_u64().unwrap(),
                        all.as_u64().unwrap(),
                        "{what} as {SCHOOL} {role} counts the other school: {ours}"
                    );
                    checked += 1;
                }
            }
            Scope::Stream => {
                // A stream per role of ours, and one of theirs. Then a drill and an alarm of
                // theirs, then an alarm of ours: ours see their own alarm, nothing before it.
                let ours_marker = format!("{SCHOOL}/room-2/temp_c");
                let mut streams = Vec::new();
                for (role, token) in &own_tokens {
                    streams.push((
                        *role,
                        follow_stream(&gw, token.clone(), ours_marker.clone()),
                    ));
                }
                let theirs_marker = format!("{OTHER}/room-2/temp_c");
                let theirs = follow_stream(&gw, other("bureau"), theirs_marker);
                tokio::time::sleep(Duration::from_millis(300)).await;
                let library = json!({"school": OTHER, "building": "图书馆", "duration": "1h", "reason": "演练"});
                let (status, d) = gw
                    .post_json("/api/v1/drills", Some(&other("operator")), library)
                    .await;
                assert_eq!(status, 201, "{d}");
                for school in [OTHER, SCHOOL] {
                    dev.publish(&gw.topic(school, "room-2", "telemetry"), r#"{"temp_c":45}"#)
                        .await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                for (role, stream) in streams {
                    let text = stream.await.unwrap();
                    assert!(!shows_other(&text), "{what} as {SCHOOL} {role}:\n{text}");
                    checked += 1;
                }
                let text = theirs.await.unwrap();
                assert!(
                    text.contains("event: drill") && text.contains("图书馆"),
                    "{text}"
                );
                streamed = true;
            }
        }
    }
    assert!(streamed, "the stream was not checked");
    assert!(checked >= 200, "only {checked} checks");
    // Nothing of the other school changed (the stream check added a drill and an alarm of its
    // own, through the other school's tokens: compare what the refusals could touch).
    let after = other_school_state(&gw, &fx).await;
    assert_eq!(
        after["alarm"], before["alarm"],
        "a refused action changed the alarm"
    );
    assert_eq!(
        after["ticket"], before["ticket"],
        "a refused action changed the ticket"
    );
    assert_eq!(
        after["tickets"], before["tickets"],
        "a refused action filed a ticket"
    );
    assert_eq!(
        after["incidents"], before["incidents"],
        "a refused action filed or changed an incident report"
    );
    let drill_ids = |v: &Value| -> Vec<Value> {
        v["drills"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].clone())
            .collect()
    };
    assert!(
        drill_ids(&after).contains(&json!(fx.drill_id)),
        "a refused action ended the drill"
    );
    let mut expected_rows = rows.clone();
    *expected_rows.get_mut("campusguard.db:drills").unwrap() += 1;
    assert_eq!(
        snapshot(&gw.data_dir).await,
        expected_rows,
        "a refused action changed rows"
    );

    // Not vacuous: the other school's own callers get past the scope check of every action.
    for (op, path, body) in acts {
        let what = format!("{} {}", op.method, op.path);
        let role = op.roles.first().expect("a secured action");
        let token = other(role);
        let status = if op.multipart {
            let jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 4];
            upload(&gw, &fx.ticket_id, Some(&token), jpeg).await.0
        } else {
            let body = op.json_body.then_some(&body);
            call(&gw, &op.method, &path, Some(&token), body).await.0
        };
        assert!(
            ![401, 403, 404].contains(&status),
            "{what} as {OTHER} {role} did not get past the scope check: {status}"
        );
    }
    drop(dev);
    gw.stop().await;
}

#[test]
fn a_route_without_a_cross_school_expectation_fails_the_coverage_test_by_name() {
    let op = Operation {
        method: "GET".into(),
        path: "/api/v1/notifications".into(),
        roles: vec!["admin".into()],
        public: false,
        json_body: false,
        multipart: false,
        string_params: Vec::new(),
        query_params: Vec::new(),
    };
    let panic = std::panic::catch_unwind(|| scope_of(&op)).unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(message.contains("`GET /api/v1/notifications`"), "{message}");
    assert!(message.contains("SCHOOL_SCOPE"), "{message}");
    // Every operation documented today has one.
    for op in operations() {
        scope_of(&op);
    }
}

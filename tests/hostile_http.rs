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
            ops.push(Operation {
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
                    (_, "id") => "1".into(),
                    (_, "sha256") => self.sha256.clone(),
                    (_, "school") => SCHOOL.into(),
                    (_, "device") => "room-1".into(),
                    (_, "point") => "temp_c".into(),
                    (_, "file") => "app.js".into(),
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
            ("POST", "/api/v1/tickets") => new_ticket(),
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
                json!({"school": SCHOOL, "duration": "10m", "reason": "hostile test"})
            }
            _ => json!({}),
        }
    }
}

fn new_ticket() -> Value {
    json!({"school": SCHOOL, "location": "实验楼 301", "category": "lab_chemical", "description": "通风不足"})
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
        Auth::Cookie(c) => req.header("cookie", c),
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
    Env {
        gw,
        dev,
        fx: Fixture {
            alarm_id,
            ticket_id,
            sha256,
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
    json!({
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

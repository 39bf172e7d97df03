//! A local stand-in for each notification vendor, in Rust (axum) inside the test: it checks
//! the exact request format and the signature the way each vendor documents them, and answers
//! the way the vendor does — success, rate limited, server error, signature refused. Every
//! request is recorded (arrival time, body, headers, whether it passed the checks).
//!
//! Paths: `POST /wecom` (企业微信 group robot), `/dingtalk` (钉钉 custom robot, 加签 in the
//! query), `/feishu` (飞书 custom bot, signature in the body), `/webhook` and `/webhook/...`
//! (`X-Campusguard-Signature: sha256=<hex HMAC-SHA256(body)>`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// How the receiver answers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Ok,
    RateLimited,
    ServerError,
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Got {
    pub vendor: String,
    pub path: String,
    pub at: Instant,
    pub query: String,
    pub headers: HashMap<String, String>,
    pub body: Value,
    /// Passed the vendor's format and signature checks.
    pub valid: bool,
    pub problem: Option<String>,
    /// Answered with success.
    pub accepted: bool,
}

impl Got {
    /// The idempotency keys a webhook request carried.
    pub fn keys(&self) -> Vec<String> {
        let n = &self.body["notification"];
        match n["keys"].as_array() {
            Some(keys) => keys
                .iter()
                .filter_map(|k| k.as_str().map(String::from))
                .collect(),
            None => n["key"].as_str().map(String::from).into_iter().collect(),
        }
    }

    /// The message text, whatever the vendor's format.
    pub fn text(&self) -> String {
        match self.vendor.as_str() {
            "wecom" => self.body["markdown"]["content"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            "dingtalk" => self.body["markdown"]["text"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            "feishu" => self.body["content"]["post"]["zh_cn"].to_string(),
            _ => self.body["notification"]["text"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        }
    }
}

struct Shared {
    got: Mutex<Vec<Got>>,
    modes: Mutex<HashMap<String, Mode>>,
    /// Vendor → the signing secret it expects (none: unsigned).
    secrets: Mutex<HashMap<String, String>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Listens on a free port.
    pub async fn start() -> Self {
        Self::start_on(0).await
    }

    /// Listens on `port` (a port a gateway was already told about).
    pub async fn start_on(port: u16) -> Self {
        let shared = Arc::new(Shared {
            got: Mutex::new(Vec::new()),
            modes: Mutex::new(HashMap::new()),
            secrets: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route("/{vendor}", post(receive))
            .route("/{vendor}/{*rest}", post(receive_nested))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn expect_secret(&self, vendor: &str, secret: &str) {
        self.shared
            .secrets
            .lock()
            .unwrap()
            .insert(vendor.into(), secret.into());
    }

    pub fn set_mode(&self, vendor: &str, mode: Mode) {
        self.shared
            .modes
            .lock()
            .unwrap()
            .insert(vendor.into(), mode);
    }

    pub fn got(&self) -> Vec<Got> {
        self.shared.got.lock().unwrap().clone()
    }

    pub fn got_by(&self, path: &str) -> Vec<Got> {
        self.got().into_iter().filter(|g| g.path == path).collect()
    }

    /// Polls until `check` holds on what arrived; panics after `limit`.
    pub async fn wait_for(&self, what: &str, limit: Duration, check: impl Fn(&[Got]) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            if check(&self.got()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "receiver: timed out after {limit:?} waiting for {what}; got {:#?}",
                self.got()
                    .iter()
                    .map(|g| (g.path.clone(), g.valid, g.problem.clone()))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops listening (the port is closed: connections are refused).
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive_nested(
    State(shared): State<Arc<Shared>>,
    Path((vendor, rest)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(
        shared,
        vendor.clone(),
        format!("/{vendor}/{rest}"),
        query,
        headers,
        body,
    )
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    Path(vendor): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(
        shared,
        vendor.clone(),
        format!("/{vendor}"),
        query,
        headers,
        body,
    )
}

fn handle(
    shared: Arc<Shared>,
    vendor: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let query = query.unwrap_or_default();
    let secret = shared.secrets.lock().unwrap().get(&vendor).cloned();
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let problem = check(&vendor, &query, &headers, &raw, &body, secret.as_deref()).err();
    let mode = shared
        .modes
        .lock()
        .unwrap()
        .get(&vendor)
        .copied()
        .unwrap_or(Mode::Ok);
    let response = answer(&vendor, mode, problem.is_some());
    let accepted = problem.is_none() && mode == Mode::Ok;
    shared.got.lock().unwrap().push(Got {
        vendor,
        path,
        at: Instant::now(),
        query,
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body,
        valid: problem.is_none(),
        problem,
        accepted,
    });
    response
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The vendor's checks of one request.
fn check(
    vendor: &str,
    query: &str,
    headers: &HeaderMap,
    raw: &[u8],
    body: &Value,
    secret: Option<&str>,
) -> Result<(), String> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/json") {
        return Err(format!("content-type {content_type}"));
    }
    match vendor {
        "wecom" => {
            if body["msgtype"] != "markdown" {
                return Err("msgtype is not markdown".into());
            }
            let content = body["markdown"]["content"].as_str().ok_or("no content")?;
            if content.len() > 4096 {
                return Err(format!("content of {} bytes", content.len()));
            }
            if body.as_object().map(|o| o.len()) != Some(2) {
                return Err("extra members".into());
            }
            Ok(())
        }
        "dingtalk" => {
            if body["msgtype"] != "markdown"
                || !body["markdown"]["title"].is_string()
                || !body["markdown"]["text"].is_string()
            {
                return Err("not a markdown message with title and text".into());
            }
            let Some(secret) = secret else { return Ok(()) };
            let pairs: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
            let ts: i64 = pairs
                .get("timestamp")
                .and_then(|t| t.parse().ok())
                .ok_or("no timestamp")?;
            if (now_ms() - ts).abs() > 3_600_000 {
                return Err("timestamp not within an hour".into());
            }
            let sign = pairs.get("sign").ok_or("no sign")?;
            // The raw query carries the Base64 URL-encoded ('+', '/', '=' escaped).
            let raw_sign = query
                .split('&')
                .find_map(|p| p.strip_prefix("sign="))
                .unwrap_or_default();
            if raw_sign.contains(['+', '/', '=']) {
                return Err("sign is not URL-encoded".into());
            }
            let expected = b64(&hmac_sha256(
                secret.as_bytes(),
                format!("{ts}\n{secret}").as_bytes(),
            ));
            if *sign != expected {
                return Err("sign not match".into());
            }
            Ok(())
        }
        "feishu" => {
            if body["msg_type"] != "post"
                || !body["content"]["post"]["zh_cn"]["title"].is_string()
                || !body["content"]["post"]["zh_cn"]["content"].is_array()
            {
                return Err("not a rich-text post".into());
            }
            if raw.len() > 20 * 1024 {
                return Err(format!("body of {} bytes", raw.len()));
            }
            let Some(secret) = secret else { return Ok(()) };
            let ts: i64 = body["timestamp"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .ok_or("timestamp missing or not a string")?;
            if (now_ms() / 1000 - ts).abs() > 3600 {
                return Err("timestamp not within an hour".into());
            }
            let expected = b64(&hmac_sha256(format!("{ts}\n{secret}").as_bytes(), b""));
            if body["sign"] != expected.as_str() {
                return Err("sign match fail".into());
            }
            Ok(())
        }
        _ => {
            if !body["notification"]["key"].is_string() {
                return Err("no notification.key".into());
            }
            let Some(secret) = secret else { return Ok(()) };
            let got = headers
                .get("x-campusguard-signature")
                .and_then(|v| v.to_str().ok())
                .ok_or("no signature")?;
            let hex: String = hmac_sha256(secret.as_bytes(), raw)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            if got != format!("sha256={hex}") {
                return Err("signature does not match".into());
            }
            Ok(())
        }
    }
}

/// What the vendor answers.
fn answer(vendor: &str, mode: Mode, refused: bool) -> Response {
    let json_ok = |v: Value| (StatusCode::OK, axum::Json(v)).into_response();
    if mode == Mode::ServerError {
        return (StatusCode::INTERNAL_SERVER_ERROR, "upstream failure").into_response();
    }
    match vendor {
        "wecom" if refused => json_ok(json!({"errcode": 40008, "errmsg": "invalid message type"})),
        "wecom" if mode == Mode::RateLimited => {
            json_ok(json!({"errcode": 45009, "errmsg": "api freq out of limit"}))
        }
        "wecom" => json_ok(json!({"errcode": 0, "errmsg": "ok"})),
        "dingtalk" if refused => json_ok(json!({"errcode": 310000, "errmsg": "sign not match"})),
        "dingtalk" if mode == Mode::RateLimited => json_ok(
            json!({"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}),
        ),
        "dingtalk" => json_ok(json!({"errcode": 0, "errmsg": "ok"})),
        "feishu" if refused => json_ok(
            json!({"code": 19021, "msg": "sign match fail or timestamp is not within one hour from current time", "data": {}}),
        ),
        "feishu" if mode == Mode::RateLimited => {
            json_ok(json!({"code": 11232, "msg": "frequency limited", "data": {}}))
        }
        "feishu" => json_ok(
            json!({"code": 0, "msg": "success", "data": {}, "StatusCode": 0, "StatusMessage": "success"}),
        ),
        _ if refused => (StatusCode::UNAUTHORIZED, "bad signature").into_response(),
        _ if mode == Mode::RateLimited => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "slow down",
        )
            .into_response(),
        _ => json_ok(json!({"ok": true})),
    }
}

/// The most requests that arrived within any 60 s window.
pub fn max_per_minute(got: &[Got]) -> usize {
    let mut times: Vec<Instant> = got.iter().map(|g| g.at).collect();
    times.sort();
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| t.duration_since(times[i]) < Duration::from_secs(60))
                .count()
        })
        .max()
        .unwrap_or(0)
}

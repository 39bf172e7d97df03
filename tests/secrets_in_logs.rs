//! Secrets never reach the log: the real binary runs at `RUST_LOG=trace` with an API token, a
//! time-series token, MQTT credentials (checked by a private Mosquitto) and console users with
//! passwords; it serves good and bad logins and tokens and writes to VictoriaMetrics; then its
//! whole stdout and stderr are searched for every secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
#[path = "support/tsdb.rs"]
mod tsdb;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;
use tsdb::VictoriaMetrics;

const API_TOKEN: &str = "SECRET-api-token-5d1e0c7a9b";
const QUERY_TOKEN: &str = "SECRET-query-token-8c2f4e61aa";
const WRONG_TOKEN: &str = "SECRET-wrong-token-a71b3c9d0e";
const TSDB_TOKEN: &str = "SECRET-tsdb-token-4f0e2d9c1b";
const MQTT_USER: &str = "gateway-mqtt-user";
const MQTT_PASSWORD: &str = "SECRET-mqtt-pass-6b3a8e2f";
const USER_PASSWORD: &str = "SECRET-user-pass-2c9e7f1a";
const ADMIN_PASSWORD: &str = "SECRET-admin-pass-9a4d6b3e";
const WRONG_PASSWORD: &str = "SECRET-wrong-pass-0e5c1a7f";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_log_even_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    // Mosquitto that only lets the gateway (and the test device) in with their passwords.
    let passwd = dir.path().join("mosquitto.passwd");
    std::fs::write(&passwd, "").unwrap();
    for (user, pass) in [(MQTT_USER, MQTT_PASSWORD), ("device", "device-pass-123")] {
        let ok = Command::new("mosquitto_passwd")
            .arg("-b")
            .arg(&passwd)
            .args([user, pass])
            .status()
            .expect("mosquitto_passwd (package mosquitto) is installed");
        assert!(ok.success());
    }
    let broker = PrivateMosquitto::start(&format!(
        "allow_anonymous false\npassword_file {}",
        passwd.display()
    ));
    let vm = VictoriaMetrics::start().await;
    let http_port = free_port();
    let prefix = unique("secrets");
    let profiles = dir.path().join("profiles.toml");
    std::fs::write(&profiles, TEST_PROFILES).unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[mqtt]
url = "mqtt://127.0.0.1:{mqtt}"
client_id = "{prefix}-gw"
topic_prefix = "{prefix}"
username = "{MQTT_USER}"
password = "{MQTT_PASSWORD}"
clean_session = true
reconnect_min = "100ms"
reconnect_max = "1s"

[http]
listen = "127.0.0.1:{http_port}"

[[http.tokens]]
name = "ops"
token = "{API_TOKEN}"
role = "operator"

[[http.tokens]]
name = "sse"
token = "{QUERY_TOKEN}"
role = "bureau"

[storage]
data_dir = "{data}"

[rules]
profiles_file = "{profiles}"
tick = "100ms"

[timeseries]
kind = "influxdb2"
url = "{vm}"
org = "district"
bucket = "campus"
token = "{TSDB_TOKEN}"
flush_interval = "100ms"

[[users.seed]]
name = "op.wu"
role = "operator"
password = "{USER_PASSWORD}"

[[users.seed]]
name = "admin"
role = "admin"
password = "{ADMIN_PASSWORD}"

[[devices]]
id = "room-1"
school = "xhsy"
profile = "test_room"
"#,
            mqtt = broker.port,
            data = dir.path().join("data").display(),
            profiles = profiles.display(),
            vm = vm.url(),
        ),
    )
    .unwrap();
    let stdout = std::fs::File::create(dir.path().join("stdout.log")).unwrap();
    let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_campusguard"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "trace")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut child = Reap(child);
    let base = format!("http://127.0.0.1:{http_port}");
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            if r.status().as_u16() == 200 {
                break;
            }
        }
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!(
                "gateway exited with {status}: {}",
                std::fs::read_to_string(dir.path().join("stderr.log")).unwrap()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not ready in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Logins: right and wrong password, and a wrong one for a name that does not exist.
    let login = |name: &'static str, password: &'static str| {
        let client = client.clone();
        let url = format!("{base}/login");
        async move {
            let r = client
                .post(url)
                .json(&json!({"name": name, "password": password}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let cookie = r
                .headers()
                .get("set-cookie")
                .map(|v| v.to_str().unwrap().to_string());
            (status, cookie)
        }
    };
    let (status, cookie) = login("op.wu", USER_PASSWORD).await;
    assert_eq!(status, 200);
    let cookie = cookie.unwrap();
    let session = cookie.split(';').next().unwrap().to_string();
    let session_value = session.split_once('=').unwrap().1.to_string();
    assert!(session_value.len() >= 16, "{session}");
    assert_eq!(login("op.wu", WRONG_PASSWORD).await.0, 401);
    assert_eq!(login("admin", ADMIN_PASSWORD).await.0, 200);
    assert_eq!(login("nobody", WRONG_PASSWORD).await.0, 401);
    let r = client
        .get(format!("{base}/api/v1/session"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Tokens: right and wrong, in the header and in the query.
    let get = |url: String, token: Option<&'static str>| {
        let client = client.clone();
        async move {
            let mut req = client.get(url);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            req.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(
        get(format!("{base}/api/v1/alarms"), Some(API_TOKEN)).await,
        200
    );
    assert_eq!(
        get(format!("{base}/api/v1/alarms"), Some(WRONG_TOKEN)).await,
        401
    );
    assert_eq!(
        get(format!("{base}/api/v1/devices?token={QUERY_TOKEN}"), None).await,
        200
    );
    assert_eq!(
        get(format!("{base}/api/v1/devices?token={WRONG_TOKEN}"), None).await,
        401
    );
    let r = client
        .post(format!("{base}/api/v1/tickets"))
        .bearer_auth(API_TOKEN)
        .json(&json!({"school": "xhsy", "location": "l", "category": "fire", "description": "d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);

    // Readings over MQTT (with the device's own credentials) end up in VictoriaMetrics.
    let mut options = rumqttc::MqttOptions::new(unique("dev"), "127.0.0.1", broker.port);
    options.set_credentials("device", "device-pass-123");
    let (dev, mut events) = rumqttc::AsyncClient::new(options, 10);
    let poller = tokio::spawn(async move { while events.poll().await.is_ok() {} });
    dev.publish(
        format!("{prefix}/xhsy/room-1/telemetry"),
        rumqttc::QoS::AtLeastOnce,
        false,
        r#"{"temp_c":45.5}"#,
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let series = vm.export(r#"{__name__="test_room_value"}"#).await;
        if !series.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no write reached VictoriaMetrics"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    poller.abort();

    // Stop it the way the service manager does.
    let killed = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let stopping = Instant::now();
    while child.0.try_wait().unwrap().is_none() {
        if stopping.elapsed() > Duration::from_secs(20) {
            let _ = child.0.kill();
            panic!("gateway did not stop within 20 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let log = format!(
        "{}\n{}",
        std::fs::read_to_string(dir.path().join("stdout.log")).unwrap(),
        std::fs::read_to_string(dir.path().join("stderr.log")).unwrap()
    );
    // The log is the verbose one we asked for, and saw the traffic.
    assert!(log.contains("TRACE"), "no trace-level lines in the log");
    assert!(log.contains("console login"), "no login in the log");
    assert!(
        log.lines().count() > 50,
        "log too short: {} lines",
        log.lines().count()
    );
    let secrets = [
        ("API token", API_TOKEN.to_string()),
        ("query token", QUERY_TOKEN.to_string()),
        ("wrong token", WRONG_TOKEN.to_string()),
        ("Authorization header", format!("Bearer {API_TOKEN}")),
        ("TSDB token", TSDB_TOKEN.to_string()),
        ("TSDB Authorization header", format!("Token {TSDB_TOKEN}")),
        ("MQTT password", MQTT_PASSWORD.to_string()),
        ("user password", USER_PASSWORD.to_string()),
        ("admin password", ADMIN_PASSWORD.to_string()),
        ("wrong password", WRONG_PASSWORD.to_string()),
        ("session cookie", session_value.clone()),
        // Any of them, should one be printed in pieces.
        ("secret marker", "SECRET-".to_string()),
    ];
    let leaks: Vec<String> = secrets
        .iter()
        .filter_map(|(what, s)| {
            log.lines()
                .find(|l| l.contains(s.as_str()))
                .map(|l| format!("{what}: {}", &l[..l.len().min(400)]))
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "secrets in the log:\n{}",
        leaks.join("\n")
    );
}

/// Kills the gateway if the test fails before it stopped it.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

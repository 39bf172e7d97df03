//! Test support: start a whole gateway in-process on free ports with its own data directory and
//! topic prefix, publish device traffic over real MQTT, and follow the SSE stream.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use campusguard::config::Config;
use futures::StreamExt;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio_util::sync::CancellationToken;

pub const OPERATOR_TOKEN: &str = "test-operator-token-0123456789";
pub const BUREAU_TOKEN: &str = "test-bureau-token-0123456789ab";

/// The shared Mosquitto the tests publish to (each test under its own topic prefix):
/// `CAMPUSGUARD_TEST_MQTT_PORT` (set by `scripts/test`), else the machine's 127.0.0.1:1883.
pub fn mosquitto_port() -> u16 {
    std::env::var("CAMPUSGUARD_TEST_MQTT_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(1883)
}

/// The PostgreSQL database the ticket tests use (each test in its own schema):
/// `CAMPUSGUARD_TEST_PG_URL` (set by `scripts/test`), else the machine's 127.0.0.1:5432/test.
pub fn pg_url() -> String {
    std::env::var("CAMPUSGUARD_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Profiles the tests rely on, independent of the shipped thresholds.
pub const TEST_PROFILES: &str = r#"
[profiles.test_room]
label = "测试房间"
label_en = "Test room"
stale_after = "2s"

[profiles.test_room.points.temp_c]
kind = "number"
unit = "°C"
range = [-40.0, 150.0]

[profiles.test_room.points.door_open]
kind = "bool"

[[profiles.test_room.rules]]
id = "temp_high"
kind = "high"
point = "temp_c"
class = "supervisory"
warning = 30.0
alarm = 40.0
deadband = 1.0

[[profiles.test_room.rules]]
id = "temp_fire"
kind = "high"
point = "temp_c"
class = "fire"
alarm = 57.0
deadband = 2.0

# The simulated Modbus cabinet (firmware-sim/src/modbus.rs) with a low gas level that names an
# action (tests/modbus_actions.rs).
[profiles.test_cabinet]
label = "测试柜"
label_en = "Test cabinet"

[profiles.test_cabinet.points.temp_c]
kind = "number"
[profiles.test_cabinet.points.rh_pct]
kind = "number"
[profiles.test_cabinet.points.voc_ppm]
kind = "number"
[profiles.test_cabinet.points.lel_pct]
kind = "number"
[profiles.test_cabinet.points.airflow_mps]
kind = "number"
[profiles.test_cabinet.points.fan_on]
kind = "bool"
[profiles.test_cabinet.points.door_open]
kind = "bool"

[[profiles.test_cabinet.rules]]
id = "lel_high"
kind = "high"
point = "lel_pct"
class = "gas"
warning = 3.0
alarm = 40.0
deadband = 0.5
action = "exhaust_fan_on"
"#;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique name per test (and per process), for topic prefixes and client ids.
pub fn unique(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("cgtest-{tag}-{}-{n}-{nanos}", std::process::id())
}

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct TestGateway {
    pub http: SocketAddr,
    pub prefix: String,
    pub mqtt_port: u16,
    pub data_dir: PathBuf,
    shutdown: CancellationToken,
    gateway: Option<campusguard::Gateway>,
    pub metrics: std::sync::Arc<campusguard::metrics::Metrics>,
}

/// What a test wants different from the defaults.
pub struct Setup {
    pub mqtt_port: u16,
    pub embedded_broker: bool,
    pub prefix: String,
    pub data_dir: PathBuf,
    pub extra_toml: String,
    /// Keys added to the `[http]` section (which the generated config already opens).
    pub http_toml: String,
    /// Keys added to the `[storage]` section (which the generated config already opens).
    pub storage_toml: String,
}

impl Setup {
    /// Against the shared Mosquitto ([`mosquitto_port`]).
    pub fn mosquitto(tag: &str, data_dir: &Path) -> Self {
        Self {
            mqtt_port: mosquitto_port(),
            embedded_broker: false,
            prefix: unique(tag),
            data_dir: data_dir.to_path_buf(),
            extra_toml: String::new(),
            http_toml: String::new(),
            storage_toml: String::new(),
        }
    }

    /// Against an embedded broker on a free port.
    pub fn embedded(tag: &str, data_dir: &Path) -> Self {
        Self {
            mqtt_port: free_port(),
            embedded_broker: true,
            ..Self::mosquitto(tag, data_dir)
        }
    }

    pub fn config(&self) -> Config {
        let profiles = self.data_dir.join("test-profiles.toml");
        std::fs::create_dir_all(&self.data_dir).unwrap();
        std::fs::write(&profiles, TEST_PROFILES).unwrap();
        let text = format!(
            r#"
[broker]
embedded = {embedded}
listen = "127.0.0.1:{port}"

[mqtt]
url = "mqtt://127.0.0.1:{port}"
client_id = "{prefix}-gw"
topic_prefix = "{prefix}"
reconnect_min = "100ms"
# Tests leave no persistent sessions behind in the shared Mosquitto.
clean_session = true
reconnect_max = "1s"

[http]
listen = "127.0.0.1:0"
{http}

[[http.tokens]]
name = "operator-1"
token = "{OPERATOR_TOKEN}"
role = "operator"

[[http.tokens]]
name = "bureau-1"
token = "{BUREAU_TOKEN}"
role = "bureau"

[storage]
data_dir = "{data}"
{storage}

[rules]
profiles_file = "{profiles}"
tick = "100ms"

{extra}
"#,
            embedded = self.embedded_broker,
            port = self.mqtt_port,
            prefix = self.prefix,
            data = self.data_dir.display(),
            profiles = profiles.display(),
            extra = self.extra_toml,
            http = self.http_toml,
            storage = self.storage_toml,
        );
        Config::from_toml(&text, &self.data_dir.join("gateway.toml"), Vec::new())
            .unwrap_or_else(|e| panic!("test config: {e}"))
    }
}

impl TestGateway {
    pub async fn start(setup: &Setup) -> Self {
        let shutdown = CancellationToken::new();
        let gateway = campusguard::start(setup.config(), shutdown.clone())
            .await
            .expect("gateway starts");
        let gw = Self {
            http: gateway.http_addr,
            prefix: setup.prefix.clone(),
            mqtt_port: setup.mqtt_port,
            data_dir: setup.data_dir.clone(),
            metrics: gateway.metrics.clone(),
            shutdown,
            gateway: Some(gateway),
        };
        gw.wait_until(Duration::from_secs(10), || async {
            gw.metrics.mqtt_connected.get() == 1
        })
        .await;
        // Subscriptions go out right after ConnAck; give the broker a moment to register them.
        tokio::time::sleep(Duration::from_millis(300)).await;
        gw
    }

    /// Stops the gateway the way SIGTERM does and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(g) = self.gateway.take() {
            tokio::time::timeout(Duration::from_secs(15), g.wait())
                .await
                .expect("gateway stops within 15 s");
        }
    }

    /// Fault injection: makes the gateway's running task `name` panic (see
    /// `campusguard::supervisor`); false when there is no such task.
    pub fn inject_task_panic(&self, name: &str) -> bool {
        self.gateway
            .as_ref()
            .is_some_and(|g| g.inject_task_panic(name))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    pub fn topic(&self, school: &str, device: &str, rest: &str) -> String {
        format!("{}/{school}/{device}/{rest}", self.prefix)
    }

    /// Polls `check` every 20 ms until it holds; panics after `limit`.
    pub async fn wait_until<F, Fut>(&self, limit: Duration, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("condition not reached within {limit:?}");
    }

    pub async fn get_json(&self, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        let mut req = reqwest::Client::new().get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let mut req = reqwest::Client::new().post(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    pub async fn metrics_text(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of one metric line (exact name with labels), 0 if absent.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics_text().await;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                (k == name).then(|| v.parse().ok()).flatten()
            })
            .unwrap_or(0.0)
    }
}

/// An MQTT client for publishing device traffic (event loop polled in its own task).
pub struct Device {
    pub client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

impl Device {
    pub async fn connect(port: u16, id: &str) -> Self {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_max_packet_size(4 << 20, 4 << 20);
        let (client, mut event_loop) = AsyncClient::new(options, 100);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let mut ready = Some(ready_tx);
        let task = tokio::spawn(async move {
            loop {
                match event_loop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(5), ready_rx)
            .await
            .expect("device connects")
            .unwrap();
        Self { client, task }
    }

    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .unwrap();
    }

    pub async fn publish_retained(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, true, payload.into())
            .await
            .unwrap();
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Follows `/api/v1/alarms/stream` and yields each `alarm` event's JSON.
pub struct AlarmStream {
    rx: tokio::sync::mpsc::Receiver<serde_json::Value>,
    task: tokio::task::JoinHandle<()>,
}

impl AlarmStream {
    pub async fn open(gw: &TestGateway, token: &str) -> Self {
        let resp = reqwest::Client::new()
            .get(gw.url("/api/v1/alarms/stream"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let (tx, rx) = tokio::sync::mpsc::channel(1000);
        let task = tokio::spawn(async move {
            let mut body = resp.bytes_stream();
            let mut buf = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let frame: String = buf.drain(..end + 2).collect();
                    let mut event = "";
                    let mut data = String::new();
                    for line in frame.lines() {
                        if let Some(e) = line.strip_prefix("event:") {
                            event = e.trim();
                        } else if let Some(d) = line.strip_prefix("data:") {
                            data.push_str(d.trim_start());
                        }
                    }
                    if event == "alarm" {
                        if let Ok(v) = serde_json::from_str(&data) {
                            if tx.send(v).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
        Self { rx, task }
    }

    /// The next alarm event for which `pred` holds (others are skipped), within `limit`.
    pub async fn next_matching(
        &mut self,
        limit: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(v)) if pred(&v) => return v,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("alarm stream closed"),
                Err(_) => panic!("no matching alarm event within {limit:?}"),
            }
        }
    }
}

impl Drop for AlarmStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A private Mosquitto on a free port with its own config, stopped on drop. Used where a test
/// needs broker settings (queue limits, TLS, passwords) or restarts the broker.
pub struct PrivateMosquitto {
    pub port: u16,
    child: std::process::Child,
    conf: PathBuf,
    dir: tempfile::TempDir,
}

impl PrivateMosquitto {
    /// A plain listener; `extra` is appended to the generated config (e.g.
    /// `max_queued_messages 0`).
    pub fn start(extra: &str) -> Self {
        Self::start_with(|port, _| {
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n{extra}\n"
            )
        })
    }

    /// `conf(port, dir)` writes the whole config; `dir` is the broker's own directory.
    pub fn start_with(conf: impl FnOnce(u16, &Path) -> String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Mosquitto started as root drops to its own user: it must still be able to write
        // its persistence file here.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let port = free_port();
        let conf_path = dir.path().join("mosquitto.conf");
        std::fs::write(&conf_path, conf(port, dir.path())).unwrap();
        let child = Self::spawn(&conf_path, port);
        Self {
            port,
            child,
            conf: conf_path,
            dir,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(conf: &Path, port: u16) -> std::process::Child {
        let child = std::process::Command::new("mosquitto")
            .arg("-c")
            .arg(conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mosquitto is installed (scripts/test installs it)");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "mosquitto did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    /// Stops the broker the way a service manager does (SIGTERM: it saves its persistence
    /// file) and starts it again on the same port with the same config.
    pub fn restart(&mut self) {
        terminate(&mut self.child, Duration::from_secs(10));
        self.child = Self::spawn(&self.conf, self.port);
    }
}

/// SIGTERM, then SIGKILL if the process has not exited within `grace`.
pub fn terminate(child: &mut std::process::Child, grace: Duration) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The gateway binary in its own process (`campusguard run --config <file>`), its log appended
/// to `gateway.log` beside the config. Killed on drop.
pub struct GatewayProcess {
    child: std::process::Child,
    pub log: PathBuf,
}

impl GatewayProcess {
    pub fn start(config: &Path) -> Self {
        let log = config.with_file_name("gateway.log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_campusguard"))
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info,rumqttd=warn")
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        Self { child, log }
    }

    /// No flush, no graceful anything.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the gateway on `http` answers `/readyz`.
pub async fn wait_ready(http: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{http}/readyz")).await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gateway not ready within 20 s");
}

/// Distinct timestamps of `school/device/temp_c` in the local history of the gateway on
/// `http` (`public_read`), polled (up to 30 s) until there are `n`; returns what it last saw.
pub async fn wait_for_local_timestamps(
    http: u16,
    device: &str,
    from: i64,
    to: i64,
    n: usize,
) -> std::collections::BTreeSet<i64> {
    let url = format!(
        "http://127.0.0.1:{http}/api/v1/sensors/xhsy/{device}/temp_c/history?from={from}&to={to}&limit=100000"
    );
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..150 {
        if let Ok(response) = reqwest::get(&url).await {
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            seen = body["points"]
                .as_array()
                .map(|points| points.iter().filter_map(|p| p["ts"].as_i64()).collect())
                .unwrap_or_default();
        }
        if seen.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    seen
}

/// Polls `check` every 100 ms until it returns `Some`, failing with `what` after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Drop for PrivateMosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The repository root (tests/console lives there).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether the browser toolchain is here; installs the npm package when only it is missing.
pub fn browser_ready() -> Result<(), String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Err(format!(
            "{chromium} not found (apt-get install -y chromium)"
        ));
    }
    let node = std::process::Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Err("node not found".into());
    }
    let dir = repo().join("tests/console");
    if !dir.join("node_modules/playwright-core").exists() {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .map_err(|e| format!("npm ci: {e}"))?;
        if !status.success() {
            return Err("npm ci in tests/console failed".into());
        }
    }
    Ok(())
}

/// Where the browser scripts put their screenshots: `$CG_CONSOLE_ARTIFACTS`, else
/// `target/console-artifacts/`.
pub fn console_artifacts() -> PathBuf {
    std::env::var_os("CG_CONSOLE_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/console-artifacts"))
}

/// A browser test script of `tests/console/` (see its `harness.mjs`) run with node. Its lines
/// are echoed as `[browser] …`; a `NEED …` line asks the test for something only it can do,
/// which it does and then [`BrowserScript::answer`]s.
pub struct BrowserScript {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    last: String,
}

impl BrowserScript {
    /// Starts `node tests/console/<script> <args…>` with `env` added.
    pub fn start(script: &str, args: &[String], env: &[(&str, String)]) -> Self {
        use tokio::io::AsyncBufReadExt;
        let mut command = tokio::process::Command::new("node");
        command
            .arg(repo().join("tests/console").join(script))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("node starts");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        Self {
            child,
            stdin,
            lines: tokio::io::BufReader::new(stdout).lines(),
            last: String::new(),
        }
    }

    /// The script's next line (echoed), or `None` once it has closed its output.
    pub async fn next_line(&mut self) -> Option<String> {
        let line = self.lines.next_line().await.expect("the script's output")?;
        println!("[browser] {line}");
        if !line.trim().is_empty() {
            self.last = line.clone();
        }
        Some(line)
    }

    /// Answers the pending `NEED …`.
    pub async fn answer(&mut self, text: &str) {
        use tokio::io::AsyncWriteExt;
        self.stdin
            .write_all(format!("{text}\n").as_bytes())
            .await
            .expect("the script's input");
        self.stdin.flush().await.expect("the script's input");
    }

    /// Waits for the script's end; it must exit 0 with `N passed, 0 failed` as its last line.
    pub async fn finish(&mut self) {
        while self.next_line().await.is_some() {}
        let status = self.child.wait().await.expect("node ends");
        assert!(status.success(), "browser test failed: {}", self.last);
        assert!(self.last.ends_with(" 0 failed"), "{}", self.last);
    }
}

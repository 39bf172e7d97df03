//! Test support: real time-series servers on free ports with temporary data directories —
//! InfluxDB 1.x (`influxd`, Debian package `influxdb`) and VictoriaMetrics (`victoria-metrics`,
//! Debian package `victoria-metrics`). Each can be stopped and restarted on the same port and
//! data directory (to simulate an outage) and is killed when dropped.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether `program` can be run (so a test can say clearly what is missing).
pub fn installed(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A server process we started.
struct Server {
    name: &'static str,
    program: &'static str,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Server {
    fn spawn(&mut self) {
        assert!(
            installed(self.program),
            "{} is not installed (apt-get install -y influxdb victoria-metrics)",
            self.program
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.program));
        self.child = Some(child);
    }

    /// SIGTERM (a clean shutdown that keeps the data), SIGKILL after 20 s.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn wait_ready(server: &Server, url: &str, expect_status: u16) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = client.get(url).send().await {
            if response.status().as_u16() == expect_status {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} did not become ready at {url}; log:\n{}",
            server.name,
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// InfluxDB 1.x.
pub struct Influxd {
    server: Server,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Influxd {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let rpc_port = free_port();
        let root = dir.path().display();
        let config = format!(
            r#"reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{root}/meta"
[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
[continuous_queries]
  enabled = false
"#
        );
        let config_path = dir.path().join("influxdb.conf");
        std::fs::write(&config_path, config).unwrap();
        let mut server = Server {
            name: "influxd",
            program: "influxd",
            args: vec!["-config".into(), config_path.display().to_string()],
            log: dir.path().join("influxd.log"),
            child: None,
        };
        server.spawn();
        let influxd = Self { server, port, dir };
        influxd.ready().await;
        influxd
    }

    async fn ready(&self) {
        wait_ready(&self.server, &format!("{}/ping", self.url()), 204).await;
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        self.server.stop();
    }

    pub async fn restart(&mut self) {
        self.server.spawn();
        self.ready().await;
    }

    /// Runs an InfluxQL statement (timestamps in ms) and returns the JSON answer.
    pub async fn query(&self, db: &str, q: &str) -> Json {
        let response = reqwest::Client::new()
            .post(format!("{}/query", self.url()))
            .query(&[("db", db), ("epoch", "ms")])
            .form(&[("q", q)])
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "query {q} failed");
        response.json().await.unwrap()
    }

    pub async fn create_database(&self, db: &str) {
        self.query(db, &format!("CREATE DATABASE \"{db}\"")).await;
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

/// VictoriaMetrics single-node.
pub struct VictoriaMetrics {
    server: Server,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// One exported series: labels (without `__name__`), timestamps and values.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedSeries {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub timestamps: Vec<i64>,
    pub values: Vec<f64>,
}

impl VictoriaMetrics {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut server = Server {
            name: "victoria-metrics",
            program: "victoria-metrics",
            args: vec![
                format!("-storageDataPath={}", dir.path().join("data").display()),
                format!("-httpListenAddr=127.0.0.1:{port}"),
                "-search.latencyOffset=0s".into(),
                "-retentionPeriod=100y".into(),
                "-loggerLevel=WARN".into(),
            ],
            log: dir.path().join("victoria-metrics.log"),
            child: None,
        };
        server.spawn();
        let vm = Self { server, port, dir };
        vm.ready().await;
        vm
    }

    async fn ready(&self) {
        wait_ready(&self.server, &format!("{}/health", self.url()), 200).await;
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        self.server.stop();
    }

    pub async fn restart(&mut self) {
        self.server.spawn();
        self.ready().await;
    }

    /// Distinct timestamps of the series matching `selector`, polled (up to 30 s) until there
    /// are `n` of them; returns what it last saw either way, for the caller to assert on.
    pub async fn wait_for_timestamps(
        &self,
        selector: &str,
        n: usize,
    ) -> std::collections::BTreeSet<i64> {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..100 {
            seen = self
                .export(selector)
                .await
                .into_iter()
                .flat_map(|s| s.timestamps)
                .collect();
            if seen.len() == n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        seen
    }

    /// Every sample of the series matching `selector`, after making recent writes searchable.
    pub async fn export(&self, selector: &str) -> Vec<ExportedSeries> {
        let client = reqwest::Client::new();
        client
            .get(format!("{}/internal/force_flush", self.url()))
            .send()
            .await
            .unwrap();
        let text = client
            .post(format!("{}/api/v1/export", self.url()))
            .form(&[("match[]", selector), ("start", "0")])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let json: Json = serde_json::from_str(line).unwrap();
                let mut labels: std::collections::BTreeMap<String, String> = json["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect();
                let name = labels.remove("__name__").unwrap_or_default();
                ExportedSeries {
                    name,
                    labels,
                    timestamps: json["timestamps"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t.as_i64().unwrap())
                        .collect(),
                    values: json["values"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_f64().unwrap())
                        .collect(),
                }
            })
            .collect()
    }
}

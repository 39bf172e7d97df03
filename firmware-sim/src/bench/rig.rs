//! The processes a benchmark runs against — a private Mosquitto, a private VictoriaMetrics, the
//! release gateway, Node-RED — each on a free loopback port with its files in one temporary
//! directory. Every child is killed when its handle drops (also on an error or Ctrl-C), and the
//! directory is removed with the [`Rig`]. Also: a minimal HTTP/1.0 client (the simulator has no
//! HTTP crate), Prometheus text parsing and CPU/RSS of a process from `/proc`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "campusguard-bench-{what}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free loopback port (bound, then released for the child to take).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("bind a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A child process on a port; killed on drop.
pub struct Service {
    pub name: &'static str,
    pub port: u16,
    pub child: Child,
    pub log: PathBuf,
}

impl Service {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// CPU seconds (user + system) used so far, 0 when the process is gone.
    pub fn cpu_secs(&self) -> f64 {
        self.pid().and_then(cpu_secs).unwrap_or(0.0)
    }

    /// Peak and current resident set size in KiB (VmHWM, VmRSS).
    pub fn rss_kib(&self) -> (u64, u64) {
        let pid = self.pid().unwrap_or(0);
        (
            status_kib(pid, "VmHWM:").unwrap_or(0),
            status_kib(pid, "VmRSS:").unwrap_or(0),
        )
    }

    /// The last lines of the child's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Fails if the child already exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            anyhow::bail!("{} exited ({status}); log:\n{}", self.name, self.log_tail());
        }
        Ok(())
    }
}

fn spawn(
    name: &'static str,
    port: u16,
    dir: &Path,
    program: &Path,
    args: &[String],
    env: &[(&str, &str)],
) -> anyhow::Result<Service> {
    let log = dir.join(format!("{name}.log"));
    let out = std::fs::File::create(&log).context("create log file")?;
    let err = out.try_clone().context("clone log file")?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    let child = command
        .spawn()
        .with_context(|| format!("start {name} ({})", program.display()))?;
    Ok(Service {
        name,
        port,
        child,
        log,
    })
}

/// Waits (bounded) until `ready` holds, failing early if the child exits.
async fn wait_ready<F, Fut>(service: &mut Service, limit: Duration, ready: F) -> anyhow::Result<()>
where
    F: Fn(u16) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        service.check_alive()?;
        if ready(service.port).await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "{} not ready within {limit:?}; log:\n{}",
                service.name,
                service.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn tcp_open(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).await.is_ok()
}

/// A private Mosquitto: no persistence, deep per-client queues (a slow subscriber is measured,
/// not cut off), 100 QoS 1 messages in flight per client (as the gateway's `mqtt.inflight`).
pub async fn mosquitto(dir: &Path) -> anyhow::Result<Service> {
    let port = free_port()?;
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n\
             log_type error\nlog_type warning\nmax_queued_messages 1000000\nmax_queued_bytes 0\n\
             max_inflight_messages 100\nset_tcp_nodelay true\n"
        ),
    )?;
    let mut service = spawn(
        "mosquitto",
        port,
        dir,
        Path::new("mosquitto"),
        &["-c".to_owned(), conf.display().to_string()],
        &[],
    )?;
    wait_ready(&mut service, Duration::from_secs(10), tcp_open).await?;
    Ok(service)
}

/// A private VictoriaMetrics (InfluxDB line protocol on `/write`).
pub async fn victoria_metrics(dir: &Path) -> anyhow::Result<Service> {
    let port = free_port()?;
    let data = dir.join("vm-data");
    let mut service = spawn(
        "victoria-metrics",
        port,
        dir,
        Path::new("victoria-metrics"),
        &[
            format!("-httpListenAddr=127.0.0.1:{port}"),
            format!("-storageDataPath={}", data.display()),
            "-loggerLevel=ERROR".to_owned(),
        ],
        &[],
    )?;
    wait_ready(&mut service, Duration::from_secs(30), |port| async move {
        http_get(port, "/health").await.is_ok()
    })
    .await?;
    Ok(service)
}

/// Rows VictoriaMetrics took in over the Influx line protocol (one per field = one reading).
pub async fn vm_influx_rows(vm: &Service) -> f64 {
    match http_get(vm.port, "/metrics").await {
        Ok(text) => metric(&text, "vm_rows_inserted_total{type=\"influx\"}").unwrap_or(0.0),
        Err(_) => 0.0,
    }
}

/// The release gateway with a generated config (written by the caller to `config`).
pub async fn gateway(
    dir: &Path,
    bin: &Path,
    config: &Path,
    http_port: u16,
) -> anyhow::Result<Service> {
    let mut service = spawn(
        "gateway",
        http_port,
        dir,
        bin,
        &[
            "run".to_owned(),
            "--config".to_owned(),
            config.display().to_string(),
        ],
        &[("RUST_LOG", "warn")],
    )?;
    wait_ready(&mut service, Duration::from_secs(60), |port| async move {
        match http_get(port, "/metrics").await {
            Ok(text) => metric(&text, "campusguard_mqtt_connected") == Some(1.0),
            Err(_) => false,
        }
    })
    .await?;
    Ok(service)
}

/// Node-RED started with `settings` (which names the flow file and user dir); ready once its
/// MQTT node is connected.
pub async fn node_red(
    dir: &Path,
    red_js: &Path,
    settings: &Path,
    port: u16,
    env: &[(&str, &str)],
) -> anyhow::Result<Service> {
    let mut service = spawn(
        "node-red",
        port,
        dir,
        Path::new("node"),
        &[
            red_js.display().to_string(),
            "--settings".to_owned(),
            settings.display().to_string(),
        ],
        env,
    )?;
    let log = service.log.clone();
    wait_ready(&mut service, Duration::from_secs(90), move |_| {
        let log = log.clone();
        async move {
            std::fs::read_to_string(&log)
                .map(|t| t.contains("Connected to broker"))
                .unwrap_or(false)
        }
    })
    .await?;
    Ok(service)
}

/// `GET path` over HTTP/1.0 (the server closes after the body); the body of a 2xx answer.
/// Bounded: 10 s and 64 MiB.
pub async fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    let request = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes())
            .await?;
        let mut buf = Vec::new();
        stream.take(64 << 20).read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(10), request)
        .await
        .context("HTTP request timed out")??;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP header end")?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if !status.starts_with('2') {
        anyhow::bail!("GET {path}: HTTP {status}");
    }
    Ok(body.to_owned())
}

/// The value of a sample in Prometheus text format, by its exact name and labels.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (key, value) = line.rsplit_once(' ')?;
        (key == name).then(|| value.parse().ok()).flatten()
    })
}

/// The gateway's metrics page (empty when unreachable).
pub async fn gateway_metrics(gw: &Service) -> String {
    http_get(gw.port, "/metrics").await.unwrap_or_default()
}

pub const READINGS_TOTAL: &str = "campusguard_readings_total{source=\"mqtt\"}";

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// utime + stime of a process in seconds, from `/proc/<pid>/stat`.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields after it start with the state (field 3).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// A `kB` line of `/proc/<pid>/status`, e.g. `VmHWM:`.
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_finds_a_sample_by_exact_name_and_labels() {
        let text = "# HELP x\ncampusguard_readings_total{source=\"mqtt\"} 1234\n\
                    campusguard_readings_total{source=\"modbus\"} 5\nvm_rows_inserted_total{type=\"influx\"} 7e+06\n";
        assert_eq!(metric(text, READINGS_TOTAL), Some(1234.0));
        assert_eq!(
            metric(text, "vm_rows_inserted_total{type=\"influx\"}"),
            Some(7e6)
        );
        assert_eq!(metric(text, "campusguard_readings_total"), None);
    }

    #[test]
    fn cpu_and_rss_of_this_process_are_readable() {
        let pid = std::process::id();
        assert!(cpu_secs(pid).is_some());
        assert!(status_kib(pid, "VmRSS:").is_some_and(|kib| kib > 0));
    }
}

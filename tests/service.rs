//! Into service: `campusguard init` writes a config `run` accepts, with tokens that work; the
//! gateway process as systemd runs it — READY=1 on `$NOTIFY_SOCKET` once it is up, WATCHDOG=1
//! from the core's heartbeat, STOPPING=1 on SIGTERM, `<N>`-prefixed log lines without ANSI
//! codes on the journal stream — against the shared Mosquitto; `check` warns about secrets
//! others can read, and secrets come from files and systemd credentials.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{mosquitto_port, unique, Device};

fn campusguard(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_campusguard"));
    cmd.args(args);
    cmd
}

/// Runs `init`; returns the tokens by name and the admin password from its output.
fn init(config: &Path, data_dir: &Path) -> (Vec<(String, String)>, String) {
    let out = campusguard(&["init", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tokens = stdout
        .lines()
        .filter_map(|l| {
            let (name, token) = l.trim().split_once(": ")?;
            let name = name.split_once(" (")?.0;
            (token.len() == 48).then(|| (name.to_owned(), token.to_owned()))
        })
        .collect();
    let password = stdout
        .lines()
        .skip_while(|l| !l.starts_with("console user `admin`"))
        .nth(1)
        .unwrap()
        .trim()
        .to_owned();
    (tokens, password)
}

/// Waits (bounded) for a datagram starting with `prefix` on `socket`; returns it.
fn wait_datagram(socket: &UnixDatagram, prefix: &str, limit: Duration) -> String {
    let until = Instant::now() + limit;
    let mut buf = [0u8; 512];
    while Instant::now() < until {
        if let Ok(n) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.starts_with(prefix) {
                return text;
            }
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("no `{prefix}` datagram within {limit:?}");
}

#[tokio::test]
async fn an_initialised_gateway_runs_as_systemd_runs_it_and_its_tokens_work() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    let (tokens, password) = init(&config, &dir.path().join("state"));
    assert_eq!(tokens.len(), 2, "two tokens printed");
    assert!(password.len() >= 16, "{password}");
    assert_eq!(
        std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o640
    );
    // init never writes over a config.
    let again = campusguard(&["init", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));

    // The systemd side: a notify socket, a watchdog, stderr on a "journal stream" (a file
    // whose device and inode go into $JOURNAL_STREAM, as systemd does for its stream).
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_nonblocking(true).unwrap();
    let log_path = dir.path().join("journal.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let meta = log.metadata().unwrap();
    let http = support::free_port();
    let prefix = unique("service");
    let mut child = campusguard(&["run", "--config"])
        .arg(&config)
        .env("CAMPUSGUARD_HTTP__LISTEN", format!("127.0.0.1:{http}"))
        .env(
            "CAMPUSGUARD_MQTT__URL",
            format!("mqtt://127.0.0.1:{}", mosquitto_port()),
        )
        .env("CAMPUSGUARD_MQTT__TOPIC_PREFIX", &prefix)
        .env("CAMPUSGUARD_MQTT__CLIENT_ID", &prefix)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "2000000")
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .env("RUST_LOG", "info,campusguard::access=debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();

    let ready = wait_datagram(&notify, "READY=1", Duration::from_secs(20));
    assert!(ready.contains("STATUS=running"), "MQTT was up: {ready}");
    wait_datagram(&notify, "WATCHDOG=1", Duration::from_secs(5));

    // A reading raises its alarm; the generated operator token reads and acknowledges it.
    let device = Device::connect(mosquitto_port(), &unique("svc-dev")).await;
    let base = format!("{prefix}/xhsy/hd-9");
    device
        .publish(&format!("{base}/meta"), r#"{"profile":"heat_detector"}"#)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    device
        .publish(&format!("{base}/telemetry"), r#"{"temp_c":80.0}"#)
        .await;
    let operator = &tokens
        .iter()
        .find(|(name, _)| name == "control-room")
        .unwrap()
        .1;
    let client = reqwest::Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{http}{p}");
    let alarm = support::eventually("the fire alarm", Duration::from_secs(10), || async {
        let body: serde_json::Value = client
            .get(url("/api/v1/alarms"))
            .bearer_auth(operator)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        body.as_array()
            .or_else(|| body["alarms"].as_array())?
            .iter()
            .find(|a| a.to_string().contains("hd-9"))
            .cloned()
    })
    .await;
    let id = alarm["id"].as_i64().unwrap();
    let ack = client
        .post(url(&format!("/api/v1/alarms/{id}/ack")))
        .bearer_auth(operator)
        .json(&serde_json::json!({"comment": "到场"}))
        .send()
        .await
        .unwrap();
    assert!(ack.status().is_success(), "{}", ack.status());
    let refused = client
        .post(url(&format!("/api/v1/alarms/{id}/ack")))
        .bearer_auth("not-a-token-of-this-gateway-0123456789")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    // The admin's password logs in.
    let login = client
        .post(url("/login"))
        .json(&serde_json::json!({"name": "admin", "password": password}))
        .send()
        .await
        .unwrap();
    assert!(login.status().is_success(), "login: {}", login.status());

    let metrics = client
        .get(url("/metrics"))
        .bearer_auth(operator)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("campusguard_build_info{version="),
        "{metrics}"
    );
    assert!(metrics.contains("process_resident_memory_bytes "));

    support::terminate(&mut child, Duration::from_secs(15));
    wait_datagram(&notify, "STOPPING=1", Duration::from_secs(2));
    assert!(child.wait().unwrap().success());

    let journal = std::fs::read_to_string(&log_path).unwrap();
    assert!(!journal.contains('\u{1b}'), "no ANSI codes: {journal}");
    assert!(
        journal.lines().all(|l| l.starts_with('<')),
        "every line has a priority: {journal}"
    );
    assert!(journal.contains("<6>"), "{journal}");
    assert!(
        journal
            .lines()
            .any(|l| l.starts_with("<7>") && l.contains("status=200")),
        "a debug access-log line per request: {journal}"
    );
}

#[test]
fn check_warns_about_secrets_others_can_read_and_reads_systemd_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    let token_file = credentials.join("ops-token");
    std::fs::write(&token_file, "a-token-from-a-credential-0123456789\n").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        "[[http.tokens]]\nname = \"ops\"\nrole = \"operator\"\ntoken_file = \"ops-token\"\n",
    )
    .unwrap();
    let check = |creds: Option<&Path>| {
        let mut cmd = campusguard(&["check", "--config"]);
        cmd.arg(&config).env_remove("CREDENTIALS_DIRECTORY");
        if let Some(creds) = creds {
            cmd.env("CREDENTIALS_DIRECTORY", creds);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    // Under systemd the relative name is a credential: found, private, no warning.
    let (code, out) = check(Some(&credentials));
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("readable by every user"), "{out}");
    // Readable by everyone: a warning naming the file.
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out) = check(Some(&credentials));
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("token_file") && out.contains("readable by every user"),
        "{out}"
    );
    // Without the credentials directory the file is not found: an error naming it.
    let (code, out) = check(None);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("token_file: cannot read"), "{out}");
    // A literal token in a world-readable config: a warning.
    std::fs::write(
        &config,
        "[[http.tokens]]\nname = \"ops\"\nrole = \"operator\"\ntoken = \"a-literal-token-in-the-config-0123\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out) = check(None);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("holds tokens or passwords"), "{out}");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (_, out) = check(None);
    assert!(!out.contains("readable by every user"), "{out}");
}

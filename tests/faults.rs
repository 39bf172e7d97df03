//! Faults on the gateway's worst days, with real processes: the broker restarted mid-stream,
//! the time-series store down while the gateway itself restarts, and MQTT over TLS with a
//! password against a broker that accepts nothing else.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
#[path = "support/tsdb.rs"]
mod tsdb;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::*;
use tsdb::VictoriaMetrics;

/// A gateway config file in `dir`: `mqtt` is the `[mqtt]` body after the url, `extra` more
/// sections. Local history readable without a token.
fn write_config(dir: &Path, mqtt_url: &str, mqtt: &str, http: u16, extra: &str) -> PathBuf {
    std::fs::write(dir.join("profiles.toml"), TEST_PROFILES).unwrap();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[mqtt]
url = "{mqtt_url}"
reconnect_min = "100ms"
reconnect_max = "500ms"
{mqtt}

[http]
listen = "127.0.0.1:{http}"
public_read = true

[storage]
data_dir = "{data}"

[rules]
profiles_file = "profiles.toml"
{extra}
"#,
            data = dir.join("data").display(),
        ),
    )
    .unwrap();
    config
}

async fn publish_range(dev: &Device, topic: &str, base: i64, range: std::ops::Range<i64>) {
    for i in range {
        dev.publish(
            topic,
            format!(r#"{{"ts":{},"temp_c":{}}}"#, base + i, i % 25),
        )
        .await;
        if i % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_stream_loses_nothing_published_after_it_is_back() {
    // Persistence on, as a deployment runs it: the gateway's session (subscriptions and
    // queue) survives the restart, so messages published before the gateway has reconnected
    // wait for it.
    let mut broker = PrivateMosquitto::start_with(|port, dir| {
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
             persistence_location {}/\nmax_queued_messages 0\nmax_inflight_messages 100\n\
             log_dest none\n",
            dir.display()
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("brk");
    let http = free_port();
    let config = write_config(
        dir.path(),
        &format!("mqtt://127.0.0.1:{}", broker.port),
        &format!("client_id = \"{prefix}-gw\"\nclean_session = false\ntopic_prefix = \"{prefix}\""),
        http,
        "",
    );
    let gateway = GatewayProcess::start(&config);
    wait_ready(http).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let topic = format!("{prefix}/xhsy/room-1/telemetry");
    let meta = format!("{prefix}/xhsy/room-1/meta");
    let base = campusguard::model::now_ms() - 600_000;
    const HALF: i64 = 1000;
    {
        let dev = Device::connect(broker.port, &unique("brk-dev")).await;
        dev.publish_retained(&meta, r#"{"profile":"test_room"}"#)
            .await;
        publish_range(&dev, &topic, base, 0..HALF).await;
        // Give the client a moment to hand its last messages to the broker.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    broker.restart();
    // Published as soon as the broker is back, before the gateway has reconnected.
    let dev = Device::connect(broker.port, &unique("brk-dev")).await;
    publish_range(&dev, &topic, base, HALF..2 * HALF).await;

    let after: BTreeSet<i64> = (HALF..2 * HALF).map(|i| base + i).collect();
    let got =
        wait_for_local_timestamps(http, "room-1", base, base + 2 * HALF, 2 * HALF as usize).await;
    let before = (0..HALF).filter(|i| got.contains(&(base + i))).count();
    eprintln!("readings published before the restart that arrived: {before} of {HALF}");
    let missing_after: Vec<i64> = after.difference(&got).map(|t| t - base).collect();
    assert!(
        missing_after.is_empty(),
        "lost after the broker was back: {} (first: {:?})\n{}",
        missing_after.len(),
        &missing_after[..missing_after.len().min(10)],
        gateway.log_text()
    );
    let log = gateway.log_text();
    assert!(
        log.matches("MQTT connected").count() >= 2,
        "the gateway did not reconnect:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tsdb_outage_across_a_gateway_restart_loses_nothing() {
    let broker = PrivateMosquitto::start("max_queued_messages 0\nmax_inflight_messages 100");
    let mut vm = VictoriaMetrics::start().await;
    // The store is down from the start; the gateway spools.
    vm.stop();
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("tsd");
    let http = free_port();
    let config = write_config(
        dir.path(),
        &format!("mqtt://127.0.0.1:{}", broker.port),
        &format!("client_id = \"{prefix}-gw\"\nclean_session = false\ntopic_prefix = \"{prefix}\""),
        http,
        &format!(
            r#"
[timeseries]
kind = "influxdb2"
url = "{}"
org = "district"
bucket = "campus"
token = "not-checked-by-victoria-metrics"
flush_interval = "200ms"
max_backoff = "1s"
"#,
            vm.url()
        ),
    );
    let mut gateway = GatewayProcess::start(&config);
    wait_ready(http).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dev = Device::connect(broker.port, &unique("tsd-dev")).await;
    let topic = format!("{prefix}/xhsy/room-1/telemetry");
    dev.publish_retained(
        &format!("{prefix}/xhsy/room-1/meta"),
        r#"{"profile":"test_room"}"#,
    )
    .await;
    let base = campusguard::model::now_ms() - 600_000;
    const N: i64 = 2000;
    publish_range(&dev, &topic, base, 0..N / 2).await;
    // Half of them in the spool (or still in flight), then the gateway dies hard.
    tokio::time::sleep(Duration::from_millis(500)).await;
    gateway.kill9();
    publish_range(&dev, &topic, base, N / 2..N).await;
    let gateway = GatewayProcess::start(&config);
    wait_ready(http).await;
    // All of them locally while the store is still down.
    let local = wait_for_local_timestamps(http, "room-1", base, base + N, N as usize).await;
    assert_eq!(local.len() as i64, N, "{}", gateway.log_text());

    vm.restart().await;
    let selector = r#"{__name__="test_room_value",device="room-1",point="temp_c"}"#;
    let stored = vm.wait_for_timestamps(selector, N as usize).await;
    let missing: Vec<i64> = (0..N)
        .filter(|i| !stored.contains(&(base + i)))
        .take(10)
        .collect();
    assert_eq!(
        stored.len() as i64,
        N,
        "TSDB missing (first 10 offsets): {missing:?}\n{}",
        gateway.log_text()
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throwaway CA and a server certificate for 127.0.0.1 signed by it.
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "2",
        "-subj",
        "/CN=campusguard test CA",
    ];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req", "-subj", "/CN=127.0.0.1"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    );
    // The broker may drop root privileges before it reads its files.
    for file in ["ca.crt", "server.crt", "server.key"] {
        make_readable(&dir.join(file));
    }
    make_readable(dir);
}

fn make_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = if path.is_dir() { 0o755 } else { 0o644 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `mosquitto_pub` over TLS; true when the broker took the message.
fn publish_tls(
    port: u16,
    ca: Option<&Path>,
    user: &str,
    pass: &str,
    topic: &str,
    msg: &str,
) -> bool {
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
        .args(["-u", user, "-P", pass, "-t", topic, "-m", msg]);
    if let Some(ca) = ca {
        cmd.arg("--cafile").arg(ca);
    }
    cmd.output()
        .expect("mosquitto_pub (package mosquitto-clients) is installed")
        .status
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_over_tls_with_a_password_and_a_self_signed_ca() {
    const GW_USER: &str = "gateway";
    const GW_PASS: &str = "gw-pass-7c1e9b";
    const DEV_USER: &str = "device";
    const DEV_PASS: &str = "dev-pass-3f8a2d";
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let passwd = certs.path().join("passwd");
    std::fs::write(&passwd, "").unwrap();
    for (user, pass) in [(GW_USER, GW_PASS), (DEV_USER, DEV_PASS)] {
        let ok = Command::new("mosquitto_passwd")
            .arg("-b")
            .arg(&passwd)
            .args([user, pass])
            .status()
            .expect("mosquitto_passwd is installed");
        assert!(ok.success());
    }
    make_readable(&passwd);
    let c = certs.path();
    let broker = PrivateMosquitto::start_with(|port, _| {
        format!(
            "listener {port} 127.0.0.1\ncafile {ca}\ncertfile {crt}\nkeyfile {key}\n\
             allow_anonymous false\npassword_file {pw}\npersistence false\nlog_dest none\n",
            ca = c.join("ca.crt").display(),
            crt = c.join("server.crt").display(),
            key = c.join("server.key").display(),
            pw = passwd.display(),
        )
    });
    let ca = c.join("ca.crt");

    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("tls");
    let http = free_port();
    let config = write_config(
        dir.path(),
        &format!("mqtts://127.0.0.1:{}", broker.port),
        &format!(
            "client_id = \"{prefix}-gw\"\ntopic_prefix = \"{prefix}\"\nusername = \"{GW_USER}\"\n\
             password = \"{GW_PASS}\"\n\n[mqtt.tls]\nca_file = \"{}\"",
            ca.display()
        ),
        http,
        "",
    );
    let gateway = GatewayProcess::start(&config);
    wait_ready(http).await;
    let connected = || async { gateway.log_text().contains("MQTT connected").then_some(()) };
    eventually(
        "the gateway's TLS connection",
        Duration::from_secs(10),
        connected,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let meta = format!("{prefix}/xhsy/room-1/meta");
    let telemetry = format!("{prefix}/xhsy/room-1/telemetry");
    // The broker takes nothing without TLS, without the CA, or with a wrong password.
    assert!(!publish_tls(
        broker.port,
        None,
        DEV_USER,
        DEV_PASS,
        &telemetry,
        "{}"
    ));
    assert!(!publish_tls(
        broker.port,
        Some(&ca),
        DEV_USER,
        "wrong",
        &telemetry,
        "{}"
    ));
    let plain = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port.to_string(),
            "-t",
            "x",
            "-m",
            "{}",
        ])
        .output()
        .unwrap();
    assert!(!plain.status.success(), "plain MQTT was accepted");

    assert!(publish_tls(
        broker.port,
        Some(&ca),
        DEV_USER,
        DEV_PASS,
        &meta,
        r#"{"profile":"test_room"}"#
    ));
    assert!(publish_tls(
        broker.port,
        Some(&ca),
        DEV_USER,
        DEV_PASS,
        &telemetry,
        r#"{"temp_c":45}"#
    ));
    let alarms_url = format!("http://127.0.0.1:{http}/api/v1/alarms?state=active");
    let raised = || async {
        let body: serde_json::Value = reqwest::get(&alarms_url).await.ok()?.json().await.ok()?;
        body.as_array()?
            .iter()
            .any(|a| a["rule"] == "temp_high")
            .then_some(())
    };
    eventually(
        "the alarm from a reading sent over TLS",
        Duration::from_secs(10),
        raised,
    )
    .await;
    assert!(
        !gateway.log_text().contains(GW_PASS),
        "the password reached the log"
    );
}

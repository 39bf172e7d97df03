//! The Debian package on this machine: `cargo deb` builds it (from the test build's binary, so
//! no second build), `dpkg -i` installs it (user, state directory, a config written by
//! `campusguard init`), `systemd-analyze verify` accepts the unit, the installed binary runs
//! as the `campusguard` user with the installed config against the shared Mosquitto (a reading
//! raises its alarm; the generated tokens work), and `dpkg --purge` removes config and user
//! and keeps /var/lib/campusguard.
//!
//! Changes the machine, so it runs only as root with dpkg and cargo-deb present (scripts/test
//! installs cargo-deb) and when no campusguard package is installed; otherwise it says
//! SKIPPED and why.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::{mosquitto_port, unique, Device};

fn sh(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Why this machine cannot run the test, if it cannot.
fn skip_reason() -> Option<String> {
    if text(&sh("id", &["-u"])).trim() != "0" {
        return Some("not root (dpkg -i needs root)".into());
    }
    for program in ["dpkg", "systemd-analyze", "runuser"] {
        if !have(program) {
            return Some(format!("{program} is missing"));
        }
    }
    if !Command::new("cargo")
        .args(["deb", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        return Some("cargo-deb is missing (cargo install cargo-deb --locked)".into());
    }
    if sh("dpkg-query", &["-W", "campusguard"]).status.success() {
        return Some("a campusguard package is installed already; not touching it".into());
    }
    None
}

/// Purges the package (and the kept state) however the test ends.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = sh("dpkg", &["--purge", "campusguard"]);
        let _ = std::fs::remove_dir_all("/var/lib/campusguard");
    }
}

#[tokio::test]
async fn the_package_installs_runs_as_its_user_and_purges() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    // The binary this test run built (target/debug): `--no-build` packs it as it is.
    let out_dir = tempfile::tempdir().unwrap();
    let target_dir = Path::new(env!("CARGO_BIN_EXE_campusguard"))
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf();
    let built = Command::new("cargo")
        .args([
            "deb",
            "--no-build",
            "--profile",
            "dev",
            "--fast",
            "--no-strip",
        ])
        .args(["--no-dbgsym", "-q", "-o"])
        .arg(out_dir.path())
        .env("CARGO_TARGET_DIR", &target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(built.status.success(), "cargo deb: {}", text(&built));
    let deb = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb");

    let _purge = Installed;
    let installed = sh("dpkg", &["-i", deb.to_str().unwrap()]);
    let log = text(&installed);
    assert!(installed.status.success(), "dpkg -i: {log}");
    // postinst ran `campusguard init`: tokens printed once.
    let operator = log
        .lines()
        .find_map(|l| l.trim().strip_prefix("control-room (operator): "))
        .expect("the operator token in dpkg's output")
        .to_owned();
    assert_eq!(operator.len(), 48);

    let verify = sh(
        "systemd-analyze",
        &["verify", "/lib/systemd/system/campusguard.service"],
    );
    assert!(
        verify.status.success(),
        "systemd-analyze verify: {}",
        text(&verify)
    );
    assert!(
        text(&verify).trim().is_empty(),
        "no warnings: {}",
        text(&verify)
    );

    // The service user, its config and state.
    assert!(sh("getent", &["passwd", "campusguard"]).status.success());
    let config = std::fs::metadata("/etc/campusguard/gateway.toml").unwrap();
    assert_eq!(config.permissions().mode() & 0o777, 0o640);
    let group = text(&sh("getent", &["group", "campusguard"]));
    let gid: u32 = group.split(':').nth(2).unwrap().trim().parse().unwrap();
    assert_eq!(config.gid(), gid);
    let state = std::fs::metadata("/var/lib/campusguard").unwrap();
    assert_eq!(state.gid(), gid);
    assert!(Path::new("/var/lib/campusguard/campusguard.db").exists());
    for shipped in [
        "/usr/share/campusguard/profiles/profiles.toml",
        "/usr/share/campusguard/dashboards/promql/control-room.json",
        "/usr/share/campusguard/mosquitto/campusguard.conf",
        "/usr/share/doc/campusguard/README.md",
    ] {
        assert!(Path::new(shipped).exists(), "{shipped}");
    }

    // The installed binary as the service user with the installed config.
    let http = support::free_port();
    let prefix = unique("pkg");
    let mut gateway = Command::new("runuser")
        .args(["-u", "campusguard", "--", "/usr/bin/campusguard", "run"])
        .args(["--config", "/etc/campusguard/gateway.toml"])
        .env("CAMPUSGUARD_HTTP__LISTEN", format!("127.0.0.1:{http}"))
        .env(
            "CAMPUSGUARD_MQTT__URL",
            format!("mqtt://127.0.0.1:{}", mosquitto_port()),
        )
        .env("CAMPUSGUARD_MQTT__TOPIC_PREFIX", &prefix)
        .env("CAMPUSGUARD_MQTT__CLIENT_ID", &prefix)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    support::wait_ready(http).await;
    let device = Device::connect(mosquitto_port(), &unique("pkg-dev")).await;
    let base = format!("{prefix}/xhsy/hd-1");
    device
        .publish(&format!("{base}/meta"), r#"{"profile":"heat_detector"}"#)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    device
        .publish(&format!("{base}/telemetry"), r#"{"temp_c":90.0}"#)
        .await;
    let client = reqwest::Client::new();
    let alarms = format!("http://127.0.0.1:{http}/api/v1/alarms");
    support::eventually(
        "the alarm, read with the generated token",
        Duration::from_secs(10),
        || async {
            let response = client
                .get(&alarms)
                .bearer_auth(&operator)
                .send()
                .await
                .ok()?;
            let body = response.text().await.ok()?;
            body.contains("hd-1").then_some(())
        },
    )
    .await;
    let refused = client
        .get(&alarms)
        .bearer_auth("not-the-generated-token-0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    support::terminate(&mut gateway, Duration::from_secs(15));
    // The service wrote its state as its own user.
    let db = std::fs::metadata("/var/lib/campusguard/campusguard.db").unwrap();
    assert_eq!(db.gid(), gid);

    let purged = sh("dpkg", &["--purge", "campusguard"]);
    assert!(purged.status.success(), "dpkg --purge: {}", text(&purged));
    assert!(text(&purged).contains("kept /var/lib/campusguard"));
    assert!(!Path::new("/usr/bin/campusguard").exists());
    assert!(!Path::new("/etc/campusguard").exists(), "config removed");
    assert!(
        !sh("getent", &["passwd", "campusguard"]).status.success(),
        "user removed"
    );
    assert!(
        Path::new("/var/lib/campusguard/campusguard.db").exists(),
        "state kept on purge"
    );
    assert!(!Path::new("/lib/systemd/system/campusguard.service").exists());
}

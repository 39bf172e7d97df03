//! Console sessions, with real processes: they live in the local store, so a restart keeps the
//! control room logged in; they end at logout, when `campusguard users passwd` changes the
//! user's password and when `campusguard users disable` disables the user — the last two run
//! as separate processes against the running gateway's store — and the alarm streams of an
//! ended session close. Only a hash of each session token is stored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use support::*;

const USERS: &str = r#"
[[users.seed]]
name = "op.li"
role = "operator"
password = "operator-pass-1"

[[users.seed]]
name = "bureau.chen"
role = "bureau"
password = "bureau-pass-123"
"#;

/// Logs in; the `cg_session=…` pair of the cookie, or the status when refused.
async fn login(gw: &TestGateway, name: &str, password: &str) -> Result<String, u16> {
    let resp = reqwest::Client::new()
        .post(gw.url("/login"))
        .json(&serde_json::json!({"name": name, "password": password}))
        .send()
        .await
        .unwrap();
    if resp.status().as_u16() != 200 {
        return Err(resp.status().as_u16());
    }
    let cookie = resp.headers()["set-cookie"].to_str().unwrap();
    Ok(cookie.split(';').next().unwrap().to_string())
}

/// `GET /api/v1/session` with a cookie: the user's name, or the status.
async fn whoami(gw: &TestGateway, cookie: &str) -> Result<String, u16> {
    let resp = reqwest::Client::new()
        .get(gw.url("/api/v1/session"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    match resp.status().as_u16() {
        200 => {
            let me: serde_json::Value = resp.json().await.unwrap();
            Ok(me["name"].as_str().unwrap().to_string())
        }
        status => Err(status),
    }
}

/// Opens the alarm stream with one header; the task ends when the gateway ends the stream.
async fn watch_stream(gw: &TestGateway, header: (&str, String)) -> tokio::task::JoinHandle<()> {
    let resp = reqwest::Client::new()
        .get(gw.url("/api/v1/alarms/stream"))
        .header(header.0, header.1)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    tokio::spawn(async move {
        let mut body = resp.bytes_stream();
        while let Some(Ok(_)) = body.next().await {}
    })
}

async fn ends_within(stream: &mut tokio::task::JoinHandle<()>, limit: Duration, what: &str) {
    tokio::time::timeout(limit, stream)
        .await
        .unwrap_or_else(|_| panic!("{what}: the alarm stream did not close within {limit:?}"))
        .unwrap();
}

/// `campusguard users <args> --config <config>` with the password in `CG_TEST_PASSWORD`.
fn users_cli(config: &Path, args: &[&str], password: &str) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_campusguard"))
        .arg("users")
        .args(args)
        .arg("--config")
        .arg(config)
        .env("CG_TEST_PASSWORD", password)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "users {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_sessions_and_logout_a_password_change_and_disable_end_them_and_their_streams(
) {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::mosquitto("sessions", dir.path());
    setup.extra_toml = USERS.into();
    let cli_config: PathBuf = dir.path().join("cli.toml");
    std::fs::write(
        &cli_config,
        format!("[storage]\ndata_dir = \"{}\"\n", setup.data_dir.display()),
    )
    .unwrap();

    let gw = TestGateway::start(&setup).await;
    let to_logout = login(&gw, "op.li", "operator-pass-1").await.unwrap();
    let to_reset = login(&gw, "op.li", "operator-pass-1").await.unwrap();
    let to_disable = login(&gw, "bureau.chen", "bureau-pass-123").await.unwrap();
    gw.stop().await;

    // A restart keeps every session.
    let gw = TestGateway::start(&setup).await;
    for (cookie, name) in [
        (&to_logout, "op.li"),
        (&to_reset, "op.li"),
        (&to_disable, "bureau.chen"),
    ] {
        assert_eq!(whoami(&gw, cookie).await, Ok(name.to_string()));
    }
    // The store holds hashes only: no cookie's token is in it.
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}?mode=ro",
        setup.data_dir.join("campusguard.db").display()
    ))
    .await
    .unwrap();
    let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM sessions")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(stored.len(), 3);
    for cookie in [&to_logout, &to_reset, &to_disable] {
        let token = cookie.split_once('=').unwrap().1;
        assert!(!stored.iter().any(|s| s == token), "a raw token is stored");
    }
    db.close().await;

    let cookie = |c: &String| ("cookie", c.clone());
    let mut logout_stream = watch_stream(&gw, cookie(&to_logout)).await;
    let mut reset_stream = watch_stream(&gw, cookie(&to_reset)).await;
    let mut disable_stream = watch_stream(&gw, cookie(&to_disable)).await;
    let token_stream =
        watch_stream(&gw, ("authorization", format!("Bearer {OPERATOR_TOKEN}"))).await;
    let origin = format!("http://{}", gw.http);

    // Logout ends that session and its stream, no other.
    let resp = reqwest::Client::new()
        .post(gw.url("/logout"))
        .header("cookie", &to_logout)
        .header("origin", &origin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    ends_within(&mut logout_stream, Duration::from_secs(2), "logout").await;
    assert_eq!(whoami(&gw, &to_logout).await, Err(401));
    assert_eq!(whoami(&gw, &to_reset).await, Ok("op.li".into()));

    // A password changed by another process ends the user's sessions in the running gateway.
    users_cli(
        &cli_config,
        &[
            "passwd",
            "--name",
            "op.li",
            "--password-env",
            "CG_TEST_PASSWORD",
        ],
        "operator-pass-2",
    );
    ends_within(&mut reset_stream, Duration::from_secs(3), "passwd").await;
    assert_eq!(whoami(&gw, &to_reset).await, Err(401));
    assert_eq!(login(&gw, "op.li", "operator-pass-1").await, Err(401));
    let fresh = login(&gw, "op.li", "operator-pass-2").await.unwrap();
    assert_eq!(whoami(&gw, &fresh).await, Ok("op.li".into()));

    // A disabled user's sessions end, and the user cannot log in until enabled again.
    users_cli(&cli_config, &["disable", "--name", "bureau.chen"], "");
    ends_within(&mut disable_stream, Duration::from_secs(3), "disable").await;
    assert_eq!(whoami(&gw, &to_disable).await, Err(401));
    assert_eq!(login(&gw, "bureau.chen", "bureau-pass-123").await, Err(401));
    users_cli(&cli_config, &["enable", "--name", "bureau.chen"], "");
    assert!(login(&gw, "bureau.chen", "bureau-pass-123").await.is_ok());

    // A bearer token's stream does not belong to a session: still open.
    assert!(!token_stream.is_finished());
    token_stream.abort();
    gw.stop().await;
}

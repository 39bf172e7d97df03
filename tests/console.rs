//! The web console in a real browser: starts a whole gateway in-process (embedded broker,
//! console users seeded from config), publishes chemical-cabinet readings over MQTT, and runs
//! the Playwright suite `tests/console/run.mjs` against it with Debian's Chromium. The suite
//! asks for a fire over its stdout (`NEED fire`); this test publishes it over MQTT and answers
//! on its stdin. Screenshots land in `target/console-artifacts/` (or `$CG_CONSOLE_ARTIFACTS`).
//!
//! Needs `node`, `/usr/bin/chromium` and `npm ci` in `tests/console` (done here when
//! `node_modules` is missing). Outside CI the test is skipped when node or Chromium is absent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use support::*;

const OWN: &str = "cga";
const OTHER: &str = "cgb";

fn users_toml() -> String {
    format!(
        r#"
[[users.seed]]
name = "op.li"
role = "operator"
password = "operator-pass-1"

[[users.seed]]
name = "lab.wang"
role = "lab_manager"
schools = ["{OWN}"]
password = "lab-pass-12345"

[[users.seed]]
name = "safety.zhao"
role = "school_safety"
schools = ["{OWN}"]
password = "safety-pass-123"

[[users.seed]]
name = "safety.qian"
role = "school_safety"
schools = ["{OWN}"]
password = "safety-pass-456"

[[users.seed]]
name = "bureau.chen"
role = "bureau"
password = "bureau-pass-123"

[[users.seed]]
name = "admin"
role = "admin"
password = "admin-pass-1234"
"#
    )
}

fn users_json() -> serde_json::Value {
    json!({
        "operator": {"name": "op.li", "password": "operator-pass-1"},
        "lab": {"name": "lab.wang", "password": "lab-pass-12345", "school": OWN},
        "safety": {"name": "safety.zhao", "password": "safety-pass-123", "school": OWN},
        "safety2": {"name": "safety.qian", "password": "safety-pass-456", "school": OWN},
        "bureau": {"name": "bureau.chen", "password": "bureau-pass-123"},
        "admin": {"name": "admin", "password": "admin-pass-1234"},
    })
}

async fn announce(gw: &TestGateway, dev: &Device, school: &str, id: &str, meta: &str) {
    dev.publish_retained(&gw.topic(school, id, "meta"), meta.to_string())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_uses_the_console_in_a_real_browser() {
    if let Err(why) = browser_ready() {
        if std::env::var_os("CI").is_some() {
            panic!("browser tests need their tools in CI: {why}");
        }
        eprintln!("SKIPPED console browser tests: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::embedded("console", dir.path());
    // The fire rule files a ticket on raise, so a drill fire filing none is a real difference.
    setup.extra_toml = format!(
        "{}\n[tickets.policy.rule]\nheat_fixed = \"on_raise\"\n",
        users_toml()
    );
    let gw = TestGateway::start(&setup).await;
    let dev = Device::connect(gw.mqtt_port, &unique("console-dev")).await;

    let cabinet = |name: &str| {
        format!(r#"{{"profile":"chem_cabinet","building":"实验楼","room":"301","name":"{name}"}}"#)
    };
    announce(&gw, &dev, OWN, "cab-1", &cabinet("危化品柜1")).await;
    announce(&gw, &dev, OWN, "cab-2", &cabinet("危化品柜2")).await;
    announce(&gw, &dev, OTHER, "cab-9", &cabinet("其他学校柜")).await;
    announce(
        &gw,
        &dev,
        OWN,
        "heat-a201",
        r#"{"profile":"heat_detector","building":"教学楼A","room":"201","name":"教室201感温"}"#,
    )
    .await;
    // The drill step's detector, alone in its building.
    announce(
        &gw,
        &dev,
        OWN,
        "heat-s101",
        r#"{"profile":"heat_detector","building":"实训楼","room":"101","name":"实训室101感温"}"#,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for id in ["heat-a201", "heat-s101"] {
        dev.publish(&gw.topic(OWN, id, "telemetry"), r#"{"temp_c":24.0}"#)
            .await;
    }
    // A ticket whose rectification deadline passed two hours ago, for the bureau to supervise
    // (automatic supervision starts only days after the deadline).
    let (status, overdue) = gw
        .post_json(
            "/api/v1/tickets",
            Some(OPERATOR_TOKEN),
            json!({
                "school": OWN,
                "location": "教学楼A 302",
                "category": "building",
                "description": "302教室窗户护栏松动",
                "deadline_at": campusguard::model::now_ms() - 2 * 3600 * 1000,
            }),
        )
        .await;
    assert_eq!(status, 201, "{overdue}");
    assert_eq!(overdue["overdue"], true, "{overdue}");

    // Six hours of cabinet history, one reading every 20 minutes, then the current values.
    let now = campusguard::model::now_ms();
    for (school, id) in [(OWN, "cab-1"), (OWN, "cab-2"), (OTHER, "cab-9")] {
        let topic = gw.topic(school, id, "telemetry");
        for i in (1..=18).rev() {
            let ts = now - i * 20 * 60_000;
            let temp = 21.0 + ((i % 6) as f64) * 0.7;
            dev.publish(&topic, format!(r#"{{"ts":{ts},"temp_c":{temp}}}"#))
                .await;
        }
        dev.publish(
            &topic,
            r#"{"temp_c":23.4,"rh_pct":41.5,"voc_ppm":0.8,"lel_pct":2,"fan_on":true,"airflow_mps":0.6,"door_open":false}"#,
        )
        .await;
    }
    // Cabinet 2 leaks flammable gas: a gas alarm, acknowledged so it does not ring.
    let mut stream = AlarmStream::open(&gw, OPERATOR_TOKEN).await;
    dev.publish(&gw.topic(OWN, "cab-2", "telemetry"), r#"{"lel_pct":31}"#)
        .await;
    let gas = stream
        .next_matching(Duration::from_secs(5), |e| {
            e["transition"] == "raised" && e["rule"] == "lel_high"
        })
        .await;
    let (status, _) = gw
        .post_json(
            &format!("/api/v1/alarms/{}/ack", gas["id"]),
            Some(OPERATOR_TOKEN),
            json!({"comment": "通风处理中"}),
        )
        .await;
    assert_eq!(status, 200);
    // Let the history writer flush.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let fixture = json!({
        "fire_sensor": format!("{OWN}/heat-a201/temp_c"),
        "fire_rule": "heat_fixed",
        "own_cabinet": format!("{OWN}/cab-1"),
        "alarmed_cabinet": format!("{OWN}/cab-2"),
        "other_cabinet": format!("{OTHER}/cab-9"),
        "overdue_ticket": overdue["id"],
        "drill_school": OWN,
        "drill_building": "实训楼",
        "drill_sensor": format!("{OWN}/heat-s101/temp_c"),
    });
    let artifacts = console_artifacts();
    let mut script = BrowserScript::start(
        "run.mjs",
        &[
            format!("http://{}", gw.http),
            artifacts.display().to_string(),
        ],
        &[
            ("CG_USERS", users_json().to_string()),
            ("CG_FIXTURE", fixture.to_string()),
        ],
    );
    let run = async {
        while let Some(line) = script.next_line().await {
            // What the browser needs, the device publishing it, and the answer it waits for.
            let (device, reading, answer) = match line.as_str() {
                "NEED fire" => ("heat-a201", r#"{"temp_c":82.0}"#, "fire published"),
                "NEED drill fire" => ("heat-s101", r#"{"temp_c":82.0}"#, "drill fire published"),
                "NEED fire out" => ("heat-a201", r#"{"temp_c":25.0}"#, "fire out published"),
                _ => continue,
            };
            dev.publish(&gw.topic(OWN, device, "telemetry"), reading)
                .await;
            script.answer(answer).await;
        }
        script.finish().await;
    };
    tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the browser suite finishes within 240 s");
    println!("screenshots in {}", artifacts.display());
    gw.stop().await;
}

/// Logs in over HTTP; returns the status and the `cg_session=…` pair of the cookie, if set.
async fn login(gw: &TestGateway, name: &str, password: &str) -> (u16, Option<String>) {
    let resp = reqwest::Client::new()
        .post(gw.url("/login"))
        .json(&json!({"name": name, "password": password}))
        .send()
        .await
        .unwrap();
    let cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            assert!(
                v.contains("HttpOnly") && v.contains("SameSite=Strict"),
                "{v}"
            );
            v.split(';').next().unwrap().to_string()
        });
    (resp.status().as_u16(), cookie)
}

async fn with_cookie(
    gw: &TestGateway,
    method: reqwest::Method,
    path: &str,
    cookie: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    // As the browser does: its origin goes with every request that changes something.
    let mut req = reqwest::Client::new()
        .request(method, gw.url(path))
        .header("cookie", cookie)
        .header("origin", format!("http://{}", gw.http));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn a_session_cookie_acts_for_its_user_on_the_api_wherever_a_token_would() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::embedded("session", dir.path());
    setup.extra_toml = users_toml();
    let gw = TestGateway::start(&setup).await;
    let dev = Device::connect(gw.mqtt_port, &unique("session-dev")).await;
    let mut stream = AlarmStream::open(&gw, OPERATOR_TOKEN).await;
    for school in [OWN, OTHER] {
        announce(
            &gw,
            &dev,
            school,
            "cab-1",
            r#"{"profile":"chem_cabinet","name":"柜1"}"#,
        )
        .await;
    }
    // The gateway learns the devices from their meta before their readings arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for school in [OWN, OTHER] {
        dev.publish(&gw.topic(school, "cab-1", "telemetry"), r#"{"lel_pct":40}"#)
            .await;
    }
    let mut ids = std::collections::HashMap::new();
    while ids.len() < 2 {
        let e = stream
            .next_matching(Duration::from_secs(5), |e| e["transition"] == "raised")
            .await;
        ids.insert(
            e["school"].as_str().unwrap().to_string(),
            e["id"].as_u64().unwrap(),
        );
    }

    // Without a login, nothing (public_read is off).
    let (status, _) = gw.get_json("/api/v1/session", None).await;
    assert_eq!(status, 401);
    let (status, none) = login(&gw, "op.li", "wrong-password").await;
    assert_eq!((status, none), (401, None));

    let (status, cookie) = login(&gw, "lab.wang", "lab-pass-12345").await;
    assert_eq!(status, 200);
    let lab = cookie.unwrap();
    let (status, me) = with_cookie(&gw, reqwest::Method::GET, "/api/v1/session", &lab, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        me,
        json!({"name": "lab.wang", "role": "lab_manager", "schools": [OWN]})
    );
    // Scoped like a token: the other school's alarm is invisible and may not be acknowledged.
    let (_, alarms) = with_cookie(&gw, reqwest::Method::GET, "/api/v1/alarms", &lab, None).await;
    let schools: Vec<_> = alarms
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["school"].clone())
        .collect();
    assert_eq!(schools, vec![json!(OWN)]);
    // The alarm-system health is scoped too: one raise in the last hour, not two.
    let (status, kpis) =
        with_cookie(&gw, reqwest::Method::GET, "/api/v1/alarms/kpis", &lab, None).await;
    assert_eq!(status, 200, "{kpis}");
    assert_eq!(kpis["alarms_last_hour"], 1, "{kpis}");
    assert_eq!(kpis["guideline_per_hour"], 6.0);
    let (_, admin_cookie) = login(&gw, "admin", "admin-pass-1234").await;
    let (_, kpis) = with_cookie(
        &gw,
        reqwest::Method::GET,
        "/api/v1/alarms/kpis",
        &admin_cookie.unwrap(),
        None,
    )
    .await;
    assert_eq!(kpis["alarms_last_hour"], 2, "{kpis}");
    let (status, _) = with_cookie(
        &gw,
        reqwest::Method::POST,
        &format!("/api/v1/alarms/{}/ack", ids[OTHER]),
        &lab,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, acked) = with_cookie(
        &gw,
        reqwest::Method::POST,
        &format!("/api/v1/alarms/{}/ack", ids[OWN]),
        &lab,
        Some(json!({"comment": "已通风"})),
    )
    .await;
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["user"], "lab.wang");

    // A bureau session may read everything but not act on alarms.
    let (_, cookie) = login(&gw, "bureau.chen", "bureau-pass-123").await;
    let bureau = cookie.unwrap();
    let (status, _) = with_cookie(
        &gw,
        reqwest::Method::POST,
        &format!("/api/v1/alarms/{}/ack", ids[OTHER]),
        &bureau,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 403);

    // Logout ends the session on the server, not only in the browser.
    let (status, _) = with_cookie(&gw, reqwest::Method::POST, "/logout", &lab, None).await;
    assert_eq!(status, 200);
    let (status, _) = with_cookie(&gw, reqwest::Method::GET, "/api/v1/alarms", &lab, None).await;
    assert_eq!(status, 401);
    gw.stop().await;
}

#[tokio::test]
async fn failed_logins_slow_the_user_name_down_but_never_lock_its_owner_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::embedded("throttle", dir.path());
    setup.extra_toml = format!(
        "[users]\nlogin_delay = \"200ms\"\nlogin_delay_max = \"1s\"\n{}",
        users_toml()
    );
    let gw = TestGateway::start(&setup).await;
    // Three wrong guesses one after the other: each waits longer for its turn (0, 0.2, 0.4 s).
    let started = std::time::Instant::now();
    for _ in 0..3 {
        assert_eq!(login(&gw, "op.li", "guess-guess").await.0, 401);
    }
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    // The right password still gets in (after its turn: 0.8 s after the third guess), where a
    // lockout would have refused it.
    let right = std::time::Instant::now();
    assert_eq!(login(&gw, "op.li", "operator-pass-1").await.0, 200);
    assert!(
        right.elapsed() >= Duration::from_millis(500),
        "{:?}",
        right.elapsed()
    );
    // Another user name was never affected (the reset after a success is a unit test of
    // users::throttle).
    assert_eq!(login(&gw, "admin", "admin-pass-1234").await.0, 200);
    assert_eq!(login(&gw, "op.li", "operator-pass-1").await.0, 200);
    gw.stop().await;
}

#[test]
fn a_seeded_admin_without_a_password_stops_the_config_from_loading() {
    let text = "[[users.seed]]\nname = \"admin\"\nrole = \"admin\"\n";
    let err = campusguard::config::Config::from_toml(text, Path::new("gw.toml"), Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("admin without a password"), "{err}");
    let text = "[[users.seed]]\nname = \"ops\"\nrole = \"operator\"\npassword = \"short\"\n";
    let err = campusguard::config::Config::from_toml(text, Path::new("gw.toml"), Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("shorter than 8"), "{err}");
}

#[tokio::test]
async fn users_added_and_changed_on_the_command_line_can_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::embedded("cli", dir.path());
    setup.config(); // writes the profiles file next to the config
    let config_path = dir.path().join("gateway.toml");
    std::fs::write(
        &config_path,
        format!("[storage]\ndata_dir = \"{}\"\n", setup.data_dir.display()),
    )
    .unwrap();
    let cli = |args: &[&str], password: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_campusguard"))
            .arg("users")
            .args(args)
            .arg("--config")
            .arg(&config_path)
            .env("CG_TEST_PASSWORD", password)
            .output()
            .unwrap()
    };
    let out = cli(
        &[
            "add",
            "--name",
            "zhou",
            "--role",
            "school_safety",
            "--school",
            OWN,
            "--password-env",
            "CG_TEST_PASSWORD",
        ],
        "first-password",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(
        &[
            "add",
            "--name",
            "zhou",
            "--role",
            "operator",
            "--password-env",
            "CG_TEST_PASSWORD",
        ],
        "another-one",
    );
    assert!(
        !out.status.success(),
        "a second user of the same name is refused"
    );
    let out = cli(
        &[
            "add",
            "--name",
            "x",
            "--role",
            "root",
            "--password-env",
            "CG_TEST_PASSWORD",
        ],
        "long-enough",
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown role"));
    let out = cli(
        &[
            "passwd",
            "--name",
            "zhou",
            "--password-env",
            "CG_TEST_PASSWORD",
        ],
        "second-password",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["list"], "");
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(listed, format!("zhou\tschool_safety\t{OWN}\n"));
    assert!(!listed.contains("argon2"), "never the hash");

    let gw = TestGateway::start(&setup).await;
    assert_eq!(login(&gw, "zhou", "first-password").await.0, 401);
    let (status, cookie) = login(&gw, "zhou", "second-password").await;
    assert_eq!(status, 200);
    let (_, me) = with_cookie(
        &gw,
        reqwest::Method::GET,
        "/api/v1/session",
        &cookie.unwrap(),
        None,
    )
    .await;
    assert_eq!(me["role"], "school_safety");
    gw.stop().await;
}

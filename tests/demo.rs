//! `campusguard demo` as a newcomer runs it: one process, embedded broker and simulator; alarms
//! from the simulated campus appear on the API within a minute, and SIGTERM stops it cleanly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn the_demo_shows_alarms_from_the_simulated_campus_within_a_minute() {
    let dir = tempfile::tempdir().unwrap();
    let (http, mqtt) = (free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_campusguard"))
        .arg("demo")
        .env("CAMPUSGUARD_HTTP__LISTEN", format!("127.0.0.1:{http}"))
        .env("CAMPUSGUARD_BROKER__LISTEN", format!("127.0.0.1:{mqtt}"))
        .env("CAMPUSGUARD_MQTT__URL", format!("mqtt://127.0.0.1:{mqtt}"))
        .env("CAMPUSGUARD_STORAGE__DATA_DIR", dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // What the demo prints, among it the notifications its webhook receiver gets.
    let printed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    {
        let printed = printed.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let mut p = printed.lock().unwrap();
                p.push_str(&line);
                p.push('\n');
            }
        });
    }
    let started = Instant::now();
    let url = format!("http://127.0.0.1:{http}/api/v1/alarms");
    let mut seen = (false, false);
    while started.elapsed() < Duration::from_secs(75) && !(seen.0 && seen.1) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Ok(resp) = reqwest::get(&url).await else {
            continue;
        };
        let alarms: serde_json::Value = resp.json().await.unwrap_or_default();
        for a in alarms.as_array().into_iter().flatten() {
            seen.0 |= a["class"] == "fire" && a["sensor"] == "xhsy/heat-a201/temp_c";
            seen.1 |= a["class"] == "fault" && a["rule"] == "offline";
        }
    }
    // The fire was notified to the demo's receiver, which printed it.
    let notified = Instant::now() + Duration::from_secs(10);
    while !printed.lock().unwrap().contains("通知 ← 【火警】") && Instant::now() < notified
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = started.elapsed();
    // SIGTERM: a clean, bounded shutdown.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let printed = printed.lock().unwrap().clone();
    assert!(
        printed.contains("通知 ← 【火警】")
            && printed.contains("查看并确认：http://127.0.0.1:8080/#/alarms/"),
        "the demo printed no fire notification:\n{printed}"
    );
    assert!(
        seen.0,
        "no fire alarm from the fire scenario within {elapsed:?}"
    );
    assert!(
        seen.1,
        "no offline fault from the device-offline scenario within {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(60), "alarms took {elapsed:?}");
    let status = status.expect("demo stops within 15 s of SIGTERM");
    assert!(status.success(), "demo exited with {status}");
}

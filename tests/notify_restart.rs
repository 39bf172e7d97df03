//! Notifications survive a kill -9: the real binary queues notifications for a webhook that is
//! down, is killed without any chance to flush, and after the restart delivers every one of them
//! to the receiver — each idempotency key exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/receiver.rs"]
mod receiver;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_queued_before_a_kill_9_are_delivered_after_the_restart_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let mqtt = free_port();
    let hook = free_port();
    let prefix = unique("notify-kill");
    let profiles = dir.path().join("profiles.toml");
    std::fs::write(&profiles, TEST_PROFILES).unwrap();
    let devices: String = (1..=5)
        .map(|i| {
            format!("[[devices]]\nid = \"room-{i}\"\nschool = \"xhsy\"\nprofile = \"test_room\"\n")
        })
        .collect();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[broker]
embedded = true
listen = "127.0.0.1:{mqtt}"

[mqtt]
url = "mqtt://127.0.0.1:{mqtt}"
client_id = "{prefix}-gw"
topic_prefix = "{prefix}"
reconnect_min = "100ms"
reconnect_max = "1s"

[http]
listen = "127.0.0.1:{http}"

[[http.tokens]]
name = "ops"
token = "{OPERATOR_TOKEN}"
role = "operator"

[storage]
data_dir = "{data}"

[rules]
profiles_file = "{profiles}"
tick = "100ms"

{devices}

[notify]
retry_min = "300ms"
retry_max = "1s"

[[notify.channels]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:{hook}/webhook"

[[notify.routes]]
classes = ["fire"]
after = "0s"
channels = ["hook"]
"#,
            data = dir.path().join("data").display(),
            profiles = profiles.display(),
        ),
    )
    .unwrap();
    let mut gw = GatewayProcess::start(&config);
    wait_ready(http).await;
    let dev = Device::connect(mqtt, &unique("notify-kill-dev")).await;
    for i in 1..=5 {
        dev.publish(
            &format!("{prefix}/xhsy/room-{i}/telemetry"),
            r#"{"temp_c":82.0}"#,
        )
        .await;
    }
    // The receiver is down: every delivery has been tried and is waiting for its retry.
    let metrics = format!("http://127.0.0.1:{http}/metrics");
    eventually(
        "five deliveries tried and queued again",
        Duration::from_secs(15),
        || async {
            let text = reqwest::get(&metrics).await.ok()?.text().await.ok()?;
            let retried: f64 = text
                .lines()
                .find_map(|l| {
                    l.strip_prefix(
                        "campusguard_notifications_total{channel=\"hook\",result=\"retry\"} ",
                    )
                })
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0);
            (retried >= 5.0).then_some(())
        },
    )
    .await;
    drop(dev);
    gw.kill9();

    let rx = receiver::Receiver::start_on(hook).await;
    let _gw = GatewayProcess::start(&config);
    wait_ready(http).await;
    let count = |got: &[receiver::Got]| {
        let mut keys: BTreeMap<String, usize> = BTreeMap::new();
        for g in got.iter().filter(|g| g.accepted) {
            for k in g.keys() {
                *keys.entry(k).or_default() += 1;
            }
        }
        keys
    };
    rx.wait_for("five idempotency keys", Duration::from_secs(20), |got| {
        count(got).len() == 5
    })
    .await;
    // Nothing comes twice, also not a little later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let keys = count(&rx.got());
    assert_eq!(keys.len(), 5, "{keys:?}");
    for (key, n) in &keys {
        assert_eq!(*n, 1, "{key} delivered {n} times");
        assert!(
            key.starts_with("alarm:") && key.ends_with(":r1:n0:hook"),
            "{key}"
        );
    }
}

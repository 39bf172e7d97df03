//! Notifications end to end: a whole gateway in-process (embedded broker, real MQTT readings)
//! notifying local stand-ins of each vendor (`support/receiver.rs`: axum servers that check the
//! body and signature as the vendor documents them and answer as the vendor does). Covers the
//! vendors' formats and answers, the escalation timeline and acknowledgement, a receiver that
//! is down for 20 s, a refused signature raising and clearing the channel's fault, and a flood
//! of 500 alarms within the channels' rate limits. The alarm latency with and without
//! notifications is an `#[ignore]`d benchmark:
//! `cargo test --release --test notify -- --ignored --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/receiver.rs"]
mod receiver;
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use receiver::{Mode, Receiver};
use serde_json::{json, Value};
use support::*;

const SECRET: &str = "SEC-test-signing-secret-0123";

fn device_toml(ids: impl IntoIterator<Item = String>) -> String {
    ids.into_iter()
        .map(|id| {
            format!(
                "[[devices]]\nid = \"{id}\"\nschool = \"xhsy\"\nprofile = \"test_room\"\nbuilding = \"教学楼A\"\nroom = \"201教室\"\nname = \"{id}温度\"\n"
            )
        })
        .collect()
}

fn notify_head() -> String {
    // Short retries so tests see them.
    "[notify]\nconsole_url = \"https://cg.example/\"\nretry_min = \"200ms\"\nretry_max = \"2s\"\ngive_up_after = \"1h\"\nfault_after = 3\ntimeout = \"2s\"\n".into()
}

fn channel(name: &str, kind: &str, url: &str, secret: Option<&str>, extra: &str) -> String {
    let secret = secret
        .map(|s| format!("secret = \"{s}\"\n"))
        .unwrap_or_default();
    format!("[[notify.channels]]\nname = \"{name}\"\nkind = \"{kind}\"\nurl = \"{url}\"\n{secret}{extra}\n")
}

fn route(classes: &str, after: &str, channels: &str, extra: &str) -> String {
    format!("[[notify.routes]]\nclasses = [{classes}]\nafter = \"{after}\"\nchannels = [{channels}]\n{extra}\n")
}

async fn gateway(dir: &std::path::Path, tag: &str, devices: &[&str], notify: &str) -> TestGateway {
    let mut setup = Setup::embedded(tag, dir);
    setup.extra_toml = format!(
        "{}\n{notify}",
        device_toml(devices.iter().map(|d| d.to_string()))
    );
    TestGateway::start(&setup).await
}

/// Publishes a fire-level reading of `device` and returns the fire alarm's id.
async fn fire(gw: &TestGateway, dev: &Device, stream: &mut AlarmStream, device: &str) -> u64 {
    dev.publish(&gw.topic("xhsy", device, "telemetry"), r#"{"temp_c":82.0}"#)
        .await;
    let sensor = format!("xhsy/{device}/temp_c");
    let raised = stream
        .next_matching(Duration::from_secs(5), |e| {
            e["transition"] == "raised"
                && e["rule"] == "temp_fire"
                && e["sensor"] == sensor.as_str()
        })
        .await;
    raised["id"].as_u64().unwrap()
}

async fn journal(gw: &TestGateway, id: u64) -> Vec<Value> {
    let (status, body) = gw
        .get_json(&format!("/api/v1/alarms/{id}"), Some(OPERATOR_TOKEN))
        .await;
    assert_eq!(status, 200, "{body}");
    body["journal"].as_array().cloned().unwrap_or_default()
}

fn notes(journal: &[Value]) -> Vec<String> {
    journal
        .iter()
        .filter(|e| e["transition"] == "notified")
        .map(|e| e["comment"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_vendor_gets_its_documented_body_and_signature_and_its_answers_are_understood() {
    let rx = Receiver::start().await;
    for vendor in ["dingtalk", "feishu", "webhook"] {
        rx.expect_secret(vendor, SECRET);
    }
    let dir = tempfile::tempdir().unwrap();
    let notify = format!(
        "{}{}{}{}{}{}",
        notify_head(),
        channel("wx", "wecom", &rx.url("/wecom?key=k1"), None, ""),
        channel(
            "dd",
            "dingtalk",
            &rx.url("/dingtalk?access_token=t1"),
            Some(SECRET),
            ""
        ),
        channel("fs", "feishu", &rx.url("/feishu"), Some(SECRET), ""),
        channel("hook", "webhook", &rx.url("/webhook"), Some(SECRET), ""),
        route("\"fire\"", "0s", "\"wx\", \"dd\", \"fs\", \"hook\"", ""),
    );
    let gw = gateway(
        dir.path(),
        "notify-vendors",
        &["room-1", "room-2", "room-3"],
        &notify,
    )
    .await;
    let dev = Device::connect(gw.mqtt_port, &unique("notify-dev")).await;
    let mut stream = AlarmStream::open(&gw, OPERATOR_TOKEN).await;

    // Delivered everywhere, signed as each vendor checks it.
    let id = fire(&gw, &dev, &mut stream, "room-1").await;
    rx.wait_for("one message per vendor", Duration::from_secs(10), |got| {
        ["wecom", "dingtalk", "feishu", "webhook"]
            .iter()
            .all(|v| got.iter().any(|g| g.vendor == *v && g.accepted))
    })
    .await;
    let link = format!("https://cg.example/#/alarms/{id}");
    for g in rx.got() {
        assert!(g.valid, "{}: {:?}", g.vendor, g.problem);
        let text = g.text();
        assert!(text.contains("【火警】"), "{}: {text}", g.vendor);
        assert!(text.contains("教学楼A 201教室"), "{}: {text}", g.vendor);
        assert!(text.contains("（北京时间）"), "{}: {text}", g.vendor);
        assert!(text.contains(&link), "{}: {text}", g.vendor);
    }
    let hook = &rx.got_by("/webhook")[0];
    assert_eq!(hook.body["id"], id, "the webhook body is the alarm event");
    assert_eq!(hook.body["transition"], "raised");
    assert_eq!(hook.body["notification"]["step"], "第1步");
    assert_eq!(
        hook.headers["x-campusguard-delivery"],
        hook.body["notification"]["key"].as_str().unwrap()
    );
    // Every attempt is a `notified` note on the alarm.
    gw.wait_until(Duration::from_secs(5), || async {
        notes(&journal(&gw, id).await).len() >= 4
    })
    .await;
    let delivered = notes(&journal(&gw, id).await);
    for channel in ["wx", "dd", "fs", "hook"] {
        assert!(
            delivered
                .iter()
                .any(|n| n.starts_with(&format!("{channel} · 第1步 · 已送达"))),
            "{channel}: {delivered:?}"
        );
        let sent = gw
            .metric(&format!(
                "campusguard_notifications_total{{channel=\"{channel}\",result=\"sent\"}}"
            ))
            .await;
        assert_eq!(sent, 1.0, "{channel}");
    }

    // Server errors: retried until the vendor answers again, then delivered once.
    for v in ["wecom", "dingtalk", "feishu", "webhook"] {
        rx.set_mode(v, Mode::ServerError);
    }
    let before = rx.got().len();
    let id2 = fire(&gw, &dev, &mut stream, "room-2").await;
    rx.wait_for("a 500 from every vendor", Duration::from_secs(10), |got| {
        ["wecom", "dingtalk", "feishu", "webhook"]
            .iter()
            .all(|v| got[before..].iter().any(|g| g.vendor == *v && !g.accepted))
    })
    .await;
    for v in ["wecom", "dingtalk", "feishu", "webhook"] {
        rx.set_mode(v, Mode::Ok);
    }
    rx.wait_for("the retries delivered", Duration::from_secs(10), |got| {
        ["wecom", "dingtalk", "feishu", "webhook"]
            .iter()
            .all(|v| got[before..].iter().any(|g| g.vendor == *v && g.accepted))
    })
    .await;
    let j = notes(&journal(&gw, id2).await);
    assert!(
        j.iter()
            .any(|n| n.contains("秒后重试") && n.contains("HTTP 500")),
        "{j:?}"
    );

    // Rate limits, in each vendor's words: recognised and retried later (the robots' own
    // waits are minutes; the webhook's Retry-After is one second).
    for v in ["wecom", "dingtalk", "feishu", "webhook"] {
        rx.set_mode(v, Mode::RateLimited);
    }
    let before = rx.got().len();
    let id3 = fire(&gw, &dev, &mut stream, "room-3").await;
    rx.wait_for(
        "a rate-limit answer from every vendor",
        Duration::from_secs(10),
        |got| {
            ["wecom", "dingtalk", "feishu", "webhook"]
                .iter()
                .all(|v| got[before..].iter().any(|g| g.vendor == *v))
        },
    )
    .await;
    rx.set_mode("webhook", Mode::Ok);
    for channel in ["wx", "dd", "fs", "hook"] {
        gw.wait_until(Duration::from_secs(5), || async {
            gw.metric(&format!(
                "campusguard_notifications_total{{channel=\"{channel}\",result=\"rate_limited\"}}"
            ))
            .await
                >= 1.0
        })
        .await;
    }
    rx.wait_for(
        "the webhook after its Retry-After",
        Duration::from_secs(10),
        |got| {
            got[before..]
                .iter()
                .any(|g| g.vendor == "webhook" && g.accepted)
        },
    )
    .await;
    gw.wait_until(Duration::from_secs(5), || async {
        let j = notes(&journal(&gw, id3).await);
        j.iter()
            .any(|n| n.starts_with("dd · 第1步 · 失败，") && n.contains("130101"))
            && j.iter().any(|n| n.starts_with("hook · 第1步 · 已送达"))
    })
    .await;
    // A rate limit is not a broken channel: no fault was raised.
    let (_, alarms) = gw.get_json("/api/v1/alarms", Some(OPERATOR_TOKEN)).await;
    assert!(
        !alarms
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["rule"].as_str().unwrap_or("").starts_with("notify:")),
        "{alarms}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_fire_reaches_step_two_and_an_acknowledged_one_never_does() {
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let notify = format!(
        "{}{}{}{}{}",
        notify_head(),
        channel("duty", "webhook", &rx.url("/webhook/duty"), None, ""),
        channel("safety", "webhook", &rx.url("/webhook/safety"), None, ""),
        route("\"fire\", \"gas\"", "1s", "\"duty\"", ""),
        route("\"fire\", \"gas\"", "3s", "\"safety\"", ""),
    );
    let gw = gateway(dir.path(), "notify-steps", &["room-1", "room-2"], &notify).await;
    let dev = Device::connect(gw.mqtt_port, &unique("notify-dev")).await;
    let mut stream = AlarmStream::open(&gw, OPERATOR_TOKEN).await;
    let started = Instant::now();
    let ignored = fire(&gw, &dev, &mut stream, "room-1").await;
    let acked = fire(&gw, &dev, &mut stream, "room-2").await;
    let named = |g: &receiver::Got, id: u64| g.body["id"] == id;

    rx.wait_for("step 1 of both", Duration::from_secs(5), |got| {
        got.iter().filter(|g| g.path == "/webhook/duty").count() >= 2
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "step 1 waited its second"
    );
    // Someone acknowledges the second alarm between the steps.
    let (status, body) = gw
        .post_json(
            &format!("/api/v1/alarms/{acked}/ack"),
            Some(OPERATOR_TOKEN),
            json!({"comment": "已到现场"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    rx.wait_for(
        "step 2 of the ignored fire",
        Duration::from_secs(6),
        |got| {
            got.iter()
                .any(|g| g.path == "/webhook/safety" && named(g, ignored))
        },
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(2900),
        "step 2 waited 3 s"
    );
    let step2 = &rx.got_by("/webhook/safety")[0];
    assert_eq!(step2.body["notification"]["step"], "第2步");
    assert!(step2.body["notification"]["text"]
        .as_str()
        .unwrap()
        .contains("状态：未确认"));
    // Well past the acknowledged alarm's step 2: it never came.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !rx.got_by("/webhook/safety").iter().any(|g| named(g, acked)),
        "an acknowledged alarm escalated"
    );
    assert_eq!(rx.got_by("/webhook/safety").len(), 1);
    let j = notes(&journal(&gw, acked).await);
    assert_eq!(j.len(), 1, "{j:?}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_20_seconds_gets_the_notification_once_when_it_is_back() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}/webhook");
    let notify = format!(
        "{}{}{}",
        notify_head(),
        channel("hook", "webhook", &url, None, ""),
        route("\"fire\"", "0s", "\"hook\"", ""),
    );
    let gw = gateway(dir.path(), "notify-down", &["room-1"], &notify).await;
    let dev = Device::connect(gw.mqtt_port, &unique("notify-dev")).await;
    let mut stream = AlarmStream::open(&gw, OPERATOR_TOKEN).await;
    let id = fire(&gw, &dev, &mut stream, "room-1").await;
    // Nobody listens: connection refused, retried; after three failures the channel's fault.
    let fault = stream
        .next_matching(Duration::from_secs(10), |e| {
            e["rule"] == "notify:hook" && e["transition"] == "raised"
        })
        .await;
    assert_eq!(fault["class"], "fault");
    assert_eq!(fault["sensor"], "system/notify/hook");
    tokio::time::sleep(Duration::from_secs(20)).await;
    let failed = notes(&journal(&gw, id).await);
    assert!(failed.len() >= 4, "{failed:?}");
    assert!(failed.iter().all(|n| n.contains("失败")), "{failed:?}");
    let rx = Receiver::start_on(port).await;
    rx.wait_for("the delivery", Duration::from_secs(10), |got| {
        !got.is_empty()
    })
    .await;
    // The next success clears the fault.
    let cleared = stream
        .next_matching(Duration::from_secs(5), |e| {
            e["rule"] == "notify:hook" && e["transition"] == "cleared"
        })
        .await;
    assert_eq!(cleared["state"], "cleared_unacked");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = rx.got();
    assert_eq!(got.len(), 1, "delivered once");
    assert_eq!(got[0].body["id"], id);
    let j = notes(&journal(&gw, id).await);
    assert!(
        j.last().unwrap().starts_with("hook · 第1步 · 已送达"),
        "{j:?}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_signature_raises_the_channel_fault_and_the_next_success_clears_it() {
    let rx = Receiver::start().await;
    rx.expect_secret("webhook", "a-different-secret");
    let dir = tempfile::tempdir().unwrap();
    let notify = format!(
        "{}{}{}",
        notify_head(),
        channel("hook", "webhook", &rx.url("/webhook"), Some(SECRET), ""),
        route("\"fire\"", "0s", "\"hook\"", ""),
    );
    let gw = gateway(dir.path(), "notify-fault", &["room-1", "room-2"], &notify).await;
    let dev = Device::connect(gw.mqtt_port, &unique("notify-dev")).await;
    let mut stream = AlarmStream::open(&gw, OPERATOR_TOKEN).await;
    let id = fire(&gw, &dev, &mut stream, "room-1").await;
    let fault = stream
        .next_matching(Duration::from_secs(5), |e| {
            e["rule"] == "notify:hook" && e["transition"] == "raised"
        })
        .await;
    assert_eq!(fault["state"], "active_unacked");
    assert!(
        fault["message"].as_str().unwrap().contains("HTTP 401"),
        "{fault}"
    );
    // Refused for good: tried once, not again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(rx.got().len(), 1);
    let j = notes(&journal(&gw, id).await);
    assert!(j[0].contains("失败，不再重试"), "{j:?}");
    assert_eq!(
        gw.metric("campusguard_notifications_total{channel=\"hook\",result=\"failed\"}")
            .await,
        1.0
    );
    // The receiver is fixed; the next alarm goes through and clears the fault.
    rx.expect_secret("webhook", SECRET);
    fire(&gw, &dev, &mut stream, "room-2").await;
    let cleared = stream
        .next_matching(Duration::from_secs(5), |e| {
            e["rule"] == "notify:hook" && e["transition"] == "cleared"
        })
        .await;
    assert_eq!(cleared["id"], fault["id"]);
    assert!(rx.got().last().unwrap().accepted);
    gw.stop().await;
}

/// 500 fire alarms within 10 s, notified to a DingTalk robot (20 a minute) and a webhook (60):
/// neither receives more than its limit in any minute, and every alarm is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_alarms_in_ten_seconds_stay_within_each_limit_and_every_alarm_is_named() {
    let rx = Receiver::start().await;
    rx.expect_secret("dingtalk", SECRET);
    let dir = tempfile::tempdir().unwrap();
    let notify = format!(
        "{}{}{}{}",
        notify_head(),
        channel(
            "dd",
            "dingtalk",
            &rx.url("/dingtalk?access_token=t"),
            Some(SECRET),
            ""
        ),
        channel(
            "hook",
            "webhook",
            &rx.url("/webhook"),
            None,
            "max_per_minute = 60\n"
        ),
        route("\"fire\"", "0s", "\"dd\", \"hook\"", ""),
    );
    let devices: Vec<String> = (0..500).map(|i| format!("r{i:03}")).collect();
    let refs: Vec<&str> = devices.iter().map(String::as_str).collect();
    let gw = gateway(dir.path(), "notify-flood", &refs, &notify).await;
    let dev = Device::connect(gw.mqtt_port, &unique("notify-dev")).await;
    let started = Instant::now();
    for (i, d) in devices.iter().enumerate() {
        dev.publish(&gw.topic("xhsy", d, "telemetry"), r#"{"temp_c":82.0}"#)
            .await;
        // 50 a second: 500 in 10 s.
        let due = Duration::from_millis(20 * (i as u64 + 1));
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
    let ids: BTreeSet<u64> = eventually("500 fire alarms", Duration::from_secs(20), || async {
        let (_, list) = gw
            .get_json(
                "/api/v1/alarms?state=active&limit=5000",
                Some(OPERATOR_TOKEN),
            )
            .await;
        let ids: BTreeSet<u64> = list
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["rule"] == "temp_fire")
            .filter_map(|a| a["id"].as_u64())
            .collect();
        (ids.len() == 500).then_some(ids)
    })
    .await;
    let named = |got: &[receiver::Got], path: &str| -> BTreeSet<u64> {
        let mut seen = BTreeSet::new();
        for g in got.iter().filter(|g| g.path == path && g.accepted) {
            let text = g.text();
            for id in &ids {
                if text.contains(&format!("#{id} "))
                    || text.contains(&format!("#{id}\n"))
                    || text.ends_with(&format!("#{id}"))
                    || text.contains(&format!("/alarms/{id})"))
                {
                    seen.insert(*id);
                }
            }
            if let Some(alarms) = g.body["notification"]["alarms"].as_array() {
                seen.extend(alarms.iter().filter_map(Value::as_u64));
            }
        }
        seen
    };
    rx.wait_for(
        "every alarm named on both channels",
        Duration::from_secs(90),
        |got| named(got, "/dingtalk").len() == 500 && named(got, "/webhook").len() == 500,
    )
    .await;
    let took = started.elapsed();
    let got = rx.got();
    let dd: Vec<_> = got
        .iter()
        .filter(|g| g.path == "/dingtalk")
        .cloned()
        .collect();
    let hook: Vec<_> = got
        .iter()
        .filter(|g| g.path == "/webhook")
        .cloned()
        .collect();
    assert!(
        dd.iter().all(|g| g.valid),
        "a DingTalk request failed its checks"
    );
    let dd_max = receiver::max_per_minute(&dd);
    let hook_max = receiver::max_per_minute(&hook);
    println!(
        "flood: 500 alarms named on both channels after {took:?}; DingTalk {} messages (max {dd_max} in a minute), webhook {} (max {hook_max})",
        dd.len(),
        hook.len()
    );
    assert!(dd_max <= 20, "DingTalk got {dd_max} in a minute");
    assert!(hook_max <= 60, "the webhook got {hook_max} in a minute");
    assert!(
        dd.len() < 60 && hook.len() < 100,
        "summaries, not one message per alarm"
    );
    gw.stop().await;
}

/// Alarm latency (publish → SSE) during a flood of 500 alarms in 10 s, without and with
/// notifications to two channels. Prints p50/p99/max of both runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: cargo test --release --test notify -- --ignored --nocapture"]
async fn benchmark_alarm_latency_with_and_without_notifications() {
    let mut results = Vec::new();
    for with in [false, true] {
        let rx = Receiver::start().await;
        let dir = tempfile::tempdir().unwrap();
        let notify = if with {
            format!(
                "{}{}{}{}",
                notify_head(),
                channel(
                    "dd",
                    "dingtalk",
                    &rx.url("/dingtalk?access_token=t"),
                    Some(SECRET),
                    ""
                ),
                channel(
                    "hook",
                    "webhook",
                    &rx.url("/webhook"),
                    None,
                    "max_per_minute = 60\n"
                ),
                route("\"fire\"", "0s", "\"dd\", \"hook\"", ""),
            )
        } else {
            String::new()
        };
        let devices: Vec<String> = (0..500).map(|i| format!("r{i:03}")).collect();
        let refs: Vec<&str> = devices.iter().map(String::as_str).collect();
        let gw = gateway(dir.path(), "notify-bench", &refs, &notify).await;
        let dev = Device::connect(gw.mqtt_port, &unique("notify-dev")).await;
        let mut stream = AlarmStream::open(&gw, OPERATOR_TOKEN).await;
        let started = Instant::now();
        let mut sent_at = std::collections::HashMap::new();
        let publisher = async {
            for (i, d) in devices.iter().enumerate() {
                sent_at.insert(format!("xhsy/{d}/temp_c"), Instant::now());
                dev.publish(&gw.topic("xhsy", d, "telemetry"), r#"{"temp_c":82.0}"#)
                    .await;
                let due = Duration::from_millis(20 * (i as u64 + 1));
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
        };
        let mut latencies = Vec::new();
        let receiver = async {
            let mut arrived = Vec::new();
            while arrived.len() < 500 {
                let e = stream
                    .next_matching(Duration::from_secs(30), |e| {
                        e["transition"] == "raised" && e["rule"] == "temp_fire"
                    })
                    .await;
                arrived.push((e["sensor"].as_str().unwrap().to_string(), Instant::now()));
            }
            arrived
        };
        let ((), arrived) = tokio::join!(publisher, receiver);
        for (sensor, at) in arrived {
            latencies.push(at.duration_since(sent_at[&sensor]).as_secs_f64() * 1000.0);
        }
        latencies.sort_by(|a, b| a.total_cmp(b));
        let p = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
        results.push((with, p(0.5), p(0.99), p(1.0)));
        gw.stop().await;
    }
    println!("| notifications | alarm p50 | alarm p99 | alarm max |");
    println!("|---|---:|---:|---:|");
    for (with, p50, p99, max) in &results {
        println!(
            "| {} | {p50:.1} ms | {p99:.1} ms | {max:.1} ms |",
            if *with { "2 channels" } else { "none" }
        );
    }
}

//! Integration tests against the machine's Mosquitto at 127.0.0.1:1883 (or `CAMPUSGUARD_TEST_MQTT_PORT`): the simulator and the
//! load generator publish under a unique topic prefix, a rumqttc subscriber checks what
//! arrived, and every retained message the tests created is cleared at the end. Every wait is
//! bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use campusguard_sim::garbage::is_valid_telemetry;
use campusguard_sim::{
    load, run, Campus, LoadConfig, Profile, QoS, Scenario, ScheduledScenario, SimConfig,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const HOST: &str = "127.0.0.1";
/// The shared Mosquitto: `CAMPUSGUARD_TEST_MQTT_PORT` (set by `scripts/test`), else 1883.
static PORT: std::sync::LazyLock<u16> = std::sync::LazyLock::new(|| {
    std::env::var("CAMPUSGUARD_TEST_MQTT_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(1883)
});

fn unique_prefix(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{what}-{}-{nanos}", std::process::id())
}

/// One received message.
#[derive(Clone, Debug)]
struct Received {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
    at: std::time::Instant,
}

/// A subscriber on `<prefix>/#` that records everything it receives.
struct Recorder {
    client: AsyncClient,
    received: Arc<Mutex<Vec<Received>>>,
    acks: Arc<Mutex<u64>>,
    poller: JoinHandle<()>,
}

impl Recorder {
    async fn subscribe(filter: &str, id: &str) -> Self {
        let mut options = MqttOptions::new(id, HOST, *PORT);
        options.set_max_packet_size(4 << 20, 64 << 10);
        options.set_keep_alive(Duration::from_secs(10));
        let (client, mut eventloop) = AsyncClient::new(options, 256);
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let acks = Arc::new(Mutex::new(0));
        let (suback_tx, suback_rx) = tokio::sync::oneshot::channel();
        let mut suback_tx = Some(suback_tx);
        let (sink, ack_count) = (received.clone(), acks.clone());
        let poller = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = suback_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        sink.lock().unwrap().push(Received {
                            topic: p.topic,
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                            at: std::time::Instant::now(),
                        });
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => *ack_count.lock().unwrap() += 1,
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(5), suback_rx)
            .await
            .expect("no SubAck from Mosquitto within 5 s")
            .unwrap();
        Self {
            client,
            received,
            acks,
            poller,
        }
    }

    fn snapshot(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `done` holds for what was received, at most `limit`.
    async fn wait_for(&self, limit: Duration, done: impl Fn(&[Received]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if done(&self.received.lock().unwrap()) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Publishes empty retained payloads on `topics` (clearing them), waits for their acks,
    /// and disconnects.
    async fn clear_retained(self, topics: &BTreeSet<String>) {
        for topic in topics {
            self.client
                .publish(topic.as_str(), QoS::AtLeastOnce, true, Vec::new())
                .await
                .unwrap();
        }
        let wanted = topics.len() as u64;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while *self.acks.lock().unwrap() < wanted && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.poller).await;
    }

    async fn stop(self) {
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.poller).await;
    }
}

/// Splits `<prefix>/<school>/<device>/<rest>` into (`school/device`, rest).
fn split<'a>(prefix: &str, topic: &'a str) -> Option<(String, &'a str)> {
    let rest = topic.strip_prefix(prefix)?.strip_prefix('/')?;
    let mut parts = rest.splitn(3, '/');
    let (school, device, suffix) = (parts.next()?, parts.next()?, parts.next()?);
    Some((format!("{school}/{device}"), suffix))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_publishes_meta_status_telemetry_and_garbage_to_mosquitto() {
    let prefix = unique_prefix("simtest");
    let recorder = Recorder::subscribe(&format!("{prefix}/#"), &format!("{prefix}-rec")).await;

    let campus = Campus::demo();
    let garbage_target = "syxx/cab-1";
    let config = SimConfig {
        port: *PORT,
        client_id: format!("{prefix}-sim"),
        topic_prefix: prefix.clone(),
        interval: Duration::from_millis(200),
        scenarios: vec![ScheduledScenario {
            after: Duration::from_millis(500),
            scenario: Scenario::Garbage,
            target: Some(garbage_target.to_owned()),
        }],
        ..SimConfig::default()
    };
    let shutdown = CancellationToken::new();
    let sim = tokio::spawn(run(config, shutdown.clone()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), sim)
        .await
        .expect("simulator did not stop within 10 s of shutdown")
        .unwrap()
        .unwrap();

    let devices: BTreeMap<String, Profile> = campus
        .devices
        .iter()
        .map(|d| (d.key(), d.profile))
        .collect();
    // Every device ends with `offline`; wait (bounded) for the last ones to arrive.
    let offline_all = recorder
        .wait_for(Duration::from_secs(5), |got| {
            let offline: BTreeSet<_> = got
                .iter()
                .filter(|m| m.topic.ends_with("/status") && m.payload == b"offline")
                .filter_map(|m| split(&prefix, &m.topic).map(|(k, _)| k))
                .collect();
            offline.len() == devices.len()
        })
        .await;
    let got = recorder.snapshot();
    assert!(offline_all, "not every device said offline on shutdown");

    let mut meta = BTreeSet::new();
    let mut first_status = BTreeMap::new();
    let mut telemetry = BTreeSet::new();
    let mut garbage = Vec::new();
    for m in &got {
        let (key, suffix) = split(&prefix, &m.topic).expect("topic outside the prefix");
        let profile = *devices.get(&key).expect("message of an unknown device");
        match suffix {
            "meta" => {
                let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
                assert_eq!(v["profile"], profile.as_str(), "{key}");
                assert!(v["building"].is_string() && v["room"].is_string());
                assert!(v["name"].as_str().is_some_and(|n| !n.is_empty()));
                meta.insert(key);
            }
            "status" => {
                first_status
                    .entry(key)
                    .or_insert_with(|| String::from_utf8_lossy(&m.payload).into_owned());
            }
            suffix => {
                assert!(
                    suffix.starts_with("telemetry"),
                    "unexpected topic {}",
                    m.topic
                );
                let points: Vec<&str> = profile.points().iter().map(|p| p.name).collect();
                if is_valid_telemetry(suffix, &m.payload, &points) {
                    if suffix == "telemetry" {
                        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
                        let object = v.as_object().unwrap();
                        assert!(object["ts"].is_i64());
                        assert_eq!(object.len(), points.len() + 1, "{key}: {v}");
                    }
                    telemetry.insert(key);
                } else {
                    assert_eq!(
                        key, garbage_target,
                        "malformed payload from a normal device"
                    );
                    garbage.push(m);
                }
            }
        }
    }
    // Spread over the interval, not one burst per interval: a burst would fill about one
    // 10 ms bucket per 200 ms interval (~15 in 3 s); spread telemetry fills most of them.
    let start = got.first().unwrap().at;
    let buckets: BTreeSet<u128> = got
        .iter()
        .filter(|m| m.topic.contains("/telemetry"))
        .map(|m| m.at.duration_since(start).as_millis() / 10)
        .collect();
    assert!(
        buckets.len() > 100,
        "telemetry in only {} 10 ms buckets",
        buckets.len()
    );
    assert_eq!(meta.len(), devices.len(), "meta missing for some devices");
    assert_eq!(first_status.len(), devices.len());
    assert!(first_status.values().all(|s| s == "online"));
    assert_eq!(
        telemetry.len(),
        devices.len(),
        "telemetry missing for some devices"
    );
    assert!(
        garbage.len() >= 15,
        "only {} malformed payloads",
        garbage.len()
    );
    assert!(garbage.iter().any(|m| m.payload.len() == 1 << 20));
    assert!(garbage.iter().any(|m| m.payload.is_empty()));
    assert!(garbage
        .iter()
        .any(|m| std::str::from_utf8(&m.payload).is_err()));
    assert!(garbage.iter().any(|m| m.topic.contains("/telemetry/")));
    recorder.stop().await;

    // A late subscriber gets the retained meta and status of every device.
    let late = Recorder::subscribe(&format!("{prefix}/#"), &format!("{prefix}-late")).await;
    let retained_all = late
        .wait_for(Duration::from_secs(5), |got| {
            got.iter().filter(|m| m.retain).count() >= 2 * devices.len()
        })
        .await;
    let retained = late.snapshot();
    let retained_topics: BTreeSet<String> = retained
        .iter()
        .filter(|m| m.retain)
        .map(|m| m.topic.clone())
        .collect();
    assert!(retained_all, "retained: {}", retained_topics.len());
    for key in devices.keys() {
        assert!(retained_topics.contains(&format!("{prefix}/{key}/meta")));
        assert!(retained_topics.contains(&format!("{prefix}/{key}/status")));
    }
    assert!(retained
        .iter()
        .filter(|m| m.retain && m.topic.ends_with("/status"))
        .all(|m| m.payload == b"offline"));
    late.clear_retained(&retained_topics).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_sends_its_count_at_the_target_rate() {
    let prefix = unique_prefix("loadtest");
    let recorder = Recorder::subscribe(&format!("{prefix}/#"), &format!("{prefix}-rec")).await;
    let config = LoadConfig {
        port: *PORT,
        client_id: format!("{prefix}-load"),
        topic_prefix: prefix.clone(),
        devices: 50,
        points: 5,
        rate: 2000.0,
        count: Some(1000),
        qos: QoS::AtLeastOnce,
        connections: 2,
        ..LoadConfig::default()
    };
    let report = tokio::time::timeout(
        Duration::from_secs(30),
        load(config, CancellationToken::new()),
    )
    .await
    .expect("load did not finish within 30 s")
    .unwrap();
    assert_eq!(report.messages_published, 1000, "{report}");
    assert_eq!(report.messages_sent, 1000, "{report}");
    assert_eq!(report.messages_acked, 1000, "{report}");
    assert_eq!(report.readings_sent, 5000);
    // 1000 messages of 5 readings at 2000 readings/s: 2.5 s.
    let ratio = report.achieved_readings_per_s / 2000.0;
    assert!((0.8..=1.1).contains(&ratio), "{report}");

    let all = recorder
        .wait_for(Duration::from_secs(5), |got| got.len() >= 1000)
        .await;
    let got = recorder.snapshot();
    assert!(all, "received {} of 1000", got.len());
    let devices: BTreeSet<_> = got
        .iter()
        .filter_map(|m| split(&prefix, &m.topic))
        .map(|(k, _)| k)
        .collect();
    assert_eq!(devices.len(), 50);
    let points = ["p0", "p1", "p2", "p3", "p4"];
    assert!(got
        .iter()
        .all(|m| is_valid_telemetry("telemetry", &m.payload, &points)));
    recorder.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_load_publishes_meta_first_and_clears_it_at_the_end() {
    let prefix = unique_prefix("loadmeta");
    let recorder = Recorder::subscribe(&format!("{prefix}/#"), &format!("{prefix}-rec")).await;
    let config = LoadConfig {
        port: *PORT,
        client_id: format!("{prefix}-load"),
        topic_prefix: prefix.clone(),
        devices: 5,
        profile: Some(Profile::ChemCabinet),
        rate: 700.0,
        duration: Some(Duration::from_millis(500)),
        ..LoadConfig::default()
    };
    let report = tokio::time::timeout(
        Duration::from_secs(30),
        load(config, CancellationToken::new()),
    )
    .await
    .expect("load did not finish within 30 s")
    .unwrap();
    assert_eq!(report.points_per_message, 7);
    assert!(report.messages_sent > 0, "{report}");
    let cleared = recorder
        .wait_for(Duration::from_secs(5), |got| {
            got.iter()
                .filter(|m| m.topic.ends_with("/meta") && m.payload.is_empty())
                .count()
                == 5
        })
        .await;
    assert!(cleared, "retained load meta was not cleared");
    let got = recorder.snapshot();
    let first = got.first().unwrap();
    assert!(first.topic.ends_with("/meta") && !first.payload.is_empty());
    let names: Vec<&str> = Profile::ChemCabinet
        .points()
        .iter()
        .map(|p| p.name)
        .collect();
    assert!(got
        .iter()
        .filter(|m| m.topic.ends_with("/telemetry"))
        .all(|m| is_valid_telemetry("telemetry", &m.payload, &names)));
    recorder.stop().await;
}

#[tokio::test]
async fn the_simulator_stops_on_shutdown_even_when_the_broker_is_unreachable() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = SimConfig {
        port,
        interval: Duration::from_millis(100),
        max_backoff: Duration::from_millis(200),
        ..SimConfig::default()
    };
    let shutdown = CancellationToken::new();
    let sim = tokio::spawn(run(config, shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(800)).await;
    shutdown.cancel();
    // No farewell to send and no connection to close: it stops at once.
    tokio::time::timeout(Duration::from_secs(2), sim)
        .await
        .expect("simulator hung without a broker")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_bad_configuration_is_rejected_before_connecting() {
    let config = SimConfig {
        topic_prefix: "campus/#".to_owned(),
        scenarios: vec![ScheduledScenario {
            after: Duration::ZERO,
            scenario: Scenario::VentilationFailure,
            target: Some("xhsy/heat-a101".to_owned()),
        }],
        ..SimConfig::default()
    };
    let err = run(config, CancellationToken::new()).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("campus/#") && text.contains("heat-a101"),
        "{text}"
    );
}

/// A TCP proxy to Mosquitto whose open connections can be cut, to make the simulator's
/// connection fail for real.
struct CuttingProxy {
    port: u16,
    cut: Arc<Mutex<CancellationToken>>,
    task: JoinHandle<()>,
}

impl CuttingProxy {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(Mutex::new(CancellationToken::new()));
        let generation = cut.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let token = generation.lock().unwrap().clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect((HOST, *PORT)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        () = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        Self { port, cut, task }
    }

    /// Closes every connection open now; new ones are proxied again.
    fn cut_connections(&self) {
        let mut current = self.cut.lock().unwrap();
        current.cancel();
        *current = CancellationToken::new();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_lost_connection_the_simulator_reconnects_and_resends_meta_and_status() {
    let prefix = unique_prefix("simreconnect");
    let recorder = Recorder::subscribe(&format!("{prefix}/#"), &format!("{prefix}-rec")).await;
    let proxy = CuttingProxy::start().await;
    let devices = Campus::demo().devices.len();
    let config = SimConfig {
        port: proxy.port,
        client_id: format!("{prefix}-sim"),
        topic_prefix: prefix.clone(),
        interval: Duration::from_millis(200),
        max_backoff: Duration::from_millis(300),
        ..SimConfig::default()
    };
    let shutdown = CancellationToken::new();
    let sim = tokio::spawn(run(config, shutdown.clone()));
    let metas = |got: &[Received]| got.iter().filter(|m| m.topic.ends_with("/meta")).count();
    assert!(
        recorder
            .wait_for(Duration::from_secs(5), |got| metas(got) >= devices)
            .await,
        "no birth through the proxy"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.cut_connections();
    let rebirth = recorder
        .wait_for(Duration::from_secs(10), |got| metas(got) >= 2 * devices)
        .await;
    let cut_at = std::time::Instant::now();
    // Telemetry flows again after the reconnect.
    let flowing = recorder
        .wait_for(Duration::from_secs(5), |got| {
            got.iter()
                .any(|m| m.topic.contains("/telemetry") && m.at > cut_at)
        })
        .await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), sim)
        .await
        .expect("simulator did not stop")
        .unwrap()
        .unwrap();
    proxy.task.abort();
    let retained: BTreeSet<String> = recorder
        .snapshot()
        .iter()
        .filter(|m| m.topic.ends_with("/meta") || m.topic.ends_with("/status"))
        .map(|m| m.topic.clone())
        .collect();
    recorder.clear_retained(&retained).await;
    assert!(rebirth, "meta was not re-sent after the reconnect");
    assert!(flowing, "telemetry did not resume after the reconnect");
}

//! Alarm latency: a probe device publishes an over-threshold reading, then a normal one, every
//! `interval`; the time from each over-threshold publish to its `alarm` event on the gateway's
//! SSE stream (matched by the reading's `ts`), and for comparison to a plain MQTT subscriber of
//! the same broker (the broker's own delivery latency).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The probe's point and values: the bench profile raises at 1000 on every point.
pub const PROBE_HIGH: f64 = 5000.0;
pub const PROBE_NORMAL: f64 = 20.0;

/// Latency samples in milliseconds.
#[derive(Clone, Debug, Default)]
pub struct Latencies {
    pub alarm_ms: Vec<f64>,
    pub broker_ms: Vec<f64>,
    /// Over-threshold publishes whose alarm event never came (within 5 s).
    pub alarm_missing: usize,
}

/// p50, p99 and max of samples (0 when empty).
pub fn percentiles(samples: &[f64]) -> (f64, f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at =
        |q: f64| sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1];
    (at(0.50), at(0.99), sorted[sorted.len() - 1])
}

type Sent = Arc<Mutex<HashMap<i64, Instant>>>;

/// Runs `samples` over-threshold publishes of the probe on `topic` (alternating with normal
/// ones every `interval`) and collects both latencies.
pub async fn probe(
    mqtt_port: u16,
    http_port: u16,
    topic: &str,
    qos: QoS,
    samples: usize,
    interval: Duration,
    shutdown: &CancellationToken,
) -> anyhow::Result<Latencies> {
    let sent: Sent = Arc::default();
    let alarm_ms = Arc::new(Mutex::new(Vec::new()));
    let broker_ms = Arc::new(Mutex::new(Vec::new()));
    let stop = shutdown.child_token();
    let _stop_on_exit = stop.clone().drop_guard();

    // The SSE stream first, so no event is missed.
    let sse = sse_connect(http_port).await?;
    tokio::spawn(read_alarms(
        sse,
        sent.clone(),
        alarm_ms.clone(),
        stop.clone(),
    ));

    // The plain subscriber.
    let mut options = MqttOptions::new(
        format!("bench-probe-sub-{}", std::process::id()),
        "127.0.0.1",
        mqtt_port,
    );
    options.set_keep_alive(Duration::from_secs(15));
    let (sub, mut sub_loop) = AsyncClient::new(options, 64);
    sub.subscribe(topic, qos).await.context("probe subscribe")?;
    let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
    {
        let sent = sent.clone();
        let broker_ms = broker_ms.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut subscribed = Some(subscribed_tx);
            loop {
                let event = tokio::select! {
                    () = stop.cancelled() => return,
                    event = sub_loop.poll() => event,
                };
                match event {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = subscribed.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let now = Instant::now();
                        if let Some(at) = payload_ts(&p.payload)
                            .and_then(|ts| sent.lock().ok()?.get(&ts).copied())
                        {
                            if let Ok(mut v) = broker_ms.lock() {
                                v.push(now.duration_since(at).as_secs_f64() * 1e3);
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
    }
    tokio::time::timeout(Duration::from_secs(10), subscribed_rx)
        .await
        .context("probe subscriber: no SubAck within 10 s")?
        .context("probe subscriber stopped")?;

    // The probe publisher.
    let mut options = MqttOptions::new(
        format!("bench-probe-pub-{}", std::process::id()),
        "127.0.0.1",
        mqtt_port,
    );
    options.set_keep_alive(Duration::from_secs(15));
    let (publisher, mut pub_loop) = AsyncClient::new(options, 64);
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    event = pub_loop.poll() => if event.is_err() {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    },
                }
            }
        });
    }
    // Start from a normal value so the first over-threshold reading raises.
    publisher
        .publish(
            topic,
            qos,
            false,
            probe_json(crate::load::unix_ms(), PROBE_NORMAL),
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut last_ts = 0;
    for _ in 0..samples {
        for value in [PROBE_HIGH, PROBE_NORMAL] {
            if shutdown.is_cancelled() {
                anyhow::bail!("shut down");
            }
            // A fresh ms timestamp per publish: it is the key events are matched by.
            let ts = crate::load::unix_ms().max(last_ts + 1);
            last_ts = ts;
            let at = Instant::now();
            if value == PROBE_HIGH {
                if let Ok(mut s) = sent.lock() {
                    s.insert(ts, at);
                }
            }
            publisher
                .publish(topic, qos, false, probe_json(ts, value))
                .await?;
            tokio::time::sleep_until(at + interval).await;
        }
    }
    // Late events: at most 5 s.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let got = alarm_ms.lock().map(|v| v.len()).unwrap_or(0);
        if got >= samples {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = publisher.disconnect().await;
    let _ = sub.disconnect().await;
    let alarm_ms = alarm_ms.lock().map(|v| v.clone()).unwrap_or_default();
    let broker_ms = broker_ms.lock().map(|v| v.clone()).unwrap_or_default();
    Ok(Latencies {
        alarm_missing: samples.saturating_sub(alarm_ms.len()),
        alarm_ms,
        broker_ms,
    })
}

fn probe_json(ts: i64, value: f64) -> String {
    format!("{{\"ts\":{ts},\"p0\":{value}}}")
}

fn payload_ts(payload: &[u8]) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    v.get("ts")?.as_i64()
}

/// Opens `GET /api/v1/alarms/stream` over HTTP/1.0 (so the body is the raw event stream, not
/// chunked) and returns the reader positioned after the headers.
async fn sse_connect(port: u16) -> anyhow::Result<BufReader<TcpStream>> {
    let connect = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(
                format!(
                    "GET /api/v1/alarms/stream HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\
                     Accept: text/event-stream\r\n\r\n"
                )
                .as_bytes(),
            )
            .await?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).await?;
        if line.split_whitespace().nth(1).is_none_or(|s| s != "200") {
            anyhow::bail!("alarm stream: {}", line.trim());
        }
        loop {
            line.clear();
            if reader.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                break;
            }
        }
        anyhow::Ok(reader)
    };
    tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .context("alarm stream: no answer within 10 s")?
}

/// Reads `alarm` events; a raise (condition active) of a probe reading we sent is a sample.
async fn read_alarms(
    mut reader: BufReader<TcpStream>,
    sent: Sent,
    alarm_ms: Arc<Mutex<Vec<f64>>>,
    stop: CancellationToken,
) {
    let mut event = String::new();
    let mut line = String::new();
    // A reading raises once; a repeated event of it (e.g. a re-sent message) is no new sample.
    let mut seen = std::collections::HashSet::new();
    loop {
        line.clear();
        let read = tokio::select! {
            () = stop.cancelled() => return,
            read = reader.read_line(&mut line) => read,
        };
        // A line over the buffer grows it; events are small, and the stream ends with the run.
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let now = Instant::now();
        let text = line.trim_end();
        if let Some(name) = text.strip_prefix("event:") {
            event = name.trim().to_owned();
        } else if let Some(data) = text.strip_prefix("data:") {
            if event != "alarm" {
                continue;
            }
            let Ok(v) = serde_json::from_str::<serde_json::Value>(data.trim_start()) else {
                continue;
            };
            if v.get("condition_active").and_then(|a| a.as_bool()) != Some(true) {
                continue;
            }
            let Some(ts) = v.get("reading_ts").and_then(|t| t.as_i64()) else {
                continue;
            };
            if !seen.insert(ts) {
                continue;
            }
            let at = sent.lock().ok().and_then(|s| s.get(&ts).copied());
            if let (Some(at), Ok(mut v)) = (at, alarm_ms.lock()) {
                v.push(now.duration_since(at).as_secs_f64() * 1e3);
            }
        } else if text.is_empty() {
            event.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_hundred_samples() {
        let samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentiles(&samples), (50.0, 99.0, 100.0));
        assert_eq!(percentiles(&[]), (0.0, 0.0, 0.0));
        assert_eq!(percentiles(&[3.0]), (3.0, 3.0, 3.0));
    }

    #[test]
    fn probe_payload_carries_its_ts() {
        assert_eq!(
            payload_ts(probe_json(1_700_000_000_123, PROBE_HIGH).as_bytes()),
            Some(1_700_000_000_123)
        );
    }
}

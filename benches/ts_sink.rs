//! Benchmark of the time-series sink (prints numbers; `cargo bench --bench ts_sink`):
//! line-protocol encoding alone, sink throughput into a real VictoriaMetrics (`/api/v2/write`,
//! batch 5000, plain and gzip), and the replay rate of a 1,000,000-line disk spool.
//! Needs `victoria-metrics` installed (Debian package `victoria-metrics`).
#![allow(clippy::unwrap_used)]

#[path = "../tests/support/tsdb.rs"]
mod tsdb;

use std::sync::Arc;
use std::time::{Duration, Instant};

use campusguard::model::{Quality, Reading, SensorId, Source, TaggedReading, Value};
use campusguard::store::timeseries::line::{Dialect, LineEncoder};
use campusguard::store::timeseries::spool::Spool;
use campusguard::store::timeseries::{
    run, BoolEncoding, TimeseriesBatch, TimeseriesConfig, TimeseriesKind, TimeseriesStats,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const LINES: u64 = 1_000_000;
const BATCH: usize = 5000;
/// 50 schools × 20 devices × 4 points: a district-sized set of series.
const SENSORS: usize = 4000;

fn sensors() -> Vec<TaggedReading> {
    let points = ["temp_c", "rh_pct", "voc_ppm", "fan_on"];
    (0..SENSORS)
        .map(|i| TaggedReading {
            reading: Reading {
                sensor: SensorId::new(
                    &format!("school{:02}", i / 80),
                    &format!("cab{:02}", (i / 4) % 20),
                    points[i % 4],
                ),
                ts_ms: 0,
                value: Value::Number(0.0),
                quality: Quality::Good,
                source: Source::Mqtt,
            },
            profile: Arc::from("chem_cabinet"),
            building: Arc::from("Lab Block"),
            room: Arc::from(format!("{}", 100 + i % 37).as_str()),
        })
        .collect()
}

fn reading(templates: &[TaggedReading], i: u64, base: i64) -> TaggedReading {
    let mut r = templates[(i as usize) % templates.len()].clone();
    r.reading.ts_ms = base + (i / templates.len() as u64) as i64 * 1000;
    r.reading.value = if r.reading.sensor.point.as_ref() == "fan_on" {
        Value::Bool(i % 3 == 0)
    } else {
        Value::Number(20.0 + (i % 1000) as f64 / 100.0)
    };
    r
}

fn base_ts() -> i64 {
    // Far enough back that a million readings (250 per sensor, 1 s apart) end before now.
    (campusguard::model::now_ms() / 1000 - 6 * 3600) * 1000
}

fn config(url: &str, gzip: bool) -> TimeseriesConfig {
    TimeseriesConfig {
        kind: TimeseriesKind::InfluxDb2,
        url: url.into(),
        org: Some("bench".into()),
        bucket: Some("bench".into()),
        batch_size: BATCH,
        gzip,
        spool_max_bytes: 4 << 30,
        ..TimeseriesConfig::default()
    }
}

fn encode_rate(templates: &[TaggedReading]) {
    let encoder = LineEncoder::new(Dialect::Spec, BoolEncoding::Float);
    let base = base_ts();
    let readings: Vec<TaggedReading> = (0..LINES).map(|i| reading(templates, i, base)).collect();
    let mut buf = Vec::with_capacity(BATCH * 160);
    let mut bytes = 0usize;
    let start = Instant::now();
    for chunk in readings.chunks(BATCH) {
        buf.clear();
        for r in chunk {
            encoder.encode(r, &mut buf).unwrap();
        }
        bytes += buf.len();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "encode: {LINES} lines in {secs:.2} s = {:.0} lines/s ({:.0} bytes/line)",
        LINES as f64 / secs,
        bytes as f64 / LINES as f64
    );
}

async fn wait_written(stats: &TimeseriesStats, n: u64, limit: Duration) -> Duration {
    let start = Instant::now();
    while stats.snapshot().lines_written < n {
        assert!(start.elapsed() < limit, "stalled: {:?}", stats.snapshot());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

async fn throughput(vm_url: &str, templates: &[TaggedReading], gzip: bool) {
    let data = tempfile::tempdir().unwrap();
    let (tx, rx) = mpsc::channel::<TimeseriesBatch>(64);
    let stats = Arc::new(TimeseriesStats::default());
    let shutdown = CancellationToken::new();
    let sink = tokio::spawn(run(
        config(vm_url, gzip),
        data.path().to_path_buf(),
        rx,
        stats.clone(),
        shutdown.clone(),
    ));
    let base = base_ts() + if gzip { 1 } else { 0 };
    let templates = templates.to_vec();
    let start = Instant::now();
    let producer = tokio::spawn(async move {
        let mut i = 0;
        while i < LINES {
            let chunk: Vec<TaggedReading> = (i..(i + 500).min(LINES))
                .map(|j| reading(&templates, j, base))
                .collect();
            i += chunk.len() as u64;
            tx.send(chunk.into()).await.unwrap();
        }
    });
    wait_written(&stats, LINES, Duration::from_secs(600)).await;
    let secs = start.elapsed().as_secs_f64();
    producer.await.unwrap();
    shutdown.cancel();
    sink.await.unwrap().unwrap();
    let s = stats.snapshot();
    println!(
        "sink → VictoriaMetrics (gzip {gzip}): {LINES} lines in {secs:.2} s = {:.0} lines/s \
         ({} batches, {} via the spool, {} failed)",
        LINES as f64 / secs,
        s.batches_ok,
        s.batches_replayed,
        s.batches_failed
    );
}

async fn replay(vm_url: &str, templates: &[TaggedReading]) {
    let data = tempfile::tempdir().unwrap();
    let encoder = LineEncoder::new(Dialect::Spec, BoolEncoding::Float);
    let base = base_ts() + 2;
    let start = Instant::now();
    {
        let (mut spool, _) = Spool::open(&data.path().join("spool"), 4 << 30).unwrap();
        let mut buf = Vec::new();
        let mut i = 0;
        while i < LINES {
            buf.clear();
            let end = (i + BATCH as u64).min(LINES);
            for j in i..end {
                encoder
                    .encode(&reading(templates, j, base), &mut buf)
                    .unwrap();
            }
            spool.append(&buf, end - i, 0).unwrap();
            i = end;
        }
        println!(
            "spool: {LINES} lines ({} MB) written in {:.2} s",
            spool.bytes() / 1_000_000,
            start.elapsed().as_secs_f64()
        );
    }
    let (_tx, rx) = mpsc::channel::<TimeseriesBatch>(1);
    let stats = Arc::new(TimeseriesStats::default());
    let shutdown = CancellationToken::new();
    let start = Instant::now();
    let sink = tokio::spawn(run(
        config(vm_url, false),
        data.path().to_path_buf(),
        rx,
        stats.clone(),
        shutdown.clone(),
    ));
    wait_written(&stats, LINES, Duration::from_secs(600)).await;
    let secs = start.elapsed().as_secs_f64();
    shutdown.cancel();
    sink.await.unwrap().unwrap();
    println!(
        "replay of a {LINES}-line spool → VictoriaMetrics: {secs:.2} s = {:.0} lines/s",
        LINES as f64 / secs
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let templates = sensors();
    encode_rate(&templates);
    runtime.block_on(async {
        let vm = tsdb::VictoriaMetrics::start().await;
        throughput(&vm.url(), &templates, false).await;
        throughput(&vm.url(), &templates, true).await;
        replay(&vm.url(), &templates).await;
    });
}

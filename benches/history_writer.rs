//! Benchmark of the local history writer alone (prints numbers; `cargo bench --bench
//! history_writer`): 1,000,000 readings over 10,000 sensors, written in batches of 50,000 (the
//! default `history_batch_size`) the way `run_history_writer` writes them, one transaction per
//! batch; then a 24 h range query of one sensor.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use campusguard::model::{now_ms, Quality, Reading, SensorId, Source, Value};
use campusguard::store::{LocalStore, StorageConfig};

const READINGS: usize = 1_000_000;
const SENSORS: usize = 10_000;
const BATCH: usize = 50_000;

fn readings(base_ms: i64) -> Vec<Reading> {
    let sensors: Vec<SensorId> = (0..SENSORS)
        .map(|i| {
            SensorId::new(
                &format!("school{:02}", i / 1000),
                &format!("dev{:03}", (i / 10) % 100),
                &format!("p{}", i % 10),
            )
        })
        .collect();
    (0..READINGS)
        .map(|n| Reading {
            sensor: sensors[n % SENSORS].clone(),
            // Every sensor reports once a second.
            ts_ms: base_ms + (n / SENSORS) as i64 * 1000,
            value: if n % 10 == 9 {
                Value::Bool(n % 3 == 0)
            } else {
                Value::Number(n as f64 * 0.25)
            },
            quality: Quality::Good,
            source: Source::Mqtt,
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let config = StorageConfig {
        data_dir: dir.path().to_path_buf(),
        ..StorageConfig::default()
    };
    let store = LocalStore::open(&config).await.unwrap();
    let base = now_ms() - 3_600_000;
    let all = readings(base);

    let started = Instant::now();
    for batch in all.chunks(BATCH) {
        store.write_history(Arc::new(batch.to_vec())).await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "history write: {READINGS} readings over {SENSORS} sensors, batches of {BATCH}: {secs:.2} s = {:.0} rows/s",
        READINGS as f64 / secs
    );

    let sensor = all[SENSORS / 2].sensor.to_string();
    let started = Instant::now();
    let points = store
        .history(&sensor, base - 86_400_000, base + 86_400_000, 10_000)
        .await
        .unwrap();
    println!(
        "history query: {} points of one sensor in {:.1} ms",
        points.len(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(points.len(), READINGS / SENSORS);
    store.close().await;
}

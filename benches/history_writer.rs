//! Benchmark of the local history alone (prints numbers; `cargo bench --bench history_writer`,
//! or `-- append` / `-- legacy` for one layout per process, so each peak RSS is its own).
//!
//! For each layout:
//! 1. write rate: 1,000,000 readings over 10,000 sensors (one a second each), in batches of
//!    50,000 (the default `history_batch_size`), one transaction per batch; the append layout
//!    runs a compaction step after each batch, as `run_history_writer` does;
//! 2. query: 10,000 sensors × 24 h at one reading a minute (14.4 M readings, written the same
//!    way; a reading every 10 s would be 86 M, too long for this machine), then 500 queries of
//!    one random sensor's whole 24 h (1,440 points each): p50 / p99 / max.
//!
//! `legacy` is the layout before the append history, rebuilt here with the same SQL and
//! pragmas (`readings_d<day>` keyed `(sensor_id, ts)` `WITHOUT ROWID`, `INSERT OR REPLACE`),
//! so both run in one build under the same load.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use campusguard::model::{now_ms, Quality, Reading, SensorId, Source, Value};
use campusguard::store::{LocalStore, StorageConfig};
use rusqlite::{params, Connection, OptionalExtension};

const SENSORS: usize = 10_000;
const BATCH: usize = 50_000;
const WRITE_READINGS: usize = 1_000_000;
const DAY_MS: i64 = 86_400_000;
const QUERIES: usize = 500;

fn sensors() -> Vec<SensorId> {
    (0..SENSORS)
        .map(|i| {
            SensorId::new(
                &format!("school{:02}", i / 1000),
                &format!("dev{:03}", (i / 10) % 100),
                &format!("p{}", i % 10),
            )
        })
        .collect()
}

/// Reading `n` of a run where every sensor reports once per `step_ms`, all interleaved.
fn reading(sensors: &[SensorId], base_ms: i64, step_ms: i64, n: usize) -> Reading {
    Reading {
        sensor: sensors[n % SENSORS].clone(),
        ts_ms: base_ms + (n / SENSORS) as i64 * step_ms,
        value: if n % 10 == 9 {
            Value::Bool(n % 3 == 0)
        } else {
            Value::Number(20.0 + (n % 97) as f64 * 0.25)
        },
        quality: Quality::Good,
        source: Source::Mqtt,
    }
}

/// The layout under test, behind the calls the gateway makes.
enum Store {
    Append(LocalStore),
    Legacy(Arc<Mutex<Legacy>>),
}

impl Store {
    async fn open(kind: &str, dir: &Path) -> Store {
        if kind == "append" {
            let config = StorageConfig {
                data_dir: dir.to_path_buf(),
                ..StorageConfig::default()
            };
            Store::Append(LocalStore::open(&config).await.unwrap())
        } else {
            Store::Legacy(Arc::new(Mutex::new(Legacy::open(&dir.join("history.db")))))
        }
    }

    /// Writes one batch the way `run_history_writer` does.
    async fn write(&self, batch: Vec<Reading>) {
        match self {
            Store::Append(store) => {
                store.write_history(Arc::new(batch)).await.unwrap();
                store.compact_history().await.unwrap();
            }
            Store::Legacy(legacy) => {
                let legacy = legacy.clone();
                tokio::task::spawn_blocking(move || legacy.lock().unwrap().write(&batch))
                    .await
                    .unwrap();
            }
        }
    }

    async fn history(&self, sensor: String, from: i64, to: i64) -> usize {
        match self {
            Store::Append(store) => store
                .history(&sensor, from, to, 10_000)
                .await
                .unwrap()
                .len(),
            Store::Legacy(legacy) => {
                let legacy = legacy.clone();
                tokio::task::spawn_blocking(move || {
                    legacy.lock().unwrap().history(&sensor, from, to, 10_000)
                })
                .await
                .unwrap()
            }
        }
    }

    async fn close(self) {
        if let Store::Append(store) = self {
            store.close().await;
        }
    }
}

/// Writes `total` readings (every sensor once per `step_ms` from `base_ms`); returns rows/s.
async fn fill(
    store: &Store,
    sensors: &[SensorId],
    base_ms: i64,
    step_ms: i64,
    total: usize,
) -> f64 {
    let started = Instant::now();
    let mut n = 0;
    while n < total {
        let end = (n + BATCH).min(total);
        let batch = (n..end)
            .map(|i| reading(sensors, base_ms, step_ms, i))
            .collect();
        store.write(batch).await;
        n = end;
    }
    total as f64 / started.elapsed().as_secs_f64()
}

fn rss() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or("?".to_string(), |kb| format!("{} MiB", kb / 1024))
    };
    format!("RSS {} (peak {})", field("VmRSS:"), field("VmHWM:"))
}

fn file_size(dir: &Path) -> String {
    let bytes: u64 = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    format!("{} MiB on disk", bytes / (1024 * 1024))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

async fn run(kind: &str) {
    let sensors = sensors();

    // 1. Write rate.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(kind, dir.path()).await;
    let base = now_ms() - 3_600_000;
    let rate = fill(&store, &sensors, base, 1000, WRITE_READINGS).await;
    println!(
        "[{kind}] write: {WRITE_READINGS} readings over {SENSORS} sensors, batches of {BATCH}: {rate:.0} rows/s; {}",
        rss()
    );
    let sensor = sensors[SENSORS / 2].to_string();
    let started = Instant::now();
    let points = store.history(sensor, base - DAY_MS, base + DAY_MS).await;
    println!(
        "[{kind}] query: {points} points of one sensor in {:.1} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(points, WRITE_READINGS / SENSORS);
    store.close().await;
    drop(dir);

    // 2. One sensor's 24 h among 10,000 sensors × 24 h.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(kind, dir.path()).await;
    let base = now_ms() - DAY_MS;
    let day_readings = SENSORS * 1440;
    let rate = fill(&store, &sensors, base, 60_000, day_readings).await;
    println!(
        "[{kind}] 24 h at 1/min: {day_readings} readings written at {rate:.0} rows/s; {}; {}",
        file_size(dir.path()),
        rss()
    );
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut took = Vec::with_capacity(QUERIES);
    for _ in 0..QUERIES {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let sensor = sensors[(seed >> 33) as usize % SENSORS].to_string();
        let started = Instant::now();
        let points = store.history(sensor, base, base + DAY_MS).await;
        took.push(started.elapsed());
        assert_eq!(points, 1440);
    }
    took.sort();
    println!(
        "[{kind}] query of one sensor's 24 h (1,440 points), {QUERIES} random sensors: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {}",
        percentile(&took, 0.50),
        percentile(&took, 0.99),
        percentile(&took, 1.0),
        rss()
    );
    store.close().await;
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kinds: Vec<&str> = ["legacy", "append"]
        .into_iter()
        .filter(|k| args.iter().any(|a| a == k))
        .collect();
    let kinds = if kinds.is_empty() {
        vec!["legacy", "append"]
    } else {
        kinds
    };
    for kind in kinds {
        run(kind).await;
    }
}

/// The history layout before the append history (same SQL and pragmas as it had).
struct Legacy {
    conn: Connection,
    sensors: HashMap<String, i64>,
    days: Vec<i64>,
}

impl Legacy {
    fn open(path: &Path) -> Legacy {
        let conn = Connection::open(path).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
        conn.pragma_update(None, "cache_size", -32_768).unwrap();
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS sensors (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE);",
        )
        .unwrap();
        Legacy {
            conn,
            sensors: HashMap::new(),
            days: Vec::new(),
        }
    }

    fn write(&mut self, readings: &[Reading]) {
        let tx = self.conn.transaction().unwrap();
        let mut current: Option<i64> = None;
        for r in readings {
            let path = r.sensor.to_string();
            let id = match self.sensors.get(&path) {
                Some(id) => *id,
                None => {
                    tx.prepare_cached(
                        "INSERT INTO sensors (path) VALUES (?1) ON CONFLICT (path) DO NOTHING",
                    )
                    .unwrap()
                    .execute([&path])
                    .unwrap();
                    let id: i64 = tx
                        .prepare_cached("SELECT id FROM sensors WHERE path = ?1")
                        .unwrap()
                        .query_row([&path], |row| row.get(0))
                        .unwrap();
                    self.sensors.insert(path, id);
                    id
                }
            };
            let day = r.ts_ms.div_euclid(DAY_MS);
            if current != Some(day) && !self.days.contains(&day) {
                tx.execute_batch(&format!(
                    "CREATE TABLE IF NOT EXISTS readings_d{day} (sensor_id INTEGER NOT NULL,
                     ts INTEGER NOT NULL, value REAL NOT NULL, is_bool INTEGER NOT NULL,
                     source INTEGER NOT NULL, PRIMARY KEY (sensor_id, ts)) WITHOUT ROWID"
                ))
                .unwrap();
                self.days.push(day);
            }
            current = Some(day);
            tx.prepare_cached(&format!(
                "INSERT OR REPLACE INTO readings_d{day} (sensor_id, ts, value, is_bool, source) \
                 VALUES (?1, ?2, ?3, ?4, ?5)"
            ))
            .unwrap()
            .execute(params![
                id,
                r.ts_ms,
                r.value.as_f64(),
                matches!(r.value, Value::Bool(_)),
                0
            ])
            .unwrap();
        }
        tx.commit().unwrap();
    }

    fn history(&mut self, sensor: &str, from: i64, to: i64, limit: i64) -> usize {
        let tx = self.conn.transaction().unwrap();
        let Some(id) = tx
            .prepare_cached("SELECT id FROM sensors WHERE path = ?1")
            .unwrap()
            .query_row([sensor], |row| row.get::<_, i64>(0))
            .optional()
            .unwrap()
        else {
            return 0;
        };
        let mut days: Vec<i64> = tx
            .prepare_cached(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'readings_d*'",
            )
            .unwrap()
            .query_map([], |row| row.get::<_, String>(0))
            .unwrap()
            .filter_map(|n| n.ok()?.strip_prefix("readings_d")?.parse().ok())
            .collect();
        days.sort_unstable();
        let mut points: Vec<(i64, f64, bool)> = Vec::new();
        for day in days {
            if day < from.div_euclid(DAY_MS) || day > to.div_euclid(DAY_MS) {
                continue;
            }
            let mut query = tx
                .prepare_cached(&format!(
                    "SELECT ts, value, is_bool FROM readings_d{day} \
                     WHERE sensor_id = ?1 AND ts >= ?2 AND ts <= ?3 ORDER BY ts LIMIT ?4"
                ))
                .unwrap();
            let rows = query
                .query_map(params![id, from, to, limit], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .unwrap();
            points.extend(rows.map(|r| r.unwrap()));
        }
        points.len()
    }
}

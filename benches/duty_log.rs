//! Benchmark of the duty log's reads (prints numbers; `cargo bench --bench duty_log`): the same
//! journal as `benches/alarm_history.rs` (1,000,000 alarms over a year, 20 schools, each with
//! raised, acknowledged and cleared rows: 3,000,000 journal rows), then a day's events of a
//! room read the way `GET /api/v1/duty/log` reads them (`LocalStore::duty_events`: one range
//! of `alarm_journal_at`) for a room of one school and of three: p50 and p99. It also times
//! building `alarm_journal_at` over the whole journal, which migration 0022 does once on an
//! upgraded gateway's first start.
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use campusguard::store::{LocalStore, StorageConfig};

#[path = "support/journal.rs"]
mod journal;
use journal::{fill, percentile, ALARMS, YEAR_MS};
const DAY_MS: i64 = 86_400_000;
const RUNS: usize = 200;

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let config = StorageConfig {
        data_dir: dir.path().to_path_buf(),
        ..StorageConfig::default()
    };
    let store = LocalStore::open(&config).await.unwrap();
    let start_ms = campusguard::model::now_ms() - YEAR_MS;
    let started = Instant::now();
    fill(&store, start_ms).await;
    println!(
        "duty log: {ALARMS} alarms and {} journal rows written in {:.1} s",
        3 * ALARMS,
        started.elapsed().as_secs_f64()
    );
    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    // What migration 0022 costs an upgraded gateway: the journal's `at` index, built once.
    let mut conn = store.pool().acquire().await.unwrap();
    sqlx::query("DROP INDEX IF EXISTS alarm_journal_at")
        .execute(&mut *conn)
        .await
        .unwrap();
    let t = Instant::now();
    sqlx::query("CREATE INDEX IF NOT EXISTS alarm_journal_at ON alarm_journal (at)")
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    println!(
        "building alarm_journal_at over {} journal rows: {:.2} s",
        3 * ALARMS,
        t.elapsed().as_secs_f64()
    );

    println!("load average before the reads: {}", load().trim());
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut below = |n: i64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as i64
    };
    for (name, width) in [("a room of one school", 1), ("a room of three schools", 3)] {
        let mut times = Vec::with_capacity(RUNS);
        let mut events = 0;
        for _ in 0..RUNS {
            let first = below(20 - width + 1);
            let schools: Vec<String> = (first..first + width)
                .map(|s| format!("school{s}"))
                .collect();
            let from = start_ms + below(360) * DAY_MS;
            let t = Instant::now();
            let day = store
                .duty_events(&schools, from, from + DAY_MS, 20_000)
                .await
                .unwrap();
            times.push(t.elapsed());
            events += day.len();
        }
        times.sort();
        println!(
            "a day's duty log events, {name}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({:.0} events/day)",
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            percentile(&times, 0.99).as_secs_f64() * 1e3,
            times.last().unwrap().as_secs_f64() * 1e3,
            events as f64 / RUNS as f64,
        );
    }
    println!("load average after the reads: {}", load().trim());
    store.close().await;
}

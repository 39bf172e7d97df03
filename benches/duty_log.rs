//! Benchmark of the duty log's reads (prints numbers; `cargo bench --bench duty_log`): the same
//! journal as `benches/alarm_history.rs` (1,000,000 alarms over a year, 20 schools, each with
//! raised, acknowledged and cleared rows: 3,000,000 journal rows), then a day's events of a
//! room read the way `GET /api/v1/duty/log` reads them (`LocalStore::duty_events`: one range
//! of `alarm_journal_at`) for a room of one school and of three: p50 and p99. It also times
//! building `alarm_journal_at` over the whole journal, which migration 0022 does once on an
//! upgraded gateway's first start.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use campusguard::alarms::{Alarm, AlarmState};
use campusguard::model::{AlarmClass, SensorId, Severity};
use campusguard::store::{LocalStore, StorageConfig};

const ALARMS: i64 = 1_000_000;
const YEAR_MS: i64 = 365 * 86_400_000;
const DAY_MS: i64 = 86_400_000;
const RUNS: usize = 200;

/// A serialized alarm, for its JSON shape.
fn template() -> String {
    let sensor = SensorId::new("school0", "dev0", "smoke");
    serde_json::to_string(&Alarm {
        id: 0,
        school: sensor.school.clone(),
        device: sensor.device.clone(),
        point: sensor.point.clone(),
        sensor,
        rule: "smoke".into(),
        class: AlarmClass::Fire,
        severity: Severity::Alarm,
        state: AlarmState::Cleared,
        value: None,
        threshold: Some(0.5),
        message: "烟感报警".into(),
        raised_at: 0,
        updated_at: 0,
        reading_ts: 0,
        cleared_at: Some(0),
        condition_active: false,
        acked_by: Some("值班员".into()),
        acked_at: Some(0),
        ack_comment: Some("已到场处置".into()),
        shelved: None,
        drill: false,
        occurrences: 1,
    })
    .unwrap()
}

async fn fill(store: &LocalStore, start_ms: i64) {
    // Alarm n: raised at an even spread over the year, school n % 20, device n % 400 (20 a
    // school), building by device, class and state by n.
    let sql = format!(
        "WITH RECURSIVE n(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2), \
         a AS (SELECT i, \
           'school' || (i % 20) AS school, 'dev' || (i % 400) AS device, \
           '楼' || ((i % 400) / 20 % 5) AS building, \
           ?3 + i * {step} AS at, \
           CASE WHEN i % 100 < 5 THEN 'fire' WHEN i % 100 < 7 THEN 'gas' \
                WHEN i % 100 < 67 THEN 'supervisory' ELSE 'fault' END AS class, \
           CASE WHEN i % 1000 = 0 THEN 'active_acked' ELSE 'cleared' END AS state FROM n) \
         INSERT INTO alarms (id, sensor, rule, school, class, state, raised_at, updated_at, doc, device, building) \
         SELECT i, school || '/' || device || '/smoke', 'smoke', school, class, state, at, at + 60000, \
           json_set(?4, '$.id', i, '$.sensor', school || '/' || device || '/smoke', \
             '$.school', school, '$.device', device, '$.class', class, '$.state', state, \
             '$.raised_at', at, '$.updated_at', at + 60000, '$.reading_ts', at, \
             '$.cleared_at', at + 60000, '$.acked_at', at + 5000, \
             '$.message', '烟感报警 ' || device), \
           device, building FROM a",
        step = YEAR_MS / ALARMS
    );
    let template = template();
    let chunk = 100_000;
    for first in (1..=ALARMS).step_by(chunk as usize) {
        let last = (first + chunk - 1).min(ALARMS);
        let mut tx = store.pool().begin().await.unwrap();
        sqlx::query(&sql)
            .bind(first)
            .bind(last)
            .bind(start_ms)
            .bind(&template)
            .execute(&mut *tx)
            .await
            .unwrap();
        // The journal: raised, acknowledged, cleared.
        sqlx::query(
            "INSERT INTO alarm_journal (alarm_id, at, transition, user, comment, state, severity, value, false_alarm) \
             SELECT id, raised_at + t.d, t.name, t.user, NULL, state, 'alarm', NULL, 0 FROM alarms, \
             (SELECT 0 AS d, 'raised' AS name, 'system' AS user UNION ALL \
              SELECT 5000, 'acknowledged', '值班员' UNION ALL SELECT 60000, 'cleared', 'system') t \
             WHERE id BETWEEN ? AND ?",
        )
        .bind(first)
        .bind(last)
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

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

//! Benchmark of the alarm history (prints numbers; `cargo bench --bench alarm_history`): a
//! journal of 1,000,000 alarms over a year (20 schools, 5 buildings each, 400 devices; 5 %
//! fire, 2 % gas, 60 % supervisory, 33 % fault; one in a thousand still open), then pages of
//! 100 read the way `GET /api/v1/alarms/history` reads them, per kind of filter: p50 and p99.
//!
//! The alarms are written with SQL in the store the gateway opens (its migrations and indexes),
//! each row's JSON made from a real serialized alarm, so the pages decode what the gateway
//! would.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use campusguard::alarms::{Alarm, AlarmState};
use campusguard::model::{AlarmClass, SensorId, Severity};
use campusguard::store::{AlarmFilter, HistoryCursor, LocalStore, StorageConfig};

const ALARMS: i64 = 1_000_000;
const YEAR_MS: i64 = 365 * 86_400_000;
const RUNS: usize = 200;
const PAGE: u32 = 100;

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

/// A small deterministic generator (xorshift), so runs compare.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: i64) -> i64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as i64
    }
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
    let size = std::fs::metadata(config.database_path())
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "alarm history: {ALARMS} alarms and {} journal rows written in {:.1} s ({:.0} MB)",
        3 * ALARMS,
        started.elapsed().as_secs_f64(),
        size as f64 / 1e6
    );

    // Pages are timed by the wall clock: on a shared machine the load is part of the result.
    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average before the pages: {}", load().trim());
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let month = YEAR_MS / 12;
    type Make = fn(&mut Rng, i64, i64) -> (AlarmFilter, Option<HistoryCursor>);
    let scenarios: Vec<(&str, Make)> = vec![
        ("newest, no filter", |_, _, _| {
            (AlarmFilter::default(), None)
        }),
        ("one school", |r, _, _| {
            (
                AlarmFilter {
                    schools: Some(vec![format!("school{}", r.below(20))]),
                    ..Default::default()
                },
                None,
            )
        }),
        ("scoped to 3 schools, fire", |r, _, _| {
            let first = r.below(18);
            (
                AlarmFilter {
                    schools: Some((first..first + 3).map(|s| format!("school{s}")).collect()),
                    class: Some(AlarmClass::Fire),
                    ..Default::default()
                },
                None,
            )
        }),
        ("school + building + class, a month", |r, start, month| {
            let from = start + r.below(11) * month;
            (
                AlarmFilter {
                    schools: Some(vec![format!("school{}", r.below(20))]),
                    building: Some(format!("楼{}", r.below(5))),
                    class: Some(AlarmClass::Supervisory),
                    from_ms: Some(from),
                    to_ms: Some(from + month),
                    ..Default::default()
                },
                None,
            )
        }),
        ("gas, a month", |r, start, month| {
            let from = start + r.below(11) * month;
            (
                AlarmFilter {
                    class: Some(AlarmClass::Gas),
                    from_ms: Some(from),
                    to_ms: Some(from + month),
                    ..Default::default()
                },
                None,
            )
        }),
        ("state active_acked (1,000 of them)", |_, _, _| {
            (
                AlarmFilter {
                    state: Some(AlarmState::ActiveAcked),
                    ..Default::default()
                },
                None,
            )
        }),
        ("state cleared + fault", |_, _, _| {
            (
                AlarmFilter {
                    state: Some(AlarmState::Cleared),
                    class: Some(AlarmClass::Fault),
                    ..Default::default()
                },
                None,
            )
        }),
        ("deep page (cursor anywhere in the year)", |r, start, _| {
            let id = 1 + r.below(ALARMS - 1);
            (
                AlarmFilter::default(),
                Some(HistoryCursor {
                    raised_at: start + id * (YEAR_MS / ALARMS),
                    id,
                }),
            )
        }),
        ("one school, deep page", |r, start, _| {
            let id = 1 + r.below(ALARMS - 1);
            (
                AlarmFilter {
                    schools: Some(vec![format!("school{}", r.below(20))]),
                    ..Default::default()
                },
                Some(HistoryCursor {
                    raised_at: start + id * (YEAR_MS / ALARMS),
                    id,
                }),
            )
        }),
        ("text `dev17`, one school, a month", |r, start, month| {
            let from = start + r.below(11) * month;
            (
                AlarmFilter {
                    schools: Some(vec!["school17".into()]),
                    text: Some("dev17".into()),
                    from_ms: Some(from),
                    to_ms: Some(from + month),
                    ..Default::default()
                },
                None,
            )
        }),
    ];
    let mut all = Vec::new();
    for (name, make) in &scenarios {
        let mut times = Vec::with_capacity(RUNS);
        let mut rows = 0;
        for _ in 0..RUNS {
            let (filter, after) = make(&mut rng, start_ms, month);
            let t = Instant::now();
            let page = store.alarm_history(&filter, after, PAGE).await.unwrap();
            times.push(t.elapsed());
            rows += page.rows.len();
        }
        times.sort();
        println!(
            "history page of {PAGE}, {name}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({:.0} rows/page)",
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            percentile(&times, 0.99).as_secs_f64() * 1e3,
            times.last().unwrap().as_secs_f64() * 1e3,
            rows as f64 / RUNS as f64,
        );
        all.extend(times);
    }
    all.sort();
    println!(
        "history page of {PAGE}, all {} pages over {ALARMS} alarms: p50 {:.2} ms, p99 {:.2} ms",
        all.len(),
        percentile(&all, 0.5).as_secs_f64() * 1e3,
        percentile(&all, 0.99).as_secs_f64() * 1e3,
    );

    println!("load average after the pages: {}", load().trim());

    // A whole export's reads: every alarm of one school (50,000), 2,000 a query.
    let filter = AlarmFilter {
        schools: Some(vec!["school3".into()]),
        ..Default::default()
    };
    let t = Instant::now();
    let (mut after, mut n) = (None, 0);
    loop {
        let page = store.alarm_history(&filter, after, 2000).await.unwrap();
        n += page.rows.len();
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "export reads: {n} alarms of one school in {secs:.2} s = {:.0} alarms/s",
        n as f64 / secs
    );
    store.close().await;
}

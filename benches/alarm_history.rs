//! Benchmark of the alarm history (prints numbers; `cargo bench --bench alarm_history`): a
//! journal of 1,000,000 alarms over a year (20 schools, 5 buildings each, 400 devices; 5 %
//! fire, 2 % gas, 60 % supervisory, 33 % fault; one in a thousand still open), then pages of
//! 100 read the way `GET /api/v1/alarms/history` reads them, per kind of filter: p50 and p99.
//!
//! The alarms are written with SQL in the store the gateway opens (its migrations and indexes),
//! each row's JSON made from a real serialized alarm, so the pages decode what the gateway
//! would.
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use campusguard::alarms::AlarmState;
use campusguard::model::AlarmClass;
use campusguard::store::{AlarmFilter, HistoryCursor, LocalStore, StorageConfig};

#[path = "support/journal.rs"]
mod journal;
use journal::{fill, percentile, ALARMS, YEAR_MS};
const RUNS: usize = 200;
const PAGE: u32 = 100;

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

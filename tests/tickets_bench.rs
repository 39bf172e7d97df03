//! Benchmark (ignored by default): 100,000 tickets in the machine's PostgreSQL, then the p50 /
//! p99 latency of filtered list queries, of the monthly ledger export (CSV and XLSX), of the
//! district statistics and of submitting (freezing) a school's month.
//! Run: `cargo test --test tickets_bench -- --ignored --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use campusguard::tickets::export::Format;
use campusguard::tickets::model::Lang;
use campusguard::tickets::stats::StatsBy;
use campusguard::tickets::{Category, ListFilter, State, Tickets, TicketsConfig};
use sqlx::Executor;

const TICKETS: i64 = 100_000;
const SCHOOLS: i64 = 40;
const DAY: i64 = 86_400_000;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

fn report(name: &str, samples: &mut [Duration]) {
    println!(
        "{name}: n={} p50={:.2?} p99={:.2?} max={:.2?}",
        samples.len(),
        percentile(samples, 0.50),
        percentile(samples, 0.99),
        percentile(samples, 1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: 100,000 tickets in PostgreSQL"]
async fn benchmark_filtered_list_and_monthly_export_with_100k_tickets_in_postgres() {
    let schema = format!("t_bench_{}", std::process::id());
    let config = TicketsConfig {
        database_url: Some(support::pg_url()),
        schema: Some(schema.clone()),
        ..TicketsConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let tickets = Tickets::open(&config, dir.path()).await.unwrap();

    // A year of tickets over 40 schools: 85 % closed within 30 days, the rest open.
    let now = campusguard::model::now_ms();
    let start = now - 365 * DAY;
    let seeded = Instant::now();
    tickets
        .store
        .pool()
        .execute(
            format!(
                "INSERT INTO tickets (id, school, state, version, category, grade, source, inspector, \
                 location, description, responsible_unit, responsible_person, measures, deadline_at, \
                 rectification, rectified_at, verifier, closed_at, supervised, occurrences, found_at, \
                 created_by, created_at, updated_at) \
                 SELECT 'S' || (g % {SCHOOLS}) || '-B-' || g, 'school' || (g % {SCHOOLS}), \
                   CASE g % 20 WHEN 0 THEN 'registered' WHEN 1 THEN 'rectifying' WHEN 2 THEN 'reported' ELSE 'closed' END, \
                   1, (ARRAY['fire','security','lab_chemical','food_water','building','traffic','other'])[1 + (g / 20) % 7], \
                   CASE WHEN g % 10 = 0 THEN 'major' ELSE 'general' END, 'inspection', '检查员' || (g % 17), \
                   '教学楼' || (g % 9) || '层', '隐患描述：灭火器压力不足，编号 ' || g, '办公室', '张老师', '更换灭火器', \
                   f + 7 * {DAY}, \
                   CASE WHEN g % 20 >= 2 THEN '已更换' END, CASE WHEN g % 20 >= 2 THEN f + (g % 30)::bigint * {DAY} END, \
                   CASE WHEN g % 20 >= 3 THEN '安全办' END, CASE WHEN g % 20 >= 3 THEN f + (g % 30)::bigint * {DAY} + 3600000 END, \
                   CASE WHEN g % 13 = 0 THEN 1 ELSE 0 END, 1, f, 'bench', f, f \
                 FROM (SELECT g, {start}::bigint + (g::bigint * {span} / {TICKETS}) AS f FROM generate_series(1, {TICKETS}) g) s",
                span = 365 * DAY,
            )
            .as_str(),
        )
        .await
        .unwrap();
    tickets
        .store
        .pool()
        .execute("ANALYZE tickets")
        .await
        .unwrap();
    assert_eq!(tickets.store.count().await.unwrap(), TICKETS);
    println!("seeded {TICKETS} tickets in {:.2?}", seeded.elapsed());

    // The bureau's typical filters, 100 per page.
    let filters: Vec<ListFilter> = (0..SCHOOLS)
        .flat_map(|s| {
            let school = Some(format!("school{s}"));
            [
                ListFilter {
                    school: school.clone(),
                    state: Some(State::Rectifying),
                    limit: 100,
                    ..ListFilter::default()
                },
                ListFilter {
                    school: school.clone(),
                    overdue: Some(true),
                    limit: 100,
                    ..ListFilter::default()
                },
                ListFilter {
                    category: Some(Category::Fire),
                    supervised: Some(true),
                    from: Some(now - 90 * DAY),
                    limit: 100,
                    ..ListFilter::default()
                },
                ListFilter {
                    school,
                    state: Some(State::Closed),
                    limit: 100,
                    offset: 200,
                    ..ListFilter::default()
                },
            ]
        })
        .collect();
    let mut samples = Vec::new();
    for round in 0..3 {
        for f in &filters {
            let t = Instant::now();
            let rows = tickets.store.list(f, now).await.unwrap();
            if round > 0 {
                samples.push(t.elapsed());
            }
            assert!(rows.len() <= 100);
        }
    }
    report("filtered list (100/page)", &mut samples);

    let (y, m, _) = campusguard::tickets::time::local_date(now - 30 * DAY, config.offset_ms());
    let month = format!("{y:04}-{m:02}");
    let rows = tickets.ledger(&month, None, Lang::Zh).await.unwrap().len();
    for format in [Format::Csv, Format::Xlsx, Format::Json] {
        let mut samples = Vec::new();
        let mut size = 0;
        for _ in 0..5 {
            let t = Instant::now();
            size = tickets
                .export(&month, format, Lang::Zh, None)
                .await
                .unwrap()
                .len();
            samples.push(t.elapsed());
        }
        report(
            &format!("monthly export {month} {format:?} ({rows} rows, {size} bytes)"),
            &mut samples,
        );
    }

    // The district page's statistics, counted by the server.
    let bureau = campusguard::access::Principal {
        name: "bureau".into(),
        role: Some(campusguard::access::Role::Bureau),
        schools: None,
    };
    let (from, to) = campusguard::tickets::export::month_bounds(&month, &config).unwrap();
    for (name, by, from) in [
        ("stats by school, one month", StatsBy::School, from),
        (
            "stats by month, twelve months",
            StatsBy::Month,
            to - 365 * DAY,
        ),
    ] {
        let mut samples = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let groups = tickets.stats(&bureau, by, from, to, now).await.unwrap();
            samples.push(t.elapsed());
            assert!(!groups.is_empty());
        }
        report(name, &mut samples);
    }
    // Submitting a school's month: its ledger rendered in three formats and frozen.
    let mut samples = Vec::new();
    for school in 0..5 {
        let id = format!("school{school}");
        let safety = campusguard::access::Principal {
            name: format!("safety-{id}"),
            role: Some(campusguard::access::Role::SchoolSafety),
            schools: Some(std::sync::Arc::from(vec![id.clone()])),
        };
        let t = Instant::now();
        let snapshot = tickets.submit_report(&safety, &id, &month).await.unwrap();
        samples.push(t.elapsed());
        assert!(snapshot.row_count > 0);
    }
    report(
        "submit a school's month (freeze CSV, XLSX, JSON)",
        &mut samples,
    );

    tickets.store.drop_schema(&schema).await.unwrap();
    tickets.store.close().await;
}

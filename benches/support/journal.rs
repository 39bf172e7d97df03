//! The alarm journal both journal benchmarks read (`alarm_history`, `duty_log`): 1,000,000
//! alarms over a year (20 schools, 5 buildings each, 400 devices; 5 % fire, 2 % gas, 60 %
//! supervisory, 33 % fault; one in a thousand still open), each with raised, acknowledged and
//! cleared journal rows, written with SQL into the store the gateway opens (its migrations and
//! indexes), each row's JSON made from a real serialized alarm.

use std::time::Duration;

use campusguard::alarms::{Alarm, AlarmState};
use campusguard::model::{AlarmClass, SensorId, Severity};
use campusguard::store::LocalStore;

pub const ALARMS: i64 = 1_000_000;
pub const YEAR_MS: i64 = 365 * 86_400_000;

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

pub async fn fill(store: &LocalStore, start_ms: i64) {
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

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

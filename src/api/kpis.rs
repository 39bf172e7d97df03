//! `GET /api/v1/alarms/kpis`: the alarm system's health as ISA-18.2 measures it, computed
//! from the alarm journal in the local store (the same records every transition goes to):
//! alarms per hour against the 6/h guideline, floods (more than 10 alarms in 10 minutes),
//! chattering alarms (3 or more raises of one sensor's rule within a minute) and stale alarms
//! (active for more than 24 hours). Scoped to the caller's schools.

use std::collections::HashMap;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use sqlx::Row;

use super::error::ApiError;
use super::extract::Reader;
use super::state::AppState;
use crate::model::now_ms;

/// ISA-18.2's "very likely acceptable" rate: about 6 alarms per hour per operator.
pub const GUIDELINE_PER_HOUR: f64 = 6.0;
pub const FLOOD_WINDOW_MS: i64 = 10 * 60_000;
/// A flood is *more than* this many alarms in one window.
pub const FLOOD_THRESHOLD: usize = 10;
pub const CHATTER_WINDOW_MS: i64 = 60_000;
pub const CHATTER_CYCLES: usize = 3;
pub const STALE_AFTER_MS: i64 = 24 * 3_600_000;
const HOUR_MS: i64 = 3_600_000;
/// Journal rows read for one answer at most (a day of a very bad flood).
const MAX_ROWS: i64 = 200_000;

#[derive(Debug, Serialize, PartialEq)]
pub struct Kpis {
    pub at: i64,
    pub alarms_last_hour: usize,
    pub alarms_per_hour_24h: f64,
    pub guideline_per_hour: f64,
    pub over_guideline: bool,
    pub floods_24h: usize,
    pub flood_active: bool,
    pub chattering: Vec<Chattering>,
    pub stale: Vec<u64>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Chattering {
    pub sensor: String,
    pub rule: String,
    /// Most raises seen within one minute in the last hour.
    pub max_per_minute: usize,
}

/// One raise: when, and of which (sensor, rule).
pub struct Raise {
    pub at: i64,
    pub sensor: String,
    pub rule: String,
}

/// The measures from the raises of the last 24 h (sorted by time) and the ids of active
/// alarms raised more than 24 h ago.
pub fn compute(now: i64, raises: &[Raise], stale: Vec<u64>) -> Kpis {
    let last_hour = raises.iter().filter(|r| r.at > now - HOUR_MS).count();
    // Floods: episodes where a 10-minute window holds more than the threshold.
    let mut floods = 0;
    let mut in_flood = false;
    let mut start = 0;
    for (end, r) in raises.iter().enumerate() {
        while raises[start].at <= r.at - FLOOD_WINDOW_MS {
            start += 1;
        }
        let flooding = end + 1 - start > FLOOD_THRESHOLD;
        if flooding && !in_flood {
            floods += 1;
        }
        in_flood = flooding;
    }
    let recent = raises
        .iter()
        .filter(|r| r.at > now - FLOOD_WINDOW_MS)
        .count();
    // Chattering: per (sensor, rule), most raises within a minute, over the last hour.
    let mut by_key: HashMap<(&str, &str), Vec<i64>> = HashMap::new();
    for r in raises.iter().filter(|r| r.at > now - HOUR_MS) {
        by_key
            .entry((r.sensor.as_str(), r.rule.as_str()))
            .or_default()
            .push(r.at);
    }
    let mut chattering: Vec<Chattering> = by_key
        .into_iter()
        .filter_map(|((sensor, rule), times)| {
            let mut best = 0;
            let mut lo = 0;
            for (hi, t) in times.iter().enumerate() {
                while times[lo] <= t - CHATTER_WINDOW_MS {
                    lo += 1;
                }
                best = best.max(hi + 1 - lo);
            }
            (best >= CHATTER_CYCLES).then(|| Chattering {
                sensor: sensor.to_string(),
                rule: rule.to_string(),
                max_per_minute: best,
            })
        })
        .collect();
    chattering.sort_by(|a, b| {
        b.max_per_minute
            .cmp(&a.max_per_minute)
            .then(a.sensor.cmp(&b.sensor))
    });
    let per_hour = raises.len() as f64 / 24.0;
    Kpis {
        at: now,
        alarms_last_hour: last_hour,
        alarms_per_hour_24h: (per_hour * 100.0).round() / 100.0,
        guideline_per_hour: GUIDELINE_PER_HOUR,
        over_guideline: last_hour as f64 > GUIDELINE_PER_HOUR,
        floods_24h: floods,
        flood_active: recent > FLOOD_THRESHOLD,
        chattering,
        stale,
    }
}

pub(super) async fn kpis(
    State(state): State<AppState>,
    Reader(who): Reader,
) -> Result<Json<Kpis>, ApiError> {
    let now = now_ms();
    // Its own connections: a flood of KPI readers never takes the journal's.
    let pool = state.store.read_pool();
    let rows = sqlx::query(
        "SELECT j.at, a.sensor, a.rule, a.school FROM alarm_journal j \
         JOIN alarms a ON a.id = j.alarm_id \
         WHERE j.at > ? AND j.transition IN ('raised', 'reraised') ORDER BY j.at LIMIT ?",
    )
    .bind(now - 24 * HOUR_MS)
    .bind(MAX_ROWS)
    .fetch_all(pool)
    .await
    .map_err(ApiError::internal)?;
    let raises: Vec<Raise> = rows
        .iter()
        .filter(|r| who.may_see_school(r.get::<&str, _>(3)))
        .map(|r| Raise {
            at: r.get(0),
            sensor: r.get(1),
            rule: r.get(2),
        })
        .collect();
    let stale_rows = sqlx::query(
        "SELECT id, school FROM alarms WHERE state IN ('active_unacked', 'active_acked') \
         AND raised_at < ? ORDER BY id LIMIT 1000",
    )
    .bind(now - STALE_AFTER_MS)
    .fetch_all(pool)
    .await
    .map_err(ApiError::internal)?;
    let stale = stale_rows
        .iter()
        .filter(|r| who.may_see_school(r.get::<&str, _>(1)))
        .map(|r| r.get::<i64, _>(0) as u64)
        .collect();
    Ok(Json(compute(now, &raises, stale)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raise(at: i64, sensor: &str) -> Raise {
        Raise {
            at,
            sensor: sensor.into(),
            rule: "r".into(),
        }
    }

    const NOW: i64 = 100 * HOUR_MS;

    #[test]
    fn a_quiet_day_is_within_the_guideline() {
        let raises: Vec<_> = (0..5)
            .map(|i| raise(NOW - i * 600_000, "a"))
            .rev()
            .collect();
        let k = compute(NOW, &raises, vec![]);
        assert_eq!(k.alarms_last_hour, 5);
        assert!(!k.over_guideline);
        assert_eq!(k.floods_24h, 0);
        assert!(k.chattering.is_empty());
    }

    #[test]
    fn eleven_alarms_in_ten_minutes_are_one_flood_and_ten_are_none() {
        let ten: Vec<_> = (0..10)
            .map(|i| raise(NOW - 5 * HOUR_MS + i * 1000, &format!("s{i}")))
            .collect();
        assert_eq!(compute(NOW, &ten, vec![]).floods_24h, 0);
        let eleven: Vec<_> = (0..11)
            .map(|i| raise(NOW - 5 * HOUR_MS + i * 1000, &format!("s{i}")))
            .collect();
        let k = compute(NOW, &eleven, vec![]);
        assert_eq!(k.floods_24h, 1);
        assert!(!k.flood_active);
    }

    #[test]
    fn three_raises_of_one_rule_within_a_minute_are_chattering() {
        let raises = vec![
            raise(NOW - 50_000, "x"),
            raise(NOW - 30_000, "x"),
            raise(NOW - 10_000, "x"),
            raise(NOW - 5_000, "y"),
        ];
        let k = compute(NOW, &raises, vec![7]);
        assert_eq!(k.chattering.len(), 1);
        assert_eq!(k.chattering[0].sensor, "x");
        assert_eq!(k.chattering[0].max_per_minute, 3);
        assert_eq!(k.stale, vec![7]);
    }
}

//! Drill routes: list the active drills, start one for a school or a building, end one early.
//! Starting and ending need a role that acts on alarms, within its school scope; drill
//! changes also go out on the alarm stream as `drill` events (see `alarms.rs`).

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::Json;
use serde::Deserialize;

use super::area::Routes;
use super::error::ApiError;
use super::extract::{ask, Reader};
use super::state::AppState;
use crate::access::{Principal, Role};
use crate::drills::{Drill, DrillError, NewDrill, MAX_DRILL_DURATION};
use crate::model::now_ms;
use crate::pipeline::Command;

pub fn routes() -> Routes {
    Routes::new()
        .route("/api/v1/drills", get(list).post(start))
        .route("/api/v1/drills/history", get(history))
        .route("/api/v1/drills/{id}", delete(end))
}

/// A caller who may act on alarms, and so may start and end drills.
struct DrillLeader(Principal);

impl FromRequestParts<AppState> for DrillLeader {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // The fire-control room runs drills (operators and admins); a lab manager handles the
        // cabinet alarms but does not put a school or building into drill mode.
        let who = state.auth.alarm_handler(parts)?;
        match who.role {
            Some(Role::Operator | Role::Admin) => Ok(DrillLeader(who)),
            _ => Err(ApiError::forbidden(
                "only an operator or an admin may start or end a drill",
            )),
        }
    }
}

impl From<DrillError> for ApiError {
    fn from(e: DrillError) -> Self {
        match e {
            DrillError::NotFound(_) => ApiError::not_found(e.to_string()),
            DrillError::BadExpiry => ApiError::bad_request(e.to_string()),
            DrillError::Overlap(_) | DrillError::TooMany => ApiError::conflict(e.to_string()),
            DrillError::Store(_) => ApiError::internal(e),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    school: Option<String>,
    /// Accepted (and read by the authenticator) so `?token=` passes `deny_unknown_fields`.
    #[serde(default, rename = "token")]
    _token: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    Reader(who): Reader,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Vec<Drill>>, ApiError> {
    let Query(q) = query?;
    let mut drills = ask(&state, |reply| Command::Drills { reply }).await?;
    drills.retain(|d| {
        who.may_see_school(&d.school) && q.school.as_deref().is_none_or(|s| d.school == s)
    });
    drills.sort_by(|a, b| (&a.school, &a.building).cmp(&(&b.school, &b.building)));
    Ok(Json(drills))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    school: Option<String>,
    /// `YYYY-MM` (its start) or Unix ms. Default: twelve months before `to`.
    from: Option<String>,
    /// `YYYY-MM` (its end) or Unix ms. Default: now.
    to: Option<String>,
    #[serde(default, rename = "token")]
    _token: Option<String>,
}

/// At most this many drills in one history answer.
const HISTORY_LIMIT: i64 = 5000;

/// A window bound: `YYYY-MM` (the month's start, or its end with `end`) or Unix ms.
fn bound(value: &str, end: bool, offset_ms: i64) -> Result<i64, ApiError> {
    if let Some((y, m)) = crate::tickets::time::parse_month(value) {
        let (start, stop) = crate::tickets::time::month_range(y, m, offset_ms);
        return Ok(if end { stop } else { start });
    }
    value
        .parse::<i64>()
        .ok()
        .filter(|ms| (0..=253_402_300_799_999).contains(ms))
        .ok_or_else(|| ApiError::bad_request(format!("`{value}`: expected YYYY-MM or Unix ms")))
}

/// Past and running drills (kept after they end), and per school how many were held against
/// the target of its kind: one a month (schools) or one every two months (kindergartens).
async fn history(
    State(state): State<AppState>,
    Reader(who): Reader,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = query?;
    let offset = state.tickets.config.offset_ms();
    let now = now_ms();
    let to = match q.to.as_deref() {
        Some(v) => bound(v, true, offset)?,
        None => now + 1,
    };
    let from = match q.from.as_deref() {
        Some(v) => bound(v, false, offset)?,
        None => to.saturating_sub(365 * 86_400_000),
    };
    if to <= from {
        return Err(ApiError::bad_request("`to` must be after `from`"));
    }
    if let Some(school) = &q.school {
        if !who.may_see_school(school) {
            return Err(ApiError::forbidden(format!(
                "school `{school}` is outside your scope"
            )));
        }
    }
    let mut drills = state
        .store
        .drill_history(q.school.as_deref(), from, to, HISTORY_LIMIT)
        .await
        .map_err(ApiError::internal)?;
    drills.retain(|d| who.may_see_school(&d.school));
    let schools = &state.tickets.config.schools;
    // Every listed school (and any that drilled), each counted against its kind's target.
    let mut ids: Vec<String> = schools.all().iter().map(|s| s.id.clone()).collect();
    for d in &drills {
        if !ids.contains(&d.school) {
            ids.push(d.school.clone());
        }
    }
    ids.retain(|id| who.may_see_school(id) && q.school.as_deref().is_none_or(|s| s == id));
    let months = months_between(from, to, offset);
    let compliance: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| {
            let kind = schools.kind_of(id);
            let held = drills.iter().filter(|d| &d.school == id).count();
            let interval = kind.drill_interval_months();
            let required = months.div_ceil(interval);
            serde_json::json!({
                "school": id,
                "name": schools.name_of(id),
                "kind": kind.as_str(),
                "held": held,
                "required": required,
                "interval_months": interval,
                "per_school_year": kind.drills_per_school_year(),
                "compliant": held >= required as usize,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({
        "from": from,
        "to": to,
        "months": months,
        "drills": drills,
        "compliance": compliance,
    })))
}

/// The local months [from, to) touches.
fn months_between(from: i64, to: i64, offset_ms: i64) -> u32 {
    let (fy, fm, _) = crate::tickets::time::local_date(from, offset_ms);
    let (ty, tm, _) = crate::tickets::time::local_date(to.saturating_sub(1), offset_ms);
    let months = (ty - fy) * 12 + i64::from(tm) - i64::from(fm) + 1;
    u32::try_from(months.max(1)).unwrap_or(u32::MAX)
}

/// `duration` as humantime (`"45m"`, `"2h"`) or as a number of minutes.
#[derive(Deserialize)]
#[serde(untagged)]
enum DurationInput {
    Minutes(u64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    school: String,
    /// Absent (or empty) = the whole school.
    building: Option<String>,
    /// How long; or give `until`.
    duration: Option<DurationInput>,
    /// Unix ms; or give `duration`.
    until: Option<i64>,
    reason: String,
}

fn expiry(body: &StartBody, now: i64) -> Result<i64, ApiError> {
    let span = match (&body.duration, body.until) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(ApiError::bad_request(
                "give either `duration` or `until` (Unix ms)",
            ))
        }
        (None, Some(until)) => return Ok(until),
        (Some(DurationInput::Minutes(m)), None) => {
            std::time::Duration::from_secs(m.saturating_mul(60))
        }
        (Some(DurationInput::Text(text)), None) => humantime::parse_duration(text)
            .map_err(|e| ApiError::bad_request(format!("duration `{text}`: {e}")))?,
    };
    if span.is_zero() || span > MAX_DRILL_DURATION {
        return Err(ApiError::bad_request(
            "a drill lasts more than 0 and at most 24 h",
        ));
    }
    Ok(now.saturating_add(i64::try_from(span.as_millis()).unwrap_or(i64::MAX)))
}

async fn start(
    State(state): State<AppState>,
    DrillLeader(who): DrillLeader,
    body: Result<Json<StartBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    if !crate::model::valid_name(&body.school) {
        return Err(ApiError::bad_request("`school` must be a school id"));
    }
    if !who.may_see_school(&body.school) {
        return Err(ApiError::forbidden(format!(
            "school `{}` is outside your scope",
            body.school
        )));
    }
    let building = body
        .building
        .as_deref()
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(str::to_string);
    if building.as_ref().is_some_and(|b| b.chars().count() > 200) {
        return Err(ApiError::bad_request(
            "building is longer than 200 characters",
        ));
    }
    let reason = body.reason.trim();
    if reason.is_empty() || reason.chars().count() > 1000 {
        return Err(ApiError::bad_request(
            "a drill needs a reason of at most 1000 characters",
        ));
    }
    let until = expiry(&body, now_ms())?;
    let drill = NewDrill {
        school: body.school.clone(),
        building,
        started_by: who.name.clone(),
        reason: reason.to_string(),
        until,
    };
    let started = ask(&state, |reply| Command::StartDrill { drill, reply }).await??;
    Ok((StatusCode::CREATED, Json(started)).into_response())
}

async fn end(
    State(state): State<AppState>,
    DrillLeader(who): DrillLeader,
    Path(id): Path<String>,
) -> Result<Json<Drill>, ApiError> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("drill id must be a number, not `{id}`")))?;
    let active = ask(&state, |reply| Command::Drills { reply }).await?;
    let Some(drill) = active.iter().find(|d| d.id == id) else {
        return Err(DrillError::NotFound(id).into());
    };
    if !who.may_see_school(&drill.school) {
        return Err(ApiError::forbidden(format!(
            "drill {id} belongs to a school outside your scope"
        )));
    }
    let ended = ask(&state, |reply| Command::EndDrill {
        id,
        user: who.name.clone(),
        reply,
    })
    .await??;
    Ok(Json(ended))
}

//! Incident report routes (信息报告): list the reports in the caller's scope (the bureau sees
//! every school's), read one, file one or fill in the draft a reset as a real fire opened, and
//! edit or submit a draft. Role and scope checks and validation live in
//! [`crate::tickets::incidents`]; this file maps HTTP to them.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::area::Routes;
use super::error::ApiError;
use super::extract::TicketUser;
use super::state::AppState;
use crate::tickets::incidents::{Incident, IncidentFilter, IncidentInput, IncidentStatus};
use crate::tickets::TicketError;

pub fn routes() -> Routes {
    Routes::new()
        .route("/api/v1/incidents", get(list).post(file))
        .route("/api/v1/incidents/{id}", get(get_one).patch(edit))
}

/// A ticket-service error as the API answers it for a report: a conflict here is a submitted
/// report, not a submitted month.
fn incident_error(e: TicketError) -> ApiError {
    match e {
        TicketError::NotFound(id) => ApiError::not_found(format!("no incident report `{id}`"))
            .with_zh(format!("没有找到信息报告 {id}")),
        TicketError::Conflict(_) => {
            ApiError::conflict(e.to_string()).with_zh("信息报告已提交，不能再修改")
        }
        TicketError::StaleVersion { .. } => {
            ApiError::new(StatusCode::CONFLICT, "stale_version", e.to_string())
                .with_zh("信息报告已被他人修改，请刷新后重试")
        }
        other => other.into(),
    }
}

/// A report as the API shows it: the record plus `school_name` from `[[schools]]`.
fn view(i: &Incident, schools: &crate::schools::Schools) -> Value {
    let mut v = serde_json::to_value(i).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.insert("school_name".into(), json!(schools.name_of(&i.school)));
    }
    v
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    school: Option<String>,
    /// `draft` or `submitted`.
    status: Option<String>,
    /// The report of one alarm (an alarm id of the gateway serving the school).
    alarm_id: Option<i64>,
    /// Unix ms, on the time it happened.
    from: Option<i64>,
    to: Option<i64>,
    limit: Option<i64>,
    offset: Option<i64>,
    #[serde(default, rename = "token")]
    _token: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    TicketUser(who): TicketUser,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query?;
    let status = q
        .status
        .as_deref()
        .map(|s| {
            IncidentStatus::parse(s).ok_or_else(|| {
                ApiError::bad_request(format!("status must be draft or submitted, not `{s}`"))
            })
        })
        .transpose()?;
    if let (Some(from), Some(to)) = (q.from, q.to) {
        if from >= to {
            return Err(ApiError::bad_request("`from` must be before `to`"));
        }
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let offset = q.offset.unwrap_or(0).max(0);
    let filter = IncidentFilter {
        scope: None,
        school: q.school,
        status,
        alarm_id: q.alarm_id,
        from: q.from,
        to: q.to,
        limit,
        offset,
    };
    let list = state
        .tickets
        .incidents(&who, filter)
        .await
        .map_err(incident_error)?;
    let schools = &state.tickets.config.schools;
    Ok(Json(json!({
        "incidents": list.iter().map(|i| view(i, schools)).collect::<Vec<_>>(),
        "limit": limit,
        "offset": offset,
    })))
}

/// 201 with a new report, or 200 with the alarm's draft filled in.
async fn file(
    State(state): State<AppState>,
    TicketUser(who): TicketUser,
    body: Result<Json<IncidentInput>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(input) = body?;
    let alarm = match input.alarm_id {
        Some(id) => {
            let id = u64::try_from(id)
                .map_err(|_| ApiError::bad_request("`alarm_id` must be a positive number"))?;
            let alarm = state.store.alarm(id).await.map_err(ApiError::internal)?;
            // Another school's alarm is as unknown as a missing one.
            alarm.filter(|a| who.may_see_school(&a.school))
        }
        None => None,
    };
    let (incident, created) = state
        .tickets
        .file_incident(&who, input, alarm.as_ref())
        .await
        .map_err(incident_error)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view(&incident, &state.tickets.config.schools))).into_response())
}

async fn get_one(
    State(state): State<AppState>,
    TicketUser(who): TicketUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let incident = state
        .tickets
        .incident(&who, &id)
        .await
        .map_err(incident_error)?;
    Ok(Json(view(&incident, &state.tickets.config.schools)))
}

async fn edit(
    State(state): State<AppState>,
    TicketUser(who): TicketUser,
    Path(id): Path<String>,
    body: Result<Json<IncidentInput>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(input) = body?;
    let incident = state
        .tickets
        .edit_incident(&who, &id, input)
        .await
        .map_err(incident_error)?;
    Ok(Json(view(&incident, &state.tickets.config.schools)))
}

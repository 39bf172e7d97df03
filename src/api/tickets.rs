//! Ticket routes: list and file tickets, read one with its occurrences, attachments and
//! history, take workflow actions, upload and fetch evidence, the monthly ledger export and
//! per-school stats. Role checks live in [`crate::tickets`]; this file maps HTTP to them.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::area::Routes;
use super::error::ApiError;
use super::extract::TicketUser;
use super::state::AppState;
use crate::model::now_ms;
use crate::tickets::export::Format;
use crate::tickets::model::{AttachmentKind, Lang};
use crate::tickets::{
    workflow, Action, ActionInput, Category, Grade, ListFilter, NewTicket, State as TicketState,
    Ticket, TicketError,
};

pub fn routes() -> Routes {
    Routes::new()
        .route("/api/v1/tickets", get(list).post(file))
        .route("/api/v1/tickets/export", get(export))
        .route("/api/v1/tickets/{id}", get(get_one))
        .route("/api/v1/tickets/{id}/history", get(history))
        .route("/api/v1/tickets/{id}/actions/{action}", post(act))
        .route(
            "/api/v1/tickets/{id}/attachments",
            // The size limit is the ticket config's, enforced while streaming the upload.
            get(list_attachments)
                .post(upload)
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/api/v1/tickets/{id}/attachments/{sha256}", get(download))
        .route("/api/v1/stats/tickets", get(stats))
}

impl From<TicketError> for ApiError {
    fn from(e: TicketError) -> Self {
        match e {
            TicketError::NotFound(_) => ApiError::not_found(e.to_string()),
            TicketError::Forbidden(_) => ApiError::forbidden(e.to_string()),
            TicketError::Invalid(_) => ApiError::bad_request(e.to_string()),
            TicketError::IllegalTransition { .. } => {
                ApiError::new(StatusCode::CONFLICT, "illegal_transition", e.to_string())
            }
            TicketError::StaleVersion { .. } => {
                ApiError::new(StatusCode::CONFLICT, "stale_version", e.to_string())
            }
            TicketError::Database(_) | TicketError::Io(_) => ApiError::internal(e),
        }
    }
}

/// A ticket as the API shows it: the record plus derived `overdue` and `allowed_actions`.
fn view(t: &Ticket, now: i64) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.insert("overdue".into(), json!(t.is_overdue(now)));
        map.insert(
            "allowed_actions".into(),
            json!(workflow::allowed_actions(t.state, t.supervised)
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()),
        );
    }
    v
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    school: Option<String>,
    state: Option<String>,
    category: Option<String>,
    grade: Option<String>,
    overdue: Option<bool>,
    supervised: Option<bool>,
    /// Unix ms, on the found time.
    from: Option<i64>,
    to: Option<i64>,
    limit: Option<i64>,
    offset: Option<i64>,
    #[serde(default, rename = "token")]
    _token: Option<String>,
}

fn parse_opt<T>(
    value: Option<&str>,
    name: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, ApiError> {
    value
        .map(|v| parse(v).ok_or_else(|| ApiError::bad_request(format!("unknown {name} `{v}`"))))
        .transpose()
}

async fn list(
    State(state): State<AppState>,
    TicketUser(who): TicketUser,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let offset = q.offset.unwrap_or(0).max(0);
    let filter = ListFilter {
        scope: None,
        school: q.school,
        state: parse_opt(q.state.as_deref(), "state", TicketState::parse)?,
        category: parse_opt(q.category.as_deref(), "category", Category::parse)?,
        grade: parse_opt(q.grade.as_deref(), "grade", Grade::parse)?,
        overdue: q.overdue,
        supervised: q.supervised,
        from: q.from,
        to: q.to,
        limit,
        offset,
    };
    let tickets = state.tickets.list(&who, filter).await?;
    let now = now_ms();
    Ok(Json(json!({
        "tickets": tickets.iter().map(|t| view(t, now)).collect::<Vec<_>>(),
        "limit": limit,
        "offset": offset,
    })))
}

async fn file(
    State(state): State<AppState>,
    TicketUser(who): TicketUser,
    body: Result<Json<NewTicket>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(new) = body?;
    let ticket = state.tickets.file(&who, new).await?;
    Ok((StatusCode::CREATED, Json(view(&ticket, now_ms()))).into_response())
}

async fn get_one(
    State(state): State<AppState>,
    TicketUser(who): TicketUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let ticket = state.tickets.get(&who, &id).await?;
    let occurrences = state.tickets.store.occurrences(&id).await?;
    let attachments = state.tickets.store.attachments(&id).await?;
    let mut v = view(&ticket, now_ms());
    if let Value::Object(map) = &mut v {
        map.insert("occurrences_list".into(), json!(occurrences));
        map.insert("attachments".into(), json!(attachments));
    }
    Ok(Json(v))
}

async fn history(
    State(state): State<AppState>,
    TicketUser(who): TicketUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let ticket = state.tickets.get(&who, &id).await?;
    let entries = state.tickets.store.history(&ticket.id).await?;
    Ok(Json(json!({ "id": ticket.id, "history": entries })))
}

async fn act(
    State(state): State<AppState>,
    TicketUser(who): TicketUser,
    Path((id, action)): Path<(String, String)>,
    body: Result<Json<ActionInput>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let action = Action::parse(&action).ok_or_else(|| {
        ApiError::not_found(format!(
            "no action `{action}` (assign, defer, report, verify, reject, fix_now, supervise, unsupervise)"
        ))
    })?;
    let Json(input) = body?;
    let ticket = state.tickets.act(&who, &id, action, input).await?;
    Ok(Json(view(&ticket, now_ms())))
}

async fn list_attachments(
    State(state): State<AppState>,
    TicketUser(who): TicketUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let ticket = state.tickets.get(&who, &id).await?;
    Ok(Json(json!(
        state.tickets.store.attachments(&ticket.id).await?
    )))
}

/// Multipart: a `kind` field (`before`, `after`, `other`; default `other`) and a `file` field.
async fn upload(
    State(state): State<AppState>,
    TicketUser(who): TicketUser,
    Path(id): Path<String>,
    mut multipart: Multipart,
) -> Result<Response, ApiError> {
    // Check access before reading the body.
    state.tickets.get(&who, &id).await?;
    if !crate::tickets::may_attach(&who) {
        return Err(ApiError::forbidden(
            "attachments need an operator, lab_manager, school_safety or admin token",
        ));
    }
    let max = state.tickets.config.attachment_max_bytes;
    let mut kind = AttachmentKind::Other;
    let mut file: Option<Vec<u8>> = None;
    loop {
        let field = multipart
            .next_field()
            .await
            .map_err(|e| ApiError::bad_request(format!("multipart: {e}")))?;
        let Some(mut field) = field else { break };
        match field.name() {
            Some("kind") => {
                let text = field
                    .text()
                    .await
                    .map_err(|e| ApiError::bad_request(format!("multipart: {e}")))?;
                kind = AttachmentKind::parse(text.trim())
                    .ok_or_else(|| ApiError::bad_request("kind must be before, after or other"))?;
            }
            Some("file") => {
                let mut bytes = Vec::new();
                while let Some(chunk) = field
                    .chunk()
                    .await
                    .map_err(|e| ApiError::bad_request(format!("multipart: {e}")))?
                {
                    if bytes.len() + chunk.len() > max {
                        return Err(ApiError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "too_large",
                            format!("attachment larger than {max} bytes"),
                        ));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                file = Some(bytes);
            }
            _ => {
                return Err(ApiError::bad_request(
                    "unknown multipart field (kind, file)",
                ))
            }
        }
    }
    let bytes = file.ok_or_else(|| ApiError::bad_request("multipart field `file` missing"))?;
    let attachment = state.tickets.attach(&who, &id, kind, &bytes).await?;
    Ok((StatusCode::CREATED, Json(json!(attachment))).into_response())
}

async fn download(
    State(state): State<AppState>,
    TicketUser(who): TicketUser,
    Path((id, sha256)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (a, bytes) = state.tickets.attachment_bytes(&who, &id, &sha256).await?;
    Ok((
        [
            (header::CONTENT_TYPE, a.content_type),
            (header::CACHE_CONTROL, "private, max-age=86400".to_string()),
        ],
        bytes,
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    month: String,
    format: Option<String>,
    lang: Option<String>,
    #[serde(default, rename = "token")]
    _token: Option<String>,
}

async fn export(
    State(state): State<AppState>,
    TicketUser(who): TicketUser,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let format = Format::parse(q.format.as_deref().unwrap_or("csv"))
        .ok_or_else(|| ApiError::bad_request("format must be csv, xlsx or json"))?;
    let lang = Lang::parse(q.lang.as_deref().unwrap_or("zh"))
        .ok_or_else(|| ApiError::bad_request("lang must be zh or en"))?;
    let bytes = state
        .tickets
        .export(&q.month, format, lang, who.scope())
        .await?;
    let filename = format!("hazard-ledger-{}.{}", q.month, format.extension());
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsQuery {
    by: Option<String>,
    #[serde(default, rename = "token")]
    _token: Option<String>,
}

/// Per school: open, overdue, closed this month, median days to close (of those).
async fn stats(
    State(state): State<AppState>,
    TicketUser(who): TicketUser,
    query: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query?;
    if q.by.as_deref().unwrap_or("school") != "school" {
        return Err(ApiError::bad_request("by must be school"));
    }
    let now = now_ms();
    let offset = state.tickets.config.offset_ms();
    let (y, m, _) = crate::tickets::time::local_date(now, offset);
    let (month_start, _) = crate::tickets::time::month_range(y, m, offset);
    let tickets = state
        .tickets
        .store
        .ledger(month_start, now + 1, who.scope())
        .await?;
    let mut by_school: std::collections::BTreeMap<&str, (u64, u64, Vec<f64>)> =
        std::collections::BTreeMap::new();
    for t in &tickets {
        let entry = by_school.entry(&t.school).or_default();
        if t.state != TicketState::Closed {
            entry.0 += 1;
        }
        if t.is_overdue(now) {
            entry.1 += 1;
        }
        if let Some(closed) = t.closed_at.filter(|c| *c >= month_start) {
            entry.2.push((closed - t.found_at) as f64 / 86_400_000.0);
        }
    }
    let rows: Vec<Value> = by_school
        .into_iter()
        .map(|(school, (open, overdue, mut days))| {
            days.sort_by(f64::total_cmp);
            let median = match days.len() {
                0 => None,
                n if n % 2 == 1 => Some(days[n / 2]),
                n => Some((days[n / 2 - 1] + days[n / 2]) / 2.0),
            };
            json!({
                "school": school,
                "open": open,
                "overdue": overdue,
                "closed_this_month": days.len(),
                "median_days_to_close": median,
            })
        })
        .collect();
    Ok(Json(json!({ "by": "school", "schools": rows })))
}

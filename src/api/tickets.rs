//! Ticket routes: list and file tickets, read one with its occurrences, attachments and
//! history, take workflow actions, upload and fetch evidence, the monthly ledger export and
//! per-school stats. Role checks live in [`crate::tickets`]; this file maps HTTP to them.

use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
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
use crate::tickets::stats::StatsBy;
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
            // The size limits are the ticket config's, enforced on every multipart field while
            // the upload streams in (`bounded_multipart`).
            get(list_attachments)
                .post(upload)
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/api/v1/tickets/{id}/attachments/{sha256}", get(download))
        .route("/api/v1/stats/tickets", get(stats))
}

impl From<TicketError> for ApiError {
    fn from(e: TicketError) -> Self {
        let zh = ticket_error_zh(&e);
        let error = match e {
            TicketError::NotFound(_) => ApiError::not_found(e.to_string()),
            TicketError::Forbidden(_) => ApiError::forbidden(e.to_string()),
            TicketError::Invalid(_) => ApiError::bad_request(e.to_string()),
            TicketError::IllegalTransition { .. } => {
                ApiError::new(StatusCode::CONFLICT, "illegal_transition", e.to_string())
            }
            TicketError::Conflict(_) => ApiError::conflict(e.to_string()),
            TicketError::StaleVersion { .. } => {
                ApiError::new(StatusCode::CONFLICT, "stale_version", e.to_string())
            }
            TicketError::InsufficientStorage(_) => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient_storage",
                e.to_string(),
            ),
            TicketError::Database(_) | TicketError::Io(_) => ApiError::internal(e),
        };
        match zh {
            Some(zh) if error.message_zh.is_none() => error.with_zh(zh),
            _ => error,
        }
    }
}

/// A ticket error as the console shows it to a user reading Chinese.
fn ticket_error_zh(e: &TicketError) -> Option<String> {
    use crate::tickets::model::Lang;
    Some(match e {
        TicketError::NotFound(what) => format!("没有找到 {what}"),
        TicketError::Forbidden(_) => "无权进行此操作（角色或学校范围不符）".into(),
        TicketError::Invalid(why) => format!("输入有误：{why}"),
        TicketError::IllegalTransition { state, action, .. } => format!(
            "工单处于「{}」状态，不能执行「{}」",
            state.label(Lang::Zh),
            action_zh(*action)
        ),
        TicketError::StaleVersion { .. } => "工单已被他人修改，请刷新后重试".into(),
        TicketError::Conflict(_) => "该月已上报，月报已冻结，不能重复上报".into(),
        TicketError::InsufficientStorage(_) => "存储空间不足，附件未保存，请联系管理员".into(),
        TicketError::Database(_) | TicketError::Io(_) => return None,
    })
}

fn action_zh(action: Action) -> &'static str {
    match action {
        Action::Assign => "指派整改",
        Action::Defer => "暂缓管控",
        Action::Report => "上报整改",
        Action::Verify => "验收销号",
        Action::Reject => "验收不通过",
        Action::FixNow => "立查立改",
        Action::Supervise => "挂牌督办",
        Action::Unsupervise => "取消督办",
    }
}

/// A ticket as the API shows it: the record plus derived `overdue` and `allowed_actions`, and
/// `school_name` from `[[schools]]`.
fn view(t: &Ticket, now: i64, schools: &crate::schools::Schools) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.insert("school_name".into(), json!(schools.name_of(&t.school)));
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
        "tickets": tickets.iter().map(|t| view(t, now, &state.tickets.config.schools)).collect::<Vec<_>>(),
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
    Ok((
        StatusCode::CREATED,
        Json(view(&ticket, now_ms(), &state.tickets.config.schools)),
    )
        .into_response())
}

async fn get_one(
    State(state): State<AppState>,
    TicketUser(who): TicketUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let ticket = state.tickets.get(&who, &id).await?;
    let occurrences = state.tickets.store.occurrences(&id).await?;
    let attachments = state.tickets.store.attachments(&id).await?;
    let mut v = view(&ticket, now_ms(), &state.tickets.config.schools);
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
    Ok(Json(view(&ticket, now_ms(), &state.tickets.config.schools)))
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

/// Longest `kind` field accepted, in bytes (`before`, `after`, `other`).
const MAX_KIND_BYTES: u64 = 16;
/// Room for the multipart framing around the fields (boundaries, part headers, `kind`).
const MULTIPART_OVERHEAD_BYTES: u64 = 16 * 1024;

/// The upload body as multipart with a size limit on every field and on the whole stream, so
/// neither a long field, nor a part header without an end, nor a flood of fields is buffered.
fn bounded_multipart(
    headers: &HeaderMap,
    body: Body,
    file_max: usize,
) -> Result<multer::Multipart<'static>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "an upload is multipart/form-data with fields kind and file",
        )
    })?;
    let file_max = u64::try_from(file_max).unwrap_or(u64::MAX);
    let limits = multer::SizeLimit::new()
        .whole_stream(file_max.saturating_add(MULTIPART_OVERHEAD_BYTES))
        .for_field("kind", MAX_KIND_BYTES)
        .for_field("file", file_max);
    let constraints = multer::Constraints::new()
        .allowed_fields(vec!["kind", "file"])
        .size_limit(limits);
    Ok(multer::Multipart::with_constraints(
        body.into_data_stream(),
        boundary,
        constraints,
    ))
}

/// A multipart failure as the API answers it: a field or the whole upload too large → 413,
/// anything else → 400.
fn multipart_error(e: multer::Error) -> ApiError {
    match e {
        multer::Error::FieldSizeExceeded { limit, field_name } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "multipart field `{}` is larger than {limit} bytes",
                field_name.as_deref().unwrap_or("?")
            ),
        ),
        multer::Error::StreamSizeExceeded { limit } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("upload larger than {limit} bytes"),
        ),
        multer::Error::UnknownField { .. } => {
            ApiError::bad_request("unknown multipart field (kind, file)")
        }
        other => ApiError::bad_request(format!("multipart: {other}")),
    }
}

/// Multipart: a `kind` field (`before`, `after`, `other`; default `other`) and a `file` field,
/// each at most once and each bounded (`kind` 16 bytes, `file` `tickets.attachment_max_bytes`).
async fn upload(
    State(state): State<AppState>,
    TicketUser(who): TicketUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Check access before reading the body.
    state.tickets.get(&who, &id).await?;
    if !crate::tickets::may_attach(&who) {
        return Err(ApiError::forbidden(
            "attachments need an operator, lab_manager, school_safety or admin token",
        ));
    }
    let max = state.tickets.config.attachment_max_bytes;
    let mut multipart = bounded_multipart(&headers, body, max)?;
    let mut kind = None;
    let mut file: Option<Vec<u8>> = None;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("kind") if kind.is_none() => {
                let text = field.text().await.map_err(multipart_error)?;
                kind =
                    Some(AttachmentKind::parse(text.trim()).ok_or_else(|| {
                        ApiError::bad_request("kind must be before, after or other")
                    })?);
            }
            Some("file") if file.is_none() => {
                file = Some(field.bytes().await.map_err(multipart_error)?.to_vec());
            }
            _ => {
                return Err(ApiError::bad_request(
                    "multipart fields are kind and file, each at most once",
                ))
            }
        }
    }
    let bytes = file.ok_or_else(|| ApiError::bad_request("multipart field `file` missing"))?;
    let kind = kind.unwrap_or(AttachmentKind::Other);
    let attachment = state.tickets.attach(&who, &id, kind, &bytes).await?;
    Ok((StatusCode::CREATED, Json(json!(attachment))).into_response())
}

/// The file name an attachment is downloaded as: its hash and the extension of its type.
fn download_name(sha256: &str, content_type: &str) -> String {
    let ext = match content_type {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "application/pdf" => "pdf",
        _ => "bin",
    };
    format!("{sha256}.{ext}")
}

/// An attachment's bytes, never interpreted by the browser as anything but their sniffed type:
/// `nosniff`, a download disposition, and a sandbox in case it is opened anyway.
async fn download(
    State(state): State<AppState>,
    TicketUser(who): TicketUser,
    Path((id, sha256)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (a, bytes) = state.tickets.attachment_bytes(&who, &id, &sha256).await?;
    let disposition = format!(
        "attachment; filename=\"{}\"",
        download_name(&a.sha256, &a.content_type)
    );
    Ok((
        [
            (header::CONTENT_TYPE, a.content_type),
            (header::CONTENT_DISPOSITION, disposition),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; sandbox".to_string(),
            ),
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
    /// `YYYY-MM` (from the start of that month) or Unix ms. Default: this month's start.
    from: Option<String>,
    /// `YYYY-MM` (to the end of that month) or Unix ms. Default: now.
    to: Option<String>,
    #[serde(default, rename = "token")]
    _token: Option<String>,
}

/// A window bound: `YYYY-MM` (the month's start, or its end with `end`) or Unix ms.
fn bound(value: &str, end: bool, offset_ms: i64) -> Result<i64, ApiError> {
    if let Some((y, m)) = crate::tickets::time::parse_month(value) {
        let (start, stop) = crate::tickets::time::month_range(y, m, offset_ms);
        return Ok(if end { stop } else { start });
    }
    value
        .parse::<i64>()
        .ok()
        // Up to the year 9999: bounds that overflow nothing downstream.
        .filter(|ms| (0..=253_402_300_799_999).contains(ms))
        .ok_or_else(|| ApiError::bad_request(format!("`{value}`: expected YYYY-MM or Unix ms")))
}

/// Counts per school, category, grade or month in a window: found, open, overdue,
/// supervised, closed, median days to close.
async fn stats(
    State(state): State<AppState>,
    TicketUser(who): TicketUser,
    query: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query?;
    let by = StatsBy::parse(q.by.as_deref().unwrap_or("school"))
        .ok_or_else(|| ApiError::bad_request("by must be school, category, grade or month"))?;
    let now = now_ms();
    let offset = state.tickets.config.offset_ms();
    let from = match q.from.as_deref() {
        Some(v) => bound(v, false, offset)?,
        None => {
            let (y, m, _) = crate::tickets::time::local_date(now, offset);
            crate::tickets::time::month_range(y, m, offset).0
        }
    };
    let to = match q.to.as_deref() {
        Some(v) => bound(v, true, offset)?,
        None => now + 1,
    };
    let rows = state.tickets.stats(&who, by, from, to, now).await?;
    let mut answer = json!({ "by": by.as_str(), "from": from, "to": to, "groups": rows });
    if by == StatsBy::School {
        // The shape of the first version of this endpoint, kept for its readers.
        let schools: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "school": r.key,
                    "name": r.label,
                    "open": r.open,
                    "overdue": r.overdue,
                    "supervised": r.supervised,
                    "found": r.found,
                    "closed_this_month": r.closed,
                    "median_days_to_close": r.median_days_to_close,
                })
            })
            .collect();
        answer["schools"] = json!(schools);
    }
    Ok(Json(answer))
}

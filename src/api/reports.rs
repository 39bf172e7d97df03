//! The reporting calendar: a school submits (freezes) its month, everyone sees the calendar
//! of their schools, a frozen month downloads byte for byte, and the bureau gets the district
//! file joining the frozen months. The rules (who may submit, due days, freezing) live in
//! [`crate::tickets::reports`]; this file maps HTTP to them.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde::Deserialize;

use super::area::Routes;
use super::error::ApiError;
use super::extract::TicketUser;
use super::state::AppState;
use crate::tickets::export::Format;

pub fn routes() -> Routes {
    Routes::new()
        .route("/api/v1/reports", get(calendar))
        .route("/api/v1/reports/district/{month}", get(district))
        .route("/api/v1/reports/{school}/{month}", get(snapshot))
        .route("/api/v1/reports/{school}/{month}/submit", post(submit))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CalendarQuery {
    month: String,
    #[serde(default, rename = "token")]
    _token: Option<String>,
}

async fn calendar(
    State(state): State<AppState>,
    TicketUser(who): TicketUser,
    query: Result<Query<CalendarQuery>, QueryRejection>,
) -> Result<Json<crate::tickets::reports::Calendar>, ApiError> {
    let Query(q) = query?;
    Ok(Json(state.tickets.calendar(&who, &q.month).await?))
}

async fn submit(
    State(state): State<AppState>,
    TicketUser(who): TicketUser,
    Path((school, month)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let snapshot = state.tickets.submit_report(&who, &school, &month).await?;
    Ok((StatusCode::CREATED, Json(snapshot)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FormatQuery {
    format: Option<String>,
    #[serde(default, rename = "token")]
    _token: Option<String>,
}

fn format_of(q: &FormatQuery) -> Result<Format, ApiError> {
    Format::parse(q.format.as_deref().unwrap_or("csv"))
        .ok_or_else(|| ApiError::bad_request("format must be csv, xlsx or json"))
}

/// A download: its type, a file name, and the hash of the frozen rows when there is one.
fn download(format: Format, name: String, sha256: Option<String>, bytes: Vec<u8>) -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.{}\"", format.extension()),
            ),
        ],
        bytes,
    )
        .into_response();
    if let Some(hash) = sha256.and_then(|h| h.parse().ok()) {
        response.headers_mut().insert("x-content-sha256", hash);
    }
    response
}

async fn snapshot(
    State(state): State<AppState>,
    TicketUser(who): TicketUser,
    Path((school, month)): Path<(String, String)>,
    query: Result<Query<FormatQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let format = format_of(&q)?;
    let (snapshot, bytes) = state
        .tickets
        .snapshot_bytes(&who, &school, &month, format)
        .await?;
    Ok(download(
        format,
        format!("hazard-report-{}-{}", snapshot.school, snapshot.month),
        Some(snapshot.sha256),
        bytes,
    ))
}

async fn district(
    State(state): State<AppState>,
    TicketUser(who): TicketUser,
    Path(month): Path<String>,
    query: Result<Query<FormatQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let format = format_of(&q)?;
    let (bytes, _) = state.tickets.district_file(&who, &month, format).await?;
    Ok(download(
        format,
        format!("district-hazard-list-{month}"),
        None,
        bytes,
    ))
}

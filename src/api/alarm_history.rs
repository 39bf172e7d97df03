//! The alarm history: `GET /api/v1/alarms/history`, every alarm the local store keeps (a year
//! and at least a million by default, see `[storage] alarm_retention`), filtered by time,
//! school, building, class, state and text, newest first, a page at a time with keyset
//! pagination (`next_cursor`), or the whole selection as a CSV or XLSX export with Chinese
//! headers. The queries live in `store/alarm_history.rs`; this file reads the request, scopes
//! it to the caller's schools and writes the answer.

use std::io::{Seek, SeekFrom};

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tracing::warn;

use super::area::Routes;
use super::error::ApiError;
use super::extract::{bounded_text, Reader};
use super::state::AppState;
use crate::access::Principal;
use crate::alarms::export::{self, Lang, XlsxWriter, COLUMNS};
use crate::alarms::AlarmState;
use crate::model::AlarmClass;
use crate::store::{AlarmFilter, HistoryCursor, LocalStore};

/// Alarms per page of an answer (default and most).
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;
/// Alarms read per query while exporting.
const EXPORT_PAGE: u32 = 2000;

pub fn routes() -> Routes {
    Routes::new().route("/api/v1/alarms/history", get(history))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    /// Raised at or after, Unix ms.
    from: Option<i64>,
    /// Raised before, Unix ms.
    to: Option<i64>,
    school: Option<String>,
    building: Option<String>,
    class: Option<String>,
    state: Option<String>,
    /// Text in the sensor, rule or message.
    q: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
    /// `json` (default), `csv` or `xlsx`.
    format: Option<String>,
    /// Export headers and labels: `zh` (default) or `en`.
    lang: Option<String>,
    /// Accepted (and read by the authenticator) so `?token=` passes `deny_unknown_fields`.
    #[serde(default, rename = "token")]
    _token: Option<String>,
}

/// The filter of `q`, narrowed to the schools `who` may see.
fn filter_of(q: &HistoryQuery, who: &Principal) -> Result<AlarmFilter, ApiError> {
    if let (Some(from), Some(to)) = (q.from, q.to) {
        if from > to {
            return Err(ApiError::bad_request("from must not be after to"));
        }
    }
    let schools = match (&q.school, who.scope()) {
        // A school outside the caller's scope matches nothing (no hint that it exists).
        (Some(school), _) if !who.may_see_school(school) => Some(Vec::new()),
        (Some(school), _) => Some(vec![school.clone()]),
        (None, Some(scope)) => Some(scope.to_vec()),
        (None, None) => None,
    };
    let class = match q.class.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(
            AlarmClass::ALL
                .into_iter()
                .find(|c| c.as_str() == raw)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "class must be fire, gas, supervisory or fault, not `{raw}`"
                    ))
                })?,
        ),
    };
    let state = match q.state.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(AlarmState::parse(raw).ok_or_else(|| {
            ApiError::bad_request(format!(
                "state must be active_unacked, active_acked, cleared_unacked or cleared, not `{raw}`"
            ))
        })?),
    };
    Ok(AlarmFilter {
        from_ms: q.from,
        to_ms: q.to,
        schools,
        building: bounded_text("building", q.building.clone(), 100)?.filter(|b| !b.is_empty()),
        class,
        state,
        text: bounded_text("q", q.q.clone(), 200)?.filter(|t| !t.trim().is_empty()),
    })
}

async fn history(
    State(state): State<AppState>,
    Reader(who): Reader,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let filter = filter_of(&q, &who)?;
    let lang = Lang::parse(q.lang.as_deref().unwrap_or("zh"))
        .ok_or_else(|| ApiError::bad_request("lang must be zh or en"))?;
    let after = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(
            HistoryCursor::parse(raw)
                .ok_or_else(|| ApiError::bad_request(format!("cursor `{raw}` is not valid")))?,
        ),
    };
    let offset_ms = state.tickets.config.offset_ms();
    match q.format.as_deref().unwrap_or("json") {
        "json" => page(&state.store, &filter, after, q.limit).await,
        "csv" => Ok(csv_export(state.store.clone(), filter, lang, offset_ms)),
        "xlsx" => xlsx_export(&state, filter, lang, offset_ms).await,
        other => Err(ApiError::bad_request(format!(
            "format must be json, csv or xlsx, not `{other}`"
        ))),
    }
}

async fn page(
    store: &LocalStore,
    filter: &AlarmFilter,
    after: Option<HistoryCursor>,
    limit: Option<u32>,
) -> Result<Response, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let page = store
        .alarm_history(filter, after, limit)
        .await
        .map_err(ApiError::internal)?;
    let alarms = page
        .rows
        .iter()
        .map(|row| {
            let mut alarm = serde_json::to_value(&row.alarm).map_err(ApiError::internal)?;
            if let Some(obj) = alarm.as_object_mut() {
                obj.insert("building".into(), json!(row.building));
            }
            Ok(alarm)
        })
        .collect::<Result<Vec<Value>, ApiError>>()?;
    Ok(Json(json!({
        "alarms": alarms,
        "next_cursor": page.next.map(HistoryCursor::encode),
    }))
    .into_response())
}

fn attachment(content_type: &str, extension: &str, body: Body) -> Response {
    let filename = format!("alarm-history.{extension}");
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        body,
    )
        .into_response()
}

/// The CSV, streamed a page at a time: memory stays at one page whatever the selection. A
/// store error mid-way ends the response early (the client sees a broken transfer, not a
/// short file that looks whole).
fn csv_export(store: LocalStore, filter: AlarmFilter, lang: Lang, offset_ms: i64) -> Response {
    let head = export::csv_head(lang).map_err(std::io::Error::other);
    let pages =
        futures::stream::try_unfold(Some(None), move |next: Option<Option<HistoryCursor>>| {
            let (store, filter) = (store.clone(), filter.clone());
            async move {
                let Some(after) = next else {
                    return Ok(None);
                };
                let page = store
                    .alarm_history(&filter, after, EXPORT_PAGE)
                    .await
                    .map_err(std::io::Error::other)?;
                let rows = page
                    .rows
                    .iter()
                    .map(|r| export::cells(&r.alarm, r.building.as_deref(), lang, offset_ms));
                let bytes = export::csv_lines(rows).map_err(std::io::Error::other)?;
                Ok::<_, std::io::Error>(Some((Bytes::from(bytes), page.next.map(Some))))
            }
        });
    let body = futures::stream::once(async move { head.map(Bytes::from) })
        .chain(pages)
        .inspect(|chunk| {
            if let Err(e) = chunk {
                warn!(error = %e, "alarm history CSV export failed mid-way");
            }
        });
    attachment("text/csv; charset=utf-8", "csv", Body::from_stream(body))
}

/// The XLSX: a workbook is a zip with its directory at the end, so it is written whole (row
/// by row in constant memory, in a blocking task fed a page at a time through a channel of
/// two pages) to a temporary file, which is then streamed.
async fn xlsx_export(
    state: &AppState,
    filter: AlarmFilter,
    lang: Lang,
    offset_ms: i64,
) -> Result<Response, ApiError> {
    let temp_dir = std::env::temp_dir();
    let (tx, mut rx) = mpsc::channel::<Vec<[String; COLUMNS]>>(2);
    let writer = tokio::task::spawn_blocking(move || {
        let failed = |e: rust_xlsxwriter::XlsxError| std::io::Error::other(e.to_string());
        let mut sheet = XlsxWriter::new(lang, &temp_dir).map_err(failed)?;
        let mut full = false;
        while let Some(rows) = rx.blocking_recv() {
            for row in &rows {
                if !full && !sheet.push(row).map_err(failed)? {
                    full = true;
                }
            }
            if full {
                // Dropping the receiver stops the reader.
                break;
            }
        }
        let mut file = tempfile::tempfile_in(&temp_dir)?;
        sheet.finish(&mut file).map_err(failed)?;
        file.seek(SeekFrom::Start(0))?;
        Ok::<_, std::io::Error>(file)
    });
    let mut after = None;
    loop {
        let page = state
            .store
            .alarm_history(&filter, after, EXPORT_PAGE)
            .await
            .map_err(ApiError::internal)?;
        let rows = page
            .rows
            .iter()
            .map(|r| export::cells(&r.alarm, r.building.as_deref(), lang, offset_ms))
            .collect();
        // The sheet is full (the writer stopped): the rest does not fit.
        if tx.send(rows).await.is_err() {
            break;
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    drop(tx);
    let file = writer
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let file = tokio::fs::File::from_std(file);
    let body = futures::stream::try_unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 64 * 1024];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok::<_, std::io::Error>(None);
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), file)))
    });
    Ok(attachment(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "xlsx",
        Body::from_stream(body),
    ))
}

//! Alarm routes: list the open (or recent) alarms, read one with its journal, acknowledge,
//! shelve and reset, the live stream (SSE: `alarm`, `drill` and `resync` events) and the
//! alarm-system health (`/api/v1/alarms/kpis`, computed in `kpis.rs`). Actions go to the
//! pipeline core, which owns the alarm book; reads come from the local store.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::Json;
use futures::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

use super::area::Routes;
use super::error::ApiError;
use super::extract::{ask, bounded_text, optional_body, AlarmHandler, Reader};
use super::state::AppState;
use super::{duty, kpis};
use crate::access::Principal;
use crate::alarms::{Alarm, AlarmError, AlarmEvent, Disposition, ShelveRequest};
use crate::model::now_ms;
use crate::pipeline::Command;

/// The live stream: exempt from the request timeout (it ends at shutdown or session end).
pub(super) const STREAM_PATH: &str = "/api/v1/alarms/stream";

pub fn routes() -> Routes {
    Routes::new()
        .route("/api/v1/alarms", get(list_alarms))
        .route(STREAM_PATH, get(alarm_stream))
        .route("/api/v1/alarms/kpis", get(kpis::kpis))
        .route("/api/v1/alarms/{id}", get(get_alarm))
        .route("/api/v1/alarms/{id}/ack", post(acknowledge))
        .route("/api/v1/alarms/{id}/shelve", post(shelve))
        .route("/api/v1/alarms/{id}/reset", post(reset))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlarmQuery {
    /// `active` (default: everything not yet cleared) or `all`.
    state: Option<String>,
    school: Option<String>,
    limit: Option<i64>,
    /// Accepted (and read by the authenticator) so `?token=` passes `deny_unknown_fields`.
    #[serde(default, rename = "token")]
    _token: Option<String>,
}

async fn list_alarms(
    State(state): State<AppState>,
    Reader(who): Reader,
    query: Result<Query<AlarmQuery>, QueryRejection>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let Query(q) = query?;
    let limit = q.limit.unwrap_or(500).clamp(1, 5000);
    let mut alarms = match q.state.as_deref() {
        None | Some("active") => {
            let mut open = ask(&state, |reply| Command::OpenAlarms { reply }).await?;
            // Highest priority first, then newest.
            open.sort_by(|a, b| {
                a.class
                    .cmp(&b.class)
                    .then(b.severity.cmp(&a.severity))
                    .then(b.raised_at.cmp(&a.raised_at))
            });
            open
        }
        Some("all") => state
            .store
            .recent_alarms(q.school.as_deref(), limit)
            .await
            .map_err(ApiError::internal)?,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "state must be active or all, not `{other}`"
            )))
        }
    };
    alarms.retain(|a| {
        who.may_see_school(&a.school) && q.school.as_deref().is_none_or(|s| *a.school == *s)
    });
    alarms.truncate(limit as usize);
    // Each with `unattended` where a duty room covers its school (computed here, from the
    // shifts the API keeps, never by the core).
    let alarms = alarms
        .iter()
        .map(|a| {
            let mut v = serde_json::to_value(a).map_err(ApiError::internal)?;
            duty::annotate(&state.duty, &mut v, &a.school, a.raised_at);
            Ok(v)
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(Json(alarms))
}

fn parse_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::bad_request(format!("alarm id must be a number, not `{raw}`")))
}

/// The alarm from the store, or, when the store does not have it (its journal write failed:
/// disk full), from the core's book, so an alarm that was shown can still be acted on.
async fn find_alarm(state: &AppState, id: u64) -> Result<Alarm, ApiError> {
    let stored = state.store.alarm(id).await;
    if let Ok(Some(alarm)) = stored {
        return Ok(alarm);
    }
    let open = ask(state, |reply| Command::OpenAlarms { reply }).await?;
    match (open.into_iter().find(|a| a.id == id), stored) {
        (Some(alarm), _) => Ok(alarm),
        (None, Err(e)) => Err(ApiError::internal(e)),
        (None, Ok(_)) => Err(ApiError::not_found(format!("alarm {id} not found"))),
    }
}

async fn get_alarm(
    State(state): State<AppState>,
    Reader(who): Reader,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id(&id)?;
    let alarm = find_alarm(&state, id).await?;
    if !who.may_see_school(&alarm.school) {
        return Err(ApiError::not_found(format!("alarm {id} not found")));
    }
    let journal = state.store.journal(id).await.map_err(ApiError::internal)?;
    let mut body = serde_json::to_value(&alarm).map_err(ApiError::internal)?;
    duty::annotate(&state.duty, &mut body, &alarm.school, alarm.raised_at);
    if let Some(obj) = body.as_object_mut() {
        obj.insert(
            "journal".into(),
            serde_json::to_value(journal).map_err(ApiError::internal)?,
        );
    }
    Ok(Json(body))
}

/// Checks that the caller may act on the alarm's school (404 otherwise: no hint it exists).
async fn authorize_alarm(state: &AppState, who: &Principal, id: u64) -> Result<(), ApiError> {
    let alarm = find_alarm(state, id).await?;
    if !who.may_see_school(&alarm.school) {
        return Err(ApiError::forbidden(format!(
            "alarm {id} belongs to a school outside your scope"
        )));
    }
    Ok(())
}

/// The event of an action, with the alarm's `unattended` flag like the list and the stream
/// (so a board that takes the answer keeps its badge).
fn alarm_result(
    duty: &crate::duty::Duty,
    result: Result<AlarmEvent, AlarmError>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let annotated = |event: AlarmEvent| {
        let mut v = serde_json::to_value(&event).unwrap_or_default();
        duty::annotate(duty, &mut v, &event.alarm.school, event.alarm.raised_at);
        Json(v)
    };
    result.map(annotated).map_err(|e| match e {
        AlarmError::NotFound(_) => ApiError::not_found(e.to_string()),
        AlarmError::BadShelveExpiry { .. } => ApiError::bad_request(e.to_string()),
        _ if e.is_forbidden() => ApiError::forbidden(e.to_string()),
        _ => ApiError::conflict(e.to_string()),
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AckBody {
    comment: Option<String>,
}

async fn acknowledge(
    State(state): State<AppState>,
    AlarmHandler(who): AlarmHandler,
    Path(id): Path<String>,
    body: Result<Json<AckBody>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id(&id)?;
    let body = optional_body(body)?;
    let comment = bounded_text("comment", body.comment, 1000)?;
    authorize_alarm(&state, &who, id).await?;
    let result = ask(&state, |reply| Command::Acknowledge {
        id,
        user: who.name.clone(),
        comment,
        reply,
    })
    .await?;
    alarm_result(&state.duty, result)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShelveBody {
    /// How long, e.g. `30m` or `2h` (at most 24 h).
    duration: String,
    reason: String,
}

async fn shelve(
    State(state): State<AppState>,
    AlarmHandler(who): AlarmHandler,
    Path(id): Path<String>,
    body: Result<Json<ShelveBody>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id(&id)?;
    let Json(body) = body?;
    let duration = humantime::parse_duration(&body.duration)
        .map_err(|e| ApiError::bad_request(format!("duration `{}`: {e}", body.duration)))?;
    if body.reason.trim().is_empty() {
        return Err(ApiError::bad_request("a shelve needs a reason"));
    }
    let reason = bounded_text("reason", Some(body.reason), 1000)?.unwrap_or_default();
    let until_ms = now_ms().saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX));
    authorize_alarm(&state, &who, id).await?;
    // The alarm book decides by role: fire and gas need an operator or an admin, and only an
    // admin extends a run of shelves past 24 h.
    let role = who
        .role
        .ok_or_else(|| ApiError::unauthorized("this action needs a token or a login"))?;
    let request = ShelveRequest {
        user: who.name.clone(),
        role,
        until_ms,
        reason,
    };
    let result = ask(&state, |reply| Command::Shelve { id, request, reply }).await?;
    alarm_result(&state.duty, result)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResetBody {
    comment: Option<String>,
    /// What the alarm was: `real` (a fire alarm opens an incident report), `false` (a fire
    /// alarm files a maintenance ticket) or `test` (nothing is filed). Optional: the console
    /// asks for it on every fire alarm.
    disposition: Option<String>,
    /// The alarm was false (e.g. a faulty detector): the older spelling of
    /// `disposition: "false"`, still accepted.
    #[serde(default)]
    false_alarm: bool,
}

impl ResetBody {
    /// The disposition the body asks for; 400 for an unknown one or one that contradicts
    /// `false_alarm: true`.
    fn disposition(&self) -> Result<Option<Disposition>, ApiError> {
        let named = self
            .disposition
            .as_deref()
            .map(|d| {
                Disposition::parse(d).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "disposition must be real, false or test, not `{d}`"
                    ))
                    .with_zh("复位结论只能是真实火警、误报或测试")
                })
            })
            .transpose()?;
        match (named, self.false_alarm) {
            (Some(d), true) if d != Disposition::False => Err(ApiError::bad_request(format!(
                "false_alarm: true contradicts disposition `{}`",
                d.as_str()
            ))),
            (None, true) => Ok(Some(Disposition::False)),
            (named, _) => Ok(named),
        }
    }
}

async fn reset(
    State(state): State<AppState>,
    AlarmHandler(who): AlarmHandler,
    Path(id): Path<String>,
    body: Result<Json<ResetBody>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id(&id)?;
    let body: ResetBody = optional_body(body)?;
    let disposition = body.disposition()?;
    let comment = bounded_text("comment", body.comment, 1000)?;
    authorize_alarm(&state, &who, id).await?;
    let result = ask(&state, |reply| Command::Reset {
        id,
        user: who.name.clone(),
        comment,
        disposition,
        reply,
    })
    .await?;
    alarm_result(&state.duty, result)
}

/// The live stream. It ends at shutdown, and — for a console session — when the session ends
/// (logout, password change, user disabled, expiry).
async fn alarm_stream(
    State(state): State<AppState>,
    Reader(who): Reader,
    parts: Parts,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let metrics = state.metrics.clone();
    metrics.sse_clients.inc();
    let guard = SseClientGuard(metrics);
    let shutdown = state.shutdown.clone();
    let session_end = state.auth.session_end(&parts);
    // Drill starts and ends ride on the same stream as `drill` events (clients that only
    // listen for `alarm` ignore them).
    let drills = drill_events(&state, who.clone());
    let duty = state.duty.clone();
    let stream = BroadcastStream::new(state.alarm_stream.subscribe()).filter_map(move |item| {
        let _alive = &guard;
        match item {
            Ok(event) if who.may_see_school(&event.alarm.school) => {
                // The board row carries the unattended flag like the list does.
                let mut data = serde_json::to_value(&*event).unwrap_or_default();
                duty::annotate(&duty, &mut data, &event.alarm.school, event.alarm.raised_at);
                Some(Ok(Event::default()
                    .event("alarm")
                    .id(event.alarm.id.to_string())
                    .json_data(&data)
                    .unwrap_or_else(|_| {
                        Event::default().comment("unencodable event")
                    })))
            }
            Ok(_) => None,
            // The client fell behind: tell it to reload the active list.
            Err(BroadcastStreamRecvError::Lagged(missed)) => Some(Ok(Event::default()
                .event("resync")
                .data(json!({ "missed": missed }).to_string()))),
        }
    });
    let stream = futures::stream::select(stream, drills);
    let ended = async move {
        match session_end {
            Some(session) => {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = session.cancelled() => {}
                }
            }
            None => shutdown.cancelled().await,
        }
    };
    let stream = futures::StreamExt::take_until(stream, ended);
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Counts connected stream clients; decremented when the stream is dropped.
struct SseClientGuard(std::sync::Arc<crate::metrics::Metrics>);

impl Drop for SseClientGuard {
    fn drop(&mut self) {
        self.0.sse_clients.dec();
    }
}

/// The `drill` events of the alarm stream that `who` may see.
fn drill_events(state: &AppState, who: Principal) -> impl Stream<Item = Result<Event, Infallible>> {
    BroadcastStream::new(state.drill_stream.subscribe()).filter_map(move |item| match item {
        Ok(event) if who.may_see_school(&event.drill.school) => Some(Ok(Event::default()
            .event("drill")
            .json_data(&*event)
            .unwrap_or_else(|_| Event::default().comment("unencodable event")))),
        Ok(_) => None,
        // Missed drill changes: the client reloads (alarms and drills) on `resync`.
        Err(BroadcastStreamRecvError::Lagged(missed)) => Some(Ok(Event::default()
            .event("resync")
            .data(json!({ "missed": missed }).to_string()))),
    })
}

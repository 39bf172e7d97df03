//! Routes and handlers.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::oneshot;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

use super::{ApiError, AppState};
use crate::access::Principal;
use crate::alarms::{Alarm, AlarmError, AlarmEvent};
use crate::model::{now_ms, SensorId};
use crate::pipeline::Command;

pub fn router(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/alarms", get(list_alarms))
        .route("/api/v1/alarms/stream", get(alarm_stream))
        .route("/api/v1/alarms/{id}", get(get_alarm))
        .route("/api/v1/alarms/{id}/ack", post(acknowledge))
        .route("/api/v1/alarms/{id}/shelve", post(shelve))
        .route("/api/v1/alarms/{id}/reset", post(reset))
        .route("/api/v1/devices", get(devices))
        .route("/api/v1/sensors", get(sensors))
        .route(
            "/api/v1/sensors/{school}/{device}/{point}/history",
            get(history),
        )
        .route("/api/v1/openapi.json", get(openapi))
        .merge(super::console::routes())
        .merge(super::tickets::routes())
        .merge(super::drills::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// A caller who may read.
pub(super) struct Reader(pub(super) Principal);
/// A caller who may act on alarms.
struct AlarmHandler(Principal);

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state.auth.reader(parts).map(Reader)
    }
}

impl FromRequestParts<AppState> for AlarmHandler {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state.auth.alarm_handler(parts).map(AlarmHandler)
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    let store = state.store.ping().await;
    let mqtt = !state.mqtt_required || state.metrics.mqtt_connected.get() == 1;
    let body = json!({ "store": store, "mqtt": mqtt });
    let status = if store && mqtt {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Sends a command to the core and waits for its answer.
pub(super) async fn ask<T>(
    state: &AppState,
    make: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Result<T, ApiError> {
    let (tx, rx) = oneshot::channel();
    let sent = tokio::time::timeout(Duration::from_secs(5), state.commands.send(make(tx))).await;
    if !matches!(sent, Ok(Ok(()))) {
        return Err(ApiError::unavailable(
            "the gateway core is busy or stopping",
        ));
    }
    tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| ApiError::unavailable("the gateway core did not answer"))
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
) -> Result<Json<Vec<Alarm>>, ApiError> {
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
    Ok(Json(alarms))
}

fn parse_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::bad_request(format!("alarm id must be a number, not `{raw}`")))
}

async fn find_alarm(state: &AppState, id: u64) -> Result<Alarm, ApiError> {
    state
        .store
        .alarm(id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("alarm {id} not found")))
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

fn alarm_result(result: Result<AlarmEvent, AlarmError>) -> Result<Json<AlarmEvent>, ApiError> {
    result.map(Json).map_err(|e| match e {
        AlarmError::NotFound(_) => ApiError::not_found(e.to_string()),
        AlarmError::BadShelveExpiry { .. } => ApiError::bad_request(e.to_string()),
        _ => ApiError::conflict(e.to_string()),
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AckBody {
    comment: Option<String>,
}

fn bounded_text(field: &str, text: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    match text {
        Some(t) if t.chars().count() > max => Err(ApiError::bad_request(format!(
            "{field} is longer than {max} characters"
        ))),
        other => Ok(other),
    }
}

async fn acknowledge(
    State(state): State<AppState>,
    AlarmHandler(who): AlarmHandler,
    Path(id): Path<String>,
    body: Result<Json<AckBody>, JsonRejection>,
) -> Result<Json<AlarmEvent>, ApiError> {
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
    alarm_result(result)
}

/// An absent body (no Content-Type) counts as `{}`.
fn optional_body<T: Default>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    match body {
        Ok(Json(b)) => Ok(b),
        Err(JsonRejection::MissingJsonContentType(_)) => Ok(T::default()),
        Err(e) => Err(e.into()),
    }
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
) -> Result<Json<AlarmEvent>, ApiError> {
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
    let result = ask(&state, |reply| Command::Shelve {
        id,
        user: who.name.clone(),
        until_ms,
        reason,
        reply,
    })
    .await?;
    alarm_result(result)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResetBody {
    comment: Option<String>,
    /// The alarm was false (e.g. a faulty detector).
    #[serde(default)]
    false_alarm: bool,
}

async fn reset(
    State(state): State<AppState>,
    AlarmHandler(who): AlarmHandler,
    Path(id): Path<String>,
    body: Result<Json<ResetBody>, JsonRejection>,
) -> Result<Json<AlarmEvent>, ApiError> {
    let id = parse_id(&id)?;
    let body = optional_body(body)?;
    let comment = bounded_text("comment", body.comment, 1000)?;
    authorize_alarm(&state, &who, id).await?;
    let result = ask(&state, |reply| Command::Reset {
        id,
        user: who.name.clone(),
        comment,
        false_alarm: body.false_alarm,
        reply,
    })
    .await?;
    alarm_result(result)
}

async fn alarm_stream(
    State(state): State<AppState>,
    Reader(who): Reader,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let metrics = state.metrics.clone();
    metrics.sse_clients.inc();
    let guard = SseClientGuard(metrics);
    let shutdown = state.shutdown.clone();
    // Drill starts and ends ride on the same stream as `drill` events (clients that only
    // listen for `alarm` ignore them).
    let drills = super::drills::stream_events(&state, who.clone());
    let stream = BroadcastStream::new(state.alarm_stream.subscribe()).filter_map(move |item| {
        let _alive = &guard;
        match item {
            Ok(event) if who.may_see_school(&event.alarm.school) => Some(Ok(Event::default()
                .event("alarm")
                .id(event.alarm.id.to_string())
                .json_data(&*event)
                .unwrap_or_else(|_| Event::default().comment("unencodable event")))),
            Ok(_) => None,
            // The client fell behind: tell it to reload the active list.
            Err(BroadcastStreamRecvError::Lagged(missed)) => Some(Ok(Event::default()
                .event("resync")
                .data(json!({ "missed": missed }).to_string()))),
        }
    });
    let stream = futures::stream::select(stream, drills);
    let stream =
        futures::StreamExt::take_until(stream, async move { shutdown.cancelled_owned().await });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Counts connected stream clients; decremented when the stream is dropped.
struct SseClientGuard(std::sync::Arc<crate::metrics::Metrics>);

impl Drop for SseClientGuard {
    fn drop(&mut self) {
        self.0.sse_clients.dec();
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceQuery {
    #[serde(default)]
    unregistered: bool,
    school: Option<String>,
    /// Accepted (and read by the authenticator) so `?token=` passes `deny_unknown_fields`.
    #[serde(default, rename = "token")]
    _token: Option<String>,
}

async fn devices(
    State(state): State<AppState>,
    Reader(who): Reader,
    query: Result<Query<DeviceQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let mut devices = ask(&state, |reply| Command::Devices { reply }).await?;
    devices.retain(|d| {
        who.may_see_school(&d.school)
            && q.school.as_deref().is_none_or(|s| d.school == s)
            && (!q.unregistered || d.registration == crate::pipeline::Registration::Unregistered)
    });
    Ok(Json(devices).into_response())
}

async fn sensors(
    State(state): State<AppState>,
    Reader(who): Reader,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let live = ask(&state, |reply| Command::Sensors { reply }).await?;
    let devices = ask(&state, |reply| Command::Devices { reply }).await?;
    let by_key: std::collections::HashMap<_, _> =
        devices.iter().map(|d| (d.device.clone(), d)).collect();
    Ok(Json(
        live.into_iter()
            .filter(|(sensor, _)| who.may_see_school(&sensor.school))
            .map(|(sensor, value)| {
                let device = by_key.get(&sensor.device_key());
                json!({
                    "sensor": sensor,
                    "school": &*sensor.school,
                    "device": &*sensor.device,
                    "point": &*sensor.point,
                    "profile": device.and_then(|d| d.info.profile.clone()),
                    "building": device.and_then(|d| d.info.building.clone()),
                    "room": device.and_then(|d| d.info.room.clone()),
                    "registration": device.map(|d| d.registration),
                    "value": value.value,
                    "ts": value.ts,
                    "quality": value.quality,
                    "source": value.source,
                })
            })
            .collect(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    /// Unix ms; default 24 h before `to`.
    from: Option<i64>,
    /// Unix ms; default now.
    to: Option<i64>,
    limit: Option<i64>,
    /// Accepted (and read by the authenticator) so `?token=` passes `deny_unknown_fields`.
    #[serde(default, rename = "token")]
    _token: Option<String>,
}

async fn history(
    State(state): State<AppState>,
    Reader(who): Reader,
    Path((school, device, point)): Path<(String, String, String)>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = query?;
    let sensor = SensorId::parse(&format!("{school}/{device}/{point}"))
        .ok_or_else(|| ApiError::bad_request("sensor path must be <school>/<device>/<point>"))?;
    if !who.may_see_school(&sensor.school) {
        return Err(ApiError::forbidden("school outside your scope"));
    }
    let to = q.to.unwrap_or_else(now_ms);
    let from = q.from.unwrap_or(to - 24 * 3600 * 1000);
    if from > to {
        return Err(ApiError::bad_request("from must not be after to"));
    }
    let limit = q.limit.unwrap_or(10_000).clamp(1, 100_000);
    let points = state
        .store
        .history(&sensor.to_string(), from, to, limit)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(
        json!({ "sensor": sensor, "from": from, "to": to, "points": points }),
    ))
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

//! Device routes: the devices the core knows (registered, announced, commissioned,
//! unregistered), commissioning them from the console (handlers in `commission.rs`), the live
//! value of every sensor with its device's place, and a sensor's history from the local store.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, put};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::area::Routes;
use super::commission;
use super::error::ApiError;
use super::extract::{ask, Reader};
use super::state::AppState;
use crate::model::{now_ms, SensorId};
use crate::pipeline::Command;

pub fn routes() -> Routes {
    Routes::new()
        .route("/api/v1/devices", get(devices).post(commission::register))
        .route(
            "/api/v1/devices/{school}/{device}",
            patch(commission::edit).delete(commission::decommission),
        )
        .route(
            "/api/v1/devices/{school}/{device}/overrides",
            put(commission::put_overrides),
        )
        .route(
            "/api/v1/devices/{school}/{device}/audit",
            get(commission::audit),
        )
        .route("/api/v1/sensors", get(sensors))
        .route(
            "/api/v1/sensors/{school}/{device}/{point}/history",
            get(history),
        )
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

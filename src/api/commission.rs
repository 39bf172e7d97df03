//! Commissioning from the console (admins, and lab managers for their schools): register an
//! unregistered or announced device, edit it, change its threshold overrides, decommission
//! it. The core applies a change at once (`pipeline/commission.rs`: the next reading is judged
//! by it); then it is stored with its audit (who, when, before, after) so it survives a
//! restart. A device in the config file is read-only here (409).
//!
//! Routes are wired in `devices.rs` (`/api/v1/devices` also lists devices).

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{ask, bounded_text, Reader};
use super::state::AppState;
use crate::access::{Principal, Role};
use crate::model::{valid_name, DeviceInfo, DeviceKey};
use crate::pipeline::commission::{parse_overrides, Commission, CommissionError};
use crate::pipeline::{Command, Registration};
use crate::store::CommissionedDevice;

/// A caller who may commission devices: an admin, or a lab manager (within their schools).
pub struct Commissioner(pub Principal);

impl FromRequestParts<AppState> for Commissioner {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let p = state.auth.principal(parts)?;
        match p.role {
            None => Err(ApiError::unauthorized(
                "this action needs Authorization: Bearer <token> or a console login",
            )),
            Some(Role::Admin | Role::LabManager) => Ok(Commissioner(p)),
            Some(_) => Err(ApiError::forbidden(
                "only admins and lab managers commission devices",
            )),
        }
    }
}

fn key_of(who: &Principal, school: &str, device: &str) -> Result<DeviceKey, ApiError> {
    if !valid_name(school) || !valid_name(device) {
        return Err(ApiError::bad_request(
            "school and device ids are 1-64 characters of A-Z a-z 0-9 _ -",
        ));
    }
    if !who.may_see_school(school) {
        return Err(ApiError::forbidden(format!(
            "school {school} is outside your scope"
        )));
    }
    Ok(DeviceKey::new(school, device))
}

fn commission_error(e: CommissionError) -> ApiError {
    match e {
        CommissionError::ReadOnly(_) => ApiError::conflict(e.to_string()),
        CommissionError::NotCommissioned(_) => ApiError::not_found(e.to_string()),
        CommissionError::Invalid(_) => ApiError::bad_request(e.to_string()),
    }
}

/// A place or name field: at most 100 characters, empty = none.
fn place(field: &str, text: Option<String>) -> Result<Option<String>, ApiError> {
    Ok(bounded_text(field, text, 100)?.filter(|t| !t.trim().is_empty()))
}

/// The stored device of `key`; 409 for a config-file device, 404 for any other.
async fn commissioned(state: &AppState, key: &DeviceKey) -> Result<CommissionedDevice, ApiError> {
    if let Some(device) = state
        .store
        .commissioned_device(key)
        .await
        .map_err(ApiError::internal)?
    {
        return Ok(device);
    }
    let devices = ask(state, |reply| Command::Devices { reply }).await?;
    if devices
        .iter()
        .any(|d| d.device == *key && d.registration == Registration::Config)
    {
        return Err(commission_error(CommissionError::ReadOnly(key.clone())));
    }
    Err(commission_error(CommissionError::NotCommissioned(
        key.clone(),
    )))
}

/// Applies `after` in the core, then stores it with its audit; the answer is the stored form.
async fn apply(
    state: &AppState,
    who: &Principal,
    key: &DeviceKey,
    before: Option<&CommissionedDevice>,
    after: CommissionedDevice,
    action: &str,
) -> Result<Value, ApiError> {
    let change = Commission {
        device: key.clone(),
        info: after.info.clone(),
        overrides: parse_overrides(&after.overrides).map_err(commission_error)?,
    };
    let entry = ask(state, |reply| Command::Commission { change, reply })
        .await?
        .map_err(commission_error)?;
    // Taken by the core: a store failure now means the change holds until a restart (500
    // says so; the next attempt stores it).
    state
        .store
        .save_commissioned(key, Some(&after), before, &who.name, action)
        .await
        .map_err(ApiError::internal)?;
    let mut body = serde_json::to_value(entry).map_err(ApiError::internal)?;
    if let Some(obj) = body.as_object_mut() {
        obj.insert("overrides".into(), after.overrides);
    }
    Ok(body)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewDevice {
    school: String,
    device: String,
    profile: String,
    building: Option<String>,
    room: Option<String>,
    name: Option<String>,
    /// `{"<rule id>": {"alarm": 45.0, …}}`.
    overrides: Option<Value>,
}

/// `POST /api/v1/devices`: registers an unregistered or announced device.
pub(super) async fn register(
    State(state): State<AppState>,
    Commissioner(who): Commissioner,
    body: Result<Json<NewDevice>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body?;
    let key = key_of(&who, &body.school, &body.device)?;
    if state
        .store
        .commissioned_device(&key)
        .await
        .map_err(ApiError::internal)?
        .is_some()
    {
        return Err(ApiError::conflict(format!(
            "device {key} is already commissioned (PATCH it)"
        )));
    }
    let after = CommissionedDevice {
        school: body.school.clone(),
        device: body.device.clone(),
        info: DeviceInfo {
            profile: Some(bounded_text("profile", Some(body.profile), 64)?.unwrap_or_default()),
            building: place("building", body.building)?,
            room: place("room", body.room)?,
            name: place("name", body.name)?,
        },
        overrides: body.overrides.unwrap_or_else(|| json!({})),
    };
    let answer = apply(&state, &who, &key, None, after, "register").await?;
    Ok((StatusCode::CREATED, Json(answer)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeviceEdit {
    profile: Option<String>,
    building: Option<String>,
    room: Option<String>,
    name: Option<String>,
}

/// `PATCH /api/v1/devices/{school}/{device}`: the fields given replace the stored ones (an
/// empty string clears a place or name).
pub(super) async fn edit(
    State(state): State<AppState>,
    Commissioner(who): Commissioner,
    Path((school, device)): Path<(String, String)>,
    body: Result<Json<DeviceEdit>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let key = key_of(&who, &school, &device)?;
    let before = commissioned(&state, &key).await?;
    let mut after = before.clone();
    if let Some(profile) = bounded_text("profile", body.profile, 64)? {
        after.info.profile = Some(profile);
    }
    if body.building.is_some() {
        after.info.building = place("building", body.building)?;
    }
    if body.room.is_some() {
        after.info.room = place("room", body.room)?;
    }
    if body.name.is_some() {
        after.info.name = place("name", body.name)?;
    }
    Ok(Json(
        apply(&state, &who, &key, Some(&before), after, "edit").await?,
    ))
}

/// `PUT /api/v1/devices/{school}/{device}/overrides`: the device's threshold overrides, all
/// of them (`{}` = the profile's own).
pub(super) async fn put_overrides(
    State(state): State<AppState>,
    Commissioner(who): Commissioner,
    Path((school, device)): Path<(String, String)>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(overrides) = body?;
    if !overrides.is_object() {
        return Err(ApiError::bad_request(
            "overrides are an object: {\"<rule id>\": {\"alarm\": 45.0}}",
        ));
    }
    let key = key_of(&who, &school, &device)?;
    let before = commissioned(&state, &key).await?;
    let after = CommissionedDevice {
        overrides,
        ..before.clone()
    };
    Ok(Json(
        apply(&state, &who, &key, Some(&before), after, "overrides").await?,
    ))
}

/// `DELETE /api/v1/devices/{school}/{device}`: decommissions the device (its open conditions
/// clear; if it reports again it is listed as unregistered).
pub(super) async fn decommission(
    State(state): State<AppState>,
    Commissioner(who): Commissioner,
    Path((school, device)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let key = key_of(&who, &school, &device)?;
    let before = commissioned(&state, &key).await?;
    let device = key.clone();
    ask(&state, |reply| Command::Decommission { device, reply })
        .await?
        .map_err(commission_error)?;
    state
        .store
        .save_commissioned(&key, None, Some(&before), &who.name, "decommission")
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(
        json!({ "school": school, "device": key.device.as_ref(), "decommissioned": true }),
    ))
}

/// `GET /api/v1/devices/{school}/{device}/audit`: every commissioning change, oldest first.
pub(super) async fn audit(
    State(state): State<AppState>,
    Reader(who): Reader,
    Path((school, device)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    if !valid_name(&school) || !valid_name(&device) {
        return Err(ApiError::bad_request(
            "school and device ids are 1-64 characters of A-Z a-z 0-9 _ -",
        ));
    }
    if !who.may_see_school(&school) {
        return Err(ApiError::forbidden("school outside your scope"));
    }
    let key = DeviceKey::new(&school, &device);
    let entries = state
        .store
        .device_audit(&key)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "audit": entries })))
}

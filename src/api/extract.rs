//! What the area files share: the extractors that authenticate a request and check its role
//! ([`Reader`], [`AlarmHandler`], [`TicketUser`]), [`ask`] for a question to the pipeline
//! core, and small helpers for request bodies. Area files import from here (and from
//! `error`, `state`); nothing here imports an area file.

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::Json;
use tokio::sync::oneshot;

use super::error::ApiError;
use super::state::AppState;
use crate::access::Principal;
use crate::pipeline::Command;

/// A caller who may read (anyone with a token or session; anonymous too with `public_read`).
pub struct Reader(pub Principal);

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state.auth.reader(parts).map(Reader)
    }
}

/// A caller who may act on alarms (acknowledge, shelve, reset).
pub struct AlarmHandler(pub Principal);

impl FromRequestParts<AppState> for AlarmHandler {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state.auth.alarm_handler(parts).map(AlarmHandler)
    }
}

/// A caller with a valid token or session, whatever the role (tickets are never public;
/// which role may do what is decided in [`crate::tickets`]).
pub struct TicketUser(pub Principal);

impl FromRequestParts<AppState> for TicketUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let p = state.auth.principal(parts)?;
        if p.role.is_none() {
            return Err(ApiError::unauthorized(
                "tickets need Authorization: Bearer <token>",
            ));
        }
        Ok(TicketUser(p))
    }
}

/// Sends a command to the core and waits for its answer.
pub async fn ask<T>(
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

/// An absent body (no Content-Type) counts as `{}`.
pub fn optional_body<T: Default>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    match body {
        Ok(Json(b)) => Ok(b),
        Err(JsonRejection::MissingJsonContentType(_)) => Ok(T::default()),
        Err(e) => Err(e.into()),
    }
}

/// `text` if it has at most `max` characters; 400 naming `field` otherwise.
pub fn bounded_text(
    field: &str,
    text: Option<String>,
    max: usize,
) -> Result<Option<String>, ApiError> {
    match text {
        Some(t) if t.chars().count() > max => Err(ApiError::bad_request(format!(
            "{field} is longer than {max} characters"
        ))),
        other => Ok(other),
    }
}

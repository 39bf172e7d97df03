//! The web console: static pages embedded in the binary (`web/`), login and logout, and the
//! current session. It sits on top of the same API as scripts: the browser's session cookie
//! (HttpOnly, SameSite=Strict) stands for the user wherever a bearer token would.
//!
//! Routes: `/` (the console), `/login` (page; `POST` with JSON `{name, password}`),
//! `/logout` (`POST`), `/assets/{file}`, `GET|DELETE /api/v1/session`, and the alarm-system
//! health `GET /api/v1/alarms/kpis`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::auth::{Authenticator, SESSION_COOKIE};
use super::routes::Reader;
use super::{ApiError, AppState};
use crate::access::Principal;
use crate::users::{log_failed_login, LoginGate};

/// Content security policy for the console: everything from the gateway itself, nothing else.
const CSP: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../web/app.js"),
    },
    Asset {
        name: "i18n.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../web/i18n.js"),
    },
    Asset {
        name: "login.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../web/login.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../web/app.css"),
    },
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/login", get(login_page).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/assets/{file}", get(asset))
        .route("/api/v1/session", get(session).delete(logout))
        .route("/api/v1/alarms/kpis", get(super::kpis::kpis))
}

fn page(body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    page(include_str!("../../web/index.html"))
}

async fn login_page() -> Response {
    page(include_str!("../../web/login.html"))
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == file) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.content_type),
                (header::CACHE_CONTROL, "no-cache"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            a.body,
        )
            .into_response(),
        None => ApiError::not_found("no such asset").into_response(),
    }
}

fn principal_json(p: &Principal) -> serde_json::Value {
    json!({
        "name": p.name,
        "role": p.role,
        "schools": p.schools.as_deref(),
    })
}

/// Who is logged in (session cookie or bearer token); 401 when nobody is.
async fn session(Reader(who): Reader) -> Result<Json<serde_json::Value>, ApiError> {
    if who.role.is_none() {
        return Err(ApiError::unauthorized("not logged in"));
    }
    Ok(Json(principal_json(&who)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    name: String,
    password: String,
}

fn session_cookie(value: &str, max_age_secs: u64, secure: bool) -> Result<HeaderValue, ApiError> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    ))
    .map_err(ApiError::internal)
}

async fn login(
    State(state): State<AppState>,
    body: Result<Json<LoginBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let name = body.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 64 || body.password.chars().count() > 1024 {
        return Err(ApiError::bad_request(
            "name or password missing or too long",
        ));
    }
    if let LoginGate::Locked { retry_after } = state.login_limiter.check(&name) {
        // Not logged again: the lock was logged when it began (an attacker cannot flood the log).
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            "too many failed logins; try again later",
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&retry_after.as_secs().max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Ok(response);
    }
    let user = state
        .users
        .verify(&name, &body.password)
        .await
        .map_err(ApiError::internal)?;
    let Some(user) = user else {
        let failures = state.login_limiter.failed(&name);
        let reason = if failures >= state.login_limiter.max_failures() {
            "wrong name or password; name locked"
        } else {
            "wrong name or password"
        };
        log_failed_login(&name, failures, reason);
        return Err(ApiError::unauthorized("wrong user name or password"));
    };
    state.login_limiter.succeeded(&name);
    let principal = user.principal();
    let token = state.auth.sessions.create(principal.clone());
    tracing::info!(user = %user.name, role = user.role.as_str(), "console login");
    let mut headers = HeaderMap::new();
    headers.insert(
        header::SET_COOKIE,
        session_cookie(
            &token,
            state.auth.sessions.ttl().as_secs(),
            state.secure_cookie,
        )?,
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok((headers, Json(principal_json(&principal))).into_response())
}

async fn logout(State(state): State<AppState>, parts: Parts) -> Result<Response, ApiError> {
    if let Some(token) = Authenticator::session_token(&parts) {
        state.auth.sessions.remove(token);
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        header::SET_COOKIE,
        session_cookie("", 0, state.secure_cookie)?,
    );
    Ok((headers, Json(json!({ "logged_out": true }))).into_response())
}

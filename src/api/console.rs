//! The web console: static pages embedded in the binary (`web/`), login and logout, and the
//! current session. It sits on top of the same API as scripts: the browser's session cookie
//! (HttpOnly, SameSite=Strict) stands for the user wherever a bearer token would.
//!
//! Routes: `/` (the console), `/login` (page; `POST` with JSON `{name, password}`),
//! `/logout` (`POST`), `/assets/{file}` (every file under `web/` listed in [`ASSETS`]; `file`
//! may name a subfolder, e.g. `views/control.js`), `GET|DELETE /api/v1/session`.

use std::net::IpAddr;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;

use super::area::Routes;
use super::auth::{Authenticator, SESSION_COOKIE};
use super::error::ApiError;
use super::extract::Reader;
use super::server::ClientAddr;
use super::state::AppState;
use crate::access::Principal;
use crate::metrics::LoginResult;
use crate::users::{log_failed_login, Admission, Verdict};

/// Content security policy for the console: everything from the gateway itself, nothing else.
const CSP: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

struct Asset {
    /// The path below `web/`, as requested below `/assets/`.
    name: &'static str,
    body: &'static str,
}

/// Embeds files of `web/` under their path there.
macro_rules! assets {
    ($($name:literal),* $(,)?) => {
        &[$(Asset { name: $name, body: include_str!(concat!("../../web/", $name)) }),*]
    };
}

/// Every file the console loads, one line each; the HTML pages are served as routes. A test
/// checks this list against the files in `web/` and the scripts the pages load.
const ASSETS: &[Asset] = assets![
    "app.css",
    "app.js",
    "duty.css",
    "i18n.js",
    "login.js",
    "tickets.js",
    "i18n/bureau.js",
    "i18n/control.js",
    "i18n/lab.js",
    "i18n/alarm.js",
    "i18n/history.js",
    "i18n/devices.js",
    "i18n/duty.js",
    "i18n/incident.js",
    "i18n/school.js",
    "i18n/tickets.js",
    "views/bureau.js",
    "views/control.js",
    "views/lab.js",
    "views/school.js",
    "views/alarm.js",
    "views/history.js",
    "views/devices.js",
    "views/duty.js",
    "views/incident.js",
];

/// The content type of an asset, from its extension.
fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "text/plain; charset=utf-8",
    }
}

pub fn routes() -> Routes {
    Routes::new()
        .route("/", get(index))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/assets/{*file}", get(asset))
        .route("/api/v1/session", get(session).delete(logout))
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
                (header::CONTENT_TYPE, content_type(a.name)),
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
    client: Option<Extension<ClientAddr>>,
    body: Result<Json<LoginBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let client = client.map(|Extension(c)| c);
    let Json(body) = body?;
    let name = body.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 64 || body.password.chars().count() > 1024 {
        return Err(ApiError::bad_request(
            "name or password missing or too long",
        ));
    }
    // Throttled before the password is checked (see `users::throttle`): an admitted attempt
    // waits for its turn; one refused is answered at once, without a check.
    let client = client.map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    let ticket = match state.login_throttle.admit(&name, client, Instant::now()) {
        Admission::Go(ticket) => ticket,
        Admission::Refused { why, retry_after } => {
            state.metrics.login_attempt(LoginResult::Throttled);
            if let Some(suppressed) = state.metrics.login_log.allow("login_throttled") {
                tracing::warn!(user = %name, client = %client, why = why.as_str(), suppressed, "console login throttled");
            }
            let mut response = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                "too many failed logins; try again later",
            )
            .into_response();
            let secs = retry_after.as_secs_f64().ceil().max(1.0);
            if let Ok(v) = HeaderValue::from_str(&format!("{secs}")) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return Ok(response);
        }
    };
    tokio::time::sleep_until(ticket.at()).await;
    let verdict = state
        .users
        .verify(&name, &body.password)
        .await
        .map_err(ApiError::internal)?;
    let user = match verdict {
        Verdict::Valid(user) => {
            ticket.succeeded();
            state.metrics.login_attempt(LoginResult::Success);
            user
        }
        // A disabled user is told the same as a wrong password (no hint the name exists).
        Verdict::Wrong | Verdict::Disabled => {
            ticket.failed();
            state.metrics.login_attempt(LoginResult::Failure);
            let reason = match verdict {
                Verdict::Disabled => "user disabled",
                _ => "wrong name or password",
            };
            log_failed_login(&name, client, reason);
            return Err(ApiError::unauthorized("wrong user name or password"));
        }
    };
    let principal = user.principal();
    let token = state
        .auth
        .sessions
        .create(principal.clone())
        .await
        .map_err(ApiError::internal)?;
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
        state
            .auth
            .sessions
            .remove(token)
            .await
            .map_err(ApiError::internal)?;
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        header::SET_COOKIE,
        session_cookie("", 0, state.secure_cookie)?,
    );
    Ok((headers, Json(json!({ "logged_out": true }))).into_response())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;

    /// Files below `dir`, as paths relative to `root` with `/`.
    fn files(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("web/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                files(root, &path, out);
            } else if let Ok(rel) = path.strip_prefix(root) {
                out.insert(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }

    /// The `/assets/…` a page loads (`src=` and `href=`).
    fn loaded_by(page: &str) -> Vec<&str> {
        page.split("\"/assets/")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect()
    }

    const PAGES: [&str; 2] = [
        include_str!("../../web/index.html"),
        include_str!("../../web/login.html"),
    ];

    #[test]
    fn every_file_in_web_is_served_and_every_served_asset_exists() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        let mut on_disk = BTreeSet::new();
        files(&root, &root, &mut on_disk);
        let pages: BTreeSet<String> = ["index.html", "login.html"].map(String::from).into();
        let on_disk: BTreeSet<String> = on_disk.difference(&pages).cloned().collect();
        let listed: BTreeSet<String> = ASSETS.iter().map(|a| a.name.to_string()).collect();
        assert_eq!(listed.len(), ASSETS.len(), "an asset is listed twice");
        assert_eq!(
            on_disk, listed,
            "web/ and ASSETS in src/api/console.rs differ (add the file to ASSETS)"
        );
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{} is empty", a.name);
            assert_ne!(
                content_type(a.name),
                "text/plain; charset=utf-8",
                "{}",
                a.name
            );
        }
    }

    #[test]
    fn the_pages_load_only_served_assets_and_every_script_is_loaded() {
        let mut loaded = BTreeSet::new();
        for page in PAGES {
            for name in loaded_by(page) {
                assert!(
                    ASSETS.iter().any(|a| a.name == name),
                    "a page loads /assets/{name}, which is not served"
                );
                loaded.insert(name);
            }
        }
        for a in ASSETS {
            assert!(
                loaded.contains(a.name),
                "{} is served but no page loads it",
                a.name
            );
        }
        // Texts first (the mechanism, then each area's), then the core, then what registers
        // with the core.
        let index = PAGES[0];
        let at = |name: &str| index.find(&format!("\"/assets/{name}\""));
        let core = at("app.js").expect("index.html loads app.js");
        let texts = at("i18n.js").expect("index.html loads i18n.js");
        assert!(texts < core);
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let Some(pos) = at(a.name) else { continue };
            if a.name.starts_with("i18n/") {
                assert!(
                    texts < pos && pos < core,
                    "{} between i18n.js and app.js",
                    a.name
                );
            } else if !["app.js", "i18n.js"].contains(&a.name) {
                assert!(core < pos, "{} after app.js", a.name);
            }
        }
    }
}

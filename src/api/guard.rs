//! What applies to every request before it reaches a handler: the request timeout (408; the
//! alarm stream is exempt, it ends at shutdown and when its session ends), and the checks that
//! keep another web site from acting with a logged-in user's cookie: a request that changes
//! something and is authenticated by the session cookie (not by a bearer token) must be JSON
//! (or multipart/form-data for an upload; or carry no body at all) and must come from the
//! console's own origin (`Origin` equal to the `Host` it was sent to, or
//! `Sec-Fetch-Site: same-origin`). A cross-site form can send neither.

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::Authenticator;
use super::error::ApiError;
use super::state::AppState;

/// Routes that answer with a stream that lives as long as the client wants it.
const LONG_LIVED: [&str; 1] = [super::alarms::STREAM_PATH];

/// Answers 408 when the handler (reading the body included) takes longer than
/// `http.request_timeout`.
pub async fn request_timeout(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if LONG_LIVED.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    match tokio::time::timeout(state.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!(
                "the request was not answered within {:?}",
                state.request_timeout
            ),
        )
        .into_response(),
    }
}

/// One debug line per request (`RUST_LOG=campusguard::access=debug`): method, path without
/// the query (which may carry a token), status and time to the response head.
pub async fn access_log(request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    tracing::debug!(
        target: "campusguard::access",
        %method,
        path,
        status = response.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "http"
    );
    response
}

/// Refuses a cookie-authenticated mutation that is not JSON/multipart (415) or not from the
/// console's own origin (403 `cross_origin`). Reads and bearer-token calls pass untouched.
pub async fn cookie_mutations(request: Request, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    if Authenticator::by_cookie(&parts) {
        if let Err(refused) = check_cookie_mutation(&parts) {
            return refused.into_response();
        }
    }
    next.run(Request::from_parts(parts, body)).await
}

fn check_cookie_mutation(parts: &Parts) -> Result<(), ApiError> {
    if !acceptable_body(parts) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "a console request that changes something must be application/json (multipart/form-data for an upload)",
        ));
    }
    if !same_origin(parts) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "a console request that changes something must come from the console's own origin",
        ));
    }
    Ok(())
}

/// JSON or multipart, or no body at all (a logout, a DELETE).
fn acceptable_body(parts: &Parts) -> bool {
    let essence = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    match essence.as_deref() {
        Some("application/json" | "multipart/form-data") => true,
        Some(_) => false,
        None => {
            let chunked = parts.headers.contains_key(header::TRANSFER_ENCODING);
            let length = parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            !chunked && length.unwrap_or(0) == 0
        }
    }
}

/// `Sec-Fetch-Site: same-origin`, or an `Origin` whose host and port are the request's `Host`.
/// A browser that says the request is cross-site is believed whatever the `Origin`.
fn same_origin(parts: &Parts) -> bool {
    let header = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v: &axum::http::HeaderValue| v.to_str().ok())
    };
    match header("sec-fetch-site") {
        Some("same-origin") => return true,
        Some(_) => return false,
        None => {}
    }
    let (Some(origin), Some(host)) = (header("origin"), header("host")) else {
        return false;
    };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|authority| authority.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, headers: &[(&str, &str)]) -> Parts {
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri("/api/v1/alarms/1/ack");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.body(()).unwrap().into_parts().0
    }

    const COOKIE: (&str, &str) = ("cookie", "cg_session=abc");
    const HOST: (&str, &str) = ("host", "127.0.0.1:8080");
    const JSON: (&str, &str) = ("content-type", "application/json");
    const LENGTH: (&str, &str) = ("content-length", "2");

    #[test]
    fn a_cookie_mutation_needs_json_and_the_console_s_origin() {
        let ok = |h: &[(&str, &str)]| check_cookie_mutation(&parts("POST", h)).is_ok();
        let same = ("origin", "http://127.0.0.1:8080");
        assert!(ok(&[COOKIE, HOST, JSON, LENGTH, same]));
        assert!(ok(&[
            COOKIE,
            HOST,
            JSON,
            LENGTH,
            ("sec-fetch-site", "same-origin")
        ]));
        assert!(ok(&[
            COOKIE,
            HOST,
            same,
            ("content-type", "multipart/form-data; boundary=x")
        ]));
        // No body at all (logout, DELETE) needs no content type.
        assert!(ok(&[COOKIE, HOST, same]));
        assert!(ok(&[COOKIE, HOST, same, ("content-length", "0")]));
        // Another origin, none, "null", or a browser saying cross-site.
        assert!(!ok(&[
            COOKIE,
            HOST,
            JSON,
            LENGTH,
            ("origin", "http://evil.example")
        ]));
        assert!(!ok(&[COOKIE, HOST, JSON, LENGTH]));
        assert!(!ok(&[COOKIE, HOST, JSON, LENGTH, ("origin", "null")]));
        assert!(!ok(&[
            COOKIE,
            HOST,
            JSON,
            LENGTH,
            ("origin", "http://127.0.0.1:8081")
        ]));
        let cross = ("sec-fetch-site", "cross-site");
        assert!(!ok(&[COOKIE, HOST, JSON, LENGTH, same, cross]));
        // What a form can send without asking first.
        for form in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/mixed",
        ] {
            assert!(
                !ok(&[COOKIE, HOST, same, LENGTH, ("content-type", form)]),
                "{form}"
            );
        }
        assert!(!ok(&[COOKIE, HOST, same, LENGTH]));
        assert!(!ok(&[COOKIE, HOST, same, ("transfer-encoding", "chunked")]));
    }

    #[test]
    fn only_cookie_authenticated_requests_are_checked() {
        let bearer = ("authorization", "Bearer t");
        assert!(Authenticator::by_cookie(&parts("POST", &[COOKIE])));
        assert!(!Authenticator::by_cookie(&parts("POST", &[COOKIE, bearer])));
        assert!(!Authenticator::by_cookie(&parts("POST", &[HOST])));
    }
}

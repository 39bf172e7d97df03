//! Who is calling: bearer tokens (compared in constant time) and the console's session cookie,
//! which stands for its user wherever a bearer token would. The sessions themselves are kept
//! by [`crate::users::sessions`]; roles and school scope are [`crate::access`].

use std::sync::Arc;

use axum::http::request::Parts;
use tokio_util::sync::CancellationToken;

use super::config::HttpConfig;
use super::error::ApiError;
use crate::access::Principal;
use crate::users::sessions::SessionTable;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "cg_session";

struct TokenEntry {
    secret: Vec<u8>,
    principal: Principal,
}

/// The token table, built once from config.
pub struct Authenticator {
    tokens: Vec<TokenEntry>,
    public_read: bool,
    /// Console sessions opened by `/login`.
    pub sessions: Arc<SessionTable>,
}

impl Authenticator {
    /// The tokens of `config`; console logins open sessions in `sessions`.
    pub fn new(config: &HttpConfig, sessions: Arc<SessionTable>) -> Self {
        let tokens = config
            .tokens
            .iter()
            .filter_map(|t| {
                Some(TokenEntry {
                    secret: t.secret()?.into_bytes(),
                    principal: Principal::new(&t.name, t.role, t.schools.clone()),
                })
            })
            .collect();
        Self {
            tokens,
            public_read: config.public_read,
            sessions,
        }
    }

    /// The session token in the request's cookie, if any.
    pub fn session_token(parts: &Parts) -> Option<&str> {
        parts
            .headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|h| cookie_value(h, SESSION_COOKIE))
    }

    /// Whether the request authenticates with its session cookie (no bearer or query token).
    pub fn by_cookie(parts: &Parts) -> bool {
        !Self::presents_token(parts) && Self::session_token(parts).is_some()
    }

    /// Whether the request carries a bearer token (header or `?token=`), valid or not.
    fn presents_token(parts: &Parts) -> bool {
        Self::presented_token(parts).is_some()
    }

    /// Cancelled when the console session the request is authenticated with ends; `None` for
    /// bearer tokens (which do not end) and for no live session.
    pub fn session_end(&self, parts: &Parts) -> Option<CancellationToken> {
        if Self::presents_token(parts) {
            return None;
        }
        Self::session_token(parts).and_then(|t| self.sessions.ended(t))
    }

    /// The principal of a token, if it is one of ours.
    pub fn lookup(&self, presented: &str) -> Option<&Principal> {
        let presented = presented.as_bytes();
        // Check every entry so the time taken does not tell which prefix matched.
        let mut found = None;
        for entry in &self.tokens {
            if constant_time_eq(&entry.secret, presented) {
                found = Some(&entry.principal);
            }
        }
        found
    }

    /// The caller of a request: `Authorization: Bearer …`, or `?token=` (EventSource cannot
    /// set headers), or else a live console session cookie. An unknown or expired session
    /// counts as anonymous (the console then shows its login page).
    pub fn principal(&self, parts: &Parts) -> Result<Principal, ApiError> {
        match Self::presented_token(parts) {
            Some(token) => self
                .lookup(token)
                .cloned()
                .ok_or_else(|| ApiError::unauthorized("invalid token")),
            None => Ok(Self::session_token(parts)
                .and_then(|t| self.sessions.lookup(t))
                .unwrap_or_else(Principal::anonymous)),
        }
    }

    /// The bearer token of `Authorization: Bearer …` or `?token=`, if any.
    fn presented_token(parts: &Parts) -> Option<&str> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let query = parts
            .uri
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")));
        header.or(query)
    }

    /// A caller allowed to read: any valid token, or anyone when `public_read`.
    pub fn reader(&self, parts: &Parts) -> Result<Principal, ApiError> {
        let p = self.principal(parts)?;
        if p.role.is_none() && !self.public_read {
            return Err(ApiError::unauthorized(
                "this endpoint needs Authorization: Bearer <token> or a console login",
            ));
        }
        Ok(p)
    }

    /// A caller allowed to act on alarms.
    pub fn alarm_handler(&self, parts: &Parts) -> Result<Principal, ApiError> {
        let p = self.principal(parts)?;
        match p.role {
            None => Err(ApiError::unauthorized(
                "this action needs Authorization: Bearer <token>",
            )),
            Some(role) if role.handles_alarms() => Ok(p),
            Some(_) => Err(ApiError::forbidden(
                "role may not act on alarms (operator, lab_manager or admin)",
            )),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of one cookie in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_values_are_found_among_others() {
        assert_eq!(
            cookie_value("a=1; cg_session=abc; b=2", SESSION_COOKIE),
            Some("abc")
        );
        assert_eq!(cookie_value("cg_sessionx=1", SESSION_COOKIE), None);
    }
}

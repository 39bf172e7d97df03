//! Bearer tokens, console sessions, roles and school scope. Tokens are compared in constant
//! time; a session cookie (see [`crate::users::sessions`]) stands for its user wherever a
//! bearer token would.

use std::sync::Arc;
use std::time::Duration;

use axum::http::request::Parts;
use serde::{Deserialize, Serialize};

use super::config::HttpConfig;
use super::error::ApiError;
use crate::users::sessions::{cookie_value, SessionTable, SESSION_COOKIE};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Operator,
    LabManager,
    SchoolSafety,
    Bureau,
    Admin,
}

impl Role {
    /// Who may acknowledge, shelve and reset alarms: the people watching them.
    pub fn handles_alarms(self) -> bool {
        matches!(self, Role::Operator | Role::LabManager | Role::Admin)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::LabManager => "lab_manager",
            Role::SchoolSafety => "school_safety",
            Role::Bureau => "bureau",
            Role::Admin => "admin",
        }
    }
}

/// The caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub role: Option<Role>,
    /// `None` = every school.
    pub schools: Option<Arc<[String]>>,
}

impl Principal {
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".into(),
            role: None,
            schools: None,
        }
    }

    pub fn may_see_school(&self, school: &str) -> bool {
        self.schools
            .as_ref()
            .is_none_or(|list| list.iter().any(|s| s == school))
    }
}

struct TokenEntry {
    secret: Vec<u8>,
    principal: Principal,
}

/// The token table, built once from config.
pub struct Authenticator {
    tokens: Vec<TokenEntry>,
    public_read: bool,
    /// Console sessions opened by `/login`.
    pub sessions: SessionTable,
}

impl Authenticator {
    pub fn new(config: &HttpConfig) -> Self {
        let tokens = config
            .tokens
            .iter()
            .filter_map(|t| {
                Some(TokenEntry {
                    secret: t.secret()?.into_bytes(),
                    principal: Principal {
                        name: t.name.clone(),
                        role: Some(t.role),
                        schools: t.schools.clone().map(Into::into),
                    },
                })
            })
            .collect();
        Self {
            tokens,
            public_read: config.public_read,
            sessions: SessionTable::new(Duration::from_secs(12 * 3600), 10_000),
        }
    }

    /// Uses `sessions` (with the configured lifetime and bound) for console logins.
    pub fn with_sessions(mut self, sessions: SessionTable) -> Self {
        self.sessions = sessions;
        self
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
        match header.or(query) {
            Some(token) => self
                .lookup(token)
                .cloned()
                .ok_or_else(|| ApiError::unauthorized("invalid token")),
            None => Ok(Self::session_token(parts)
                .and_then(|t| self.sessions.lookup(t))
                .unwrap_or_else(Principal::anonymous)),
        }
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

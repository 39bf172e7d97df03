//! Bearer tokens, roles and school scope. Tokens are compared in constant time.

use std::sync::Arc;

use axum::http::request::Parts;
use serde::{Deserialize, Serialize};

use super::config::HttpConfig;
use super::error::ApiError;

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
        }
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
    /// set headers).
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
            None => Ok(Principal::anonymous()),
        }
    }

    /// A caller allowed to read: any valid token, or anyone when `public_read`.
    pub fn reader(&self, parts: &Parts) -> Result<Principal, ApiError> {
        let p = self.principal(parts)?;
        if p.role.is_none() && !self.public_read {
            return Err(ApiError::unauthorized(
                "this endpoint needs Authorization: Bearer <token>",
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

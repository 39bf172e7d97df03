//! Console sessions: a bounded in-memory table from a random token to the user's
//! [`Principal`] (identity storage, next to the users table). The HTTP layer carries the token
//! in a cookie and looks it up here wherever a bearer token would do; this module knows nothing
//! of HTTP. Sessions end at logout, at expiry, or when the gateway restarts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;

use crate::access::Principal;

struct Session {
    principal: Principal,
    expires: Instant,
    created: Instant,
}

pub struct SessionTable {
    ttl: Duration,
    max: usize,
    sessions: Mutex<HashMap<String, Session>>,
}

impl SessionTable {
    /// The table `[users]` asks for (session lifetime and bound).
    pub fn from_config(config: &super::config::UsersConfig) -> Self {
        Self::new(config.session_ttl, config.max_sessions)
    }

    pub fn new(ttl: Duration, max: usize) -> Self {
        Self {
            ttl,
            max: max.max(1),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Opens a session; returns its token (256 random bits, hex).
    pub fn create(&self, principal: Principal) -> String {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut sessions = self.lock();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= self.max {
            // Full of live sessions: the oldest one goes.
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            token.clone(),
            Session {
                principal,
                expires: now + self.ttl,
                created: now,
            },
        );
        token
    }

    /// The principal of a live session.
    pub fn lookup(&self, token: &str) -> Option<Principal> {
        let sessions = self.lock();
        sessions
            .get(token)
            .filter(|s| s.expires > Instant::now())
            .map(|s| s.principal.clone())
    }

    pub fn remove(&self, token: &str) {
        self.lock().remove(token);
    }

    /// Ends every session of a user (after a password change).
    pub fn remove_user(&self, name: &str) {
        self.lock().retain(|_, s| s.principal.name != name);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding this lock cannot leave the map inconsistent: keep using it.
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Principal {
        Principal {
            name: name.into(),
            role: Some(crate::access::Role::Operator),
            schools: None,
        }
    }

    #[test]
    fn a_created_session_resolves_until_removed() {
        let table = SessionTable::new(Duration::from_secs(60), 10);
        let token = table.create(user("li"));
        assert_eq!(token.len(), 64);
        assert_eq!(table.lookup(&token).map(|p| p.name), Some("li".into()));
        table.remove(&token);
        assert!(table.lookup(&token).is_none());
    }

    #[test]
    fn the_table_never_holds_more_than_its_maximum() {
        let table = SessionTable::new(Duration::from_secs(60), 2);
        let first = table.create(user("a"));
        table.create(user("b"));
        table.create(user("c"));
        assert!(table.lookup(&first).is_none());
        assert_eq!(table.lock().len(), 2);
    }
}

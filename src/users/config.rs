//! `[users]`: console sessions, login throttling, and users seeded from config at start-up.

use std::time::Duration;

use serde::Deserialize;

use crate::access::Role;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersConfig {
    /// How long a console session lives after login.
    #[serde(default = "default_session_ttl", with = "humantime_serde")]
    pub session_ttl: Duration,
    /// Open sessions kept at most; the oldest is dropped beyond it.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Failed logins of one user name before it is locked for `lockout`.
    #[serde(default = "default_max_failures")]
    pub max_failed_logins: u32,
    #[serde(default = "default_lockout", with = "humantime_serde")]
    pub lockout: Duration,
    /// Mark the session cookie `Secure` (set when the console is served over HTTPS).
    #[serde(default)]
    pub secure_cookie: bool,
    /// Users created at start-up when they do not exist yet (an existing user is left as it is).
    #[serde(default)]
    pub seed: Vec<SeedUser>,
}

/// `[[users.seed]]`: a user that must exist. It has no default password: one of `password` or
/// `password_env` must give one, or the gateway does not start.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedUser {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub schools: Option<Vec<String>>,
    #[serde(default)]
    pub password: Option<String>,
    /// Name of an environment variable holding the password (preferred over `password`).
    #[serde(default)]
    pub password_env: Option<String>,
}

// Hand-written so a password never reaches a log line.
impl std::fmt::Debug for SeedUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedUser")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("schools", &self.schools)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("password_env", &self.password_env)
            .finish()
    }
}

impl SeedUser {
    pub fn secret(&self) -> Option<String> {
        self.password_env
            .as_ref()
            .and_then(|name| std::env::var(name).ok())
            .or_else(|| self.password.clone())
            .filter(|p| !p.is_empty())
    }
}

/// User names: 1-64 letters, digits or `-_.@` (config, CLI, the users table).
pub fn valid_user_name(name: &str) -> bool {
    (1..=64).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
}

/// Shortest password accepted anywhere (config, CLI).
pub const MIN_PASSWORD_CHARS: usize = 8;

fn default_session_ttl() -> Duration {
    Duration::from_secs(12 * 3600)
}
fn default_max_sessions() -> usize {
    10_000
}
fn default_max_failures() -> u32 {
    5
}
fn default_lockout() -> Duration {
    Duration::from_secs(15 * 60)
}

impl Default for UsersConfig {
    fn default() -> Self {
        Self {
            session_ttl: default_session_ttl(),
            max_sessions: default_max_sessions(),
            max_failed_logins: default_max_failures(),
            lockout: default_lockout(),
            secure_cookie: false,
            seed: Vec::new(),
        }
    }
}

impl UsersConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut names = std::collections::HashSet::new();
        for user in &self.seed {
            if !valid_user_name(&user.name) || !names.insert(user.name.clone()) {
                problems.push(format!(
                    "users.seed `{}`: name empty, duplicate, or not 1-64 letters, digits, `-_.@`",
                    user.name
                ));
            }
            match user.secret() {
                Some(p) if p.chars().count() >= MIN_PASSWORD_CHARS => {}
                Some(_) => problems.push(format!(
                    "users.seed `{}`: password shorter than {MIN_PASSWORD_CHARS} characters",
                    user.name
                )),
                None if user.role == Role::Admin => problems.push(format!(
                    "users.seed `{}`: an admin without a password; set `password_env` (or `password`) — there is no default",
                    user.name
                )),
                None => problems.push(format!(
                    "users.seed `{}`: no password (set `password_env`, or `password`)",
                    user.name
                )),
            }
            if user.schools.as_ref().is_some_and(Vec::is_empty) {
                problems.push(format!(
                    "users.seed `{}`: schools = [] would allow nothing; omit it for all schools",
                    user.name
                ));
            }
        }
        if self.session_ttl.is_zero() || self.max_sessions == 0 || self.max_failed_logins == 0 {
            problems
                .push("users: session_ttl, max_sessions and max_failed_logins must be > 0".into());
        }
        problems
    }
}

//! `[users]`: console sessions, login throttling (the policy is in `throttle.rs`), and users
//! seeded from config at start-up.

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
    /// After a failed (or still unanswered) login of a user name, the next attempt on that
    /// name waits this long; the wait doubles with every further failure (see
    /// [`super::throttle`]).
    #[serde(default = "default_login_delay", with = "humantime_serde")]
    pub login_delay: Duration,
    /// The longest wait between attempts on one name, and the longest an attempt waits for
    /// its turn (one further away is refused with 429 at once).
    #[serde(default = "default_login_delay_max", with = "humantime_serde")]
    pub login_delay_max: Duration,
    /// Failed logins one client address may make within `login_address_window`, over all
    /// names; beyond it, its logins are refused until the window ends.
    #[serde(default = "default_login_address_failures")]
    pub login_address_failures: u32,
    #[serde(default = "default_login_address_window", with = "humantime_serde")]
    pub login_address_window: Duration,
    /// Mark the session cookie `Secure` (set when the console is served over HTTPS).
    #[serde(default)]
    pub secure_cookie: bool,
    /// Users created at start-up when they do not exist yet (an existing user is left as it is).
    #[serde(default)]
    pub seed: Vec<SeedUser>,
    /// Replaced by `login_delay`/`login_delay_max` (a guessed name is slowed down, its owner is
    /// no longer locked out). Still accepted so older configs load; `check` names them.
    #[serde(default, rename = "max_failed_logins")]
    pub deprecated_max_failed_logins: Option<u32>,
    #[serde(default, rename = "lockout", with = "humantime_serde::option")]
    pub deprecated_lockout: Option<Duration>,
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
    /// A file holding the password (a relative name is a systemd credential).
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
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
            .field("password_file", &self.password_file)
            .finish()
    }
}

impl SeedUser {
    pub fn secret(&self) -> Option<String> {
        self.password_env
            .as_ref()
            .and_then(|name| std::env::var(name).ok())
            .or_else(|| crate::secrets::read(self.password_file.as_deref()?).ok())
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
fn default_login_delay() -> Duration {
    Duration::from_secs(1)
}
fn default_login_delay_max() -> Duration {
    Duration::from_secs(10)
}
fn default_login_address_failures() -> u32 {
    10
}
fn default_login_address_window() -> Duration {
    Duration::from_secs(15 * 60)
}

impl Default for UsersConfig {
    fn default() -> Self {
        Self {
            session_ttl: default_session_ttl(),
            max_sessions: default_max_sessions(),
            login_delay: default_login_delay(),
            login_delay_max: default_login_delay_max(),
            login_address_failures: default_login_address_failures(),
            login_address_window: default_login_address_window(),
            secure_cookie: false,
            seed: Vec::new(),
            deprecated_max_failed_logins: None,
            deprecated_lockout: None,
        }
    }
}

impl UsersConfig {
    /// Keys this config still carries from an older release, with what replaced them.
    pub fn deprecations(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.deprecated_max_failed_logins.is_some() || self.deprecated_lockout.is_some() {
            notes.push(
                "users.max_failed_logins and users.lockout are ignored: a guessed name is now \
                 slowed down (users.login_delay, users.login_delay_max) instead of locking its \
                 owner out; remove them"
                    .to_owned(),
            );
        }
        notes
    }

    /// Why `campusguard run` refuses these seeded users although they are valid: a password
    /// of the example or demo config (`known`), or one ending in `change-me`.
    pub fn run_problems(&self, known: &[String]) -> Vec<String> {
        self.seed
            .iter()
            .filter(|u| {
                u.secret().is_some_and(|p| {
                    p.to_ascii_lowercase().ends_with("change-me") || known.contains(&p)
                })
            })
            .map(|u| {
                format!(
                    "users.seed `{}`: the password is a placeholder of the example or demo config",
                    u.name
                )
            })
            .collect()
    }

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
            if let Some(Err(e)) = user.password_file.as_deref().map(crate::secrets::read) {
                problems.push(format!("users.seed `{}`: password_file: {e}", user.name));
                continue;
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
        if self.session_ttl.is_zero() || self.max_sessions == 0 {
            problems.push("users: session_ttl and max_sessions must be > 0".into());
        }
        if self.login_delay.is_zero() || self.login_delay > self.login_delay_max {
            problems.push("users: login_delay must be > 0 and at most login_delay_max".into());
        }
        if self.login_address_failures == 0 || self.login_address_window.is_zero() {
            problems
                .push("users: login_address_failures and login_address_window must be > 0".into());
        }
        problems
    }
}

//! Console users: stored in the local SQLite store (`users` table) with argon2id password
//! hashes, a [`Role`] and an optional school scope. The console's login handler checks a
//! password here, then opens a session in [`sessions::SessionTable`]; from then on the
//! session cookie stands for the user's [`Principal`] in every API call.
//!
//! Failed logins are throttled per user name by [`LoginLimiter`] and logged.

pub mod cli;
pub mod config;
pub mod sessions;

pub use config::{valid_user_name, SeedUser, UsersConfig, MIN_PASSWORD_CHARS};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::Serialize;
use sqlx::{Row, SqlitePool};
use tracing::{info, warn};

use crate::access::{Principal, Role};
use crate::model::now_ms;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("users: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("user `{0}` already exists")]
    Exists(String),
    #[error("no user `{0}`")]
    NotFound(String),
    #[error("user name `{0}` must be 1-64 letters, digits or `-_.@`")]
    BadName(String),
    #[error("password shorter than {MIN_PASSWORD_CHARS} characters")]
    ShortPassword,
    #[error("unknown role `{0}` (operator, lab_manager, school_safety, bureau, admin)")]
    BadRole(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("stored user `{name}` is corrupt: {reason}")]
    Corrupt { name: String, reason: String },
}

/// A user as listed (never with the hash).
#[derive(Debug, Clone, Serialize)]
pub struct UserInfo {
    pub name: String,
    pub role: Role,
    /// `None` = every school.
    pub schools: Option<Vec<String>>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl UserInfo {
    pub fn principal(&self) -> Principal {
        Principal::new(&self.name, self.role, self.schools.clone())
    }
}

pub fn parse_role(raw: &str) -> Result<Role, UserError> {
    serde_json::from_value(serde_json::Value::String(raw.to_string()))
        .map_err(|_| UserError::BadRole(raw.to_string()))
}

/// Hashes off the async runtime: argon2 is slow on purpose.
async fn hash_password(password: String) -> Result<String, UserError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| UserError::Hash(e.to_string()))
    })
    .await
    .map_err(|e| UserError::Hash(e.to_string()))?
}

fn verify_blocking(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash to verify against when the user does not exist, so the answer takes as long.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(b"no such user", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// The users table.
#[derive(Clone)]
pub struct UserStore {
    pool: SqlitePool,
    /// At most two password checks at once: argon2 uses ~19 MiB and a core for tens of ms.
    hashing: Arc<tokio::sync::Semaphore>,
}

impl UserStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self {
            pool,
            hashing: Arc::new(tokio::sync::Semaphore::new(2)),
        }
    }

    /// The users table in `pool`, with the users `config` seeds created.
    pub async fn open(pool: SqlitePool, config: &UsersConfig) -> Result<Self, UserError> {
        let users = Self::new(pool);
        users.seed(config).await?;
        Ok(users)
    }

    pub async fn add(
        &self,
        name: &str,
        role: Role,
        schools: Option<Vec<String>>,
        password: &str,
    ) -> Result<(), UserError> {
        if !valid_user_name(name) {
            return Err(UserError::BadName(name.to_string()));
        }
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(UserError::ShortPassword);
        }
        let hash = hash_password(password.to_string()).await?;
        let schools = schools
            .map(|s| serde_json::to_string(&s))
            .transpose()
            .map_err(|e| UserError::Hash(e.to_string()))?;
        let now = now_ms();
        let done = sqlx::query(
            "INSERT INTO users (name, password_hash, role, schools, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(hash)
        .bind(role.as_str())
        .bind(schools)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(UserError::Exists(name.to_string()));
        }
        Ok(())
    }

    pub async fn set_password(&self, name: &str, password: &str) -> Result<(), UserError> {
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(UserError::ShortPassword);
        }
        let hash = hash_password(password.to_string()).await?;
        let done = sqlx::query("UPDATE users SET password_hash = ?, updated_at = ? WHERE name = ?")
            .bind(hash)
            .bind(now_ms())
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(UserError::NotFound(name.to_string()));
        }
        Ok(())
    }

    pub async fn list(&self) -> Result<Vec<UserInfo>, UserError> {
        let rows = sqlx::query(
            "SELECT name, role, schools, created_at, updated_at FROM users ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| decode_user(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect()
    }

    /// The user, when the password is right. Slow on purpose (argon2), also for unknown names.
    pub async fn verify(&self, name: &str, password: &str) -> Result<Option<UserInfo>, UserError> {
        let row = sqlx::query(
            "SELECT name, role, schools, created_at, updated_at, password_hash FROM users WHERE name = ?",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        let (user, phc) = match row {
            Some(r) => (
                Some(decode_user(
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.get(3),
                    r.get(4),
                )?),
                r.get::<String, _>(5),
            ),
            None => (None, dummy_hash().to_string()),
        };
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|e| UserError::Hash(e.to_string()))?;
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || verify_blocking(&password, &phc))
            .await
            .map_err(|e| UserError::Hash(e.to_string()))?;
        Ok(user.filter(|_| ok))
    }

    /// Creates the configured users that do not exist yet.
    pub async fn seed(&self, config: &UsersConfig) -> Result<(), UserError> {
        for user in &config.seed {
            // Validation already refused a seed user without a password.
            let Some(password) = user.secret() else {
                continue;
            };
            let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users WHERE name = ?")
                .bind(&user.name)
                .fetch_optional(&self.pool)
                .await?;
            if exists.is_some() {
                continue;
            }
            match self
                .add(&user.name, user.role, user.schools.clone(), &password)
                .await
            {
                Ok(()) => {
                    info!(user = %user.name, role = user.role.as_str(), "created console user from config")
                }
                Err(UserError::Exists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn decode_user(
    name: String,
    role: String,
    schools: Option<String>,
    created_at: i64,
    updated_at: i64,
) -> Result<UserInfo, UserError> {
    let role = parse_role(&role).map_err(|e| UserError::Corrupt {
        name: name.clone(),
        reason: e.to_string(),
    })?;
    let schools = schools
        .map(|s| serde_json::from_str::<Vec<String>>(&s))
        .transpose()
        .map_err(|e| UserError::Corrupt {
            name: name.clone(),
            reason: e.to_string(),
        })?;
    Ok(UserInfo {
        name,
        role,
        schools,
        created_at,
        updated_at,
    })
}

/// Throttles failed logins per user name: after `max_failures` within `lockout`, that name
/// is refused until `lockout` has passed since the first failure. Bounded: at most
/// [`LoginLimiter::MAX_TRACKED`] names are tracked.
pub struct LoginLimiter {
    max_failures: u32,
    lockout: Duration,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

/// What the limiter says about a login attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginGate {
    Open,
    Locked { retry_after: Duration },
}

impl LoginLimiter {
    pub const MAX_TRACKED: usize = 10_000;

    pub fn new(max_failures: u32, lockout: Duration) -> Self {
        Self {
            max_failures,
            lockout,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The limiter `[users]` asks for.
    pub fn from_config(config: &UsersConfig) -> Self {
        Self::new(config.max_failed_logins, config.lockout)
    }

    pub fn max_failures(&self) -> u32 {
        self.max_failures
    }

    pub fn check(&self, name: &str) -> LoginGate {
        let map = self.lock();
        match map.get(name) {
            Some((count, first)) if *count >= self.max_failures => {
                let left = self.lockout.saturating_sub(first.elapsed());
                if left.is_zero() {
                    LoginGate::Open
                } else {
                    LoginGate::Locked { retry_after: left }
                }
            }
            _ => LoginGate::Open,
        }
    }

    /// Records a failure; returns how many failures the name has in its window.
    pub fn failed(&self, name: &str) -> u32 {
        let mut map = self.lock();
        let now = Instant::now();
        map.retain(|_, (_, first)| now.duration_since(*first) < self.lockout);
        if map.len() >= Self::MAX_TRACKED && !map.contains_key(name) {
            // Full: forget the oldest, never grow without bound.
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (_, first))| *first)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        let entry = map.entry(name.to_string()).or_insert((0, now));
        entry.0 += 1;
        entry.0
    }

    pub fn succeeded(&self, name: &str) {
        self.lock().remove(name);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, Instant)>> {
        // The map stays consistent even if a holder panicked.
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Logs a failed login (user name and why; never the password).
pub fn log_failed_login(name: &str, failures: u32, reason: &str) {
    warn!(user = %name, failures, reason, "console login failed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_locked_after_too_many_failures_and_freed_by_success() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(60));
        assert_eq!(limiter.check("li"), LoginGate::Open);
        for _ in 0..3 {
            limiter.failed("li");
        }
        assert!(matches!(limiter.check("li"), LoginGate::Locked { .. }));
        assert_eq!(limiter.check("wang"), LoginGate::Open);
        limiter.succeeded("li");
        assert_eq!(limiter.check("li"), LoginGate::Open);
    }

    #[test]
    fn roles_parse_from_their_config_names() {
        assert_eq!(parse_role("lab_manager").ok(), Some(Role::LabManager));
        assert!(parse_role("root").is_err());
    }

    #[test]
    fn user_names_are_short_and_plain() {
        assert!(valid_user_name("zhang.san@xhsy"));
        assert!(valid_user_name("张三"));
        assert!(!valid_user_name(""));
        assert!(!valid_user_name("a b"));
        assert!(!valid_user_name(&"x".repeat(65)));
    }
}

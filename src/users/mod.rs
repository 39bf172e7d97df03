//! Console users: stored in the local SQLite store (`users` table) with argon2id password
//! hashes, a [`Role`], an optional school scope and a `disabled` flag. The console's login
//! handler checks a password here, then opens a session in [`sessions::SessionTable`]; from
//! then on the session cookie stands for the user's [`Principal`] in every API call. Changing
//! a password or disabling a user ends the user's sessions (here, in the store, and — through
//! a recorded revocation — in a running gateway).
//!
//! Logins are throttled per user name and per client address by [`throttle::LoginThrottle`],
//! before the password is checked; failures are logged.

pub mod cli;
pub mod config;
pub mod sessions;
pub mod throttle;

pub use config::{valid_user_name, SeedUser, UsersConfig, MIN_PASSWORD_CHARS};
pub use throttle::{Admission, LoginThrottle};

use std::sync::{Arc, OnceLock};

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
    /// A disabled user cannot log in (`campusguard users disable|enable`).
    #[serde(default)]
    pub disabled: bool,
}

/// What a password check found.
#[derive(Debug)]
pub enum Verdict {
    /// The password is right and the user may log in.
    Valid(UserInfo),
    /// No such user, or the wrong password (the caller is not told which).
    Wrong,
    /// The password is right but the user is disabled.
    Disabled,
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

    /// Changes a password and ends the user's sessions (in one transaction).
    pub async fn set_password(&self, name: &str, password: &str) -> Result<(), UserError> {
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(UserError::ShortPassword);
        }
        let hash = hash_password(password.to_string()).await?;
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("UPDATE users SET password_hash = ?, updated_at = ? WHERE name = ?")
            .bind(hash)
            .bind(now_ms())
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(UserError::NotFound(name.to_string()));
        }
        end_sessions(&mut tx, name).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Disables a user (no login; every session ends) or enables it again.
    pub async fn set_disabled(&self, name: &str, disabled: bool) -> Result<(), UserError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("UPDATE users SET disabled = ?, updated_at = ? WHERE name = ?")
            .bind(disabled)
            .bind(now_ms())
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(UserError::NotFound(name.to_string()));
        }
        if disabled {
            end_sessions(&mut tx, name).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn list(&self) -> Result<Vec<UserInfo>, UserError> {
        let rows = sqlx::query(
            "SELECT name, role, schools, created_at, updated_at, disabled FROM users ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let user = decode_user(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))?;
                Ok(UserInfo {
                    disabled: r.get(5),
                    ..user
                })
            })
            .collect()
    }

    /// What the password says about the user. Slow on purpose (argon2), also for unknown and
    /// disabled users, so the time taken tells nothing.
    pub async fn verify(&self, name: &str, password: &str) -> Result<Verdict, UserError> {
        let row = sqlx::query(
            "SELECT name, role, schools, created_at, updated_at, password_hash, disabled \
             FROM users WHERE name = ?",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        let (user, phc, disabled) = match row {
            Some(r) => (
                Some(decode_user(
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.get(3),
                    r.get(4),
                )?),
                r.get::<String, _>(5),
                r.get::<bool, _>(6),
            ),
            None => (None, dummy_hash().to_string(), false),
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
        Ok(match user {
            Some(_) if !ok => Verdict::Wrong,
            Some(_) if disabled => Verdict::Disabled,
            Some(user) => Verdict::Valid(user),
            None => Verdict::Wrong,
        })
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

/// Deletes the sessions of `name` and records the revocation, so a running gateway ends them
/// too (see [`sessions::SessionTable::apply_revocations`]).
async fn end_sessions(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    name: &str,
) -> Result<(), UserError> {
    sqlx::query("DELETE FROM sessions WHERE user = ?")
        .bind(name)
        .execute(&mut **tx)
        .await?;
    sqlx::query("INSERT INTO session_revocations (user, at) VALUES (?, ?)")
        .bind(name)
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
    Ok(())
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
        disabled: false,
    })
}

/// Logs a failed login (user name and why; never the password).
pub fn log_failed_login(name: &str, client: std::net::IpAddr, reason: &str) {
    warn!(user = %name, client = %client, reason, "console login failed");
}

#[cfg(test)]
mod tests {
    use super::*;

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

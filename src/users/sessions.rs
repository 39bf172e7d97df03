//! Console sessions: a random token (in the browser's cookie) stands for a user's
//! [`Principal`]. Kept in the local store (`sessions` table, the token's SHA-256 only) so a
//! restart keeps the control room logged in, and in memory for the lookups every request makes.
//! The HTTP layer carries the token and looks it up here wherever a bearer token would do;
//! this module knows nothing of HTTP.
//!
//! A session lasts `users.session_ttl` from login and ends earlier at logout, when its user's
//! password changes or the user is disabled. The last two usually happen in another process
//! (`campusguard users passwd|disable`), which deletes the rows and records a revocation;
//! [`start`] reads new revocations every second and ends those sessions here too. Ending a
//! session cancels its [`CancellationToken`], which closes its alarm streams.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::supervisor::Supervisor;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::{Row, SqlitePool};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::UserError;
use crate::access::Principal;
use crate::model::now_ms;

/// How often revocations by other processes are read.
const REVOCATION_POLL: Duration = Duration::from_secs(1);
/// How often expired sessions are dropped (their streams closed, their rows deleted).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

struct Session {
    principal: Principal,
    /// On the monotonic clock (the row keeps the wall-clock expiry for restarts).
    expires: Instant,
    created_ms: i64,
    /// Cancelled when the session ends: its alarm streams close.
    ended: CancellationToken,
}

/// The open sessions, by the hex SHA-256 of their token.
pub struct SessionTable {
    pool: SqlitePool,
    ttl: Duration,
    max: usize,
    sessions: Mutex<HashMap<String, Session>>,
    /// The last revocation already applied.
    revoked_seq: Mutex<i64>,
}

/// The hex SHA-256 of a session token: what the store keeps, and the key of the table.
fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl SessionTable {
    /// The table of `pool` with the sessions that are still valid: unexpired, of users that
    /// exist and are not disabled (with the role and schools the user has now). Expired rows
    /// are deleted.
    pub async fn open(
        pool: SqlitePool,
        config: &super::config::UsersConfig,
    ) -> Result<Self, UserError> {
        let now = now_ms();
        sqlx::query("DELETE FROM sessions WHERE expires_at <= ?")
            .bind(now)
            .execute(&pool)
            .await?;
        let rows = sqlx::query(
            "SELECT s.token_hash, s.created_at, s.expires_at, u.name, u.role, u.schools, \
             u.created_at, u.updated_at FROM sessions s JOIN users u ON u.name = s.user \
             WHERE u.disabled = 0 ORDER BY s.created_at",
        )
        .fetch_all(&pool)
        .await?;
        let revoked: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM session_revocations")
            .fetch_one(&pool)
            .await?;
        let table = Self {
            pool,
            ttl: config.session_ttl,
            max: config.max_sessions.max(1),
            sessions: Mutex::new(HashMap::new()),
            revoked_seq: Mutex::new(revoked.unwrap_or(0)),
        };
        let at = Instant::now();
        let mut restored = 0;
        for row in &rows {
            let user =
                super::decode_user(row.get(3), row.get(4), row.get(5), row.get(6), row.get(7));
            let Ok(user) = user else { continue };
            let left = u64::try_from(row.get::<i64, _>(2) - now).unwrap_or(0);
            table.lock().insert(
                row.get(0),
                Session {
                    principal: user.principal(),
                    expires: at + Duration::from_millis(left),
                    created_ms: row.get(1),
                    ended: CancellationToken::new(),
                },
            );
            restored += 1;
        }
        if restored > 0 {
            info!(sessions = restored, "console sessions restored");
        }
        Ok(table)
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Opens a session and stores it; returns its token (256 random bits, hex). When the table
    /// is full of live sessions, the oldest one ends.
    pub async fn create(&self, principal: Principal) -> Result<String, UserError> {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let hash = token_hash(&token);
        let now = now_ms();
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO sessions (token_hash, user, created_at, expires_at) VALUES (?, ?, ?, ?)",
        )
        .bind(&hash)
        .bind(&principal.name)
        .bind(now)
        .bind(now.saturating_add(ttl_ms))
        .execute(&self.pool)
        .await?;
        let evicted = {
            let mut sessions = self.lock();
            let at = Instant::now();
            let mut evicted = drain_expired(&mut sessions, at);
            if sessions.len() >= self.max {
                if let Some(oldest) = sessions
                    .iter()
                    .min_by_key(|(_, s)| s.created_ms)
                    .map(|(k, _)| k.clone())
                {
                    if let Some(s) = sessions.remove(&oldest) {
                        s.ended.cancel();
                        evicted.push(oldest);
                    }
                }
            }
            sessions.insert(
                hash,
                Session {
                    principal,
                    expires: at + self.ttl,
                    created_ms: now,
                    ended: CancellationToken::new(),
                },
            );
            evicted
        };
        self.delete_rows(&evicted).await;
        Ok(token)
    }

    /// The principal of a live session.
    pub fn lookup(&self, token: &str) -> Option<Principal> {
        let sessions = self.lock();
        sessions
            .get(&token_hash(token))
            .filter(|s| s.expires > Instant::now())
            .map(|s| s.principal.clone())
    }

    /// A token cancelled when the session of `token` ends (for its alarm streams); `None` when
    /// there is no such live session.
    pub fn ended(&self, token: &str) -> Option<CancellationToken> {
        let sessions = self.lock();
        sessions
            .get(&token_hash(token))
            .filter(|s| s.expires > Instant::now())
            .map(|s| s.ended.clone())
    }

    /// Ends one session (logout).
    pub async fn remove(&self, token: &str) -> Result<(), UserError> {
        let hash = token_hash(token);
        if let Some(s) = self.lock().remove(&hash) {
            s.ended.cancel();
        }
        sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
            .bind(&hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends every session of `name` here (the store's rows are deleted by whoever changed the
    /// user: [`super::UserStore::set_password`], [`super::UserStore::set_disabled`]). Returns
    /// how many were open.
    pub fn end_user(&self, name: &str) -> usize {
        let mut sessions = self.lock();
        let before = sessions.len();
        sessions.retain(|_, s| {
            let keep = s.principal.name != name;
            if !keep {
                s.ended.cancel();
            }
            keep
        });
        before - sessions.len()
    }

    /// Applies revocations recorded since the last call (by this or another process).
    pub async fn apply_revocations(&self) -> Result<(), UserError> {
        let after = *self
            .revoked_seq
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let rows = sqlx::query(
            "SELECT seq, user FROM session_revocations WHERE seq > ? ORDER BY seq LIMIT 1000",
        )
        .bind(after)
        .fetch_all(&self.pool)
        .await?;
        let mut last = after;
        for row in rows {
            let (seq, user): (i64, String) = (row.get(0), row.get(1));
            let ended = self.end_user(&user);
            if ended > 0 {
                info!(user = %user, sessions = ended, "console sessions ended (password changed or user disabled)");
            }
            last = seq;
        }
        *self
            .revoked_seq
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = last;
        Ok(())
    }

    /// Drops expired sessions (closing their streams) and deletes their rows.
    pub async fn prune(&self) -> Result<(), UserError> {
        let expired = drain_expired(&mut self.lock(), Instant::now());
        self.delete_rows(&expired).await;
        sqlx::query("DELETE FROM sessions WHERE expires_at <= ?")
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Open sessions (live or not yet pruned).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    async fn delete_rows(&self, hashes: &[String]) {
        for hash in hashes {
            if let Err(e) = sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
                .bind(hash)
                .execute(&self.pool)
                .await
            {
                // The row is dropped at the next prune, and it no longer opens anything here.
                warn!(error = %e, "could not delete an ended session");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding this lock cannot leave the map inconsistent: keep using it.
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Removes the sessions expired at `at` (cancelling them); returns their keys.
fn drain_expired(sessions: &mut HashMap<String, Session>, at: Instant) -> Vec<String> {
    let expired: Vec<String> = sessions
        .iter()
        .filter(|(_, s)| s.expires <= at)
        .map(|(k, _)| k.clone())
        .collect();
    for key in &expired {
        if let Some(s) = sessions.remove(key) {
            s.ended.cancel();
        }
    }
    expired
}

/// Applies revocations every second and prunes expired sessions every minute, until
/// `shutdown`. A failing store is logged and tried again next time.
pub fn start(table: Arc<SessionTable>, shutdown: &CancellationToken, supervisor: &Supervisor) {
    let shutdown = shutdown.clone();
    supervisor.restarting("sessions", move || {
        let (table, shutdown) = (table.clone(), shutdown.clone());
        sessions_loop(table, shutdown)
    });
}

async fn sessions_loop(table: Arc<SessionTable>, shutdown: CancellationToken) {
    let mut poll = tokio::time::interval(REVOCATION_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = poll.tick() => {}
        }
        if let Err(e) = table.apply_revocations().await {
            warn!(error = %e, "reading session revocations failed; retrying");
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = Instant::now();
            if let Err(e) = table.prune().await {
                warn!(error = %e, "pruning expired sessions failed; retrying");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::{UserStore, UsersConfig};

    async fn store() -> (tempfile::TempDir, SqlitePool, UserStore) {
        let dir = tempfile::tempdir().unwrap();
        let storage = crate::store::StorageConfig {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let local = crate::store::LocalStore::open(&storage).await.unwrap();
        let pool = local.pool().clone();
        let users = UserStore::new(pool.clone());
        for name in ["li", "wang", "a", "b", "c"] {
            users
                .add(name, crate::access::Role::Operator, None, "password-1")
                .await
                .unwrap();
        }
        (dir, pool, users)
    }

    fn config(ttl: Duration, max: usize) -> UsersConfig {
        UsersConfig {
            session_ttl: ttl,
            max_sessions: max,
            ..UsersConfig::default()
        }
    }

    fn user(name: &str) -> Principal {
        Principal::new(name, crate::access::Role::Operator, None)
    }

    #[tokio::test]
    async fn a_created_session_resolves_until_removed_and_only_its_hash_is_stored() {
        let (_dir, pool, _) = store().await;
        let table = SessionTable::open(pool.clone(), &config(Duration::from_secs(60), 10))
            .await
            .unwrap();
        let token = table.create(user("li")).await.unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(table.lookup(&token).map(|p| p.name), Some("li".into()));
        let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM sessions")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(stored, vec![token_hash(&token)]);
        assert_ne!(stored[0], token);
        let ended = table.ended(&token).unwrap();
        table.remove(&token).await.unwrap();
        assert!(ended.is_cancelled());
        assert!(table.lookup(&token).is_none());
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(left, 0);
    }

    #[tokio::test]
    async fn sessions_survive_a_reopen_but_not_a_revocation_or_a_disabled_user() {
        let (_dir, pool, users) = store().await;
        let cfg = config(Duration::from_secs(60), 10);
        let table = SessionTable::open(pool.clone(), &cfg).await.unwrap();
        let li = table.create(user("li")).await.unwrap();
        let wang = table.create(user("wang")).await.unwrap();
        let a = table.create(user("a")).await.unwrap();
        drop(table);
        // A restart: all three come back.
        let table = SessionTable::open(pool.clone(), &cfg).await.unwrap();
        assert_eq!(table.lookup(&li).map(|p| p.name), Some("li".into()));
        let li_ended = table.ended(&li).unwrap();
        // Another process changes li's password and disables wang.
        users.set_password("li", "password-2").await.unwrap();
        users.set_disabled("wang", true).await.unwrap();
        assert!(table.lookup(&li).is_some(), "not applied yet");
        table.apply_revocations().await.unwrap();
        assert!(li_ended.is_cancelled());
        assert!(table.lookup(&li).is_none());
        assert!(table.lookup(&wang).is_none());
        assert!(table.lookup(&a).is_some());
        // Neither comes back at the next start.
        let table = SessionTable::open(pool, &cfg).await.unwrap();
        assert!(table.lookup(&li).is_none() && table.lookup(&wang).is_none());
        assert!(table.lookup(&a).is_some());
    }

    #[tokio::test]
    async fn the_table_never_holds_more_than_its_maximum_and_expired_sessions_go() {
        let (_dir, pool, _) = store().await;
        let table = SessionTable::open(pool.clone(), &config(Duration::from_secs(60), 2))
            .await
            .unwrap();
        let first = table.create(user("a")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
        table.create(user("b")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
        table.create(user("c")).await.unwrap();
        assert!(table.lookup(&first).is_none());
        assert_eq!(table.len(), 2);
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(rows, 2);

        let short = SessionTable::open(pool.clone(), &config(Duration::from_millis(50), 10))
            .await
            .unwrap();
        let token = short.create(user("a")).await.unwrap();
        let ended = short.ended(&token).unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(short.lookup(&token).is_none());
        short.prune().await.unwrap();
        assert!(ended.is_cancelled());
    }
}

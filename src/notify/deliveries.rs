//! The durable delivery outbox (`notify_deliveries` in `<data_dir>/notify.db`, a file of its
//! own so the notifier's writes never queue for SQLite's write lock behind the core's journal
//! writes in `campusguard.db`, nor the other way round): every notification is
//! a row written before it is sent, keyed by its idempotency key, and moves `pending` → `sent`
//! | `failed` | `cancelled`. A step planned twice (a replayed outbox entry, a rebuild after a
//! restart) is queued once (`INSERT … ON CONFLICT (key) DO NOTHING`); a row still `pending`
//! after a kill -9 is sent after the restart. Senders pick the rows of their channel that are
//! due (`next_at`), oldest first.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::message::Message;
use crate::store::StoreError;

/// A delivery to queue.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub key: String,
    pub channel: String,
    pub kind: String,
    pub alarm_id: Option<u64>,
    /// Sent together with whatever else of its channel is due (a digest), never alone early.
    pub digest: bool,
    pub message: Message,
    /// Unix ms; not sent before.
    pub not_before: i64,
}

/// A queued delivery.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: i64,
    pub key: String,
    pub channel: String,
    pub kind: String,
    pub alarm_id: Option<u64>,
    pub digest: bool,
    pub message: Message,
    pub attempts: u32,
    pub created_at: i64,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/notify");

/// The `notify_state` row that says the rows of the local store (where deliveries lived before
/// they got their own file) have been taken over.
const TAKEN_OVER: &str = "taken_over_from_local_store";

/// The table, in `notify.db`.
#[derive(Clone)]
pub struct Deliveries {
    pool: SqlitePool,
}

fn encode(e: serde_json::Error) -> StoreError {
    StoreError::Encode(e.to_string())
}

impl Deliveries {
    /// Opens (creating and migrating) the delivery file `path`. The first time, it takes over
    /// the deliveries and notifier state an older version kept in the local store `legacy`
    /// (`campusguard.db`), so nothing queued before an upgrade is lost or sent twice.
    pub async fn open(path: &Path, legacy: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        // The planner, the ticket task and one sender per channel: two connections are plenty.
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        let deliveries = Self { pool };
        if deliveries.state(TAKEN_OVER).await?.is_none() {
            deliveries.take_over(legacy).await?;
        }
        Ok(deliveries)
    }

    /// Copies the legacy tables' rows (same columns) into this file, once.
    async fn take_over(&self, legacy: &Path) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let attached = legacy.exists()
            && sqlx::query("ATTACH DATABASE ? AS legacy")
                .bind(legacy.to_string_lossy().into_owned())
                .execute(&mut *conn)
                .await
                .is_ok();
        let copied = async {
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            if attached {
                let has_tables: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM legacy.sqlite_master WHERE type = 'table' \
                     AND name IN ('notify_deliveries', 'notify_state')",
                )
                .fetch_one(&mut *tx)
                .await?;
                if has_tables == 2 {
                    sqlx::query(
                        "INSERT OR IGNORE INTO notify_deliveries SELECT * FROM legacy.notify_deliveries",
                    )
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "INSERT OR IGNORE INTO notify_state SELECT * FROM legacy.notify_state",
                    )
                    .execute(&mut *tx)
                    .await?;
                }
            }
            sqlx::query("INSERT OR REPLACE INTO notify_state (name, value) VALUES (?, 1)")
                .bind(TAKEN_OVER)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        }
        .await;
        if attached {
            let _ = sqlx::query("DETACH DATABASE legacy")
                .execute(&mut *conn)
                .await;
        }
        copied?;
        Ok(())
    }

    /// Queues `new` in one transaction; returns the keys that were not queued before.
    pub async fn enqueue(&self, new: &[NewDelivery], now: i64) -> Result<Vec<String>, StoreError> {
        let mut queued = Vec::new();
        if new.is_empty() {
            return Ok(queued);
        }
        let mut tx = self.pool.begin().await?;
        for d in new {
            let message = serde_json::to_string(&d.message).map_err(encode)?;
            let done = sqlx::query(
                "INSERT INTO notify_deliveries (key, channel, kind, alarm_id, digest, message, state, next_at, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?) ON CONFLICT (key) DO NOTHING",
            )
            .bind(&d.key)
            .bind(&d.channel)
            .bind(&d.kind)
            .bind(d.alarm_id.map(|id| id as i64))
            .bind(d.digest)
            .bind(message)
            .bind(d.not_before)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                queued.push(d.key.clone());
            }
        }
        tx.commit().await?;
        Ok(queued)
    }

    /// Pending deliveries of `channel` due at `now`, oldest first, at most `limit`. A row whose
    /// message cannot be read is marked failed (and logged), not handed out.
    pub async fn due(
        &self,
        channel: &str,
        now: i64,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, key, channel, kind, alarm_id, digest, message, attempts, created_at \
             FROM notify_deliveries WHERE channel = ? AND state = 'pending' AND next_at <= ? \
             ORDER BY next_at, id LIMIT ?",
        )
        .bind(channel)
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.get(0);
            let text: String = row.get(6);
            match serde_json::from_str::<Message>(&text) {
                Ok(message) => out.push(Delivery {
                    id,
                    key: row.get(1),
                    channel: row.get(2),
                    kind: row.get(3),
                    alarm_id: row.get::<Option<i64>, _>(4).map(|v| v as u64),
                    digest: row.get(5),
                    message,
                    attempts: u32::try_from(row.get::<i64, _>(7)).unwrap_or(0),
                    created_at: row.get(8),
                }),
                Err(e) => {
                    tracing::warn!(delivery = id, error = %e, "queued notification unreadable; marked failed");
                    self.fail(&[id], now, &format!("unreadable: {e}")).await?;
                }
            }
        }
        Ok(out)
    }

    /// When the next pending delivery of `channel` is due, if any.
    pub async fn next_due(&self, channel: &str) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(next_at) FROM notify_deliveries WHERE channel = ? AND state = 'pending'",
        )
        .bind(channel)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Delivered, all of them in one message (carried by the first).
    pub async fn sent(&self, ids: &[i64], now: i64) -> Result<(), StoreError> {
        let first = ids.first().copied();
        let mut tx = self.pool.begin().await?;
        for id in ids {
            sqlx::query(
                "UPDATE notify_deliveries SET state = 'sent', done_at = ?, last_error = NULL, \
                 sent_with = ?, attempts = attempts + 1 WHERE id = ?",
            )
            .bind(now)
            .bind(first)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Failed for good.
    pub async fn fail(&self, ids: &[i64], now: i64, error: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for id in ids {
            sqlx::query(
                "UPDATE notify_deliveries SET state = 'failed', done_at = ?, last_error = ?, \
                 attempts = attempts + 1 WHERE id = ?",
            )
            .bind(now)
            .bind(error)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Failed for now: tried again at `next_at`.
    pub async fn retry(&self, ids: &[i64], next_at: i64, error: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for id in ids {
            sqlx::query(
                "UPDATE notify_deliveries SET next_at = ?, last_error = ?, attempts = attempts + 1 \
                 WHERE id = ?",
            )
            .bind(next_at)
            .bind(error)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Cancels the pending deliveries of an alarm (it was acknowledged, or closed): they are
    /// not sent. Returns how many.
    pub async fn cancel_alarm(
        &self,
        alarm_id: u64,
        now: i64,
        why: &str,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE notify_deliveries SET state = 'cancelled', done_at = ?, last_error = ? \
             WHERE alarm_id = ? AND state = 'pending' AND kind = 'alarm'",
        )
        .bind(now)
        .bind(why)
        .bind(alarm_id as i64)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// The keys queued for one alarm starting with `prefix` (its escalation so far).
    pub async fn keys_with_prefix(
        &self,
        alarm_id: u64,
        prefix: &str,
    ) -> Result<Vec<String>, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT key FROM notify_deliveries WHERE alarm_id = ? AND substr(key, 1, ?) = ?",
        )
        .bind(alarm_id as i64)
        .bind(i64::try_from(prefix.len()).unwrap_or(i64::MAX))
        .bind(prefix)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Whether `key` was ever queued.
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notify_deliveries WHERE key = ?")
            .bind(key)
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    /// Pending deliveries of every channel.
    pub async fn pending(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM notify_deliveries WHERE state = 'pending'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// A durable fact of the notifier (`notify_state`).
    pub async fn state(&self, name: &str) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM notify_state WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn set_state(&self, name: &str, value: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO notify_state (name, value) VALUES (?, ?) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{LocalStore, StorageConfig};

    async fn legacy_row(store: &LocalStore, key: &str) {
        let inserted = sqlx::query(
            "INSERT INTO notify_deliveries (key, channel, kind, message, state, next_at, created_at) \
             VALUES (?, 'hook', 'alarm', '{}', 'pending', 0, 0)",
        )
        .bind(key)
        .execute(store.pool())
        .await;
        if let Err(e) = inserted {
            panic!("legacy row: {e}");
        }
    }

    #[tokio::test]
    async fn deliveries_of_the_local_store_are_taken_over_once_into_their_own_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let config = StorageConfig {
            data_dir: dir.path().to_path_buf(),
            ..StorageConfig::default()
        };
        let store = LocalStore::open(&config)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // Queued by an older version, in campusguard.db, with the ticket cursor.
        legacy_row(&store, "alarm:1:0:r0:n0:hook").await;
        sqlx::query("INSERT INTO notify_state (name, value) VALUES ('ticket_cursor', 42)")
            .execute(store.pool())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("notify.db");
        let deliveries = Deliveries::open(&path, &config.database_path())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(deliveries.pending().await.ok(), Some(1));
        assert!(matches!(
            deliveries.exists("alarm:1:0:r0:n0:hook").await,
            Ok(true)
        ));
        assert_eq!(deliveries.state("ticket_cursor").await.ok(), Some(Some(42)));
        deliveries.pool.close().await;

        // Taken over once: a row left in the old file later is not copied again.
        legacy_row(&store, "alarm:2:0:r0:n0:hook").await;
        let reopened = Deliveries::open(&path, &config.database_path())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reopened.pending().await.ok(), Some(1));
        assert!(matches!(
            reopened.exists("alarm:2:0:r0:n0:hook").await,
            Ok(false)
        ));
    }
}

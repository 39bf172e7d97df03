//! The local SQLite store: alarms and their journal (sqlx, `campusguard.db`) written by the core
//! before an alarm event is broadcast (so an alarm anyone has seen survives a kill -9: WAL mode,
//! committed transactions survive a process crash), and the history of readings (rusqlite,
//! `history.db`, see [`super::history`]) written in batches by [`run_history_writer`].

use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use super::history::{HistoryPoint, HistoryReader, HistoryWriter, Pruned};
use super::StorageConfig;
use crate::alarms::{Alarm, AlarmEvent, AlarmState};
use crate::metrics::Metrics;
use crate::model::{now_ms, DurableAck, Reading};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("local store: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("local history: {0}")]
    History(#[from] rusqlite::Error),
    #[error("local history: worker failed: {0}")]
    Worker(#[from] tokio::task::JoinError),
    #[error("local store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("local store: corrupt alarm row {id}: {reason}")]
    Corrupt { id: i64, reason: String },
    #[error("local store: cannot encode {0}")]
    Encode(String),
}

#[derive(Clone)]
pub struct LocalStore {
    pool: SqlitePool,
    /// Used on blocking threads only (rusqlite is synchronous); one writer task writes.
    history_writer: Arc<Mutex<HistoryWriter>>,
    history_reader: Arc<Mutex<HistoryReader>>,
    history_retention_ms: i64,
    /// The highest journal seq committed, for outbox readers to wait on (see [`super::outbox`]).
    pub(super) outbox_head: Arc<tokio::sync::watch::Sender<i64>>,
}

/// One journaled transition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JournalEntry {
    pub seq: i64,
    pub alarm_id: i64,
    pub at: i64,
    pub transition: String,
    pub user: String,
    pub comment: Option<String>,
    pub state: String,
    pub severity: String,
    pub value: Option<String>,
    pub false_alarm: bool,
}

impl LocalStore {
    /// Opens (creating if needed) `<data_dir>/campusguard.db` and migrates it, and the history
    /// in `<data_dir>/history.db`.
    pub async fn open(config: &StorageConfig) -> Result<Self, StoreError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StoreError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        })?;
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(config.database_path())
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let path = config.history_path();
        let retention = config.history_retention;
        let (writer, reader) = tokio::task::spawn_blocking(move || {
            let writer = HistoryWriter::open(&path, retention)?;
            Ok::<_, rusqlite::Error>((writer, HistoryReader::open(&path)?))
        })
        .await??;
        let head: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM alarm_journal")
            .fetch_one(&pool)
            .await?;
        Ok(Self {
            outbox_head: Arc::new(tokio::sync::watch::channel(head.unwrap_or(0)).0),
            pool,
            history_writer: Arc::new(Mutex::new(writer)),
            history_reader: Arc::new(Mutex::new(reader)),
            history_retention_ms: i64::try_from(retention.as_millis()).unwrap_or(i64::MAX),
        })
    }

    /// The connection pool, for modules that keep their own tables in this store (users).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Writes readings in one transaction (a reading of a sensor and time already stored
    /// replaces it, so a redelivered message leaves no duplicate).
    pub async fn write_history(&self, readings: Arc<Vec<Reading>>) -> Result<(), StoreError> {
        let writer = self.history_writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut writer = writer.lock().unwrap_or_else(PoisonError::into_inner);
            writer.write(&readings, now_ms())
        })
        .await??;
        Ok(())
    }

    /// A sensor's history between two Unix-ms times, oldest first, at most `limit` points.
    /// Nothing older than the retention is returned (whole days are pruned only once all of
    /// the day is past it).
    pub async fn history(
        &self,
        sensor: &str,
        from_ms: i64,
        to_ms: i64,
        limit: i64,
    ) -> Result<Vec<HistoryPoint>, StoreError> {
        let from_ms = from_ms.max(now_ms().saturating_sub(self.history_retention_ms));
        let limit = usize::try_from(limit).unwrap_or(0);
        let reader = self.history_reader.clone();
        let sensor = sensor.to_string();
        let points = tokio::task::spawn_blocking(move || {
            let mut reader = reader.lock().unwrap_or_else(PoisonError::into_inner);
            reader.history(&sensor, from_ms, to_ms, limit)
        })
        .await??;
        Ok(points)
    }

    /// Deletes readings older than `before_ms` (whole days once all of the day is older).
    pub async fn prune_history(&self, before_ms: i64) -> Result<Pruned, StoreError> {
        let writer = self.history_writer.clone();
        let pruned = tokio::task::spawn_blocking(move || {
            let mut writer = writer.lock().unwrap_or_else(PoisonError::into_inner);
            writer.prune(before_ms)
        })
        .await??;
        Ok(pruned)
    }

    /// Journals transitions and stores the alarms' new state, in one transaction. Each journal
    /// row carries the whole event, so the journal is also the alarm outbox: once this returns,
    /// outbox readers are woken.
    pub async fn record_events(&self, events: &[AlarmEvent]) -> Result<(), StoreError> {
        self.record_placed_events(events, |_| None).await
    }

    /// [`Self::record_events`], with the building of each alarm's device (kept from the raise
    /// on, for the history's building filter).
    pub async fn record_placed_events(
        &self,
        events: &[AlarmEvent],
        building_of: impl Fn(&Alarm) -> Option<String>,
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        let mut last_seq = 0;
        for event in events {
            let alarm = &event.alarm;
            let corrupt = |e: serde_json::Error| StoreError::Corrupt {
                id: alarm.id as i64,
                reason: e.to_string(),
            };
            // A note (`action`, `notified`) does not change the alarm (and may come after it
            // closed).
            if !event.transition.is_note() {
                let doc = serde_json::to_string(alarm).map_err(corrupt)?;
                sqlx::query(
                "INSERT INTO alarms (id, sensor, rule, school, class, state, raised_at, updated_at, doc, device, building) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state, \
                 updated_at = excluded.updated_at, doc = excluded.doc, \
                 building = COALESCE(alarms.building, excluded.building)",
            )
            .bind(alarm.id as i64)
            .bind(alarm.sensor.to_string())
            .bind(alarm.rule.as_ref())
            .bind(alarm.school.as_ref())
            .bind(alarm.class.as_str())
            .bind(alarm.state.as_str())
            .bind(alarm.raised_at)
            .bind(alarm.updated_at)
            .bind(doc)
            .bind(alarm.device.as_ref())
            .bind(building_of(alarm))
            .execute(&mut *tx)
            .await?;
            }
            let doc = serde_json::to_string(event).map_err(corrupt)?;
            last_seq = sqlx::query_scalar(
                "INSERT INTO alarm_journal (alarm_id, at, transition, user, comment, state, severity, value, false_alarm, event) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
            )
            .bind(alarm.id as i64)
            .bind(event.at)
            .bind(event.transition.as_str())
            .bind(&event.user)
            .bind(&event.comment)
            .bind(alarm.state.as_str())
            .bind(alarm.severity.as_str())
            .bind(alarm.value.map(|v| v.to_string()))
            .bind(event.false_alarm)
            .bind(doc)
            .fetch_one(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.outbox_head.send_if_modified(|head| {
            let newer = last_seq > *head;
            *head = (*head).max(last_seq);
            newer
        });
        Ok(())
    }

    /// Alarms not yet cleared, and the highest id ever used.
    pub async fn load_open_alarms(&self) -> Result<(Vec<Alarm>, u64), StoreError> {
        let max_id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM alarms")
            .fetch_one(&self.pool)
            .await?;
        let rows = sqlx::query("SELECT id, doc FROM alarms WHERE state != ? ORDER BY id")
            .bind(AlarmState::Cleared.as_str())
            .fetch_all(&self.pool)
            .await?;
        let alarms = rows
            .iter()
            .map(|row| decode_alarm(row.get(0), row.get(1)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((alarms, max_id.unwrap_or(0).max(0) as u64))
    }

    /// Alarms of any state, newest first, optionally of one school.
    pub async fn recent_alarms(
        &self,
        school: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Alarm>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, doc FROM alarms WHERE (? IS NULL OR school = ?) ORDER BY id DESC LIMIT ?",
        )
        .bind(school)
        .bind(school)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| decode_alarm(row.get(0), row.get(1)))
            .collect()
    }

    pub async fn alarm(&self, id: u64) -> Result<Option<Alarm>, StoreError> {
        let row = sqlx::query("SELECT id, doc FROM alarms WHERE id = ?")
            .bind(id as i64)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| decode_alarm(row.get(0), row.get(1)))
            .transpose()
    }

    pub async fn journal(&self, alarm_id: u64) -> Result<Vec<JournalEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, alarm_id, at, transition, user, comment, state, severity, value, false_alarm \
             FROM alarm_journal WHERE alarm_id = ? ORDER BY seq",
        )
        .bind(alarm_id as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| JournalEntry {
                seq: r.get(0),
                alarm_id: r.get(1),
                at: r.get(2),
                transition: r.get(3),
                user: r.get(4),
                comment: r.get(5),
                state: r.get(6),
                severity: r.get(7),
                value: r.get(8),
                false_alarm: r.get(9),
            })
            .collect())
    }

    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

pub(super) fn decode_alarm(id: i64, doc: String) -> Result<Alarm, StoreError> {
    serde_json::from_str(&doc).map_err(|e| StoreError::Corrupt {
        id,
        reason: e.to_string(),
    })
}

/// Readings for the local history, and the source acks to release once they are committed.
#[derive(Debug, Default)]
pub struct HistoryBatch {
    pub readings: Vec<Reading>,
    pub acks: Vec<DurableAck>,
}

/// Starts [`run_history_writer`] on `tasks`.
pub fn start_history(
    store: &LocalStore,
    config: &StorageConfig,
    rx: mpsc::Receiver<HistoryBatch>,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) {
    tasks.spawn(run_alarm_retention(
        store.clone(),
        config.clone(),
        shutdown.clone(),
    ));
    let (store, config) = (store.clone(), config.clone());
    tasks.spawn(run_history_writer(
        store,
        config,
        rx,
        metrics.clone(),
        shutdown.clone(),
    ));
}

/// Writes readings to the local history and then releases the acks that came with them
/// (at-least-once ingest). Group commit: it writes as soon as its queue runs empty or a batch
/// is full, so under load batches grow and at idle a reading is committed at once.
///
/// When a write fails it is retried with backoff while the batch is held (the channel then
/// fills and the core waits: back-pressure, no loss, and no acks, so the broker keeps the
/// messages); at shutdown what cannot be written is reported in the log and its acks are not
/// sent, so the broker delivers those messages again after the restart.
pub async fn run_history_writer(
    store: LocalStore,
    config: StorageConfig,
    mut rx: mpsc::Receiver<HistoryBatch>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut readings: Vec<Reading> = Vec::new();
    let mut acks: Vec<DurableAck> = Vec::new();
    let mut prune = tokio::time::interval(config.prune_interval);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let retention_ms = i64::try_from(config.history_retention.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            received = rx.recv() => match received {
                Some(batch) => {
                    readings.extend(batch.readings);
                    acks.extend(batch.acks);
                    // Drain whatever else is queued, up to a batch.
                    while readings.len() < config.history_batch_size {
                        match rx.try_recv() {
                            Ok(more) => {
                                readings.extend(more.readings);
                                acks.extend(more.acks);
                            }
                            Err(_) => break,
                        }
                    }
                }
                None => break,
            },
            _ = prune.tick() => {
                match store.prune_history(now_ms().saturating_sub(retention_ms)).await {
                    Ok(pruned) if pruned == Pruned::default() => {}
                    Ok(pruned) => debug!(days = pruned.days, far_rows = pruned.far_rows, "pruned local history"),
                    Err(e) => warn!(error = %e, "pruning local history failed"),
                }
                continue;
            }
        }
        let batch = Arc::new(std::mem::take(&mut readings));
        if write_with_retry(&store, batch, &metrics, &shutdown).await {
            for ack in acks.drain(..) {
                ack.release();
            }
        } else {
            acks.clear();
        }
    }
    info!("local history writer stopped");
}

/// Deletes cleared alarms past `alarm_retention` (beyond the newest
/// `alarm_retention_min_count`) every `prune_interval`, in small transactions.
pub async fn run_alarm_retention(
    store: LocalStore,
    config: StorageConfig,
    shutdown: CancellationToken,
) {
    let retention_ms = i64::try_from(config.alarm_retention.as_millis()).unwrap_or(i64::MAX);
    let mut tick = tokio::time::interval(config.prune_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let before = now_ms().saturating_sub(retention_ms);
        match store
            .prune_alarms(before, config.alarm_retention_min_count, 500)
            .await
        {
            Ok(0) => {}
            Ok(alarms) => info!(alarms, "deleted alarms past their retention"),
            Err(e) => warn!(error = %e, "deleting alarms past their retention failed"),
        }
    }
}

/// Writes `readings`, retrying with backoff until it works or shutdown; true when written.
async fn write_with_retry(
    store: &LocalStore,
    readings: Arc<Vec<Reading>>,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> bool {
    if readings.is_empty() {
        return true;
    }
    let mut backoff = Duration::from_millis(100);
    loop {
        match store.write_history(readings.clone()).await {
            Ok(()) => {
                metrics.history_rows_written.inc_by(readings.len() as u64);
                return true;
            }
            Err(e) => {
                metrics.history_write_errors.inc();
                if shutdown.is_cancelled() {
                    error!(error = %e, rows = readings.len(), "local history write failed at shutdown; not acknowledged, the broker will deliver these again");
                    return false;
                }
                warn!(error = %e, rows = readings.len(), retry_in = ?backoff, "local history write failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

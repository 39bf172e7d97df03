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
use tracing::{debug, error, info, warn};

use super::history::{Compacted, HistoryPoint, HistoryReader, HistoryWriter, Pruned};
use super::StorageConfig;
use crate::alarms::{Alarm, AlarmEvent, AlarmState};
use crate::health;
use crate::metrics::Metrics;
use crate::model::{now_ms, DurableAck, Reading};
use crate::supervisor::Supervisor;

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

/// Connections of the read-only pool (API reads).
const READ_CONNECTIONS: u32 = 4;

#[derive(Clone)]
pub struct LocalStore {
    pool: SqlitePool,
    /// Connections of their own for API reads (lists, an alarm's page, KPIs), opened
    /// `query_only`: a flood of readers waits for these, never for the journal's (WAL lets
    /// readers and the one writer run side by side).
    read_pool: SqlitePool,
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
    /// On a reset: `real`, `false` or `test` (read from the journaled event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disposition: Option<String>,
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
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let read_pool = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .connect_with(options.pragma("query_only", "ON"))
            .await?;
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
            read_pool,
            history_writer: Arc::new(Mutex::new(writer)),
            history_reader: Arc::new(Mutex::new(reader)),
            history_retention_ms: i64::try_from(retention.as_millis()).unwrap_or(i64::MAX),
        })
    }

    /// The connection pool, for modules that keep their own tables in this store (users).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The read-only pool, for API reads that must not take the journal's connections.
    pub fn read_pool(&self) -> &SqlitePool {
        &self.read_pool
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

    /// One bounded step of the history's compaction, when one is due (see
    /// [`HistoryWriter::compact_some`]); the history writer calls it between batches.
    pub async fn compact_history(&self) -> Result<Compacted, StoreError> {
        let writer = self.history_writer.clone();
        let compacted = tokio::task::spawn_blocking(move || {
            let mut writer = writer.lock().unwrap_or_else(PoisonError::into_inner);
            writer.compact_some(now_ms())
        })
        .await??;
        Ok(compacted)
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
        .fetch_all(&self.read_pool)
        .await?;
        rows.iter()
            .map(|row| decode_alarm(row.get(0), row.get(1)))
            .collect()
    }

    pub async fn alarm(&self, id: u64) -> Result<Option<Alarm>, StoreError> {
        let row = sqlx::query("SELECT id, doc FROM alarms WHERE id = ?")
            .bind(id as i64)
            .fetch_optional(&self.read_pool)
            .await?;
        row.map(|row| decode_alarm(row.get(0), row.get(1)))
            .transpose()
    }

    pub async fn journal(&self, alarm_id: u64) -> Result<Vec<JournalEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, alarm_id, at, transition, user, comment, state, severity, value, false_alarm, \
             json_extract(event, '$.disposition') \
             FROM alarm_journal WHERE alarm_id = ? ORDER BY seq",
        )
        .bind(alarm_id as i64)
        .fetch_all(&self.read_pool)
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
                disposition: r.get(10),
            })
            .collect())
    }

    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn close(&self) {
        self.read_pool.close().await;
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

/// Starts [`run_history_writer`], supervised: it is restarted with backoff after it ends or
/// panics (the receiver outlives a run; a panicked run's unwritten readings are lost and their
/// acks never sent, so the broker delivers those messages again after a reconnect).
pub fn start_history(
    store: &LocalStore,
    config: &StorageConfig,
    rx: mpsc::Receiver<HistoryBatch>,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
    supervisor: &Supervisor,
) {
    let (keep_store, keep_config, keep_shutdown) =
        (store.clone(), config.clone(), shutdown.clone());
    supervisor.restarting(ALARM_RETENTION_TASK, move || {
        run_alarm_retention(
            keep_store.clone(),
            keep_config.clone(),
            keep_shutdown.clone(),
        )
    });
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let (store, config, metrics, shutdown) = (
        store.clone(),
        config.clone(),
        metrics.clone(),
        shutdown.clone(),
    );
    supervisor.restarting(HISTORY_TASK, move || {
        run_history_writer(
            store.clone(),
            config.clone(),
            rx.clone(),
            metrics.clone(),
            shutdown.clone(),
        )
    });
}

/// The history writer's task name (metrics, `/readyz`, its `task:` fault).
pub const HISTORY_TASK: &str = "history-writer";
/// The alarm retention job's task name.
pub const ALARM_RETENTION_TASK: &str = "alarm-retention";
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// How long the writer waits for more after a small batch before committing it: one commit
/// (and one blocking-pool wake-up) per couple of milliseconds instead of one per core round
/// when messages trickle in one by one. Only acks wait (the rules have evaluated the
/// readings); not an alarm.
const LINGER: Duration = Duration::from_millis(2);
/// A batch with this many acks (or readings) is committed at once, without lingering: the
/// broker's in-flight window (Mosquitto's default is 20 messages) must keep moving.
const LINGER_ACKS: usize = 16;
const LINGER_READINGS: usize = 1024;
const MAX_RETRY: Duration = Duration::from_secs(5);

/// Writes readings to the local history and then releases the acks that came with them
/// (at-least-once ingest). Group commit: it writes once its queue runs empty or a batch is
/// full, so under load batches grow; a small batch (fewer than [`LINGER_ACKS`] acks) first
/// waits up to [`LINGER`] for more, so a trickle of single messages is one commit per couple
/// of milliseconds, not one per message.
///
/// When a write fails (disk full, I/O error) the history is *failing*: the fault
/// `storage:history` is raised (the core shows it as an alarm, `/readyz` answers 503), the
/// batch is kept in memory and retried with backoff (100 ms doubling to 5 s), and the acks are
/// released at once — the readings were evaluated by the rules already, and holding acks would
/// stop ingest, and so alarms, at the broker's in-flight window. While failing, batches keep
/// being taken off the channel (so the core never waits) and their acks released; their
/// readings join the retry batch up to `storage.history_batch_size`, and those beyond are shed
/// (`campusguard_history_shed_readings_total`). The first successful write clears the fault.
/// Pruning runs on its own timer throughout. At shutdown a batch that cannot be written is
/// logged; if its acks were still held they are not sent (the broker delivers those messages
/// again after the restart), else its readings are counted as shed.
pub async fn run_history_writer(
    store: LocalStore,
    config: StorageConfig,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<HistoryBatch>>>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    // One run at a time reads the channel; a restarted run takes it over.
    let mut rx = rx.lock().await;
    let mut writer = Writer {
        store,
        metrics,
        readings: Vec::new(),
        acks: Vec::new(),
        retry_at: None,
        backoff: FIRST_RETRY,
        max_held: config.history_batch_size,
    };
    let mut prune = tokio::time::interval(config.prune_interval);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let retention_ms = i64::try_from(config.history_retention.as_millis()).unwrap_or(i64::MAX);
    loop {
        let retry_at = writer.retry_at;
        let retry = async move {
            match retry_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            received = rx.recv() => match received {
                Some(batch) => {
                    writer.take(batch);
                    // Drain whatever else is queued, up to a batch.
                    while writer.readings.len() < config.history_batch_size {
                        match rx.try_recv() {
                            Ok(more) => writer.take(more),
                            Err(_) => break,
                        }
                    }
                    if writer.retry_at.is_some() {
                        // Failing: wait for the retry timer.
                        continue;
                    }
                    // A small batch waits up to LINGER for company (bounded, see above).
                    let until = tokio::time::Instant::now() + LINGER;
                    while writer.acks.len() < LINGER_ACKS && writer.readings.len() < LINGER_READINGS {
                        match tokio::time::timeout_at(until, rx.recv()).await {
                            Ok(Some(more)) => writer.take(more),
                            Ok(None) | Err(_) => break,
                        }
                    }
                }
                None => break,
            },
            _ = prune.tick() => {
                match writer.store.prune_history(now_ms().saturating_sub(retention_ms)).await {
                    Ok(pruned) if pruned == Pruned::default() => {}
                    Ok(pruned) => debug!(days = pruned.days, far_rows = pruned.far_rows, "pruned local history"),
                    Err(e) => warn!(error = %e, "pruning local history failed"),
                }
                continue;
            }
            () = retry => {}
        }
        writer.write().await;
        // Between batches (acks already released): one bounded compaction step, if due.
        if writer.retry_at.is_none() {
            if let Err(e) = writer.store.compact_history().await {
                warn!(error = %e, "local history compaction failed");
            }
        }
    }
    if !writer.readings.is_empty() {
        writer.write().await;
    }
    if !writer.readings.is_empty() {
        let rows = writer.readings.len();
        if writer.acks.is_empty() {
            writer.metrics.history_shed_readings.inc_by(rows as u64);
            error!(
                rows,
                "local history failing at shutdown; readings not stored (counted as shed)"
            );
        } else {
            error!(rows, "local history write failed at shutdown; not acknowledged, the broker will deliver these again");
        }
    }
    if shutdown.is_cancelled() {
        info!("local history writer stopped");
    }
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

/// The history writer's batch and failure state.
struct Writer {
    store: LocalStore,
    metrics: Arc<Metrics>,
    readings: Vec<Reading>,
    /// Acks of `readings`, released once they are committed (always empty while failing).
    acks: Vec<DurableAck>,
    /// While failing: when to try again.
    retry_at: Option<tokio::time::Instant>,
    backoff: Duration,
    /// Readings kept for a retry while failing, at most.
    max_held: usize,
}

impl Writer {
    fn take(&mut self, batch: HistoryBatch) {
        if self.retry_at.is_none() {
            self.readings.extend(batch.readings);
            self.acks.extend(batch.acks);
            return;
        }
        // Failing: never hold acks (see `run_history_writer`); keep what fits for the retry.
        batch.acks.into_iter().for_each(DurableAck::release);
        let room = self.max_held.saturating_sub(self.readings.len());
        let shed = batch.readings.len().saturating_sub(room);
        self.readings.extend(batch.readings.into_iter().take(room));
        if shed > 0 {
            self.metrics.history_shed_readings.inc_by(shed as u64);
        }
    }

    async fn write(&mut self) {
        if self.readings.is_empty() {
            self.acks.drain(..).for_each(DurableAck::release);
            return;
        }
        let batch = Arc::new(std::mem::take(&mut self.readings));
        match self.store.write_history(batch.clone()).await {
            Ok(()) => {
                self.metrics.history_rows_written.inc_by(batch.len() as u64);
                self.acks.drain(..).for_each(DurableAck::release);
                if self.retry_at.take().is_some() {
                    info!(rows = batch.len(), "local history writes again");
                    self.metrics.health.clear(&health::HISTORY);
                }
                self.backoff = FIRST_RETRY;
            }
            Err(e) => {
                self.metrics.history_write_errors.inc();
                self.metrics.health.raise(&health::HISTORY, e.to_string());
                if self.retry_at.is_none() {
                    error!(error = %e, rows = batch.len(), "local history write failed; shedding history until it writes again, readings are still evaluated");
                }
                self.acks.drain(..).for_each(DurableAck::release);
                self.readings = Arc::try_unwrap(batch).unwrap_or_else(|shared| (*shared).clone());
                if self.readings.len() > self.max_held {
                    let shed = self.readings.len() - self.max_held;
                    self.readings.truncate(self.max_held);
                    self.metrics.history_shed_readings.inc_by(shed as u64);
                }
                self.retry_at = Some(tokio::time::Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_RETRY);
            }
        }
    }
}

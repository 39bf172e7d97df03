//! Time-series sink: every reading the pipeline hands over is written to InfluxDB v2
//! (`/api/v2/write`), InfluxDB 1.x (`/write`) or a store that speaks either (VictoriaMetrics),
//! and while the store cannot take it, to a bounded disk spool that is replayed in order later.
//!
//! ```text
//! pipeline ─ Vec<TaggedReading> (bounded mpsc) ─► batcher ─ encode (line.rs) ─► batch
//!     batch ─► live queue (2 batches) ─► writer ─ HTTP (sink.rs) ─► store
//!       └── store down / queue full ─► spool (spool.rs) ─► writer replays, oldest first
//! ```
//!
//! * **Batching**: a batch is written when it has `batch_size` lines or `flush_interval` after
//!   its first line. Each batch is encoded once; the same bytes are retried and spooled.
//! * **Writer**: one request at a time. When both a live batch and a spooled batch wait, it
//!   alternates, so replay runs at least at half the store's speed without starving live data.
//!   Spooled batches are replayed in the order they were spooled; a live batch may reach the
//!   store before an older backlog (every point carries its own timestamp, so what the store
//!   holds is the same).
//! * **Failures** ([`sink::classify`]): connection errors, timeouts, 5xx, 429, 401/403/404
//!   mark the store down; the batch is spooled and retried with capped exponential backoff, or
//!   after `Retry-After` (honoured up to 10 minutes). Other 4xx mean bad data: the batch is moved
//!   to `spool/rejected/` with a log line and counted, and the rest go on.
//! * **Spool full** ([`SpoolFull`]): `drop_oldest` deletes the oldest segment, counts its lines
//!   in `dropped_lines` and logs it; ingest and alarms keep running. `backpressure` stops
//!   taking batches from the pipeline until the writer has made room: the pipeline then waits
//!   on its bounded send and no reading is lost, but everything behind the pipeline, alarms
//!   included, waits too. Batches already in flight when the store fails (at most three) and
//!   the final flush at shutdown may take the spool past its bound rather than be lost.
//! * **Shutdown** (token cancelled, or the pipeline's sender dropped): readings still queued in
//!   the channel are taken, the partial batch is sealed, live batches are written if the store
//!   is up or spooled if not, then [`run`] returns. A restart replays the spool.
//! * **Delivery** is at least once: a batch is acknowledged in the spool only after the store
//!   answered 2xx. A request that timed out after the store committed it is sent again;
//!   InfluxDB overwrites the identical point, VictoriaMetrics would keep a duplicate sample.
//! * **Source acks** ([`TimeseriesBatch::acks`]): the sink's share of an MQTT QoS 1 ack is
//!   released once its lines are written (or rejected and moved aside) or appended to the
//!   spool; a batch carrying acks is sealed when the writer is idle, at most every
//!   `ACK_SEAL_INTERVAL` (10 ms), so acks do not wait for `flush_interval`.

pub mod config;
pub mod line;
pub mod sink;
pub mod spool;
pub mod stats;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc::{self, error::TrySendError, Receiver};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::model::{now_ms, DurableAck, TaggedReading};

pub use config::{BoolEncoding, SpoolFull, TimeseriesConfig, TimeseriesKind};
use line::{Dialect, LineEncoder};
use sink::{HttpSink, WriteOutcome};
use spool::{Peeked, Spool};
pub use stats::{TimeseriesSnapshot, TimeseriesStats};

/// Why the sink could not start (once running it only logs and counts).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid [timeseries] config: {}", .0.join("; "))]
    Config(Vec<String>),
    #[error("time-series store secret: {0}")]
    Secret(String),
    #[error("cannot build the time-series HTTP client: {0}")]
    Client(String),
    #[error("cannot open the time-series spool in {path}: {source}")]
    Spool {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("time-series writer task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// What the pipeline hands the sink: readings, and the source acks (MQTT QoS 1) to release
/// once those readings are held: written to the store, or appended to the disk spool.
#[derive(Debug, Default)]
pub struct TimeseriesBatch {
    pub readings: Vec<TaggedReading>,
    pub acks: Vec<DurableAck>,
}

impl From<Vec<TaggedReading>> for TimeseriesBatch {
    fn from(readings: Vec<TaggedReading>) -> Self {
        TimeseriesBatch {
            readings,
            acks: Vec::new(),
        }
    }
}

/// One encoded batch of line protocol, with the acks of the messages its lines came from.
#[derive(Debug)]
struct Batch {
    payload: Bytes,
    lines: u64,
    acks: Vec<DurableAck>,
}

impl Batch {
    /// The batch is held (written, spooled, or counted as lost): its acks may go.
    fn release_acks(&mut self) {
        for ack in self.acks.drain(..) {
            ack.release();
        }
    }
}

/// Live batches queued for the writer; beyond this they go to the spool.
const LIVE_QUEUE: usize = 2;
const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// A `Retry-After` longer than this is taken as this (a misconfigured proxy must not stall
/// the sink for days).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
/// The shortest time between two batches sealed for their acks: at most 100 ack-driven write
/// requests a second, and at most this (plus one write) added to an ack's delay.
const ACK_SEAL_INTERVAL: Duration = Duration::from_millis(10);
/// Acks held that seal a batch at once when the writer is idle, without waiting for
/// [`ACK_SEAL_INTERVAL`]: under load the broker's in-flight window (often 20–100 messages)
/// fills in well under the interval, and holding its acks for the interval would cap ingest at
/// one window per interval. Low rates still get the interval's grouping.
const ACK_SEAL_COUNT: usize = 16;
/// How often a batcher held by `backpressure` looks again without being woken.
const BACKPRESSURE_RECHECK: Duration = Duration::from_millis(500);

/// State shared by the batcher and the writer.
struct Shared {
    spool: Mutex<Spool>,
    spool_dir: PathBuf,
    /// False from a failed write until the next successful one: new batches go to the spool.
    store_up: AtomicBool,
    /// Woken when a batch was spooled (the writer may be idle).
    spooled: Notify,
    /// Woken when the writer made room in the spool (a `backpressure` batcher may be waiting).
    room: Notify,
    /// True while a write request is out; woken when one finished. A batch carrying acks is
    /// sealed as soon as the writer is idle (group commit) and [`ACK_SEAL_INTERVAL`] has passed
    /// since the last such seal, so acks never wait for `flush_interval` and the broker's
    /// in-flight window keeps moving, while a trickle of messages does not become a request
    /// each.
    writing: AtomicBool,
    writer_idle: Notify,
    policy: SpoolFull,
    stats: Arc<TimeseriesStats>,
}

impl Shared {
    fn spool(&self) -> MutexGuard<'_, Spool> {
        // A panic while holding the lock cannot leave the spool inconsistent on disk (records
        // are checksummed), so a poisoned lock is taken over.
        self.spool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Puts a batch in the spool under the full-spool policy. With `may_overshoot` (writer,
    /// shutdown) a `backpressure` spool takes the batch past its bound instead of refusing it.
    /// Returns the batch back if there is no room and the caller has to wait.
    fn spool_batch(&self, mut batch: Batch, may_overshoot: bool) -> Option<Batch> {
        let mut spool = self.spool();
        let overshoot = may_overshoot && self.policy == SpoolFull::Backpressure;
        let record = Spool::record_len(batch.payload.len());
        if record > spool.max_bytes() && !overshoot {
            tracing::error!(
                lines = batch.lines,
                bytes = record,
                "Time-series batch is larger than the whole spool; dropped"
            );
            TimeseriesStats::add(&self.stats.dropped_lines, batch.lines);
            // Counted as lost; holding the ack would stall ingest without saving anything
            // (the readings are in the local history).
            batch.release_acks();
            return None;
        }
        while !overshoot && !spool.has_room_for(batch.payload.len()) {
            match self.policy {
                SpoolFull::Backpressure => return Some(batch),
                SpoolFull::DropOldest => match spool.drop_oldest() {
                    Ok(Some(lines)) => {
                        tracing::warn!(
                            dropped_lines = lines,
                            max_bytes = spool.max_bytes(),
                            "Time-series spool full; dropped its oldest segment"
                        );
                        TimeseriesStats::add(&self.stats.dropped_lines, lines);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "Could not drop the oldest spool segment");
                        break;
                    }
                },
            }
        }
        if let Err(e) = spool.append(&batch.payload, batch.lines, now_ms()) {
            tracing::error!(
                error = %e,
                lines = batch.lines,
                "Could not write a time-series batch to the spool; dropped"
            );
            TimeseriesStats::add(&self.stats.dropped_lines, batch.lines);
        }
        self.stats.publish_spool(&spool);
        drop(spool);
        batch.release_acks();
        self.spooled.notify_one();
        None
    }
}

/// Starts the sink on `tasks`. It stops when the core drops its sender (after the core has
/// drained), not on the shutdown signal, so nothing the core forwards is left behind.
pub fn start(
    config: &TimeseriesConfig,
    data_dir: &Path,
    rx: Receiver<TimeseriesBatch>,
    stats: &Arc<TimeseriesStats>,
    supervisor: &crate::supervisor::Supervisor,
) {
    let (config, data_dir, stats) = (config.clone(), data_dir.to_path_buf(), stats.clone());
    supervisor.once("timeseries", async move {
        if let Err(e) = run(config, data_dir, rx, stats, CancellationToken::new()).await {
            tracing::error!(error = %e, "time-series sink stopped");
        }
    });
}

/// Runs the sink until `shutdown` is cancelled or `rx` is closed, then flushes or spools what
/// is in flight and returns. The spool lives in `<data_dir>/spool/`.
pub async fn run(
    config: TimeseriesConfig,
    data_dir: PathBuf,
    mut rx: Receiver<TimeseriesBatch>,
    stats: Arc<TimeseriesStats>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    if config.kind == TimeseriesKind::None {
        // No store: take the readings so the pipeline never blocks on us.
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                batch = rx.recv() => match batch {
                    Some(mut batch) => batch.acks.drain(..).for_each(DurableAck::release),
                    None => return Ok(()),
                },
            }
        }
    }
    let problems = config.validate();
    if !problems.is_empty() {
        return Err(Error::Config(problems));
    }
    let sink = HttpSink::new(&config)?;
    let spool_dir = data_dir.join("spool");
    let (spool, report) =
        Spool::open(&spool_dir, config.spool_max_bytes).map_err(|source| Error::Spool {
            path: spool_dir.clone(),
            source,
        })?;
    if report.lines > 0 || report.torn_bytes > 0 {
        tracing::info!(
            lines = report.lines,
            batches = report.batches,
            bytes = report.bytes,
            torn_bytes = report.torn_bytes,
            "Time-series spool holds batches from before the restart; replaying them"
        );
    }
    stats.publish_spool(&spool);
    tracing::info!(url = %sink.write_url(), kind = ?config.kind, "Time-series sink started");
    let shared = Arc::new(Shared {
        spool: Mutex::new(spool),
        spool_dir,
        store_up: AtomicBool::new(true),
        spooled: Notify::new(),
        room: Notify::new(),
        writing: AtomicBool::new(false),
        writer_idle: Notify::new(),
        policy: config.spool_full,
        stats: stats.clone(),
    });
    let (live_tx, live_rx) = mpsc::channel::<Batch>(LIVE_QUEUE);
    let writer = tokio::spawn(write_loop(
        sink,
        shared.clone(),
        live_rx,
        config.max_backoff,
        shutdown.clone(),
    ));
    let dialect = match config.kind {
        TimeseriesKind::InfluxDb1 => Dialect::InfluxV1,
        _ => Dialect::Spec,
    };
    let mut batcher = Batcher {
        encoder: LineEncoder::new(dialect, config.bool_encoding),
        batch_size: config.batch_size,
        buffer: Vec::new(),
        lines: 0,
        acks: Vec::new(),
        last_ack_seal: Instant::now(),
        shared,
        live_tx,
        shutdown: shutdown.clone(),
    };
    let mut deadline: Option<Instant> = None;
    // When acks wait for the writer to be idle but the last ack seal was too recent.
    let mut ack_deadline: Option<Instant> = None;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = sleep_until_some(deadline) => {
                batcher.seal_and_dispatch().await;
                deadline = None;
            }
            _ = sleep_until_some(ack_deadline) => {
                ack_deadline = batcher.seal_acks_if_writer_idle().await;
                if batcher.lines == 0 {
                    deadline = None;
                }
            }
            _ = batcher.shared.writer_idle.notified(), if !batcher.acks.is_empty() => {
                ack_deadline = batcher.seal_acks_if_writer_idle().await;
                if batcher.lines == 0 {
                    deadline = None;
                }
            }
            batch = rx.recv() => {
                let Some(batch) = batch else { break };
                batcher.add(batch).await;
                ack_deadline = batcher.seal_acks_if_writer_idle().await;
                if batcher.lines == 0 {
                    deadline = None;
                } else if deadline.is_none() {
                    deadline = Some(Instant::now() + config.flush_interval);
                }
            }
        }
    }
    // Readings already queued by the pipeline are in flight: take them too.
    rx.close();
    while let Some(batch) = rx.recv().await {
        batcher.add(batch).await;
    }
    batcher.seal_and_dispatch().await;
    drop(batcher);
    writer.await?;
    tracing::info!("Time-series sink stopped");
    Ok(())
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Encodes readings into batches and hands them to the writer or the spool.
struct Batcher {
    encoder: LineEncoder,
    batch_size: usize,
    buffer: Vec<u8>,
    lines: u64,
    /// Acks of the readings in `buffer`.
    acks: Vec<DurableAck>,
    last_ack_seal: Instant,
    shared: Arc<Shared>,
    live_tx: mpsc::Sender<Batch>,
    shutdown: CancellationToken,
}

impl Batcher {
    async fn add(&mut self, batch: TimeseriesBatch) {
        for tagged in &batch.readings {
            match self.encoder.encode(tagged, &mut self.buffer) {
                Ok(()) => self.lines += 1,
                Err(e) => {
                    let before = self
                        .shared
                        .stats
                        .lines_unencodable
                        .fetch_add(1, Ordering::Relaxed);
                    // Log the first and then every 1000th, not every one.
                    if before % 1000 == 0 {
                        tracing::warn!(
                            sensor = %tagged.reading.sensor,
                            error = %e,
                            total = before + 1,
                            "Reading cannot be written as line protocol; skipped"
                        );
                    }
                }
            }
            // Acks already held belong to lines already in the buffer: sealing here is safe.
            if batch.acks.is_empty() && self.lines >= self.batch_size as u64 {
                self.seal_and_dispatch().await;
            }
        }
        // New acks go with the last of their lines, so a pipeline round that carries acks is
        // not split (a batch may pass `batch_size` by up to one round).
        self.acks.extend(batch.acks);
        if self.lines == 0 {
            // Nothing encodable to wait for.
            self.acks.drain(..).for_each(DurableAck::release);
        } else if self.lines >= self.batch_size as u64 {
            self.seal_and_dispatch().await;
        }
    }

    /// Seals a batch that carries acks when the writer has nothing to do and the last such
    /// seal is [`ACK_SEAL_INTERVAL`] ago: at low rates acks go within that interval plus one
    /// write, under load batches grow while a write is out. Returns when to look again if only
    /// the interval held it back (a busy writer wakes the batcher when it is done).
    async fn seal_acks_if_writer_idle(&mut self) -> Option<Instant> {
        let writer_idle = !self.shared.writing.load(Ordering::Acquire)
            && self.live_tx.capacity() == self.live_tx.max_capacity();
        if self.acks.is_empty() || !writer_idle {
            return None;
        }
        let due = self.last_ack_seal + ACK_SEAL_INTERVAL;
        if self.acks.len() < ACK_SEAL_COUNT && Instant::now() < due {
            return Some(due);
        }
        self.last_ack_seal = Instant::now();
        self.seal_and_dispatch().await;
        None
    }

    async fn seal_and_dispatch(&mut self) {
        if self.lines == 0 {
            return;
        }
        let capacity = self.buffer.len() + self.buffer.len() / 8;
        let payload = std::mem::replace(&mut self.buffer, Vec::with_capacity(capacity));
        let batch = Batch {
            payload: Bytes::from(payload),
            lines: std::mem::take(&mut self.lines),
            acks: std::mem::take(&mut self.acks),
        };
        self.dispatch(batch).await;
    }

    /// Live queue if the store is up and the writer keeps pace; else the spool. Under
    /// `backpressure` with a full spool this waits, and so does the pipeline.
    async fn dispatch(&mut self, mut batch: Batch) {
        loop {
            if self.shared.store_up.load(Ordering::Acquire) {
                match self.live_tx.try_send(batch) {
                    Ok(()) => return,
                    Err(TrySendError::Full(b) | TrySendError::Closed(b)) => batch = b,
                }
            }
            let stopping = self.shutdown.is_cancelled();
            match self.shared.spool_batch(batch, stopping) {
                None => return,
                Some(back) => batch = back,
            }
            tokio::select! {
                _ = self.shared.room.notified() => {}
                _ = tokio::time::sleep(BACKPRESSURE_RECHECK) => {}
                _ = self.shutdown.cancelled() => {}
            }
        }
    }
}

enum Job {
    Live(Batch),
    Spooled(spool::SpooledBatch),
}

/// Writes live and spooled batches, one request at a time, until the live queue is closed.
async fn write_loop(
    sink: HttpSink,
    shared: Arc<Shared>,
    mut live_rx: mpsc::Receiver<Batch>,
    max_backoff: Duration,
    shutdown: CancellationToken,
) {
    let stats = shared.stats.clone();
    let mut backoff = MIN_BACKOFF;
    let mut prefer_spool = false;
    loop {
        let stopping = shutdown.is_cancelled();
        let Some(job) = next_job(&mut live_rx, &shared, prefer_spool, stopping, &shutdown).await
        else {
            break;
        };
        prefer_spool = matches!(job, Job::Live(_));
        let store_up = shared.store_up.load(Ordering::Acquire);
        let (payload, lines) = match job {
            Job::Live(batch) if !store_up => {
                // Queued before the store went down: keep it behind the backlog.
                shared.spool_batch(batch, true);
                continue;
            }
            Job::Live(ref batch) => (batch.payload.clone(), batch.lines),
            Job::Spooled(ref batch) => (Bytes::from(batch.payload.clone()), batch.lines),
        };
        shared.writing.store(true, Ordering::Release);
        let outcome = sink.write(&payload).await;
        shared.writing.store(false, Ordering::Release);
        shared.writer_idle.notify_one();
        match outcome {
            WriteOutcome::Written => {
                if !store_up {
                    tracing::info!("Time-series store reachable again; replaying the spool");
                }
                shared.store_up.store(true, Ordering::Release);
                backoff = MIN_BACKOFF;
                TimeseriesStats::add(&stats.batches_ok, 1);
                TimeseriesStats::add(&stats.lines_written, lines);
                match job {
                    Job::Live(mut batch) => batch.release_acks(),
                    Job::Spooled(batch) => {
                        acknowledge(&shared, &batch);
                        TimeseriesStats::add(&stats.batches_replayed, 1);
                    }
                }
            }
            WriteOutcome::Rejected { status, message } => {
                shared.store_up.store(true, Ordering::Release);
                TimeseriesStats::add(&stats.batches_rejected, 1);
                TimeseriesStats::add(&stats.lines_rejected, lines);
                let kept = spool::move_aside(&shared.spool_dir, &payload, status, now_ms());
                match &kept {
                    Ok(path) => tracing::warn!(
                        status,
                        lines,
                        message = %message,
                        moved_to = %path.display(),
                        "Time-series store rejected a batch; moved aside"
                    ),
                    Err(e) => tracing::error!(
                        status,
                        lines,
                        message = %message,
                        error = %e,
                        "Time-series store rejected a batch; could not keep a copy"
                    ),
                }
                match job {
                    // Kept aside on disk (or counted): nothing a redelivery could fix.
                    Job::Live(mut batch) => batch.release_acks(),
                    Job::Spooled(batch) => acknowledge(&shared, &batch),
                }
            }
            WriteOutcome::Retry { reason, after } => {
                TimeseriesStats::add(&stats.batches_failed, 1);
                if store_up {
                    tracing::warn!(
                        reason = %reason,
                        "Time-series store unavailable; spooling batches to disk"
                    );
                } else {
                    tracing::debug!(reason = %reason, "Time-series store still unavailable");
                }
                shared.store_up.store(false, Ordering::Release);
                if let Job::Live(batch) = job {
                    shared.spool_batch(batch, true);
                }
                let wait = match after {
                    Some(after) => after.min(MAX_RETRY_AFTER),
                    None => {
                        let wait = backoff;
                        backoff = (backoff * 2).min(max_backoff);
                        wait
                    }
                };
                if !stopping {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
            }
        }
    }
}

/// The next batch to write: alternates between live and spooled when both wait; `None` once
/// the live queue is closed and drained (shutdown). While stopping, the spool is left alone.
async fn next_job(
    live_rx: &mut mpsc::Receiver<Batch>,
    shared: &Shared,
    prefer_spool: bool,
    stopping: bool,
    shutdown: &CancellationToken,
) -> Option<Job> {
    loop {
        if !prefer_spool {
            if let Ok(batch) = live_rx.try_recv() {
                return Some(Job::Live(batch));
            }
        }
        if !stopping {
            let peeked = {
                let mut spool = shared.spool();
                let peeked = spool.peek();
                shared.stats.publish_spool(&spool);
                peeked
            };
            match peeked {
                Ok(Peeked::Batch(batch)) => return Some(Job::Spooled(batch)),
                Ok(Peeked::Corrupt {
                    segment,
                    lost_bytes,
                    lost_lines,
                }) => {
                    tracing::error!(
                        segment,
                        lost_bytes,
                        lost_lines,
                        "Damaged spool data skipped"
                    );
                    TimeseriesStats::add(&shared.stats.dropped_lines, lost_lines);
                    continue;
                }
                Ok(Peeked::Empty) => {}
                Err(e) => {
                    tracing::error!(error = %e, "Could not read the time-series spool");
                }
            }
        }
        if let Ok(batch) = live_rx.try_recv() {
            return Some(Job::Live(batch));
        }
        tokio::select! {
            batch = live_rx.recv() => return batch.map(Job::Live),
            _ = shared.spooled.notified(), if !stopping => {}
            _ = shutdown.cancelled(), if !stopping => {}
            // A spool read error is retried after a pause rather than in a tight loop.
            _ = tokio::time::sleep(Duration::from_secs(1)), if !stopping => {}
        }
    }
}

fn acknowledge(shared: &Shared, batch: &spool::SpooledBatch) {
    let mut spool = shared.spool();
    if let Err(e) = spool.ack(batch) {
        tracing::error!(error = %e, "Could not record replay progress in the spool");
    }
    shared.stats.publish_spool(&spool);
    drop(spool);
    shared.room.notify_one();
}

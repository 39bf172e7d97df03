//! The local history of readings: its own SQLite file (`<data_dir>/history.db`, so alarm
//! journal writes in `campusguard.db` never queue behind history writes), written with rusqlite
//! on a blocking thread.
//!
//! Readings of thousands of sensors arrive interleaved. Keyed by `(sensor_id, ts)`, every
//! reading of a transaction lands on another sensor's leaf page, so a transaction dirties (and
//! the WAL writes and checksums) about one page per sensor, and as a day's table outgrows the
//! page cache each insert reads a page back. So the history is written in arrival order and
//! sorted by sensor later, many readings per sensor at a time:
//!
//! - `sensors(id, path)`: each sensor path once; readings carry the integer id (cached in memory).
//! - `tail`: the readings not yet compacted, appended in arrival order (rowid `seq`, so rows go
//!   to the right edge of the table), with a unique index on `(sensor_id, ts)`. The index is
//!   what makes a query of the tail cheap and a redelivered reading replace the stored one
//!   (`INSERT OR REPLACE`, last write wins as before); it stays small because the tail does
//!   (about [`CYCLE_ROWS`] rows), so its pages stay in the cache. A tail with no index at all
//!   would be cheaper still to write, but a query would scan the whole tail, and a tail small
//!   enough to scan quickly would make chunks of a few points each.
//! - `chunks_d<days since epoch>`, one table per UTC day: a sensor's points, compacted, as rows
//!   `(sensor_id, chunk_start, chunk_end, n, data)` where `data` holds up to
//!   [`MAX_CHUNK_POINTS`] points, delta-encoded (see [`encode`]). A rowid table with a unique
//!   index on `(sensor_id, chunk_start)` rather than `WITHOUT ROWID`: chunks are up to a few KiB,
//!   and large rows in a `WITHOUT ROWID` B-tree spill to overflow pages and thin out its
//!   interior; new chunks append at the rowid table's right edge, only the small index entry
//!   lands in the sensor's place. A sensor's chunks of one day never overlap in time.
//! - `readings_far`: readings whose day lies outside the window of live days (a device clock
//!   far off), so such a device cannot create a table per day; keyed `(sensor_id, ts)`, pruned
//!   row by row.
//! - `readings_d<day>`: the layout before this one (one `(sensor_id, ts)` table per day). An
//!   upgraded gateway keeps them as they are: queries read them too and retention drops them
//!   by day like chunk tables, so they age out with no conversion step at startup and no
//!   history is lost.
//!
//! Compaction ([`HistoryWriter::compact_some`], called by the history writer between write
//! batches) runs in cycles. A cycle starts when the tail holds [`CYCLE_ROWS`] rows or its
//! oldest row is [`CYCLE_AGE_MS`] old; it then walks the tail in sensor-id order, each call one
//! step of about as many rows as were written since the previous step (at least
//! [`STEP_ROWS`]), so compaction keeps pace with the writes and a batch never waits long behind
//! it. A step merges each sensor's rows into that sensor's chunks (an overlapping chunk, or a
//! small last one, is rewritten with them; the tail's point wins on the same time), and deletes
//! the rows from the tail, all in one transaction: a crash leaves the rows either in the tail
//! or in the chunks, never in both or neither. A query reads the chunks, the tail, the old day
//! tables and the far readings in one read transaction and keeps one point per time, the
//! newest copy (tail over chunks over old tables over far readings).
//!
//! WAL with `synchronous = NORMAL`: a committed transaction survives a process crash (kill -9),
//! which is what the ack after the commit promises (as for the alarm journal).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use rusqlite::types::Type;
use rusqlite::{params, CachedStatement, Connection, OptionalExtension, Transaction};

use serde::Serialize;
use tracing::warn;

use crate::model::{Reading, SensorId, Source, Value};

/// One point of a sensor's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryPoint {
    pub ts: i64,
    pub value: Value,
}

const DAY_MS: i64 = 86_400_000;
/// Days ahead of today that still get a table of their own (device clocks a bit ahead).
const DAYS_AHEAD: i64 = 1;
/// The sensor-id cache is cleared when it holds this many paths (memory stays bounded; the
/// ids are read back from `sensors` on the next use).
const MAX_CACHED_SENSORS: usize = 200_000;
const FAR_TABLE: &str = "readings_far";
/// Tail rows that start a compaction cycle: with 10,000 sensors about 50 points each, so a
/// cycle writes one chunk entry per sensor for every 50 readings instead of dirtying a page
/// per reading, while the tail's index (about 15 bytes a row, some 8 MB) stays in the cache.
pub const CYCLE_ROWS: u64 = 500_000;
/// A tail this old starts a cycle anyway: slow sensors still get chunks and the tail of a
/// quiet gateway does not linger.
pub const CYCLE_AGE_MS: i64 = 10 * 60_000;
/// Rows one compaction step moves at least (it finishes the sensor it is in).
pub const STEP_ROWS: usize = 20_000;
/// Rows one compaction step moves at most (but for the sensor it is in): a step takes about
/// as long as writing a batch of the default `history_batch_size` (50,000).
const MAX_STEP_ROWS: usize = 100_000;
/// A tail beyond this makes `write` compact a step itself, so the tail stays bounded even if
/// nobody calls [`HistoryWriter::compact_some`].
const HARD_TAIL_ROWS: u64 = 4 * CYCLE_ROWS;
/// Points in one chunk, at most (a few KiB of `data`).
pub const MAX_CHUNK_POINTS: usize = 1024;
/// A sensor's last chunk with fewer points than this is rewritten with the sensor's next rows
/// (slow sensors would otherwise get a chunk per cycle).
const MERGE_BELOW: usize = 256;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sensors (
    id   INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE      -- <school>/<device>/<point>
);
CREATE TABLE IF NOT EXISTS readings_far (
    sensor_id INTEGER NOT NULL,
    ts        INTEGER NOT NULL,    -- Unix ms
    value     REAL    NOT NULL,    -- booleans as 0/1, see is_bool
    is_bool   INTEGER NOT NULL,
    source    INTEGER NOT NULL,    -- 0 mqtt, 1 modbus
    PRIMARY KEY (sensor_id, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tail (
    seq       INTEGER PRIMARY KEY, -- arrival order: rows append at the right edge
    sensor_id INTEGER NOT NULL,
    ts        INTEGER NOT NULL,
    value     REAL    NOT NULL,
    is_bool   INTEGER NOT NULL,
    source    INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS tail_sensor_ts ON tail (sensor_id, ts);
";

/// Where a reading is stored.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Partition {
    /// The tail (then the chunks of that day).
    Day(i64),
    Far,
}

impl Partition {
    /// The partition of a reading at `ts_ms`, given the live days `first..=last`.
    fn of(ts_ms: i64, (first, last): (i64, i64)) -> Self {
        let day = ts_ms.div_euclid(DAY_MS);
        if (first..=last).contains(&day) {
            Partition::Day(day)
        } else {
            Partition::Far
        }
    }
}

fn chunk_table(day: i64) -> String {
    format!("chunks_d{day}")
}

fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // The tail's index and the chunk index entries of the sensors being compacted stay
    // cached (it only grows as pages are used). A less frequent WAL checkpoint was faster
    // with the old layout, but its longer bursts doubled the alarm latency under load; the
    // default (1,000 pages) stays.
    conn.pragma_update(None, "cache_size", -32_768)?; // KiB
    Ok(conn)
}

/// The days (`first..=last`) that get a table of their own at `now_ms`: from the day the
/// retention starts to a day ahead.
fn live_days(now_ms: i64, retention_ms: i64) -> (i64, i64) {
    let today = now_ms.div_euclid(DAY_MS);
    (
        now_ms.saturating_sub(retention_ms).div_euclid(DAY_MS),
        today + DAYS_AHEAD,
    )
}

/// What a prune removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Day tables dropped (chunk tables and old-layout tables).
    pub days: u64,
    pub far_rows: u64,
    /// Tail rows of those days not yet compacted.
    pub tail_rows: u64,
}

/// What a compaction step did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// Rows moved out of the tail.
    pub rows: u64,
    /// Chunks written (new or rewritten).
    pub chunks: u64,
    /// Whether this step ended a cycle.
    pub cycle_done: bool,
}

/// A stored point, as compaction moves it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stored {
    ts: i64,
    value: Value,
    source: Source,
}

/// The writing side: one connection, used by one thread at a time.
pub struct HistoryWriter {
    conn: Connection,
    retention_ms: i64,
    /// Sensor path → id; only ids committed to `sensors` (cleared when a write fails).
    sensors: HashMap<SensorId, i64>,
    /// Chunk tables known to exist (cleared when a write fails: a rolled-back CREATE is gone).
    days: HashSet<i64>,
    /// Rows in the tail, about (a replaced row counts twice until the next cycle recounts).
    tail_rows: u64,
    /// When the tail's oldest row was written (writer time), if the tail has rows.
    tail_since: Option<i64>,
    /// Rows written since the last call of `compact_some`: its step moves as many (within
    /// [`STEP_ROWS`]..=[`MAX_STEP_ROWS`]), so compaction keeps pace with the writes.
    since_step: u64,
    /// The cycle under way: the next sensor id to compact, and when the cycle started.
    cycle: Option<(i64, i64)>,
}

impl HistoryWriter {
    /// Opens (creating if needed) the history file and its schema. An old-layout file keeps
    /// its day tables (read and pruned as they are, see the module comment).
    pub fn open(path: &Path, retention: Duration) -> rusqlite::Result<Self> {
        let conn = open_connection(path)?;
        conn.execute_batch(SCHEMA)?;
        // Statements per table, for the sensors, compaction and pruning.
        conn.set_prepared_statement_cache_capacity(64);
        let tail_rows: i64 = conn.query_row("SELECT count(*) FROM tail", [], |row| row.get(0))?;
        let tail_rows = u64::try_from(tail_rows).unwrap_or(0);
        Ok(Self {
            conn,
            retention_ms: i64::try_from(retention.as_millis()).unwrap_or(i64::MAX),
            sensors: HashMap::new(),
            days: HashSet::new(),
            tail_rows,
            // Rows left from before a restart are compacted at the first chance.
            tail_since: (tail_rows > 0).then_some(i64::MIN),
            since_step: 0,
            cycle: None,
        })
    }

    /// Writes `readings` in one transaction (a reading of the same sensor and time as a stored
    /// one replaces it).
    pub fn write(&mut self, readings: &[Reading], now_ms: i64) -> rusqlite::Result<()> {
        match self.write_in_transaction(readings, now_ms) {
            Ok(appended) => {
                self.tail_rows += appended;
                self.since_step += appended;
                if appended > 0 && self.tail_since.is_none() {
                    self.tail_since = Some(now_ms);
                }
                if self.tail_rows > HARD_TAIL_ROWS {
                    // The batch is committed; a failed step only leaves the rows in the tail.
                    if let Err(e) = self.compact_some(now_ms) {
                        warn!(error = %e, "local history compaction failed");
                    }
                }
                Ok(())
            }
            Err(e) => {
                // The transaction rolled back: new sensor ids and new tables with it.
                self.sensors.clear();
                self.days.clear();
                Err(e)
            }
        }
    }

    /// Returns the number of rows appended to the tail.
    fn write_in_transaction(&mut self, readings: &[Reading], now_ms: i64) -> rusqlite::Result<u64> {
        let window = live_days(now_ms, self.retention_ms);
        let Self { conn, sensors, .. } = self;
        let tx = conn.transaction()?;
        let mut appended = 0;
        {
            let mut tail = tx.prepare_cached(
                "INSERT OR REPLACE INTO tail (sensor_id, ts, value, is_bool, source) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut far: Option<CachedStatement<'_>> = None;
            for reading in readings {
                let sensor_id = sensor_id(&tx, sensors, &reading.sensor)?;
                let row = params![
                    sensor_id,
                    reading.ts_ms,
                    reading.value.as_f64(),
                    matches!(reading.value, Value::Bool(_)),
                    source_code(reading.source),
                ];
                match Partition::of(reading.ts_ms, window) {
                    Partition::Day(_) => {
                        tail.execute(row)?;
                        appended += 1;
                    }
                    Partition::Far => {
                        if far.is_none() {
                            far = Some(tx.prepare_cached(
                                "INSERT OR REPLACE INTO readings_far \
                                 (sensor_id, ts, value, is_bool, source) VALUES (?1, ?2, ?3, ?4, ?5)",
                            )?);
                        }
                        if let Some(far) = far.as_mut() {
                            far.execute(row)?;
                        }
                    }
                }
            }
        }
        tx.commit()?;
        Ok(appended)
    }

    /// One bounded step of compaction, if a cycle is under way or due (see the module
    /// comment); nothing otherwise. Call it between write batches.
    pub fn compact_some(&mut self, now_ms: i64) -> rusqlite::Result<Compacted> {
        let written = usize::try_from(std::mem::take(&mut self.since_step)).unwrap_or(usize::MAX);
        if self.cycle.is_none() {
            let old = self
                .tail_since
                .is_some_and(|since| now_ms.saturating_sub(since) >= CYCLE_AGE_MS);
            if self.tail_rows < CYCLE_ROWS && !old {
                return Ok(Compacted::default());
            }
            self.cycle = Some((i64::MIN, now_ms));
        }
        let result = self.step(now_ms, written.clamp(STEP_ROWS, MAX_STEP_ROWS));
        if result.is_err() {
            // Rolled back: tables created in the step are gone; the cycle starts over later.
            self.days.clear();
            self.cycle = None;
        }
        result
    }

    /// Compacts the whole tail now (a cycle from start to end, in steps).
    pub fn compact_all(&mut self, now_ms: i64) -> rusqlite::Result<Compacted> {
        self.cycle = Some((i64::MIN, now_ms));
        let mut total = Compacted::default();
        loop {
            let step = self.compact_some(now_ms)?;
            total.rows += step.rows;
            total.chunks += step.chunks;
            if step.cycle_done {
                total.cycle_done = true;
                return Ok(total);
            }
        }
    }

    fn step(&mut self, now_ms: i64, budget: usize) -> rusqlite::Result<Compacted> {
        let Some((cursor, started)) = self.cycle else {
            return Ok(Compacted::default());
        };
        let window = live_days(now_ms, self.retention_ms);
        let Self { conn, days, .. } = self;
        let tx = conn.transaction()?;
        // The sensors from the cursor on, in id order, until the budget is spent.
        let mut groups: Vec<(i64, Vec<Stored>)> = Vec::new();
        let mut rows = 0;
        let mut exhausted = true;
        {
            let mut select = tx.prepare_cached(
                "SELECT sensor_id, ts, value, is_bool, source FROM tail \
                 WHERE sensor_id >= ?1 ORDER BY sensor_id, ts",
            )?;
            let mut found = select.query([cursor])?;
            while let Some(row) = found.next()? {
                let sensor: i64 = row.get(0)?;
                if groups.last().map(|(s, _)| *s) != Some(sensor) {
                    if rows >= budget {
                        exhausted = false;
                        break;
                    }
                    groups.push((sensor, Vec::new()));
                }
                let point = Stored {
                    ts: row.get(1)?,
                    value: value_of(row.get(2)?, row.get(3)?),
                    source: source_of(row.get(4)?),
                };
                if let Some((_, points)) = groups.last_mut() {
                    points.push(point);
                }
                rows += 1;
            }
        }
        let mut chunks = 0;
        for (sensor, points) in &groups {
            // Split by partition; rows are in time order, so each day is one run.
            let mut start = 0;
            while start < points.len() {
                let partition = Partition::of(points[start].ts, window);
                let end = points[start..]
                    .iter()
                    .position(|p| Partition::of(p.ts, window) != partition)
                    .map_or(points.len(), |n| start + n);
                let run = &points[start..end];
                match partition {
                    Partition::Day(day) => {
                        if !days.contains(&day) {
                            create_chunk_table(&tx, day)?;
                            days.insert(day);
                        }
                        chunks += merge_into_chunks(&tx, day, *sensor, run)?;
                    }
                    // The window moved on while the rows waited (or a clock jumped).
                    Partition::Far => {
                        let mut far = tx.prepare_cached(
                            "INSERT OR REPLACE INTO readings_far \
                             (sensor_id, ts, value, is_bool, source) VALUES (?1, ?2, ?3, ?4, ?5)",
                        )?;
                        for p in run {
                            far.execute(params![
                                sensor,
                                p.ts,
                                p.value.as_f64(),
                                matches!(p.value, Value::Bool(_)),
                                source_code(p.source)
                            ])?;
                        }
                    }
                }
                start = end;
            }
        }
        if let Some((last, _)) = groups.last() {
            tx.prepare_cached("DELETE FROM tail WHERE sensor_id >= ?1 AND sensor_id <= ?2")?
                .execute([cursor, *last])?;
        }
        let recount = if exhausted {
            Some(tx.query_row("SELECT count(*) FROM tail", [], |row| row.get::<_, i64>(0))?)
        } else {
            None
        };
        tx.commit()?;
        let moved = rows as u64;
        self.tail_rows = self.tail_rows.saturating_sub(moved);
        match (recount, groups.last()) {
            (Some(left), _) => {
                // Rows written meanwhile to sensors the cycle had passed wait for the next.
                self.tail_rows = u64::try_from(left).unwrap_or(0);
                self.tail_since = (self.tail_rows > 0).then_some(started);
                self.cycle = None;
            }
            (None, Some((last, _))) => self.cycle = Some((last.saturating_add(1), started)),
            (None, None) => self.cycle = None,
        }
        Ok(Compacted {
            rows: moved,
            chunks,
            cycle_done: self.cycle.is_none(),
        })
    }

    /// Drops the day tables wholly older than `before_ms` (chunks and old layout) with the
    /// tail rows of those days, and deletes the far readings older than it.
    pub fn prune(&mut self, before_ms: i64) -> rusqlite::Result<Pruned> {
        let mut pruned = Pruned::default();
        for (prefix, day) in day_tables(&self.conn)? {
            if (day + 1).saturating_mul(DAY_MS) <= before_ms {
                self.conn
                    .execute_batch(&format!("DROP TABLE IF EXISTS {prefix}{day}"))?;
                self.days.remove(&day);
                pruned.days += 1;
            }
        }
        pruned.far_rows = self
            .conn
            .prepare_cached("DELETE FROM readings_far WHERE ts < ?1")?
            .execute([before_ms])? as u64;
        // The tail holds no more than a cycle's rows: scanning it is cheap.
        let first_kept_day = before_ms.div_euclid(DAY_MS).saturating_mul(DAY_MS);
        pruned.tail_rows = self
            .conn
            .prepare_cached("DELETE FROM tail WHERE ts < ?1")?
            .execute([first_kept_day])? as u64;
        self.tail_rows = self.tail_rows.saturating_sub(pruned.tail_rows);
        Ok(pruned)
    }
}

fn source_code(source: Source) -> i64 {
    match source {
        Source::Mqtt => 0,
        Source::Modbus => 1,
    }
}

fn source_of(code: i64) -> Source {
    if code == 1 {
        Source::Modbus
    } else {
        Source::Mqtt
    }
}

fn value_of(value: f64, is_bool: bool) -> Value {
    if is_bool {
        Value::Bool(value != 0.0)
    } else {
        Value::Number(value)
    }
}

fn create_chunk_table(conn: &Connection, day: i64) -> rusqlite::Result<()> {
    let table = chunk_table(day);
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (
            id          INTEGER PRIMARY KEY,
            sensor_id   INTEGER NOT NULL,
            chunk_start INTEGER NOT NULL,  -- ts of the first point
            chunk_end   INTEGER NOT NULL,  -- ts of the last point
            n           INTEGER NOT NULL,  -- points in data
            data        BLOB    NOT NULL   -- see encode()
        );
        CREATE UNIQUE INDEX IF NOT EXISTS {table}_key ON {table} (sensor_id, chunk_start);"
    ))
}

/// Merges one sensor's points of one day (in time order, one per time) into its chunks:
/// chunks they overlap, and the chunk just before them if it is small, are rewritten with
/// them (their point wins on the same time). Returns the chunks written.
fn merge_into_chunks(
    tx: &Transaction<'_>,
    day: i64,
    sensor: i64,
    points: &[Stored],
) -> rusqlite::Result<u64> {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return Ok(0);
    };
    let table = chunk_table(day);
    let mut taken: Vec<(i64, Vec<u8>)> = Vec::new();
    {
        let mut before = tx.prepare_cached(&format!(
            "SELECT id, chunk_end, n, data FROM {table} \
             WHERE sensor_id = ?1 AND chunk_start <= ?2 ORDER BY chunk_start DESC"
        ))?;
        let mut found = before.query(params![sensor, last.ts])?;
        // Chunks do not overlap, so going back in time their ends fall too.
        while let Some(row) = found.next()? {
            let end: i64 = row.get(1)?;
            let n: i64 = row.get(2)?;
            if end >= first.ts {
                taken.push((row.get(0)?, row.get(3)?));
                continue;
            }
            if usize::try_from(n).unwrap_or(usize::MAX) < MERGE_BELOW {
                taken.push((row.get(0)?, row.get(3)?));
            }
            break;
        }
    }
    let merged = if taken.is_empty() {
        points.to_vec()
    } else {
        let mut old = Vec::new();
        // Taken newest first: decode oldest first so `old` is in time order.
        for (_, data) in taken.iter().rev() {
            old.extend(decode(data).map_err(|e| conversion_error(3, e))?);
        }
        let mut delete = tx.prepare_cached(&format!("DELETE FROM {table} WHERE id = ?1"))?;
        for (id, _) in &taken {
            delete.execute([id])?;
        }
        merge_sorted(&old, points)
    };
    let mut insert = tx.prepare_cached(&format!(
        "INSERT INTO {table} (sensor_id, chunk_start, chunk_end, n, data) \
         VALUES (?1, ?2, ?3, ?4, ?5)"
    ))?;
    let mut written = 0;
    for piece in merged.chunks(MAX_CHUNK_POINTS) {
        let (Some(start), Some(end)) = (piece.first(), piece.last()) else {
            continue;
        };
        insert.execute(params![
            sensor,
            start.ts,
            end.ts,
            piece.len() as i64,
            encode(piece)
        ])?;
        written += 1;
    }
    Ok(written)
}

/// Two point lists in time order, merged; on the same time `newer`'s point is kept.
fn merge_sorted(older: &[Stored], newer: &[Stored]) -> Vec<Stored> {
    let mut out = Vec::with_capacity(older.len() + newer.len());
    let (mut i, mut j) = (0, 0);
    while i < older.len() && j < newer.len() {
        match older[i].ts.cmp(&newer[j].ts) {
            std::cmp::Ordering::Less => {
                out.push(older[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(newer[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(newer[j]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&older[i..]);
    out.extend_from_slice(&newer[j..]);
    out
}

/// A chunk's `data` could not be decoded (a damaged file).
#[derive(Debug, thiserror::Error)]
#[error("history chunk damaged: {0}")]
pub struct ChunkError(&'static str);

fn conversion_error(column: usize, e: ChunkError) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, Type::Blob, Box::new(e))
}

const CHUNK_FORMAT: u8 = 1;
const TAG_BOOL: u8 = 1;
const TAG_MODBUS: u8 = 2;
/// Value kinds (tag bits 2–3): the previous point's value, an integer, an `f64`.
const KIND_SAME: u8 = 0;
const KIND_INT: u8 = 1 << 2;
const KIND_F64: u8 = 2 << 2;
const KIND_MASK: u8 = 3 << 2;

/// A chunk's `data`: a format byte, then per point the zigzag varint of the change in the
/// time step (its time minus the previous point's, minus the previous step; both start at 0:
/// a sensor reporting at a steady interval costs one byte), a tag byte (boolean, Modbus, value
/// kind) and the value: nothing when it repeats the previous one (a steady sensor: 2 bytes a
/// point), a zigzag varint when it is a whole number, else 8 bytes.
fn encode(points: &[Stored]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + points.len() * 4);
    out.push(CHUNK_FORMAT);
    let (mut prev_ts, mut prev_delta, mut prev_value) = (0i64, 0i64, None::<u64>);
    for p in points {
        let delta = p.ts.wrapping_sub(prev_ts);
        put_varint(&mut out, zigzag(delta.wrapping_sub(prev_delta)));
        (prev_ts, prev_delta) = (p.ts, delta);
        let value = p.value.as_f64();
        let mut tag = 0;
        if matches!(p.value, Value::Bool(_)) {
            tag |= TAG_BOOL;
        }
        if p.source == Source::Modbus {
            tag |= TAG_MODBUS;
        }
        if prev_value == Some(value.to_bits()) {
            out.push(tag | KIND_SAME);
        } else if value.fract() == 0.0
            && value.abs() < 9.0e15
            && !(value == 0.0 && value.is_sign_negative())
        {
            out.push(tag | KIND_INT);
            put_varint(&mut out, zigzag(value as i64));
        } else {
            out.push(tag | KIND_F64);
            out.extend_from_slice(&value.to_le_bytes());
        }
        prev_value = Some(value.to_bits());
    }
    out
}

fn decode(data: &[u8]) -> Result<Vec<Stored>, ChunkError> {
    let (&format, mut rest) = data.split_first().ok_or(ChunkError("empty"))?;
    if format != CHUNK_FORMAT {
        return Err(ChunkError("unknown format"));
    }
    let mut points = Vec::new();
    let (mut ts, mut delta, mut prev_value) = (0i64, 0i64, None::<f64>);
    while !rest.is_empty() {
        delta = delta.wrapping_add(unzigzag(get_varint(&mut rest)?));
        ts = ts.wrapping_add(delta);
        let (&tag, after) = rest.split_first().ok_or(ChunkError("truncated"))?;
        rest = after;
        let value = match tag & KIND_MASK {
            KIND_SAME => prev_value.ok_or(ChunkError("repeat without a value"))?,
            KIND_INT => unzigzag(get_varint(&mut rest)?) as f64,
            KIND_F64 => {
                let (bytes, after) = rest.split_at_checked(8).ok_or(ChunkError("truncated"))?;
                rest = after;
                let mut raw = [0u8; 8];
                raw.copy_from_slice(bytes);
                f64::from_le_bytes(raw)
            }
            _ => return Err(ChunkError("unknown value kind")),
        };
        prev_value = Some(value);
        points.push(Stored {
            ts,
            value: value_of(value, tag & TAG_BOOL != 0),
            source: if tag & TAG_MODBUS != 0 {
                Source::Modbus
            } else {
                Source::Mqtt
            },
        });
    }
    Ok(points)
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(data: &mut &[u8]) -> Result<u64, ChunkError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = data.split_first().ok_or(ChunkError("truncated"))?;
        *data = rest;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(ChunkError("varint too long"))
}

/// The id of a sensor, added to `sensors` on first sight.
fn sensor_id(
    conn: &Connection,
    cache: &mut HashMap<SensorId, i64>,
    sensor: &SensorId,
) -> rusqlite::Result<i64> {
    if let Some(id) = cache.get(sensor) {
        return Ok(*id);
    }
    let path = sensor.to_string();
    conn.prepare_cached("INSERT INTO sensors (path) VALUES (?1) ON CONFLICT (path) DO NOTHING")?
        .execute([&path])?;
    let id = conn
        .prepare_cached("SELECT id FROM sensors WHERE path = ?1")?
        .query_row([&path], |row| row.get(0))?;
    if cache.len() >= MAX_CACHED_SENSORS {
        cache.clear();
    }
    cache.insert(sensor.clone(), id);
    Ok(id)
}

/// Chunk tables (`chunks_d`) and old-layout tables (`readings_d`) per day: (prefix, day),
/// in order of day.
fn day_tables(conn: &Connection) -> rusqlite::Result<Vec<(&'static str, i64)>> {
    let mut tables = Vec::new();
    let mut names = conn.prepare_cached(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND (name GLOB 'readings_d*' OR name GLOB 'chunks_d*')",
    )?;
    for name in names.query_map([], |row| row.get::<_, String>(0))? {
        let name = name?;
        for prefix in ["readings_d", "chunks_d"] {
            if let Some(day) = name.strip_prefix(prefix).and_then(|d| d.parse().ok()) {
                tables.push((prefix, day));
            }
        }
    }
    tables.sort_unstable_by_key(|(_, day)| *day);
    Ok(tables)
}

/// Which copy of a point a query keeps when several hold the same time: the lowest rank
/// (the newest copy).
const RANK_TAIL: u8 = 0;
const RANK_CHUNK: u8 = 1;
const RANK_OLD_DAY: u8 = 2;
const RANK_FAR: u8 = 3;

/// The reading side: its own connection (WAL readers do not block the writer).
pub struct HistoryReader {
    conn: Connection,
}

impl HistoryReader {
    /// Opens the history file; [`HistoryWriter::open`] must have created it.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        Ok(Self {
            conn: open_connection(path)?,
        })
    }

    /// A sensor's points between two Unix-ms times, oldest first, at most `limit`.
    pub fn history(
        &mut self,
        sensor: &str,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> rusqlite::Result<Vec<HistoryPoint>> {
        // One read transaction: a consistent snapshot even if the writer compacts or drops a
        // day meanwhile (a compaction step moves rows from the tail to chunks in one commit).
        let tx = self.conn.transaction()?;
        let Some(sensor_id) = tx
            .prepare_cached("SELECT id FROM sensors WHERE path = ?1")?
            .query_row([sensor], |row| row.get::<_, i64>(0))
            .optional()?
        else {
            return Ok(Vec::new());
        };
        if limit == 0 || from_ms > to_ms {
            return Ok(Vec::new());
        }
        // Each source gives its first `limit` points in range; the first `limit` distinct
        // times of all of them are among those.
        let mut found: Vec<(i64, u8, Value)> = Vec::new();
        range(
            &tx,
            "tail",
            RANK_TAIL,
            sensor_id,
            (from_ms, to_ms),
            limit,
            &mut found,
        )?;
        let (first, last) = (from_ms.div_euclid(DAY_MS), to_ms.div_euclid(DAY_MS));
        let (mut from_chunks, mut from_old) = (0, 0);
        for (prefix, day) in day_tables(&tx)? {
            if day < first || day > last {
                continue;
            }
            if prefix == "chunks_d" {
                if from_chunks < limit {
                    from_chunks += chunk_range(
                        &tx,
                        day,
                        sensor_id,
                        (from_ms, to_ms),
                        limit - from_chunks,
                        &mut found,
                    )?;
                }
            } else if from_old < limit {
                let before = found.len();
                range(
                    &tx,
                    &format!("{prefix}{day}"),
                    RANK_OLD_DAY,
                    sensor_id,
                    (from_ms, to_ms),
                    limit - from_old,
                    &mut found,
                )?;
                from_old += found.len() - before;
            }
        }
        // Far readings may sit anywhere in time.
        range(
            &tx,
            FAR_TABLE,
            RANK_FAR,
            sensor_id,
            (from_ms, to_ms),
            limit,
            &mut found,
        )?;
        found.sort_unstable_by_key(|(ts, rank, _)| (*ts, *rank));
        found.dedup_by_key(|(ts, _, _)| *ts);
        found.truncate(limit);
        Ok(found
            .into_iter()
            .map(|(ts, _, value)| HistoryPoint { ts, value })
            .collect())
    }
}

/// Appends a sensor's points of one chunk table between two times, oldest first, at most
/// `limit`; returns how many.
fn chunk_range(
    conn: &Connection,
    day: i64,
    sensor_id: i64,
    (from_ms, to_ms): (i64, i64),
    limit: usize,
    found: &mut Vec<(i64, u8, Value)>,
) -> rusqlite::Result<usize> {
    let mut query = conn.prepare_cached(&format!(
        "SELECT data FROM {} WHERE sensor_id = ?1 AND chunk_start <= ?3 AND chunk_end >= ?2 \
         ORDER BY chunk_start",
        chunk_table(day)
    ))?;
    let mut rows = query.query(params![sensor_id, from_ms, to_ms])?;
    let mut added = 0;
    while let Some(row) = rows.next()? {
        let data = row.get_ref(0)?.as_blob()?;
        for p in decode(data).map_err(|e| conversion_error(0, e))? {
            if p.ts < from_ms || p.ts > to_ms {
                continue;
            }
            found.push((p.ts, RANK_CHUNK, p.value));
            added += 1;
            if added >= limit {
                return Ok(added);
            }
        }
    }
    Ok(added)
}

/// Appends a sensor's points of one row table between two times, oldest first, at most
/// `limit`.
fn range(
    conn: &Connection,
    table: &str,
    rank: u8,
    sensor_id: i64,
    (from_ms, to_ms): (i64, i64),
    limit: usize,
    found: &mut Vec<(i64, u8, Value)>,
) -> rusqlite::Result<()> {
    let mut query = conn.prepare_cached(&format!(
        "SELECT ts, value, is_bool FROM {table} \
         WHERE sensor_id = ?1 AND ts >= ?2 AND ts <= ?3 ORDER BY ts LIMIT ?4"
    ))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = query.query_map(params![sensor_id, from_ms, to_ms, limit], |row| {
        Ok((row.get(0)?, rank, value_of(row.get(1)?, row.get(2)?)))
    })?;
    for point in rows {
        found.push(point?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Quality;

    const NOW: i64 = 1_764_000_000_000;

    fn reading(sensor: &str, ts_ms: i64, value: Value) -> Reading {
        Reading {
            sensor: SensorId::parse(sensor).unwrap(),
            ts_ms,
            value,
            quality: Quality::Good,
            source: Source::Mqtt,
        }
    }

    fn open(dir: &Path) -> (HistoryWriter, HistoryReader) {
        let path = dir.join("history.db");
        let writer = HistoryWriter::open(&path, Duration::from_secs(7 * 86_400)).unwrap();
        (writer, HistoryReader::open(&path).unwrap())
    }

    fn times(points: &[HistoryPoint]) -> Vec<i64> {
        points.iter().map(|p| p.ts).collect()
    }

    fn count(dir: &Path, sql: &str) -> i64 {
        Connection::open(dir.join("history.db"))
            .unwrap()
            .query_row(sql, [], |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn ranges_span_days_and_far_readings_merge_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, mut reader) = open(dir.path());
        let far_past = NOW - 30 * DAY_MS;
        let far_future = NOW + 30 * DAY_MS;
        let readings = vec![
            reading("s/d/t", NOW - DAY_MS, Value::Number(1.0)),
            reading("s/d/t", NOW, Value::Number(2.0)),
            reading("s/d/door", NOW, Value::Bool(true)),
            reading("s/d/t", far_future, Value::Number(3.0)),
            reading("s/d/t", far_past, Value::Number(0.5)),
        ];
        writer.write(&readings, NOW).unwrap();
        // The same answers from the tail, and from chunks after a compaction.
        for compacted in [false, true] {
            if compacted {
                writer.compact_all(NOW).unwrap();
                assert_eq!(count(dir.path(), "SELECT count(*) FROM tail"), 0);
            }
            let ts = times(&reader.history("s/d/t", 0, i64::MAX, 100).unwrap());
            assert_eq!(ts, vec![far_past, NOW - DAY_MS, NOW, far_future]);
            assert_eq!(
                reader.history("s/d/t", 0, i64::MAX, 2).unwrap()[1],
                HistoryPoint {
                    ts: NOW - DAY_MS,
                    value: Value::Number(1.0)
                }
            );
            assert_eq!(
                reader.history("s/d/door", NOW, NOW, 10).unwrap(),
                vec![HistoryPoint {
                    ts: NOW,
                    value: Value::Bool(true)
                }]
            );
            assert!(reader
                .history("s/d/none", 0, i64::MAX, 10)
                .unwrap()
                .is_empty());
        }
    }

    #[test]
    fn a_query_reads_chunks_and_the_tail_in_time_order_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, mut reader) = open(dir.path());
        // Even seconds compacted into chunks, odd ones still in the tail.
        let even: Vec<Reading> = (0..100)
            .map(|i| reading("s/d/t", NOW + i * 2_000, Value::Number(i as f64)))
            .collect();
        writer.write(&even, NOW).unwrap();
        writer.compact_all(NOW).unwrap();
        let odd: Vec<Reading> = (0..100)
            .map(|i| reading("s/d/t", NOW + i * 2_000 + 1_000, Value::Number(-(i as f64))))
            .collect();
        writer.write(&odd, NOW).unwrap();
        assert_eq!(count(dir.path(), "SELECT count(*) FROM tail"), 100);
        let all = reader
            .history("s/d/t", NOW, NOW + 1_000_000, 1_000)
            .unwrap();
        assert_eq!(
            times(&all),
            (0..200).map(|i| NOW + i * 1_000).collect::<Vec<_>>()
        );
        assert_eq!(all[3].value, Value::Number(-1.0));
        let first = reader
            .history("s/d/t", NOW + 10_500, NOW + 1_000_000, 5)
            .unwrap();
        assert_eq!(
            times(&first),
            (11..16).map(|i| NOW + i * 1_000).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_redelivered_reading_replaces_the_stored_one() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, mut reader) = open(dir.path());
        let one = |v| [reading("s/d/t", NOW, Value::Number(v))];
        writer.write(&one(1.0), NOW).unwrap();
        writer.write(&one(1.5), NOW).unwrap();
        let expect = |v| {
            vec![HistoryPoint {
                ts: NOW,
                value: Value::Number(v),
            }]
        };
        assert_eq!(reader.history("s/d/t", NOW, NOW, 10).unwrap(), expect(1.5));
        // Redelivered after compaction: the tail's copy wins, then the merge keeps it.
        writer.compact_all(NOW).unwrap();
        writer.write(&one(2.5), NOW).unwrap();
        assert_eq!(reader.history("s/d/t", NOW, NOW, 10).unwrap(), expect(2.5));
        writer.compact_all(NOW).unwrap();
        assert_eq!(reader.history("s/d/t", NOW, NOW, 10).unwrap(), expect(2.5));
        let day = NOW.div_euclid(DAY_MS);
        assert_eq!(
            count(dir.path(), &format!("SELECT sum(n) FROM chunks_d{day}")),
            1
        );
    }

    #[test]
    fn redeliveries_inside_big_chunks_rewrite_them_without_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, mut reader) = open(dir.path());
        let points: Vec<Reading> = (0..2_500)
            .map(|i| reading("s/d/t", NOW + i * 1_000, Value::Number(i as f64 * 0.5)))
            .collect();
        writer.write(&points, NOW).unwrap();
        writer.compact_all(NOW).unwrap();
        let day = NOW.div_euclid(DAY_MS);
        let table = format!("chunks_d{day}");
        assert_eq!(
            count(dir.path(), &format!("SELECT count(*) FROM {table}")),
            3
        );
        // Every 100th point again with a new value, and a few new ones between.
        let mut again: Vec<Reading> = (0..25)
            .map(|i| reading("s/d/t", NOW + i * 100_000, Value::Number(-1.0)))
            .collect();
        again.push(reading("s/d/t", NOW + 1_500_500, Value::Bool(true)));
        writer.write(&again, NOW).unwrap();
        writer.compact_all(NOW).unwrap();
        let all = reader.history("s/d/t", NOW, NOW + DAY_MS, 10_000).unwrap();
        assert_eq!(all.len(), 2_501);
        assert!(all.windows(2).all(|w| w[0].ts < w[1].ts));
        assert_eq!(all[100].value, Value::Number(-1.0));
        assert_eq!(all[101].value, Value::Number(50.5));
        assert!(all.contains(&HistoryPoint {
            ts: NOW + 1_500_500,
            value: Value::Bool(true)
        }));
        // The sensor's chunks do not overlap and hold every point once.
        let conn = Connection::open(dir.path().join("history.db")).unwrap();
        let spans: Vec<(i64, i64, i64)> = conn
            .prepare(&format!(
                "SELECT chunk_start, chunk_end, n FROM {table} ORDER BY chunk_start"
            ))
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(spans.windows(2).all(|w| w[0].1 < w[1].0));
        assert_eq!(spans.iter().map(|s| s.2).sum::<i64>(), 2_501);
        assert!(spans
            .iter()
            .all(|s| usize::try_from(s.2).unwrap() <= MAX_CHUNK_POINTS));
    }

    #[test]
    fn cycles_run_in_bounded_steps_and_small_chunks_grow() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, mut reader) = open(dir.path());
        let sensors: Vec<String> = (0..3_000).map(|i| format!("s/d{i}/t")).collect();
        for round in 0..4 {
            let batch: Vec<Reading> = (0..10)
                .flat_map(|k| {
                    sensors.iter().map(move |s| {
                        reading(s, NOW + (round * 10 + k) * 1_000, Value::Number(k as f64))
                    })
                })
                .collect();
            writer.write(&batch, NOW).unwrap();
            // Not due yet: few rows and a young tail.
            assert_eq!(writer.compact_some(NOW).unwrap(), Compacted::default());
            // Due by age: a cycle in steps of about STEP_ROWS (30,000 rows: two steps).
            let mut steps = 0;
            let mut moved = 0;
            loop {
                let step = writer.compact_some(NOW + CYCLE_AGE_MS).unwrap();
                steps += 1;
                moved += step.rows;
                assert!(step.rows <= STEP_ROWS as u64 + 10);
                if step.cycle_done {
                    break;
                }
                assert!(steps < 10, "the cycle does not end");
            }
            assert_eq!(moved, 30_000);
            assert_eq!(steps, 2);
            assert_eq!(count(dir.path(), "SELECT count(*) FROM tail"), 0);
        }
        // Each sensor's 40 points ended in one chunk (the small chunk was rewritten each time).
        let day = NOW.div_euclid(DAY_MS);
        assert_eq!(
            count(dir.path(), &format!("SELECT count(*) FROM chunks_d{day}")),
            3_000
        );
        let points = reader.history("s/d1234/t", NOW, NOW + DAY_MS, 100).unwrap();
        assert_eq!(
            times(&points),
            (0..40).map(|i| NOW + i * 1_000).collect::<Vec<_>>()
        );
    }

    #[test]
    fn pruning_drops_whole_old_days_and_old_far_rows() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, mut reader) = open(dir.path());
        let readings: Vec<Reading> = (0..10)
            .map(|d| reading("s/d/t", NOW - d * DAY_MS, Value::Number(d as f64)))
            .collect();
        writer.write(&readings, NOW).unwrap();
        // Half the days compacted, half in the tail.
        writer.compact_all(NOW).unwrap();
        let more: Vec<Reading> = (0..10)
            .map(|d| reading("s/d/t", NOW - d * DAY_MS + 1, Value::Number(d as f64)))
            .collect();
        writer.write(&more, NOW).unwrap();
        let cutoff = NOW - 7 * DAY_MS;
        let pruned = writer.prune(cutoff).unwrap();
        // Days 8 and 9 back were far (outside the window); day 7 back straddles the cutoff.
        assert_eq!(pruned.far_rows, 4);
        let left = reader.history("s/d/t", 0, i64::MAX, 100).unwrap();
        assert_eq!(left.len(), 16);
        assert!(left.iter().all(|p| p.ts >= cutoff));
        // A week later everything goes, chunk tables and tail rows alike.
        let pruned = writer.prune(NOW + 2 * DAY_MS).unwrap();
        assert_eq!(pruned.days, 8);
        assert_eq!(pruned.tail_rows, 8);
        assert!(reader
            .history("s/d/t", 0, i64::MAX, 100)
            .unwrap()
            .is_empty());
        // Writing into a dropped day again recreates it.
        writer
            .write(&[reading("s/d/t", NOW, Value::Number(9.0))], NOW)
            .unwrap();
        writer.compact_all(NOW).unwrap();
        assert_eq!(reader.history("s/d/t", 0, i64::MAX, 100).unwrap().len(), 1);
    }

    #[test]
    fn tail_rows_whose_day_left_the_window_become_far_readings() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, mut reader) = open(dir.path());
        writer
            .write(&[reading("s/d/t", NOW, Value::Number(4.0))], NOW)
            .unwrap();
        // Compacted ten days later: the day is outside the window, the row is kept as far.
        writer.compact_all(NOW + 10 * DAY_MS).unwrap();
        assert_eq!(count(dir.path(), "SELECT count(*) FROM readings_far"), 1);
        assert_eq!(
            reader.history("s/d/t", 0, i64::MAX, 10).unwrap(),
            vec![HistoryPoint {
                ts: NOW,
                value: Value::Number(4.0)
            }]
        );
    }

    #[test]
    fn a_crash_mid_compaction_loses_and_duplicates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        let (mut writer, mut reader) = open(dir.path());
        let sensors: Vec<String> = (0..3_000).map(|i| format!("s/d{i}/t")).collect();
        let batch: Vec<Reading> = (0..10)
            .flat_map(|k| {
                sensors
                    .iter()
                    .map(move |s| reading(s, NOW + k * 1_000, Value::Number(k as f64)))
            })
            .collect();
        writer.write(&batch, NOW).unwrap();
        assert_eq!(writer.compact_some(NOW).unwrap(), Compacted::default());
        // One committed step of a two-step cycle, then the process dies.
        let step = writer.compact_some(NOW + CYCLE_AGE_MS).unwrap();
        assert!(step.rows > 0 && !step.cycle_done);
        drop(writer);
        // A step that dies before its commit: chunks written and tail rows deleted, rolled back.
        {
            let conn = open_connection(&path).unwrap();
            let day = NOW.div_euclid(DAY_MS);
            conn.execute_batch(&format!(
                "BEGIN IMMEDIATE;
                 DELETE FROM tail;
                 INSERT INTO chunks_d{day} (sensor_id, chunk_start, chunk_end, n, data)
                     VALUES (999999, 0, 0, 1, x'01');"
            ))
            .unwrap();
            drop(conn);
        }
        let mut writer = HistoryWriter::open(&path, Duration::from_secs(7 * 86_400)).unwrap();
        assert!(writer.tail_rows > 0);
        let check = |reader: &mut HistoryReader| {
            for s in ["s/d0/t", "s/d1500/t", "s/d2999/t"] {
                let points = reader.history(s, NOW, NOW + DAY_MS, 100).unwrap();
                assert_eq!(
                    times(&points),
                    (0..10).map(|k| NOW + k * 1_000).collect::<Vec<_>>()
                );
            }
        };
        check(&mut reader);
        // The rows left from before the restart are compacted at the first chance.
        let resumed = writer.compact_some(NOW).unwrap();
        assert!(resumed.rows > 0);
        writer.compact_all(NOW).unwrap();
        check(&mut reader);
        let day = NOW.div_euclid(DAY_MS);
        assert_eq!(
            count(dir.path(), &format!("SELECT sum(n) FROM chunks_d{day}")),
            30_000
        );
    }

    #[test]
    fn an_old_layout_history_is_read_redelivered_over_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        let day = NOW.div_euclid(DAY_MS);
        // A history.db as the previous layout wrote it.
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(&format!(
                "CREATE TABLE sensors (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE);
                 CREATE TABLE readings_far (sensor_id INTEGER NOT NULL, ts INTEGER NOT NULL,
                     value REAL NOT NULL, is_bool INTEGER NOT NULL, source INTEGER NOT NULL,
                     PRIMARY KEY (sensor_id, ts)) WITHOUT ROWID;
                 CREATE TABLE readings_d{day} (sensor_id INTEGER NOT NULL, ts INTEGER NOT NULL,
                     value REAL NOT NULL, is_bool INTEGER NOT NULL, source INTEGER NOT NULL,
                     PRIMARY KEY (sensor_id, ts)) WITHOUT ROWID;
                 INSERT INTO sensors (id, path) VALUES (1, 's/d/t'), (2, 's/d/door');
                 INSERT INTO readings_d{day} VALUES (1, {NOW}, 20.5, 0, 0), (1, {}, 21.0, 0, 0),
                     (2, {NOW}, 1, 1, 1);",
                NOW + 1_000
            ))
            .unwrap();
        }
        let (mut writer, mut reader) = open(dir.path());
        assert_eq!(
            reader.history("s/d/t", NOW, NOW + 1_000, 10).unwrap(),
            vec![
                HistoryPoint {
                    ts: NOW,
                    value: Value::Number(20.5)
                },
                HistoryPoint {
                    ts: NOW + 1_000,
                    value: Value::Number(21.0)
                }
            ]
        );
        // New readings of the same sensor keep its id; a redelivery wins over the old copy.
        writer
            .write(
                &[
                    reading("s/d/t", NOW + 1_000, Value::Number(22.0)),
                    reading("s/d/t", NOW + 2_000, Value::Number(23.0)),
                ],
                NOW,
            )
            .unwrap();
        for _ in 0..2 {
            let points = reader.history("s/d/t", NOW, NOW + DAY_MS, 10).unwrap();
            assert_eq!(times(&points), vec![NOW, NOW + 1_000, NOW + 2_000]);
            assert_eq!(points[1].value, Value::Number(22.0));
            writer.compact_all(NOW).unwrap();
        }
        assert_eq!(count(dir.path(), "SELECT count(*) FROM sensors"), 2);
        assert_eq!(
            reader.history("s/d/door", NOW, NOW, 10).unwrap()[0].value,
            Value::Bool(true)
        );
        // Retention drops the old day table like a chunk table.
        let pruned = writer.prune(NOW + 2 * DAY_MS).unwrap();
        assert_eq!(pruned.days, 2);
        assert!(reader.history("s/d/t", 0, i64::MAX, 10).unwrap().is_empty());
    }

    #[test]
    fn chunks_round_trip_and_damaged_ones_are_errors() {
        let values = [
            Value::Number(21.5),
            Value::Number(21.5),
            Value::Number(-3.0),
            Value::Number(0.1),
            Value::Number(-0.0),
            Value::Number(f64::NAN),
            Value::Number(1e300),
            Value::Number(9_007_199_254_740_991.0),
            Value::Bool(true),
            Value::Bool(false),
            Value::Bool(false),
        ];
        let points: Vec<Stored> = values
            .iter()
            .enumerate()
            .map(|(i, v)| Stored {
                ts: -5_000 + (i as i64) * 999_999_937,
                value: *v,
                source: if i % 3 == 0 {
                    Source::Modbus
                } else {
                    Source::Mqtt
                },
            })
            .collect();
        let data = encode(&points);
        let back = decode(&data).unwrap();
        assert_eq!(back.len(), points.len());
        for (a, b) in points.iter().zip(&back) {
            assert_eq!((a.ts, a.source), (b.ts, b.source));
            match (a.value, b.value) {
                (Value::Number(x), Value::Number(y)) => assert_eq!(x.to_bits(), y.to_bits()),
                (x, y) => assert_eq!(x, y),
            }
        }
        // A steady sensor costs a few bytes a point.
        let steady: Vec<Stored> = (0..1_000)
            .map(|i| Stored {
                ts: NOW + i * 10_000,
                value: Value::Number(20.0),
                source: Source::Mqtt,
            })
            .collect();
        assert!(encode(&steady).len() < 1_000 * 2 + 20);
        for cut in 0..data.len() {
            let _ = decode(&data[..cut]); // no panic
        }
        assert!(decode(&data[..data.len() - 3]).is_err());
        assert!(decode(&[]).is_err());
        assert!(decode(&[9, 0, 0]).is_err());
    }
}

//! The local history of readings: its own SQLite file (`<data_dir>/history.db`, so alarm
//! journal writes in `campusguard.db` never queue behind history writes), written with rusqlite
//! on a blocking thread.
//!
//! Layout, chosen for insert speed and cheap retention:
//! - `sensors(id, path)`: each sensor path once; readings carry the integer id (cached in memory).
//! - one table per UTC day of device time, `readings_d<days since epoch>`, keyed by
//!   `(sensor_id, ts)` `WITHOUT ROWID`: a sensor's range is one index range, an at-least-once
//!   redelivery overwrites the same point (`INSERT OR REPLACE`), and retention drops whole days.
//! - `readings_far`: readings whose day lies outside the window of live days (a device clock
//!   far off), so such a device cannot create a table per day; pruned row by row.
//!
//! WAL with `synchronous = NORMAL`: a committed transaction survives a process crash (kill -9),
//! which is what the ack after the commit promises (as for the alarm journal).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use rusqlite::{params, CachedStatement, Connection, OptionalExtension};

use serde::Serialize;

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
";

/// Where a reading is stored.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Partition {
    Day(i64),
    Far,
}

impl Partition {
    /// The table of a reading at `ts_ms`, given the live days `first..=last`.
    fn of(ts_ms: i64, (first, last): (i64, i64)) -> Self {
        let day = ts_ms.div_euclid(DAY_MS);
        if (first..=last).contains(&day) {
            Partition::Day(day)
        } else {
            Partition::Far
        }
    }

    fn table(self) -> String {
        match self {
            Partition::Day(day) => format!("readings_d{day}"),
            Partition::Far => FAR_TABLE.to_string(),
        }
    }
}

fn day_of_table(name: &str) -> Option<i64> {
    name.strip_prefix("readings_d")?.parse().ok()
}

fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Readings of many sensors interleave, so every transaction dirties about one leaf page
    // per sensor it touches: a page cache that can hold them (10,000 sensors ≈ 40 MB of
    // leaves; it only grows as pages are used) saves reading them back. With 50,000-reading
    // transactions (the default `history_batch_size`) this tripled the write rate
    // (`cargo bench --bench history_writer`, README). A less frequent WAL checkpoint was
    // faster still, but its longer bursts doubled the alarm latency under load; the default
    // (1,000 pages) stays.
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
    pub days: u64,
    pub far_rows: u64,
}

/// The writing side: one connection, used by one thread at a time.
pub struct HistoryWriter {
    conn: Connection,
    retention_ms: i64,
    /// Sensor path → id; only ids committed to `sensors` (cleared when a write fails).
    sensors: HashMap<SensorId, i64>,
    /// Day tables known to exist (cleared when a write fails: a rolled-back CREATE is gone).
    days: HashSet<i64>,
}

impl HistoryWriter {
    /// Opens (creating if needed) the history file and its schema.
    pub fn open(path: &Path, retention: Duration) -> rusqlite::Result<Self> {
        let conn = open_connection(path)?;
        conn.execute_batch(SCHEMA)?;
        // Statements per day table, for the sensors, and for pruning.
        conn.set_prepared_statement_cache_capacity(32);
        Ok(Self {
            conn,
            retention_ms: i64::try_from(retention.as_millis()).unwrap_or(i64::MAX),
            sensors: HashMap::new(),
            days: HashSet::new(),
        })
    }

    /// Writes `readings` in one transaction (a reading of the same sensor and time as a stored
    /// one replaces it).
    pub fn write(&mut self, readings: &[Reading], now_ms: i64) -> rusqlite::Result<()> {
        let result = self.write_in_transaction(readings, now_ms);
        if result.is_err() {
            // The transaction rolled back: new sensor ids and new tables with it.
            self.sensors.clear();
            self.days.clear();
        }
        result
    }

    fn write_in_transaction(&mut self, readings: &[Reading], now_ms: i64) -> rusqlite::Result<()> {
        let window = live_days(now_ms, self.retention_ms);
        let Self {
            conn,
            sensors,
            days,
            ..
        } = self;
        let tx = conn.transaction()?;
        {
            // Readings come in time order mostly, so the statement changes at most at midnight.
            let mut current: Option<(Partition, CachedStatement<'_>)> = None;
            for reading in readings {
                let sensor_id = sensor_id(&tx, sensors, &reading.sensor)?;
                let partition = Partition::of(reading.ts_ms, window);
                if current.as_ref().map(|(p, _)| *p) != Some(partition) {
                    if let Partition::Day(day) = partition {
                        if !days.contains(&day) {
                            create_day(&tx, day)?;
                            days.insert(day);
                        }
                    }
                    let sql = format!(
                        "INSERT OR REPLACE INTO {} (sensor_id, ts, value, is_bool, source) \
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        partition.table()
                    );
                    current = Some((partition, tx.prepare_cached(&sql)?));
                }
                let Some((_, insert)) = current.as_mut() else {
                    continue;
                };
                insert.execute(params![
                    sensor_id,
                    reading.ts_ms,
                    reading.value.as_f64(),
                    matches!(reading.value, Value::Bool(_)),
                    match reading.source {
                        Source::Mqtt => 0,
                        Source::Modbus => 1,
                    },
                ])?;
            }
        }
        tx.commit()
    }

    /// Drops the day tables wholly older than `before_ms` and deletes the far readings older
    /// than it.
    pub fn prune(&mut self, before_ms: i64) -> rusqlite::Result<Pruned> {
        let mut pruned = Pruned::default();
        for day in day_tables(&self.conn)? {
            if (day + 1).saturating_mul(DAY_MS) <= before_ms {
                self.conn
                    .execute_batch(&format!("DROP TABLE IF EXISTS readings_d{day}"))?;
                self.days.remove(&day);
                pruned.days += 1;
            }
        }
        pruned.far_rows = self
            .conn
            .prepare_cached("DELETE FROM readings_far WHERE ts < ?1")?
            .execute([before_ms])? as u64;
        Ok(pruned)
    }
}

fn create_day(conn: &Connection, day: i64) -> rusqlite::Result<()> {
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS readings_d{day} (
            sensor_id INTEGER NOT NULL,
            ts        INTEGER NOT NULL,
            value     REAL    NOT NULL,
            is_bool   INTEGER NOT NULL,
            source    INTEGER NOT NULL,
            PRIMARY KEY (sensor_id, ts)
        ) WITHOUT ROWID"
    ))
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

/// The days that have a table, in order.
fn day_tables(conn: &Connection) -> rusqlite::Result<Vec<i64>> {
    let mut days = conn
        .prepare_cached(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'readings_d*'",
        )?
        .query_map([], |row| row.get::<_, String>(0))?
        .filter_map(|name| name.map(|n| day_of_table(&n)).transpose())
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    days.sort_unstable();
    Ok(days)
}

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
        // One read transaction: a consistent snapshot even if the writer drops a day meanwhile.
        let tx = self.conn.transaction()?;
        let Some(sensor_id) = tx
            .prepare_cached("SELECT id FROM sensors WHERE path = ?1")?
            .query_row([sensor], |row| row.get::<_, i64>(0))
            .optional()?
        else {
            return Ok(Vec::new());
        };
        let (first, last) = (from_ms.div_euclid(DAY_MS), to_ms.div_euclid(DAY_MS));
        let mut points = Vec::new();
        for day in day_tables(&tx)? {
            if day < first || day > last {
                continue;
            }
            if points.len() >= limit {
                break;
            }
            let table = Partition::Day(day).table();
            range(
                &tx,
                &table,
                sensor_id,
                from_ms,
                to_ms,
                limit - points.len(),
                &mut points,
            )?;
        }
        // Far readings may sit anywhere in time: merge them in.
        let days_end = points.len();
        range(
            &tx,
            FAR_TABLE,
            sensor_id,
            from_ms,
            to_ms,
            limit,
            &mut points,
        )?;
        if points.len() > days_end {
            points.sort_by_key(|p| p.ts);
            points.dedup_by_key(|p| p.ts);
            points.truncate(limit);
        }
        Ok(points)
    }
}

/// Appends a sensor's points of one table between two times, oldest first, at most `limit`.
fn range(
    conn: &Connection,
    table: &str,
    sensor_id: i64,
    from_ms: i64,
    to_ms: i64,
    limit: usize,
    points: &mut Vec<HistoryPoint>,
) -> rusqlite::Result<()> {
    let mut query = conn.prepare_cached(&format!(
        "SELECT ts, value, is_bool FROM {table} \
         WHERE sensor_id = ?1 AND ts >= ?2 AND ts <= ?3 ORDER BY ts LIMIT ?4"
    ))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = query.query_map(params![sensor_id, from_ms, to_ms, limit], |row| {
        let value: f64 = row.get(1)?;
        Ok(HistoryPoint {
            ts: row.get(0)?,
            value: if row.get::<_, bool>(2)? {
                Value::Bool(value != 0.0)
            } else {
                Value::Number(value)
            },
        })
    })?;
    for point in rows {
        points.push(point?);
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
        let ts: Vec<i64> = reader
            .history("s/d/t", 0, i64::MAX, 100)
            .unwrap()
            .iter()
            .map(|p| p.ts)
            .collect();
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

    #[test]
    fn a_redelivered_reading_replaces_the_stored_one() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, mut reader) = open(dir.path());
        writer
            .write(&[reading("s/d/t", NOW, Value::Number(1.0))], NOW)
            .unwrap();
        writer
            .write(&[reading("s/d/t", NOW, Value::Number(1.5))], NOW)
            .unwrap();
        assert_eq!(
            reader.history("s/d/t", NOW, NOW, 10).unwrap(),
            vec![HistoryPoint {
                ts: NOW,
                value: Value::Number(1.5)
            }]
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
        let cutoff = NOW - 7 * DAY_MS;
        let pruned = writer.prune(cutoff).unwrap();
        // Days 8 and 9 back were far (outside the window); day 7 back straddles the cutoff.
        assert_eq!(pruned.far_rows, 2);
        let left = reader.history("s/d/t", 0, i64::MAX, 100).unwrap();
        assert_eq!(left.len(), 8);
        assert!(left.iter().all(|p| p.ts >= cutoff));
        // Writing into a dropped day again recreates it.
        writer.prune(NOW + 2 * DAY_MS).unwrap();
        writer
            .write(&[reading("s/d/t", NOW, Value::Number(9.0))], NOW)
            .unwrap();
        assert_eq!(reader.history("s/d/t", 0, i64::MAX, 100).unwrap().len(), 1);
    }
}

//! The disk spool: an append-only queue of encoded batches in `<data_dir>/spool/`, used while
//! the time-series store is unreachable (or slower than ingest) and replayed in order later.
//!
//! Layout: segment files `<seq>.seg` (20-digit sequence, oldest first) of records
//! `magic "CGL1" | payload len u32 | lines u32 | crc32 u32 | spooled_at_ms i64 | payload`
//! (little endian; the CRC covers len, lines, spooled_at and the payload), and a `cursor` file
//! `<seq> <offset>` naming the next record to replay, replaced atomically after every
//! acknowledged batch so a restart neither loses nor repeats a batch. A segment is deleted once
//! it has been replayed; the whole spool is bounded by `max_bytes` (the caller decides what
//! happens when it is full, see [`SpoolFull`](super::config::SpoolFull)).
//!
//! A record that fails its checksum, or a segment cut short by a crash, is skipped with a
//! count of the bytes lost; appends after a torn tail start a fresh segment. Rejected batches
//! (the store answered 4xx) are moved aside into `spool/rejected/`, bounded by file count.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"CGL1";
const HEADER_LEN: u64 = 24;
const SEGMENT_SUFFIX: &str = ".seg";
const CURSOR_FILE: &str = "cursor";
/// How many rejected batches are kept in `rejected/` for inspection.
const MAX_REJECTED_FILES: usize = 64;
/// Segments are a fraction of the spool so that dropping the oldest frees little at a time.
const SEGMENTS_PER_SPOOL: u64 = 16;
const MIN_SEGMENT_BYTES: u64 = 1 << 20;
const MAX_SEGMENT_BYTES: u64 = 128 << 20;

/// One batch read back from the spool, to be written and then [acknowledged](Spool::ack).
#[derive(Debug, Clone, PartialEq)]
pub struct SpooledBatch {
    pub payload: Vec<u8>,
    pub lines: u64,
    pub spooled_at_ms: i64,
    position: Position,
    next: Position,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Position {
    seq: u64,
    offset: u64,
}

#[derive(Debug)]
struct Segment {
    seq: u64,
    /// Size of the file on disk (acknowledged records included).
    bytes: u64,
    /// Lines in records not yet acknowledged.
    lines: u64,
    /// Spool time of the first record in the segment (for the "oldest" gauge).
    first_spooled_ms: Option<i64>,
}

/// What [`Spool::peek`] found at the cursor.
#[derive(Debug)]
pub enum Peeked {
    Batch(SpooledBatch),
    Empty,
    /// A damaged record: the rest of its segment (`lost_bytes`, `lost_lines` if known) was
    /// skipped; peek again.
    Corrupt {
        segment: u64,
        lost_bytes: u64,
        lost_lines: u64,
    },
}

/// What [`Spool::open`] found on disk.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct OpenReport {
    pub segments: usize,
    pub batches: u64,
    pub lines: u64,
    pub bytes: u64,
    /// Bytes of a torn or damaged tail that were cut off.
    pub torn_bytes: u64,
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    segments: VecDeque<Segment>,
    /// The segment appends go to (always the last of `segments`), kept open.
    writer: Option<(u64, File)>,
    /// The segment replay reads from, kept open.
    reader: Option<(u64, File)>,
    cursor: Position,
    next_seq: u64,
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, scanning existing segments.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<(Spool, OpenReport)> {
        fs::create_dir_all(dir)?;
        let mut seqs: Vec<u64> = Vec::new();
        let mut max_seen = 0u64;
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(seq) = name
                .strip_suffix(SEGMENT_SUFFIX)
                .and_then(|s| s.parse().ok())
            {
                seqs.push(seq);
                max_seen = max_seen.max(seq);
            }
        }
        seqs.sort_unstable();
        let saved = read_cursor(&dir.join(CURSOR_FILE));
        let mut report = OpenReport::default();
        let mut segments = VecDeque::new();
        let mut cursor = None;
        for seq in seqs {
            let path = segment_path(dir, seq);
            let start = match saved {
                Some(c) if seq < c.seq => {
                    // Fully replayed before the last shutdown.
                    fs::remove_file(&path)?;
                    continue;
                }
                Some(c) if seq == c.seq => c.offset,
                _ => 0,
            };
            let scan = scan_segment(&path, start)?;
            if scan.valid_end < scan.file_len {
                report.torn_bytes += scan.file_len - scan.valid_end;
                tracing::warn!(
                    segment = %path.display(),
                    lost_bytes = scan.file_len - scan.valid_end,
                    "Time-series spool segment has a damaged tail; cutting it off"
                );
                let file = OpenOptions::new().write(true).open(&path)?;
                file.set_len(scan.valid_end)?;
            }
            if scan.records == 0 && start >= scan.valid_end {
                fs::remove_file(&path)?;
                continue;
            }
            if cursor.is_none() {
                cursor = Some(Position {
                    seq,
                    offset: start.min(scan.valid_end),
                });
            }
            report.batches += scan.records;
            report.lines += scan.lines;
            report.bytes += scan.valid_end;
            segments.push_back(Segment {
                seq,
                bytes: scan.valid_end,
                lines: scan.lines,
                first_spooled_ms: scan.first_spooled_ms,
            });
        }
        report.segments = segments.len();
        // Never reuse a sequence number the cursor may still name.
        let next_seq = (max_seen + 1).max(saved.map_or(1, |c| c.seq)).max(1);
        let segment_bytes =
            (max_bytes / SEGMENTS_PER_SPOOL).clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES);
        let spool = Spool {
            dir: dir.to_owned(),
            max_bytes,
            segment_bytes,
            segments,
            writer: None,
            reader: None,
            cursor: cursor.unwrap_or(Position {
                seq: next_seq,
                offset: 0,
            }),
            next_seq,
        };
        Ok((spool, report))
    }

    /// Bytes of segment files on disk.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Lines waiting to be replayed.
    pub fn lines(&self) -> u64 {
        self.segments.iter().map(|s| s.lines).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.lines() == 0
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Bytes a payload takes once spooled.
    pub fn record_len(payload_len: usize) -> u64 {
        HEADER_LEN + payload_len as u64
    }

    /// Whether a payload fits without going over the bound.
    pub fn has_room_for(&self, payload_len: usize) -> bool {
        self.bytes() + Self::record_len(payload_len) <= self.max_bytes
    }

    /// Spool time of the oldest batch not yet replayed.
    pub fn oldest_spooled_ms(&self) -> Option<i64> {
        self.segments
            .iter()
            .find(|s| s.lines > 0)
            .and_then(|s| s.first_spooled_ms)
    }

    /// Appends one batch (durably: the data is synced before this returns). The caller checks
    /// the bound first ([`has_room_for`](Self::has_room_for)).
    pub fn append(&mut self, payload: &[u8], lines: u64, spooled_at_ms: i64) -> io::Result<()> {
        let len = u32::try_from(payload.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "batch over 4 GiB"))?;
        let lines32 = u32::try_from(lines)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many lines"))?;
        let needs_new_segment = match (&self.writer, self.segments.back()) {
            (Some((seq, _)), Some(last)) => last.seq != *seq || last.bytes >= self.segment_bytes,
            _ => true,
        };
        if needs_new_segment {
            let seq = self.next_seq;
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(segment_path(&self.dir, seq))?;
            self.next_seq += 1;
            self.writer = Some((seq, file));
            self.segments.push_back(Segment {
                seq,
                bytes: 0,
                lines: 0,
                first_spooled_ms: None,
            });
            if self.segments.len() == 1 {
                self.cursor = Position { seq, offset: 0 };
            }
        }
        let mut record = Vec::with_capacity(HEADER_LEN as usize + payload.len());
        record.extend_from_slice(MAGIC);
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&lines32.to_le_bytes());
        record.extend_from_slice(&checksum(len, lines32, spooled_at_ms, payload).to_le_bytes());
        record.extend_from_slice(&spooled_at_ms.to_le_bytes());
        record.extend_from_slice(payload);
        let Some((_, file)) = self.writer.as_mut() else {
            return Err(io::Error::other("spool writer missing after rotation"));
        };
        let written = file.write_all(&record).and_then(|()| file.sync_data());
        let Some(segment) = self.segments.back_mut() else {
            return Err(io::Error::other("spool segment missing after rotation"));
        };
        if let Err(e) = written {
            // A partial record would poison the segment: cut it off, start afresh next time.
            self.writer = None;
            if let Err(cut) = OpenOptions::new()
                .write(true)
                .open(segment_path(&self.dir, segment.seq))
                .and_then(|f| f.set_len(segment.bytes))
            {
                tracing::error!(error = %cut, "Could not cut a partial record off the spool");
            }
            return Err(e);
        }
        segment.bytes += record.len() as u64;
        segment.lines += lines;
        segment.first_spooled_ms.get_or_insert(spooled_at_ms);
        Ok(())
    }

    /// Reads the batch at the cursor without consuming it.
    pub fn peek(&mut self) -> io::Result<Peeked> {
        loop {
            let Some(head) = self.segments.front() else {
                return Ok(Peeked::Empty);
            };
            let head_seq = head.seq;
            let head_bytes = head.bytes;
            if self.cursor.seq != head_seq {
                self.cursor = Position {
                    seq: head_seq,
                    offset: 0,
                };
            }
            if self.cursor.offset >= head_bytes {
                if self.segments.len() == 1 {
                    self.reset_if_drained()?;
                    return Ok(Peeked::Empty);
                }
                self.remove_head()?;
                continue;
            }
            if self.reader.as_ref().is_none_or(|(seq, _)| *seq != head_seq) {
                let file = File::open(segment_path(&self.dir, head_seq))?;
                self.reader = Some((head_seq, file));
            }
            let Some((_, file)) = self.reader.as_ref() else {
                continue;
            };
            match read_record(file, self.cursor.offset, head_bytes)? {
                Some(record) => {
                    let next = Position {
                        seq: head_seq,
                        offset: self.cursor.offset + HEADER_LEN + record.payload.len() as u64,
                    };
                    if let Some(head) = self.segments.front_mut() {
                        head.first_spooled_ms = Some(record.spooled_at_ms);
                    }
                    return Ok(Peeked::Batch(SpooledBatch {
                        payload: record.payload,
                        lines: record.lines,
                        spooled_at_ms: record.spooled_at_ms,
                        position: self.cursor,
                        next,
                    }));
                }
                None => {
                    let lost_bytes = head_bytes - self.cursor.offset;
                    let lost_lines = self.segments.front().map_or(0, |s| s.lines);
                    tracing::error!(
                        segment = head_seq,
                        offset = self.cursor.offset,
                        lost_bytes,
                        "Time-series spool record failed its checksum; skipping the rest of the segment"
                    );
                    if let Some(head) = self.segments.front_mut() {
                        head.lines = 0;
                    }
                    self.cursor.offset = head_bytes;
                    if self.segments.len() == 1 {
                        self.reset_if_drained()?;
                    } else {
                        self.remove_head()?;
                    }
                    return Ok(Peeked::Corrupt {
                        segment: head_seq,
                        lost_bytes,
                        lost_lines,
                    });
                }
            }
        }
    }

    /// Marks a peeked batch as written; a stale batch (its segment was dropped meanwhile) is
    /// ignored.
    pub fn ack(&mut self, batch: &SpooledBatch) -> io::Result<()> {
        if batch.position != self.cursor {
            return Ok(());
        }
        self.cursor = batch.next;
        if let Some(head) = self.segments.front_mut() {
            head.lines = head.lines.saturating_sub(batch.lines);
        }
        let head_done = self
            .segments
            .front()
            .is_some_and(|h| h.seq == self.cursor.seq && self.cursor.offset >= h.bytes);
        if head_done && self.segments.len() > 1 {
            self.remove_head()?;
        } else if head_done {
            self.reset_if_drained()?;
        }
        self.save_cursor()?;
        Ok(())
    }

    /// Deletes the oldest segment to make room; returns the lines lost, `None` if the spool
    /// holds nothing.
    pub fn drop_oldest(&mut self) -> io::Result<Option<u64>> {
        let Some(head) = self.segments.front() else {
            return Ok(None);
        };
        let lines = head.lines;
        self.remove_head()?;
        self.save_cursor()?;
        Ok(Some(lines))
    }

    fn remove_head(&mut self) -> io::Result<()> {
        let Some(head) = self.segments.pop_front() else {
            return Ok(());
        };
        if self
            .reader
            .as_ref()
            .is_some_and(|(seq, _)| *seq == head.seq)
        {
            self.reader = None;
        }
        if self
            .writer
            .as_ref()
            .is_some_and(|(seq, _)| *seq == head.seq)
        {
            self.writer = None;
        }
        match fs::remove_file(segment_path(&self.dir, head.seq)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.cursor = match self.segments.front() {
            Some(next) => Position {
                seq: next.seq,
                offset: 0,
            },
            None => Position {
                seq: self.next_seq,
                offset: 0,
            },
        };
        Ok(())
    }

    /// Everything replayed: delete the last segment too, so a drained spool takes no space.
    fn reset_if_drained(&mut self) -> io::Result<()> {
        let drained = self.segments.len() == 1
            && self
                .segments
                .front()
                .is_some_and(|h| h.seq == self.cursor.seq && self.cursor.offset >= h.bytes);
        if drained {
            self.remove_head()?;
            self.save_cursor()?;
        }
        Ok(())
    }

    fn save_cursor(&self) -> io::Result<()> {
        let tmp = self.dir.join("cursor.tmp");
        fs::write(
            &tmp,
            format!("{} {}\n", self.cursor.seq, self.cursor.offset),
        )?;
        fs::rename(&tmp, self.dir.join(CURSOR_FILE))
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}{SEGMENT_SUFFIX}"))
}

fn read_cursor(path: &Path) -> Option<Position> {
    let text = fs::read_to_string(path).ok()?;
    let mut parts = text.split_whitespace();
    let seq = parts.next()?.parse().ok()?;
    let offset = parts.next()?.parse().ok()?;
    Some(Position { seq, offset })
}

fn checksum(len: u32, lines: u32, spooled_at_ms: i64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len.to_le_bytes());
    hasher.update(&lines.to_le_bytes());
    hasher.update(&spooled_at_ms.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

struct Record {
    payload: Vec<u8>,
    lines: u64,
    spooled_at_ms: i64,
}

struct Header {
    len: u32,
    lines: u32,
    crc: u32,
    spooled_at_ms: i64,
}

fn read_header(file: &File, offset: u64, end: u64) -> io::Result<Option<Header>> {
    if offset + HEADER_LEN > end {
        return Ok(None);
    }
    let mut buf = [0u8; HEADER_LEN as usize];
    file.read_exact_at(&mut buf, offset)?;
    if &buf[0..4] != MAGIC {
        return Ok(None);
    }
    let word = |i: usize| u32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&buf[16..24]);
    let header = Header {
        len: word(4),
        lines: word(8),
        crc: word(12),
        spooled_at_ms: i64::from_le_bytes(ts),
    };
    if offset + HEADER_LEN + u64::from(header.len) > end {
        return Ok(None);
    }
    Ok(Some(header))
}

/// The record at `offset`, or `None` if it is damaged or cut short.
fn read_record(file: &File, offset: u64, end: u64) -> io::Result<Option<Record>> {
    let Some(header) = read_header(file, offset, end)? else {
        return Ok(None);
    };
    let mut payload = vec![0u8; header.len as usize];
    file.read_exact_at(&mut payload, offset + HEADER_LEN)?;
    if checksum(header.len, header.lines, header.spooled_at_ms, &payload) != header.crc {
        return Ok(None);
    }
    Ok(Some(Record {
        payload,
        lines: u64::from(header.lines),
        spooled_at_ms: header.spooled_at_ms,
    }))
}

struct Scan {
    file_len: u64,
    /// End of the last structurally complete record.
    valid_end: u64,
    records: u64,
    lines: u64,
    first_spooled_ms: Option<i64>,
}

/// Walks the record headers from `start` (payloads are checked when replayed).
fn scan_segment(path: &Path, start: u64) -> io::Result<Scan> {
    let file = File::open(path)?;
    let file_len = file.metadata()?.len();
    let mut scan = Scan {
        file_len,
        valid_end: start.min(file_len),
        records: 0,
        lines: 0,
        first_spooled_ms: None,
    };
    let mut offset = scan.valid_end;
    while let Some(header) = read_header(&file, offset, file_len)? {
        offset += HEADER_LEN + u64::from(header.len);
        scan.valid_end = offset;
        scan.records += 1;
        scan.lines += u64::from(header.lines);
        scan.first_spooled_ms.get_or_insert(header.spooled_at_ms);
    }
    Ok(scan)
}

/// Keeps a batch the store refused (4xx) for inspection in `<spool>/rejected/`, newest
/// [`MAX_REJECTED_FILES`] only. Returns the file written.
pub fn move_aside(
    spool_dir: &Path,
    payload: &[u8],
    status: u16,
    now_ms: i64,
) -> io::Result<PathBuf> {
    let dir = spool_dir.join("rejected");
    fs::create_dir_all(&dir)?;
    let mut n = 0u32;
    let path = loop {
        let candidate = dir.join(format!("{now_ms:015}-{n:03}-{status}.lp"));
        if !candidate.exists() {
            break candidate;
        }
        n += 1;
    };
    fs::write(&path, payload)?;
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "lp"))
        .collect();
    if files.len() > MAX_REJECTED_FILES {
        files.sort();
        for old in &files[..files.len() - MAX_REJECTED_FILES] {
            fs::remove_file(old)?;
        }
    }
    Ok(path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn batch(i: u32) -> Vec<u8> {
        format!("m,point=p{i} value={i} {i}\n").into_bytes()
    }

    fn expect_batch(spool: &mut Spool) -> SpooledBatch {
        match spool.peek().unwrap() {
            Peeked::Batch(b) => b,
            other => panic!("expected a batch, got {other:?}"),
        }
    }

    fn drain(spool: &mut Spool) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            match spool.peek().unwrap() {
                Peeked::Batch(b) => {
                    spool.ack(&b).unwrap();
                    out.push(b.payload);
                }
                Peeked::Corrupt { .. } => {}
                Peeked::Empty => return out,
            }
        }
    }

    #[test]
    fn batches_come_back_in_the_order_they_were_spooled() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, report) = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(report, OpenReport::default());
        for i in 0..10 {
            spool.append(&batch(i), 1, 1000 + i64::from(i)).unwrap();
        }
        assert_eq!(spool.lines(), 10);
        assert_eq!(spool.oldest_spooled_ms(), Some(1000));
        let got = drain(&mut spool);
        assert_eq!(got, (0..10).map(batch).collect::<Vec<_>>());
        assert!(spool.is_empty());
        assert_eq!(spool.bytes(), 0, "a drained spool takes no space");
        assert_eq!(spool.oldest_spooled_ms(), None);
    }

    #[test]
    fn peeking_twice_without_ack_returns_the_same_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.append(&batch(1), 1, 1).unwrap();
        spool.append(&batch(2), 1, 2).unwrap();
        assert_eq!(expect_batch(&mut spool).payload, batch(1));
        assert_eq!(expect_batch(&mut spool).payload, batch(1));
    }

    #[test]
    fn a_reopened_spool_resumes_after_the_last_acknowledged_batch() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut spool, _) = Spool::open(dir.path(), 1 << 20).unwrap();
            for i in 0..5 {
                spool.append(&batch(i), 1, 7).unwrap();
            }
            for _ in 0..2 {
                let b = expect_batch(&mut spool);
                spool.ack(&b).unwrap();
            }
            // Peeked but not acknowledged: must come again.
            let _ = expect_batch(&mut spool);
        }
        let (mut spool, report) = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(report.batches, 3);
        assert_eq!(report.lines, 3);
        spool.append(&batch(5), 1, 8).unwrap();
        assert_eq!(drain(&mut spool), (2..6).map(batch).collect::<Vec<_>>());
    }

    #[test]
    fn segments_rotate_and_replayed_segments_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        // 1 MiB segments (the minimum); 64 KiB batches → 16 per segment.
        let (mut spool, _) = Spool::open(dir.path(), 16 << 20).unwrap();
        let payload = vec![b'x'; 64 << 10];
        for _ in 0..40 {
            spool.append(&payload, 1, 1).unwrap();
        }
        let seg_files = || {
            fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(".seg")
                })
                .count()
        };
        assert_eq!(seg_files(), 3);
        for _ in 0..17 {
            let b = expect_batch(&mut spool);
            spool.ack(&b).unwrap();
        }
        assert_eq!(seg_files(), 2);
        assert_eq!(spool.lines(), 23);
    }

    #[test]
    fn dropping_the_oldest_segment_reports_its_lines_and_replay_continues_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path(), 2 << 20).unwrap();
        let payload = vec![b'y'; 200 << 10];
        for i in 0..8u8 {
            let mut p = payload.clone();
            p[0] = i;
            spool.append(&p, 100, i64::from(i)).unwrap();
        }
        assert!(!spool.has_room_for(payload.len() * 3));
        // Segment 1 holds batches 0..=5 (it rotates once past 1 MiB).
        let b = expect_batch(&mut spool);
        assert_eq!(spool.drop_oldest().unwrap(), Some(600));
        // The stale batch's ack is ignored.
        spool.ack(&b).unwrap();
        let rest = drain(&mut spool);
        assert_eq!(rest.iter().map(|p| p[0]).collect::<Vec<_>>(), vec![6, 7]);
    }

    #[test]
    fn a_flipped_bit_is_detected_and_the_rest_of_that_segment_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path(), 1 << 20).unwrap();
        for i in 0..3 {
            spool.append(&batch(i), 1, 1).unwrap();
        }
        drop(spool);
        let path = segment_path(dir.path(), 1);
        let mut bytes = fs::read(&path).unwrap();
        let second = batch(0).len() + HEADER_LEN as usize + HEADER_LEN as usize + 3;
        bytes[second] ^= 0x01;
        fs::write(&path, bytes).unwrap();
        let (mut spool, _) = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(expect_batch(&mut spool).payload, batch(0));
        let b = expect_batch(&mut spool);
        spool.ack(&b).unwrap();
        match spool.peek().unwrap() {
            Peeked::Corrupt { lost_lines, .. } => assert_eq!(lost_lines, 2),
            other => panic!("expected corruption, got {other:?}"),
        }
        assert!(matches!(spool.peek().unwrap(), Peeked::Empty));
    }

    #[test]
    fn a_torn_tail_from_a_crash_is_cut_off_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.append(&batch(1), 1, 1).unwrap();
        spool.append(&batch(2), 1, 1).unwrap();
        drop(spool);
        let path = segment_path(dir.path(), 1);
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (mut spool, report) = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(report.batches, 1);
        assert!(report.torn_bytes > 0);
        spool.append(&batch(3), 1, 1).unwrap();
        assert_eq!(drain(&mut spool), vec![batch(1), batch(3)]);
    }

    #[test]
    fn garbage_files_in_the_spool_directory_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("notes.txt"), "hello").unwrap();
        fs::write(dir.path().join("cursor"), "garbage").unwrap();
        fs::write(segment_path(dir.path(), 9), "not a record at all").unwrap();
        let (mut spool, report) = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(report.batches, 0);
        spool.append(&batch(1), 1, 1).unwrap();
        assert_eq!(drain(&mut spool), vec![batch(1)]);
    }

    #[test]
    fn rejected_batches_are_kept_aside_but_bounded_in_number() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..(MAX_REJECTED_FILES as i64 + 5) {
            move_aside(dir.path(), b"bad line\n", 400, i).unwrap();
        }
        let kept = fs::read_dir(dir.path().join("rejected")).unwrap().count();
        assert_eq!(kept, MAX_REJECTED_FILES);
    }
}

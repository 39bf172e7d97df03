//! `campusguard backup --config F --to DIR`: a consistent copy of the local SQLite stores
//! (`campusguard.db`: alarms, journal, outbox, users, sessions; `history.db`: local history of
//! readings; `tickets.db` when tickets are in SQLite) while the gateway runs.
//!
//! Each file is copied with SQLite's online backup API in one step: the copy is the database
//! as of one read transaction (WAL mode lets the gateway keep writing meanwhile; the backup
//! does not restart on those writes, it simply does not see them). The copy is written as
//! `<name>.partial`, checked with `PRAGMA integrity_check`, then renamed, so a `DIR/<name>`
//! is always a complete, checked database. Restore: stop the gateway, copy the files back
//! into `storage.data_dir` (removing any `-wal`/`-shm` beside them), start it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// The store files a backup copies, those that exist: (file name, path).
pub fn store_files(data_dir: &Path, tickets_in_sqlite: bool) -> Vec<(String, PathBuf)> {
    let mut names = vec!["campusguard.db", "history.db"];
    if tickets_in_sqlite {
        names.push("tickets.db");
    }
    names
        .into_iter()
        .map(|n| (n.to_owned(), data_dir.join(n)))
        .filter(|(_, p)| p.exists())
        .collect()
}

/// One copied file.
#[derive(Debug)]
pub struct Copied {
    pub name: String,
    pub bytes: u64,
}

/// Copies every file of [`store_files`] into `to` (created if missing). Refuses to write over
/// an existing copy.
pub fn backup(data_dir: &Path, tickets_in_sqlite: bool, to: &Path) -> Result<Vec<Copied>, String> {
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let files = store_files(data_dir, tickets_in_sqlite);
    if files.is_empty() {
        return Err(format!("no store files in {}", data_dir.display()));
    }
    let mut copied = Vec::new();
    for (name, source) in files {
        let target = to.join(&name);
        if target.exists() {
            return Err(format!(
                "{} exists; back up into an empty directory",
                target.display()
            ));
        }
        let bytes = copy_one(&source, &target).map_err(|e| format!("{name}: {e}"))?;
        copied.push(Copied { name, bytes });
    }
    Ok(copied)
}

fn copy_one(source: &Path, target: &Path) -> Result<u64, String> {
    let partial = target.with_extension("db.partial");
    let _ = std::fs::remove_file(&partial);
    let from = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| e.to_string())?;
    // A writer holding the database briefly makes the read wait, not fail.
    from.busy_timeout(Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let mut to = Connection::open(&partial).map_err(|e| e.to_string())?;
    {
        let backup = rusqlite::backup::Backup::new(&from, &mut to).map_err(|e| e.to_string())?;
        // All pages in one step (-1): one read transaction, so one consistent snapshot. Busy
        // or locked (a checkpoint holds the file): try again, a bounded number of times.
        let mut tries = 0;
        loop {
            match backup.step(-1).map_err(|e| e.to_string())? {
                rusqlite::backup::StepResult::Done => break,
                _ if tries < 100 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => return Err("the store stayed busy for 5 s".into()),
            }
        }
    }
    let check: String = to
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .map_err(|e| e.to_string())?;
    if check != "ok" {
        return Err(format!("the copy fails integrity_check: {check}"));
    }
    // The copy stands alone: no WAL beside it.
    to.pragma_update(None, "journal_mode", "DELETE")
        .map_err(|e| e.to_string())?;
    drop(to);
    std::fs::rename(&partial, target).map_err(|e| e.to_string())?;
    std::fs::metadata(target)
        .map(|m| m.len())
        .map_err(|e| e.to_string())
}

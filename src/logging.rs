//! Log output on standard error, fit for where it goes.
//!
//! - A terminal: the usual coloured lines.
//! - Not a terminal (a file, a pipe, a container log): the same lines without ANSI codes.
//! - journald (systemd connects stderr to the journal and says so in `$JOURNAL_STREAM`, the
//!   device and inode of that stream): each line starts with its syslog priority `<N>`
//!   (`sd-daemon(3)`), which journald turns into the entry's PRIORITY, so `journalctl -p warning`
//!   works; no timestamp, since journald stamps every entry itself. Written here rather than
//!   with `tracing-journald` so the process keeps one output, stderr, and nothing else to
//!   configure in the unit.

use std::io::{IsTerminal, Write};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// The default filter when `RUST_LOG` is not set.
const DEFAULT_FILTER: &str = "info,rumqttd=warn,rumqttd::server::broker=off,sqlx=warn";

/// Installs the process-wide subscriber (`RUST_LOG` filters, else [`DEFAULT_FILTER`]).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if stderr_is_journal() {
        builder
            .with_ansi(false)
            .without_time()
            .with_writer(Journald)
            .init();
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init();
    }
}

/// Whether stderr is the journal stream systemd named in `$JOURNAL_STREAM` (`dev:inode`); a
/// child whose stderr was redirected elsewhere inherits the variable, hence the comparison.
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stderr) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    stream == format!("{}:{}", stderr.dev(), stderr.ino())
}

/// The syslog priority journald reads from a `<N>` prefix.
pub fn syslog_priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// `text` with `<priority>` at the start of every line (a multi-line message stays one
/// priority).
pub fn with_priority(priority: u8, text: &[u8]) -> Vec<u8> {
    let prefix = format!("<{priority}>");
    let mut out = Vec::with_capacity(text.len() + prefix.len());
    for line in text.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(line);
    }
    out
}

/// Makes a writer per event that knows the event's level.
struct Journald;

struct JournaldWriter {
    priority: u8,
}

impl<'a> MakeWriter<'a> for Journald {
    type Writer = JournaldWriter;

    fn make_writer(&'a self) -> Self::Writer {
        JournaldWriter { priority: 6 }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        JournaldWriter {
            priority: syslog_priority(meta.level()),
        }
    }
}

impl Write for JournaldWriter {
    /// The fmt layer hands over one whole formatted event per call.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr()
            .lock()
            .write_all(&with_priority(self.priority, buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_carries_its_level_s_priority() {
        assert_eq!(syslog_priority(&Level::ERROR), 3);
        assert_eq!(syslog_priority(&Level::WARN), 4);
        assert_eq!(syslog_priority(&Level::INFO), 6);
        assert_eq!(syslog_priority(&Level::DEBUG), 7);
        assert_eq!(
            with_priority(4, b"WARN a: first\n  second\n"),
            b"<4>WARN a: first\n<4>  second\n"
        );
        assert_eq!(with_priority(3, b"no newline"), b"<3>no newline");
    }
}

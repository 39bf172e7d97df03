//! The alarm outbox: the alarm journal read as a durable queue. Every journaled transition
//! carries the whole [`AlarmEvent`], written by [`LocalStore::record_events`] in the same
//! transaction as the journal entry, so a stage that must see every transition (tickets,
//! notifications) reads them here at its own pace — after a crash, a database outage or a slow
//! channel — instead of from the live broadcast, where a lagging receiver loses events.
//!
//! ```text
//! core ──record_events──► alarm_journal (seq, …, event) ──► OutboxReader("tickets") ─► policy
//!                                                        └─► OutboxReader("notify")  ─► notify
//! ```
//!
//! Each consumer keeps its own cursor (`outbox_cursors`): the last seq it has finished with.
//! It reads a batch after the cursor, handles it, then commits the batch's `up_to`; a crash
//! before the commit hands the same entries over again, so handling must be idempotent (keyed
//! by the entry's `seq`). A consumer seen for the first time starts at the current end of the
//! journal: it is not handed the past. Readers must be opened before the core starts, so they
//! see everything the core journals.

use std::sync::Arc;

use sqlx::Row;
use tokio::sync::watch;
use tracing::warn;

use super::{LocalStore, StoreError};
use crate::alarms::AlarmEvent;

/// One journaled transition, in journal order.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    /// The journal's sequence number: unique, increasing, the idempotency key of the entry.
    pub seq: i64,
    pub event: Arc<AlarmEvent>,
}

/// What one read returned: the entries, and the last seq it looked at (rows written before the
/// outbox existed, or that cannot be decoded, are skipped but still covered by `up_to`).
#[derive(Debug, Default)]
pub struct OutboxBatch {
    pub entries: Vec<OutboxEntry>,
    pub up_to: i64,
}

/// One consumer's position in the outbox.
pub struct OutboxReader {
    store: LocalStore,
    consumer: String,
    cursor: i64,
    head: watch::Receiver<i64>,
}

impl LocalStore {
    /// Opens `consumer`'s cursor, creating it at the current end of the journal when it is new.
    pub async fn outbox_reader(&self, consumer: &str) -> Result<OutboxReader, StoreError> {
        let head = *self.outbox_head.borrow();
        sqlx::query("INSERT INTO outbox_cursors (consumer, seq) VALUES (?, ?) ON CONFLICT (consumer) DO NOTHING")
            .bind(consumer)
            .bind(head)
            .execute(self.pool())
            .await?;
        let cursor: i64 = sqlx::query_scalar("SELECT seq FROM outbox_cursors WHERE consumer = ?")
            .bind(consumer)
            .fetch_one(self.pool())
            .await?;
        Ok(OutboxReader {
            store: self.clone(),
            consumer: consumer.to_owned(),
            cursor,
            head: self.outbox_head.subscribe(),
        })
    }

    /// Drops the stored events every consumer has finished with (the journal rows stay, so the
    /// alarm's history is kept); returns how many were dropped.
    pub async fn compact_outbox(&self) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE alarm_journal SET event = NULL WHERE event IS NOT NULL \
             AND seq <= (SELECT MIN(seq) FROM outbox_cursors)",
        )
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }
}

impl OutboxReader {
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// The last seq this consumer has finished with.
    pub fn cursor(&self) -> i64 {
        self.cursor
    }

    /// Waits until the journal holds something after the cursor (at once when it does).
    pub async fn wait(&mut self) {
        let cursor = self.cursor;
        // An error means the store is gone (shutdown): nothing more will come.
        if self.head.wait_for(|head| *head > cursor).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Up to `max` entries after the cursor, oldest first. Does not move the cursor.
    pub async fn fetch(&self, max: usize) -> Result<OutboxBatch, StoreError> {
        let rows =
            sqlx::query("SELECT seq, event FROM alarm_journal WHERE seq > ? ORDER BY seq LIMIT ?")
                .bind(self.cursor)
                .bind(i64::try_from(max).unwrap_or(i64::MAX))
                // Reads on the read-only pool: consumers never take the journal's connections.
                .fetch_all(self.store.read_pool())
                .await?;
        let mut batch = OutboxBatch {
            entries: Vec::with_capacity(rows.len()),
            up_to: self.cursor,
        };
        for row in rows {
            let seq: i64 = row.get(0);
            let event: Option<String> = row.get(1);
            batch.up_to = seq;
            let Some(event) = event else { continue };
            match serde_json::from_str::<AlarmEvent>(&event) {
                Ok(event) => batch.entries.push(OutboxEntry {
                    seq,
                    event: Arc::new(event),
                }),
                Err(e) => {
                    warn!(consumer = %self.consumer, seq, error = %e, "outbox entry cannot be decoded; skipped")
                }
            }
        }
        Ok(batch)
    }

    /// Marks everything up to `seq` as done for this consumer, durably.
    pub async fn commit(&mut self, seq: i64) -> Result<(), StoreError> {
        if seq <= self.cursor {
            return Ok(());
        }
        sqlx::query("UPDATE outbox_cursors SET seq = ? WHERE consumer = ?")
            .bind(seq)
            .bind(&self.consumer)
            .execute(self.store.pool())
            .await?;
        self.cursor = seq;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::alarms::{AlarmBook, Transition};
    use crate::model::{AlarmClass, ConditionChange, SensorId, Severity};
    use crate::store::StorageConfig;

    async fn store(dir: &std::path::Path) -> LocalStore {
        let config = StorageConfig {
            data_dir: dir.to_path_buf(),
            ..StorageConfig::default()
        };
        match LocalStore::open(&config).await {
            Ok(store) => store,
            Err(e) => panic!("open store: {e}"),
        }
    }

    fn raise(book: &mut AlarmBook, device: &str, at: i64) -> AlarmEvent {
        let change = ConditionChange {
            sensor: SensorId::new("xhsy", device, "smoke"),
            rule: "smoke".into(),
            class: AlarmClass::Fire,
            severity: Some(Severity::Alarm),
            value: None,
            threshold: None,
            reading_ts_ms: at,
            message: "smoke".into(),
        };
        match book.apply(&change, at, false) {
            Some(event) => event,
            None => panic!("no event for a new condition"),
        }
    }

    #[tokio::test]
    async fn a_consumer_reads_every_journaled_event_once_its_cursor_moves_past_it() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = store(dir.path()).await;
        let mut book = AlarmBook::restore(Vec::new(), 0);
        // Journaled before the consumer existed: not handed to it.
        store
            .record_events(&[raise(&mut book, "old", 1)])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut reader = store
            .outbox_reader("tickets")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(reader
            .fetch(10)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .entries
            .is_empty());

        let events = [raise(&mut book, "a", 2), raise(&mut book, "b", 3)];
        store
            .record_events(&events)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        tokio::time::timeout(Duration::from_secs(1), reader.wait())
            .await
            .unwrap_or_else(|_| panic!("not woken by a journal write"));
        let batch = reader.fetch(10).await.unwrap_or_else(|e| panic!("{e}"));
        let got: Vec<_> = batch
            .entries
            .iter()
            .map(|e| e.event.alarm.sensor.to_string())
            .collect();
        assert_eq!(got, ["xhsy/a/smoke", "xhsy/b/smoke"]);
        assert_eq!(batch.entries[0].event.transition, Transition::Raised);
        assert_eq!(*batch.entries[1].event, events[1]);

        // Not committed: a reopened reader (a restart) gets the same entries again.
        let again = store
            .outbox_reader("tickets")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            again
                .fetch(10)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .entries
                .len(),
            2
        );

        reader
            .commit(batch.up_to)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let reopened = store
            .outbox_reader("tickets")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reopened.cursor(), batch.up_to);
        assert!(reopened
            .fetch(10)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .entries
            .is_empty());
        // Nothing new: waiting does not return.
        let mut reopened = reopened;
        assert!(
            tokio::time::timeout(Duration::from_millis(100), reopened.wait())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn compaction_keeps_what_the_slowest_consumer_has_not_read() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = store(dir.path()).await;
        let mut book = AlarmBook::restore(Vec::new(), 0);
        let mut fast = store
            .outbox_reader("fast")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let slow = store
            .outbox_reader("slow")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        store
            .record_events(&[raise(&mut book, "a", 1), raise(&mut book, "b", 2)])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let batch = fast.fetch(10).await.unwrap_or_else(|e| panic!("{e}"));
        fast.commit(batch.up_to)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            store
                .compact_outbox()
                .await
                .unwrap_or_else(|e| panic!("{e}")),
            0
        );
        assert_eq!(
            slow.fetch(10)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .entries
                .len(),
            2
        );
        // The journal itself is untouched by compaction.
        let alarm_id = batch.entries[0].event.alarm.id;
        assert_eq!(
            store
                .journal(alarm_id)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .len(),
            1
        );
    }
}

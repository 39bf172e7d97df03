-- The alarm outbox: the journal doubles as a durable queue of alarm transitions for the stages
-- that must see every one of them at their own pace (tickets, notifications). Each journal row
-- now carries the whole event as JSON, written in the same transaction as the journal entry;
-- each consumer keeps the last sequence number it has finished with.

ALTER TABLE alarm_journal ADD COLUMN event TEXT;   -- the AlarmEvent as JSON; NULL before 0006

CREATE TABLE outbox_cursors (
    consumer TEXT    PRIMARY KEY,   -- e.g. `tickets`, `notify`
    seq      INTEGER NOT NULL       -- every journal row up to this seq is done
) WITHOUT ROWID;

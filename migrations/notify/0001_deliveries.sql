-- Notifications in a file of their own (notify.db): the durable delivery outbox and the
-- notifier's small state, moved out of campusguard.db (where local migration 0013 created them)
-- so the notifier's writes never wait for SQLite's write lock behind the core's journal.
-- The same columns as there: rows of an older install are copied over once at start.

CREATE TABLE notify_deliveries (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    key        TEXT    NOT NULL UNIQUE,  -- e.g. alarm:<id>:<episode>:r<step>:n<repeat>:<channel>
    channel    TEXT    NOT NULL,
    kind       TEXT    NOT NULL,         -- alarm | cleared | ticket | digest
    alarm_id   INTEGER,                  -- the alarm, for alarm and cleared deliveries
    digest     INTEGER NOT NULL DEFAULT 0, -- 1: always sent together with the others due
    message    TEXT    NOT NULL,         -- the rendered message (JSON)
    state      TEXT    NOT NULL,         -- pending | sent | failed | cancelled
    attempts   INTEGER NOT NULL DEFAULT 0,
    next_at    INTEGER NOT NULL,         -- Unix ms: not to be sent before
    created_at INTEGER NOT NULL,
    done_at    INTEGER,
    last_error TEXT,
    sent_with  INTEGER                   -- the first delivery of the message that carried it
);
CREATE INDEX notify_deliveries_due ON notify_deliveries (channel, state, next_at);
CREATE INDEX notify_deliveries_alarm ON notify_deliveries (alarm_id, state);

-- Small durable facts of the notifier: the ticket audit cursor, when it first ran, the last
-- digest day, and whether the local store's rows were taken over.
CREATE TABLE notify_state (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

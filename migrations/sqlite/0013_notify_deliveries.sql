-- Notifications: the durable delivery outbox. One row per (subject, step, channel), written
-- before anything is sent and keyed by its idempotency key, so a step is queued once however
-- often it is planned (restarts, replays) and a queued delivery survives a kill -9.

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
-- digest day.
CREATE TABLE notify_state (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

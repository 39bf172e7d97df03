-- Drill (maintenance) mode per school or building: alarms raised under an active drill are
-- marked as drills and file no tickets. Kept so a restart does not end a running drill.

CREATE TABLE drills (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    school     TEXT    NOT NULL,
    building   TEXT,               -- NULL = the whole school
    started_by TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    started_at INTEGER NOT NULL,   -- Unix ms
    until      INTEGER NOT NULL,   -- Unix ms; the drill ends by itself then
    ended_at   INTEGER,            -- Unix ms; NULL while active
    ended_by   TEXT
);
CREATE INDEX drills_active ON drills (ended_at);

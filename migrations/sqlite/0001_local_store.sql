-- Local store of one gateway: rolling history of readings, alarms and their journal.

CREATE TABLE readings (
    sensor  TEXT    NOT NULL,   -- <school>/<device>/<point>
    ts      INTEGER NOT NULL,   -- Unix ms
    value   REAL    NOT NULL,   -- booleans as 0/1, see is_bool
    is_bool INTEGER NOT NULL,
    source  TEXT    NOT NULL
);
CREATE INDEX readings_sensor_ts ON readings (sensor, ts);
CREATE INDEX readings_ts ON readings (ts);

-- Current state of every alarm ever raised; `doc` is the full alarm as JSON.
CREATE TABLE alarms (
    id         INTEGER PRIMARY KEY,
    sensor     TEXT    NOT NULL,
    rule       TEXT    NOT NULL,
    school     TEXT    NOT NULL,
    class      TEXT    NOT NULL,
    state      TEXT    NOT NULL,
    raised_at  INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    doc        TEXT    NOT NULL
);
CREATE INDEX alarms_state ON alarms (state);
CREATE INDEX alarms_school_raised ON alarms (school, raised_at);

-- Every transition, with who and when.
CREATE TABLE alarm_journal (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    alarm_id    INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    transition  TEXT    NOT NULL,
    user        TEXT    NOT NULL,
    comment     TEXT,
    state       TEXT    NOT NULL,
    severity    TEXT    NOT NULL,
    value       TEXT,
    false_alarm INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX alarm_journal_alarm ON alarm_journal (alarm_id, seq);

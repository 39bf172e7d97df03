-- Hazard tickets. Portable SQL: the same migration runs on SQLite and PostgreSQL.
-- Times are Unix ms (BIGINT); flags are 0/1 BIGINT; every integer is BIGINT so both
-- databases decode it as i64.

CREATE TABLE tickets (
    id TEXT PRIMARY KEY,                 -- the number <SCHOOLCODE>-<YYYYMM>-<NNNN>
    school TEXT NOT NULL,
    state TEXT NOT NULL,
    version BIGINT NOT NULL,
    category TEXT NOT NULL,
    grade TEXT NOT NULL,
    source TEXT NOT NULL,
    inspector TEXT,
    sensor TEXT,
    rule TEXT,
    alarm_class TEXT,
    location TEXT NOT NULL,
    description TEXT NOT NULL,
    responsible_unit TEXT,
    responsible_person TEXT,
    measures TEXT,
    deadline_at BIGINT,
    deferral_plan TEXT,
    interim_measures TEXT,
    rectification TEXT,
    rectified_at BIGINT,
    reported_by TEXT,
    reported_at BIGINT,
    verifier TEXT,
    closed_at BIGINT,
    reject_reason TEXT,
    supervised BIGINT NOT NULL DEFAULT 0,
    supervised_at BIGINT,
    supervised_by TEXT,
    previous_ticket TEXT,
    occurrences BIGINT NOT NULL DEFAULT 1,
    last_occurrence_at BIGINT,
    found_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- One open ticket per (sensor, rule), also across gateways sharing one database.
CREATE UNIQUE INDEX tickets_one_open_per_sensor_rule
    ON tickets (sensor, rule) WHERE state <> 'closed' AND sensor IS NOT NULL;
CREATE INDEX tickets_school_state ON tickets (school, state);
CREATE INDEX tickets_found_at ON tickets (found_at);
CREATE INDEX tickets_state_deadline ON tickets (state, deadline_at);
CREATE INDEX tickets_closed_at ON tickets (closed_at);

-- Gap-free numbering: one counter row per (school code, month), bumped in the creating
-- transaction, so a rolled-back creation gives its number back.
CREATE TABLE ticket_counters (
    code TEXT NOT NULL,
    month TEXT NOT NULL,
    last_seq BIGINT NOT NULL,
    PRIMARY KEY (code, month)
);

CREATE TABLE ticket_history (
    ticket_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    happened_at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    changes TEXT NOT NULL,
    comment TEXT,
    PRIMARY KEY (ticket_id, version)
);

-- Alarm occurrences on a sensor ticket. The reading time dedups the same alarm reported by
-- two gateways.
CREATE TABLE ticket_occurrences (
    ticket_id TEXT NOT NULL,
    reading_ts BIGINT NOT NULL,
    alarm_id BIGINT NOT NULL,
    happened_at BIGINT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (ticket_id, reading_ts)
);

CREATE TABLE ticket_attachments (
    ticket_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    kind TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    uploaded_by TEXT NOT NULL,
    uploaded_at BIGINT NOT NULL,
    PRIMARY KEY (ticket_id, sha256)
);

-- Issue 16 item 3: incident reports (信息报告). A fire alarm reset as a real fire opens a draft
-- here (from the ticket policy's outbox consumer), or one is filed by hand; the school fills it
-- in and submits it, and the bureau reads every school's. Kept beside the tickets so the
-- gateways of a district that share one PostgreSQL see them together. Portable SQL, like 0001.

CREATE TABLE incidents (
    id TEXT PRIMARY KEY,                 -- <SCHOOLCODE>-INC-<YYYYMM>-<NNNN>
    school TEXT NOT NULL,
    alarm_id BIGINT,                     -- the alarm reset as a real fire; NULL if filed by hand
    sensor TEXT,                         -- of that alarm
    status TEXT NOT NULL,                -- draft | submitted
    version BIGINT NOT NULL,
    occurred_at BIGINT NOT NULL,         -- Unix ms
    location TEXT NOT NULL,
    building TEXT,
    room TEXT,
    device TEXT,
    what_happened TEXT NOT NULL,
    actions_taken TEXT NOT NULL,
    deaths BIGINT NOT NULL DEFAULT 0,
    injuries BIGINT NOT NULL DEFAULT 0,
    reported_119_by TEXT,                -- who called the fire brigade (119)
    reported_119_at BIGINT,
    submitted_by TEXT,
    submitted_at BIGINT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- One report per alarm, also when two gateways (or a replay of the outbox) open it at once.
CREATE UNIQUE INDEX incidents_one_per_alarm ON incidents (school, alarm_id) WHERE alarm_id IS NOT NULL;
CREATE INDEX incidents_school_occurred ON incidents (school, occurred_at);
CREATE INDEX incidents_occurred ON incidents (occurred_at);

-- Devices commissioned from the console (POST /api/v1/devices): registered at once in the
-- running core, and again from here at every start. A device in the config file is never here
-- (it stays read-only in the console); one here wins over its own `meta` announcements.
CREATE TABLE commissioned_devices (
    school     TEXT    NOT NULL,
    device     TEXT    NOT NULL,
    info       TEXT    NOT NULL,   -- profile, building, room, name (JSON)
    overrides  TEXT    NOT NULL DEFAULT '{}',   -- per-rule threshold overrides (JSON)
    updated_ms INTEGER NOT NULL,   -- Unix ms
    PRIMARY KEY (school, device)
) WITHOUT ROWID;

-- Every commissioning change: who, when, what it was before and after (JSON; NULL when the
-- device was not commissioned before, or is decommissioned after).
CREATE TABLE device_audit (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,   -- Unix ms
    user   TEXT    NOT NULL,
    school TEXT    NOT NULL,
    device TEXT    NOT NULL,
    action TEXT    NOT NULL,   -- register | edit | overrides | decommission
    before TEXT,
    after  TEXT
);
CREATE INDEX device_audit_device ON device_audit (school, device, seq);

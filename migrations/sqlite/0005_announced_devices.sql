-- Devices that announced themselves with a retained `meta` message (not in the config). Kept so
-- that after a restart the queued readings the broker redelivers first are evaluated against
-- the device's profile at once, not only after its retained meta arrives again.

CREATE TABLE announced_devices (
    school     TEXT    NOT NULL,
    device     TEXT    NOT NULL,
    info       TEXT    NOT NULL,   -- the meta as JSON (profile, building, room, name)
    updated_ms INTEGER NOT NULL,   -- Unix ms
    PRIMARY KEY (school, device)
) WITHOUT ROWID;

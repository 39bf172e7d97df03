-- Console sessions, kept so a restart does not log the control room out. Only the SHA-256 of
-- a session's token (256 random bits) is stored: a copy of the database opens no session.

CREATE TABLE sessions (
    token_hash TEXT    PRIMARY KEY,   -- hex SHA-256 of the cookie's token
    user       TEXT    NOT NULL,      -- users.name
    created_at INTEGER NOT NULL,      -- Unix ms
    expires_at INTEGER NOT NULL       -- Unix ms
) WITHOUT ROWID;
CREATE INDEX sessions_user ON sessions (user);

-- A disabled user cannot log in, and has no sessions (`campusguard users disable|enable`).
ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;

-- Users whose sessions were ended by another process (`campusguard users passwd|disable`):
-- the running gateway reads new rows every second and ends those sessions in memory too, which
-- closes their alarm streams.
CREATE TABLE session_revocations (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT    NOT NULL,
    at   INTEGER NOT NULL             -- Unix ms
);

-- Console users: argon2 password hashes (PHC strings), a role and an optional school scope.

CREATE TABLE users (
    name          TEXT    PRIMARY KEY,
    password_hash TEXT    NOT NULL,   -- argon2id PHC string; never empty
    role          TEXT    NOT NULL,   -- operator | lab_manager | school_safety | bureau | admin
    schools       TEXT,               -- JSON array of school ids; NULL = every school
    created_at    INTEGER NOT NULL,   -- Unix ms
    updated_at    INTEGER NOT NULL
);

-- The duty log (值班记录): who signed on in which control room when, and the handover notes
-- they left when they signed off. Rooms are config (`[[duty.rooms]]`), so a room is its name.
CREATE TABLE duty_shifts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    room         TEXT    NOT NULL,
    user         TEXT    NOT NULL,   -- the login or token name that signed on
    display_name TEXT    NOT NULL,   -- as the record prints it (given at sign-on, else the user)
    on_at        INTEGER NOT NULL,   -- Unix ms
    off_at       INTEGER,            -- Unix ms; NULL while on duty
    off_by       TEXT,               -- who signed the shift off (the user, or an admin)
    notes        TEXT                -- handover notes for the next shift
);
-- One open shift per user and room: a second sign-on is refused (409) by the store itself.
CREATE UNIQUE INDEX duty_shifts_open ON duty_shifts (room, user) WHERE off_at IS NULL;
-- A day's log and the last handover of a room: by room and time.
CREATE INDEX duty_shifts_room_on ON duty_shifts (room, on_at);
CREATE INDEX duty_shifts_room_off ON duty_shifts (room, off_at);

-- The duty log reads a day of the alarm journal (raised, acknowledged, reset, actions …):
-- a range of `at`, not a scan of every transition ever journaled.
CREATE INDEX alarm_journal_at ON alarm_journal (at);

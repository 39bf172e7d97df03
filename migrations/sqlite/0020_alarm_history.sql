-- Alarm history (GET /api/v1/alarms/history): newest first with keyset pagination on
-- (raised_at, id). Each index below ends in raised_at, and SQLite appends the rowid (the alarm
-- id), so a filtered page is a range scan in page order, never a sort of every alarm.

-- The device and building of the alarm, as columns so they can be filtered on. The building is
-- the one the device had when the alarm was raised (NULL for alarms raised before 0020).
ALTER TABLE alarms ADD COLUMN device TEXT NOT NULL DEFAULT '';
ALTER TABLE alarms ADD COLUMN building TEXT;
UPDATE alarms SET device = COALESCE(json_extract(doc, '$.device'), '');

-- Across schools (an unscoped caller); alarms_school_raised (0001) serves one school.
CREATE INDEX alarms_raised ON alarms (raised_at);
CREATE INDEX alarms_class_raised ON alarms (class, raised_at);
CREATE INDEX alarms_building_raised ON alarms (building, raised_at);
-- (state) alone made a page of `state = cleared` (most alarms) sort them all.
DROP INDEX IF EXISTS alarms_state;
CREATE INDEX alarms_state_raised ON alarms (state, raised_at);
-- Within one school (a scoped caller's schools are read one range each): a rare class or an
-- empty building of one school is a short range, not a scan of the school's alarms.
CREATE INDEX alarms_school_class_raised ON alarms (school, class, raised_at);
CREATE INDEX alarms_school_building_raised ON alarms (school, building, raised_at);
CREATE INDEX alarms_school_state_raised ON alarms (school, state, raised_at);
-- Retention deletes an alarm's journal rows by alarm (alarm_journal_alarm covers it).

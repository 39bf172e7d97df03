-- The history of readings moved to its own file (history.db, written with rusqlite); the old
-- table held at most the retention (7 days by default) and every reading is also in the
-- time-series store.
DROP INDEX IF EXISTS readings_sensor_ts;
DROP INDEX IF EXISTS readings_ts;
DROP TABLE IF EXISTS readings;

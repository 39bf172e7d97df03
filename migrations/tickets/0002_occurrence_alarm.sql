-- The ticket policy asks whether an alarm already has its ticket (a timer rebuilt at start
-- must not file twice): look occurrences up by alarm id.
CREATE INDEX ticket_occurrences_alarm ON ticket_occurrences (alarm_id);

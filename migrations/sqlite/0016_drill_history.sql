-- Drills are kept after they end, as the history the district page counts against the drill
-- targets (中小学每月 1 次; 幼儿园每两月 1 次). This index serves the history by school and time.
CREATE INDEX drills_school_started ON drills (school, started_at);

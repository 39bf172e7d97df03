-- Issue 15: the "five in place" of a hazard (隐患整改五落实: 责任、措施、资金、时限、预案) gets
-- its two missing fields; a ticket names a place (building, room) with the device apart; and
-- the reporting calendar keeps each school's frozen monthly report.

ALTER TABLE tickets ADD COLUMN funding TEXT;
ALTER TABLE tickets ADD COLUMN contingency_plan TEXT;
ALTER TABLE tickets ADD COLUMN building TEXT;
ALTER TABLE tickets ADD COLUMN room TEXT;
ALTER TABLE tickets ADD COLUMN device TEXT;

-- One frozen monthly report per (school, month): the ledger as it was when submitted, in every
-- format, so a download is the same bytes whatever changes later. Bytes are base64 text so
-- the same column type works on SQLite and PostgreSQL.
CREATE TABLE report_snapshots (
    school TEXT NOT NULL,
    month TEXT NOT NULL,                 -- YYYY-MM
    submitted_by TEXT NOT NULL,
    submitted_at BIGINT NOT NULL,        -- Unix ms
    due_at BIGINT NOT NULL,              -- Unix ms: the end of the due day, local time
    row_count BIGINT NOT NULL,
    sha256 TEXT NOT NULL,                -- of the JSON rows
    rows_json TEXT NOT NULL,             -- base64 of the JSON download
    csv TEXT NOT NULL,                   -- base64 of the CSV download
    xlsx TEXT NOT NULL,                  -- base64 of the XLSX download
    PRIMARY KEY (school, month)
);
CREATE INDEX report_snapshots_month ON report_snapshots (month);

//! The reporting calendar (隐患排查月报表): each school submits its month's hazard ledger by
//! `reports.school_due_day` of that month; submitting freezes the ledger as a snapshot (every
//! format rendered once and kept, with a content hash, the row count, who and when), so a
//! later change to a ticket never changes what was reported. The bureau's district file for
//! the provincial upload (问题隐患清单, due `reports.district_due_day` of the next month)
//! joins the frozen snapshots.

use base64::Engine;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::export::{render, Format, LedgerRow};
use super::model::Lang;
use super::time::{days_from_civil, month_range, parse_month};
use super::{TicketError, Tickets};
use crate::access::{Principal, Role};
use crate::model::now_ms;

const DAY_MS: i64 = 86_400_000;

/// `[reports]`: the due days of the calendar.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportsConfig {
    /// A school's month is due by the end of this day of the month (local time).
    #[serde(default = "default_school_due_day")]
    pub school_due_day: u32,
    /// The district file of a month is due by the end of this day of the next month.
    #[serde(default = "default_district_due_day")]
    pub district_due_day: u32,
}

fn default_school_due_day() -> u32 {
    28
}
fn default_district_due_day() -> u32 {
    1
}

impl Default for ReportsConfig {
    fn default() -> Self {
        Self {
            school_due_day: default_school_due_day(),
            district_due_day: default_district_due_day(),
        }
    }
}

impl ReportsConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        // 28 at most: every month has the day.
        for (name, day) in [
            ("school_due_day", self.school_due_day),
            ("district_due_day", self.district_due_day),
        ] {
            if !(1..=28).contains(&day) {
                problems.push(format!("reports.{name} must be within 1..=28"));
            }
        }
        problems
    }
}

/// Where a school stands for a month.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    /// Submitted by the due day.
    Submitted,
    /// Submitted after the due day.
    Late,
    /// Not submitted (yet).
    Missing,
}

/// A frozen month of one school, without its bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub school: String,
    pub month: String,
    pub submitted_by: String,
    pub submitted_at: i64,
    pub due_at: i64,
    pub row_count: i64,
    /// SHA-256 of the JSON rows.
    pub sha256: String,
}

/// One line of the calendar.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CalendarEntry {
    pub school: String,
    pub name: String,
    pub status: ReportStatus,
    pub due_at: i64,
    /// Missing and past its due day.
    pub past_due: bool,
    pub snapshot: Option<Snapshot>,
}

/// The calendar of a month.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Calendar {
    pub month: String,
    pub school_due_at: i64,
    pub district_due_at: i64,
    pub schools: Vec<CalendarEntry>,
}

/// The month `YYYY-MM` as (year, month), or 400.
fn month_of(month: &str) -> Result<(i64, u32), TicketError> {
    parse_month(month)
        .ok_or_else(|| TicketError::Invalid(format!("month `{month}`: expected YYYY-MM")))
}

/// The end (exclusive, Unix ms) of day `day` of a local month.
fn end_of_day(y: i64, m: u32, day: u32, offset_ms: i64) -> i64 {
    (days_from_civil(y, m, day) + 1) * DAY_MS - offset_ms
}

impl Tickets {
    /// When a school's month is due (end of the due day, local time).
    pub fn school_due_at(&self, month: &str) -> Result<i64, TicketError> {
        let (y, m) = month_of(month)?;
        Ok(end_of_day(
            y,
            m,
            self.config.reports.school_due_day,
            self.config.offset_ms(),
        ))
    }

    /// When the district file of a month is due (end of the due day of the next month).
    pub fn district_due_at(&self, month: &str) -> Result<i64, TicketError> {
        let (y, m) = month_of(month)?;
        let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        Ok(end_of_day(
            ny,
            nm,
            self.config.reports.district_due_day,
            self.config.offset_ms(),
        ))
    }

    /// Freezes `school`'s ledger of `month` as submitted by `who` (school safety of that
    /// school, or an admin). A month is submitted once: again → 409 (conflict).
    pub async fn submit_report(
        &self,
        who: &Principal,
        school: &str,
        month: &str,
    ) -> Result<Snapshot, TicketError> {
        self.submit_report_at(who, school, month, now_ms()).await
    }

    /// [`Tickets::submit_report`] at a given time (the demo seeds a late one).
    pub async fn submit_report_at(
        &self,
        who: &Principal,
        school: &str,
        month: &str,
        at: i64,
    ) -> Result<Snapshot, TicketError> {
        if !matches!(who.role, Some(Role::SchoolSafety | Role::Admin)) {
            return Err(TicketError::Forbidden(
                "a month is submitted by the school's school_safety (or an admin)".into(),
            ));
        }
        if !who.may_see_school(school) {
            return Err(TicketError::Forbidden(format!(
                "token is not scoped to school `{school}`"
            )));
        }
        if !crate::model::valid_name(school) {
            return Err(TicketError::Invalid("`school` must be a school id".into()));
        }
        if !self.known_school(school).await? {
            return Err(TicketError::NotFound(format!(
                "no school `{school}` (not in [[schools]] and without tickets)"
            )));
        }
        let (y, m) = month_of(month)?;
        let (month_start, _) = month_range(y, m, self.config.offset_ms());
        if at < month_start {
            return Err(TicketError::Invalid(format!(
                "month {month} has not started; it can be submitted from its first day"
            )));
        }
        let due_at = self.school_due_at(month)?;
        let scope = [school.to_string()];
        let rows = self.ledger(month, Some(&scope), Lang::Zh).await?;
        let json = render(&rows, Format::Json, Lang::Zh)?;
        let csv = render(&rows, Format::Csv, Lang::Zh)?;
        let xlsx = render(&rows, Format::Xlsx, Lang::Zh)?;
        use sha2::Digest;
        let sha256 = super::hex(&sha2::Sha256::digest(&json));
        let snapshot = Snapshot {
            school: school.to_string(),
            month: month.to_string(),
            submitted_by: who.name.clone(),
            submitted_at: at,
            due_at,
            row_count: i64::try_from(rows.len()).unwrap_or(i64::MAX),
            sha256,
        };
        let b64 = base64::engine::general_purpose::STANDARD;
        let inserted = sqlx::query(
            "INSERT INTO report_snapshots (school, month, submitted_by, submitted_at, due_at, \
             row_count, sha256, rows_json, csv, xlsx) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (school, month) DO NOTHING",
        )
        .bind(snapshot.school.clone())
        .bind(snapshot.month.clone())
        .bind(snapshot.submitted_by.clone())
        .bind(snapshot.submitted_at)
        .bind(snapshot.due_at)
        .bind(snapshot.row_count)
        .bind(snapshot.sha256.clone())
        .bind(b64.encode(&json))
        .bind(b64.encode(&csv))
        .bind(b64.encode(&xlsx))
        .execute(self.store.pool())
        .await
        .map_err(db)?
        .rows_affected();
        if inserted == 0 {
            return Err(TicketError::Conflict(format!(
                "{school} has already submitted {month}; a submitted month is frozen"
            )));
        }
        tracing::info!(school, month, by = %who.name, rows = snapshot.row_count, "monthly hazard report submitted");
        Ok(snapshot)
    }

    /// A school of the district: in `[[schools]]` when the list is given, else in the
    /// deprecated `school_codes` or with a ticket on file.
    async fn known_school(&self, school: &str) -> Result<bool, TicketError> {
        if !self.config.schools.is_empty() {
            return Ok(self.config.schools.get(school).is_some());
        }
        if self.config.school_codes.contains_key(school) {
            return Ok(true);
        }
        let row = sqlx::query("SELECT 1 FROM tickets WHERE school = $1 LIMIT 1")
            .bind(school.to_string())
            .fetch_optional(self.store.pool())
            .await
            .map_err(db)?;
        Ok(row.is_some())
    }

    /// The snapshots of a month (every school), oldest submission first.
    async fn snapshots(&self, month: &str) -> Result<Vec<Snapshot>, TicketError> {
        let rows = sqlx::query(
            "SELECT school, month, submitted_by, submitted_at, due_at, row_count, sha256 \
             FROM report_snapshots WHERE month = $1 ORDER BY school",
        )
        .bind(month.to_string())
        .fetch_all(self.store.pool())
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(Snapshot {
                    school: r.try_get(0).map_err(db)?,
                    month: r.try_get(1).map_err(db)?,
                    submitted_by: r.try_get(2).map_err(db)?,
                    submitted_at: r.try_get(3).map_err(db)?,
                    due_at: r.try_get(4).map_err(db)?,
                    row_count: r.try_get(5).map_err(db)?,
                    sha256: r.try_get(6).map_err(db)?,
                })
            })
            .collect()
    }

    /// Every school the caller may see — `[[schools]]`, the deprecated `school_codes`, any
    /// with a ticket in the month's ledger and any that has submitted — as submitted, late or
    /// missing for `month`.
    pub async fn calendar(&self, who: &Principal, month: &str) -> Result<Calendar, TicketError> {
        let due_at = self.school_due_at(month)?;
        let district_due_at = self.district_due_at(month)?;
        let snapshots = self.snapshots(month).await?;
        let (from, to) = super::export::month_bounds(month, &self.config)?;
        let with_tickets: std::collections::BTreeSet<String> = self
            .store
            .ledger(from, to, who.scope())
            .await?
            .into_iter()
            .map(|t| t.school)
            .collect();
        let mut ids: Vec<String> = self
            .config
            .schools
            .all()
            .iter()
            .map(|s| s.id.clone())
            .collect();
        for id in self
            .config
            .school_codes
            .keys()
            .chain(with_tickets.iter())
            .chain(snapshots.iter().map(|s| &s.school))
        {
            if !ids.contains(id) {
                ids.push(id.clone());
            }
        }
        ids.retain(|id| who.may_see_school(id));
        let now = now_ms();
        let schools = ids
            .into_iter()
            .map(|id| {
                let snapshot = snapshots.iter().find(|s| s.school == id).cloned();
                let status = match &snapshot {
                    Some(s) if s.submitted_at < s.due_at => ReportStatus::Submitted,
                    Some(_) => ReportStatus::Late,
                    None => ReportStatus::Missing,
                };
                CalendarEntry {
                    name: self.config.schools.name_of(&id).to_string(),
                    school: id,
                    status,
                    due_at,
                    past_due: snapshot.is_none() && now >= due_at,
                    snapshot,
                }
            })
            .collect();
        Ok(Calendar {
            month: month.to_string(),
            school_due_at: due_at,
            district_due_at,
            schools,
        })
    }

    /// The frozen bytes of a school's month in `format`, as they were when submitted.
    pub async fn snapshot_bytes(
        &self,
        who: &Principal,
        school: &str,
        month: &str,
        format: Format,
    ) -> Result<(Snapshot, Vec<u8>), TicketError> {
        month_of(month)?;
        let not_found = || TicketError::NotFound(format!("report {school}/{month}"));
        if !who.may_see_school(school) {
            return Err(not_found());
        }
        let column = match format {
            Format::Json => "rows_json",
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
        };
        let row = sqlx::query(&format!(
            "SELECT school, month, submitted_by, submitted_at, due_at, row_count, sha256, {column} \
             FROM report_snapshots WHERE school = $1 AND month = $2"
        ))
        .bind(school.to_string())
        .bind(month.to_string())
        .fetch_optional(self.store.pool())
        .await
        .map_err(db)?
        .ok_or_else(not_found)?;
        let snapshot = Snapshot {
            school: row.try_get(0).map_err(db)?,
            month: row.try_get(1).map_err(db)?,
            submitted_by: row.try_get(2).map_err(db)?,
            submitted_at: row.try_get(3).map_err(db)?,
            due_at: row.try_get(4).map_err(db)?,
            row_count: row.try_get(5).map_err(db)?,
            sha256: row.try_get(6).map_err(db)?,
        };
        let encoded: String = row.try_get(7).map_err(db)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| TicketError::Database(format!("snapshot {school}/{month}: {e}")))?;
        Ok((snapshot, bytes))
    }

    /// The district file of `month`: the frozen rows of every submitted school the caller may
    /// see, in school order, rendered in `format`. Schools that have not submitted are not in
    /// it (the calendar names them).
    pub async fn district_file(
        &self,
        who: &Principal,
        month: &str,
        format: Format,
    ) -> Result<(Vec<u8>, Vec<Snapshot>), TicketError> {
        month_of(month)?;
        let snapshots: Vec<Snapshot> = self
            .snapshots(month)
            .await?
            .into_iter()
            .filter(|s| who.may_see_school(&s.school))
            .collect();
        let mut rows: Vec<LedgerRow> = Vec::new();
        for s in &snapshots {
            let (_, json) = self
                .snapshot_bytes(who, &s.school, month, Format::Json)
                .await?;
            let frozen: Vec<LedgerRow> = serde_json::from_slice(&json).map_err(|e| {
                TicketError::Database(format!("snapshot {}/{month}: {e}", s.school))
            })?;
            rows.extend(frozen);
        }
        Ok((render(&rows, format, Lang::Zh)?, snapshots))
    }
}

fn db(e: impl std::fmt::Display) -> TicketError {
    TicketError::Database(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_days_are_checked_and_a_due_day_ends_at_local_midnight() {
        assert!(ReportsConfig::default().validate().is_empty());
        let bad = ReportsConfig {
            school_due_day: 31,
            district_due_day: 0,
        };
        assert_eq!(bad.validate().len(), 2);
        let offset = 8 * 3_600_000;
        let end = end_of_day(2026, 11, 28, offset);
        assert_eq!(
            super::super::time::format_local(end, offset),
            "2026-11-29 00:00"
        );
    }
}

//! Ticket statistics for the bureau's district page and the school views, counted by the
//! server (`GET /api/v1/stats/tickets?from=&to=&by=school|category|grade|month`) so the
//! console shows the same numbers as the ledger and does not recount a page of its list.
//!
//! For a window [from, to) — each month its own window with `by=month` — a ticket counts as
//! `found` if found in it, `closed` if closed in it, and `open`, `overdue` and `supervised`
//! as it stood at the window's end (or now, for a window that has not ended).

use std::collections::BTreeMap;

use serde::Serialize;

use super::model::{Category, Grade, Lang, State, Ticket};
use super::time::{local_date, month_range};
use super::{TicketError, Tickets};
use crate::access::Principal;

/// At most this many months in one `by=month` answer (a trend of a few years).
pub const MAX_MONTHS: usize = 60;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsBy {
    School,
    Category,
    Grade,
    Month,
}

impl StatsBy {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "school" => Some(StatsBy::School),
            "category" => Some(StatsBy::Category),
            "grade" => Some(StatsBy::Grade),
            "month" => Some(StatsBy::Month),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            StatsBy::School => "school",
            StatsBy::Category => "category",
            StatsBy::Grade => "grade",
            StatsBy::Month => "month",
        }
    }
}

/// The counts of one group.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StatsRow {
    /// School id, category, grade or `YYYY-MM`.
    pub key: String,
    /// How people read the key (school name, Chinese category and grade).
    pub label: String,
    pub found: u64,
    pub open: u64,
    pub overdue: u64,
    pub supervised: u64,
    pub closed: u64,
    /// Of the tickets closed in the window.
    pub median_days_to_close: Option<f64>,
}

/// What a ticket adds to the counts of a window [from, end) — `end` is the window's end, or
/// now for a window still running.
fn count(row: &mut StatsRow, t: &Ticket, from: i64, end: i64, days: &mut Vec<f64>) {
    if t.found_at >= from && t.found_at < end {
        row.found += 1;
    }
    if let Some(closed) = t.closed_at.filter(|c| *c >= from && *c < end) {
        row.closed += 1;
        days.push((closed - t.found_at) as f64 / 86_400_000.0);
    }
    let open_at_end = t.found_at < end && t.closed_at.is_none_or(|c| c >= end);
    if !open_at_end {
        return;
    }
    row.open += 1;
    // Still to be rectified at the end: not reported before it (a reported ticket waits for
    // verification and is not overdue).
    let unreported = matches!(
        t.state,
        State::Registered | State::Rectifying | State::Deferred
    ) || t.reported_at.is_none_or(|r| r >= end);
    if unreported && t.deadline_at.is_some_and(|d| d < end) {
        row.overdue += 1;
    }
    if t.supervised && t.supervised_at.is_none_or(|s| s < end) {
        row.supervised += 1;
    }
}

fn median(mut days: Vec<f64>) -> Option<f64> {
    days.sort_by(f64::total_cmp);
    match days.len() {
        0 => None,
        n if n % 2 == 1 => Some(days[n / 2]),
        n => Some((days[n / 2 - 1] + days[n / 2]) / 2.0),
    }
}

impl Tickets {
    /// Counts of the tickets the caller may see, in [from, to) grouped `by`, at `now`.
    pub async fn stats(
        &self,
        who: &Principal,
        by: StatsBy,
        from: i64,
        to: i64,
        now: i64,
    ) -> Result<Vec<StatsRow>, TicketError> {
        if to <= from {
            return Err(TicketError::Invalid("`to` must be after `from`".into()));
        }
        let tickets = self.store.ledger(from, to, who.scope()).await?;
        let end = to.min(now.saturating_add(1));
        let offset = self.config.offset_ms();
        if by == StatsBy::Month {
            let mut rows = Vec::new();
            let (mut y, mut m, _) = local_date(from, offset);
            loop {
                let (start, stop) = month_range(y, m, offset);
                if start >= to || rows.len() >= MAX_MONTHS {
                    break;
                }
                let key = format!("{y:04}-{m:02}");
                let mut row = StatsRow {
                    label: key.clone(),
                    key,
                    ..StatsRow::default()
                };
                let (start, stop) = (start.max(from), stop.min(end));
                let mut days = Vec::new();
                if start < stop {
                    for t in &tickets {
                        count(&mut row, t, start, stop, &mut days);
                    }
                }
                row.median_days_to_close = median(days);
                rows.push(row);
                (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            }
            return Ok(rows);
        }
        let key_of = |t: &Ticket| -> String {
            match by {
                StatsBy::School => t.school.clone(),
                StatsBy::Category => t.category.as_str().to_string(),
                StatsBy::Grade => t.grade.as_str().to_string(),
                StatsBy::Month => String::new(),
            }
        };
        // Every listed group appears, with zeros: the district page shows every school.
        let mut groups: BTreeMap<String, (StatsRow, Vec<f64>)> = BTreeMap::new();
        let listed: Vec<String> = match by {
            StatsBy::School => self
                .config
                .schools
                .all()
                .iter()
                .map(|s| s.id.clone())
                .filter(|id| who.may_see_school(id))
                .collect(),
            StatsBy::Category => Category::ALL.iter().map(|c| c.as_str().into()).collect(),
            StatsBy::Grade => Grade::ALL.iter().map(|g| g.as_str().into()).collect(),
            StatsBy::Month => Vec::new(),
        };
        for key in listed {
            groups.entry(key).or_default();
        }
        for t in &tickets {
            let (row, days) = groups.entry(key_of(t)).or_default();
            count(row, t, from, end, days);
        }
        Ok(groups
            .into_iter()
            .map(|(key, (mut row, days))| {
                row.label = match by {
                    StatsBy::School => self.config.schools.name_of(&key).to_string(),
                    StatsBy::Category => Category::parse(&key)
                        .map(|c| c.label(Lang::Zh).to_string())
                        .unwrap_or_else(|| key.clone()),
                    StatsBy::Grade => Grade::parse(&key)
                        .map(|g| g.label(Lang::Zh).to_string())
                        .unwrap_or_else(|| key.clone()),
                    StatsBy::Month => key.clone(),
                };
                row.key = key;
                row.median_days_to_close = median(days);
                row
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}

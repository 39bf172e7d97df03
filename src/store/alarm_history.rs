//! The alarm history's queries, in one place (pages read on the API's read-only pool): a filtered
//! page of alarms newest first with keyset pagination on `(raised_at, id)`, and the retention
//! that deletes old cleared alarms with their journal.
//!
//! A page is one range scan of an index that ends in `raised_at` (SQLite appends the alarm id),
//! so it costs the rows it reads, not the size of the journal. Which index drives the scan is
//! chosen here, not by the planner (`INDEXED BY`; the other filters are written `+column`):
//! without `ANALYZE` statistics it would guess, and a guess of `state = cleared` sorts most of
//! the table for every page. A scope of a few schools reads one range per school, merged.

use sqlx::{QueryBuilder, Row, Sqlite};

use super::{LocalStore, StoreError};
use crate::alarms::{Alarm, AlarmState};
use crate::model::AlarmClass;

/// Which alarms a history page shows. Every field narrows; `None` = no condition.
#[derive(Debug, Clone, Default)]
pub struct AlarmFilter {
    /// Raised at or after (Unix ms).
    pub from_ms: Option<i64>,
    /// Raised before (Unix ms, exclusive).
    pub to_ms: Option<i64>,
    /// Of these schools (`Some(empty)` matches nothing).
    pub schools: Option<Vec<String>>,
    pub building: Option<String>,
    pub class: Option<AlarmClass>,
    pub state: Option<AlarmState>,
    /// Contained (case-insensitive for ASCII) in the sensor, the rule or the message.
    pub text: Option<String>,
}

/// Where the next page starts: after the alarm raised at `raised_at` with this `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryCursor {
    pub raised_at: i64,
    pub id: i64,
}

impl HistoryCursor {
    /// `<raised_at>_<id>`: opaque to clients, readable in a log.
    pub fn encode(self) -> String {
        format!("{}_{}", self.raised_at, self.id)
    }

    pub fn parse(s: &str) -> Option<Self> {
        let (at, id) = s.split_once('_')?;
        Some(Self {
            raised_at: at.parse().ok()?,
            id: id.parse().ok()?,
        })
    }
}

/// An alarm as the history shows it: with the building its device was in when raised.
#[derive(Debug, Clone)]
pub struct HistoryRow {
    pub alarm: Alarm,
    pub building: Option<String>,
}

/// One page, and where the next one starts (`None`: this was the last).
#[derive(Debug, Clone)]
pub struct AlarmPage {
    pub rows: Vec<HistoryRow>,
    pub next: Option<HistoryCursor>,
}

/// A scoped caller's schools are read one index range each, merged (`UNION ALL`), up to this
/// many; beyond it the schools are a filter on a scan driven by another index.
const MAX_SCHOOL_ARMS: usize = 8;

/// Which schools one arm of a page query reads.
#[derive(Clone, Copy)]
enum Schools<'a> {
    All,
    One(&'a str),
    /// A filter (`+school IN (…)`), not an index range.
    AnyOf(&'a [String]),
}

/// The column besides the school whose index drives an arm's scan (see the module doc): a
/// building is a small slice, an open state a few alarms; `cleared` is most alarms, so a
/// class is preferred to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    Building,
    State,
    Class,
    Time,
}

impl Driver {
    fn pick(filter: &AlarmFilter) -> Self {
        if filter.building.is_some() {
            Driver::Building
        } else if filter.state.is_some_and(|s| s != AlarmState::Cleared) {
            Driver::State
        } else if filter.class.is_some() {
            Driver::Class
        } else if filter.state.is_some() {
            Driver::State
        } else {
            Driver::Time
        }
    }
}

/// `%` and `_` in user text match themselves.
fn like_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// One arm: the alarms of `schools` matching `filter` after `after`, newest first, `limit`.
/// The columns that drive the scan are written bare (`school = ?`, `class = ?`, matching one
/// of migration 0020's indexes); every other filter is written `+column`.
fn push_arm(
    q: &mut QueryBuilder<'static, Sqlite>,
    filter: &AlarmFilter,
    schools: Schools<'_>,
    after: Option<HistoryCursor>,
    limit: u32,
) {
    let driver = Driver::pick(filter);
    let col = |name: &str, drives: bool| {
        if drives {
            name.to_string()
        } else {
            format!("+{name}")
        }
    };
    // The planner is told which index (without statistics it may take a shorter one that
    // matches fewer of the bare columns).
    let one_school = matches!(schools, Schools::One(_));
    let index = match (one_school, driver) {
        (true, Driver::Building) => "alarms_school_building_raised",
        (true, Driver::State) => "alarms_school_state_raised",
        (true, Driver::Class) => "alarms_school_class_raised",
        (true, Driver::Time) => "alarms_school_raised",
        (false, Driver::Building) => "alarms_building_raised",
        (false, Driver::State) => "alarms_state_raised",
        (false, Driver::Class) => "alarms_class_raised",
        (false, Driver::Time) => "alarms_raised",
    };
    q.push(format!(
        "SELECT id, doc, building, raised_at FROM alarms INDEXED BY {index} WHERE 1 = 1"
    ));
    match schools {
        Schools::All => {}
        Schools::One(school) => {
            q.push(" AND school = ").push_bind(school.to_string());
        }
        Schools::AnyOf(list) => {
            q.push(" AND +school IN (");
            let mut items = q.separated(", ");
            for school in list {
                items.push_bind(school.clone());
            }
            q.push(")");
        }
    }
    if let Some(building) = &filter.building {
        q.push(format!(
            " AND {} = ",
            col("building", driver == Driver::Building)
        ))
        .push_bind(building.clone());
    }
    if let Some(class) = filter.class {
        q.push(format!(" AND {} = ", col("class", driver == Driver::Class)))
            .push_bind(class.as_str());
    }
    if let Some(state) = filter.state {
        q.push(format!(" AND {} = ", col("state", driver == Driver::State)))
            .push_bind(state.as_str());
    }
    if let Some(from) = filter.from_ms {
        q.push(" AND raised_at >= ").push_bind(from);
    }
    if let Some(to) = filter.to_ms {
        q.push(" AND raised_at < ").push_bind(to);
    }
    if let Some(text) = filter.text.as_deref().filter(|t| !t.is_empty()) {
        let pattern = like_pattern(text);
        q.push(" AND (+sensor LIKE ")
            .push_bind(pattern.clone())
            .push(" ESCAPE '\\' OR +rule LIKE ")
            .push_bind(pattern.clone())
            .push(" ESCAPE '\\' OR json_extract(doc, '$.message') LIKE ")
            .push_bind(pattern)
            .push(" ESCAPE '\\')");
    }
    if let Some(c) = after {
        // Keyset: strictly after the cursor in (raised_at DESC, id DESC) order. The id term is
        // `+id` so the primary key never drives the scan.
        q.push(" AND raised_at <= ")
            .push_bind(c.raised_at)
            .push(" AND (raised_at < ")
            .push_bind(c.raised_at)
            .push(" OR +id < ")
            .push_bind(c.id)
            .push(")");
    }
    q.push(" ORDER BY raised_at DESC, id DESC LIMIT ")
        .push_bind(i64::from(limit));
}

/// The page query of `filter` after `after`, `limit` rows: one arm, or one per school of a
/// scope of a few schools merged (each arm is one index range, so a rare class in one of
/// three schools is not a scan of every alarm).
fn page_query(
    filter: &AlarmFilter,
    after: Option<HistoryCursor>,
    limit: u32,
) -> QueryBuilder<'static, Sqlite> {
    let mut q = QueryBuilder::new("");
    match filter.schools.as_deref() {
        None => push_arm(&mut q, filter, Schools::All, after, limit),
        Some([]) => {
            q.push("SELECT id, doc, building, raised_at FROM alarms WHERE 0 = 1");
        }
        Some([school]) => push_arm(&mut q, filter, Schools::One(school), after, limit),
        Some(list) if list.len() <= MAX_SCHOOL_ARMS => {
            for (i, school) in list.iter().enumerate() {
                if i > 0 {
                    q.push(" UNION ALL ");
                }
                q.push("SELECT * FROM (");
                push_arm(&mut q, filter, Schools::One(school), after, limit);
                q.push(")");
            }
            q.push(" ORDER BY raised_at DESC, id DESC LIMIT ")
                .push_bind(i64::from(limit));
        }
        Some(list) => push_arm(&mut q, filter, Schools::AnyOf(list), after, limit),
    }
    q
}

impl LocalStore {
    /// A page of the alarm history: at most `limit` alarms matching `filter`, newest raised
    /// first, after `after`.
    pub async fn alarm_history(
        &self,
        filter: &AlarmFilter,
        after: Option<HistoryCursor>,
        limit: u32,
    ) -> Result<AlarmPage, StoreError> {
        let limit = limit.max(1);
        // The API's read-only pool: a history page never takes a connection the journal needs.
        let rows = page_query(filter, after, limit)
            .build()
            .fetch_all(self.read_pool())
            .await?;
        let rows = rows
            .iter()
            .map(|row| {
                let alarm = super::local::decode_alarm(row.get(0), row.get(1))?;
                Ok(HistoryRow {
                    alarm,
                    building: row.get(2),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let next = if rows.len() == limit as usize {
            rows.last().map(|r| HistoryCursor {
                raised_at: r.alarm.raised_at,
                id: r.alarm.id as i64,
            })
        } else {
            None
        };
        Ok(AlarmPage { rows, next })
    }

    /// The query plan of a page (for the tests: no page may sort).
    #[cfg(test)]
    async fn history_plan(&self, filter: &AlarmFilter, after: Option<HistoryCursor>) -> String {
        let q = page_query(filter, after, 50);
        let sql = format!("EXPLAIN QUERY PLAN {}", q.sql());
        let mut explain = sqlx::query(&sql);
        // Re-bind by building the same query again and taking its arguments is not possible
        // with QueryBuilder; bind NULLs instead: the plan does not depend on the values.
        for _ in 0..sql.matches('?').count() {
            explain = explain.bind(None::<i64>);
        }
        let rows = explain.fetch_all(self.pool()).await.unwrap_or_default();
        rows.iter()
            .map(|r| r.get::<String, _>(3))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Deletes cleared alarms raised before `before_ms` that are not among the newest
    /// `keep_newest`, with their journal, `batch` alarms per transaction (so the core's journal
    /// writes wait for one small transaction at most). An alarm with a journal row an outbox
    /// consumer has not finished with stays. Returns the number of alarms deleted.
    pub async fn prune_alarms(
        &self,
        before_ms: i64,
        keep_newest: u64,
        batch: u32,
    ) -> Result<u64, StoreError> {
        let batch = batch.max(1);
        let offset = i64::try_from(keep_newest.saturating_sub(1)).unwrap_or(i64::MAX);
        // The oldest id of the newest `keep_newest` (ids grow with time); none: keep all.
        let keep_from: Option<i64> =
            sqlx::query_scalar("SELECT id FROM alarms ORDER BY id DESC LIMIT 1 OFFSET ?")
                .bind(offset)
                .fetch_optional(self.pool())
                .await?;
        let Some(keep_from) = keep_from else {
            return Ok(0);
        };
        let mut deleted = 0;
        let mut from_id = i64::MIN;
        loop {
            let mut tx = self.pool().begin().await?;
            let read_up_to: i64 = sqlx::query_scalar(
                "SELECT COALESCE(MIN(seq), 9223372036854775807) FROM outbox_cursors",
            )
            .fetch_one(&mut *tx)
            .await?;
            let candidates: Vec<(i64, bool)> = sqlx::query_as(
                "SELECT id, NOT EXISTS (SELECT 1 FROM alarm_journal j \
                   WHERE j.alarm_id = alarms.id AND j.seq > ?) \
                 FROM alarms WHERE id >= ? AND id < ? AND +state = ? AND +raised_at < ? \
                 ORDER BY id LIMIT ?",
            )
            .bind(read_up_to)
            .bind(from_id)
            .bind(keep_from)
            .bind(AlarmState::Cleared.as_str())
            .bind(before_ms)
            .bind(i64::from(batch))
            .fetch_all(&mut *tx)
            .await?;
            let Some(&(last, _)) = candidates.last() else {
                break;
            };
            for &(id, all_read) in &candidates {
                if !all_read {
                    continue;
                }
                sqlx::query("DELETE FROM alarm_journal WHERE alarm_id = ?")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM alarms WHERE id = ?")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                deleted += 1;
            }
            tx.commit().await?;
            if candidates.len() < batch as usize {
                break;
            }
            from_id = last.saturating_add(1);
        }
        Ok(deleted)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::alarms::{AlarmEvent, Transition};
    use crate::model::{SensorId, Severity};
    use crate::store::StorageConfig;

    async fn store(dir: &std::path::Path) -> LocalStore {
        let config = StorageConfig {
            data_dir: dir.to_path_buf(),
            ..StorageConfig::default()
        };
        LocalStore::open(&config).await.unwrap()
    }

    fn alarm(id: u64, school: &str, class: AlarmClass, state: AlarmState, at: i64) -> AlarmEvent {
        let sensor = SensorId::new(school, &format!("dev-{}", id % 7), "temp_c");
        AlarmEvent {
            transition: Transition::Raised,
            at,
            user: "system".into(),
            comment: None,
            false_alarm: false,
            disposition: None,
            alarm: Alarm {
                id,
                school: sensor.school.clone(),
                device: sensor.device.clone(),
                point: sensor.point.clone(),
                sensor,
                rule: "temp_high".into(),
                class,
                severity: Severity::Alarm,
                state,
                value: None,
                threshold: Some(60.0),
                message: format!("温度过高 #{id}"),
                raised_at: at,
                updated_at: at,
                reading_ts: at,
                cleared_at: None,
                condition_active: true,
                acked_by: None,
                acked_at: None,
                ack_comment: None,
                shelved: None,
                drill: false,
                occurrences: 1,
            },
        }
    }

    /// 300 alarms over two schools, every third a fire, every other one cleared, the ones of
    /// device dev-0 in building 实验楼.
    async fn filled(dir: &std::path::Path) -> LocalStore {
        let store = store(dir).await;
        fill(&store).await;
        store
    }

    async fn fill(store: &LocalStore) {
        let events: Vec<AlarmEvent> = (1..=300)
            .map(|id| {
                let school = if id % 2 == 0 { "xhsy" } else { "dfzx" };
                let class = if id % 3 == 0 {
                    AlarmClass::Fire
                } else {
                    AlarmClass::Supervisory
                };
                let state = if id % 4 < 2 {
                    AlarmState::Cleared
                } else {
                    AlarmState::ActiveUnacked
                };
                // Pairs of alarms share a raise time, so the id breaks ties.
                alarm(id, school, class, state, 1_000_000 + (id as i64 / 2) * 1000)
            })
            .collect();
        store
            .record_placed_events(&events, |a| {
                (&*a.device == "dev-0").then(|| "实验楼".to_string())
            })
            .await
            .unwrap();
    }

    /// Every page of `filter`, `limit` at a time.
    async fn all_pages(store: &LocalStore, filter: &AlarmFilter, limit: u32) -> Vec<HistoryRow> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = store.alarm_history(filter, after, limit).await.unwrap();
            out.extend(page.rows);
            match page.next {
                Some(next) => after = Some(next),
                None => return out,
            }
        }
    }

    #[tokio::test]
    async fn pages_cover_every_matching_alarm_once_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = filled(dir.path()).await;
        let filters = [
            AlarmFilter::default(),
            AlarmFilter {
                schools: Some(vec!["xhsy".into()]),
                class: Some(AlarmClass::Fire),
                ..Default::default()
            },
            AlarmFilter {
                state: Some(AlarmState::Cleared),
                from_ms: Some(1_050_000),
                to_ms: Some(1_120_000),
                ..Default::default()
            },
            AlarmFilter {
                building: Some("实验楼".into()),
                ..Default::default()
            },
            AlarmFilter {
                schools: Some(vec!["xhsy".into(), "dfzx".into()]),
                text: Some("#1".into()),
                ..Default::default()
            },
            AlarmFilter {
                schools: Some(vec![]),
                ..Default::default()
            },
            AlarmFilter {
                schools: Some(vec!["xhsy".into(), "other".into(), "dfzx".into()]),
                class: Some(AlarmClass::Fire),
                ..Default::default()
            },
        ];
        for filter in &filters {
            let expected: Vec<u64> = (1..=300u64)
                .rev()
                .filter(|&id| {
                    let at = 1_000_000 + (id as i64 / 2) * 1000;
                    let school = if id % 2 == 0 { "xhsy" } else { "dfzx" };
                    filter
                        .schools
                        .as_ref()
                        .is_none_or(|s| s.iter().any(|x| x == school))
                        && filter
                            .class
                            .is_none_or(|c| (c == AlarmClass::Fire) == (id % 3 == 0))
                        && filter
                            .state
                            .is_none_or(|s| (s == AlarmState::Cleared) == (id % 4 < 2))
                        && filter.from_ms.is_none_or(|f| at >= f)
                        && filter.to_ms.is_none_or(|t| at < t)
                        && (filter.building.is_none() || id % 7 == 0)
                        && filter
                            .text
                            .as_deref()
                            .is_none_or(|t| format!("温度过高 #{id}").contains(t))
                })
                .collect();
            for limit in [1, 7, 50, 1000] {
                let got: Vec<u64> = all_pages(&store, filter, limit)
                    .await
                    .iter()
                    .map(|r| r.alarm.id)
                    .collect();
                assert_eq!(got, expected, "{filter:?}, limit {limit}");
            }
        }
        let page = store
            .alarm_history(
                &AlarmFilter {
                    building: Some("实验楼".into()),
                    ..Default::default()
                },
                None,
                5,
            )
            .await
            .unwrap();
        assert!(page
            .rows
            .iter()
            .all(|r| r.building.as_deref() == Some("实验楼")));
    }

    #[tokio::test]
    async fn every_page_reads_index_ranges_and_a_single_range_page_never_sorts() {
        let dir = tempfile::tempdir().unwrap();
        let store = filled(dir.path()).await;
        let after = Some(HistoryCursor {
            raised_at: 1_100_000,
            id: 200,
        });
        let many: Vec<String> = (0..=MAX_SCHOOL_ARMS).map(|i| format!("s{i}")).collect();
        // (filter, the index every arm must use)
        let cases = [
            (AlarmFilter::default(), "alarms_raised"),
            (
                AlarmFilter {
                    state: Some(AlarmState::Cleared),
                    ..Default::default()
                },
                "alarms_state_raised",
            ),
            (
                AlarmFilter {
                    state: Some(AlarmState::Cleared),
                    class: Some(AlarmClass::Fire),
                    ..Default::default()
                },
                "alarms_class_raised",
            ),
            (
                AlarmFilter {
                    schools: Some(vec!["xhsy".into()]),
                    ..Default::default()
                },
                "alarms_school_raised",
            ),
            (
                AlarmFilter {
                    schools: Some(vec!["a".into(), "b".into(), "c".into()]),
                    class: Some(AlarmClass::Fire),
                    state: Some(AlarmState::Cleared),
                    ..Default::default()
                },
                "alarms_school_class_raised",
            ),
            (
                AlarmFilter {
                    schools: Some(vec!["xhsy".into()]),
                    state: Some(AlarmState::ActiveUnacked),
                    class: Some(AlarmClass::Fire),
                    ..Default::default()
                },
                "alarms_school_state_raised",
            ),
            (
                AlarmFilter {
                    schools: Some(vec!["xhsy".into()]),
                    state: Some(AlarmState::ActiveUnacked),
                    building: Some("实验楼".into()),
                    from_ms: Some(1),
                    to_ms: Some(2),
                    text: Some("x".into()),
                    ..Default::default()
                },
                "alarms_school_building_raised",
            ),
            (
                AlarmFilter {
                    schools: Some(many),
                    class: Some(AlarmClass::Gas),
                    ..Default::default()
                },
                "alarms_class_raised",
            ),
        ];
        for (filter, index) in &cases {
            let arms = match filter.schools.as_ref().map(Vec::len) {
                Some(n) if n <= MAX_SCHOOL_ARMS => n,
                _ => 1,
            };
            for cursor in [None, after] {
                let plan = store.history_plan(filter, cursor).await;
                let reads: Vec<&str> = plan.lines().filter(|l| l.contains(" alarms ")).collect();
                assert_eq!(reads.len(), arms, "{filter:?}:\n{plan}");
                for read in reads {
                    assert!(
                        read.contains(&format!("USING INDEX {index}")),
                        "{filter:?} should read {index}:\n{plan}"
                    );
                }
                if arms == 1 {
                    assert!(!plan.contains("TEMP B-TREE"), "{filter:?} sorts:\n{plan}");
                }
            }
        }
    }

    #[tokio::test]
    async fn retention_keeps_the_newest_and_the_open_and_what_an_outbox_consumer_has_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        // A consumer from the start, that has read nothing yet.
        let mut reader = store.outbox_reader("tickets").await.unwrap();
        fill(&store).await;
        assert_eq!(store.prune_alarms(i64::MAX, 100, 16).await.unwrap(), 0);
        assert_eq!(
            all_pages(&store, &AlarmFilter::default(), 1000).await.len(),
            300
        );
        // Once it has read them, the cleared alarms older than the newest 100 go with their
        // journal: of ids 1..=200, the cleared ones (id % 4 < 2), 100.
        reader.commit(i64::MAX / 2).await.unwrap();
        assert_eq!(store.prune_alarms(i64::MAX, 100, 16).await.unwrap(), 100);
        let left = all_pages(&store, &AlarmFilter::default(), 1000).await;
        assert_eq!(left.len(), 200);
        assert!(left
            .iter()
            .all(|r| r.alarm.id > 200 || r.alarm.state != AlarmState::Cleared));
        assert!(store.journal(4).await.unwrap().is_empty());
        assert_eq!(store.journal(5).await.unwrap().len(), 0);
        assert_eq!(store.journal(6).await.unwrap().len(), 1, "open alarms stay");
        assert_eq!(
            store.journal(204).await.unwrap().len(),
            1,
            "the newest stay"
        );
        // Nothing raised before the cutoff: nothing goes.
        assert_eq!(store.prune_alarms(0, 1, 16).await.unwrap(), 0);
        assert!(store.alarm(204).await.unwrap().is_some());
    }
}

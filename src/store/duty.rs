//! The duty log in the local store: shifts signed on and off (migration 0022), and what a
//! day's log reads besides them — the alarm journal's transitions of a room's schools and the
//! drills — on the API's read-only pool, never through the core.

use serde::Serialize;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::{LocalStore, StoreError};
use crate::drills::Drill;

/// One shift of one person in one room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shift {
    pub id: i64,
    pub room: String,
    pub user: String,
    pub display_name: String,
    pub on_at: i64,
    pub off_at: Option<i64>,
    pub off_by: Option<String>,
    /// Handover notes for the next shift.
    pub notes: Option<String>,
}

/// A journaled transition of an alarm, as the duty log lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DutyEvent {
    pub seq: i64,
    pub at: i64,
    /// `raised`, `acknowledged`, `reset`, `action`, … (see [`LOGGED_TRANSITIONS`]).
    pub transition: String,
    pub user: String,
    pub comment: Option<String>,
    pub false_alarm: bool,
    /// What a reset said the alarm was: `real`, `false` or `test` (fire alarms).
    pub disposition: Option<String>,
    pub alarm_id: i64,
    pub school: String,
    pub class: String,
    pub sensor: String,
    pub building: Option<String>,
    pub message: String,
    pub raised_at: i64,
    pub drill: bool,
}

/// The transitions a duty log lists: what happened and what the staff did. Notifications
/// (one per channel and step) and de-escalations are in the alarm's own journal.
pub const LOGGED_TRANSITIONS: [&str; 9] = [
    "raised",
    "reraised",
    "escalated",
    "acknowledged",
    "shelved",
    "unshelved",
    "reset",
    "cleared",
    "action",
];

const SHIFT_COLUMNS: &str = "id, room, user, display_name, on_at, off_at, off_by, notes";

fn shift_of(r: &sqlx::sqlite::SqliteRow) -> Shift {
    Shift {
        id: r.get(0),
        room: r.get(1),
        user: r.get(2),
        display_name: r.get(3),
        on_at: r.get(4),
        off_at: r.get(5),
        off_by: r.get(6),
        notes: r.get(7),
    }
}

fn push_in(q: &mut QueryBuilder<'static, Sqlite>, column: &str, values: &[String]) {
    q.push(format!(" AND {column} IN ("));
    let mut items = q.separated(", ");
    for v in values {
        items.push_bind(v.clone());
    }
    q.push(")");
}

impl LocalStore {
    /// Signs `user` on in `room` at `at`. `None`: they are already on duty there (the unique
    /// index on open shifts decides, so two sign-ons at once cannot both succeed).
    pub async fn sign_on(
        &self,
        room: &str,
        user: &str,
        display_name: &str,
        at: i64,
    ) -> Result<Option<Shift>, StoreError> {
        let inserted = sqlx::query_scalar::<_, i64>(
            "INSERT INTO duty_shifts (room, user, display_name, on_at) VALUES (?, ?, ?, ?) \
             RETURNING id",
        )
        .bind(room)
        .bind(user)
        .bind(display_name)
        .bind(at)
        .fetch_one(self.pool())
        .await;
        match inserted {
            Ok(id) => Ok(Some(Shift {
                id,
                room: room.to_string(),
                user: user.to_string(),
                display_name: display_name.to_string(),
                on_at: at,
                off_at: None,
                off_by: None,
                notes: None,
            })),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// One shift.
    pub async fn shift(&self, id: i64) -> Result<Option<Shift>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {SHIFT_COLUMNS} FROM duty_shifts WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(self.read_pool())
        .await?;
        Ok(row.as_ref().map(shift_of))
    }

    /// Signs shift `id` off with handover `notes`. `None`: it was already signed off.
    pub async fn sign_off(
        &self,
        id: i64,
        off_by: &str,
        notes: Option<&str>,
        at: i64,
    ) -> Result<Option<Shift>, StoreError> {
        let row = sqlx::query(&format!(
            "UPDATE duty_shifts SET off_at = MAX(?, on_at), off_by = ?, notes = ? \
             WHERE id = ? AND off_at IS NULL RETURNING {SHIFT_COLUMNS}"
        ))
        .bind(at)
        .bind(off_by)
        .bind(notes)
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(shift_of))
    }

    /// Who is on duty in `room` now, in sign-on order.
    pub async fn open_shifts(&self, room: &str) -> Result<Vec<Shift>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SHIFT_COLUMNS} FROM duty_shifts WHERE room = ? AND off_at IS NULL \
             ORDER BY on_at, id"
        ))
        .bind(room)
        .fetch_all(self.read_pool())
        .await?;
        Ok(rows.iter().map(shift_of).collect())
    }

    /// The shift of `room` signed off last (its notes are for the shift now on).
    pub async fn last_handover(&self, room: &str) -> Result<Option<Shift>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {SHIFT_COLUMNS} FROM duty_shifts WHERE room = ? AND off_at IS NOT NULL \
             ORDER BY off_at DESC, id DESC LIMIT 1"
        ))
        .bind(room)
        .fetch_optional(self.read_pool())
        .await?;
        Ok(row.as_ref().map(shift_of))
    }

    /// The shifts of `room` on duty at some time in `[from, to)`, in sign-on order.
    pub async fn shifts_between(
        &self,
        room: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<Shift>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SHIFT_COLUMNS} FROM duty_shifts WHERE room = ? AND on_at < ? \
             AND (off_at IS NULL OR off_at > ?) ORDER BY on_at, id"
        ))
        .bind(room)
        .bind(to)
        .bind(from)
        .fetch_all(self.read_pool())
        .await?;
        Ok(rows.iter().map(shift_of).collect())
    }

    /// Every shift open now or signed off at or after `since` (what the API keeps in memory).
    pub async fn shifts_since(&self, since: i64) -> Result<Vec<Shift>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SHIFT_COLUMNS} FROM duty_shifts WHERE off_at IS NULL OR off_at >= ? \
             ORDER BY id"
        ))
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(shift_of).collect())
    }

    /// The logged transitions ([`LOGGED_TRANSITIONS`]) of alarms of `schools` journaled in
    /// `[from, to)`, oldest first, at most `limit` (one range of `alarm_journal_at`).
    pub async fn duty_events(
        &self,
        schools: &[String],
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<DutyEvent>, StoreError> {
        if schools.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = QueryBuilder::new(
            "SELECT j.seq, j.at, j.transition, j.user, j.comment, j.false_alarm, j.alarm_id, \
             a.school, a.class, a.sensor, a.building, \
             COALESCE(json_extract(a.doc, '$.message'), ''), a.raised_at, \
             COALESCE(json_extract(a.doc, '$.drill'), 0), json_extract(j.event, '$.disposition') \
             FROM alarm_journal j INDEXED BY alarm_journal_at JOIN alarms a ON a.id = j.alarm_id \
             WHERE j.at >= ",
        );
        q.push_bind(from).push(" AND j.at < ").push_bind(to);
        push_in(&mut q, "a.school", schools);
        let transitions: Vec<String> = LOGGED_TRANSITIONS.iter().map(|t| t.to_string()).collect();
        push_in(&mut q, "j.transition", &transitions);
        q.push(" ORDER BY j.at, j.seq LIMIT ")
            .push_bind(i64::from(limit));
        let rows = q.build().fetch_all(self.read_pool()).await?;
        Ok(rows
            .iter()
            .map(|r| DutyEvent {
                seq: r.get(0),
                at: r.get(1),
                transition: r.get(2),
                user: r.get(3),
                comment: r.get(4),
                false_alarm: r.get::<i64, _>(5) != 0,
                alarm_id: r.get(6),
                school: r.get(7),
                class: r.get(8),
                sensor: r.get(9),
                building: r.get(10),
                message: r.get(11),
                raised_at: r.get(12),
                drill: r.get::<i64, _>(13) != 0,
                disposition: r.get(14),
            })
            .collect())
    }

    /// The drills of `schools` that ran at some time in `[from, to)`, oldest first.
    pub async fn duty_drills(
        &self,
        schools: &[String],
        from: i64,
        to: i64,
    ) -> Result<Vec<Drill>, StoreError> {
        if schools.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = QueryBuilder::new(
            "SELECT id, school, building, started_by, reason, started_at, until, ended_at, \
             ended_by FROM drills WHERE started_at < ",
        );
        q.push_bind(to)
            .push(" AND COALESCE(ended_at, until) >= ")
            .push_bind(from);
        push_in(&mut q, "school", schools);
        q.push(" ORDER BY started_at, id LIMIT 1000");
        let rows = q.build().fetch_all(self.read_pool()).await?;
        Ok(rows.iter().map(super::drills::drill_of).collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::StorageConfig;

    #[tokio::test]
    async fn one_open_shift_per_user_and_room_and_a_shift_signs_off_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(&StorageConfig {
            data_dir: dir.path().to_path_buf(),
            ..StorageConfig::default()
        })
        .await
        .unwrap();
        let a = store.sign_on("中控室", "li", "李明", 1000).await.unwrap();
        let a = a.unwrap();
        assert!(store
            .sign_on("中控室", "li", "李明", 1001)
            .await
            .unwrap()
            .is_none());
        // Another room, another person: fine.
        assert!(store
            .sign_on("北门", "li", "李明", 1002)
            .await
            .unwrap()
            .is_some());
        assert!(store
            .sign_on("中控室", "wang", "王", 1003)
            .await
            .unwrap()
            .is_some());
        assert_eq!(store.open_shifts("中控室").await.unwrap().len(), 2);
        let off = store
            .sign_off(a.id, "li", Some("3 号柜门锁坏"), 5000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(off.off_at, Some(5000));
        assert!(store
            .sign_off(a.id, "li", None, 6000)
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            store.last_handover("中控室").await.unwrap().unwrap().notes,
            Some("3 号柜门锁坏".into())
        );
        // Signed off, li may sign on again.
        assert!(store
            .sign_on("中控室", "li", "李明", 7000)
            .await
            .unwrap()
            .is_some());
        assert_eq!(
            store.shifts_between("中控室", 0, 4000).await.unwrap().len(),
            2
        );
        assert_eq!(
            store
                .shifts_between("中控室", 5000, 6000)
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(store.shifts_since(6000).await.unwrap().len(), 3);
    }
}

//! Drills in the local store: started, ended, and the active ones loaded at start.

use sqlx::Row;

use super::{LocalStore, StoreError};
use crate::drills::{Drill, NewDrill};

/// A drill from a row of `id, school, building, started_by, reason, started_at, until,
/// ended_at, ended_by` (every reader selects these, in this order).
pub(super) fn drill_of(r: &sqlx::sqlite::SqliteRow) -> Drill {
    Drill {
        id: u64::try_from(r.get::<i64, _>(0)).unwrap_or(0),
        school: r.get(1),
        building: r.get(2),
        started_by: r.get(3),
        reason: r.get(4),
        started_at: r.get(5),
        until: r.get(6),
        ended_at: r.get(7),
        ended_by: r.get(8),
    }
}

impl LocalStore {
    /// Stores a new drill; returns it with its id.
    pub async fn insert_drill(&self, new: &NewDrill, started_at: i64) -> Result<Drill, StoreError> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO drills (school, building, started_by, reason, started_at, until) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&new.school)
        .bind(&new.building)
        .bind(&new.started_by)
        .bind(&new.reason)
        .bind(started_at)
        .bind(new.until)
        .fetch_one(self.pool())
        .await?;
        Ok(Drill {
            id: u64::try_from(id).unwrap_or(0),
            school: new.school.clone(),
            building: new.building.clone(),
            started_by: new.started_by.clone(),
            reason: new.reason.clone(),
            started_at,
            until: new.until,
            ended_at: None,
            ended_by: None,
        })
    }

    /// Records that a drill ended.
    pub async fn end_drill(&self, drill: &Drill) -> Result<(), StoreError> {
        sqlx::query("UPDATE drills SET ended_at = ?, ended_by = ? WHERE id = ?")
            .bind(drill.ended_at)
            .bind(&drill.ended_by)
            .bind(drill.id as i64)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Drills not yet ended (some may have expired while the gateway was down).
    pub async fn active_drills(&self) -> Result<Vec<Drill>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, school, building, started_by, reason, started_at, until, ended_at, ended_by \
             FROM drills WHERE ended_at IS NULL ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(drill_of).collect())
    }

    /// Drills started in [from, to), of `school` if given, newest first, at most `limit`.
    pub async fn drill_history(
        &self,
        school: Option<&str>,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<Drill>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, school, building, started_by, reason, started_at, until, ended_at, ended_by \
             FROM drills WHERE started_at >= ? AND started_at < ? AND (? IS NULL OR school = ?) \
             ORDER BY started_at DESC, id DESC LIMIT ?",
        )
        .bind(from)
        .bind(to)
        .bind(school)
        .bind(school)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(drill_of).collect())
    }
}

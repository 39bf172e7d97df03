//! Incident reports (信息报告, issue 16 item 3): what happened at a real fire — when, where,
//! what was done, casualties, who called 119 and when — written by the school and read by the
//! bureau. A `fire` alarm reset as a real fire opens a draft from the ticket policy's outbox
//! consumer ([`Tickets::open_incident_for_alarm`], once per (school, alarm) by a unique index,
//! so a replay or a second gateway opens nothing twice, and a reset while the ticket database
//! is down opens it once the database is back). People file one by hand or fill in the draft
//! (`POST /api/v1/incidents`), edit it and submit it (`PATCH …/{id}`); a submitted report is
//! frozen.
//!
//! Stored in the ticket database beside the tickets (`migrations/tickets/0004_incidents.sql`),
//! so the gateways of a district that share one PostgreSQL see every school's reports.

use serde::{Deserialize, Serialize};
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Row};

use super::store::{next_number, Bind, Conditions};
use super::{place_words, trimmed, TicketError, Tickets};
use crate::access::{Principal, Role};
use crate::alarms::{Alarm, AlarmEvent};
use crate::model::{now_ms, AlarmClass};

/// Where a report is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    /// Opened (by a reset as a real fire, or by hand) and still being written.
    Draft,
    /// Submitted: frozen, what the bureau files.
    Submitted,
}

impl IncidentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Draft => "draft",
            IncidentStatus::Submitted => "submitted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [IncidentStatus::Draft, IncidentStatus::Submitted]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// One incident report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// `<SCHOOLCODE>-INC-<YYYYMM>-<NNNN>`.
    pub id: String,
    pub school: String,
    /// The alarm reset as a real fire (an alarm id of the gateway serving the school).
    pub alarm_id: Option<i64>,
    pub sensor: Option<String>,
    pub status: IncidentStatus,
    pub version: i64,
    /// Unix ms: when it happened (the alarm's raise for a report opened by a reset).
    pub occurred_at: i64,
    pub location: String,
    pub building: Option<String>,
    pub room: Option<String>,
    pub device: Option<String>,
    pub what_happened: String,
    pub actions_taken: String,
    pub deaths: i64,
    pub injuries: i64,
    /// Who called the fire brigade (119), and when (Unix ms).
    pub reported_119_by: Option<String>,
    pub reported_119_at: Option<i64>,
    pub submitted_by: Option<String>,
    pub submitted_at: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_by: String,
    pub updated_at: i64,
}

/// The body of `POST /api/v1/incidents` and `PATCH /api/v1/incidents/{id}`: every field
/// optional; what is given is validated and written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentInput {
    /// POST: the alarm whose draft to fill (or to open a report for). Not on PATCH.
    pub alarm_id: Option<i64>,
    /// POST without `alarm_id`: the school (the alarm's otherwise). Not on PATCH.
    pub school: Option<String>,
    pub occurred_at: Option<i64>,
    /// Where, in words (default: building and room).
    pub location: Option<String>,
    pub building: Option<String>,
    pub room: Option<String>,
    pub device: Option<String>,
    pub what_happened: Option<String>,
    pub actions_taken: Option<String>,
    pub deaths: Option<i64>,
    pub injuries: Option<i64>,
    pub reported_119_by: Option<String>,
    pub reported_119_at: Option<i64>,
    /// `submitted` submits the report (then it is frozen); `draft` keeps it a draft.
    pub status: Option<IncidentStatus>,
    /// PATCH: the version last seen (required; a stale one is refused with 409).
    pub version: Option<i64>,
}

/// What the list filters on. `scope` is the caller's schools (`None` = every school).
#[derive(Clone, Debug, Default)]
pub struct IncidentFilter {
    pub scope: Option<Vec<String>>,
    pub school: Option<String>,
    pub status: Option<IncidentStatus>,
    /// The report of this alarm (with `school`: alarm ids are per gateway).
    pub alarm_id: Option<i64>,
    /// occurred_at ≥ from (Unix ms).
    pub from: Option<i64>,
    /// occurred_at < to (Unix ms).
    pub to: Option<i64>,
    pub limit: i64,
    pub offset: i64,
}

/// Longest texts, in characters.
const MAX_PLACE_CHARS: usize = 200;
const MAX_NAME_CHARS: usize = 100;
const MAX_TEXT_CHARS: usize = 4000;
/// Casualty counts above this are a typing error, not a school fire.
const MAX_CASUALTIES: i64 = 10_000;
/// Times before 2000-01-01 are refused (a time in seconds, not ms, lands there).
const EARLIEST_MS: i64 = 946_684_800_000;
/// Times may be this far ahead of the gateway's clock (a phone's clock runs a little fast).
const FUTURE_SLACK_MS: i64 = 10 * 60 * 1000;

const COLUMNS: [&str; 23] = [
    "id",
    "school",
    "alarm_id",
    "sensor",
    "status",
    "version",
    "occurred_at",
    "location",
    "building",
    "room",
    "device",
    "what_happened",
    "actions_taken",
    "deaths",
    "injuries",
    "reported_119_by",
    "reported_119_at",
    "submitted_by",
    "submitted_at",
    "created_by",
    "created_at",
    "updated_by",
    "updated_at",
];

fn columns() -> &'static [&'static str] {
    &COLUMNS
}

/// Who writes incident reports: the people of the school who handle alarms and hazards.
fn may_write(who: &Principal) -> bool {
    matches!(
        who.role,
        Some(Role::Operator | Role::LabManager | Role::SchoolSafety | Role::Admin)
    )
}

fn invalid(message: impl Into<String>) -> TicketError {
    TicketError::Invalid(message.into())
}

/// `value` trimmed, empty → `None`, refused above `max` characters.
fn text(name: &str, value: &Option<String>, max: usize) -> Result<Option<String>, TicketError> {
    let value = trimmed(value);
    match &value {
        Some(v) if v.chars().count() > max => {
            Err(invalid(format!("`{name}` is longer than {max} characters")))
        }
        _ => Ok(value),
    }
}

fn time(name: &str, value: Option<i64>, now: i64) -> Result<Option<i64>, TicketError> {
    match value {
        Some(t) if !(EARLIEST_MS..=now + FUTURE_SLACK_MS).contains(&t) => Err(invalid(format!(
            "`{name}` must be a Unix time in ms between 2000-01-01 and now"
        ))),
        other => Ok(other),
    }
}

fn count(name: &str, value: Option<i64>) -> Result<Option<i64>, TicketError> {
    match value {
        Some(n) if !(0..=MAX_CASUALTIES).contains(&n) => Err(invalid(format!(
            "`{name}` must be a number from 0 to {MAX_CASUALTIES}"
        ))),
        other => Ok(other),
    }
}

/// Writes the given fields of `input` over `incident` (validated), and submits it when asked.
fn apply(
    incident: &mut Incident,
    input: &IncidentInput,
    who: &str,
    now: i64,
) -> Result<(), TicketError> {
    if let Some(t) = time("occurred_at", input.occurred_at, now)? {
        incident.occurred_at = t;
    }
    let building = text("building", &input.building, MAX_PLACE_CHARS)?;
    let room = text("room", &input.room, MAX_PLACE_CHARS)?;
    if building.is_some() || room.is_some() {
        incident.building = building.or(incident.building.take());
        incident.room = room.or(incident.room.take());
        incident.location = place_words(incident.building.as_deref(), incident.room.as_deref());
    }
    if let Some(location) = text("location", &input.location, MAX_PLACE_CHARS)? {
        incident.location = location;
    }
    if let Some(device) = text("device", &input.device, MAX_PLACE_CHARS)? {
        incident.device = Some(device);
    }
    if input.what_happened.is_some() {
        incident.what_happened =
            text("what_happened", &input.what_happened, MAX_TEXT_CHARS)?.unwrap_or_default();
    }
    if input.actions_taken.is_some() {
        incident.actions_taken =
            text("actions_taken", &input.actions_taken, MAX_TEXT_CHARS)?.unwrap_or_default();
    }
    if let Some(n) = count("deaths", input.deaths)? {
        incident.deaths = n;
    }
    if let Some(n) = count("injuries", input.injuries)? {
        incident.injuries = n;
    }
    if input.reported_119_by.is_some() {
        incident.reported_119_by = text("reported_119_by", &input.reported_119_by, MAX_NAME_CHARS)?;
    }
    if let Some(t) = time("reported_119_at", input.reported_119_at, now)? {
        incident.reported_119_at = Some(t);
    }
    if incident.reported_119_by.is_some() != incident.reported_119_at.is_some() {
        return Err(invalid(
            "`reported_119_by` and `reported_119_at` go together: who called 119, and when",
        ));
    }
    if incident.location.trim().is_empty() {
        return Err(invalid("`location` (or building and room) is required"));
    }
    if input.status == Some(IncidentStatus::Submitted) {
        for (name, value) in [
            ("what_happened", &incident.what_happened),
            ("actions_taken", &incident.actions_taken),
        ] {
            if value.trim().is_empty() {
                return Err(invalid(format!(
                    "a report is submitted with `{name}` filled in"
                )));
            }
        }
        incident.status = IncidentStatus::Submitted;
        incident.submitted_by = Some(who.to_string());
        incident.submitted_at = Some(now);
    }
    incident.updated_by = who.to_string();
    incident.updated_at = now;
    Ok(())
}

impl Tickets {
    /// The draft a fire alarm reset as a real fire opens, with time and place from the alarm.
    fn incident_draft(&self, alarm: &Alarm, by: &str, now: i64) -> Incident {
        let place = self.config.place_of(&alarm.school, &alarm.device);
        let building = place.and_then(|p| p.building.clone());
        let room = place.and_then(|p| p.room.clone());
        let mut location = place_words(building.as_deref(), room.as_deref());
        if location.is_empty() {
            location = alarm.device.to_string();
        }
        Incident {
            id: String::new(),
            school: alarm.school.to_string(),
            alarm_id: Some(i64::try_from(alarm.id).unwrap_or(i64::MAX)),
            sensor: Some(alarm.sensor.to_string()),
            status: IncidentStatus::Draft,
            version: 1,
            occurred_at: alarm.raised_at,
            location,
            building,
            room,
            device: Some(alarm.device.to_string()),
            // The alarm as raised (its message has changed by the reset: back to normal).
            what_happened: format!(
                "{}：传感器 {}，规则 {}{}。",
                match alarm.class {
                    AlarmClass::Fire => "火灾报警",
                    AlarmClass::Gas => "可燃气体报警",
                    _ => "报警",
                },
                alarm.sensor,
                alarm.rule,
                alarm
                    .threshold
                    .map(|t| format!("，阈值 {t}"))
                    .unwrap_or_default()
            ),
            actions_taken: String::new(),
            deaths: 0,
            injuries: 0,
            reported_119_by: None,
            reported_119_at: None,
            submitted_by: None,
            submitted_at: None,
            created_by: by.to_string(),
            created_at: now,
            updated_by: by.to_string(),
            updated_at: now,
        }
    }

    /// Opens the draft report of a fire alarm reset as a real fire (the policy task). Nothing
    /// when the alarm already has one: the report opened by someone's `POST` first, a replay
    /// after a crash, another gateway. The reset's comment goes into "what happened".
    pub async fn open_incident_for_alarm(
        &self,
        event: &AlarmEvent,
    ) -> Result<Option<Incident>, TicketError> {
        let now = now_ms();
        let mut draft = self.incident_draft(&event.alarm, &event.user, now);
        if let Some(comment) = event.comment.as_deref().filter(|c| !c.trim().is_empty()) {
            draft
                .what_happened
                .push_str(&format!("复位说明：{}", comment.trim()));
        }
        let created = self.insert_incident(draft).await?;
        if let Some(i) = &created {
            tracing::info!(incident = %i.id, alarm = event.alarm.id, school = %i.school, "incident report opened by a reset as a real fire");
        }
        Ok(created)
    }

    /// `POST /api/v1/incidents`. With `alarm_id` (an alarm this gateway knows: `alarm`), it
    /// fills in that alarm's draft — opening it if the policy has not yet — unless it was
    /// submitted (409); without, it files a new report (school, time and place required).
    /// Returns the report and whether it was created.
    pub async fn file_incident(
        &self,
        who: &Principal,
        input: IncidentInput,
        alarm: Option<&Alarm>,
    ) -> Result<(Incident, bool), TicketError> {
        if !may_write(who) {
            return Err(TicketError::Forbidden(
                "incident reports are written by an operator, lab_manager, school_safety or admin"
                    .into(),
            ));
        }
        if input.version.is_some() {
            return Err(invalid("`version` belongs to PATCH"));
        }
        let now = now_ms();
        let mut incident = match (input.alarm_id, alarm) {
            (Some(id), None) => {
                return Err(invalid(format!("no alarm {id} on this gateway")));
            }
            (_, Some(alarm)) => {
                if input.school.as_deref().is_some_and(|s| s != &*alarm.school) {
                    return Err(invalid(format!(
                        "alarm {} belongs to school `{}`",
                        alarm.id, alarm.school
                    )));
                }
                self.incident_draft(alarm, &who.name, now)
            }
            (None, None) => {
                let school = trimmed(&input.school)
                    .ok_or_else(|| invalid("`school` (or `alarm_id`) is required"))?;
                if !crate::model::valid_name(&school) {
                    return Err(invalid("`school` must be a school id"));
                }
                let occurred_at = input
                    .occurred_at
                    .ok_or_else(|| invalid("`occurred_at` is required"))?;
                Incident {
                    id: String::new(),
                    school,
                    alarm_id: None,
                    sensor: None,
                    status: IncidentStatus::Draft,
                    version: 1,
                    occurred_at,
                    location: String::new(),
                    building: None,
                    room: None,
                    device: None,
                    what_happened: String::new(),
                    actions_taken: String::new(),
                    deaths: 0,
                    injuries: 0,
                    reported_119_by: None,
                    reported_119_at: None,
                    submitted_by: None,
                    submitted_at: None,
                    created_by: who.name.clone(),
                    created_at: now,
                    updated_by: who.name.clone(),
                    updated_at: now,
                }
            }
        };
        if !who.may_see_school(&incident.school) {
            return Err(TicketError::Forbidden(format!(
                "token is not scoped to school `{}`",
                incident.school
            )));
        }
        let fresh = incident.clone();
        apply(&mut incident, &input, &who.name, now)?;
        if let Some(created) = self.insert_incident(incident).await? {
            return Ok((created, true));
        }
        // The alarm's report exists (the policy opened the draft first): fill it in.
        let alarm_id = fresh.alarm_id.unwrap_or_default();
        let before = self
            .incident_of_alarm(&fresh.school, alarm_id)
            .await?
            .ok_or_else(|| TicketError::Database("incident vanished while filling it".into()))?;
        let input = IncidentInput {
            version: Some(before.version),
            ..input
        };
        Ok((
            self.edit_incident_unchecked(before, &input, who).await?,
            false,
        ))
    }

    /// `PATCH /api/v1/incidents/{id}`: edits (and perhaps submits) a draft.
    pub async fn edit_incident(
        &self,
        who: &Principal,
        id: &str,
        input: IncidentInput,
    ) -> Result<Incident, TicketError> {
        if !may_write(who) {
            return Err(TicketError::Forbidden(
                "incident reports are written by an operator, lab_manager, school_safety or admin"
                    .into(),
            ));
        }
        if input.alarm_id.is_some() || input.school.is_some() {
            return Err(invalid(
                "the alarm and the school of a report do not change",
            ));
        }
        let before = self.incident(who, id).await?;
        self.edit_incident_unchecked(before, &input, who).await
    }

    async fn edit_incident_unchecked(
        &self,
        before: Incident,
        input: &IncidentInput,
        who: &Principal,
    ) -> Result<Incident, TicketError> {
        let expected = input
            .version
            .ok_or_else(|| invalid("`version` (the version you last saw) is required"))?;
        if before.status == IncidentStatus::Submitted {
            return Err(TicketError::Conflict(format!(
                "incident {} was submitted and is frozen",
                before.id
            )));
        }
        if expected != before.version {
            return Err(TicketError::StaleVersion {
                expected,
                current: before.version,
            });
        }
        let mut after = before.clone();
        apply(&mut after, input, &who.name, now_ms())?;
        after.version = before.version + 1;
        let sets: Vec<String> = columns()
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c} = ${}", i + 1))
            .collect();
        let n = columns().len();
        let sql = format!(
            "UPDATE incidents SET {} WHERE id = ${} AND version = ${}",
            sets.join(", "),
            n + 1,
            n + 2
        );
        let updated = bind(sqlx::query(&sql), &after)
            .bind(before.id.clone())
            .bind(before.version)
            .execute(self.store.pool())
            .await
            .map_err(db)?
            .rows_affected();
        if updated == 0 {
            let current = self
                .incident_row(&before.id)
                .await?
                .map(|i| i.version)
                .unwrap_or(before.version);
            return Err(TicketError::StaleVersion { expected, current });
        }
        tracing::info!(incident = %after.id, actor = %who.name, status = after.status.as_str(), "incident report changed");
        Ok(after)
    }

    /// A report the caller may read (another school's is "not found").
    pub async fn incident(&self, who: &Principal, id: &str) -> Result<Incident, TicketError> {
        if who.role.is_none() {
            return Err(TicketError::Forbidden(
                "incident reports need a token".into(),
            ));
        }
        match self.incident_row(id).await? {
            Some(i) if who.may_see_school(&i.school) => Ok(i),
            _ => Err(TicketError::NotFound(id.to_string())),
        }
    }

    /// The reports within the caller's scope, newest first.
    pub async fn incidents(
        &self,
        who: &Principal,
        mut filter: IncidentFilter,
    ) -> Result<Vec<Incident>, TicketError> {
        if who.role.is_none() {
            return Err(TicketError::Forbidden(
                "incident reports need a token".into(),
            ));
        }
        filter.scope = who.scope().map(<[String]>::to_vec);
        let mut c = Conditions::default();
        if !c.school_scope(&filter.scope) {
            return Ok(Vec::new());
        }
        if let Some(s) = &filter.school {
            c.compare("school =", Bind::Text(s.clone()));
        }
        if let Some(s) = filter.status {
            c.compare("status =", Bind::Text(s.as_str().to_string()));
        }
        if let Some(id) = filter.alarm_id {
            c.compare("alarm_id =", Bind::Int(id));
        }
        if let Some(from) = filter.from {
            c.compare("occurred_at >=", Bind::Int(from));
        }
        if let Some(to) = filter.to {
            c.compare("occurred_at <", Bind::Int(to));
        }
        let limit = c.arg(Bind::Int(filter.limit));
        let offset = c.arg(Bind::Int(filter.offset));
        let sql = format!(
            "SELECT {} FROM incidents {} ORDER BY occurred_at DESC, id DESC LIMIT {limit} OFFSET {offset}",
            columns().join(", "),
            c.where_clause()
        );
        let rows = c
            .bind(sqlx::query(&sql))
            .fetch_all(self.store.pool())
            .await
            .map_err(db)?;
        rows.iter().map(incident_from_row).collect()
    }

    /// The report of (school, alarm), if any (no scope check: the policy and `file_incident`).
    pub async fn incident_of_alarm(
        &self,
        school: &str,
        alarm_id: i64,
    ) -> Result<Option<Incident>, TicketError> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM incidents WHERE school = $1 AND alarm_id = $2",
            columns().join(", ")
        ))
        .bind(school.to_string())
        .bind(alarm_id)
        .fetch_optional(self.store.pool())
        .await
        .map_err(db)?;
        row.as_ref().map(incident_from_row).transpose()
    }

    async fn incident_row(&self, id: &str) -> Result<Option<Incident>, TicketError> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM incidents WHERE id = $1",
            columns().join(", ")
        ))
        .bind(id.to_string())
        .fetch_optional(self.store.pool())
        .await
        .map_err(db)?;
        row.as_ref().map(incident_from_row).transpose()
    }

    /// Numbers and inserts a report in one transaction; `None` (and the number given back)
    /// when its alarm already has one.
    async fn insert_incident(
        &self,
        mut incident: Incident,
    ) -> Result<Option<Incident>, TicketError> {
        let code = format!("{}-INC", self.school_code(&incident.school));
        let month = self.month_of(incident.created_at);
        let mut tx = self.store.pool().begin().await.map_err(db)?;
        // The tickets' gap-free counter, under a code of its own per school.
        incident.id = next_number(&mut tx, &code, &month).await?;
        incident.version = 1;
        let placeholders: Vec<String> = (1..=columns().len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "INSERT INTO incidents ({}) VALUES ({}) \
             ON CONFLICT (school, alarm_id) WHERE alarm_id IS NOT NULL DO NOTHING",
            columns().join(", "),
            placeholders.join(", ")
        );
        let inserted = bind(sqlx::query(&sql), &incident)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        if inserted == 0 {
            tx.rollback().await.map_err(db)?;
            return Ok(None);
        }
        tx.commit().await.map_err(db)?;
        Ok(Some(incident))
    }
}

fn bind<'q>(q: Query<'q, Any, AnyArguments<'q>>, i: &Incident) -> Query<'q, Any, AnyArguments<'q>> {
    q.bind(i.id.clone())
        .bind(i.school.clone())
        .bind(i.alarm_id)
        .bind(i.sensor.clone())
        .bind(i.status.as_str().to_string())
        .bind(i.version)
        .bind(i.occurred_at)
        .bind(i.location.clone())
        .bind(i.building.clone())
        .bind(i.room.clone())
        .bind(i.device.clone())
        .bind(i.what_happened.clone())
        .bind(i.actions_taken.clone())
        .bind(i.deaths)
        .bind(i.injuries)
        .bind(i.reported_119_by.clone())
        .bind(i.reported_119_at)
        .bind(i.submitted_by.clone())
        .bind(i.submitted_at)
        .bind(i.created_by.clone())
        .bind(i.created_at)
        .bind(i.updated_by.clone())
        .bind(i.updated_at)
}

fn incident_from_row(r: &AnyRow) -> Result<Incident, TicketError> {
    let text = |c: &str| r.try_get::<String, _>(c).map_err(db);
    let opt = |c: &str| r.try_get::<Option<String>, _>(c).map_err(db);
    let int = |c: &str| r.try_get::<i64, _>(c).map_err(db);
    let opt_int = |c: &str| r.try_get::<Option<i64>, _>(c).map_err(db);
    let status = text("status")?;
    Ok(Incident {
        id: text("id")?,
        school: text("school")?,
        alarm_id: opt_int("alarm_id")?,
        sensor: opt("sensor")?,
        status: IncidentStatus::parse(&status).ok_or_else(|| {
            TicketError::Database(format!("bad status `{status}` in the incident table"))
        })?,
        version: int("version")?,
        occurred_at: int("occurred_at")?,
        location: text("location")?,
        building: opt("building")?,
        room: opt("room")?,
        device: opt("device")?,
        what_happened: text("what_happened")?,
        actions_taken: text("actions_taken")?,
        deaths: int("deaths")?,
        injuries: int("injuries")?,
        reported_119_by: opt("reported_119_by")?,
        reported_119_at: opt_int("reported_119_at")?,
        submitted_by: opt("submitted_by")?,
        submitted_at: opt_int("submitted_at")?,
        created_by: text("created_by")?,
        created_at: int("created_at")?,
        updated_by: text("updated_by")?,
        updated_at: int("updated_at")?,
    })
}

fn db(e: impl std::fmt::Display) -> TicketError {
    TicketError::Database(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank() -> Incident {
        Incident {
            id: "X".into(),
            school: "xhsy".into(),
            alarm_id: None,
            sensor: None,
            status: IncidentStatus::Draft,
            version: 1,
            occurred_at: EARLIEST_MS + 1,
            location: "实验楼 301".into(),
            building: None,
            room: None,
            device: None,
            what_happened: String::new(),
            actions_taken: String::new(),
            deaths: 0,
            injuries: 0,
            reported_119_by: None,
            reported_119_at: None,
            submitted_by: None,
            submitted_at: None,
            created_by: "a".into(),
            created_at: 0,
            updated_by: "a".into(),
            updated_at: 0,
        }
    }

    fn input(v: serde_json::Value) -> IncidentInput {
        serde_json::from_value(v).expect("an input")
    }

    #[test]
    fn inputs_are_validated_before_anything_is_written() {
        let now = EARLIEST_MS + 1_000_000_000;
        let refused = [
            serde_json::json!({"deaths": -1}),
            serde_json::json!({"injuries": MAX_CASUALTIES + 1}),
            serde_json::json!({"occurred_at": 1_700_000_000}),
            serde_json::json!({"occurred_at": now + FUTURE_SLACK_MS + 1}),
            serde_json::json!({"what_happened": "火".repeat(MAX_TEXT_CHARS + 1)}),
            serde_json::json!({"reported_119_by": "王老师"}),
            serde_json::json!({"location": " ", "building": null}),
            serde_json::json!({"status": "submitted"}),
        ];
        for v in refused {
            let mut i = blank();
            if v.get("location").is_some() {
                i.location = String::new();
            }
            let result = apply(&mut i, &input(v.clone()), "b", now);
            assert!(
                matches!(result, Err(TicketError::Invalid(_))),
                "{v}: {result:?}"
            );
        }
        let mut i = blank();
        apply(
            &mut i,
            &input(serde_json::json!({
                "what_happened": " 实验室起火 ", "actions_taken": "疏散并扑救",
                "deaths": 0, "injuries": 2, "reported_119_by": "王老师",
                "reported_119_at": now - 1000, "status": "submitted", "building": "实验楼"
            })),
            "b",
            now,
        )
        .expect("a complete report");
        assert_eq!(i.status, IncidentStatus::Submitted);
        assert_eq!(i.what_happened, "实验室起火");
        assert_eq!(i.injuries, 2);
        assert_eq!(i.location, "实验楼");
        assert_eq!(
            (i.submitted_by.as_deref(), i.updated_by.as_str()),
            (Some("b"), "b")
        );
    }
}

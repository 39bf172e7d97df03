//! Hazard tickets (issue 5): the last stage of the data flow. Alarms become tickets by policy
//! ([`policy`]), inspectors file them by hand (API), and every ticket moves through the
//! rectification [`workflow`] — registered → rectifying → reported → closed, with deferral,
//! rejection and 立查立改 — until someone other than the reporter verifies it. The [`store`]
//! keeps them in SQLite or PostgreSQL with an audit trail; [`export`] writes the monthly ledger.
//! Incident reports of real fires ([`incidents`]) live in the same database.
//!
//! [`Tickets`] is the service the API, the policy task, the supervision job and the CLI share:
//! it checks roles, applies the workflow and writes through the store.
//!
//! Import loop inside this folder, on purpose: `store`, `workflow` and `policy` use the
//! service's [`TicketError`] and [`Tickets`] defined here, and the service uses them.

pub mod config;
pub mod export;
pub mod incidents;
pub mod model;
pub mod policy;
pub mod reports;
pub mod stats;
pub mod store;
pub mod time;
pub mod workflow;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::{Policy, TicketsConfig};
pub use model::{Category, Grade, SourceKind, State, Ticket};
pub use store::{Created, ListFilter, TicketStore};
pub use workflow::{Action, ActionInput};

use crate::access::{Principal, Role};
use crate::model::now_ms;
use model::{Attachment, Occurrence};

/// Why a ticket operation failed; the API maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum TicketError {
    #[error("no ticket `{0}`")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
    #[error("action `{}` is not allowed in state `{}`; allowed: {}", action.as_str(), state.as_str(), allowed.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", "))]
    IllegalTransition {
        state: State,
        action: Action,
        allowed: Vec<Action>,
    },
    /// Already done and not to be redone (a submitted month).
    #[error("{0}")]
    Conflict(String),
    #[error("stale version {expected}: the ticket is at version {current}; reload and retry")]
    StaleVersion { expected: i64, current: i64 },
    #[error("ticket database: {0}")]
    Database(String),
    #[error("attachment storage: {0}")]
    Io(String),
    /// The attachments quota or the data disk's free-space floor (507).
    #[error("{0}")]
    InsufficientStorage(String),
}

/// A ticket filed by hand (from an inspection), the body of `POST /api/v1/tickets`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTicket {
    pub school: String,
    /// Where, in words. Default: building and room.
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub building: Option<String>,
    #[serde(default)]
    pub room: Option<String>,
    pub category: Category,
    #[serde(default = "default_grade")]
    pub grade: Grade,
    pub description: String,
    /// Default: the caller.
    pub inspector: Option<String>,
    /// Unix ms; default now.
    pub found_at: Option<i64>,
    /// Default: routing of the category.
    pub responsible_unit: Option<String>,
    pub responsible_person: Option<String>,
    pub measures: Option<String>,
    #[serde(default)]
    pub funding: Option<String>,
    pub deadline_at: Option<i64>,
    #[serde(default)]
    pub contingency_plan: Option<String>,
    /// 立查立改: fixed on the spot; the ticket is registered and reported in one step.
    #[serde(default)]
    pub fix_now: Option<FixNow>,
}

fn default_grade() -> Grade {
    Grade::General
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixNow {
    pub rectification: String,
    pub rectified_at: Option<i64>,
}

/// The ticket service. Cheap to clone.
#[derive(Clone)]
pub struct Tickets {
    pub store: TicketStore,
    pub config: Arc<TicketsConfig>,
    attachment_dir: PathBuf,
    /// Uploads stop while the data directory has less free space than this (0: no floor).
    min_free_bytes: u64,
}

impl Tickets {
    pub async fn open(config: &TicketsConfig, data_dir: &Path) -> Result<Self, TicketError> {
        let store = TicketStore::connect(config, data_dir).await?;
        Ok(Self {
            store,
            config: Arc::new(config.clone()),
            attachment_dir: TicketsConfig::attachment_dir(data_dir),
            min_free_bytes: 0,
        })
    }

    /// Uploads answer 507 while the attachment directory's filesystem has less free space than
    /// `bytes` (`storage.min_free_bytes`: room kept for the alarm journal and history).
    pub fn with_min_free_bytes(mut self, bytes: u64) -> Self {
        self.min_free_bytes = bytes;
        self
    }

    /// Refuses (507) an upload of `size` new bytes that would pass the attachments quota or the
    /// free-space floor.
    async fn check_attachment_room(&self, size: u64) -> Result<(), TicketError> {
        let dir = self.attachment_dir.clone();
        let floor = self.min_free_bytes;
        let (used, free) = tokio::task::spawn_blocking(move || {
            let used: u64 = std::fs::read_dir(&dir)
                .map(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .filter_map(|e| e.metadata().ok())
                        .filter(|m| m.is_file())
                        .map(|m| m.len())
                        .sum()
                })
                .unwrap_or(0);
            // The directory may not exist yet: its filesystem is its parent's (the data dir).
            let probe = if dir.exists() {
                dir.as_path()
            } else {
                dir.parent().unwrap_or(dir.as_path())
            };
            let free = (floor > 0)
                .then(|| rustix::fs::statvfs(probe).ok())
                .flatten()
                .map(|s| s.f_bavail.saturating_mul(s.f_frsize));
            (used, free)
        })
        .await
        .map_err(|e| TicketError::Io(e.to_string()))?;
        let quota = self.config.attachments_max_total_bytes;
        if used.saturating_add(size) > quota {
            return Err(TicketError::InsufficientStorage(format!(
                "attachments quota reached: {used} of {quota} bytes used (tickets.attachments_max_total_bytes)"
            )));
        }
        if let Some(free) = free {
            if free.saturating_sub(size) < floor {
                return Err(TicketError::InsufficientStorage(format!(
                    "the data disk has {free} bytes free, below the {floor} kept for alarms (storage.min_free_bytes)"
                )));
            }
        }
        Ok(())
    }

    pub fn attachment_dir(&self) -> &Path {
        &self.attachment_dir
    }

    /// Logs a change to a ticket. `kind`: `created`, `occurrence`, an action name, or
    /// `auto_supervised`. (The audit trail in the store is the record; this is the log line.)
    fn log_change(&self, kind: &str, actor: &str, ticket: &Ticket) {
        info!(ticket = %ticket.id, kind, actor, state = ticket.state.as_str(), "ticket changed");
    }

    /// Numbering `<SCHOOLCODE>-<YYYYMM>-<NNNN>`: the code of a school (configured, else the
    /// upper-cased id).
    fn school_code(&self, school: &str) -> String {
        self.config.school_code(school)
    }

    /// Numbering: the `YYYYMM` of a time, in local time.
    fn month_of(&self, at: i64) -> String {
        let (y, m, _) = time::local_date(at, self.config.offset_ms());
        format!("{y:04}{m:02}")
    }

    /// Numbers and stores a new ticket (month of `created_at`).
    async fn insert(
        &self,
        ticket: Ticket,
        occurrence: Option<&Occurrence>,
    ) -> Result<Created, TicketError> {
        let code = self.school_code(&ticket.school);
        let month = self.month_of(ticket.created_at);
        let created = self.store.create(ticket, &code, &month, occurrence).await?;
        if let Created::New(t) = &created {
            self.log_change("created", &t.created_by, t);
        }
        Ok(created)
    }

    /// Files a ticket by hand. Operators, lab managers, school safety and admins of the school.
    pub async fn file(&self, who: &Principal, new: NewTicket) -> Result<Ticket, TicketError> {
        let may_file = matches!(
            who.role,
            Some(Role::Operator | Role::LabManager | Role::SchoolSafety | Role::Admin)
        );
        if !may_file {
            return Err(TicketError::Forbidden(
                "filing tickets needs an operator, lab_manager, school_safety or admin token"
                    .into(),
            ));
        }
        if !who.may_see_school(&new.school) {
            return Err(TicketError::Forbidden(format!(
                "token is not scoped to school `{}`",
                new.school
            )));
        }
        if !crate::model::valid_name(&new.school) {
            return Err(TicketError::Invalid("`school` must be a school id".into()));
        }
        let building = trimmed(&new.building);
        let room = trimmed(&new.room);
        let location = if new.location.trim().is_empty() {
            place_words(building.as_deref(), room.as_deref())
        } else {
            new.location.trim().to_string()
        };
        for field in [
            &building,
            &room,
            &new.funding,
            &new.contingency_plan,
            &new.measures,
        ]
        .into_iter()
        .flatten()
        {
            if field.len() > 4000 {
                return Err(TicketError::Invalid(
                    "text fields are at most 4000 bytes".into(),
                ));
            }
        }
        for (name, value) in [
            ("location (or building and room)", &location),
            ("description", &new.description),
        ] {
            if value.trim().is_empty() || value.len() > 4000 {
                return Err(TicketError::Invalid(format!(
                    "`{name}` must be 1 to 4000 bytes"
                )));
            }
        }
        if new.fix_now.is_some() && !matches!(who.role, Some(Role::SchoolSafety | Role::Admin)) {
            return Err(TicketError::Forbidden(
                "fix_now (立查立改) needs a school_safety or admin token".into(),
            ));
        }
        if new.fix_now.is_some() && self.config.require_after_photo_for.contains(&new.grade) {
            // Checked before anything is stored: the photo can only be attached to a ticket
            // that exists, so such a ticket is filed first and fixed with the fix_now action.
            return Err(TicketError::Invalid(format!(
                "a {} ticket needs an \"after\" photo before it is reported: file it, attach the photo, then take fix_now",
                new.grade.as_str()
            )));
        }
        let now = now_ms();
        let mut ticket = self.blank(&new.school, new.category, new.grade, now, &who.name);
        ticket.source = SourceKind::Inspection;
        ticket.inspector = Some(new.inspector.clone().unwrap_or_else(|| who.name.clone()));
        ticket.location = location;
        ticket.building = building;
        ticket.room = room;
        ticket.funding = trimmed(&new.funding);
        ticket.contingency_plan = trimmed(&new.contingency_plan);
        ticket.description = new.description.trim().to_string();
        ticket.found_at = new.found_at.unwrap_or(now);
        if let Some(unit) = new.responsible_unit.filter(|u| !u.trim().is_empty()) {
            ticket.responsible_unit = Some(unit);
        }
        ticket.responsible_person = new.responsible_person;
        ticket.measures = new.measures;
        ticket.deadline_at = new.deadline_at;
        let Created::New(ticket) = self.insert(ticket, None).await? else {
            return Err(TicketError::Database(
                "inspection ticket not created".into(),
            ));
        };
        let ticket = *ticket;
        match new.fix_now {
            Some(fix) => {
                let input = ActionInput {
                    version: Some(ticket.version),
                    rectification: Some(fix.rectification),
                    rectified_at: fix.rectified_at,
                    ..ActionInput::default()
                };
                self.act(who, &ticket.id, Action::FixNow, input).await
            }
            None => Ok(ticket),
        }
    }

    /// A fresh `registered` ticket with routing and default fields filled in.
    pub(crate) fn blank(
        &self,
        school: &str,
        category: Category,
        grade: Grade,
        now: i64,
        by: &str,
    ) -> Ticket {
        Ticket {
            id: String::new(),
            school: school.to_string(),
            state: State::Registered,
            version: 1,
            category,
            grade,
            source: SourceKind::Sensor,
            inspector: None,
            sensor: None,
            rule: None,
            alarm_class: None,
            location: String::new(),
            building: None,
            room: None,
            device: None,
            description: String::new(),
            responsible_unit: Some(self.config.office_for(category)),
            responsible_person: None,
            measures: None,
            funding: None,
            deadline_at: None,
            contingency_plan: None,
            deferral_plan: None,
            interim_measures: None,
            rectification: None,
            rectified_at: None,
            reported_by: None,
            reported_at: None,
            verifier: None,
            closed_at: None,
            reject_reason: None,
            supervised: false,
            supervised_at: None,
            supervised_by: None,
            previous_ticket: None,
            occurrences: 1,
            last_occurrence_at: None,
            found_at: now,
            created_by: by.to_string(),
            created_at: now,
            updated_at: now,
        }
    }

    /// Files (or appends to) the sensor ticket of an alarm. Used by the policy task.
    pub async fn file_from_alarm(
        &self,
        alarm: &crate::alarms::Alarm,
        rule_key: &str,
        description: String,
        category: Category,
        grade: Grade,
        previous: Option<String>,
    ) -> Result<Ticket, TicketError> {
        let now = now_ms();
        let sensor = alarm.sensor.to_string();
        let occurrence = Occurrence {
            alarm_id: i64::try_from(alarm.id).unwrap_or(i64::MAX),
            at: now,
            reading_ts: alarm.reading_ts,
            message: alarm.message.clone(),
        };
        let mut ticket = self.blank(
            &alarm.school,
            category,
            grade,
            now,
            crate::alarms::SYSTEM_USER,
        );
        ticket.sensor = Some(sensor.clone());
        ticket.rule = Some(rule_key.to_string());
        ticket.alarm_class = Some(alarm.class.as_str().to_string());
        // A place people can walk to (building and room of the device), with the device
        // kept apart; the device itself when its place is not configured.
        let device = format!("{}/{}", alarm.device, alarm.point);
        match self.config.place_of(&alarm.school, &alarm.device) {
            Some(place) => {
                ticket.building = place.building.clone();
                ticket.room = place.room.clone();
                ticket.location = place_words(place.building.as_deref(), place.room.as_deref());
            }
            None => ticket.location = device.clone(),
        }
        ticket.device = Some(device);
        ticket.description = description;
        ticket.found_at = alarm.raised_at;
        ticket.last_occurrence_at = Some(now);
        ticket.deadline_at = Some(now + self.default_deadline_ms(&ticket));
        ticket.previous_ticket = previous;
        match self.insert(ticket, Some(&occurrence)).await? {
            Created::New(t) => Ok(*t),
            // Another gateway (or an earlier raise) got there first: append to its ticket.
            Created::OpenExists => {
                match self
                    .store
                    .append_occurrence(&sensor, rule_key, &occurrence)
                    .await?
                {
                    Some(t) => Ok(t),
                    None => Err(TicketError::Database(
                        "open ticket vanished while appending".into(),
                    )),
                }
            }
        }
    }

    /// Appends an occurrence to the open ticket of (sensor, rule), if any.
    pub async fn append_occurrence(
        &self,
        alarm: &crate::alarms::Alarm,
        rule_key: &str,
    ) -> Result<Option<Ticket>, TicketError> {
        let occurrence = Occurrence {
            alarm_id: i64::try_from(alarm.id).unwrap_or(i64::MAX),
            at: now_ms(),
            reading_ts: alarm.reading_ts,
            message: alarm.message.clone(),
        };
        let sensor = alarm.sensor.to_string();
        let before = self
            .store
            .append_occurrence(&sensor, rule_key, &occurrence)
            .await?;
        if let Some(t) = &before {
            self.log_change("occurrence", crate::alarms::SYSTEM_USER, t);
        }
        Ok(before)
    }

    /// The number of the latest ticket of the alarm's (sensor, rule) closed at or after
    /// `since_ms`: a recurrence within the window opens a new ticket linking it.
    pub async fn recently_closed(
        &self,
        alarm: &crate::alarms::Alarm,
        since_ms: i64,
    ) -> Result<Option<String>, TicketError> {
        let sensor = alarm.sensor.to_string();
        self.store
            .recently_closed(&sensor, &alarm.rule, since_ms)
            .await
    }

    fn default_deadline_ms(&self, t: &Ticket) -> i64 {
        let d = self.config.deadlines.for_ticket(t.category, t.grade);
        i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
    }

    /// A ticket the caller may read.
    pub async fn get(&self, who: &Principal, id: &str) -> Result<Ticket, TicketError> {
        let ticket = self
            .store
            .get(id)
            .await?
            .ok_or_else(|| TicketError::NotFound(id.to_string()))?;
        if !who.may_see_school(&ticket.school) {
            // Same answer as a missing ticket: do not confirm other schools' numbers.
            return Err(TicketError::NotFound(id.to_string()));
        }
        Ok(ticket)
    }

    /// Takes a workflow action. Role → 403, illegal → 409, stale version → 409.
    pub async fn act(
        &self,
        who: &Principal,
        id: &str,
        action: Action,
        input: ActionInput,
    ) -> Result<Ticket, TicketError> {
        let before = self.get(who, id).await?;
        workflow::authorize(action, &before, who)?;
        let expected = input.version.ok_or_else(|| {
            TicketError::Invalid("`version` (the version you last saw) is required".into())
        })?;
        if expected != before.version {
            return Err(TicketError::StaleVersion {
                expected,
                current: before.version,
            });
        }
        let missing_after_photo = matches!(action, Action::Report | Action::FixNow)
            && self.config.require_after_photo_for.contains(&before.grade)
            && !self
                .store
                .attachments(id)
                .await?
                .iter()
                .any(|a| a.kind == model::AttachmentKind::After);
        let ctx = workflow::Context {
            now: now_ms(),
            actor: who.name.clone(),
            default_deadline_ms: self.default_deadline_ms(&before),
            missing_after_photo,
        };
        let after = workflow::apply(&before, action, &input, &ctx)?;
        let comment = input.comment.as_deref().or(input.reason.as_deref());
        let after = self
            .store
            .update(&before, after, &who.name, action.as_str(), comment)
            .await?;
        self.log_change(action.as_str(), &who.name, &after);
        Ok(after)
    }

    /// Lists tickets within the caller's scope.
    pub async fn list(
        &self,
        who: &Principal,
        mut filter: ListFilter,
    ) -> Result<Vec<Ticket>, TicketError> {
        if who.role.is_none() {
            return Err(TicketError::Forbidden(
                "listing tickets needs a token".into(),
            ));
        }
        filter.scope = who.scope().map(<[String]>::to_vec);
        self.store.list(&filter, now_ms()).await
    }

    /// Stores an attachment under its content hash and records it on the ticket.
    pub async fn attach(
        &self,
        who: &Principal,
        id: &str,
        kind: model::AttachmentKind,
        bytes: &[u8],
    ) -> Result<Attachment, TicketError> {
        let ticket = self.get(who, id).await?;
        if !may_attach(who) {
            return Err(TicketError::Forbidden(
                "attachments need an operator, lab_manager, school_safety or admin token".into(),
            ));
        }
        if ticket.state == State::Closed {
            return Err(TicketError::IllegalTransition {
                state: State::Closed,
                action: Action::Report,
                allowed: Vec::new(),
            });
        }
        if bytes.len() > self.config.attachment_max_bytes {
            return Err(TicketError::Invalid(format!(
                "attachment larger than {} bytes",
                self.config.attachment_max_bytes
            )));
        }
        let content_type = sniff(bytes).ok_or_else(|| {
            TicketError::Invalid("attachments must be JPEG, PNG or PDF (by content)".into())
        })?;
        use sha2::Digest;
        let sha256 = hex(&sha2::Sha256::digest(bytes));
        let path = self.attachment_dir.join(&sha256);
        if tokio::fs::metadata(&path).await.is_err() {
            self.check_attachment_room(bytes.len() as u64).await?;
            tokio::fs::create_dir_all(&self.attachment_dir)
                .await
                .map_err(|e| TicketError::Io(e.to_string()))?;
            // Write then rename, so a reader never sees half a file.
            let tmp = self
                .attachment_dir
                .join(format!(".{sha256}.{}.tmp", std::process::id()));
            write_durably(&tmp, &path, bytes)
                .await
                .map_err(|e| TicketError::Io(e.to_string()))?;
        }
        let attachment = Attachment {
            sha256,
            kind,
            content_type: content_type.to_string(),
            size: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
            uploaded_by: who.name.clone(),
            uploaded_at: now_ms(),
        };
        self.store.add_attachment(&ticket, &attachment).await?;
        Ok(attachment)
    }

    /// The bytes of an attachment the caller may read.
    pub async fn attachment_bytes(
        &self,
        who: &Principal,
        id: &str,
        sha256: &str,
    ) -> Result<(Attachment, Vec<u8>), TicketError> {
        let ticket = self.get(who, id).await?;
        let a = self
            .store
            .has_attachment(&ticket.id, sha256)
            .await?
            .ok_or_else(|| TicketError::NotFound(format!("{id}/attachments/{sha256}")))?;
        // The hash came from our own table, so it is a plain hex name inside our folder.
        let bytes = tokio::fs::read(self.attachment_dir.join(&a.sha256))
            .await
            .map_err(|e| TicketError::Io(e.to_string()))?;
        Ok((a, bytes))
    }

    /// One supervision pass: tickets overdue by more than the grace get 督办. Returns them.
    pub async fn supervise_overdue(&self, now: i64) -> Result<Vec<Ticket>, TicketError> {
        let grace = i64::try_from(self.config.supervise_after.as_millis()).unwrap_or(i64::MAX / 4);
        let due = self.store.due_for_supervision(now - grace).await?;
        let mut marked = Vec::new();
        for before in due {
            let mut after = before.clone();
            after.supervised = true;
            after.supervised_at = Some(now);
            after.supervised_by = Some(crate::alarms::SYSTEM_USER.to_string());
            after.updated_at = now;
            match self
                .store
                .update(
                    &before,
                    after,
                    crate::alarms::SYSTEM_USER,
                    "auto_supervise",
                    Some("overdue beyond the supervision grace"),
                )
                .await
            {
                Ok(t) => {
                    warn!(ticket = %t.id, school = %t.school, "overdue ticket put under supervision (督办)");
                    self.log_change("auto_supervised", crate::alarms::SYSTEM_USER, &t);
                    marked.push(t);
                }
                // Someone acted on it meanwhile; the next pass looks again.
                Err(TicketError::StaleVersion { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(marked)
    }
}

/// A trimmed, non-empty text.
fn trimmed(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// "实验楼 301" from a building and a room, either of which may be missing.
pub fn place_words(building: Option<&str>, room: Option<&str>) -> String {
    [building, room]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Who may upload evidence: the people who file and rectify tickets.
pub fn may_attach(who: &Principal) -> bool {
    matches!(
        who.role,
        Some(Role::Operator | Role::LabManager | Role::SchoolSafety | Role::Admin)
    )
}

/// Starts the ticket stage on `tasks`: the alarm → ticket policy, reading the alarm outbox
/// through `outbox` (its own cursor, opened before the core started; `store` is read at start
/// to rebuild pending timers), and the supervision job. Both stop at `shutdown`.
pub fn start(
    tickets: &Tickets,
    outbox: crate::store::OutboxReader,
    store: crate::store::LocalStore,
    shutdown: &CancellationToken,
    supervisor: &crate::supervisor::Supervisor,
) {
    supervisor.once(
        "ticket-policy",
        policy::run(tickets.clone(), outbox, store, shutdown.clone()),
    );
    let (tickets, shutdown) = (tickets.clone(), shutdown.clone());
    supervisor.restarting("ticket-supervision", move || {
        run_supervision(tickets.clone(), shutdown.clone())
    });
}

/// Runs the supervision job every `supervision_interval` until shutdown.
pub async fn run_supervision(tickets: Tickets, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(tickets.config.supervision_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = tickets.supervise_overdue(now_ms()).await {
            warn!(error = %e, "ticket supervision pass failed; retrying next interval");
        }
    }
}

/// Writes `bytes` to `tmp`, flushes them to disk, renames `tmp` to `path` and flushes the
/// directory: once this returns, the file survives a power cut under its final name, and a
/// reader never sees half of it. (The ticket row naming it is committed after this.)
async fn write_durably(tmp: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::fs::File::create(tmp).await?;
    file.write_all(bytes).await?;
    file.sync_all().await?;
    drop(file);
    tokio::fs::rename(tmp, path).await?;
    if let Some(dir) = path.parent() {
        tokio::fs::File::open(dir).await?.sync_all().await?;
    }
    Ok(())
}

/// Recognises JPEG, PNG and PDF by their first bytes.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        Some("image/png")
    } else if bytes.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else {
        None
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

//! The ticket store: one `sqlx::AnyPool` over SQLite (a school's gateway, in the data
//! directory) or PostgreSQL (a district), with the same migrations (`migrations/tickets`) and
//! `$n` placeholders for both. Every change is one transaction that checks the version and
//! writes the audit record; numbers come from a counter row per (school, month) bumped in the
//! creating transaction, so they are gap-free and unique with concurrent creators.

use std::path::Path;
use std::str::FromStr;

use sqlx::any::{AnyArguments, AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyPool, ConnectOptions, Executor, Row};
use tracing::{info, warn};

use super::config::TicketsConfig;
use super::model::{
    Attachment, AttachmentKind, Category, Grade, HistoryEntry, Occurrence, SourceKind, State,
    Ticket,
};
use super::TicketError;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/tickets");

const COLUMNS: [&str; 41] = [
    "id",
    "school",
    "state",
    "version",
    "category",
    "grade",
    "source",
    "inspector",
    "sensor",
    "rule",
    "alarm_class",
    "location",
    "description",
    "responsible_unit",
    "responsible_person",
    "measures",
    "deadline_at",
    "deferral_plan",
    "interim_measures",
    "rectification",
    "rectified_at",
    "reported_by",
    "reported_at",
    "verifier",
    "closed_at",
    "reject_reason",
    "supervised",
    "supervised_at",
    "supervised_by",
    "previous_ticket",
    "occurrences",
    "last_occurrence_at",
    "found_at",
    "created_by",
    "created_at",
    "updated_at",
    "funding",
    "contingency_plan",
    "building",
    "room",
    "device",
];

/// What the list endpoint filters on. `scope` is the caller's school scope (`None` = all).
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub scope: Option<Vec<String>>,
    pub school: Option<String>,
    pub state: Option<State>,
    pub category: Option<Category>,
    pub grade: Option<Grade>,
    pub overdue: Option<bool>,
    pub supervised: Option<bool>,
    /// found_at ≥ from (Unix ms).
    pub from: Option<i64>,
    /// found_at < to (Unix ms).
    pub to: Option<i64>,
    pub limit: i64,
    pub offset: i64,
}

/// The outcome of a creation.
#[derive(Debug)]
pub enum Created {
    New(Box<Ticket>),
    /// A ticket for this (sensor, rule) is already open; nothing was created.
    OpenExists,
}

pub(crate) enum Bind {
    Text(String),
    Int(i64),
}

/// The `WHERE` conditions of a list query and the arguments they bind (`$1`, `$2`, … in
/// order, as both SQLite and PostgreSQL take them through `sqlx::Any`).
#[derive(Default)]
pub(crate) struct Conditions {
    conditions: Vec<String>,
    binds: Vec<Bind>,
}

impl Conditions {
    /// Adds an argument; returns its placeholder.
    pub(crate) fn arg(&mut self, b: Bind) -> String {
        self.binds.push(b);
        format!("${}", self.binds.len())
    }

    /// Adds a condition (its placeholders made with [`Conditions::arg`]).
    pub(crate) fn and(&mut self, condition: String) {
        self.conditions.push(condition);
    }

    /// `<left> $n` with `b` bound, e.g. `compare("found_at >=", Bind::Int(from))`.
    pub(crate) fn compare(&mut self, left: &str, b: Bind) {
        let p = self.arg(b);
        self.and(format!("{left} {p}"));
    }

    /// `school IN (…)` for a scope; `false` when the scope is empty (nothing can match).
    pub(crate) fn school_scope(&mut self, scope: &Option<Vec<String>>) -> bool {
        let Some(scope) = scope else { return true };
        if scope.is_empty() {
            return false;
        }
        let ps: Vec<String> = scope
            .iter()
            .map(|s| self.arg(Bind::Text(s.clone())))
            .collect();
        self.and(format!("school IN ({})", ps.join(", ")));
        true
    }

    /// `WHERE a AND b …`, or nothing.
    pub(crate) fn where_clause(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.conditions.join(" AND "))
        }
    }

    /// The query with the arguments bound.
    pub(crate) fn bind<'q>(
        self,
        mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        for b in self.binds {
            q = match b {
                Bind::Text(s) => q.bind(s),
                Bind::Int(i) => q.bind(i),
            };
        }
        q
    }
}

/// The next number under `code` in `month`, `<code>-<month>-<NNNN>`: the gap-free counter,
/// taken in the caller's transaction (rolled back with it). Tickets and incident reports share
/// it, each under codes of their own.
pub(crate) async fn next_number(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    code: &str,
    month: &str,
) -> Result<String, TicketError> {
    let seq: i64 = sqlx::query(
        "INSERT INTO ticket_counters (code, month, last_seq) VALUES ($1, $2, 1) \
         ON CONFLICT (code, month) DO UPDATE SET last_seq = ticket_counters.last_seq + 1 \
         RETURNING last_seq",
    )
    .bind(code.to_string())
    .bind(month.to_string())
    .fetch_one(&mut **tx)
    .await
    .map_err(db)?
    .try_get(0)
    .map_err(db)?;
    Ok(format!("{code}-{month}-{seq:04}"))
}

#[derive(Clone)]
pub struct TicketStore {
    pool: AnyPool,
}

impl TicketStore {
    /// Connects (creating the SQLite file or the PostgreSQL schema if missing) and migrates.
    ///
    /// A PostgreSQL server that cannot be reached at start (refused, unreachable, no answer
    /// within `tickets.acquire_timeout`) does not stop the gateway — a fire alarm system must
    /// come up without its ticket database: the pool then connects on first use, and each new
    /// connection creates the schema and migrates until one has succeeded. Until then every
    /// ticket operation fails as a database error (the policy retries; the API answers 500).
    pub async fn connect(config: &TicketsConfig, data_dir: &Path) -> Result<Self, TicketError> {
        sqlx::any::install_default_drivers();
        let url = config.database_url(data_dir);
        let sqlite = url.starts_with("sqlite:");
        if sqlite && config.database_url.is_none() {
            std::fs::create_dir_all(data_dir).map_err(|e| {
                TicketError::Database(format!("cannot create {}: {e}", data_dir.display()))
            })?;
        }
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|e| TicketError::Database(format!("tickets.database_url: {e}")))?;
        let schema = if sqlite { None } else { config.schema.clone() };
        if !sqlite && !reachable(&options, config.acquire_timeout).await {
            warn!(
                "ticket database unreachable at start; starting without it (tickets are filed once it is back)"
            );
            return Ok(Self::lazy(config, options, schema));
        }
        if let Some(schema) = &schema {
            // Validated to [A-Za-z0-9_]+ by TicketsConfig::validate, so it can be spliced in.
            let pool = AnyPoolOptions::new()
                .max_connections(1)
                .connect_with(options.clone())
                .await
                .map_err(db)?;
            pool.execute(format!("CREATE SCHEMA IF NOT EXISTS {schema}").as_str())
                .await
                .map_err(db)?;
            pool.close().await;
        }
        let pool = AnyPoolOptions::new()
            // SQLite: one writer, so no SQLITE_BUSY between concurrent transactions.
            .max_connections(if sqlite { 1 } else { config.max_connections })
            .acquire_timeout(config.acquire_timeout)
            .after_connect(move |conn, _meta| {
                let schema = schema.clone();
                Box::pin(async move {
                    if let Some(schema) = schema {
                        conn.execute(format!("SET search_path TO {schema}").as_str())
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(db)?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| TicketError::Database(format!("ticket migrations: {e}")))?;
        Ok(Self { pool })
    }

    /// A PostgreSQL pool that connects on first use; every new connection creates the schema
    /// if it is missing and sets it as its search path. A task of its own runs the migrations
    /// as soon as the database answers (retrying with backoff), then ends.
    fn lazy(config: &TicketsConfig, options: AnyConnectOptions, schema: Option<String>) -> Self {
        let pool = AnyPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .after_connect(move |conn, _meta| {
                let schema = schema.clone();
                Box::pin(async move {
                    if let Some(schema) = schema {
                        conn.execute(format!("CREATE SCHEMA IF NOT EXISTS {schema}").as_str())
                            .await?;
                        conn.execute(format!("SET search_path TO {schema}").as_str())
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_lazy_with(options);
        let migrating = pool.clone();
        tokio::spawn(async move {
            let mut backoff = std::time::Duration::from_millis(200);
            while !migrating.is_closed() {
                match MIGRATOR.run(&migrating).await {
                    Ok(()) => {
                        info!("ticket database reached: schema migrated");
                        return;
                    }
                    Err(e) => {
                        warn!(error = %e, retry_in = ?backoff, "ticket database still unreachable");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
                    }
                }
            }
        });
        Self { pool }
    }

    /// The pool, for bulk loading in benchmarks.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Numbers and inserts `ticket` (its `id` is replaced by `<code>-<month>-<NNNN>`), with its
    /// first audit record and, for a sensor ticket, its first occurrence — all in one
    /// transaction. A sensor ticket whose (sensor, rule) already has an open ticket is not
    /// created, and its number is given back.
    pub async fn create(
        &self,
        mut ticket: Ticket,
        code: &str,
        month: &str,
        occurrence: Option<&Occurrence>,
    ) -> Result<Created, TicketError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        ticket.id = next_number(&mut tx, code, month).await?;
        ticket.version = 1;
        let placeholders: Vec<String> = (1..=COLUMNS.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "INSERT INTO tickets ({}) VALUES ({}) \
             ON CONFLICT (sensor, rule) WHERE state <> 'closed' AND sensor IS NOT NULL DO NOTHING",
            COLUMNS.join(", "),
            placeholders.join(", ")
        );
        let inserted = bind_ticket(sqlx::query(&sql), &ticket)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        if inserted == 0 {
            tx.rollback().await.map_err(db)?;
            return Ok(Created::OpenExists);
        }
        let changes = serde_json::to_value(&ticket).unwrap_or(serde_json::Value::Null);
        insert_history(
            &mut tx,
            &ticket.id,
            1,
            ticket.created_at,
            &ticket.created_by,
            "create",
            &changes,
            None,
        )
        .await?;
        if let Some(o) = occurrence {
            insert_occurrence(&mut tx, &ticket.id, o).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(Created::New(Box::new(ticket)))
    }

    pub async fn get(&self, id: &str) -> Result<Option<Ticket>, TicketError> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM tickets WHERE id = $1",
            COLUMNS.join(", ")
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|r| ticket_from_row(&r)).transpose()
    }

    /// Writes `after` over `before` if nobody changed it meanwhile (version check), with an
    /// audit record of the changed fields. Stale → [`TicketError::StaleVersion`].
    pub async fn update(
        &self,
        before: &Ticket,
        mut after: Ticket,
        actor: &str,
        action: &str,
        comment: Option<&str>,
    ) -> Result<Ticket, TicketError> {
        after.version = before.version + 1;
        let changes = super::workflow::diff(before, &after);
        let sets: Vec<String> = COLUMNS
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c} = ${}", i + 1))
            .collect();
        let n = COLUMNS.len();
        let sql = format!(
            "UPDATE tickets SET {} WHERE id = ${} AND version = ${}",
            sets.join(", "),
            n + 1,
            n + 2
        );
        let mut tx = self.pool.begin().await.map_err(db)?;
        let updated = bind_ticket(sqlx::query(&sql), &after)
            .bind(before.id.clone())
            .bind(before.version)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        if updated == 0 {
            tx.rollback().await.map_err(db)?;
            return Err(self.stale_or_missing(&before.id, before.version).await);
        }
        insert_history(
            &mut tx,
            &after.id,
            after.version,
            after.updated_at,
            actor,
            action,
            &changes,
            comment,
        )
        .await?;
        tx.commit().await.map_err(db)?;
        Ok(after)
    }

    async fn stale_or_missing(&self, id: &str, expected: i64) -> TicketError {
        match self.get(id).await {
            Ok(Some(t)) => TicketError::StaleVersion {
                expected,
                current: t.version,
            },
            Ok(None) => TicketError::NotFound(id.to_string()),
            Err(e) => e,
        }
    }

    /// Appends an alarm occurrence to the open ticket of (sensor, rule), if there is one.
    /// The same reading reported twice (two gateways) is counted once.
    pub async fn append_occurrence(
        &self,
        sensor: &str,
        rule: &str,
        occurrence: &Occurrence,
    ) -> Result<Option<Ticket>, TicketError> {
        for _attempt in 0..3 {
            let row = sqlx::query(&format!(
                "SELECT {} FROM tickets WHERE sensor = $1 AND rule = $2 AND state <> 'closed'",
                COLUMNS.join(", ")
            ))
            .bind(sensor.to_string())
            .bind(rule.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
            let Some(row) = row else { return Ok(None) };
            let before = ticket_from_row(&row)?;
            let mut tx = self.pool.begin().await.map_err(db)?;
            let added = insert_occurrence(&mut tx, &before.id, occurrence).await?;
            if !added {
                tx.rollback().await.map_err(db)?;
                return Ok(Some(before));
            }
            let mut after = before.clone();
            after.occurrences += 1;
            after.last_occurrence_at = Some(occurrence.at);
            after.updated_at = occurrence.at;
            after.version += 1;
            let changed = sqlx::query(
                "UPDATE tickets SET occurrences = $1, last_occurrence_at = $2, updated_at = $3, \
                 version = $4 WHERE id = $5 AND version = $6",
            )
            .bind(after.occurrences)
            .bind(occurrence.at)
            .bind(occurrence.at)
            .bind(after.version)
            .bind(before.id.clone())
            .bind(before.version)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
            if changed == 0 {
                // Someone acted on the ticket meanwhile: read it again and retry.
                tx.rollback().await.map_err(db)?;
                continue;
            }
            let changes = super::workflow::diff(&before, &after);
            insert_history(
                &mut tx,
                &after.id,
                after.version,
                occurrence.at,
                crate::alarms::SYSTEM_USER,
                "occurrence",
                &changes,
                Some(&occurrence.message),
            )
            .await?;
            tx.commit().await.map_err(db)?;
            return Ok(Some(after));
        }
        Err(TicketError::Database(
            "occurrence not appended: the ticket kept changing".into(),
        ))
    }

    /// Whether a ticket of (sensor, rule), in any state, already records alarm `alarm_id`: a
    /// timer rebuilt at start must not file again for an alarm whose ticket was filed (and
    /// perhaps closed) before the restart.
    pub async fn alarm_has_ticket(
        &self,
        sensor: &str,
        rule: &str,
        alarm_id: i64,
    ) -> Result<bool, TicketError> {
        let row = sqlx::query(
            "SELECT 1 FROM ticket_occurrences o JOIN tickets t ON t.id = o.ticket_id \
             WHERE t.sensor = $1 AND t.rule = $2 AND o.alarm_id = $3 LIMIT 1",
        )
        .bind(sensor.to_string())
        .bind(rule.to_string())
        .bind(alarm_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(row.is_some())
    }

    /// The most recently closed ticket of (sensor, rule) closed at or after `since`.
    pub async fn recently_closed(
        &self,
        sensor: &str,
        rule: &str,
        since: i64,
    ) -> Result<Option<String>, TicketError> {
        let row = sqlx::query(
            "SELECT id FROM tickets WHERE sensor = $1 AND rule = $2 AND state = 'closed' \
             AND closed_at >= $3 ORDER BY closed_at DESC LIMIT 1",
        )
        .bind(sensor.to_string())
        .bind(rule.to_string())
        .bind(since)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|r| r.try_get::<String, _>(0).map_err(db))
            .transpose()
    }

    pub async fn list(&self, f: &ListFilter, now: i64) -> Result<Vec<Ticket>, TicketError> {
        let mut c = Conditions::default();
        if !c.school_scope(&f.scope) {
            return Ok(Vec::new());
        }
        if let Some(s) = &f.school {
            c.compare("school =", Bind::Text(s.clone()));
        }
        if let Some(s) = f.state {
            c.compare("state =", Bind::Text(s.as_str().into()));
        }
        if let Some(cat) = f.category {
            c.compare("category =", Bind::Text(cat.as_str().into()));
        }
        if let Some(g) = f.grade {
            c.compare("grade =", Bind::Text(g.as_str().into()));
        }
        if let Some(o) = f.overdue {
            let p = c.arg(Bind::Int(now));
            let overdue = format!(
                "(state IN ('registered', 'rectifying', 'deferred') AND deadline_at IS NOT NULL AND deadline_at < {p})"
            );
            c.and(if o { overdue } else { format!("NOT {overdue}") });
        }
        if let Some(s) = f.supervised {
            c.compare("supervised =", Bind::Int(i64::from(s)));
        }
        if let Some(from) = f.from {
            c.compare("found_at >=", Bind::Int(from));
        }
        if let Some(to) = f.to {
            c.compare("found_at <", Bind::Int(to));
        }
        let limit = c.arg(Bind::Int(f.limit));
        let offset = c.arg(Bind::Int(f.offset));
        let sql = format!(
            "SELECT {} FROM tickets {} ORDER BY found_at DESC, id DESC LIMIT {limit} OFFSET {offset}",
            COLUMNS.join(", "),
            c.where_clause()
        );
        self.fetch_tickets(&sql, c).await
    }

    /// The month's ledger: tickets found before `to` and not closed before `from`, i.e. open
    /// at some time in [from, to). Ordered by school and number.
    pub async fn ledger(
        &self,
        from: i64,
        to: i64,
        scope: Option<&[String]>,
    ) -> Result<Vec<Ticket>, TicketError> {
        let mut c = Conditions::default();
        let (to, from) = (c.arg(Bind::Int(to)), c.arg(Bind::Int(from)));
        c.and(format!(
            "found_at < {to} AND (closed_at IS NULL OR closed_at >= {from})"
        ));
        if !c.school_scope(&scope.map(<[String]>::to_vec)) {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {} FROM tickets {} ORDER BY school, id",
            COLUMNS.join(", "),
            c.where_clause()
        );
        self.fetch_tickets(&sql, c).await
    }

    /// Open tickets past `deadline_before` that are not yet supervised.
    pub async fn due_for_supervision(
        &self,
        deadline_before: i64,
    ) -> Result<Vec<Ticket>, TicketError> {
        let sql = format!(
            "SELECT {} FROM tickets WHERE state IN ('registered', 'rectifying', 'deferred') \
             AND supervised = 0 AND deadline_at IS NOT NULL AND deadline_at < $1 LIMIT 1000",
            COLUMNS.join(", ")
        );
        let mut c = Conditions::default();
        c.arg(Bind::Int(deadline_before));
        self.fetch_tickets(&sql, c).await
    }

    async fn fetch_tickets(&self, sql: &str, args: Conditions) -> Result<Vec<Ticket>, TicketError> {
        let rows = args
            .bind(sqlx::query(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(ticket_from_row).collect()
    }

    pub async fn history(&self, id: &str) -> Result<Vec<HistoryEntry>, TicketError> {
        let rows = sqlx::query(
            "SELECT version, happened_at, actor, action, changes, comment FROM ticket_history \
             WHERE ticket_id = $1 ORDER BY version",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                let changes: String = r.try_get(4).map_err(db)?;
                Ok(HistoryEntry {
                    version: r.try_get(0).map_err(db)?,
                    at: r.try_get(1).map_err(db)?,
                    actor: r.try_get(2).map_err(db)?,
                    action: r.try_get(3).map_err(db)?,
                    changes: serde_json::from_str(&changes).unwrap_or(serde_json::Value::Null),
                    comment: r.try_get(5).map_err(db)?,
                })
            })
            .collect()
    }

    pub async fn occurrences(&self, id: &str) -> Result<Vec<Occurrence>, TicketError> {
        let rows = sqlx::query(
            "SELECT alarm_id, happened_at, reading_ts, message FROM ticket_occurrences \
             WHERE ticket_id = $1 ORDER BY happened_at LIMIT 1000",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(Occurrence {
                    alarm_id: r.try_get(0).map_err(db)?,
                    at: r.try_get(1).map_err(db)?,
                    reading_ts: r.try_get(2).map_err(db)?,
                    message: r.try_get(3).map_err(db)?,
                })
            })
            .collect()
    }

    pub async fn attachments(&self, id: &str) -> Result<Vec<Attachment>, TicketError> {
        let rows = sqlx::query(
            "SELECT sha256, kind, content_type, size, uploaded_by, uploaded_at \
             FROM ticket_attachments WHERE ticket_id = $1 ORDER BY uploaded_at",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                let kind: String = r.try_get(1).map_err(db)?;
                Ok(Attachment {
                    sha256: r.try_get(0).map_err(db)?,
                    kind: AttachmentKind::parse(&kind).unwrap_or(AttachmentKind::Other),
                    content_type: r.try_get(2).map_err(db)?,
                    size: r.try_get(3).map_err(db)?,
                    uploaded_by: r.try_get(4).map_err(db)?,
                    uploaded_at: r.try_get(5).map_err(db)?,
                })
            })
            .collect()
    }

    /// Records an attachment (idempotent per content) and audits it.
    pub async fn add_attachment(&self, ticket: &Ticket, a: &Attachment) -> Result<(), TicketError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let added = sqlx::query(
            "INSERT INTO ticket_attachments (ticket_id, sha256, kind, content_type, size, \
             uploaded_by, uploaded_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (ticket_id, sha256) DO NOTHING",
        )
        .bind(ticket.id.clone())
        .bind(a.sha256.clone())
        .bind(a.kind.as_str().to_string())
        .bind(a.content_type.clone())
        .bind(a.size)
        .bind(a.uploaded_by.clone())
        .bind(a.uploaded_at)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        if added == 0 {
            tx.rollback().await.map_err(db)?;
            return Ok(());
        }
        // Bump the version so the attachment has its own audit record.
        let bumped = sqlx::query(
            "UPDATE tickets SET version = version + 1, updated_at = $1 WHERE id = $2 \
             RETURNING version",
        )
        .bind(a.uploaded_at)
        .bind(ticket.id.clone())
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        let version: i64 = bumped.try_get(0).map_err(db)?;
        let changes = serde_json::json!({ "attachments": [null, a] });
        insert_history(
            &mut tx,
            &ticket.id,
            version,
            a.uploaded_at,
            &a.uploaded_by,
            "attach",
            &changes,
            None,
        )
        .await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    pub async fn has_attachment(
        &self,
        id: &str,
        sha256: &str,
    ) -> Result<Option<Attachment>, TicketError> {
        Ok(self
            .attachments(id)
            .await?
            .into_iter()
            .find(|a| a.sha256 == sha256))
    }

    /// Used by the benchmark and tests: the number of tickets.
    pub async fn count(&self) -> Result<i64, TicketError> {
        sqlx::query("SELECT COUNT(*) FROM tickets")
            .fetch_one(&self.pool)
            .await
            .map_err(db)?
            .try_get(0)
            .map_err(db)
    }

    /// Audit records written at or after `since` (Unix ms), oldest first, with their ticket
    /// number; at most `limit`. Readers that follow the trail with a cursor of their own (the
    /// notifier) use this.
    pub async fn history_since(
        &self,
        since: i64,
        limit: i64,
    ) -> Result<Vec<(String, HistoryEntry)>, TicketError> {
        let rows = sqlx::query(
            "SELECT ticket_id, version, happened_at, actor, action, changes, comment \
             FROM ticket_history WHERE happened_at >= $1 \
             ORDER BY happened_at, ticket_id, version LIMIT $2",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                let changes: String = r.try_get(5).map_err(db)?;
                Ok((
                    r.try_get(0).map_err(db)?,
                    HistoryEntry {
                        version: r.try_get(1).map_err(db)?,
                        at: r.try_get(2).map_err(db)?,
                        actor: r.try_get(3).map_err(db)?,
                        action: r.try_get(4).map_err(db)?,
                        changes: serde_json::from_str(&changes).unwrap_or(serde_json::Value::Null),
                        comment: r.try_get(6).map_err(db)?,
                    },
                ))
            })
            .collect()
    }

    /// Per school: tickets not yet closed, and of those the overdue ones at `now`.
    pub async fn open_counts(&self, now: i64) -> Result<Vec<(String, i64, i64)>, TicketError> {
        let rows = sqlx::query(
            "SELECT school, COUNT(*), \
             SUM(CASE WHEN state IN ('registered', 'rectifying', 'deferred') \
                 AND deadline_at IS NOT NULL AND deadline_at < $1 THEN 1 ELSE 0 END) \
             FROM tickets WHERE state <> 'closed' GROUP BY school ORDER BY school",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0).map_err(db)?,
                    r.try_get(1).map_err(db)?,
                    r.try_get::<Option<i64>, _>(2).map_err(db)?.unwrap_or(0),
                ))
            })
            .collect()
    }

    /// Drops a PostgreSQL schema (test clean-up).
    pub async fn drop_schema(&self, schema: &str) -> Result<(), TicketError> {
        self.pool
            .execute(format!("DROP SCHEMA IF EXISTS {schema} CASCADE").as_str())
            .await
            .map_err(db)?;
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
async fn insert_history(
    tx: &mut sqlx::Transaction<'_, Any>,
    id: &str,
    version: i64,
    at: i64,
    actor: &str,
    action: &str,
    changes: &serde_json::Value,
    comment: Option<&str>,
) -> Result<(), TicketError> {
    sqlx::query(
        "INSERT INTO ticket_history (ticket_id, version, happened_at, actor, action, changes, comment) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id.to_string())
    .bind(version)
    .bind(at)
    .bind(actor.to_string())
    .bind(action.to_string())
    .bind(changes.to_string())
    .bind(comment.map(str::to_string))
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

/// Returns whether the occurrence was new.
async fn insert_occurrence(
    tx: &mut sqlx::Transaction<'_, Any>,
    id: &str,
    o: &Occurrence,
) -> Result<bool, TicketError> {
    let n = sqlx::query(
        "INSERT INTO ticket_occurrences (ticket_id, reading_ts, alarm_id, happened_at, message) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (ticket_id, reading_ts) DO NOTHING",
    )
    .bind(id.to_string())
    .bind(o.reading_ts)
    .bind(o.alarm_id)
    .bind(o.at)
    .bind(o.message.clone())
    .execute(&mut **tx)
    .await
    .map_err(db)?
    .rows_affected();
    Ok(n > 0)
}

fn bind_ticket<'q>(
    q: Query<'q, Any, AnyArguments<'q>>,
    t: &Ticket,
) -> Query<'q, Any, AnyArguments<'q>> {
    q.bind(t.id.clone())
        .bind(t.school.clone())
        .bind(t.state.as_str().to_string())
        .bind(t.version)
        .bind(t.category.as_str().to_string())
        .bind(t.grade.as_str().to_string())
        .bind(t.source.as_str().to_string())
        .bind(t.inspector.clone())
        .bind(t.sensor.clone())
        .bind(t.rule.clone())
        .bind(t.alarm_class.clone())
        .bind(t.location.clone())
        .bind(t.description.clone())
        .bind(t.responsible_unit.clone())
        .bind(t.responsible_person.clone())
        .bind(t.measures.clone())
        .bind(t.deadline_at)
        .bind(t.deferral_plan.clone())
        .bind(t.interim_measures.clone())
        .bind(t.rectification.clone())
        .bind(t.rectified_at)
        .bind(t.reported_by.clone())
        .bind(t.reported_at)
        .bind(t.verifier.clone())
        .bind(t.closed_at)
        .bind(t.reject_reason.clone())
        .bind(i64::from(t.supervised))
        .bind(t.supervised_at)
        .bind(t.supervised_by.clone())
        .bind(t.previous_ticket.clone())
        .bind(t.occurrences)
        .bind(t.last_occurrence_at)
        .bind(t.found_at)
        .bind(t.created_by.clone())
        .bind(t.created_at)
        .bind(t.updated_at)
        .bind(t.funding.clone())
        .bind(t.contingency_plan.clone())
        .bind(t.building.clone())
        .bind(t.room.clone())
        .bind(t.device.clone())
}

fn ticket_from_row(r: &AnyRow) -> Result<Ticket, TicketError> {
    let text = |c: &str| r.try_get::<String, _>(c).map_err(db);
    let opt = |c: &str| r.try_get::<Option<String>, _>(c).map_err(db);
    let int = |c: &str| r.try_get::<i64, _>(c).map_err(db);
    let opt_int = |c: &str| r.try_get::<Option<i64>, _>(c).map_err(db);
    let bad =
        |c: &str, v: &str| TicketError::Database(format!("bad {c} `{v}` in the ticket table"));
    let state = text("state")?;
    let category = text("category")?;
    let grade = text("grade")?;
    let source = text("source")?;
    Ok(Ticket {
        id: text("id")?,
        school: text("school")?,
        state: State::parse(&state).ok_or_else(|| bad("state", &state))?,
        version: int("version")?,
        category: Category::parse(&category).ok_or_else(|| bad("category", &category))?,
        grade: Grade::parse(&grade).ok_or_else(|| bad("grade", &grade))?,
        source: SourceKind::parse(&source).ok_or_else(|| bad("source", &source))?,
        inspector: opt("inspector")?,
        sensor: opt("sensor")?,
        rule: opt("rule")?,
        alarm_class: opt("alarm_class")?,
        location: text("location")?,
        building: opt("building")?,
        room: opt("room")?,
        device: opt("device")?,
        description: text("description")?,
        responsible_unit: opt("responsible_unit")?,
        responsible_person: opt("responsible_person")?,
        measures: opt("measures")?,
        funding: opt("funding")?,
        deadline_at: opt_int("deadline_at")?,
        contingency_plan: opt("contingency_plan")?,
        deferral_plan: opt("deferral_plan")?,
        interim_measures: opt("interim_measures")?,
        rectification: opt("rectification")?,
        rectified_at: opt_int("rectified_at")?,
        reported_by: opt("reported_by")?,
        reported_at: opt_int("reported_at")?,
        verifier: opt("verifier")?,
        closed_at: opt_int("closed_at")?,
        reject_reason: opt("reject_reason")?,
        supervised: int("supervised")? != 0,
        supervised_at: opt_int("supervised_at")?,
        supervised_by: opt("supervised_by")?,
        previous_ticket: opt("previous_ticket")?,
        occurrences: int("occurrences")?,
        last_occurrence_at: opt_int("last_occurrence_at")?,
        found_at: int("found_at")?,
        created_by: text("created_by")?,
        created_at: int("created_at")?,
        updated_at: int("updated_at")?,
    })
}

/// Whether one connection to the database can be opened within `limit`. Only "cannot reach
/// it" counts as false: any other answer (a wrong password, a missing database) is left for the
/// real connect to report.
async fn reachable(options: &AnyConnectOptions, limit: std::time::Duration) -> bool {
    match tokio::time::timeout(limit, options.connect()).await {
        Ok(Ok(conn)) => {
            let _ = sqlx::Connection::close(conn).await;
            true
        }
        Ok(Err(sqlx::Error::Io(_))) | Err(_) => false,
        Ok(Err(_)) => true,
    }
}

fn db(e: impl std::fmt::Display) -> TicketError {
    TicketError::Database(e.to_string())
}

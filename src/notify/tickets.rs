//! Ticket events for `[[notify.ticket_routes]]`: a new `major` ticket, a ticket becoming
//! overdue, supervision (督办, by the bureau or automatic), and the daily digest of open and
//! overdue tickets per school (at `digest_at`, local time).
//!
//! The ticket database's audit trail (`ticket_history`) is the source: this task follows it with
//! a durable cursor of its own (the time of the last record read, in the local store's
//! `notify_state`), not an in-memory broadcast, so an event written while the gateway was down
//! (or by another gateway sharing the database) is still notified. Records are read again a
//! little before the cursor, because gateways' clocks differ and a record may commit after a
//! later-stamped one; delivery keys make re-reading harmless. Overdue is not a record (it is
//! derived from the deadline): the open tickets past their deadline are looked at every round,
//! keyed by ticket and deadline, so each deadline passing is notified once. On its first run the
//! task starts at the present: it does not notify the past.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::config::{NotifyConfig, TicketEvent};
use super::deliveries::{Deliveries, NewDelivery};
use super::message::{local_time, Message, Renderer};
use crate::model::now_ms;
use crate::tickets::model::Lang;
use crate::tickets::{ListFilter, Ticket, TicketError, Tickets};

/// How often the audit trail and the deadlines are looked at.
const ROUND: Duration = Duration::from_secs(15);
/// Records are read again this far before the cursor (clock differences between gateways).
const LOOKBACK_MS: i64 = 120_000;
/// Records read per round.
const BATCH: i64 = 500;

const CURSOR: &str = "ticket_cursor";
const STARTED: &str = "ticket_started";
const DIGEST_DAY: &str = "ticket_digest_day";

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Tickets(#[from] TicketError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

pub struct TicketNotifier {
    pub(super) config: Arc<NotifyConfig>,
    pub(super) tickets: Tickets,
    pub(super) deliveries: Deliveries,
    pub(super) renderer: Renderer,
    pub(super) wake: HashMap<String, Arc<Notify>>,
}

impl TicketNotifier {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(ROUND);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.round(now_ms()).await {
                warn!(error = %e, "ticket notifications: round failed; trying again next round");
            }
        }
        info!("ticket notifications stopped");
    }

    /// One round: new audit records, deadlines passed, the digest when it is due.
    async fn round(&self, now: i64) -> Result<(), Error> {
        let started = match self.deliveries.state(STARTED).await? {
            Some(t) => t,
            None => {
                self.deliveries.set_state(STARTED, now).await?;
                self.deliveries.set_state(CURSOR, now).await?;
                now
            }
        };
        let mut new = Vec::new();
        let cursor = self.deliveries.state(CURSOR).await?.unwrap_or(now);
        let records = self
            .tickets
            .store
            .history_since(cursor.saturating_sub(LOOKBACK_MS), BATCH)
            .await?;
        let mut last = cursor;
        for (id, record) in &records {
            last = last.max(record.at);
            if record.at < started {
                continue;
            }
            let event = match record.action.as_str() {
                "create" if record.changes["grade"] == "major" => TicketEvent::Major,
                "supervise" | "auto_supervise" => TicketEvent::Supervised,
                _ => continue,
            };
            let Some(ticket) = self.tickets.store.get(id).await? else {
                continue;
            };
            let tag = format!("ticket:{id}:v{}:{}", record.version, event.as_str());
            new.extend(self.for_routes(event, &ticket.school, &tag, || {
                self.ticket_message(event, &ticket)
            }));
        }
        if self.wants(TicketEvent::Overdue) {
            let filter = ListFilter {
                overdue: Some(true),
                limit: 1000,
                ..ListFilter::default()
            };
            for ticket in self.tickets.store.list(&filter, now).await? {
                let Some(deadline) = ticket.deadline_at else {
                    continue;
                };
                if deadline < started {
                    continue;
                }
                let tag = format!("ticket:{}:overdue:{deadline}", ticket.id);
                new.extend(
                    self.for_routes(TicketEvent::Overdue, &ticket.school, &tag, || {
                        self.ticket_message(TicketEvent::Overdue, &ticket)
                    }),
                );
            }
        }
        let mut digest_day = None;
        if self.wants(TicketEvent::Digest) {
            let (digest, day) = self.digest(now, started).await?;
            new.extend(digest);
            digest_day = day;
        }
        self.deliveries.enqueue(&new, now).await?;
        // Moved only once what was read is queued. A full batch: the next round goes on from
        // its last record (the lookback reads some again; keys keep them from going twice).
        self.deliveries.set_state(CURSOR, last).await?;
        if let Some(day) = digest_day {
            self.deliveries.set_state(DIGEST_DAY, day).await?;
        }
        for d in &new {
            if let Some(wake) = self.wake.get(&d.channel) {
                wake.notify_one();
            }
        }
        Ok(())
    }

    fn wants(&self, event: TicketEvent) -> bool {
        self.config
            .ticket_routes
            .iter()
            .any(|r| r.events.contains(&event))
    }

    /// Deliveries of `event` about `school` to every route and channel that takes them.
    fn for_routes(
        &self,
        event: TicketEvent,
        school: &str,
        tag: &str,
        message: impl Fn() -> Message,
    ) -> Vec<NewDelivery> {
        let mut out = Vec::new();
        for route in &self.config.ticket_routes {
            if !route.events.contains(&event) || !route.takes_school(school) {
                continue;
            }
            for channel in &route.channels {
                let takes = self
                    .config
                    .channel(channel)
                    .is_some_and(|c| c.takes_school(school));
                if !takes || out.iter().any(|d: &NewDelivery| &d.channel == channel) {
                    continue;
                }
                out.push(NewDelivery {
                    key: format!("{tag}:{channel}"),
                    channel: channel.clone(),
                    kind: "ticket".into(),
                    alarm_id: None,
                    digest: false,
                    message: message(),
                    not_before: now_ms(),
                });
            }
        }
        out
    }

    fn ticket_message(&self, event: TicketEvent, t: &Ticket) -> Message {
        let r = &self.renderer;
        let head = match event {
            TicketEvent::Major => "【重大隐患】",
            TicketEvent::Overdue => "【隐患逾期】",
            TicketEvent::Supervised => "【挂牌督办】",
            TicketEvent::Digest => "【隐患日报】",
        };
        let school = r.school_name(&t.school);
        let title = format!("{head}{school} · {}", t.location);
        let mut lines = vec![
            format!("编号：{}", t.id),
            format!("学校：{school}"),
            format!("位置：{}", t.location),
            format!(
                "类别：{} · {}",
                t.category.label(Lang::Zh),
                t.grade.label(Lang::Zh)
            ),
            format!("隐患：{}", t.description),
        ];
        if let Some(unit) = &t.responsible_unit {
            lines.push(format!("责任单位：{unit}"));
        }
        if let Some(deadline) = t.deadline_at {
            lines.push(format!("整改期限：{}", r.time(deadline)));
        }
        lines.push(format!("状态：{}", t.state.label(Lang::Zh)));
        if t.supervised {
            lines.push("督办：是".into());
        }
        Message {
            kind: "ticket".into(),
            step: event.as_str().into(),
            line: format!("{title} · {}", t.id),
            title,
            lines,
            link: r.console_link(&format!("tickets/{}", t.id)),
            events: Vec::new(),
            subject: serde_json::to_value(t).ok(),
        }
    }

    /// The day's digest, once it is `digest_at` (local) and it has not gone out today; with the
    /// day to record once it is queued.
    async fn digest(
        &self,
        now: i64,
        started: i64,
    ) -> Result<(Vec<NewDelivery>, Option<i64>), Error> {
        let offset = self.config.offset_ms();
        let minute = i64::from(self.config.digest_minute().unwrap_or(8 * 60));
        let day = (now + offset).div_euclid(86_400_000);
        let due_at = day * 86_400_000 - offset + minute * 60_000;
        // Not yet today, or the notifier was set up after today's time: tomorrow.
        if now < due_at || started > due_at {
            return Ok((Vec::new(), None));
        }
        if self
            .deliveries
            .state(DIGEST_DAY)
            .await?
            .is_some_and(|d| d >= day)
        {
            return Ok((Vec::new(), None));
        }
        let counts = self.tickets.store.open_counts(now).await?;
        let date = local_time(now, offset);
        let date = date.split(' ').next().unwrap_or(&date).to_string();
        let mut out = Vec::new();
        for (i, route) in self.config.ticket_routes.iter().enumerate() {
            if !route.events.contains(&TicketEvent::Digest) {
                continue;
            }
            let rows: Vec<&(String, i64, i64)> = counts
                .iter()
                .filter(|(school, _, _)| route.takes_school(school))
                .collect();
            let open: i64 = rows.iter().map(|r| r.1).sum();
            let overdue: i64 = rows.iter().map(|r| r.2).sum();
            let scope = match &route.schools {
                Some(schools) => schools
                    .iter()
                    .map(|s| self.renderer.school_name(s))
                    .collect::<Vec<_>>()
                    .join("、"),
                None => "全区".to_string(),
            };
            let title =
                format!("【隐患日报】{date} · {scope} · 未销号 {open} 条，逾期 {overdue} 条");
            let mut lines: Vec<String> = rows
                .iter()
                .map(|(school, open, overdue)| {
                    format!(
                        "{}：未销号 {open}，逾期 {overdue}",
                        self.renderer.school_name(school)
                    )
                })
                .collect();
            if lines.is_empty() {
                lines.push("没有未销号的隐患工单。".into());
            }
            let message = Message {
                kind: "digest".into(),
                step: "digest".into(),
                line: title.clone(),
                title,
                lines,
                link: self.renderer.console_link("bureau"),
                events: Vec::new(),
                subject: Some(json!({
                    "date": date,
                    "schools": rows.iter().map(|(s, o, d)| json!({"school": s, "open": o, "overdue": d})).collect::<Vec<_>>(),
                })),
            };
            for channel in &route.channels {
                out.push(NewDelivery {
                    key: format!("digest:{date}:r{}:{channel}", i + 1),
                    channel: channel.clone(),
                    kind: "digest".into(),
                    alarm_id: None,
                    digest: false,
                    message: message.clone(),
                    not_before: now,
                });
            }
        }
        Ok((out, Some(day)))
    }
}

//! Notifications: nobody misses an alarm. Alarm transitions are read from the alarm outbox at
//! the notifier's own pace; unacknowledged alarms escalate step by step to phones (WeCom,
//! DingTalk, Feishu group robots, e-mail, a webhook) until someone acknowledges them; ticket
//! events (a major hazard, an overdue or supervised ticket, the daily digest) go out too.
//!
//! ```text
//! core ──journal──► alarm outbox ──OutboxReader("notify")──► escalate (Planner) ──┐
//! ticket audit trail ──own cursor──► tickets (overdue, digest) ────────────────────┤
//!                                         notify_deliveries in notify.db (durable, keyed)
//!                                   ┌───────────── one sender per channel ◄─────────┘
//!                                   ▼   rate limit, coalescing, retries with backoff
//!                      WeCom / DingTalk / Feishu / e-mail / webhook
//!                                   │ Report (bounded; the sender waits when it is full)
//!                                   ▼
//!         core: `notified` note on each alarm named; `notify:<channel>` fault raised/cleared
//! ```
//!
//! Never on the alarm path: the core only journals (the outbox wakes the notifier) and takes
//! the notifier's reports as notes at its next flush, like the results of actions; a dead or
//! slow channel delays only its own sender. Loses nothing: every notification is a row in the
//! local store before it is sent, keyed by its idempotency key, and survives a kill -9; the
//! planner is rebuilt at start from the open alarms and the rows.
//!
//! - `config`: `[notify]`, validated at load.
//! - `planner`: which steps of which alarms are due (pure); `escalate`: the task around it.
//! - `message`: what a notification says (Chinese, one fact a line, local time, the link).
//! - `channels/`: one file per vendor, each with its documented format, signing and answers.
//! - `deliveries`: the durable delivery table; `sender`: one task per channel.
//! - `tickets`: ticket events from the ticket audit trail, with a durable cursor.
//! - `fault`: the `notify:<channel>` system fault (one function to re-point).
//! - `cli`: `campusguard notify test`.

pub mod channels;
pub mod cli;
pub mod config;
pub mod deliveries;
pub mod escalate;
pub mod fault;
pub mod message;
pub mod planner;
pub mod sender;
pub mod tickets;

pub use config::{ChannelConfig, ChannelKind, DrillMode, NotifyConfig, RouteConfig};
pub use fault::{fault_change, is_fault};

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::alarms::Alarm;
use crate::metrics::Metrics;
use crate::model::{DeviceInfo, DeviceKey};
use crate::rules::ProfileSet;
use crate::store::{LocalStore, OutboxReader, StorageConfig, StoreError};

/// What the notifier tells the core (which owns the journal and the alarm book).
#[derive(Debug)]
pub enum Report {
    /// One delivery attempt about these alarms (their state when the message was planned):
    /// the core journals a `notified` note with `comment` on each.
    Attempt { alarms: Vec<Alarm>, comment: String },
    /// The channel's `notify:<channel>` fault: raised with the failure, cleared with `None`.
    Channel {
        channel: String,
        failure: Option<String>,
    },
}

/// The outbox consumer name of the notifier.
pub const CONSUMER: &str = "notify";

/// An opened notifier: its outbox cursor and delivery table, not running yet.
pub struct Notifier {
    config: Arc<NotifyConfig>,
    reader: OutboxReader,
    store: LocalStore,
    deliveries: deliveries::Deliveries,
}

/// What the notifier reads besides its own configuration.
pub struct Context {
    /// Device profiles (labels of rules, units of points).
    pub profiles: Arc<ProfileSet>,
    /// Devices configured (`[[devices]]`, `[[modbus.devices]]`).
    pub devices: Vec<(DeviceKey, DeviceInfo)>,
    /// The ticket service, for ticket events.
    pub tickets: crate::tickets::Tickets,
}

/// Opens the notifier's cursor on the alarm outbox and its delivery file
/// (`<data_dir>/notify.db`). Must run before the core starts, so it sees every transition the
/// core journals. `None` when no channel is configured (nothing to send).
pub async fn open(
    config: &NotifyConfig,
    store: &LocalStore,
    storage: &StorageConfig,
) -> Result<Option<Notifier>, StoreError> {
    if !config.enabled() {
        return Ok(None);
    }
    let deliveries = deliveries::Deliveries::open(
        &storage.data_dir.join(DELIVERIES_FILE),
        // Where deliveries lived before: taken over once.
        &storage.database_path(),
    )
    .await?;
    Ok(Some(Notifier {
        config: Arc::new(config.clone()),
        reader: store.outbox_reader(CONSUMER).await?,
        store: store.clone(),
        deliveries,
    }))
}

/// The notifier's own SQLite file in the data directory.
pub const DELIVERIES_FILE: &str = "notify.db";

impl Notifier {
    /// Starts the escalation task, the ticket task and one sender per channel on `tasks`; they
    /// stop at `shutdown`. Fails only when a channel cannot be built (the environment changed
    /// since the configuration was checked).
    pub fn start(
        self,
        context: Context,
        reports: mpsc::Sender<Report>,
        metrics: &Arc<Metrics>,
        shutdown: &CancellationToken,
        supervisor: &crate::supervisor::Supervisor,
    ) -> Result<(), String> {
        let config = self.config;
        let deliveries = self.deliveries;
        let renderer = message::Renderer {
            console_url: config.console_url.clone(),
            offset_ms: config.offset_ms(),
            profiles: context.profiles,
            directory: Arc::new(message::Directory::new(context.devices)),
        };
        let wake: HashMap<String, Arc<Notify>> = config
            .channels
            .iter()
            .map(|c| (c.name.clone(), Arc::new(Notify::new())))
            .collect();
        let retry = sender::Retry {
            min: config.retry_min,
            max: config.retry_max,
            give_up_after: config.give_up_after,
            fault_after: config.fault_after,
        };
        let mut senders = Vec::new();
        for c in &config.channels {
            let channel = channels::Channel::from_config(c, config.timeout)?;
            senders.push(sender::Sender {
                name: c.name.clone(),
                channel,
                deliveries: deliveries.clone(),
                wake: wake.get(&c.name).cloned().unwrap_or_default(),
                reports: reports.clone(),
                metrics: metrics.clone(),
                renderer: renderer.clone(),
                rate: sender::RateLimit::new(c.max_per_minute(), tokio::time::Instant::now()),
                retry: retry.clone(),
                failures: 0,
                faulted: true,
                raised: false,
            });
        }
        for s in senders {
            let name = format!("notify-{}", s.name);
            supervisor.once(name, s.run(shutdown.clone()));
        }
        let escalation = escalate::Escalation::new(
            &config,
            self.reader,
            self.store.clone(),
            deliveries.clone(),
            renderer.clone(),
            wake.clone(),
        );
        supervisor.once("notify-escalation", escalation.run(shutdown.clone()));
        if !config.ticket_routes.is_empty() {
            let tickets = tickets::TicketNotifier {
                config: config.clone(),
                tickets: context.tickets,
                deliveries,
                renderer,
                wake,
            };
            supervisor.once("notify-tickets", tickets.run(shutdown.clone()));
        }
        Ok(())
    }
}

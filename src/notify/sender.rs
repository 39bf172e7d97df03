//! One sender task per channel: takes the channel's due deliveries from the delivery table,
//! keeps within the channel's rate, sends, and records what happened — in the table, in
//! `campusguard_notifications_total{channel,result}`, as a `notified` note on every alarm the
//! message named, and as the channel's `notify:<channel>` fault.
//!
//! - **Rate**: at most `max_per_minute` requests in any 60 s window (retries count too): a small
//!   burst (a quarter of the limit, at most 5 — Feishu also allows only 5 a second) then an even
//!   pace, so a flood keeps going out every few seconds instead of stalling for a minute.
//! - **Coalescing**: when more is due than the rate allows one by one, one summary message names
//!   every delivery it stands for (split so each message stays within the vendor's size). A
//!   digest route's deliveries always go out this way. Nothing is dropped.
//! - **Retries**: connection errors, timeouts, 5xx and rate-limit answers are tried again after
//!   `retry_min` doubling to `retry_max`, with jitter (at least what the answer asked to wait);
//!   a delivery still failing after `give_up_after` is given up. Permanent failures (bad URL,
//!   signature refused) are recorded at once.
//! - **Fault**: a permanent failure, or `fault_after` failures in a row, raises
//!   `notify:<channel>`; the next success clears it.
//!
//! One request at a time per channel: a slow or dead channel delays only itself.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::channels::{Channel, Outgoing, SendError};
use super::deliveries::{Deliveries, Delivery};
use super::message::{Message, Renderer};
use super::Report;
use crate::metrics::Metrics;
use crate::model::now_ms;

/// Deliveries looked at per round.
const BATCH: usize = 500;
/// Longest sleep without looking at the table (a wake-up may have been missed).
const IDLE: Duration = Duration::from_secs(30);

/// Sends of one channel within its rate: a token bucket (burst, then an even pace) under a
/// sliding 60 s window that is never exceeded.
pub struct RateLimit {
    max: usize,
    burst: f64,
    per_sec: f64,
    tokens: f64,
    refilled: Instant,
    sent: VecDeque<Instant>,
}

const WINDOW: Duration = Duration::from_secs(60);

impl RateLimit {
    pub fn new(max_per_minute: u32, now: Instant) -> Self {
        let max = max_per_minute.max(1);
        let burst = (max / 4).clamp(1, 5);
        Self {
            max: max as usize,
            burst: f64::from(burst),
            per_sec: f64::from(max.saturating_sub(burst).max(1)) / 60.0,
            tokens: f64::from(burst),
            refilled: now,
            sent: VecDeque::new(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        self.refilled = now;
        while self
            .sent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
        {
            self.sent.pop_front();
        }
    }

    /// How long until one more request may go (zero: now).
    pub fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        let bucket = if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec)
        };
        let window = if self.sent.len() < self.max {
            Duration::ZERO
        } else {
            self.sent.front().map_or(Duration::ZERO, |t| {
                (*t + WINDOW).saturating_duration_since(now)
            })
        };
        bucket.max(window)
    }

    /// Whole requests that may go now, one after the other.
    pub fn available(&mut self, now: Instant) -> usize {
        self.refill(now);
        (self.tokens.floor() as usize).min(self.max.saturating_sub(self.sent.len()))
    }

    pub fn take(&mut self, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens - 1.0).max(0.0);
        self.sent.push_back(now);
    }

    /// The vendor said we went too fast: wait for a full bucket.
    pub fn drain(&mut self, now: Instant) {
        self.refill(now);
        self.tokens = 0.0;
    }
}

/// The retry policy of a channel.
#[derive(Debug, Clone)]
pub struct Retry {
    pub min: Duration,
    pub max: Duration,
    pub give_up_after: Duration,
    pub fault_after: u32,
}

impl Retry {
    /// The wait before attempt `attempts + 1`: `min · 2^attempts`, capped, with jitter (½ to 1),
    /// and at least what the answer asked for.
    pub fn backoff(&self, attempts: u32, asked: Option<Duration>) -> Duration {
        let base = self
            .min
            .saturating_mul(1u32 << attempts.min(20))
            .min(self.max);
        let jittered = base.mul_f64(rand::thread_rng().gen_range(0.5..=1.0));
        jittered.max(asked.unwrap_or(Duration::ZERO))
    }
}

pub struct Sender {
    pub name: String,
    pub channel: Channel,
    pub deliveries: Deliveries,
    pub wake: Arc<Notify>,
    pub reports: mpsc::Sender<Report>,
    pub metrics: Arc<Metrics>,
    pub renderer: Renderer,
    pub rate: RateLimit,
    pub retry: Retry,
    /// Failed attempts in a row.
    pub failures: u32,
    /// Whether the channel's fault may be open, so a success clears it (true at start: a fault
    /// raised before a restart is cleared by the first success).
    pub faulted: bool,
    /// Whether this run raised the fault (it is raised once, not at every failure).
    pub raised: bool,
}

impl Sender {
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            match self.round(&shutdown).await {
                Ok(()) => backoff = Duration::from_millis(200),
                Err(e) => {
                    warn!(channel = %self.name, error = %e, retry_in = ?backoff, "notification sender: local store failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        info!(channel = %self.name, "notification sender stopped");
    }

    /// Sends one message (or sleeps until something is due or the rate allows).
    async fn round(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Result<(), crate::store::StoreError> {
        let now = now_ms();
        let due = self.deliveries.due(&self.name, now, BATCH).await?;
        if due.is_empty() {
            let next = self.deliveries.next_due(&self.name).await?;
            let sleep = next
                .map(|at| Duration::from_millis(u64::try_from(at - now).unwrap_or(0)))
                .unwrap_or(IDLE)
                .min(IDLE);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
            return Ok(());
        }
        let wait = self.rate.wait(Instant::now());
        if !wait.is_zero() {
            // More may become due meanwhile: it joins the next message.
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(wait) => {}
            }
            return Ok(());
        }
        let batch = self.choose(due);
        self.send(batch).await
    }

    /// What goes in the next message: one delivery when the rate allows each its own, else a
    /// summary of as many as one message holds.
    fn choose(&mut self, mut due: Vec<Delivery>) -> Vec<Delivery> {
        let digest = due.iter().any(|d| d.digest);
        let available = self.rate.available(Instant::now());
        // One by one while they fit in the burst; a flood beyond it is summarised.
        if !digest && (due.len() == 1 || (due.len() <= 3 && due.len() <= available)) {
            due.truncate(1);
            return due;
        }
        let budget = self.channel.max_text_bytes();
        let max_items = self.channel.max_items();
        let mut bytes = 0;
        let mut take = 0;
        for d in &due {
            let more = d.message.line.len() + 1;
            if take > 0 && (bytes + more > budget || take >= max_items) {
                break;
            }
            bytes += more;
            take += 1;
        }
        due.truncate(take.max(1));
        due
    }

    async fn send(&mut self, batch: Vec<Delivery>) -> Result<(), crate::store::StoreError> {
        let keys: Vec<String> = batch.iter().map(|d| d.key.clone()).collect();
        let ids: Vec<i64> = batch.iter().map(|d| d.id).collect();
        let summary;
        let message: &Message = if batch.len() == 1 && !batch[0].digest {
            &batch[0].message
        } else {
            let parts: Vec<&Message> = batch.iter().map(|d| &d.message).collect();
            summary = self
                .renderer
                .summary(&parts, batch.iter().any(|d| d.digest));
            &summary
        };
        let out = Outgoing {
            channel: &self.name,
            keys: &keys,
            message,
        };
        self.rate.take(Instant::now());
        let result = self.channel.send(&out).await;
        let now = now_ms();
        let n = batch.len() as u64;
        let together = if batch.len() > 1 {
            format!("（合并发送，共 {} 条）", batch.len())
        } else {
            String::new()
        };
        match result {
            Ok(answer) => {
                self.deliveries.sent(&ids, now).await?;
                self.metrics.notification(&self.name, "sent", n);
                debug!(channel = %self.name, deliveries = n, answer = %answer, "notification delivered");
                self.note(&batch, |step| {
                    format!("{step} · 已送达{together}（{answer}）")
                })
                .await;
                self.failures = 0;
                if self.faulted {
                    self.faulted = false;
                    self.raised = false;
                    self.report(Report::Channel {
                        channel: self.name.clone(),
                        failure: None,
                    })
                    .await;
                }
            }
            Err(SendError::Permanent(why)) => {
                self.deliveries.fail(&ids, now, &why).await?;
                self.metrics.notification(&self.name, "failed", n);
                warn!(channel = %self.name, deliveries = n, error = %why, "notification refused for good");
                self.note(&batch, |step| {
                    format!("{step} · 失败，不再重试{together}：{why}")
                })
                .await;
                self.failures += 1;
                self.raise(&why).await;
            }
            Err(SendError::Retry {
                reason,
                rate_limited,
                after,
            }) => {
                if rate_limited {
                    self.rate.drain(Instant::now());
                }
                let attempts = batch.iter().map(|d| d.attempts).max().unwrap_or(0);
                let wait = self.retry.backoff(attempts, after);
                let give_up_ms =
                    i64::try_from(self.retry.give_up_after.as_millis()).unwrap_or(i64::MAX);
                let (expired, live): (Vec<&Delivery>, Vec<&Delivery>) = batch
                    .iter()
                    .partition(|d| now.saturating_sub(d.created_at) > give_up_ms);
                let live_ids: Vec<i64> = live.iter().map(|d| d.id).collect();
                let expired_ids: Vec<i64> = expired.iter().map(|d| d.id).collect();
                let next_at = now + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 4);
                self.deliveries.retry(&live_ids, next_at, &reason).await?;
                self.deliveries
                    .fail(&expired_ids, now, &format!("given up: {reason}"))
                    .await?;
                let result = if rate_limited {
                    "rate_limited"
                } else {
                    "retry"
                };
                self.metrics
                    .notification(&self.name, result, live_ids.len() as u64);
                self.metrics
                    .notification(&self.name, "failed", expired_ids.len() as u64);
                warn!(channel = %self.name, deliveries = n, error = %reason, retry_in = ?wait, "notification not delivered; retrying");
                let secs = wait.as_secs().max(1);
                self.note(&batch, |step| {
                    format!("{step} · 失败，{secs} 秒后重试{together}：{reason}")
                })
                .await;
                self.failures += 1;
                if self.failures >= self.retry.fault_after {
                    self.raise(&reason).await;
                }
            }
        }
        Ok(())
    }

    async fn raise(&mut self, why: &str) {
        if !self.raised {
            self.raised = true;
            self.faulted = true;
            self.report(Report::Channel {
                channel: self.name.clone(),
                failure: Some(why.to_string()),
            })
            .await;
        }
    }

    /// Journals one `notified` note per alarm the batch named, grouped by step.
    async fn note(&self, batch: &[Delivery], comment: impl Fn(&str) -> String) {
        let mut by_step: BTreeMap<&str, Vec<crate::alarms::Alarm>> = BTreeMap::new();
        for d in batch {
            for e in &d.message.events {
                by_step
                    .entry(d.message.step.as_str())
                    .or_default()
                    .push(e.alarm.clone());
            }
        }
        for (step, alarms) in by_step {
            let comment = format!("{} · {}", self.name, comment(step));
            self.report(Report::Attempt { alarms, comment }).await;
        }
    }

    /// Hands a report to the core; waits when its queue is full (the delivery is already
    /// recorded in the table; only the journal note waits).
    async fn report(&self, report: Report) {
        if self.reports.send(report).await.is_err() {
            debug!(channel = %self.name, "core gone; notification report dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_sixty_second_window_holds_more_than_the_limit() {
        let start = Instant::now();
        let mut rate = RateLimit::new(20, start);
        let mut sends = Vec::new();
        // Try to send every 100 ms for 5 minutes.
        for i in 0..3000u64 {
            let now = start + Duration::from_millis(i * 100);
            if rate.wait(now).is_zero() {
                rate.take(now);
                sends.push(i * 100);
            }
        }
        for (i, &t) in sends.iter().enumerate() {
            let in_window = sends[i..].iter().take_while(|&&u| u < t + 60_000).count();
            assert!(
                in_window <= 20,
                "{in_window} sends in the minute from {t} ms"
            );
        }
        // The burst goes at once, then an even pace: no minute-long stall.
        assert_eq!(&sends[..5], &[0, 100, 200, 300, 400]);
        let gaps: Vec<u64> = sends.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|&g| g <= 4100), "{gaps:?}");
        assert!(sends.len() >= 70, "{} sends in 5 minutes", sends.len());
    }

    #[test]
    fn backoff_doubles_with_jitter_and_honours_what_the_answer_asked() {
        let retry = Retry {
            min: Duration::from_secs(1),
            max: Duration::from_secs(60),
            give_up_after: Duration::from_secs(3600),
            fault_after: 3,
        };
        for attempts in 0..10 {
            let d = retry.backoff(attempts, None);
            let full = Duration::from_secs(1u64 << attempts).min(Duration::from_secs(60));
            assert!(d >= full / 2 && d <= full, "{attempts}: {d:?}");
        }
        assert!(retry.backoff(0, Some(Duration::from_secs(600))) >= Duration::from_secs(600));
    }
}

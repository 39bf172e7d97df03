//! `[notify]`: where notifications go and when. Channels (`[[notify.channels]]`: a WeCom,
//! DingTalk or Feishu group robot, e-mail, or a webhook), escalation steps for alarms
//! (`[[notify.routes]]`, each one step: alarms of these classes still unacknowledged `after`
//! this long go to these channels, optionally `repeat`ed or collected into a `digest`), and
//! ticket events (`[[notify.ticket_routes]]`). Every key is documented in
//! `config/gateway.example.toml`; [`NotifyConfig::validate`] reports every problem at once and
//! never prints a secret (URLs of robots carry their access token, so they are not printed
//! either).

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::model::{valid_name, AlarmClass};

/// `[notify]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Base URL of the console, put in every message as the link to the alarm
    /// (`<console_url>#/alarms/<id>`). Without it messages carry no link.
    #[serde(default)]
    pub console_url: Option<String>,
    /// The local time of messages and of the ticket digest, in hours east of UTC (8: 北京时间).
    #[serde(default = "default_offset")]
    pub timezone_offset_hours: i32,
    /// Drill alarms notify nobody (`off`), or are sent with 【演练】 leading (`marked`).
    #[serde(default)]
    pub drills: DrillMode,
    #[serde(default)]
    pub channels: Vec<ChannelConfig>,
    /// Escalation steps for alarms, in order; a step's number in messages and in the journal
    /// is its position here (1-based).
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub ticket_routes: Vec<TicketRouteConfig>,
    /// Local time of the daily ticket digest, `HH:MM`.
    #[serde(default = "default_digest_at")]
    pub digest_at: String,
    /// A delivery that fails with a retriable error (connection, timeout, 5xx, rate limit) is
    /// tried again after `retry_min`, doubling up to `retry_max`, with jitter.
    #[serde(default = "default_retry_min", with = "humantime_serde")]
    pub retry_min: Duration,
    #[serde(default = "default_retry_max", with = "humantime_serde")]
    pub retry_max: Duration,
    /// A delivery still failing this long after it was queued is given up (recorded as failed).
    #[serde(default = "default_give_up", with = "humantime_serde")]
    pub give_up_after: Duration,
    /// This many failed attempts in a row raise the channel's `notify:<channel>` fault even when
    /// each was retriable (a permanent failure raises it at once).
    #[serde(default = "default_fault_after")]
    pub fault_after: u32,
    /// Timeout of one request to a channel.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_offset() -> i32 {
    8
}
fn default_digest_at() -> String {
    "08:00".into()
}
fn default_retry_min() -> Duration {
    Duration::from_secs(1)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(300)
}
fn default_give_up() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_fault_after() -> u32 {
    3
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            console_url: None,
            timezone_offset_hours: default_offset(),
            drills: DrillMode::Off,
            channels: Vec::new(),
            routes: Vec::new(),
            ticket_routes: Vec::new(),
            digest_at: default_digest_at(),
            retry_min: default_retry_min(),
            retry_max: default_retry_max(),
            give_up_after: default_give_up(),
            fault_after: default_fault_after(),
            timeout: default_timeout(),
        }
    }
}

/// What happens to drill alarms.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DrillMode {
    /// Nobody is notified of a drill alarm.
    #[default]
    Off,
    /// Drill alarms are notified like real ones, with 【演练】 leading the message.
    Marked,
}

/// The kinds of channel.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// 企业微信 group robot (`msgtype` markdown).
    Wecom,
    /// 钉钉 custom robot (markdown; 加签 with `secret`).
    Dingtalk,
    /// 飞书 custom bot (rich text `post`; 签名校验 with `secret`).
    Feishu,
    /// E-mail over SMTP.
    Email,
    /// An HTTP endpoint of the site's own: the alarm event as JSON, signed with `secret`.
    Webhook,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Wecom => "wecom",
            ChannelKind::Dingtalk => "dingtalk",
            ChannelKind::Feishu => "feishu",
            ChannelKind::Email => "email",
            ChannelKind::Webhook => "webhook",
        }
    }

    /// The vendor's documented rate limit per robot (messages per minute), our default.
    pub fn default_max_per_minute(self) -> u32 {
        match self {
            // WeCom and DingTalk: 20 per minute per robot (DingTalk then blocks for 10 minutes).
            ChannelKind::Wecom | ChannelKind::Dingtalk => 20,
            // Feishu: 100 per minute and 5 per second per custom bot.
            ChannelKind::Feishu => 100,
            ChannelKind::Email => 30,
            ChannelKind::Webhook => 60,
        }
    }
}

/// `[[notify.channels]]`: one destination. Which keys apply depends on `kind`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Unique; routes name channels by it.
    pub name: String,
    pub kind: ChannelKind,
    /// Robots and webhook: the URL to POST to (a robot's URL carries its access token), or
    /// `url_env`, the name of an environment variable holding it, or `url_file`, a file
    /// holding it (see [`crate::secrets`]: a systemd credential when relative).
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub url_env: Option<String>,
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// DingTalk and Feishu 加签 secret, the webhook's HMAC key: `secret_file` or `secret_env`
    /// (preferred), or `secret`.
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub secret_env: Option<String>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Only alarms and tickets of these schools; omitted = all.
    #[serde(default)]
    pub schools: Option<Vec<String>>,
    /// At most this many messages in any minute; default: the vendor's documented limit.
    #[serde(default)]
    pub max_per_minute: Option<u32>,
    /// E-mail: `smtp://host:port` (STARTTLS when the server offers it) or `smtps://host:port`.
    #[serde(default)]
    pub smtp_url: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Vec<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

// Hand-written so neither a secret nor a robot's URL (which carries its token) reaches a log.
impl std::fmt::Debug for ChannelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &self.url.as_ref().map(|_| "***"))
            .field("url_env", &self.url_env)
            .field("url_file", &self.url_file)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("secret_env", &self.secret_env)
            .field("secret_file", &self.secret_file)
            .field("schools", &self.schools)
            .field("max_per_minute", &self.max_per_minute)
            .field("smtp_url", &self.smtp_url.as_ref().map(|u| redact_url(u)))
            .field("from", &self.from)
            .field("to", &self.to)
            .field("username", &self.username)
            .field("password_env", &self.password_env)
            .field("password_file", &self.password_file)
            .finish()
    }
}

/// `scheme://host:port` of a URL, without credentials, path or query (for messages and logs).
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}",
            u.scheme(),
            u.host_str().unwrap_or("?"),
            u.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "<not a URL>".into(),
    }
}

/// Reads the file `file` names (see [`crate::secrets`]), or the environment variable named by
/// `env`, or `value` (at most one is set; `validate` says so).
fn from_file_env_or(
    value: &Option<String>,
    env: &Option<String>,
    file: &Option<PathBuf>,
) -> Option<String> {
    if let Some(path) = file {
        return crate::secrets::read(path).ok();
    }
    env.as_ref()
        .and_then(|name| std::env::var(name).ok())
        .or_else(|| value.clone())
        .filter(|v| !v.is_empty())
}

impl ChannelConfig {
    /// The URL (robots, webhook), from `url_file`, `url_env` or `url`.
    pub fn resolved_url(&self) -> Option<String> {
        from_file_env_or(&self.url, &self.url_env, &self.url_file)
    }

    /// The signing secret, from `secret_file`, `secret_env` or `secret`.
    pub fn resolved_secret(&self) -> Option<String> {
        from_file_env_or(&self.secret, &self.secret_env, &self.secret_file)
    }

    /// The SMTP password, from `password_file` or `password_env`.
    pub fn resolved_password(&self) -> Option<String> {
        from_file_env_or(&None, &self.password_env, &self.password_file)
    }

    /// The secret files this channel names, for `check`'s world-readable warning.
    pub fn secret_files(&self) -> impl Iterator<Item = (&'static str, &PathBuf)> {
        [
            ("url_file", &self.url_file),
            ("secret_file", &self.secret_file),
            ("password_file", &self.password_file),
        ]
        .into_iter()
        .filter_map(|(key, file)| file.as_ref().map(|f| (key, f)))
    }

    pub fn max_per_minute(&self) -> u32 {
        self.max_per_minute
            .unwrap_or_else(|| self.kind.default_max_per_minute())
    }

    /// Whether this channel takes messages about `school`.
    pub fn takes_school(&self, school: &str) -> bool {
        self.schools
            .as_ref()
            .is_none_or(|s| s.iter().any(|x| x == school))
    }

    fn validate(&self, problems: &mut Vec<String>) {
        let at = format!("notify.channels `{}`", self.name);
        let http = !matches!(self.kind, ChannelKind::Email);
        let mut not_for = |key: &str, set: bool| {
            if set {
                problems.push(format!(
                    "{at}: `{key}` does not apply to kind = \"{}\"",
                    self.kind.as_str()
                ));
            }
        };
        if http {
            not_for("smtp_url", self.smtp_url.is_some());
            not_for("from", self.from.is_some());
            not_for("to", !self.to.is_empty());
            not_for("username", self.username.is_some());
            not_for("password_env", self.password_env.is_some());
            not_for("password_file", self.password_file.is_some());
        } else {
            not_for("url", self.url.is_some());
            not_for("url_env", self.url_env.is_some());
            not_for("url_file", self.url_file.is_some());
            not_for("secret", self.secret.is_some());
            not_for("secret_env", self.secret_env.is_some());
            not_for("secret_file", self.secret_file.is_some());
        }
        if self.kind == ChannelKind::Wecom {
            // The WeCom robot has no signing: its URL's key is the secret.
            not_for("secret", self.secret.is_some());
            not_for("secret_env", self.secret_env.is_some());
            not_for("secret_file", self.secret_file.is_some());
        }
        let count = |set: [bool; 3]| set.iter().filter(|s| **s).count();
        if count([
            self.url.is_some(),
            self.url_env.is_some(),
            self.url_file.is_some(),
        ]) > 1
        {
            problems.push(format!("{at}: set one of `url`, `url_env` and `url_file`"));
        }
        if count([
            self.secret.is_some(),
            self.secret_env.is_some(),
            self.secret_file.is_some(),
        ]) > 1
        {
            problems.push(format!(
                "{at}: set one of `secret`, `secret_env` and `secret_file`"
            ));
        }
        if self.password_env.is_some() && self.password_file.is_some() {
            problems.push(format!(
                "{at}: set `password_env` or `password_file`, not both"
            ));
        }
        for (key, file) in self.secret_files() {
            if let Err(e) = crate::secrets::read(file) {
                problems.push(format!("{at}: {key}: {e}"));
            }
        }
        if let Some(var) = &self.url_env {
            if std::env::var(var).map_or(true, |v| v.is_empty()) {
                problems.push(format!(
                    "{at}: url_env names {var}, which is not set (or empty)"
                ));
            }
        }
        if let Some(var) = &self.secret_env {
            if std::env::var(var).map_or(true, |v| v.is_empty()) {
                problems.push(format!(
                    "{at}: secret_env names {var}, which is not set (or empty)"
                ));
            }
        }
        if let Some(var) = &self.password_env {
            if std::env::var(var).map_or(true, |v| v.is_empty()) {
                problems.push(format!(
                    "{at}: password_env names {var}, which is not set (or empty)"
                ));
            }
        }
        if http {
            match (
                &self.url,
                &self.url_env,
                &self.url_file,
                self.resolved_url(),
            ) {
                (None, None, None, _) => problems.push(format!(
                    "{at}: `url` (or `url_env`, `url_file`) is required"
                )),
                (_, _, _, Some(url)) => {
                    if let Err(why) = check_http_url(&url) {
                        // The URL itself is not printed: a robot's URL carries its token.
                        problems.push(format!("{at}: url is not usable: {why}"));
                    }
                }
                // url_env not set or url_file unreadable: reported above.
                _ => {}
            }
        } else {
            match &self.smtp_url {
                None => problems.push(format!("{at}: `smtp_url` is required")),
                Some(url) => {
                    if let Err(why) = check_smtp_url(url) {
                        problems.push(format!("{at}: smtp_url: {why}"));
                    }
                }
            }
            match &self.from {
                None => problems.push(format!("{at}: `from` is required")),
                Some(from) if from.parse::<lettre::message::Mailbox>().is_err() => {
                    problems.push(format!("{at}: from = \"{from}\" is not an e-mail address"))
                }
                Some(_) => {}
            }
            if self.to.is_empty() {
                problems.push(format!("{at}: `to` needs at least one address"));
            }
            for to in &self.to {
                if to.parse::<lettre::message::Mailbox>().is_err() {
                    problems.push(format!("{at}: to \"{to}\" is not an e-mail address"));
                }
            }
            if self.password_env.is_some() && self.username.is_none() {
                problems.push(format!("{at}: password_env needs `username`"));
            }
        }
        if self.max_per_minute.is_some_and(|n| !(1..=600).contains(&n)) {
            problems.push(format!("{at}: max_per_minute must be between 1 and 600"));
        }
        check_schools(&at, &self.schools, problems);
    }
}

/// A URL the gateway can POST to: http or https with a host.
fn check_http_url(url: &str) -> Result<(), String> {
    let u = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("scheme `{}` (use http or https)", u.scheme()));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    Ok(())
}

fn check_smtp_url(url: &str) -> Result<(), String> {
    let u = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    if !matches!(u.scheme(), "smtp" | "smtps") {
        return Err(format!("scheme `{}` (use smtp:// or smtps://)", u.scheme()));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("put credentials in `username` and `password_env`, not in the URL".into());
    }
    Ok(())
}

fn check_schools(at: &str, schools: &Option<Vec<String>>, problems: &mut Vec<String>) {
    if let Some(schools) = schools {
        if schools.is_empty() {
            problems.push(format!(
                "{at}: schools = [] would take nothing; omit it for all schools"
            ));
        }
        for s in schools {
            if !valid_name(s) {
                problems.push(format!("{at}: `{s}` is not a school id"));
            }
        }
    }
}

/// `[[notify.routes]]`: one escalation step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Alarm classes this step is for.
    pub classes: Vec<AlarmClass>,
    /// Only alarms of these schools; omitted = all.
    #[serde(default)]
    pub schools: Option<Vec<String>>,
    /// Sent once the alarm has been unacknowledged this long (`0s`: at once).
    #[serde(default, with = "humantime_serde")]
    pub after: Duration,
    pub channels: Vec<String>,
    /// Sent again every `repeat` while the alarm stays unacknowledged.
    #[serde(default, with = "humantime_serde")]
    pub repeat: Option<Duration>,
    /// Collect the alarms of this step and send them together, at most once per `digest`
    /// (aligned to the local clock, e.g. `1h` on the hour) — for faults.
    #[serde(default, with = "humantime_serde")]
    pub digest: Option<Duration>,
}

impl RouteConfig {
    pub fn takes(&self, class: AlarmClass, school: &str) -> bool {
        self.classes.contains(&class)
            && self
                .schools
                .as_ref()
                .is_none_or(|s| s.iter().any(|x| x == school))
    }
}

/// The ticket events a ticket route can name.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum TicketEvent {
    /// A new `major` (重大) ticket.
    Major,
    /// A ticket passed its rectification deadline.
    Overdue,
    /// A ticket was put under supervision (督办), by the bureau or automatically.
    Supervised,
    /// Every day at `digest_at`: open and overdue tickets per school.
    Digest,
}

impl TicketEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketEvent::Major => "major",
            TicketEvent::Overdue => "overdue",
            TicketEvent::Supervised => "supervised",
            TicketEvent::Digest => "digest",
        }
    }
}

/// `[[notify.ticket_routes]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketRouteConfig {
    pub events: Vec<TicketEvent>,
    /// Only tickets of these schools (the digest: these schools); omitted = all (the bureau).
    #[serde(default)]
    pub schools: Option<Vec<String>>,
    pub channels: Vec<String>,
}

impl TicketRouteConfig {
    pub fn takes_school(&self, school: &str) -> bool {
        self.schools
            .as_ref()
            .is_none_or(|s| s.iter().any(|x| x == school))
    }
}

/// The shortest `repeat` or `digest`: shorter would be noise (tests use seconds).
const MIN_PERIOD: Duration = Duration::from_secs(1);

impl NotifyConfig {
    /// Whether anything is to be sent at all.
    pub fn enabled(&self) -> bool {
        !self.channels.is_empty()
    }

    pub fn offset_ms(&self) -> i64 {
        i64::from(self.timezone_offset_hours) * 3_600_000
    }

    /// `digest_at` as minutes after local midnight.
    pub fn digest_minute(&self) -> Option<u32> {
        let (h, m) = self.digest_at.split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60 && self.digest_at.len() == 5).then_some(h * 60 + m)
    }

    pub fn channel(&self, name: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.name == name)
    }

    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(url) = &self.console_url {
            if let Err(why) = check_http_url(url) {
                problems.push(format!("notify.console_url `{url}`: {why}"));
            }
        }
        if !(-12..=14).contains(&self.timezone_offset_hours) {
            problems.push("notify.timezone_offset_hours must be between -12 and 14".into());
        }
        if self.digest_minute().is_none() {
            problems.push(format!(
                "notify.digest_at `{}` must be HH:MM (00:00 to 23:59)",
                self.digest_at
            ));
        }
        if self.retry_min.is_zero() || self.retry_max < self.retry_min {
            problems.push("notify.retry_min must be > 0 and at most retry_max".into());
        }
        if self.give_up_after < self.retry_max {
            problems.push("notify.give_up_after must be at least retry_max".into());
        }
        if self.fault_after == 0 {
            problems.push("notify.fault_after must be at least 1".into());
        }
        if self.timeout.is_zero() {
            problems.push("notify.timeout must be greater than 0".into());
        }
        let mut names = HashSet::new();
        for channel in &self.channels {
            if !valid_name(&channel.name) {
                problems.push(format!(
                    "notify.channels `{}`: a name must be non-empty and contain no '/', '+', '#' or spaces",
                    channel.name
                ));
            }
            if !names.insert(channel.name.as_str()) {
                problems.push(format!(
                    "notify.channels `{}`: duplicate name",
                    channel.name
                ));
            }
            channel.validate(&mut problems);
        }
        let known = |problems: &mut Vec<String>, at: &str, channels: &[String]| {
            if channels.is_empty() {
                problems.push(format!("{at}: `channels` needs at least one channel"));
            }
            for c in channels {
                if !names.contains(c.as_str()) {
                    problems.push(format!(
                        "{at}: unknown channel `{c}` (known: {})",
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            let mut known: Vec<&str> = names.iter().copied().collect();
                            known.sort_unstable();
                            known.join(", ")
                        }
                    ));
                }
            }
        };
        for (i, route) in self.routes.iter().enumerate() {
            let at = format!("notify.routes[{}]", i + 1);
            if route.classes.is_empty() {
                problems.push(format!("{at}: `classes` needs at least one alarm class"));
            }
            known(&mut problems, &at, &route.channels);
            check_schools(&at, &route.schools, &mut problems);
            if route.repeat.is_some_and(|r| r < MIN_PERIOD) {
                problems.push(format!("{at}: repeat must be at least 1s"));
            }
            if route.digest.is_some_and(|d| d < MIN_PERIOD) {
                problems.push(format!("{at}: digest must be at least 1s"));
            }
            if route.repeat.is_some() && route.digest.is_some() {
                problems.push(format!("{at}: set `repeat` or `digest`, not both"));
            }
        }
        for (i, route) in self.ticket_routes.iter().enumerate() {
            let at = format!("notify.ticket_routes[{}]", i + 1);
            if route.events.is_empty() {
                problems.push(format!("{at}: `events` needs at least one event"));
            }
            known(&mut problems, &at, &route.channels);
            check_schools(&at, &route.schools, &mut problems);
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> NotifyConfig {
        toml::from_str(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_issue_contract_parses_and_validates() {
        let c = parse(
            r#"
console_url = "https://campusguard.school.example/"
timezone_offset_hours = 8

[[channels]]
name = "duty-room"
kind = "dingtalk"
url = "https://oapi.dingtalk.com/robot/send?access_token=abc"
secret = "SECabc"
schools = ["xhsy"]
max_per_minute = 20

[[channels]]
name = "safety-mail"
kind = "email"
smtp_url = "smtp://127.0.0.1:25"
from = "campusguard@school.example"
to = ["safety@school.example"]

[[routes]]
classes = ["fire", "gas"]
schools = ["xhsy"]
after = "0s"
channels = ["duty-room"]
repeat = "5m"

[[routes]]
classes = ["fire", "gas"]
after = "60s"
channels = ["safety-mail"]

[[ticket_routes]]
events = ["major", "overdue", "supervised", "digest"]
channels = ["safety-mail"]
"#,
        );
        assert_eq!(c.validate(), Vec::<String>::new());
        assert_eq!(c.routes[0].repeat, Some(Duration::from_secs(300)));
        assert_eq!(c.routes[1].after, Duration::from_secs(60));
        assert_eq!(c.channels[0].max_per_minute(), 20);
        assert_eq!(c.channels[1].max_per_minute(), 30);
        assert_eq!(c.digest_minute(), Some(8 * 60));
        assert!(c.routes[0].takes(AlarmClass::Fire, "xhsy"));
        assert!(!c.routes[0].takes(AlarmClass::Fire, "other"));
        assert!(!c.routes[1].takes(AlarmClass::Fault, "xhsy"));
    }

    #[test]
    fn secrets_come_from_files_and_a_missing_file_or_two_sources_are_reported() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let url = dir.path().join("robot-url");
        let secret = dir.path().join("robot-secret");
        let password = dir.path().join("smtp-password");
        for (path, text) in [
            (
                &url,
                "https://oapi.dingtalk.com/robot/send?access_token=from-file\n",
            ),
            (&secret, "SECfile\n"),
            (&password, "mail-pass\n"),
        ] {
            std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
        }
        let c = parse(&format!(
            r#"
[[channels]]
name = "duty-room"
kind = "dingtalk"
url_file = "{}"
secret_file = "{}"

[[channels]]
name = "safety-mail"
kind = "email"
smtp_url = "smtp://127.0.0.1:25"
from = "campusguard@school.example"
to = ["safety@school.example"]
username = "campusguard"
password_file = "{}"
"#,
            url.display(),
            secret.display(),
            password.display()
        ));
        assert_eq!(c.validate(), Vec::<String>::new());
        assert_eq!(
            c.channels[0].resolved_url().as_deref(),
            Some("https://oapi.dingtalk.com/robot/send?access_token=from-file")
        );
        assert_eq!(c.channels[0].resolved_secret().as_deref(), Some("SECfile"));
        assert_eq!(
            c.channels[1].resolved_password().as_deref(),
            Some("mail-pass")
        );
        assert_eq!(c.channels[0].secret_files().count(), 2);

        let broken = parse(&format!(
            r#"
[[channels]]
name = "duty-room"
kind = "dingtalk"
url = "https://oapi.dingtalk.com/robot/send?access_token=abc"
url_file = "{}"
secret_file = "{}"
"#,
            url.display(),
            dir.path().join("missing").display()
        ));
        let problems = broken.validate().join("\n");
        assert!(
            problems.contains("set one of `url`, `url_env` and `url_file`"),
            "{problems}"
        );
        assert!(problems.contains("secret_file: cannot read"), "{problems}");
        assert!(!problems.contains("access_token=abc"), "{problems}");
    }

    #[test]
    fn broken_channels_and_routes_are_all_reported_without_printing_secrets() {
        let c = parse(
            r#"
[[channels]]
name = "duty-room"
kind = "dingtalk"
url = "ftp://oapi.dingtalk.com/robot/send?access_token=TOPSECRET"
secret_env = "CAMPUSGUARD_TEST_SURELY_UNSET_SECRET"

[[channels]]
name = "duty-room"
kind = "wecom"
url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"
secret = "no-signing-here"

[[channels]]
name = "mail"
kind = "email"
smtp_url = "http://mail.example"
from = "not an address"
url = "https://x.example"

[[routes]]
classes = []
channels = ["nowhere"]
repeat = "5m"
digest = "1h"

[[ticket_routes]]
events = ["major"]
channels = []
"#,
        );
        let problems = c.validate();
        let text = problems.join("\n");
        for expected in [
            "notify.channels `duty-room`: url is not usable: scheme `ftp`",
            "secret_env names CAMPUSGUARD_TEST_SURELY_UNSET_SECRET, which is not set",
            "notify.channels `duty-room`: duplicate name",
            "`secret` does not apply to kind = \"wecom\"",
            "notify.channels `mail`: smtp_url: scheme `http`",
            "from = \"not an address\" is not an e-mail address",
            "`to` needs at least one address",
            "`url` does not apply to kind = \"email\"",
            "notify.routes[1]: `classes` needs at least one alarm class",
            "notify.routes[1]: unknown channel `nowhere` (known: duty-room, mail)",
            "notify.routes[1]: set `repeat` or `digest`, not both",
            "notify.ticket_routes[1]: `channels` needs at least one channel",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert!(!text.contains("TOPSECRET"), "{text}");
        assert!(!format!("{:?}", c.channels[0]).contains("TOPSECRET"));
    }

    /// The `[notify]` section of the documented example with its commented examples switched
    /// on (variables replaced by values, so nothing depends on the environment).
    fn example_switched_on() -> String {
        let example = include_str!("../../config/gateway.example.toml");
        let section = &example[example
            .find("\n[notify]")
            .unwrap_or_else(|| panic!("no [notify]"))..];
        let key = |l: &str| {
            l.starts_with("[[notify.")
                || l.split_once(" = ").is_some_and(|(k, _)| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                })
        };
        section
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if key(rest) => rest.to_string(),
                _ => l.to_string(),
            })
            .map(|l| {
                if l.starts_with("url_env") {
                    "url = \"https://robot.example/send?key=k\"".to_string()
                } else if l.starts_with("secret_env") {
                    "secret = \"s\"".to_string()
                } else if l.starts_with("password_env") {
                    String::new()
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_documented_example_with_its_routes_switched_on_is_valid() {
        #[derive(Deserialize)]
        struct File {
            notify: NotifyConfig,
        }
        let text = example_switched_on();
        let file: File = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let c = file.notify;
        // password_env is dropped with its variable, so its username is left alone: fine.
        assert_eq!(c.validate(), Vec::<String>::new(), "{text}");
        assert_eq!(c.channels.len(), 5);
        let kinds: Vec<&str> = c.channels.iter().map(|c| c.kind.as_str()).collect();
        assert_eq!(kinds, ["dingtalk", "wecom", "feishu", "webhook", "email"]);
        let steps: Vec<(Vec<AlarmClass>, u64)> = c
            .routes
            .iter()
            .map(|r| (r.classes.clone(), r.after.as_secs()))
            .collect();
        use AlarmClass::*;
        assert_eq!(
            steps,
            [
                (vec![Fire, Gas], 0),
                (vec![Fire, Gas], 60),
                (vec![Fire, Gas], 180),
                (vec![Supervisory], 600),
                (vec![Fault], 0),
            ]
        );
        assert_eq!(c.routes[4].digest, Some(Duration::from_secs(3600)));
        assert_eq!(c.ticket_routes.len(), 2);
        assert_eq!(c.digest_minute(), Some(8 * 60));
    }

    #[test]
    fn unknown_keys_and_kinds_are_refused() {
        assert!(toml::from_str::<NotifyConfig>("bogus = 1").is_err());
        assert!(toml::from_str::<NotifyConfig>(
            "[[channels]]\nname = \"a\"\nkind = \"pager\"\nurl = \"https://x\"\n"
        )
        .is_err());
        assert!(toml::from_str::<NotifyConfig>(
            "[[routes]]\nclasses = [\"fire\"]\nchannels = [\"a\"]\nwhen = \"0s\"\n"
        )
        .is_err());
    }
}

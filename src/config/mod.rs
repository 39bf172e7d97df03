//! Configuration, the top floor: one TOML file, loaded once and validated before anything
//! starts. Every component owns its config struct (in its own folder, with its own
//! `validate`); this module only composes them into [`Config`] and cross-checks between them.
//! Besides `lib.rs`, `main.rs` and the command modules, nothing imports [`Config`]: each stage
//! gets its own slice.
//!
//! Loading goes: read the file → apply `CAMPUSGUARD_<SECTION>__<KEY>` environment overrides
//! (edited into the document, so positions of untouched keys stay right) → deserialize into
//! typed per-component structs (`deny_unknown_fields`; syntax and type errors are reported as
//! `file:line:col: message`) → cross-check everything ([`Config::validate`]) and report all
//! problems at once. Every message has the credentials of the file and of the overrides masked
//! (`crate::redact`): an error message ends up in terminals, logs and tickets.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use serde::Deserialize;

use crate::alarms::AlarmsConfig;
use crate::api::HttpConfig;
use crate::broker::BrokerConfig;
use crate::duty::DutyConfig;
use crate::ingest::modbus::ModbusConfig;
use crate::ingest::mqtt::MqttConfig;
use crate::model::valid_name;
use crate::notify::NotifyConfig;
use crate::pipeline::{DeviceConfig, PipelineConfig};
use crate::redact::Secrets;
use crate::rules::{ProfileSet, RulesConfig};
use crate::schools::{School, Schools};
use crate::store::timeseries::{TimeseriesConfig, TimeseriesKind};
use crate::store::StorageConfig;
use crate::tickets::config::Place;
use crate::tickets::reports::ReportsConfig;
use crate::tickets::TicketsConfig;
use crate::users::UsersConfig;

/// The environment prefix of overrides: `CAMPUSGUARD_MQTT__URL` sets `mqtt.url`.
pub const ENV_PREFIX: &str = "CAMPUSGUARD_";

/// The whole gateway configuration, one struct per component.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub broker: BrokerConfig,
    #[serde(default)]
    pub mqtt: MqttConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub pipeline: PipelineConfig,
    #[serde(default)]
    pub rules: RulesConfig,
    #[serde(default)]
    pub alarms: AlarmsConfig,
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
    #[serde(default)]
    pub timeseries: TimeseriesConfig,
    #[serde(default)]
    pub modbus: ModbusConfig,
    #[serde(default)]
    pub users: UsersConfig,
    #[serde(default)]
    pub tickets: TicketsConfig,
    #[serde(default)]
    pub notify: NotifyConfig,
    /// The district's schools (`[[schools]]`: id, name, code, kind).
    #[serde(default)]
    pub schools: Vec<School>,
    /// The reporting calendar (`[reports]`: due days of the monthly hazard reports).
    #[serde(default)]
    pub reports: ReportsConfig,
    /// The duty log's control rooms (`[[duty.rooms]]`: name, schools, staff_per_shift).
    #[serde(default)]
    pub duty: DutyConfig,
    /// Profiles after loading (`rules.profiles_file`, or the built-in set); not a TOML key.
    #[serde(skip)]
    pub profiles: ProfileSet,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Syntax or type error at a position in the file.
    #[error("{path}:{line}:{col}: {message}")]
    Parse {
        path: String,
        line: usize,
        col: usize,
        message: String,
    },
    /// Semantic problems, all of them.
    #[error("{path}: {} problem(s):\n{}", problems.len(), problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid { path: String, problems: Vec<String> },
}

impl ConfigError {
    /// The same error with every secret of `secrets` masked in its messages.
    fn scrubbed(self, secrets: &Secrets) -> Self {
        match self {
            ConfigError::Parse {
                path,
                line,
                col,
                message,
            } => ConfigError::Parse {
                path,
                line,
                col,
                message: secrets.scrub(&message),
            },
            ConfigError::Invalid { path, problems } => ConfigError::Invalid {
                path,
                problems: problems.iter().map(|p| secrets.scrub(p)).collect(),
            },
            read @ ConfigError::Read { .. } => read,
        }
    }
}

impl Config {
    /// Reads, overrides from the process environment, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text, path, std::env::vars())
    }

    /// Parses `text` (named `path` in messages) with the given environment overrides. No error
    /// it returns contains a credential of the text or of the overrides (see [`redact`]).
    pub fn from_toml(
        text: &str,
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        let mut secrets = Secrets::in_toml(text);
        secrets.add_env(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        Self::parse(text, path, env).map_err(|e| e.scrubbed(&secrets))
    }

    fn parse(text: &str, path: &Path, env: Vec<(String, String)>) -> Result<Self, ConfigError> {
        let display = path.display().to_string();
        let text = apply_env_overrides(text, env).map_err(|e| parse_error(&display, text, e))?;
        let mut config: Config =
            toml::from_str(&text).map_err(|e| parse_error(&display, &text, e))?;
        let base_dir = path.parent().unwrap_or_else(|| Path::new("."));
        config.profiles = match &config.rules.profiles_file {
            Some(file) => {
                let file = base_dir.join(file);
                let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
                    path: file.display().to_string(),
                    source,
                })?;
                let site = ProfileSet::from_toml(&text)
                    .map_err(|e| parse_error(&file.display().to_string(), &text, e))?;
                // A site file replaces built-in profiles of the same name and adds new ones.
                let mut profiles = ProfileSet::builtin();
                profiles.merge(site);
                profiles
            }
            None => ProfileSet::builtin(),
        };
        config.share_with_tickets();
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: display,
                problems,
            })
        }
    }

    /// Hands the ticket service what it reads from other sections: the schools, the reporting
    /// calendar and where each configured device is.
    fn share_with_tickets(&mut self) {
        self.tickets.schools = Schools::new(self.schools.clone());
        self.tickets.reports = self.reports.clone();
        self.tickets.places = self
            .devices
            .iter()
            .filter(|d| d.building.is_some() || d.room.is_some())
            .map(|d| {
                (
                    format!("{}/{}", d.school, d.id),
                    Place {
                        building: d.building.clone(),
                        room: d.room.clone(),
                    },
                )
            })
            .collect();
    }

    /// Valid but worth saying: deprecated keys. `check` prints them as notes.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = self.users.deprecations();
        if !self.tickets.school_codes.is_empty() {
            notes.push(
                "tickets.school_codes is deprecated: give each school its `code` in [[schools]] \
                 (id, name, code, kind); the old table is still read for schools without one"
                    .to_string(),
            );
        }
        notes
    }

    /// Cross-checks across components; returns every problem found.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let schools = Schools::new(self.schools.clone());
        problems.extend(schools.validate());
        problems.extend(self.profiles.validate());
        problems.extend(self.mqtt.validate());
        problems.extend(self.http.validate());
        problems.extend(self.storage.validate());
        problems.extend(self.timeseries.validate());
        problems.extend(self.modbus.validate());
        problems.extend(self.users.validate());
        problems.extend(self.tickets.validate());
        problems.extend(self.pipeline.validate());
        problems.extend(self.rules.validate());
        problems.extend(self.alarms.validate());
        problems.extend(self.notify.validate());
        problems.extend(self.duty.validate(&schools));
        // A login waits for its turn inside its request: it must be answered before the
        // request times out, with room for the password check.
        if self.users.login_delay_max.saturating_mul(2) > self.http.request_timeout {
            problems.push(format!(
                "users.login_delay_max ({}) must be at most half of http.request_timeout ({})",
                humantime::format_duration(self.users.login_delay_max),
                humantime::format_duration(self.http.request_timeout)
            ));
        }
        let mut seen = HashSet::new();
        for device in &self.devices {
            let key = format!("{}/{}", device.school, device.id);
            if !valid_name(&device.id) || !valid_name(&device.school) {
                problems.push(format!(
                    "device {key}: id and school must be 1-64 characters of `A-Z a-z 0-9 _ -`"
                ));
            }
            if !seen.insert(key.clone()) {
                problems.push(format!("device {key}: duplicate device"));
            }
            if !schools.is_empty() && schools.get(&device.school).is_none() {
                problems.push(format!(
                    "device {key}: school `{}` is not in [[schools]]",
                    device.school
                ));
            }
            if !self.profiles.profiles.contains_key(&device.profile) {
                problems.push(format!(
                    "device {key}: unknown profile `{}` (known: {})",
                    device.profile,
                    self.profiles
                        .profiles
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                continue;
            }
            for (rule, ov) in &device.overrides {
                if let Err(e) = self.profiles.validate_override(&device.profile, rule, ov) {
                    problems.push(format!("device {key}: override `{rule}`: {e}"));
                }
            }
        }
        for device in &self.modbus.devices {
            let key = device.device_key().to_string();
            if !seen.insert(key.clone()) {
                problems.push(format!(
                    "modbus device {key}: also defined in [[devices]] or twice in [[modbus.devices]]"
                ));
            }
            match &device.profile {
                Some(p) if !self.profiles.profiles.contains_key(p) => {
                    problems.push(format!("modbus device {key}: unknown profile `{p}`"))
                }
                _ => {}
            }
        }
        problems.extend(crate::actions::problems(&self.modbus, &self.profiles));
        problems
    }

    /// Why `campusguard run` refuses this configuration although it is valid: tokens and
    /// passwords of the shipped example and demo configs (or ending in `change-me`), bearer
    /// tokens shorter than 24 characters. `check` reports these as warnings; `demo` runs with
    /// them. Never contains a secret.
    pub fn run_problems(&self) -> Vec<String> {
        let (tokens, passwords) = shipped_placeholders();
        let mut problems = self.http.run_problems(&tokens);
        problems.extend(self.users.run_problems(&passwords));
        problems
    }

    /// `check`'s warnings about secrets others can read: a `*_file` secret, or this config
    /// file itself when it holds a literal token or password, readable by every user.
    pub fn secret_warnings(&self, config_path: &Path) -> Vec<String> {
        let mut files: Vec<(String, &Path)> = Vec::new();
        for t in &self.http.tokens {
            if let Some(f) = &t.token_file {
                files.push((format!("http.tokens `{}`: token_file", t.name), f));
            }
        }
        for u in &self.users.seed {
            if let Some(f) = &u.password_file {
                files.push((format!("users.seed `{}`: password_file", u.name), f));
            }
        }
        if let Some(f) = &self.mqtt.password_file {
            files.push(("mqtt.password_file".into(), f));
        }
        if let Some(f) = &self.timeseries.token_file {
            files.push(("timeseries.token_file".into(), f));
        }
        if let Some(f) = &self.timeseries.password_file {
            files.push(("timeseries.password_file".into(), f));
        }
        for c in &self.notify.channels {
            for (key, f) in c.secret_files() {
                files.push((format!("notify.channels `{}`: {key}", c.name), f));
            }
        }
        let mut warnings = Vec::new();
        for (what, file) in files {
            let full = crate::secrets::resolve(file);
            if crate::secrets::world_readable(&full) {
                warnings.push(format!(
                    "{what}: {} is readable by every user (chmod 600 or 640 root:campusguard)",
                    full.display()
                ));
            }
        }
        let literal = self.http.tokens.iter().any(|t| t.token.is_some())
            || self.users.seed.iter().any(|u| u.password.is_some())
            || self.mqtt.password.is_some();
        if literal && crate::secrets::world_readable(config_path) {
            warnings.push(format!(
                "{} holds tokens or passwords and is readable by every user (chmod 640 root:campusguard, or move them to token_file/password_file)",
                config_path.display()
            ));
        }
        warnings
    }

    /// A short human summary for `campusguard check`.
    pub fn summary(&self) -> String {
        let rules: usize = self.profiles.rule_count();
        let mut out = String::new();
        out.push_str(&format!(
            "mqtt: {} (prefix `{}`){}\n",
            self.mqtt.url,
            self.mqtt.topic_prefix,
            if self.broker.embedded {
                format!(", embedded broker on {}", self.broker.listen)
            } else {
                String::new()
            }
        ));
        out.push_str(&format!(
            "profiles: {} ({}), {} rules\n",
            self.profiles.profiles.len(),
            self.profiles
                .profiles
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            rules
        ));
        out.push_str(&format!(
            "devices in config: {} (+ {} Modbus)\n",
            self.devices.len(),
            self.modbus.devices.len()
        ));
        out.push_str(&format!(
            "sinks: local history in {} (retention {}); time series: {}\n",
            self.storage.data_dir.display(),
            humantime::format_duration(self.storage.history_retention),
            match self.timeseries.kind {
                TimeseriesKind::None => "none".to_string(),
                kind => format!("{kind:?} at {}", self.timeseries.url),
            }
        ));
        out.push_str(&format!(
            "http: {} ({} token(s))\n",
            self.http.listen,
            self.http.tokens.len()
        ));
        if !self.schools.is_empty() {
            out.push_str(&format!(
                "schools: {} ({})\n",
                self.schools.len(),
                self.schools
                    .iter()
                    .map(|s| format!("{} {} {}", s.id, s.name, s.kind.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if self.notify.enabled() {
            out.push_str(&format!(
                "notify: {} channel(s) ({}), {} escalation step(s), {} ticket route(s)\n",
                self.notify.channels.len(),
                self.notify
                    .channels
                    .iter()
                    .map(|c| format!("{} {}", c.name, c.kind.as_str()))
                    .collect::<Vec<_>>()
                    .join(", "),
                self.notify.routes.len(),
                self.notify.ticket_routes.len()
            ));
        }
        out
    }
}

/// The demo's config (`campusguard demo`), compiled in.
pub const DEMO_CONFIG: &str = include_str!("../../config/demo.toml");

/// The configs shipped with the gateway, whose secrets are public.
const SHIPPED: [&str; 2] = [
    include_str!("../../config/gateway.example.toml"),
    DEMO_CONFIG,
];

/// The bearer tokens and the seeded passwords of the shipped configs.
fn shipped_placeholders() -> (Vec<String>, Vec<String>) {
    let mut tokens = Vec::new();
    let mut passwords = Vec::new();
    for text in SHIPPED {
        let Ok(doc) = text.parse::<toml::Table>() else {
            continue;
        };
        let entries = |section: &str, list: &str, key: &str| -> Vec<String> {
            doc.get(section)
                .and_then(|s| s.get(list))
                .and_then(toml::Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|entry| entry.get(key)?.as_str().map(str::to_string))
                .collect()
        };
        tokens.extend(entries("http", "tokens", "token"));
        passwords.extend(entries("users", "seed", "password"));
    }
    (tokens, passwords)
}

/// An error with an optional byte span into the text it came from.
pub trait SpannedError: fmt::Display {
    fn span(&self) -> Option<std::ops::Range<usize>>;
    fn message(&self) -> String;
}

impl SpannedError for toml::de::Error {
    fn span(&self) -> Option<std::ops::Range<usize>> {
        toml::de::Error::span(self)
    }
    fn message(&self) -> String {
        toml::de::Error::message(self).to_string()
    }
}

impl SpannedError for toml_edit::TomlError {
    fn span(&self) -> Option<std::ops::Range<usize>> {
        toml_edit::TomlError::span(self)
    }
    fn message(&self) -> String {
        toml_edit::TomlError::message(self).to_string()
    }
}

fn parse_error(path: &str, text: &str, e: impl SpannedError) -> ConfigError {
    let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
    ConfigError::Parse {
        path: path.to_string(),
        line,
        col,
        message: e.message().trim().to_string(),
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

/// Edits `CAMPUSGUARD_A__B=v` into the document as `a.b = v`. The value is read as a TOML value
/// when it is one (`true`, `18830`, `"quoted"`, `["a"]`), else as a string.
fn apply_env_overrides(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<String, toml_edit::TomlError> {
    let mut overrides: Vec<(Vec<String>, String)> = env
        .into_iter()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix(ENV_PREFIX)?;
            let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
            (path.len() >= 2 && path.iter().all(|p| !p.is_empty())).then_some((path, v))
        })
        .collect();
    if overrides.is_empty() {
        return Ok(text.to_string());
    }
    overrides.sort();
    let mut doc: toml_edit::DocumentMut = text.parse()?;
    for (path, raw) in overrides {
        let value = raw
            .parse::<toml_edit::Value>()
            .unwrap_or_else(|_| toml_edit::Value::from(raw.as_str()));
        let (key, tables) = match path.split_last() {
            Some(split) => split,
            None => continue,
        };
        let mut table = Some(doc.as_table_mut());
        for name in tables {
            table = table.and_then(|t| {
                t.entry(name)
                    .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()))
                    .as_table_mut()
            });
        }
        // A path through something that is not a table (e.g. an array of tables) is ignored.
        if let Some(table) = table {
            table.insert(key, toml_edit::Item::Value(value));
        }
    }
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests;

//! `[tickets]`: where hazard tickets are stored, how they are numbered, default deadlines and
//! routing, the alarm → ticket policies, supervision and attachments. The settings only: the
//! decisions made from them live where they are made — which policy and category an alarm
//! gets in [`super::policy`], deadlines and routing in [`super::workflow`], numbering in
//! [`super::Tickets`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::model::{Category, Grade};
use super::reports::ReportsConfig;
use crate::model::AlarmClass;
use crate::schools::Schools;

const DAY: u64 = 24 * 3600;

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketsConfig {
    /// `sqlite://…` or `postgres://…`. Default: SQLite `<storage.data_dir>/tickets.db`.
    #[serde(default)]
    pub database_url: Option<String>,
    /// PostgreSQL schema to use (created if missing; set as `search_path`). Lets several
    /// districts or test runs share one database.
    #[serde(default)]
    pub schema: Option<String>,
    /// Connections to PostgreSQL. SQLite always uses one (a single writer, no busy errors).
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// How long one ticket operation waits for a database connection before it fails (the
    /// policy then retries; an API call answers 500). Also bounds the probe at start.
    #[serde(default = "default_acquire_timeout", with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// Deprecated: give each school its `code` in `[[schools]]`. School id → numbering code
    /// (`xhsy = "XHSY"`), read when `[[schools]]` has no code for the school; default: the
    /// upper-cased id.
    #[serde(default)]
    pub school_codes: BTreeMap<String, String>,
    /// Local time offset for numbering months and the ledger (China: +8 hours).
    #[serde(default = "default_utc_offset_hours")]
    pub utc_offset_hours: i32,
    #[serde(default)]
    pub deadlines: DeadlineConfig,
    /// Category → responsible office (责任单位) filled in when a ticket is registered.
    #[serde(default = "default_routing")]
    pub routing: BTreeMap<Category, String>,
    #[serde(default)]
    pub policy: PolicyConfig,
    /// A ticket still open this long after its deadline is marked supervised (督办).
    #[serde(default = "default_supervise_after", with = "humantime_serde")]
    pub supervise_after: Duration,
    /// How often the supervision job runs.
    #[serde(default = "default_supervision_interval", with = "humantime_serde")]
    pub supervision_interval: Duration,
    /// Largest attachment accepted, in bytes.
    #[serde(default = "default_attachment_max_bytes")]
    pub attachment_max_bytes: usize,
    /// All attachments together, in bytes, at most: an upload beyond it answers 507, so no
    /// operator can fill the disk the alarm journal and history live on.
    #[serde(default = "default_attachments_max_total_bytes")]
    pub attachments_max_total_bytes: u64,
    /// `report` needs at least one "after" photo for these grades.
    #[serde(default = "default_require_after_photo")]
    pub require_after_photo_for: Vec<Grade>,
    /// The district's schools, from the top-level `[[schools]]` (not a `[tickets]` key): the
    /// service numbers, names and counts schools from it.
    #[serde(skip)]
    pub schools: Schools,
    /// The reporting calendar, from the top-level `[reports]` (not a `[tickets]` key).
    #[serde(skip)]
    pub reports: ReportsConfig,
    /// `school/device` → where the device is (building, room), from `[[devices]]`: a sensor
    /// ticket names a place, not a sensor.
    #[serde(skip)]
    pub places: BTreeMap<String, Place>,
}

/// Where a device is: building and room, as `[[devices]]` gives them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Place {
    pub building: Option<String>,
    pub room: Option<String>,
}

// Hand-written so the password in a `postgres://user:password@…` URL never reaches a log line.
// Destructured without `..`: a new field does not compile until it is listed here.
impl std::fmt::Debug for TicketsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            database_url,
            schema,
            max_connections,
            acquire_timeout,
            school_codes,
            utc_offset_hours,
            deadlines,
            routing,
            policy,
            supervise_after,
            supervision_interval,
            attachment_max_bytes,
            attachments_max_total_bytes,
            require_after_photo_for,
            schools,
            reports,
            places,
        } = self;
        f.debug_struct("TicketsConfig")
            .field(
                "database_url",
                &database_url.as_deref().map(crate::redact::url),
            )
            .field("schema", schema)
            .field("max_connections", max_connections)
            .field("acquire_timeout", acquire_timeout)
            .field("school_codes", school_codes)
            .field("utc_offset_hours", utc_offset_hours)
            .field("deadlines", deadlines)
            .field("routing", routing)
            .field("policy", policy)
            .field("supervise_after", supervise_after)
            .field("supervision_interval", supervision_interval)
            .field("attachment_max_bytes", attachment_max_bytes)
            .field("attachments_max_total_bytes", attachments_max_total_bytes)
            .field("require_after_photo_for", require_after_photo_for)
            .field("schools", schools)
            .field("reports", reports)
            .field("places", places)
            .finish()
    }
}

fn default_max_connections() -> u32 {
    8
}
fn default_acquire_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_utc_offset_hours() -> i32 {
    8
}
fn default_supervise_after() -> Duration {
    Duration::from_secs(3 * DAY)
}
fn default_supervision_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_attachment_max_bytes() -> usize {
    10 * 1024 * 1024
}
fn default_attachments_max_total_bytes() -> u64 {
    1 << 30
}
fn default_require_after_photo() -> Vec<Grade> {
    vec![Grade::Major]
}

/// The offices of `docs/design.md`: fire and security → 办公室; labs and chemicals → 教育处 with
/// 办公室; food and water → 办公室 with 政宣处.
pub fn default_routing() -> BTreeMap<Category, String> {
    use Category::*;
    [
        (Fire, "办公室"),
        (Security, "办公室"),
        (LabChemical, "教育处、办公室"),
        (FoodWater, "办公室、政宣处"),
        (Building, "办公室"),
        (Traffic, "办公室"),
        (Other, "办公室"),
    ]
    .into_iter()
    .map(|(c, o)| (c, o.to_string()))
    .collect()
}

/// `[tickets.deadlines]`: time to rectify, from registration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadlineConfig {
    #[serde(default = "default_general", with = "humantime_serde")]
    pub general: Duration,
    #[serde(default = "default_major", with = "humantime_serde")]
    pub major: Duration,
    /// Per category, e.g. `fire = { general = "3d", major = "15d" }`.
    #[serde(default)]
    pub category: BTreeMap<Category, GradeDeadlines>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradeDeadlines {
    #[serde(default, with = "humantime_serde")]
    pub general: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub major: Option<Duration>,
}

fn default_general() -> Duration {
    Duration::from_secs(7 * DAY)
}
fn default_major() -> Duration {
    Duration::from_secs(30 * DAY)
}

impl Default for DeadlineConfig {
    fn default() -> Self {
        Self {
            general: default_general(),
            major: default_major(),
            category: BTreeMap::new(),
        }
    }
}

/// When an alarm becomes a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "PolicyRepr")]
pub enum Policy {
    Never,
    OnRaise,
    /// The alarm is still active this long after it was raised.
    IfActiveFor(Duration),
    /// The `count`-th raise of the same (sensor, rule) within `within`.
    Repeats {
        count: u32,
        within: Duration,
    },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PolicyRepr {
    Word(String),
    Table(PolicyTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyTable {
    #[serde(default, with = "humantime_serde")]
    if_active_for: Option<Duration>,
    #[serde(default)]
    repeats: Option<RepeatsRepr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RepeatsRepr {
    count: u32,
    #[serde(with = "humantime_serde")]
    within: Duration,
}

impl TryFrom<PolicyRepr> for Policy {
    type Error = String;
    fn try_from(r: PolicyRepr) -> Result<Self, String> {
        const EXPECTED: &str = "expected \"never\", \"on_raise\", { if_active_for = \"30m\" } or { repeats = { count = 3, within = \"24h\" } }";
        match r {
            PolicyRepr::Word(w) => match w.as_str() {
                "never" => Ok(Policy::Never),
                "on_raise" => Ok(Policy::OnRaise),
                other => Err(format!("unknown ticket policy `{other}`: {EXPECTED}")),
            },
            PolicyRepr::Table(PolicyTable {
                if_active_for: Some(d),
                repeats: None,
            }) => Ok(Policy::IfActiveFor(d)),
            PolicyRepr::Table(PolicyTable {
                if_active_for: None,
                repeats: Some(r),
            }) => {
                if r.count == 0 || r.within.is_zero() {
                    return Err("repeats needs count ≥ 1 and a non-zero window".into());
                }
                Ok(Policy::Repeats {
                    count: r.count,
                    within: r.within,
                })
            }
            PolicyRepr::Table(_) => Err(EXPECTED.into()),
        }
    }
}

/// `[tickets.policy]`: per alarm class, overridden per rule id.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    #[serde(default = "default_class_policies")]
    pub class: BTreeMap<AlarmClass, Policy>,
    #[serde(default)]
    pub rule: BTreeMap<String, Policy>,
    /// A `fire` alarm reset as a false alarm files a maintenance ticket for the detector.
    #[serde(default = "default_true")]
    pub fire_false_alarm_ticket: bool,
    /// A recurrence this soon after its ticket closed opens a new ticket at once, linking the
    /// old one.
    #[serde(default = "default_recurrence_window", with = "humantime_serde")]
    pub recurrence_window: Duration,
    /// Category of a sensor ticket per alarm class, overridden per rule id.
    #[serde(default = "default_class_categories")]
    pub category: BTreeMap<AlarmClass, Category>,
    #[serde(default)]
    pub rule_category: BTreeMap<String, Category>,
}

fn default_true() -> bool {
    true
}
fn default_recurrence_window() -> Duration {
    Duration::from_secs(30 * DAY)
}

/// The defaults of issue 5: gas on raise; supervisory if active for 10 minutes; fault (device
/// offline) if active for 30 minutes; fire alarms are emergencies, not tickets (a false alarm
/// files a maintenance ticket instead).
pub fn default_class_policies() -> BTreeMap<AlarmClass, Policy> {
    [
        (AlarmClass::Fire, Policy::Never),
        (AlarmClass::Gas, Policy::OnRaise),
        (
            AlarmClass::Supervisory,
            Policy::IfActiveFor(Duration::from_secs(600)),
        ),
        (
            AlarmClass::Fault,
            Policy::IfActiveFor(Duration::from_secs(1800)),
        ),
    ]
    .into_iter()
    .collect()
}

/// Sensor tickets by alarm class: fire → fire safety, gas → labs and chemicals, the rest other.
pub fn default_class_categories() -> BTreeMap<AlarmClass, Category> {
    [
        (AlarmClass::Fire, Category::Fire),
        (AlarmClass::Gas, Category::LabChemical),
        (AlarmClass::Supervisory, Category::Other),
        (AlarmClass::Fault, Category::Other),
    ]
    .into_iter()
    .collect()
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            class: default_class_policies(),
            rule: BTreeMap::new(),
            fire_false_alarm_ticket: true,
            recurrence_window: default_recurrence_window(),
            category: default_class_categories(),
            rule_category: BTreeMap::new(),
        }
    }
}

impl Default for TicketsConfig {
    fn default() -> Self {
        Self {
            database_url: None,
            schema: None,
            max_connections: default_max_connections(),
            acquire_timeout: default_acquire_timeout(),
            school_codes: BTreeMap::new(),
            utc_offset_hours: default_utc_offset_hours(),
            deadlines: DeadlineConfig::default(),
            routing: default_routing(),
            policy: PolicyConfig::default(),
            supervise_after: default_supervise_after(),
            supervision_interval: default_supervision_interval(),
            attachment_max_bytes: default_attachment_max_bytes(),
            attachments_max_total_bytes: default_attachments_max_total_bytes(),
            require_after_photo_for: default_require_after_photo(),
            schools: Schools::default(),
            reports: ReportsConfig::default(),
            places: BTreeMap::new(),
        }
    }
}

impl TicketsConfig {
    /// The database URL, defaulting to SQLite in the data directory.
    pub fn database_url(&self, data_dir: &Path) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("tickets.db").display()
            ),
        }
    }

    /// Where attachments are stored, under their content hash.
    pub fn attachment_dir(data_dir: &Path) -> PathBuf {
        data_dir.join("ticket-attachments")
    }

    /// The numbering code of a school: its `[[schools]]` code, else the deprecated
    /// `tickets.school_codes`, else the upper-cased id.
    pub fn school_code(&self, school: &str) -> String {
        self.schools
            .code_of(school)
            .map(str::to_string)
            .or_else(|| self.school_codes.get(school).cloned())
            .unwrap_or_else(|| school.to_uppercase())
    }

    /// The place of a sensor's device, if `[[devices]]` names one.
    pub fn place_of(&self, school: &str, device: &str) -> Option<&Place> {
        self.places.get(&format!("{school}/{device}"))
    }

    pub fn offset_ms(&self) -> i64 {
        i64::from(self.utc_offset_hours) * 3_600_000
    }

    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(url) = &self.database_url {
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
            {
                problems.push(format!(
                    "tickets.database_url `{}`: expected sqlite:… or postgres://…",
                    crate::redact::url(url)
                ));
            }
        }
        if let Some(schema) = &self.schema {
            if schema.is_empty()
                || !schema
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                problems.push(format!(
                    "tickets.schema `{schema}`: use letters, digits and `_` only"
                ));
            }
        }
        if self.max_connections == 0 {
            problems.push("tickets.max_connections must be at least 1".into());
        }
        if self.acquire_timeout.is_zero() {
            problems.push("tickets.acquire_timeout must be greater than 0".into());
        }
        if !(-12..=14).contains(&self.utc_offset_hours) {
            problems.push("tickets.utc_offset_hours must be within -12..=14".into());
        }
        for (school, code) in &self.school_codes {
            if code.is_empty() || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
                problems.push(format!(
                    "tickets.school_codes.{school} = `{code}`: use ASCII letters and digits"
                ));
            }
        }
        problems.extend(self.reports.validate());
        if self.supervision_interval.is_zero() {
            problems.push("tickets.supervision_interval must be greater than 0".into());
        }
        if self.attachment_max_bytes == 0 {
            problems.push("tickets.attachment_max_bytes must be at least 1".into());
        }
        if self.attachments_max_total_bytes < self.attachment_max_bytes as u64 {
            problems.push(
                "tickets.attachments_max_total_bytes must be at least tickets.attachment_max_bytes"
                    .into(),
            );
        }
        if self.deadlines.general.is_zero() || self.deadlines.major.is_zero() {
            problems.push("tickets.deadlines must be greater than 0".into());
        }
        problems
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_in_all_four_shapes() {
        let cfg: TicketsConfig = toml::from_str(
            r#"
[policy.class]
gas = "on_raise"
fire = "never"
supervisory = { if_active_for = "10m" }
fault = { repeats = { count = 3, within = "24h" } }
"#,
        )
        .expect("parses");
        assert_eq!(cfg.policy.for_alarm(AlarmClass::Gas, "x"), Policy::OnRaise);
        assert_eq!(cfg.policy.for_alarm(AlarmClass::Fire, "x"), Policy::Never);
        assert_eq!(
            cfg.policy.for_alarm(AlarmClass::Supervisory, "x"),
            Policy::IfActiveFor(Duration::from_secs(600))
        );
        assert_eq!(
            cfg.policy.for_alarm(AlarmClass::Fault, "x"),
            Policy::Repeats {
                count: 3,
                within: Duration::from_secs(86400)
            }
        );
    }

    #[test]
    fn an_unknown_policy_word_is_rejected() {
        let r: Result<TicketsConfig, _> = toml::from_str("[policy.class]\ngas = \"sometimes\"\n");
        assert!(r.is_err());
    }
}

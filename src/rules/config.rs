//! Device profiles and their default rules, read from TOML (`config/profiles.toml` is built in).
//!
//! A profile names a device type's points (the point names are part of the device protocol),
//! their units and physical ranges, and the rules the [`RuleEngine`](super::RuleEngine) evaluates
//! on every reading. A device gets a profile at registration and may override a rule's numbers
//! with a [`RuleOverride`]. [`ProfileSet::validate`] cross-checks everything serde cannot and
//! returns every problem at once, so a site fixes its file in one pass.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::Deserialize;

use crate::model::{AlarmClass, Severity, STATUS_POINT};

/// Rule id of the device-level "device said it is offline" fault.
pub const OFFLINE_RULE: &str = "offline";
/// Rule id of the device-level "no reading for `stale_after`" fault.
pub const STALE_RULE: &str = "stale";
/// Suffix of the per-point "value outside the physical range" sensor fault (`<point>_range`).
pub const RANGE_RULE_SUFFIX: &str = "_range";
/// Suffix of the per-point "value unchanged for `stuck_after`" sensor fault (`<point>_stuck`).
pub const STUCK_RULE_SUFFIX: &str = "_stuck";
/// Prefix of the device-level "a rule's write-back action failed" fault
/// (`action_failed:<action>`, on `<school>/<device>/status`).
pub const ACTION_FAILED_RULE_PREFIX: &str = "action_failed:";

/// The profiles shipped with the gateway.
const BUILTIN_PROFILES: &str = include_str!("../../config/profiles.toml");

/// All device profiles, by name (`[profiles.<name>]`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProfileSet {
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

/// One device type: its points and default rules.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// zh-CN display name.
    #[serde(default)]
    pub label: String,
    /// English display name.
    #[serde(default)]
    pub label_en: String,
    /// A device silent for longer than this raises a `stale` fault; `None` disables the check.
    #[serde(default, with = "humantime_serde")]
    pub stale_after: Option<Duration>,
    /// Points by name (`[profiles.<name>.points.<point>]`).
    #[serde(default)]
    pub points: BTreeMap<String, PointSpec>,
    /// Rules, evaluated in this order for each reading of their point.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

/// Whether a point carries numbers or booleans.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum PointKind {
    Number,
    Bool,
}

impl PointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PointKind::Number => "number",
            PointKind::Bool => "bool",
        }
    }
}

/// One point of a profile.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PointSpec {
    pub kind: PointKind,
    /// Display unit, e.g. `°C`.
    #[serde(default)]
    pub unit: Option<String>,
    /// Physical range `[min, max]` of the sensor: a reading outside is a sensor fault, and the
    /// value is not evaluated by the point's rules (a broken sensor must not raise a fire).
    #[serde(default)]
    pub range: Option<[f64; 2]>,
    /// A number unchanged for this long is a stuck sensor (fault). Optional.
    #[serde(default, with = "humantime_serde")]
    pub stuck_after: Option<Duration>,
}

/// The kinds of rule.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// Value at or above a level (`warning`, `alarm`).
    High,
    /// Value at or below a level (`warning`, `alarm`).
    Low,
    /// Boolean point equal to `active_when`.
    State,
    /// Value rising at `per_minute` or faster, measured over `window` of device time.
    RateOfRise,
}

impl RuleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::High => "high",
            RuleKind::Low => "low",
            RuleKind::State => "state",
            RuleKind::RateOfRise => "rate_of_rise",
        }
    }
}

/// One rule of a profile. Which keys apply depends on `kind`; [`ProfileSet::validate`] reports
/// keys that do not apply.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Unique within the profile; names the alarm (`<school>/<device>/<point>` + rule id).
    pub id: String,
    pub kind: RuleKind,
    pub point: String,
    pub class: AlarmClass,
    /// Short human description for the console (optional).
    #[serde(default)]
    pub label: Option<String>,
    /// `high`/`low`: first level (raises `warning`).
    #[serde(default)]
    pub warning: Option<f64>,
    /// `high`/`low`: second level (raises `alarm`).
    #[serde(default)]
    pub alarm: Option<f64>,
    /// `high`/`low`: how far the value must go back past a level before that level clears.
    #[serde(default)]
    pub deadband: Option<f64>,
    /// The condition must hold this long, continuously, before it is raised.
    #[serde(default, with = "humantime_serde")]
    pub on_delay: Option<Duration>,
    /// The condition must be normal this long, continuously, before it clears.
    #[serde(default, with = "humantime_serde")]
    pub off_delay: Option<Duration>,
    /// `state`: the value that is abnormal.
    #[serde(default)]
    pub active_when: Option<bool>,
    /// `state` and `rate_of_rise`: severity raised (default `alarm`).
    #[serde(default)]
    pub severity: Option<Severity>,
    /// `rate_of_rise`: rise per minute (point units) that raises.
    #[serde(default)]
    pub per_minute: Option<f64>,
    /// `rate_of_rise`: the span of device time the rate is measured over.
    #[serde(default, with = "humantime_serde")]
    pub window: Option<Duration>,
    /// `false` switches the rule off (useful in a site profile file).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Write-back (linkage): when this rule's alarm is raised on a device, run the device's
    /// `[[modbus.actions]]` entry of this name, e.g. `exhaust_fan_on`. A device without an
    /// action of that name does nothing (off unless configured).
    #[serde(default)]
    pub action: Option<String>,
}

/// A device's override of one rule's numbers, e.g. in the gateway config
/// `overrides.heat_fixed = { alarm = 45.0 }`. Unset fields keep the profile's value.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleOverride {
    #[serde(default)]
    pub warning: Option<f64>,
    #[serde(default)]
    pub alarm: Option<f64>,
    #[serde(default)]
    pub deadband: Option<f64>,
    #[serde(default, with = "humantime_serde")]
    pub on_delay: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub off_delay: Option<Duration>,
    #[serde(default)]
    pub per_minute: Option<f64>,
    #[serde(default, with = "humantime_serde")]
    pub window: Option<Duration>,
    /// `false` switches the rule off for this device.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// Which optional keys a rule kind uses (everything else set on it is reported).
fn key_applies(kind: RuleKind, key: &str) -> bool {
    match key {
        "warning" | "alarm" | "deadband" => matches!(kind, RuleKind::High | RuleKind::Low),
        "active_when" => kind == RuleKind::State,
        "severity" => matches!(kind, RuleKind::State | RuleKind::RateOfRise),
        "per_minute" | "window" => kind == RuleKind::RateOfRise,
        _ => true,
    }
}

impl RuleSpec {
    /// The rule with a device override applied (`enabled`, levels, delays, rate parameters).
    pub fn with_override(&self, ov: &RuleOverride) -> RuleSpec {
        let mut rule = self.clone();
        if ov.warning.is_some() {
            rule.warning = ov.warning;
        }
        if ov.alarm.is_some() {
            rule.alarm = ov.alarm;
        }
        if ov.deadband.is_some() {
            rule.deadband = ov.deadband;
        }
        if ov.on_delay.is_some() {
            rule.on_delay = ov.on_delay;
        }
        if ov.off_delay.is_some() {
            rule.off_delay = ov.off_delay;
        }
        if ov.per_minute.is_some() {
            rule.per_minute = ov.per_minute;
        }
        if ov.window.is_some() {
            rule.window = ov.window;
        }
        if ov.enabled.is_some() {
            rule.enabled = ov.enabled;
        }
        rule
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }

    /// The keys set on this rule that its kind does not use.
    fn keys_set(&self) -> impl Iterator<Item = &'static str> + '_ {
        [
            ("warning", self.warning.is_some()),
            ("alarm", self.alarm.is_some()),
            ("deadband", self.deadband.is_some()),
            ("active_when", self.active_when.is_some()),
            ("severity", self.severity.is_some()),
            ("per_minute", self.per_minute.is_some()),
            ("window", self.window.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(key, _)| key)
    }

    /// Problems of the rule's own numbers (levels, deadband, rate), given its point. Each
    /// problem is a phrase without the profile/rule prefix.
    fn number_problems(&self, point: Option<&PointSpec>) -> Vec<String> {
        let mut problems = Vec::new();
        for key in self.keys_set() {
            if !key_applies(self.kind, key) {
                problems.push(format!(
                    "`{key}` does not apply to a {} rule",
                    self.kind.as_str()
                ));
            }
        }
        match self.kind {
            RuleKind::High | RuleKind::Low => {
                for (name, level) in [("warning", self.warning), ("alarm", self.alarm)] {
                    if level.is_some_and(|v| !v.is_finite()) {
                        problems.push(format!("{name} level must be a finite number"));
                    }
                }
                match (self.warning, self.alarm) {
                    (None, None) => {
                        problems.push("has no level: set `warning`, `alarm` or both".to_string())
                    }
                    (Some(w), Some(a)) if self.kind == RuleKind::High && w >= a => problems.push(
                        format!("warning ({w}) must be below alarm ({a}) in a high rule"),
                    ),
                    (Some(w), Some(a)) if self.kind == RuleKind::Low && w <= a => problems.push(
                        format!("warning ({w}) must be above alarm ({a}) in a low rule"),
                    ),
                    _ => {}
                }
                if let Some(d) = self.deadband {
                    if !d.is_finite() || d < 0.0 {
                        problems.push(format!("deadband ({d}) must be zero or positive"));
                    }
                }
                let range = point.and_then(|p| p.range).filter(|[min, max]| min < max);
                if let Some([min, max]) = range {
                    for (name, level) in [("warning", self.warning), ("alarm", self.alarm)] {
                        if let Some(v) = level.filter(|v| *v < min || *v > max) {
                            problems.push(format!(
                                "{name} level {v} is outside the point's range [{min}, {max}] \
                                 and can never be reached"
                            ));
                        }
                    }
                }
            }
            RuleKind::State => {
                if self.active_when.is_none() {
                    problems.push("state rule needs `active_when = true|false`".to_string());
                }
            }
            RuleKind::RateOfRise => {
                match self.per_minute {
                    None => problems.push("rate_of_rise rule needs `per_minute`".to_string()),
                    Some(r) if !r.is_finite() || r <= 0.0 => {
                        problems.push(format!("per_minute ({r}) must be positive"))
                    }
                    Some(_) => {}
                }
                match self.window {
                    None => problems.push("rate_of_rise rule needs `window`".to_string()),
                    Some(w) if w < Duration::from_secs(1) => {
                        problems.push(format!("window ({w:?}) must be at least 1s"))
                    }
                    Some(_) => {}
                }
            }
        }
        problems
    }
}

/// `[rules]`: where the device profiles come from and how often time-driven rules run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// A site profiles file: its profiles replace built-in ones (`config/profiles.toml`) of the
    /// same name and add new ones. Relative to the config file's folder.
    #[serde(default)]
    pub profiles_file: Option<std::path::PathBuf>,
    /// How often on-delays, staleness and shelve expiry are evaluated.
    #[serde(default = "default_tick", with = "humantime_serde")]
    pub tick: Duration,
}

fn default_tick() -> Duration {
    Duration::from_secs(1)
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            profiles_file: None,
            tick: default_tick(),
        }
    }
}

impl RulesConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.tick.is_zero() {
            problems.push("rules.tick must be greater than 0".into());
        }
        problems
    }
}

impl ProfileSet {
    /// The built-in profiles (`config/profiles.toml`). A unit test guarantees they parse and
    /// validate, so the empty fallback is never taken; [`ProfileSet::try_builtin`] reports why
    /// if it ever were.
    pub fn builtin() -> Self {
        match Self::try_builtin() {
            Ok(set) => set,
            Err(error) => {
                tracing::error!(%error, "built-in profiles are broken, starting without profiles");
                Self::default()
            }
        }
    }

    /// The built-in profiles, parsed and validated.
    pub fn try_builtin() -> Result<Self, String> {
        let set =
            Self::from_toml(BUILTIN_PROFILES).map_err(|e| format!("config/profiles.toml: {e}"))?;
        let problems = set.validate();
        if problems.is_empty() {
            Ok(set)
        } else {
            Err(problems.join("; "))
        }
    }

    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Adds a site's profiles; a profile of the same name replaces the existing one whole.
    pub fn merge(&mut self, site: ProfileSet) {
        self.profiles.extend(site.profiles);
    }

    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.get(name)
    }

    /// Every problem serde cannot catch, each naming the profile (and rule or point):
    /// unknown points, rule kinds that do not fit the point kind, levels in the wrong order or
    /// missing, negative deadbands, duplicate or reserved rule ids, bad ranges and durations.
    /// Empty means valid.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, profile) in &self.profiles {
            validate_profile(name, profile, &mut problems);
        }
        problems
    }

    /// Checks one device override of one rule: the profile and rule exist, every key set applies
    /// to the rule's kind, and the overridden rule is still valid (e.g. warning below alarm).
    pub fn validate_override(
        &self,
        profile: &str,
        rule: &str,
        ov: &RuleOverride,
    ) -> Result<(), String> {
        let p = self
            .profiles
            .get(profile)
            .ok_or_else(|| format!("unknown profile `{profile}`"))?;
        let spec = p.rules.iter().find(|r| r.id == rule).ok_or_else(|| {
            let known: Vec<&str> = p.rules.iter().map(|r| r.id.as_str()).collect();
            format!(
                "profile `{profile}` has no rule `{rule}` (rules: {})",
                known.join(", ")
            )
        })?;
        let mut problems = Vec::new();
        for (key, set) in [
            ("warning", ov.warning.is_some()),
            ("alarm", ov.alarm.is_some()),
            ("deadband", ov.deadband.is_some()),
            ("per_minute", ov.per_minute.is_some()),
            ("window", ov.window.is_some()),
        ] {
            if set && !key_applies(spec.kind, key) {
                problems.push(format!(
                    "`{key}` does not apply to a {} rule",
                    spec.kind.as_str()
                ));
            }
        }
        if problems.is_empty() {
            problems = spec
                .with_override(ov)
                .number_problems(p.points.get(&spec.point));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "profile `{profile}`, override of rule `{rule}`: {}",
                problems.join("; ")
            ))
        }
    }

    /// The write-back action a profile's rule names, if any.
    pub fn rule_action(&self, profile: &str, rule: &str) -> Option<&str> {
        self.profiles
            .get(profile)?
            .rules
            .iter()
            .find(|r| r.id == rule)?
            .action
            .as_deref()
    }

    /// Whether some rule of `profile` names `action`.
    pub fn names_action(&self, profile: &str, action: &str) -> bool {
        self.profiles
            .get(profile)
            .is_some_and(|p| p.rules.iter().any(|r| r.action.as_deref() == Some(action)))
    }

    /// How many rules all profiles have together.
    pub fn rule_count(&self) -> usize {
        self.profiles.values().map(|p| p.rules.len()).sum()
    }

    /// Applies a site's overrides to a profile's default rules (per-profile thresholds, e.g. a
    /// school lab lowering `lel_high` for every cabinet). Every override is checked first; if
    /// any is invalid nothing is applied and all problems are returned.
    pub fn override_profile(
        &mut self,
        profile: &str,
        overrides: &BTreeMap<String, RuleOverride>,
    ) -> Result<(), Vec<String>> {
        let problems = self.validate_overrides(profile, overrides);
        if !problems.is_empty() {
            return Err(problems);
        }
        if let Some(p) = self.profiles.get_mut(profile) {
            for rule in &mut p.rules {
                if let Some(ov) = overrides.get(&rule.id) {
                    *rule = rule.with_override(ov);
                }
            }
        }
        Ok(())
    }

    /// [`ProfileSet::validate_override`] for every override of a device; all problems.
    pub fn validate_overrides(
        &self,
        profile: &str,
        overrides: &BTreeMap<String, RuleOverride>,
    ) -> Vec<String> {
        overrides
            .iter()
            .filter_map(|(rule, ov)| self.validate_override(profile, rule, ov).err())
            .collect()
    }
}

/// A point name usable in an MQTT topic and a sensor path.
fn valid_point_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The names `[[modbus.actions]]` accept (the same rule as there).
fn valid_action_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && !matches!(c, '/' | '+' | '#'))
}

fn validate_profile(name: &str, profile: &Profile, problems: &mut Vec<String>) {
    if profile.points.is_empty() {
        problems.push(format!("profile `{name}`: has no points"));
    }
    if profile.stale_after == Some(Duration::ZERO) {
        problems.push(format!(
            "profile `{name}`: stale_after must be positive (leave it out to disable)"
        ));
    }
    for (point_name, point) in &profile.points {
        let at = format!("profile `{name}`, point `{point_name}`");
        if point_name == STATUS_POINT {
            problems.push(format!(
                "{at}: `{STATUS_POINT}` is reserved for device faults"
            ));
        } else if !valid_point_name(point_name) {
            problems.push(format!(
                "{at}: point names may use only ASCII letters, digits, `_` and `-`"
            ));
        }
        match (point.kind, point.range) {
            (PointKind::Number, Some([min, max]))
                if !min.is_finite() || !max.is_finite() || min >= max =>
            {
                problems.push(format!(
                    "{at}: range [{min}, {max}] must be finite with min below max"
                ));
            }
            (PointKind::Bool, Some(_)) => {
                problems.push(format!("{at}: a bool point has no range"));
            }
            _ => {}
        }
        match (point.kind, point.stuck_after) {
            (PointKind::Bool, Some(_)) => {
                problems.push(format!("{at}: stuck_after applies to number points only"));
            }
            (PointKind::Number, Some(d)) if d.is_zero() => {
                problems.push(format!("{at}: stuck_after must be positive"));
            }
            _ => {}
        }
    }

    let mut reserved: HashSet<String> = [OFFLINE_RULE.to_string(), STALE_RULE.to_string()].into();
    for point_name in profile.points.keys() {
        reserved.insert(format!("{point_name}{RANGE_RULE_SUFFIX}"));
        reserved.insert(format!("{point_name}{STUCK_RULE_SUFFIX}"));
    }
    let mut seen: HashSet<&str> = HashSet::new();
    for rule in &profile.rules {
        let at = format!("profile `{name}`, rule `{}`", rule.id);
        if rule.id.is_empty() {
            problems.push(format!("profile `{name}`: a rule has an empty id"));
        } else if !seen.insert(&rule.id) {
            problems.push(format!("{at}: duplicate rule id"));
        } else if reserved.contains(&rule.id) || rule.id.starts_with(ACTION_FAILED_RULE_PREFIX) {
            problems.push(format!(
                "{at}: id is reserved for a built-in fault condition"
            ));
        }
        if let Some(action) = &rule.action {
            if !valid_action_name(action) {
                problems.push(format!(
                    "{at}: action `{action}` must be non-empty without `/`, `+`, `#` or spaces"
                ));
            }
        }
        let point = profile.points.get(&rule.point);
        match point {
            None => problems.push(format!(
                "{at}: unknown point `{}` (points: {})",
                rule.point,
                profile
                    .points
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Some(p) => {
                let fits = match rule.kind {
                    RuleKind::State => p.kind == PointKind::Bool,
                    RuleKind::High | RuleKind::Low | RuleKind::RateOfRise => {
                        p.kind == PointKind::Number
                    }
                };
                if !fits {
                    problems.push(format!(
                        "{at}: a {} rule cannot watch {} point `{}`",
                        rule.kind.as_str(),
                        p.kind.as_str(),
                        rule.point
                    ));
                }
            }
        }
        for problem in rule.number_problems(point) {
            problems.push(format!("{at}: {problem}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_parse_and_validate_without_problems() {
        let set = ProfileSet::try_builtin().expect("built-in profiles are valid");
        assert_eq!(ProfileSet::builtin(), set);
        for name in [
            "smoke_detector",
            "heat_detector",
            "room_temperature",
            "server_room",
            "cold_storage",
            "chem_cabinet",
        ] {
            assert!(set.profile(name).is_some(), "missing profile {name}");
        }
    }

    #[test]
    fn builtin_profiles_use_the_point_names_of_the_device_protocol() {
        let set = ProfileSet::builtin();
        let expected: &[(&str, &[(&str, PointKind)])] = &[
            (
                "smoke_detector",
                &[
                    ("smoke", PointKind::Bool),
                    ("obscuration_db_m", PointKind::Number),
                    ("battery_pct", PointKind::Number),
                    ("tamper", PointKind::Bool),
                ],
            ),
            ("heat_detector", &[("temp_c", PointKind::Number)]),
            (
                "room_temperature",
                &[("temp_c", PointKind::Number), ("rh_pct", PointKind::Number)],
            ),
            (
                "server_room",
                &[("temp_c", PointKind::Number), ("rh_pct", PointKind::Number)],
            ),
            (
                "cold_storage",
                &[
                    ("temp_c", PointKind::Number),
                    ("door_open", PointKind::Bool),
                ],
            ),
            (
                "chem_cabinet",
                &[
                    ("temp_c", PointKind::Number),
                    ("rh_pct", PointKind::Number),
                    ("voc_ppm", PointKind::Number),
                    ("lel_pct", PointKind::Number),
                    ("fan_on", PointKind::Bool),
                    ("airflow_mps", PointKind::Number),
                    ("door_open", PointKind::Bool),
                ],
            ),
        ];
        for (profile, points) in expected {
            let p = set.profile(profile).expect("profile exists");
            let mut names: Vec<&str> = p.points.keys().map(String::as_str).collect();
            names.sort_unstable();
            let mut want: Vec<&str> = points.iter().map(|(n, _)| *n).collect();
            want.sort_unstable();
            assert_eq!(names, want, "points of {profile}");
            for (point, kind) in *points {
                assert_eq!(p.points[*point].kind, *kind, "{profile}.{point}");
            }
            assert!(
                !p.label.is_empty() && !p.label_en.is_empty(),
                "{profile} labels"
            );
        }
        assert_eq!(
            set.profile("smoke_detector").and_then(|p| p.stale_after),
            Some(Duration::from_secs(100))
        );
    }

    #[test]
    fn validation_reports_every_problem_of_a_broken_profile_naming_profile_and_rule() {
        let text = include_str!("testdata/broken_profiles.toml");
        let expected = include_str!("testdata/broken_profiles.expected");
        let set = ProfileSet::from_toml(text).expect("broken profile still parses");
        let problems = set.validate();
        let expected: Vec<&str> = expected.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(
            problems, expected,
            "golden file testdata/broken_profiles.expected"
        );
    }

    #[test]
    fn unknown_keys_in_profiles_are_rejected_with_their_location() {
        let text = "[profiles.x.points.temp_c]\nkind = \"number\"\nunits = \"C\"\n";
        let error = ProfileSet::from_toml(text)
            .expect_err("unknown key")
            .to_string();
        assert!(error.contains("units"), "{error}");
        assert!(error.contains("line 3"), "{error}");
    }

    #[test]
    fn overrides_are_checked_against_the_profile_rule() {
        let set = ProfileSet::builtin();
        let ok = RuleOverride {
            alarm: Some(45.0),
            warning: Some(40.0),
            ..RuleOverride::default()
        };
        assert_eq!(
            set.validate_override("heat_detector", "heat_fixed", &ok),
            Ok(())
        );

        let cases: &[(&str, &str, RuleOverride, &str)] = &[
            (
                "heat_detector",
                "no_such_rule",
                RuleOverride::default(),
                "profile `heat_detector` has no rule `no_such_rule`",
            ),
            (
                "no_such_profile",
                "heat_fixed",
                RuleOverride::default(),
                "unknown profile `no_such_profile`",
            ),
            (
                "heat_detector",
                "heat_fixed",
                RuleOverride {
                    alarm: Some(45.0),
                    ..RuleOverride::default()
                },
                "warning (50) must be below alarm (45) in a high rule",
            ),
            (
                "heat_detector",
                "heat_fixed",
                RuleOverride {
                    per_minute: Some(5.0),
                    ..RuleOverride::default()
                },
                "`per_minute` does not apply to a high rule",
            ),
            (
                "heat_detector",
                "heat_rate_of_rise",
                RuleOverride {
                    per_minute: Some(0.0),
                    ..RuleOverride::default()
                },
                "per_minute (0) must be positive",
            ),
        ];
        for (profile, rule, ov, want) in cases {
            let error = set
                .validate_override(profile, rule, ov)
                .expect_err("override is invalid");
            assert!(error.contains(want), "{profile}/{rule}: {error}");
        }
    }

    #[test]
    fn a_site_override_of_a_profile_changes_its_rules_or_nothing_at_all() {
        let mut set = ProfileSet::builtin();
        let lowered = BTreeMap::from([(
            "lel_high".to_string(),
            RuleOverride {
                warning: Some(5.0),
                alarm: Some(15.0),
                ..RuleOverride::default()
            },
        )]);
        set.override_profile("chem_cabinet", &lowered)
            .expect("valid override");
        let rule = |set: &ProfileSet| {
            set.profile("chem_cabinet")
                .and_then(|p| p.rules.iter().find(|r| r.id == "lel_high"))
                .map(|r| (r.warning, r.alarm))
        };
        assert_eq!(rule(&set), Some((Some(5.0), Some(15.0))));
        assert!(set.validate().is_empty());

        let mut broken = lowered.clone();
        broken.insert(
            "no_such_rule".to_string(),
            RuleOverride {
                alarm: Some(1.0),
                ..RuleOverride::default()
            },
        );
        broken.insert(
            "lel_high".to_string(),
            RuleOverride {
                warning: Some(30.0),
                ..RuleOverride::default()
            },
        );
        let problems = set
            .override_profile("chem_cabinet", &broken)
            .expect_err("invalid overrides");
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert_eq!(rule(&set), Some((Some(5.0), Some(15.0))), "nothing applied");
    }

    #[test]
    fn device_overrides_parse_from_the_gateway_config_shape() {
        #[derive(Deserialize)]
        struct Device {
            overrides: BTreeMap<String, RuleOverride>,
        }
        let device: Device = toml::from_str(
            "overrides.heat_fixed = { alarm = 45.0, on_delay = \"10s\" }\n\
             overrides.heat_rate_of_rise = { enabled = false }\n",
        )
        .expect("parses");
        assert_eq!(device.overrides["heat_fixed"].alarm, Some(45.0));
        assert_eq!(
            device.overrides["heat_fixed"].on_delay,
            Some(Duration::from_secs(10))
        );
        assert_eq!(device.overrides["heat_rate_of_rise"].enabled, Some(false));
        assert!(toml::from_str::<Device>("overrides.x = { alarms = 1.0 }").is_err());
    }

    #[test]
    fn rule_actions_must_be_usable_names_and_the_action_fault_id_is_reserved() {
        let text = r#"
            [profiles.cab.points.lel_pct]
            kind = "number"
            [[profiles.cab.rules]]
            id = "lel_high"
            kind = "high"
            point = "lel_pct"
            class = "gas"
            warning = 10.0
            action = "fan on"
            [[profiles.cab.rules]]
            id = "action_failed:fan"
            kind = "high"
            point = "lel_pct"
            class = "fault"
            alarm = 50.0
            action = "fan"
        "#;
        let set = ProfileSet::from_toml(text).expect("parses");
        assert_eq!(
            set.validate(),
            vec![
                "profile `cab`, rule `lel_high`: action `fan on` must be non-empty without `/`, `+`, `#` or spaces",
                "profile `cab`, rule `action_failed:fan`: id is reserved for a built-in fault condition",
            ]
        );
        assert_eq!(set.rule_action("cab", "action_failed:fan"), Some("fan"));
        assert!(set.names_action("cab", "fan"));
        assert!(!set.names_action("cab", "pump"));
        assert_eq!(set.rule_action("nope", "lel_high"), None);
    }
}

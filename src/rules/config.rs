//! Device profiles and their default rules, read from TOML (`config/profiles.toml` is built in).
//!
//! A profile names a device type's points (the point names are part of the device protocol),
//! their units and physical ranges, and the rules the [`RuleEngine`](super::RuleEngine) evaluates
//! on every reading. A device gets a profile at registration and may override a rule's numbers
//! with a [`RuleOverride`]. [`ProfileSet::validate`] (in `validation.rs`) cross-checks
//! everything serde cannot and returns every problem at once, so a site fixes its file in one
//! pass.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::model::{AlarmClass, Severity};

/// Rule id of the device-level "device said it is offline" fault.
pub const OFFLINE_RULE: &str = "offline";
/// Rule id of the device-level "no reading for `stale_after`" fault.
pub const STALE_RULE: &str = "stale";
/// Suffix of the per-point "value outside the physical range" sensor fault (`<point>_range`).
pub const RANGE_RULE_SUFFIX: &str = "_range";
/// Suffix of the per-point "value unchanged for `stuck_after`" sensor fault (`<point>_stuck`).
pub const STUCK_RULE_SUFFIX: &str = "_stuck";
/// Prefix of the device-level "a rule's action failed" fault
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
    /// The action to run when this rule's alarm is raised on a device (`crate::actions`): the
    /// device's `[[modbus.actions]]` entry of this name, e.g. `exhaust_fan_on`. A device
    /// without an action of that name does nothing (off unless configured).
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

    /// The action a profile's rule names, if any.
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
    fn unknown_keys_in_profiles_are_rejected_with_their_location() {
        let text = "[profiles.x.points.temp_c]\nkind = \"number\"\nunits = \"C\"\n";
        let error = ProfileSet::from_toml(text)
            .expect_err("unknown key")
            .to_string();
        assert!(error.contains("units"), "{error}");
        assert!(error.contains("line 3"), "{error}");
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

//! Cross-checks of device profiles and device overrides that serde cannot make: every rule
//! names a real point of a kind it can watch, levels in the right order and inside the
//! point's range, no duplicate or reserved rule ids, usable names and durations. Every check
//! collects all problems before returning, so a site fixes its file in one pass. The types are
//! in [`super::config`]; the gateway config and `campusguard check` call these at load.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use super::config::{
    PointKind, PointSpec, Profile, ProfileSet, RuleKind, RuleOverride, RuleSpec,
    ACTION_FAILED_RULE_PREFIX, OFFLINE_RULE, RANGE_RULE_SUFFIX, STALE_RULE, STUCK_RULE_SUFFIX,
};
use crate::model::STATUS_POINT;

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

impl ProfileSet {
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
}

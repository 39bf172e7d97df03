//! The rule cases: every file in `src/rules/testdata/cases/` is one case (a profile, inputs with
//! times, and every change the engine must emit), and one test runs them all, so a new case is
//! a new file. The files are read when the test runs; nothing needs registering.
//!
//! A case file is TOML with these keys (top-level keys before any `[profiles…]` table):
//!
//! ```toml
//! name = "a sentence saying what the case shows"      # reported when the case fails
//! profile = "heat_detector"   # the profile device s1/d1 is registered with
//! # Optional: the device's overrides, exactly as in the gateway config.
//! overrides.heat_fixed = { warning = 40.0, alarm = 45.0 }
//! # Inputs, in time order; `at` is seconds after registration (device time BASE_MS + at).
//! steps = [
//!     { at = 0, point = "temp_c", value = 25.0 },     # a reading (number or true/false)
//!     { at = 100, event = "tick" },                   # the pipeline's periodic tick
//!     { at = 101, event = "offline" },                # device status: "online" | "offline"
//!     # A reading every `every` s from `from` to `to` (both included), value + per_second × t.
//!     { from = 0, to = 60, every = 10, point = "temp_c", value = 20.0, per_second = 0.15 },
//! ]
//! # Every change, in order: when (the `at` of the input that caused it), the rule, and the
//! # severity it went to ("warning", "alarm" or "normal"). Nothing else may be emitted.
//! expected = [
//!     { at = 100, rule = "heat_fixed", severity = "warning" },
//! ]
//! # Optional: profiles of the case's own. Without them the case uses the built-in profiles
//! # (config/profiles.toml); with them, only these.
//! [profiles.delayed.points.temp_c]
//! kind = "number"
//! ```
//!
//! Besides the listed changes, the test checks that no (sensor, rule) is ever emitted at the
//! same severity twice in a row. A file that does not parse, or a case that fails, fails the
//! test with the file's path; every file is run and all failures are reported together.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use super::testing::{reading, BASE_MS};
use super::RuleEngine;
use crate::model::{ConditionChange, DeviceKey, Severity, Value};
use crate::rules::config::{Profile, ProfileSet, RuleOverride};

/// The folder of case files, relative to the crate root.
const CASES_DIR: &str = "src/rules/testdata/cases";

/// How many cases the folder held when they moved there from Rust code: fewer means a case was
/// lost (or the folder was not found).
const CASES_AT_LEAST: usize = 24;

/// One case file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    name: String,
    profile: String,
    #[serde(default)]
    overrides: BTreeMap<String, RuleOverride>,
    steps: Vec<StepFile>,
    expected: Vec<Expected>,
    #[serde(default)]
    profiles: Option<BTreeMap<String, Profile>>,
}

/// One entry of `steps`: a reading, an event, or a series of readings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    at: Option<f64>,
    point: Option<String>,
    value: Option<Value>,
    event: Option<Event>,
    from: Option<f64>,
    to: Option<f64>,
    every: Option<f64>,
    per_second: Option<f64>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Event {
    Tick,
    Online,
    Offline,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Expected {
    at: f64,
    rule: String,
    severity: Level,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Level {
    Warning,
    Alarm,
    Normal,
}

impl Level {
    fn severity(self) -> Option<Severity> {
        match self {
            Level::Warning => Some(Severity::Warning),
            Level::Alarm => Some(Severity::Alarm),
            Level::Normal => None,
        }
    }
}

/// One input to the engine.
#[derive(Debug, Clone, PartialEq)]
enum Input {
    Reading(String, Value),
    Event(Event),
}

/// A case ready to run: the steps expanded, times checked.
#[derive(Debug)]
struct Case {
    name: String,
    profiles: Option<BTreeMap<String, Profile>>,
    profile: String,
    overrides: BTreeMap<String, RuleOverride>,
    /// (seconds after registration, input), in time order.
    steps: Vec<(f64, Input)>,
    expected: Vec<(f64, String, Option<Severity>)>,
}

/// A time in seconds usable as an offset from registration.
fn seconds(what: &str, value: f64) -> Result<f64, String> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(format!("{what} ({value}) must be zero or more seconds"))
    }
}

impl StepFile {
    /// The inputs this entry stands for, or why it is not one of the three forms.
    fn expand(self) -> Result<Vec<(f64, Input)>, String> {
        let StepFile {
            at,
            point,
            value,
            event,
            from,
            to,
            every,
            per_second,
        } = self;
        match (at, point, value, event) {
            (Some(at), None, None, Some(event))
                if from.is_none() && to.is_none() && every.is_none() && per_second.is_none() =>
            {
                Ok(vec![(seconds("at", at)?, Input::Event(event))])
            }
            (Some(at), Some(point), Some(value), None)
                if from.is_none() && to.is_none() && every.is_none() && per_second.is_none() =>
            {
                Ok(vec![(seconds("at", at)?, Input::Reading(point, value))])
            }
            (None, Some(point), Some(Value::Number(start)), None) => {
                let (Some(from), Some(to), Some(every)) = (from, to, every) else {
                    return Err("a series needs `from`, `to` and `every`".into());
                };
                let (from, to) = (seconds("from", from)?, seconds("to", to)?);
                if !(every.is_finite() && every > 0.0) || to < from {
                    return Err(format!(
                        "a series needs `every` > 0 and `to` ≥ `from` (from {from}, to {to}, \
                         every {every})"
                    ));
                }
                let per_second = per_second.unwrap_or(0.0);
                let mut steps = Vec::new();
                let mut t = from;
                while t <= to + 1e-9 {
                    let value = Value::Number(start + per_second * t);
                    steps.push((t, Input::Reading(point.clone(), value)));
                    t += every;
                }
                Ok(steps)
            }
            _ => Err("a step is `{ at, point, value }`, `{ at, event }` or \
                 `{ from, to, every, point, value, per_second }` (a number series)"
                .into()),
        }
    }
}

impl Case {
    /// Parses a case file; every error names `path`.
    fn parse(path: &Path, text: &str) -> Result<Case, String> {
        let at = path.display();
        let file: CaseFile = toml::from_str(text).map_err(|e| format!("{at}: {e}"))?;
        let mut steps: Vec<(f64, Input)> = Vec::new();
        for (i, step) in file.steps.into_iter().enumerate() {
            let expanded = step
                .expand()
                .map_err(|e| format!("{at}: step {}: {e}", i + 1))?;
            steps.extend(expanded);
        }
        if steps.windows(2).any(|w| w[1].0 < w[0].0) {
            return Err(format!("{at}: steps must be in time order"));
        }
        Ok(Case {
            name: file.name,
            profiles: file.profiles,
            profile: file.profile,
            overrides: file.overrides,
            steps,
            expected: file
                .expected
                .into_iter()
                .map(|e| (e.at, e.rule, e.severity.severity()))
                .collect(),
        })
    }

    /// Registers `s1/d1` and feeds the steps; every change with the time of the step that
    /// caused it.
    fn run(&self) -> Result<Vec<(f64, ConditionChange)>, String> {
        let profiles = match &self.profiles {
            Some(profiles) => ProfileSet {
                profiles: profiles.clone(),
            },
            None => ProfileSet::builtin(),
        };
        let problems = profiles.validate();
        if !problems.is_empty() {
            return Err(format!("its profiles are invalid: {problems:?}"));
        }
        let mut engine = RuleEngine::new(Arc::new(profiles));
        let key = DeviceKey::new("s1", "d1");
        let start = Instant::now();
        engine
            .register_device(&key, &self.profile, &self.overrides, start)
            .map_err(|e| e.to_string())?;
        let mut changes = Vec::new();
        let mut out = Vec::new();
        for (at, input) in &self.steps {
            let now = start + Duration::from_secs_f64(*at);
            let now_ms = BASE_MS + (at * 1000.0) as i64;
            match input {
                Input::Reading(point, value) => {
                    engine.on_reading(&reading(point, *value, now_ms), now, &mut out)
                }
                Input::Event(Event::Tick) => engine.on_tick(now, now_ms, &mut out),
                Input::Event(Event::Online) => engine.on_status(&key, true, now, now_ms, &mut out),
                Input::Event(Event::Offline) => {
                    engine.on_status(&key, false, now, now_ms, &mut out)
                }
            }
            changes.extend(out.drain(..).map(|c| (*at, c)));
        }
        Ok(changes)
    }

    /// Runs the case; `Err` says how its changes differ from the expected ones.
    fn check(&self) -> Result<(), String> {
        let changes = self.run()?;
        let got: Vec<(f64, String, Option<Severity>)> = changes
            .iter()
            .map(|(at, c)| (*at, c.rule.to_string(), c.severity))
            .collect();
        if got != self.expected {
            return Err(format!(
                "changes differ\n  expected:{}\n  got:{}",
                listed(&self.expected),
                listed(&got)
            ));
        }
        let mut last: HashMap<(String, String), Option<Severity>> = HashMap::new();
        for (_, c) in &changes {
            let key = (c.sensor.to_string(), c.rule.to_string());
            let previous = last.insert(key, c.severity).unwrap_or(None);
            if previous == c.severity {
                return Err(format!("the same severity twice in a row: {c:?}"));
            }
        }
        Ok(())
    }
}

fn listed(changes: &[(f64, String, Option<Severity>)]) -> String {
    if changes.is_empty() {
        return " (none)".into();
    }
    let mut text = String::new();
    for (at, rule, severity) in changes {
        let level = severity.map_or("normal", Severity::as_str);
        let _ = write!(text, "\n    at {at} s: {rule} → {level}");
    }
    text
}

/// Every entry of the cases folder, sorted; `Err` if the folder cannot be read.
fn case_paths() -> Result<Vec<PathBuf>, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(CASES_DIR);
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut paths = entries
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    paths.sort();
    Ok(paths)
}

/// Loads and checks one case file; `Err` names the file (and the case once it is parsed).
fn check_file(path: &Path) -> Result<(), String> {
    let shown = path
        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path);
    if path.extension().is_none_or(|ext| ext != "toml") {
        return Err(format!(
            "{}: not a case file (case files end in .toml)",
            shown.display()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", shown.display()))?;
    let case = Case::parse(shown, &text)?;
    case.check()
        .map_err(|e| format!("{} ({}): {e}", shown.display(), case.name))
}

#[test]
fn every_rule_case_file_produces_exactly_its_expected_changes() {
    let paths = case_paths().expect("the cases folder is readable");
    let failures: Vec<String> = paths
        .iter()
        .filter_map(|path| check_file(path).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} case files failed:\n\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n\n")
    );
    assert!(
        paths.len() >= CASES_AT_LEAST,
        "only {} case files in {CASES_DIR}",
        paths.len()
    );
}

#[test]
fn a_case_file_that_does_not_parse_fails_with_its_file_name() {
    let path = Path::new("src/rules/testdata/cases/broken.toml");
    let cases = [
        ("name = \"x\"\nprofile = 1\n", "invalid type"),
        (
            "name = \"x\"\nprofile = \"heat_detector\"\nexpected = []\n\
             steps = [{ at = 0, event = \"tick\" }, { at = -1, event = \"tick\" }]\n",
            "step 2: at (-1) must be zero or more seconds",
        ),
        (
            "name = \"x\"\nprofile = \"heat_detector\"\nexpected = []\n\
             steps = [{ at = 0, point = \"temp_c\" }]\n",
            "step 1: a step is",
        ),
        (
            "name = \"x\"\nprofile = \"heat_detector\"\nexpected = []\n\
             steps = [{ at = 5, event = \"tick\" }, { at = 1, event = \"tick\" }]\n",
            "steps must be in time order",
        ),
        (
            "name = \"x\"\nprofile = \"heat_detector\"\nexpected = []\nsteps = []\nseverity = 1\n",
            "unknown field `severity`",
        ),
    ];
    for (text, want) in cases {
        let error = Case::parse(path, text).expect_err("the case is broken");
        assert!(
            error.starts_with("src/rules/testdata/cases/broken.toml: "),
            "{error}"
        );
        assert!(error.contains(want), "{want:?} in {error}");
    }
}

#[test]
fn a_case_whose_changes_differ_fails_listing_both() {
    let path = Path::new("wrong.toml");
    let text = "name = \"smoke raises a warning (it raises an alarm)\"\n\
                profile = \"smoke_detector\"\n\
                steps = [{ at = 1, point = \"smoke\", value = true }]\n\
                expected = [{ at = 1, rule = \"smoke\", severity = \"warning\" }]\n";
    let case = Case::parse(path, text).expect("parses");
    let error = case.check().expect_err("the expected changes are wrong");
    assert!(error.contains("at 1 s: smoke → warning"), "{error}");
    assert!(error.contains("at 1 s: smoke → alarm"), "{error}");
}

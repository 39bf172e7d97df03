//! The rule engine: a synchronous, deterministic state machine between the pipeline and the
//! alarm manager. The pipeline feeds it every reading of a registered device, in order per
//! sensor, plus device status and a periodic tick; it answers with [`ConditionChange`]s, one per
//! change of a (sensor, rule) condition's severity, never a repeat.
//!
//! No I/O and no tasks: time comes in as [`Instant`] (delays, staleness) and as Unix ms
//! (timestamps of time-driven changes). Rate of rise uses the readings' device time. State is
//! O(devices × rules); the per-reading path does three hash look-ups by `&str` and allocates
//! only when it emits a change.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::config::{
    PointKind, PointSpec, Profile, ProfileSet, RuleKind, RuleOverride, RuleSpec, OFFLINE_RULE,
    RANGE_RULE_SUFFIX, STALE_RULE, STUCK_RULE_SUFFIX,
};
use crate::model::{AlarmClass, ConditionChange, DeviceKey, Reading, SensorId, Severity, Value};

/// Most samples a rate-of-rise rule keeps per sensor: one every `window / 128` covers the window.
const RATE_SAMPLES_CAP: usize = 130;
const RATE_SAMPLE_SLOTS: i64 = 128;

/// Whether the engine knows a point of a device (the ingest rejects unknown points).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointCheck {
    Known,
    UnknownPoint,
    UnregisteredDevice,
}

/// `register_device` was given a profile name the profile set does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown device profile `{0}`")]
pub struct UnknownProfile(pub String);

/// Counters for `/metrics`: what happened to the readings the engine was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Readings evaluated against a point's rules (in range, right type).
    pub readings_evaluated: u64,
    /// Readings of devices that are not registered (ignored).
    pub readings_unregistered: u64,
    /// Readings of a point the device's profile does not have (ignored).
    pub readings_unknown_point: u64,
    /// A number for a bool point (other than 0/1), a bool for a number point, or a non-finite
    /// number (ignored).
    pub readings_wrong_type: u64,
    /// Readings outside the point's physical range (sensor fault, not evaluated).
    pub readings_out_of_range: u64,
}

/// The rule state of every registered device. Owned by one task (the pipeline), which calls it
/// in reading order per sensor. `condition_active` equals the last severity emitted for the
/// (sensor, rule), so a consumer of the change stream can track it without sharing the engine.
pub struct RuleEngine {
    profiles: Arc<ProfileSet>,
    /// school → device → index into `devices`; nested so a reading is found by `&str` without
    /// cloning its names.
    index: HashMap<Arc<str>, HashMap<Arc<str>, usize>>,
    /// In registration order, so ticks emit in a deterministic order. Devices are never removed.
    devices: Vec<Device>,
    offline_rule: Arc<str>,
    stale_rule: Arc<str>,
    stats: EngineStats,
}

struct Device {
    profile: Arc<str>,
    overrides: BTreeMap<String, RuleOverride>,
    status_sensor: SensorId,
    stale_after: Option<Duration>,
    /// Last reading of any point (registration time until the first one).
    last_heard: Instant,
    stale: bool,
    offline: bool,
    /// In point-name order (deterministic ticks); `point_index` finds them by name.
    points: Vec<Point>,
    point_index: HashMap<Arc<str>, usize>,
}

struct Point {
    sensor: SensorId,
    kind: PointKind,
    range: Option<(f64, f64)>,
    range_rule: Arc<str>,
    range_fault: bool,
    stuck: Option<Stuck>,
    /// Last value evaluated by the rules, for changes a tick raises.
    last_value: Option<Value>,
    rules: Vec<Rule>,
}

struct Stuck {
    rule: Arc<str>,
    after: Duration,
    value: Option<f64>,
    since: Instant,
    active: bool,
}

struct Rule {
    id: Arc<str>,
    class: AlarmClass,
    check: Check,
    on_delay: Duration,
    off_delay: Duration,
    gate: Gate,
    /// `(device ts_ms, value)` of a rate-of-rise rule; empty (unallocated) for other kinds.
    samples: VecDeque<(i64, f64)>,
    /// Last rate computed by a rate-of-rise rule (for messages).
    last_rate: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Check {
    High {
        warning: Option<f64>,
        alarm: Option<f64>,
        deadband: f64,
    },
    Low {
        warning: Option<f64>,
        alarm: Option<f64>,
        deadband: f64,
    },
    State {
        active_when: bool,
        severity: Severity,
    },
    RateOfRise {
        per_minute: f64,
        window_ms: i64,
        severity: Severity,
    },
}

const LEVELS: [Severity; 2] = [Severity::Warning, Severity::Alarm];

fn level_index(severity: Severity) -> usize {
    match severity {
        Severity::Warning => 0,
        Severity::Alarm => 1,
    }
}

/// On-/off-delay bookkeeping of one (sensor, rule) condition. `raw` is what the latest value
/// says; `active` is what was last emitted. Each level has its own timers.
#[derive(Debug, Default)]
struct Gate {
    active: Option<Severity>,
    /// Since when `raw` has been continuously at or above each level (warning, alarm).
    up_since: [Option<Instant>; 2],
    /// Since when `raw` has been continuously below each level.
    down_since: [Option<Instant>; 2],
}

impl Gate {
    /// Feeds the raw condition of a new reading; returns the severity to emit if it changes.
    fn feed(
        &mut self,
        raw: Option<Severity>,
        now: Instant,
        on_delay: Duration,
        off_delay: Duration,
    ) -> Option<Option<Severity>> {
        for (i, level) in LEVELS.into_iter().enumerate() {
            if raw >= Some(level) {
                self.up_since[i].get_or_insert(now);
                self.down_since[i] = None;
            } else {
                self.up_since[i] = None;
                self.down_since[i].get_or_insert(now);
            }
        }
        let up = self.delayed_up(now, on_delay);
        let next = if up > self.active {
            up
        } else if raw < self.active {
            self.delayed_down(raw, now, off_delay)
        } else {
            self.active
        };
        (next != self.active).then_some(next)
    }

    /// A tick may raise (an on-delay ran out while the last value still violates), never clear.
    fn tick(&self, now: Instant, on_delay: Duration) -> Option<Option<Severity>> {
        let up = self.delayed_up(now, on_delay);
        (up > self.active).then_some(up)
    }

    /// The highest level held continuously for `on_delay`.
    fn delayed_up(&self, now: Instant, on_delay: Duration) -> Option<Severity> {
        LEVELS.into_iter().rev().find(|level| {
            self.up_since[level_index(*level)]
                .is_some_and(|since| now.saturating_duration_since(since) >= on_delay)
        })
    }

    /// Going down: a level above `raw` is kept until it has been left for `off_delay`.
    fn delayed_down(
        &self,
        raw: Option<Severity>,
        now: Instant,
        off_delay: Duration,
    ) -> Option<Severity> {
        LEVELS
            .into_iter()
            .rev()
            .filter(|level| Some(*level) <= self.active && Some(*level) > raw)
            .find(|level| {
                self.down_since[level_index(*level)]
                    .is_some_and(|since| now.saturating_duration_since(since) < off_delay)
            })
            .map_or(raw, Some)
    }
}

/// High rule with hysteresis: a level is reached at `value >= level` and, once active, held
/// while `value >= level - deadband`.
fn high_target(
    value: f64,
    warning: Option<f64>,
    alarm: Option<f64>,
    deadband: f64,
    active: Option<Severity>,
) -> Option<Severity> {
    let holds = |level: Option<f64>, severity: Severity| {
        level.is_some_and(|l| value >= l || (active >= Some(severity) && value >= l - deadband))
    };
    if holds(alarm, Severity::Alarm) {
        Some(Severity::Alarm)
    } else if holds(warning, Severity::Warning) {
        Some(Severity::Warning)
    } else {
        None
    }
}

/// Low rule with hysteresis: mirror of [`high_target`].
fn low_target(
    value: f64,
    warning: Option<f64>,
    alarm: Option<f64>,
    deadband: f64,
    active: Option<Severity>,
) -> Option<Severity> {
    let holds = |level: Option<f64>, severity: Severity| {
        level.is_some_and(|l| value <= l || (active >= Some(severity) && value <= l + deadband))
    };
    if holds(alarm, Severity::Alarm) {
        Some(Severity::Alarm)
    } else if holds(warning, Severity::Warning) {
        Some(Severity::Warning)
    } else {
        None
    }
}

fn severity_word(severity: Option<Severity>) -> &'static str {
    severity.map_or("normal", Severity::as_str)
}

impl Check {
    /// Builds the check of a rule; `None` if the rule lacks what its kind needs (an unvalidated
    /// profile set must not crash the engine).
    fn compile(spec: &RuleSpec) -> Option<Check> {
        let deadband = spec
            .deadband
            .filter(|d| d.is_finite() && *d > 0.0)
            .unwrap_or(0.0);
        let levels_given = spec.warning.is_some() || spec.alarm.is_some();
        match spec.kind {
            RuleKind::High => levels_given.then_some(Check::High {
                warning: spec.warning,
                alarm: spec.alarm,
                deadband,
            }),
            RuleKind::Low => levels_given.then_some(Check::Low {
                warning: spec.warning,
                alarm: spec.alarm,
                deadband,
            }),
            RuleKind::State => Some(Check::State {
                active_when: spec.active_when?,
                severity: spec.severity.unwrap_or(Severity::Alarm),
            }),
            RuleKind::RateOfRise => {
                let per_minute = spec.per_minute.filter(|r| r.is_finite() && *r > 0.0)?;
                let window_ms = i64::try_from(spec.window?.as_millis())
                    .unwrap_or(i64::MAX)
                    .max(1000);
                Some(Check::RateOfRise {
                    per_minute,
                    window_ms,
                    severity: spec.severity.unwrap_or(Severity::Alarm),
                })
            }
        }
    }

    /// The level a severity corresponds to, for `threshold` and messages.
    fn level(&self, severity: Severity) -> Option<f64> {
        match *self {
            Check::High { warning, alarm, .. } | Check::Low { warning, alarm, .. } => {
                match severity {
                    Severity::Warning => warning,
                    Severity::Alarm => alarm,
                }
            }
            Check::State { .. } => None,
            Check::RateOfRise { per_minute, .. } => Some(per_minute),
        }
    }
}

impl Rule {
    fn new(spec: &RuleSpec) -> Option<Rule> {
        let check = Check::compile(spec)?;
        let samples = match check {
            Check::RateOfRise { .. } => VecDeque::with_capacity(RATE_SAMPLES_CAP),
            _ => VecDeque::new(),
        };
        Some(Rule {
            id: spec.id.as_str().into(),
            class: spec.class,
            check,
            on_delay: spec.on_delay.unwrap_or_default(),
            off_delay: spec.off_delay.unwrap_or_default(),
            gate: Gate::default(),
            samples,
            last_rate: 0.0,
        })
    }

    /// Evaluates one in-range value of the rule's point.
    fn evaluate(
        &mut self,
        sensor: &SensorId,
        value: Value,
        ts_ms: i64,
        now: Instant,
        out: &mut Vec<ConditionChange>,
    ) {
        let raw = match self.check {
            Check::High {
                warning,
                alarm,
                deadband,
            } => high_target(value.as_f64(), warning, alarm, deadband, self.gate.active),
            Check::Low {
                warning,
                alarm,
                deadband,
            } => low_target(value.as_f64(), warning, alarm, deadband, self.gate.active),
            Check::State {
                active_when,
                severity,
            } => match value.as_bool() {
                Some(b) => (b == active_when).then_some(severity),
                None => return,
            },
            Check::RateOfRise {
                per_minute,
                window_ms,
                severity,
            } => match self.rate(ts_ms, value.as_f64(), window_ms) {
                Some(rate) => {
                    self.last_rate = rate;
                    (rate >= per_minute).then_some(severity)
                }
                // Not enough history to judge: leave the condition and its timers as they are.
                None => return,
            },
        };
        if let Some(next) = self.gate.feed(raw, now, self.on_delay, self.off_delay) {
            out.push(self.change(sensor, next, value, ts_ms));
        }
    }

    /// Rise per minute over the samples within `window_ms` of device time, once they span at
    /// least half the window. Keeps at most [`RATE_SAMPLES_CAP`] samples.
    fn rate(&mut self, ts_ms: i64, value: f64, window_ms: i64) -> Option<f64> {
        let samples = &mut self.samples;
        if samples.back().is_some_and(|(t, _)| ts_ms < *t) {
            // The device clock went back: the history no longer lines up.
            samples.clear();
        }
        let oldest_kept = ts_ms.saturating_sub(window_ms);
        while samples.front().is_some_and(|(t, _)| *t < oldest_kept) {
            samples.pop_front();
        }
        let rate = samples.front().and_then(|(t0, v0)| {
            let span_ms = ts_ms.saturating_sub(*t0);
            (span_ms > 0 && span_ms >= window_ms / 2)
                .then(|| (value - v0) * 60_000.0 / span_ms as f64)
        });
        let spacing = (window_ms / RATE_SAMPLE_SLOTS).max(1);
        if samples.back().is_none_or(|(t, _)| ts_ms - *t >= spacing) {
            if samples.len() >= RATE_SAMPLES_CAP {
                samples.pop_front();
            }
            samples.push_back((ts_ms, value));
        }
        rate
    }

    /// The change to emit when the severity goes from `self.gate.active` to `next`; updates the
    /// gate. Only called on a change, so formatting here is off the hot path.
    fn change(
        &mut self,
        sensor: &SensorId,
        next: Option<Severity>,
        value: Value,
        ts_ms: i64,
    ) -> ConditionChange {
        let previous = self.gate.active;
        self.gate.active = next;
        let point = &sensor.point;
        let word = severity_word(next);
        let (threshold, message) = match self.check {
            Check::High { .. } | Check::Low { .. } => {
                let high = matches!(self.check, Check::High { .. });
                if next > previous {
                    let level = next.and_then(|s| self.check.level(s));
                    let sign = if high { "≥" } else { "≤" };
                    let shown = level.map_or(String::new(), |l| format!(" {sign} {l}"));
                    (level, format!("{point} {value}{shown} ({word})"))
                } else {
                    let level = previous.and_then(|s| self.check.level(s));
                    let side = if high { "below" } else { "above" };
                    let shown = level.map_or(String::new(), |l| format!(" back {side} {l}"));
                    (level, format!("{point} {value}{shown} ({word})"))
                }
            }
            Check::State { .. } => {
                let held = if next.is_some() && !self.on_delay.is_zero() {
                    format!(" for {}", humantime::format_duration(self.on_delay))
                } else {
                    String::new()
                };
                (None, format!("{point} = {value}{held} ({word})"))
            }
            Check::RateOfRise { per_minute, .. } => {
                let sign = if next.is_some() { "≥" } else { "<" };
                (
                    Some(per_minute),
                    format!(
                        "{point} rising {:.1}/min {sign} {per_minute}/min ({word})",
                        self.last_rate
                    ),
                )
            }
        };
        ConditionChange {
            sensor: sensor.clone(),
            rule: self.id.clone(),
            class: self.class,
            severity: next,
            value: Some(value),
            threshold,
            reading_ts_ms: ts_ms,
            message,
        }
    }
}

impl Point {
    fn new(
        key: &DeviceKey,
        name: &str,
        spec: &PointSpec,
        profile: &Profile,
        overrides: &BTreeMap<String, RuleOverride>,
        now: Instant,
    ) -> Point {
        let rules = profile
            .rules
            .iter()
            .filter(|r| r.point == name)
            .filter_map(|r| {
                let spec = match overrides.get(&r.id) {
                    Some(ov) => r.with_override(ov),
                    None => r.clone(),
                };
                if !spec.is_enabled() {
                    return None;
                }
                let rule = Rule::new(&spec);
                if rule.is_none() {
                    tracing::warn!(device = %key, rule = %r.id, "rule is incomplete, skipped");
                }
                rule
            })
            .collect();
        Point {
            sensor: SensorId::new(&key.school, &key.device, name),
            kind: spec.kind,
            range: spec
                .range
                .filter(|[min, max]| min < max)
                .map(|[min, max]| (min, max)),
            range_rule: format!("{name}{RANGE_RULE_SUFFIX}").into(),
            range_fault: false,
            stuck: spec
                .stuck_after
                .filter(|d| !d.is_zero())
                .map(|after| Stuck {
                    rule: format!("{name}{STUCK_RULE_SUFFIX}").into(),
                    after,
                    value: None,
                    since: now,
                    active: false,
                }),
            last_value: None,
            rules,
        }
    }

    /// Range check, stuck check, then every rule of the point, in profile order.
    fn evaluate(
        &mut self,
        value: Value,
        ts_ms: i64,
        now: Instant,
        stats: &mut EngineStats,
        out: &mut Vec<ConditionChange>,
    ) {
        if let (Value::Number(v), Some((min, max))) = (value, self.range) {
            if v < min || v > max {
                stats.readings_out_of_range += 1;
                if !self.range_fault {
                    self.range_fault = true;
                    out.push(self.fault_change(
                        self.range_rule.clone(),
                        Some(Severity::Alarm),
                        Some(value),
                        Some(if v < min { min } else { max }),
                        ts_ms,
                        format!(
                            "{} {v} outside range [{min}, {max}] (sensor fault)",
                            self.sensor.point
                        ),
                    ));
                }
                return;
            }
            if self.range_fault {
                self.range_fault = false;
                out.push(self.fault_change(
                    self.range_rule.clone(),
                    None,
                    Some(value),
                    None,
                    ts_ms,
                    format!("{} {v} back within range (normal)", self.sensor.point),
                ));
            }
        }
        stats.readings_evaluated += 1;
        if let Some((rule, severity, message)) = self.check_stuck(value, now) {
            out.push(self.fault_change(rule, severity, Some(value), None, ts_ms, message));
        }
        self.last_value = Some(value);
        for rule in &mut self.rules {
            rule.evaluate(&self.sensor, value, ts_ms, now, out);
        }
    }

    /// Stuck detection: the same number for `stuck_after` raises `<point>_stuck`; any other
    /// value clears it. Returns `(rule, severity, message)` of a change.
    fn check_stuck(
        &mut self,
        value: Value,
        now: Instant,
    ) -> Option<(Arc<str>, Option<Severity>, String)> {
        let (stuck, Value::Number(v)) = (self.stuck.as_mut()?, value) else {
            return None;
        };
        let point = &self.sensor.point;
        if stuck.value == Some(v) {
            if stuck.active || now.saturating_duration_since(stuck.since) < stuck.after {
                return None;
            }
            stuck.active = true;
            let after = humantime::format_duration(stuck.after);
            let message = format!("{point} unchanged at {v} for {after} (sensor stuck)");
            Some((stuck.rule.clone(), Some(Severity::Alarm), message))
        } else {
            stuck.value = Some(v);
            stuck.since = now;
            if !stuck.active {
                return None;
            }
            stuck.active = false;
            let message = format!("{point} changed to {v} (normal)");
            Some((stuck.rule.clone(), None, message))
        }
    }

    fn fault_change(
        &self,
        rule: Arc<str>,
        severity: Option<Severity>,
        value: Option<Value>,
        threshold: Option<f64>,
        ts_ms: i64,
        message: String,
    ) -> ConditionChange {
        ConditionChange {
            sensor: self.sensor.clone(),
            rule,
            class: AlarmClass::Fault,
            severity,
            value,
            threshold,
            reading_ts_ms: ts_ms,
            message,
        }
    }

    /// Takes over the live state of the same point of the device's previous registration;
    /// what cannot be taken over stays in `old` for [`Point::retire`].
    fn carry_over(&mut self, old: &mut Point) {
        self.last_value = old.last_value;
        if self.range.is_some() {
            self.range_fault = std::mem::take(&mut old.range_fault);
        }
        if let (Some(new), Some(previous)) = (&mut self.stuck, &mut old.stuck) {
            new.value = previous.value;
            new.since = previous.since;
            new.active = std::mem::take(&mut previous.active);
        }
        for rule in &mut self.rules {
            if let Some(previous) = old.rules.iter_mut().find(|r| r.id == rule.id) {
                let gate = std::mem::take(&mut previous.gate);
                rule.gate = if rule.check == previous.check {
                    gate
                } else {
                    // New numbers: keep what was emitted, restart the delay timers.
                    Gate {
                        active: gate.active,
                        ..Gate::default()
                    }
                };
                if std::mem::discriminant(&rule.check) == std::mem::discriminant(&previous.check) {
                    std::mem::swap(&mut rule.samples, &mut previous.samples);
                    rule.last_rate = previous.last_rate;
                }
            }
        }
    }

    /// Clears every condition still active on a point (or rule) that a re-registration
    /// removed, so the alarm manager is not left with a condition nobody will ever clear.
    fn retire(self, now_ms: i64, out: &mut Vec<ConditionChange>) {
        const MESSAGE: &str = "no longer configured for this device (normal)";
        if self.range_fault {
            out.push(self.fault_change(
                self.range_rule.clone(),
                None,
                None,
                None,
                now_ms,
                MESSAGE.into(),
            ));
        }
        if let Some(stuck) = self.stuck.as_ref().filter(|s| s.active) {
            out.push(self.fault_change(
                stuck.rule.clone(),
                None,
                None,
                None,
                now_ms,
                MESSAGE.into(),
            ));
        }
        for rule in self.rules.iter().filter(|r| r.gate.active.is_some()) {
            out.push(ConditionChange {
                sensor: self.sensor.clone(),
                rule: rule.id.clone(),
                class: rule.class,
                severity: None,
                value: None,
                threshold: None,
                reading_ts_ms: now_ms,
                message: MESSAGE.into(),
            });
        }
    }
}

impl Device {
    fn new(
        key: &DeviceKey,
        profile_name: &str,
        profile: &Profile,
        overrides: &BTreeMap<String, RuleOverride>,
        now: Instant,
    ) -> Device {
        let points: Vec<Point> = profile
            .points
            .iter()
            .map(|(name, spec)| Point::new(key, name, spec, profile, overrides, now))
            .collect();
        let point_index = points
            .iter()
            .enumerate()
            .map(|(i, p)| (p.sensor.point.clone(), i))
            .collect();
        Device {
            profile: profile_name.into(),
            overrides: overrides.clone(),
            status_sensor: SensorId::device_status(&key.school, &key.device),
            stale_after: profile.stale_after.filter(|d| !d.is_zero()),
            last_heard: now,
            stale: false,
            offline: false,
            points,
            point_index,
        }
    }

    fn point(&self, name: &str) -> Option<&Point> {
        self.point_index.get(name).and_then(|&i| self.points.get(i))
    }

    fn status_change(
        &self,
        rule: &Arc<str>,
        severity: Option<Severity>,
        ts_ms: i64,
        message: String,
    ) -> ConditionChange {
        ConditionChange {
            sensor: self.status_sensor.clone(),
            rule: rule.clone(),
            class: AlarmClass::Fault,
            severity,
            value: None,
            threshold: None,
            reading_ts_ms: ts_ms,
            message,
        }
    }
}

impl RuleEngine {
    pub fn new(profiles: Arc<ProfileSet>) -> Self {
        Self {
            profiles,
            index: HashMap::new(),
            devices: Vec::new(),
            offline_rule: OFFLINE_RULE.into(),
            stale_rule: STALE_RULE.into(),
            stats: EngineStats::default(),
        }
    }

    pub fn profiles(&self) -> &Arc<ProfileSet> {
        &self.profiles
    }

    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    fn device_index(&self, school: &str, device: &str) -> Option<usize> {
        self.index.get(school)?.get(device).copied()
    }

    fn device(&self, school: &str, device: &str) -> Option<&Device> {
        self.device_index(school, device)
            .and_then(|i| self.devices.get(i))
    }

    /// Gives a device (from config or MQTT meta) its profile and per-rule overrides. Calling it
    /// again with the same profile and overrides changes nothing; with others it rebuilds the
    /// device's rules and keeps the live state of rules whose id is unchanged (their next
    /// reading is judged with the new numbers) and of the device (stale, offline). Overrides
    /// naming an unknown rule, or making a rule invalid, are logged and ignored: the gateway
    /// config checks them first with [`ProfileSet::validate_overrides`].
    ///
    /// A re-registration that removes a rule with an active condition loses that condition's
    /// clearing change here; [`RuleEngine::register_device_emitting`] returns it.
    pub fn register_device(
        &mut self,
        key: &DeviceKey,
        profile: &str,
        overrides: &BTreeMap<String, RuleOverride>,
        now: Instant,
    ) -> Result<(), UnknownProfile> {
        let mut dropped = Vec::new();
        self.register_device_emitting(
            key,
            profile,
            overrides,
            now,
            crate::model::now_ms(),
            &mut dropped,
        )?;
        if !dropped.is_empty() {
            tracing::warn!(device = %key, conditions = dropped.len(), "re-registration removed active conditions");
        }
        Ok(())
    }

    /// [`RuleEngine::register_device`], and a clearing change (`now_ms`) for every active
    /// condition whose rule or point the new profile/overrides no longer have.
    pub fn register_device_emitting(
        &mut self,
        key: &DeviceKey,
        profile: &str,
        overrides: &BTreeMap<String, RuleOverride>,
        now: Instant,
        now_ms: i64,
        out: &mut Vec<ConditionChange>,
    ) -> Result<(), UnknownProfile> {
        let profiles = Arc::clone(&self.profiles);
        let spec = profiles
            .profile(profile)
            .ok_or_else(|| UnknownProfile(profile.to_string()))?;
        let existing = self.device_index(&key.school, &key.device);
        if let Some(device) = existing.and_then(|i| self.devices.get(i)) {
            if &*device.profile == profile && device.overrides == *overrides {
                return Ok(());
            }
        }
        let usable: BTreeMap<String, RuleOverride> = overrides
            .iter()
            .filter(
                |(rule, ov)| match profiles.validate_override(profile, rule, ov) {
                    Ok(()) => true,
                    Err(error) => {
                        tracing::warn!(device = %key, %error, "device override ignored");
                        false
                    }
                },
            )
            .map(|(rule, ov)| (rule.clone(), ov.clone()))
            .collect();
        let mut fresh = Device::new(key, profile, spec, &usable, now);
        // Remember what was asked for, so an identical re-registration is a no-op.
        fresh.overrides = overrides.clone();
        match existing.and_then(|i| self.devices.get_mut(i)) {
            Some(slot) => {
                let old = std::mem::replace(slot, fresh);
                slot.last_heard = old.last_heard;
                slot.stale = old.stale;
                slot.offline = old.offline;
                let mut old_points = old.points;
                for point in &mut slot.points {
                    if let Some(previous) = old_points
                        .iter_mut()
                        .find(|p| p.sensor.point == point.sensor.point)
                    {
                        point.carry_over(previous);
                    }
                }
                for previous in old_points {
                    previous.retire(now_ms, out);
                }
            }
            None => {
                self.devices.push(fresh);
                self.index
                    .entry(key.school.clone())
                    .or_default()
                    .insert(key.device.clone(), self.devices.len() - 1);
            }
        }
        Ok(())
    }

    /// The profile name a device is registered with.
    pub fn device_profile(&self, key: &DeviceKey) -> Option<&str> {
        self.device(&key.school, &key.device).map(|d| &*d.profile)
    }

    pub fn check_point(&self, key: &DeviceKey, point: &str) -> PointCheck {
        match self.device(&key.school, &key.device) {
            None => PointCheck::UnregisteredDevice,
            Some(device) if device.point(point).is_some() => PointCheck::Known,
            Some(_) => PointCheck::UnknownPoint,
        }
    }

    /// The kind of a point of a registered device (lets the ingest reject wrong types).
    pub fn point_kind(&self, key: &DeviceKey, point: &str) -> Option<PointKind> {
        self.device(&key.school, &key.device)?
            .point(point)
            .map(|p| p.kind)
    }

    /// Evaluates one reading: clears the device's `stale` fault, then range check (out of range
    /// → `<point>_range` fault, value not evaluated further), stuck check, and every rule of the
    /// point in profile order. Readings of unregistered devices or unknown points only count.
    pub fn on_reading(&mut self, r: &Reading, now: Instant, out: &mut Vec<ConditionChange>) {
        let Some(i) = self.device_index(&r.sensor.school, &r.sensor.device) else {
            self.stats.readings_unregistered += 1;
            return;
        };
        let Some(device) = self.devices.get_mut(i) else {
            return;
        };
        device.last_heard = now;
        if device.stale {
            device.stale = false;
            out.push(device.status_change(
                &self.stale_rule,
                None,
                r.ts_ms,
                "reading received (normal)".to_string(),
            ));
        }
        let Some(point) = device
            .point_index
            .get(&*r.sensor.point)
            .and_then(|&j| device.points.get_mut(j))
        else {
            self.stats.readings_unknown_point += 1;
            return;
        };
        let value = match (point.kind, r.value) {
            (PointKind::Number, Value::Number(v)) if v.is_finite() => r.value,
            (PointKind::Bool, Value::Bool(_)) => r.value,
            // Modbus coils and some firmware send booleans as 0/1.
            (PointKind::Bool, Value::Number(v)) if v == 0.0 || v == 1.0 => Value::Bool(v == 1.0),
            _ => {
                self.stats.readings_wrong_type += 1;
                return;
            }
        };
        point.evaluate(value, r.ts_ms, now, &mut self.stats, out);
    }

    /// The device (or its Last Will, or the Modbus poller) says it is online or offline:
    /// offline raises the `offline` fault on `<school>/<device>/status`, online clears it.
    /// Status of an unregistered device is ignored.
    pub fn on_status(
        &mut self,
        key: &DeviceKey,
        online: bool,
        _now: Instant,
        now_ms: i64,
        out: &mut Vec<ConditionChange>,
    ) {
        let Some(i) = self.device_index(&key.school, &key.device) else {
            return;
        };
        let Some(device) = self.devices.get_mut(i) else {
            return;
        };
        if online == device.offline {
            device.offline = !online;
            let (severity, message) = if online {
                (None, "device online (normal)")
            } else {
                (Some(Severity::Alarm), "device offline")
            };
            out.push(device.status_change(&self.offline_rule, severity, now_ms, message.into()));
        }
    }

    /// Time-driven changes, raise only: `stale` for a device silent for its profile's
    /// `stale_after` (counted from registration if never heard; not while it is offline, which
    /// already says so), and conditions whose on-delay ran out while the last value still
    /// violates. Silence never clears anything.
    pub fn on_tick(&mut self, now: Instant, now_ms: i64, out: &mut Vec<ConditionChange>) {
        for device in &mut self.devices {
            if let Some(after) = device.stale_after {
                if !device.stale
                    && !device.offline
                    && now.saturating_duration_since(device.last_heard) >= after
                {
                    device.stale = true;
                    let message = format!(
                        "no reading for {} (stale)",
                        humantime::format_duration(after)
                    );
                    out.push(device.status_change(
                        &self.stale_rule,
                        Some(Severity::Alarm),
                        now_ms,
                        message,
                    ));
                }
            }
            for point in &mut device.points {
                // A faulty sensor's last good value is not fresh enough to raise on.
                let Some(value) = point.last_value.filter(|_| !point.range_fault) else {
                    continue;
                };
                for rule in &mut point.rules {
                    if let Some(next) = rule.gate.tick(now, rule.on_delay) {
                        out.push(rule.change(&point.sensor, next, value, now_ms));
                    }
                }
            }
        }
    }

    /// Seeds the engine with a condition that held before a restart (from the alarms restored
    /// out of the journal), so the next normal reading clears it instead of going unnoticed.
    /// Returns false when the device or rule is not registered (yet): the caller retries after
    /// the device registers.
    pub fn restore_condition(&mut self, sensor: &SensorId, rule: &str, severity: Severity) -> bool {
        let Some(index) = self.device_index(&sensor.school, &sensor.device) else {
            return false;
        };
        let Some(device) = self.devices.get_mut(index) else {
            return false;
        };
        if *sensor.point == *crate::model::STATUS_POINT {
            match rule {
                OFFLINE_RULE => device.offline = true,
                STALE_RULE => device.stale = true,
                _ => return false,
            }
            return true;
        }
        let Some(point) = device
            .point_index
            .get(&*sensor.point)
            .copied()
            .and_then(|i| device.points.get_mut(i))
        else {
            return false;
        };
        if *point.range_rule == *rule {
            point.range_fault = true;
            return true;
        }
        if let Some(stuck) = point.stuck.as_mut().filter(|s| *s.rule == *rule) {
            stuck.active = true;
            return true;
        }
        match point.rules.iter_mut().find(|r| *r.id == *rule) {
            Some(r) => {
                r.gate.active = Some(severity);
                true
            }
            None => false,
        }
    }

    /// Whether the condition of (sensor, rule) currently holds (as last emitted). The alarm
    /// manager refuses an operator reset of a latched alarm while it does.
    pub fn condition_active(&self, sensor: &SensorId, rule: &str) -> bool {
        let Some(device) = self.device(&sensor.school, &sensor.device) else {
            return false;
        };
        if *sensor.point == *crate::model::STATUS_POINT {
            return match rule {
                OFFLINE_RULE => device.offline,
                STALE_RULE => device.stale,
                _ => false,
            };
        }
        let Some(point) = device.point(&sensor.point) else {
            return false;
        };
        if *point.range_rule == *rule {
            return point.range_fault;
        }
        if let Some(stuck) = point.stuck.as_ref().filter(|s| *s.rule == *rule) {
            return stuck.active;
        }
        point
            .rules
            .iter()
            .any(|r| *r.id == *rule && r.gate.active.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Quality, Source};

    const W: Option<Severity> = Some(Severity::Warning);
    const A: Option<Severity> = Some(Severity::Alarm);
    const N: Option<Severity> = None;
    /// Device time of offset zero (2025-11-28T03:20:00Z).
    const BASE_MS: i64 = 1_764_300_000_000;

    /// Profiles for the generic rule cases; the device-specific cases use the built-in set.
    const TEST_PROFILES: &str = r#"
[profiles.two_level]
stale_after = "100s"
[profiles.two_level.points.temp_c]
kind = "number"
range = [-40.0, 200.0]
stuck_after = "1h"
[[profiles.two_level.rules]]
id = "hot"
kind = "high"
point = "temp_c"
class = "supervisory"
warning = 30.0
alarm = 40.0
deadband = 2.0
[[profiles.two_level.rules]]
id = "cold"
kind = "low"
point = "temp_c"
class = "supervisory"
warning = 5.0
alarm = 0.0
deadband = 1.0

[profiles.delayed.points.temp_c]
kind = "number"
[[profiles.delayed.rules]]
id = "hot"
kind = "high"
point = "temp_c"
class = "supervisory"
alarm = 30.0
deadband = 1.0
on_delay = "60s"
off_delay = "120s"

[profiles.door.points.door_open]
kind = "bool"
[[profiles.door.rules]]
id = "door"
kind = "state"
point = "door_open"
class = "supervisory"
active_when = true
on_delay = "5m"
"#;

    #[derive(Clone, Copy, Debug)]
    enum Input {
        Num(&'static str, f64),
        Bool(&'static str, bool),
        Status(bool),
        Tick,
    }
    use Input::{Bool, Num, Status, Tick};

    struct Case {
        name: &'static str,
        /// `None`: the built-in profiles.
        profiles: Option<&'static str>,
        profile: &'static str,
        /// The device's `overrides` table as in the gateway config (TOML), or "".
        overrides: &'static str,
        /// (seconds after registration, input)
        steps: Vec<(f64, Input)>,
        /// (seconds, rule, severity) of every change, in order.
        expected: Vec<(f64, &'static str, Option<Severity>)>,
    }

    fn reading(point: &str, value: Value, ts_ms: i64) -> Reading {
        Reading {
            sensor: SensorId::new("s1", "d1", point),
            ts_ms,
            value,
            quality: Quality::Good,
            source: Source::Mqtt,
        }
    }

    fn overrides_from(text: &str) -> BTreeMap<String, RuleOverride> {
        #[derive(serde::Deserialize)]
        struct Device {
            #[serde(default)]
            overrides: BTreeMap<String, RuleOverride>,
        }
        toml::from_str::<Device>(text)
            .expect("overrides parse")
            .overrides
    }

    /// Runs a case and returns every change with the time offset of the input that caused it.
    fn run(case: &Case) -> Vec<(f64, ConditionChange)> {
        let profiles = match case.profiles {
            Some(text) => ProfileSet::from_toml(text).expect("test profiles parse"),
            None => ProfileSet::builtin(),
        };
        assert_eq!(profiles.validate(), Vec::<String>::new(), "{}", case.name);
        let mut engine = RuleEngine::new(Arc::new(profiles));
        let key = DeviceKey::new("s1", "d1");
        let start = Instant::now();
        engine
            .register_device(&key, case.profile, &overrides_from(case.overrides), start)
            .expect("profile exists");
        let mut changes = Vec::new();
        let mut out = Vec::new();
        for &(at, input) in &case.steps {
            let now = start + Duration::from_secs_f64(at);
            let now_ms = BASE_MS + (at * 1000.0) as i64;
            match input {
                Num(point, v) => {
                    engine.on_reading(&reading(point, Value::Number(v), now_ms), now, &mut out)
                }
                Bool(point, b) => {
                    engine.on_reading(&reading(point, Value::Bool(b), now_ms), now, &mut out)
                }
                Status(online) => engine.on_status(&key, online, now, now_ms, &mut out),
                Tick => engine.on_tick(now, now_ms, &mut out),
            }
            changes.extend(out.drain(..).map(|c| (at, c)));
        }
        changes
    }

    fn check(case: &Case) {
        let changes = run(case);
        let got: Vec<(f64, &str, Option<Severity>)> = changes
            .iter()
            .map(|(at, c)| (*at, &*c.rule, c.severity))
            .collect();
        assert_eq!(got, case.expected, "case: {}", case.name);
        // Never the same severity twice in a row for one (sensor, rule).
        let mut last: HashMap<(String, String), Option<Severity>> = HashMap::new();
        for (_, c) in &changes {
            let key = (c.sensor.to_string(), c.rule.to_string());
            let previous = last.insert(key, c.severity).unwrap_or(None);
            assert_ne!(previous, c.severity, "case {}: repeated {c:?}", case.name);
        }
    }

    /// A reading every `step` seconds from `from` to `to` (inclusive), value `f(t)`.
    fn series(
        point: &'static str,
        from: f64,
        to: f64,
        step: f64,
        f: impl Fn(f64) -> f64,
    ) -> Vec<(f64, Input)> {
        let mut steps = Vec::new();
        let mut t = from;
        while t <= to + 1e-9 {
            steps.push((t, Num(point, f(t))));
            t += step;
        }
        steps
    }

    fn cases() -> Vec<Case> {
        let test = Some(TEST_PROFILES);
        vec![
            Case {
                name: "two-level high rule with deadband does not chatter around the levels",
                profiles: test,
                profile: "two_level",
                overrides: "",
                steps: vec![
                    (0.0, Num("temp_c", 25.0)),
                    (1.0, Num("temp_c", 30.0)),
                    (2.0, Num("temp_c", 29.5)),
                    (3.0, Num("temp_c", 30.5)),
                    (4.0, Num("temp_c", 28.1)),
                    (5.0, Num("temp_c", 27.9)),
                    (6.0, Num("temp_c", 29.9)),
                    (7.0, Num("temp_c", 40.0)),
                    (8.0, Num("temp_c", 38.5)),
                    (9.0, Num("temp_c", 37.9)),
                    (10.0, Num("temp_c", 41.0)),
                    (11.0, Num("temp_c", 27.0)),
                ],
                expected: vec![
                    (1.0, "hot", W),
                    (5.0, "hot", N),
                    (7.0, "hot", A),
                    (9.0, "hot", W),
                    (10.0, "hot", A),
                    (11.0, "hot", N),
                ],
            },
            Case {
                name: "low rule raises warning then alarm and clears only past level plus deadband",
                profiles: test,
                profile: "two_level",
                overrides: "",
                steps: vec![
                    (0.0, Num("temp_c", 10.0)),
                    (1.0, Num("temp_c", 5.0)),
                    (2.0, Num("temp_c", 5.5)),
                    (3.0, Num("temp_c", 6.1)),
                    (4.0, Num("temp_c", 0.0)),
                    (5.0, Num("temp_c", 0.5)),
                    (6.0, Num("temp_c", 1.5)),
                    (7.0, Num("temp_c", 6.5)),
                ],
                expected: vec![
                    (1.0, "cold", W),
                    (3.0, "cold", N),
                    (4.0, "cold", A),
                    (6.0, "cold", W),
                    (7.0, "cold", N),
                ],
            },
            Case {
                name:
                    "on-delay raises only after the condition held continuously and a dip resets it",
                profiles: test,
                profile: "delayed",
                overrides: "",
                steps: vec![
                    (0.0, Num("temp_c", 31.0)),
                    (30.0, Num("temp_c", 31.0)),
                    (40.0, Num("temp_c", 29.0)),
                    (50.0, Num("temp_c", 31.0)),
                    (100.0, Num("temp_c", 31.0)),
                    (110.0, Num("temp_c", 31.0)),
                    (120.0, Num("temp_c", 32.0)),
                ],
                expected: vec![(110.0, "hot", A)],
            },
            Case {
                name:
                    "on-delay that runs out is raised by a tick while the last value still violates",
                profiles: test,
                profile: "delayed",
                overrides: "",
                steps: vec![
                    (0.0, Num("temp_c", 31.0)),
                    (30.0, Tick),
                    (60.0, Tick),
                    (61.0, Tick),
                    (70.0, Num("temp_c", 31.0)),
                ],
                expected: vec![(60.0, "hot", A)],
            },
            Case {
                name: "a tick does not raise once the last value went back to normal",
                profiles: test,
                profile: "delayed",
                overrides: "",
                steps: vec![
                    (0.0, Num("temp_c", 31.0)),
                    (30.0, Num("temp_c", 20.0)),
                    (60.0, Tick),
                    (600.0, Tick),
                ],
                expected: vec![],
            },
            Case {
                name: "off-delay clears only on a reading after the delay and silence never clears",
                profiles: test,
                profile: "delayed",
                overrides: "",
                steps: vec![
                    (0.0, Num("temp_c", 31.0)),
                    (60.0, Tick),
                    (70.0, Num("temp_c", 28.0)),
                    (150.0, Num("temp_c", 28.0)),
                    (300.0, Tick),
                    (1000.0, Tick),
                    (1010.0, Num("temp_c", 28.0)),
                ],
                expected: vec![(60.0, "hot", A), (1010.0, "hot", N)],
            },
            Case {
                name: "a value back above the level restarts the off-delay",
                profiles: test,
                profile: "delayed",
                overrides: "",
                steps: vec![
                    (0.0, Num("temp_c", 31.0)),
                    (60.0, Num("temp_c", 31.0)),
                    (70.0, Num("temp_c", 28.0)),
                    (100.0, Num("temp_c", 31.0)),
                    (120.0, Num("temp_c", 28.0)),
                    (200.0, Num("temp_c", 28.0)),
                    (240.0, Num("temp_c", 28.0)),
                ],
                expected: vec![(60.0, "hot", A), (240.0, "hot", N)],
            },
            Case {
                name: "rate of rise of 8.3 °C/min raises fire and a slower rise clears it",
                profiles: None,
                profile: "heat_detector",
                overrides: "",
                steps: [
                    series("temp_c", 0.0, 60.0, 10.0, |t| 20.0 + 0.15 * t),
                    series("temp_c", 70.0, 120.0, 10.0, |_| 29.0),
                ]
                .concat(),
                // 9 °C/min once 30 s are covered; at 70 s the last minute rose 7.5 °C.
                expected: vec![
                    (30.0, "heat_rate_of_rise", A),
                    (70.0, "heat_rate_of_rise", N),
                ],
            },
            Case {
                name: "a steady rise of 6 °C/min does not raise rate of rise",
                profiles: None,
                profile: "heat_detector",
                overrides: "",
                steps: series("temp_c", 0.0, 240.0, 5.0, |t| 20.0 + 0.1 * t),
                expected: vec![],
            },
            Case {
                name: "rate of rise is judged only once the samples span half the window",
                profiles: None,
                profile: "heat_detector",
                overrides: "",
                steps: vec![
                    (0.0, Num("temp_c", 20.0)),
                    (10.0, Num("temp_c", 30.0)),
                    (20.0, Num("temp_c", 30.0)),
                    (30.0, Num("temp_c", 30.0)),
                ],
                expected: vec![(30.0, "heat_rate_of_rise", A)],
            },
            Case {
                name: "fixed heat 57 °C raises fire with warning at 50 °C",
                profiles: None,
                profile: "heat_detector",
                overrides: "",
                steps: vec![
                    (0.0, Num("temp_c", 49.0)),
                    (60.0, Num("temp_c", 50.0)),
                    (120.0, Num("temp_c", 57.0)),
                    (180.0, Num("temp_c", 56.0)),
                    (240.0, Num("temp_c", 54.9)),
                ],
                expected: vec![
                    (60.0, "heat_fixed", W),
                    (120.0, "heat_fixed", A),
                    (240.0, "heat_fixed", W),
                ],
            },
            Case {
                name: "door open for 5 min raises and a close in between resets the timer",
                profiles: test,
                profile: "door",
                overrides: "",
                steps: vec![
                    (0.0, Bool("door_open", true)),
                    (200.0, Tick),
                    (250.0, Bool("door_open", false)),
                    (260.0, Bool("door_open", true)),
                    (500.0, Tick),
                    (560.0, Tick),
                    (570.0, Bool("door_open", true)),
                    (600.0, Bool("door_open", false)),
                ],
                expected: vec![(560.0, "door", A), (600.0, "door", N)],
            },
            Case {
                name: "a 0/1 number on a bool point is read as a boolean",
                profiles: test,
                profile: "door",
                overrides: "",
                steps: vec![
                    (0.0, Num("door_open", 1.0)),
                    (300.0, Num("door_open", 1.0)),
                    (310.0, Num("door_open", 0.0)),
                ],
                expected: vec![(300.0, "door", A), (310.0, "door", N)],
            },
            Case {
                name: "smoke true raises fire at once",
                profiles: None,
                profile: "smoke_detector",
                overrides: "",
                steps: vec![
                    (0.0, Bool("smoke", false)),
                    (1.0, Bool("smoke", true)),
                    (2.0, Bool("smoke", true)),
                    (3.0, Bool("smoke", false)),
                ],
                expected: vec![(1.0, "smoke", A), (3.0, "smoke", N)],
            },
            Case {
                name: "a smoke detector silent for 100 s goes stale and its next reading clears it",
                profiles: None,
                profile: "smoke_detector",
                overrides: "",
                steps: vec![
                    (0.0, Bool("smoke", false)),
                    (50.0, Tick),
                    (99.0, Tick),
                    (100.0, Tick),
                    (150.0, Tick),
                    (160.0, Num("battery_pct", 90.0)),
                    (200.0, Tick),
                ],
                expected: vec![(100.0, "stale", A), (160.0, "stale", N)],
            },
            Case {
                name: "a device never heard goes stale counted from its registration",
                profiles: None,
                profile: "heat_detector",
                overrides: "",
                steps: vec![(99.0, Tick), (100.0, Tick)],
                expected: vec![(100.0, "stale", A)],
            },
            Case {
                name: "offline raises a fault once and online clears it",
                profiles: None,
                profile: "heat_detector",
                overrides: "",
                steps: vec![
                    (0.0, Status(false)),
                    (1.0, Status(false)),
                    (200.0, Tick),
                    (300.0, Status(true)),
                    (301.0, Status(true)),
                ],
                expected: vec![(0.0, "offline", A), (300.0, "offline", N)],
            },
            Case {
                name: "an out-of-range value is a sensor fault and never a fire",
                profiles: None,
                profile: "heat_detector",
                overrides: "",
                steps: vec![
                    (0.0, Num("temp_c", 25.0)),
                    (10.0, Num("temp_c", 999.0)),
                    (20.0, Num("temp_c", -273.0)),
                    (30.0, Num("temp_c", 25.0)),
                ],
                expected: vec![(10.0, "temp_c_range", A), (30.0, "temp_c_range", N)],
            },
            Case {
                name: "a device override changes the threshold",
                profiles: None,
                profile: "heat_detector",
                overrides: "overrides.heat_fixed = { warning = 40.0, alarm = 45.0 }",
                steps: vec![
                    (0.0, Num("temp_c", 25.0)),
                    (100.0, Num("temp_c", 41.0)),
                    (200.0, Num("temp_c", 46.0)),
                ],
                expected: vec![(100.0, "heat_fixed", W), (200.0, "heat_fixed", A)],
            },
            Case {
                name: "enabled = false switches a rule off and leaves the others",
                profiles: None,
                profile: "heat_detector",
                overrides: "overrides.heat_rate_of_rise = { enabled = false }",
                steps: series("temp_c", 0.0, 40.0, 10.0, |t| 20.0 + t),
                expected: vec![(30.0, "heat_fixed", W), (40.0, "heat_fixed", A)],
            },
            Case {
                name: "a value unchanged for stuck_after is a stuck-sensor fault",
                profiles: test,
                profile: "two_level",
                overrides: "",
                steps: vec![
                    (0.0, Num("temp_c", 20.0)),
                    (1800.0, Num("temp_c", 20.0)),
                    (3600.0, Num("temp_c", 20.0)),
                    (3660.0, Num("temp_c", 20.0)),
                    (3700.0, Num("temp_c", 20.5)),
                ],
                expected: vec![(3600.0, "temp_c_stuck", A), (3700.0, "temp_c_stuck", N)],
            },
            Case {
                name: "chem cabinet fan off for a minute raises ventilation supervisory",
                profiles: None,
                profile: "chem_cabinet",
                overrides: "",
                steps: vec![
                    (0.0, Bool("fan_on", false)),
                    (30.0, Bool("fan_on", true)),
                    (40.0, Bool("fan_on", false)),
                    (100.0, Tick),
                    (130.0, Bool("fan_on", true)),
                ],
                expected: vec![(100.0, "fan_off", A), (130.0, "fan_off", N)],
            },
            Case {
                name: "flammable gas raises warning at 10 %LEL and alarm at 25 %LEL",
                profiles: None,
                profile: "chem_cabinet",
                overrides: "",
                steps: vec![
                    (0.0, Num("lel_pct", 0.0)),
                    (10.0, Num("lel_pct", 10.0)),
                    (20.0, Num("lel_pct", 26.0)),
                    (30.0, Num("lel_pct", 7.0)),
                ],
                expected: vec![
                    (10.0, "lel_high", W),
                    (20.0, "lel_high", A),
                    (30.0, "lel_high", N),
                ],
            },
        ]
    }

    #[test]
    fn rule_cases_produce_exactly_the_expected_changes() {
        for case in cases() {
            check(&case);
        }
    }

    #[test]
    fn a_fire_change_carries_class_threshold_value_timestamp_and_message() {
        let case = Case {
            name: "fire change fields",
            profiles: None,
            profile: "heat_detector",
            overrides: "",
            steps: vec![(0.0, Num("temp_c", 61.2))],
            expected: vec![],
        };
        let changes = run(&case);
        let (_, fire) = changes
            .iter()
            .find(|(_, c)| &*c.rule == "heat_fixed")
            .expect("fire raised");
        assert_eq!(fire.sensor, SensorId::new("s1", "d1", "temp_c"));
        assert_eq!(fire.class, AlarmClass::Fire);
        assert_eq!(fire.severity, A);
        assert_eq!(fire.threshold, Some(57.0));
        assert_eq!(fire.value, Some(Value::Number(61.2)));
        assert_eq!(fire.reading_ts_ms, BASE_MS);
        assert_eq!(fire.message, "temp_c 61.2 ≥ 57 (alarm)");
    }

    #[test]
    fn device_faults_are_on_the_status_sensor_with_gateway_time() {
        let case = Case {
            name: "status faults",
            profiles: None,
            profile: "smoke_detector",
            overrides: "",
            steps: vec![(100.0, Tick), (101.0, Status(false))],
            expected: vec![],
        };
        let changes = run(&case);
        assert_eq!(changes.len(), 2, "{changes:#?}");
        for (at, c) in &changes {
            assert_eq!(c.sensor, SensorId::new("s1", "d1", "status"));
            assert_eq!(c.class, AlarmClass::Fault);
            assert_eq!(c.value, None);
            assert_eq!(c.reading_ts_ms, BASE_MS + (*at * 1000.0) as i64);
        }
        assert_eq!(&*changes[0].1.rule, "stale");
        assert_eq!(&*changes[1].1.rule, "offline");
    }

    #[test]
    fn an_offline_device_does_not_also_go_stale() {
        let case = Case {
            name: "offline suppresses stale",
            profiles: None,
            profile: "heat_detector",
            overrides: "",
            steps: vec![(0.0, Status(false)), (500.0, Tick)],
            expected: vec![(0.0, "offline", A)],
        };
        check(&case);
    }

    fn engine_with(profile: &str) -> (RuleEngine, DeviceKey, Instant) {
        let mut engine = RuleEngine::new(Arc::new(ProfileSet::builtin()));
        let key = DeviceKey::new("s1", "d1");
        let start = Instant::now();
        engine
            .register_device(&key, profile, &BTreeMap::new(), start)
            .expect("profile exists");
        (engine, key, start)
    }

    #[test]
    fn check_point_tells_known_unknown_points_and_unregistered_devices() {
        let (mut engine, key, start) = engine_with("chem_cabinet");
        assert_eq!(engine.check_point(&key, "voc_ppm"), PointCheck::Known);
        assert_eq!(
            engine.check_point(&key, "co2_ppm"),
            PointCheck::UnknownPoint
        );
        assert_eq!(engine.check_point(&key, "status"), PointCheck::UnknownPoint);
        let stranger = DeviceKey::new("s1", "nobody");
        assert_eq!(
            engine.check_point(&stranger, "temp_c"),
            PointCheck::UnregisteredDevice
        );
        assert_eq!(engine.point_kind(&key, "fan_on"), Some(PointKind::Bool));
        assert_eq!(engine.device_profile(&key), Some("chem_cabinet"));

        let mut out = Vec::new();
        let unknown = Reading {
            sensor: SensorId::new("s1", "d1", "co2_ppm"),
            ..reading("x", Value::Number(5000.0), BASE_MS)
        };
        engine.on_reading(&unknown, start, &mut out);
        let stray = Reading {
            sensor: SensorId::new("s1", "nobody", "temp_c"),
            ..reading("x", Value::Number(90.0), BASE_MS)
        };
        engine.on_reading(&stray, start, &mut out);
        engine.on_status(&stranger, false, start, BASE_MS, &mut out);
        engine.on_reading(
            &reading("fan_on", Value::Number(7.0), BASE_MS),
            start,
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        let stats = engine.stats();
        assert_eq!(stats.readings_unknown_point, 1);
        assert_eq!(stats.readings_unregistered, 1);
        assert_eq!(stats.readings_wrong_type, 1);
        assert_eq!(
            engine.register_device(&key, "toaster", &BTreeMap::new(), start),
            Err(UnknownProfile("toaster".into()))
        );
    }

    #[test]
    fn condition_active_follows_the_emitted_conditions() {
        let (mut engine, key, start) = engine_with("heat_detector");
        let sensor = SensorId::new("s1", "d1", "temp_c");
        let status = SensorId::device_status(&key.school, &key.device);
        let mut out = Vec::new();
        engine.on_reading(
            &reading("temp_c", Value::Number(60.0), BASE_MS),
            start,
            &mut out,
        );
        assert!(engine.condition_active(&sensor, "heat_fixed"));
        assert!(!engine.condition_active(&sensor, "heat_rate_of_rise"));
        engine.on_reading(
            &reading("temp_c", Value::Number(900.0), BASE_MS + 1000),
            start,
            &mut out,
        );
        assert!(engine.condition_active(&sensor, "temp_c_range"));
        assert!(
            engine.condition_active(&sensor, "heat_fixed"),
            "a fault does not clear fire"
        );
        engine.on_reading(
            &reading("temp_c", Value::Number(20.0), BASE_MS + 2000),
            start,
            &mut out,
        );
        assert!(!engine.condition_active(&sensor, "heat_fixed"));
        assert!(!engine.condition_active(&sensor, "temp_c_range"));
        engine.on_status(&key, false, start, BASE_MS, &mut out);
        assert!(engine.condition_active(&status, "offline"));
        assert!(!engine.condition_active(&status, "stale"));
        assert!(!engine.condition_active(&SensorId::new("s1", "x", "temp_c"), "heat_fixed"));
    }

    #[test]
    fn re_registering_with_an_override_keeps_the_active_condition_and_uses_new_numbers() {
        let (mut engine, key, start) = engine_with("heat_detector");
        let sensor = SensorId::new("s1", "d1", "temp_c");
        let mut out = Vec::new();
        engine.on_reading(
            &reading("temp_c", Value::Number(52.0), BASE_MS),
            start,
            &mut out,
        );
        assert_eq!(out.len(), 1);
        // Same profile, same overrides: nothing changes.
        engine
            .register_device(&key, "heat_detector", &BTreeMap::new(), start)
            .expect("registers");
        assert!(engine.condition_active(&sensor, "heat_fixed"));
        engine
            .register_device(
                &key,
                "heat_detector",
                &overrides_from("overrides.heat_fixed = { alarm = 51.0 }"),
                start,
            )
            .expect("registers");
        assert!(engine.condition_active(&sensor, "heat_fixed"));
        out.clear();
        engine.on_reading(
            &reading("temp_c", Value::Number(52.0), BASE_MS + 1000),
            start,
            &mut out,
        );
        // The override made warning (50) < alarm (51) valid: 52 is now an alarm.
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].severity, A);
        assert_eq!(engine.device_count(), 1);
    }

    #[test]
    fn re_registering_without_a_rule_clears_its_active_condition() {
        let (mut engine, key, start) = engine_with("heat_detector");
        let mut out = Vec::new();
        engine.on_reading(
            &reading("temp_c", Value::Number(58.0), BASE_MS),
            start,
            &mut out,
        );
        engine.on_reading(
            &reading("temp_c", Value::Number(999.0), BASE_MS + 1),
            start,
            &mut out,
        );
        out.clear();
        engine
            .register_device_emitting(
                &key,
                "heat_detector",
                &overrides_from("overrides.heat_fixed = { enabled = false }"),
                start,
                BASE_MS + 5,
                &mut out,
            )
            .expect("registers");
        let got: Vec<(&str, Option<Severity>)> =
            out.iter().map(|c| (&*c.rule, c.severity)).collect();
        assert_eq!(
            got,
            vec![("heat_fixed", N)],
            "the range fault is carried over"
        );
        assert_eq!(out[0].class, AlarmClass::Fire);
        assert!(engine.condition_active(&SensorId::new("s1", "d1", "temp_c"), "temp_c_range"));
        out.clear();
        engine
            .register_device_emitting(
                &key,
                "server_room",
                &BTreeMap::new(),
                start,
                BASE_MS,
                &mut out,
            )
            .expect("registers");
        assert!(out.is_empty(), "temp_c keeps its range fault: {out:?}");
        engine
            .register_device_emitting(
                &key,
                "smoke_detector",
                &BTreeMap::new(),
                start,
                BASE_MS,
                &mut out,
            )
            .expect("registers");
        let got: Vec<(&str, Option<Severity>)> =
            out.iter().map(|c| (&*c.rule, c.severity)).collect();
        assert_eq!(got, vec![("temp_c_range", N)]);
    }

    #[test]
    fn an_invalid_override_is_ignored_not_applied() {
        let (mut engine, key, start) = engine_with("heat_detector");
        engine
            .register_device(
                &key,
                "heat_detector",
                &overrides_from("overrides.heat_fixed = { alarm = 45.0 }"),
                start,
            )
            .expect("registers");
        let mut out = Vec::new();
        engine.on_reading(
            &reading("temp_c", Value::Number(46.0), BASE_MS),
            start,
            &mut out,
        );
        assert!(
            out.is_empty(),
            "warning 50 ≥ alarm 45 must not be applied: {out:?}"
        );
    }

    #[test]
    fn rate_samples_stay_bounded_under_a_fast_sensor() {
        let (mut engine, _key, start) = engine_with("heat_detector");
        let mut out = Vec::new();
        for i in 0..10_000i64 {
            engine.on_reading(
                &reading("temp_c", Value::Number(20.0), BASE_MS + i * 10),
                start,
                &mut out,
            );
        }
        let device = &engine.devices[0];
        let rule = device.points[0]
            .rules
            .iter()
            .find(|r| &*r.id == "heat_rate_of_rise")
            .expect("rule");
        assert!(rule.samples.len() <= RATE_SAMPLES_CAP);
        assert!(rule.samples.capacity() <= 2 * RATE_SAMPLES_CAP);
        assert!(out.is_empty());
    }
}

//! Device models: the normal values of one simulated device (a per-device mean, a slow drift
//! and seeded noise per point) and their encoding as device protocol v1 payloads. The
//! simulation ([`crate::sim`]) samples a model once per publish interval, lets active scenarios
//! ([`crate::scenario`]) override points, and hands the encoded payloads to the publisher.
//!
//! Models are pure: time comes in as the elapsed simulated time, randomness from the caller's
//! seeded RNG, so tests drive them with a simulated clock.

use std::f64::consts::TAU;
use std::fmt::Write as _;
use std::time::Duration;

use rand::Rng;

use crate::campus::{PointKind, Profile};

/// One point's value as sent on the wire.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PointValue {
    Number(f64),
    Bool(bool),
}

impl PointValue {
    pub fn as_f64(self) -> Option<f64> {
        match self {
            PointValue::Number(v) => Some(v),
            PointValue::Bool(_) => None,
        }
    }

    pub fn as_bool(self) -> Option<bool> {
        match self {
            PointValue::Bool(b) => Some(b),
            PointValue::Number(_) => None,
        }
    }

    /// The JSON token: a finite number or `true`/`false`. Non-finite numbers cannot occur in a
    /// model (values are clamped) but would be sent as `0` rather than invalid JSON.
    pub fn to_json(self) -> String {
        match self {
            PointValue::Bool(b) => b.to_string(),
            PointValue::Number(v) => serde_json::Number::from_f64(v)
                .map(|n| n.to_string())
                .unwrap_or_else(|| "0".to_owned()),
        }
    }
}

/// The values of one device at one time, in profile point order.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub points: Vec<(&'static str, PointValue)>,
}

impl Sample {
    pub fn get(&self, point: &str) -> Option<PointValue> {
        self.points
            .iter()
            .find(|(name, _)| *name == point)
            .map(|(_, v)| *v)
    }

    /// Replaces a point's value; a point the profile does not have is ignored, so a scenario
    /// never invents points.
    pub fn set(&mut self, point: &str, value: PointValue) {
        if let Some(slot) = self.points.iter_mut().find(|(name, _)| *name == point) {
            slot.1 = value;
        }
    }

    pub fn number(&self, point: &str) -> Option<f64> {
        self.get(point).and_then(PointValue::as_f64)
    }

    /// The telemetry JSON object of protocol v1: `"ts"` (Unix ms) first when given, then one
    /// member per point.
    pub fn to_json(&self, ts_ms: Option<i64>) -> String {
        let mut out = String::with_capacity(32 + self.points.len() * 24);
        out.push('{');
        let mut first = true;
        if let Some(ts) = ts_ms {
            // Writing to a String cannot fail.
            let _ = write!(out, "\"ts\":{ts}");
            first = false;
        }
        for (name, value) in &self.points {
            if !first {
                out.push(',');
            }
            first = false;
            let _ = write!(out, "\"{name}\":{}", value.to_json());
        }
        out.push('}');
        out
    }
}

/// The normal behaviour of one numeric point.
#[derive(Clone, Debug)]
struct Signal {
    mean: f64,
    drift_amplitude: f64,
    drift_period_s: f64,
    drift_phase: f64,
    noise_sd: f64,
    decimals: i32,
    min: f64,
    max: f64,
}

impl Signal {
    /// `mean` is drawn from `mean_range` per device so devices differ.
    #[allow(clippy::too_many_arguments)]
    fn new(
        rng: &mut impl Rng,
        mean_range: (f64, f64),
        drift_amplitude: f64,
        noise_sd: f64,
        decimals: i32,
        min: f64,
        max: f64,
    ) -> Self {
        let (lo, hi) = mean_range;
        Self {
            mean: if hi > lo { rng.gen_range(lo..hi) } else { lo },
            drift_amplitude,
            drift_period_s: rng.gen_range(600.0..1800.0),
            drift_phase: rng.gen_range(0.0..TAU),
            noise_sd,
            decimals,
            min,
            max,
        }
    }

    fn value_at(&self, elapsed: Duration, rng: &mut impl Rng) -> f64 {
        let t = elapsed.as_secs_f64();
        let drift = self.drift_amplitude * (TAU * t / self.drift_period_s + self.drift_phase).sin();
        let v = self.mean + drift + gaussian(rng) * self.noise_sd;
        round_to(v.clamp(self.min, self.max), self.decimals)
    }
}

/// Approximately standard-normal noise (sum of three uniforms: bounded, cheap, good enough
/// for sensor noise).
pub(crate) fn gaussian(rng: &mut impl Rng) -> f64 {
    (rng.gen::<f64>() + rng.gen::<f64>() + rng.gen::<f64>() - 1.5) * 2.0
}

/// Rounds to a fixed number of decimals, as a sensor's resolution would.
pub(crate) fn round_to(v: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (v * scale).round() / scale
}

/// The model of one device: a signal per numeric point and the normal state of boolean points.
#[derive(Clone, Debug)]
pub struct DeviceModel {
    profile: Profile,
    signals: Vec<(&'static str, Signal)>,
}

impl DeviceModel {
    /// A model with normal values well inside the default thresholds: rooms ~22–26 °C, server
    /// room ~22 °C, fridge ~4 °C, cabinets ~22 °C with VOC ~0.5 ppm, LEL 0–2 %, fan on, airflow
    /// ~0.5 m/s, doors closed, no smoke, battery ~90 %.
    pub fn new(profile: Profile, rng: &mut impl Rng) -> Self {
        let mut signals = Vec::new();
        for point in profile.points() {
            if point.kind != PointKind::Number {
                continue;
            }
            let signal = match (profile, point.name) {
                (Profile::SmokeDetector, "obscuration_db_m") => {
                    Signal::new(rng, (0.01, 0.03), 0.005, 0.003, 3, 0.0, 0.05)
                }
                (Profile::SmokeDetector, "battery_pct") => {
                    Signal::new(rng, (86.0, 95.0), 0.5, 0.2, 0, 80.0, 100.0)
                }
                (Profile::ServerRoom, "temp_c") => {
                    Signal::new(rng, (21.5, 22.5), 0.6, 0.1, 1, 19.0, 25.0)
                }
                (Profile::ServerRoom, "rh_pct") => {
                    Signal::new(rng, (45.0, 50.0), 2.0, 0.3, 1, 35.0, 60.0)
                }
                (Profile::ColdStorage, "temp_c") => {
                    Signal::new(rng, (3.5, 4.5), 0.6, 0.1, 1, 1.5, 6.5)
                }
                (Profile::ChemCabinet, "temp_c") => {
                    Signal::new(rng, (21.5, 22.5), 0.5, 0.1, 1, 18.0, 26.0)
                }
                (Profile::ChemCabinet, "rh_pct") => {
                    Signal::new(rng, (40.0, 48.0), 2.0, 0.3, 1, 30.0, 60.0)
                }
                (Profile::ChemCabinet, "voc_ppm") => {
                    Signal::new(rng, (0.4, 0.6), 0.1, 0.03, 2, 0.1, 1.0)
                }
                (Profile::ChemCabinet, "lel_pct") => {
                    Signal::new(rng, (0.5, 1.2), 0.3, 0.1, 1, 0.0, 2.0)
                }
                (Profile::ChemCabinet, "airflow_mps") => {
                    Signal::new(rng, (0.45, 0.55), 0.03, 0.02, 2, 0.35, 0.65)
                }
                (_, "temp_c") => Signal::new(rng, (23.0, 25.0), 1.0, 0.1, 1, 21.0, 27.0),
                (_, "rh_pct") => Signal::new(rng, (40.0, 55.0), 3.0, 0.4, 1, 30.0, 70.0),
                // A point without a tuned signal still gets a plausible, bounded value.
                _ => Signal::new(rng, (1.0, 1.0), 0.0, 0.0, 2, 0.0, 2.0),
            };
            signals.push((point.name, signal));
        }
        Self { profile, signals }
    }

    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The normal values at `elapsed` simulated time.
    pub fn sample(&self, elapsed: Duration, rng: &mut impl Rng) -> Sample {
        let points = self
            .profile
            .points()
            .iter()
            .map(|spec| {
                let value = match spec.kind {
                    PointKind::Bool => PointValue::Bool(normal_bool(spec.name)),
                    PointKind::Number => {
                        let v = self
                            .signals
                            .iter()
                            .find(|(name, _)| *name == spec.name)
                            .map(|(_, s)| s.value_at(elapsed, rng))
                            .unwrap_or(0.0);
                        PointValue::Number(v)
                    }
                };
                (spec.name, value)
            })
            .collect();
        Sample { points }
    }
}

/// The normal state of a boolean point: the fan runs, everything else is off/closed.
fn normal_bool(point: &str) -> bool {
    point == "fan_on"
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn samples_have_exactly_the_profile_points_in_order() {
        let mut rng = StdRng::seed_from_u64(7);
        for profile in Profile::ALL {
            let model = DeviceModel::new(profile, &mut rng);
            let sample = model.sample(Duration::from_secs(5), &mut rng);
            let names: Vec<_> = sample.points.iter().map(|(n, _)| *n).collect();
            let expected: Vec<_> = profile.points().iter().map(|p| p.name).collect();
            assert_eq!(names, expected);
            for ((_, value), spec) in sample.points.iter().zip(profile.points()) {
                match spec.kind {
                    PointKind::Bool => assert!(value.as_bool().is_some()),
                    PointKind::Number => assert!(value.as_f64().is_some_and(f64::is_finite)),
                }
            }
        }
    }

    #[test]
    fn normal_values_stay_well_inside_default_thresholds_for_an_hour() {
        let mut rng = StdRng::seed_from_u64(42);
        for profile in Profile::ALL {
            let model = DeviceModel::new(profile, &mut rng);
            for s in (0..3600).step_by(7) {
                let sample = model.sample(Duration::from_secs(s), &mut rng);
                let temp = sample.number("temp_c");
                match profile {
                    Profile::ColdStorage => assert!(temp.is_some_and(|t| (0.0..8.0).contains(&t))),
                    Profile::ServerRoom => assert!(temp.is_some_and(|t| (18.0..27.0).contains(&t))),
                    Profile::HeatDetector | Profile::RoomTemperature | Profile::ChemCabinet => {
                        assert!(temp.is_some_and(|t| t < 30.0));
                    }
                    Profile::SmokeDetector => {
                        assert_eq!(sample.get("smoke"), Some(PointValue::Bool(false)));
                        assert!(sample.number("battery_pct").is_some_and(|b| b >= 80.0));
                    }
                }
                if profile == Profile::ChemCabinet {
                    assert_eq!(sample.get("fan_on"), Some(PointValue::Bool(true)));
                    assert_eq!(sample.get("door_open"), Some(PointValue::Bool(false)));
                    assert!(sample.number("lel_pct").is_some_and(|l| l <= 2.0));
                    assert!(sample.number("voc_ppm").is_some_and(|v| v < 1.0));
                    assert!(sample.number("airflow_mps").is_some_and(|a| a > 0.3));
                }
            }
        }
    }

    #[test]
    fn telemetry_json_has_ts_first_and_one_member_per_point() {
        let sample = Sample {
            points: vec![
                ("temp_c", PointValue::Number(24.5)),
                ("fan_on", PointValue::Bool(true)),
            ],
        };
        assert_eq!(
            sample.to_json(Some(1_764_300_000_000)),
            r#"{"ts":1764300000000,"temp_c":24.5,"fan_on":true}"#
        );
        assert_eq!(sample.to_json(None), r#"{"temp_c":24.5,"fan_on":true}"#);
    }
}

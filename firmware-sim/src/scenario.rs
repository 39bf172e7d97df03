//! Named scenarios (fire, cabinet overheat, ventilation failure, device offline, garbage
//! payloads), their schedule, and the value overrides they apply to device samples. The
//! simulation ([`crate::sim`]) resolves each [`ScheduledScenario`] against the campus, starts it
//! `after` the simulator came up, applies these overrides while it runs, and reverts to normal
//! values when its duration is over so the gateway sees the condition clear.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::Rng;

use crate::campus::{Campus, Profile};
use crate::device::{gaussian, round_to, PointValue, Sample};

/// A named scenario; the names are the CLI and config spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// One classroom burns: heat rises ~20 °C/min from ~25 °C past 70 °C, then the smoke
    /// detector of the same room reports smoke.
    Fire,
    /// A chemical cabinet's temperature rises past 40 °C (VOC follows a little).
    CabinetOverheat,
    /// A chemical cabinet's fan stops: `fan_on=false`, airflow ~0, VOC and LEL creep up.
    VentilationFailure,
    /// A device publishes `offline` on its status and stops; another fire detector goes silent
    /// without a word. Both come back when the scenario ends.
    DeviceOffline,
    /// Malformed payloads on a device's telemetry topics.
    Garbage,
}

impl Scenario {
    pub const ALL: [Scenario; 5] = [
        Scenario::Fire,
        Scenario::CabinetOverheat,
        Scenario::VentilationFailure,
        Scenario::DeviceOffline,
        Scenario::Garbage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Fire => "fire",
            Scenario::CabinetOverheat => "cabinet-overheat",
            Scenario::VentilationFailure => "ventilation-failure",
            Scenario::DeviceOffline => "device-offline",
            Scenario::Garbage => "garbage",
        }
    }

    /// One line for `campusguard-sim list`.
    pub fn description(self) -> &'static str {
        match self {
            Scenario::Fire => {
                "classroom fire: heat rises ~20 °C/min from 25 °C past 70 °C, then smoke=true in the same room"
            }
            Scenario::CabinetOverheat => "chemical cabinet temp_c rises ~10 °C/min past 40 °C",
            Scenario::VentilationFailure => {
                "chemical cabinet fan_on=false, airflow ~0, VOC and LEL creep up"
            }
            Scenario::DeviceOffline => {
                "a device publishes status offline and stops; another fire detector goes silent"
            }
            Scenario::Garbage => {
                "malformed payloads on telemetry topics (truncated, binary, NaN, strings, nested, 1 MiB, unknown points, empty, bad single-point)"
            }
        }
    }

    /// How long the scenario runs before values revert to normal.
    pub fn default_duration(self) -> Duration {
        match self {
            // Long enough to rise from 25 °C past 70 °C at 20 °C/min and hold a little.
            Scenario::Fire => Duration::from_secs(180),
            Scenario::CabinetOverheat => Duration::from_secs(180),
            Scenario::VentilationFailure => Duration::from_secs(120),
            // Longer than the 100 s after which a silent fire detector is a fault (GB 50166).
            Scenario::DeviceOffline => Duration::from_secs(150),
            Scenario::Garbage => Duration::from_secs(30),
        }
    }

    /// Whether a device of this profile can be the scenario's target.
    pub fn accepts_target(self, profile: Profile) -> bool {
        match self {
            Scenario::Fire => profile.is_fire_detector() || profile == Profile::RoomTemperature,
            Scenario::CabinetOverheat | Scenario::VentilationFailure => {
                profile == Profile::ChemCabinet
            }
            Scenario::DeviceOffline | Scenario::Garbage => true,
        }
    }

    /// The target used when none is given: the first suitable device of the campus (for a fire,
    /// the first heat detector, so the classroom has both detectors).
    pub fn default_target(self, campus: &Campus) -> Option<usize> {
        let preferred = match self {
            Scenario::Fire => Some(Profile::HeatDetector),
            Scenario::CabinetOverheat | Scenario::VentilationFailure => Some(Profile::ChemCabinet),
            Scenario::DeviceOffline => Some(Profile::SmokeDetector),
            Scenario::Garbage => None,
        };
        match preferred {
            Some(profile) => campus.devices.iter().position(|d| d.profile == profile),
            None => (!campus.devices.is_empty()).then_some(0),
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scenario name that is not one of [`Scenario::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scenario `{0}` (expected one of fire, cabinet-overheat, ventilation-failure, device-offline, garbage)")]
pub struct UnknownScenario(pub String);

impl FromStr for Scenario {
    type Err = UnknownScenario;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scenario::ALL
            .into_iter()
            .find(|sc| sc.as_str() == s)
            .ok_or_else(|| UnknownScenario(s.to_owned()))
    }
}

/// A scenario to start `after` the simulator connected, on `target` (`school/device` or a bare
/// device id; `None` picks [`Scenario::default_target`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledScenario {
    pub after: Duration,
    pub scenario: Scenario,
    pub target: Option<String>,
}

impl ScheduledScenario {
    /// The schedule of the gateway's `demo` (the one place it is defined): something to see
    /// within a minute — garbage at 5 s, a classroom fire at 10 s, a device going offline at
    /// 15 s, a ventilation failure at 20 s and a cabinet overheating at 30 s — each on a
    /// different device of the demo campus.
    pub fn demo_schedule() -> Vec<ScheduledScenario> {
        let at = |secs, scenario, target: &str| ScheduledScenario {
            after: Duration::from_secs(secs),
            scenario,
            target: Some(target.to_owned()),
        };
        vec![
            at(5, Scenario::Garbage, "syxx/temp-lib"),
            // Heat rising 20 °C/min: the rate-of-rise rule fires about 30 s later, the fixed
            // 57 °C level and smoke follow.
            at(10, Scenario::Fire, "xhsy/heat-a201"),
            at(15, Scenario::DeviceOffline, "syxx/smoke-a102"),
            at(20, Scenario::VentilationFailure, "xhsy/cab-2"),
            at(30, Scenario::CabinetOverheat, "dfzx/cab-1"),
        ]
    }
}

/// Fire: start temperature and rise rate of the burning room.
pub const FIRE_START_C: f64 = 25.0;
pub const FIRE_RISE_C_PER_MIN: f64 = 20.0;
/// Fire: the hottest a heat detector reports before the scenario ends.
pub const FIRE_PEAK_C: f64 = 90.0;
/// Fire: smoke is reported once the room is this hot (just past the 57 °C fixed heat level).
pub const FIRE_SMOKE_AT_C: f64 = 60.0;
/// Cabinet overheat: rise rate and the hottest value.
pub const OVERHEAT_RISE_C_PER_MIN: f64 = 10.0;
pub const OVERHEAT_PEAK_C: f64 = 55.0;

/// Seconds into the fire at which smoke is reported.
pub fn fire_smoke_after() -> Duration {
    Duration::from_secs_f64((FIRE_SMOKE_AT_C - FIRE_START_C) / FIRE_RISE_C_PER_MIN * 60.0)
}

fn fire_temperature(t: f64) -> f64 {
    (FIRE_START_C + FIRE_RISE_C_PER_MIN / 60.0 * t).min(FIRE_PEAK_C)
}

/// Applies a running value scenario to the sample of an affected device, `t` into the scenario.
/// Scenarios without value effects (offline, garbage) leave the sample alone.
pub(crate) fn apply(
    scenario: Scenario,
    profile: Profile,
    t: Duration,
    sample: &mut Sample,
    rng: &mut impl Rng,
) {
    let t = t.as_secs_f64();
    match scenario {
        Scenario::Fire => {
            let heat = fire_temperature(t);
            if let Some(normal) = sample.number("temp_c") {
                let hot = round_to(normal.max(heat + gaussian(rng) * 0.3), 1);
                sample.set("temp_c", PointValue::Number(hot));
            }
            if profile == Profile::SmokeDetector {
                let smoky = heat >= FIRE_SMOKE_AT_C;
                // Obscuration starts to climb half a minute in and keeps rising.
                let obscuration = (0.02 + 0.02 * (t - 30.0).max(0.0)).min(4.0);
                sample.set(
                    "obscuration_db_m",
                    PointValue::Number(round_to(obscuration, 3)),
                );
                sample.set("smoke", PointValue::Bool(smoky));
            }
        }
        Scenario::CabinetOverheat => {
            if let Some(normal) = sample.number("temp_c") {
                let temp = (normal + OVERHEAT_RISE_C_PER_MIN / 60.0 * t).min(OVERHEAT_PEAK_C);
                sample.set("temp_c", PointValue::Number(round_to(temp, 1)));
                if let Some(voc) = sample.number("voc_ppm") {
                    // Warmer solvents evaporate more.
                    let more = voc + 0.05 * (temp - normal).max(0.0);
                    sample.set("voc_ppm", PointValue::Number(round_to(more, 2)));
                }
            }
        }
        Scenario::VentilationFailure => {
            sample.set("fan_on", PointValue::Bool(false));
            let airflow = (gaussian(rng) * 0.01).abs();
            sample.set("airflow_mps", PointValue::Number(round_to(airflow, 2)));
            if let Some(voc) = sample.number("voc_ppm") {
                sample.set("voc_ppm", PointValue::Number(round_to(voc + 0.02 * t, 2)));
            }
            if let Some(lel) = sample.number("lel_pct") {
                sample.set("lel_pct", PointValue::Number(round_to(lel + 0.01 * t, 1)));
            }
        }
        Scenario::DeviceOffline | Scenario::Garbage => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_names_round_trip_through_display_and_from_str() {
        for scenario in Scenario::ALL {
            assert_eq!(scenario.to_string().parse::<Scenario>(), Ok(scenario));
        }
        assert_eq!(
            "cabinet-overheat".parse::<Scenario>(),
            Ok(Scenario::CabinetOverheat)
        );
        assert!("flood".parse::<Scenario>().is_err());
    }

    #[test]
    fn every_scenario_has_a_default_target_in_the_demo_campus() {
        let campus = Campus::demo();
        for scenario in Scenario::ALL {
            let target = scenario.default_target(&campus);
            let target = target.map(|i| campus.devices[i].profile);
            assert!(
                target.is_some_and(|p| scenario.accepts_target(p)),
                "{scenario}"
            );
        }
    }

    #[test]
    fn the_demo_schedule_targets_suitable_devices_of_the_demo_campus() {
        let campus = Campus::demo();
        for scheduled in ScheduledScenario::demo_schedule() {
            let target = scheduled.target.as_deref().and_then(|t| campus.find(t));
            let profile = target.map(|i| campus.devices[i].profile);
            assert!(
                profile.is_some_and(|p| scheduled.scenario.accepts_target(p)),
                "{scheduled:?}"
            );
        }
    }

    #[test]
    fn fire_reports_smoke_only_after_the_heat_passed_fifty_seven_degrees() {
        assert!(fire_temperature(fire_smoke_after().as_secs_f64()) > 57.0);
        assert!(fire_smoke_after() < Scenario::Fire.default_duration());
        assert!(fire_temperature(Scenario::Fire.default_duration().as_secs_f64()) > 70.0);
    }
}

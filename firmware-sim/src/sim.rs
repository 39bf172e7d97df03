//! The simulation as a pure state machine: given the campus, the scenario schedule and a seed,
//! it says which MQTT messages (topic, payload, retain) to send at a simulated time. It knows
//! nothing about sockets or clocks; the publisher ([`crate::publish`]) drives it with real time
//! and hands the messages to rumqttc, and tests drive it with a simulated clock.
//!
//! Per device it produces the retained `meta` and `status` (birth), telemetry in either topic
//! form of protocol v1, and the effects of the running scenarios: overridden values, `offline`
//! status and silence, and malformed payloads.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::campus::{Campus, Device, PointKind};
use crate::device::{DeviceModel, Sample};
use crate::garbage::GarbageKind;
use crate::scenario::{self, Scenario, ScheduledScenario};

/// What a message is, for counting and for tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    Meta,
    Status,
    Telemetry,
    Garbage,
}

/// One MQTT message to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    pub kind: MessageKind,
}

/// The settings of a simulation that do not concern the network.
#[derive(Clone, Debug)]
pub struct SimulationSettings {
    pub campus: Campus,
    pub topic_prefix: String,
    pub seed: u64,
    pub scenarios: Vec<ScheduledScenario>,
    /// Fraction (0.0–1.0) of devices that publish on single-point topics.
    pub single_point_fraction: f64,
    /// Size of the `huge` garbage payload.
    pub garbage_huge_bytes: usize,
}

/// Every problem found in a simulator configuration, reported together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid simulator configuration: {}", .problems.join("; "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Pending,
    Running,
    Done,
}

/// A scheduled scenario resolved against the campus.
#[derive(Clone, Debug)]
struct ScenarioRun {
    scenario: Scenario,
    start: Duration,
    end: Duration,
    target: usize,
    /// Devices whose values the scenario changes (for a fire: the detectors of the room).
    affected: Vec<usize>,
    /// For `device-offline`: the device that goes silent without saying so.
    silent: Option<usize>,
    phase: Phase,
    garbage_round: usize,
    next_garbage: Duration,
}

/// Garbage trickle period while the scenario runs.
const GARBAGE_TRICKLE_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
struct SimDevice {
    model: DeviceModel,
    single_point: bool,
    /// Announced `offline` and not publishing.
    offline: bool,
    /// Not publishing, status unchanged.
    silent: bool,
}

/// The simulation state.
#[derive(Debug)]
pub struct Simulation {
    settings: SimulationSettings,
    devices: Vec<SimDevice>,
    runs: Vec<ScenarioRun>,
    rng: StdRng,
}

impl Simulation {
    /// Resolves the scenario targets and builds a model per device; reports every problem at
    /// once.
    pub fn new(settings: SimulationSettings) -> Result<Self, ConfigError> {
        let mut problems = settings.campus.problems();
        if !valid_prefix(&settings.topic_prefix) {
            problems.push(format!(
                "topic prefix `{}` must be non-empty levels without wildcards",
                settings.topic_prefix
            ));
        }
        if !(0.0..=1.0).contains(&settings.single_point_fraction) {
            problems.push(format!(
                "single-point fraction {} is not within 0.0–1.0",
                settings.single_point_fraction
            ));
        }
        let campus = &settings.campus;
        let mut runs = Vec::new();
        for scheduled in &settings.scenarios {
            let target = match &scheduled.target {
                Some(name) => match campus.find(name) {
                    Some(i) => Some(i),
                    None => {
                        problems.push(format!(
                            "scenario {} targets unknown device `{name}`",
                            scheduled.scenario
                        ));
                        None
                    }
                },
                None => {
                    let found = scheduled.scenario.default_target(campus);
                    if found.is_none() && !campus.devices.is_empty() {
                        problems.push(format!(
                            "scenario {} has no suitable device in the campus",
                            scheduled.scenario
                        ));
                    }
                    found
                }
            };
            let Some(target) = target else { continue };
            let device = &campus.devices[target];
            if !scheduled.scenario.accepts_target(device.profile) {
                problems.push(format!(
                    "scenario {} cannot target `{}` (profile {})",
                    scheduled.scenario,
                    device.key(),
                    device.profile
                ));
                continue;
            }
            runs.push(resolve(scheduled, target, campus));
        }
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }

        let mut rng = StdRng::seed_from_u64(settings.seed);
        let fraction = settings.single_point_fraction;
        let devices = campus
            .devices
            .iter()
            .enumerate()
            .map(|(i, d)| SimDevice {
                model: DeviceModel::new(d.profile, &mut rng),
                // Spreads single-point devices evenly: exactly floor(n * fraction) of them.
                single_point: ((i + 1) as f64 * fraction).floor() > (i as f64 * fraction).floor(),
                offline: false,
                silent: false,
            })
            .collect();
        Ok(Self {
            settings,
            devices,
            runs,
            rng,
        })
    }

    pub fn campus(&self) -> &Campus {
        &self.settings.campus
    }

    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    /// Whether device `index` publishes on single-point topics.
    pub fn uses_single_point_topics(&self, index: usize) -> bool {
        self.devices.get(index).is_some_and(|d| d.single_point)
    }

    fn topic(&self, device: &Device, suffix: &str) -> String {
        format!(
            "{}/{}/{}/{suffix}",
            self.settings.topic_prefix, device.school, device.id
        )
    }

    /// Retained `meta` and the current `status` of every device: sent at start and again after
    /// every reconnect (a clean session may land on a broker that lost its retained store).
    pub fn birth_messages(&self) -> Vec<Message> {
        let mut out = Vec::with_capacity(self.devices.len() * 2);
        for (device, state) in self.campus().devices.iter().zip(&self.devices) {
            let meta = serde_json::json!({
                "profile": device.profile.as_str(),
                "building": device.building,
                "room": device.room,
                "name": device.name,
            });
            out.push(Message {
                topic: self.topic(device, "meta"),
                payload: meta.to_string().into_bytes(),
                retain: true,
                kind: MessageKind::Meta,
            });
            out.push(self.status_message(device, !state.offline));
        }
        out
    }

    fn status_message(&self, device: &Device, online: bool) -> Message {
        let status: &[u8] = if online { b"online" } else { b"offline" };
        Message {
            topic: self.topic(device, "status"),
            payload: status.to_vec(),
            retain: true,
            kind: MessageKind::Status,
        }
    }

    /// `offline` for every device that is still online: what the simulator says on shutdown in
    /// place of the per-device Last Will a real device would leave with its broker.
    pub fn farewell_messages(&self) -> Vec<Message> {
        self.campus()
            .devices
            .iter()
            .zip(&self.devices)
            .filter(|(_, state)| !state.offline)
            .map(|(device, _)| self.status_message(device, false))
            .collect()
    }

    /// Starts and ends scenarios due at `elapsed` and returns the messages that go with it:
    /// status changes and malformed payloads. Call it before [`Simulation::telemetry`] at each
    /// step.
    pub fn advance(&mut self, elapsed: Duration, ts_ms: i64) -> Vec<Message> {
        let mut out = Vec::new();
        for r in 0..self.runs.len() {
            let run = self.runs[r].clone();
            match run.phase {
                Phase::Pending if elapsed >= run.start => {
                    self.runs[r].phase = Phase::Running;
                    self.on_start(&run, ts_ms, &mut out);
                    self.runs[r].next_garbage = run.start + GARBAGE_TRICKLE_EVERY;
                }
                Phase::Running if elapsed >= run.end => {
                    self.runs[r].phase = Phase::Done;
                    self.on_end(&run, &mut out);
                }
                Phase::Running
                    if run.scenario == Scenario::Garbage && elapsed >= run.next_garbage =>
                {
                    let kind = GarbageKind::trickle(run.garbage_round);
                    self.runs[r].garbage_round += 1;
                    self.runs[r].next_garbage = elapsed + GARBAGE_TRICKLE_EVERY;
                    out.push(self.garbage(run.target, kind, ts_ms));
                }
                _ => {}
            }
        }
        out
    }

    fn on_start(&mut self, run: &ScenarioRun, ts_ms: i64, out: &mut Vec<Message>) {
        let campus = &self.settings.campus;
        tracing::info!(
            scenario = %run.scenario,
            target = %campus.devices[run.target].key(),
            duration_s = (run.end - run.start).as_secs(),
            "Scenario started"
        );
        match run.scenario {
            Scenario::DeviceOffline => {
                self.devices[run.target].offline = true;
                out.push(self.status_message(&campus.devices[run.target], false));
                if let Some(silent) = run.silent {
                    tracing::info!(device = %campus.devices[silent].key(), "Device goes silent");
                    self.devices[silent].silent = true;
                }
            }
            Scenario::Garbage => {
                for kind in GarbageKind::ALL {
                    out.push(self.garbage(run.target, kind, ts_ms));
                }
            }
            Scenario::Fire | Scenario::CabinetOverheat | Scenario::VentilationFailure => {}
        }
    }

    fn on_end(&mut self, run: &ScenarioRun, out: &mut Vec<Message>) {
        let campus = &self.settings.campus;
        tracing::info!(
            scenario = %run.scenario,
            target = %campus.devices[run.target].key(),
            "Scenario ended, values return to normal"
        );
        if run.scenario == Scenario::DeviceOffline {
            self.devices[run.target].offline = false;
            out.push(self.status_message(&campus.devices[run.target], true));
            if let Some(silent) = run.silent {
                self.devices[silent].silent = false;
            }
        }
    }

    fn garbage(&mut self, target: usize, kind: GarbageKind, ts_ms: i64) -> Message {
        let device = &self.settings.campus.devices[target];
        let point = device
            .profile
            .points()
            .iter()
            .find(|p| p.kind == PointKind::Number)
            .map_or("temp_c", |p| p.name);
        let (suffix, payload) = kind.message(
            point,
            ts_ms,
            self.settings.garbage_huge_bytes,
            &mut self.rng,
        );
        Message {
            topic: self.topic(device, &suffix),
            payload,
            retain: false,
            kind: MessageKind::Garbage,
        }
    }

    /// The values of device `index` at `elapsed` with running scenarios applied, or `None`
    /// while it is offline or silent.
    pub fn sample(&mut self, index: usize, elapsed: Duration) -> Option<Sample> {
        let state = self.devices.get(index)?;
        if state.offline || state.silent {
            return None;
        }
        let mut sample = state.model.sample(elapsed, &mut self.rng);
        let profile = state.model.profile();
        for run in &self.runs {
            if run.phase == Phase::Running && run.affected.contains(&index) {
                let t = elapsed.saturating_sub(run.start);
                scenario::apply(run.scenario, profile, t, &mut sample, &mut self.rng);
            }
        }
        Some(sample)
    }

    /// The telemetry messages of device `index` at `elapsed`: one JSON object with `ts`, or one
    /// message per point on single-point topics (which carry no time, so the gateway stamps
    /// them). Empty while the device is offline or silent.
    pub fn telemetry(&mut self, index: usize, elapsed: Duration, ts_ms: i64) -> Vec<Message> {
        let Some(sample) = self.sample(index, elapsed) else {
            return Vec::new();
        };
        let device = &self.settings.campus.devices[index];
        if self.devices[index].single_point {
            sample
                .points
                .iter()
                .map(|(point, value)| Message {
                    topic: self.topic(device, &format!("telemetry/{point}")),
                    payload: value.to_json().into_bytes(),
                    retain: false,
                    kind: MessageKind::Telemetry,
                })
                .collect()
        } else {
            vec![Message {
                topic: self.topic(device, "telemetry"),
                payload: sample.to_json(Some(ts_ms)).into_bytes(),
                retain: false,
                kind: MessageKind::Telemetry,
            }]
        }
    }

    /// Whether every scheduled scenario has ended.
    pub fn scenarios_done(&self) -> bool {
        self.runs.iter().all(|r| r.phase == Phase::Done)
    }
}

fn resolve(scheduled: &ScheduledScenario, target: usize, campus: &Campus) -> ScenarioRun {
    let scenario = scheduled.scenario;
    let target_device = &campus.devices[target];
    let affected = match scenario {
        // The whole room burns: every detector and room sensor in it, but not a fridge.
        Scenario::Fire => campus
            .devices
            .iter()
            .enumerate()
            .filter(|(_, d)| {
                d.same_room(target_device) && d.profile != crate::campus::Profile::ColdStorage
            })
            .map(|(i, _)| i)
            .collect(),
        _ => vec![target],
    };
    let silent = (scenario == Scenario::DeviceOffline)
        .then(|| {
            campus
                .devices
                .iter()
                .enumerate()
                .skip(target + 1)
                .chain(campus.devices.iter().enumerate().take(target))
                .find(|(i, d)| *i != target && d.profile.is_fire_detector())
                .map(|(i, _)| i)
        })
        .flatten();
    ScenarioRun {
        scenario,
        start: scheduled.after,
        end: scheduled.after + scenario.default_duration(),
        target,
        affected,
        silent,
        phase: Phase::Pending,
        garbage_round: 0,
        next_garbage: Duration::MAX,
    }
}

/// Non-empty topic levels without wildcards (`campus`, `org/campus`).
fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty() && prefix.split('/').all(crate::campus::is_topic_segment)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(scenarios: Vec<ScheduledScenario>) -> SimulationSettings {
        SimulationSettings {
            campus: Campus::demo(),
            topic_prefix: "campus".to_owned(),
            seed: 1,
            scenarios,
            single_point_fraction: 0.2,
            garbage_huge_bytes: 1 << 20,
        }
    }

    fn scheduled(scenario: Scenario, after_s: u64, target: Option<&str>) -> ScheduledScenario {
        ScheduledScenario {
            after: Duration::from_secs(after_s),
            scenario,
            target: target.map(str::to_owned),
        }
    }

    const TS: i64 = 1_764_300_000_000;

    #[test]
    fn telemetry_json_is_valid_with_ts_and_exactly_the_profile_points() {
        let mut sim = Simulation::new(settings(vec![])).unwrap();
        for i in 0..sim.device_count() {
            let profile = sim.campus().devices[i].profile;
            let expected: Vec<&str> = profile.points().iter().map(|p| p.name).collect();
            let messages = sim.telemetry(i, Duration::from_secs(3), TS);
            let device = &sim.campus().devices[i];
            let base = format!("campus/{}/{}/telemetry", device.school, device.id);
            if sim.uses_single_point_topics(i) {
                let topics: Vec<String> = messages.iter().map(|m| m.topic.clone()).collect();
                let wanted: Vec<String> = expected.iter().map(|p| format!("{base}/{p}")).collect();
                assert_eq!(topics, wanted);
                for m in &messages {
                    let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
                    assert!(v.is_boolean() || v.is_number(), "{}", m.topic);
                }
            } else {
                assert_eq!(messages.len(), 1);
                assert_eq!(messages[0].topic, base);
                assert!(!messages[0].retain);
                let v: serde_json::Value = serde_json::from_slice(&messages[0].payload).unwrap();
                let object = v.as_object().unwrap();
                assert_eq!(object["ts"].as_i64(), Some(TS));
                let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
                keys.retain(|k| *k != "ts");
                let mut sorted_expected = expected.clone();
                sorted_expected.sort_unstable();
                keys.sort_unstable();
                assert_eq!(keys, sorted_expected, "{}", device.key());
                for spec in profile.points() {
                    let value = &object[spec.name];
                    match spec.kind {
                        PointKind::Bool => assert!(value.is_boolean()),
                        PointKind::Number => assert!(value.is_f64() || value.is_i64()),
                    }
                }
            }
        }
    }

    #[test]
    fn both_topic_forms_are_used_with_a_fractional_setting() {
        let sim = Simulation::new(settings(vec![])).unwrap();
        let single = (0..sim.device_count())
            .filter(|i| sim.uses_single_point_topics(*i))
            .count();
        assert_eq!(single, sim.device_count() / 5);
    }

    #[test]
    fn birth_has_retained_meta_and_online_status_for_every_device() {
        let sim = Simulation::new(settings(vec![])).unwrap();
        let birth = sim.birth_messages();
        assert_eq!(birth.len(), 2 * sim.device_count());
        assert!(birth.iter().all(|m| m.retain));
        let meta = &birth[0];
        assert_eq!(meta.topic, "campus/xhsy/smoke-a101/meta");
        let v: serde_json::Value = serde_json::from_slice(&meta.payload).unwrap();
        assert_eq!(v["profile"], "smoke_detector");
        assert_eq!(v["building"], "A");
        assert_eq!(v["room"], "101");
        assert!(v["name"].as_str().unwrap().contains("感烟"));
        assert_eq!(birth[1].topic, "campus/xhsy/smoke-a101/status");
        assert_eq!(birth[1].payload, b"online");
    }

    #[test]
    fn fire_crosses_fifty_seven_degrees_and_sets_smoke_within_its_duration() {
        let mut sim = Simulation::new(settings(vec![scheduled(
            Scenario::Fire,
            10,
            Some("xhsy/heat-a201"),
        )]))
        .unwrap();
        let heat = sim.campus().find("xhsy/heat-a201").unwrap();
        let smoke = sim.campus().find("xhsy/smoke-a201").unwrap();
        let other_room = sim.campus().find("xhsy/heat-a101").unwrap();
        let end = 10 + Scenario::Fire.default_duration().as_secs();
        let (mut hottest, mut crossed_57_at, mut smoke_at) = (0.0_f64, None, None);
        for s in 0..end + 30 {
            let t = Duration::from_secs(s);
            sim.advance(t, TS);
            let h = sim.sample(heat, t).unwrap().number("temp_c").unwrap();
            let smoky = sim.sample(smoke, t).unwrap().get("smoke");
            let calm = sim.sample(other_room, t).unwrap().number("temp_c").unwrap();
            assert!(calm < 30.0, "the fire spread to another room at {s} s");
            if s < end {
                hottest = hottest.max(h);
                if h > 57.0 && crossed_57_at.is_none() {
                    crossed_57_at = Some(s);
                }
                if smoky == Some(crate::device::PointValue::Bool(true)) && smoke_at.is_none() {
                    smoke_at = Some(s);
                }
            } else {
                assert!(
                    h < 30.0,
                    "heat did not return to normal after the fire ({h} at {s} s)"
                );
                assert_eq!(smoky, Some(crate::device::PointValue::Bool(false)));
            }
        }
        assert!(hottest > 70.0, "hottest was {hottest}");
        let crossed = crossed_57_at.expect("heat never crossed 57 °C");
        let smoke_at = smoke_at.expect("smoke never reported");
        assert!(
            smoke_at >= crossed,
            "smoke at {smoke_at} s before heat at {crossed} s"
        );
        // 20 °C/min from 25 °C: 57 °C after ~96 s; well within the 10–20 °C/min band.
        assert!(
            (10 + 90..=10 + 200).contains(&crossed),
            "crossed at {crossed} s"
        );
    }

    #[test]
    fn cabinet_overheat_and_ventilation_failure_change_the_cabinet_and_revert() {
        let mut sim = Simulation::new(settings(vec![
            scheduled(Scenario::CabinetOverheat, 0, Some("dfzx/cab-1")),
            scheduled(Scenario::VentilationFailure, 0, Some("dfzx/cab-2")),
        ]))
        .unwrap();
        let hot = sim.campus().find("dfzx/cab-1").unwrap();
        let stuffy = sim.campus().find("dfzx/cab-2").unwrap();
        let (mut hottest, mut fan_off_seen) = (0.0_f64, false);
        for s in 0..200 {
            let t = Duration::from_secs(s);
            sim.advance(t, TS);
            let h = sim.sample(hot, t).unwrap();
            hottest = hottest.max(h.number("temp_c").unwrap());
            let v = sim.sample(stuffy, t).unwrap();
            if s < 120 {
                assert_eq!(v.get("fan_on").and_then(|f| f.as_bool()), Some(false));
                assert!(v.number("airflow_mps").unwrap() < 0.1);
                fan_off_seen = true;
            } else {
                assert_eq!(v.get("fan_on").and_then(|f| f.as_bool()), Some(true));
            }
        }
        assert!(hottest > 40.0);
        assert!(fan_off_seen);
        let after = sim.sample(hot, Duration::from_secs(200)).unwrap();
        assert!(after.number("temp_c").unwrap() < 26.0);
    }

    #[test]
    fn device_offline_announces_offline_silences_another_and_comes_back() {
        let mut sim = Simulation::new(settings(vec![scheduled(
            Scenario::DeviceOffline,
            5,
            Some("syxx/smoke-a102"),
        )]))
        .unwrap();
        let target = sim.campus().find("syxx/smoke-a102").unwrap();
        assert!(sim.advance(Duration::from_secs(1), TS).is_empty());
        let started = sim.advance(Duration::from_secs(5), TS);
        assert_eq!(started.len(), 1);
        assert_eq!(started[0].topic, "campus/syxx/smoke-a102/status");
        assert_eq!(started[0].payload, b"offline");
        assert!(started[0].retain);
        assert!(sim.telemetry(target, Duration::from_secs(6), TS).is_empty());
        let silent_count = (0..sim.device_count())
            .filter(|i| sim.telemetry(*i, Duration::from_secs(6), TS).is_empty())
            .count();
        assert_eq!(silent_count, 2, "the target and one silent device");
        // Reconnect birth keeps the offline device offline.
        let birth = sim.birth_messages();
        let status = birth
            .iter()
            .find(|m| m.topic == "campus/syxx/smoke-a102/status")
            .unwrap();
        assert_eq!(status.payload, b"offline");
        let end = Duration::from_secs(5) + Scenario::DeviceOffline.default_duration();
        let ended = sim.advance(end, TS);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].payload, b"online");
        assert!((0..sim.device_count()).all(|i| !sim.telemetry(i, end, TS).is_empty()));
        assert!(sim.scenarios_done());
        assert_eq!(sim.farewell_messages().len(), sim.device_count());
    }

    #[test]
    fn garbage_sends_a_burst_of_every_kind_then_a_trickle() {
        let mut sim =
            Simulation::new(settings(vec![scheduled(Scenario::Garbage, 0, None)])).unwrap();
        let burst = sim.advance(Duration::ZERO, TS);
        assert_eq!(burst.len(), GarbageKind::ALL.len());
        assert!(burst
            .iter()
            .all(|m| m.kind == MessageKind::Garbage && !m.retain));
        assert!(burst.iter().any(|m| m.payload.len() == 1 << 20));
        assert!(burst.iter().any(|m| m.payload.is_empty()));
        let trickle = sim.advance(Duration::from_secs(5), TS);
        assert_eq!(trickle.len(), 1);
        assert!(trickle[0].payload.len() < 1 << 16);
        let after = sim.advance(Duration::from_secs(31), TS);
        assert!(after.is_empty());
    }

    #[test]
    fn every_problem_of_a_bad_configuration_is_reported_at_once() {
        let mut bad = settings(vec![
            scheduled(Scenario::Fire, 0, Some("xhsy/no-such-device")),
            scheduled(Scenario::CabinetOverheat, 0, Some("xhsy/smoke-a101")),
        ]);
        bad.topic_prefix = "campus/+".to_owned();
        bad.single_point_fraction = 2.0;
        let err = Simulation::new(bad).unwrap_err();
        assert_eq!(err.problems.len(), 4, "{err}");
    }
}

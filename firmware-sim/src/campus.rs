//! The simulated campus: schools, device profiles with their point names (device protocol v1),
//! and the devices placed in buildings and rooms. This is the static inventory every other
//! module of the simulator reads: the device models ([`crate::device`]) produce values for these
//! points, the scenarios ([`crate::scenario`]) pick their targets from it, and the publisher
//! ([`crate::publish`]) derives the MQTT topics and the retained `meta` from it.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// A device type; its name and point names are part of device protocol v1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    SmokeDetector,
    HeatDetector,
    RoomTemperature,
    ServerRoom,
    ColdStorage,
    ChemCabinet,
}

/// Whether a point carries a number or a boolean.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PointKind {
    Number,
    Bool,
}

/// One point of a profile: its protocol name and kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PointSpec {
    pub name: &'static str,
    pub kind: PointKind,
}

const fn number(name: &'static str) -> PointSpec {
    PointSpec {
        name,
        kind: PointKind::Number,
    }
}

const fn boolean(name: &'static str) -> PointSpec {
    PointSpec {
        name,
        kind: PointKind::Bool,
    }
}

const SMOKE_DETECTOR_POINTS: &[PointSpec] = &[
    boolean("smoke"),
    number("obscuration_db_m"),
    number("battery_pct"),
    boolean("tamper"),
];
const HEAT_DETECTOR_POINTS: &[PointSpec] = &[number("temp_c")];
const ROOM_TEMPERATURE_POINTS: &[PointSpec] = &[number("temp_c"), number("rh_pct")];
const SERVER_ROOM_POINTS: &[PointSpec] = &[number("temp_c"), number("rh_pct")];
const COLD_STORAGE_POINTS: &[PointSpec] = &[number("temp_c"), boolean("door_open")];
const CHEM_CABINET_POINTS: &[PointSpec] = &[
    number("temp_c"),
    number("rh_pct"),
    number("voc_ppm"),
    number("lel_pct"),
    boolean("fan_on"),
    number("airflow_mps"),
    boolean("door_open"),
];

impl Profile {
    pub const ALL: [Profile; 6] = [
        Profile::SmokeDetector,
        Profile::HeatDetector,
        Profile::RoomTemperature,
        Profile::ServerRoom,
        Profile::ColdStorage,
        Profile::ChemCabinet,
    ];

    /// The protocol name, as sent in `meta.profile`.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::SmokeDetector => "smoke_detector",
            Profile::HeatDetector => "heat_detector",
            Profile::RoomTemperature => "room_temperature",
            Profile::ServerRoom => "server_room",
            Profile::ColdStorage => "cold_storage",
            Profile::ChemCabinet => "chem_cabinet",
        }
    }

    /// The points this profile reports, in protocol order.
    pub fn points(self) -> &'static [PointSpec] {
        match self {
            Profile::SmokeDetector => SMOKE_DETECTOR_POINTS,
            Profile::HeatDetector => HEAT_DETECTOR_POINTS,
            Profile::RoomTemperature => ROOM_TEMPERATURE_POINTS,
            Profile::ServerRoom => SERVER_ROOM_POINTS,
            Profile::ColdStorage => COLD_STORAGE_POINTS,
            Profile::ChemCabinet => CHEM_CABINET_POINTS,
        }
    }

    /// Fire detectors (smoke, heat): the devices a silent-device fault matters most for.
    pub fn is_fire_detector(self) -> bool {
        matches!(self, Profile::SmokeDetector | Profile::HeatDetector)
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A profile name that is not one of device protocol v1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown device profile `{0}` (expected one of smoke_detector, heat_detector, room_temperature, server_room, cold_storage, chem_cabinet)")]
pub struct UnknownProfile(pub String);

impl FromStr for Profile {
    type Err = UnknownProfile;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Profile::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownProfile(s.to_owned()))
    }
}

/// A school: its short code is the `<school>` topic segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct School {
    pub code: String,
    pub name: String,
}

/// One simulated device and where it is installed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Device {
    /// The `<device>` topic segment, unique within its school.
    pub id: String,
    /// The school code (`<school>` topic segment).
    pub school: String,
    pub profile: Profile,
    pub building: String,
    pub room: String,
    /// Human-readable name, sent in `meta.name`.
    pub name: String,
}

impl Device {
    /// `<school>/<device>`, the device key of the protocol.
    pub fn key(&self) -> String {
        format!("{}/{}", self.school, self.id)
    }

    /// Same school, building and room.
    pub fn same_room(&self, other: &Device) -> bool {
        self.school == other.school && self.building == other.building && self.room == other.room
    }
}

/// The whole simulated inventory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Campus {
    pub schools: Vec<School>,
    pub devices: Vec<Device>,
}

/// One school of the demo campus and what it has.
struct DemoSchool {
    code: &'static str,
    name: &'static str,
    cabinets: usize,
}

const DEMO_SCHOOLS: [DemoSchool; 3] = [
    DemoSchool {
        code: "xhsy",
        name: "星海实验学校",
        cabinets: 3,
    },
    DemoSchool {
        code: "dfzx",
        name: "东方中学",
        cabinets: 2,
    },
    DemoSchool {
        code: "syxx",
        name: "实验小学",
        cabinets: 1,
    },
];

/// Classrooms of teaching building A that get a smoke and a heat detector each.
const DEMO_CLASSROOMS: [&str; 4] = ["101", "102", "201", "202"];

impl Campus {
    /// A small campus of three schools (45 devices): per school, smoke and heat detectors in
    /// four classrooms of teaching building A, smoke detectors in its two corridors, a server
    /// room, a canteen food-sample fridge, a library room sensor, and chemical cabinets in the
    /// lab building.
    pub fn demo() -> Self {
        let mut campus = Campus::default();
        for school in &DEMO_SCHOOLS {
            campus.schools.push(School {
                code: school.code.to_owned(),
                name: school.name.to_owned(),
            });
            let mut add = |id: String, profile, building: &str, room: String, name: String| {
                campus.devices.push(Device {
                    id,
                    school: school.code.to_owned(),
                    profile,
                    building: building.to_owned(),
                    room,
                    name: format!("{} {}", school.name, name),
                });
            };
            for room in DEMO_CLASSROOMS {
                add(
                    format!("smoke-a{room}"),
                    Profile::SmokeDetector,
                    "A",
                    room.to_owned(),
                    format!("教学楼A {room}教室 感烟探测器"),
                );
                add(
                    format!("heat-a{room}"),
                    Profile::HeatDetector,
                    "A",
                    room.to_owned(),
                    format!("教学楼A {room}教室 感温探测器"),
                );
            }
            for floor in 1..=2 {
                add(
                    format!("smoke-a{floor}f"),
                    Profile::SmokeDetector,
                    "A",
                    format!("{floor}F-corridor"),
                    format!("教学楼A {floor}楼走廊 感烟探测器"),
                );
            }
            add(
                "srv-1".to_owned(),
                Profile::ServerRoom,
                "X",
                "301".to_owned(),
                "行政楼 信息中心机房 温湿度".to_owned(),
            );
            add(
                "fridge-1".to_owned(),
                Profile::ColdStorage,
                "C",
                "kitchen".to_owned(),
                "食堂 留样冰柜".to_owned(),
            );
            add(
                "temp-lib".to_owned(),
                Profile::RoomTemperature,
                "T",
                "reading-room".to_owned(),
                "图书馆 阅览室 温湿度".to_owned(),
            );
            for n in 1..=school.cabinets {
                add(
                    format!("cab-{n}"),
                    Profile::ChemCabinet,
                    "L",
                    "chem-lab".to_owned(),
                    format!("实验楼 化学实验室 危化品柜{n}"),
                );
            }
        }
        campus
    }

    /// Finds a device by `school/device` or, when unambiguous enough for a CLI, by a bare
    /// device id (the first match in campus order).
    pub fn find(&self, target: &str) -> Option<usize> {
        match target.split_once('/') {
            Some((school, id)) => self
                .devices
                .iter()
                .position(|d| d.school == school && d.id == id),
            None => self.devices.iter().position(|d| d.id == target),
        }
    }

    /// The display name of a school code, if the school is listed.
    pub fn school_name(&self, code: &str) -> Option<&str> {
        self.schools
            .iter()
            .find(|s| s.code == code)
            .map(|s| s.name.as_str())
    }

    /// Checks that every id and school code is a usable topic segment and device keys are
    /// unique; returns every problem found.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.devices.is_empty() {
            problems.push("campus has no devices".to_owned());
        }
        let mut seen = std::collections::HashSet::new();
        for device in &self.devices {
            for (what, segment) in [("school code", &device.school), ("device id", &device.id)] {
                if !is_topic_segment(segment) {
                    problems.push(format!(
                        "{what} `{segment}` of device `{}` is not a valid topic segment (non-empty, no `/`, `+`, `#`)",
                        device.key()
                    ));
                }
            }
            if !seen.insert(device.key()) {
                problems.push(format!("duplicate device `{}`", device.key()));
            }
        }
        problems
    }
}

/// A non-empty MQTT topic level without separators or wildcards.
pub(crate) fn is_topic_segment(s: &str) -> bool {
    !s.is_empty() && !s.contains(['/', '+', '#', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_campus_has_between_thirty_and_sixty_valid_devices() {
        let campus = Campus::demo();
        assert!((30..=60).contains(&campus.devices.len()));
        assert!(campus.problems().is_empty(), "{:?}", campus.problems());
        for profile in Profile::ALL {
            assert!(
                campus.devices.iter().any(|d| d.profile == profile),
                "no {profile} in the demo campus"
            );
        }
    }

    #[test]
    fn profile_names_round_trip() {
        for profile in Profile::ALL {
            assert_eq!(profile.to_string().parse::<Profile>(), Ok(profile));
        }
        assert!("smoke".parse::<Profile>().is_err());
    }

    #[test]
    fn devices_are_found_by_key_or_bare_id() {
        let campus = Campus::demo();
        let by_key = campus.find("dfzx/cab-2").map(|i| campus.devices[i].key());
        assert_eq!(by_key.as_deref(), Some("dfzx/cab-2"));
        let bare = campus.find("heat-a101").map(|i| campus.devices[i].key());
        assert_eq!(bare.as_deref(), Some("xhsy/heat-a101"));
        assert_eq!(campus.find("nope/heat-a101"), None);
    }
}

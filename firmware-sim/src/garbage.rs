//! Malformed payloads for the `garbage` scenario: everything the gateway's MQTT ingest must
//! reject with a counter and a log line, never a panic (truncated JSON, binary junk, a bare NaN,
//! strings in number fields, deeply nested JSON, a huge payload, unknown points, an empty
//! payload, and bad single-point payloads). The simulation ([`crate::sim`]) sends a burst of
//! every kind when the scenario starts and a trickle while it runs.

use rand::Rng;

/// One kind of malformed message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GarbageKind {
    TruncatedJson,
    BinaryJunk,
    BareNan,
    StringInNumberField,
    DeeplyNested,
    /// A syntactically valid object padded to the configured size (1 MiB by default).
    Huge,
    UnknownPoints,
    Empty,
    TopLevelArray,
    TsAsString,
    SinglePointString,
    SinglePointObject,
    SinglePointNan,
    SinglePointInfinity,
    UnknownSinglePoint,
}

impl GarbageKind {
    pub const ALL: [GarbageKind; 15] = [
        GarbageKind::TruncatedJson,
        GarbageKind::BinaryJunk,
        GarbageKind::BareNan,
        GarbageKind::StringInNumberField,
        GarbageKind::DeeplyNested,
        GarbageKind::Huge,
        GarbageKind::UnknownPoints,
        GarbageKind::Empty,
        GarbageKind::TopLevelArray,
        GarbageKind::TsAsString,
        GarbageKind::SinglePointString,
        GarbageKind::SinglePointObject,
        GarbageKind::SinglePointNan,
        GarbageKind::SinglePointInfinity,
        GarbageKind::UnknownSinglePoint,
    ];

    /// The cheap kinds repeated while the scenario runs (the huge one is sent once).
    pub fn trickle(round: usize) -> GarbageKind {
        let cheap: Vec<GarbageKind> = GarbageKind::ALL
            .into_iter()
            .filter(|k| *k != GarbageKind::Huge)
            .collect();
        cheap[round % cheap.len()]
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GarbageKind::TruncatedJson => "truncated-json",
            GarbageKind::BinaryJunk => "binary-junk",
            GarbageKind::BareNan => "bare-nan",
            GarbageKind::StringInNumberField => "string-in-number-field",
            GarbageKind::DeeplyNested => "deeply-nested",
            GarbageKind::Huge => "huge",
            GarbageKind::UnknownPoints => "unknown-points",
            GarbageKind::Empty => "empty",
            GarbageKind::TopLevelArray => "top-level-array",
            GarbageKind::TsAsString => "ts-as-string",
            GarbageKind::SinglePointString => "single-point-string",
            GarbageKind::SinglePointObject => "single-point-object",
            GarbageKind::SinglePointNan => "single-point-nan",
            GarbageKind::SinglePointInfinity => "single-point-infinity",
            GarbageKind::UnknownSinglePoint => "unknown-single-point",
        }
    }

    /// The topic suffix below `<prefix>/<school>/<device>/` and the payload. `point` is a
    /// numeric point of the device, `ts_ms` the current time, `huge_bytes` the size of the
    /// huge payload.
    pub fn message(
        self,
        point: &str,
        ts_ms: i64,
        huge_bytes: usize,
        rng: &mut impl Rng,
    ) -> (String, Vec<u8>) {
        let telemetry = "telemetry".to_owned();
        let single = format!("telemetry/{point}");
        match self {
            GarbageKind::TruncatedJson => {
                let full = format!("{{\"ts\":{ts_ms},\"{point}\":24.5}}");
                let cut = full.len() - 4;
                (telemetry, full.as_bytes()[..cut].to_vec())
            }
            GarbageKind::BinaryJunk => {
                let mut junk: Vec<u8> = (0..64).map(|_| rng.gen()).collect();
                // Make sure it is not accidentally valid UTF-8 or JSON.
                junk[0] = 0xff;
                junk[1] = 0x00;
                (telemetry, junk)
            }
            GarbageKind::BareNan => (
                telemetry,
                format!("{{\"ts\":{ts_ms},\"{point}\":NaN}}").into_bytes(),
            ),
            GarbageKind::StringInNumberField => (
                telemetry,
                format!("{{\"ts\":{ts_ms},\"{point}\":\"hot\"}}").into_bytes(),
            ),
            GarbageKind::DeeplyNested => {
                const DEPTH: usize = 10_000;
                let mut nested = format!("{{\"ts\":{ts_ms},\"{point}\":");
                nested.push_str(&"[".repeat(DEPTH));
                nested.push_str(&"]".repeat(DEPTH));
                nested.push('}');
                (telemetry, nested.into_bytes())
            }
            GarbageKind::Huge => {
                let head = format!("{{\"ts\":{ts_ms},\"{point}\":24.5,\"pad\":\"");
                let tail = "\"}";
                let pad = huge_bytes.saturating_sub(head.len() + tail.len());
                let mut huge = String::with_capacity(head.len() + pad + tail.len());
                huge.push_str(&head);
                huge.extend(std::iter::repeat_n('x', pad));
                huge.push_str(tail);
                (telemetry, huge.into_bytes())
            }
            GarbageKind::UnknownPoints => (
                telemetry,
                format!("{{\"ts\":{ts_ms},\"warp_core_temp\":9000,\"flux_capacitor\":true}}")
                    .into_bytes(),
            ),
            GarbageKind::Empty => (telemetry, Vec::new()),
            GarbageKind::TopLevelArray => (
                telemetry,
                format!("[{{\"ts\":{ts_ms},\"{point}\":24.5}}]").into_bytes(),
            ),
            GarbageKind::TsAsString => (
                telemetry,
                format!("{{\"ts\":\"yesterday\",\"{point}\":24.5}}").into_bytes(),
            ),
            GarbageKind::SinglePointString => (single, b"\"hot\"".to_vec()),
            GarbageKind::SinglePointObject => (single, b"{\"value\":24.5}".to_vec()),
            GarbageKind::SinglePointNan => (single, b"NaN".to_vec()),
            GarbageKind::SinglePointInfinity => (single, b"1e999".to_vec()),
            GarbageKind::UnknownSinglePoint => ("telemetry/bogus_point".to_owned(), b"1".to_vec()),
        }
    }
}

/// Whether a payload received on `<...>/telemetry[/<point>]` would be accepted by a strict
/// protocol v1 parser for the given known points; used by tests to tell garbage from telemetry.
pub fn is_valid_telemetry(topic_suffix: &str, payload: &[u8], known_points: &[&str]) -> bool {
    if let Some(point) = topic_suffix.strip_prefix("telemetry/") {
        if !known_points.contains(&point) {
            return false;
        }
        let Ok(text) = std::str::from_utf8(payload) else {
            return false;
        };
        return match text.trim() {
            "true" | "false" => true,
            number => number.parse::<f64>().is_ok_and(f64::is_finite) && !number.is_empty(),
        };
    }
    if topic_suffix != "telemetry" {
        return false;
    }
    let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(payload) else {
        return false;
    };
    if object.is_empty() {
        return false;
    }
    object.iter().all(|(key, value)| match key.as_str() {
        "ts" => value.as_i64().is_some(),
        point => {
            known_points.contains(&point)
                && (value.is_boolean() || value.as_f64().is_some_and(f64::is_finite))
        }
    }) && object.keys().any(|k| k != "ts")
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn every_garbage_kind_is_rejected_by_a_strict_parser() {
        let mut rng = StdRng::seed_from_u64(1);
        for kind in GarbageKind::ALL {
            let (suffix, payload) = kind.message("temp_c", 1_764_300_000_000, 1 << 20, &mut rng);
            assert!(
                !is_valid_telemetry(&suffix, &payload, &["temp_c"]),
                "{} was accepted",
                kind.as_str()
            );
        }
    }

    #[test]
    fn the_huge_payload_has_exactly_the_configured_size() {
        let mut rng = StdRng::seed_from_u64(1);
        let (_, payload) = GarbageKind::Huge.message("temp_c", 1, 1 << 20, &mut rng);
        assert_eq!(payload.len(), 1 << 20);
    }

    #[test]
    fn good_telemetry_is_accepted_by_the_strict_parser() {
        let json = br#"{"ts":1764300000000,"temp_c":24.5}"#;
        assert!(is_valid_telemetry("telemetry", json, &["temp_c"]));
        assert!(is_valid_telemetry("telemetry/temp_c", b"24.5", &["temp_c"]));
        assert!(is_valid_telemetry("telemetry/smoke", b"false", &["smoke"]));
    }
}

//! The MQTT decoder on hostile input: the input is `<topic>\n<payload>`; the topic is parsed
//! under a fixed prefix and the payload decoded as its kind says (and as every kind, so a
//! payload found under one topic also exercises the others).
#![no_main]

use campusguard::ingest::mqtt::decode::{
    decode_meta, decode_single_point, decode_status, decode_telemetry, parse_topic, TopicKind,
};
use campusguard::model::DeviceKey;
use libfuzzer_sys::fuzz_target;

const PREFIX: &str = "campus";
const NOW_MS: i64 = 1_750_000_000_000;

fuzz_target!(|data: &[u8]| {
    let (topic, payload) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b""[..], data),
    };
    let fallback = DeviceKey::new("s", "d");
    let topic = String::from_utf8_lossy(topic);
    let (device, kind) = match parse_topic(PREFIX, &topic) {
        Ok((device, kind)) => (device, Some(kind)),
        Err(_) => (fallback, None),
    };
    match kind {
        Some(TopicKind::SinglePoint(point)) => {
            let _ = decode_single_point(&device, point, payload, 64, NOW_MS);
        }
        Some(TopicKind::Meta) => {
            let _ = decode_meta(payload);
        }
        Some(TopicKind::Status) => {
            let _ = decode_status(payload);
        }
        Some(TopicKind::Telemetry) | None => {}
    }
    if let Ok(decoded) = decode_telemetry(&device, payload, 256, NOW_MS) {
        // The decoder's promises: bounded, finite numbers, valid point names.
        assert!(decoded.readings.len() <= 256);
        for r in &decoded.readings {
            if let campusguard::model::Value::Number(v) = r.value {
                assert!(v.is_finite(), "non-finite reading {v}");
            }
            assert!(campusguard::model::valid_point(&r.sensor.point));
        }
    }
    let _ = decode_single_point(&device, "p", payload, 64, NOW_MS);
    let _ = decode_meta(payload);
    let _ = decode_status(payload);
});

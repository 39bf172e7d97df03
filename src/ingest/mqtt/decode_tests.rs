//! The malformed-payload corpus and the happy paths of device protocol v1.

use super::*;
use crate::model::{DeviceKey, Quality, Value};

fn dev() -> DeviceKey {
    DeviceKey::new("xhsy", "cab-1")
}

const NOW: i64 = 1_764_300_000_000;

#[test]
fn telemetry_with_timestamp_gives_one_good_reading_per_point() {
    let d = decode_telemetry(
        &dev(),
        br#"{"ts":1764300000000,"temp_c":24.5,"rh_pct":41,"voc_ppm":0.8,"fan_on":true}"#,
        64,
        NOW + 5,
    )
    .unwrap();
    assert!(d.rejected.is_empty());
    let got: Vec<(String, Value, i64, Quality)> = d
        .readings
        .iter()
        .map(|r| (r.sensor.point.to_string(), r.value, r.ts_ms, r.quality))
        .collect();
    assert_eq!(
        got,
        vec![
            ("temp_c".into(), Value::Number(24.5), NOW, Quality::Good),
            ("rh_pct".into(), Value::Number(41.0), NOW, Quality::Good),
            ("voc_ppm".into(), Value::Number(0.8), NOW, Quality::Good),
            ("fan_on".into(), Value::Bool(true), NOW, Quality::Good),
        ]
    );
    assert_eq!(d.readings[0].sensor.to_string(), "xhsy/cab-1/temp_c");
}

#[test]
fn telemetry_without_timestamp_uses_gateway_time_and_is_marked_uncertain() {
    let d = decode_telemetry(&dev(), br#"{"temp_c":1}"#, 64, NOW).unwrap();
    assert_eq!(d.readings[0].ts_ms, NOW);
    assert_eq!(d.readings[0].quality, Quality::Uncertain);
}

/// (name, payload, whole-message rejection or the per-point rejections and good count)
#[test]
fn malformed_payloads_are_rejected_with_the_right_reason_and_never_panic() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_obj = format!(r#"{{"a":{}1{}}}"#, "{\"b\":".repeat(500), "}".repeat(500));
    let huge = format!(r#"{{"temp_c":1,"pad":"{}"}}"#, "x".repeat(1 << 20));
    let many: String = format!(
        "{{{}}}",
        (0..100)
            .map(|i| format!("\"p{i}\":1"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let whole: Vec<(&str, Vec<u8>, Reject)> = vec![
        ("empty", b"".to_vec(), Reject::Empty),
        ("whitespace", b"  \n".to_vec(), Reject::Empty),
        ("truncated", br#"{"temp_c": 2"#.to_vec(), Reject::BadJson),
        (
            "binary junk",
            vec![0xff, 0xfe, 0x00, 0x13, 0x37],
            Reject::BadJson,
        ),
        ("bare NaN", br#"{"temp_c": NaN}"#.to_vec(), Reject::BadJson),
        (
            "bare Infinity",
            br#"{"temp_c": Infinity}"#.to_vec(),
            Reject::BadJson,
        ),
        ("array", b"[1,2,3]".to_vec(), Reject::NotAnObject),
        ("number", b"42".to_vec(), Reject::NotAnObject),
        ("string", br#""hello""#.to_vec(), Reject::NotAnObject),
        ("deep nesting", deep.into_bytes(), Reject::NotAnObject),
        (
            "trailing junk",
            br#"{"temp_c":1} xyz"#.to_vec(),
            Reject::BadJson,
        ),
        (
            "ts as string",
            br#"{"ts":"yesterday","temp_c":1}"#.to_vec(),
            Reject::BadTimestamp,
        ),
        (
            "ts in seconds",
            br#"{"ts":1764300000,"temp_c":1}"#.to_vec(),
            Reject::BadTimestamp,
        ),
        (
            "ts negative",
            br#"{"ts":-5,"temp_c":1}"#.to_vec(),
            Reject::BadTimestamp,
        ),
        ("too many points", many.into_bytes(), Reject::TooManyPoints),
    ];
    for (name, payload, reason) in whole {
        assert_eq!(
            decode_telemetry(&dev(), &payload, 64, NOW).map(|_| ()),
            Err(reason),
            "{name}"
        );
    }
    // Deep nesting inside a member is skipped without recursion and counts as a wrong type.
    let d = decode_telemetry(&dev(), deep_obj.as_bytes(), 64, NOW).unwrap();
    assert_eq!((d.readings.len(), d.rejected), (0, vec![Reject::WrongType]));
    // A huge payload is caught by size before decoding (in the source); the decoder copes too.
    let d = decode_telemetry(&dev(), huge.as_bytes(), 64, NOW).unwrap();
    assert_eq!(d.readings.len(), 1);
    assert_eq!(d.rejected, vec![Reject::WrongType]);

    let partial: Vec<(&str, &[u8], usize, Vec<Reject>)> = vec![
        (
            "string in number field",
            br#"{"temp_c":"hot","rh_pct":40}"#,
            1,
            vec![Reject::WrongType],
        ),
        ("null", br#"{"temp_c":null}"#, 0, vec![Reject::WrongType]),
        (
            "nested object",
            br#"{"temp_c":{"v":1},"rh_pct":2}"#,
            1,
            vec![Reject::WrongType],
        ),
        (
            "array value",
            br#"{"temp_c":[1,2]}"#,
            0,
            vec![Reject::WrongType],
        ),
        (
            "overflowing float",
            br#"{"temp_c":1e400}"#,
            0,
            vec![Reject::BadJson],
        ),
        (
            "bad point name",
            br#"{"temp c":1,"a/b":2,"ok":3}"#,
            1,
            vec![Reject::BadPointName, Reject::BadPointName],
        ),
        (
            "reserved status",
            br#"{"status":1}"#,
            0,
            vec![Reject::BadPointName],
        ),
        (
            "duplicate member",
            br#"{"temp_c":1,"temp_c":2}"#,
            1,
            vec![Reject::BadJson],
        ),
    ];
    for (name, payload, good, rejected) in partial {
        match decode_telemetry(&dev(), payload, 64, NOW) {
            Ok(d) => {
                assert_eq!(d.readings.len(), good, "{name}");
                assert_eq!(d.rejected, rejected, "{name}");
            }
            // serde_json refuses 1e400 outright; either way it never becomes a reading.
            Err(r) => assert_eq!((good, r), (0, Reject::BadJson), "{name}"),
        }
    }
}

#[test]
fn single_point_payloads_accept_numbers_and_booleans_only() {
    let ok: Vec<(&[u8], Value)> = vec![
        (b"24.5", Value::Number(24.5)),
        (b" 7 \n", Value::Number(7.0)),
        (b"-3e2", Value::Number(-300.0)),
        (b"true", Value::Bool(true)),
        (b"false", Value::Bool(false)),
    ];
    for (payload, value) in ok {
        let r = decode_single_point(&dev(), "temp_c", payload, 65536, NOW).unwrap();
        assert_eq!(r.value, value);
        assert_eq!(r.sensor.to_string(), "xhsy/cab-1/temp_c");
    }
    let bad: Vec<(&[u8], Reject)> = vec![
        (b"", Reject::Empty),
        (b"NaN", Reject::NotFinite),
        (b"inf", Reject::NotFinite),
        (b"-infinity", Reject::NotFinite),
        (b"hot", Reject::WrongType),
        (b"{\"v\":1}", Reject::WrongType),
        (&[0xff, 0x00], Reject::WrongType),
        (
            b"1234567890123456789012345678901234567890123456789012345678901234567890",
            Reject::TooLarge,
        ),
    ];
    for (payload, reason) in bad {
        assert_eq!(
            decode_single_point(&dev(), "temp_c", payload, 65536, NOW).map(|_| ()),
            Err(reason),
            "{:?}",
            String::from_utf8_lossy(payload)
        );
    }
}

#[test]
fn topics_are_parsed_under_the_prefix_and_anything_else_is_a_bad_topic() {
    let prefix = "t-1/campus";
    let cases: Vec<(&str, Result<TopicKind, Reject>)> = vec![
        ("t-1/campus/xhsy/cab-1/telemetry", Ok(TopicKind::Telemetry)),
        (
            "t-1/campus/xhsy/cab-1/telemetry/temp_c",
            Ok(TopicKind::SinglePoint("temp_c")),
        ),
        ("t-1/campus/xhsy/cab-1/meta", Ok(TopicKind::Meta)),
        ("t-1/campus/xhsy/cab-1/status", Ok(TopicKind::Status)),
        (
            "t-1/campus/xhsy/cab-1/telemetry/ts",
            Err(Reject::BadPointName),
        ),
        ("t-1/campus/xhsy/cab-1/other", Err(Reject::BadTopic)),
        ("t-1/campus/xhsy//telemetry", Err(Reject::BadTopic)),
        ("t-1/campus/xhsy/cab-1/telemetry/a/b", Err(Reject::BadTopic)),
        ("other/xhsy/cab-1/telemetry", Err(Reject::BadTopic)),
        ("t-1/campusX/xhsy/cab-1/telemetry", Err(Reject::BadTopic)),
    ];
    for (topic, expected) in cases {
        assert_eq!(
            parse_topic(prefix, topic).map(|(_, k)| k),
            expected,
            "{topic}"
        );
    }
}

#[test]
fn school_and_device_ids_outside_the_protocol_are_bad_topics() {
    let long = "x".repeat(65);
    let ok64 = "y".repeat(64);
    let topic = |school: &str, device: &str| format!("campus/{school}/{device}/telemetry");
    assert!(parse_topic("campus", &topic(&ok64, &ok64)).is_ok());
    for (school, device) in [
        (long.as_str(), "cab-1"),
        ("xhsy", long.as_str()),
        ("xh sy", "cab-1"),
        ("xhsy", "cab.1"),
        ("学校", "cab-1"),
        ("xhsy", "cab\u{7}"),
        ("xhsy\u{202e}", "cab-1"),
        ("xhsy", "cab%2f1"),
    ] {
        assert_eq!(
            parse_topic("campus", &topic(school, device)).map(|(_, k)| k),
            Err(Reject::BadTopic),
            "{school:?}/{device:?}"
        );
    }
}

#[test]
fn a_timestamp_more_than_a_day_ahead_of_the_gateway_is_refused() {
    let at = |ts: i64| format!(r#"{{"ts":{ts},"temp_c":1}}"#);
    let day = MAX_FUTURE_MS;
    assert!(decode_telemetry(&dev(), at(NOW + day).as_bytes(), 64, NOW).is_ok());
    assert_eq!(
        decode_telemetry(&dev(), at(NOW + day + 1).as_bytes(), 64, NOW),
        Err(Reject::BadTimestamp)
    );
    // Old readings (a device catching up after an outage) are fine.
    assert!(decode_telemetry(&dev(), at(NOW - 7 * day).as_bytes(), 64, NOW).is_ok());
}

#[test]
fn status_and_meta_payloads_are_checked() {
    assert_eq!(decode_status(b"online"), Ok(Some(true)));
    assert_eq!(decode_status(b"offline"), Ok(Some(false)));
    assert_eq!(decode_status(b""), Ok(None));
    assert_eq!(decode_status(b"maybe"), Err(Reject::BadStatus));
    let meta = decode_meta(
        br#"{"profile":"chem_cabinet","building":"B","room":"301","name":"Cabinet 1","fw":"1.2"}"#,
    )
    .unwrap()
    .unwrap();
    assert_eq!(meta.profile.as_deref(), Some("chem_cabinet"));
    assert_eq!(meta.room.as_deref(), Some("301"));
    assert_eq!(decode_meta(b""), Ok(None));
    assert_eq!(decode_meta(b"{not json"), Err(Reject::BadMeta));
    assert_eq!(decode_meta(br#"{"profile":5}"#), Err(Reject::BadMeta));
    let long = format!(r#"{{"name":"{}"}}"#, "x".repeat(200));
    assert_eq!(decode_meta(long.as_bytes()), Err(Reject::BadMeta));
}

//! Line-protocol encoder: turns a [`TaggedReading`] into one InfluxDB line
//! `profile,school=..,building=..,room=..,device=..,point=..,source=.. value=<v> <ts_ms>`
//! appended to a batch buffer. The bytes are kept as they are for retries and the disk spool.
//!
//! Escaping follows the line-protocol spec: commas and spaces in the measurement; commas,
//! equals signs and spaces in tag values; backslashes per [`Dialect`]. Empty tag values are
//! skipped. Line breaks and other control characters cannot be written in line protocol at all
//! and are replaced by a space. A non-finite number is refused (ingest rejects them already;
//! this guards the store against a line that would fail the whole batch).

use std::io::Write;

use crate::model::{TaggedReading, Value};

use super::config::BoolEncoding;

/// How a store reads backslashes in measurements and tag values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// The spec (InfluxDB 2.x, VictoriaMetrics): `\\` is one backslash.
    Spec,
    /// InfluxDB 1.x: a backslash is always literal (`\\` would be stored as two); a backslash
    /// that ends a value or stands before `,`, `=` or space cannot be written and becomes
    /// U+FFFD.
    InfluxV1,
}

/// Why a reading cannot be written as a line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    #[error("value {0} is not a finite number")]
    NotFinite(f64),
    #[error("measurement {0:?} is empty or starts with '#'")]
    BadMeasurement(String),
}

/// Appends lines to a byte buffer.
#[derive(Clone, Copy, Debug)]
pub struct LineEncoder {
    pub dialect: Dialect,
    pub bools: BoolEncoding,
}

impl LineEncoder {
    pub fn new(dialect: Dialect, bools: BoolEncoding) -> Self {
        Self { dialect, bools }
    }

    /// Appends one line (with its trailing `\n`) to `out`; on error `out` is left unchanged.
    pub fn encode(&self, tagged: &TaggedReading, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let reading = &tagged.reading;
        if let Value::Number(v) = reading.value {
            if !v.is_finite() {
                return Err(EncodeError::NotFinite(v));
            }
        }
        let measurement: &str = &tagged.profile;
        if measurement.is_empty() || measurement.starts_with('#') {
            return Err(EncodeError::BadMeasurement(measurement.to_owned()));
        }
        self.escape(measurement, Target::Measurement, out);
        // Sorted by key, which is what InfluxDB recommends for write speed.
        let tags: [(&str, &str); 6] = [
            ("building", &tagged.building),
            ("device", &reading.sensor.device),
            ("point", &reading.sensor.point),
            ("room", &tagged.room),
            ("school", &reading.sensor.school),
            ("source", reading.source.as_str()),
        ];
        debug_assert!(tags.windows(2).all(|w| w[0].0 < w[1].0));
        for (key, value) in tags {
            if value.is_empty() {
                continue;
            }
            out.push(b',');
            out.extend_from_slice(key.as_bytes());
            out.push(b'=');
            self.escape(value, Target::Tag, out);
        }
        out.extend_from_slice(b" value=");
        match (reading.value, self.bools) {
            (Value::Number(v), _) => push_float(v, out),
            (Value::Bool(b), BoolEncoding::Float) => out.push(if b { b'1' } else { b'0' }),
            (Value::Bool(b), BoolEncoding::Boolean) => {
                out.extend_from_slice(if b { b"true" } else { b"false" })
            }
        }
        // Writing into a Vec cannot fail.
        let _ = writeln!(out, " {}", reading.ts_ms);
        Ok(())
    }

    fn escape(&self, text: &str, target: Target, out: &mut Vec<u8>) {
        // Fast path: nothing to escape (0xC2 starts the C1 control characters in UTF-8).
        if text
            .bytes()
            .all(|b| b > b' ' && !matches!(b, b',' | b'=' | b'\\' | 0x7f | 0xc2))
        {
            out.extend_from_slice(text.as_bytes());
            return;
        }
        let special = |c: char| match target {
            Target::Measurement => c == ',' || c == ' ',
            Target::Tag => c == ',' || c == ' ' || c == '=',
        };
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            let c = if c.is_control() { ' ' } else { c };
            match c {
                '\\' => match self.dialect {
                    Dialect::Spec => out.extend_from_slice(b"\\\\"),
                    Dialect::InfluxV1 => {
                        let next = chars.peek().map(|&n| if n.is_control() { ' ' } else { n });
                        if next.is_none_or(special) {
                            out.extend_from_slice("\u{FFFD}".as_bytes());
                        } else {
                            out.push(b'\\');
                        }
                    }
                },
                c if special(c) => {
                    out.push(b'\\');
                    out.push(c as u8);
                }
                c => {
                    let mut utf8 = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Target {
    Measurement,
    Tag,
}

/// Shortest text that parses back to exactly `v`; never an integer suffix, so the field
/// stays a float even for whole numbers.
fn push_float(v: f64, out: &mut Vec<u8>) {
    // `Display` of f64 is the shortest round-trip form and never uses an exponent. Writing
    // into a Vec cannot fail.
    let _ = write!(out, "{v}");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{Quality, Reading, SensorId, Source};

    fn tagged(
        profile: &str,
        building: &str,
        room: &str,
        sensor: &str,
        value: Value,
    ) -> TaggedReading {
        let sensor = SensorId::parse(sensor).unwrap();
        TaggedReading {
            reading: Reading {
                sensor,
                ts_ms: 1_764_300_000_123,
                value,
                quality: Quality::Good,
                source: Source::Mqtt,
            },
            profile: Arc::from(profile),
            building: Arc::from(building),
            room: Arc::from(room),
        }
    }

    fn line(encoder: LineEncoder, reading: &TaggedReading) -> String {
        let mut out = Vec::new();
        encoder.encode(reading, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    const SPEC: LineEncoder = LineEncoder {
        dialect: Dialect::Spec,
        bools: BoolEncoding::Float,
    };
    const V1: LineEncoder = LineEncoder {
        dialect: Dialect::InfluxV1,
        bools: BoolEncoding::Float,
    };

    #[test]
    fn a_plain_reading_becomes_one_line_with_sorted_tags_and_a_millisecond_timestamp() {
        let r = tagged(
            "chem_cabinet",
            "B",
            "301",
            "s1/cab1/temp_c",
            Value::Number(24.5),
        );
        assert_eq!(
            line(SPEC, &r),
            "chem_cabinet,building=B,device=cab1,point=temp_c,room=301,school=s1,source=mqtt \
             value=24.5 1764300000123\n"
        );
    }

    #[test]
    fn whole_numbers_stay_floats_and_floats_round_trip_exactly() {
        for v in [
            0.0,
            -0.0,
            1.0,
            41.0,
            0.1,
            -273.15,
            1e-7,
            123456789.123,
            1e300,
            f64::MIN_POSITIVE,
        ] {
            let r = tagged("p", "", "", "s/d/x", Value::Number(v));
            let text = line(SPEC, &r);
            let field = text
                .split(' ')
                .nth(1)
                .unwrap()
                .strip_prefix("value=")
                .unwrap();
            assert!(!field.ends_with('i'), "{field}");
            assert_eq!(
                field.parse::<f64>().unwrap().to_bits(),
                v.to_bits(),
                "{field}"
            );
        }
    }

    #[test]
    fn booleans_are_one_and_zero_by_default_and_true_false_on_request() {
        let on = tagged("p", "", "", "s/d/fan_on", Value::Bool(true));
        let off = tagged("p", "", "", "s/d/fan_on", Value::Bool(false));
        assert!(line(SPEC, &on).contains(" value=1 "));
        assert!(line(SPEC, &off).contains(" value=0 "));
        let native = LineEncoder::new(Dialect::Spec, BoolEncoding::Boolean);
        assert!(line(native, &on).contains(" value=true "));
        assert!(line(native, &off).contains(" value=false "));
    }

    #[test]
    fn empty_tag_values_are_left_out() {
        let r = tagged(
            "room_temperature",
            "",
            "",
            "s1/t1/temp_c",
            Value::Number(20.0),
        );
        assert_eq!(
            line(SPEC, &r),
            "room_temperature,device=t1,point=temp_c,school=s1,source=mqtt value=20 1764300000123\n"
        );
    }

    #[test]
    fn commas_spaces_and_equals_signs_are_escaped_where_the_spec_says() {
        let r = tagged(
            "my profile,x",
            "Block A",
            "R=1,2",
            "s1/d 1/p",
            Value::Number(1.0),
        );
        assert_eq!(
            line(SPEC, &r),
            "my\\ profile\\,x,building=Block\\ A,device=d\\ 1,point=p,room=R\\=1\\,2,school=s1,\
             source=mqtt value=1 1764300000123\n"
        );
    }

    #[test]
    fn an_equals_sign_in_the_measurement_is_not_escaped() {
        let r = tagged("a=b", "", "", "s/d/p", Value::Number(1.0));
        assert!(line(SPEC, &r).starts_with("a=b,"));
    }

    #[test]
    fn backslashes_are_doubled_for_spec_stores() {
        let r = tagged("p", "a\\b", "end\\", "s/d/p", Value::Number(1.0));
        let text = line(SPEC, &r);
        assert!(text.contains("building=a\\\\b,"), "{text}");
        assert!(text.contains("room=end\\\\,"), "{text}");
    }

    #[test]
    fn backslashes_stay_literal_for_influxdb_1_unless_they_cannot_be_written() {
        let r = tagged("p", "a\\b", "end\\", "s/d/p", Value::Number(1.0));
        let text = line(V1, &r);
        assert!(text.contains("building=a\\b,"), "{text}");
        assert!(text.contains("room=end\u{FFFD},"), "{text}");
        let before_comma = tagged("p", "x\\,y", "", "s/d/p", Value::Number(1.0));
        assert!(line(V1, &before_comma).contains("building=x\u{FFFD}\\,y,"));
        let doubled = tagged("p", "a\\\\b", "", "s/d/p", Value::Number(1.0));
        assert!(line(V1, &doubled).contains("building=a\\\\b,"));
    }

    #[test]
    fn line_breaks_and_control_characters_become_escaped_spaces() {
        let r = tagged("p", "A\nB", "1\r\t2", "s/d/p", Value::Number(1.0));
        let text = line(SPEC, &r);
        assert_eq!(text.matches('\n').count(), 1, "{text:?}");
        assert!(text.contains("building=A\\ B,"), "{text:?}");
        assert!(text.contains("room=1\\ \\ 2,"), "{text:?}");
        let c1 = tagged("p", "A\u{85}B", "é", "s/d/p", Value::Number(1.0));
        let text = line(SPEC, &c1);
        assert!(text.contains("building=A\\ B,"), "{text:?}");
        assert!(text.contains("room=é,"), "{text:?}");
    }

    #[test]
    fn unicode_passes_through_unchanged() {
        let r = tagged(
            "p",
            "实验楼",
            "化学室 3",
            "一中/柜1/temp_c",
            Value::Number(1.0),
        );
        let text = line(SPEC, &r);
        assert!(text.contains("building=实验楼,"));
        assert!(text.contains("room=化学室\\ 3,"));
        assert!(text.contains("school=一中,"));
    }

    #[test]
    fn non_finite_numbers_and_comment_measurements_are_refused_without_touching_the_buffer() {
        let mut out = b"kept\n".to_vec();
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let r = tagged("p", "", "", "s/d/p", Value::Number(v));
            assert!(SPEC.encode(&r, &mut out).is_err());
        }
        for m in ["", "#comment"] {
            let r = tagged(m, "", "", "s/d/p", Value::Number(1.0));
            assert!(SPEC.encode(&r, &mut out).is_err());
        }
        assert_eq!(out, b"kept\n");
    }

    #[test]
    fn negative_timestamps_before_1970_are_written_as_is() {
        let mut r = tagged("p", "", "", "s/d/p", Value::Number(1.0));
        r.reading.ts_ms = -5;
        assert!(line(SPEC, &r).ends_with(" value=1 -5\n"));
    }
}

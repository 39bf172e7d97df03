//! Calendar arithmetic in a fixed local offset (numbering months, ledger months, dates in the
//! ledger), without a time-zone database: schools of one district share one offset.

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

const DAY_MS: i64 = 86_400_000;

/// The local date (year, month, day) of Unix ms `at`.
pub fn local_date(at: i64, offset_ms: i64) -> (i64, u32, u32) {
    civil_from_days((at + offset_ms).div_euclid(DAY_MS))
}

/// `YYYY-MM-DD HH:MM` in local time.
pub fn format_local(at: i64, offset_ms: i64) -> String {
    let local = at + offset_ms;
    let (y, m, d) = civil_from_days(local.div_euclid(DAY_MS));
    let minutes = local.rem_euclid(DAY_MS) / 60_000;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        minutes / 60,
        minutes % 60
    )
}

/// Parses `YYYY-MM` into (year, month).
pub fn parse_month(s: &str) -> Option<(i64, u32)> {
    let (y, m) = s.split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    let y: i64 = y.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    ((1..=12).contains(&m) && (1970..=9999).contains(&y)).then_some((y, m))
}

/// [start, end) of a local month in Unix ms.
pub fn month_range(y: i64, m: u32, offset_ms: i64) -> (i64, i64) {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (
        days_from_civil(y, m, 1) * DAY_MS - offset_ms,
        days_from_civil(ny, nm, 1) * DAY_MS - offset_ms,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip_over_centuries() {
        for z in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }

    #[test]
    fn a_local_month_starts_at_local_midnight() {
        let (from, to) = month_range(2026, 11, 8 * 3_600_000);
        assert_eq!(format_local(from, 8 * 3_600_000), "2026-11-01 00:00");
        assert_eq!(format_local(to, 8 * 3_600_000), "2026-12-01 00:00");
        assert_eq!(local_date(from - 1, 8 * 3_600_000), (2026, 10, 31));
        let (_, dec_end) = month_range(2026, 12, 0);
        assert_eq!(format_local(dec_end, 0), "2027-01-01 00:00");
    }

    #[test]
    fn months_parse_only_in_the_yyyy_mm_form() {
        assert_eq!(parse_month("2026-11"), Some((2026, 11)));
        for bad in ["2026-13", "2026-1", "26-11", "2026/11", "", "2026-00"] {
            assert_eq!(parse_month(bad), None, "{bad}");
        }
    }
}

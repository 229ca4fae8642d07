//! The JSON spellings of meta/v1 Time, MicroTime and Duration.
//!
//! Kubernetes writes times in UTC as RFC 3339 (`2024-01-02T03:04:05Z`, MicroTime with
//! exactly six fractional digits) and durations the way Go's `time.Duration` prints
//! them (`1h0m0s`, `1.5s`, `300ms`). Only years 0000-9999 are representable, as in Go.

const SECS_PER_DAY: i64 = 86_400;
/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z as Unix seconds.
const MIN_SECS: i64 = -62_167_219_200;
const MAX_SECS: i64 = 253_402_300_799;

/// Formats Unix `secs` (+ `micros`, when given) as RFC 3339 in UTC.
pub(super) fn format_rfc3339(secs: i64, micros: Option<u32>) -> Result<String, String> {
    if !(MIN_SECS..=MAX_SECS).contains(&secs) {
        return Err(format!("time {secs}s since the epoch is outside years 0-9999"));
    }
    let (year, month, day) = civil_from_days(secs.div_euclid(SECS_PER_DAY));
    let of_day = secs.rem_euclid(SECS_PER_DAY);
    let (h, m, s) = (of_day / 3600, of_day / 60 % 60, of_day % 60);
    let fraction = micros.map(|us| format!(".{us:06}")).unwrap_or_default();
    Ok(format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}{fraction}Z"))
}

/// Parses RFC 3339 (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`) into Unix seconds and nanos.
pub(super) fn parse_rfc3339(text: &str) -> Result<(i64, u32), String> {
    let bad = || format!("invalid RFC 3339 time {text:?}");
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let num = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let digits = text.get(range).ok_or_else(bad)?;
        if !digits.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        digits.parse().map_err(|_| bad())
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(bad());
    }
    let mut rest = &text[19..];
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return Err(bad());
        }
        nanos = frac[..digits].parse::<u32>().map_err(|_| bad())? * 10u32.pow(9 - digits as u32);
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) && rest.as_bytes()[3] == b':' => {
            let (oh, om) = (num(text.len() - 5..text.len() - 3)?, num(text.len() - 2..text.len())?);
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return Err(bad()),
    };
    let days = days_from_civil(year, month, day);
    Ok((days * SECS_PER_DAY + hour * 3600 + minute * 60 + second - offset, nanos))
}

/// Go's `time.Duration.String()`.
pub(super) fn format_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    let body = if u < 1_000 {
        format!("{u}ns")
    } else if u < 1_000_000 {
        format!("{}µs", decimal(u, 3))
    } else if u < 1_000_000_000 {
        format!("{}ms", decimal(u, 6))
    } else {
        // Go stops at hours: days vary in length.
        let seconds = format!("{}s", decimal(u % 60_000_000_000, 9));
        match (u / 3_600_000_000_000, u / 60_000_000_000 % 60) {
            (0, 0) => seconds,
            (0, m) => format!("{m}m{seconds}"),
            (h, m) => format!("{h}h{m}m{seconds}"),
        }
    };
    format!("{sign}{body}")
}

/// `value / 10^scale` with the remainder as a decimal fraction, trailing zeros trimmed.
fn decimal(value: u64, scale: u32) -> String {
    let unit = 10u64.pow(scale);
    let (whole, frac) = (value / unit, value % unit);
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:0width$}", width = scale as usize);
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Parses Go's duration syntax (`1h2m3.5s`, `-300ms`, `0`) into nanoseconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let bad = || format!("invalid duration {text:?}");
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let whole_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let whole: i128 = if whole_len == 0 { 0 } else { rest[..whole_len].parse().map_err(|_| bad())? };
        rest = &rest[whole_len..];
        let (frac, frac_len) = match rest.strip_prefix('.') {
            Some(f) => {
                let n = f.bytes().take_while(u8::is_ascii_digit).count().min(18);
                rest = &f[f.bytes().take_while(u8::is_ascii_digit).count()..];
                (if n == 0 { 0 } else { f[..n].parse::<i128>().map_err(|_| bad())? }, n)
            }
            None => (0, 0),
        };
        if whole_len == 0 && frac_len == 0 {
            return Err(bad());
        }
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit: i128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += whole.checked_mul(unit).ok_or_else(bad)? + frac * unit / 10i128.pow(frac_len as u32);
        if total > i128::from(i64::MAX) + 1 {
            return Err(bad());
        }
    }
    let total = if negative { -total } else { total };
    i64::try_from(total).map_err(|_| bad())
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) -> days since 1970-01-01; the inverse of `civil_from_days`.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times() {
        assert_eq!(format_rfc3339(0, None).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_704_164_645, None).unwrap(), "2024-01-02T03:04:05Z");
        assert_eq!(format_rfc3339(1_709_164_800, None).unwrap(), "2024-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(-1, Some(5)).unwrap(), "1969-12-31T23:59:59.000005Z");
        assert_eq!(format_rfc3339(MIN_SECS, None).unwrap(), "0000-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(MAX_SECS, None).unwrap(), "9999-12-31T23:59:59Z");
        assert!(format_rfc3339(MAX_SECS + 1, None).is_err());
        assert!(format_rfc3339(i64::MIN, None).is_err());
    }

    #[test]
    fn parses_times() {
        assert_eq!(parse_rfc3339("2024-01-02T03:04:05Z").unwrap(), (1_704_164_645, 0));
        assert_eq!(parse_rfc3339("2024-01-02T04:04:05.123456+01:00").unwrap(), (1_704_164_645, 123_456_000));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59.000005Z").unwrap(), (-1, 5_000));
        for bad in [
            "",
            "2024-01-02",
            "2024-13-02T03:04:05Z",
            "2023-02-29T00:00:00Z",
            "2024-01-02T03:04:05",
            "2024-01-02T03:04:05.Z",
            "2024-01-02T03:04:05+0100",
            "2024-01-02T03:04:05é",
            "2024-01-02T03:04:05+éé0",
            "2024-01-02T03:04:05+0é:0",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
        for secs in [MIN_SECS, -86_401, 0, 951_782_400, 1_704_164_645, MAX_SECS] {
            assert_eq!(parse_rfc3339(&format_rfc3339(secs, None).unwrap()).unwrap(), (secs, 0));
        }
    }

    #[test]
    fn durations_match_go() {
        for (nanos, text) in [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (300_000_000, "300ms"),
            (1_500_000_000, "1.5s"),
            (60_000_000_000, "1m0s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_000_000_001, "1h2m3.000000001s"),
            (-90_000_000_000, "-1m30s"),
        ] {
            assert_eq!(format_duration(nanos), text);
            assert_eq!(parse_duration(text).unwrap(), nanos, "{text}");
        }
        assert_eq!(parse_duration("1h30m").unwrap(), 5_400_000_000_000);
        assert_eq!(parse_duration(".5s").unwrap(), 500_000_000);
        for bad in ["", "1", "h", "1x", "1.s.", "-", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        format_duration(i64::MIN);
    }
}

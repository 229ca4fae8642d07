//! Cron schedules as CronJobs write them: five fields (minute, hour, day of month, month,
//! day of week) of `*`, numbers, names (`jan`, `mon`), ranges `a-b`, steps `*/n` or
//! `a-b/n`, lists `a,b`, `?` for `*` in the day fields; and the macros `@yearly`
//! (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`) and `@hourly`. As in
//! cron (and the robfig/cron parser Kubernetes uses), when both day fields are
//! restricted a day matching either one matches.

use k8s_openapi::jiff::civil::DateTime;
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{Timestamp, ToSpan, Zoned};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error("expected exactly 5 fields, found {0}: {1:?}")]
    FieldCount(usize, String),
    #[error("unrecognized descriptor: {0}")]
    Descriptor(String),
    #[error("failed to parse {field} {value:?}: {reason}")]
    Field { field: &'static str, value: String, reason: String },
}

/// A parsed schedule: for each field, a bit per allowed value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Whether a day field is unrestricted (`*` or `?`), which decides how they combine.
    any_day: bool,
    any_weekday: bool,
}

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: FieldSpec = FieldSpec { name: "minute", min: 0, max: 59, names: &[] };
const HOUR: FieldSpec = FieldSpec { name: "hour", min: 0, max: 23, names: &[] };
const DAY: FieldSpec = FieldSpec { name: "day of month", min: 1, max: 31, names: &[] };
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
};
const WEEKDAY: FieldSpec =
    FieldSpec { name: "day of week", min: 0, max: 6, names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"] };

impl std::str::FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Self, ScheduleError> {
        let text = text.trim();
        let expanded = match text {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => return Err(ScheduleError::Descriptor(other.into())),
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(ScheduleError::FieldCount(fields.len(), text.into()));
        };
        let unrestricted = |f: &str| f == "*" || f == "?";
        Ok(Schedule {
            minutes: parse_field(minute, &MINUTE)?,
            hours: parse_field(hour, &HOUR)?,
            days: parse_field(day, &DAY)?,
            months: parse_field(month, &MONTH)?,
            // 7 is Sunday too.
            weekdays: {
                let bits = parse_field(weekday, &FieldSpec { max: 7, ..WEEKDAY })?;
                (bits | (bits >> 7)) & 0x7f
            },
            any_day: unrestricted(day),
            any_weekday: unrestricted(weekday),
        })
    }
}

fn parse_field(field: &str, spec: &FieldSpec) -> Result<u64, ScheduleError> {
    let error = |reason: String| ScheduleError::Field { field: spec.name, value: field.into(), reason };
    let mut bits = 0u64;
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step.parse().map_err(|_| error(format!("invalid step {step:?}")))?;
                if step == 0 {
                    return Err(error("step of zero".into()));
                }
                (range, Some(step))
            }
            None => (part, None),
        };
        let (low, high) = if range == "*" || range == "?" {
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, spec).map_err(error)?, value(b, spec).map_err(error)?)
        } else {
            let single = value(range, spec).map_err(error)?;
            // `a/n` means from a to the end, stepping by n.
            (single, if step.is_some() { spec.max } else { single })
        };
        if low > high {
            return Err(error(format!("beginning of range ({low}) beyond end of range ({high})")));
        }
        let mut at = low;
        while at <= high {
            bits |= 1 << at;
            at += step.unwrap_or(1);
        }
    }
    Ok(bits)
}

fn value(text: &str, spec: &FieldSpec) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    let number = match spec.names.iter().position(|n| *n == lower) {
        Some(index) => index as u32 + if spec.names.len() == 12 { 1 } else { 0 },
        None => text.parse().map_err(|_| format!("invalid value {text:?}"))?,
    };
    if number < spec.min || number > spec.max {
        return Err(format!("value ({number}) out of range [{}, {}]", spec.min, spec.max));
    }
    Ok(number)
}

fn has(bits: u64, value: i8) -> bool {
    value >= 0 && bits & (1 << value) != 0
}

impl Schedule {
    fn day_matches(&self, at: &DateTime) -> bool {
        let day = has(self.days, at.day());
        let weekday = has(self.weekdays, at.weekday().to_sunday_zero_offset());
        if self.any_day || self.any_weekday {
            day && weekday
        } else {
            day || weekday
        }
    }

    /// The first time strictly after `after` that the schedule names, read in `tz`; None
    /// when there is none within five years (e.g. `0 0 30 2 *`).
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        // Start at the next whole minute, then skip whole months, days, hours and
        // minutes that do not match, as cron does.
        let start = after.to_zoned(tz.clone()).datetime();
        let mut at = start.checked_add(1.minute()).ok()?.with().second(0).subsec_nanosecond(0).build().ok()?;
        let limit = start.year() + 5;
        while at.year() <= limit {
            if !has(self.months, at.month()) {
                at = at.first_of_month().checked_add(1.month()).ok()?.with().hour(0).minute(0).build().ok()?;
                continue;
            }
            if !self.day_matches(&at) {
                at = at.date().checked_add(1.day()).ok()?.to_datetime(k8s_openapi::jiff::civil::Time::midnight());
                continue;
            }
            if !has(self.hours, at.hour()) {
                at = at.with().minute(0).build().ok()?.checked_add(1.hour()).ok()?;
                continue;
            }
            if !has(self.minutes, at.minute()) {
                at = at.checked_add(1.minute()).ok()?;
                continue;
            }
            // A local time skipped by a DST change runs at the first instant after the gap.
            let zoned: Zoned = tz.to_ambiguous_zoned(at).compatible().ok()?;
            let instant = zoned.timestamp();
            if instant > after {
                return Some(instant);
            }
            at = at.checked_add(1.minute()).ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn next(schedule: &str, after: &str) -> String {
        let schedule: Schedule = schedule.parse().unwrap();
        schedule.next_after(at(after), &TimeZone::UTC).map(|t| t.to_string()).unwrap_or_default()
    }

    #[test]
    fn fields_ranges_steps_lists_and_names() {
        assert_eq!(next("* * * * *", "2030-01-01T00:00:30Z"), "2030-01-01T00:01:00Z");
        assert_eq!(next("* * * * *", "2030-01-01T00:01:00Z"), "2030-01-01T00:02:00Z");
        assert_eq!(next("*/15 * * * *", "2030-01-01T00:16:00Z"), "2030-01-01T00:30:00Z");
        assert_eq!(next("5-10/2 3 * * *", "2030-01-01T03:07:00Z"), "2030-01-01T03:09:00Z");
        assert_eq!(next("0 9,17 * * *", "2030-01-01T10:00:00Z"), "2030-01-01T17:00:00Z");
        // 2030-01-01 is a Tuesday.
        assert_eq!(next("0 0 * * MON-FRI", "2030-01-04T01:00:00Z"), "2030-01-07T00:00:00Z");
        assert_eq!(next("0 0 * * 7", "2030-01-01T00:00:00Z"), "2030-01-06T00:00:00Z");
        assert_eq!(next("0 0 1 feb,mar ?", "2030-01-05T00:00:00Z"), "2030-02-01T00:00:00Z");
        // Both day fields restricted: either matches (the 15th, or a Sunday).
        assert_eq!(next("0 0 15 * sun", "2030-01-01T00:00:00Z"), "2030-01-06T00:00:00Z");
        assert_eq!(next("0 0 29 2 *", "2030-01-01T00:00:00Z"), "2032-02-29T00:00:00Z");
        assert_eq!(next("0 0 30 2 *", "2030-01-01T00:00:00Z"), "");
    }

    #[test]
    fn macros() {
        assert_eq!(next("@hourly", "2030-01-01T00:30:00Z"), "2030-01-01T01:00:00Z");
        assert_eq!(next("@daily", "2030-01-01T00:30:00Z"), "2030-01-02T00:00:00Z");
        assert_eq!(next("@weekly", "2030-01-01T00:30:00Z"), "2030-01-06T00:00:00Z");
        assert_eq!(next("@monthly", "2030-01-01T00:30:00Z"), "2030-02-01T00:00:00Z");
        assert_eq!(next("@yearly", "2030-01-01T00:30:00Z"), "2031-01-01T00:00:00Z");
        assert_eq!("@every 5m".parse::<Schedule>(), Err(ScheduleError::Descriptor("@every 5m".into())));
    }

    #[test]
    fn bad_schedules_are_refused() {
        for bad in [
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "*/0 * * * *",
            "5-1 * * * *",
            "x * * * *",
        ] {
            assert!(bad.parse::<Schedule>().is_err(), "{bad}");
        }
    }

    #[test]
    fn time_zones() {
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        let schedule: Schedule = "0 9 * * *".parse().unwrap();
        // 09:00 in Berlin in winter is 08:00 UTC.
        assert_eq!(schedule.next_after(at("2030-01-01T00:00:00Z"), &tz), Some(at("2030-01-01T08:00:00Z")));
        // The skipped hour of the spring change (02:00-03:00 local) runs just after it.
        let skipped: Schedule = "30 2 * * *".parse().unwrap();
        assert_eq!(skipped.next_after(at("2030-03-30T12:00:00Z"), &tz), Some(at("2030-03-31T01:30:00Z")));
    }
}

//! The cron schedule syntax CronJobs accept: five fields or a `@` descriptor, checked as
//! Kubernetes' cron parser (robfig/cron's `ParseStandard`) checks them, with its messages.

/// A field's bounds and, for months and weekdays, the names it accepts.
struct Bounds {
    min: u64,
    max: u64,
    names: &'static [&'static str],
}

const MINUTES: Bounds = Bounds { min: 0, max: 59, names: &[] };
const HOURS: Bounds = Bounds { min: 0, max: 23, names: &[] };
const DAYS_OF_MONTH: Bounds = Bounds { min: 1, max: 31, names: &[] };
/// Names are numbered from `min`.
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
};
const DAYS_OF_WEEK: Bounds = Bounds { min: 0, max: 6, names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"] };
const DESCRIPTORS: &[&str] = &["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"];

/// Why `schedule` is not a valid schedule, if it is not.
pub(super) fn schedule_error(schedule: &str) -> Option<String> {
    if schedule.is_empty() {
        return Some("empty spec string".into());
    }
    // A leading time zone is the server's to resolve; only the rest is checked here.
    let spec = if schedule.starts_with("TZ=") || schedule.starts_with("CRON_TZ=") {
        schedule.split_once(' ').map_or("", |(_, rest)| rest.trim())
    } else {
        schedule
    };
    if spec.starts_with('@') {
        return descriptor_error(spec);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Some(format!("expected exactly 5 fields, found {}: [{}]", fields.len(), fields.join(" ")));
    }
    let bounds = [MINUTES, HOURS, DAYS_OF_MONTH, MONTHS, DAYS_OF_WEEK];
    fields.iter().zip(&bounds).find_map(|(field, bounds)| {
        field.split(',').filter(|range| !range.is_empty()).find_map(|range| range_error(range, bounds))
    })
}

fn descriptor_error(descriptor: &str) -> Option<String> {
    if DESCRIPTORS.contains(&descriptor) {
        return None;
    }
    match descriptor.strip_prefix("@every ") {
        Some(duration) => (!is_duration(duration))
            .then(|| format!("failed to parse duration {descriptor}: time: invalid duration {duration:?}")),
        None => Some(format!("unrecognized descriptor: {descriptor}")),
    }
}

/// Go's `time.ParseDuration` syntax: `1h30m`, `1.5s`, `-2m`, `0`.
fn is_duration(text: &str) -> bool {
    let text = text.strip_prefix(['+', '-']).unwrap_or(text);
    if text == "0" {
        return true;
    }
    let mut rest = text;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let number = rest.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
        let digits = &rest[..number];
        if digits.is_empty() || digits == "." || digits.matches('.').count() > 1 {
            return false;
        }
        rest = &rest[number..];
        let Some(unit) = ["ns", "us", "µs", "μs", "ms", "s", "m", "h"].into_iter().find(|u| rest.starts_with(u))
        else {
            return false;
        };
        rest = &rest[unit.len()..];
    }
    true
}

/// One comma-separated part of a field: `*`, `5`, `1-5`, `*/15`, `mon-fri`, `3/2`.
fn range_error(range: &str, bounds: &Bounds) -> Option<String> {
    let mut range_and_step = range.split('/');
    let span = range_and_step.next().unwrap_or("");
    let step = range_and_step.next();
    if range_and_step.next().is_some() {
        return Some(format!("too many slashes: {range}"));
    }
    let ends: Vec<&str> = span.split('-').collect();
    let parse = |text: &str| int_or_name(text, bounds);
    let (start, mut end) = match ends.as_slice() {
        ["*" | "?", ..] => (bounds.min, bounds.max),
        [single] => match parse(single) {
            Ok(value) => (value, value),
            Err(error) => return Some(error),
        },
        [low, high] => match (parse(low), parse(high)) {
            (Ok(low), Ok(high)) => (low, high),
            (Err(error), _) | (_, Err(error)) => return Some(error),
        },
        _ => return Some(format!("too many hyphens: {range}")),
    };
    let step = match step {
        None => 1,
        Some(step) => {
            // `N/step` runs from N to the field's maximum.
            if ends.len() == 1 {
                end = bounds.max;
            }
            match positive_int(step) {
                Ok(step) => step,
                Err(error) => return Some(error),
            }
        }
    };
    if start < bounds.min {
        Some(format!("beginning of range ({start}) below minimum ({}): {range}", bounds.min))
    } else if end > bounds.max {
        Some(format!("end of range ({end}) above maximum ({}): {range}", bounds.max))
    } else if start > end {
        Some(format!("beginning of range ({start}) beyond end of range ({end}): {range}"))
    } else if step == 0 {
        Some(format!("step of range should be a positive number: {range}"))
    } else {
        None
    }
}

fn int_or_name(text: &str, bounds: &Bounds) -> Result<u64, String> {
    let lower = text.to_ascii_lowercase();
    match bounds.names.iter().position(|name| *name == lower) {
        Some(index) => Ok(bounds.min + index as u64),
        None => positive_int(text),
    }
}

/// Go's `strconv.Atoi` with robfig's negative check, and their messages.
fn positive_int(text: &str) -> Result<u64, String> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("failed to parse int from {text}: strconv.Atoi: parsing {text:?}: invalid syntax"));
    }
    match text.parse::<i64>() {
        Err(_) => Err(format!("failed to parse int from {text}: strconv.Atoi: parsing {text:?}: value out of range")),
        Ok(number) if number < 0 => Err(format!("negative number ({number}) not allowed: {text}")),
        Ok(number) => Ok(number.unsigned_abs()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_standard_schedules() {
        for ok in [
            "*/5 * * * *",
            "0 0 * * *",
            "0 9-17 * * MON-FRI",
            "30 2 1,15 * *",
            "0 0 1 jan,jul ?",
            "5/10 * * * *",
            "@hourly",
            "@every 1h30m",
            "TZ=Europe/Paris 0 3 * * *",
        ] {
            assert_eq!(schedule_error(ok), None, "{ok}");
        }
    }

    #[test]
    fn reports_like_robfig_cron() {
        let cases = [
            ("", "empty spec string"),
            ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
            ("60 * * * *", "end of range (60) above maximum (59): 60"),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
            ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
            ("*/0 * * * *", "step of range should be a positive number: */0"),
            ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
            ("1/2/3 * * * *", "too many slashes: 1/2/3"),
            ("x * * * *", r#"failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax"#),
            ("@sometimes", "unrecognized descriptor: @sometimes"),
            ("@every soon", r#"failed to parse duration @every soon: time: invalid duration "soon""#),
        ];
        for (schedule, message) in cases {
            assert_eq!(schedule_error(schedule).as_deref(), Some(message), "{schedule}");
        }
    }

    #[test]
    fn odd_input_does_not_panic() {
        for odd in ["-", "*/", "/", ",,", "é * * * *", "99999999999999999999999 * * * *", "TZ=", "@every "] {
            let _ = schedule_error(odd);
        }
    }
}

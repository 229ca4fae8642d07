//! `metadata.managedFields`: decoding entries into per-manager field sets and back.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::fieldpath::{write_go_json, Set};
use super::Operation;

/// Who manages a set of fields. Appliers are one manager across API versions, so an
/// Apply key leaves the version out (as Kubernetes' manager identifier does).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct ManagerKey {
    pub manager: String,
    pub operation: Operation,
    /// Empty for appliers.
    pub api_version: String,
    pub subresource: String,
}

impl ManagerKey {
    pub fn new(manager: &str, operation: Operation, api_version: &str, subresource: Option<&str>) -> ManagerKey {
        ManagerKey {
            manager: if manager.is_empty() { "unknown".to_string() } else { manager.to_string() },
            operation,
            api_version: if operation == Operation::Apply { String::new() } else { api_version.to_string() },
            subresource: subresource.unwrap_or_default().to_string(),
        }
    }

    /// Kubernetes' manager identifier: the entry's JSON without fields, time and (for
    /// appliers) version. Conflicts are grouped and sorted by it.
    pub fn identifier(&self) -> String {
        let mut map = Map::new();
        if !self.manager.is_empty() {
            map.insert("manager".into(), Value::String(self.manager.clone()));
        }
        map.insert("operation".into(), Value::String(self.operation.as_str().into()));
        if !self.api_version.is_empty() {
            map.insert("apiVersion".into(), Value::String(self.api_version.clone()));
        }
        if !self.subresource.is_empty() {
            map.insert("subresource".into(), Value::String(self.subresource.clone()));
        }
        let mut out = String::new();
        write_go_json(&mut out, &Value::Object(map), false);
        out
    }

    /// How conflicts name the manager: `"kubectl-client-side-apply" using apps/v1`,
    /// `"kubectl"`, `"m" with subresource "status"`.
    pub fn display(&self) -> String {
        let mut out = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            out.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == Operation::Update {
            out.push_str(&format!(" using {}", self.api_version));
        }
        out
    }
}

/// One manager's fields.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub set: Set,
    /// The version the fields are named in (the request's apiVersion).
    pub api_version: String,
    pub time: Option<String>,
}

pub(super) type Managers = BTreeMap<ManagerKey, Entry>;

/// Decodes `metadata.managedFields`. Kubernetes rejects the whole list if any entry is
/// malformed; so does this.
pub(super) fn decode(entries: Option<&Value>) -> Result<Managers, String> {
    let mut managers = Managers::new();
    let list = match entries {
        None | Some(Value::Null) => return Ok(managers),
        Some(Value::Array(list)) => list,
        Some(_) => return Err("managedFields must be a list".into()),
    };
    for (i, entry) in list.iter().enumerate() {
        let Value::Object(entry) = entry else { return Err(format!("managed fields entry {i} is not an object")) };
        let text = |name: &str| entry.get(name).and_then(Value::as_str).unwrap_or_default();
        let operation = match text("operation") {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            _ => return Err("operation must be `Apply` or `Update`".into()),
        };
        let api_version = text("apiVersion");
        if api_version.is_empty() {
            return Err("apiVersion must not be empty".into());
        }
        match text("fieldsType") {
            "FieldsV1" => {}
            "" => return Err(format!("missing fieldsType in managed fields entry {i}")),
            other => return Err(format!("invalid fieldsType {other:?} in managed fields entry {i}")),
        }
        let set = match entry.get("fieldsV1") {
            None => Set::new(),
            Some(fields) => Set::from_fields_v1(fields).map_err(|e| format!("error decoding set: {e}"))?,
        };
        let key = ManagerKey {
            manager: text("manager").to_string(),
            operation,
            api_version: if operation == Operation::Apply { String::new() } else { api_version.to_string() },
            subresource: text("subresource").to_string(),
        };
        let time = entry.get("time").and_then(Value::as_str).map(str::to_string);
        managers.insert(key, Entry { set, api_version: api_version.to_string(), time });
    }
    Ok(managers)
}

/// Encodes managers as `metadata.managedFields` entries, sorted as Kubernetes sorts
/// them: Apply before Update, then by time (whole seconds), manager, apiVersion and
/// subresource. `None` when no manager is left.
pub(super) fn encode(managers: &Managers) -> Option<Value> {
    if managers.is_empty() {
        return None;
    }
    let mut entries: Vec<(&ManagerKey, &Entry)> = managers.iter().collect();
    entries.sort_by(|(a, ae), (b, be)| {
        a.operation
            .as_str()
            .cmp(b.operation.as_str())
            .then_with(|| unix_seconds(ae.time.as_deref()).cmp(&unix_seconds(be.time.as_deref())))
            .then_with(|| a.manager.cmp(&b.manager))
            .then_with(|| ae.api_version.cmp(&be.api_version))
            .then_with(|| a.subresource.cmp(&b.subresource))
    });
    let list = entries
        .into_iter()
        .map(|(key, entry)| {
            let mut out = Map::new();
            if !key.manager.is_empty() {
                out.insert("manager".into(), Value::String(key.manager.clone()));
            }
            out.insert("operation".into(), Value::String(key.operation.as_str().into()));
            out.insert("apiVersion".into(), Value::String(entry.api_version.clone()));
            if let Some(time) = &entry.time {
                out.insert("time".into(), Value::String(time.clone()));
            }
            out.insert("fieldsType".into(), Value::String("FieldsV1".into()));
            out.insert("fieldsV1".into(), entry.set.to_fields_v1());
            if !key.subresource.is_empty() {
                out.insert("subresource".into(), Value::String(key.subresource.clone()));
            }
            Value::Object(out)
        })
        .collect();
    Some(Value::Array(list))
}

/// Seconds since the epoch of an RFC 3339 time; 0 when absent or unreadable (Kubernetes
/// sorts a missing time as zero).
pub(super) fn unix_seconds(time: Option<&str>) -> i64 {
    time.and_then(parse_rfc3339).unwrap_or(0)
}

fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> { s.get(range)?.parse::<i64>().ok() };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = s.get(19..)?;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            sign * (rest.get(1..3)?.parse::<i64>().ok()? * 3600 + rest.get(4..6)?.parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_seconds() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2024-02-29T12:00:01.5Z"), Some(1_709_208_001));
        assert_eq!(parse_rfc3339("2024-02-29T14:00:01+02:00"), Some(1_709_208_001));
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2024-02-29T14:00:01+0é:00"), None);
    }
}

//! Custom resources: `Name`, then a CRD version's `additionalPrinterColumns`, each a
//! JSONPath into the object (Kubernetes' default being `Age`). Cells follow the
//! column's type as Kubernetes' CRD table convertor does: `string` cells are the value
//! as text (maps and lists as JSON), the other types keep their JSON type, `date` ones
//! show an age, and a value that is missing or of another type gives an empty cell.
//!
//! The JSONPath subset evaluated: `.field`, `['field']`, `[n]` (negative from the end),
//! `[*]` and `.*`, and filters `[?(@.a.b == "x")]`, `!=`, or `[?(@.a)]`. Other syntax
//! (recursive descent, slices, unions) leaves the column empty.

use jiff::Timestamp;
use serde_json::Value;

use super::common::{since, AGE};
use super::{column_json, PrinterColumn};

/// A printer column with its JSONPath parsed (`None` when outside the subset).
pub(super) struct Compiled {
    column: PrinterColumn,
    path: Option<Vec<Step>>,
}

/// The columns to print; a CRD version with none gets Kubernetes' default `Age`.
pub(super) fn compile(columns: &[PrinterColumn]) -> Vec<Compiled> {
    let default_age;
    let columns = if columns.is_empty() {
        default_age = [PrinterColumn {
            name: "Age".into(),
            type_: "date".into(),
            description: AGE.description.into(),
            json_path: ".metadata.creationTimestamp".into(),
            ..PrinterColumn::default()
        }];
        &default_age[..]
    } else {
        columns
    };
    columns.iter().map(|c| Compiled { column: c.clone(), path: parse(&c.json_path) }).collect()
}

impl Compiled {
    pub(super) fn definition(&self) -> Value {
        let c = &self.column;
        let description = if c.description.is_empty() {
            format!("Custom resource definition column (in JSONPath format): {}", c.json_path)
        } else {
            c.description.clone()
        };
        column_json(&c.name, &c.type_, &c.format, &description, c.priority)
    }

    pub(super) fn cell(&self, object: &Value, now: Timestamp) -> Value {
        let Some(path) = &self.path else { return Value::Null };
        match evaluate(path, object).first() {
            None | Some(Value::Null) => Value::Null,
            Some(value) => typed_cell(&self.column.type_, value, now),
        }
    }
}

/// The cell of a found value, by the column's type.
fn typed_cell(type_: &str, value: &Value, now: Timestamp) -> Value {
    match (type_, value) {
        ("string", value) => as_text(value).into(),
        ("integer", Value::Number(n)) => {
            n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)).map_or(Value::Null, Value::from)
        }
        ("number", Value::Number(_)) => value.clone(),
        ("boolean", Value::Bool(_)) => value.clone(),
        ("date", Value::String(s)) if s.is_empty() => "<unknown>".into(),
        ("date", Value::String(s)) => match s.parse::<Timestamp>() {
            Ok(t) => since(Some(t), now).into(),
            Err(_) => "<invalid>".into(),
        },
        _ => Value::Null,
    }
}

/// A value as Go's JSONPath printer writes it: strings bare, numbers and booleans as Go
/// formats them, maps and lists as compact JSON with sorted keys.
fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) => go_float(f),
            _ => n.to_string(),
        },
        Value::Null => "null".into(),
        Value::Array(_) | Value::Object(_) => sorted_json(value),
    }
}

/// Compact JSON with object keys sorted, as Go marshals a map.
fn sorted_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            let members: Vec<String> =
                entries.into_iter().map(|(k, v)| format!("{}:{}", Value::String(k.clone()), sorted_json(v))).collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(sorted_json).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// Go's `%v` for a float64: the shortest digits, in exponent form when the exponent is
/// below -4 or at least 6 (`1e+06`, `1.5e-05`, `123456.5`).
fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let sign = if f.is_sign_negative() && f != 0.0 { "-" } else { "" };
    let scientific = format!("{:e}", f.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if !(-4..6).contains(&exponent) {
        let (first, rest) = digits.split_at(1);
        let point = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{first}{point}e{exp_sign}{:02}", exponent.abs());
    }
    let point = exponent + 1; // digits before the decimal point
    let len = digits.len() as i32;
    let body = if point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else if point >= len {
        format!("{digits}{}", "0".repeat((point - len) as usize))
    } else {
        let (whole, fraction) = digits.split_at(point as usize);
        format!("{whole}.{fraction}")
    };
    format!("{sign}{body}")
}

// ---------------------------------------------------------------------------------------
// JSONPath
// ---------------------------------------------------------------------------------------

#[derive(Debug, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    Wildcard,
    Filter { path: Vec<String>, test: Option<(bool, Literal)> },
}

#[derive(Debug, PartialEq)]
enum Literal {
    Text(String),
    Number(f64),
    Bool(bool),
}

/// Parses a path such as `.status.conditions[?(@.type=="Ready")].status` (optionally
/// wrapped in `{}`), or `None` when it leaves the supported subset.
fn parse(path: &str) -> Option<Vec<Step>> {
    let path = path.trim();
    let path = path.strip_prefix('{').and_then(|p| p.strip_suffix('}')).unwrap_or(path).trim();
    let mut rest = path.strip_prefix('$').unwrap_or(path);
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            if after.starts_with('.') {
                return None; // recursive descent
            }
            if let Some(after) = after.strip_prefix('*') {
                steps.push(Step::Wildcard);
                rest = after;
                continue;
            }
            let end = after.find(['.', '[']).unwrap_or(after.len());
            if end == 0 {
                return None;
            }
            steps.push(Step::Field(after[..end].to_string()));
            rest = &after[end..];
        } else if rest.starts_with('[') {
            let end = closing_bracket(rest)?;
            steps.push(bracket(rest[1..end].trim())?);
            rest = &rest[end + 1..];
        } else {
            return None;
        }
    }
    Some(steps)
}

/// The index of the `]` closing the `[` at the start of `s`, skipping quoted text.
fn closing_bracket(s: &str) -> Option<usize> {
    let mut quote = None;
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn bracket(inner: &str) -> Option<Step> {
    if inner == "*" {
        return Some(Step::Wildcard);
    }
    if let Some(expression) = inner.strip_prefix("?(").and_then(|e| e.strip_suffix(')')) {
        return filter(expression.trim());
    }
    if let Some(text) = quoted(inner) {
        return Some(Step::Field(text));
    }
    inner.parse().ok().map(Step::Index)
}

/// `'text'` or `"text"` without its quotes.
fn quoted(s: &str) -> Option<String> {
    let quote = s.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    s.strip_prefix(quote).and_then(|s| s.strip_suffix(quote)).map(str::to_string)
}

/// `@.a.b == literal`, `@.a.b != literal`, or `@.a.b` (the field exists).
fn filter(expression: &str) -> Option<Step> {
    let (left, test) = match (expression.find("=="), expression.find("!=")) {
        (Some(i), _) => (&expression[..i], Some((true, literal(expression[i + 2..].trim())?))),
        (None, Some(i)) => (&expression[..i], Some((false, literal(expression[i + 2..].trim())?))),
        (None, None) => (expression, None),
    };
    let fields = left.trim().strip_prefix('@')?;
    let path = parse(fields)?
        .into_iter()
        .map(|step| match step {
            Step::Field(f) => Some(f),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Step::Filter { path, test })
}

fn literal(s: &str) -> Option<Literal> {
    if let Some(text) = quoted(s) {
        return Some(Literal::Text(text));
    }
    match s {
        "true" => Some(Literal::Bool(true)),
        "false" => Some(Literal::Bool(false)),
        _ => s.parse().ok().map(Literal::Number),
    }
}

/// Every value the path reaches, in document order.
fn evaluate<'a>(steps: &[Step], root: &'a Value) -> Vec<&'a Value> {
    let mut current = vec![root];
    for step in steps {
        current = current.into_iter().flat_map(|value| apply(step, value)).collect();
    }
    current
}

fn apply<'a>(step: &Step, value: &'a Value) -> Vec<&'a Value> {
    match (step, value) {
        (Step::Field(name), Value::Object(map)) => map.get(name).into_iter().collect(),
        (Step::Index(i), Value::Array(items)) => {
            let index = if *i < 0 { items.len() as i64 + i } else { *i };
            usize::try_from(index).ok().and_then(|i| items.get(i)).into_iter().collect()
        }
        (Step::Wildcard, Value::Array(items)) => items.iter().collect(),
        (Step::Wildcard, Value::Object(map)) => map.values().collect(),
        (Step::Filter { path, test }, Value::Array(items)) => {
            items.iter().filter(|item| passes(item, path, test.as_ref())).collect()
        }
        _ => Vec::new(),
    }
}

fn passes(item: &Value, path: &[String], test: Option<&(bool, Literal)>) -> bool {
    let Some(found) = path.iter().try_fold(item, |v, field| v.get(field)) else {
        return false;
    };
    let Some((equal, expected)) = test else {
        return true;
    };
    let same = match (found, expected) {
        (Value::String(s), Literal::Text(t)) => s == t,
        (Value::Bool(b), Literal::Bool(c)) => b == c,
        (Value::Number(n), Literal::Number(m)) => n.as_f64() == Some(*m),
        _ => false,
    };
    same == *equal
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parses_the_supported_subset() {
        assert_eq!(parse(".spec.replicas"), Some(vec![Step::Field("spec".into()), Step::Field("replicas".into())]));
        assert_eq!(
            parse("{.a['b.c'][0]}"),
            Some(vec![Step::Field("a".into()), Step::Field("b.c".into()), Step::Index(0)])
        );
        assert_eq!(parse(".a..b"), None);
        assert_eq!(parse(".a[0:2]"), None);
        assert_eq!(parse("spec"), None);
    }

    #[test]
    fn evaluates_filters_and_wildcards() {
        let object = json!({"status": {"conditions": [
            {"type": "Synced", "status": "False"},
            {"type": "Ready", "status": "True"},
        ]}, "spec": {"ports": [{"port": 80}, {"port": 443}]}});
        let path = parse(r#".status.conditions[?(@.type=="Ready")].status"#).unwrap();
        assert_eq!(evaluate(&path, &object), vec![&json!("True")]);
        let path = parse(".status.conditions[?(@.type != 'Ready')].type").unwrap();
        assert_eq!(evaluate(&path, &object), vec![&json!("Synced")]);
        let path = parse(".spec.ports[*].port").unwrap();
        assert_eq!(evaluate(&path, &object), vec![&json!(80), &json!(443)]);
        let path = parse(".spec.ports[-1].port").unwrap();
        assert_eq!(evaluate(&path, &object), vec![&json!(443)]);
        let path = parse(".spec.ports[?(@.port == 443)].port").unwrap();
        assert_eq!(evaluate(&path, &object), vec![&json!(443)]);
    }

    #[test]
    fn cells_follow_the_column_type() {
        let now: Timestamp = "2024-01-01T01:00:00Z".parse().unwrap();
        assert_eq!(typed_cell("string", &json!({"b": 1, "a": [true]}), now), json!(r#"{"a":[true],"b":1}"#));
        assert_eq!(typed_cell("string", &json!(3), now), json!("3"));
        assert_eq!(typed_cell("string", &json!(1.5), now), json!("1.5"));
        assert_eq!(typed_cell("integer", &json!(2.7), now), json!(2));
        assert_eq!(typed_cell("integer", &json!("2"), now), Value::Null);
        assert_eq!(typed_cell("boolean", &json!(true), now), json!(true));
        assert_eq!(typed_cell("date", &json!("2024-01-01T00:00:00Z"), now), json!("60m"));
        assert_eq!(typed_cell("date", &json!("yesterday"), now), json!("<invalid>"));
        assert_eq!(typed_cell("date", &json!(""), now), json!("<unknown>"));
    }

    #[test]
    fn floats_print_as_go_prints_them() {
        assert_eq!(go_float(0.0), "0");
        assert_eq!(go_float(1.5), "1.5");
        assert_eq!(go_float(-2.25), "-2.25");
        assert_eq!(go_float(123456.0), "123456");
        assert_eq!(go_float(1_000_000.0), "1e+06");
        assert_eq!(go_float(1_234_567.0), "1.234567e+06");
        assert_eq!(go_float(0.0001), "0.0001");
        assert_eq!(go_float(0.00001), "1e-05");
    }
}

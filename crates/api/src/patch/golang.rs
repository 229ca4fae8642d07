//! Just enough Go semantics to reproduce strategicpatch exactly: the dynamic types
//! of decoded JSON (`map[string]interface{}` and friends), `==` on interfaces, the
//! `fmt` verbs its error messages use, and `sort.SliceStable`.

use serde_json::Value;

use super::error::PatchError;

/// The dynamic type of a JSON value decoded into `interface{}`; numbers decode as
/// int64 when they are integers (the API server keeps ints) and float64 otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum GoType {
    Nil,
    Map,
    Slice,
    String,
    Bool,
    Int64,
    Float64,
}

pub(super) fn go_type(value: &Value) -> GoType {
    match value {
        Value::Null => GoType::Nil,
        Value::Object(_) => GoType::Map,
        Value::Array(_) => GoType::Slice,
        Value::String(_) => GoType::String,
        Value::Bool(_) => GoType::Bool,
        Value::Number(n) if n.is_i64() => GoType::Int64,
        Value::Number(_) => GoType::Float64,
    }
}

impl GoType {
    /// `reflect.Type.String()`, as `%s` prints it (`%!s(<nil>)` for no type).
    pub fn type_string(self) -> &'static str {
        match self {
            GoType::Nil => "%!s(<nil>)",
            GoType::Map => "map[string]interface {}",
            GoType::Slice => "[]interface {}",
            GoType::String => "string",
            GoType::Bool => "bool",
            GoType::Int64 => "int64",
            GoType::Float64 => "float64",
        }
    }
}

/// What Go does to a request handler that hits a runtime error.
fn runtime_panic(detail: String) -> PatchError {
    PatchError::panic(format!("runtime error: {detail}"))
}

/// Go's `==` on two `interface{}` values: different dynamic types are unequal, the
/// same uncomparable type (maps, slices) panics.
pub(super) fn go_eq(a: &Value, b: &Value) -> Result<bool, PatchError> {
    let (ta, tb) = (go_type(a), go_type(b));
    if ta != tb {
        return Ok(false);
    }
    Ok(match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        _ => return Err(runtime_panic(format!("comparing uncomparable type {}", ta.type_string()))),
    })
}

/// Using a value as a Go map key: maps and slices panic.
pub(super) fn check_hashable(value: &Value) -> Result<(), PatchError> {
    match go_type(value) {
        GoType::Map | GoType::Slice => {
            Err(runtime_panic(format!("hash of unhashable type {}", go_type(value).type_string())))
        }
        _ => Ok(()),
    }
}

/// A hashable JSON scalar, equal exactly when Go's `==` says the values are equal.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum HashKey {
    Nil,
    Bool(bool),
    Int(i64),
    /// The float's bits, with -0 as 0 (NaN does not occur in JSON).
    Float(u64),
    Str(String),
}

/// The key of a scalar; None for maps and slices.
pub(super) fn hash_key(value: &Value) -> Option<HashKey> {
    Some(match value {
        Value::Null => HashKey::Nil,
        Value::Bool(b) => HashKey::Bool(*b),
        Value::String(s) => HashKey::Str(s.clone()),
        Value::Number(n) => match n.as_i64() {
            Some(i) => HashKey::Int(i),
            None => {
                let f = n.as_f64().unwrap_or(0.0);
                HashKey::Float(if f == 0.0 { 0 } else { f.to_bits() })
            }
        },
        Value::Object(_) | Value::Array(_) => return None,
    })
}

/// `fmt.Sprintf("%v", value)`.
#[cfg(test)]
pub(super) fn fmt_v(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value, Verb::V);
    out
}

/// `fmt.Sprintf("%s", value)`: strings as they are, other scalars as `%!s(int64=1)`.
pub(super) fn fmt_s(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value, Verb::S);
    out
}

/// `fmt.Sprintf("%v", map)` for a JSON object.
pub(super) fn fmt_map(map: &serde_json::Map<String, Value>) -> String {
    let mut out = String::new();
    write_map(&mut out, map, Verb::V);
    out
}

/// `fmt.Sprintf("%v", list)` for a `[]interface{}`.
pub(super) fn fmt_list(list: &[Value]) -> String {
    let mut out = String::new();
    write_list(&mut out, list, Verb::V);
    out
}

/// `fmt.Sprint(slices)` for a `[][]interface{}`.
pub(super) fn fmt_lists(lists: &[&[Value]]) -> String {
    let mut out = String::from("[");
    for (i, list) in lists.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        write_list(&mut out, list, Verb::V);
    }
    out.push(']');
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verb {
    V,
    S,
}

fn write_value(out: &mut String, value: &Value, verb: Verb) {
    match value {
        Value::Object(map) => write_map(out, map, verb),
        Value::Array(list) => write_list(out, list, verb),
        Value::String(s) => out.push_str(s),
        Value::Null => out.push_str(if verb == Verb::V { "<nil>" } else { "%!s(<nil>)" }),
        other => {
            let text = match other {
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => match n.as_i64() {
                    Some(i) => i.to_string(),
                    None => go_float(n.as_f64().unwrap_or(0.0)),
                },
                _ => String::new(),
            };
            if verb == Verb::V {
                out.push_str(&text);
            } else {
                out.push_str(&format!("%!s({}={text})", go_type(other).type_string()));
            }
        }
    }
}

fn write_map(out: &mut String, map: &serde_json::Map<String, Value>, verb: Verb) {
    // fmt prints map keys sorted.
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    out.push_str("map[");
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(key);
        out.push(':');
        write_value(out, value, verb);
    }
    out.push(']');
}

fn write_list(out: &mut String, list: &[Value], verb: Verb) {
    out.push('[');
    for (i, value) in list.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        write_value(out, value, verb);
    }
    out.push(']');
}

/// `%v` of a float64: strconv's shortest `%g`, which switches to an exponent below
/// 1e-4 and from 1e6 on (Go prints `1e+06`).
fn go_float(x: f64) -> String {
    if x == 0.0 {
        return if x.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let sci = format!("{x:e}"); // shortest digits: "1.5e6", "-2e-7"
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{x}")
    }
}

/// `strconv.Quote`, as `%q` prints a string.
pub(super) fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `sort.SliceStable` (insertion sort on blocks of 20, then SymMerge), step for
/// step, so that comparators that are not strict weak orders (strategicpatch's are
/// not) give the same order as in Go. `less(a, b)` compares the elements at the two
/// positions as they are at that moment.
pub(super) fn stable_sort<T>(data: &mut [T], less: &mut dyn FnMut(&T, &T) -> bool) {
    let n = data.len();
    let mut block = 20;
    let (mut a, mut b) = (0, block);
    while b <= n {
        insertion_sort(data, a, b, less);
        a = b;
        b += block;
    }
    insertion_sort(data, a, n, less);
    while block < n {
        a = 0;
        b = 2 * block;
        while b <= n {
            sym_merge(data, a, a + block, b, less);
            a = b;
            b += 2 * block;
        }
        let m = a + block;
        if m < n {
            sym_merge(data, a, m, n, less);
        }
        block *= 2;
    }
}

fn insertion_sort<T>(data: &mut [T], a: usize, b: usize, less: &mut dyn FnMut(&T, &T) -> bool) {
    for i in a + 1..b {
        let mut j = i;
        while j > a && less(&data[j], &data[j - 1]) {
            data.swap(j, j - 1);
            j -= 1;
        }
    }
}

fn sym_merge<T>(data: &mut [T], a: usize, m: usize, b: usize, less: &mut dyn FnMut(&T, &T) -> bool) {
    if m - a == 1 {
        let (mut i, mut j) = (m, b);
        while i < j {
            let h = (i + j) / 2;
            if less(&data[h], &data[a]) {
                i = h + 1;
            } else {
                j = h;
            }
        }
        let mut k = a;
        while k + 1 < i {
            data.swap(k, k + 1);
            k += 1;
        }
        return;
    }
    if b - m == 1 {
        let (mut i, mut j) = (a, m);
        while i < j {
            let h = (i + j) / 2;
            if !less(&data[m], &data[h]) {
                i = h + 1;
            } else {
                j = h;
            }
        }
        let mut k = m;
        while k > i {
            data.swap(k, k - 1);
            k -= 1;
        }
        return;
    }
    let mid = (a + b) / 2;
    let n = mid + m;
    let (mut start, mut r) = if m > mid { (n - b, mid) } else { (a, m) };
    let p = n - 1;
    while start < r {
        let c = (start + r) / 2;
        if !less(&data[p - c], &data[c]) {
            start = c + 1;
        } else {
            r = c;
        }
    }
    let end = n - start;
    if start < m && m < end {
        rotate(data, start, m, end);
    }
    if a < start && start < mid {
        sym_merge(data, a, start, mid, less);
    }
    if mid < end && end < b {
        sym_merge(data, mid, end, b, less);
    }
}

fn rotate<T>(data: &mut [T], a: usize, m: usize, b: usize) {
    let mut i = m - a;
    let mut j = b - m;
    while i != j {
        if i > j {
            swap_range(data, m - i, m, j);
            i -= j;
        } else {
            swap_range(data, m - i, m + j - i, i);
            j -= i;
        }
    }
    swap_range(data, m - i, m, i);
}

fn swap_range<T>(data: &mut [T], a: usize, b: usize, n: usize) {
    for i in 0..n {
        data.swap(a + i, b + i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formats_like_go() {
        assert_eq!(fmt_v(&json!({"name": "a", "image": "x", "n": 1})), "map[image:x n:1 name:a]");
        assert_eq!(fmt_v(&json!({"a": [1, 2.5, null, true], "b": {}})), "map[a:[1 2.5 <nil> true] b:map[]]");
        assert_eq!(fmt_s(&json!("replace")), "replace");
        assert_eq!(fmt_s(&json!(5)), "%!s(int64=5)");
        assert_eq!(fmt_s(&json!(null)), "%!s(<nil>)");
        assert_eq!(fmt_s(&json!({"a": true})), "map[a:%!s(bool=true)]");
        assert_eq!(go_float(1e6), "1e+06");
        assert_eq!(go_float(123456.0), "123456");
        assert_eq!(go_float(1234567.0), "1.234567e+06");
        assert_eq!(go_float(0.0001), "0.0001");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(-2.5e-7), "-2.5e-07");
        assert_eq!(fmt_lists(&[&[json!("a"), json!("b")], &[]]), "[[a b] []]");
        assert_eq!(quote("a\"b\n\u{1}é"), "\"a\\\"b\\n\\x01é\"");
    }

    #[test]
    fn hash_keys_agree_with_go_eq() {
        let values = [json!(null), json!(true), json!(1), json!(1.0), json!(-0.0), json!(0.0), json!("1"), json!(0)];
        for a in &values {
            for b in &values {
                assert_eq!(go_eq(a, b).unwrap(), hash_key(a) == hash_key(b), "{a} {b}");
            }
        }
    }

    #[test]
    fn go_equality() {
        assert!(go_eq(&json!(1), &json!(1)).unwrap());
        assert!(!go_eq(&json!(1), &json!(1.0)).unwrap());
        assert!(!go_eq(&json!(1), &json!("1")).unwrap());
        assert!(go_eq(&json!(null), &json!(null)).unwrap());
        assert!(!go_eq(&json!({}), &json!("x")).unwrap());
        assert!(go_eq(&json!({}), &json!({})).is_err());
        assert!(check_hashable(&json!([1])).is_err());
    }

    #[test]
    fn stable_sort_matches_a_stable_sort_for_strict_orders() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..200 {
            let mut v: Vec<(u64, usize)> = (0..len)
                .map(|i| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed % 7, i)
                })
                .collect();
            let mut expected = v.clone();
            expected.sort_by_key(|e| e.0);
            stable_sort(&mut v, &mut |a, b| a.0 < b.0);
            assert_eq!(v, expected, "len {len}");
        }
    }
}

//! Label and field selectors: parsed from the query-string syntax (`?labelSelector=`,
//! `?fieldSelector=`) or from the API's `LabelSelector`, matched against objects, and
//! rendered back to their canonical strings.
//!
//! The grammar, the matching rules and every error message follow Kubernetes'
//! `k8s.io/apimachinery` packages `labels` and `fields`, since clients (kubectl first)
//! show those messages as they are. Both parsers take untrusted input from the network:
//! they never panic, and errors are plain strings for a 400 BadRequest.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use serde_json::{Map, Value};

use crate::error::FieldError;
use crate::validation;

// ---------------------------------------------------------------------------------------
// Label sets
// ---------------------------------------------------------------------------------------

/// Anything that holds an object's labels, so one selector matches typed objects
/// (`metadata.labels: Option<BTreeMap>`) and JSON ones alike.
pub trait Labels {
    /// The value of label `key`, if the label is set.
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl Labels for HashMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// A JSON labels object. A value that is not a string counts as no label.
impl Labels for Map<String, Value> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
}

/// A JSON labels object; `null` (or any non-object) is an empty label set.
impl Labels for Value {
    fn label(&self, key: &str) -> Option<&str> {
        self.as_object().and_then(|map| map.label(key))
    }
}

/// Absent labels are an empty label set.
impl<T: Labels> Labels for Option<T> {
    fn label(&self, key: &str) -> Option<&str> {
        self.as_ref().and_then(|labels| labels.label(key))
    }
}

// ---------------------------------------------------------------------------------------
// Label requirements
// ---------------------------------------------------------------------------------------

/// How a label requirement relates its key to its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key=value`
    Equals,
    /// `key==value` (same meaning as `=`, kept for rendering)
    DoubleEquals,
    /// `key!=value`: also matches when the label is absent.
    NotEquals,
    /// `key in (a,b)`
    In,
    /// `key notin (a,b)`: also matches when the label is absent.
    NotIn,
    /// `key`
    Exists,
    /// `!key`
    DoesNotExist,
    /// `key>n`, integers only.
    GreaterThan,
    /// `key<n`, integers only.
    LessThan,
}

/// One term of a label selector: a validated key, operator and values.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

/// Renders field errors the way Kubernetes' error aggregate does: one error alone,
/// several as `[a, b]` with repeats dropped.
fn aggregate(errors: &[FieldError]) -> String {
    let mut messages: Vec<String> = Vec::with_capacity(errors.len());
    for message in errors.iter().map(FieldError::display) {
        if !messages.contains(&message) {
            messages.push(message);
        }
    }
    match messages.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// A list of values as Kubernetes shows it in an error (a Go nil slice is `null`).
fn values_json(values: &[String]) -> Value {
    if values.is_empty() {
        Value::Null
    } else {
        Value::from(values.to_vec())
    }
}

/// The label-key check, its messages joined as Kubernetes' selector code joins them.
fn key_error(key: &str, field: &str) -> Option<FieldError> {
    let messages = validation::qualified_name(key);
    (!messages.is_empty()).then(|| FieldError::invalid(field, key, &messages.join("; ")))
}

fn value_count_error(operator: Operator, values: &[String]) -> Option<FieldError> {
    use Operator::*;
    let detail = match operator {
        In | NotIn if values.is_empty() => "for 'in', 'notin' operators, values set can't be empty",
        Equals | DoubleEquals | NotEquals if values.len() != 1 => "exact-match compatibility requires one single value",
        Exists | DoesNotExist if !values.is_empty() => "values set must be empty for exists and does not exist",
        GreaterThan | LessThan if values.len() != 1 => "for 'Gt', 'Lt' operators, exactly one value is required",
        _ => return None,
    };
    Some(FieldError::invalid("values", values_json(values), detail))
}

impl Requirement {
    /// A requirement, validated as Kubernetes validates one: the key is a qualified
    /// name, the number of values suits the operator, every value is a label value, and
    /// `>`/`<` compare with integers. Errors name the fields `key` and `values[i][key]`.
    pub fn new(key: impl Into<String>, operator: Operator, values: Vec<String>) -> Result<Self, String> {
        let key = key.into();
        let mut errors: Vec<FieldError> = key_error(&key, "key").into_iter().collect();
        errors.extend(value_count_error(operator, &values));
        if matches!(operator, Operator::GreaterThan | Operator::LessThan) {
            for (i, value) in values.iter().enumerate() {
                if value.parse::<i64>().is_err() {
                    let detail = "for 'Gt', 'Lt' operators, the value must be an integer";
                    errors.push(FieldError::invalid(format!("values[{i}]"), value.as_str(), detail));
                }
            }
        }
        for (i, value) in values.iter().enumerate() {
            let messages = validation::label_value(value);
            if !messages.is_empty() {
                let field = format!("values[{i}][{key}]");
                errors.push(FieldError::invalid(field, value.as_str(), &messages.join("; ")));
            }
        }
        if errors.is_empty() {
            Ok(Self { key, operator, values })
        } else {
            Err(aggregate(&errors))
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, in the order given (sorted and deduplicated when parsed).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    fn has_value(&self, value: &str) -> bool {
        self.values.iter().any(|v| v == value)
    }

    /// Whether `labels` satisfy this requirement. Negative operators (`!=`, `notin`,
    /// `!`) match objects without the label; `>` and `<` never match a label that is
    /// absent or not an integer.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        use Operator::*;
        let value = labels.label(&self.key);
        match self.operator {
            In | Equals | DoubleEquals => value.is_some_and(|v| self.has_value(v)),
            NotIn | NotEquals => value.is_none_or(|v| !self.has_value(v)),
            Exists => value.is_some(),
            DoesNotExist => value.is_none(),
            GreaterThan | LessThan => value.is_some_and(|v| self.compares(v)),
        }
    }

    /// The `>`/`<` comparison of a present label value.
    fn compares(&self, label: &str) -> bool {
        let (Ok(label), [bound]) = (label.parse::<i64>(), self.values.as_slice()) else {
            return false;
        };
        let Ok(bound) = bound.parse::<i64>() else {
            return false;
        };
        match self.operator {
            Operator::GreaterThan => label > bound,
            Operator::LessThan => label < bound,
            _ => false,
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Operator::*;
        let op = match self.operator {
            Exists => return f.write_str(&self.key),
            DoesNotExist => return write!(f, "!{}", self.key),
            Equals => "=",
            DoubleEquals => "==",
            NotEquals => "!=",
            In => " in ",
            NotIn => " notin ",
            GreaterThan => ">",
            LessThan => "<",
        };
        // Values print sorted so that equal selectors print alike.
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        let values = values.join(",");
        match self.operator {
            In | NotIn => write!(f, "{}{op}({values})", self.key),
            _ => write!(f, "{}{op}{values}", self.key),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------------------

/// A label selector: requirements that must all hold. The empty selector matches
/// every object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        Self::default()
    }

    /// A selector from requirements, ordered by key as Kubernetes orders them (so that
    /// the rendered string is deterministic).
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Self { requirements }
    }

    /// Parses the query-string syntax: `a=b,c!=d,e in (f,g),h notin (i),j,!k,l>1,m<2`.
    /// The empty string (or only whitespace) selects everything.
    pub fn parse(selector: &str) -> Result<Self, String> {
        let requirements = Parser::new(selector).parse()?;
        Ok(Self::from_requirements(requirements))
    }

    /// Converts the API's `LabelSelector` (matchLabels and matchExpressions). An empty
    /// selector matches everything; a missing one (which matches nothing) is the
    /// caller's to handle.
    pub fn from_api(selector: &metav1::LabelSelector) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement::new(key.as_str(), Operator::Equals, vec![value.clone()])?);
        }
        for expression in selector.match_expressions.iter().flatten() {
            let operator = match expression.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => return Err(format!("{other:?} is not a valid label selector operator")),
            };
            let values = expression.values.clone().unwrap_or_default();
            requirements.push(Requirement::new(expression.key.as_str(), operator, values)?);
        }
        Ok(Self::from_requirements(requirements))
    }

    /// A selector matching exactly these labels (a Service's or ReplicationController's
    /// `spec.selector`). Like Kubernetes' `SelectorFromSet`, it does not validate: such
    /// maps were validated when their object was written.
    pub fn from_map(labels: &BTreeMap<String, String>) -> Self {
        let requirements = labels
            .iter()
            .map(|(key, value)| Requirement {
                key: key.clone(),
                operator: Operator::Equals,
                values: vec![value.clone()],
            })
            .collect();
        Self::from_requirements(requirements)
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether the selector places no restriction (matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether every requirement holds for `labels`.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// [`matches`](Self::matches) for a JSON labels object, or `null` for no labels.
    pub fn matches_json(&self, labels: &Value) -> bool {
        self.matches(labels)
    }

    /// The one value the selector requires for `key` (`key=v`, `key==v`, `key in (v)`),
    /// if it does.
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let requirement = self.requirements.iter().find(|r| r.key == key)?;
        match (requirement.operator, requirement.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [value]) => Some(value),
            _ => None,
        }
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The label selector lexer and parser
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    EndOfString,
    OpenPar,
    ClosedPar,
    Comma,
    /// `!`
    DoesNotExist,
    Equals,
    DoubleEquals,
    NotEquals,
    GreaterThan,
    LessThan,
    In,
    NotIn,
    Identifier,
}

/// A token and the text it was read from (empty for the end of the string).
#[derive(Clone, Copy, Debug)]
struct Item<'a> {
    token: Token,
    literal: &'a str,
}

const END: Item<'static> = Item { token: Token::EndOfString, literal: "" };

fn is_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn classify(literal: &str) -> Token {
    match literal {
        "(" => Token::OpenPar,
        ")" => Token::ClosedPar,
        "," => Token::Comma,
        "!" => Token::DoesNotExist,
        "=" => Token::Equals,
        "==" => Token::DoubleEquals,
        "!=" => Token::NotEquals,
        ">" => Token::GreaterThan,
        "<" => Token::LessThan,
        "in" => Token::In,
        "notin" => Token::NotIn,
        _ => Token::Identifier,
    }
}

/// Splits a selector into tokens, ending with [`Token::EndOfString`]. Operators are the
/// longest match (`!=` over `!`); anything else up to whitespace or an operator
/// character is an identifier or the keyword `in`/`notin`.
fn lex(input: &str) -> Vec<Item<'_>> {
    let mut items = Vec::new();
    let mut rest = input;
    loop {
        rest = rest.trim_start_matches(is_whitespace);
        let Some(first) = rest.chars().next() else {
            items.push(END);
            return items;
        };
        let len = if !is_special(first) {
            rest.find(|c| is_special(c) || is_whitespace(c)).unwrap_or(rest.len())
        } else if rest.starts_with("==") || rest.starts_with("!=") {
            2
        } else {
            1
        };
        // `len` ends at a character boundary: an ASCII delimiter or the end.
        let (literal, tail) = rest.split_at(len);
        items.push(Item { token: classify(literal), literal });
        rest = tail;
    }
}

/// Where the parser is: `in`/`notin` are operators after a key and plain values
/// everywhere else (`x in (in)` is fine).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

/// A recursive-descent parser over the lexed tokens, structured like Kubernetes' so
/// that each malformed input gets the same message.
struct Parser<'a> {
    items: Vec<Item<'a>>,
    position: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        Self { items: lex(input), position: 0 }
    }

    fn lookahead(&self, context: Context) -> Item<'a> {
        let item = self.items.get(self.position).copied().unwrap_or(END);
        match item.token {
            Token::In | Token::NotIn if context == Context::Values => Item { token: Token::Identifier, ..item },
            _ => item,
        }
    }

    fn consume(&mut self, context: Context) -> Item<'a> {
        let item = self.lookahead(context);
        // Reading past the end keeps answering EndOfString.
        self.position = (self.position + 1).min(self.items.len());
        item
    }

    fn parse(mut self) -> Result<Vec<Requirement>, String> {
        let mut requirements = Vec::new();
        loop {
            let next = self.lookahead(Context::Values);
            match next.token {
                Token::Identifier | Token::DoesNotExist => {
                    let requirement =
                        self.parse_requirement().map_err(|e| format!("unable to parse requirement: {e}"))?;
                    requirements.push(requirement);
                    let after = self.consume(Context::Values);
                    match after.token {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let following = self.lookahead(Context::Values);
                            if !matches!(following.token, Token::Identifier | Token::DoesNotExist) {
                                return Err(format!("found '{}', expected: identifier after ','", following.literal));
                            }
                        }
                        _ => return Err(format!("found '{}', expected: ',' or 'end of string'", after.literal)),
                    }
                }
                Token::EndOfString => return Ok(requirements),
                _ => return Err(format!("found '{}', expected: !, identifier, or 'end of string'", next.literal)),
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, operator) = self.parse_key_and_infer_operator()?;
        if let Some(operator) = operator {
            return Requirement::new(key, operator, Vec::new());
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::new(key, operator, values)
    }

    /// The key, with `!key` giving DoesNotExist and a bare key (followed by `,` or the
    /// end) giving Exists; `None` when a binary operator follows.
    fn parse_key_and_infer_operator(&mut self) -> Result<(&'a str, Option<Operator>), String> {
        let mut item = self.consume(Context::Values);
        let negated = item.token == Token::DoesNotExist;
        if negated {
            item = self.consume(Context::Values);
        }
        if item.token != Token::Identifier {
            return Err(format!("found '{}', expected: identifier", item.literal));
        }
        // Kubernetes checks the key here with no field path, which prints as "<nil>".
        if let Some(error) = key_error(item.literal, "<nil>") {
            return Err(error.display());
        }
        // `!key=value` is cut short here; the caller then rejects the `=`.
        let operator = if negated {
            Some(Operator::DoesNotExist)
        } else if matches!(self.lookahead(Context::Values).token, Token::EndOfString | Token::Comma) {
            Some(Operator::Exists)
        } else {
            None
        };
        Ok((item.literal, operator))
    }

    fn parse_operator(&mut self) -> Result<Operator, String> {
        let item = self.consume(Context::KeyAndOperator);
        let operator = match item.token {
            Token::In => Operator::In,
            Token::NotIn => Operator::NotIn,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::NotEquals => Operator::NotEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            _ => return Err(format!("found '{}', expected: in, notin, =, ==, !=, gt, lt", item.literal)),
        };
        Ok(operator)
    }

    /// `(a,b,c)`, sorted and deduplicated. Missing values are empty strings:
    /// `()` is `("")` and `(a,,b)` holds "".
    fn parse_values(&mut self) -> Result<Vec<String>, String> {
        let open = self.consume(Context::Values);
        if open.token != Token::OpenPar {
            return Err(format!("found '{}' expected: '('", open.literal));
        }
        let next = self.lookahead(Context::Values);
        match next.token {
            Token::Identifier | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                // The list ends only in front of ')', which is consumed here.
                self.consume(Context::Values);
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(format!("found '{}', expected: ',', ')' or identifier", next.literal)),
        }
    }

    /// The inside of `( ... )`, up to (not including) the closing parenthesis.
    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, String> {
        let mut values: Vec<String> = Vec::new();
        loop {
            let item = self.consume(Context::Values);
            match item.token {
                Token::Identifier => {
                    values.push(item.literal.to_string());
                    let next = self.lookahead(Context::Values);
                    match next.token {
                        Token::Comma => {}
                        Token::ClosedPar => break,
                        _ => return Err(format!("found '{}', expected: ',' or ')'", next.literal)),
                    }
                }
                Token::Comma => {
                    // A comma with nothing before it, after it, or next to another
                    // comma stands beside an empty value.
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    match self.lookahead(Context::Values).token {
                        Token::ClosedPar => {
                            values.push(String::new());
                            break;
                        }
                        Token::Comma => {
                            self.consume(Context::Values);
                            values.push(String::new());
                        }
                        _ => {}
                    }
                }
                _ => return Err(format!("found '{}', expected: ',', or identifier", item.literal)),
            }
        }
        values.sort();
        values.dedup();
        Ok(values)
    }

    /// The single value after `=`, `==`, `!=`, `>` or `<`; nothing there means "".
    fn parse_exact_value(&mut self) -> Result<Vec<String>, String> {
        if matches!(self.lookahead(Context::Values).token, Token::EndOfString | Token::Comma) {
            return Ok(vec![String::new()]);
        }
        let item = self.consume(Context::Values);
        if item.token == Token::Identifier {
            Ok(vec![item.literal.to_string()])
        } else {
            Err(format!("found '{}', expected: identifier", item.literal))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Field selectors
// ---------------------------------------------------------------------------------------

/// How a field selector term compares (`==` is read as `=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldOperator {
    Equals,
    NotEquals,
}

/// One term of a field selector: `field=value` or `field!=value`, value unescaped.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FieldRequirement {
    pub field: String,
    pub operator: FieldOperator,
    pub value: String,
}

impl FieldRequirement {
    /// Whether a field with value `actual` satisfies the term.
    pub fn matches(&self, actual: &str) -> bool {
        match self.operator {
            FieldOperator::Equals => actual == self.value,
            FieldOperator::NotEquals => actual != self.value,
        }
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        };
        write!(f, "{}{op}{}", self.field, escape_field_value(&self.value))
    }
}

/// Escapes a field selector value: `\`, `,` and `=` get a backslash.
pub fn escape_field_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Undoes [`escape_field_value`]. Any other escape, a trailing backslash, or a bare
/// `=` or `,` is an error, worded as Kubernetes words it (the character as a number).
pub fn unescape_field_value(value: &str) -> Result<String, String> {
    let mut unescaped = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('\\' | ',' | '=')) => unescaped.push(escaped),
                Some(other) => return Err(format!("invalid field selector: invalid escape sequence: \\{other}")),
                None => return Err("invalid field selector: invalid escape sequence: \\".to_string()),
            },
            ',' | '=' => return Err(format!("invalid field selector: unescaped character in value: {}", u32::from(c))),
            _ => unescaped.push(c),
        }
    }
    Ok(unescaped)
}

/// Splits at commas that are not escaped.
fn split_terms(selector: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in selector.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// Splits a term at its first operator; at one position `!=` and `==` win over `=`.
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    const OPERATORS: [(&str, FieldOperator); 3] =
        [("!=", FieldOperator::NotEquals), ("==", FieldOperator::Equals), ("=", FieldOperator::Equals)];
    term.char_indices().find_map(|(i, _)| {
        let (field, rest) = term.split_at(i);
        OPERATORS.iter().find_map(|(op, operator)| rest.strip_prefix(op).map(|value| (field, *operator, value)))
    })
}

/// A field selector: terms that must all hold. The empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses `field=value,field!=value,...`. Values may escape `\`, `,` and `=` with a
    /// backslash; field names are taken as written (no trimming), as Kubernetes does.
    /// Terms are kept in the order of their sorted text; empty terms and `=` alone are
    /// dropped.
    pub fn parse(selector: &str) -> Result<Self, String> {
        let mut terms = if selector.is_empty() { Vec::new() } else { split_terms(selector) };
        terms.sort_unstable();
        let mut requirements = Vec::with_capacity(terms.len());
        for term in terms.into_iter().filter(|t| !t.is_empty()) {
            let Some((field, operator, value)) = split_term(term) else {
                return Err(format!("invalid selector: '{selector}'; can't understand '{term}'"));
            };
            let value = unescape_field_value(value)?;
            if field.is_empty() && value.is_empty() {
                continue;
            }
            requirements.push(FieldRequirement { field: field.to_string(), operator, value });
        }
        Ok(Self { requirements })
    }

    /// The terms, so the server can check that it supports each field.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// Whether the selector places no restriction (matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether every term holds, reading fields with `get`. A field the object lacks
    /// compares as "", so `spec.nodeName=` matches pods not yet scheduled.
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| r.matches(&get(&r.field).unwrap_or_default()))
    }

    /// The value the selector requires `field` to equal, if it does.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == FieldOperator::Equals)
            .map(|r| r.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn parse(selector: &str) -> LabelSelector {
        match LabelSelector::parse(selector) {
            Ok(parsed) => parsed,
            Err(e) => panic!("{selector:?} should parse: {e}"),
        }
    }

    fn parse_err(selector: &str) -> String {
        match LabelSelector::parse(selector) {
            Ok(parsed) => panic!("{selector:?} should not parse, got {parsed:?}"),
            Err(e) => e,
        }
    }

    fn fields(selector: &str) -> FieldSelector {
        match FieldSelector::parse(selector) {
            Ok(parsed) => parsed,
            Err(e) => panic!("{selector:?} should parse: {e}"),
        }
    }

    const LABEL_VALUE_FORMAT: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    // --- label selector parsing -------------------------------------------------------

    #[test]
    fn empty_selector_selects_everything() {
        for empty in ["", "  ", "\t\n"] {
            let selector = parse(empty);
            assert!(selector.is_empty());
            assert!(selector.matches(&labels(&[])));
            assert!(selector.matches_json(&Value::Null));
            assert_eq!(selector.to_string(), "");
        }
    }

    #[test]
    fn parses_every_operator() {
        let cases = [
            ("a=b", Operator::Equals, vec!["b"]),
            ("a==b", Operator::DoubleEquals, vec!["b"]),
            ("a!=b", Operator::NotEquals, vec!["b"]),
            ("a in (y,x)", Operator::In, vec!["x", "y"]),
            ("a notin (x)", Operator::NotIn, vec!["x"]),
            ("a", Operator::Exists, vec![]),
            ("!a", Operator::DoesNotExist, vec![]),
            ("a>1", Operator::GreaterThan, vec!["1"]),
            ("a<10", Operator::LessThan, vec!["10"]),
        ];
        for (text, operator, values) in cases {
            let selector = parse(text);
            let [requirement] = selector.requirements() else { panic!("{text}: one requirement") };
            assert_eq!(requirement.key(), "a", "{text}");
            assert_eq!(requirement.operator(), operator, "{text}");
            assert_eq!(requirement.values(), values.as_slice(), "{text}");
        }
    }

    #[test]
    fn tolerates_whitespace_and_sorts_by_key() {
        let selector = parse("  z = 1 ,\ty!=2 , x in ( b , a ) , ! w ,v notin(c),u\n");
        assert_eq!(selector.to_string(), "u,v notin (c),!w,x in (a,b),y!=2,z=1");
    }

    #[test]
    fn keyword_literals_are_values_outside_operator_position() {
        let selector = parse("in in (in,notin),notin=in");
        assert_eq!(selector.to_string(), "in in (in,notin),notin=in");
        assert!(selector.matches(&labels(&[("in", "notin"), ("notin", "in")])));
    }

    #[test]
    fn missing_values_are_empty_strings() {
        assert_eq!(parse("a=").requirements()[0].values(), [""]);
        assert_eq!(parse("a=,b").requirements()[0].values(), [""]);
        assert_eq!(parse("a in ()").requirements()[0].values(), [""]);
        assert_eq!(parse("a in (,)").requirements()[0].values(), [""]);
        assert_eq!(parse("a in (x,,y)").requirements()[0].values(), ["", "x", "y"]);
        assert_eq!(parse("a in (x,)").requirements()[0].values(), ["", "x"]);
        assert_eq!(parse("a in (,x)").requirements()[0].values(), ["", "x"]);
        assert_eq!(parse("a in (x,x)").requirements()[0].values(), ["x"]);
        assert!(parse("a=").matches(&labels(&[("a", "")])));
        assert!(!parse("a=").matches(&labels(&[])));
    }

    #[test]
    fn qualified_keys_are_accepted() {
        let selector = parse("app.kubernetes.io/name=web,example.com/Tier in (Front_end)");
        assert_eq!(selector.requirements().len(), 2);
        assert!(selector.matches(&labels(&[("app.kubernetes.io/name", "web"), ("example.com/Tier", "Front_end")])));
    }

    #[test]
    fn syntax_errors_are_worded_like_kubernetes() {
        let cases = [
            (",", "found ',', expected: !, identifier, or 'end of string'"),
            ("=a", "found '=', expected: !, identifier, or 'end of string'"),
            ("a=b,", "found '', expected: identifier after ','"),
            ("a=b,,c", "found ',', expected: identifier after ','"),
            ("a=b c", "found 'c', expected: ',' or 'end of string'"),
            ("!a=b", "found '=', expected: ',' or 'end of string'"),
            ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
            ("a (b)", "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt"),
            ("!", "unable to parse requirement: found '', expected: identifier"),
            ("!!a", "unable to parse requirement: found '!', expected: identifier"),
            ("a in b", "unable to parse requirement: found 'b' expected: '('"),
            ("a in", "unable to parse requirement: found '' expected: '('"),
            ("a in (", "unable to parse requirement: found '', expected: ',', ')' or identifier"),
            ("a in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
            ("a in (b", "unable to parse requirement: found '', expected: ',' or ')'"),
            ("a in (b c)", "unable to parse requirement: found 'c', expected: ',' or ')'"),
            ("a in (b,", "unable to parse requirement: found '', expected: ',', or identifier"),
            ("a in (b,=)", "unable to parse requirement: found '=', expected: ',', or identifier"),
            ("a=(b)", "unable to parse requirement: found '(', expected: identifier"),
            ("a===b", "unable to parse requirement: found '=', expected: identifier"),
        ];
        for (text, message) in cases {
            assert_eq!(parse_err(text), message, "{text:?}");
        }
    }

    #[test]
    fn invalid_keys_and_values_are_field_errors() {
        assert_eq!(
            parse_err("a/b/c=d"),
            "unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        );
        assert!(parse_err("-a")
            .starts_with("unable to parse requirement: <nil>: Invalid value: \"-a\": name part must consist of"));
        assert_eq!(
            parse_err("foo=bar$"),
            format!("unable to parse requirement: values[0][foo]: Invalid value: \"bar$\": {LABEL_VALUE_FORMAT}")
        );
        // Several errors are aggregated in brackets; values are indexed in sorted order.
        assert_eq!(
            parse_err("k in (z$,a$)"),
            format!(
                "unable to parse requirement: [values[0][k]: Invalid value: \"a$\": {LABEL_VALUE_FORMAT}, values[1][k]: Invalid value: \"z$\": {LABEL_VALUE_FORMAT}]"
            )
        );
        let long = "a".repeat(64);
        assert_eq!(
            parse_err(&format!("k={long}")),
            format!("unable to parse requirement: values[0][k]: Invalid value: \"{long}\": must be no more than 63 characters")
        );
    }

    #[test]
    fn gt_and_lt_need_integers() {
        assert_eq!(
            parse_err("a>b"),
            "unable to parse requirement: values[0]: Invalid value: \"b\": for 'Gt', 'Lt' operators, the value must be an integer"
        );
        assert_eq!(
            parse_err("a<"),
            "unable to parse requirement: values[0]: Invalid value: \"\": for 'Gt', 'Lt' operators, the value must be an integer"
        );
        // "-1" is an integer but not a label value.
        assert!(parse_err("a>-1").contains("values[0][a]: Invalid value: \"-1\""));
    }

    // --- label matching ---------------------------------------------------------------

    #[test]
    fn equality_and_set_operators_match() {
        let web = labels(&[("app", "web"), ("tier", "front")]);
        let db = labels(&[("app", "db")]);
        let cases = [
            ("app=web", true, false),
            ("app==web", true, false),
            ("app!=web", false, true),
            ("tier!=front", false, true),
            ("app in (web,db)", true, true),
            ("app notin (web)", false, true),
            ("tier notin (back)", true, true),
            ("tier in (front)", true, false),
            ("tier", true, false),
            ("!tier", false, true),
            ("app=web,tier", true, false),
            ("app,!tier", false, true),
        ];
        for (text, matches_web, matches_db) in cases {
            let selector = parse(text);
            assert_eq!(selector.matches(&web), matches_web, "{text} on web");
            assert_eq!(selector.matches(&db), matches_db, "{text} on db");
        }
    }

    #[test]
    fn gt_and_lt_compare_integers() {
        let selector = parse("n>5");
        assert!(selector.matches(&labels(&[("n", "6")])));
        assert!(!selector.matches(&labels(&[("n", "5")])));
        assert!(!selector.matches(&labels(&[("n", "x")])));
        assert!(!selector.matches(&labels(&[])));
        let selector = parse("n<5");
        assert!(selector.matches(&labels(&[("n", "4")])));
        assert!(!selector.matches(&labels(&[("n", "99999999999999999999")])));
    }

    #[test]
    fn matches_json_and_optional_labels() {
        let selector = parse("app=web,!gone");
        assert!(selector.matches_json(&json!({"app": "web"})));
        assert!(!selector.matches_json(&json!({"app": "web", "gone": ""})));
        assert!(!selector.matches_json(&Value::Null));
        assert!(!selector.matches_json(&json!({"app": 1})));
        assert!(parse("!app").matches_json(&Value::Null));
        let typed: Option<BTreeMap<String, String>> = Some(labels(&[("app", "web")]));
        assert!(selector.matches(&typed));
        assert!(!selector.matches(&None::<BTreeMap<String, String>>));
        let hashed: HashMap<String, String> = [("app".to_string(), "web".to_string())].into();
        assert!(selector.matches(&hashed));
    }

    #[test]
    fn requires_exact_match() {
        let selector = parse("a=1,b in (2),c in (3,4),d!=5");
        assert_eq!(selector.requires_exact_match("a"), Some("1"));
        assert_eq!(selector.requires_exact_match("b"), Some("2"));
        assert_eq!(selector.requires_exact_match("c"), None);
        assert_eq!(selector.requires_exact_match("d"), None);
        assert_eq!(selector.requires_exact_match("e"), None);
    }

    #[test]
    fn display_is_canonical() {
        assert_eq!(parse("b==1, a").to_string(), "a,b==1");
        assert_eq!(parse("x notin (c,a,b)").to_string(), "x notin (a,b,c)");
        assert_eq!(parse("x in ()").to_string(), "x in ()");
        assert_eq!(parse("x>1,y<2").to_string(), "x>1,y<2");
    }

    // --- API selectors ----------------------------------------------------------------

    fn api(match_labels: &[(&str, &str)], expressions: &[(&str, &str, &[&str])]) -> metav1::LabelSelector {
        metav1::LabelSelector {
            match_labels: (!match_labels.is_empty()).then(|| labels(match_labels)),
            match_expressions: (!expressions.is_empty()).then(|| {
                expressions
                    .iter()
                    .map(|(key, operator, values)| metav1::LabelSelectorRequirement {
                        key: key.to_string(),
                        operator: operator.to_string(),
                        values: Some(values.iter().map(|v| v.to_string()).collect()),
                    })
                    .collect()
            }),
        }
    }

    fn from_api(selector: &metav1::LabelSelector) -> LabelSelector {
        match LabelSelector::from_api(selector) {
            Ok(parsed) => parsed,
            Err(e) => panic!("{selector:?} should convert: {e}"),
        }
    }

    #[test]
    fn empty_api_selector_matches_everything() {
        let selector = from_api(&metav1::LabelSelector::default());
        assert!(selector.is_empty());
        assert!(selector.matches(&labels(&[("any", "thing")])));
    }

    #[test]
    fn api_selector_combines_labels_and_expressions() {
        let selector = from_api(&api(
            &[("app", "web")],
            &[
                ("tier", "In", &["front", "edge"]),
                ("env", "NotIn", &["prod"]),
                ("ready", "Exists", &[]),
                ("old", "DoesNotExist", &[]),
            ],
        ));
        assert_eq!(selector.to_string(), "app=web,env notin (prod),!old,ready,tier in (edge,front)");
        assert!(selector.matches(&labels(&[("app", "web"), ("tier", "edge"), ("ready", "")])));
        assert!(!selector.matches(&labels(&[("app", "web"), ("tier", "edge")])));
    }

    #[test]
    fn api_selector_errors() {
        let err = |s: &metav1::LabelSelector| LabelSelector::from_api(s).err().unwrap_or_default();
        assert_eq!(err(&api(&[], &[("a", "Gt", &["1"])])), r#""Gt" is not a valid label selector operator"#);
        assert_eq!(
            err(&api(&[], &[("a", "In", &[])])),
            "values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty"
        );
        assert_eq!(
            err(&api(&[], &[("a", "Exists", &["x"])])),
            r#"values: Invalid value: ["x"]: values set must be empty for exists and does not exist"#
        );
        assert!(err(&api(&[("bad key", "v")], &[])).starts_with(r#"key: Invalid value: "bad key": name part must"#));
        assert_eq!(
            err(&api(&[("k", "bad value")], &[])),
            format!(r#"values[0][k]: Invalid value: "bad value": {LABEL_VALUE_FORMAT}"#)
        );
    }

    #[test]
    fn from_map_matches_exactly() {
        let selector = LabelSelector::from_map(&labels(&[("b", "2"), ("a", "1")]));
        assert_eq!(selector.to_string(), "a=1,b=2");
        assert!(selector.matches(&labels(&[("a", "1"), ("b", "2"), ("c", "3")])));
        assert!(!selector.matches(&labels(&[("a", "1")])));
        assert!(LabelSelector::from_map(&BTreeMap::new()).is_empty());
    }

    // --- field selectors --------------------------------------------------------------

    fn pod_fields(field: &str) -> Option<String> {
        match field {
            "metadata.name" => Some("web-1".to_string()),
            "status.phase" => Some("Running".to_string()),
            _ => None,
        }
    }

    #[test]
    fn field_selector_terms() {
        let selector = fields("status.phase=Running,metadata.name!=web-2,spec.nodeName==");
        let terms: Vec<(&str, FieldOperator, &str)> =
            selector.requirements().iter().map(|r| (r.field.as_str(), r.operator, r.value.as_str())).collect();
        assert_eq!(
            terms,
            vec![
                ("metadata.name", FieldOperator::NotEquals, "web-2"),
                ("spec.nodeName", FieldOperator::Equals, ""),
                ("status.phase", FieldOperator::Equals, "Running"),
            ]
        );
        assert!(selector.matches(pod_fields));
        assert!(!fields("spec.nodeName=node-1").matches(pod_fields));
        assert!(fields("spec.nodeName!=node-1").matches(pod_fields));
        assert!(!fields("status.phase!=Running").matches(pod_fields));
    }

    #[test]
    fn empty_field_selector_selects_everything() {
        for empty in ["", ",", ",,", "=", "!=", "==,"] {
            let selector = fields(empty);
            assert!(selector.is_empty(), "{empty:?}");
            assert!(selector.matches(|_| None));
        }
    }

    #[test]
    fn field_values_unescape() {
        let selector = fields(r"a=x\,y\=z\\,b=1");
        assert_eq!(selector.requirements()[0].value, r"x,y=z\");
        assert_eq!(selector.requirements()[1].value, "1");
        assert_eq!(selector.to_string(), r"a=x\,y\=z\\,b=1");
        assert_eq!(escape_field_value(r"a\b,c=d!"), r"a\\b\,c\=d!");
        assert_eq!(unescape_field_value(r"a\\b\,c\=d!").as_deref(), Ok(r"a\b,c=d!"));
    }

    #[test]
    fn field_selector_errors_are_worded_like_kubernetes() {
        let err = |s: &str| FieldSelector::parse(s).err().unwrap_or_default();
        assert_eq!(err("status.phase"), "invalid selector: 'status.phase'; can't understand 'status.phase'");
        assert_eq!(err("a=1,b"), "invalid selector: 'a=1,b'; can't understand 'b'");
        assert_eq!(err("a=b=c"), "invalid field selector: unescaped character in value: 61");
        assert_eq!(err(r"a=\!"), r"invalid field selector: invalid escape sequence: \!");
        assert_eq!(err(r"a=b\"), r"invalid field selector: invalid escape sequence: \");
    }

    #[test]
    fn field_operator_is_the_first_one_found() {
        // `!=` is found first, leaving "=b" as the value, which has a bare '='.
        let err = FieldSelector::parse("a!==b").err();
        assert_eq!(err.as_deref(), Some("invalid field selector: unescaped character in value: 61"));
        let term = |s: &str| fields(s).requirements()[0].clone();
        let bang = term("a!b=c");
        assert_eq!((bang.field.as_str(), bang.operator, bang.value.as_str()), ("a!b", FieldOperator::Equals, "c"));
        let double = term("a==b");
        assert_eq!((double.field.as_str(), double.operator, double.value.as_str()), ("a", FieldOperator::Equals, "b"));
        // Field names are taken as written, spaces included.
        assert_eq!(fields("a =b").requirements()[0].field, "a ");
    }

    #[test]
    fn field_display_and_exact_match() {
        let selector = fields("b==2,a!=1");
        assert_eq!(selector.to_string(), "a!=1,b=2");
        assert_eq!(selector.requires_exact_match("b"), Some("2"));
        assert_eq!(selector.requires_exact_match("a"), None);
    }

    // --- robustness -------------------------------------------------------------------

    /// xorshift64*: a tiny deterministic generator, so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % n as u64).unwrap_or(0)
        }
    }

    const PIECES: &[&str] = &[
        "a",
        "b",
        "Z",
        "0",
        "9",
        "-",
        "_",
        ".",
        "/",
        "=",
        "==",
        "!",
        "!=",
        "(",
        ")",
        ",",
        "<",
        ">",
        " ",
        "\t",
        "\n",
        "\\",
        "in",
        "notin",
        "é",
        "\u{0}",
        "%",
        "app",
        "k8s.io/",
        "\u{1F600}",
    ];

    fn garbage(rng: &mut Rng) -> String {
        let len = rng.below(16);
        (0..len).map(|_| PIECES[rng.below(PIECES.len())]).collect()
    }

    #[test]
    fn random_input_never_panics_and_round_trips() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let sample = labels(&[("a", "b"), ("app", "9"), ("b", "")]);
        for _ in 0..50_000 {
            let input = garbage(&mut rng);
            if let Ok(selector) = LabelSelector::parse(&input) {
                let _ = selector.matches(&sample);
                let again = LabelSelector::parse(&selector.to_string());
                assert_eq!(again.as_ref(), Ok(&selector), "label selector {input:?} -> {selector}");
            }
            if let Ok(selector) = FieldSelector::parse(&input) {
                let _ = selector.matches(|f| (f == "a").then(|| "b".to_string()));
                let mut again = FieldSelector::parse(&selector.to_string()).map(|s| s.requirements().to_vec());
                let mut expected = selector.requirements().to_vec();
                if let Ok(terms) = again.as_mut() {
                    terms.sort_by_key(ToString::to_string);
                }
                expected.sort_by_key(ToString::to_string);
                assert_eq!(again, Ok(expected), "field selector {input:?} -> {selector}");
            }
            let _ = validation::qualified_name(&input);
            let _ = validation::name_errors(&input, crate::NameRule::DnsSubdomain, true);
        }
    }
}

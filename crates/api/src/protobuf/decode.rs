//! Protobuf -> JSON, shaped like the JSON a Go client would have sent.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{Map, Number, Value};

use super::error::Error;
use super::schema_types::{Card, Field, Kind, Message, Repr};
use super::time;
use super::wire::{Reader, WireValue};
use super::MAGIC;

/// Kubernetes objects nest about 15 messages deep; the bound keeps hostile input
/// (and RawExtensions holding objects holding RawExtensions) from exhausting the stack.
const MAX_DEPTH: usize = 100;

/// Decodes a `k8s\0`-prefixed `runtime.Unknown` into the object's JSON.
pub(super) fn decode_object(body: &[u8], depth: usize) -> Result<Value, Error> {
    let rest = body.strip_prefix(&MAGIC[..]).ok_or("not Kubernetes protobuf: the k8s\\0 prefix is missing")?;
    let unknown = Unknown::parse(rest)?;
    if !unknown.content_encoding.is_empty() {
        return Err(format!("unsupported content encoding {:?}", unknown.content_encoding).into());
    }
    if unknown.api_version.is_empty() || unknown.kind.is_empty() {
        return Err("runtime.Unknown lacks apiVersion or kind".into());
    }
    let raw = unknown.raw.ok_or("runtime.Unknown carries no object")?;
    let message = Message::for_kind(&unknown.api_version, &unknown.kind)
        .ok_or_else(|| format!("no protobuf schema for {} {}", unknown.api_version, unknown.kind))?;
    let mut object = Map::new();
    object.insert("apiVersion".into(), Value::String(unknown.api_version));
    object.insert("kind".into(), Value::String(unknown.kind));
    fields_into(message, raw, &mut object, depth + 1)?;
    Ok(Value::Object(object))
}

/// The envelope: {1: typeMeta {1: apiVersion, 2: kind}, 2: raw, 3: contentEncoding,
/// 4: contentType}.
struct Unknown<'a> {
    api_version: String,
    kind: String,
    /// Go always writes it, if only empty; its absence means a truncated body.
    raw: Option<&'a [u8]>,
    content_encoding: String,
}

impl<'a> Unknown<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let mut unknown =
            Unknown { api_version: String::new(), kind: String::new(), raw: None, content_encoding: String::new() };
        let mut reader = Reader::new(bytes);
        while let Some((tag, value)) = reader.next_field()? {
            match tag {
                1 => {
                    let mut type_meta = Reader::new(value.bytes()?);
                    while let Some((tag, value)) = type_meta.next_field()? {
                        match tag {
                            1 => unknown.api_version = string(value)?,
                            2 => unknown.kind = string(value)?,
                            _ => {}
                        }
                    }
                }
                2 => unknown.raw = Some(value.bytes()?),
                3 => unknown.content_encoding = string(value)?,
                _ => {} // contentType is always empty in practice: raw is protobuf
            }
        }
        Ok(unknown)
    }
}

/// Decodes `bytes` as `message`'s fields into `out`.
fn fields_into(message: &Message, bytes: &[u8], out: &mut Map<String, Value>, depth: usize) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err("messages nested too deeply".into());
    }
    let mut reader = Reader::new(bytes);
    while let Some((tag, value)) = reader.next_field()? {
        // Fields from a newer Kubernetes: skip them, as Go's decoder does.
        let Some(field) = message.field(tag) else { continue };
        field_into(field, value, out, depth).map_err(|e| e.at(field.json))?;
    }
    Ok(())
}

fn field_into(field: &Field, value: WireValue, out: &mut Map<String, Value>, depth: usize) -> Result<(), Error> {
    match (field.card, field.kind) {
        (Card::Inline, Kind::Msg(index)) => fields_into(Message::by_index(index), value.bytes()?, out, depth + 1),
        (Card::Inline, _) => Err("an inline field must be a message".into()),
        (Card::Repeated, kind) => {
            let Value::Array(list) = out.entry(field.json).or_insert_with(|| Value::Array(Vec::new())) else {
                return Err("JSON key used twice".into());
            };
            let index = list.len();
            push_repeated(kind, value, list, depth).map_err(|e| e.at(format!("[{index}]")))
        }
        (_, Kind::MapStr | Kind::MapBytes | Kind::MapMsg(_)) => {
            let (key, entry) = map_entry(field.kind, value.bytes()?, depth)?;
            let Value::Object(map) = out.entry(field.json).or_insert_with(|| Value::Object(Map::new())) else {
                return Err("JSON key used twice".into());
            };
            map.insert(key, entry);
            Ok(())
        }
        (_, Kind::Msg(index)) if Message::by_index(index).repr == Repr::Plain => {
            // A message field sent twice merges into one, as protobuf specifies.
            if !out.get(field.json).is_some_and(Value::is_object) {
                out.insert(field.json.to_string(), Value::Object(Map::new()));
            }
            let Some(Value::Object(object)) = out.get_mut(field.json) else {
                return Err("JSON key used twice".into());
            };
            fields_into(Message::by_index(index), value.bytes()?, object, depth + 1)
        }
        (card, kind) => {
            let decoded = single(kind, value, depth)?;
            // See `Card::Optional`: without this, `namespace: ""`, `nodePort: 0` and the
            // like would look set.
            if !(card == Card::Optional && kind.is_scalar() && is_zero(&decoded)) {
                out.insert(field.json.to_string(), decoded);
            }
            Ok(())
        }
    }
}

fn push_repeated(kind: Kind, value: WireValue, list: &mut Vec<Value>, depth: usize) -> Result<(), Error> {
    match (kind, value) {
        // Kubernetes never packs repeated numbers (proto2), but other writers may.
        (Kind::Bool | Kind::Int32 | Kind::Int64, WireValue::Bytes(packed)) => {
            let mut reader = Reader::new(packed);
            while !reader.is_empty() {
                list.push(single(kind, WireValue::Varint(reader.varint()?), depth)?);
            }
        }
        (Kind::Double, WireValue::Bytes(packed)) => {
            let mut reader = Reader::new(packed);
            while !reader.is_empty() {
                list.push(single(kind, WireValue::Fixed64(reader.fixed64()?), depth)?);
            }
        }
        _ => list.push(single(kind, value, depth)?),
    }
    Ok(())
}

/// One map entry message: {1: key, 2: value}; a missing value is the zero value.
fn map_entry(kind: Kind, bytes: &[u8], depth: usize) -> Result<(String, Value), Error> {
    let (mut key, mut raw) = (String::new(), None);
    let mut reader = Reader::new(bytes);
    while let Some((tag, value)) = reader.next_field()? {
        match tag {
            1 => key = string(value)?,
            2 => raw = Some(value),
            _ => {}
        }
    }
    let value = match kind {
        Kind::MapStr => Value::String(raw.map(string).transpose()?.unwrap_or_default()),
        Kind::MapBytes => Value::String(BASE64.encode(raw.map(WireValue::bytes).transpose()?.unwrap_or_default())),
        Kind::MapMsg(index) => {
            let bytes = raw.map(WireValue::bytes).transpose()?.unwrap_or_default();
            message_value(Message::by_index(index), bytes, depth + 1).map_err(|e| e.at(format!("[{key}]")))?
        }
        _ => return Err("not a map".into()),
    };
    Ok((key, value))
}

fn single(kind: Kind, value: WireValue, depth: usize) -> Result<Value, Error> {
    Ok(match kind {
        Kind::Str => Value::String(string(value)?),
        Kind::Bytes => Value::String(BASE64.encode(value.bytes()?)),
        Kind::Bool => Value::Bool(value.varint()? != 0),
        // int32 travels sign-extended to 64 bits; truncating recovers it.
        Kind::Int32 => Value::from(value.varint()? as i32),
        Kind::Int64 => Value::from(value.varint()? as i64),
        Kind::Double => double(f64::from_bits(value.fixed64()?))?,
        Kind::Msg(index) => message_value(Message::by_index(index), value.bytes()?, depth + 1)?,
        Kind::MapStr | Kind::MapBytes | Kind::MapMsg(_) => return Err("a map cannot be a single value".into()),
    })
}

fn message_value(message: &Message, bytes: &[u8], depth: usize) -> Result<Value, Error> {
    if depth > MAX_DEPTH {
        return Err("messages nested too deeply".into());
    }
    if message.repr == Repr::Plain {
        let mut object = Map::new();
        fields_into(message, bytes, &mut object, depth)?;
        return Ok(Value::Object(object));
    }
    special(message, bytes, depth)
}

/// The messages whose JSON is not an object of their fields; see `Repr`.
fn special(message: &Message, bytes: &[u8], depth: usize) -> Result<Value, Error> {
    let fields = Fields::parse(bytes)?;
    Ok(match message.repr {
        // Go marshals a zero Time as an empty message and its JSON as null.
        Repr::Time | Repr::MicroTime if bytes.is_empty() => Value::Null,
        Repr::Time => Value::String(time::format_rfc3339(fields.int(1)?, None)?),
        Repr::MicroTime => {
            let nanos = i128::from(fields.int(1)?) * 1_000_000_000 + i128::from(fields.int(2)? as i32);
            let secs = i64::try_from(nanos.div_euclid(1_000_000_000)).map_err(|_| "time out of range")?;
            let micros = (nanos.rem_euclid(1_000_000_000) / 1_000) as u32;
            Value::String(time::format_rfc3339(secs, Some(micros))?)
        }
        Repr::Duration => Value::String(time::format_duration(fields.int(1)?)),
        // A zero Quantity prints as "0".
        Repr::Quantity => Value::String(fields.last(1).map(string).transpose()?.unwrap_or_else(|| "0".into())),
        Repr::IntOrString => match fields.int(1)? {
            0 => Value::from(fields.int(2)? as i32),
            1 => Value::String(fields.last(3).map(string).transpose()?.unwrap_or_default()),
            other => return Err(format!("IntOrString has unknown type {other}").into()),
        },
        Repr::RawJson => raw_json(fields.last(1).map(WireValue::bytes).transpose()?.unwrap_or_default(), depth)?,
        Repr::Items => Value::Array(fields.all(1).map(|v| string(v).map(Value::String)).collect::<Result<_, _>>()?),
        Repr::SchemaOrBool => match fields.last(2) {
            Some(schema) => child_value(message, 2, schema, depth)?,
            None => Value::Bool(fields.int(1)? != 0),
        },
        Repr::SchemaOrArray if fields.all(2).next().is_some() => {
            Value::Array(fields.all(2).map(|v| child_value(message, 2, v, depth)).collect::<Result<_, _>>()?)
        }
        Repr::SchemaOrStringArray if fields.all(2).next().is_some() => {
            Value::Array(fields.all(2).map(|v| string(v).map(Value::String)).collect::<Result<_, _>>()?)
        }
        Repr::SchemaOrArray | Repr::SchemaOrStringArray => match fields.last(1) {
            Some(schema) => child_value(message, 1, schema, depth)?,
            None => Value::Null,
        },
        Repr::Plain => return Err("not a special message".into()),
    })
}

/// Field `tag` of `message` (a schema inside a JSONSchemaPropsOr* union) as JSON.
fn child_value(message: &Message, tag: u32, value: WireValue, depth: usize) -> Result<Value, Error> {
    let child = message.child(tag).ok_or("schema field is not a message")?;
    message_value(child, value.bytes()?, depth + 1)
}

/// RawExtension bytes: usually JSON; an object a Go client embedded while writing
/// protobuf is itself `k8s\0`-prefixed protobuf.
fn raw_json(raw: &[u8], depth: usize) -> Result<Value, Error> {
    if raw.is_empty() {
        Ok(Value::Null)
    } else if raw.starts_with(&MAGIC) {
        decode_object(raw, depth + 1)
    } else {
        serde_json::from_slice(raw).map_err(|e| format!("embedded JSON: {e}").into())
    }
}

/// A special message's fields by tag (they are tiny; no schema walk needed).
struct Fields<'a>(Vec<(u32, WireValue<'a>)>);

impl<'a> Fields<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let mut fields = Vec::new();
        let mut reader = Reader::new(bytes);
        while let Some(field) = reader.next_field()? {
            fields.push(field);
        }
        Ok(Fields(fields))
    }

    /// The last occurrence wins, as in protobuf.
    fn last(&self, tag: u32) -> Option<WireValue<'a>> {
        self.0.iter().rev().find(|(t, _)| *t == tag).map(|(_, v)| *v)
    }

    fn all(&self, tag: u32) -> impl Iterator<Item = WireValue<'a>> + '_ {
        self.0.iter().filter(move |(t, _)| *t == tag).map(|(_, v)| *v)
    }

    /// A varint field as i64, zero when absent.
    fn int(&self, tag: u32) -> Result<i64, Error> {
        Ok(self.last(tag).map(WireValue::varint).transpose()?.unwrap_or(0) as i64)
    }
}

/// A scalar's zero value: what Go's `omitempty` leaves out.
fn is_zero(value: &Value) -> bool {
    match value {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

/// Go strings may hold any bytes; Go's JSON encoder replaces invalid UTF-8 the same way.
fn string(value: WireValue) -> Result<String, Error> {
    Ok(String::from_utf8_lossy(value.bytes()?).into_owned())
}

fn double(value: f64) -> Result<Value, Error> {
    Number::from_f64(value).map(Value::Number).ok_or_else(|| format!("{value} has no JSON form").into())
}

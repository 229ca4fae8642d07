//! JSON -> protobuf, the inverse of `decode`.
//!
//! Strict on purpose: a key the schema does not know is an error rather than silently
//! dropped data, so a server can fall back to answering in JSON.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::error::Error;
use super::schema_types::{Card, Field, Kind, Message, Repr};
use super::time;
use super::wire::Writer;
use super::MAGIC;

pub(super) fn encode_object(value: &Value) -> Result<Vec<u8>, Error> {
    let object = value.as_object().ok_or("not a JSON object")?;
    let text = |key: &str| object.get(key).and_then(Value::as_str).filter(|s| !s.is_empty());
    let (api_version, kind) = text("apiVersion").zip(text("kind")).ok_or("apiVersion and kind are required")?;
    let message =
        Message::for_kind(api_version, kind).ok_or_else(|| format!("no protobuf schema for {api_version} {kind}"))?;
    let raw = plain(message, object, &["apiVersion", "kind"])?;

    let mut type_meta = Writer::default();
    type_meta.bytes_field(1, api_version.as_bytes());
    type_meta.bytes_field(2, kind.as_bytes());
    let mut unknown = Writer::default();
    unknown.bytes_field(1, &type_meta.into_bytes());
    unknown.bytes_field(2, &raw);
    // Go always writes the (empty) contentEncoding and contentType.
    unknown.bytes_field(3, b"");
    unknown.bytes_field(4, b"");
    Ok([&MAGIC[..], &unknown.into_bytes()].concat())
}

/// A JSON object as `message`'s fields; `ignore` lists keys that live elsewhere.
fn plain(message: &Message, object: &Map<String, Value>, ignore: &[&str]) -> Result<Vec<u8>, Error> {
    if let Some(key) = object.keys().find(|k| !ignore.contains(&k.as_str()) && !message.has_json_key(k)) {
        return Err(Error::new(format!("unknown field {key:?} for {}", message.name)));
    }
    let mut writer = Writer::default();
    write_fields(message, object, &mut writer)?;
    Ok(writer.into_bytes())
}

fn write_fields(message: &Message, object: &Map<String, Value>, writer: &mut Writer) -> Result<(), Error> {
    for field in message.fields {
        if let (Card::Inline, Kind::Msg(index)) = (field.card, field.kind) {
            // The embedded struct's keys sit in this same object.
            let mut inner = Writer::default();
            write_fields(Message::by_index(index), object, &mut inner)?;
            let bytes = inner.into_bytes();
            if !bytes.is_empty() {
                writer.bytes_field(field.tag, &bytes);
            }
        } else if let Some(value) = object.get(field.json) {
            if value.is_null() {
                // A zero Time is null in JSON and an empty message on the wire
                // (`creationTimestamp: null`); any other null is an absent field.
                if let Kind::Msg(index) = field.kind {
                    if matches!(Message::by_index(index).repr, Repr::Time | Repr::MicroTime) {
                        writer.bytes_field(field.tag, &[]);
                    }
                }
                continue;
            }
            write_field(field, value, writer).map_err(|e| e.at(field.json))?;
        }
    }
    Ok(())
}

fn write_field(field: &Field, value: &Value, writer: &mut Writer) -> Result<(), Error> {
    match (field.card, field.kind) {
        (Card::Repeated, kind) => {
            for (i, item) in value.as_array().ok_or("expected an array")?.iter().enumerate() {
                write_value(field.tag, kind, item, writer).map_err(|e| e.at(format!("[{i}]")))?;
            }
        }
        (_, Kind::MapStr | Kind::MapBytes | Kind::MapMsg(_)) => {
            let map = value.as_object().ok_or("expected an object")?;
            let value_kind = match field.kind {
                Kind::MapStr => Kind::Str,
                Kind::MapBytes => Kind::Bytes,
                Kind::MapMsg(index) => Kind::Msg(index),
                other => other,
            };
            // Go writes map entries sorted by key.
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for key in keys {
                let mut entry = Writer::default();
                entry.bytes_field(1, key.as_bytes());
                write_value(2, value_kind, &map[key], &mut entry).map_err(|e| e.at(format!("[{key}]")))?;
                writer.bytes_field(field.tag, &entry.into_bytes());
            }
        }
        (_, kind) => write_value(field.tag, kind, value, writer)?,
    }
    Ok(())
}

fn write_value(tag: u32, kind: Kind, value: &Value, writer: &mut Writer) -> Result<(), Error> {
    match kind {
        Kind::Str => writer.bytes_field(tag, text(value)?.as_bytes()),
        Kind::Bytes => {
            let bytes = BASE64.decode(text(value)?).map_err(|e| format!("invalid base64: {e}"))?;
            writer.bytes_field(tag, &bytes);
        }
        Kind::Bool => writer.varint_field(tag, u64::from(value.as_bool().ok_or("expected a boolean")?)),
        Kind::Int32 => writer.varint_field(tag, int32(value)? as u64),
        Kind::Int64 => writer.varint_field(tag, integer(value)? as u64),
        Kind::Double => writer.fixed64_field(tag, value.as_f64().ok_or("expected a number")?.to_bits()),
        Kind::Msg(index) => writer.bytes_field(tag, &message_bytes(Message::by_index(index), value)?),
        Kind::MapStr | Kind::MapBytes | Kind::MapMsg(_) => return Err("a map cannot be a single value".into()),
    }
    Ok(())
}

fn message_bytes(message: &Message, value: &Value) -> Result<Vec<u8>, Error> {
    let mut w = Writer::default();
    match (message.repr, value) {
        (Repr::Plain, Value::Object(object)) => return plain(message, object, &[]),
        (Repr::Time, _) => {
            // Go's Time carries whole seconds; its nanos are always written as zero.
            let (secs, _) = time::parse_rfc3339(text(value)?)?;
            w.varint_field(1, secs as u64);
            w.varint_field(2, 0);
        }
        (Repr::MicroTime, _) => {
            let (secs, nanos) = time::parse_rfc3339(text(value)?)?;
            w.varint_field(1, secs as u64);
            w.varint_field(2, u64::from(nanos / 1_000 * 1_000));
        }
        (Repr::Duration, _) => w.varint_field(1, time::parse_duration(text(value)?)? as u64),
        // Quantities may be written as bare JSON numbers.
        (Repr::Quantity, Value::Number(n)) => w.bytes_field(1, n.to_string().as_bytes()),
        (Repr::Quantity, _) => w.bytes_field(1, text(value)?.as_bytes()),
        (Repr::IntOrString, Value::String(s)) => {
            w.varint_field(1, 1);
            w.varint_field(2, 0);
            w.bytes_field(3, s.as_bytes());
        }
        (Repr::IntOrString, _) => {
            w.varint_field(1, 0);
            w.varint_field(2, int32(value)? as u64);
            w.bytes_field(3, b"");
        }
        // Objects embedded in a RawExtension travel as JSON, as they do through Go
        // when the RawExtension came from JSON.
        (Repr::RawJson, _) => w.bytes_field(1, &serde_json::to_vec(value).map_err(|e| e.to_string())?),
        (Repr::Items, _) => {
            for item in value.as_array().ok_or("expected an array")? {
                w.bytes_field(1, text(item)?.as_bytes());
            }
        }
        (Repr::SchemaOrBool, Value::Bool(allows)) => w.varint_field(1, u64::from(*allows)),
        (Repr::SchemaOrBool, _) => {
            w.varint_field(1, 1);
            w.bytes_field(2, &child_bytes(message, 2, value)?);
        }
        (Repr::SchemaOrArray, Value::Array(items)) => {
            for item in items {
                w.bytes_field(2, &child_bytes(message, 2, item)?);
            }
        }
        (Repr::SchemaOrStringArray, Value::Array(items)) => {
            for item in items {
                w.bytes_field(2, text(item)?.as_bytes());
            }
        }
        (Repr::SchemaOrArray | Repr::SchemaOrStringArray, _) => w.bytes_field(1, &child_bytes(message, 1, value)?),
        (Repr::Plain, _) => return Err("expected an object".into()),
    }
    Ok(w.into_bytes())
}

fn child_bytes(message: &Message, tag: u32, value: &Value) -> Result<Vec<u8>, Error> {
    message_bytes(message.child(tag).ok_or("schema field is not a message")?, value)
}

fn text(value: &Value) -> Result<&str, Error> {
    value.as_str().ok_or_else(|| "expected a string".into())
}

fn integer(value: &Value) -> Result<i64, Error> {
    value.as_i64().ok_or_else(|| format!("expected an integer, found {value}").into())
}

/// int32 travels as a sign-extended 64-bit varint.
fn int32(value: &Value) -> Result<i64, Error> {
    let n = integer(value)?;
    i32::try_from(n).map_err(|_| format!("{n} does not fit in int32"))?;
    Ok(n)
}

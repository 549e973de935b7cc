//! The full Singer message model, for stages that need a message's content.
//!
//! Numbers keep their exact text (serde_json's `arbitrary_precision`), property order is kept
//! (`preserve_order`), and keys a message carries beyond the ones Singer defines are kept in
//! `extra` and written back, so parsing and re-serialising a message loses nothing.

use serde_json::{Map, Value};

use super::envelope::{self, MessageKind, ScanError};

/// A parsed Singer message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// `SCHEMA`: a stream's JSON Schema and keys.
    Schema(SchemaMessage),
    /// `RECORD`: one row of a stream.
    Record(RecordMessage),
    /// `STATE`: an opaque bookmark value.
    State(StateMessage),
    /// `ACTIVATE_VERSION`: a full-table sync finished; older versions may go.
    ActivateVersion(ActivateVersionMessage),
    /// `BATCH`: records in files, by manifest.
    Batch(BatchMessage),
    /// A message of a type Singer does not define (passed through as is).
    Unknown(Map<String, Value>),
}

/// A `SCHEMA` message.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaMessage {
    /// The stream.
    pub stream: String,
    /// The JSON Schema of the stream's records.
    pub schema: Value,
    /// The primary key properties.
    pub key_properties: Vec<String>,
    /// The replication key properties, when given.
    pub bookmark_properties: Option<Vec<String>>,
    /// Other keys of the message.
    pub extra: Map<String, Value>,
}

/// A `RECORD` message.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordMessage {
    /// The stream.
    pub stream: String,
    /// The record.
    pub record: Map<String, Value>,
    /// The table version (for ACTIVATE_VERSION), when given.
    pub version: Option<Value>,
    /// When the record was extracted, when given.
    pub time_extracted: Option<Value>,
    /// Other keys of the message.
    pub extra: Map<String, Value>,
}

/// A `STATE` message.
#[derive(Debug, Clone, PartialEq)]
pub struct StateMessage {
    /// The state value (bookmarks and such; opaque to dsm).
    pub value: Value,
    /// Other keys of the message.
    pub extra: Map<String, Value>,
}

/// An `ACTIVATE_VERSION` message.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivateVersionMessage {
    /// The stream.
    pub stream: String,
    /// The version now current.
    pub version: Value,
    /// Other keys of the message.
    pub extra: Map<String, Value>,
}

/// A `BATCH` message.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchMessage {
    /// The stream.
    pub stream: String,
    /// How the batch files are encoded.
    pub encoding: Value,
    /// The batch files.
    pub manifest: Vec<Value>,
    /// Other keys of the message.
    pub extra: Map<String, Value>,
}

/// Why a line could not be parsed into a [`Message`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MessageError {
    /// The envelope is broken (not JSON, no type, no stream).
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// A required key is missing or has the wrong type.
    #[error("{kind} message: {problem}")]
    Field {
        /// The message type.
        kind: &'static str,
        /// What is wrong.
        problem: String,
    },
}

fn take_stream(obj: &mut Map<String, Value>, kind: &'static str) -> Result<String, MessageError> {
    match obj.shift_remove("stream") {
        Some(Value::String(s)) => Ok(s),
        _ => Err(MessageError::Field {
            kind,
            problem: "`stream` must be a string".into(),
        }),
    }
}

fn string_list(value: Value, kind: &'static str, key: &str) -> Result<Vec<String>, MessageError> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(MessageError::Field {
                    kind,
                    problem: format!("`{key}` must list strings"),
                }),
            })
            .collect(),
        _ => Err(MessageError::Field {
            kind,
            problem: format!("`{key}` must be an array of strings"),
        }),
    }
}

/// Most top-level keys the fast path of [`Message::parse`] takes; a line with more (or with a
/// key twice, or a key with escapes) is read as a plain JSON object instead.
const MAX_FAST_KEYS: usize = 16;

/// A line's top-level keys, borrowed from the line, with their values in order: what
/// [`Message::parse`] reads instead of a whole JSON object, so the envelope costs no map, no
/// hashing and no key allocations. Reading fails (and the caller takes the general path) on
/// anything unusual: duplicate keys, escaped keys, many keys, a line that is not an object.
struct Fields<'de>(Vec<(&'de str, Value)>);

impl<'de> Fields<'de> {
    fn read(line: &'de [u8]) -> Option<Fields<'de>> {
        let mut scratch = Vec::with_capacity(32);
        let mut de = serde_json::Deserializer::from_slice(line);
        let fields = serde::de::DeserializeSeed::deserialize(FieldsSeed(&mut scratch), &mut de);
        de.end().ok()?;
        fields.ok()
    }
}

struct FieldsSeed<'s>(&'s mut Vec<(String, Value)>);

impl<'de> serde::de::DeserializeSeed<'de> for FieldsSeed<'_> {
    type Value = Fields<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Fields<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for FieldsSeed<'_> {
    type Value = Fields<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a Singer message object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        let mut fields: Vec<(&'de str, Value)> = Vec::with_capacity(6);
        while let Some(key) = map.next_key::<&'de str>()? {
            if fields.len() >= MAX_FAST_KEYS || fields.iter().any(|(k, _)| *k == key) {
                return Err(serde::de::Error::custom("take the general path"));
            }
            fields.push((key, map.next_value_seed(ValueSeed(&mut *self.0))?));
        }
        Ok(Fields(fields))
    }
}

/// Reads a JSON value into the same [`Value`] serde_json's own `Deserialize` builds, but
/// gathers each object's entries on a shared scratch stack first and then fills a map sized
/// once: no rehashing and no regrowing while a record's properties arrive.
struct ValueSeed<'s>(&'s mut Vec<(String, Value)>);

/// The key serde_json (with `arbitrary_precision`) uses to hand over a number's exact text as a
/// one-entry map; a unit test fails if serde_json ever changes it.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

enum Key {
    Number,
    Name(String),
}

struct KeySeed;

impl<'de> serde::de::DeserializeSeed<'de> for KeySeed {
    type Value = Key;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for KeySeed {
    type Value = Key;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string key")
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Key, E> {
        Ok(if s == NUMBER_TOKEN {
            Key::Number
        } else {
            Key::Name(s.to_owned())
        })
    }
    fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Key, E> {
        Ok(if s == NUMBER_TOKEN {
            Key::Number
        } else {
            Key::Name(s)
        })
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ValueSeed<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Number(i.into()))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Value, E> {
        Ok(Value::Number(u.into()))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(ValueSeed(&mut *self.0))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let first = match map.next_key_seed(KeySeed)? {
            None => return Ok(Value::Object(Map::new())),
            Some(Key::Number) => {
                let text: String = map.next_value()?;
                return text
                    .parse::<serde_json::Number>()
                    .map(Value::Number)
                    .map_err(serde::de::Error::custom);
            }
            Some(Key::Name(k)) => k,
        };
        let base = self.0.len();
        let value = map.next_value_seed(ValueSeed(&mut *self.0))?;
        self.0.push((first, value));
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(ValueSeed(&mut *self.0))?;
            self.0.push((key, value));
        }
        let mut obj = Map::with_capacity(self.0.len() - base);
        // `insert` keeps a repeated key at its first place with the last value, as
        // serde_json's own reader does.
        for (k, v) in self.0.drain(base..) {
            obj.insert(k, v);
        }
        Ok(Value::Object(obj))
    }
}

impl Message {
    /// Parses a line (no newline). `NaN`/`Infinity` tokens are read as `null`.
    ///
    /// A well-formed line is read once, by serde_json; only a line serde_json refuses (one with
    /// `NaN`/`Infinity`, or a broken one) goes through the envelope scanner, which sanitizes it
    /// or says precisely what is wrong.
    pub fn parse(line: &[u8]) -> Result<Message, MessageError> {
        if let Some(fields) = Fields::read(line) {
            let kind = match fields.0.iter().find(|(k, _)| *k == "type") {
                Some((_, Value::String(t))) => MessageKind::from_type(t),
                Some(_) => return Err(ScanError::TypeNotString.into()),
                None => return Err(ScanError::MissingType.into()),
            };
            return Self::from_fields(kind, fields);
        }
        match serde_json::from_slice::<Value>(line) {
            Ok(value) => Self::from_value(value),
            Err(_) => {
                let env = envelope::scan(line)?;
                Self::parse_scanned(&envelope::sanitize(line, &env.non_finite), env.kind)
            }
        }
    }

    /// Parses a line whose envelope the caller has already scanned (and sanitized, when the
    /// scan found `NaN`/`Infinity`): the line is read once more, by serde_json, and not scanned
    /// again.
    pub fn parse_scanned(line: &[u8], kind: MessageKind) -> Result<Message, MessageError> {
        if let Some(fields) = Fields::read(line) {
            return Self::from_fields(kind, fields);
        }
        let obj: Map<String, Value> =
            serde_json::from_slice(line).map_err(|_| ScanError::Syntax {
                offset: 0,
                reason: "invalid JSON",
            })?;
        Self::from_object(kind, obj)
    }

    /// Builds a message from a line's top-level keys. A RECORD (the message that comes by the
    /// million) is built straight from them; the rare other types go through a JSON object.
    fn from_fields(kind: MessageKind, fields: Fields<'_>) -> Result<Message, MessageError> {
        if kind != MessageKind::Record {
            let obj = fields
                .0
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            return Self::from_object(kind, obj);
        }
        const K: &str = "RECORD";
        let mut stream = None;
        let mut record = None;
        let mut version = None;
        let mut time_extracted = None;
        let mut extra = Map::new();
        for (k, v) in fields.0 {
            match k {
                "type" => {}
                "stream" => stream = Some(v),
                "record" => record = Some(v),
                "version" => version = Some(v),
                "time_extracted" => time_extracted = Some(v),
                _ => {
                    extra.insert(k.to_owned(), v);
                }
            }
        }
        // The same checks, in the same order, as `from_object`.
        let Some(Value::String(stream)) = stream else {
            return Err(MessageError::Field {
                kind: K,
                problem: "`stream` must be a string".into(),
            });
        };
        let Some(Value::Object(record)) = record else {
            return Err(MessageError::Field {
                kind: K,
                problem: "`record` must be an object".into(),
            });
        };
        Ok(Message::Record(RecordMessage {
            stream,
            record,
            version,
            time_extracted,
            extra,
        }))
    }

    /// Builds a message from an already parsed JSON object.
    pub fn from_value(value: Value) -> Result<Message, MessageError> {
        let Value::Object(obj) = value else {
            return Err(ScanError::NotAnObject.into());
        };
        let kind = match obj.get("type") {
            Some(Value::String(t)) => MessageKind::from_type(t),
            Some(_) => return Err(ScanError::TypeNotString.into()),
            None => return Err(ScanError::MissingType.into()),
        };
        Self::from_object(kind, obj)
    }

    fn from_object(
        kind: MessageKind,
        mut obj: Map<String, Value>,
    ) -> Result<Message, MessageError> {
        if matches!(kind, MessageKind::Unknown(_)) {
            return Ok(Message::Unknown(obj));
        }
        obj.shift_remove("type");
        Ok(match kind {
            MessageKind::Schema => {
                const K: &str = "SCHEMA";
                let stream = take_stream(&mut obj, K)?;
                let schema = match obj.shift_remove("schema") {
                    Some(schema @ Value::Object(_)) => schema,
                    Some(_) => {
                        return Err(MessageError::Field {
                            kind: K,
                            problem: "`schema` must be an object".into(),
                        });
                    }
                    None => {
                        return Err(MessageError::Field {
                            kind: K,
                            problem: "`schema` is missing".into(),
                        });
                    }
                };
                let key_properties = string_list(
                    obj.shift_remove("key_properties").unwrap_or(Value::Null),
                    K,
                    "key_properties",
                )?;
                let bookmark_properties = match obj.shift_remove("bookmark_properties") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(string_list(v, K, "bookmark_properties")?),
                };
                Message::Schema(SchemaMessage {
                    stream,
                    schema,
                    key_properties,
                    bookmark_properties,
                    extra: obj,
                })
            }
            MessageKind::Record => {
                const K: &str = "RECORD";
                let stream = take_stream(&mut obj, K)?;
                let record = match obj.shift_remove("record") {
                    Some(Value::Object(r)) => r,
                    _ => {
                        return Err(MessageError::Field {
                            kind: K,
                            problem: "`record` must be an object".into(),
                        });
                    }
                };
                let version = obj.shift_remove("version");
                let time_extracted = obj.shift_remove("time_extracted");
                Message::Record(RecordMessage {
                    stream,
                    record,
                    version,
                    time_extracted,
                    extra: obj,
                })
            }
            MessageKind::State => {
                let value = obj.shift_remove("value").unwrap_or(Value::Null);
                Message::State(StateMessage { value, extra: obj })
            }
            MessageKind::ActivateVersion => {
                const K: &str = "ACTIVATE_VERSION";
                let stream = take_stream(&mut obj, K)?;
                let version = obj
                    .shift_remove("version")
                    .ok_or_else(|| MessageError::Field {
                        kind: K,
                        problem: "`version` is missing".into(),
                    })?;
                Message::ActivateVersion(ActivateVersionMessage {
                    stream,
                    version,
                    extra: obj,
                })
            }
            MessageKind::Batch => {
                const K: &str = "BATCH";
                let stream = take_stream(&mut obj, K)?;
                let encoding = obj.shift_remove("encoding").unwrap_or(Value::Null);
                let manifest = match obj.shift_remove("manifest") {
                    Some(Value::Array(m)) => m,
                    _ => {
                        return Err(MessageError::Field {
                            kind: K,
                            problem: "`manifest` must be an array".into(),
                        });
                    }
                };
                Message::Batch(BatchMessage {
                    stream,
                    encoding,
                    manifest,
                    extra: obj,
                })
            }
            MessageKind::Unknown(_) => unreachable!("handled above"),
        })
    }

    /// The message type.
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Schema(_) => MessageKind::Schema,
            Message::Record(_) => MessageKind::Record,
            Message::State(_) => MessageKind::State,
            Message::ActivateVersion(_) => MessageKind::ActivateVersion,
            Message::Batch(_) => MessageKind::Batch,
            Message::Unknown(obj) => MessageKind::Unknown(
                obj.get("type")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            ),
        }
    }

    /// The stream the message belongs to, if any.
    pub fn stream(&self) -> Option<&str> {
        match self {
            Message::Schema(m) => Some(&m.stream),
            Message::Record(m) => Some(&m.stream),
            Message::ActivateVersion(m) => Some(&m.stream),
            Message::Batch(m) => Some(&m.stream),
            Message::State(_) => None,
            Message::Unknown(obj) => obj.get("stream").and_then(Value::as_str),
        }
    }

    /// The message as a JSON object, `type` first.
    pub fn to_value(&self) -> Value {
        let mut obj = Map::new();
        let extend = |obj: &mut Map<String, Value>, extra: &Map<String, Value>| {
            for (k, v) in extra {
                obj.insert(k.clone(), v.clone());
            }
        };
        match self {
            Message::Schema(m) => {
                obj.insert("type".into(), "SCHEMA".into());
                obj.insert("stream".into(), m.stream.clone().into());
                obj.insert("schema".into(), m.schema.clone());
                obj.insert("key_properties".into(), m.key_properties.clone().into());
                if let Some(b) = &m.bookmark_properties {
                    obj.insert("bookmark_properties".into(), b.clone().into());
                }
                extend(&mut obj, &m.extra);
            }
            Message::Record(m) => {
                obj.insert("type".into(), "RECORD".into());
                obj.insert("stream".into(), m.stream.clone().into());
                obj.insert("record".into(), Value::Object(m.record.clone()));
                if let Some(v) = &m.version {
                    obj.insert("version".into(), v.clone());
                }
                if let Some(t) = &m.time_extracted {
                    obj.insert("time_extracted".into(), t.clone());
                }
                extend(&mut obj, &m.extra);
            }
            Message::State(m) => {
                obj.insert("type".into(), "STATE".into());
                obj.insert("value".into(), m.value.clone());
                extend(&mut obj, &m.extra);
            }
            Message::ActivateVersion(m) => {
                obj.insert("type".into(), "ACTIVATE_VERSION".into());
                obj.insert("stream".into(), m.stream.clone().into());
                obj.insert("version".into(), m.version.clone());
                extend(&mut obj, &m.extra);
            }
            Message::Batch(m) => {
                obj.insert("type".into(), "BATCH".into());
                obj.insert("stream".into(), m.stream.clone().into());
                obj.insert("encoding".into(), m.encoding.clone());
                obj.insert("manifest".into(), m.manifest.clone().into());
                extend(&mut obj, &m.extra);
            }
            Message::Unknown(o) => return Value::Object(o.clone()),
        }
        Value::Object(obj)
    }

    /// The message as one line of JSON (no newline).
    pub fn to_line(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write_line(&mut out);
        out
    }

    /// Appends the message as one line of JSON (no newline) to `out`, serialising straight
    /// from the message's fields: nothing is cloned.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        serde_json::to_writer(&mut *out, self).expect("a JSON value always serialises");
    }
}

/// Serialises with `type` first and the Singer keys in their usual order, then the extras:
/// the same object as [`Message::to_value`], without building it.
impl serde::Serialize for Message {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        let extra = match self {
            Message::Schema(m) => {
                map.serialize_entry("type", "SCHEMA")?;
                map.serialize_entry("stream", &m.stream)?;
                map.serialize_entry("schema", &m.schema)?;
                map.serialize_entry("key_properties", &m.key_properties)?;
                if let Some(b) = &m.bookmark_properties {
                    map.serialize_entry("bookmark_properties", b)?;
                }
                &m.extra
            }
            Message::Record(m) => {
                map.serialize_entry("type", "RECORD")?;
                map.serialize_entry("stream", &m.stream)?;
                map.serialize_entry("record", &m.record)?;
                if let Some(v) = &m.version {
                    map.serialize_entry("version", v)?;
                }
                if let Some(t) = &m.time_extracted {
                    map.serialize_entry("time_extracted", t)?;
                }
                &m.extra
            }
            Message::State(m) => {
                map.serialize_entry("type", "STATE")?;
                map.serialize_entry("value", &m.value)?;
                &m.extra
            }
            Message::ActivateVersion(m) => {
                map.serialize_entry("type", "ACTIVATE_VERSION")?;
                map.serialize_entry("stream", &m.stream)?;
                map.serialize_entry("version", &m.version)?;
                &m.extra
            }
            Message::Batch(m) => {
                map.serialize_entry("type", "BATCH")?;
                map.serialize_entry("stream", &m.stream)?;
                map.serialize_entry("encoding", &m.encoding)?;
                map.serialize_entry("manifest", &m.manifest)?;
                &m.extra
            }
            Message::Unknown(o) => o,
        };
        // `to_value` lets an extra key overwrite a Singer key of the same name in place; an
        // extra can only carry such a name when a caller built the message by hand, so skip
        // those rather than write a key twice.
        let singer_keys: &[&str] = match self {
            Message::Unknown(_) => &[],
            Message::Schema(_) => &[
                "type",
                "stream",
                "schema",
                "key_properties",
                "bookmark_properties",
            ],
            Message::Record(_) => &["type", "stream", "record", "version", "time_extracted"],
            Message::State(_) => &["type", "value"],
            Message::ActivateVersion(_) => &["type", "stream", "version"],
            Message::Batch(_) => &["type", "stream", "encoding", "manifest"],
        };
        for (k, v) in extra {
            if !singer_keys.contains(&k.as_str()) {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_their_exact_text() {
        let line = br#"{"type":"RECORD","stream":"trips","record":{"lon":-73.985130,"id":123456789012345678901,"e":1.0e+2}}"#;
        let msg = Message::parse(line).unwrap();
        let out = String::from_utf8(msg.to_line()).unwrap();
        assert_eq!(
            out,
            r#"{"type":"RECORD","stream":"trips","record":{"lon":-73.985130,"id":123456789012345678901,"e":1.0e+2}}"#
        );
    }

    #[test]
    fn round_trips_every_type_with_extra_keys() {
        for line in [
            r#"{"type":"SCHEMA","stream":"s","schema":{"properties":{"b":{},"a":{}}},"key_properties":["a"],"bookmark_properties":["b"],"x-extra":1}"#,
            r#"{"type":"RECORD","stream":"s","record":{"b":1,"a":2},"version":3,"time_extracted":"2024-01-01T00:00:00Z"}"#,
            r#"{"type":"STATE","value":{"bookmarks":{"s":{"a":1}}}}"#,
            r#"{"type":"ACTIVATE_VERSION","stream":"s","version":17}"#,
            r#"{"type":"BATCH","stream":"s","encoding":{"format":"jsonl","compression":"gzip"},"manifest":["file:///a.gz"]}"#,
            r#"{"type":"CUSTOM","stream":"s","z":1}"#,
        ] {
            let msg = Message::parse(line.as_bytes()).unwrap();
            let a: Value = serde_json::from_str(line).unwrap();
            let b: Value = serde_json::from_slice(&msg.to_line()).unwrap();
            assert_eq!(a, b, "{line}");
        }
    }

    #[test]
    fn the_fast_reader_builds_what_serde_json_builds() {
        // Numbers (exact text), nesting, arrays, escapes, duplicate keys, many keys, and a
        // record with extra envelope keys: the fast path must agree with a plain JSON read.
        let many: String = (0..40).map(|i| format!(r#","k{i}":{i}"#)).collect();
        for line in [
            r#"{"type":"RECORD","stream":"s","record":{"a":1.50,"b":-0,"c":1e400,"d":[1,{"x":null}],"e":{},"f":[],"g":"q\"\u00e9"},"version":7,"x-extra":{"k":true}}"#.to_owned(),
            r#"{"type":"RECORD","stream":"s","record":{"a":1,"a":2,"b":3}}"#.to_owned(),
            r#"{"type":"RECORD","stream":"s","record":{"a":1},"stream":"t"}"#.to_owned(),
            r#"{"type":"RECORD","str\u0065am":"s","record":{"a":1}}"#.to_owned(),
            format!(r#"{{"type":"RECORD","stream":"s","record":{{"a":1}}{many}}}"#),
            r#"{"type":"SCHEMA","stream":"s","schema":{"properties":{"a":{"type":"integer","maximum":1e3}}},"key_properties":[]}"#.to_owned(),
        ] {
            let fast = Message::parse(line.as_bytes()).unwrap();
            let plain = Message::from_value(serde_json::from_str(&line).unwrap()).unwrap();
            assert_eq!(fast, plain, "{line}");
            assert_eq!(fast.to_line(), plain.to_line(), "{line}");
        }
        let Message::Record(r) =
            Message::parse(br#"{"type":"RECORD","stream":"s","record":{"n":12.0}}"#).unwrap()
        else {
            panic!("not a record")
        };
        assert!(r.record["n"].is_number(), "{:?}", r.record["n"]);
        assert_eq!(r.record["n"].to_string(), "12.0");
    }

    #[test]
    fn plain_lines_take_the_fast_path_and_odd_ones_do_not() {
        let fields = Fields::read(br#"{"type":"RECORD","stream":"s","record":{"a":1}}"#).unwrap();
        let keys: Vec<&str> = fields.0.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["type", "stream", "record"]);
        for odd in [
            &br#"{"type":"RECORD","type":"RECORD","stream":"s","record":{}}"#[..],
            br#"{"ty\u0070e":"RECORD","stream":"s","record":{}}"#,
            br#"{"type":"RECORD","stream":"s","record":{"x":NaN}}"#,
            br#"{"type":"RECORD","stream":"s","record":{}}{}"#,
        ] {
            assert!(
                Fields::read(odd).is_none(),
                "{}",
                String::from_utf8_lossy(odd)
            );
        }
    }

    #[test]
    fn fast_reader_reports_the_same_errors() {
        for line in [
            &br#"{"type":"RECORD","stream":1,"record":{}}"#[..],
            br#"{"type":"RECORD","stream":"s","record":[]}"#,
            br#"{"type":"RECORD","stream":"s"}"#,
            br#"{"type":7,"stream":"s","record":{}}"#,
            br#"{"stream":"s","record":{}}"#,
            br#"{"type":"RECORD","stream":"s","record":{}} x"#,
            br#"[1]"#,
        ] {
            let fast = Message::parse(line);
            let plain = serde_json::from_slice::<Value>(line)
                .map_err(|_| ())
                .map(Message::from_value);
            match plain {
                Ok(plain) => assert_eq!(fast, plain, "{}", String::from_utf8_lossy(line)),
                Err(()) => assert!(fast.is_err(), "{}", String::from_utf8_lossy(line)),
            }
        }
    }

    #[test]
    fn lower_case_types_are_read() {
        let msg = Message::parse(br#"{"type":"record","stream":"s","record":{}}"#).unwrap();
        assert_eq!(msg.kind(), MessageKind::Record);
        assert_eq!(msg.to_value()["type"], "RECORD");
    }

    #[test]
    fn nan_becomes_null() {
        let msg = Message::parse(br#"{"type":"RECORD","stream":"s","record":{"x":NaN}}"#).unwrap();
        let Message::Record(r) = msg else {
            panic!("not a record")
        };
        assert_eq!(r.record["x"], Value::Null);
    }

    #[test]
    fn record_must_be_an_object() {
        let err = Message::parse(br#"{"type":"RECORD","stream":"s","record":[1]}"#).unwrap_err();
        assert!(
            err.to_string().contains("`record` must be an object"),
            "{err}"
        );
    }
}

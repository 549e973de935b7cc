//! A YAML document as a tree that remembers the line and column of every node, read with
//! serde-saphyr, so validation errors can point at the exact place in `meltano.yml`.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// Most YAML events aliases may replay in one file (the parser's default is 1,000,000).
const MAX_ALIAS_REPLAY: usize = 100_000;

/// A position in a file: 1-based line and column (0 when unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Pos {
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// One YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where the node starts.
    pub pos: Pos,
}

/// A mapping key with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// The key as text (YAML scalars of any type are turned into their text).
    pub name: String,
    /// Where the key starts.
    pub pos: Pos,
}

/// The value of a node.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `~`, `null` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i128),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order.
    Map(Vec<(Key, Node)>),
}

impl Value {
    /// The JSON type name of this value, for "expected X, found Y" messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "number",
            Value::Str(_) => "string",
            Value::Seq(_) => "array",
            Value::Map(_) => "object",
        }
    }
}

impl Node {
    /// The node under `key` when this node is a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The position of `key` itself when this node is a mapping.
    pub fn key_pos(&self, key: &str) -> Option<Pos> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.name == key)
                .map(|(k, _)| k.pos),
            _ => None,
        }
    }

    /// The items when this node is a sequence (empty otherwise).
    pub fn items(&self) -> &[Node] {
        match &self.value {
            Value::Seq(items) => items,
            _ => &[],
        }
    }

    /// The node as plain JSON (positions dropped).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => match i64::try_from(*i) {
                Ok(v) => J::from(v),
                Err(_) => serde_json::from_str(&i.to_string()).unwrap_or(J::Null),
            },
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Why a document could not be read as YAML, with the position when the parser gave one.
#[derive(Debug, Clone)]
pub struct ParseError {
    /// The parser's message.
    pub message: String,
    /// Where, when known.
    pub pos: Option<Pos>,
}

/// Parses a YAML document into a positioned tree. An empty document is an empty mapping.
pub fn parse(text: &str) -> Result<Node, ParseError> {
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#') || l.trim() == "---")
    {
        return Ok(Node {
            value: Value::Map(Vec::new()),
            pos: Pos { line: 1, column: 1 },
        });
    }
    // The deserializer recurses about ten frames per level of nesting, up to the budget's depth
    // (64): more than the 2 MiB stack of a test thread or a blocking thread of `dsm serve` holds
    // in a debug build. It runs on a thread of its own with room for it.
    let parsed = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("dsm-yaml".into())
            .stack_size(PARSE_STACK)
            .spawn_scoped(scope, || {
                serde_saphyr::from_str_with_options::<Node>(text, serde_saphyr_options())
            })
            .map(|thread| thread.join())
    });
    let parsed = match parsed {
        Ok(Ok(parsed)) => parsed,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        // No thread to be had (the process is out of threads or memory): parse here.
        Err(_) => serde_saphyr::from_str_with_options::<Node>(text, serde_saphyr_options()),
    };
    parsed.map_err(|e| {
        let pos = e.location().map(|l| Pos {
            line: l.line(),
            column: l.column(),
        });
        let message = e.to_string();
        // The first line carries the reason; the rest is a source snippet we render ourselves.
        let first = message.lines().next().unwrap_or("invalid YAML");
        ParseError {
            message: plain_reason(first),
            pos: pos.filter(|p| p.line > 0),
        }
    })
}

/// The stack of the thread that parses a document: what the deepest document the budget allows
/// needs, many times over (reserved, not used, by a shallow one).
const PARSE_STACK: usize = 64 << 20;

fn serde_saphyr_options() -> serde_saphyr::Options {
    // YAML 1.2 booleans only, as Meltano's reader: `yes`, `no`, `on`, `n` stay strings.
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    // An alias bomb (each anchor repeating the one before) stops after this many replayed
    // events, before the node budget: a real meltano.yml replays a few hundred (`<<: *base`).
    options.alias_limits.max_total_replayed_events = MAX_ALIAS_REPLAY;
    options
}

/// The parser's reason in the project's words: without its own `error: line L column C:`
/// prefix (the position is reported apart) and without advice about the parser's options.
fn plain_reason(first: &str) -> String {
    let mut reason = first.trim();
    if let Some(rest) = reason.strip_prefix("error: ")
        && let Some((at, after)) = rest.split_once(": ")
        && at.starts_with("line ")
    {
        reason = after;
    }
    if let Some(key) = reason.strip_prefix("duplicate mapping key: ") {
        let key = key.split(", set ").next().unwrap_or(key).trim();
        return format!("the key `{key}` appears twice in the same mapping");
    }
    reason.to_string()
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(d)?;
        Ok(Node {
            value: spanned.value,
            pos: Pos {
                line: spanned.referenced.line(),
                column: spanned.referenced.column(),
            },
        })
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(d)?;
        let name = match spanned.value {
            Value::Str(s) => s,
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => "null".to_string(),
            Value::Seq(_) | Value::Map(_) => {
                return Err(de::Error::custom("mapping keys must be scalars"));
            }
        };
        Ok(Key {
            name,
            pos: Pos {
                line: spanned.referenced.line(),
                column: spanned.referenced.column(),
            },
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        i128::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom("integer too large"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Key>()? {
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duplicate_key_is_named_without_the_parsers_internals() {
        let e = parse("plugins:\n  extractors:\n  - name: a\n    namespace: x\n    namespace: y\n")
            .unwrap_err();
        assert_eq!(
            e.message,
            "the key `namespace` appears twice in the same mapping"
        );
        assert_eq!(e.pos, Some(Pos { line: 5, column: 5 }));
    }

    #[test]
    fn keeps_positions_of_keys_and_values() {
        let doc = parse("plugins:\n  extractors:\n  - name: tap-x\n    config: {a: 1}\n").unwrap();
        let plugins = doc.get("plugins").unwrap();
        assert_eq!(doc.key_pos("plugins").unwrap(), Pos { line: 1, column: 1 });
        assert_eq!(plugins.key_pos("extractors").unwrap().line, 2);
        let tap = &plugins.get("extractors").unwrap().items()[0];
        assert_eq!(tap.key_pos("config").unwrap(), Pos { line: 4, column: 5 });
        assert_eq!(
            tap.to_json(),
            serde_json::json!({"name": "tap-x", "config": {"a": 1}})
        );
    }

    #[test]
    fn malformed_yaml_has_a_position() {
        let err = parse("plugins:\n  extractors: [a, b\n  loaders: x\n").unwrap_err();
        assert!(err.pos.is_some(), "{err:?}");
    }

    #[test]
    fn yaml_1_1_booleans_stay_strings_like_in_meltano() {
        let doc = parse("n: 1\nyes: on\nt: true\n").unwrap();
        assert_eq!(
            doc.to_json(),
            serde_json::json!({"n": 1, "yes": "on", "t": true})
        );
    }

    #[test]
    fn empty_file_is_an_empty_mapping() {
        assert_eq!(
            parse("# nothing\n").unwrap().to_json(),
            serde_json::json!({})
        );
    }
}

//! Field masking and hashing with PipelineWise `transform-field` semantics.
//!
//! Differences from the reference, on purpose: ACTIVATE_VERSION and every STATE are kept (the
//! pipeline never routes STATE here), `equals: 0`, `false` and `""` are real conditions, and a
//! value a mask cannot process stops the run instead of passing through unmasked.

use std::collections::{BTreeSet, HashMap};

use regex::Regex;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::expr::{iso_datetime, parse_iso_datetime};
use super::{Keeps, Lineage, Transform, TransformError};
use crate::singer::Message;
use crate::singer::message::SchemaMessage;

/// What a transformation does to a value.
#[derive(Debug, Clone, PartialEq)]
pub enum Mask {
    /// `SET-NULL`.
    SetNull,
    /// `HASH`: SHA-256 hex of the string.
    Hash,
    /// `HASH-SKIP-FIRST-n`: the first `n` characters, then the SHA-256 of the rest.
    HashSkipFirst(usize),
    /// `MASK-DATE`: month and day become January 1st, the time is kept.
    MaskDate,
    /// `MASK-NUMBER`: `0`.
    MaskNumber,
    /// `MASK-HIDDEN`: the string `hidden`.
    MaskHidden,
    /// `MASK-STRING-SKIP-ENDS-n`: `*` except `n` characters at each end.
    MaskStringSkipEnds(usize),
}

impl Mask {
    fn parse(text: &str) -> Option<Mask> {
        let n = |prefix: &str| {
            text.strip_prefix(prefix)
                .and_then(|n| n.parse::<usize>().ok())
        };
        Some(match text {
            "SET-NULL" => Mask::SetNull,
            "HASH" => Mask::Hash,
            "MASK-DATE" => Mask::MaskDate,
            "MASK-NUMBER" => Mask::MaskNumber,
            "MASK-HIDDEN" => Mask::MaskHidden,
            _ => {
                if let Some(k) = n("HASH-SKIP-FIRST-") {
                    Mask::HashSkipFirst(k)
                } else if let Some(k) = n("MASK-STRING-SKIP-ENDS-") {
                    Mask::MaskStringSkipEnds(k)
                } else {
                    return None;
                }
            }
        })
    }

    fn name(&self) -> String {
        match self {
            Mask::SetNull => "SET-NULL".into(),
            Mask::Hash => "HASH".into(),
            Mask::HashSkipFirst(n) => format!("HASH-SKIP-FIRST-{n}"),
            Mask::MaskDate => "MASK-DATE".into(),
            Mask::MaskNumber => "MASK-NUMBER".into(),
            Mask::MaskHidden => "MASK-HIDDEN".into(),
            Mask::MaskStringSkipEnds(n) => format!("MASK-STRING-SKIP-ENDS-{n}"),
        }
    }

    /// Why this mask cannot apply to a property with `schema`, if it cannot.
    fn incompatible(&self, schema: &Value) -> Option<String> {
        let types: Vec<&str> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => return None, // No declared type (anyOf, {}): nothing to check against.
        };
        let format = schema.get("format").and_then(Value::as_str);
        let non_null: Vec<&str> = types.iter().copied().filter(|t| *t != "null").collect();
        match self {
            Mask::SetNull => (!types.contains(&"null"))
                .then(|| format!("the property is not nullable (type {types:?})")),
            Mask::MaskNumber => (non_null.is_empty()
                || !non_null.iter().all(|t| *t == "integer" || *t == "number"))
            .then(|| format!("the property is not numeric (type {types:?})")),
            Mask::MaskDate => (non_null != ["string"]
                || !matches!(format, Some("date-time" | "date")))
            .then(|| {
                format!("the property is not a date or date-time string (type {types:?}, format {format:?})")
            }),
            Mask::Hash | Mask::HashSkipFirst(_) | Mask::MaskHidden | Mask::MaskStringSkipEnds(_) => {
                if non_null != ["string"] {
                    Some(format!("the property is not a string (type {types:?})"))
                } else if let Some(f @ ("date-time" | "date" | "time")) = format {
                    Some(format!("the property has format `{f}`, which the masked value would break"))
                } else {
                    None
                }
            }
        }
    }

    /// Applies the mask; an error says why the value cannot be masked.
    fn apply(&self, value: &Value) -> Result<Value, String> {
        if value.is_null() {
            return Ok(Value::Null);
        }
        let text = || {
            value
                .as_str()
                .ok_or_else(|| format!("{} needs a string, found {}", self.name(), kind(value)))
        };
        Ok(match self {
            Mask::SetNull => Value::Null,
            Mask::Hash => Value::String(sha256_hex(text()?)),
            Mask::HashSkipFirst(n) => {
                let s = text()?;
                let split = s.char_indices().nth(*n).map_or(s.len(), |(i, _)| i);
                Value::String(format!("{}{}", &s[..split], sha256_hex(&s[split..])))
            }
            Mask::MaskDate => {
                let s = text()?;
                Value::String(
                    mask_date(s).ok_or_else(|| format!("MASK-DATE cannot read `{s}` as a date"))?,
                )
            }
            Mask::MaskNumber => {
                if !value.is_number() {
                    return Err(format!("MASK-NUMBER needs a number, found {}", kind(value)));
                }
                Value::from(0)
            }
            Mask::MaskHidden => {
                text()?;
                Value::String("hidden".into())
            }
            Mask::MaskStringSkipEnds(n) => {
                let s = text()?;
                let chars: Vec<char> = s.chars().collect();
                let out: String = if chars.len() <= 2 * n {
                    "*".repeat(chars.len())
                } else {
                    chars[..*n]
                        .iter()
                        .copied()
                        .chain(std::iter::repeat_n('*', chars.len() - 2 * n))
                        .chain(chars[chars.len() - n..].iter().copied())
                        .collect()
                };
                Value::String(out)
            }
        })
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn mask_date(s: &str) -> Option<String> {
    if s.len() == 10 {
        let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
        return Some(format!("{}-01-01", d.format("%Y")));
    }
    let (dt, off) = parse_iso_datetime(s)?;
    let masked =
        chrono::NaiveDate::from_ymd_opt(chrono::Datelike::year(&dt), 1, 1)?.and_time(dt.time());
    Some(iso_datetime(&masked, &off, 'T'))
}

/// One `when` condition.
#[derive(Debug, Clone)]
struct Condition {
    column: String,
    field_path: Option<Vec<String>>,
    test: Test,
}

#[derive(Debug, Clone)]
enum Test {
    Equals(Value),
    Regex(Regex),
}

impl Condition {
    fn holds(&self, record: &Map<String, Value>) -> bool {
        let mut value = record.get(&self.column);
        if let Some(path) = &self.field_path {
            value = value.and_then(|v| lookup(v, path));
        }
        match (&self.test, value) {
            (Test::Equals(expected), Some(v)) => json_equal(v, expected),
            (Test::Equals(expected), None) => expected.is_null(),
            (Test::Regex(re), Some(Value::String(s))) => re.is_match(s),
            (Test::Regex(re), Some(Value::Number(n))) => re.is_match(&n.to_string()),
            (Test::Regex(_), _) => false,
        }
    }
}

fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64().zip(y.as_f64()).is_some_and(|(p, q)| p == q),
        },
        _ => a == b,
    }
}

fn lookup<'v>(v: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, key| match v {
        Value::Object(o) => o.get(key),
        Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn lookup_mut<'v>(v: &'v mut Value, path: &[String]) -> Option<&'v mut Value> {
    path.iter().try_fold(v, |v, key| match v {
        Value::Object(o) => o.get_mut(key),
        Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
        _ => None,
    })
}

fn split_path(p: &str) -> Vec<String> {
    p.trim_matches('/').split('/').map(str::to_owned).collect()
}

/// One configured transformation.
#[derive(Debug, Clone)]
struct Rule {
    stream: String,
    field: String,
    mask: Mask,
    when: Vec<Condition>,
    field_paths: Vec<Vec<String>>,
}

/// The `transform-field` transform.
#[derive(Debug)]
pub struct FieldMask {
    rules: HashMap<String, Vec<Rule>>,
    records: HashMap<String, u64>,
    validated: HashMap<String, bool>,
}

fn config_error(message: String) -> TransformError {
    TransformError {
        message,
        hint: Some("see the transform-field documentation for `transformations`".into()),
    }
}

impl FieldMask {
    /// Builds the transform from a `transform-field` config: `{"transformations": [{
    /// "tap_stream_name", "field_id", "type", "when"?, "field_paths"?}, …]}`.
    pub fn from_config(config: &Value) -> Result<FieldMask, TransformError> {
        let list = match config.get("transformations") {
            Some(Value::Array(a)) => a.as_slice(),
            None | Some(Value::Null) => &[],
            Some(_) => return Err(config_error("`transformations` must be a list".into())),
        };
        let mut rules: HashMap<String, Vec<Rule>> = HashMap::new();
        for (i, t) in list.iter().enumerate() {
            let field = |k: &str| {
                t.get(k)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        config_error(format!("transformation {} has no `{k}` string", i + 1))
                    })
            };
            let stream = field("tap_stream_name")?;
            let field_id = field("field_id")?;
            let type_text = field("type")?;
            let mask = Mask::parse(&type_text).ok_or_else(|| {
                config_error(format!(
                    "transformation {} of `{stream}.{field_id}`: unknown type `{type_text}`",
                    i + 1
                ))
            })?;
            let mut when = Vec::new();
            for c in t
                .get("when")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                let column = c.get("column").and_then(Value::as_str).ok_or_else(|| {
                    config_error(format!(
                        "a `when` condition of `{stream}.{field_id}` has no `column`"
                    ))
                })?;
                let test = if let Some(eq) = c.get("equals") {
                    Test::Equals(eq.clone())
                } else if let Some(re) = c.get("regex_match").and_then(Value::as_str) {
                    Test::Regex(Regex::new(re).map_err(|e| {
                        config_error(format!(
                            "`regex_match` of `{stream}.{field_id}` is not a valid regex: {e}"
                        ))
                    })?)
                } else {
                    return Err(config_error(format!(
                        "a `when` condition of `{stream}.{field_id}` needs `equals` or `regex_match`"
                    )));
                };
                when.push(Condition {
                    column: column.to_owned(),
                    field_path: c.get("field_path").and_then(Value::as_str).map(split_path),
                    test,
                });
            }
            let field_paths = t
                .get("field_paths")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(split_path).collect())
                .unwrap_or_default();
            rules.entry(stream.clone()).or_default().push(Rule {
                stream,
                field: field_id,
                mask,
                when,
                field_paths,
            });
        }
        Ok(FieldMask {
            rules,
            records: HashMap::new(),
            validated: HashMap::new(),
        })
    }

    /// Checks every transformation against a stream's schema; the first that cannot apply
    /// is the error.
    pub fn check_schema(&self, stream: &str, schema: &Value) -> Result<(), TransformError> {
        for rule in self.rules.get(stream).map(Vec::as_slice).unwrap_or(&[]) {
            if !rule.field_paths.is_empty() {
                // A JSON column: the paths inside it have no schema to check against.
                continue;
            }
            let Some(prop) = schema.pointer(&format!(
                "/properties/{}",
                rule.field.replace('~', "~0").replace('/', "~1")
            )) else {
                continue;
            };
            if let Some(why) = rule.mask.incompatible(prop) {
                return Err(TransformError {
                    message: format!(
                        "transformation {} cannot apply to `{}` of stream `{}`: {why}",
                        rule.mask.name(),
                        rule.field,
                        rule.stream
                    ),
                    hint: Some(
                        "change the transformation type, or the column's type at the source".into(),
                    ),
                });
            }
        }
        Ok(())
    }

    /// `transform-field --validate`: checks the transformations against a catalog's streams.
    pub fn check_catalog(&self, catalog: &Value) -> Result<(), TransformError> {
        for entry in catalog
            .get("streams")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let name = entry
                .get("tap_stream_id")
                .or_else(|| entry.get("stream"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            self.check_schema(name, entry.get("schema").unwrap_or(&Value::Null))?;
        }
        Ok(())
    }

    fn on_schema(&mut self, msg: &SchemaMessage) -> Result<(), TransformError> {
        let result = self.check_schema(&msg.stream, &msg.schema);
        self.validated.insert(msg.stream.clone(), result.is_ok());
        result
    }
}

impl Transform for FieldMask {
    fn lineage(&self, stream: &str) -> Vec<Lineage> {
        // A value replaced by a constant on every record (no `when`, the whole column) is gone;
        // a hash or a partial mask still carries it.
        let removed: BTreeSet<String> = self
            .rules
            .get(stream)
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .filter(|r| {
                r.when.is_empty()
                    && r.field_paths.is_empty()
                    && matches!(r.mask, Mask::SetNull | Mask::MaskHidden | Mask::MaskNumber)
            })
            .map(|r| r.field.clone())
            .collect();
        vec![Lineage {
            keeps: Keeps::AllBut(removed),
            ..Lineage::same(stream)
        }]
    }

    fn touches(&self, stream: &str) -> bool {
        self.rules.contains_key(stream)
    }

    fn apply(&mut self, message: Message, out: &mut Vec<Message>) -> Result<(), TransformError> {
        let mut rec = match message {
            Message::Schema(s) => {
                self.on_schema(&s)?;
                out.push(Message::Schema(s));
                return Ok(());
            }
            Message::Record(r) => r,
            other => {
                out.push(other);
                return Ok(());
            }
        };
        let number = {
            let n = self.records.entry(rec.stream.clone()).or_insert(0);
            *n += 1;
            *n
        };
        if !self.validated.get(&rec.stream).copied().unwrap_or(false) {
            return Err(TransformError {
                message: format!(
                    "record {number} of stream `{}` arrived before a SCHEMA its transformations were checked against",
                    rec.stream
                ),
                hint: Some("Singer requires a SCHEMA message before a stream's records".into()),
            });
        }
        let rules = self
            .rules
            .get(&rec.stream)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        // Conditions read the record as it arrived, as in the reference.
        let matched: Vec<bool> = rules
            .iter()
            .map(|r| r.when.iter().all(|c| c.holds(&rec.record)))
            .collect();
        for (rule, hit) in rules.iter().zip(matched) {
            if !hit {
                continue;
            }
            let Some(value) = rec.record.get_mut(&rule.field) else {
                continue;
            };
            let fail = |why: String| TransformError {
                message: format!(
                    "record {number} of stream `{}`: {} cannot mask `{}`: {why}",
                    rule.stream,
                    rule.mask.name(),
                    rule.field
                ),
                hint: Some(
                    "the value is not passed through unmasked; fix the data or the transformation"
                        .into(),
                ),
            };
            if rule.field_paths.is_empty() {
                *value = rule.mask.apply(value).map_err(fail)?;
            } else {
                for path in &rule.field_paths {
                    if let Some(inner) = lookup_mut(value, path) {
                        *inner = rule
                            .mask
                            .apply(inner)
                            .map_err(|why| fail(format!("at `{}`: {why}", path.join("/"))))?;
                    }
                }
            }
        }
        out.push(Message::Record(rec));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn masks_follow_transform_field() {
        assert_eq!(
            Mask::MaskStringSkipEnds(2)
                .apply(&json!("domaskme"))
                .unwrap(),
            json!("do****me")
        );
        assert_eq!(
            Mask::MaskStringSkipEnds(3).apply(&json!("maskme")).unwrap(),
            json!("******")
        );
        assert_eq!(
            Mask::MaskDate.apply(&json!("2019-12-21T12:12:45")).unwrap(),
            json!("2019-01-01T12:12:45")
        );
        assert_eq!(
            Mask::MaskDate.apply(&json!("2019-12-21")).unwrap(),
            json!("2019-01-01")
        );
        assert_eq!(
            Mask::HashSkipFirst(2).apply(&json!("Dummy row 1")).unwrap(),
            json!(format!("Du{}", sha256_hex("mmy row 1")))
        );
        assert_eq!(Mask::MaskNumber.apply(&json!(12.5)).unwrap(), json!(0));
    }

    #[test]
    fn unmaskable_values_are_errors_not_passthrough() {
        assert!(Mask::MaskDate.apply(&json!("not a date")).is_err());
        assert!(Mask::Hash.apply(&json!(42)).is_err());
        assert!(Mask::MaskNumber.apply(&json!("42")).is_err());
    }

    #[test]
    fn falsy_equals_conditions_are_honoured() {
        for (eq, hit, miss) in [
            (json!(0), json!(0), json!(1)),
            (json!(false), json!(false), json!(true)),
            (json!(""), json!(""), json!("x")),
        ] {
            let c = Condition {
                column: "c".into(),
                field_path: None,
                test: Test::Equals(eq),
            };
            let rec = |v: Value| json!({"c": v}).as_object().unwrap().clone();
            assert!(c.holds(&rec(hit)));
            assert!(!c.holds(&rec(miss)));
        }
    }

    #[test]
    fn regex_match_searches_anywhere() {
        let c = Condition {
            column: "c".into(),
            field_path: None,
            test: Test::Regex(Regex::new("sens").unwrap()),
        };
        assert!(c.holds(json!({"c": "has sensitive data"}).as_object().unwrap()));
        assert!(!c.holds(json!({"c": "safe"}).as_object().unwrap()));
    }

    #[test]
    fn unknown_types_are_rejected_at_construction() {
        let e = FieldMask::from_config(
            &json!({"transformations": [{"tap_stream_name": "s", "field_id": "f", "type": "MASK-EVERYTHING"}]}),
        );
        assert!(e.unwrap_err().message.contains("MASK-EVERYTHING"));
    }
}

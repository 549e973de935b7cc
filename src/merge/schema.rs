//! Checking the sources' SCHEMA messages against a merged stream, and the merged SCHEMA.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::MergeError;
use super::declaration::{MergedStream, Rule};
use crate::singer::message::SchemaMessage;

/// The name of the provenance property added to output records when `provenance: true`.
pub const PROVENANCE_FIELD: &str = "_dsm_provenance";

/// The merged stream's key and JSON Schema, built from its sources' schemas.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedSchema {
    /// The key in common field names.
    pub key: Vec<String>,
    /// The JSON Schema of output records.
    pub schema: Value,
}

impl MergedSchema {
    /// The SCHEMA message the target receives for the merged stream.
    pub fn message(&self, stream: &str) -> SchemaMessage {
        SchemaMessage {
            stream: stream.to_owned(),
            schema: self.schema.clone(),
            key_properties: self.key.clone(),
            bookmark_properties: None,
            extra: Map::new(),
        }
    }
}

/// The non-null JSON types a property schema allows (empty: anything).
fn types(prop: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    match prop.get("type") {
        Some(Value::String(t)) => {
            out.insert(t.clone());
        }
        Some(Value::Array(ts)) => {
            out.extend(ts.iter().filter_map(|t| t.as_str().map(str::to_owned)))
        }
        _ => {}
    }
    for branch in ["anyOf", "oneOf"] {
        if let Some(Value::Array(bs)) = prop.get(branch) {
            for b in bs {
                out.extend(types(b));
            }
        }
    }
    out.remove("null");
    out
}

/// Integer and number mix: both read as number.
fn widened(t: &BTreeSet<String>) -> BTreeSet<String> {
    t.iter()
        .map(|s| {
            if s == "integer" {
                "number".to_owned()
            } else {
                s.clone()
            }
        })
        .collect()
}

fn describe(t: &BTreeSet<String>) -> String {
    t.iter().cloned().collect::<Vec<_>>().join(" or ")
}

fn orderable(prop: &Value) -> bool {
    let t = types(prop);
    if t.is_empty() {
        return true;
    }
    let numeric = t.iter().all(|s| s == "number" || s == "integer");
    let dated = t.iter().all(|s| s == "string")
        && matches!(
            prop.get("format").and_then(Value::as_str),
            Some("date" | "date-time" | "time")
        );
    numeric || dated
}

struct Mapped<'a> {
    source: &'a str,
    properties: Map<String, Value>,
    key: Vec<String>,
}

impl MergedStream {
    /// Checks the schemas of the sources given (by source name) and builds the merged schema.
    ///
    /// Mapped fields must exist in their source, a field two sources share must have compatible
    /// types, `max`/`min` need numbers or dates, and the key must be in every source. Rules
    /// naming fields no source has are errors once the schemas of all sources are given.
    pub fn merged_schema(
        &self,
        schemas: &[(&str, &SchemaMessage)],
    ) -> Result<MergedSchema, MergeError> {
        let name = &self.name;
        let mut mapped: Vec<Mapped<'_>> = Vec::new();
        for source_name in &self.priority {
            let Some((_, msg)) = schemas.iter().find(|(s, _)| s == source_name) else {
                continue;
            };
            let source = self
                .source(source_name)
                .expect("priority lists only declared sources");
            let props = match msg.schema.get("properties") {
                Some(Value::Object(p)) => p,
                _ => {
                    return Err(MergeError::declaration(format!(
                        "the schema of stream `{}` from `{}` has no `properties` (merged stream `{name}`)",
                        source.stream, source.extractor
                    )));
                }
            };
            for (from, _) in &source.fields {
                if !props.contains_key(from) {
                    return Err(MergeError::declaration(format!(
                        "merged stream `{name}` maps field `{from}` of source `{source_name}`, which its schema does not have"
                    ))
                    .with_hint(format!(
                        "the fields of stream `{}` are: {}",
                        source.stream,
                        props.keys().cloned().collect::<Vec<_>>().join(", ")
                    )));
                }
            }
            let properties = props
                .iter()
                .map(|(k, v)| (source.common_name(k).to_owned(), v.clone()))
                .collect();
            let key = msg
                .key_properties
                .iter()
                .map(|k| source.common_name(k).to_owned())
                .collect();
            mapped.push(Mapped {
                source: source_name,
                properties,
                key,
            });
        }

        // Fields in order: the highest-priority source's first, then new ones from the next.
        let mut merged = Map::new();
        for m in &mapped {
            for (field, prop) in &m.properties {
                if merged.contains_key(field) {
                    continue;
                }
                let mut first_types = types(prop);
                let mut first_source = m.source;
                let mut mixed = false;
                for other in &mapped {
                    let Some(p2) = other.properties.get(field) else {
                        continue;
                    };
                    let t2 = types(p2);
                    if first_types.is_empty() {
                        first_types = t2;
                        first_source = other.source;
                        continue;
                    }
                    if t2.is_empty() || t2 == first_types {
                        continue;
                    }
                    if widened(&t2) == widened(&first_types) {
                        mixed = true;
                        continue;
                    }
                    return Err(MergeError::declaration(format!(
                        "field `{field}` of merged stream `{name}` is {} in source `{first_source}` but {} in source `{}`",
                        describe(&first_types),
                        describe(&t2),
                        other.source
                    ))
                    .with_hint(
                        "map one of them onto another name under the source's `fields`, or fix the source's schema",
                    ));
                }
                merged.insert(field.clone(), nullable(prop, mixed));
            }
        }

        let complete = mapped.len() == self.sources.len();
        for (field, what) in self.referenced_fields() {
            if complete && !merged.contains_key(field) {
                let mut e = MergeError::declaration(format!(
                    "{what} of merged stream `{name}` names unknown field `{field}`"
                ));
                if let Some(m) =
                    crate::error::did_you_mean(field, merged.keys().map(String::as_str))
                {
                    e = e.with_hint(format!("did you mean `{m}`?"));
                }
                return Err(e);
            }
        }
        for (field, prop) in &merged {
            let rule = self.rule_for(field);
            if matches!(rule, Rule::Max | Rule::Min) && !orderable(prop) {
                return Err(MergeError::declaration(format!(
                    "field `{field}` of merged stream `{name}` uses `{}` but is {}, not a number or date",
                    rule.name(),
                    describe(&types(prop))
                ))
                .with_hint("`max` and `min` compare numbers, and strings with format `date` or `date-time`"));
            }
        }

        let key = match &self.key {
            Some(k) => k.clone(),
            None => {
                let Some(first) = mapped.first() else {
                    return Err(MergeError::declaration(format!(
                        "merged stream `{name}` declares no `key` and no source schema is known yet"
                    )));
                };
                for m in &mapped {
                    let a: BTreeSet<_> = m.key.iter().collect();
                    let b: BTreeSet<_> = first.key.iter().collect();
                    if m.key.is_empty() || a != b {
                        return Err(MergeError::declaration(format!(
                            "merged stream `{name}` declares no `key`, and the sources' key_properties differ: [{}] in `{}`, [{}] in `{}`",
                            first.key.join(", "),
                            first.source,
                            m.key.join(", "),
                            m.source
                        ))
                        .with_hint("declare `key` on the merged stream"));
                    }
                }
                first.key.clone()
            }
        };
        for m in &mapped {
            if let Some(k) = key.iter().find(|k| !m.properties.contains_key(*k)) {
                return Err(MergeError::declaration(format!(
                    "key field `{k}` of merged stream `{name}` is not in the schema of source `{}`",
                    m.source
                ))
                .with_hint("map the source's key field onto this name under its `fields`"));
            }
        }
        if self.provenance {
            merged.insert(
                PROVENANCE_FIELD.to_owned(),
                json!({"type": ["object", "null"]}),
            );
        }
        Ok(MergedSchema {
            key,
            schema: json!({"type": "object", "properties": Value::Object(merged)}),
        })
    }
}

/// A merged property accepts null (a source may lack the field); integer widens to number
/// when another source says number.
fn nullable(prop: &Value, widen: bool) -> Value {
    let mut p = prop.clone();
    if let Some(obj) = p.as_object_mut() {
        let mut list: Vec<Value> = match obj.get("type") {
            Some(Value::String(t)) => vec![Value::String(t.clone())],
            Some(Value::Array(ts)) => ts.clone(),
            _ => return p,
        };
        if widen {
            for t in &mut list {
                if t == "integer" {
                    *t = json!("number");
                }
            }
        }
        if !list.iter().any(|t| t == "null") {
            list.push(json!("null"));
        }
        let mut seen = Vec::new();
        list.retain(|t| {
            let keep = !seen.contains(t);
            seen.push(t.clone());
            keep
        });
        obj.insert("type".into(), Value::Array(list));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(stream: &str, props: Value, key: &[&str]) -> SchemaMessage {
        SchemaMessage {
            stream: stream.into(),
            schema: json!({"type": "object", "properties": props}),
            key_properties: key.iter().map(|k| (*k).to_owned()).collect(),
            bookmark_properties: None,
            extra: Map::new(),
        }
    }

    fn decl(extra: Value) -> MergedStream {
        let mut v = json!({
            "name": "companies",
            "sources": [
                {"extractor": "csv", "stream": "c", "fields": {"company_name": "name"}},
                {"extractor": "api", "stream": "o"}
            ],
            "priority": ["api", "csv"]
        });
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        MergedStream::parse(&v).unwrap()
    }

    fn csv() -> SchemaMessage {
        schema(
            "c",
            json!({"id": {"type": "integer"}, "company_name": {"type": "string"},
                   "revenue": {"type": ["integer", "null"]}}),
            &["id"],
        )
    }

    fn api() -> SchemaMessage {
        schema(
            "o",
            json!({"id": {"type": "integer"}, "name": {"type": ["string", "null"]},
                   "revenue": {"type": "number"},
                   "updated_at": {"type": "string", "format": "date-time"}}),
            &["id"],
        )
    }

    #[test]
    fn merges_properties_in_priority_order_with_mapping_and_widening() {
        let m = decl(json!({"provenance": true}));
        let s = m
            .merged_schema(&[("csv", &csv()), ("api", &api())])
            .unwrap();
        assert_eq!(s.key, vec!["id"]);
        let props = s.schema["properties"].as_object().unwrap();
        let names: Vec<&str> = props.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["id", "name", "revenue", "updated_at", PROVENANCE_FIELD]
        );
        assert_eq!(props["revenue"]["type"], json!(["number", "null"]));
        assert_eq!(props["id"]["type"], json!(["integer", "null"]));
    }

    #[test]
    fn incompatible_types_name_the_stream_field_and_sources() {
        let m = decl(json!({}));
        let bad = schema(
            "c",
            json!({"id": {"type": "integer"}, "company_name": {"type": "integer"}}),
            &["id"],
        );
        let e = m
            .merged_schema(&[("csv", &bad), ("api", &api())])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "field `name` of merged stream `companies` is string in source `api` but integer in source `csv`"
        );
    }

    #[test]
    fn rules_naming_unknown_fields_fail_once_all_sources_are_known() {
        let m = decl(json!({"fields": {"revenu": "max"}}));
        // With only one source known the field may still come from the other.
        assert!(m.merged_schema(&[("api", &api())]).is_ok());
        let e = m
            .merged_schema(&[("csv", &csv()), ("api", &api())])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the rule for field `revenu` of merged stream `companies` names unknown field `revenu`"
        );
        assert_eq!(e.hint(), Some("did you mean `revenue`?"));
        let m = decl(json!({"policy": {"rule": "latest", "field": "modified"}}));
        let e = m
            .merged_schema(&[("csv", &csv()), ("api", &api())])
            .unwrap_err();
        assert!(e.to_string().contains("unknown field `modified`"), "{e}");
    }

    #[test]
    fn max_on_text_mapped_field_missing_and_key_problems_are_errors() {
        let m = decl(json!({"fields": {"name": "max"}}));
        let e = m
            .merged_schema(&[("csv", &csv()), ("api", &api())])
            .unwrap_err();
        assert!(e.to_string().contains("uses `max` but is string"), "{e}");

        let no_name = schema("c", json!({"id": {"type": "integer"}}), &["id"]);
        let e = decl(json!({}))
            .merged_schema(&[("csv", &no_name)])
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("maps field `company_name` of source `csv`"),
            "{e}"
        );

        let other_key = schema(
            "c",
            json!({"id": {"type": "integer"}, "company_name": {"type": "string"}}),
            &["company_name"],
        );
        let e = decl(json!({}))
            .merged_schema(&[("csv", &other_key), ("api", &api())])
            .unwrap_err();
        assert!(e.to_string().contains("key_properties differ"), "{e}");
        let e = decl(json!({"key": ["uuid"]}))
            .merged_schema(&[("api", &api())])
            .unwrap_err();
        assert!(e.to_string().contains("key field `uuid`"), "{e}");
    }
}

//! A stream's JSON Schema: declared columns (dlt's `columns` or the catalog's schema) as given,
//! other fields inferred from the records, widening as new fields and types appear.

use std::borrow::Cow;
use std::collections::HashSet;

use serde_json::{Map, Value, json};

/// The JSON Schema of a dlt column (`data_type`, `nullable`), or a JSON Schema as written.
pub fn column_schema(col: &Value) -> Value {
    let Some(dt) = col.get("data_type").and_then(Value::as_str) else {
        return if col.get("type").is_some() {
            col.clone()
        } else {
            json!({})
        };
    };
    let nullable = col.get("nullable").and_then(Value::as_bool).unwrap_or(true);
    let (ty, format) = match dt {
        "bigint" | "integer" => ("integer", None),
        "double" | "decimal" | "number" => ("number", None),
        "bool" | "boolean" => ("boolean", None),
        "timestamp" => ("string", Some("date-time")),
        "date" => ("string", Some("date")),
        "time" => ("string", Some("time")),
        "json" => return json!({}),
        _ => ("string", None),
    };
    let mut s = if nullable {
        json!({"type": [ty, "null"]})
    } else {
        json!({"type": ty})
    };
    if let Some(f) = format {
        s["format"] = f.into();
    }
    s
}

fn type_of(v: &Value) -> Option<&'static str> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    })
}

/// The schema of one stream as the run goes.
pub struct Schema {
    declared: Map<String, Value>,
    /// Inferred fields with the JSON types seen, in the order they first appeared.
    inferred: Vec<(String, Vec<&'static str>)>,
    deselected: HashSet<String>,
}

impl Schema {
    pub fn new(declared: Map<String, Value>, deselected: HashSet<String>) -> Self {
        Schema {
            declared,
            inferred: Vec::new(),
            deselected,
        }
    }

    /// Adds declared columns and deselected properties (of another resource of the table).
    pub fn declare(&mut self, declared: Map<String, Value>, deselected: HashSet<String>) {
        for (k, v) in declared {
            self.declared.entry(k).or_insert(v);
        }
        self.deselected.extend(deselected);
    }

    /// The record without deselected properties.
    pub fn shape<'r>(&self, record: &'r Map<String, Value>) -> Cow<'r, Map<String, Value>> {
        if self.deselected.is_empty() {
            return Cow::Borrowed(record);
        }
        Cow::Owned(
            record
                .iter()
                .filter(|(k, _)| !self.deselected.contains(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }

    /// Takes in a record; true when the schema changed (a new field, or a new type of one).
    pub fn observe(&mut self, record: &Map<String, Value>) -> bool {
        let mut changed = false;
        for (k, v) in record {
            if self.declared.contains_key(k) {
                continue;
            }
            // A field seen only as null says nothing about its type yet; its value is null,
            // so leaving it out of the schema loses nothing.
            let Some(t) = type_of(v) else { continue };
            match self.inferred.iter_mut().find(|(n, _)| n == k) {
                None => {
                    self.inferred.push((k.clone(), vec![t]));
                    changed = true;
                }
                Some((_, types)) => {
                    if types.contains(&t) || (t == "integer" && types.contains(&"number")) {
                        continue;
                    }
                    if t == "number" {
                        types.retain(|x| *x != "integer");
                    }
                    types.push(t);
                    changed = true;
                }
            }
        }
        changed
    }

    /// The schema document.
    pub fn document(&self) -> Value {
        let mut props = self.declared.clone();
        for (name, types) in &self.inferred {
            let mut t: Vec<Value> = types.iter().map(|t| Value::from(*t)).collect();
            t.push("null".into());
            props.insert(name.clone(), json!({"type": t}));
        }
        json!({"type": "object", "properties": props})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn new_fields_and_types_change_the_schema() {
        let mut s = Schema::new(
            Map::from_iter([(
                "id".to_owned(),
                column_schema(&json!({"data_type": "bigint"})),
            )]),
            HashSet::new(),
        );
        assert!(s.observe(&rec(json!({"id": 1, "n": 1}))));
        assert!(!s.observe(&rec(json!({"id": 2, "n": 2, "x": null}))));
        assert!(s.observe(&rec(json!({"id": 3, "n": 2.5}))));
        assert!(!s.observe(&rec(json!({"id": 3, "n": 3}))));
        assert!(s.observe(&rec(json!({"id": 3, "tags": ["a"]}))));
        assert_eq!(
            s.document(),
            json!({"type": "object", "properties": {
                "id": {"type": ["integer", "null"]},
                "n": {"type": ["number", "null"]},
                "tags": {"type": ["array", "null"]}}})
        );
    }
}

//! Flattening of nested objects, in schemas and records, with the SDK's key names.

use super::*;

use crate::transform::TransformError;
use serde_json::{Map, Value, json};

pub(super) fn flattening_options(config: &Value) -> Result<Option<Flattening>, TransformError> {
    let enabled = match config.get("flattening_enabled") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.to_lowercase().as_str(), "true" | "1" | "yes" | "on"),
        Some(_) => return Err(config_error("`flattening_enabled` must be true or false")),
    };
    if !enabled {
        return Ok(None);
    }
    let depth = match config.get("flattening_max_depth") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| {
        config_error(
            "`flattening_max_depth` must be a non-negative integer when flattening is enabled",
        )
    })?;
    if depth == 0 {
        // The SDK treats depth 0 as flattening off.
        return Ok(None);
    }
    let separator = match config.get("flattening_separator") {
        None | Some(Value::Null) => "__".to_owned(),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => {
            return Err(config_error(
                "`flattening_separator` must be a non-empty string",
            ));
        }
    };
    Ok(Some(Flattening {
        max_depth: usize::try_from(depth).unwrap_or(usize::MAX),
        separator,
    }))
}

/// The SDK's `flatten_key`: joined names, abbreviated from the left while 255 characters or more.
pub(super) fn flatten_key(key: &str, parents: &[String], sep: &str) -> String {
    let mut parts: Vec<String> = parents.iter().cloned().chain([key.to_owned()]).collect();
    let mut i = 0;
    while parts.join(sep).len() >= MAX_KEY_LENGTH && i < parts.len() {
        let camel = camelize(&parts[i]);
        let reduced: String = camel.chars().filter(|c| !c.is_ascii_lowercase()).collect();
        parts[i] = if reduced.chars().count() > 1 {
            reduced
        } else {
            parts[i].chars().take(3).collect()
        }
        .to_lowercase();
        i += 1;
    }
    parts.join(sep)
}

/// `inflection.camelize`: upper-case the first letter and each letter after `_`.
pub(super) fn camelize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut upper = true;
    for c in s.chars() {
        if c == '_' {
            upper = true;
            continue;
        }
        if upper {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        upper = false;
    }
    out
}

pub(super) fn has_type(schema: &Value, t: &str) -> bool {
    match schema.get("type") {
        Some(Value::String(s)) => s == t,
        Some(Value::Array(a)) => a.iter().any(|x| x == t),
        _ => false,
    }
}

pub(super) fn flatten_schema(schema: &Value, f: &Flattening) -> Result<Value, String> {
    let mut out = schema.clone();
    let Some(obj) = out.as_object_mut() else {
        return Ok(out);
    };
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Ok(out);
    };
    let mut flat = Map::new();
    flatten_schema_node(props, &[], 0, f, &mut flat)?;
    obj.insert("properties".into(), Value::Object(flat));
    Ok(out)
}

pub(super) fn flatten_schema_node(
    props: &Map<String, Value>,
    parents: &[String],
    level: usize,
    f: &Flattening,
    out: &mut Map<String, Value>,
) -> Result<(), String> {
    for (k, v) in props {
        let new_key = flatten_key(k, parents, &f.separator);
        let nested = v.get("properties").and_then(Value::as_object);
        let value = if let (true, Some(children), true) =
            (has_type(v, "object"), nested, level < f.max_depth)
        {
            let mut p = parents.to_vec();
            p.push(k.clone());
            flatten_schema_node(children, &p, level + 1, f, out)?;
            continue;
        } else if has_type(v, "object") || has_type(v, "array") {
            // Deeper objects and arrays become JSON text.
            let t = match v.get("type") {
                Some(Value::Array(types)) => {
                    let mut ts: Vec<Value> = Vec::new();
                    for t in types {
                        let t = if t == "object" || t == "array" {
                            json!("string")
                        } else {
                            t.clone()
                        };
                        if !ts.contains(&t) {
                            ts.push(t);
                        }
                    }
                    Value::Array(ts)
                }
                _ => json!("string"),
            };
            json!({ "type": t })
        } else {
            v.clone()
        };
        if out.insert(new_key.clone(), value).is_some() {
            return Err(format!("duplicate column name `{new_key}`"));
        }
    }
    Ok(())
}

pub(super) fn flatten_record(record: Map<String, Value>, f: &Flattening) -> Map<String, Value> {
    let mut out = Map::with_capacity(record.len());
    flatten_record_node(record, &[], 0, f, &mut out);
    out
}

pub(super) fn flatten_record_node(
    node: Map<String, Value>,
    parents: &[String],
    level: usize,
    f: &Flattening,
    out: &mut Map<String, Value>,
) {
    for (k, v) in node {
        let new_key = flatten_key(&k, parents, &f.separator);
        match v {
            Value::Object(children) if level < f.max_depth => {
                let mut p = parents.to_vec();
                p.push(k);
                flatten_record_node(children, &p, level + 1, f, out);
            }
            v @ (Value::Object(_) | Value::Array(_)) => {
                let text = serde_json::to_string(&v).expect("a JSON value always serialises");
                out.insert(new_key, Value::String(text));
            }
            v => {
                out.insert(new_key, v);
            }
        }
    }
}

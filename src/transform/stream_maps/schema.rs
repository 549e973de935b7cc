//! Output SCHEMA messages: types inferred from expressions, as the SDK does.

use super::*;

use crate::singer::message::SchemaMessage;
use crate::transform::TransformError;
use serde_json::{Map, Value, json};

pub(super) fn nullable(mut schema: Value) -> Value {
    if let Some(obj) = schema.as_object_mut() {
        match obj.get_mut("type") {
            Some(Value::String(t)) if t != "null" => {
                let t = std::mem::take(t);
                obj.insert("type".into(), json!([t, "null"]));
            }
            Some(Value::Array(types)) if !types.iter().any(|t| t == "null") => {
                types.push("null".into());
            }
            _ => {}
        }
    }
    schema
}

/// The SDK's type inference for a property expression.
pub(super) fn infer_type(source: &str, existing: Option<&Value>, raw: &Value) -> Value {
    let src = source.trim();
    if src == "record" {
        return nullable(raw.clone());
    }
    let simple = |t: &str| json!({"type": [t, "null"]});
    if src.starts_with("float(") {
        return simple("number");
    }
    if src.starts_with("int(") {
        return simple("integer");
    }
    if src.starts_with("str(") || src.starts_with("json.dumps(") {
        return simple("string");
    }
    if src.starts_with("bool(") {
        return simple("boolean");
    }
    if src.ends_with(".date()")
        || (src.starts_with("datetime.date") && !src.starts_with("datetime.datetime"))
    {
        return json!({"type": ["string", "null"], "format": "date"});
    }
    if src.starts_with("datetime.datetime") {
        return json!({"type": ["string", "null"], "format": "date-time"});
    }
    if src.len() >= 2
        && ((src.starts_with('\'') && src.ends_with('\''))
            || (src.starts_with('"') && src.ends_with('"')))
    {
        return simple("string");
    }
    match existing {
        Some(s) => nullable(s.clone()),
        None => simple("string"),
    }
}

/// The output schema of a custom map. With `sdk`, a map with `__else__: null` starts from no
/// property at all, as the SDK's mapper does, so a key property it does not map is an error;
/// otherwise (the `extended` dialect) the key properties are kept.
pub(super) fn custom_schema(
    c: &CustomMap,
    msg: &SchemaMessage,
    alias: &str,
    sdk: bool,
) -> Result<Value, TransformError> {
    let raw = &msg.schema;
    let raw_props = raw.get("properties").and_then(Value::as_object);
    let key_properties = c.key_properties.as_ref().unwrap_or(&msg.key_properties);
    let mut schema = if c.include_by_default {
        raw.clone()
    } else {
        let mut props = Map::new();
        for k in key_properties.iter().filter(|_| !sdk) {
            if let Some(s) = raw_props.and_then(|p| p.get(k)) {
                props.insert(k.clone(), s.clone());
            }
        }
        json!({"type": "object", "properties": props, "$schema": SCHEMA_DIALECT})
    };
    let Some(obj) = schema.as_object_mut() else {
        return Err(TransformError {
            message: format!("the schema of stream `{}` is not a JSON object", msg.stream),
            hint: None,
        });
    };
    if !obj.get("properties").is_some_and(Value::is_object) {
        obj.insert("properties".into(), Value::Object(Map::new()));
    }
    let mut removed = Vec::new();
    {
        let props = obj
            .get_mut("properties")
            .and_then(Value::as_object_mut)
            .expect("inserted above");
        for (prop, expr) in &c.props {
            match expr {
                None => {
                    if key_properties.contains(prop) {
                        return Err(TransformError {
                            message: format!(
                                "stream map for `{alias}` removes `{prop}`, a key property of stream `{}`",
                                msg.stream
                            ),
                            hint: Some(
                                "set `__key_properties__` to a new list (or null) to change the key".into(),
                            ),
                        });
                    }
                    props.shift_remove(prop);
                    removed.push(prop.as_str());
                }
                Some(e) => {
                    let existing = props
                        .get(prop)
                        .or_else(|| raw_props.and_then(|p| p.get(e.source().trim())));
                    let t = infer_type(e.source(), existing, raw);
                    props.insert(prop.clone(), t);
                }
            }
        }
        for k in key_properties {
            if !props.contains_key(k) {
                let hint = if c.include_by_default || !sdk {
                    "list in `__key_properties__` only properties the mapped stream has".to_owned()
                } else {
                    format!(
                        "with `__else__: null` the Singer SDK keeps only the properties a map names: add `{k}: {k}`, or set `__key_properties__` (the `extended` dialect keeps key properties by itself)"
                    )
                };
                return Err(TransformError {
                    message: format!(
                        "stream map for `{alias}`: key property `{k}` is not a property after mapping"
                    ),
                    hint: Some(hint),
                });
            }
        }
    }
    if let Some(Value::Array(req)) = obj.get_mut("required") {
        req.retain(|r| !r.as_str().is_some_and(|r| removed.contains(&r)));
    }
    Ok(schema)
}

pub(super) fn custom_key_properties(kind: &Kind, original: &[String]) -> Vec<String> {
    match kind {
        Kind::Custom(c) => c
            .key_properties
            .clone()
            .unwrap_or_else(|| original.to_vec()),
        _ => original.to_vec(),
    }
}

//! Catalog entries with Singer metadata, and which streams and properties a catalog selects.

use serde_json::{Map, Value, json};

/// The replication method of a stream, as Singer metadata names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicationMethod {
    /// `FULL_TABLE`: every run reads everything, ending with ACTIVATE_VERSION.
    FullTable,
    /// `INCREMENTAL`: rows past the bookmark of the replication key.
    Incremental,
}

/// What a tap knows about a stream when it writes its catalog entry.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// `tap_stream_id` and `stream`.
    pub name: String,
    /// The JSON Schema of the records.
    pub schema: Value,
    /// Primary key columns.
    pub key_properties: Vec<String>,
    /// Columns usable as replication keys.
    pub valid_replication_keys: Vec<String>,
    /// The replication key configured by default, when there is one.
    pub replication_key: Option<String>,
}

impl StreamSpec {
    /// The stream's catalog entry with Singer metadata: stream-level `inclusion`, `selected`,
    /// `table-key-properties`, `valid-replication-keys`, `replication-method`/`replication-key`,
    /// and per-property `inclusion` (`automatic` for keys and the replication key).
    pub fn catalog_entry(&self) -> Value {
        let mut stream_md = Map::new();
        stream_md.insert("inclusion".into(), "available".into());
        stream_md.insert("selected".into(), true.into());
        stream_md.insert("selected-by-default".into(), true.into());
        stream_md.insert(
            "table-key-properties".into(),
            self.key_properties.clone().into(),
        );
        stream_md.insert(
            "valid-replication-keys".into(),
            self.valid_replication_keys.clone().into(),
        );
        match &self.replication_key {
            Some(k) => {
                stream_md.insert("replication-method".into(), "INCREMENTAL".into());
                stream_md.insert("replication-key".into(), k.clone().into());
            }
            None => {
                stream_md.insert("replication-method".into(), "FULL_TABLE".into());
            }
        }
        let mut metadata = vec![json!({"breadcrumb": [], "metadata": stream_md})];
        if let Some(props) = self.schema.get("properties").and_then(Value::as_object) {
            for name in props.keys() {
                let automatic = self.key_properties.contains(name)
                    || self.replication_key.as_deref() == Some(name.as_str());
                metadata.push(json!({
                    "breadcrumb": ["properties", name],
                    "metadata": {
                        "inclusion": if automatic { "automatic" } else { "available" },
                        "selected-by-default": true,
                    }
                }));
            }
        }
        json!({
            "tap_stream_id": self.name,
            "stream": self.name,
            "schema": self.schema,
            "key_properties": self.key_properties,
            "replication_key": self.replication_key,
            "replication_method": if self.replication_key.is_some() { "INCREMENTAL" } else { "FULL_TABLE" },
            "metadata": metadata,
        })
    }
}

/// Wraps catalog entries into a catalog document.
pub fn catalog_document(streams: Vec<Value>) -> Value {
    json!({ "streams": streams })
}

/// How one stream is to be synced, read from a catalog (or the defaults when there is none).
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// The properties to emit, in schema order.
    pub properties: Vec<String>,
    /// The schema to emit (restricted to the selected properties).
    pub schema: Value,
    /// Primary key columns.
    pub key_properties: Vec<String>,
    /// Full table or incremental.
    pub method: ReplicationMethod,
    /// The replication key, for incremental streams.
    pub replication_key: Option<String>,
}

pub(super) fn metadata_for<'a>(
    entry: &'a Value,
    breadcrumb: &[&str],
) -> Option<&'a Map<String, Value>> {
    entry
        .get("metadata")?
        .as_array()?
        .iter()
        .find(|m| {
            m.get("breadcrumb")
                .and_then(Value::as_array)
                .is_some_and(|b| {
                    b.len() == breadcrumb.len() && b.iter().zip(breadcrumb).all(|(a, b)| a == *b)
                })
        })
        .and_then(|m| m.get("metadata"))
        .and_then(Value::as_object)
}

/// Whether a metadata node is selected, the SDK's way: `unsupported` never, `automatic` always,
/// then `selected`, then `selected-by-default`, then `default`.
pub(super) fn node_selected(md: Option<&Map<String, Value>>, default: bool) -> bool {
    let Some(md) = md else { return default };
    match md.get("inclusion").and_then(Value::as_str) {
        Some("unsupported") => return false,
        Some("automatic") => return true,
        _ => {}
    }
    if let Some(b) = md.get("selected").and_then(Value::as_bool) {
        return b;
    }
    md.get("selected-by-default")
        .and_then(Value::as_bool)
        .unwrap_or(default)
}

/// Finds a stream's entry in a catalog by `tap_stream_id` (or `stream`).
pub fn find_stream<'a>(catalog: &'a Value, name: &str) -> Option<&'a Value> {
    catalog.get("streams")?.as_array()?.iter().find(|s| {
        s.get("tap_stream_id").and_then(Value::as_str) == Some(name)
            || (s.get("tap_stream_id").is_none()
                && s.get("stream").and_then(Value::as_str) == Some(name))
    })
}

/// How to sync `spec` given the catalog: `None` when the catalog leaves the stream out or
/// deselects it. With no catalog every stream is synced with all its properties.
pub fn select(spec: &StreamSpec, catalog: Option<&Value>) -> Option<Selection> {
    let all_props = |schema: &Value| -> Vec<String> {
        schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    };
    let Some(catalog) = catalog else {
        return Some(Selection {
            properties: all_props(&spec.schema),
            schema: spec.schema.clone(),
            key_properties: spec.key_properties.clone(),
            method: if spec.replication_key.is_some() {
                ReplicationMethod::Incremental
            } else {
                ReplicationMethod::FullTable
            },
            replication_key: spec.replication_key.clone(),
        });
    };
    let entry = find_stream(catalog, &spec.name)?;
    let stream_md = metadata_for(entry, &[]);
    // The legacy `schema.selected` flag of old `--properties` files counts too.
    let legacy = entry
        .get("schema")
        .and_then(|s| s.get("selected"))
        .and_then(Value::as_bool);
    let selected = match legacy {
        Some(b) if stream_md.and_then(|m| m.get("selected")).is_none() => b,
        _ => node_selected(stream_md, false),
    };
    if !selected {
        return None;
    }
    let schema_in = entry
        .get("schema")
        .cloned()
        .unwrap_or_else(|| spec.schema.clone());
    let key_properties = stream_md
        .and_then(|m| m.get("table-key-properties"))
        .or_else(|| entry.get("key_properties"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_else(|| spec.key_properties.clone());
    let replication_key = stream_md
        .and_then(|m| m.get("replication-key"))
        .or_else(|| entry.get("replication_key"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .filter(|k| !k.is_empty());
    let method_text = stream_md
        .and_then(|m| m.get("replication-method"))
        .or_else(|| entry.get("replication_method"))
        .and_then(Value::as_str)
        .map(str::to_ascii_uppercase);
    let method = match (method_text.as_deref(), &replication_key) {
        (Some("FULL_TABLE"), _) | (None, None) | (Some(_), None) => ReplicationMethod::FullTable,
        (_, Some(_)) => ReplicationMethod::Incremental,
    };
    let mut properties = Vec::new();
    let mut props_out = Map::new();
    if let Some(props) = schema_in.get("properties").and_then(Value::as_object) {
        for (name, prop_schema) in props {
            let md = metadata_for(entry, &["properties", name]);
            let forced = key_properties.contains(name)
                || (method == ReplicationMethod::Incremental
                    && replication_key.as_deref() == Some(name.as_str()));
            if forced || node_selected(md, true) {
                properties.push(name.clone());
                props_out.insert(name.clone(), prop_schema.clone());
            }
        }
    }
    let mut schema = schema_in.clone();
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("properties".into(), Value::Object(props_out));
        obj.shift_remove("selected");
    }
    Some(Selection {
        properties,
        schema,
        key_properties,
        replication_key: if method == ReplicationMethod::Incremental {
            replication_key
        } else {
            None
        },
        method,
    })
}

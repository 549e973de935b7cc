//! The Singer catalog and Meltano's selection rules applied to it.
//!
//! A catalog stays a `serde_json::Value` (`{"streams": [{"tap_stream_id", "stream", "schema",
//! "metadata": [{"breadcrumb": [...], "metadata": {...}}]}]}`), so keys dsm does not know survive
//! untouched. Rules are applied the way Meltano's `SchemaExecutor` and `MetadataExecutor` do: a
//! walk over the whole document that recognises streams, schema properties and metadata entries
//! by their path (`.streams[0].schema.properties.a.properties.b`), in key order.

mod pattern;
#[cfg(test)]
mod tests;

pub use pattern::{
    MetadataRule, SchemaRule, SelectPattern, StreamPattern, fnmatch, property_breadcrumb,
    select_filter_metadata_rules, select_metadata_rules,
};

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value, json};

/// The `select` Meltano uses when a plugin has none.
pub const DEFAULT_SELECT: &str = "*.*";

/// What went wrong applying rules to a catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// A stream entry has no string `tap_stream_id`.
    #[error("stream at `{path}` in the catalog has no `tap_stream_id`")]
    MissingTapStreamId {
        /// Where the stream is, e.g. `.streams[2]`.
        path: String,
    },
    /// A `metadata` key of `meltano.yml` names no metadata key.
    #[error("metadata rule `{key}` needs the form `<stream>[.<property>…].<metadata key>`")]
    InvalidMetadataKey {
        /// The flattened key.
        key: String,
    },
    /// A `schema` override is not an object.
    #[error("schema override for `{stream}.{property}` must be an object")]
    InvalidSchemaOverride {
        /// Stream pattern.
        stream: String,
        /// Property pattern.
        property: String,
    },
}

/// The `--select`/`--exclude` filters of a run (Meltano's `select_filter`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectFilter {
    /// Patterns as Meltano stores them: `--select X` is `X`, `--exclude X` is `!X`.
    pub patterns: Vec<String>,
}

impl SelectFilter {
    /// The filter for `--select` and `--exclude` values.
    pub fn new(select: &[String], exclude: &[String]) -> Self {
        let mut patterns: Vec<String> = select.to_vec();
        patterns.extend(exclude.iter().map(|e| format!("!{e}")));
        SelectFilter { patterns }
    }

    /// Whether there is nothing to filter.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

/// How a stream or property ends up, as `meltano select --list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SelectionState {
    /// Selected by a rule (or `selected-by-default`).
    Selected,
    /// Not selected.
    Excluded,
    /// `inclusion: automatic`: always extracted.
    Automatic,
    /// `inclusion: unsupported`: never extracted.
    Unsupported,
}

impl SelectionState {
    /// Whether the node is extracted.
    pub fn is_extracted(self) -> bool {
        matches!(self, SelectionState::Selected | SelectionState::Automatic)
    }

    /// A property's state within its stream (Meltano's `SelectionType.__add__`).
    pub fn combine(self, other: SelectionState) -> SelectionState {
        use SelectionState::*;
        if self == Excluded || other == Excluded {
            Excluded
        } else if self == Automatic || other == Automatic {
            Automatic
        } else if self == Unsupported || other == Unsupported {
            Unsupported
        } else {
            Selected
        }
    }

    /// Its name: `selected`, `excluded`, `automatic`, `unsupported`.
    pub fn as_str(self) -> &'static str {
        match self {
            SelectionState::Selected => "selected",
            SelectionState::Excluded => "excluded",
            SelectionState::Automatic => "automatic",
            SelectionState::Unsupported => "unsupported",
        }
    }
}

/// The state of one metadata entry (`{"breadcrumb": …, "metadata": {…}}`).
pub fn node_selection(entry: &Value) -> SelectionState {
    let Some(md) = entry.get("metadata").and_then(Value::as_object) else {
        return SelectionState::Excluded;
    };
    match md.get("inclusion").and_then(Value::as_str) {
        Some("automatic") => return SelectionState::Automatic,
        Some("unsupported") => return SelectionState::Unsupported,
        _ => {}
    }
    let selected = md.get("selected");
    let by_default = md.get("selected-by-default").is_some_and(truthy);
    if selected == Some(&Value::Bool(true)) || (selected.is_none_or(Value::is_null) && by_default) {
        SelectionState::Selected
    } else {
        SelectionState::Excluded
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Applies everything Meltano applies before a run, in its order: `schema` overrides, then one
/// metadata pass with `!*.*`, the `select` patterns, the `metadata` rules and the select filter.
///
/// `select` is the effective list (`["*.*"]` when the plugin sets none), `metadata` and `schema`
/// the plugin's objects (`null` or `{}` when unset). For a user-supplied catalog call
/// [`apply_select_filter`] instead.
pub fn apply_selection(
    catalog: &mut Value,
    select: &[String],
    metadata: &Value,
    schema_overrides: &Value,
    filter: &SelectFilter,
) -> Result<(), CatalogError> {
    let schema_rules = config_schema_rules(schema_overrides)?;
    if !schema_rules.is_empty() {
        apply_schema_rules(catalog, &schema_rules)?;
    }
    let mut rules = select_metadata_rules(&["!*.*"]);
    rules.extend(select_metadata_rules(select));
    rules.extend(config_metadata_rules(metadata)?);
    rules.extend(select_filter_metadata_rules(&filter.patterns));
    apply_metadata_rules(catalog, &rules)
}

/// The only rule Meltano applies to a user-supplied `catalog`: the select filter.
pub fn apply_select_filter(catalog: &mut Value, filter: &SelectFilter) -> Result<(), CatalogError> {
    let rules = select_filter_metadata_rules(&filter.patterns);
    if rules.is_empty() {
        return Ok(());
    }
    apply_metadata_rules(catalog, &rules)
}

/// Meltano's `nest_object`: dotted keys become nested objects, merged with their siblings.
fn nest_object(v: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(obj) = v.as_object() {
        for (k, val) in obj {
            let parts: Vec<&str> = k.split('.').collect();
            let mut cur = &mut out;
            for p in &parts[..parts.len() - 1] {
                let slot = cur.entry(p.to_string()).or_insert_with(|| json!({}));
                if !slot.is_object() {
                    *slot = json!({});
                }
                cur = slot.as_object_mut().expect("made an object above");
            }
            let last = parts[parts.len() - 1].to_string();
            match (cur.get_mut(&last), val) {
                (Some(Value::Object(existing)), Value::Object(_)) => {
                    for (nk, nv) in nest_object(val) {
                        existing.insert(nk, nv);
                    }
                }
                _ => {
                    let value = if val.is_object() {
                        Value::Object(nest_object(val))
                    } else {
                        val.clone()
                    };
                    cur.insert(last, value);
                }
            }
        }
    }
    out
}

fn flatten(prefix: &str, v: &Map<String, Value>, out: &mut Vec<(String, Value)>) {
    for (k, val) in v {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match val {
            Value::Object(o) if !o.is_empty() => flatten(&key, o, out),
            other => out.push((key, other.clone())),
        }
    }
}

/// Rules from a plugin's `metadata` (`<stream>[.<prop>…].<key>: value`), Meltano's
/// `config_metadata_rules`.
pub fn config_metadata_rules(metadata: &Value) -> Result<Vec<MetadataRule>, CatalogError> {
    let mut flat = Vec::new();
    flatten("", &nest_object(metadata), &mut flat);
    flat.into_iter()
        .map(|(key, value)| {
            let parts: Vec<String> = key.split('.').map(str::to_string).collect();
            if parts.len() < 2 {
                return Err(CatalogError::InvalidMetadataKey { key });
            }
            Ok(MetadataRule {
                tap_stream_id: StreamPattern::Glob(parts[0].clone()),
                breadcrumb: property_breadcrumb(&parts[1..parts.len() - 1]),
                key: parts[parts.len() - 1].clone(),
                value,
                negated: false,
            })
        })
        .collect()
}

/// Rules from a plugin's `schema` (`<stream>: {<prop>: <json schema>}`), Meltano's
/// `config_schema_rules`.
pub fn config_schema_rules(schema: &Value) -> Result<Vec<SchemaRule>, CatalogError> {
    let mut rules = Vec::new();
    for (stream, props) in nest_object(schema) {
        let Value::Object(props) = props else {
            continue;
        };
        for (prop, payload) in props {
            if !payload.is_object() {
                return Err(CatalogError::InvalidSchemaOverride {
                    stream,
                    property: prop,
                });
            }
            rules.push(SchemaRule {
                tap_stream_id: stream.clone(),
                breadcrumb: property_breadcrumb(std::slice::from_ref(&prop)),
                payload,
            });
        }
    }
    Ok(rules)
}

static STREAM_PATH: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"streams\[\d+\]$").expect("valid regex"));
static PROPERTY_PATH: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"schema(\.properties\.\w*)+$").expect("valid regex"));
static METADATA_PATH: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"metadata\[\d+\]$").expect("valid regex"));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeType {
    Stream,
    Property,
    Metadata,
}

/// Callbacks of the catalog walk (Meltano's `CatalogExecutor`).
trait Executor {
    fn stream_node(
        &mut self,
        node: &mut Map<String, Value>,
        path: &str,
    ) -> Result<(), CatalogError>;
    fn property_node(
        &mut self,
        node: &mut Map<String, Value>,
        path: &str,
    ) -> Result<(), CatalogError>;
    fn metadata_node(&mut self, node: &mut Map<String, Value>) -> Result<(), CatalogError>;
    /// Runs after each child of a stream has been walked, with the stream itself.
    fn after_stream_child(&mut self, _stream: &mut Map<String, Value>) {}
}

fn classify(node: &Map<String, Value>, path: &str) -> Option<NodeType> {
    let mut t = None;
    if STREAM_PATH.is_match(path) {
        t = Some(NodeType::Stream);
    }
    if PROPERTY_PATH.is_match(path) {
        t = Some(NodeType::Property);
    }
    if METADATA_PATH.is_match(path) && node.contains_key("breadcrumb") {
        t = Some(NodeType::Metadata);
    }
    t
}

fn visit(node: &mut Value, exec: &mut dyn Executor, path: &str) -> Result<(), CatalogError> {
    match node {
        Value::Object(map) => {
            let node_type = classify(map, path);
            match node_type {
                Some(NodeType::Stream) => exec.stream_node(map, path)?,
                Some(NodeType::Property) => exec.property_node(map, path)?,
                Some(NodeType::Metadata) => exec.metadata_node(map)?,
                None => {}
            }
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if node_type == Some(NodeType::Property) && (key == "anyOf" || key == "type") {
                    continue;
                }
                if let Some(child) = map.get_mut(&key) {
                    visit(child, exec, &format!("{path}.{key}"))?;
                }
                if node_type == Some(NodeType::Stream) {
                    exec.after_stream_child(map);
                }
            }
        }
        Value::Array(items) => {
            let mut i = 0;
            while i < items.len() {
                visit(&mut items[i], exec, &format!("{path}[{i}]"))?;
                i += 1;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `.streams[0].schema.properties.a.properties.b` → `["properties", "a", "properties", "b"]`
/// (from the first `properties` in the path, as Meltano does).
fn path_breadcrumb(path: &str) -> Vec<String> {
    let start = path.find("properties").unwrap_or(path.len());
    path[start..].split('.').map(str::to_string).collect()
}

fn stream_id(node: &Map<String, Value>, path: &str) -> Result<String, CatalogError> {
    node.get("tap_stream_id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| CatalogError::MissingTapStreamId { path: path.into() })
}

struct MetadataExecutor<'a> {
    rules: &'a [MetadataRule],
    stream: Option<String>,
    pending: Vec<Vec<String>>,
}

fn ensure_metadata(stream: &mut Map<String, Value>, breadcrumb: &[String]) {
    let Some(list) = stream.get_mut("metadata").and_then(Value::as_array_mut) else {
        return;
    };
    let found = list.iter().any(|m| {
        m.get("breadcrumb")
            .and_then(Value::as_array)
            .is_some_and(|b| {
                b.len() == breadcrumb.len()
                    && b.iter().zip(breadcrumb).all(|(x, y)| x.as_str() == Some(y))
            })
    });
    if !found {
        // Streams and top-level properties are automatic; nested properties available.
        let inclusion = if breadcrumb.len() <= 2 {
            "automatic"
        } else {
            "available"
        };
        list.push(json!({"breadcrumb": breadcrumb, "metadata": {"inclusion": inclusion}}));
    }
}

fn set_metadata(node: &mut Map<String, Value>, key: &str, value: &Value) {
    // Unsupported fields cannot be selected.
    if key == "selected"
        && *value == Value::Bool(true)
        && node.get("inclusion").and_then(Value::as_str) == Some("unsupported")
    {
        return;
    }
    node.insert(key.to_string(), value.clone());
}

impl Executor for MetadataExecutor<'_> {
    fn stream_node(
        &mut self,
        node: &mut Map<String, Value>,
        path: &str,
    ) -> Result<(), CatalogError> {
        let id = stream_id(node, path)?;
        if !node.get("metadata").is_some_and(Value::is_array) {
            node.insert("metadata".into(), json!([]));
        }
        ensure_metadata(node, &[]);
        for rule in self.rules.iter().filter(|r| r.matches(&id, Some(&[]))) {
            // Legacy catalogs keep underscored keys on the stream itself.
            set_metadata(node, &rule.key.replace('-', "_"), &rule.value);
        }
        self.stream = Some(id);
        Ok(())
    }

    fn property_node(
        &mut self,
        _node: &mut Map<String, Value>,
        path: &str,
    ) -> Result<(), CatalogError> {
        self.pending.push(path_breadcrumb(path));
        Ok(())
    }

    fn metadata_node(&mut self, node: &mut Map<String, Value>) -> Result<(), CatalogError> {
        let Some(id) = self.stream.as_deref() else {
            return Ok(());
        };
        let breadcrumb: Vec<String> = node
            .get("breadcrumb")
            .and_then(Value::as_array)
            .map(|b| {
                b.iter()
                    .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        for rule in self
            .rules
            .iter()
            .filter(|r| r.matches(id, Some(&breadcrumb)))
        {
            let md = node.entry("metadata").or_insert_with(|| json!({}));
            if !md.is_object() {
                *md = json!({});
            }
            let md = md.as_object_mut().expect("made an object above");
            set_metadata(md, &rule.key, &rule.value);
        }
        Ok(())
    }

    fn after_stream_child(&mut self, stream: &mut Map<String, Value>) {
        for breadcrumb in std::mem::take(&mut self.pending) {
            ensure_metadata(stream, &breadcrumb);
        }
    }
}

/// Applies metadata rules in one walk (Meltano's `MetadataExecutor`): missing metadata entries
/// are created, and for each node the matching rules are applied in order, the last one winning.
pub fn apply_metadata_rules(
    catalog: &mut Value,
    rules: &[MetadataRule],
) -> Result<(), CatalogError> {
    let mut exec = MetadataExecutor {
        rules,
        stream: None,
        pending: Vec::new(),
    };
    visit(catalog, &mut exec, "")
}

struct SchemaExecutor<'a> {
    rules: &'a [SchemaRule],
    stream: Option<String>,
}

fn is_wildcard(key: &str) -> bool {
    key.starts_with(['*', '?', '[', ']'])
}

/// Creates the schema nodes a rule's breadcrumb names; a part starting with a wildcard expands to
/// the existing keys it matches (Meltano's `ensure_property`). `literal` parts are never expanded.
fn ensure_property(root: &mut Value, breadcrumb: &[String], literal: usize) {
    let mut expansions = Vec::new();
    let mut node = &mut *root;
    for (idx, key) in breadcrumb.iter().enumerate() {
        let Value::Object(map) = node else {
            return;
        };
        if idx >= literal && is_wildcard(key) {
            for k in map.keys() {
                if fnmatch(k, key) {
                    let mut b = breadcrumb.to_vec();
                    b[idx] = k.clone();
                    expansions.push((b, idx + 1));
                }
            }
            break;
        }
        node = map.entry(key.clone()).or_insert_with(|| json!({}));
    }
    for (b, literal) in expansions {
        ensure_property(root, &b, literal);
    }
}

impl Executor for SchemaExecutor<'_> {
    fn stream_node(
        &mut self,
        node: &mut Map<String, Value>,
        path: &str,
    ) -> Result<(), CatalogError> {
        let id = stream_id(node, path)?;
        let schema = node
            .entry("schema")
            .or_insert_with(|| json!({"type": "object"}));
        for rule in self.rules.iter().filter(|r| r.matches(&id, None)) {
            ensure_property(schema, &rule.breadcrumb, 0);
        }
        self.stream = Some(id);
        Ok(())
    }

    fn property_node(
        &mut self,
        node: &mut Map<String, Value>,
        path: &str,
    ) -> Result<(), CatalogError> {
        let Some(id) = self.stream.as_deref() else {
            return Ok(());
        };
        let breadcrumb = path_breadcrumb(path);
        for rule in self
            .rules
            .iter()
            .filter(|r| r.matches(id, Some(&breadcrumb)))
        {
            if let Value::Object(payload) = &rule.payload {
                node.clear();
                node.extend(payload.clone());
            }
        }
        Ok(())
    }

    fn metadata_node(&mut self, _node: &mut Map<String, Value>) -> Result<(), CatalogError> {
        Ok(())
    }
}

/// Replaces the schema of matching properties (Meltano's `SchemaExecutor`), creating properties
/// a rule names that the tap did not discover.
pub fn apply_schema_rules(catalog: &mut Value, rules: &[SchemaRule]) -> Result<(), CatalogError> {
    let mut exec = SchemaExecutor {
        rules,
        stream: None,
    };
    visit(catalog, &mut exec, "")
}

/// One stream's selection, as `meltano select --list` sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StreamSelection {
    /// The stream's `tap_stream_id`.
    pub tap_stream_id: String,
    /// The state of its stream-level metadata; `None` when it has none.
    pub selection: Option<SelectionState>,
    /// Dotted property paths (`payload.content`) and their own states, sorted by path.
    pub properties: Vec<(String, SelectionState)>,
}

static PROP_COMPONENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"properties\.([^.]+)").expect("valid regex"));

/// `properties.a.properties.b` → `a.b` (Meltano's `path_property`).
fn path_property(path: &str) -> String {
    PROP_COMPONENT
        .captures_iter(path)
        .map(|c| c[1].to_string())
        .collect::<Vec<_>>()
        .join(".")
}

/// Every stream with the state of its metadata entries (Meltano's `ListSelectedExecutor`).
pub fn selection_report(catalog: &Value) -> Vec<StreamSelection> {
    let mut out = Vec::new();
    let Some(streams) = catalog.get("streams").and_then(Value::as_array) else {
        return out;
    };
    for stream in streams {
        let Some(id) = stream.get("tap_stream_id").and_then(Value::as_str) else {
            continue;
        };
        let mut sel = StreamSelection {
            tap_stream_id: id.to_string(),
            selection: None,
            properties: Vec::new(),
        };
        for entry in stream
            .get("metadata")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(breadcrumb) = entry.get("breadcrumb").and_then(Value::as_array) else {
                continue;
            };
            let state = node_selection(entry);
            if breadcrumb.is_empty() {
                sel.selection.get_or_insert(state);
            } else {
                let joined: Vec<&str> = breadcrumb.iter().filter_map(Value::as_str).collect();
                let prop = path_property(&joined.join("."));
                if !sel.properties.iter().any(|(p, _)| *p == prop) {
                    sel.properties.push((prop, state));
                }
            }
        }
        sel.properties.sort_by(|a, b| a.0.cmp(&b.0));
        out.push(sel);
    }
    out
}

/// Every `(stream, property, state)` of streams with stream-level metadata, where the state
/// combines the stream's and the property's, as `meltano select --list --all` prints them.
pub fn list_selection(catalog: &Value) -> Vec<(String, String, SelectionState)> {
    selection_report(catalog)
        .into_iter()
        .filter_map(|s| s.selection.map(|st| (s, st)))
        .flat_map(|(s, st)| {
            let id = s.tap_stream_id;
            s.properties
                .into_iter()
                .map(move |(p, ps)| (id.clone(), p, st.combine(ps)))
        })
        .collect()
}

/// What Meltano's `selected_properties` reports: for each stream not excluded, the set of its
/// extracted property paths.
pub fn selected_properties(catalog: &Value) -> Vec<(String, Vec<String>)> {
    selection_report(catalog)
        .into_iter()
        .filter(|s| s.selection.is_none_or(SelectionState::is_extracted))
        .map(|s| {
            let props = s
                .properties
                .into_iter()
                .filter(|(_, st)| st.is_extracted())
                .map(|(p, _)| p)
                .collect();
            (s.tap_stream_id, props)
        })
        .collect()
}

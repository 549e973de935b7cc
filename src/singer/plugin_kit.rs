//! A small kit for writing Singer plugins in Rust: the command line every Singer program shares
//! (`--about`, `--discover`, `--config`, `--catalog`/`--properties`, `--state`, `--input`),
//! catalog entries with Singer metadata, stream selection, bookmarks, and a buffered writer.
//!
//! dsm's built-in taps and targets (`taps/`) are built on it. It follows the conventions of the
//! Meltano Singer SDK so that Meltano and dsm drive these programs like any Python plugin.

use std::cmp::Ordering;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

/// Why a plugin run failed. Rendered on stderr as `error: …` plus optional `hint: …` lines.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The command line is wrong (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// The configuration is wrong (exit code 2).
    #[error("{message}")]
    Config {
        /// What is wrong.
        message: String,
        /// What to do about it.
        hint: Option<String>,
    },
    /// The data or a resource failed (exit code 1).
    #[error("{message}")]
    Data {
        /// What is wrong.
        message: String,
        /// What to do about it.
        hint: Option<String>,
    },
    /// Writing to stdout failed.
    #[error("cannot write to stdout: {0}")]
    Output(#[source] io::Error),
}

impl PluginError {
    /// A data error without a hint.
    pub fn data(message: impl Into<String>) -> Self {
        PluginError::Data {
            message: message.into(),
            hint: None,
        }
    }

    /// A data error with a hint.
    pub fn data_hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        PluginError::Data {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// A configuration error without a hint.
    pub fn config(message: impl Into<String>) -> Self {
        PluginError::Config {
            message: message.into(),
            hint: None,
        }
    }

    /// A configuration error with a hint.
    pub fn config_hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        PluginError::Config {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// The process exit code for this error: 2 for usage and configuration, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            PluginError::Usage(_) | PluginError::Config { .. } => 2,
            PluginError::Data { .. } | PluginError::Output(_) => 1,
        }
    }

    fn hint(&self) -> Option<&str> {
        match self {
            PluginError::Config { hint, .. } | PluginError::Data { hint, .. } => hint.as_deref(),
            PluginError::Usage(_) => Some("run with `--help` for the accepted arguments"),
            PluginError::Output(_) => None,
        }
    }
}

/// Turns an I/O error on stdout into a [`PluginError`].
pub fn output_error(e: io::Error) -> PluginError {
    PluginError::Output(e)
}

/// The arguments every Singer tap and target accepts.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PluginArgs {
    /// `--about`: describe the plugin and exit.
    pub about: bool,
    /// `--format json|markdown|text` for `--about`.
    pub format: Option<String>,
    /// `--discover`: print the catalog and exit.
    pub discover: bool,
    /// `--config FILE` (repeatable; later files override earlier keys).
    pub config: Vec<PathBuf>,
    /// `--catalog FILE` or the legacy `--properties FILE`.
    pub catalog: Option<PathBuf>,
    /// `--state FILE`.
    pub state: Option<PathBuf>,
    /// `--input FILE` (targets: read this instead of stdin).
    pub input: Option<PathBuf>,
    /// `--version`.
    pub version: bool,
    /// `--help`.
    pub help: bool,
}

impl PluginArgs {
    /// Parses arguments (without the program name).
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Self, PluginError> {
        let mut out = PluginArgs::default();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
                _ => (arg.clone(), None),
            };
            let mut value = |name: &str| -> Result<String, PluginError> {
                match inline.clone().or_else(|| it.next()) {
                    Some(v) => Ok(v),
                    None => Err(PluginError::Usage(format!("`{name}` needs a value"))),
                }
            };
            match flag.as_str() {
                "--about" => out.about = true,
                "--discover" => out.discover = true,
                "--version" | "-v" => out.version = true,
                "--help" | "-h" => out.help = true,
                "--format" => out.format = Some(value("--format")?),
                "--config" | "-c" => out.config.push(PathBuf::from(value("--config")?)),
                "--catalog" => out.catalog = Some(PathBuf::from(value("--catalog")?)),
                "--properties" | "-p" => {
                    out.catalog = Some(PathBuf::from(value("--properties")?));
                }
                "--state" | "-s" => out.state = Some(PathBuf::from(value("--state")?)),
                "--input" => out.input = Some(PathBuf::from(value("--input")?)),
                other => return Err(PluginError::Usage(format!("unknown argument `{other}`"))),
            }
        }
        Ok(out)
    }

    /// Reads and merges the `--config` files (an empty object when there are none).
    pub fn load_config(&self) -> Result<Map<String, Value>, PluginError> {
        let mut merged = Map::new();
        for path in &self.config {
            match read_json(path, "config")? {
                Value::Object(obj) => merged.extend(obj),
                _ => {
                    return Err(PluginError::config(format!(
                        "config file `{}` must hold a JSON object",
                        path.display()
                    )));
                }
            }
        }
        Ok(merged)
    }

    /// Reads the `--catalog`/`--properties` file, when given.
    pub fn load_catalog(&self) -> Result<Option<Value>, PluginError> {
        self.catalog
            .as_deref()
            .map(|p| read_json(p, "catalog"))
            .transpose()
    }

    /// Reads the `--state` file, when given (an empty file counts as no state).
    pub fn load_state(&self) -> Result<Value, PluginError> {
        match &self.state {
            None => Ok(Value::Null),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    PluginError::config(format!("cannot read state file `{}`: {e}", p.display()))
                })?;
                if text.trim().is_empty() {
                    return Ok(Value::Null);
                }
                serde_json::from_str(&text).map_err(|e| {
                    PluginError::config(format!(
                        "state file `{}` is not valid JSON: {e}",
                        p.display()
                    ))
                })
            }
        }
    }
}

/// Reads a JSON file, naming it and its role in any error.
pub fn read_json(path: &Path, role: &str) -> Result<Value, PluginError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        PluginError::config(format!("cannot read {role} file `{}`: {e}", path.display()))
    })?;
    serde_json::from_str(&text).map_err(|e| {
        PluginError::config(format!(
            "{role} file `{}` is not valid JSON: {e}",
            path.display()
        ))
    })
}

/// What `--about` prints: the plugin's name, version, capabilities and settings.
#[derive(Debug, Clone)]
pub struct About {
    /// Executable name, e.g. `tap-csv`.
    pub name: &'static str,
    /// One-line description.
    pub description: &'static str,
    /// Singer capabilities, e.g. `catalog`, `discover`, `state`, `about`.
    pub capabilities: &'static [&'static str],
    /// The settings as a JSON Schema object (`properties`, `required`), like the SDK's.
    pub settings: Value,
}

impl About {
    /// The SDK's `--about --format json` document.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "description": self.description,
            "version": env!("CARGO_PKG_VERSION"),
            "sdk_version": null,
            "capabilities": self.capabilities,
            "settings": self.settings,
        })
    }

    /// Renders in `format` (`json`, `markdown` or plain text).
    pub fn render(&self, format: Option<&str>) -> Result<String, PluginError> {
        match format {
            Some("json") => Ok(serde_json::to_string_pretty(&self.to_json())
                .expect("a JSON value always serialises")),
            Some("markdown") => Ok(self.render_text(true)),
            None | Some("text") => Ok(self.render_text(false)),
            Some(other) => Err(PluginError::Usage(format!(
                "unknown `--format` `{other}` (expected json, markdown or text)"
            ))),
        }
    }

    fn render_text(&self, markdown: bool) -> String {
        let mut s = String::new();
        if markdown {
            s.push_str(&format!("# `{}`\n\n{}\n\n", self.name, self.description));
        } else {
            s.push_str(&format!(
                "Name: {}\nDescription: {}\nVersion: {}\n",
                self.name,
                self.description,
                env!("CARGO_PKG_VERSION")
            ));
        }
        s.push_str(if markdown {
            "## Capabilities\n\n"
        } else {
            "Capabilities:\n"
        });
        for c in self.capabilities {
            s.push_str(&format!("  - {c}\n"));
        }
        s.push_str(if markdown {
            "\n## Settings\n\n"
        } else {
            "Settings:\n"
        });
        if let Some(props) = self.settings.get("properties").and_then(Value::as_object) {
            for (name, p) in props {
                let kind = p.get("type").map(|t| t.to_string()).unwrap_or_default();
                let desc = p.get("description").and_then(Value::as_str).unwrap_or("");
                s.push_str(&format!("  - {name} ({kind}): {desc}\n"));
            }
        }
        s
    }
}

/// Runs a plugin's `main`: parses arguments, handles `--about`/`--version`/`--help`, calls
/// `body`, and renders any error on stderr. A closed stdout is not an error (Singer consumers
/// may stop reading early).
pub fn run_main(
    about: &About,
    usage: &str,
    body: impl FnOnce(PluginArgs) -> Result<(), PluginError>,
) -> std::process::ExitCode {
    let result = PluginArgs::parse(std::env::args().skip(1)).and_then(|args| {
        if args.help {
            write_stdout(usage.as_bytes())
        } else if args.version {
            write_stdout(format!("{} {}\n", about.name, env!("CARGO_PKG_VERSION")).as_bytes())
        } else if args.about {
            let mut text = about.render(args.format.as_deref())?;
            text.push('\n');
            write_stdout(text.as_bytes())
        } else {
            body(args)
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(PluginError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            let mut err = io::stderr().lock();
            // Nothing more can be done when stderr itself is gone.
            let _ = writeln!(err, "error: {e}");
            if let Some(h) = e.hint() {
                let _ = writeln!(err, "\nhint: {h}");
            }
            std::process::ExitCode::from(e.exit_code())
        }
    }
}

fn write_stdout(bytes: &[u8]) -> Result<(), PluginError> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(output_error)
}

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

fn metadata_for<'a>(entry: &'a Value, breadcrumb: &[&str]) -> Option<&'a Map<String, Value>> {
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
fn node_selected(md: Option<&Map<String, Value>>, default: bool) -> bool {
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

/// The bookmarked replication key value of a stream in a state document:
/// `{"bookmarks": {stream: {"replication_key": k, "replication_key_value": v}}}`.
/// Meltano may hand over the state wrapped in `{"singer_state": …}`; that is accepted too.
pub fn bookmark(state: &Value, stream: &str, key: &str) -> Option<Value> {
    let state = state.get("singer_state").unwrap_or(state);
    // A whole STATE message (as some targets print) holds the state in `value`.
    let state = match state.get("type") {
        Some(t) if t == "STATE" => state.get("value")?,
        _ => state,
    };
    let b = state.get("bookmarks")?.get(stream)?;
    if let Some(k) = b.get("replication_key").and_then(Value::as_str)
        && k != key
    {
        return None;
    }
    b.get("replication_key_value")
        .cloned()
        .filter(|v| !v.is_null())
}

/// Sets a stream's bookmark in a state document, keeping other streams' bookmarks.
pub fn set_bookmark(state: &mut Value, stream: &str, key: &str, value: Value) {
    if !state.is_object() {
        *state = json!({});
    }
    let obj = state.as_object_mut().expect("made an object above");
    let bookmarks = obj.entry("bookmarks").or_insert_with(|| json!({}));
    if !bookmarks.is_object() {
        *bookmarks = json!({});
    }
    bookmarks
        .as_object_mut()
        .expect("made an object above")
        .insert(
            stream.to_owned(),
            json!({"replication_key": key, "replication_key_value": value}),
        );
}

/// Whether a row with replication key value `v` is synced given the bookmark `b`. Like the
/// Singer SDK, the comparison is `>=`: rows sharing the bookmark's value may have been added
/// after the last sync, so the row at the bookmark is sent again (at-least-once delivery).
/// Values that cannot be compared with the bookmark (null, another type) are skipped.
pub fn at_or_after_bookmark(v: &Value, b: &Value) -> bool {
    matches!(
        compare_values(v, b),
        Some(Ordering::Greater | Ordering::Equal)
    )
}

/// Orders two replication key values: numbers numerically, strings by text (ISO 8601
/// timestamps in one format sort correctly), `None` when they cannot be compared.
pub fn compare_values(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                return Some(x.cmp(&y));
            }
            x.as_f64()?.partial_cmp(&y.as_f64()?)
        }
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Appends `s` to `out` as a JSON string literal (with quotes).
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// A buffered Singer message writer on stdout.
pub struct MessageWriter<W: Write> {
    out: io::BufWriter<W>,
}

impl MessageWriter<io::Stdout> {
    /// A writer on stdout with a 256 KiB buffer.
    pub fn stdout() -> Self {
        MessageWriter::new(io::stdout())
    }
}

impl<W: Write> MessageWriter<W> {
    /// Wraps any writer.
    pub fn new(inner: W) -> Self {
        MessageWriter {
            out: io::BufWriter::with_capacity(256 * 1024, inner),
        }
    }

    /// Writes one message (a JSON value) and a newline.
    pub fn write_value(&mut self, message: &Value) -> Result<(), PluginError> {
        serde_json::to_writer(&mut self.out, message)
            .map_err(|e| output_error(io::Error::other(e)))?;
        self.out.write_all(b"\n").map_err(output_error)
    }

    /// Writes an already encoded line (the newline is added).
    pub fn write_line(&mut self, line: &[u8]) -> Result<(), PluginError> {
        self.out.write_all(line).map_err(output_error)?;
        self.out.write_all(b"\n").map_err(output_error)
    }

    /// A `SCHEMA` message.
    pub fn schema(&mut self, stream: &str, selection: &Selection) -> Result<(), PluginError> {
        let mut msg = json!({
            "type": "SCHEMA",
            "stream": stream,
            "schema": selection.schema,
            "key_properties": selection.key_properties,
        });
        if let Some(k) = &selection.replication_key {
            msg["bookmark_properties"] = json!([k]);
        }
        self.write_value(&msg)
    }

    /// A `STATE` message.
    pub fn state(&mut self, value: &Value) -> Result<(), PluginError> {
        self.write_value(&json!({"type": "STATE", "value": value}))
    }

    /// The STATE that ends a sync, left out when there is nothing to bookmark (`{}`): a
    /// full-table sync has no bookmark to advance, and an empty STATE only makes the runner
    /// say so.
    pub fn final_state(&mut self, value: &Value) -> Result<(), PluginError> {
        if value.as_object().is_some_and(serde_json::Map::is_empty) {
            return Ok(());
        }
        self.state(value)
    }

    /// An `ACTIVATE_VERSION` message.
    pub fn activate_version(&mut self, stream: &str, version: u64) -> Result<(), PluginError> {
        self.write_value(&json!({"type": "ACTIVATE_VERSION", "stream": stream, "version": version}))
    }

    /// Flushes the buffer.
    pub fn flush(&mut self) -> Result<(), PluginError> {
        self.out.flush().map_err(output_error)
    }
}

/// A table version for a full-table sync: milliseconds since the Unix epoch, as the SDK uses.
pub fn new_table_version() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The current time in RFC 3339, for `time_extracted`.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Expands a path or glob (relative to the working directory) into sorted file paths.
pub fn expand_glob(pattern: &str) -> Result<Vec<PathBuf>, PluginError> {
    let has_meta = pattern.contains(['*', '?', '[', '{']);
    if !has_meta {
        return Ok(vec![PathBuf::from(pattern)]);
    }
    let glob = globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| PluginError::config(format!("bad glob `{pattern}`: {e}")))?
        .compile_matcher();
    // Walk from the longest directory prefix without glob characters.
    let base: PathBuf = {
        let mut b = PathBuf::new();
        for comp in Path::new(pattern).components() {
            let s = comp.as_os_str().to_string_lossy();
            if s.contains(['*', '?', '[', '{']) {
                break;
            }
            b.push(comp);
        }
        if b.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            b
        }
    };
    let mut found = Vec::new();
    let mut stack = vec![base.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = if base == Path::new(".") {
                    path.strip_prefix("./").unwrap_or(&path).to_path_buf()
                } else {
                    path.clone()
                };
                if glob.is_match(&rel) {
                    found.push(rel);
                }
            }
        }
    }
    found.sort();
    if found.is_empty() {
        return Err(PluginError::config_hint(
            format!("no file matches `{pattern}`"),
            "paths and globs are relative to the directory the plugin runs in",
        ));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> StreamSpec {
        StreamSpec {
            name: "users".into(),
            schema: json!({"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"}, "updated": {"type": "string"}}}),
            key_properties: vec!["id".into()],
            valid_replication_keys: vec!["updated".into()],
            replication_key: None,
        }
    }

    #[test]
    fn parses_singer_arguments() {
        let a = PluginArgs::parse(
            [
                "--config",
                "a.json",
                "--config=b.json",
                "--properties",
                "c.json",
                "--state",
                "s.json",
            ]
            .map(String::from),
        )
        .unwrap();
        assert_eq!(a.config, vec![PathBuf::from("a.json"), "b.json".into()]);
        assert_eq!(a.catalog, Some("c.json".into()));
        assert_eq!(a.state, Some("s.json".into()));
        assert!(PluginArgs::parse(["--bogus".to_string()]).is_err());
        assert!(PluginArgs::parse(["--config".to_string()]).is_err());
    }

    #[test]
    fn discovered_entry_selects_everything() {
        let catalog = catalog_document(vec![spec().catalog_entry()]);
        let sel = select(&spec(), Some(&catalog)).unwrap();
        assert_eq!(sel.properties, vec!["id", "name", "updated"]);
        assert_eq!(sel.method, ReplicationMethod::FullTable);
    }

    #[test]
    fn deselected_properties_and_streams_are_left_out_but_keys_stay() {
        let mut entry = spec().catalog_entry();
        let md = entry["metadata"].as_array_mut().unwrap();
        md[1]["metadata"]["selected"] = false.into(); // id: automatic, stays
        md[2]["metadata"]["selected"] = false.into(); // name
        md[0]["metadata"]["replication-method"] = "INCREMENTAL".into();
        md[0]["metadata"]["replication-key"] = "updated".into();
        let catalog = catalog_document(vec![entry.clone()]);
        let sel = select(&spec(), Some(&catalog)).unwrap();
        assert_eq!(sel.properties, vec!["id", "updated"]);
        assert_eq!(sel.replication_key.as_deref(), Some("updated"));
        entry["metadata"][0]["metadata"]["selected"] = false.into();
        assert!(select(&spec(), Some(&catalog_document(vec![entry]))).is_none());
        assert!(select(&spec(), Some(&catalog_document(vec![]))).is_none());
    }

    #[test]
    fn bookmarks_round_trip() {
        let mut state = Value::Null;
        set_bookmark(&mut state, "users", "updated", json!("2024-01-02"));
        assert_eq!(
            bookmark(&state, "users", "updated"),
            Some(json!("2024-01-02"))
        );
        assert_eq!(bookmark(&state, "users", "other"), None);
        assert_eq!(bookmark(&state, "orders", "updated"), None);
    }

    #[test]
    fn rows_at_the_bookmark_are_sent_again() {
        // Issue 4: a strict `>` missed rows added later with the bookmark's own value.
        assert!(at_or_after_bookmark(&json!(5), &json!(5)));
        assert!(at_or_after_bookmark(&json!(6), &json!(5)));
        assert!(!at_or_after_bookmark(&json!(4), &json!(5)));
        assert!(at_or_after_bookmark(
            &json!("2024-01-02"),
            &json!("2024-01-02")
        ));
        assert!(!at_or_after_bookmark(&Value::Null, &json!("2024-01-02")));
    }

    #[test]
    fn escapes_json_strings() {
        let mut out = Vec::new();
        write_json_str(&mut out, "a\"b\\c\nd\u{1}é");
        let back: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, "a\"b\\c\nd\u{1}é");
    }

    #[test]
    fn compares_numbers_and_strings() {
        assert_eq!(
            compare_values(&json!(10), &json!(9)),
            Some(Ordering::Greater)
        );
        assert_eq!(compare_values(&json!(1.5), &json!(2)), Some(Ordering::Less));
        assert_eq!(
            compare_values(&json!("b"), &json!("a")),
            Some(Ordering::Greater)
        );
        assert_eq!(compare_values(&json!("b"), &json!(1)), None);
    }
}

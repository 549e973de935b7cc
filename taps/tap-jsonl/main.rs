//! `tap-jsonl`: a built-in Singer tap of dsm that reads JSON-lines files (one object per line),
//! one stream per configured path or glob, full-table or incremental by a replication key.

use std::io::BufRead;
use std::path::PathBuf;

use dsm::singer::codec::{DEFAULT_MAX_LINE, LineReader};
use dsm::singer::plugin_kit::{
    self as kit, About, MessageWriter, PluginArgs, PluginError, ReplicationMethod, StreamSpec,
};
use serde_json::{Map, Value, json};

const USAGE: &str = "usage: tap-jsonl [--about [--format json]] [--discover] --config FILE \
[--catalog FILE] [--state FILE]\n";
const DEFAULT_INFER_ROWS: u64 = 1000;

fn about() -> About {
    About {
        name: "tap-jsonl",
        description: "Reads JSON-lines files, one stream per file or glob (dsm built-in)",
        capabilities: &["catalog", "discover", "state", "properties", "about"],
        settings: json!({
            "type": "object",
            "properties": {
                "files": {
                    "type": "array",
                    "description": "The streams: for each, `entity` (the stream name), `path` (a file or a glob), `keys` (primary key properties), and optionally `replication_key` and `schema` (a JSON Schema; otherwise inferred from the first records).",
                    "items": {
                        "type": "object",
                        "properties": {
                            "entity": {"type": "string"},
                            "path": {"type": "string"},
                            "keys": {"type": "array", "items": {"type": "string"}},
                            "replication_key": {"type": "string"},
                            "schema": {"type": "object"}
                        },
                        "required": ["entity", "path"]
                    }
                },
                "infer_rows": {
                    "type": "integer",
                    "default": DEFAULT_INFER_ROWS,
                    "description": "How many records are read to infer the schema when none is declared."
                }
            },
            "required": ["files"]
        }),
    }
}

fn main() -> std::process::ExitCode {
    kit::run_main(&about(), USAGE, run)
}

struct Stream {
    files: Vec<PathBuf>,
    spec: StreamSpec,
}

fn open(path: &PathBuf) -> Result<LineReader<Box<dyn BufRead>>, PluginError> {
    let f = std::fs::File::open(path)
        .map_err(|e| PluginError::data(format!("cannot read `{}`: {e}", path.display())))?;
    Ok(LineReader::new(
        Box::new(std::io::BufReader::with_capacity(256 * 1024, f)),
        DEFAULT_MAX_LINE,
    ))
}

/// Reads the next object of a JSON-lines file, skipping blank lines.
fn next_object(
    reader: &mut LineReader<Box<dyn BufRead>>,
    buf: &mut Vec<u8>,
    path: &std::path::Path,
) -> Result<Option<Map<String, Value>>, PluginError> {
    loop {
        let more = reader
            .read_line(buf)
            .map_err(|e| PluginError::data(format!("cannot read `{}`: {e}", path.display())))?;
        if !more {
            return Ok(None);
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let line = reader.line_number();
        return match serde_json::from_slice::<Value>(buf) {
            Ok(Value::Object(o)) => Ok(Some(o)),
            Ok(_) => Err(PluginError::data(format!(
                "`{}` line {line} is not a JSON object",
                path.display()
            ))),
            Err(e) => Err(PluginError::data(format!(
                "`{}` line {line} is not valid JSON: {e}",
                path.display()
            ))),
        };
    }
}

fn json_type(v: &Value) -> Option<&'static str> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(s) if chrono::DateTime::parse_from_rfc3339(s).is_ok() => "date-time",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    })
}

fn merge_type(a: Option<&'static str>, b: &'static str) -> &'static str {
    match (a, b) {
        (None, b) => b,
        (Some(a), b) if a == b => a,
        (Some("integer"), "number") | (Some("number"), "integer") => "number",
        (Some("date-time"), "string") | (Some("string"), "date-time") => "string",
        _ => "any",
    }
}

fn property_schema(t: &str) -> Value {
    match t {
        "date-time" => json!({"type": ["string", "null"], "format": "date-time"}),
        "any" => json!({}),
        other => json!({"type": [other, "null"]}),
    }
}

fn discover(entry: &Value, i: usize, infer_rows: u64) -> Result<Stream, PluginError> {
    let name = entry
        .get("entity")
        .or_else(|| entry.get("stream"))
        .and_then(Value::as_str)
        .ok_or_else(|| PluginError::config(format!("`files[{i}]` has no `entity`")))?;
    let pattern = entry
        .get("path")
        .and_then(Value::as_str)
        .ok_or_else(|| PluginError::config(format!("`files[{i}]` has no `path`")))?;
    let files = kit::expand_glob(pattern)?;
    let keys: Vec<String> = entry
        .get("keys")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let replication_key = entry
        .get("replication_key")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let schema = match entry.get("schema").filter(|s| s.is_object()) {
        Some(s) => s.clone(),
        None => {
            let mut types: Vec<(String, Option<&'static str>)> = Vec::new();
            let mut n = 0;
            let mut buf = Vec::new();
            'files: for path in &files {
                let mut r = open(path)?;
                while let Some(obj) = next_object(&mut r, &mut buf, path)? {
                    for (k, v) in &obj {
                        let pos = match types.iter().position(|(name, _)| name == k) {
                            Some(p) => p,
                            None => {
                                types.push((k.clone(), None));
                                types.len() - 1
                            }
                        };
                        if let Some(t) = json_type(v) {
                            types[pos].1 = Some(merge_type(types[pos].1, t));
                        }
                    }
                    n += 1;
                    if n >= infer_rows {
                        break 'files;
                    }
                }
            }
            let props: Map<String, Value> = types
                .into_iter()
                .map(|(k, t)| (k, property_schema(t.unwrap_or("string"))))
                .collect();
            json!({"type": "object", "properties": props})
        }
    };
    Ok(Stream {
        files,
        spec: StreamSpec {
            name: name.to_owned(),
            schema,
            key_properties: keys,
            valid_replication_keys: replication_key.iter().cloned().collect(),
            replication_key,
        },
    })
}

fn run(args: PluginArgs) -> Result<(), PluginError> {
    let config = args.load_config()?;
    let infer_rows = config
        .get("infer_rows")
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_INFER_ROWS);
    let entries = config
        .get("files")
        .and_then(Value::as_array)
        .ok_or_else(|| PluginError::config("setting `files` is missing or not a list"))?;
    let streams = entries
        .iter()
        .enumerate()
        .map(|(i, e)| discover(e, i, infer_rows))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = MessageWriter::stdout();
    if args.discover {
        let entries = streams.iter().map(|s| s.spec.catalog_entry()).collect();
        out.write_value(&kit::catalog_document(entries))?;
        return out.flush();
    }
    let catalog = args.load_catalog()?;
    let mut state = args.load_state()?;
    if state.is_null() {
        state = json!({});
    }
    let time_extracted = kit::now_rfc3339();
    let mut buf = Vec::new();
    for stream in &streams {
        let Some(sel) = kit::select(&stream.spec, catalog.as_ref()) else {
            continue;
        };
        let name = &stream.spec.name;
        out.schema(name, &sel)?;
        let version = (sel.method == ReplicationMethod::FullTable).then(kit::new_table_version);
        let rk = sel.replication_key.as_deref();
        let bookmark = rk.and_then(|k| kit::bookmark(&state, name, k));
        let mut max_seen = bookmark.clone();
        for path in &stream.files {
            let mut r = open(path)?;
            while let Some(mut obj) = next_object(&mut r, &mut buf, path)? {
                let line = r.line_number();
                for k in &sel.key_properties {
                    if obj.get(k).is_none_or(Value::is_null) {
                        return Err(PluginError::data(format!(
                            "`{}` line {line} has no value for key property `{k}`",
                            path.display()
                        )));
                    }
                }
                if let Some(k) = rk {
                    let v = obj.get(k).cloned().unwrap_or(Value::Null);
                    if let Some(b) = &bookmark
                        && !kit::at_or_after_bookmark(&v, b)
                    {
                        continue;
                    }
                    if !v.is_null()
                        && max_seen.as_ref().is_none_or(|m| {
                            kit::compare_values(&v, m) == Some(std::cmp::Ordering::Greater)
                        })
                    {
                        max_seen = Some(v);
                    }
                }
                let record: Map<String, Value> = sel
                    .properties
                    .iter()
                    .filter_map(|p| obj.shift_remove(p).map(|v| (p.clone(), v)))
                    .collect();
                let mut msg = json!({"type": "RECORD", "stream": name, "record": record});
                if let Some(v) = version {
                    msg["version"] = v.into();
                }
                msg["time_extracted"] = time_extracted.clone().into();
                out.write_value(&msg)?;
            }
        }
        if let Some(v) = version {
            out.activate_version(name, v)?;
        }
        if let (Some(k), Some(m)) = (rk, max_seen) {
            kit::set_bookmark(&mut state, name, k, m);
            out.state(&state)?;
        }
    }
    out.final_state(&state)?;
    out.flush()
}

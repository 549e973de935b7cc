//! `tap-csv`: a built-in Singer tap of dsm that reads CSV files (paths or globs) with a header
//! row, infers column types or takes a declared schema, and syncs full-table (with
//! ACTIVATE_VERSION) or incrementally by a replication key column (with STATE bookmarks).

use std::path::{Path, PathBuf};

use dsm::singer::plugin_kit::{
    self as kit, About, MessageWriter, PluginArgs, PluginError, ReplicationMethod, Selection,
    StreamSpec,
};
use serde_json::{Map, Value, json};

const USAGE: &str = "usage: tap-csv [--about [--format json]] [--discover] --config FILE \
[--catalog FILE] [--state FILE]\n";

/// Rows read to infer column types when no schema is declared.
const DEFAULT_INFER_ROWS: u64 = 1000;

fn about() -> About {
    About {
        name: "tap-csv",
        description: "Reads CSV files with a header row (dsm built-in)",
        capabilities: &["catalog", "discover", "state", "properties", "about"],
        settings: json!({
            "type": "object",
            "properties": {
                "files": {
                    "type": "array",
                    "description": "The CSV streams: for each, `entity` (the stream name), `path` (a file or a glob, relative to the working directory), `keys` (primary key columns), and optionally `delimiter`, `quotechar`, `replication_key` (a column for incremental syncs) and `schema` (a JSON Schema declaring column types; otherwise types are inferred).",
                    "items": {
                        "type": "object",
                        "properties": {
                            "entity": {"type": "string"},
                            "path": {"type": "string"},
                            "keys": {"type": "array", "items": {"type": "string"}},
                            "delimiter": {"type": "string"},
                            "quotechar": {"type": "string"},
                            "replication_key": {"type": "string"},
                            "schema": {"type": "object"}
                        },
                        "required": ["entity", "path"]
                    }
                },
                "infer_rows": {
                    "type": "integer",
                    "default": DEFAULT_INFER_ROWS,
                    "description": "How many rows are read to infer column types when a stream declares no schema."
                }
            },
            "required": ["files"]
        }),
    }
}

fn main() -> std::process::ExitCode {
    kit::run_main(&about(), USAGE, run)
}

/// One configured CSV stream.
struct FileSpec {
    entity: String,
    pattern: String,
    keys: Vec<String>,
    delimiter: u8,
    quote: u8,
    replication_key: Option<String>,
    schema: Option<Value>,
}

/// A stream after its files are found and its header read.
struct Stream {
    spec: FileSpec,
    files: Vec<PathBuf>,
    header: Vec<String>,
    stream_spec: StreamSpec,
}

fn single_byte(v: Option<&Value>, name: &str, default: u8) -> Result<u8, PluginError> {
    match v.and_then(Value::as_str) {
        None => Ok(default),
        Some("\\t") => Ok(b'\t'),
        Some(s) if s.len() == 1 => Ok(s.as_bytes()[0]),
        Some(s) => Err(PluginError::config(format!(
            "`{name}` must be one character, got `{s}`"
        ))),
    }
}

fn parse_files(config: &Map<String, Value>) -> Result<Vec<FileSpec>, PluginError> {
    let files = config
        .get("files")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            PluginError::config_hint(
                "setting `files` is missing or not a list",
                "set `files: [{entity: customers, path: data/customers.csv, keys: [id]}]`",
            )
        })?;
    files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let name = f
                .get("entity")
                .or_else(|| f.get("stream"))
                .and_then(Value::as_str)
                .ok_or_else(|| PluginError::config(format!("`files[{i}]` has no `entity`")))?;
            let pattern = f
                .get("path")
                .or_else(|| f.get("glob"))
                .and_then(Value::as_str)
                .ok_or_else(|| PluginError::config(format!("`files[{i}]` has no `path`")))?;
            let keys = f
                .get("keys")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|k| k.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            Ok(FileSpec {
                entity: name.to_owned(),
                pattern: pattern.to_owned(),
                keys,
                delimiter: single_byte(f.get("delimiter"), "delimiter", b',')?,
                quote: single_byte(f.get("quotechar"), "quotechar", b'"')?,
                replication_key: f
                    .get("replication_key")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                schema: f.get("schema").filter(|s| s.is_object()).cloned(),
            })
        })
        .collect()
}

fn open_csv(spec: &FileSpec, path: &Path) -> Result<csv::Reader<std::fs::File>, PluginError> {
    let file = std::fs::File::open(path).map_err(|e| {
        PluginError::data(format!(
            "cannot read `{}` (stream `{}`): {e}",
            path.display(),
            spec.entity
        ))
    })?;
    Ok(csv::ReaderBuilder::new()
        .delimiter(spec.delimiter)
        .quote(spec.quote)
        .has_headers(true)
        .flexible(true)
        .buffer_capacity(256 * 1024)
        .from_reader(file))
}

fn read_header(
    spec: &FileSpec,
    path: &Path,
    rdr: &mut csv::Reader<std::fs::File>,
) -> Result<Vec<String>, PluginError> {
    let header = rdr.headers().map_err(|e| {
        PluginError::data(format!(
            "cannot read the header of `{}`: {e}",
            path.display()
        ))
    })?;
    if header.is_empty() || header.iter().all(str::is_empty) {
        return Err(PluginError::data(format!(
            "`{}` (stream `{}`) has no header row",
            path.display(),
            spec.entity
        )));
    }
    Ok(header.iter().map(|h| h.trim().to_owned()).collect())
}

/// Column types the tap knows how to check and encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Unknown,
    Integer,
    Number,
    Boolean,
    DateTime,
    Date,
    Text,
}

fn is_json_integer(s: &str) -> bool {
    let d = s.strip_prefix('-').unwrap_or(s);
    !d.is_empty()
        && d.bytes().all(|b| b.is_ascii_digit())
        && (d.len() == 1 || !d.starts_with('0'))
        && d.len() <= 18
}

fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_len = i - int_start;
    if int_len == 0 || (int_len > 1 && b[int_start] == b'0') {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let f = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == f {
            return false;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let e = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == e {
            return false;
        }
    }
    i == b.len()
}

fn is_date(s: &str) -> bool {
    s.len() == 10 && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

fn is_rfc3339(s: &str) -> bool {
    s.len() >= 20 && chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

fn classify(v: &str) -> Ty {
    if is_json_integer(v) {
        Ty::Integer
    } else if is_json_number(v) {
        Ty::Number
    } else if v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false") {
        Ty::Boolean
    } else if is_date(v) {
        Ty::Date
    } else if is_rfc3339(v) {
        Ty::DateTime
    } else {
        Ty::Text
    }
}

fn merge(a: Ty, b: Ty) -> Ty {
    match (a, b) {
        (Ty::Unknown, x) | (x, Ty::Unknown) => x,
        (x, y) if x == y => x,
        (Ty::Integer, Ty::Number) | (Ty::Number, Ty::Integer) => Ty::Number,
        (Ty::Date, Ty::DateTime) | (Ty::DateTime, Ty::Date) => Ty::DateTime,
        _ => Ty::Text,
    }
}

fn ty_schema(ty: Ty) -> Value {
    match ty {
        Ty::Integer => json!({"type": ["integer", "null"]}),
        Ty::Number => json!({"type": ["number", "null"]}),
        Ty::Boolean => json!({"type": ["boolean", "null"]}),
        Ty::DateTime => json!({"type": ["string", "null"], "format": "date-time"}),
        Ty::Date => json!({"type": ["string", "null"], "format": "date"}),
        Ty::Unknown | Ty::Text => json!({"type": ["string", "null"]}),
    }
}

/// The column type and nullability a property schema declares.
fn declared_ty(prop: &Value) -> (Ty, bool) {
    let types: Vec<&str> = match prop.get("type") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let nullable = types.is_empty() || types.contains(&"null");
    let format = prop.get("format").and_then(Value::as_str);
    let ty = if types.contains(&"string") || types.is_empty() {
        match format {
            Some("date-time") => Ty::DateTime,
            Some("date") => Ty::Date,
            _ => Ty::Text,
        }
    } else if types.contains(&"number") {
        Ty::Number
    } else if types.contains(&"integer") {
        Ty::Integer
    } else if types.contains(&"boolean") {
        Ty::Boolean
    } else {
        Ty::Text
    };
    (ty, nullable)
}

fn discover_stream(spec: FileSpec, infer_rows: u64) -> Result<Stream, PluginError> {
    let files = kit::expand_glob(&spec.pattern)?;
    let mut rdr = open_csv(&spec, &files[0])?;
    let header = read_header(&spec, &files[0], &mut rdr)?;
    for key in spec.keys.iter().chain(spec.replication_key.iter()) {
        if !header.contains(key) {
            return Err(PluginError::config(format!(
                "column `{key}` of stream `{}` is not in the header of `{}` (columns: {})",
                spec.entity,
                files[0].display(),
                header.join(", ")
            )));
        }
    }
    let mut properties = Map::new();
    if let Some(declared) = &spec.schema {
        let props = declared
            .get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for col in &header {
            properties.insert(
                col.clone(),
                props
                    .get(col)
                    .cloned()
                    .unwrap_or_else(|| ty_schema(Ty::Text)),
            );
        }
    } else {
        let mut types = vec![Ty::Unknown; header.len()];
        let mut rec = csv::StringRecord::new();
        let mut n = 0;
        while n < infer_rows
            && rdr.read_record(&mut rec).map_err(|e| {
                PluginError::data(format!("cannot read `{}`: {e}", files[0].display()))
            })?
        {
            for (t, v) in types.iter_mut().zip(rec.iter()) {
                if !v.is_empty() {
                    *t = merge(*t, classify(v));
                }
            }
            n += 1;
        }
        for (col, t) in header.iter().zip(types) {
            properties.insert(col.clone(), ty_schema(t));
        }
    }
    let stream_spec = StreamSpec {
        name: spec.entity.clone(),
        schema: json!({"type": "object", "properties": properties}),
        key_properties: spec.keys.clone(),
        valid_replication_keys: spec.replication_key.iter().cloned().collect(),
        replication_key: spec.replication_key.clone(),
    };
    Ok(Stream {
        spec,
        files,
        header,
        stream_spec,
    })
}

fn run(args: PluginArgs) -> Result<(), PluginError> {
    let config = args.load_config()?;
    let infer_rows = config
        .get("infer_rows")
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_INFER_ROWS);
    let streams = parse_files(&config)?
        .into_iter()
        .map(|s| discover_stream(s, infer_rows))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = MessageWriter::stdout();
    if args.discover {
        let entries = streams
            .iter()
            .map(|s| s.stream_spec.catalog_entry())
            .collect();
        out.write_value(&kit::catalog_document(entries))?;
        return out.flush();
    }
    let catalog = args.load_catalog()?;
    let mut state = args.load_state()?;
    if state.is_null() {
        state = json!({});
    }
    let time_extracted = kit::now_rfc3339();
    for stream in &streams {
        let Some(selection) = kit::select(&stream.stream_spec, catalog.as_ref()) else {
            continue;
        };
        sync_stream(stream, &selection, &mut state, &time_extracted, &mut out)?;
    }
    out.final_state(&state)?;
    out.flush()
}

/// One selected column: where it is in the row, how to check and encode it.
struct Column {
    index: usize,
    name: String,
    ty: Ty,
    nullable: bool,
    /// `"name":` already encoded (with a leading comma for all but the first).
    prefix: Vec<u8>,
}

fn bad_value(path: &Path, line: u64, col: &str, value: &str, what: &str) -> PluginError {
    PluginError::data_hint(
        format!(
            "`{}` line {line}, column `{col}`: `{}` is not {what}",
            path.display(),
            kit_excerpt(value)
        ),
        "fix the file, or declare the column's type in the stream's `schema` setting",
    )
}

fn kit_excerpt(v: &str) -> String {
    dsm::singer::codec::excerpt(v.as_bytes(), 60)
}

/// Appends a value in JSON to `buf`, checked against the column type.
fn encode(
    buf: &mut Vec<u8>,
    col: &Column,
    v: &str,
    path: &Path,
    line: u64,
) -> Result<(), PluginError> {
    if v.is_empty() {
        if col.nullable || col.ty == Ty::Text {
            buf.extend_from_slice(if col.ty == Ty::Text && !col.nullable {
                b"\"\""
            } else {
                b"null"
            });
            return Ok(());
        }
        return Err(bad_value(
            path,
            line,
            &col.name,
            v,
            "allowed: the column is not nullable",
        ));
    }
    match col.ty {
        Ty::Integer => {
            if is_json_integer(v) {
                buf.extend_from_slice(v.as_bytes());
            } else {
                return Err(bad_value(path, line, &col.name, v, "an integer"));
            }
        }
        Ty::Number => {
            if is_json_number(v) {
                buf.extend_from_slice(v.as_bytes());
            } else {
                match v.trim().parse::<f64>() {
                    Ok(f) if f.is_finite() => buf.extend_from_slice(f.to_string().as_bytes()),
                    _ => return Err(bad_value(path, line, &col.name, v, "a number")),
                }
            }
        }
        Ty::Boolean => {
            let b = if v.eq_ignore_ascii_case("true") || v == "1" {
                true
            } else if v.eq_ignore_ascii_case("false") || v == "0" {
                false
            } else {
                return Err(bad_value(path, line, &col.name, v, "a boolean"));
            };
            buf.extend_from_slice(if b { b"true" } else { b"false" });
        }
        Ty::DateTime => {
            if is_rfc3339(v) {
                kit::write_json_str(buf, v);
            } else if let Some(dt) = naive_date_time(v) {
                kit::write_json_str(buf, &dt);
            } else {
                return Err(bad_value(path, line, &col.name, v, "a date-time"));
            }
        }
        Ty::Date => {
            if is_date(v) {
                kit::write_json_str(buf, v);
            } else {
                return Err(bad_value(path, line, &col.name, v, "a date (YYYY-MM-DD)"));
            }
        }
        Ty::Text | Ty::Unknown => kit::write_json_str(buf, v),
    }
    Ok(())
}

/// A timestamp without an offset (or a bare date) as RFC 3339 in UTC.
fn naive_date_time(v: &str) -> Option<String> {
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(v, f) {
            return Some(dt.and_utc().to_rfc3339());
        }
    }
    chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .map(|d| {
            d.and_hms_opt(0, 0, 0)
                .expect("midnight exists")
                .and_utc()
                .to_rfc3339()
        })
}

/// The JSON value of a replication key cell, for comparison with the bookmark.
fn key_value(ty: Ty, v: &str) -> Value {
    match ty {
        Ty::Integer => v.parse::<i64>().map(Value::from).unwrap_or(Value::Null),
        Ty::Number => v
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        _ => Value::String(v.to_owned()),
    }
}

fn sync_stream(
    stream: &Stream,
    selection: &Selection,
    state: &mut Value,
    time_extracted: &str,
    out: &mut MessageWriter<std::io::Stdout>,
) -> Result<(), PluginError> {
    let name = &stream.spec.entity;
    out.schema(name, selection)?;
    let props = selection
        .schema
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut columns = Vec::new();
    for (i, prop) in selection.properties.iter().enumerate() {
        let (ty, nullable) = declared_ty(&props[prop]);
        let mut prefix = Vec::new();
        if i > 0 {
            prefix.push(b',');
        }
        kit::write_json_str(&mut prefix, prop);
        prefix.push(b':');
        columns.push(Column {
            index: usize::MAX,
            name: prop.clone(),
            ty,
            nullable,
            prefix,
        });
    }
    let version = (selection.method == ReplicationMethod::FullTable).then(kit::new_table_version);
    let rk = selection.replication_key.as_deref();
    let bookmark = rk.and_then(|k| kit::bookmark(state, name, k));
    let mut max_seen = bookmark.clone();
    let mut head = br#"{"type":"RECORD","stream":"#.to_vec();
    kit::write_json_str(&mut head, name);
    head.extend_from_slice(br#","record":{"#);
    let mut tail = b"}".to_vec();
    if let Some(v) = version {
        tail.extend_from_slice(format!(",\"version\":{v}").as_bytes());
    }
    tail.extend_from_slice(b",\"time_extracted\":");
    kit::write_json_str(&mut tail, time_extracted);
    tail.push(b'}');

    let mut buf = Vec::with_capacity(1024);
    let mut rec = csv::ByteRecord::new();
    for path in &stream.files {
        let mut rdr = open_csv(&stream.spec, path)?;
        let header = read_header(&stream.spec, path, &mut rdr)?;
        if header != stream.header {
            return Err(PluginError::data(format!(
                "the header of `{}` differs from that of `{}` (both are files of stream `{name}`)",
                path.display(),
                stream.files[0].display()
            )));
        }
        for c in &mut columns {
            c.index = header.iter().position(|h| *h == c.name).ok_or_else(|| {
                PluginError::config(format!(
                    "the catalog selects column `{}` of stream `{name}`, but `{}` has no such column",
                    c.name,
                    path.display()
                ))
            })?;
        }
        let rk_col = rk.and_then(|k| columns.iter().find(|c| c.name == k));
        loop {
            match rdr.read_byte_record(&mut rec) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    let line = e.position().map(|p| p.line()).unwrap_or(0);
                    return Err(PluginError::data(format!(
                        "cannot read `{}` line {line}: {e}",
                        path.display()
                    )));
                }
            }
            let line = rec.position().map(|p| p.line()).unwrap_or(0);
            if rec.len() != header.len() {
                if rec.len() == 1 && rec.as_slice().is_empty() {
                    continue; // a blank line
                }
                return Err(PluginError::data_hint(
                    format!(
                        "`{}` line {line} has {} fields, the header has {}",
                        path.display(),
                        rec.len(),
                        header.len()
                    ),
                    "check the delimiter and quoting of that row",
                ));
            }
            let text = std::str::from_utf8(rec.as_slice()).map_err(|_| {
                PluginError::data(format!(
                    "`{}` line {line} is not valid UTF-8",
                    path.display()
                ))
            })?;
            let field = |i: usize| {
                let r = rec.range(i).expect("index checked against the header");
                &text[r]
            };
            if let (Some(c), Some(b)) = (rk_col, &bookmark) {
                let v = key_value(c.ty, field(c.index));
                if !kit::at_or_after_bookmark(&v, b) {
                    continue;
                }
            }
            buf.clear();
            buf.extend_from_slice(&head);
            for c in &columns {
                buf.extend_from_slice(&c.prefix);
                encode(&mut buf, c, field(c.index), path, line)?;
            }
            buf.extend_from_slice(&tail);
            out.write_line(&buf)?;
            if let Some(c) = rk_col {
                let v = key_value(c.ty, field(c.index));
                if !v.is_null()
                    && max_seen.as_ref().is_none_or(|m| {
                        kit::compare_values(&v, m) == Some(std::cmp::Ordering::Greater)
                    })
                {
                    max_seen = Some(v);
                }
            }
        }
    }
    if let Some(v) = version {
        out.activate_version(name, v)?;
    }
    if let (Some(k), Some(m)) = (rk, max_seen) {
        kit::set_bookmark(state, name, k, m);
        out.state(state)?;
    }
    Ok(())
}

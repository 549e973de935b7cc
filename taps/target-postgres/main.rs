//! `target-postgres`: a built-in Singer target of dsm that loads streams into PostgreSQL tables.
//!
//! Records are encoded straight from the input line into COPY text and sent in batches: one
//! transaction per batch, `COPY ... FROM STDIN` into the table (append) or into a temporary
//! staging table and then one merge into the table (upsert on the key properties). A STATE
//! message is passed on only after the batch holding the records before it is committed.
//! Tables are created and widened from SCHEMA messages, never narrowed.

#[path = "../postgres-common/connect.rs"]
mod connect;

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{BufRead, Write};

use base64::Engine as _;
use connect::{error_text, quote_ident};
use dsm::singer::codec::{DEFAULT_MAX_LINE, LineReader};
use dsm::singer::plugin_kit::{self as kit, About, PluginArgs, PluginError};
use dsm::singer::raw::Fields;
use dsm::singer::{Message, message::SchemaMessage};
use postgres::Client;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use sha2::Digest as _;

const USAGE: &str = "usage: target-postgres [--about [--format json]] --config FILE [--input FILE]\n\
Reads Singer messages on stdin.\n";

const DEFAULT_BATCH_ROWS: u64 = 100_000;
/// PostgreSQL's identifier limit (NAMEDATALEN - 1), in bytes.
const MAX_IDENT: usize = 63;
const VERSION_COLUMN: &str = "_sdc_table_version";
const DELETED_COLUMN: &str = "_sdc_deleted_at";

/// The columns `add_record_metadata` adds, with their types (MeltanoLabs' names).
const METADATA: &[(&str, &str)] = &[
    ("_sdc_extracted_at", "timestamp with time zone"),
    ("_sdc_received_at", "timestamp with time zone"),
    ("_sdc_batched_at", "timestamp with time zone"),
    ("_sdc_deleted_at", "timestamp with time zone"),
    ("_sdc_sequence", "bigint"),
    ("_sdc_table_version", "bigint"),
    ("_sdc_sync_started_at", "bigint"),
];

fn about() -> About {
    let mut props = connect::settings_schema();
    let more = json!({
        "default_target_schema": {
            "type": "string",
            "description": "Schema of the tables. Default: the stream name's prefix (`public-orders` goes to schema `public`), else `public`."
        },
        "load_method": {
            "type": "string",
            "enum": ["append-only", "upsert", "overwrite"],
            "default": "upsert",
            "description": "`upsert` merges on the key properties (streams without keys are appended), `append-only` adds every record, `overwrite` empties each table in the run's first batch."
        },
        "batch_size_rows": {
            "type": "integer",
            "default": DEFAULT_BATCH_ROWS,
            "description": "Records per batch: one transaction, one COPY and merge per stream."
        },
        "add_record_metadata": {
            "type": "boolean",
            "default": false,
            "description": "Add the `_sdc_*` columns (extracted, received, batched and deleted times, sequence, table version, sync start)."
        },
        "hard_delete": {
            "type": "boolean",
            "default": false,
            "description": "On ACTIVATE_VERSION delete the rows of older versions and rows without a version; otherwise set their `_sdc_deleted_at` (as MeltanoLabs' target does)."
        },
        "activate_version": {
            "type": "boolean",
            "default": true,
            "description": "Act on ACTIVATE_VERSION messages; false ignores them (rows of older versions stay as they are)."
        }
    });
    if let Value::Object(m) = more {
        props.extend(m);
    }
    About {
        name: "target-postgres",
        description: "Loads Singer streams into PostgreSQL with COPY and one merge per batch (dsm built-in). \
Names longer than 63 bytes keep their first 54 bytes, then `_` and the first 8 hex digits of the \
full name's SHA-256. Column types are widened, never narrowed: integers to the wider integer, \
numbers to numeric, anything else that differs to text.",
        capabilities: &[
            "about",
            "activate-version",
            "hard-delete",
            "schema-flattening",
        ],
        settings: json!({"type": "object", "properties": props}),
    }
}

fn main() -> std::process::ExitCode {
    kit::run_main(&about(), USAGE, run)
}

/// `name` made to fit PostgreSQL's 63-byte identifiers: longer names keep their first 54 bytes
/// (on a character boundary), then `_` and the first 8 hex digits of the full name's SHA-256.
fn fit_identifier(name: &str) -> String {
    if name.len() <= MAX_IDENT {
        return name.to_owned();
    }
    let mut cut = 54;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let digest = hex::encode(sha2::Sha256::digest(name.as_bytes()));
    format!("{}_{}", &name[..cut], &digest[..8])
}

/// A table name from a stream name part, as the Singer SDK conforms it: lower case, anything
/// but letters, digits and `_` replaced by `_`.
fn conform(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The (schema, table) of a stream.
fn table_of(stream: &str, default_schema: Option<&str>) -> (String, String) {
    let parts: Vec<&str> = stream.split('-').collect();
    let table = parts.last().copied().unwrap_or(stream);
    let schema = match default_schema {
        Some(s) => s.to_owned(),
        None if parts.len() >= 2 => conform(parts[parts.len() - 2]),
        None => "public".to_owned(),
    };
    (fit_identifier(&schema), fit_identifier(&conform(table)))
}

/// Whether `t` is safe to splice into DDL as a type name (an `x-sql-datatype` hint).
fn plausible_type(t: &str) -> bool {
    !t.is_empty()
        && t.len() < 100
        && t.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '(' | ')' | ',' | '[' | ']')
        })
}

/// The column type for a JSON Schema property: its `x-sql-datatype` hint when it has one,
/// else from its JSON types and format.
fn column_type(prop: &Value) -> String {
    if let Some(hint) = prop.get("x-sql-datatype").and_then(Value::as_str)
        && plausible_type(hint)
    {
        return hint.to_ascii_lowercase();
    }
    let types: Vec<&str> = match prop.get("type") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let non_null: Vec<&str> = types.into_iter().filter(|t| *t != "null").collect();
    let format = prop.get("format").and_then(Value::as_str);
    match non_null.as_slice() {
        ["boolean"] => "boolean",
        ["integer"] => "bigint",
        ["number"] | ["integer", "number"] | ["number", "integer"] => "numeric",
        ["string"] => match format {
            Some("date-time") => "timestamp with time zone",
            Some("date") => "date",
            Some("time") => "time without time zone",
            _ => "text",
        },
        ["object"] | ["array"] => "jsonb",
        [] if prop.get("anyOf").is_some() => "jsonb",
        _ => "text",
    }
    .to_owned()
}

fn int_rank(t: &str) -> Option<u8> {
    match t {
        "smallint" => Some(1),
        "integer" => Some(2),
        "bigint" => Some(3),
        _ => None,
    }
}

fn is_number(t: &str) -> bool {
    int_rank(t).is_some() || t == "real" || t == "double precision" || t.starts_with("numeric")
}

/// The type `existing` must become to hold values of `wanted`, if it must change. Never
/// narrower: equal types and text stay; integers widen to the wider integer; numbers of
/// different kinds become numeric; anything else that differs becomes text.
fn widened(existing: &str, wanted: &str) -> Option<String> {
    if existing == wanted || existing == "text" {
        return None;
    }
    if let (Some(a), Some(b)) = (int_rank(existing), int_rank(wanted)) {
        return (b > a).then(|| wanted.to_owned());
    }
    if is_number(existing) && is_number(wanted) {
        return (existing != "numeric").then(|| "numeric".to_owned());
    }
    if existing == "jsonb" && wanted == "json" || existing == "json" && wanted == "jsonb" {
        return None;
    }
    Some("text".to_owned())
}

/// How a JSON value becomes COPY text for a column.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Plain,
    /// A PostgreSQL array: JSON arrays become array literals.
    Array,
    /// bytea: JSON strings hold base64.
    Bytea,
    /// json/jsonb: every value as its JSON text (a string keeps its quotes).
    Json,
}

impl Kind {
    fn of(sql_type: &str) -> Kind {
        if sql_type.ends_with("[]") {
            Kind::Array
        } else if sql_type == "bytea" {
            Kind::Bytea
        } else if sql_type == "json" || sql_type == "jsonb" {
            Kind::Json
        } else {
            Kind::Plain
        }
    }
}

/// Where a column's value comes from.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    /// The record's property of this name.
    Property(String),
    /// The message's `version`.
    Version,
    /// The message's `time_extracted`.
    Extracted,
    /// The time the batch was started.
    BatchTime,
    /// The batch's sequence number (milliseconds since the epoch).
    Sequence,
    /// The run's start (milliseconds since the epoch).
    SyncStarted,
}

struct Column {
    name: String,
    source: Source,
    kind: Kind,
}

struct Stream {
    schema: String,
    table: String,
    columns: Vec<Column>,
    keys: Vec<String>,
    /// Whether a unique index on exactly the key columns exists (then ON CONFLICT merges).
    key_index: bool,
    buf: Vec<u8>,
    rows: u64,
    /// `overwrite`: the table is emptied in the stream's first batch of the run.
    truncate: bool,
    /// Upsert: COPY straight into the table until a batch meets a key already there.
    copy_first: bool,
}

impl Stream {
    fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.table))
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum LoadMethod {
    Append,
    Upsert,
    Overwrite,
}

struct Loader {
    client: Client,
    streams: HashMap<String, Stream>,
    default_schema: Option<String>,
    method: LoadMethod,
    metadata: bool,
    hard_delete: bool,
    /// `activate_version: false` ignores ACTIVATE_VERSION messages.
    activate_versions: bool,
    batch_rows: u64,
    pending_rows: u64,
    /// The newest STATE not yet passed on: it waits for the batch before it to commit.
    pending_state: Option<Value>,
    /// Where each stream's buffer stood when that STATE came: after bad input, the rows before
    /// it are still loaded and the STATE passed on.
    state_marks: HashMap<String, (usize, u64)>,
    batch_time: String,
    sequence: String,
    sync_started: String,
    out: std::io::BufWriter<std::io::Stdout>,
    stage_counter: u64,
}

fn db_err(what: impl std::fmt::Display, e: &postgres::Error) -> PluginError {
    PluginError::data(format!("{what}: {}", error_text(e)))
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn now_millis() -> String {
    chrono::Utc::now().timestamp_millis().to_string()
}

/// The fast view of a line: enough to load a RECORD without building a JSON tree.
#[derive(Deserialize)]
struct FastLine<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    stream: Option<Cow<'a, str>>,
    #[serde(borrow)]
    record: Option<Fields<'a>>,
    #[serde(borrow)]
    version: Option<&'a RawValue>,
    #[serde(borrow)]
    time_extracted: Option<Cow<'a, str>>,
}

/// Appends `s` to a COPY text field, escaping what the format reserves.
fn push_escaped(out: &mut Vec<u8>, s: &[u8]) {
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let esc: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
}

/// A JSON array as a PostgreSQL array literal (`{1,"a b",NULL,{2,3}}`).
fn array_literal(v: &Value, out: &mut String) {
    match v {
        Value::Array(items) => {
            out.push('{');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match item {
                    Value::Array(_) => array_literal(item, out),
                    Value::Null => out.push_str("NULL"),
                    Value::String(s) => quote_element(s, out),
                    Value::Number(n) => out.push_str(&n.to_string()),
                    Value::Bool(b) => out.push_str(if *b { "t" } else { "f" }),
                    Value::Object(_) => quote_element(&item.to_string(), out),
                }
            }
            out.push('}');
        }
        other => quote_element(&other.to_string(), out),
    }
}

fn quote_element(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

fn json_string(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    let inner = &text[1..text.len() - 1];
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(text).ok().map(Cow::Owned)
}

/// Appends one value as a COPY text field.
fn push_value(
    out: &mut Vec<u8>,
    raw: Option<&RawValue>,
    kind: Kind,
    column: &str,
    line: u64,
) -> Result<(), PluginError> {
    let Some(raw) = raw else {
        out.extend_from_slice(b"\\N");
        return Ok(());
    };
    let text = raw.get();
    match text.as_bytes().first() {
        None | Some(b'n') => out.extend_from_slice(b"\\N"),
        Some(_) if kind == Kind::Json => push_escaped(out, text.as_bytes()),
        Some(b'"') => {
            let s = json_string(raw).ok_or_else(|| {
                PluginError::data(format!(
                    "input line {line}: property `{column}` is not a valid JSON string"
                ))
            })?;
            if kind == Kind::Bytea {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(s.as_bytes())
                    .map_err(|e| {
                        PluginError::data(format!(
                            "input line {line}: property `{column}` is not base64 for a bytea column: {e}"
                        ))
                    })?;
                out.extend_from_slice(b"\\\\x");
                out.extend_from_slice(hex::encode(bytes).as_bytes());
            } else {
                push_escaped(out, s.as_bytes());
            }
        }
        Some(b'[') if kind == Kind::Array => {
            let v: Value = serde_json::from_str(text).map_err(|e| {
                PluginError::data(format!("input line {line}: property `{column}`: {e}"))
            })?;
            let mut lit = String::with_capacity(text.len() + 2);
            array_literal(&v, &mut lit);
            push_escaped(out, lit.as_bytes());
        }
        Some(b'{') | Some(b'[') => push_escaped(out, text.as_bytes()),
        Some(_) => out.extend_from_slice(text.as_bytes()),
    }
    Ok(())
}

impl Loader {
    /// The table's columns and their types (`format_type`), in column order.
    fn existing_columns(
        &mut self,
        schema: &str,
        table: &str,
    ) -> Result<Vec<(String, String)>, PluginError> {
        let rows = self
            .client
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) \
                 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY a.attnum",
                &[&schema, &table],
            )
            .map_err(|e| db_err(format!("cannot read the columns of `{schema}.{table}`"), &e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Whether a unique index on exactly `keys` exists on the table.
    fn has_key_index(
        &mut self,
        schema: &str,
        table: &str,
        keys: &[String],
    ) -> Result<bool, PluginError> {
        if keys.is_empty() {
            return Ok(false);
        }
        let rows = self
            .client
            .query(
                "SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_index i \
                 JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey) \
                 WHERE n.nspname = $1 AND c.relname = $2 AND i.indisunique AND i.indpred IS NULL \
                 GROUP BY i.indexrelid",
                &[&schema, &table],
            )
            .map_err(|e| db_err(format!("cannot read the indexes of `{schema}.{table}`"), &e))?;
        let mut wanted: Vec<String> = keys.to_vec();
        wanted.sort();
        Ok(rows.iter().any(|r| r.get::<_, Vec<String>>(0) == wanted))
    }

    fn exec(&mut self, sql: &str) -> Result<(), PluginError> {
        self.client
            .batch_execute(sql)
            .map_err(|e| db_err(format!("`{sql}` failed"), &e))
    }

    /// Creates or widens the stream's table for `msg`, and plans its columns.
    fn apply_schema(&mut self, msg: &SchemaMessage, line: u64) -> Result<(), PluginError> {
        let props = msg
            .schema
            .get("properties")
            .and_then(Value::as_object)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                PluginError::data(format!(
                    "input line {line}: the SCHEMA of stream `{}` has no properties",
                    msg.stream
                ))
            })?;
        for k in &msg.key_properties {
            if !props.contains_key(k) {
                return Err(PluginError::data(format!(
                    "input line {line}: key property `{k}` of stream `{}` is not in its schema",
                    msg.stream
                )));
            }
        }
        // Rows buffered under the old layout go first.
        if self.streams.get(&msg.stream).is_some_and(|s| s.rows > 0) {
            self.flush()?;
        }
        let (schema, table) = table_of(&msg.stream, self.default_schema.as_deref());
        let mut wanted: Vec<(String, String, Source)> = props
            .iter()
            .map(|(k, v)| {
                (
                    fit_identifier(k),
                    column_type(v),
                    Source::Property(k.clone()),
                )
            })
            .collect();
        if self.metadata {
            for (name, ty) in METADATA {
                if wanted.iter().any(|(c, _, _)| c == name) {
                    continue;
                }
                let source = match *name {
                    "_sdc_extracted_at" => Source::Extracted,
                    "_sdc_received_at" | "_sdc_batched_at" => Source::BatchTime,
                    "_sdc_deleted_at" => Source::Property((*name).to_owned()),
                    "_sdc_sequence" => Source::Sequence,
                    "_sdc_table_version" => Source::Version,
                    _ => Source::SyncStarted,
                };
                wanted.push(((*name).to_owned(), (*ty).to_owned(), source));
            }
        }
        let keys: Vec<String> = msg
            .key_properties
            .iter()
            .map(|k| fit_identifier(k))
            .collect();
        self.migrate(&schema, &table, &wanted, &keys)?;
        let existing = self.existing_columns(&schema, &table)?;
        let mut columns: Vec<Column> = Vec::new();
        for (name, _, source) in &wanted {
            let ty = existing
                .iter()
                .find(|(c, _)| c == name)
                .map(|(_, t)| t.as_str())
                .unwrap_or("text");
            columns.push(Column {
                name: name.clone(),
                source: source.clone(),
                kind: Kind::of(ty),
            });
        }
        // Rows with a table version keep it even without the metadata columns, and a row
        // loaded again clears the `_sdc_deleted_at` an older ACTIVATE_VERSION set.
        for (name, source) in [
            (VERSION_COLUMN, Source::Version),
            (DELETED_COLUMN, Source::Property(DELETED_COLUMN.to_owned())),
        ] {
            if !columns.iter().any(|c| c.name == name) && existing.iter().any(|(c, _)| c == name) {
                columns.push(Column {
                    name: name.to_owned(),
                    source,
                    kind: Kind::Plain,
                });
            }
        }
        let key_index = self.has_key_index(&schema, &table, &keys)?;
        let truncate = self.method == LoadMethod::Overwrite
            && self.streams.get(&msg.stream).is_none_or(|s| s.truncate);
        let (buf, copy_first) = self
            .streams
            .remove(&msg.stream)
            .map(|s| (s.buf, s.copy_first))
            .unwrap_or((Vec::new(), true));
        self.streams.insert(
            msg.stream.clone(),
            Stream {
                schema,
                table,
                columns,
                keys,
                key_index,
                buf,
                rows: 0,
                truncate,
                copy_first,
            },
        );
        Ok(())
    }

    /// Creates the schema and table, adds missing columns and widens narrower ones, in one
    /// transaction.
    fn migrate(
        &mut self,
        schema: &str,
        table: &str,
        wanted: &[(String, String, Source)],
        keys: &[String],
    ) -> Result<(), PluginError> {
        let existing = self.existing_columns(schema, table)?;
        let t = format!("{}.{}", quote_ident(schema), quote_ident(table));
        let mut ddl = Vec::new();
        if existing.is_empty() {
            ddl.push(format!(
                "CREATE SCHEMA IF NOT EXISTS {}",
                quote_ident(schema)
            ));
            let mut cols: Vec<String> = wanted
                .iter()
                .map(|(c, ty, _)| format!("{} {ty}", quote_ident(c)))
                .collect();
            if !keys.is_empty() && self.method != LoadMethod::Append {
                let k: Vec<String> = keys.iter().map(|k| quote_ident(k)).collect();
                cols.push(format!("PRIMARY KEY ({})", k.join(", ")));
            }
            ddl.push(format!(
                "CREATE TABLE IF NOT EXISTS {t} ({})",
                cols.join(", ")
            ));
        } else {
            for (c, ty, _) in wanted {
                match existing.iter().find(|(e, _)| e == c) {
                    None => ddl.push(format!(
                        "ALTER TABLE {t} ADD COLUMN {} {ty}",
                        quote_ident(c)
                    )),
                    Some((_, old)) => {
                        if let Some(new) = widened(old, ty) {
                            let q = quote_ident(c);
                            let using = if new == "text" && (old == "json" || old == "jsonb") {
                                format!("{q}::text")
                            } else {
                                format!("{q}::{new}")
                            };
                            ddl.push(format!(
                                "ALTER TABLE {t} ALTER COLUMN {q} TYPE {new} USING {using}"
                            ));
                        }
                    }
                }
            }
        }
        if ddl.is_empty() {
            return Ok(());
        }
        let sql = format!("BEGIN; {}; COMMIT", ddl.join("; "));
        self.client.batch_execute(&sql).map_err(|e| {
            let _ = self.client.batch_execute("ROLLBACK");
            db_err(
                format!("cannot create or widen table `{schema}.{table}`"),
                &e,
            )
        })
    }

    /// Adds `_sdc_table_version` (and `_sdc_deleted_at` for soft deletes) to a stream's table.
    fn ensure_version_columns(
        &mut self,
        stream: &str,
        deleted_at: bool,
    ) -> Result<(), PluginError> {
        let s = &self.streams[stream];
        let (schema, table) = (s.schema.clone(), s.table.clone());
        let has_version = s.columns.iter().any(|c| c.name == VERSION_COLUMN);
        let existing = self.existing_columns(&schema, &table)?;
        let t = format!("{}.{}", quote_ident(&schema), quote_ident(&table));
        if !existing.iter().any(|(c, _)| c == VERSION_COLUMN) {
            self.exec(&format!(
                "ALTER TABLE {t} ADD COLUMN {VERSION_COLUMN} bigint"
            ))?;
        }
        if deleted_at && !existing.iter().any(|(c, _)| c == DELETED_COLUMN) {
            self.exec(&format!(
                "ALTER TABLE {t} ADD COLUMN {DELETED_COLUMN} timestamp with time zone"
            ))?;
        }
        let s = self.streams.get_mut(stream).expect("checked above");
        if !has_version {
            s.columns.push(Column {
                name: VERSION_COLUMN.to_owned(),
                source: Source::Version,
                kind: Kind::Plain,
            });
        }
        if deleted_at && !s.columns.iter().any(|c| c.name == DELETED_COLUMN) {
            s.columns.push(Column {
                name: DELETED_COLUMN.to_owned(),
                source: Source::Property(DELETED_COLUMN.to_owned()),
                kind: Kind::Plain,
            });
        }
        Ok(())
    }

    fn load_record(&mut self, rec: &FastLine<'_>, line: u64) -> Result<(), PluginError> {
        let stream = rec.stream.as_deref().ok_or_else(|| {
            PluginError::data(format!("input line {line}: RECORD without a `stream`"))
        })?;
        let Some(record) = &rec.record else {
            return Err(PluginError::data(format!(
                "input line {line}: RECORD of stream `{stream}` has no `record` object"
            )));
        };
        let Some(s) = self.streams.get(stream) else {
            return Err(PluginError::data_hint(
                format!("input line {line}: RECORD of stream `{stream}` came before its SCHEMA"),
                "a tap must send a stream's SCHEMA message before its records",
            ));
        };
        if rec.version.is_some() && !s.columns.iter().any(|c| c.name == VERSION_COLUMN) {
            if s.rows > 0 {
                self.flush()?;
            }
            self.ensure_version_columns(stream, false)?;
        }
        let s = self.streams.get_mut(stream).expect("checked above");
        for k in &s.keys {
            if record.get(k, 0).is_none_or(|v| v.get() == "null") {
                return Err(PluginError::data(format!(
                    "input line {line}: record of stream `{stream}` has no value for key property `{k}`"
                )));
            }
        }
        let mark = s.buf.len();
        for (i, col) in s.columns.iter().enumerate() {
            if i > 0 {
                s.buf.push(b'\t');
            }
            let result = match &col.source {
                Source::Property(p) => push_value(&mut s.buf, record.get(p, i), col.kind, p, line),
                Source::Version => {
                    push_value(&mut s.buf, rec.version, Kind::Plain, "version", line)
                }
                Source::Extracted => {
                    match &rec.time_extracted {
                        Some(t) => push_escaped(&mut s.buf, t.as_bytes()),
                        None => s.buf.extend_from_slice(b"\\N"),
                    }
                    Ok(())
                }
                Source::BatchTime => {
                    s.buf.extend_from_slice(self.batch_time.as_bytes());
                    Ok(())
                }
                Source::Sequence => {
                    s.buf.extend_from_slice(self.sequence.as_bytes());
                    Ok(())
                }
                Source::SyncStarted => {
                    s.buf.extend_from_slice(self.sync_started.as_bytes());
                    Ok(())
                }
            };
            if let Err(e) = result {
                s.buf.truncate(mark);
                return Err(e);
            }
        }
        s.buf.push(b'\n');
        s.rows += 1;
        self.pending_rows += 1;
        if self.pending_rows >= self.batch_rows {
            self.flush()?;
        }
        Ok(())
    }

    /// Loads every buffered row in one transaction, then passes on the STATE that waited for it.
    fn flush(&mut self) -> Result<(), PluginError> {
        if self.pending_rows > 0 {
            let mut names: Vec<String> = self
                .streams
                .iter()
                .filter(|(_, s)| s.rows > 0 || s.truncate)
                .map(|(n, _)| n.clone())
                .collect();
            names.sort();
            let mut tx = self
                .client
                .transaction()
                .map_err(|e| db_err("cannot begin a transaction", &e))?;
            for name in &names {
                let s = self.streams.get_mut(name).expect("listed above");
                load_stream(&mut tx, s, name, self.method, &mut self.stage_counter)?;
            }
            tx.commit()
                .map_err(|e| db_err("cannot commit the batch", &e))?;
            for name in &names {
                let s = self.streams.get_mut(name).expect("listed above");
                s.buf.clear();
                s.rows = 0;
                s.truncate = false;
            }
            self.pending_rows = 0;
            self.state_marks.clear();
            self.batch_time = now_rfc3339();
            self.sequence = now_millis();
        }
        if let Some(state) = self.pending_state.take() {
            let line = serde_json::to_vec(&state).expect("a JSON value always serialises");
            self.out
                .write_all(&line)
                .and_then(|()| self.out.write_all(b"\n"))
                .and_then(|()| self.out.flush())
                .map_err(kit::output_error)?;
        }
        Ok(())
    }

    fn state(&mut self, value: Value) -> Result<(), PluginError> {
        self.pending_state = Some(value);
        if self.pending_rows == 0 {
            return self.flush();
        }
        self.state_marks = self
            .streams
            .iter()
            .map(|(n, s)| (n.clone(), (s.buf.len(), s.rows)))
            .collect();
        Ok(())
    }

    /// After bad input: loads the rows that came before the pending STATE and passes it on;
    /// the rows after it are dropped (the tap sends them again from that STATE).
    fn save_progress(&mut self) -> Result<(), PluginError> {
        if self.pending_state.is_none() {
            return Ok(());
        }
        let mut total = 0;
        for (name, s) in &mut self.streams {
            let (len, rows) = self.state_marks.get(name).copied().unwrap_or((0, 0));
            s.buf.truncate(len);
            s.rows = rows.min(s.rows);
            total += s.rows;
        }
        self.pending_rows = total;
        self.flush()
    }

    fn activate_version(
        &mut self,
        stream: &str,
        version: &Value,
        line: u64,
    ) -> Result<(), PluginError> {
        if !self.streams.contains_key(stream) {
            return Err(PluginError::data(format!(
                "input line {line}: ACTIVATE_VERSION of stream `{stream}` came before its SCHEMA"
            )));
        }
        let v = version.as_i64().ok_or_else(|| {
            PluginError::data(format!(
                "input line {line}: ACTIVATE_VERSION of stream `{stream}` has a version that is not an integer"
            ))
        })?;
        if !self.activate_versions {
            return Ok(());
        }
        self.flush()?;
        self.ensure_version_columns(stream, !self.hard_delete)?;
        let t = self.streams[stream].qualified();
        // Rows of older versions, and rows written without one (say by an incremental sync),
        // are not part of the activated version.
        let older = format!("({VERSION_COLUMN} IS NULL OR {VERSION_COLUMN} < {v})");
        let sql = if self.hard_delete {
            format!("DELETE FROM {t} WHERE {older}")
        } else {
            format!(
                "UPDATE {t} SET {DELETED_COLUMN} = now() WHERE {older} AND {DELETED_COLUMN} IS NULL"
            )
        };
        self.exec(&sql)
    }
}

enum CopyError {
    Db(postgres::Error),
    Io(std::io::Error),
}

impl CopyError {
    fn into_plugin(self, what: &dyn Fn(&postgres::Error, &str) -> PluginError) -> PluginError {
        match self {
            CopyError::Db(e) => what(&e, "cannot COPY rows"),
            CopyError::Io(e) => PluginError::data(format!("COPY failed: {e}")),
        }
    }
}

/// `COPY table (columns) FROM STDIN` of the buffered COPY text.
fn copy_rows(
    tx: &mut postgres::Transaction<'_>,
    table: &str,
    col_list: &str,
    rows: &[u8],
) -> Result<(), CopyError> {
    let mut writer = tx
        .copy_in(format!("COPY {table} ({col_list}) FROM STDIN").as_str())
        .map_err(CopyError::Db)?;
    writer.write_all(rows).map_err(CopyError::Io)?;
    writer.finish().map(|_| ()).map_err(CopyError::Db)
}

/// Loads one stream's buffered rows inside the batch's transaction.
fn load_stream(
    tx: &mut postgres::Transaction<'_>,
    s: &mut Stream,
    stream: &str,
    method: LoadMethod,
    stage_counter: &mut u64,
) -> Result<(), PluginError> {
    let t = s.qualified();
    let (schema, table) = (s.schema.clone(), s.table.clone());
    let what = |e: &postgres::Error, step: &str| {
        db_err(
            format!("stream `{stream}`: {step} into `{schema}.{table}`"),
            e,
        )
    };
    if s.truncate {
        tx.batch_execute(&format!("TRUNCATE {t}"))
            .map_err(|e| what(&e, "cannot empty the table for overwrite"))?;
    }
    if s.rows == 0 {
        return Ok(());
    }
    let cols: Vec<String> = s.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let col_list = cols.join(", ");
    let merge = method != LoadMethod::Append && !s.keys.is_empty();
    if merge && s.key_index && s.copy_first {
        // New keys only (a first load): the unique index turns any key already in the table,
        // or twice in the batch, into an error, and then the batch is merged through staging.
        // After the first such batch the stream is always staged.
        let mut savepoint = tx
            .transaction()
            .map_err(|e| what(&e, "cannot start a savepoint"))?;
        match copy_rows(&mut savepoint, &t, &col_list, &s.buf) {
            Ok(()) => {
                return savepoint
                    .commit()
                    .map_err(|e| what(&e, "cannot release the savepoint"));
            }
            // Most likely a key already in the table; any other error comes back from the
            // staged load, after the savepoint is rolled back.
            Err(_) => s.copy_first = false,
        }
    }
    let copy_into = if merge {
        *stage_counter += 1;
        let stage = quote_ident(&format!("_dsm_stage_{stage_counter}"));
        // A temporary table: the server drops it with the session, so a crash leaves none.
        tx.batch_execute(&format!(
            "CREATE TEMP TABLE {stage} ON COMMIT DROP AS SELECT {col_list} FROM {t} WITH NO DATA; \
             ALTER TABLE {stage} ADD COLUMN _dsm_seq bigint GENERATED ALWAYS AS IDENTITY"
        ))
        .map_err(|e| what(&e, "cannot create the staging table"))?;
        stage
    } else {
        t.clone()
    };
    copy_rows(tx, &copy_into, &col_list, &s.buf).map_err(|e| e.into_plugin(&what))?;
    if !merge {
        return Ok(());
    }
    let keys: Vec<String> = s.keys.iter().map(|k| quote_ident(k)).collect();
    let key_list = keys.join(", ");
    // The last record of a key in the batch wins.
    let latest = format!(
        "SELECT DISTINCT ON ({key_list}) {col_list} FROM {copy_into} ORDER BY {key_list}, _dsm_seq DESC"
    );
    let sql = if s.key_index {
        let updates: Vec<String> = cols
            .iter()
            .filter(|c| !keys.contains(c))
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect();
        let action = if updates.is_empty() {
            "NOTHING".to_owned()
        } else {
            format!("UPDATE SET {}", updates.join(", "))
        };
        format!("INSERT INTO {t} ({col_list}) {latest} ON CONFLICT ({key_list}) DO {action}")
    } else {
        let on: Vec<String> = keys
            .iter()
            .map(|k| format!("{t}.{k} = {copy_into}.{k}"))
            .collect();
        format!(
            "DELETE FROM {t} USING {copy_into} WHERE {}; INSERT INTO {t} ({col_list}) {latest}",
            on.join(" AND ")
        )
    };
    tx.batch_execute(&sql)
        .map_err(|e| what(&e, "cannot merge the batch"))
}

/// A boolean setting (a JSON boolean or the text `true`/`false`); None when unset.
fn config_bool(config: &Map<String, Value>, key: &str) -> Result<Option<bool>, PluginError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s == "true" => Ok(Some(true)),
        Some(Value::String(s)) if s == "false" => Ok(Some(false)),
        Some(v) => Err(PluginError::config(format!(
            "setting `{key}` must be true or false, not {v}"
        ))),
    }
}

fn run(args: PluginArgs) -> Result<(), PluginError> {
    let config = args.load_config()?;
    let method = match config.get("load_method").and_then(Value::as_str) {
        None | Some("upsert") => LoadMethod::Upsert,
        Some("append-only") => LoadMethod::Append,
        Some("overwrite") => LoadMethod::Overwrite,
        Some(other) => {
            return Err(PluginError::config_hint(
                format!("setting `load_method` is `{other}`"),
                "use append-only, upsert or overwrite",
            ));
        }
    };
    let batch_rows = match config.get("batch_size_rows") {
        None | Some(Value::Null) => DEFAULT_BATCH_ROWS,
        Some(v) => v.as_u64().filter(|n| *n > 0).ok_or_else(|| {
            PluginError::config(format!(
                "setting `batch_size_rows` must be a positive integer, not {v}"
            ))
        })?,
    };
    let client = connect::connect(&config)?;
    let mut loader = Loader {
        client,
        streams: HashMap::new(),
        default_schema: config
            .get("default_target_schema")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        method,
        metadata: config_bool(&config, "add_record_metadata")?.unwrap_or(false),
        hard_delete: config_bool(&config, "hard_delete")?.unwrap_or(false),
        activate_versions: config_bool(&config, "activate_version")?.unwrap_or(true),
        batch_rows,
        pending_rows: 0,
        pending_state: None,
        state_marks: HashMap::new(),
        batch_time: now_rfc3339(),
        sequence: now_millis(),
        sync_started: now_millis(),
        out: std::io::BufWriter::new(std::io::stdout()),
        stage_counter: 0,
    };
    loader.exec("SET TIME ZONE 'UTC'")?;
    let input: Box<dyn BufRead> = match &args.input {
        Some(p) => Box::new(std::io::BufReader::with_capacity(
            256 * 1024,
            std::fs::File::open(p).map_err(|e| {
                PluginError::config(format!("cannot read input file `{}`: {e}", p.display()))
            })?,
        )),
        None => Box::new(std::io::BufReader::with_capacity(
            256 * 1024,
            std::io::stdin(),
        )),
    };
    let mut reader = LineReader::new(input, DEFAULT_MAX_LINE);
    match load(&mut loader, &mut reader) {
        Ok(()) => loader.flush()?,
        Err(e @ PluginError::Data { .. }) => {
            // The rows before the last STATE are good: keep them (a failure here changes
            // nothing about the error to report).
            let _ = loader.save_progress();
            return Err(e);
        }
        Err(e) => return Err(e),
    }
    loader.out.flush().map_err(kit::output_error)
}

fn load(loader: &mut Loader, reader: &mut LineReader<Box<dyn BufRead>>) -> Result<(), PluginError> {
    let mut buf = Vec::new();
    while reader
        .read_line(&mut buf)
        .map_err(|e| PluginError::data(format!("cannot read input: {e}")))?
    {
        let line = reader.line_number();
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Ok(fast) = serde_json::from_slice::<FastLine<'_>>(&buf)
            && fast.kind.eq_ignore_ascii_case("RECORD")
        {
            loader.load_record(&fast, line)?;
            continue;
        }
        let msg = Message::parse(&buf).map_err(|e| {
            PluginError::data(format!(
                "input line {line} is not a Singer message: {e}: {}",
                dsm::singer::codec::excerpt(&buf, 80)
            ))
        })?;
        match msg {
            Message::Schema(s) => loader.apply_schema(&s, line)?,
            Message::Record(r) => {
                // A record the fast path could not read (NaN tokens): go through JSON text.
                let text = serde_json::to_string(&Value::Object(r.record))
                    .expect("a JSON value always serialises");
                let version = r.version.map(|v| v.to_string());
                let fields: Fields<'_> = serde_json::from_str(&text)
                    .map_err(|e| PluginError::data(format!("input line {line}: {e}")))?;
                let version_raw = match &version {
                    Some(v) => Some(
                        serde_json::from_str::<&RawValue>(v)
                            .map_err(|e| PluginError::data(format!("input line {line}: {e}")))?,
                    ),
                    None => None,
                };
                let fast = FastLine {
                    kind: Cow::Borrowed("RECORD"),
                    stream: Some(Cow::Borrowed(&r.stream)),
                    record: Some(fields),
                    version: version_raw,
                    time_extracted: None,
                };
                loader.load_record(&fast, line)?;
            }
            Message::State(s) => loader.state(s.value)?,
            Message::ActivateVersion(a) => loader.activate_version(&a.stream, &a.version, line)?,
            Message::Batch(_) => {
                return Err(PluginError::data(format!(
                    "input line {line}: BATCH messages are not supported by target-postgres"
                )));
            }
            Message::Unknown(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_keep_a_prefix_and_a_digest() {
        let long = "a".repeat(70);
        let fit = fit_identifier(&long);
        assert_eq!(fit.len(), 63);
        assert!(fit.starts_with(&"a".repeat(54)));
        assert_ne!(fit, fit_identifier(&"a".repeat(71)));
        assert_eq!(fit_identifier("short"), "short");
    }

    #[test]
    fn types_widen_and_never_narrow() {
        assert_eq!(widened("integer", "bigint").as_deref(), Some("bigint"));
        assert_eq!(widened("bigint", "integer"), None);
        assert_eq!(widened("bigint", "numeric").as_deref(), Some("numeric"));
        assert_eq!(widened("numeric", "bigint"), None);
        assert_eq!(widened("text", "bigint"), None);
        assert_eq!(widened("boolean", "bigint").as_deref(), Some("text"));
    }

    #[test]
    fn copy_text_escapes_and_arrays() {
        let mut out = Vec::new();
        push_escaped(&mut out, b"a\tb\\c\nd");
        assert_eq!(out, b"a\\tb\\\\c\\nd");
        let mut lit = String::new();
        array_literal(&json!([1, null, "x \"y\"", [2, 3]]), &mut lit);
        assert_eq!(lit, r#"{1,NULL,"x \"y\"",{2,3}}"#);
    }

    #[test]
    fn streams_map_to_schema_and_table() {
        assert_eq!(
            table_of("public-Orders", None),
            ("public".to_owned(), "orders".to_owned())
        );
        assert_eq!(
            table_of("orders", None),
            ("public".to_owned(), "orders".to_owned())
        );
        assert_eq!(
            table_of("a-b", Some("raw")),
            ("raw".to_owned(), "b".to_owned())
        );
    }
}

//! `tap-postgres`: a built-in Singer tap of dsm that reads PostgreSQL tables and views.
//!
//! Discovery reads the system catalogs: one stream `<schema>-<table>` per table or view, key
//! properties from the primary key, JSON Schema types with an `x-sql-datatype` hint. Rows are
//! streamed with `COPY (SELECT col, ...) TO STDOUT`: every value arrives as the text of its
//! type's output function (arrays as the server's JSON, bytea as base64), is written into the
//! record line as JSON by its type, so values keep their exact text and nothing holds a whole
//! table.

#[path = "../postgres-common/connect.rs"]
mod connect;

use std::io::BufRead;

use connect::{error_text, quote_ident, quote_literal};
use dsm::singer::plugin_kit::{
    self as kit, About, MessageWriter, PluginArgs, PluginError, ReplicationMethod, StreamSpec,
};
use postgres::Client;
use serde_json::{Map, Value, json};

const USAGE: &str = "usage: tap-postgres [--about [--format json]] [--discover] --config FILE \
[--catalog FILE] [--state FILE]\n";

/// Rows between two STATE messages in an incremental sync.
const STATE_EVERY: u64 = 10_000;

fn about() -> About {
    let mut props = connect::settings_schema();
    props.insert(
        "filter_schemas".to_owned(),
        json!({
            "type": "array",
            "items": {"type": "string"},
            "description": "Only tables of these schemas (default: every schema but the system ones)."
        }),
    );
    About {
        name: "tap-postgres",
        description: "Reads PostgreSQL tables and views with COPY, full-table or incrementally by a \
replication key (dsm built-in). Full-table streams are ordered by their primary key and, every \
10,000 rows, bookmark the last key sent (`last_pk_fetched` with the table version), so an \
interrupted sync resumes after it; incremental streams are ordered by the replication key and \
resume from the bookmark. Log-based replication (logical decoding) is not supported. Values keep their exact text: \
numeric digits, timestamps (with time zone in UTC), dates, json/jsonb as JSON, arrays, uuid, \
bytea as base64; NaN and infinities are sent as the strings PostgreSQL writes for them.",
        capabilities: &["catalog", "discover", "state", "properties", "about"],
        settings: json!({"type": "object", "properties": props}),
    }
}

fn main() -> std::process::ExitCode {
    kit::run_main(&about(), USAGE, run)
}

/// A column as discovery finds it.
struct ColumnInfo {
    name: String,
    /// `format_type()`: `numeric(10,2)`, `timestamp with time zone`, `integer[]`.
    sql_type: String,
    schema: Value,
    /// How its value becomes JSON.
    kind: ValueKind,
}

/// How a column is selected for COPY's text output and written as JSON.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ValueKind {
    /// Integers: their text is their JSON.
    Raw,
    /// Booleans: `t` or `f` in COPY text.
    Bool,
    /// numeric and floats: their text, but NaN and the infinities as strings.
    Number,
    /// Text and anything else: a JSON string of the value's text.
    Text,
    /// timestamp with time zone (the session is in UTC): `2024-01-02T03:04:05+00:00`.
    TimestampTz,
    /// timestamp: `2024-01-02T03:04:05`.
    Timestamp,
    /// json and jsonb: their text is JSON.
    Json,
    /// bytea: base64 text.
    Bytea,
    /// Arrays: the server writes JSON (`to_json`).
    Array,
}

impl ValueKind {
    fn of(typname: &str, category: &str) -> ValueKind {
        if category == "A" {
            return ValueKind::Array;
        }
        match typname {
            "int2" | "int4" | "int8" | "oid" => ValueKind::Raw,
            "bool" => ValueKind::Bool,
            "numeric" | "float4" | "float8" => ValueKind::Number,
            "timestamptz" => ValueKind::TimestampTz,
            "timestamp" => ValueKind::Timestamp,
            "json" | "jsonb" => ValueKind::Json,
            "bytea" => ValueKind::Bytea,
            _ => ValueKind::Text,
        }
    }

    /// The select expression for column `col` (already quoted and qualified).
    fn select(self, col: &str) -> String {
        match self {
            ValueKind::Bytea => format!("translate(encode({col}, 'base64'), E'\\n', '')"),
            ValueKind::Array => format!("to_json({col})"),
            // COPY writes the value with its type's output function: the same text a cast to
            // text gives, without making that text value first.
            _ => col.to_owned(),
        }
    }
}

/// Appends a column value (its text from the server) as JSON.
fn push_json(out: &mut Vec<u8>, kind: ValueKind, text: &[u8]) -> Result<(), String> {
    let as_str = || std::str::from_utf8(text).map_err(|e| format!("not UTF-8: {e}"));
    match kind {
        ValueKind::Raw => out.extend_from_slice(text),
        ValueKind::Bool => {
            out.extend_from_slice(if text == b"t" { &b"true"[..] } else { b"false" })
        }
        ValueKind::Number => {
            if text
                .first()
                .is_some_and(|b| b.is_ascii_digit() || *b == b'-')
                && text.last().is_some_and(u8::is_ascii_digit)
            {
                out.extend_from_slice(text);
            } else {
                kit::write_json_str(out, as_str()?);
            }
        }
        ValueKind::Text | ValueKind::Bytea => kit::write_json_str(out, as_str()?),
        ValueKind::TimestampTz | ValueKind::Timestamp => {
            // `2024-01-02 03:04:05.123456+00` (ISO DateStyle); infinities and BC dates as is.
            // Digits, `-`, `:`, `.`, `+` and one space: nothing to escape in the usual form.
            if text.len() >= 19
                && text[10] == b' '
                && !text.ends_with(b" BC")
                && text
                    .iter()
                    .all(|b| b.is_ascii_digit() || b"-:.+ ".contains(b))
            {
                out.push(b'"');
                out.extend_from_slice(&text[..10]);
                out.push(b'T');
                out.extend_from_slice(&text[11..]);
                if kind == ValueKind::TimestampTz && matches!(text[text.len() - 3], b'+' | b'-') {
                    out.extend_from_slice(b":00");
                }
                out.push(b'"');
            } else {
                kit::write_json_str(out, as_str()?);
            }
        }
        ValueKind::Json | ValueKind::Array => {
            if memchr::memchr2(b'\n', b'\r', text).is_some() {
                // json keeps the line breaks it was written with (also inside an array's
                // `to_json`): re-serialise on one line.
                let v: Value =
                    serde_json::from_slice(text).map_err(|e| format!("not JSON: {e}"))?;
                out.extend_from_slice(&serde_json::to_vec(&v).expect("a JSON value serialises"));
            } else {
                out.extend_from_slice(text);
            }
        }
    }
    Ok(())
}

struct Table {
    schema: String,
    name: String,
    columns: Vec<ColumnInfo>,
    primary_key: Vec<String>,
}

impl Table {
    fn stream(&self) -> String {
        format!("{}-{}", self.schema, self.name)
    }
}

/// The JSON Schema of a column of type `typname` (`typcategory`, element type for arrays).
fn type_schema(typname: &str, category: &str, elem: Option<&str>) -> Value {
    if category == "A"
        && let Some(e) = elem
    {
        let inner = type_schema(e.trim_start_matches('_'), "", None);
        return json!({"type": ["array"], "items": inner});
    }
    match typname {
        "int2" | "int4" | "int8" | "oid" => json!({"type": ["integer"]}),
        "numeric" | "float4" | "float8" => json!({"type": ["number"]}),
        "bool" => json!({"type": ["boolean"]}),
        "timestamptz" | "timestamp" => json!({"type": ["string"], "format": "date-time"}),
        "date" => json!({"type": ["string"], "format": "date"}),
        "time" | "timetz" => json!({"type": ["string"], "format": "time"}),
        "uuid" => json!({"type": ["string"], "format": "uuid"}),
        "bytea" => json!({"type": ["string"], "contentEncoding": "base64"}),
        "json" | "jsonb" => {
            json!({"type": ["object", "array", "string", "number", "boolean"]})
        }
        _ => json!({"type": ["string"]}),
    }
}

fn db_err(what: impl std::fmt::Display, e: &postgres::Error) -> PluginError {
    PluginError::data(format!("{what}: {}", error_text(e)))
}

fn discover(client: &mut Client, only: &[String]) -> Result<Vec<Table>, PluginError> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, a.attname::text, \
                    format_type(a.atttypid, a.atttypmod), a.attnotnull, t.typname::text, \
                    t.typcategory::text, et.typname::text, \
                    (t.typnamespace = 'pg_catalog'::regnamespace \
                     AND (et.oid IS NULL OR et.typnamespace = 'pg_catalog'::regnamespace)), \
                    (SELECT array_position(i.indkey::int2[], a.attnum) FROM pg_index i \
                     WHERE i.indrelid = c.oid AND i.indisprimary) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
             JOIN pg_type t ON t.oid = a.atttypid \
             LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A' \
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
               AND (cardinality($1::text[]) = 0 OR n.nspname = ANY($1)) \
             ORDER BY n.nspname, c.relname, a.attnum",
            &[&only],
        )
        .map_err(|e| db_err("cannot read the tables from the system catalogs", &e))?;
    let mut tables: Vec<Table> = Vec::new();
    let mut keys: Vec<(i32, String)> = Vec::new();
    for r in &rows {
        let schema: String = r.get(0);
        let name: String = r.get(1);
        let column: String = r.get(2);
        let sql_type: String = r.get(3);
        let not_null: bool = r.get(4);
        let typname: String = r.get(5);
        let category: String = r.get(6);
        let elem: Option<String> = r.get(7);
        let builtin: Option<bool> = r.get(8);
        let key_pos: Option<i32> = r.get(9);
        if tables
            .last()
            .is_none_or(|t| t.schema != schema || t.name != name)
        {
            if let Some(t) = tables.last_mut() {
                keys.sort();
                t.primary_key = keys.drain(..).map(|(_, c)| c).collect();
            }
            tables.push(Table {
                schema,
                name,
                columns: Vec::new(),
                primary_key: Vec::new(),
            });
        }
        let mut s = type_schema(&typname, &category, elem.as_deref());
        if !not_null && let Some(Value::Array(types)) = s.get_mut("type") {
            types.push("null".into());
        }
        // Types of extensions or of the user (enums, domains) need not exist in a target.
        if builtin == Some(true) {
            s["x-sql-datatype"] = sql_type.clone().into();
        }
        if let Some(p) = key_pos {
            keys.push((p, column.clone()));
        }
        let t = tables.last_mut().expect("pushed above");
        t.columns.push(ColumnInfo {
            name: column,
            sql_type,
            schema: s,
            kind: ValueKind::of(&typname, &category),
        });
    }
    if let Some(t) = tables.last_mut() {
        keys.sort();
        t.primary_key = keys.drain(..).map(|(_, c)| c).collect();
    }
    Ok(tables)
}

fn spec(t: &Table) -> StreamSpec {
    let props: Map<String, Value> = t
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.schema.clone()))
        .collect();
    StreamSpec {
        name: t.stream(),
        schema: json!({"type": "object", "properties": props}),
        key_properties: t.primary_key.clone(),
        valid_replication_keys: t.columns.iter().map(|c| c.name.clone()).collect(),
        replication_key: None,
    }
}

/// Where a field of a COPY text row is.
#[derive(Debug, Clone, Copy)]
enum Field {
    Null,
    /// As it came, a range of the row's line.
    Line(usize, usize),
    /// Unescaped, a range of the row's scratch buffer.
    Scratch(usize, usize),
}

/// One row of `COPY ... TO STDOUT` text output.
struct Row<'a> {
    line: &'a [u8],
    scratch: &'a [u8],
    fields: &'a [Field],
}

impl Row<'_> {
    /// Field `i`'s text, None for NULL.
    fn get(&self, i: usize) -> Option<&[u8]> {
        match self.fields[i] {
            Field::Null => None,
            Field::Line(a, b) => Some(&self.line[a..b]),
            Field::Scratch(a, b) => Some(&self.scratch[a..b]),
        }
    }
}

/// Appends COPY text field `f` with its backslash escapes undone.
fn unescape(f: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < f.len() {
        let Some(p) = memchr::memchr(b'\\', &f[i..]) else {
            out.extend_from_slice(&f[i..]);
            return;
        };
        out.extend_from_slice(&f[i..i + p]);
        i += p + 1;
        let Some(&c) = f.get(i) else {
            return;
        };
        i += 1;
        match c {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                // `\ooo`: up to three octal digits.
                let mut v = u32::from(c - b'0');
                for _ in 0..2 {
                    match f.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            other => out.push(other),
        }
    }
}

/// Splits one line of COPY text (without its newline) into `fields`: tab-separated, `\N` for
/// NULL, backslash escapes undone into `scratch`.
fn split_row(line: &[u8], fields: &mut [Field], scratch: &mut Vec<u8>) -> std::io::Result<()> {
    scratch.clear();
    if fields.is_empty() {
        return if line.is_empty() {
            Ok(())
        } else {
            Err(std::io::Error::other(
                "COPY sent a value for a row with no column",
            ))
        };
    }
    let mut start = 0;
    let count = fields.len();
    for (i, slot) in fields.iter_mut().enumerate() {
        let end = memchr::memchr(b'\t', &line[start..]).map_or(line.len(), |p| start + p);
        let f = &line[start..end];
        *slot = if f == b"\\N" {
            Field::Null
        } else if memchr::memchr(b'\\', f).is_none() {
            Field::Line(start, end)
        } else {
            let a = scratch.len();
            unescape(f, scratch);
            Field::Scratch(a, scratch.len())
        };
        let last = i + 1 == count;
        if last != (end == line.len()) {
            return Err(std::io::Error::other(format!(
                "COPY sent a row of {} fields, expected {}",
                line.split(|b| *b == b'\t').count(),
                count
            )));
        }
        start = end + 1;
    }
    Ok(())
}

/// Reads `COPY ... TO STDOUT` text output and hands every row to `row`, its fields as slices
/// of the reader's own buffer where they need no unescaping: the server sends each row in one
/// CopyData message, which the client keeps as one buffer, so a value is copied only into its
/// line. A row split over two messages is put together first.
fn read_text_copy<R: BufRead>(
    inner: &mut R,
    columns: usize,
    mut row: impl FnMut(&Row<'_>) -> Result<(), PluginError>,
    read_err: impl Fn(std::io::Error) -> PluginError,
) -> Result<(), PluginError> {
    let mut fields = vec![Field::Null; columns];
    let mut scratch = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let chunk = inner.fill_buf().map_err(&read_err)?;
        if chunk.is_empty() {
            if !pending.is_empty() {
                return Err(read_err(std::io::Error::other(
                    "the COPY data ended inside a row",
                )));
            }
            return Ok(());
        }
        if pending.is_empty() {
            let mut pos = 0;
            while let Some(nl) = memchr::memchr(b'\n', &chunk[pos..]) {
                let line = &chunk[pos..pos + nl];
                split_row(line, &mut fields, &mut scratch).map_err(&read_err)?;
                row(&Row {
                    line,
                    scratch: &scratch,
                    fields: &fields,
                })?;
                pos += nl + 1;
            }
            pending.extend_from_slice(&chunk[pos..]);
            let n = chunk.len();
            inner.consume(n);
        } else if let Some(nl) = memchr::memchr(b'\n', chunk) {
            pending.extend_from_slice(&chunk[..nl]);
            inner.consume(nl + 1);
            split_row(&pending, &mut fields, &mut scratch).map_err(&read_err)?;
            row(&Row {
                line: &pending,
                scratch: &scratch,
                fields: &fields,
            })?;
            pending.clear();
        } else {
            pending.extend_from_slice(chunk);
            let n = chunk.len();
            inner.consume(n);
        }
    }
}

/// The SQL text of a bookmark for a `WHERE key >= ...` (a literal cast to the column's type).
fn bookmark_literal(v: &Value, sql_type: &str) -> String {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    format!("{}::{sql_type}", quote_literal(&text))
}

fn sync_table<C: postgres::GenericClient>(
    client: &mut C,
    out: &mut MessageWriter<std::io::Stdout>,
    t: &Table,
    sel: &kit::Selection,
    state: &mut Value,
    time_extracted: &str,
) -> Result<(), PluginError> {
    let stream = t.stream();
    out.schema(&stream, sel)?;
    let q = |c: &str| format!("t.{}", quote_ident(c));
    let mut exprs = Vec::new();
    let mut kinds = Vec::new();
    let mut keys_json = Vec::new();
    for p in &sel.properties {
        let col = t.columns.iter().find(|c| &c.name == p).ok_or_else(|| {
            PluginError::config(format!(
                "the catalog selects `{p}` of stream `{stream}`, which the table does not have"
            ))
        })?;
        exprs.push(col.kind.select(&q(p)));
        kinds.push(col.kind);
        let mut key = Vec::new();
        kit::write_json_str(&mut key, p);
        key.push(b':');
        keys_json.push(key);
    }
    let from = format!("{}.{} AS t", quote_ident(&t.schema), quote_ident(&t.name));
    let rk = sel.replication_key.clone();
    let bookmark = rk.as_deref().and_then(|k| kit::bookmark(state, &stream, k));
    let full = sel.method == ReplicationMethod::FullTable;
    // A full-table sync of a table with a primary key can resume after the last key sent.
    let pk: &[String] = if full && rk.is_none() {
        &t.primary_key
    } else {
        &[]
    };
    let resume = if pk.is_empty() {
        None
    } else {
        full_table_resume(state, &stream, pk)
    };
    // Where the replication key and the primary key columns are in each row: a selected
    // column is read from its field, any other is selected after the record's fields.
    let n = exprs.len();
    let mut key_fields: Vec<(usize, ValueKind)> = Vec::new();
    for c in rk.iter().chain(pk) {
        let col = t.columns.iter().find(|x| &x.name == c).ok_or_else(|| {
            PluginError::config(format!(
                "replication key `{c}` is not a column of table `{}.{}`",
                t.schema, t.name
            ))
        })?;
        let at = match sel.properties.iter().position(|p| p == c) {
            Some(i) => i,
            None => {
                exprs.push(col.kind.select(&q(c)));
                exprs.len() - 1
            }
        };
        key_fields.push((at, col.kind));
    }
    // `SELECT FROM t` (no column) is valid: a stream with no property selected.
    let mut sql = format!("COPY (SELECT {} FROM {from}", exprs.join(", "));
    if let Some(k) = &rk {
        let col = t.columns.iter().find(|c| &c.name == k).ok_or_else(|| {
            PluginError::config(format!(
                "replication key `{k}` is not a column of table `{}.{}`",
                t.schema, t.name
            ))
        })?;
        if let Some(b) = &bookmark {
            // `>=`, as the Singer SDK does: rows sharing the bookmark's value may have been
            // added after the last sync, so the bookmark row is sent again (at-least-once).
            sql.push_str(&format!(
                " WHERE {} >= {}",
                q(k),
                bookmark_literal(b, &col.sql_type)
            ));
        }
        // Rows sharing a replication key value come in primary key order: the same order
        // every time.
        let mut order = vec![q(k)];
        order.extend(t.primary_key.iter().filter(|c| *c != k).map(|c| q(c)));
        sql.push_str(&format!(" ORDER BY {}", order.join(", ")));
    } else if !t.primary_key.is_empty() {
        let keys: Vec<String> = t.primary_key.iter().map(|k| q(k)).collect();
        if let Some((_, last_pk)) = &resume {
            let mut values = Vec::new();
            for k in pk {
                let ty = &t
                    .columns
                    .iter()
                    .find(|c| &c.name == k)
                    .expect("a key column")
                    .sql_type;
                values.push(bookmark_literal(&last_pk[k], ty));
            }
            sql.push_str(&format!(
                " WHERE ({}) > ({})",
                keys.join(", "),
                values.join(", ")
            ));
        }
        sql.push_str(&format!(" ORDER BY {}", keys.join(", ")));
    }
    sql.push_str(") TO STDOUT");
    let version = match &resume {
        Some((v, _)) => Some(*v),
        None => full.then(kit::new_table_version),
    };
    let table_name = format!("{}.{}", t.schema, t.name);
    let mut reader = client
        .copy_out(sql.as_str())
        .map_err(|e| db_err(format!("cannot read table `{table_name}`"), &e))?;
    let read_err =
        |e: std::io::Error| PluginError::data(format!("reading table `{table_name}` failed: {e}"));
    let columns = exprs.len();
    let (rk_field, pk_fields) = if rk.is_some() {
        (key_fields.first().copied(), &key_fields[1..])
    } else {
        (None, &key_fields[..])
    };
    let mut pk_state_sent = resume.is_some();
    // Every line starts the same way and ends the same way: build both once.
    let mut prefix = Vec::new();
    prefix.extend_from_slice(b"{\"type\":\"RECORD\",\"stream\":");
    kit::write_json_str(&mut prefix, &stream);
    prefix.extend_from_slice(b",\"record\":");
    let mut suffix = Vec::new();
    if let Some(v) = version {
        suffix.extend_from_slice(format!(",\"version\":{v}").as_bytes());
    }
    suffix.extend_from_slice(b",\"time_extracted\":");
    kit::write_json_str(&mut suffix, time_extracted);
    suffix.push(b'}');
    let mut line = Vec::with_capacity(4096);
    let mut count = 0u64;
    let mut last: Option<Vec<u8>> = None;
    read_text_copy(
        &mut reader,
        columns,
        |fields| {
            line.clear();
            line.extend_from_slice(&prefix);
            line.push(b'{');
            for i in 0..n {
                if i > 0 {
                    line.push(b',');
                }
                line.extend_from_slice(&keys_json[i]);
                match fields.get(i) {
                    None => line.extend_from_slice(b"null"),
                    Some(text) => push_json(&mut line, kinds[i], text).map_err(|e| {
                        PluginError::data(format!(
                            "table `{table_name}`, column `{}`: a value is {e}",
                            sel.properties[i]
                        ))
                    })?,
                }
            }
            line.push(b'}');
            line.extend_from_slice(&suffix);
            out.write_line(&line)?;
            count += 1;
            if let Some((at, _)) = rk_field
                && let Some(v) = fields.get(at)
            {
                match &mut last {
                    Some(l) => {
                        l.clear();
                        l.extend_from_slice(v);
                    }
                    None => last = Some(v.to_vec()),
                }
            }
            if let (Some(k), Some((_, kind)), Some(v), true) =
                (&rk, rk_field, &last, count.is_multiple_of(STATE_EVERY))
            {
                kit::set_bookmark(state, &stream, k, key_json(kind, v)?);
                out.state(state)?;
            }
            if let (Some(v), true) = (version, !pk.is_empty() && count.is_multiple_of(STATE_EVERY))
            {
                let mut last_pk = Map::new();
                for (k, (at, kind)) in pk.iter().zip(pk_fields) {
                    let v = match fields.get(*at) {
                        Some(text) => key_json(*kind, text)?,
                        None => Value::Null,
                    };
                    last_pk.insert(k.clone(), v);
                }
                bookmarks(state).insert(
                    stream.clone(),
                    json!({"version": v, "last_pk_fetched": last_pk}),
                );
                out.state(state)?;
                pk_state_sent = true;
            }
            Ok(())
        },
        read_err,
    )?;
    if pk_state_sent {
        // Done: the next full-table sync starts from the beginning with a new version.
        bookmarks(state).remove(&stream);
        out.state(state)?;
    }
    if let Some(v) = version {
        out.activate_version(&stream, v)?;
    }
    if let (Some(k), Some((_, kind)), Some(v)) = (&rk, rk_field, &last) {
        kit::set_bookmark(state, &stream, k, key_json(kind, v)?);
        out.state(state)?;
    }
    Ok(())
}

/// The version and last primary key of an interrupted full-table sync, from the state.
fn full_table_resume(
    state: &Value,
    stream: &str,
    pk: &[String],
) -> Option<(u64, Map<String, Value>)> {
    let b = state.get("bookmarks")?.get(stream)?;
    let version = b.get("version")?.as_u64()?;
    let last = b.get("last_pk_fetched")?.as_object()?;
    pk.iter()
        .all(|k| last.get(k).is_some_and(|v| !v.is_null()))
        .then(|| (version, last.clone()))
}

/// The state's `bookmarks` object, created when missing.
fn bookmarks(state: &mut Value) -> &mut Map<String, Value> {
    if !state.get("bookmarks").is_some_and(Value::is_object) {
        state["bookmarks"] = json!({});
    }
    state["bookmarks"]
        .as_object_mut()
        .expect("made an object above")
}

/// A key column's value (its COPY text) as the JSON a bookmark holds: the same JSON its
/// records carry.
fn key_json(kind: ValueKind, text: &[u8]) -> Result<Value, PluginError> {
    let mut json = Vec::with_capacity(text.len() + 8);
    push_json(&mut json, kind, text)
        .map_err(|e| PluginError::data(format!("a key column's value is {e}")))?;
    serde_json::from_slice(&json)
        .map_err(|e| PluginError::data(format!("a key column's value is not JSON: {e}")))
}

fn run(args: PluginArgs) -> Result<(), PluginError> {
    let config = args.load_config()?;
    let only: Vec<String> = match config.get("filter_schemas") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    PluginError::config("setting `filter_schemas` must be a list of schema names")
                })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(PluginError::config(
                "setting `filter_schemas` must be a list of schema names",
            ));
        }
    };
    let mut client = connect::connect(&config)?;
    client
        .batch_execute("SET TIME ZONE 'UTC'; SET DateStyle = 'ISO'; SET extra_float_digits = 1")
        .map_err(|e| db_err("cannot set up the session", &e))?;
    let tables = discover(&mut client, &only)?;
    let mut out = MessageWriter::stdout();
    if args.discover {
        let entries = tables.iter().map(|t| spec(t).catalog_entry()).collect();
        out.write_value(&kit::catalog_document(entries))?;
        return out.flush();
    }
    let catalog = args.load_catalog()?;
    let mut state = args.load_state()?;
    if state.is_null() {
        state = json!({});
    }
    let time_extracted = kit::now_rfc3339();
    for t in &tables {
        let Some(sel) = kit::select(&spec(t), catalog.as_ref()) else {
            continue;
        };
        // One snapshot per table; the read-only transaction ends with it.
        let mut tx = client
            .build_transaction()
            .read_only(true)
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .start()
            .map_err(|e| db_err("cannot begin a transaction", &e))?;
        sync_table(&mut tx, &mut out, t, &sel, &mut state, &time_extracted)?;
        tx.commit()
            .map_err(|e| db_err("cannot end the transaction", &e))?;
    }
    out.final_state(&state)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(
        data: &[u8],
        cap: usize,
        columns: usize,
    ) -> Result<Vec<Vec<Option<Vec<u8>>>>, PluginError> {
        let mut reader = std::io::BufReader::with_capacity(cap, data);
        let mut seen = Vec::new();
        read_text_copy(
            &mut reader,
            columns,
            |r| {
                seen.push((0..columns).map(|i| r.get(i).map(<[u8]>::to_vec)).collect());
                Ok(())
            },
            |e| PluginError::data(e.to_string()),
        )?;
        Ok(seen)
    }

    #[test]
    fn copy_text_rows_are_split_unescaped_and_put_together_across_buffers() {
        let data = b"1\t\\N\thello\n22\t\ta\\tb\\\\c\\nd\\101\n";
        let want: Vec<Vec<Option<Vec<u8>>>> = vec![
            vec![Some(b"1".to_vec()), None, Some(b"hello".to_vec())],
            vec![
                Some(b"22".to_vec()),
                Some(Vec::new()),
                Some(b"a\tb\\c\ndA".to_vec()),
            ],
        ];
        // One buffer holding everything, and buffers of 1 to 7 bytes (rows split anywhere).
        for cap in [data.len(), 1, 2, 3, 5, 7] {
            assert_eq!(
                read_all(data, cap, 3).unwrap(),
                want,
                "buffer of {cap} bytes"
            );
        }
        // Cut short inside a row, or a row of the wrong width: errors, not panics.
        assert!(read_all(&data[..data.len() - 3], 64, 3).is_err());
        assert!(read_all(data, 64, 2).is_err());
        assert!(read_all(data, 64, 4).is_err());
        // A stream with no column selected: empty lines.
        assert_eq!(read_all(b"\n\n", 64, 0).unwrap().len(), 2);
    }
}

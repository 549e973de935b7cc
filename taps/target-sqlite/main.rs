//! `target-sqlite`: a built-in Singer target of dsm that loads streams into tables of a SQLite
//! database. Tables are created and migrated from SCHEMA messages (new columns added, column
//! types widened), rows are upserted by `key_properties` (appended when there are none),
//! ACTIVATE_VERSION deletes rows of older table versions, and every STATE message is printed
//! only after the rows before it are committed.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;

use dsm::singer::codec::{DEFAULT_MAX_LINE, LineReader};
use dsm::singer::plugin_kit::{self as kit, About, PluginArgs, PluginError};
use dsm::singer::raw::Fields;
use dsm::singer::{Message, message::SchemaMessage};
use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use rusqlite::{Connection, Statement};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

const USAGE: &str = "usage: target-sqlite [--about [--format json]] --config FILE [--input FILE]\n\
Reads Singer messages on stdin.\n";

/// The column holding a row's table version (the SDK's name for it).
const VERSION_COLUMN: &str = "_sdc_table_version";
const DEFAULT_BATCH_ROWS: u64 = 10_000;
const DEFAULT_BUSY_TIMEOUT_MS: u64 = 5_000;

fn about() -> About {
    About {
        name: "target-sqlite",
        description: "Loads Singer streams into a SQLite database (dsm built-in)",
        capabilities: &["about", "activate-version"],
        settings: json!({
            "type": "object",
            "properties": {
                "database": {
                    "type": "string",
                    "description": "Path of the SQLite database file (created when missing), relative to the working directory."
                },
                "batch_size_rows": {
                    "type": "integer",
                    "default": DEFAULT_BATCH_ROWS,
                    "description": "Rows per transaction between STATE messages."
                },
                "busy_timeout_ms": {
                    "type": "integer",
                    "default": DEFAULT_BUSY_TIMEOUT_MS,
                    "description": "How long to wait for a lock held by another process before failing."
                }
            },
            "required": ["database"]
        }),
    }
}

fn main() -> std::process::ExitCode {
    kit::run_main(&about(), USAGE, run)
}

/// Column types, from narrowest to widest: a column is only ever widened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SqlType {
    Boolean,
    Integer,
    Real,
    Text,
}

impl SqlType {
    fn sql(self) -> &'static str {
        match self {
            SqlType::Boolean => "BOOLEAN",
            SqlType::Integer => "INTEGER",
            SqlType::Real => "REAL",
            SqlType::Text => "TEXT",
        }
    }

    fn from_decl(decl: &str) -> SqlType {
        let d = decl.to_ascii_uppercase();
        if d.contains("BOOL") {
            SqlType::Boolean
        } else if d.contains("INT") {
            SqlType::Integer
        } else if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") {
            SqlType::Real
        } else {
            SqlType::Text
        }
    }

    /// The column type for a JSON Schema property. Several types, objects, arrays and
    /// anything unknown are stored as text (JSON text for objects and arrays).
    fn from_schema(prop: &Value) -> SqlType {
        let types: Vec<&str> = match prop.get("type") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let non_null: Vec<&str> = types.into_iter().filter(|t| *t != "null").collect();
        match non_null.as_slice() {
            ["boolean"] => SqlType::Boolean,
            ["integer"] => SqlType::Integer,
            ["number"] | ["integer", "number"] | ["number", "integer"] => SqlType::Real,
            _ => SqlType::Text,
        }
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn table_name(stream: &str) -> String {
    stream
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A stream's table and its prepared insert.
struct Table<'c> {
    name: String,
    /// Columns of the table, in insert order.
    columns: Vec<String>,
    key_properties: Vec<String>,
    required: Vec<String>,
    /// Per column: whether a number no INTEGER or REAL holds exactly may be stored as its
    /// JSON text (a TEXT column that is not part of the key).
    exact_text_ok: Vec<bool>,
    insert: Statement<'c>,
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
}

struct Loader<'c> {
    conn: &'c Connection,
    db_path: PathBuf,
    tables: HashMap<String, Table<'c>>,
    in_tx: bool,
    rows_in_tx: u64,
    batch_rows: u64,
    out: std::io::BufWriter<std::io::Stdout>,
}

fn sql_error(db: &std::path::Path, what: &str, e: rusqlite::Error) -> PluginError {
    use rusqlite::ErrorCode;
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        match f.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                return PluginError::data_hint(
                    format!("database `{}` is locked by another process", db.display()),
                    "wait for the other writer to finish, or raise `busy_timeout_ms`",
                );
            }
            ErrorCode::NotADatabase => {
                return PluginError::data_hint(
                    format!("`{}` is not a SQLite database", db.display()),
                    "point `database` at a SQLite file or at a path that does not exist yet",
                );
            }
            _ => {}
        }
    }
    PluginError::data(format!("database `{}`: {what}: {e}", db.display()))
}

impl<'c> Loader<'c> {
    fn err(&self, what: &str, e: rusqlite::Error) -> PluginError {
        sql_error(&self.db_path, what, e)
    }

    fn begin(&mut self) -> Result<(), PluginError> {
        if !self.in_tx {
            self.conn
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(|e| self.err("cannot begin a transaction", e))?;
            self.in_tx = true;
            self.rows_in_tx = 0;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), PluginError> {
        if self.in_tx {
            self.conn
                .execute_batch("COMMIT")
                .map_err(|e| self.err("cannot commit", e))?;
            self.in_tx = false;
        }
        Ok(())
    }

    fn existing_columns(&self, table: &str) -> Result<Vec<(String, SqlType)>, PluginError> {
        let mut stmt = self
            .conn
            .prepare(&format!("PRAGMA table_info({})", quote_ident(table)))
            .map_err(|e| self.err("cannot read the table layout", e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
            .map_err(|e| self.err("cannot read the table layout", e))?;
        let mut out = Vec::new();
        for r in rows {
            let (name, decl) = r.map_err(|e| self.err("cannot read the table layout", e))?;
            out.push((name, SqlType::from_decl(&decl)));
        }
        Ok(out)
    }

    /// Creates or migrates the stream's table to hold `schema`, and prepares its insert.
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
        self.begin()?;
        let name = table_name(&msg.stream);
        let wanted: Vec<(String, SqlType)> = props
            .iter()
            .map(|(k, v)| (k.clone(), SqlType::from_schema(v)))
            .collect();
        let existing = self.existing_columns(&name)?;
        let t = quote_ident(&name);
        if existing.is_empty() {
            let cols: Vec<String> = wanted
                .iter()
                .map(|(c, ty)| format!("{} {}", quote_ident(c), ty.sql()))
                .collect();
            self.exec(&format!("CREATE TABLE {t} ({})", cols.join(", ")))?;
        } else {
            let mut layout = existing.clone();
            let mut rebuild = false;
            for (c, ty) in &wanted {
                match layout.iter_mut().find(|(e, _)| e.eq_ignore_ascii_case(c)) {
                    Some((_, old)) if *old < *ty => {
                        *old = *ty;
                        rebuild = true;
                    }
                    Some(_) => {}
                    None => {
                        self.exec(&format!(
                            "ALTER TABLE {t} ADD COLUMN {} {}",
                            quote_ident(c),
                            ty.sql()
                        ))?;
                        layout.push((c.clone(), *ty));
                    }
                }
            }
            if rebuild {
                self.widen(&name, &layout)?;
            }
        }
        self.set_key_index(&name, &msg.key_properties)?;
        let columns: Vec<String> = self
            .existing_columns(&name)?
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        let required = msg
            .schema
            .get("required")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        self.prepare_table(
            &msg.stream,
            name,
            columns,
            msg.key_properties.clone(),
            required,
        )
    }

    fn exec(&self, sql: &str) -> Result<(), PluginError> {
        self.conn
            .execute_batch(sql)
            .map_err(|e| self.err(&format!("`{sql}` failed"), e))
    }

    /// Rebuilds a table with wider column types (SQLite cannot alter a column's type).
    fn widen(&self, name: &str, layout: &[(String, SqlType)]) -> Result<(), PluginError> {
        let t = quote_ident(name);
        let tmp = quote_ident(&format!("{name}__dsm_widen"));
        let cols: Vec<String> = layout
            .iter()
            .map(|(c, ty)| format!("{} {}", quote_ident(c), ty.sql()))
            .collect();
        let names: Vec<String> = layout.iter().map(|(c, _)| quote_ident(c)).collect();
        self.exec(&format!(
            "CREATE TABLE {tmp} ({cols}); INSERT INTO {tmp} ({names}) SELECT {names} FROM {t}; \
             DROP TABLE {t}; ALTER TABLE {tmp} RENAME TO {t};",
            cols = cols.join(", "),
            names = names.join(", ")
        ))
    }

    fn set_key_index(&self, name: &str, keys: &[String]) -> Result<(), PluginError> {
        let index = quote_ident(&format!("{name}__dsm_key"));
        // The index is recreated when the keys change (Singer allows a new SCHEMA to do that).
        let current: Option<String> = self
            .conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?1",
                [format!("{name}__dsm_key")],
                |r| r.get(0),
            )
            .ok();
        let cols: Vec<String> = keys.iter().map(|k| quote_ident(k)).collect();
        let wanted = (!keys.is_empty()).then(|| {
            format!(
                "CREATE UNIQUE INDEX {index} ON {} ({})",
                quote_ident(name),
                cols.join(", ")
            )
        });
        if current == wanted {
            return Ok(());
        }
        if current.is_some() {
            self.exec(&format!("DROP INDEX {index}"))?;
        }
        if let Some(sql) = wanted {
            self.exec(&sql).map_err(|_| {
                PluginError::data(format!(
                    "table `{name}` has rows that share a value of the new key ({})",
                    keys.join(", ")
                ))
            })?;
        }
        Ok(())
    }

    fn prepare_table(
        &mut self,
        stream: &str,
        name: String,
        columns: Vec<String>,
        key_properties: Vec<String>,
        required: Vec<String>,
    ) -> Result<(), PluginError> {
        let t = quote_ident(&name);
        let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
        let marks: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
        let mut sql = format!(
            "INSERT INTO {t} ({}) VALUES ({})",
            cols.join(", "),
            marks.join(", ")
        );
        if !key_properties.is_empty() {
            let keys: Vec<String> = key_properties.iter().map(|k| quote_ident(k)).collect();
            let updates: Vec<String> = cols.iter().map(|c| format!("{c} = excluded.{c}")).collect();
            sql.push_str(&format!(
                " ON CONFLICT ({}) DO UPDATE SET {}",
                keys.join(", "),
                updates.join(", ")
            ));
        }
        let types = self.existing_columns(&name)?;
        let exact_text_ok = columns
            .iter()
            .map(|c| {
                !key_properties.contains(c)
                    && types.iter().any(|(n, ty)| n == c && *ty == SqlType::Text)
            })
            .collect();
        // The statement borrows the connection, which outlives the loader.
        let insert = self
            .conn
            .prepare(&sql)
            .map_err(|e| self.err("cannot prepare the insert", e))?;
        self.tables.insert(
            stream.to_owned(),
            Table {
                name,
                columns,
                key_properties,
                required,
                exact_text_ok,
                insert,
            },
        );
        Ok(())
    }

    fn ensure_version_column(&mut self, stream: &str) -> Result<(), PluginError> {
        let table = &self.tables[stream];
        if table.columns.iter().any(|c| c == VERSION_COLUMN) {
            return Ok(());
        }
        let (name, keys, required) = (
            table.name.clone(),
            table.key_properties.clone(),
            table.required.clone(),
        );
        self.begin()?;
        self.exec(&format!(
            "ALTER TABLE {} ADD COLUMN {} INTEGER",
            quote_ident(&name),
            VERSION_COLUMN
        ))?;
        let columns = self
            .existing_columns(&name)?
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        self.prepare_table(stream, name, columns, keys, required)
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
        if !self.tables.contains_key(stream) {
            return Err(PluginError::data_hint(
                format!("input line {line}: RECORD of stream `{stream}` came before its SCHEMA"),
                "a tap must send a stream's SCHEMA message before its records",
            ));
        }
        if rec.version.is_some() {
            self.ensure_version_column(stream)?;
        }
        self.begin()?;
        let db = self.db_path.clone();
        let table = self.tables.get_mut(stream).expect("checked above");
        for k in &table.key_properties {
            if record.get(k, 0).is_none_or(|v| v.get() == "null") {
                return Err(PluginError::data(format!(
                    "input line {line}: record of stream `{stream}` has no value for key property `{k}`"
                )));
            }
        }
        for k in &table.required {
            if record.get(k, 0).is_none() {
                return Err(PluginError::data(format!(
                    "input line {line}: record of stream `{stream}` lacks required property `{k}`"
                )));
            }
        }
        for (i, col) in table.columns.iter().enumerate() {
            let raw = if col == VERSION_COLUMN {
                rec.version
            } else {
                record.get(col, i)
            };
            let value = match raw {
                None => ToSqlOutput::Owned(SqlValue::Null),
                Some(raw) => to_sql(raw, table.exact_text_ok[i]).ok_or_else(|| {
                    let text = raw.get();
                    let shown: String = text.chars().take(40).collect();
                    let more = if shown.len() < text.len() { "..." } else { "" };
                    let column = if table.key_properties.contains(col) {
                        "key column".to_string()
                    } else {
                        "column, which is not TEXT,".to_string()
                    };
                    PluginError::data_hint(
                        format!(
                            "input line {line}: record of stream `{stream}`: field `{col}` is the \
                             number {shown}{more}, which no SQLite INTEGER or REAL holds exactly; \
                             it is not stored in its {column} rounded"
                        ),
                        "declare the property as `{\"type\": [\"number\", \"string\"]}` (a TEXT \
                         column) to keep such numbers exactly as their JSON text",
                    )
                })?,
            };
            table
                .insert
                .raw_bind_parameter(i + 1, value)
                .map_err(|e| sql_error(&db, "cannot bind a value", e))?;
        }
        table.insert.raw_execute().map_err(|e| {
            sql_error(
                &db,
                &format!("input line {line}: cannot write a row of stream `{stream}`"),
                e,
            )
        })?;
        self.rows_in_tx += 1;
        if self.rows_in_tx >= self.batch_rows {
            self.commit()?;
        }
        Ok(())
    }

    fn activate_version(
        &mut self,
        stream: &str,
        version: &Value,
        line: u64,
    ) -> Result<(), PluginError> {
        if !self.tables.contains_key(stream) {
            return Err(PluginError::data(format!(
                "input line {line}: ACTIVATE_VERSION of stream `{stream}` came before its SCHEMA"
            )));
        }
        let v = version.as_i64().ok_or_else(|| {
            PluginError::data(format!(
                "input line {line}: ACTIVATE_VERSION of stream `{stream}` has a version that is not an integer"
            ))
        })?;
        self.ensure_version_column(stream)?;
        self.begin()?;
        let name = quote_ident(&self.tables[stream].name);
        // Rows of versions strictly older than the activated one go, and so do rows written
        // without a version (say by an earlier incremental sync): they are not part of the
        // activated version either. The Singer SDK's SQL sinks delete the same rows.
        self.conn
            .execute(
                &format!(
                    "DELETE FROM {name} WHERE {VERSION_COLUMN} IS NULL OR {VERSION_COLUMN} < ?1"
                ),
                [v],
            )
            .map_err(|e| self.err("cannot delete rows of older versions", e))?;
        Ok(())
    }

    /// Commits, then prints the STATE's value: a Singer target's stdout carries state values
    /// (not STATE messages), which is what Meltano stores and hands back to the tap.
    fn emit_state(&mut self, value: &Value) -> Result<(), PluginError> {
        self.commit()?;
        let line = serde_json::to_vec(value).expect("a JSON value always serialises");
        self.out
            .write_all(&line)
            .and_then(|()| self.out.write_all(b"\n"))
            .and_then(|()| self.out.flush())
            .map_err(kit::output_error)
    }
}

/// A JSON value as an SQLite value: text for strings, 1/0 for booleans, objects and arrays as
/// their JSON text; a number as INTEGER when it is a whole number of 64 bits, as REAL when the
/// double nearest to it reads back as the same number, and otherwise (beyond a double's range
/// or digits) as its exact JSON text when `exact_text_ok`, else `None` (refused: never rounded,
/// never infinite). Text is borrowed from the input line when it has no escapes.
fn to_sql(raw: &RawValue, exact_text_ok: bool) -> Option<ToSqlOutput<'_>> {
    let text = raw.get();
    let owned = |v: SqlValue| Some(ToSqlOutput::Owned(v));
    match text.as_bytes().first() {
        None | Some(b'n') => owned(SqlValue::Null),
        Some(b't') => owned(SqlValue::Integer(1)),
        Some(b'f') => owned(SqlValue::Integer(0)),
        Some(b'"') => {
            let inner = &text[1..text.len() - 1];
            if !inner.contains('\\') {
                return Some(ToSqlOutput::Borrowed(ValueRef::Text(inner.as_bytes())));
            }
            match serde_json::from_str::<String>(text) {
                Ok(s) => owned(SqlValue::Text(s)),
                Err(_) => Some(ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes()))),
            }
        }
        Some(b'{') | Some(b'[') => Some(ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes()))),
        Some(_) => match number_fit(text) {
            NumberFit::Integer(i) => owned(SqlValue::Integer(i)),
            NumberFit::Real(f) => owned(SqlValue::Real(f)),
            NumberFit::Inexact if exact_text_ok => {
                Some(ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())))
            }
            NumberFit::Inexact => None,
        },
    }
}

/// How a JSON number can be stored without changing it.
#[derive(Debug, PartialEq)]
enum NumberFit {
    /// A whole number that fits 64 bits.
    Integer(i64),
    /// A double that reads back as the same number (its shortest form has the same digits).
    Real(f64),
    /// Neither: beyond a double's range (`1e999999`) or digits (`99999999999999999999999`).
    Inexact,
}

fn number_fit(text: &str) -> NumberFit {
    let has_exponent = text.contains(['e', 'E']);
    if !has_exponent
        && !text.contains('.')
        && let Ok(i) = text.parse::<i64>()
    {
        return NumberFit::Integer(i);
    }
    let Ok(f) = text.parse::<f64>() else {
        return NumberFit::Inexact;
    };
    if !f.is_finite() {
        return NumberFit::Inexact;
    }
    // Up to 15 significant digits always survive a double's round trip (DBL_DIG).
    let digits = text.bytes().filter(u8::is_ascii_digit).count();
    if (!has_exponent && digits <= 15) || decimal_parts(text) == decimal_parts(&format!("{f:e}")) {
        NumberFit::Real(f)
    } else {
        NumberFit::Inexact
    }
}

/// A decimal number's value as (negative, significant digits, exponent) with the value
/// `0.DIGITS × 10^exponent`; zero is `(false, "", 0)`. Two spellings of one number compare equal.
fn decimal_parts(text: &str) -> Option<(bool, String, i64)> {
    let (neg, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(at) => (&rest[..at], rest[at + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all: String = format!("{int}{frac}");
    let leading = all.bytes().take_while(|b| *b == b'0').count();
    let digits = all[leading..].trim_end_matches('0');
    if digits.is_empty() {
        return Some((false, String::new(), 0));
    }
    let point = i64::try_from(int.len()).ok()? - i64::try_from(leading).ok()?;
    Some((neg, digits.to_string(), point.checked_add(exp)?))
}

fn run(args: PluginArgs) -> Result<(), PluginError> {
    let config = args.load_config()?;
    let db_path = PathBuf::from(
        config
            .get("database")
            .or_else(|| config.get("path"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                PluginError::config_hint(
                    "setting `database` is missing",
                    "set `database: output/warehouse.db` in the loader's config",
                )
            })?,
    );
    let batch_rows = config
        .get("batch_size_rows")
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_BATCH_ROWS)
        .max(1);
    let busy_ms = config
        .get("busy_timeout_ms")
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_BUSY_TIMEOUT_MS);
    if let Some(parent) = db_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            PluginError::data(format!(
                "cannot create the folder of database `{}`: {e}",
                db_path.display()
            ))
        })?;
    }
    let conn = Connection::open(&db_path).map_err(|e| sql_error(&db_path, "cannot open", e))?;
    conn.busy_timeout(std::time::Duration::from_millis(busy_ms))
        .map_err(|e| sql_error(&db_path, "cannot set the busy timeout", e))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536;",
    )
    .map_err(|e| sql_error(&db_path, "cannot open", e))?;
    let mut loader = Loader {
        conn: &conn,
        db_path: db_path.clone(),
        tables: HashMap::new(),
        in_tx: false,
        rows_in_tx: 0,
        batch_rows,
        out: std::io::BufWriter::new(std::io::stdout()),
    };
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
    let mut buf = Vec::new();
    let result = (|| {
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
                    let rec_map: Fields<'_> = serde_json::from_str(&text)
                        .map_err(|e| PluginError::data(format!("input line {line}: {e}")))?;
                    let version_raw =
                        match &version {
                            Some(v) => Some(serde_json::from_str::<&RawValue>(v).map_err(|e| {
                                PluginError::data(format!("input line {line}: {e}"))
                            })?),
                            None => None,
                        };
                    let fast = FastLine {
                        kind: Cow::Borrowed("RECORD"),
                        stream: Some(Cow::Borrowed(&r.stream)),
                        record: Some(rec_map),
                        version: version_raw,
                    };
                    loader.load_record(&fast, line)?;
                }
                Message::State(s) => loader.emit_state(&s.value)?,
                Message::ActivateVersion(a) => {
                    loader.activate_version(&a.stream, &a.version, line)?
                }
                Message::Batch(_) => {
                    return Err(PluginError::data(format!(
                        "input line {line}: BATCH messages are not supported by target-sqlite"
                    )));
                }
                Message::Unknown(_) => {}
            }
        }
        Ok(())
    })();
    // Data already loaded stays: commit what came before a failure, then report it.
    let committed = loader.commit();
    result?;
    committed?;
    loader.out.flush().map_err(kit::output_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Issue 30: `99999999999999999999999` became the REAL 1e23 and `1e999999` became Inf.
    #[test]
    fn numbers_are_stored_only_where_they_stay_exact() {
        assert_eq!(number_fit("42"), NumberFit::Integer(42));
        assert_eq!(
            number_fit("-9223372036854775808"),
            NumberFit::Integer(i64::MIN)
        );
        assert_eq!(number_fit("19.99"), NumberFit::Real(19.99));
        assert_eq!(number_fit("1e2"), NumberFit::Real(100.0));
        assert_eq!(number_fit("-0.0"), NumberFit::Real(-0.0));
        assert_eq!(
            number_fit("1.7976931348623157e308"),
            NumberFit::Real(f64::MAX)
        );
        assert_eq!(
            number_fit("0.30000000000000004"),
            NumberFit::Real(0.30000000000000004)
        );
        for inexact in [
            "99999999999999999999999",
            "9223372036854775808",
            "1e999999",
            "-1e999999",
            "0.1000000000000000000001",
            "1e-999999",
        ] {
            assert_eq!(number_fit(inexact), NumberFit::Inexact, "{inexact}");
        }
    }

    #[test]
    fn decimal_parts_compare_spellings_of_one_number() {
        assert_eq!(decimal_parts("100"), decimal_parts("1e2"));
        assert_eq!(decimal_parts("0.0012"), decimal_parts("1.2e-3"));
        assert_eq!(decimal_parts("0"), decimal_parts("-0e0"));
        assert_ne!(
            decimal_parts("1e23"),
            decimal_parts("99999999999999999999999")
        );
    }
}

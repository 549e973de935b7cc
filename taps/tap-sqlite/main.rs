//! `tap-sqlite`: a built-in Singer tap of dsm that reads the tables of a SQLite database,
//! full-table (with ACTIVATE_VERSION) or incrementally by a replication key column, ordered by
//! that column so STATE can be emitted as it goes.

use dsm::singer::plugin_kit::{
    self as kit, About, MessageWriter, PluginArgs, PluginError, ReplicationMethod, StreamSpec,
};
use rusqlite::{Connection, OpenFlags, types::ValueRef};
use serde_json::{Map, Value, json};

const USAGE: &str = "usage: tap-sqlite [--about [--format json]] [--discover] --config FILE \
[--catalog FILE] [--state FILE]\n";

/// Rows between two STATE messages in an incremental sync.
const STATE_EVERY: u64 = 10_000;

fn about() -> About {
    About {
        name: "tap-sqlite",
        description: "Reads the tables of a SQLite database (dsm built-in)",
        capabilities: &["catalog", "discover", "state", "properties", "about"],
        settings: json!({
            "type": "object",
            "properties": {
                "database": {
                    "type": "string",
                    "description": "Path of the SQLite database file."
                },
                "tables": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Only these tables (default: every table)."
                }
            },
            "required": ["database"]
        }),
    }
}

fn main() -> std::process::ExitCode {
    kit::run_main(&about(), USAGE, run)
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The JSON Schema of a column from its declared SQLite type (SQLite's affinity rules).
fn column_schema(decl: &str) -> Value {
    let d = decl.to_ascii_uppercase();
    if d.contains("BOOL") {
        json!({"type": ["boolean", "null"]})
    } else if d.contains("INT") {
        json!({"type": ["integer", "null"]})
    } else if d.contains("REAL")
        || d.contains("FLOA")
        || d.contains("DOUB")
        || d.contains("NUM")
        || d.contains("DEC")
    {
        json!({"type": ["number", "null"]})
    } else if d.contains("DATETIME") || d.contains("TIMESTAMP") {
        json!({"type": ["string", "null"], "format": "date-time"})
    } else {
        json!({"type": ["string", "null"]})
    }
}

fn db_error(db: &str, e: rusqlite::Error) -> PluginError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        match f.code {
            rusqlite::ErrorCode::NotADatabase => {
                return PluginError::data(format!("`{db}` is not a SQLite database"));
            }
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => {
                return PluginError::data(format!("database `{db}` is locked by another process"));
            }
            _ => {}
        }
    }
    PluginError::data(format!("database `{db}`: {e}"))
}

fn discover(conn: &Connection, db: &str, only: &[String]) -> Result<Vec<StreamSpec>, PluginError> {
    let mut stmt = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') \
             AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .map_err(|e| db_error(db, e))?;
    let names: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .map_err(|e| db_error(db, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| db_error(db, e))?;
    let mut specs = Vec::new();
    for name in names {
        if !only.is_empty() && !only.contains(&name) {
            continue;
        }
        let mut info = conn
            .prepare(&format!("PRAGMA table_info({})", quote_ident(&name)))
            .map_err(|e| db_error(db, e))?;
        let cols: Vec<(String, String, i64)> = info
            .query_map([], |r| Ok((r.get(1)?, r.get(2)?, r.get(5)?)))
            .map_err(|e| db_error(db, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| db_error(db, e))?;
        let mut props = Map::new();
        let mut pk: Vec<(i64, String)> = Vec::new();
        for (col, decl, pk_pos) in &cols {
            props.insert(col.clone(), column_schema(decl));
            if *pk_pos > 0 {
                pk.push((*pk_pos, col.clone()));
            }
        }
        pk.sort();
        specs.push(StreamSpec {
            name: name.clone(),
            schema: json!({"type": "object", "properties": props}),
            key_properties: pk.into_iter().map(|(_, c)| c).collect(),
            valid_replication_keys: cols.iter().map(|(c, _, _)| c.clone()).collect(),
            replication_key: None,
        });
    }
    Ok(specs)
}

fn to_json(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => i.into(),
        ValueRef::Real(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned().into(),
        ValueRef::Blob(b) => hex::encode(b).into(),
    }
}

fn to_sql(v: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as S;
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(i) => S::Integer(i),
            None => S::Real(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => S::Text(s.clone()),
        Value::Bool(b) => S::Integer(i64::from(*b)),
        _ => S::Null,
    }
}

fn run(args: PluginArgs) -> Result<(), PluginError> {
    let config = args.load_config()?;
    let db = config
        .get("database")
        .and_then(Value::as_str)
        .ok_or_else(|| PluginError::config("setting `database` is missing"))?
        .to_owned();
    if !std::path::Path::new(&db).is_file() {
        return Err(PluginError::config(format!(
            "database `{db}` does not exist"
        )));
    }
    let only: Vec<String> = config
        .get("tables")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let conn = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| db_error(&db, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| db_error(&db, e))?;
    let specs = discover(&conn, &db, &only)?;
    let mut out = MessageWriter::stdout();
    if args.discover {
        let entries = specs.iter().map(StreamSpec::catalog_entry).collect();
        out.write_value(&kit::catalog_document(entries))?;
        return out.flush();
    }
    let catalog = args.load_catalog()?;
    let mut state = args.load_state()?;
    if state.is_null() {
        state = json!({});
    }
    let time_extracted = kit::now_rfc3339();
    for spec in &specs {
        let Some(sel) = kit::select(spec, catalog.as_ref()) else {
            continue;
        };
        let name = &spec.name;
        out.schema(name, &sel)?;
        let cols: Vec<String> = sel.properties.iter().map(|c| quote_ident(c)).collect();
        let mut sql = format!("SELECT {} FROM {}", cols.join(", "), quote_ident(name));
        let rk = sel.replication_key.clone();
        let bookmark = rk.as_deref().and_then(|k| kit::bookmark(&state, name, k));
        if let Some(k) = &rk {
            if !sel.properties.contains(k) {
                return Err(PluginError::config(format!(
                    "replication key `{k}` is not a column of table `{name}`"
                )));
            }
            if bookmark.is_some() {
                // `>=`, as the Singer SDK does: rows sharing the bookmark's value may have been
                // added after the last sync, so the bookmark row is sent again (at-least-once).
                sql.push_str(&format!(" WHERE {} >= ?1", quote_ident(k)));
            }
            sql.push_str(&format!(" ORDER BY {}", quote_ident(k)));
        }
        let version = (sel.method == ReplicationMethod::FullTable).then(kit::new_table_version);
        let mut stmt = conn.prepare(&sql).map_err(|e| db_error(&db, e))?;
        let mut rows = match &bookmark {
            Some(b) => stmt.query([to_sql(b)]),
            None => stmt.query([]),
        }
        .map_err(|e| db_error(&db, e))?;
        let rk_index = rk
            .as_deref()
            .and_then(|k| sel.properties.iter().position(|p| p == k));
        let mut count = 0u64;
        let mut last: Option<Value> = None;
        while let Some(row) = rows.next().map_err(|e| db_error(&db, e))? {
            let mut record = Map::new();
            for (i, p) in sel.properties.iter().enumerate() {
                let v = row.get_ref(i).map_err(|e| db_error(&db, e))?;
                record.insert(p.clone(), to_json(v));
            }
            if let Some(i) = rk_index {
                let v = record[&sel.properties[i]].clone();
                if !v.is_null() {
                    last = Some(v);
                }
            }
            let mut msg = json!({"type": "RECORD", "stream": name, "record": record});
            if let Some(v) = version {
                msg["version"] = v.into();
            }
            msg["time_extracted"] = time_extracted.clone().into();
            out.write_value(&msg)?;
            count += 1;
            if let (Some(k), Some(v), true) = (&rk, &last, count.is_multiple_of(STATE_EVERY)) {
                kit::set_bookmark(&mut state, name, k, v.clone());
                out.state(&state)?;
            }
        }
        if let Some(v) = version {
            out.activate_version(name, v)?;
        }
        if let (Some(k), Some(v)) = (&rk, last) {
            kit::set_bookmark(&mut state, name, k, v);
        }
    }
    out.final_state(&state)?;
    out.flush()
}

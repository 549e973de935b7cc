//! The SQLite tables of merged streams. Every function takes a `&rusqlite::Connection`, so the
//! system store can hand over its connection.

use std::sync::LazyLock;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value};

use super::MergeError;
use crate::singer::message::{Message, SchemaMessage};

/// The tables: the store's migrations 4 and 6, written to be idempotent.
pub const MIGRATIONS: [&str; 2] = [
    include_str!("../store/migrations/0004_merged_streams.sql"),
    include_str!("../store/migrations/0006_merge_runs.sql"),
];

/// Creates the tables when missing (the system store does this on open; this serves bare
/// connections such as tests and benchmarks).
pub fn migrate(conn: &Connection) -> Result<(), MergeError> {
    for m in MIGRATIONS {
        conn.execute_batch(m)?;
    }
    Ok(())
}

/// One key's row: its candidates (JSON), the record last sent, and whether it is held back.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityRow {
    /// The candidates JSON.
    pub candidates: String,
    /// The record last sent to the target (JSON), if any.
    pub resolved: Option<String>,
    /// Whether a `quarantine` rule holds the key back.
    pub quarantined: bool,
}

/// Reads one key's row.
pub fn load_entity(
    conn: &Connection,
    stream: &str,
    key: &str,
) -> Result<Option<EntityRow>, MergeError> {
    let mut stmt = conn.prepare_cached(
        "SELECT candidates, resolved, quarantined FROM merge_entities WHERE stream = ?1 AND key = ?2",
    )?;
    Ok(stmt
        .query_row(params![stream, key], |r| {
            Ok(EntityRow {
                candidates: r.get(0)?,
                resolved: r.get(1)?,
                quarantined: r.get::<_, i64>(2)? != 0,
            })
        })
        .optional()?)
}

/// Writes one key's row.
pub fn save_entity(
    conn: &Connection,
    stream: &str,
    key: &str,
    row: &EntityRow,
    run_id: &str,
) -> Result<(), MergeError> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO merge_entities (stream, key, candidates, resolved, quarantined, run_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (stream, key) DO UPDATE SET candidates = excluded.candidates,
             resolved = excluded.resolved, quarantined = excluded.quarantined,
             run_id = excluded.run_id",
    )?;
    stmt.execute(params![
        stream,
        key,
        row.candidates,
        row.resolved,
        i64::from(row.quarantined),
        run_id
    ])?;
    Ok(())
}

/// A key (JSON array text) and its record.
pub type KeyedRecord = (String, Map<String, Value>);

/// The resolved table of a merged stream: key and the record last sent, in key order.
pub fn resolved_records(conn: &Connection, stream: &str) -> Result<Vec<KeyedRecord>, MergeError> {
    let mut stmt = conn.prepare(
        "SELECT key, resolved FROM merge_entities WHERE stream = ?1 AND resolved IS NOT NULL ORDER BY key",
    )?;
    let rows = stmt.query_map(params![stream], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (key, text) = row?;
        let record = serde_json::from_str(&text).map_err(|e| {
            MergeError::data(format!(
                "the stored record of key {key} of merged stream `{stream}` is not JSON: {e}"
            ))
        })?;
        out.push((key, record));
    }
    Ok(out)
}

/// Keys of a merged stream currently held back by a `quarantine` rule.
pub fn quarantined_keys(conn: &Connection, stream: &str) -> Result<Vec<String>, MergeError> {
    let mut stmt = conn.prepare(
        "SELECT key FROM merge_entities WHERE stream = ?1 AND quarantined = 1 ORDER BY key",
    )?;
    let keys = stmt
        .query_map(params![stream], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(keys)
}

/// Remembers the SCHEMA message a source sent for a merged stream.
pub fn save_schema(
    conn: &Connection,
    stream: &str,
    source: &str,
    schema: &SchemaMessage,
) -> Result<(), MergeError> {
    let text = serde_json::to_string(&Message::Schema(schema.clone()).to_value())
        .expect("a JSON value always serialises");
    conn.execute(
        "INSERT INTO merge_schemas (stream, source, schema) VALUES (?1, ?2, ?3)
         ON CONFLICT (stream, source) DO UPDATE SET schema = excluded.schema",
        params![stream, source, text],
    )?;
    Ok(())
}

/// The SCHEMA messages the sources of a merged stream sent last, by source name.
pub fn load_schemas(
    conn: &Connection,
    stream: &str,
) -> Result<Vec<(String, SchemaMessage)>, MergeError> {
    let mut stmt =
        conn.prepare("SELECT source, schema FROM merge_schemas WHERE stream = ?1 ORDER BY source")?;
    let rows = stmt.query_map(params![stream], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (source, text) = row?;
        let parsed = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| Message::from_value(v).ok());
        match parsed {
            Some(Message::Schema(s)) => out.push((source, s)),
            _ => {
                return Err(MergeError::data(format!(
                    "the stored schema of source `{source}` of merged stream `{stream}` is unreadable"
                )));
            }
        }
    }
    Ok(out)
}

/// One conflict-log row to insert.
#[derive(Debug, Clone)]
pub struct NewConflict<'a> {
    /// The merged stream.
    pub stream: &'a str,
    /// The key (JSON array text).
    pub key: &'a str,
    /// The common field.
    pub field: &'a str,
    /// The candidates by source (JSON object text).
    pub candidates: String,
    /// The winning value (JSON text), if any.
    pub winner: Option<String>,
    /// The winning source, if any.
    pub winning_source: Option<&'a str>,
    /// The rule.
    pub rule: &'a str,
    /// `resolved`, `quarantined`, `failed` or `null_key`.
    pub outcome: &'a str,
    /// The run.
    pub run_id: &'a str,
    /// When (RFC 3339, UTC).
    pub logged_at: &'a str,
}

/// Appends a row to the conflict log.
pub fn insert_conflict(conn: &Connection, c: &NewConflict<'_>) -> Result<(), MergeError> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO merge_conflicts
             (stream, key, field, candidates, winner, winning_source, rule, outcome, run_id, logged_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    stmt.execute(params![
        c.stream,
        c.key,
        c.field,
        c.candidates,
        c.winner,
        c.winning_source,
        c.rule,
        c.outcome,
        c.run_id,
        c.logged_at
    ])?;
    Ok(())
}

/// A conflict-log row the resolver holds until its batch is written (see [`insert_conflicts`]).
#[derive(Debug, Clone)]
pub struct ConflictRow {
    /// The key (JSON array text).
    pub key: String,
    /// The common field.
    pub field: String,
    /// The candidates by source (JSON object text).
    pub candidates: String,
    /// The winning value (JSON text), if any.
    pub winner: Option<String>,
    /// The winning source, if any.
    pub winning_source: Option<String>,
    /// The rule.
    pub rule: &'static str,
    /// `resolved`, `quarantined`, `failed` or `null_key`.
    pub outcome: &'static str,
    /// When (RFC 3339, UTC).
    pub logged_at: String,
}

/// Rows per multi-row INSERT: one statement per this many rows instead of one per row saves
/// most of SQLite's per-statement work (binding stays per value; 10 × 32 values is far below
/// SQLite's limit on parameters).
const ROWS_PER_INSERT: usize = 32;

/// `INSERT INTO {table} ({columns}) VALUES (?, …), …` with `rows` groups of `width` parameters.
fn multi_row_insert(head: &str, width: usize, rows: usize) -> String {
    let group = format!("({})", vec!["?"; width].join(", "));
    format!("{head} VALUES {}", vec![group; rows].join(", "))
}

/// Runs the cached statement `sql` once per group of rows: full groups of [`ROWS_PER_INSERT`]
/// through `full`, the rest one row at a time through `one`; `bind` gives one row's values.
fn insert_rows<'a, T, const W: usize>(
    conn: &Connection,
    full: &str,
    one: &str,
    rows: &'a [T],
    bind: impl Fn(&'a T) -> [&'a dyn rusqlite::ToSql; W],
) -> Result<(), MergeError> {
    let whole = rows.len() - rows.len() % ROWS_PER_INSERT;
    let (head, tail) = rows.split_at(whole);
    for (sql, groups) in [(full, head.chunks(ROWS_PER_INSERT)), (one, tail.chunks(1))] {
        let mut stmt = conn.prepare_cached(sql)?;
        for group in groups {
            let mut i = 0;
            for row in group {
                for v in bind(row) {
                    i += 1;
                    stmt.raw_bind_parameter(i, v)?;
                }
            }
            stmt.raw_execute()?;
        }
    }
    Ok(())
}

/// Appends rows to the conflict log of `stream`, in order (their ids follow that order).
pub fn insert_conflicts(
    conn: &Connection,
    stream: &str,
    run_id: &str,
    rows: &[ConflictRow],
) -> Result<(), MergeError> {
    const HEAD: &str = "INSERT INTO merge_conflicts
        (stream, key, field, candidates, winner, winning_source, rule, outcome, run_id, logged_at)";
    static FULL: LazyLock<String> = LazyLock::new(|| multi_row_insert(HEAD, 10, ROWS_PER_INSERT));
    static ONE: LazyLock<String> = LazyLock::new(|| multi_row_insert(HEAD, 10, 1));
    insert_rows(conn, &FULL, &ONE, rows, |c| {
        [
            &stream,
            &c.key,
            &c.field,
            &c.candidates,
            &c.winner,
            &c.winning_source,
            &c.rule,
            &c.outcome,
            &run_id,
            &c.logged_at,
        ]
    })
}

/// Notes that the records of `keys` (each with its mark) were sent by `run_id` and await the
/// loader (see [`note_unconfirmed`]).
pub fn note_unconfirmed_many(
    conn: &Connection,
    stream: &str,
    run_id: &str,
    keys: &[(u64, String)],
) -> Result<(), MergeError> {
    const HEAD: &str = "INSERT OR IGNORE INTO merge_unconfirmed (stream, run_id, mark, key)";
    static FULL: LazyLock<String> = LazyLock::new(|| multi_row_insert(HEAD, 4, ROWS_PER_INSERT));
    static ONE: LazyLock<String> = LazyLock::new(|| multi_row_insert(HEAD, 4, 1));
    let marks: Vec<i64> = keys.iter().map(|(m, _)| mark_sql(*m)).collect();
    let rows: Vec<(&i64, &String)> = marks.iter().zip(keys.iter().map(|(_, k)| k)).collect();
    insert_rows(conn, &FULL, &ONE, &rows, |(mark, key)| {
        [&stream, &run_id, *mark, *key]
    })
}

/// Notes that the record of `key` was sent under `mark` of `run_id` and awaits the loader.
pub fn note_unconfirmed(
    conn: &Connection,
    stream: &str,
    run_id: &str,
    mark: u64,
    key: &str,
) -> Result<(), MergeError> {
    let mut stmt = conn.prepare_cached(
        "INSERT OR IGNORE INTO merge_unconfirmed (stream, run_id, mark, key) VALUES (?1, ?2, ?3, ?4)",
    )?;
    stmt.execute(params![stream, run_id, mark_sql(mark), key])?;
    Ok(())
}

fn mark_sql(mark: u64) -> i64 {
    i64::try_from(mark).unwrap_or(i64::MAX)
}

/// Forgets the keys of `run_id` sent before `mark` (the loader confirmed them); `None`: all.
pub fn confirm(
    conn: &Connection,
    stream: &str,
    run_id: &str,
    before: Option<u64>,
) -> Result<usize, MergeError> {
    let n = match before {
        Some(m) => conn.execute(
            "DELETE FROM merge_unconfirmed WHERE stream = ?1 AND run_id = ?2 AND mark < ?3",
            params![stream, run_id, mark_sql(m)],
        )?,
        None => conn.execute(
            "DELETE FROM merge_unconfirmed WHERE stream = ?1 AND run_id = ?2",
            params![stream, run_id],
        )?,
    };
    Ok(n)
}

/// Keys that earlier runs sent but no loader confirmed (those runs failed or crashed).
pub fn unconfirmed_keys(
    conn: &Connection,
    stream: &str,
    run_id: &str,
) -> Result<Vec<String>, MergeError> {
    let mut stmt = conn.prepare(
        "SELECT DISTINCT key FROM merge_unconfirmed WHERE stream = ?1 AND run_id <> ?2 ORDER BY key",
    )?;
    let keys = stmt
        .query_map(params![stream, run_id], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(keys)
}

/// Drops the unconfirmed keys of every run but `run_id` (after they were sent again).
pub fn forget_other_runs(conn: &Connection, stream: &str, run_id: &str) -> Result<(), MergeError> {
    conn.execute(
        "DELETE FROM merge_unconfirmed WHERE stream = ?1 AND run_id <> ?2",
        params![stream, run_id],
    )?;
    Ok(())
}

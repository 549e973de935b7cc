//! The SQLite tables of merged streams: key rows, schemas, the conflict log's inserts and the
//! sends of each run. Every function works on the connection of a [`super::MergedDb`].

use std::sync::LazyLock;

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Result;
use crate::singer::message::SchemaMessage;
use crate::store::merged::{ConflictRow, EntityRow, KeyedRecord};

/// The tables: the store's migrations 4, 6, 9, 10 and 11.
pub(crate) const MIGRATIONS: [&str; 5] = [
    include_str!("../../migrations/0004_merged_streams.sql"),
    include_str!("../../migrations/0006_merge_runs.sql"),
    include_str!("../../migrations/0009_merge_sends.sql"),
    include_str!("../../migrations/0010_conflict_log_index.sql"),
    include_str!("../../migrations/0011_merge_rows.sql"),
];

/// Creates the tables when missing, or upgrades them (the system store does this on open; this
/// serves bare connections such as tests and benchmarks). Migrations 4, 6 and 10 are
/// idempotent; 9 and 11 are not, so each runs only while what it makes is missing (the table
/// `merge_sends`, the conflict log's `fields` column), under a savepoint so that a failure
/// leaves the tables as they were.
pub(super) fn migrate(conn: &Connection) -> Result<()> {
    let state: (bool, bool, bool) = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'merge_sends'),
                    EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'index'
                                AND name = 'merge_conflicts_by_time'),
                    EXISTS (SELECT 1 FROM pragma_table_info('merge_conflicts')
                             WHERE name = 'fields')",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let todo: &[&str] = match state {
        (false, _, _) => &MIGRATIONS,
        (true, true, _) => &MIGRATIONS[3..],
        (true, false, false) => &MIGRATIONS[4..],
        (true, false, true) => return Ok(()),
    };
    conn.execute_batch("SAVEPOINT merge_migrate")?;
    let applied = todo.iter().try_for_each(|m| conn.execute_batch(m));
    match applied {
        Ok(()) => conn.execute_batch("RELEASE merge_migrate")?,
        Err(e) => {
            conn.execute_batch("ROLLBACK TO merge_migrate; RELEASE merge_migrate")?;
            return Err(e.into());
        }
    }
    Ok(())
}

pub(super) use crate::store::merged::resolved_record;

/// Reads one key's row.
pub(super) fn load_entity(conn: &Connection, stream: &str, key: &str) -> Result<Option<EntityRow>> {
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

/// Writes one key's row. `sent`: the record was sent to the target by the run with this id
/// in `merge_sends` (see [`sender_id`]) under this mark; `None` keeps what the row held.
pub(super) fn save_entity(
    conn: &Connection,
    stream: &str,
    key: &str,
    row: &EntityRow,
    sent: Option<(i64, u64)>,
) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO merge_entities
             (stream, key, candidates, resolved, quarantined, sent_by, sent_mark)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (stream, key) DO UPDATE SET candidates = excluded.candidates,
             resolved = excluded.resolved, quarantined = excluded.quarantined,
             sent_by = coalesce(excluded.sent_by, sent_by),
             sent_mark = coalesce(excluded.sent_mark, sent_mark)",
    )?;
    stmt.execute(params![
        stream,
        key,
        row.candidates,
        row.resolved,
        i64::from(row.quarantined),
        sent.map(|(id, _)| id),
        sent.map(|(_, mark)| mark_sql(mark)),
    ])?;
    Ok(())
}

/// The resolved table of a merged stream: key and the record last sent, in key order.
pub(super) fn resolved_records(conn: &Connection, stream: &str) -> Result<Vec<KeyedRecord>> {
    let mut stmt = conn.prepare(
        "SELECT key, resolved, candidates FROM merge_entities
          WHERE stream = ?1 AND resolved IS NOT NULL ORDER BY key",
    )?;
    let rows = stmt.query_map(params![stream], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (key, resolved, candidates) = row?;
        let record = resolved_record(stream, &key, &resolved, &candidates)?;
        out.push((key, record));
    }
    Ok(out)
}

/// Keys of a merged stream currently held back by a `quarantine` rule.
pub(super) fn quarantined_keys(conn: &Connection, stream: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT key FROM merge_entities WHERE stream = ?1 AND quarantined = 1 ORDER BY key",
    )?;
    let keys = stmt
        .query_map(params![stream], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(keys)
}

/// Remembers the SCHEMA message a source sent for a merged stream.
pub(super) fn save_schema(
    conn: &Connection,
    stream: &str,
    source: &str,
    schema: &SchemaMessage,
) -> Result<()> {
    let text = crate::store::merged::schema_text(schema);
    conn.execute(
        "INSERT INTO merge_schemas (stream, source, schema) VALUES (?1, ?2, ?3)
         ON CONFLICT (stream, source) DO UPDATE SET schema = excluded.schema",
        params![stream, source, text],
    )?;
    Ok(())
}

/// The SCHEMA messages the sources of a merged stream sent last, by source name.
pub(super) fn load_schemas(
    conn: &Connection,
    stream: &str,
) -> Result<Vec<(String, SchemaMessage)>> {
    let mut stmt =
        conn.prepare("SELECT source, schema FROM merge_schemas WHERE stream = ?1 ORDER BY source")?;
    let rows = stmt.query_map(params![stream], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (source, text) = row?;
        let schema = crate::store::merged::stored_schema(stream, &source, &text)?;
        out.push((source, schema));
    }
    Ok(out)
}

/// The id the next conflict-log row gets: its entries take the ids from there on, one per field.
/// Read inside the write transaction that inserts, so that no other writer takes the same ids.
pub(super) fn next_conflict_id(conn: &Connection) -> Result<i64> {
    let last: Option<i64> = conn
        .prepare_cached("SELECT id + n FROM merge_conflicts ORDER BY id DESC LIMIT 1")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(last.unwrap_or(1))
}

/// Rows per multi-row INSERT: one statement per this many rows instead of one per row saves
/// most of SQLite's per-statement work (binding stays per value; 32 × 7 values is far below
/// SQLite's limit on parameters).
const ROWS_PER_INSERT: usize = 32;

/// `INSERT INTO {table} ({columns}) VALUES (?, …), …` with `rows` groups of `width` parameters.
fn multi_row_insert(head: &str, width: usize, rows: usize) -> String {
    let group = format!("({})", vec!["?"; width].join(", "));
    format!("{head} VALUES {}", vec![group; rows].join(", "))
}

/// Appends rows to the conflict log of `stream`, in order, their entries numbered from `first`
/// (see [`next_conflict_id`]); returns the id after the last entry.
pub(super) fn insert_conflicts(
    conn: &Connection,
    stream: &str,
    run_id: &str,
    first: i64,
    rows: &[ConflictRow],
) -> Result<i64> {
    const HEAD: &str =
        "INSERT INTO merge_conflicts (id, stream, key, run_id, logged_at, n, fields)";
    const WIDTH: usize = 7;
    static FULL: LazyLock<String> =
        LazyLock::new(|| multi_row_insert(HEAD, WIDTH, ROWS_PER_INSERT));
    static ONE: LazyLock<String> = LazyLock::new(|| multi_row_insert(HEAD, WIDTH, 1));
    let whole = rows.len() - rows.len() % ROWS_PER_INSERT;
    let (head, tail) = rows.split_at(whole);
    let mut id = first;
    for (sql, groups) in [
        (&*FULL, head.chunks(ROWS_PER_INSERT)),
        (&*ONE, tail.chunks(1)),
    ] {
        let mut stmt = conn.prepare_cached(sql)?;
        for group in groups {
            let mut i = 0;
            for row in group {
                let values: [&dyn rusqlite::ToSql; WIDTH] = [
                    &id,
                    &stream,
                    &row.key,
                    &run_id,
                    &row.logged_at,
                    &row.n,
                    &row.fields,
                ];
                for v in values {
                    i += 1;
                    stmt.raw_bind_parameter(i, v)?;
                }
                id += row.n;
            }
            stmt.raw_execute()?;
        }
    }
    Ok(id)
}

/// The id in `merge_sends` of `run_id` sending records of `stream`, adding the row when
/// missing. Called inside the write transaction that first refers to it, so the row and the
/// keys naming it commit (or roll back) together.
pub(super) fn sender_id(conn: &Connection, stream: &str, run_id: &str) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO merge_sends (stream, run_id) VALUES (?1, ?2)
         ON CONFLICT (stream, run_id) DO NOTHING",
    )?
    .execute(params![stream, run_id])?;
    let id = conn
        .prepare_cached("SELECT id FROM merge_sends WHERE stream = ?1 AND run_id = ?2")?
        .query_row(params![stream, run_id], |r| r.get(0))?;
    Ok(id)
}

fn mark_sql(mark: u64) -> i64 {
    i64::try_from(mark).unwrap_or(i64::MAX)
}

/// The loader confirmed the keys of `run_id` sent before `mark`; `None`: all of them (the run's
/// row goes, and with it every mark naming it).
pub(super) fn confirm(
    conn: &Connection,
    stream: &str,
    run_id: &str,
    before: Option<u64>,
) -> Result<()> {
    match before {
        Some(m) => conn
            .prepare_cached(
                "UPDATE merge_sends SET confirmed_before = max(confirmed_before, ?3)
                 WHERE stream = ?1 AND run_id = ?2",
            )?
            .execute(params![stream, run_id, mark_sql(m)])?,
        None => conn
            .prepare_cached("DELETE FROM merge_sends WHERE stream = ?1 AND run_id = ?2")?
            .execute(params![stream, run_id])?,
    };
    Ok(())
}

/// Keys and records that runs other than `run_id` sent but no loader confirmed (those runs
/// failed or crashed), in key order. Reads the stream's keys only when such a run exists.
pub(super) fn unconfirmed_records(
    conn: &Connection,
    stream: &str,
    run_id: &str,
) -> Result<Vec<KeyedRecord>> {
    let others: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM merge_sends WHERE stream = ?1 AND run_id <> ?2)",
        )?
        .query_row(params![stream, run_id], |r| r.get(0))?;
    if !others {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare(
        "SELECT e.key, e.resolved, e.candidates
           FROM merge_entities e JOIN merge_sends s ON s.id = e.sent_by
          WHERE e.stream = ?1 AND s.stream = ?1 AND s.run_id <> ?2
            AND e.sent_mark >= s.confirmed_before AND e.resolved IS NOT NULL
          ORDER BY e.key",
    )?;
    let rows = stmt
        .query_map(params![stream, run_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(key, resolved, candidates)| {
            let record = resolved_record(stream, &key, &resolved, &candidates)?;
            Ok((key, record))
        })
        .collect()
}

/// Hands the keys other runs left unconfirmed (see [`unconfirmed_records`]) to the sender
/// `sender` under `mark`, after they were sent again, and drops the other runs' rows.
pub(super) fn take_over_unconfirmed(
    conn: &Connection,
    stream: &str,
    run_id: &str,
    sender: i64,
    mark: u64,
) -> Result<()> {
    conn.execute(
        "UPDATE merge_entities SET sent_by = ?3, sent_mark = ?4
          WHERE stream = ?1 AND resolved IS NOT NULL AND EXISTS (
                SELECT 1 FROM merge_sends s
                 WHERE s.id = merge_entities.sent_by AND s.stream = ?1 AND s.run_id <> ?2
                   AND merge_entities.sent_mark >= s.confirmed_before)",
        params![stream, run_id, sender, mark_sql(mark)],
    )?;
    conn.execute(
        "DELETE FROM merge_sends WHERE stream = ?1 AND run_id <> ?2",
        params![stream, run_id],
    )?;
    Ok(())
}

/// Every key sent but not yet confirmed, of any stream and run: (stream, run, mark, key), by
/// mark and key. For tests and inspection.
pub(super) fn unconfirmed(conn: &Connection) -> Result<Vec<(String, String, i64, String)>> {
    let mut stmt = conn.prepare(
        "SELECT e.stream, s.run_id, e.sent_mark, e.key
           FROM merge_entities e JOIN merge_sends s ON s.id = e.sent_by
          WHERE e.sent_mark >= s.confirmed_before
          ORDER BY e.sent_mark, e.key",
    )?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

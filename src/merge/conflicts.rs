//! The conflict log: listing with filters, one entry, counts per run, and retention.

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params_from_iter};
use serde::Serialize;
use serde_json::Value;

use super::MergeError;
use super::store::migrate;

/// One logged disagreement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConflictEntry {
    /// The entry's id (for `dsm conflicts show`).
    pub id: i64,
    /// The merged stream.
    pub stream: String,
    /// The key, as a JSON array (`null` for a record without key).
    pub key: Value,
    /// The common field.
    pub field: String,
    /// The candidate values by source.
    pub candidates: Value,
    /// The winning value, when one won.
    pub winner: Option<Value>,
    /// The winning source, when one won.
    pub winning_source: Option<String>,
    /// The rule that decided.
    pub rule: String,
    /// `resolved`, `quarantined`, `failed` or `null_key`.
    pub outcome: String,
    /// The run.
    pub run_id: String,
    /// When (RFC 3339, UTC).
    pub logged_at: String,
}

/// Which entries to list.
#[derive(Debug, Clone, Default)]
pub struct ConflictFilter {
    /// Only this merged stream.
    pub stream: Option<String>,
    /// Only entries where this source had a candidate.
    pub source: Option<String>,
    /// Only entries logged at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only this run.
    pub run_id: Option<String>,
    /// At most this many (newest first).
    pub limit: Option<u32>,
}

/// How many conflicts a run logged for a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunConflictCount {
    /// The run.
    pub run_id: String,
    /// The merged stream.
    pub stream: String,
    /// Rows logged.
    pub conflicts: u64,
    /// Of which quarantined (including records without key).
    pub quarantined: u64,
    /// Of which failed the run.
    pub failed: u64,
    /// When the run logged its first entry.
    pub first_logged_at: String,
}

fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn where_clause(filter: &ConflictFilter) -> (String, Vec<SqlValue>) {
    let mut clauses = Vec::new();
    let mut args = Vec::new();
    if let Some(s) = &filter.stream {
        args.push(SqlValue::Text(s.clone()));
        clauses.push(format!("stream = ?{}", args.len()));
    }
    if let Some(s) = &filter.source {
        args.push(SqlValue::Text(s.clone()));
        clauses.push(format!(
            "EXISTS (SELECT 1 FROM json_each(candidates) WHERE json_each.key = ?{})",
            args.len()
        ));
    }
    if let Some(t) = filter.since {
        args.push(SqlValue::Text(time_text(t)));
        clauses.push(format!("logged_at >= ?{}", args.len()));
    }
    if let Some(r) = &filter.run_id {
        args.push(SqlValue::Text(r.clone()));
        clauses.push(format!("run_id = ?{}", args.len()));
    }
    let sql = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    (sql, args)
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

fn entry(r: &Row<'_>) -> rusqlite::Result<ConflictEntry> {
    Ok(ConflictEntry {
        id: r.get(0)?,
        stream: r.get(1)?,
        key: json(&r.get::<_, String>(2)?),
        field: r.get(3)?,
        candidates: json(&r.get::<_, String>(4)?),
        winner: r.get::<_, Option<String>>(5)?.map(|t| json(&t)),
        winning_source: r.get(6)?,
        rule: r.get(7)?,
        outcome: r.get(8)?,
        run_id: r.get(9)?,
        logged_at: r.get(10)?,
    })
}

const COLUMNS: &str =
    "id, stream, key, field, candidates, winner, winning_source, rule, outcome, run_id, logged_at";

/// Lists entries, newest first.
pub fn list(conn: &Connection, filter: &ConflictFilter) -> Result<Vec<ConflictEntry>, MergeError> {
    migrate(conn)?;
    let (clause, args) = where_clause(filter);
    let limit = filter
        .limit
        .map(|l| format!(" LIMIT {l}"))
        .unwrap_or_default();
    let sql = format!("SELECT {COLUMNS} FROM merge_conflicts{clause} ORDER BY id DESC{limit}");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), entry)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// One entry by id.
pub fn show(conn: &Connection, id: i64) -> Result<Option<ConflictEntry>, MergeError> {
    migrate(conn)?;
    let sql = format!("SELECT {COLUMNS} FROM merge_conflicts WHERE id = ?1");
    Ok(conn.query_row(&sql, [id], entry).optional()?)
}

/// Counts per run and stream (newest run first), with the same filters as [`list`].
pub fn counts(
    conn: &Connection,
    filter: &ConflictFilter,
) -> Result<Vec<RunConflictCount>, MergeError> {
    migrate(conn)?;
    let (clause, args) = where_clause(filter);
    let sql = format!(
        "SELECT run_id, stream, COUNT(*),
                SUM(outcome IN ('quarantined', 'null_key')), SUM(outcome = 'failed'), MIN(logged_at)
         FROM merge_conflicts{clause} GROUP BY run_id, stream ORDER BY MIN(id) DESC"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        Ok(RunConflictCount {
            run_id: r.get(0)?,
            stream: r.get(1)?,
            conflicts: r.get::<_, i64>(2)?.try_into().unwrap_or(0),
            quarantined: r.get::<_, i64>(3)?.try_into().unwrap_or(0),
            failed: r.get::<_, i64>(4)?.try_into().unwrap_or(0),
            first_logged_at: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Deletes entries logged before `older_than` (optionally of one stream); returns how many.
pub fn prune(
    conn: &Connection,
    older_than: DateTime<Utc>,
    stream: Option<&str>,
) -> Result<usize, MergeError> {
    migrate(conn)?;
    let cutoff = time_text(older_than);
    let streams = match stream {
        Some(s) => vec![s.to_owned()],
        // Stream by stream, so each delete walks the index on (stream, logged_at); the
        // streams themselves are found by hopping from one to the next in that index.
        None => conn
            .prepare(
                "WITH RECURSIVE s(name) AS (
                     SELECT min(stream) FROM merge_conflicts
                     UNION ALL
                     SELECT (SELECT min(stream) FROM merge_conflicts WHERE stream > s.name)
                       FROM s WHERE s.name IS NOT NULL)
                 SELECT name FROM s WHERE name IS NOT NULL",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?,
    };
    let mut delete =
        conn.prepare_cached("DELETE FROM merge_conflicts WHERE stream = ?1 AND logged_at < ?2")?;
    let mut n = 0;
    for s in &streams {
        n += delete.execute((s, &cutoff))?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::store::{NewConflict, insert_conflict};

    fn log(conn: &Connection, stream: &str, sources: &[&str], run: &str, at: &str) {
        let cands: serde_json::Map<String, Value> = sources
            .iter()
            .map(|s| ((*s).to_owned(), Value::from(1)))
            .collect();
        insert_conflict(
            conn,
            &NewConflict {
                stream,
                key: "[1]",
                field: "f",
                candidates: Value::Object(cands).to_string(),
                winner: Some("1".into()),
                winning_source: Some(sources[0]),
                rule: "priority",
                outcome: if run == "r2" {
                    "quarantined"
                } else {
                    "resolved"
                },
                run_id: run,
                logged_at: at,
            },
        )
        .unwrap();
    }

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        log(&conn, "a", &["x", "y"], "r1", "2024-01-01T00:00:00.000Z");
        log(&conn, "a", &["y", "z"], "r2", "2024-02-01T00:00:00.000Z");
        log(&conn, "b", &["x", "z"], "r2", "2024-03-01T00:00:00.000Z");
        conn
    }

    fn ids(v: Vec<ConflictEntry>) -> Vec<i64> {
        v.into_iter().map(|e| e.id).collect()
    }

    #[test]
    fn list_filters_by_stream_source_since_and_run() {
        let conn = db();
        let all = ConflictFilter::default();
        assert_eq!(ids(list(&conn, &all).unwrap()), [3, 2, 1]);
        let f = |f: ConflictFilter| ids(list(&conn, &f).unwrap());
        assert_eq!(
            f(ConflictFilter {
                stream: Some("a".into()),
                ..Default::default()
            }),
            [2, 1]
        );
        assert_eq!(
            f(ConflictFilter {
                source: Some("x".into()),
                ..Default::default()
            }),
            [3, 1]
        );
        assert_eq!(
            f(ConflictFilter {
                since: Some("2024-01-15T00:00:00Z".parse().unwrap()),
                source: Some("z".into()),
                ..Default::default()
            }),
            [3, 2]
        );
        assert_eq!(
            f(ConflictFilter {
                run_id: Some("r1".into()),
                ..Default::default()
            }),
            [1]
        );
        let e = show(&conn, 2).unwrap().unwrap();
        assert_eq!(e.candidates, serde_json::json!({"y": 1, "z": 1}));
        assert_eq!(e.key, serde_json::json!([1]));
        assert!(show(&conn, 99).unwrap().is_none());
    }

    #[test]
    fn counts_per_run_and_prune() {
        let conn = db();
        let c = counts(&conn, &ConflictFilter::default()).unwrap();
        let summary: Vec<(&str, &str, u64, u64)> = c
            .iter()
            .map(|c| {
                (
                    c.run_id.as_str(),
                    c.stream.as_str(),
                    c.conflicts,
                    c.quarantined,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [("r2", "b", 1, 1), ("r2", "a", 1, 1), ("r1", "a", 1, 0)]
        );
        let cutoff = "2024-02-15T00:00:00Z".parse().unwrap();
        assert_eq!(prune(&conn, cutoff, Some("b")).unwrap(), 0);
        assert_eq!(prune(&conn, cutoff, None).unwrap(), 2);
        assert_eq!(ids(list(&conn, &ConflictFilter::default()).unwrap()), [3]);
    }

    #[test]
    fn a_log_made_before_version_10_loses_its_time_index_and_prunes_by_stream() {
        let conn = Connection::open_in_memory().unwrap();
        let old = &crate::merge::store::MIGRATIONS[..3];
        old.iter().for_each(|m| conn.execute_batch(m).unwrap());
        let index = |c: &Connection| -> bool {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'merge_conflicts_by_time')",
                [],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert!(index(&conn));
        migrate(&conn).unwrap();
        assert!(!index(&conn));
        // Pruning every stream walks the (stream, logged_at) index, never the whole log.
        let plan: Vec<String> = conn
            .prepare(
                "EXPLAIN QUERY PLAN DELETE FROM merge_conflicts WHERE stream = ?1 AND logged_at < ?2",
            )
            .unwrap()
            .query_map(("a", "2024"), |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter().any(|p| p.contains("merge_conflicts_by_stream")),
            "{plan:?}"
        );
        log(&conn, "a", &["x", "y"], "r1", "2024-01-01T00:00:00.000Z");
        log(&conn, "c", &["x", "y"], "r1", "2024-01-02T00:00:00.000Z");
        log(&conn, "b", &["x", "y"], "r1", "2024-05-01T00:00:00.000Z");
        let cutoff = "2024-02-01T00:00:00Z".parse().unwrap();
        assert_eq!(prune(&conn, cutoff, None).unwrap(), 2);
        let left = list(&conn, &ConflictFilter::default()).unwrap();
        assert_eq!(
            left.iter().map(|e| e.stream.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
    }
}

//! The conflict log on SQLite: listing with filters, one entry, counts per run, and retention.

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params_from_iter};

use super::tables::migrate;
use crate::error::{Error, Result};
use crate::store::merged::{
    ConflictEntry, ConflictFilter, LogRow, RunConflictCount, collect_entries,
};

fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The `WHERE` clause and its arguments for `filter`, over the log's rows `c`; the source
/// filter reads their fields as `f` (`json_each(c.fields)`).
fn where_clause(filter: &ConflictFilter) -> (String, Vec<SqlValue>) {
    let mut clauses = Vec::new();
    let mut args = Vec::new();
    if let Some(s) = &filter.stream {
        args.push(SqlValue::Text(s.clone()));
        clauses.push(format!("c.stream = ?{}", args.len()));
    }
    if let Some(s) = &filter.source {
        args.push(SqlValue::Text(s.clone()));
        clauses.push(format!(
            "EXISTS (SELECT 1 FROM json_each(f.value, '$[1]') s WHERE s.key = ?{})",
            args.len()
        ));
    }
    if let Some(t) = filter.since {
        args.push(SqlValue::Text(time_text(t)));
        clauses.push(format!("c.logged_at >= ?{}", args.len()));
    }
    if let Some(r) = &filter.run_id {
        args.push(SqlValue::Text(r.clone()));
        clauses.push(format!("c.run_id = ?{}", args.len()));
    }
    let sql = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    (sql, args)
}

const LOG_COLUMNS: &str = "c.id, c.stream, c.key, c.run_id, c.logged_at, c.fields";

fn read_row(r: &Row<'_>) -> rusqlite::Result<LogRow> {
    Ok(LogRow {
        id: r.get(0)?,
        stream: r.get(1)?,
        key: r.get(2)?,
        run_id: r.get(3)?,
        logged_at: r.get(4)?,
        fields: r.get(5)?,
    })
}

/// Lists entries, newest first.
///
/// The rows are read newest first and taken apart here, so that a limit stops the reading
/// early: expanding the fields in SQL would sort the whole log before the first entry.
pub(super) fn list(conn: &Connection, filter: &ConflictFilter) -> Result<Vec<ConflictEntry>> {
    migrate(conn)?;
    let (clause, args) = where_clause(&ConflictFilter {
        source: None,
        ..filter.clone()
    });
    let sql = format!("SELECT {LOG_COLUMNS} FROM merge_conflicts c{clause} ORDER BY c.id DESC");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), read_row)?;
    collect_entries(rows.map(|r| r.map_err(Error::from)), filter)
}

/// One entry by id.
pub(super) fn show(conn: &Connection, id: i64) -> Result<Option<ConflictEntry>> {
    migrate(conn)?;
    // The row holding entry `id` is the last one starting at or before it.
    let sql = format!(
        "SELECT {LOG_COLUMNS} FROM merge_conflicts c
          WHERE c.id = (SELECT max(id) FROM merge_conflicts WHERE id <= ?1)"
    );
    let Some(row) = conn.query_row(&sql, [id], read_row).optional()? else {
        return Ok(None);
    };
    Ok(row.entries()?.into_iter().find(|e| e.id == id))
}

/// Counts per run and stream (newest run first), with the same filters as [`list`].
pub(super) fn counts(conn: &Connection, filter: &ConflictFilter) -> Result<Vec<RunConflictCount>> {
    migrate(conn)?;
    let (clause, args) = where_clause(filter);
    let sql = format!(
        "SELECT c.run_id, c.stream, COUNT(*),
                SUM(f.value ->> 5 IN ('quarantined', 'null_key')), SUM(f.value ->> 5 = 'failed'),
                MIN(c.logged_at)
         FROM merge_conflicts c, json_each(c.fields) f{clause}
         GROUP BY c.run_id, c.stream ORDER BY MIN(c.id) DESC"
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
pub(super) fn prune(
    conn: &Connection,
    older_than: DateTime<Utc>,
    stream: Option<&str>,
) -> Result<usize> {
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
    // A row holds `n` entries.
    let mut delete = conn.prepare_cached(
        "DELETE FROM merge_conflicts WHERE stream = ?1 AND logged_at < ?2 RETURNING n",
    )?;
    let mut n = 0;
    for s in &streams {
        let mut rows = delete.query((s, &cutoff))?;
        while let Some(row) = rows.next()? {
            n += usize::try_from(row.get::<_, i64>(0)?).unwrap_or(0);
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::super::tables::{insert_conflicts, next_conflict_id};
    use super::*;
    use crate::store::merged::{ConflictFields, FieldConflict};
    use serde_json::Value;

    /// Logs one row with one field per name in `fields`, each with a candidate of value 1 from
    /// every source in `sources`.
    fn log_fields(
        conn: &Connection,
        stream: &str,
        fields: &[&str],
        sources: &[&str],
        run: &str,
        at: &str,
    ) {
        let cands: serde_json::Map<String, Value> = sources
            .iter()
            .map(|s| ((*s).to_owned(), Value::from(1)))
            .collect();
        let one = Value::from(1);
        let mut logged = ConflictFields::default();
        for field in fields {
            let quarantined = run == "r2";
            logged.push(&FieldConflict {
                field,
                candidates: &cands,
                winner: (!quarantined).then_some((&one, sources[0])),
                rule: "priority",
                outcome: if quarantined {
                    "quarantined"
                } else {
                    "resolved"
                },
            });
        }
        let row = logged.into_row("[1]".into(), at.into()).unwrap();
        let first = next_conflict_id(conn).unwrap();
        insert_conflicts(conn, stream, run, first, &[row]).unwrap();
    }

    fn log(conn: &Connection, stream: &str, sources: &[&str], run: &str, at: &str) {
        log_fields(conn, stream, &["f"], sources, run, at);
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
    fn a_row_of_several_fields_lists_as_one_entry_per_field_with_ids_of_their_own() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        log(&conn, "a", &["x", "y"], "r1", "2024-01-01T00:00:00.000Z");
        // One record disagreeing on three fields; only the second has a candidate from `z`.
        let (one, two) = (Value::from(1), Value::from(2));
        let xy = serde_json::json!({"x": 1, "y": 2});
        let xz = serde_json::json!({"x": 1, "z": 2});
        let mut logged = ConflictFields::default();
        for (field, cands, outcome) in [
            ("name", &xy, "resolved"),
            ("city", &xz, "quarantined"),
            ("size", &xy, "resolved"),
        ] {
            logged.push(&FieldConflict {
                field,
                candidates: cands,
                winner: (outcome == "resolved").then_some((&two, "y")),
                rule: "max",
                outcome,
            });
        }
        let row = logged
            .into_row("[7]".into(), "2024-01-02T00:00:00.000Z".into())
            .unwrap();
        let first = next_conflict_id(&conn).unwrap();
        assert_eq!(first, 2);
        let next = insert_conflicts(&conn, "a", "r1", first, &[row]).unwrap();
        assert_eq!(next, 5, "the row takes three ids");
        log(&conn, "a", &["x", "y"], "r1", "2024-01-03T00:00:00.000Z");

        let all = list(&conn, &ConflictFilter::default()).unwrap();
        assert_eq!(ids(all.clone()), [5, 4, 3, 2, 1]);
        let fields: Vec<&str> = all.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["f", "size", "city", "name", "f"]);
        let city = show(&conn, 3).unwrap().unwrap();
        assert_eq!(city.key, serde_json::json!([7]));
        assert_eq!(city.candidates, xz);
        assert_eq!(city.outcome, "quarantined");
        assert_eq!((city.winner, city.winning_source), (None, None));
        let size = show(&conn, 4).unwrap().unwrap();
        assert_eq!(size.winner, Some(two.clone()));
        assert_eq!(size.winning_source.as_deref(), Some("y"));
        assert_eq!(size.logged_at, "2024-01-02T00:00:00.000Z");
        assert_eq!(show(&conn, 1).unwrap().unwrap().winner, Some(one));
        assert_eq!(show(&conn, 6).unwrap(), None);
        assert_eq!(show(&conn, 0).unwrap(), None);

        // Filters and limits apply to entries, not rows.
        let by_z = ConflictFilter {
            source: Some("z".into()),
            ..ConflictFilter::default()
        };
        assert_eq!(ids(list(&conn, &by_z).unwrap()), [3]);
        let newest = ConflictFilter {
            limit: Some(2),
            ..ConflictFilter::default()
        };
        assert_eq!(ids(list(&conn, &newest).unwrap()), [5, 4]);
        let c = counts(&conn, &ConflictFilter::default()).unwrap();
        assert_eq!((c.len(), c[0].conflicts, c[0].quarantined), (1, 5, 1));
        assert_eq!(counts(&conn, &by_z).unwrap()[0].conflicts, 1);
        // Pruning counts the entries it removes.
        let cutoff = "2024-01-02T12:00:00Z".parse().unwrap();
        assert_eq!(prune(&conn, cutoff, None).unwrap(), 4);
        assert_eq!(ids(list(&conn, &ConflictFilter::default()).unwrap()), [5]);
    }

    #[test]
    fn a_log_made_before_version_10_loses_its_time_index_and_prunes_by_stream() {
        let conn = Connection::open_in_memory().unwrap();
        let old = &super::super::tables::MIGRATIONS[..3];
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

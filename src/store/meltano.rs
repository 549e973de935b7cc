//! Reading the `state` table of a Meltano system database (`.meltano/meltano.db`), read-only:
//! dsm never writes to Meltano's database.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension as _};
use serde_json::{Map, Value};

use super::state::{StateId, StoredState};
use crate::error::{Error, Result};

/// Where Meltano keeps its system database in a project.
pub fn default_path(project_root: &Path) -> PathBuf {
    project_root.join(".meltano").join("meltano.db")
}

/// Reads every row of Meltano's `state` table, sorted by state id.
pub fn read_states(path: &Path) -> Result<Vec<StoredState>> {
    if !path.is_file() {
        return Err(Error::config(format!(
            "no Meltano system database at `{}`",
            path.display()
        ))
        .hint("pass its path: `dsm state import-meltano PATH` (Meltano keeps it in `.meltano/meltano.db`)"));
    }
    let Some(conn) = open(path)? else {
        return Err(Error::config(format!(
            "`{}` has no `state` table",
            path.display()
        ))
        .hint("is it a Meltano system database? Meltano 2.0 and later keep state there; run any `meltano state list` once to upgrade an older one"));
    };
    let mut stmt = conn.prepare(
        "SELECT state_id, completed_state, partial_state, updated_at FROM state ORDER BY state_id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, Option<String>>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, completed, partial, updated) = row?;
        let parse = |text: Option<String>, half: &str| -> Result<Value> {
            match text.as_deref().map(str::trim) {
                None | Some("") | Some("null") => Ok(Value::Object(Default::default())),
                Some(t) => serde_json::from_str(t).map_err(|e| {
                    Error::failed(format!(
                        "the {half} state of `{id}` in Meltano's database is not valid JSON: {e}"
                    ))
                }),
            }
        };
        out.push(StoredState {
            completed: parse(completed, "completed")?,
            partial: parse(partial, "partial")?,
            updated_at: updated.as_deref().and_then(parse_meltano_time),
            state_id: StateId::new(id),
        });
    }
    Ok(out)
}

/// Opens Meltano's database read-only; `None` when it has no `state` table.
fn open(path: &Path) -> Result<Option<Connection>> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| {
        Error::failed(format!(
            "cannot open Meltano's database `{}` read-only: {e}",
            path.display()
        ))
    })?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "query_only", true)?;
    let has_state: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'state')",
        [],
        |r| r.get(0),
    )?;
    Ok(has_state.then_some(conn))
}

/// Whether Meltano's database at `path` holds state for `id` (completed or partial, not empty).
/// `false` when there is no such file or it has no `state` table.
pub fn has_state(path: &Path, id: &StateId) -> Result<bool> {
    if !path.is_file() {
        return Ok(false);
    }
    let Some(conn) = open(path)? else {
        return Ok(false);
    };
    let row: Option<(Option<String>, Option<String>)> = conn
        .query_row(
            "SELECT completed_state, partial_state FROM state WHERE state_id = ?1",
            [id.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let filled = |text: Option<String>| {
        text.and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|v| match v {
                // `{"singer_state": {}}` carries no bookmark.
                Value::Object(map) => map.iter().any(|(k, v)| {
                    !(k == "singer_state" && v.as_object().is_some_and(Map::is_empty))
                }),
                Value::Null => false,
                _ => true,
            })
    };
    Ok(row.is_some_and(|(completed, partial)| filled(completed) || filled(partial)))
}

/// Meltano (SQLAlchemy) writes naive UTC times like `2024-05-01 13:19:49.707894`.
fn parse_meltano_time(text: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
        .or_else(|| {
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meltano_times_parse_as_utc() {
        let t = parse_meltano_time("2026-11-22 13:19:49.707894").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-22T13:19:49.707894+00:00");
        assert!(parse_meltano_time("yesterday").is_none());
    }

    #[test]
    fn a_missing_database_is_a_config_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = read_states(&tmp.path().join("meltano.db")).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            !tmp.path().join("meltano.db").exists(),
            "must not create it"
        );
    }
}

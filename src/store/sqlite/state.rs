//! [`StateStore`] on SQLite: the `state` and `state_events` tables.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::Value;

use super::{SqliteStore, glob_match, json_text, now_text, parse_json, parse_time};
use crate::error::{Error, Result};
use crate::store::state::{self, CommitOutcome, StateStore, apply_write};
use crate::store::{
    ImportReport, RunId, StateAction, StateEvent, StateId, StoredState, lease_lost_error,
};

fn read_state_row(conn: &Connection, state_id: &StateId) -> Result<Option<StoredState>> {
    let row = conn
        .query_row(
            "SELECT completed_state, partial_state, updated_at FROM state WHERE state_id = ?1",
            [state_id.as_str()],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            },
        )
        .optional()?;
    row.map(|(c, p, at)| state_from_columns(state_id.clone(), &c, &p, &at))
        .transpose()
}

fn state_from_columns(state_id: StateId, c: &str, p: &str, at: &str) -> Result<StoredState> {
    let what = format!("state `{state_id}`");
    Ok(StoredState {
        completed: parse_json(c, &what)?,
        partial: parse_json(p, &what)?,
        updated_at: Some(parse_time(at)?),
        state_id,
    })
}

fn upsert_state(
    tx: &Transaction<'_>,
    state_id: &StateId,
    completed: &Value,
    partial: &Value,
) -> Result<()> {
    tx.execute(
        "INSERT INTO state (state_id, completed_state, partial_state, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (state_id) DO UPDATE SET completed_state = excluded.completed_state,
             partial_state = excluded.partial_state, updated_at = excluded.updated_at",
        params![state_id.as_str(), json_text(completed), json_text(partial), now_text()],
    )?;
    Ok(())
}

fn record_event(
    tx: &Transaction<'_>,
    state_id: &StateId,
    action: StateAction,
    run_id: Option<&RunId>,
    detail: Option<&str>,
    payload: Option<&Value>,
) -> Result<()> {
    tx.execute(
        "INSERT INTO state_events (state_id, at, action, run_id, detail, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            state_id.as_str(),
            now_text(),
            action.as_str(),
            run_id.map(RunId::as_str),
            detail,
            payload.map(json_text)
        ],
    )?;
    // Only the newest events of a state id are kept (one index seek when there are fewer).
    tx.execute(
        "DELETE FROM state_events WHERE state_id = ?1 AND event_id <= (
             SELECT event_id FROM state_events WHERE state_id = ?1
             ORDER BY event_id DESC LIMIT 1 OFFSET ?2)",
        params![state_id.as_str(), crate::store::state::STATE_EVENTS_KEPT],
    )?;
    Ok(())
}

fn write_in(
    tx: &Transaction<'_>,
    state_id: &StateId,
    payload: &Value,
    partial: bool,
    action: StateAction,
    run_id: Option<&RunId>,
    detail: Option<&str>,
) -> Result<()> {
    let existing = read_state_row(tx, state_id)?;
    let (completed, new_partial) = apply_write(
        existing.as_ref().map(|s| (&s.completed, &s.partial)),
        payload,
        partial,
    );
    upsert_state(tx, state_id, &completed, &new_partial)?;
    record_event(tx, state_id, action, run_id, detail, Some(payload))
}

/// Refuses a run's commit once its flow's lock belongs to another run (taken over after it
/// went stale, or with `--force`).
fn check_holder(tx: &Transaction<'_>, state_id: &StateId, run_id: Option<&RunId>) -> Result<()> {
    let Some(run) = run_id else { return Ok(()) };
    let holder: Option<Option<String>> = tx
        .query_row(
            "SELECT run_id FROM flow_locks WHERE state_id = ?1",
            [state_id.as_str()],
            |r| r.get(0),
        )
        .optional()?;
    match holder {
        Some(Some(other)) if other != run.as_str() => Err(lease_lost_error(state_id, run)),
        _ => Ok(()),
    }
}

fn no_state_error(state_id: &StateId) -> Error {
    Error::config(format!("no state stored for `{state_id}`"))
        .hint("`dsm state list` shows the state ids that have state")
}

impl StateStore for SqliteStore {
    fn get_state_row(&self, state_id: &StateId) -> Result<Option<StoredState>> {
        self.read(|c| read_state_row(c, state_id))
    }

    fn commit_state(
        &self,
        state_id: &StateId,
        value_json: &str,
        partial: bool,
        run_id: Option<&RunId>,
    ) -> Result<CommitOutcome> {
        let payload = match state::payload_from_state_value(value_json) {
            Ok(p) => p,
            Err(reason) => {
                tracing::debug!(state_id = %state_id, %reason, "state value not stored");
                return Ok(CommitOutcome::Ignored(reason));
            }
        };
        let detail = if partial { "partial" } else { "complete" };
        self.write(|tx| {
            check_holder(tx, state_id, run_id)?;
            write_in(
                tx,
                state_id,
                &payload,
                partial,
                StateAction::Committed,
                run_id,
                Some(detail),
            )
        })?;
        Ok(CommitOutcome::Committed)
    }

    fn commit_states(
        &self,
        state_id: &StateId,
        values_json: &[String],
        partial: bool,
        run_id: Option<&RunId>,
    ) -> Result<Vec<CommitOutcome>> {
        let detail = if partial { "partial" } else { "complete" };
        let payloads: Vec<_> = values_json
            .iter()
            .map(|v| state::payload_from_state_value(v))
            .collect();
        self.write(|tx| {
            if payloads.iter().any(std::result::Result::is_ok) {
                check_holder(tx, state_id, run_id)?;
            }
            for payload in payloads.iter().flatten() {
                write_in(
                    tx,
                    state_id,
                    payload,
                    partial,
                    StateAction::Committed,
                    run_id,
                    Some(detail),
                )?;
            }
            Ok(())
        })?;
        Ok(payloads
            .into_iter()
            .map(|p| match p {
                Ok(_) => CommitOutcome::Committed,
                Err(reason) => {
                    tracing::debug!(state_id = %state_id, %reason, "state value not stored");
                    CommitOutcome::Ignored(reason)
                }
            })
            .collect())
    }

    fn write_state(
        &self,
        state_id: &StateId,
        payload: &Value,
        partial: bool,
        action: StateAction,
        detail: Option<&str>,
    ) -> Result<()> {
        self.write(|tx| write_in(tx, state_id, payload, partial, action, None, detail))
    }

    fn list_states(&self, pattern: Option<&str>) -> Result<Vec<StoredState>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT state_id, completed_state, partial_state, updated_at FROM state ORDER BY state_id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, comp, part, at) = row?;
                if pattern.is_none_or(|p| glob_match(p, &id)) {
                    out.push(state_from_columns(StateId::new(id), &comp, &part, &at)?);
                }
            }
            Ok(out)
        })
    }

    fn clear_state(&self, state_id: &StateId) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute("DELETE FROM state WHERE state_id = ?1", [state_id.as_str()])?;
            if n > 0 {
                record_event(tx, state_id, StateAction::Cleared, None, None, None)?;
            }
            Ok(n > 0)
        })
    }

    fn clear_all_states(&self) -> Result<usize> {
        self.write(|tx| {
            let ids: Vec<String> = {
                let mut stmt = tx.prepare("SELECT state_id FROM state")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            tx.execute("DELETE FROM state", [])?;
            for id in &ids {
                record_event(
                    tx,
                    &StateId::new(id.as_str()),
                    StateAction::Cleared,
                    None,
                    Some("all"),
                    None,
                )?;
            }
            Ok(ids.len())
        })
    }

    fn copy_state(&self, src: &StateId, dst: &StateId, remove_source: bool) -> Result<()> {
        self.write(|tx| {
            let merged = read_state_row(tx, src)?
                .map(|s| s.merged())
                .ok_or_else(|| no_state_error(src))?;
            let (action, detail) = if remove_source {
                (StateAction::Moved, format!("from {src}"))
            } else {
                (StateAction::Copied, format!("from {src}"))
            };
            write_in(tx, dst, &merged, false, action, None, Some(&detail))?;
            if remove_source && src != dst {
                tx.execute("DELETE FROM state WHERE state_id = ?1", [src.as_str()])?;
                record_event(
                    tx,
                    src,
                    StateAction::Cleared,
                    None,
                    Some(&format!("moved to {dst}")),
                    None,
                )?;
            }
            Ok(())
        })
    }

    fn import_states(
        &self,
        rows: &[StoredState],
        overwrite: bool,
        source: &str,
    ) -> Result<ImportReport> {
        self.write(|tx| {
            let mut report = ImportReport::default();
            for row in rows {
                let exists = read_state_row(tx, &row.state_id)?.is_some();
                if exists && !overwrite {
                    report.skipped.push(row.state_id.clone());
                    continue;
                }
                let as_object = |v: &Value| {
                    if v.is_object() {
                        v.clone()
                    } else {
                        Value::Object(Default::default())
                    }
                };
                let (completed, partial) = (as_object(&row.completed), as_object(&row.partial));
                upsert_state(tx, &row.state_id, &completed, &partial)?;
                let payload = serde_json::json!({"completed": completed, "partial": partial});
                record_event(
                    tx,
                    &row.state_id,
                    StateAction::Imported,
                    None,
                    Some(source),
                    Some(&payload),
                )?;
                report.imported.push(row.state_id.clone());
            }
            Ok(report)
        })
    }

    fn state_events(&self, state_id: Option<&StateId>, limit: usize) -> Result<Vec<StateEvent>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT event_id, state_id, at, action, run_id, detail, payload FROM state_events
                 WHERE ?1 IS NULL OR state_id = ?1 ORDER BY event_id LIMIT ?2",
            )?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = stmt.query_map(params![state_id.map(StateId::as_str), limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (event_id, id, at, action, run_id, detail, payload) = row?;
                out.push(StateEvent {
                    event_id,
                    at: parse_time(&at)?,
                    payload: payload
                        .as_deref()
                        .map(|p| parse_json(p, "a state event"))
                        .transpose()?,
                    state_id: StateId::new(id),
                    action,
                    run_id: run_id.map(RunId::new),
                    detail,
                });
            }
            Ok(out)
        })
    }
}

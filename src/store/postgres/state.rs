//! [`StateStore`] on PostgreSQL: the `state` and `state_events` tables. A run's commit is
//! conditional on the run still holding its flow's lease (unexpired, on the server's clock),
//! checked under a row lock in the commit's own transaction.

use postgres::GenericClient;
use postgres::types::Type;
use serde_json::Value;

use super::{PgStore, parse_json, time_ms};
use crate::error::{Error, Result};
use crate::store::sqlite::glob_match;
use crate::store::state::{self, CommitOutcome, StateStore, apply_write};
use crate::store::{
    ImportReport, RunId, StateAction, StateEvent, StateId, StoredState, lease_lost_error,
};

/// The type of a text parameter. A commit's statements are sent with their parameters' types,
/// so each is one round trip (an unnamed statement), not a prepare and an execute: a run
/// commits a bookmark every few thousand records.
const TEXT: Type = Type::TEXT;

impl PgStore {
    fn read_state_row(
        &self,
        c: &mut impl GenericClient,
        state_id: &StateId,
    ) -> Result<Option<StoredState>> {
        let row = c.query_typed_opt(
            &self.q(
                "SELECT completed_state, partial_state, {S}.epoch_ms(updated_at) FROM {S}.state
                 WHERE project_id = $1 AND state_id = $2",
            ),
            &[(&self.project, TEXT), (&state_id.as_str(), TEXT)],
        )?;
        row.map(|r| state_from(state_id.clone(), r.get(0), r.get(1), r.get(2)))
            .transpose()
    }

    fn upsert_state(
        &self,
        c: &mut impl GenericClient,
        state_id: &StateId,
        completed: &Value,
        partial: &Value,
    ) -> Result<()> {
        c.execute_typed(
            &self.q(
                "INSERT INTO {S}.state (project_id, state_id, completed_state, partial_state, updated_at)
                 VALUES ($1, $2, $3, $4, now())
                 ON CONFLICT (project_id, state_id) DO UPDATE SET completed_state = excluded.completed_state,
                     partial_state = excluded.partial_state, updated_at = excluded.updated_at",
            ),
            &[
                (&self.project, TEXT),
                (&state_id.as_str(), TEXT),
                (&completed.to_string(), TEXT),
                (&partial.to_string(), TEXT),
            ],
        )?;
        Ok(())
    }

    fn record_event(
        &self,
        c: &mut impl GenericClient,
        state_id: &StateId,
        action: StateAction,
        run_id: Option<&RunId>,
        detail: Option<&str>,
        payload: Option<&Value>,
    ) -> Result<()> {
        // Only the newest events of a state id are kept: they are numbered per state id
        // (`seq`, by a trigger), and the one that falls out is deleted by its number.
        let newest: i64 = c
            .query_typed_one(
                &self.q(
                    "INSERT INTO {S}.state_events (project_id, state_id, at, action, run_id, detail, payload)
                     VALUES ($1, $2, clock_timestamp(), $3, $4, $5, $6) RETURNING seq",
                ),
                &[
                    (&self.project, TEXT),
                    (&state_id.as_str(), TEXT),
                    (&action.as_str(), TEXT),
                    (&run_id.map(RunId::as_str), TEXT),
                    (&detail, TEXT),
                    (&payload.map(Value::to_string), TEXT),
                ],
            )?
            .get(0);
        c.execute_typed(
            &self.q("SELECT {S}.prune_state_events($1, $2, $3, $4)"),
            &[
                (&self.project, TEXT),
                (&state_id.as_str(), TEXT),
                (&newest, Type::INT8),
                (&crate::store::state::STATE_EVENTS_KEPT, Type::INT8),
            ],
        )?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments, reason = "the write's whole description")]
    fn write_in(
        &self,
        c: &mut impl GenericClient,
        state_id: &StateId,
        payload: &Value,
        partial: bool,
        action: StateAction,
        run_id: Option<&RunId>,
        detail: Option<&str>,
    ) -> Result<()> {
        let existing = self.read_state_row(c, state_id)?;
        let (completed, new_partial) = apply_write(
            existing.as_ref().map(|s| (&s.completed, &s.partial)),
            payload,
            partial,
        );
        self.upsert_state(c, state_id, &completed, &new_partial)?;
        self.record_event(c, state_id, action, run_id, detail, Some(payload))
    }

    /// A commit of one bookmark that replaces the stored state (a complete, non-empty state
    /// needs nothing of the old row): the lease check, the upsert, the event and the prune in
    /// one call of the server-side function `commit_state` (migration 24), whose statements
    /// keep their plans on the server connection, sent as one statement in one round trip. A
    /// run commits a bookmark every few thousand records; sent one by one in a transaction
    /// block, the statements were parsed and planned every time, and their round trips showed
    /// as the run's wall time on a busy host. `commit_id` makes the call safe to send again
    /// after a lost answer: the server recognises a commit it already made.
    fn replace(
        &self,
        c: &mut impl GenericClient,
        state_id: &StateId,
        payload: &str,
        run_id: Option<&RunId>,
        detail: &str,
        commit_id: &str,
    ) -> Result<()> {
        let row = c.query_typed_one(
            &self.q("SELECT {S}.commit_state($1, $2, $3, $4, $5, $6, $7, $8)"),
            &[
                (&self.project, TEXT),
                (&state_id.as_str(), TEXT),
                (&run_id.map(RunId::as_str), TEXT),
                (&payload, TEXT),
                (&StateAction::Committed.as_str(), TEXT),
                (&detail, TEXT),
                (&crate::store::state::STATE_EVENTS_KEPT, Type::INT8),
                (&commit_id, TEXT),
            ],
        )?;
        match (row.get::<_, bool>(0), run_id) {
            (false, Some(run)) => Err(lease_lost_error(state_id, run)),
            _ => Ok(()),
        }
    }

    /// Locks the flow's lease row and checks that `run_id` may still commit, by the same rule
    /// as the bookmark commit (`lease_lets_commit`, migration 24). A flow that never had a
    /// lease (`dsm state` commands, imports) has nothing to check.
    fn check_lease(
        &self,
        c: &mut impl GenericClient,
        state_id: &StateId,
        run_id: &RunId,
    ) -> Result<()> {
        let lets: Option<bool> = c
            .query_typed_one(
                &self.q("SELECT {S}.lease_lets_commit($1, $2, $3)"),
                &[
                    (&self.project, TEXT),
                    (&state_id.as_str(), TEXT),
                    (&run_id.as_str(), TEXT),
                ],
            )?
            .get(0);
        match lets {
            Some(false) => Err(lease_lost_error(state_id, run_id)),
            _ => Ok(()),
        }
    }

    fn delete_row(&self, c: &mut impl GenericClient, state_id: &StateId) -> Result<bool> {
        let n = c.execute(
            &self.q("DELETE FROM {S}.state WHERE project_id = $1 AND state_id = $2"),
            &[&self.project, &state_id.as_str()],
        )?;
        Ok(n > 0)
    }
}

fn state_from(state_id: StateId, c: String, p: String, at: i64) -> Result<StoredState> {
    let what = format!("state `{state_id}`");
    Ok(StoredState {
        completed: parse_json(&c, &what)?,
        partial: parse_json(&p, &what)?,
        updated_at: Some(time_ms(at)?),
        state_id,
    })
}

impl StateStore for PgStore {
    fn get_state_row(&self, state_id: &StateId) -> Result<Option<StoredState>> {
        self.read(|c| self.read_state_row(c, state_id))
    }

    fn commit_state(
        &self,
        state_id: &StateId,
        value_json: &str,
        partial: bool,
        run_id: Option<&RunId>,
    ) -> Result<CommitOutcome> {
        let mut out = self.commit_states(state_id, &[value_json.to_owned()], partial, run_id)?;
        Ok(out.pop().unwrap_or(CommitOutcome::Committed))
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
        if let ([Ok(payload)], false) = (payloads.as_slice(), partial)
            && state::is_nonempty_object(payload)
        {
            // A run's usual commit.
            let payload = payload.to_string();
            let commit_id = uuid::Uuid::new_v4().to_string();
            self.call(|c| self.replace(c, state_id, &payload, run_id, detail, &commit_id))?;
        } else if payloads.iter().any(std::result::Result::is_ok) {
            self.write(|tx| {
                if let Some(run) = run_id {
                    self.check_lease(tx, state_id, run)?;
                }
                for payload in payloads.iter().flatten() {
                    self.write_in(
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
        }
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
        self.write(|tx| self.write_in(tx, state_id, payload, partial, action, None, detail))
    }

    fn list_states(&self, pattern: Option<&str>) -> Result<Vec<StoredState>> {
        self.read(|c| {
            let rows = c.query(
                &self.q(
                    "SELECT state_id, completed_state, partial_state, {S}.epoch_ms(updated_at)
                     FROM {S}.state WHERE project_id = $1 ORDER BY state_id COLLATE \"C\"",
                ),
                &[&self.project],
            )?;
            let mut out = Vec::new();
            for r in rows {
                let id: String = r.get(0);
                if pattern.is_none_or(|p| glob_match(p, &id)) {
                    out.push(state_from(StateId::new(id), r.get(1), r.get(2), r.get(3))?);
                }
            }
            Ok(out)
        })
    }

    fn clear_state(&self, state_id: &StateId) -> Result<bool> {
        self.write(|tx| {
            let existed = self.delete_row(tx, state_id)?;
            if existed {
                self.record_event(tx, state_id, StateAction::Cleared, None, None, None)?;
            }
            Ok(existed)
        })
    }

    fn clear_all_states(&self) -> Result<usize> {
        self.write(|tx| {
            let rows = tx.query(
                &self.q("DELETE FROM {S}.state WHERE project_id = $1 RETURNING state_id"),
                &[&self.project],
            )?;
            let mut ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            ids.sort();
            for id in &ids {
                self.record_event(
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
            let merged = self
                .read_state_row(tx, src)?
                .map(|s| s.merged())
                .ok_or_else(|| {
                    Error::config(format!("no state stored for `{src}`"))
                        .hint("`dsm state list` shows the state ids that have state")
                })?;
            let action = if remove_source {
                StateAction::Moved
            } else {
                StateAction::Copied
            };
            let detail = format!("from {src}");
            self.write_in(tx, dst, &merged, false, action, None, Some(&detail))?;
            if remove_source && src != dst {
                self.delete_row(tx, src)?;
                self.record_event(
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
                if self.read_state_row(tx, &row.state_id)?.is_some() && !overwrite {
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
                self.upsert_state(tx, &row.state_id, &completed, &partial)?;
                let payload = serde_json::json!({"completed": completed, "partial": partial});
                self.record_event(
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
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = c.query(
                &self.q(
                    "SELECT event_id, state_id, {S}.epoch_ms(at), action, run_id, detail, payload
                     FROM {S}.state_events
                     WHERE project_id = $1 AND ($2::text IS NULL OR state_id = $2)
                     ORDER BY event_id LIMIT $3",
                ),
                &[&self.project, &state_id.map(StateId::as_str), &limit],
            )?;
            let mut out = Vec::new();
            for r in rows {
                let payload: Option<String> = r.get(6);
                out.push(StateEvent {
                    event_id: r.get(0),
                    state_id: StateId::new(r.get::<_, String>(1)),
                    at: time_ms(r.get(2))?,
                    action: r.get(3),
                    run_id: r.get::<_, Option<String>>(4).map(RunId::new),
                    detail: r.get(5),
                    payload: payload
                        .as_deref()
                        .map(|p| parse_json(p, "a state event"))
                        .transpose()?,
                });
            }
            Ok(out)
        })
    }
}

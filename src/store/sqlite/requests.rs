//! [`RequestStore`] on SQLite: the `source_requests` and `source_request_transitions` tables;
//! a request's secrets are rows of `secrets`.

use rusqlite::{Connection, OptionalExtension, params};

use super::audit::append_in;
use super::{SqliteStore, secrets::upsert};
use crate::error::{Error, Result};
use crate::store::audit::AuditAppend;
use crate::store::requests::{
    NewRequest, PruneAudit, RequestFilter, RequestRecord, RequestRevision, RequestStatus,
    RequestStore, RequestUpdate, Transition, secret_owner,
};
use crate::store::secrets::SealedSecret;

fn insert_transition(conn: &Connection, id: &str, t: &Transition) -> Result<()> {
    conn.execute(
        "INSERT INTO source_request_transitions (request_id, seq, at, actor, action, status, reason)
         VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM source_request_transitions WHERE request_id = ?1),
                 ?2, ?3, ?4, ?5, ?6)",
        params![id, t.at, t.actor, t.action, t.status.as_str(), t.reason],
    )?;
    Ok(())
}

fn revision_json(r: &RequestRevision) -> Result<String> {
    serde_json::to_string(r)
        .map_err(|e| Error::failed(format!("cannot write a source request as JSON: {e}")))
}

fn history(conn: &Connection, id: &str) -> Result<Vec<Transition>> {
    let mut stmt = conn.prepare(
        "SELECT at, actor, action, status, reason FROM source_request_transitions
         WHERE request_id = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map(params![id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, Option<String>>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (at, actor, action, status, reason) = row?;
        out.push(Transition {
            at,
            actor,
            action,
            status: RequestStatus::parse(&status)?,
            reason,
        });
    }
    Ok(out)
}

const COLUMNS: &str =
    "id, organisation, requester, status, revision, test, reason, created_at, updated_at";

type Row = (
    String,
    Option<String>,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
);

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

fn record(conn: &Connection, row: Row) -> Result<RequestRecord> {
    let (id, organisation, requester, status, revision, test, reason, created_at, updated_at) = row;
    let damaged = |e: serde_json::Error| {
        Error::failed(format!(
            "the system database holds a damaged source request `{id}`: {e}"
        ))
    };
    let request: RequestRevision = serde_json::from_str(&revision).map_err(damaged)?;
    let test = test
        .map(|t| serde_json::from_str(&t))
        .transpose()
        .map_err(damaged)?;
    Ok(RequestRecord {
        history: history(conn, &id)?,
        id,
        organisation,
        requester,
        status: RequestStatus::parse(&status)?,
        request,
        test,
        reason,
        created_at,
        updated_at,
    })
}

fn store_secrets(conn: &Connection, secrets: &[SealedSecret], by: &str) -> Result<()> {
    for s in secrets {
        upsert(conn, s, by)?;
    }
    Ok(())
}

impl RequestStore for SqliteStore {
    fn create_request(
        &self,
        request: &NewRequest,
        secrets: &[SealedSecret],
        entry: &AuditAppend<'_>,
    ) -> Result<()> {
        let owner = secret_owner(&request.id);
        if let Some(s) = secrets.iter().find(|s| s.plugin != owner) {
            return Err(Error::failed(format!(
                "a secret of request `{}` is sealed for `{}`",
                request.id, s.plugin
            )));
        }
        let revision = revision_json(&request.request)?;
        let head = self.write(|tx| {
            tx.execute(
                "INSERT INTO source_requests (id, name, organisation, requester, status, revision,
                   created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                params![
                    request.id,
                    request.request.name,
                    request.organisation,
                    request.requester,
                    request.submitted.status.as_str(),
                    revision,
                    request.submitted.at,
                ],
            )?;
            insert_transition(tx, &request.id, &request.submitted)?;
            store_secrets(tx, secrets, &request.requester)?;
            append_in(tx, entry)
        })?;
        self.write_head(&head)
    }

    fn request(&self, id: &str) -> Result<Option<RequestRecord>> {
        self.read(|c| {
            let row = c
                .query_row(
                    &format!("SELECT {COLUMNS} FROM source_requests WHERE id = ?1"),
                    params![id],
                    read_row,
                )
                .optional()?;
            row.map(|row| record(c, row)).transpose()
        })
    }

    fn list_requests(&self, filter: &RequestFilter) -> Result<Vec<RequestRecord>> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {COLUMNS} FROM source_requests
                 WHERE (?1 IS NULL OR requester = ?1) AND (?2 IS NULL OR status = ?2)
                 ORDER BY created_at DESC, id LIMIT ?3"
            ))?;
            let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
            let rows = stmt
                .query_map(
                    params![
                        filter.requester,
                        filter.status.map(RequestStatus::as_str),
                        limit
                    ],
                    read_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().map(|row| record(c, row)).collect()
        })
    }

    fn update_request(&self, update: &RequestUpdate, entry: &AuditAppend<'_>) -> Result<bool> {
        let revision = update.revision.as_ref().map(revision_json).transpose()?;
        let test = update
            .test
            .as_ref()
            .map(|t| t.to_string())
            .unwrap_or_default();
        let head = self.write(|tx| {
            let status: Option<String> = tx
                .query_row(
                    "SELECT status FROM source_requests WHERE id = ?1",
                    params![update.id],
                    |r| r.get(0),
                )
                .optional()?;
            if status.as_deref() != Some(update.expected.as_str()) {
                return Ok(None);
            }
            let t = &update.transition;
            tx.execute(
                "UPDATE source_requests SET status = ?2, updated_at = ?3,
                   revision = COALESCE(?4, revision),
                   name = COALESCE(?5, name),
                   test = CASE WHEN ?6 = '' THEN test ELSE ?6 END,
                   reason = CASE WHEN ?7 THEN ?8 ELSE reason END
                 WHERE id = ?1",
                params![
                    update.id,
                    t.status.as_str(),
                    t.at,
                    revision,
                    update.revision.as_ref().map(|r| r.name.as_str()),
                    test,
                    update.reason.is_some(),
                    update.reason.clone().flatten(),
                ],
            )?;
            insert_transition(tx, &update.id, t)?;
            if update.destroy_secrets {
                tx.execute(
                    "DELETE FROM secrets WHERE plugin = ?1",
                    params![secret_owner(&update.id)],
                )?;
            }
            store_secrets(tx, &update.put_secrets, &t.actor)?;
            append_in(tx, entry).map(Some)
        })?;
        match head {
            None => Ok(false),
            Some(head) => {
                self.write_head(&head)?;
                Ok(true)
            }
        }
    }

    fn prune_requests(&self, before: &str, entry: &PruneAudit<'_>) -> Result<Vec<String>> {
        let (ids, head) = self.write(|tx| {
            let ids: Vec<String> = {
                let mut stmt = tx.prepare(
                    "SELECT id FROM source_requests
                     WHERE status IN ('rejected', 'cancelled') AND updated_at < ?1 ORDER BY id",
                )?;
                stmt.query_map(params![before], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?
            };
            if ids.is_empty() {
                return Ok((ids, None));
            }
            for id in &ids {
                tx.execute(
                    "DELETE FROM secrets WHERE plugin = ?1",
                    params![secret_owner(id)],
                )?;
                tx.execute("DELETE FROM source_requests WHERE id = ?1", params![id])?;
            }
            let head = append_in(tx, &|prev| entry(prev, &ids))?;
            Ok((ids, Some(head)))
        })?;
        if let Some(head) = head {
            self.write_head(&head)?;
        }
        Ok(ids)
    }
}

//! [`RequestStore`] on PostgreSQL: the `source_requests` and `source_request_transitions`
//! tables, per project; a request's secrets are rows of `secrets`. Every change takes the
//! audit chain's lock first, so its entry lands in the same transaction, in order.

use postgres::GenericClient;

use super::PgStore;
use crate::error::{Error, Result};
use crate::store::audit::AuditAppend;
use crate::store::requests::{
    NewRequest, PruneAudit, RequestFilter, RequestRecord, RequestRevision, RequestStatus,
    RequestStore, RequestUpdate, Transition, secret_owner,
};
use crate::store::secrets::SealedSecret;

const COLUMNS: &str =
    "id, organisation, requester, status, revision, test, reason, created_at, updated_at";

fn revision_json(r: &RequestRevision) -> Result<String> {
    serde_json::to_string(r)
        .map_err(|e| Error::failed(format!("cannot write a source request as JSON: {e}")))
}

impl PgStore {
    fn insert_transition(
        &self,
        c: &mut impl GenericClient,
        id: &str,
        t: &Transition,
    ) -> Result<()> {
        c.execute(
            &self.q(
                "INSERT INTO {S}.source_request_transitions
                   (project_id, request_id, seq, at, actor, action, status, reason)
                 VALUES ($1, $2, (SELECT COALESCE(MAX(seq), 0) + 1 FROM {S}.source_request_transitions
                                  WHERE project_id = $1 AND request_id = $2),
                         $3, $4, $5, $6, $7)",
            ),
            &[
                &self.project,
                &id,
                &t.at,
                &t.actor,
                &t.action,
                &t.status.as_str(),
                &t.reason,
            ],
        )?;
        Ok(())
    }

    fn request_record(
        &self,
        c: &mut impl GenericClient,
        r: &postgres::Row,
    ) -> Result<RequestRecord> {
        let id: String = r.get(0);
        let damaged = |e: serde_json::Error| {
            Error::failed(format!(
                "the system store holds a damaged source request `{id}`: {e}"
            ))
        };
        let revision: String = r.get(4);
        let request: RequestRevision = serde_json::from_str(&revision).map_err(damaged)?;
        let test: Option<String> = r.get(5);
        let test = test
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(damaged)?;
        let status: String = r.get(3);
        let history = c
            .query(
                &self.q(
                    "SELECT at, actor, action, status, reason FROM {S}.source_request_transitions
                     WHERE project_id = $1 AND request_id = $2 ORDER BY seq",
                ),
                &[&self.project, &id],
            )?
            .iter()
            .map(|t| {
                let status: String = t.get(3);
                Ok(Transition {
                    at: t.get(0),
                    actor: t.get(1),
                    action: t.get(2),
                    status: RequestStatus::parse(&status)?,
                    reason: t.get(4),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RequestRecord {
            id: id.clone(),
            organisation: r.get(1),
            requester: r.get(2),
            status: RequestStatus::parse(&status)?,
            request,
            test,
            reason: r.get(6),
            created_at: r.get(7),
            updated_at: r.get(8),
            history,
        })
    }
}

impl RequestStore for PgStore {
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
        self.write_split(
            |tx| {
                self.lock_chain(tx)?;
                tx.execute(
                    &self.q(
                        "INSERT INTO {S}.source_requests (project_id, id, name, organisation,
                           requester, status, revision, created_at, updated_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
                    ),
                    &[
                        &self.project,
                        &request.id,
                        &request.request.name,
                        &request.organisation,
                        &request.requester,
                        &request.submitted.status.as_str(),
                        &revision,
                        &request.submitted.at,
                    ],
                )?;
                self.insert_transition(tx, &request.id, &request.submitted)?;
                for s in secrets {
                    self.upsert_secret(tx, s, &request.requester)?;
                }
                self.last_link(tx)
            },
            |link| Ok(entry(&link)),
            |tx, row| self.insert_audit(tx, &row),
        )
    }

    fn request(&self, id: &str) -> Result<Option<RequestRecord>> {
        self.read(|c| {
            let row = c.query_opt(
                &self.q(&format!(
                    "SELECT {COLUMNS} FROM {{S}}.source_requests WHERE project_id = $1 AND id = $2"
                )),
                &[&self.project, &id],
            )?;
            row.map(|r| self.request_record(c, &r)).transpose()
        })
    }

    fn list_requests(&self, filter: &RequestFilter) -> Result<Vec<RequestRecord>> {
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        let status = filter.status.map(RequestStatus::as_str);
        self.read(|c| {
            let rows = c.query(
                &self.q(&format!(
                    "SELECT {COLUMNS} FROM {{S}}.source_requests
                     WHERE project_id = $1 AND ($2::TEXT IS NULL OR requester = $2)
                       AND ($3::TEXT IS NULL OR status = $3)
                     ORDER BY created_at DESC, id LIMIT $4"
                )),
                &[&self.project, &filter.requester, &status, &limit],
            )?;
            rows.iter().map(|r| self.request_record(c, r)).collect()
        })
    }

    fn update_request(&self, update: &RequestUpdate, entry: &AuditAppend<'_>) -> Result<bool> {
        let revision = update.revision.as_ref().map(revision_json).transpose()?;
        let test = update.test.as_ref().map(ToString::to_string);
        self.write_split(
            |tx| {
                self.lock_chain(tx)?;
                let status: Option<String> = tx
                    .query_opt(
                        &self.q("SELECT status FROM {S}.source_requests
                             WHERE project_id = $1 AND id = $2 FOR UPDATE"),
                        &[&self.project, &update.id],
                    )?
                    .map(|r| r.get(0));
                if status.as_deref() != Some(update.expected.as_str()) {
                    return Ok(None);
                }
                let t = &update.transition;
                tx.execute(
                    &self.q(
                        "UPDATE {S}.source_requests SET status = $3, updated_at = $4,
                           revision = COALESCE($5, revision),
                           name = COALESCE($6, name),
                           test = COALESCE($7, test),
                           reason = CASE WHEN $8 THEN $9 ELSE reason END
                         WHERE project_id = $1 AND id = $2",
                    ),
                    &[
                        &self.project,
                        &update.id,
                        &t.status.as_str(),
                        &t.at,
                        &revision,
                        &update.revision.as_ref().map(|r| r.name.as_str()),
                        &test,
                        &update.reason.is_some(),
                        &update.reason.clone().flatten(),
                    ],
                )?;
                self.insert_transition(tx, &update.id, t)?;
                if update.destroy_secrets {
                    tx.execute(
                        &self.q("DELETE FROM {S}.secrets WHERE project_id = $1 AND plugin = $2"),
                        &[&self.project, &secret_owner(&update.id)],
                    )?;
                }
                for s in &update.put_secrets {
                    self.upsert_secret(tx, s, &t.actor)?;
                }
                self.last_link(tx).map(Some)
            },
            |link| Ok(link.map(|l| entry(&l))),
            |tx, row| match row {
                None => Ok(false),
                Some(row) => self.insert_audit(tx, &row).map(|()| true),
            },
        )
    }

    fn prune_requests(&self, before: &str, entry: &PruneAudit<'_>) -> Result<Vec<String>> {
        self.write_split(
            |tx| {
                self.lock_chain(tx)?;
                let ids: Vec<String> = tx
                    .query(
                        &self.q("SELECT id FROM {S}.source_requests
                             WHERE project_id = $1 AND status IN ('rejected', 'cancelled')
                               AND updated_at < $2 ORDER BY id"),
                        &[&self.project, &before],
                    )?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                if ids.is_empty() {
                    return Ok((ids, None));
                }
                for id in &ids {
                    tx.execute(
                        &self.q("DELETE FROM {S}.secrets WHERE project_id = $1 AND plugin = $2"),
                        &[&self.project, &secret_owner(id)],
                    )?;
                    tx.execute(
                        &self
                            .q("DELETE FROM {S}.source_requests WHERE project_id = $1 AND id = $2"),
                        &[&self.project, id],
                    )?;
                }
                let link = self.last_link(tx)?;
                Ok((ids, Some(link)))
            },
            |(ids, link)| {
                let row = link.map(|l| entry(&l, &ids));
                Ok((ids, row))
            },
            |tx, (ids, row)| {
                if let Some(row) = row {
                    self.insert_audit(tx, &row)?;
                }
                Ok(ids)
            },
        )
    }
}

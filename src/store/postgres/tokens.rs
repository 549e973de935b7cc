//! [`TokenStore`] and [`SourceStatusStore`] on PostgreSQL: the `api_tokens` and
//! `source_status_events` tables.

use chrono::{DateTime, Utc};
use postgres::Row;

use super::{PgStore, time_ms};
use crate::error::{Error, Result};
use crate::store::tokens::{NewToken, Role, TokenRecord, TokenStore};
use crate::store::{SourceStatusChange, SourceStatusStore};

const TOKEN_COLUMNS: &str = "name, role, organisation, {S}.epoch_ms(created_at), created_by,
    {S}.epoch_ms(expires_at), {S}.epoch_ms(last_used_at), token_hash";

fn token(r: &Row) -> Result<TokenRecord> {
    Ok(TokenRecord {
        name: r.get(0),
        role: Role::parse(r.get(1))?,
        organisation: r.get(2),
        created_at: time_ms(r.get(3))?,
        created_by: r.get(4),
        expires_at: r.get::<_, Option<i64>>(5).map(time_ms).transpose()?,
        last_used_at: r.get::<_, Option<i64>>(6).map(time_ms).transpose()?,
        token_hash: r.get(7),
    })
}

impl TokenStore for PgStore {
    fn create_token(&self, t: &NewToken) -> Result<TokenRecord> {
        let row = self.write(|tx| {
            let row = tx.query_opt(
                &self.q(&format!(
                    "INSERT INTO {{S}}.api_tokens (project_id, name, role, organisation, token_hash,
                         created_at, created_by, expires_at)
                     VALUES ($1, $2, $3, $4, $5, {{S}}.from_ms({{S}}.epoch_ms(now())), $6, {{S}}.from_ms($7))
                     ON CONFLICT (project_id, name) DO NOTHING
                     RETURNING {TOKEN_COLUMNS}"
                )),
                &[
                    &self.project,
                    &t.name,
                    &t.role.as_str(),
                    &t.organisation,
                    &t.token_hash,
                    &t.created_by,
                    &t.expires_at.map(|at| at.timestamp_millis()),
                ],
            )?;
            row.ok_or_else(|| {
                Error::config(format!("a token named `{}` already exists", t.name)).hint(format!(
                    "pick another name, or `dsm tokens revoke {}` first",
                    t.name
                ))
            })
        })?;
        token(&row)
    }

    fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        let rows = self.read(|c| {
            Ok(c.query(
                &self.q(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM {{S}}.api_tokens WHERE project_id = $1
                     ORDER BY name COLLATE \"C\""
                )),
                &[&self.project],
            )?)
        })?;
        rows.iter().map(token).collect()
    }

    fn revoke_token(&self, name: &str) -> Result<bool> {
        self.write(|tx| {
            Ok(tx.execute(
                &self.q("DELETE FROM {S}.api_tokens WHERE project_id = $1 AND name = $2"),
                &[&self.project, &name],
            )? > 0)
        })
    }

    fn touch_token(&self, name: &str, at: DateTime<Utc>) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                &self.q("UPDATE {S}.api_tokens SET last_used_at = {S}.from_ms($3)
                     WHERE project_id = $1 AND name = $2"),
                &[&self.project, &name, &at.timestamp_millis()],
            )?;
            Ok(())
        })
    }
}

impl SourceStatusStore for PgStore {
    fn record_source_status(&self, change: &SourceStatusChange) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                &self.q(
                    "INSERT INTO {S}.source_status_events (project_id, source, status, reason, \"user\",
                         origin, at)
                     VALUES ($1, $2, $3, $4, $5, $6, {S}.from_ms($7))",
                ),
                &[
                    &self.project,
                    &change.source,
                    &change.status,
                    &change.reason,
                    &change.user,
                    &change.origin,
                    &change.at.timestamp_millis(),
                ],
            )?;
            Ok(())
        })
    }

    fn source_status_history(
        &self,
        source: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SourceStatusChange>> {
        let rows = self.read(|c| {
            Ok(c.query(
                &self.q(
                    "SELECT source, status, reason, \"user\", origin, {S}.epoch_ms(at)
                     FROM {S}.source_status_events
                     WHERE project_id = $1 AND ($2::text IS NULL OR source = $2)
                     ORDER BY event_id DESC LIMIT $3",
                ),
                &[
                    &self.project,
                    &source,
                    &i64::try_from(limit).unwrap_or(i64::MAX),
                ],
            )?)
        })?;
        rows.iter()
            .map(|r| {
                Ok(SourceStatusChange {
                    source: r.get(0),
                    status: r.get(1),
                    reason: r.get(2),
                    user: r.get(3),
                    origin: r.get(4),
                    at: time_ms(r.get(5))?,
                })
            })
            .collect()
    }
}

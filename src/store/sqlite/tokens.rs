//! [`TokenStore`] on SQLite: the `api_tokens` table.

use chrono::{DateTime, Utc};
use rusqlite::{Row, params};

use super::SqliteStore;
use crate::error::{Error, Result};
use crate::store::format_time;
use crate::store::tokens::{NewToken, Role, TokenRecord, TokenStore};

const COLUMNS: &str =
    "name, role, organisation, created_at, created_by, expires_at, last_used_at, token_hash";

fn time(text: Option<String>) -> Result<Option<DateTime<Utc>>> {
    text.map(|t| {
        DateTime::parse_from_rfc3339(&t)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|e| {
                Error::failed(format!("system database holds a bad token time `{t}`: {e}"))
            })
    })
    .transpose()
}

/// A row with its role and times still as text: (record, role, created, expires, last used).
type RawRow = (TokenRecord, String, String, Option<String>, Option<String>);

fn record(row: &Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((
        TokenRecord {
            name: row.get(0)?,
            role: Role::Viewer,
            organisation: row.get(2)?,
            created_at: DateTime::<Utc>::MIN_UTC,
            created_by: row.get(4)?,
            expires_at: None,
            last_used_at: None,
            token_hash: row.get(7)?,
        },
        row.get::<_, String>(1)?,
        row.get::<_, String>(3)?,
        row.get(5)?,
        row.get(6)?,
    ))
}

fn finish((mut rec, role, created, expires, used): RawRow) -> Result<TokenRecord> {
    rec.role = Role::parse(&role)?;
    rec.created_at = time(Some(created))?.unwrap_or(DateTime::<Utc>::MIN_UTC);
    rec.expires_at = time(expires)?;
    rec.last_used_at = time(used)?;
    Ok(rec)
}

impl TokenStore for SqliteStore {
    fn create_token(&self, token: &NewToken) -> Result<TokenRecord> {
        let now = Utc::now();
        self.write(|tx| {
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM api_tokens WHERE name = ?1)",
                [&token.name],
                |r| r.get(0),
            )?;
            if exists {
                return Err(Error::config(format!("a token named `{}` already exists", token.name))
                    .hint(format!(
                        "pick another name, or `dsm tokens revoke {}` first",
                        token.name
                    )));
            }
            tx.execute(
                "INSERT INTO api_tokens (name, role, organisation, token_hash, created_at, created_by, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    token.name,
                    token.role.as_str(),
                    token.organisation,
                    token.token_hash,
                    format_time(now),
                    token.created_by,
                    token.expires_at.map(format_time),
                ],
            )?;
            Ok(())
        })?;
        Ok(TokenRecord {
            name: token.name.clone(),
            role: token.role,
            organisation: token.organisation.clone(),
            created_at: now,
            created_by: token.created_by.clone(),
            expires_at: token.expires_at,
            last_used_at: None,
            token_hash: token.token_hash.clone(),
        })
    }

    fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        let rows = self.read(|c| {
            let mut stmt =
                c.prepare_cached(&format!("SELECT {COLUMNS} FROM api_tokens ORDER BY name"))?;
            let rows = stmt
                .query_map([], record)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })?;
        rows.into_iter().map(finish).collect()
    }

    fn revoke_token(&self, name: &str) -> Result<bool> {
        self.write(|tx| Ok(tx.execute("DELETE FROM api_tokens WHERE name = ?1", [name])? > 0))
    }

    fn touch_token(&self, name: &str, at: DateTime<Utc>) -> Result<()> {
        self.write_history(|tx| {
            tx.execute(
                "UPDATE api_tokens SET last_used_at = ?2 WHERE name = ?1",
                params![name, format_time(at)],
            )?;
            Ok(())
        })
    }
}

//! [`SourceStatusStore`] on SQLite: the `source_status_events` table.

use rusqlite::params;

use super::{SqliteStore, parse_time};
use crate::error::Result;
use crate::store::{SourceStatusChange, SourceStatusStore, format_time};

impl SourceStatusStore for SqliteStore {
    fn record_source_status(&self, change: &SourceStatusChange) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO source_status_events (source, status, reason, user, origin, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    change.source,
                    change.status,
                    change.reason,
                    change.user,
                    change.origin,
                    format_time(change.at)
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
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT source, status, reason, user, origin, at FROM source_status_events
                 WHERE (?1 IS NULL OR source = ?1) ORDER BY event_id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(
                params![source, i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                    ))
                },
            )?;
            let mut out = Vec::new();
            for row in rows {
                let (source, status, reason, user, origin, at) = row?;
                out.push(SourceStatusChange {
                    source,
                    status,
                    reason,
                    user,
                    origin,
                    at: parse_time(&at)?,
                });
            }
            Ok(out)
        })
    }
}

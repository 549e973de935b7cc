//! [`WebhookStore`] on SQLite: the `webhook_events` and `webhook_sequence` tables.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::SqliteStore;
use crate::error::{Error, Result};
use crate::store::format_time;
use crate::store::webhooks::{
    NewWebhookEvent, Received, WebhookCounts, WebhookEvent, WebhookLimits, WebhookStore,
};

const COLUMNS: &str = "id, source, event_id, seq, received_at, size, consumed_at";

fn time(text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| {
            Error::failed(format!(
                "system database holds a bad webhook event time `{text}`: {e}"
            ))
        })
}

/// A row with its times still as text.
type RawRow = (WebhookEvent, String, Option<String>);

fn row(r: &Row<'_>, with_payload: bool) -> rusqlite::Result<RawRow> {
    Ok((
        WebhookEvent {
            id: r.get(0)?,
            source: r.get(1)?,
            event_id: r.get(2)?,
            seq: r.get(3)?,
            received_at: DateTime::<Utc>::MIN_UTC,
            size: r.get::<_, i64>(5)?.max(0) as u64,
            consumed_at: None,
            payload: if with_payload { Some(r.get(7)?) } else { None },
        },
        r.get(4)?,
        r.get(6)?,
    ))
}

fn finish((mut event, received, consumed): RawRow) -> Result<WebhookEvent> {
    event.received_at = time(&received)?;
    event.consumed_at = consumed.as_deref().map(time).transpose()?;
    Ok(event)
}

fn next_seq(tx: &Transaction<'_>) -> Result<i64> {
    Ok(tx.query_row(
        "UPDATE webhook_sequence SET value = value + 1 WHERE one = 1 RETURNING value",
        [],
        |r| r.get(0),
    )?)
}

fn counts(tx: &rusqlite::Connection, source: &str) -> Result<WebhookCounts> {
    // Kept by the triggers of migration 0015.
    let row: Option<(i64, i64, i64)> = tx
        .query_row(
            "SELECT pending, consumed, bytes FROM webhook_totals WHERE source = ?1",
            [source],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let (pending, consumed, bytes) = row.unwrap_or_default();
    Ok(WebhookCounts {
        pending: pending.max(0) as u64,
        consumed: consumed.max(0) as u64,
        bytes: bytes.max(0) as u64,
    })
}

fn by_event_id(tx: &Transaction<'_>, source: &str, event_id: &str) -> Result<Option<WebhookEvent>> {
    let raw = tx
        .query_row(
            &format!("SELECT {COLUMNS} FROM webhook_events WHERE source = ?1 AND event_id = ?2"),
            params![source, event_id],
            |r| row(r, false),
        )
        .optional()?;
    raw.map(finish).transpose()
}

impl WebhookStore for SqliteStore {
    fn receive_webhook(&self, event: &NewWebhookEvent, limits: &WebhookLimits) -> Result<Received> {
        let size = event.payload.len() as u64;
        self.write(|tx| {
            if let Some(id) = &event.event_id
                && let Some(existing) = by_event_id(tx, &event.source, id)?
            {
                return Ok(Received::Duplicate(existing));
            }
            let mut now = counts(tx, &event.source)?;
            let over = |c: &WebhookCounts| {
                c.pending + c.consumed + 1 > limits.max_events
                    || c.bytes.saturating_add(size) > limits.max_bytes
            };
            // Room is made by deleting consumed events, oldest delivery first, a batch at a
            // time; pending ones are never deleted.
            while over(&now) && now.consumed > 0 {
                tx.execute(
                    "DELETE FROM webhook_events WHERE id IN (
                         SELECT id FROM webhook_events
                         WHERE source = ?1 AND consumed_at IS NOT NULL
                         ORDER BY seq LIMIT 100)",
                    [&event.source],
                )?;
                now = counts(tx, &event.source)?;
            }
            if over(&now) {
                return Ok(Received::Full {
                    pending: now.pending,
                    bytes: now.bytes,
                });
            }
            let seq = next_seq(tx)?;
            tx.execute(
                "INSERT INTO webhook_events (source, event_id, seq, received_at, size, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    event.source,
                    event.event_id,
                    seq,
                    format_time(event.received_at),
                    size as i64,
                    event.payload,
                ],
            )?;
            Ok(Received::Stored(WebhookEvent {
                id: tx.last_insert_rowid(),
                source: event.source.clone(),
                event_id: event.event_id.clone(),
                seq,
                received_at: time(&format_time(event.received_at))?,
                size,
                consumed_at: None,
                payload: None,
            }))
        })
    }

    fn webhook_events(
        &self,
        source: &str,
        after_seq: i64,
        pending_only: bool,
        limit: usize,
    ) -> Result<Vec<WebhookEvent>> {
        let raw = self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM webhook_events
                 WHERE source = ?1 AND seq > ?2 AND (?3 = 0 OR consumed_at IS NULL)
                 ORDER BY seq LIMIT ?4"
            ))?;
            let rows = stmt
                .query_map(
                    params![
                        source,
                        after_seq,
                        pending_only,
                        i64::try_from(limit).unwrap_or(i64::MAX)
                    ],
                    |r| row(r, false),
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })?;
        raw.into_iter().map(finish).collect()
    }

    fn pending_webhooks(
        &self,
        source: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<WebhookEvent>> {
        let raw = self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS}, payload FROM webhook_events
                 WHERE source = ?1 AND seq > ?2 AND consumed_at IS NULL
                 ORDER BY seq LIMIT ?3"
            ))?;
            let rows = stmt
                .query_map(
                    params![source, after_seq, i64::try_from(limit).unwrap_or(i64::MAX)],
                    |r| row(r, true),
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })?;
        raw.into_iter().map(finish).collect()
    }

    fn webhook_event(&self, source: &str, id: i64) -> Result<Option<WebhookEvent>> {
        let raw = self.read(|c| {
            Ok(c.query_row(
                &format!(
                    "SELECT {COLUMNS}, payload FROM webhook_events WHERE source = ?1 AND id = ?2"
                ),
                params![source, id],
                |r| row(r, true),
            )
            .optional()?)
        })?;
        raw.map(finish).transpose()
    }

    fn webhook_counts(&self, source: &str) -> Result<WebhookCounts> {
        self.read(|c| counts(c, source))
    }

    fn consume_webhooks(&self, source: &str, through_seq: i64, at: DateTime<Utc>) -> Result<u64> {
        self.write(|tx| {
            Ok(tx.execute(
                "UPDATE webhook_events SET consumed_at = ?3
                 WHERE source = ?1 AND seq <= ?2 AND consumed_at IS NULL",
                params![source, through_seq, format_time(at)],
            )? as u64)
        })
    }

    fn replay_webhooks(&self, source: &str, ids: Option<&[i64]>) -> Result<Vec<i64>> {
        self.write(|tx| {
            let chosen: Vec<i64> = {
                let mut stmt = tx.prepare(
                    "SELECT id FROM webhook_events
                     WHERE source = ?1 AND consumed_at IS NOT NULL ORDER BY seq",
                )?;
                stmt.query_map([source], |r| r.get::<_, i64>(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()?
            };
            let chosen: Vec<i64> = match ids {
                None => chosen,
                Some(ids) => chosen.into_iter().filter(|id| ids.contains(id)).collect(),
            };
            for id in &chosen {
                let seq = next_seq(tx)?;
                tx.execute(
                    "UPDATE webhook_events SET consumed_at = NULL, seq = ?2 WHERE id = ?1",
                    params![id, seq],
                )?;
            }
            Ok(chosen)
        })
    }

    fn prune_webhooks(&self, source: &str, consumed_before: DateTime<Utc>) -> Result<u64> {
        self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM webhook_events
                 WHERE source = ?1 AND consumed_at IS NOT NULL AND consumed_at < ?2",
                params![source, format_time(consumed_before)],
            )? as u64)
        })
    }
}

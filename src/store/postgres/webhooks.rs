//! [`WebhookStore`] on PostgreSQL: the `webhook_events` and `webhook_sequence` tables.
//! Events of one source arriving at several servers at once take turns (a transaction-level
//! advisory lock), so the bounds hold; `seq` comes from the project's row of
//! `webhook_sequence`, bumped under its row lock.

use chrono::{DateTime, Utc};
use postgres::{GenericClient, Row};

use super::{PgStore, time_ms};
use crate::error::Result;
use crate::store::webhooks::{
    NewWebhookEvent, Received, WebhookCounts, WebhookEvent, WebhookLimits, WebhookStore,
};

const COLUMNS: &str = "id, source, event_id, seq, {S}.epoch_ms(received_at), size,
    {S}.epoch_ms(consumed_at)";

fn event(r: &Row, with_payload: bool) -> Result<WebhookEvent> {
    Ok(WebhookEvent {
        id: r.get(0),
        source: r.get(1),
        event_id: r.get(2),
        seq: r.get(3),
        received_at: time_ms(r.get(4))?,
        size: r.get::<_, i64>(5).max(0) as u64,
        consumed_at: r.get::<_, Option<i64>>(6).map(time_ms).transpose()?,
        payload: if with_payload { Some(r.get(7)) } else { None },
    })
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl PgStore {
    fn next_webhook_seq(&self, c: &mut impl GenericClient) -> Result<i64> {
        Ok(c.query_one(
            &self.q(
                "INSERT INTO {S}.webhook_sequence (project_id, value) VALUES ($1, 1)
                 ON CONFLICT (project_id) DO UPDATE SET value = {S}.webhook_sequence.value + 1
                 RETURNING value",
            ),
            &[&self.project],
        )?
        .get(0))
    }

    fn webhook_counts_in(&self, c: &mut impl GenericClient, source: &str) -> Result<WebhookCounts> {
        let r = c.query_one(
            &self.q("SELECT count(*) FILTER (WHERE consumed_at IS NULL),
                        count(*) FILTER (WHERE consumed_at IS NOT NULL),
                        COALESCE(sum(size), 0)::BIGINT
                 FROM {S}.webhook_events WHERE project_id = $1 AND source = $2"),
            &[&self.project, &source],
        )?;
        Ok(WebhookCounts {
            pending: r.get::<_, i64>(0).max(0) as u64,
            consumed: r.get::<_, i64>(1).max(0) as u64,
            bytes: r.get::<_, i64>(2).max(0) as u64,
        })
    }
}

impl WebhookStore for PgStore {
    fn receive_webhook(&self, e: &NewWebhookEvent, limits: &WebhookLimits) -> Result<Received> {
        let size = e.payload.len() as u64;
        self.write(|tx| {
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))",
                &[&format!(
                    "dsm webhooks {} {} {}",
                    self.schema, self.project, e.source
                )],
            )?;
            if let Some(id) = &e.event_id {
                let found = tx.query_opt(
                    &self.q(&format!(
                        "SELECT {COLUMNS} FROM {{S}}.webhook_events
                         WHERE project_id = $1 AND source = $2 AND event_id = $3"
                    )),
                    &[&self.project, &e.source, id],
                )?;
                if let Some(r) = found {
                    return Ok(Received::Duplicate(event(&r, false)?));
                }
            }
            let mut now = self.webhook_counts_in(tx, &e.source)?;
            let over = |c: &WebhookCounts| {
                c.pending + c.consumed + 1 > limits.max_events
                    || c.bytes.saturating_add(size) > limits.max_bytes
            };
            // Consumed events make room, oldest delivery first; pending ones never do.
            while over(&now) && now.consumed > 0 {
                tx.execute(
                    &self.q(
                        "DELETE FROM {S}.webhook_events WHERE id IN (
                             SELECT id FROM {S}.webhook_events
                             WHERE project_id = $1 AND source = $2 AND consumed_at IS NOT NULL
                             ORDER BY seq LIMIT 100)",
                    ),
                    &[&self.project, &e.source],
                )?;
                now = self.webhook_counts_in(tx, &e.source)?;
            }
            if over(&now) {
                return Ok(Received::Full {
                    pending: now.pending,
                    bytes: now.bytes,
                });
            }
            let seq = self.next_webhook_seq(tx)?;
            let r = tx.query_one(
                &self.q(&format!(
                    "INSERT INTO {{S}}.webhook_events (project_id, source, event_id, seq, received_at,
                         size, payload)
                     VALUES ($1, $2, $3, $4, {{S}}.from_ms($5), $6, $7)
                     RETURNING {COLUMNS}"
                )),
                &[
                    &self.project,
                    &e.source,
                    &e.event_id,
                    &seq,
                    &e.received_at.timestamp_millis(),
                    &(size as i64),
                    &e.payload,
                ],
            )?;
            Ok(Received::Stored(event(&r, false)?))
        })
    }

    fn webhook_events(
        &self,
        source: &str,
        after_seq: i64,
        pending_only: bool,
        n: usize,
    ) -> Result<Vec<WebhookEvent>> {
        let rows = self.read(|c| {
            Ok(c.query(
                &self.q(&format!(
                    "SELECT {COLUMNS} FROM {{S}}.webhook_events
                     WHERE project_id = $1 AND source = $2 AND seq > $3
                       AND (NOT $4 OR consumed_at IS NULL)
                     ORDER BY seq LIMIT $5"
                )),
                &[&self.project, &source, &after_seq, &pending_only, &limit(n)],
            )?)
        })?;
        rows.iter().map(|r| event(r, false)).collect()
    }

    fn pending_webhooks(
        &self,
        source: &str,
        after_seq: i64,
        n: usize,
    ) -> Result<Vec<WebhookEvent>> {
        let rows = self.read(|c| {
            Ok(c.query(
                &self.q(&format!(
                    "SELECT {COLUMNS}, payload FROM {{S}}.webhook_events
                     WHERE project_id = $1 AND source = $2 AND seq > $3 AND consumed_at IS NULL
                     ORDER BY seq LIMIT $4"
                )),
                &[&self.project, &source, &after_seq, &limit(n)],
            )?)
        })?;
        rows.iter().map(|r| event(r, true)).collect()
    }

    fn webhook_event(&self, source: &str, id: i64) -> Result<Option<WebhookEvent>> {
        let row = self.read(|c| {
            Ok(c.query_opt(
                &self.q(&format!(
                    "SELECT {COLUMNS}, payload FROM {{S}}.webhook_events
                     WHERE project_id = $1 AND source = $2 AND id = $3"
                )),
                &[&self.project, &source, &id],
            )?)
        })?;
        row.map(|r| event(&r, true)).transpose()
    }

    fn webhook_counts(&self, source: &str) -> Result<WebhookCounts> {
        self.read(|c| self.webhook_counts_in(c, source))
    }

    fn consume_webhooks(&self, source: &str, through_seq: i64, at: DateTime<Utc>) -> Result<u64> {
        self.write(|tx| {
            Ok(tx.execute(
                &self.q("UPDATE {S}.webhook_events SET consumed_at = {S}.from_ms($4)
                     WHERE project_id = $1 AND source = $2 AND seq <= $3 AND consumed_at IS NULL"),
                &[&self.project, &source, &through_seq, &at.timestamp_millis()],
            )?)
        })
    }

    fn replay_webhooks(&self, source: &str, ids: Option<&[i64]>) -> Result<Vec<i64>> {
        self.write(|tx| {
            let chosen: Vec<i64> = tx
                .query(
                    &self.q("SELECT id FROM {S}.webhook_events
                         WHERE project_id = $1 AND source = $2 AND consumed_at IS NOT NULL
                         ORDER BY seq"),
                    &[&self.project, &source],
                )?
                .iter()
                .map(|r| r.get(0))
                .filter(|id| ids.is_none_or(|ids| ids.contains(id)))
                .collect();
            for id in &chosen {
                let seq = self.next_webhook_seq(tx)?;
                tx.execute(
                    &self.q("UPDATE {S}.webhook_events SET consumed_at = NULL, seq = $3
                         WHERE project_id = $1 AND id = $2"),
                    &[&self.project, id, &seq],
                )?;
            }
            Ok(chosen)
        })
    }

    fn prune_webhooks(&self, source: &str, consumed_before: DateTime<Utc>) -> Result<u64> {
        self.write(|tx| {
            Ok(tx.execute(
                &self.q("DELETE FROM {S}.webhook_events
                     WHERE project_id = $1 AND source = $2 AND consumed_at IS NOT NULL
                       AND consumed_at < {S}.from_ms($3)"),
                &[&self.project, &source, &consumed_before.timestamp_millis()],
            )?)
        })
    }
}

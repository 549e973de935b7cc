//! [`NotificationStore`] on SQLite: the `notification_deliveries` table.

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::SqliteStore;
use crate::error::{Error, Result};
use crate::store::format_time;
use crate::store::notifications::{
    DeliveryAttempt, DeliveryOutcome, DeliveryRetention, NotificationStore,
};

impl NotificationStore for SqliteStore {
    fn record_delivery(
        &self,
        attempt: &DeliveryAttempt,
        retention: DeliveryRetention,
    ) -> Result<()> {
        let oldest = attempt
            .at
            .checked_sub_signed(retention.max_age)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let keep = i64::try_from(retention.max_attempts).unwrap_or(i64::MAX);
        self.write(|tx| {
            tx.execute(
                "INSERT INTO notification_deliveries
                   (delivery_id, event, source, receiver, attempt, at, outcome, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    attempt.delivery_id,
                    attempt.event,
                    attempt.source,
                    attempt.receiver,
                    attempt.attempt,
                    format_time(attempt.at),
                    attempt.outcome.as_str(),
                    attempt.detail,
                ],
            )?;
            tx.execute(
                "DELETE FROM notification_deliveries WHERE at < ?1",
                [format_time(oldest)],
            )?;
            tx.execute(
                "DELETE FROM notification_deliveries WHERE id <=
                   (SELECT id FROM notification_deliveries ORDER BY id DESC LIMIT 1 OFFSET ?1)",
                [keep],
            )?;
            Ok(())
        })
    }

    fn deliveries_since(&self, since: DateTime<Utc>) -> Result<Vec<DeliveryAttempt>> {
        type Raw = (
            String,
            String,
            Option<String>,
            String,
            u32,
            String,
            String,
            Option<String>,
        );
        let rows: Vec<Raw> = self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT delivery_id, event, source, receiver, attempt, at, outcome, detail
                 FROM notification_deliveries WHERE at >= ?1 ORDER BY id",
            )?;
            let rows = stmt
                .query_map([format_time(since)], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })?;
        rows.into_iter()
            .map(
                |(delivery_id, event, source, receiver, attempt, at, outcome, detail)| {
                    let bad = |what: &str| {
                        Error::failed(format!(
                            "system database holds a bad notification delivery {what}"
                        ))
                    };
                    Ok(DeliveryAttempt {
                        delivery_id,
                        event,
                        source,
                        receiver,
                        attempt,
                        at: DateTime::parse_from_rfc3339(&at)
                            .map_err(|_| bad(&format!("time `{at}`")))?
                            .with_timezone(&Utc),
                        outcome: DeliveryOutcome::parse(&outcome)
                            .ok_or_else(|| bad(&format!("outcome `{outcome}`")))?,
                        detail,
                    })
                },
            )
            .collect()
    }
}

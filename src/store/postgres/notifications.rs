//! [`NotificationStore`] on PostgreSQL: the `notification_deliveries` table, per project.

use chrono::{DateTime, Utc};

use super::{PgStore, time_ms};
use crate::error::{Error, Result};
use crate::store::notifications::{
    DeliveryAttempt, DeliveryOutcome, DeliveryRetention, NotificationStore,
};

impl NotificationStore for PgStore {
    fn record_delivery(
        &self,
        attempt: &DeliveryAttempt,
        retention: DeliveryRetention,
    ) -> Result<()> {
        let oldest = attempt
            .at
            .checked_sub_signed(retention.max_age)
            .map_or(0, |t| t.timestamp_millis())
            .max(0);
        let keep = i64::try_from(retention.max_attempts).unwrap_or(i64::MAX);
        self.write(|tx| {
            tx.execute(
                &self.q(
                    "INSERT INTO {S}.notification_deliveries
                       (project_id, delivery_id, event, source, receiver, attempt, at, outcome, detail)
                     VALUES ($1, $2, $3, $4, $5, $6, {S}.from_ms($7), $8, $9)",
                ),
                &[
                    &self.project,
                    &attempt.delivery_id,
                    &attempt.event,
                    &attempt.source,
                    &attempt.receiver,
                    &i32::try_from(attempt.attempt).unwrap_or(i32::MAX),
                    &attempt.at.timestamp_millis(),
                    &attempt.outcome.as_str(),
                    &attempt.detail,
                ],
            )?;
            tx.execute(
                &self.q(
                    "DELETE FROM {S}.notification_deliveries
                     WHERE project_id = $1 AND at < {S}.from_ms($2)",
                ),
                &[&self.project, &oldest],
            )?;
            tx.execute(
                &self.q(
                    "DELETE FROM {S}.notification_deliveries WHERE project_id = $1 AND id <=
                       (SELECT id FROM {S}.notification_deliveries WHERE project_id = $1
                        ORDER BY id DESC LIMIT 1 OFFSET $2)",
                ),
                &[&self.project, &keep],
            )?;
            Ok(())
        })
    }

    fn deliveries_since(&self, since: DateTime<Utc>) -> Result<Vec<DeliveryAttempt>> {
        let rows = self.read(|c| {
            Ok(c.query(
                &self.q(
                    "SELECT delivery_id, event, source, receiver, attempt, {S}.epoch_ms(at),
                            outcome, detail
                     FROM {S}.notification_deliveries
                     WHERE project_id = $1 AND at >= {S}.from_ms($2) ORDER BY id",
                ),
                // Nothing was delivered before 1970: earlier bounds (`MIN_UTC`) are the epoch,
                // which PostgreSQL's time type can hold.
                &[&self.project, &since.timestamp_millis().max(0)],
            )?)
        })?;
        rows.iter()
            .map(|r| {
                let outcome: String = r.get(6);
                Ok(DeliveryAttempt {
                    delivery_id: r.get(0),
                    event: r.get(1),
                    source: r.get(2),
                    receiver: r.get(3),
                    attempt: u32::try_from(r.get::<_, i32>(4)).unwrap_or(0),
                    at: time_ms(r.get(5))?,
                    outcome: DeliveryOutcome::parse(&outcome).ok_or_else(|| {
                        Error::failed(format!(
                            "the store holds a bad notification delivery outcome `{outcome}`"
                        ))
                    })?,
                    detail: r.get(7),
                })
            })
            .collect()
    }
}

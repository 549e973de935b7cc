//! Notification deliveries: every attempt at telling a receiver of
//! `annotations.dsm.notifications` about an event (see `crate::notify`), kept so failed
//! deliveries show in `dsm health` and the dashboard, bounded by age and count.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::Result;

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// The receiver took it (a 2xx answer, or the command exited 0).
    Delivered,
    /// It failed; another attempt follows.
    Retrying,
    /// It failed and was the last attempt: the delivery failed.
    Failed,
}

impl DeliveryOutcome {
    /// The name stored.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Retrying => "retrying",
            DeliveryOutcome::Failed => "failed",
        }
    }

    /// Reads a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "delivered" => Some(DeliveryOutcome::Delivered),
            "retrying" => Some(DeliveryOutcome::Retrying),
            "failed" => Some(DeliveryOutcome::Failed),
            _ => None,
        }
    }
}

/// One attempt at a delivery.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryAttempt {
    /// The delivery (the same for each of its attempts; the receiver gets it as
    /// `delivery_id`).
    pub delivery_id: String,
    /// The event's name (`source_error`, ...).
    pub event: String,
    /// The source it is about, if any.
    pub source: Option<String>,
    /// Who: `webhook <scheme://host/path>` (never a query or credentials) or
    /// `command <program>`.
    pub receiver: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// When the attempt ended.
    pub at: DateTime<Utc>,
    /// How it ended.
    pub outcome: DeliveryOutcome,
    /// Why it failed (`HTTP 500`, an exit status, a connection error).
    pub detail: Option<String>,
}

/// How much of the delivery log is kept: attempts older than `max_age` go, and the oldest
/// beyond `max_attempts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryRetention {
    /// The oldest attempt kept.
    pub max_age: chrono::Duration,
    /// The most attempts kept.
    pub max_attempts: u64,
}

/// The delivery log of the system store.
pub trait NotificationStore {
    /// Records an attempt, then drops what `retention` no longer keeps.
    fn record_delivery(
        &self,
        attempt: &DeliveryAttempt,
        retention: DeliveryRetention,
    ) -> Result<()>;

    /// Every attempt that ended at or after `since`, oldest first.
    fn deliveries_since(&self, since: DateTime<Utc>) -> Result<Vec<DeliveryAttempt>>;
}

//! Webhook events of sources of type `webhook`: received by `dsm serve`
//! (`POST /api/webhooks/{source}`), handed to the source's tap in a private file by a run, and
//! marked consumed once the loader confirmed the STATE after them (see `crate::webhooks`).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::Result;

/// An event to store.
#[derive(Debug, Clone)]
pub struct NewWebhookEvent {
    /// The source (extractor) it is for.
    pub source: String,
    /// The sender's `X-DSM-Event-Id`, when given: a second event with it is a duplicate.
    pub event_id: Option<String>,
    /// The body, a JSON document as received.
    pub payload: String,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
}

/// How many events a source may keep. Consumed events are deleted (oldest first) to stay
/// under the bounds; pending ones never are: when they alone reach a bound, new events are
/// refused ([`Received::Full`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookLimits {
    /// The most events kept.
    pub max_events: u64,
    /// The most payload bytes kept.
    pub max_bytes: u64,
}

/// What became of an event given to [`WebhookStore::receive_webhook`].
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// Stored (durably: the transaction committed).
    Stored(WebhookEvent),
    /// An event with the same `event_id` was stored before; nothing changed.
    Duplicate(WebhookEvent),
    /// Pending events fill the source's bounds; nothing was stored.
    Full {
        /// Pending events of the source.
        pending: u64,
        /// Their payload bytes.
        bytes: u64,
    },
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookEvent {
    /// The store's id of the event (increasing, never reused).
    pub id: i64,
    /// Its source.
    pub source: String,
    /// The sender's event id, if it gave one.
    pub event_id: Option<String>,
    /// Its place in the delivery order (a replay gives it a new, higher one).
    pub seq: i64,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// The payload's size in bytes.
    pub size: u64,
    /// When a run's loader confirmed it; `None` while it is pending.
    pub consumed_at: Option<DateTime<Utc>>,
    /// The payload (JSON text), when it was asked for.
    #[serde(skip)]
    pub payload: Option<String>,
}

/// Counts of one source's events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WebhookCounts {
    /// Events waiting for a run.
    pub pending: u64,
    /// Events a run delivered.
    pub consumed: u64,
    /// Payload bytes of all of them.
    pub bytes: u64,
}

/// The webhook tables of the system store.
pub trait WebhookStore {
    /// Stores an event unless it is a duplicate or the source is full, in one transaction that
    /// is durable when this returns. Consumed events are deleted, oldest first, as far as
    /// needed to keep the source within `limits`.
    fn receive_webhook(&self, event: &NewWebhookEvent, limits: &WebhookLimits) -> Result<Received>;

    /// A source's events in delivery order (`seq`), without payloads: those with `seq` above
    /// `after_seq`, at most `limit` of them, only pending ones when `pending_only`.
    fn webhook_events(
        &self,
        source: &str,
        after_seq: i64,
        pending_only: bool,
        limit: usize,
    ) -> Result<Vec<WebhookEvent>>;

    /// Pending events of a source with their payloads, in delivery order, `seq` above
    /// `after_seq`, at most `limit` (a run writes them out a page at a time).
    fn pending_webhooks(
        &self,
        source: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<WebhookEvent>>;

    /// One event of a source with its payload.
    fn webhook_event(&self, source: &str, id: i64) -> Result<Option<WebhookEvent>>;

    /// Counts of a source's events.
    fn webhook_counts(&self, source: &str) -> Result<WebhookCounts>;

    /// Marks a source's pending events with `seq` up to `through_seq` consumed at `at`;
    /// returns how many.
    fn consume_webhooks(&self, source: &str, through_seq: i64, at: DateTime<Utc>) -> Result<u64>;

    /// Makes consumed events pending again with new `seq`s (in their old order), so the next
    /// run sends them: the given ids, or every consumed event of the source. Returns the ids
    /// replayed. Ids not of the source, or still pending, are left alone.
    fn replay_webhooks(&self, source: &str, ids: Option<&[i64]>) -> Result<Vec<i64>>;

    /// Deletes a source's events consumed before `consumed_before`; returns how many.
    fn prune_webhooks(&self, source: &str, consumed_before: DateTime<Utc>) -> Result<u64>;
}

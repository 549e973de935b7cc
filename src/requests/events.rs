//! The one place a request's transitions are announced: `request_submitted` (to approvers),
//! `request_approved`, `request_rejected` (with the reason) and `first_sync_finished` (with the
//! record count). Notifications are delivered elsewhere; until they are wired here, this only
//! logs the event (names and ids, never secrets).

use serde_json::Value;

use super::RequestRecord;

/// A request's transition happened: `event` is the notification's name, `fields` its fields
/// beyond the request's id, name, organisation and status.
pub fn transition(event: &str, request: &RequestRecord, fields: &Value) {
    tracing::info!(
        event,
        request = %request.id,
        name = %request.request.name,
        status = request.status.as_str(),
        fields = %fields,
        "source request event"
    );
}

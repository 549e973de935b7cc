//! The one place a request's transitions are announced: [`transition`] logs each one (names
//! and ids, never secrets), and [`announce`] hands `request_submitted` (to approvers),
//! `request_approved` and `request_rejected` (with the reason) to the project's notification
//! receivers. The first sync's `first_sync_finished` comes from the run itself, as for every
//! flow's first successful run.

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

/// Tells the project's notification receivers (in the background) about the transition a
/// command or request just made: the one `record`'s latest history entry names. Other
/// transitions (tests, cancellations) notify no one.
pub fn announce(
    project: &crate::project::Project,
    store: std::sync::Arc<dyn crate::store::Store>,
    record: &RequestRecord,
) {
    use crate::notify::Event;
    let Some(last) = record.history.last() else {
        return;
    };
    let (id, name, by) = (
        record.id.as_str(),
        record.request.name.as_str(),
        last.actor.as_str(),
    );
    let event = match last.action.as_str() {
        "submitted" | "resubmitted" => Event::request_submitted(id, name, by),
        "approved" => Event::request_approved(id, name, by),
        "rejected" => Event::request_rejected(id, name, by, last.reason.as_deref().unwrap_or("")),
        _ => return,
    };
    crate::notify::emit(project, store, event);
}

//! Source requests as the store keeps them: a requester's definition of a source waiting for an
//! approver, its status and the history of its transitions. The lifecycle (who may do what,
//! testing, approving into `meltano.yml`) is [`crate::requests`]' job; the store only records.
//!
//! A request's secrets are rows of the secret table under the plugin name
//! [`secret_owner`]`(id)`, sealed like every secret, so a key rotation re-encrypts them too.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::audit::{AuditAppend, AuditRow, ChainLink};
use super::secrets::SealedSecret;
use crate::error::{Error, Result};

/// Where a request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Waiting for an approver.
    Pending,
    /// Approved: the source is in `meltano.yml`.
    Approved,
    /// Rejected with a reason; the requester may resubmit it.
    Rejected,
    /// Withdrawn by its requester; its secrets are destroyed.
    Cancelled,
}

impl RequestStatus {
    /// Every status, in the order shown.
    pub const ALL: [RequestStatus; 4] = [
        RequestStatus::Pending,
        RequestStatus::Approved,
        RequestStatus::Rejected,
        RequestStatus::Cancelled,
    ];

    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Approved => "approved",
            RequestStatus::Rejected => "rejected",
            RequestStatus::Cancelled => "cancelled",
        }
    }

    /// Reads a name (stored, or typed by a user).
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                Error::config(format!("`{s}` is not a request status"))
                    .hint("use `pending`, `approved`, `rejected` or `cancelled`")
            })
    }
}

/// What a requester asks for: the source's definition and what the approver reads. Secret
/// values are never part of it, only their names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestRevision {
    /// The source's name in `meltano.yml` once approved.
    pub name: String,
    /// A plugin of dsm's catalog, `NAME` or `NAME--VARIANT` (or `plugin` is given).
    pub template: Option<String>,
    /// A full plugin definition, as its entry in `meltano.yml` would be (or `template`).
    #[schema(value_type = Option<Object>)]
    pub plugin: Option<Map<String, Value>>,
    /// Settings that are not sensitive.
    #[schema(value_type = Object)]
    pub config: Map<String, Value>,
    /// Names of the sensitive settings given (their values are sealed, never shown).
    pub secrets: Vec<String>,
    /// The classification label of the source's data.
    pub classification: String,
    /// What the source is for.
    pub description: Option<String>,
    /// Notes for the approver.
    pub notes: Option<String>,
}

/// One step of a request's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Transition {
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Who: `token:NAME` or `uid:N` (a local user).
    pub actor: String,
    /// What: `submitted`, `tested`, `approved`, `rejected`, `resubmitted`, `cancelled`,
    /// `first_sync`.
    pub action: String,
    /// The request's status after it.
    pub status: RequestStatus,
    /// The reason given (a rejection, an approval over a failed test) or the outcome (a test,
    /// a first sync).
    pub reason: Option<String>,
}

/// A stored request.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RequestRecord {
    /// Its id (a UUID).
    pub id: String,
    /// The organisation it is for (the requester's).
    pub organisation: Option<String>,
    /// Who submitted it: `token:NAME` or `uid:N`.
    pub requester: String,
    /// Where it is in its life.
    pub status: RequestStatus,
    /// What was asked for.
    pub request: RequestRevision,
    /// The last connection test's result document, if it was tested.
    #[schema(value_type = Option<Object>)]
    pub test: Option<Value>,
    /// The reason of its last decision (a rejection's, an override's).
    pub reason: Option<String>,
    /// When it was submitted.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
    /// Every transition, oldest first.
    pub history: Vec<Transition>,
}

/// A request to record.
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// Its id (a UUID).
    pub id: String,
    /// The requester's organisation.
    pub organisation: Option<String>,
    /// Who submits it.
    pub requester: String,
    /// What is asked for.
    pub request: RequestRevision,
    /// The `submitted` transition.
    pub submitted: Transition,
}

/// Which requests to list.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    /// Only those this actor submitted.
    pub requester: Option<String>,
    /// Only those with this status.
    pub status: Option<RequestStatus>,
    /// At most this many, newest first.
    pub limit: usize,
}

/// A transition to record.
#[derive(Debug, Clone)]
pub struct RequestUpdate {
    /// The request.
    pub id: String,
    /// The status the request must have; otherwise nothing is written.
    pub expected: RequestStatus,
    /// The transition (its `status` becomes the request's).
    pub transition: Transition,
    /// A new revision (a resubmission).
    pub revision: Option<RequestRevision>,
    /// A new test result.
    pub test: Option<Value>,
    /// A new reason (`Some(None)` clears it).
    pub reason: Option<Option<String>>,
    /// Destroys the request's own secrets.
    pub destroy_secrets: bool,
    /// Secrets to store (or replace): a resubmission's under [`secret_owner`], an approval's
    /// under the new source's name.
    pub put_secrets: Vec<SealedSecret>,
}

/// The plugin name a request's secrets are stored under until it is decided.
pub fn secret_owner(id: &str) -> String {
    format!("request:{id}")
}

/// Builds the audit entry of a pruning from the chain's last link and the ids removed.
pub type PruneAudit<'a> = dyn Fn(&ChainLink, &[String]) -> AuditRow + 'a;

/// The source request tables.
pub trait RequestStore {
    /// Records a new request with its sealed secrets (owned by [`secret_owner`]) and appends
    /// the audit entry, in one transaction.
    fn create_request(
        &self,
        request: &NewRequest,
        secrets: &[SealedSecret],
        entry: &AuditAppend<'_>,
    ) -> Result<()>;

    /// One request with its history.
    fn request(&self, id: &str) -> Result<Option<RequestRecord>>;

    /// Requests matching `filter`, newest first, with their histories.
    fn list_requests(&self, filter: &RequestFilter) -> Result<Vec<RequestRecord>>;

    /// Records a transition with its changes and appends the audit entry, in one
    /// transaction. Returns `false` (and writes nothing) when the request does not exist or
    /// its status is not `update.expected`.
    fn update_request(&self, update: &RequestUpdate, entry: &AuditAppend<'_>) -> Result<bool>;

    /// Deletes the rejected and cancelled requests last changed before `before` (RFC 3339)
    /// with their secrets and histories, and appends the audit entry naming them, in one
    /// transaction. Returns the ids removed (none: nothing appended).
    fn prune_requests(&self, before: &str, entry: &PruneAudit<'_>) -> Result<Vec<String>>;
}

//! What the PostgreSQL store does not keep: asking for it is an error naming the feature,
//! never a silent local fallback: source requests.

use super::PgStore;
use crate::error::{Error, Result};
use crate::store::audit::AuditAppend;
use crate::store::requests::{
    NewRequest, PruneAudit, RequestFilter, RequestRecord, RequestStore, RequestUpdate,
};
use crate::store::secrets::SealedSecret;

/// The error for a feature the PostgreSQL store does not keep yet.
pub fn not_yet(feature: &str) -> Error {
    Error::config(format!(
        "{feature} cannot use a PostgreSQL store yet (team mode keeps state, leases, run history, settings, secrets, the audit log, config history, source status, API tokens, webhook events and notification deliveries)"
    ))
    .hint("run this against the project's SQLite store (leave out `--database-uri` and DSM_DATABASE_URI)")
}

impl RequestStore for PgStore {
    fn create_request(
        &self,
        _request: &NewRequest,
        _secrets: &[SealedSecret],
        _entry: &AuditAppend<'_>,
    ) -> Result<()> {
        Err(not_yet("source requests"))
    }

    fn request(&self, _id: &str) -> Result<Option<RequestRecord>> {
        Err(not_yet("source requests"))
    }

    fn list_requests(&self, _filter: &RequestFilter) -> Result<Vec<RequestRecord>> {
        Err(not_yet("source requests"))
    }

    fn update_request(&self, _update: &RequestUpdate, _entry: &AuditAppend<'_>) -> Result<bool> {
        Err(not_yet("source requests"))
    }

    fn prune_requests(&self, _before: &str, _entry: &PruneAudit<'_>) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}

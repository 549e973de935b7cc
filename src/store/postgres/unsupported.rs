//! What the PostgreSQL store does not keep: asking for it is an error naming the feature,
//! never a silent local fallback (bundles and `dsm serve` say so where they are used).

use crate::error::Error;

/// The error for a feature the PostgreSQL store does not keep yet.
pub fn not_yet(feature: &str) -> Error {
    Error::config(format!(
        "{feature} cannot use a PostgreSQL store yet (team mode keeps state, leases, run history, settings, secrets, the audit log, config history, source status, API tokens, webhook events, notification deliveries, source requests and merged streams)"
    ))
    .hint("run this against the project's SQLite store (leave out `--database-uri` and DSM_DATABASE_URI)")
}

//! What the PostgreSQL store does not keep: asking for it is an error naming the feature,
//! never a silent local fallback (the commands that work on an SQLite file itself say so).

use crate::error::Error;

/// The error for a feature the PostgreSQL store does not keep yet.
pub fn not_yet(feature: &str) -> Error {
    Error::config(format!(
        "{feature} cannot use a PostgreSQL store yet (team mode keeps state, leases, run history, settings, secrets, the audit log, config history, source status, API tokens, webhook events, notification deliveries, source requests, merged streams and bundles; `dsm serve` runs on it)"
    ))
    .hint("run this against the project's SQLite store (leave out `--database-uri` and DSM_DATABASE_URI)")
}

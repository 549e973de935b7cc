//! Source status: the history of operator changes and test results of each registered source.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::Result;

/// One entry of a source's status history (the registry gives `status` and `origin` meaning).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceStatusChange {
    /// The source's plugin name.
    pub source: String,
    /// The status set (`active`, `inactive`, `maintenance`) or a test result (`passed`, `failed`).
    pub status: String,
    /// Why, as the operator or the test wrote it.
    pub reason: Option<String>,
    /// Who made the change, if known.
    pub user: Option<String>,
    /// `operator` for `dsm sources disable|enable|maintenance`, `test` for `dsm test`.
    pub origin: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// The status history of sources.
pub trait SourceStatusStore {
    /// Appends a change of a source's status to its history.
    fn record_source_status(&self, change: &SourceStatusChange) -> Result<()>;

    /// The status history of one source (or all), newest first, at most `limit`.
    fn source_status_history(
        &self,
        source: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SourceStatusChange>>;
}

//! Merged streams as the store keeps them: one row per key of a merged stream (its sources'
//! candidates and the record last sent), the sources' schemas, the conflict log, the sends each
//! run has not had confirmed, and each run's counts. Resolving records is
//! [`crate::merge`]'s job; [`MergedDb`] and [`StreamDb`] (SQLite today) keep the rows.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

pub use super::sqlite::merged::{MergedDb, StreamDb};

/// How a key row's `resolved` column names the record last sent when that record is exactly
/// one source's candidate in the same row: this character and the source's name (`=csv`).
/// Most keys come from one source, and their record would otherwise be written twice. Any
/// other value is the record's JSON text.
pub const SAME_AS: char = '=';

/// One key's row: its candidates (JSON), the record last sent, and whether it is held back.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityRow {
    /// The candidates JSON.
    pub candidates: String,
    /// The record last sent to the target, if any (see [`SAME_AS`]).
    pub resolved: Option<String>,
    /// Whether a `quarantine` rule holds the key back.
    pub quarantined: bool,
}

/// A key (JSON array text) and its record.
pub type KeyedRecord = (String, Map<String, Value>);

/// One write of a resolver, applied in order within its batch's transaction.
#[derive(Debug)]
pub enum MergeWrite {
    /// A key's row; `sent`: the record was sent under this mark.
    Entity {
        /// The key (JSON array text).
        key: String,
        /// The row.
        row: EntityRow,
        /// The mark the record was sent under, when it was sent.
        sent: Option<u64>,
    },
    /// Conflict-log rows.
    Conflicts(Vec<ConflictRow>),
    /// The loader confirmed the sends before this mark (`None`: all).
    Confirm(Option<u64>),
}

/// The fields one record disagreed on, as the conflict log stores them (see migration 11): a
/// JSON array with one `[field, candidates by source, winner, winning source, rule, outcome]`
/// array per field.
#[derive(Debug, Clone, Default)]
pub struct ConflictFields {
    json: Vec<u8>,
    n: usize,
}

/// A field's disagreement, to add to [`ConflictFields`].
#[derive(Debug, Clone, Copy)]
pub struct FieldConflict<'a, C> {
    /// The common field.
    pub field: &'a str,
    /// The candidates by source (serialises as a JSON object).
    pub candidates: C,
    /// The winning value and source, when one won (the outcome is then `resolved`).
    pub winner: Option<(&'a Value, &'a str)>,
    /// The rule.
    pub rule: &'a str,
    /// `resolved`, `quarantined`, `held` (resolved, but another field quarantined the
    /// record, so nothing was sent), `failed` or `null_key`.
    pub outcome: &'a str,
}

impl ConflictFields {
    /// Adds one field.
    pub fn push<C: serde::Serialize>(&mut self, f: &FieldConflict<'_, C>) {
        self.json.push(if self.n == 0 { b'[' } else { b',' });
        let entry = (
            f.field,
            &f.candidates,
            f.winner.map(|w| w.0),
            f.winner.map(|w| w.1),
            f.rule,
            f.outcome,
        );
        serde_json::to_writer(&mut self.json, &entry).expect("JSON values serialise");
        self.n += 1;
    }

    /// Whether no field was added.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The conflict-log row of `key`: these fields, logged at `logged_at`; `None` when no
    /// field was added.
    pub fn into_row(mut self, key: String, logged_at: String) -> Option<ConflictRow> {
        if self.n == 0 {
            return None;
        }
        self.json.push(b']');
        Some(ConflictRow {
            key,
            logged_at,
            n: i64::try_from(self.n).unwrap_or(i64::MAX),
            fields: String::from_utf8(self.json).expect("serde_json writes UTF-8"),
        })
    }
}

/// A conflict-log row the resolver holds until its batch is written: one record's key and the
/// fields it disagreed on.
#[derive(Debug, Clone)]
pub struct ConflictRow {
    /// The key (JSON array text; `null` for a record without key).
    pub key: String,
    /// When (RFC 3339, UTC).
    pub logged_at: String,
    /// How many fields (at least one).
    pub n: i64,
    /// The fields (see [`ConflictFields`]).
    pub fields: String,
}

/// One logged disagreement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConflictEntry {
    /// The entry's id (for `dsm conflicts show`).
    pub id: i64,
    /// The merged stream.
    pub stream: String,
    /// The key, as a JSON array (`null` for a record without key).
    pub key: Value,
    /// The common field.
    pub field: String,
    /// The candidate values by source.
    pub candidates: Value,
    /// The winning value, when one won.
    pub winner: Option<Value>,
    /// The winning source, when one won.
    pub winning_source: Option<String>,
    /// The rule that decided.
    pub rule: String,
    /// `resolved`, `quarantined`, `held` (resolved, but another field quarantined the
    /// record, so nothing was sent), `failed` or `null_key`.
    pub outcome: String,
    /// The run.
    pub run_id: String,
    /// When (RFC 3339, UTC).
    pub logged_at: String,
}

/// Which entries to list.
#[derive(Debug, Clone, Default)]
pub struct ConflictFilter {
    /// Only this merged stream.
    pub stream: Option<String>,
    /// Only entries where this source had a candidate.
    pub source: Option<String>,
    /// Only entries logged at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only this run.
    pub run_id: Option<String>,
    /// At most this many (newest first).
    pub limit: Option<u32>,
}

/// How many conflicts a run logged for a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunConflictCount {
    /// The run.
    pub run_id: String,
    /// The merged stream.
    pub stream: String,
    /// Rows logged.
    pub conflicts: u64,
    /// Of which quarantined (including records without key).
    pub quarantined: u64,
    /// Of which failed the run.
    pub failed: u64,
    /// When the run logged its first entry.
    pub first_logged_at: String,
}

/// What a resolver did so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ResolverStats {
    /// Records received.
    pub records_in: u64,
    /// Merged records emitted (their resolved value changed).
    pub emitted: u64,
    /// Records identical to what their source sent before (nothing to do).
    pub unchanged: u64,
    /// Records whose resolution did not change the output.
    pub unchanged_output: u64,
    /// Conflict-log rows written (one per disagreeing field).
    pub conflicts: u64,
    /// Records held back by a `quarantine` rule.
    pub quarantined: u64,
    /// Records skipped or quarantined for a missing or null key.
    pub null_keys: u64,
    /// Records sent again because an earlier run sent them and then failed before its loader
    /// confirmed them.
    pub resent: u64,
}

/// What a run did to one merged stream from one source (a row of `merge_run_stats`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MergeRunStats {
    /// The merged stream.
    pub stream: String,
    /// The source.
    pub source: String,
    /// The counts.
    #[serde(flatten)]
    pub stats: ResolverStats,
}

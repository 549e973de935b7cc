//! Merged streams as the store keeps them: one row per key of a merged stream (its sources'
//! candidates and the record last sent), the sources' schemas, the conflict log, the sends each
//! run has not had confirmed, and each run's counts. Resolving records is
//! [`crate::merge`]'s job; a backend keeps the rows behind two narrow traits:
//! [`MergedTables`] (schemas, the resolved table, the conflict log, run counts) and
//! [`StreamRows`] (one resolver's reads of its keys and its batched writes). The SQLite store
//! implements them with [`MergedDb`] and [`StreamDb`]; the PostgreSQL store of team mode with
//! rows under the project's `project_id`. [`open`] picks the one a [`Location`] names.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use super::Location;
pub use super::sqlite::merged::{MergedDb, StreamDb};
use crate::error::{Error, Result};
use crate::singer::message::SchemaMessage;

/// The merged-stream tables of one project's store.
pub trait MergedTables: Send + std::fmt::Debug {
    /// The SCHEMA messages the sources of a merged stream sent last, by source name.
    fn load_schemas(&self, stream: &str) -> Result<Vec<(String, SchemaMessage)>>;
    /// Remembers the SCHEMA message a source sent for a merged stream.
    fn save_schema(&self, stream: &str, source: &str, schema: &SchemaMessage) -> Result<()>;
    /// The resolved table of a merged stream: key and the record last sent, in key order.
    fn resolved_records(&self, stream: &str) -> Result<Vec<KeyedRecord>>;
    /// Keys of a merged stream currently held back by a `quarantine` rule, in key order.
    fn quarantined_keys(&self, stream: &str) -> Result<Vec<String>>;
    /// Every key sent but not yet confirmed, of any stream and run: (stream, run, mark, key),
    /// by mark and key. For tests and inspection.
    fn unconfirmed(&self) -> Result<Vec<(String, String, i64, String)>>;
    /// Conflict-log entries, newest first.
    fn conflicts(&self, filter: &ConflictFilter) -> Result<Vec<ConflictEntry>>;
    /// One conflict-log entry by id.
    fn conflict(&self, id: i64) -> Result<Option<ConflictEntry>>;
    /// Conflict counts per run and stream (newest run first), filtered as
    /// [`Self::conflicts`].
    fn conflict_counts(&self, filter: &ConflictFilter) -> Result<Vec<RunConflictCount>>;
    /// Deletes conflict-log entries logged before `older_than` (optionally of one stream);
    /// returns how many.
    fn prune_conflicts(&self, older_than: DateTime<Utc>, stream: Option<&str>) -> Result<usize>;
    /// Writes a run's counts to `merge_run_stats`.
    fn record_run_stats(&self, run_id: &str, stats: &[MergeRunStats]) -> Result<()>;
    /// The counts a run recorded, by stream and source.
    fn run_stats(&self, run_id: &str) -> Result<Vec<MergeRunStats>>;
    /// These tables as the store of one resolver: the rows of `stream` written by `run`.
    fn into_stream(self: Box<Self>, stream: &str, run: &StreamRun) -> Result<Box<dyn StreamRows>>;
}

/// The run a resolver writes for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamRun {
    /// The run id.
    pub run_id: String,
    /// The state id of the flow whose lease the run holds, when it holds one: on a shared
    /// store every batch commits only while the run still holds that lease.
    pub lease: Option<String>,
}

impl StreamRun {
    /// A run without a lease (tests, benchmarks, inspection).
    pub fn unleased(run_id: &str) -> Self {
        StreamRun {
            run_id: run_id.to_owned(),
            lease: None,
        }
    }
}

/// One resolver's rows: reads of its keys, and its writes in batches (one transaction each).
pub trait StreamRows: Send + std::fmt::Debug {
    /// The tables, for reads that are not about one key (call [`Self::flush`] first so they
    /// see every write).
    fn tables(&self) -> &dyn MergedTables;
    /// Whether the writes go to a writer thread rather than inline.
    fn is_behind(&self) -> bool;
    /// The row of `key`: the latest one written, else the database's.
    fn load(&mut self, key: &str) -> Result<Option<EntityRow>>;
    /// Says which keys the next loads will ask for, so a store a round trip away can read
    /// them in one query. Only a speed-up: a key asked for without it, or after the batch
    /// ended, is read on its own. The default reads nothing ahead.
    fn prefetch(&mut self, _keys: &[String]) -> Result<()> {
        Ok(())
    }
    /// Whether [`Self::prefetch`] does anything (so the caller can skip working out the keys).
    fn reads_ahead(&self) -> bool {
        false
    }
    /// Most records a batch of this store takes, when not the resolver's default (the age
    /// limit still ends a batch sooner).
    fn batch_records(&self) -> Option<usize> {
        None
    }
    /// Writes (or queues) one write into the open batch.
    fn write(&mut self, op: MergeWrite) -> Result<()>;
    /// Ends the batch: commits it (perhaps without waiting).
    fn commit(&mut self) -> Result<()>;
    /// Commits everything written and waits until it is committed; reports any failed write.
    fn flush(&mut self) -> Result<()>;
    /// The records other runs sent but no loader confirmed, which this run sends again under
    /// `mark`: they become this run's unconfirmed keys, in one transaction. Call after
    /// [`Self::flush`].
    fn take_over_unconfirmed(&mut self, mark: u64) -> Result<Vec<KeyedRecord>>;
}

/// The merged-stream tables of the store at `location`, for the project at `project_root`
/// (a PostgreSQL store keeps them under the project's `project_id`).
pub fn open(location: &Location, project_root: &Path) -> Result<Box<dyn MergedTables>> {
    match location {
        Location::Sqlite(path) => Ok(Box::new(MergedDb::open(path)?)),
        Location::Postgres(target) => {
            // Opening the store checks (or on first use creates) the schema.
            let store = super::open_location(location, project_root)?;
            drop(store);
            let id = super::team_project_id(project_root)?;
            Ok(Box::new(super::postgres::PgMerged::open(target, &id)?))
        }
    }
}

/// The record a key row's `resolved` text stands for (see [`SAME_AS`]), given the row's
/// candidates JSON.
pub(crate) fn resolved_record(
    stream: &str,
    key: &str,
    resolved: &str,
    candidates: &str,
) -> Result<Map<String, Value>> {
    let unreadable = |why: String| {
        Error::failed(format!(
            "the stored record of key {key} of merged stream `{stream}` is unreadable: {why}"
        ))
    };
    match resolved.strip_prefix(SAME_AS) {
        None => serde_json::from_str(resolved).map_err(|e| unreadable(e.to_string())),
        Some(source) => {
            let mut all: Map<String, Value> =
                serde_json::from_str(candidates).map_err(|e| unreadable(e.to_string()))?;
            match all
                .remove(source)
                .as_mut()
                .and_then(|c| c.get_mut("r"))
                .map(Value::take)
            {
                Some(Value::Object(record)) => Ok(record),
                _ => Err(unreadable(format!(
                    "it names the candidate of source `{source}`, which the row does not hold"
                ))),
            }
        }
    }
}

/// A stored SCHEMA message read back.
pub(crate) fn stored_schema(stream: &str, source: &str, text: &str) -> Result<SchemaMessage> {
    use crate::singer::Message;
    let parsed = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| Message::from_value(v).ok());
    match parsed {
        Some(Message::Schema(s)) => Ok(s),
        _ => Err(Error::failed(format!(
            "the stored schema of source `{source}` of merged stream `{stream}` is unreadable"
        ))),
    }
}

/// A SCHEMA message as stored.
pub(crate) fn schema_text(schema: &SchemaMessage) -> String {
    use crate::singer::Message;
    serde_json::to_string(&Message::Schema(schema.clone()).to_value())
        .expect("a JSON value always serialises")
}

/// A row of the conflict log as both backends store it: its first entry's id, stream, key,
/// run, time and fields.
pub(crate) struct LogRow {
    pub id: i64,
    pub stream: String,
    pub key: String,
    pub run_id: String,
    pub logged_at: String,
    pub fields: String,
}

/// One field of a log row, as migration 11 stores it.
type StoredField = (String, Value, Value, Option<String>, String, String);

impl LogRow {
    /// The row's entries, in field order; entry `i` has id `id + i`.
    pub(crate) fn entries(self) -> Result<Vec<ConflictEntry>> {
        let fields: Vec<StoredField> = serde_json::from_str(&self.fields).map_err(|e| {
            Error::failed(format!(
                "conflict-log row {} of merged stream `{}` is unreadable: {e}",
                self.id, self.stream
            ))
            .hint("the system database may be damaged; `dsm conflicts prune` can remove old rows")
        })?;
        let key = serde_json::from_str(&self.key).unwrap_or_else(|_| Value::String(self.key));
        Ok(fields
            .into_iter()
            .zip(self.id..)
            .map(|((field, candidates, winner, source, rule, outcome), id)| {
                let resolved = outcome == "resolved";
                ConflictEntry {
                    id,
                    stream: self.stream.clone(),
                    key: key.clone(),
                    field,
                    candidates,
                    winner: resolved.then_some(winner),
                    winning_source: if resolved { source } else { None },
                    rule,
                    outcome,
                    run_id: self.run_id.clone(),
                    logged_at: self.logged_at.clone(),
                }
            })
            .collect())
    }
}

/// Reads log rows newest first into entries until `filter.limit`, keeping those where
/// `filter.source` had a candidate (the rows are taken apart here, so a limit stops the
/// reading early).
pub(crate) fn collect_entries(
    rows: impl Iterator<Item = Result<LogRow>>,
    filter: &ConflictFilter,
) -> Result<Vec<ConflictEntry>> {
    let limit = filter.limit.map_or(usize::MAX, |l| l as usize);
    let mut out = Vec::new();
    for row in rows {
        if out.len() >= limit {
            break;
        }
        let entries = row?.entries()?;
        let wanted = entries.into_iter().rev().filter(|e| {
            filter
                .source
                .as_deref()
                .is_none_or(|s| e.candidates.get(s).is_some())
        });
        out.extend(wanted.take(limit - out.len()));
    }
    Ok(out)
}

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

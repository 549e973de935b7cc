//! The per-record engine: keeps every source's candidate and the winner per key in SQLite and
//! emits a merged record only when its resolved value changed.
//!
//! Memory does not grow with the number of keys: one key's row is read, resolved and written
//! back per record; the open batch's conflict-log rows and sent keys are held until it commits (bounded by the batch size, not by the number of keys). Writes are batched in transactions
//! of at most [`Resolver::BATCH`] records or [`Resolver::MAX_BATCH_AGE`]; [`Resolver::flush`]
//! commits the rest. Dropping a resolver without flushing rolls the open batch back, so records
//! whose resolution was not committed are resolved and sent again next time.
//!
//! # Why committing before the loader confirms is safe
//!
//! A committed batch can be ahead of the target: the records it sent may still be in a pipe or
//! in the loader's buffer when the run dies. Left alone, the next run would find those records
//! unchanged and never send them again, and the target would keep stale rows. So the row of
//! every key whose record is sent also names, in the same write, the run that sent it and the
//! number of extractor STATE messages seen before it (the *mark*). Each such run has a row in
//! `merge_sends` saying how far its loader confirmed: when the loader emits a STATE after
//! flushing, sends before that STATE's mark count as confirmed ([`Resolver::confirm`]); a run
//! that ends well deletes its row, confirming the rest. Keys a failed run left unconfirmed are
//! sent again by the next run of the stream ([`Resolver::recover`]) before anything else.
//! What the resolver believes the target holds is thus never ahead of what the loader confirmed,
//! while the batches stay short (SQLite has one writer per database, and the run history and
//! bookmarks are written to the same file while the run goes on).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::MergeError;
use super::declaration::{MergedStream, NullKeyRule};
use super::rules::{self, Candidate, Verdict};
use super::schema::PROVENANCE_FIELD;
use super::value::normalise_time;
use crate::store::merged::{
    self as store, ConflictFields, ConflictRow, EntityRow, FieldConflict, MergeWrite as Op,
    MergedTables, StreamRows, StreamRun,
};

/// The run a resolver works for.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The run id recorded in the conflict log.
    pub run_id: String,
    /// When the run started: the arrival time of records without `time_extracted`.
    pub started_at: DateTime<Utc>,
    /// The state id of the flow whose lease the run holds, when it holds one (a shared store
    /// commits the resolver's batches only while the run holds it).
    pub lease: Option<String>,
}

pub use crate::store::merged::ResolverStats;

/// One source's candidate of a key, stored as `{"r": record, "f": first seen, "l": last seen}`.
/// `l` is left out when it equals `f` (a key a source supplied once, the usual case): the
/// timestamps are a large share of a key's row, and every byte of it is written to the WAL.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "StoredWire")]
struct StoredCandidate {
    record: Map<String, Value>,
    first_seen: String,
    last_seen: String,
}

#[derive(Deserialize)]
struct StoredWire {
    r: Map<String, Value>,
    f: String,
    l: Option<String>,
}

impl From<StoredWire> for StoredCandidate {
    fn from(w: StoredWire) -> Self {
        StoredCandidate {
            record: w.r,
            last_seen: w.l.unwrap_or_else(|| w.f.clone()),
            first_seen: w.f,
        }
    }
}

impl Serialize for StoredCandidate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let same = self.last_seen == self.first_seen;
        let mut m = s.serialize_struct("StoredCandidate", if same { 2 } else { 3 })?;
        m.serialize_field("r", &self.record)?;
        m.serialize_field("f", &self.first_seen)?;
        if !same {
            m.serialize_field("l", &self.last_seen)?;
        }
        m.end()
    }
}

type Candidates = BTreeMap<String, StoredCandidate>;

/// Resolves the records of one merged stream against the store.
pub struct Resolver {
    decl: MergedStream,
    key: Vec<String>,
    started: String,
    /// The stream's rows; writes go inline or to a writer thread.
    db: Box<dyn StreamRows>,
    /// Most records per batch: [`Self::BATCH`] unless the store asks for another size.
    batch: usize,
    pending: usize,
    /// Batches ended so far.
    batches: u64,
    opened: Option<Instant>,
    mark: u64,
    stats: ResolverStats,
    /// The last `time_extracted` seen and its normalised form: taps stamp runs of records with
    /// the same time, and parsing and formatting it per record is a measurable share of the work.
    last_arrival: Option<(String, Option<String>)>,
    /// The conflict-log time (`logged_at`), formatted once per millisecond.
    clock: LogClock,
    /// Conflict-log rows of the open batch not yet written (see [`Resolver::write_pending`]).
    conflicts: Vec<ConflictRow>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("stream", &self.decl.name)
            .field("key", &self.key)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The `logged_at` text of conflict-log rows (RFC 3339, milliseconds, UTC), formatted again only
/// when the millisecond changes.
#[derive(Debug, Default)]
struct LogClock {
    millis: i64,
    text: String,
}

impl LogClock {
    fn now(&mut self) -> &str {
        let now = Utc::now();
        let millis = now.timestamp_millis();
        if self.text.is_empty() || millis != self.millis {
            self.millis = millis;
            self.text = now.to_rfc3339_opts(SecondsFormat::Millis, true);
        }
        &self.text
    }
}

impl Resolver {
    /// Most records per write transaction, unless the store asks for another size
    /// ([`StreamRows::batch_records`]).
    pub const BATCH: usize = 5_000;
    /// Longest a write transaction stays open while records keep coming (other writers of the
    /// system database, such as the bookmark commits of this run, wait for it).
    pub const MAX_BATCH_AGE: Duration = Duration::from_millis(200);

    /// A resolver for `decl` with its (already validated) key, creating the tables if needed.
    pub fn new(
        db: impl Into<Box<dyn MergedTables>>,
        decl: MergedStream,
        key: Vec<String>,
        run: RunContext,
    ) -> Result<Self, MergeError> {
        let started = run.started_at.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string();
        let run = StreamRun {
            run_id: run.run_id,
            lease: run.lease,
        };
        let db = db.into().into_stream(&decl.name, &run)?;
        Ok(Resolver {
            batch: db.batch_records().unwrap_or(Self::BATCH),
            db,
            decl,
            key,
            started,
            pending: 0,
            batches: 0,
            opened: None,
            mark: 0,
            stats: ResolverStats::default(),
            last_arrival: None,
            clock: LogClock::default(),
            conflicts: Vec::new(),
        })
    }

    /// The tables (for reading them, or the conflict log), after committing what was
    /// resolved so far, so that reads see all of it.
    pub fn connection(&mut self) -> Result<&dyn MergedTables, MergeError> {
        self.flush()?;
        Ok(self.db.tables())
    }

    /// Sends the conflict-log rows the open batch holds. They are kept back and written many
    /// rows per statement, which is cheaper than one statement each; they are always written
    /// inside the batch's transaction, before it commits and before any other statement reads
    /// or deletes those tables.
    fn write_pending(&mut self) -> Result<(), MergeError> {
        if !self.conflicts.is_empty() {
            let rows = std::mem::take(&mut self.conflicts);
            self.db.write(Op::Conflicts(rows))?;
        }
        Ok(())
    }

    /// The key in common field names.
    pub fn key(&self) -> &[String] {
        &self.key
    }

    /// The declaration.
    pub fn declaration(&self) -> &MergedStream {
        &self.decl
    }

    /// Whether the writes go to a writer thread (a WAL database file) rather than inline.
    pub fn writes_behind(&self) -> bool {
        self.db.is_behind()
    }

    /// What the resolver did so far.
    pub fn stats(&self) -> &ResolverStats {
        &self.stats
    }

    /// Commits the open batch, and waits until everything resolved so far is committed.
    pub fn flush(&mut self) -> Result<(), MergeError> {
        self.write_pending()?;
        self.pending = 0;
        self.batches += 1;
        self.opened = None;
        Ok(self.db.flush()?)
    }

    /// Ends the open batch: commits it, without waiting for a writer thread to be done.
    fn end_batch(&mut self) -> Result<(), MergeError> {
        self.write_pending()?;
        self.pending = 0;
        self.batches += 1;
        self.opened = None;
        Ok(self.db.commit()?)
    }

    /// How many batches ended so far (what [`Self::prefetch`] read ends with its batch).
    pub fn batches_ended(&self) -> u64 {
        self.batches
    }

    /// Sets the mark later records are sent under: the number of extractor STATE messages seen.
    pub fn set_mark(&mut self, mark: u64) {
        self.mark = mark;
    }

    /// The loader confirmed everything this run sent before `mark` (`None`: everything). Joins
    /// the open batch when there is one.
    pub fn confirm(&mut self, before: Option<u64>) -> Result<(), MergeError> {
        self.write_pending()?;
        Ok(self.db.write(Op::Confirm(before))?)
    }

    /// The records that earlier runs sent but no loader confirmed, to send again now; they
    /// become this run's unconfirmed keys.
    pub fn recover(&mut self) -> Result<Vec<Map<String, Value>>, MergeError> {
        // Everything sent so far is committed first: this works on the resolver's connection.
        self.flush()?;
        let rows = self.db.take_over_unconfirmed(self.mark)?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let out: Vec<Map<String, Value>> = rows.into_iter().map(|(_, record)| record).collect();
        self.stats.resent += out.len() as u64;
        tracing::info!(
            stream = %self.decl.name,
            records = out.len(),
            "sending again the records an earlier run sent without confirmation"
        );
        Ok(out)
    }

    /// Says which records of `source` (source field names) [`Self::resolve`] is about to take,
    /// so the stored rows of their keys are read in one go (one round trip to a PostgreSQL
    /// store instead of one a record). Changes nothing but speed.
    pub fn prefetch<'r>(
        &mut self,
        source: &str,
        records: impl IntoIterator<Item = &'r Map<String, Value>>,
    ) -> Result<(), MergeError> {
        let Some(src) = self.decl.source(source) else {
            // `resolve` reports it.
            return Ok(());
        };
        if !self.db.reads_ahead() {
            return Ok(());
        }
        let keys: Vec<String> = records
            .into_iter()
            .filter_map(|record| {
                key_text(&self.key, |name| {
                    if src.fields.is_empty() {
                        record.get(name)
                    } else {
                        // What renaming the fields leaves under `name`: the last field that
                        // maps to it, as collecting the renamed fields keeps.
                        record
                            .iter()
                            .rev()
                            .find(|(field, _)| src.common_name(field) == name)
                            .map(|(_, v)| v)
                    }
                })
                .ok()
            })
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        Ok(self.db.prefetch(&keys)?)
    }

    /// Takes one record of `source` (source field names) and returns the merged record to send
    /// when the key's resolved value changed.
    pub fn resolve(
        &mut self,
        source: &str,
        record: Map<String, Value>,
        time_extracted: Option<&str>,
    ) -> Result<Option<Map<String, Value>>, MergeError> {
        let mapped: Map<String, Value> = {
            let decl = &self.decl;
            let src = decl.source(source).ok_or_else(|| {
                MergeError::declaration(format!(
                    "`{source}` is not a source of merged stream `{}`",
                    decl.name
                ))
            })?;
            if src.fields.is_empty() {
                record
            } else {
                record
                    .into_iter()
                    .map(|(k, v)| (src.common_name(&k).to_owned(), v))
                    .collect()
            }
        };
        self.stats.records_in += 1;
        if self.opened.is_none() {
            self.opened = Some(Instant::now());
        }
        let key = match key_text(&self.key, |k| mapped.get(k)) {
            Ok(key) => key,
            Err(k) => {
                let k = k.to_owned();
                return self.null_key(source, &k, mapped).map(|()| None);
            }
        };

        let arrival = self
            .arrival(time_extracted)
            .unwrap_or_else(|| self.started.clone());
        let row = self.db.load(&key)?;
        let (mut candidates, sent): (Candidates, Option<String>) = match row {
            Some(r) => (
                serde_json::from_str(&r.candidates).map_err(|e| {
                    MergeError::data(format!(
                        "the stored candidates of key {key} of merged stream `{}` are unreadable: {e}",
                        self.decl.name
                    ))
                })?,
                r.resolved,
            ),
            None => (Candidates::new(), None),
        };
        // The same record again is not a new arrival: nothing changes (replay is a no-op).
        if candidates.get(source).is_some_and(|c| c.record == mapped) {
            self.stats.unchanged += 1;
            return self.tick().map(|()| None);
        }
        // What was last sent, read before this source's candidate changes.
        let previous = match sent {
            None => Previous::Nothing,
            Some(text) => match text.strip_prefix(store::SAME_AS) {
                Some(name) if name == source => match candidates.get(source) {
                    Some(c) => Previous::Record(c.record.clone()),
                    None => Previous::Text(text),
                },
                Some(name) => Previous::Candidate(name.to_owned()),
                None => Previous::Text(text),
            },
        };
        match candidates.get_mut(source) {
            Some(c) => {
                c.record = mapped;
                if arrival < c.first_seen {
                    c.first_seen = arrival.clone();
                }
                c.last_seen = arrival;
            }
            None => {
                candidates.insert(
                    source.to_owned(),
                    StoredCandidate {
                        record: mapped,
                        first_seen: arrival.clone(),
                        last_seen: arrival,
                    },
                );
            }
        }

        let outcome = match self.resolve_key(&key, &candidates) {
            Ok(o) => o,
            Err(e) => {
                // Keep the conflict-log row of the failure; the key itself is not updated.
                self.flush()?;
                return Err(e);
            }
        };
        self.stats.conflicts += outcome.conflicts;
        let (resolved, emitted) = if outcome.quarantined {
            // The target keeps what it was sent last.
            self.stats.quarantined += 1;
            let kept = match previous {
                Previous::Nothing => None,
                Previous::Text(text) => Some(text),
                Previous::Candidate(name) => Some(format!("{}{name}", store::SAME_AS)),
                Previous::Record(record) => Some(stored_resolution(&record, &candidates)),
            };
            (kept, None)
        } else {
            let stored = stored_resolution(&outcome.record, &candidates);
            let unchanged = match &previous {
                Previous::Nothing => false,
                // `stored` is the record's JSON text unless it names a candidate.
                Previous::Text(text) => match stored.strip_prefix(store::SAME_AS) {
                    None => stored == *text,
                    Some(_) => {
                        serde_json::to_string(&outcome.record).expect("JSON values serialise")
                            == *text
                    }
                },
                Previous::Record(record) => same_fields(record, &outcome.record),
                Previous::Candidate(name) => candidates
                    .get(name)
                    .is_some_and(|c| same_fields(&c.record, &outcome.record)),
            };
            if unchanged {
                self.stats.unchanged_output += 1;
                (Some(stored), None)
            } else {
                self.stats.emitted += 1;
                (Some(stored), Some(outcome.record))
            }
        };
        let sent = emitted.is_some().then_some(self.mark);
        let row = EntityRow {
            candidates: serde_json::to_string(&candidates).expect("JSON values serialise"),
            resolved,
            quarantined: outcome.quarantined,
        };
        self.db.write(Op::Entity { key, row, sent })?;
        self.tick()?;
        Ok(emitted)
    }

    /// `time_extracted` normalised (see [`normalise_time`]), remembering the last one.
    fn arrival(&mut self, time_extracted: Option<&str>) -> Option<String> {
        let text = time_extracted?;
        match &self.last_arrival {
            Some((seen, normal)) if seen == text => normal.clone(),
            _ => {
                let normal = normalise_time(text);
                self.last_arrival = Some((text.to_owned(), normal.clone()));
                normal
            }
        }
    }

    fn tick(&mut self) -> Result<(), MergeError> {
        self.pending += 1;
        // The clock is read once every 64 records only.
        let old = self.pending.is_multiple_of(64)
            && self
                .opened
                .is_some_and(|t| t.elapsed() >= Self::MAX_BATCH_AGE);
        if self.pending >= self.batch || old {
            self.end_batch()?;
        }
        Ok(())
    }

    fn null_key(
        &mut self,
        source: &str,
        field: &str,
        record: Map<String, Value>,
    ) -> Result<(), MergeError> {
        self.stats.null_keys += 1;
        let decl = &self.decl;
        match decl.null_key {
            NullKeyRule::Skip => self.tick(),
            NullKeyRule::Fail => Err(MergeError::data(format!(
                "a record from source `{source}` of merged stream `{}` has no value for key field `{field}`",
                decl.name
            ))
            .with_hint(
                "set `null_key: skip` or `null_key: quarantine` on the merged stream to go on without such records",
            )),
            NullKeyRule::Quarantine => {
                let mut by_source = Map::new();
                by_source.insert(source.to_owned(), Value::Object(record));
                let mut fields = ConflictFields::default();
                fields.push(&FieldConflict {
                    field,
                    candidates: &by_source,
                    winner: None,
                    rule: "null_key",
                    outcome: "null_key",
                });
                let logged_at = self.clock.now().to_owned();
                self.conflicts
                    .extend(fields.into_row("null".to_owned(), logged_at));
                self.stats.conflicts += 1;
                self.tick()
            }
        }
    }

    /// Resolves every field of a key from its candidates.
    fn resolve_key(
        &mut self,
        key: &str,
        candidates: &Candidates,
    ) -> Result<KeyOutcome, MergeError> {
        let decl = &self.decl;
        let mut ordered: Vec<(usize, &str, &StoredCandidate)> = candidates
            .iter()
            .map(|(name, c)| {
                // A source dropped from the declaration since it was stored ranks last.
                let rank = decl.rank(name).unwrap_or(usize::MAX);
                (rank, name.as_str(), c)
            })
            .collect();
        ordered.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));

        let mut fields: Vec<&str> = Vec::new();
        for (_, _, c) in &ordered {
            for f in c.record.keys() {
                if !fields.contains(&f.as_str()) {
                    fields.push(f);
                }
            }
        }

        let mut out = KeyOutcome {
            record: Map::new(),
            quarantined: false,
            conflicts: 0,
        };
        let mut provenance = Map::new();
        let mut logged = ConflictFields::default();
        // Whether a field's disagreement was logged with a winner.
        let mut resolved_logged = false;
        let mut cands: Vec<Candidate<'_>> = Vec::with_capacity(ordered.len());
        for &field in &fields {
            cands.clear();
            for (i, (_, name, c)) in ordered.iter().enumerate() {
                if let Some(v) = c.record.get(field) {
                    cands.push(Candidate {
                        source: name,
                        rank: i,
                        value: v,
                        record: &c.record,
                        first_seen: &c.first_seen,
                        last_seen: &c.last_seen,
                    });
                }
            }
            let rule = decl.rule_for(field);
            let resolution = if cands.len() == 1 {
                rules::Resolution {
                    winner: 0,
                    disagreement: false,
                    verdict: Verdict::Resolved,
                }
            } else {
                rules::resolve(rule, &cands)
            };
            let w = cands[resolution.winner];
            if resolution.disagreement {
                let (outcome, winner) = match resolution.verdict {
                    Verdict::Resolved => ("resolved", Some((w.value, w.source))),
                    Verdict::Quarantine => ("quarantined", None),
                    Verdict::Fail => ("failed", None),
                };
                logged.push(&FieldConflict {
                    field,
                    candidates: BySource(&cands),
                    winner,
                    rule: rule.name(),
                    outcome,
                });
                out.conflicts += 1;
                match resolution.verdict {
                    Verdict::Fail => {
                        let logged_at = self.clock.now().to_owned();
                        self.conflicts
                            .extend(logged.into_row(key.to_owned(), logged_at));
                        let values: Vec<String> = cands
                            .iter()
                            .filter(|c| !c.value.is_null())
                            .map(|c| format!("{} from `{}`", c.value, c.source))
                            .collect();
                        return Err(MergeError::data(format!(
                            "sources of merged stream `{}` disagree on field `{field}` of key {key}: {}",
                            decl.name,
                            values.join(", ")
                        ))
                        .with_hint(format!(
                            "the rule for `{field}` is `fail`; choose another rule, or fix the sources (`dsm conflicts list --stream {}` shows the log)",
                            decl.name
                        )));
                    }
                    Verdict::Quarantine => out.quarantined = true,
                    Verdict::Resolved => resolved_logged = true,
                }
            }
            out.record.insert(field.to_owned(), w.value.clone());
            if decl.provenance {
                let mut p = Map::new();
                p.insert("source".into(), Value::String(w.source.to_owned()));
                p.insert("at".into(), Value::String(w.last_seen.to_owned()));
                provenance.insert(field.to_owned(), Value::Object(p));
            }
        }
        if decl.provenance {
            out.record
                .insert(PROVENANCE_FIELD.to_owned(), Value::Object(provenance));
        }
        if out.quarantined && resolved_logged {
            // Another field held the whole record back: nothing was sent, so no field has a
            // winner. The log is written again: the quarantining fields as they were, every
            // other disagreement `held` (no winner).
            logged = ConflictFields::default();
            for &field in &fields {
                cands.clear();
                for (i, (_, name, c)) in ordered.iter().enumerate() {
                    if let Some(v) = c.record.get(field) {
                        cands.push(Candidate {
                            source: name,
                            rank: i,
                            value: v,
                            record: &c.record,
                            first_seen: &c.first_seen,
                            last_seen: &c.last_seen,
                        });
                    }
                }
                if cands.len() < 2 {
                    continue;
                }
                let rule = decl.rule_for(field);
                let resolution = rules::resolve(rule, &cands);
                if resolution.disagreement {
                    logged.push(&FieldConflict {
                        field,
                        candidates: BySource(&cands),
                        winner: None,
                        rule: rule.name(),
                        outcome: match resolution.verdict {
                            Verdict::Quarantine => "quarantined",
                            Verdict::Resolved | Verdict::Fail => "held",
                        },
                    });
                }
            }
        }
        if !logged.is_empty() {
            let logged_at = self.clock.now().to_owned();
            self.conflicts
                .extend(logged.into_row(key.to_owned(), logged_at));
        }
        Ok(out)
    }
}

/// A field's candidates, serialised as a JSON object of values by source (in rank order).
struct BySource<'a, 'c>(&'a [Candidate<'c>]);

impl Serialize for BySource<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|c| (c.source, c.value)))
    }
}

/// What a key's row says was last sent, read before a new record changes its candidates.
enum Previous {
    /// Nothing was sent.
    Nothing,
    /// This record (JSON text).
    Text(String),
    /// The record of this source's candidate, which the new record does not change.
    Candidate(String),
    /// The record of the source whose candidate the new record replaces: a copy of it.
    Record(Map<String, Value>),
}

/// Whether two records have the same fields in the same order with equal values: what their
/// JSON texts being equal means.
/// The text a key is stored under: the JSON array of the key fields' values (common names,
/// read through `get`). `Err` names the first key field that is missing or null.
fn key_text<'k, 'v>(
    key: &'k [String],
    get: impl Fn(&str) -> Option<&'v Value>,
) -> Result<String, &'k str> {
    let mut values = Vec::with_capacity(key.len());
    for k in key {
        match get(k) {
            Some(v) if !v.is_null() => values.push(v),
            _ => return Err(k),
        }
    }
    Ok(serde_json::to_string(&values).expect("JSON values serialise"))
}

fn same_fields(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// How a key's row stores the record sent (see `store::SAME_AS`): a reference to the candidate
/// it is identical to (the usual case of a key one source supplies), else its JSON text.
fn stored_resolution(record: &Map<String, Value>, candidates: &Candidates) -> String {
    match candidates
        .iter()
        .find(|(_, c)| same_fields(&c.record, record))
    {
        Some((name, _)) => format!("{}{name}", store::SAME_AS),
        None => serde_json::to_string(record).expect("JSON values serialise"),
    }
}

struct KeyOutcome {
    record: Map<String, Value>,
    quarantined: bool,
    conflicts: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_candidate_leaves_out_a_last_arrival_equal_to_the_first() {
        let once: StoredCandidate =
            serde_json::from_str(r#"{"r":{"id":1},"f":"2024-01-01T00:00:00Z"}"#).unwrap();
        assert_eq!(once.last_seen, "2024-01-01T00:00:00Z");
        assert_eq!(
            serde_json::to_string(&once).unwrap(),
            r#"{"r":{"id":1},"f":"2024-01-01T00:00:00Z"}"#
        );
        // Rows written before `l` could be left out still read, and keep a later `l`.
        let text = r#"{"r":{"id":1},"f":"2024-01-01T00:00:00Z","l":"2024-02-01T00:00:00Z"}"#;
        let twice: StoredCandidate = serde_json::from_str(text).unwrap();
        assert_eq!(twice.first_seen, "2024-01-01T00:00:00Z");
        assert_eq!(twice.last_seen, "2024-02-01T00:00:00Z");
        assert_eq!(serde_json::to_string(&twice).unwrap(), text);
        let old: StoredCandidate = serde_json::from_str(
            r#"{"r":{},"f":"2024-01-01T00:00:00Z","l":"2024-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(
            old,
            StoredCandidate {
                record: Map::new(),
                ..once
            }
        );
    }
}

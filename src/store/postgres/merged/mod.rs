//! Merged streams on PostgreSQL ([`MergedTables`], [`StreamRows`]): the tables of migrations 22 and 23,
//! every row under the project's `project_id`.
//!
//! A resolver reads one key per record, so its connection is its own, driven by a thread of its
//! own (the synchronous client cannot run on a thread that drives the pipeline's runtime): each
//! call hands the thread a job and waits for its answer. A resolver's batch is one
//! transaction under a transaction-level lock of its stream (batches of several runs of one
//! merged stream take turns, so what a batch read is still there when it writes): its reads of
//! keys share it, and its writes are kept in memory (where [`StreamRows::load`] finds them
//! first) and handed to the connection without waiting, after each read ahead and every
//! thousand writes, so the server writes one run of records while the resolver works on the
//! next. A key the batch found no row for is inserted through `COPY` (which fails, rather than
//! overwrite, if a row appeared meanwhile); a stored key is upserted, many rows per statement
//! (`unnest` of arrays). A write that fails is reported by the next call that waits, and from
//! then on every call fails, so no later write of the batch lands without it. The conflict-log
//! rows go at commit, which is conditional on the run still holding its flow's lease, as a
//! state commit is. Nothing outlives a transaction but the connection, so the tables work
//! through a transaction-pooling pooler.
//!
//! A round trip per record would bound a resolver to a few thousand records a second. Two
//! things keep it off that path. The pipeline hands a merge stage each block of record lines
//! it reads as one run, and the resolver reads the stored rows of all the run's keys in one
//! statement ([`StreamRows::prefetch`], a primary-key lookup for each of an array of keys); a load in the same batch is answered
//! from them, which holds because the batch's transaction holds the stream's lock, and they
//! are dropped when the batch ends. And most keys of a stream's first sync, or of a source
//! adding keys, are new, so a resolver keeps the
//! hashes of the stream's keys (read once when it starts, 8 bytes a key plus the set's
//! overhead) and asks the database only for a key whose hash is there. The set stays exact
//! while the resolver's batches are the only ones writing the stream: each batch that writes
//! key rows moves the stream's counter in `merge_streams`, and a batch that finds the counter
//! moved by another run stops trusting the set and asks for every key from then on.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use postgres::Client;
use postgres::types::ToSql;

use super::PgTarget;
use crate::error::{Error, Result};
use crate::singer::message::SchemaMessage;
use crate::store::merged::{
    ConflictEntry, ConflictFilter, ConflictRow, EntityRow, KeyedRecord, LogRow, MergeRunStats,
    MergeWrite, MergedTables, ResolverStats, RunConflictCount, StreamRows, StreamRun,
    collect_entries, resolved_record, schema_text, stored_schema,
};

mod worker;
mod writes;

use worker::Worker;
use writes::{Write, apply, check_lease, sender_id, write_keys};

/// The schema (quoted) and project every statement names.
#[derive(Debug)]
struct Names {
    schema: String,
    project: String,
}

impl Names {
    fn q(&self, sql: &str) -> String {
        sql.replace("{S}", &self.schema)
    }
}

/// The merged-stream tables of one project in a PostgreSQL store, on a connection of their own.
pub struct PgMerged {
    worker: Worker,
    names: Arc<Names>,
}

impl std::fmt::Debug for PgMerged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgMerged")
            .field("project", &self.names.project)
            .finish_non_exhaustive()
    }
}

fn n64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The `WHERE` clause over the log's rows `c` and its (text) parameters after `$1` (the
/// project); with `fields`, the source filter reads each field as `f.value`.
fn where_clause(filter: &ConflictFilter, fields: bool) -> (String, Vec<String>) {
    let mut clauses = vec!["c.project_id = $1".to_owned()];
    let mut args: Vec<String> = Vec::new();
    let mut push = |clause: &str, arg: String| {
        args.push(arg);
        clauses.push(clause.replace('#', &format!("${}", args.len() + 1)));
    };
    if let Some(s) = &filter.stream {
        push("c.stream = #", s.clone());
    }
    if fields && let Some(s) = &filter.source {
        push("jsonb_exists(f.value -> 1, #)", s.clone());
    }
    if let Some(t) = filter.since {
        push("c.logged_at >= #", time_text(t));
    }
    if let Some(r) = &filter.run_id {
        push("c.run_id = #", r.clone());
    }
    (format!(" WHERE {}", clauses.join(" AND ")), args)
}

fn params<'a>(
    project: &'a String,
    rest: &'a [String],
    last: Option<&'a i64>,
) -> Vec<&'a (dyn ToSql + Sync)> {
    let mut out: Vec<&(dyn ToSql + Sync)> = vec![project];
    out.extend(rest.iter().map(|p| p as &(dyn ToSql + Sync)));
    if let Some(l) = last {
        out.push(l);
    }
    out
}

impl PgMerged {
    /// Connects to `target` for the project `project_id` (the schema must be migrated: open
    /// the store first).
    pub fn open(target: &PgTarget, project_id: &str) -> Result<PgMerged> {
        Ok(PgMerged {
            worker: Worker::start(target)?,
            names: Arc::new(Names {
                schema: format!("\"{}\"", target.schema),
                project: project_id.to_owned(),
            }),
        })
    }

    /// Runs `f` in a transaction on the connection's thread.
    fn tx<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client, &Names) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let names = self.names.clone();
        self.worker.call(move |c| c.tx(|client| f(client, &names)))
    }
}

impl MergedTables for PgMerged {
    fn load_schemas(&self, stream: &str) -> Result<Vec<(String, SchemaMessage)>> {
        let stream = stream.to_owned();
        self.tx(move |c, n| {
            let rows = c.query(
                &n.q("SELECT source, schema FROM {S}.merge_schemas
                       WHERE project_id = $1 AND stream = $2 ORDER BY source COLLATE \"C\""),
                &[&n.project, &stream],
            )?;
            rows.iter()
                .map(|r| {
                    let source: String = r.get(0);
                    let schema = stored_schema(&stream, &source, r.get(1))?;
                    Ok((source, schema))
                })
                .collect()
        })
    }

    fn save_schema(&self, stream: &str, source: &str, schema: &SchemaMessage) -> Result<()> {
        let (stream, source, text) = (stream.to_owned(), source.to_owned(), schema_text(schema));
        self.tx(move |c, n| {
            c.execute(
                &n.q("INSERT INTO {S}.merge_schemas (project_id, stream, source, schema)
                      VALUES ($1, $2, $3, $4)
                      ON CONFLICT (project_id, stream, source) DO UPDATE SET schema = excluded.schema"),
                &[&n.project, &stream, &source, &text],
            )?;
            Ok(())
        })
    }

    fn resolved_records(&self, stream: &str) -> Result<Vec<KeyedRecord>> {
        let stream = stream.to_owned();
        self.tx(move |c, n| {
            let rows = c.query(
                &n.q("SELECT key, resolved, candidates FROM {S}.merge_entities
                       WHERE project_id = $1 AND stream = $2 AND resolved IS NOT NULL
                       ORDER BY key COLLATE \"C\""),
                &[&n.project, &stream],
            )?;
            rows.iter()
                .map(|r| {
                    let key: String = r.get(0);
                    let record = resolved_record(&stream, &key, r.get(1), r.get(2))?;
                    Ok((key, record))
                })
                .collect()
        })
    }

    fn quarantined_keys(&self, stream: &str) -> Result<Vec<String>> {
        let stream = stream.to_owned();
        self.tx(move |c, n| {
            let rows = c.query(
                &n.q("SELECT key FROM {S}.merge_entities
                       WHERE project_id = $1 AND stream = $2 AND quarantined = 1
                       ORDER BY key COLLATE \"C\""),
                &[&n.project, &stream],
            )?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn unconfirmed(&self) -> Result<Vec<(String, String, i64, String)>> {
        self.tx(move |c, n| {
            let rows = c.query(
                &n.q("SELECT e.stream, s.run_id, e.sent_mark, e.key
                        FROM {S}.merge_entities e
                        JOIN {S}.merge_sends s ON s.project_id = e.project_id AND s.id = e.sent_by
                       WHERE e.project_id = $1 AND e.sent_mark >= s.confirmed_before
                       ORDER BY e.sent_mark, e.key COLLATE \"C\""),
                &[&n.project],
            )?;
            Ok(rows
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect())
        })
    }

    fn conflicts(&self, filter: &ConflictFilter) -> Result<Vec<ConflictEntry>> {
        let filter = filter.clone();
        self.tx(move |c, n| {
            let (clause, args) = where_clause(&filter, false);
            // Read in pages, newest first, so that a limit stops the reading early.
            const PAGE: usize = 500;
            let sql = n.q(&format!(
                "SELECT c.id, c.stream, c.key, c.run_id, c.logged_at, c.fields
                   FROM {{S}}.merge_conflicts c{clause} AND c.id < ${}
                  ORDER BY c.id DESC LIMIT {PAGE}",
                args.len() + 2
            ));
            let limit = filter.limit.map_or(usize::MAX, |l| l as usize);
            let mut out: Vec<ConflictEntry> = Vec::new();
            let mut before = i64::MAX;
            loop {
                let rows = c.query(&sql, &params(&n.project, &args, Some(&before)))?;
                if let Some(last) = rows.last() {
                    before = last.get(0);
                }
                let left = ConflictFilter {
                    limit: Some(u32::try_from(limit - out.len()).unwrap_or(u32::MAX)),
                    ..filter.clone()
                };
                out.extend(collect_entries(rows.iter().map(|r| Ok(log_row(r))), &left)?);
                if out.len() >= limit || rows.len() < PAGE {
                    break;
                }
            }
            Ok(out)
        })
    }

    fn conflict(&self, id: i64) -> Result<Option<ConflictEntry>> {
        self.tx(move |c, n| {
            let row = c.query_opt(
                &n.q(
                    "SELECT c.id, c.stream, c.key, c.run_id, c.logged_at, c.fields
                        FROM {S}.merge_conflicts c
                       WHERE c.project_id = $1 AND c.id = (SELECT max(id) FROM {S}.merge_conflicts
                                                            WHERE project_id = $1 AND id <= $2)",
                ),
                &[&n.project, &id],
            )?;
            let Some(row) = row else {
                return Ok(None);
            };
            Ok(log_row(&row).entries()?.into_iter().find(|e| e.id == id))
        })
    }

    fn conflict_counts(&self, filter: &ConflictFilter) -> Result<Vec<RunConflictCount>> {
        let filter = filter.clone();
        self.tx(move |c, n| {
            let (clause, args) = where_clause(&filter, true);
            let sql = n.q(&format!(
                "SELECT c.run_id, c.stream, COUNT(*),
                        SUM(CASE WHEN f.value ->> 5 IN ('quarantined', 'null_key') THEN 1 ELSE 0 END),
                        SUM(CASE WHEN f.value ->> 5 = 'failed' THEN 1 ELSE 0 END),
                        MIN(c.logged_at)
                   FROM {{S}}.merge_conflicts c, jsonb_array_elements(c.fields::jsonb) f{clause}
                  GROUP BY c.run_id, c.stream ORDER BY MIN(c.id) DESC"
            ));
            let rows = c.query(&sql, &params(&n.project, &args, None))?;
            Ok(rows
                .iter()
                .map(|r| RunConflictCount {
                    run_id: r.get(0),
                    stream: r.get(1),
                    conflicts: u64_of(r.get(2)),
                    quarantined: u64_of(r.get(3)),
                    failed: u64_of(r.get(4)),
                    first_logged_at: r.get(5),
                })
                .collect())
        })
    }

    fn prune_conflicts(&self, older_than: DateTime<Utc>, stream: Option<&str>) -> Result<usize> {
        let (cutoff, stream) = (time_text(older_than), stream.map(str::to_owned));
        self.tx(move |c, n| {
            let n_deleted: Option<i64> = c
                .query_one(
                    &n.q("WITH gone AS (DELETE FROM {S}.merge_conflicts
                                        WHERE project_id = $1 AND logged_at < $2
                                          AND ($3::TEXT IS NULL OR stream = $3) RETURNING n)
                          SELECT SUM(n)::BIGINT FROM gone"),
                    &[&n.project, &cutoff, &stream],
                )?
                .get(0);
            Ok(usize::try_from(n_deleted.unwrap_or(0)).unwrap_or(0))
        })
    }

    fn record_run_stats(&self, run_id: &str, stats: &[MergeRunStats]) -> Result<()> {
        let (run_id, stats) = (run_id.to_owned(), stats.to_vec());
        self.tx(move |c, n| {
            let stmt = c.prepare(&n.q("INSERT INTO {S}.merge_run_stats
                     (project_id, run_id, stream, source, records_in, emitted, resent, conflicts,
                      quarantined, null_keys, unchanged, same_output)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                 ON CONFLICT (project_id, run_id, stream, source) DO UPDATE SET
                     records_in = excluded.records_in, emitted = excluded.emitted,
                     resent = excluded.resent, unchanged = excluded.unchanged,
                     same_output = excluded.same_output, conflicts = excluded.conflicts,
                     quarantined = excluded.quarantined, null_keys = excluded.null_keys"))?;
            for s in &stats {
                let t = &s.stats;
                c.execute(
                    &stmt,
                    &[
                        &n.project,
                        &run_id,
                        &s.stream,
                        &s.source,
                        &n64(t.records_in),
                        &n64(t.emitted),
                        &n64(t.resent),
                        &n64(t.conflicts),
                        &n64(t.quarantined),
                        &n64(t.null_keys),
                        &n64(t.unchanged),
                        &n64(t.unchanged_output),
                    ],
                )?;
            }
            Ok(())
        })
    }

    fn run_stats(&self, run_id: &str) -> Result<Vec<MergeRunStats>> {
        let run_id = run_id.to_owned();
        self.tx(move |c, n| {
            let rows = c.query(
                &n.q(
                    "SELECT stream, source, records_in, emitted, resent, conflicts, quarantined,
                             null_keys, unchanged, same_output
                        FROM {S}.merge_run_stats WHERE project_id = $1 AND run_id = $2
                       ORDER BY stream COLLATE \"C\", source COLLATE \"C\"",
                ),
                &[&n.project, &run_id],
            )?;
            Ok(rows
                .iter()
                .map(|r| MergeRunStats {
                    stream: r.get(0),
                    source: r.get(1),
                    stats: ResolverStats {
                        records_in: u64_of(r.get(2)),
                        emitted: u64_of(r.get(3)),
                        resent: u64_of(r.get(4)),
                        conflicts: u64_of(r.get(5)),
                        quarantined: u64_of(r.get(6)),
                        null_keys: u64_of(r.get(7)),
                        unchanged: u64_of(r.get(8)),
                        unchanged_output: u64_of(r.get(9)),
                    },
                })
                .collect())
        })
    }

    fn into_stream(self: Box<Self>, stream: &str, run: &StreamRun) -> Result<Box<dyn StreamRows>> {
        let hasher = std::collections::hash_map::RandomState::new();
        let (name, hashing) = (stream.to_owned(), hasher.clone());
        let (generation, known) = self.tx(move |c, n| {
            lock_stream(c, n, &name)?;
            let generation = generation(c, n, &name)?;
            let mut known = HashSet::new();
            let stmt = c.prepare(
                &n.q("SELECT key FROM {S}.merge_entities WHERE project_id = $1 AND stream = $2"),
            )?;
            let mut rows = c.query_raw(&stmt, [&n.project as &(dyn ToSql + Sync), &name])?;
            while let Some(row) = postgres::fallible_iterator::FallibleIterator::next(&mut rows)? {
                known.insert(hashing.hash_one(row.get::<_, &str>(0)));
            }
            Ok((generation, known))
        })?;
        Ok(Box::new(PgStream {
            tables: *self,
            stream: Arc::new((stream.to_owned(), run.clone())),
            pending: Vec::new(),
            conflicts: Vec::new(),
            sent_keys: false,
            overlay: HashMap::new(),
            fetched: HashMap::new(),
            absent: HashSet::new(),
            known: Some(known),
            hasher,
            generation,
            batch_open: false,
        }))
    }
}

fn log_row(r: &postgres::Row) -> LogRow {
    LogRow {
        id: r.get(0),
        stream: r.get(1),
        key: r.get(2),
        run_id: r.get(3),
        logged_at: r.get(4),
        fields: r.get(5),
    }
}

/// One resolver's rows of a merged stream: reads in the batch's transaction, writes held until
/// the batch commits.
pub struct PgStream {
    tables: PgMerged,
    /// The stream and the run.
    stream: Arc<(String, StreamRun)>,
    /// The open batch's writes not yet handed to the connection, in order (key rows and
    /// confirmations).
    pending: Vec<Write>,
    /// The open batch's conflict-log rows, written at commit.
    conflicts: Vec<ConflictRow>,
    /// Whether the open batch handed key rows to the connection already.
    sent_keys: bool,
    /// The open batch's key rows, the latest per key.
    overlay: HashMap<String, EntityRow>,
    /// Rows [`StreamRows::prefetch`] read in the open batch's transaction (`None`: no row),
    /// valid while it holds the stream's lock: cleared when the batch ends.
    fetched: HashMap<String, Option<EntityRow>>,
    /// Keys the open batch found no row for and has not written yet: their first write is an
    /// insert (`COPY`), not an upsert.
    absent: HashSet<String>,
    /// The hashes of every key the stream has, while no other run writes it (see the module's
    /// documentation); `None`: ask the database.
    known: Option<HashSet<u64>>,
    hasher: std::collections::hash_map::RandomState,
    /// The stream's counter as this resolver's last batch left it.
    generation: i64,
    /// Whether the batch's transaction is open, holding the stream's lock.
    batch_open: bool,
}

impl PgStream {
    /// Opens the batch's transaction under the stream's lock, and stops trusting the key set
    /// when another run wrote key rows since this resolver's last batch.
    fn open_batch(&mut self) -> Result<()> {
        if self.batch_open {
            return Ok(());
        }
        let (names, stream) = (self.tables.names.clone(), self.stream.clone());
        let now = self.tables.worker.call(move |c| {
            c.begin()?;
            let found = lock_stream(&mut c.client, &names, &stream.0)
                .and_then(|()| generation(&mut c.client, &names, &stream.0));
            if found.is_err() {
                let _ = c.end(false);
            }
            found
        })?;
        self.batch_open = true;
        if now != self.generation && self.known.take().is_some() {
            tracing::debug!(stream = %self.stream.0, "another run wrote this merged stream: reading every key from the store");
        }
        self.generation = now;
        Ok(())
    }

    /// The stored row of `key`, read on its own in the open batch's transaction.
    fn read_key(&self, key: &str) -> Result<Option<EntityRow>> {
        let (names, stream, key) = (
            self.tables.names.clone(),
            self.stream.clone(),
            key.to_owned(),
        );
        self.tables.worker.call(move |c| {
            let stmt = c.statement(
                "load",
                &names,
                "SELECT candidates, resolved, quarantined FROM {S}.merge_entities
                  WHERE project_id = $1 AND stream = $2 AND key = $3",
            )?;
            let row = c
                .client
                .query_opt(&stmt, &[&names.project, &stream.0, &key])?;
            Ok(row.map(|r| EntityRow {
                candidates: r.get(0),
                resolved: r.get(1),
                quarantined: r.get::<_, i32>(2) != 0,
            }))
        })
    }

    /// Hands the pending writes to the open batch's transaction without waiting: the server
    /// writes them while the resolver works on the next records. A failure is reported by the
    /// next call that waits (the batch's commit at the latest), and the batch rolls back.
    fn send_writes(&mut self) -> Result<()> {
        if !self.batch_open || self.pending.is_empty() {
            return Ok(());
        }
        let writes = std::mem::take(&mut self.pending);
        self.sent_keys |= writes.iter().any(|w| matches!(w, Write::Key { .. }));
        let (names, stream) = (self.tables.names.clone(), self.stream.clone());
        self.tables.worker.send(move |c| {
            if !c.in_tx {
                return Err(Error::failed(
                    "a merged stream's writes reached the PostgreSQL store outside their batch",
                ));
            }
            write_keys(c, &names, &stream.0, &stream.1, writes)
        })
    }
}

/// Most records a resolver's batch takes here. A commit waits for the batch's last writes and
/// its conflict-log rows, while the resolver has nothing to do; fewer, larger batches lose less
/// to that wait (four times the default batch took 9% less time in `benches/merge.rs`). The
/// resolver's age limit still ends a batch sooner, so the stream's lock is held no longer.
const BATCH_RECORDS: usize = 20_000;

/// Pending writes handed to the connection at most, without waiting, while a batch is open.
const SEND_WRITES: usize = 1024;

/// Keys [`StreamRows::prefetch`] reads in one statement at most.
const PREFETCH_KEYS: usize = 1024;

/// Takes the transaction-level lock of `stream`'s key rows.
fn lock_stream(c: &mut Client, n: &Names, stream: &str) -> Result<()> {
    c.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&format!("dsm merge {} {} {stream}", n.schema, n.project)],
    )?;
    Ok(())
}

/// The counter of `stream` (0 before any batch wrote it).
fn generation(c: &mut Client, n: &Names, stream: &str) -> Result<i64> {
    Ok(c.query_opt(
        &n.q("SELECT generation FROM {S}.merge_streams WHERE project_id = $1 AND stream = $2"),
        &[&n.project, &stream],
    )?
    .map_or(0, |r| r.get(0)))
}

impl std::fmt::Debug for PgStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStream")
            .field("stream", &self.stream.0)
            .field("run_id", &self.stream.1.run_id)
            .finish_non_exhaustive()
    }
}

impl StreamRows for PgStream {
    fn tables(&self) -> &dyn MergedTables {
        &self.tables
    }

    fn is_behind(&self) -> bool {
        false
    }

    fn load(&mut self, key: &str) -> Result<Option<EntityRow>> {
        if let Some(row) = self.overlay.get(key) {
            return Ok(Some(row.clone()));
        }
        self.open_batch()?;
        let row = if let Some(known) = &self.known
            && !known.contains(&self.hasher.hash_one(key))
        {
            None
        } else if let Some(row) = self.fetched.get(key) {
            row.clone()
        } else {
            self.read_key(key)?
        };
        if row.is_none() {
            self.absent.insert(key.to_owned());
        }
        Ok(row)
    }

    fn reads_ahead(&self) -> bool {
        true
    }

    fn batch_records(&self) -> Option<usize> {
        Some(BATCH_RECORDS)
    }

    fn prefetch(&mut self, keys: &[String]) -> Result<()> {
        self.open_batch()?;
        let mut wanted: Vec<String> = Vec::new();
        let mut seen = HashSet::new();
        for key in keys {
            let stored = self
                .known
                .as_ref()
                .is_none_or(|known| known.contains(&self.hasher.hash_one(key)));
            if stored
                && !self.overlay.contains_key(key)
                && !self.fetched.contains_key(key)
                && seen.insert(key.as_str())
            {
                wanted.push(key.clone());
            }
        }
        if wanted.is_empty() {
            return self.send_writes();
        }
        // The read goes first: the batch's writes so far (in `overlay`, so not read) follow it,
        // and the server writes them while the resolver works on these records.
        let (names, stream) = (self.tables.names.clone(), self.stream.clone());
        let answer = self.tables.worker.ask(move |c| {
            let mut found = HashMap::with_capacity(wanted.len());
            // One lookup of the primary key per key, whatever the planner's statistics say:
            // with `key = ANY($3)` and a table grown since its last ANALYZE, the planner
            // filtered every row of the stream instead (a sync right after a first large one).
            // The LIMIT keeps the subquery from being pulled up into a join.
            let stmt = c.statement(
                "prefetch",
                &names,
                "SELECT k.key, e.candidates, e.resolved, e.quarantined
                   FROM unnest($3::text[]) AS k(key)
                   CROSS JOIN LATERAL (
                     SELECT candidates, resolved, quarantined FROM {S}.merge_entities
                      WHERE project_id = $1 AND stream = $2 AND key = k.key
                      LIMIT 1) AS e",
            )?;
            // Bounded statements: a run of lines can be long.
            for part in wanted.chunks(PREFETCH_KEYS) {
                for r in c.client.query(&stmt, &[&names.project, &stream.0, &part])? {
                    found.insert(
                        r.get::<_, String>(0),
                        EntityRow {
                            candidates: r.get(1),
                            resolved: r.get(2),
                            quarantined: r.get::<_, i32>(3) != 0,
                        },
                    );
                }
            }
            Ok((wanted, found))
        })?;
        self.send_writes()?;
        let (wanted, mut rows) = answer.wait()?;
        for key in wanted {
            let row = rows.remove(&key);
            self.fetched.insert(key, row);
        }
        Ok(())
    }

    fn write(&mut self, op: MergeWrite) -> Result<()> {
        let open = !self.pending.is_empty() || self.sent_keys || !self.conflicts.is_empty();
        match op {
            MergeWrite::Entity { key, row, sent } => {
                self.overlay.insert(key.clone(), row.clone());
                // The key's first write since the batch found no row for it.
                let new = self.absent.remove(&key);
                self.pending.push(Write::Key {
                    key,
                    row,
                    sent,
                    new,
                });
            }
            MergeWrite::Conflicts(rows) => {
                self.conflicts.extend(rows);
                return Ok(());
            }
            MergeWrite::Confirm(before) => {
                self.pending.push(Write::Confirm(before));
                // A confirmation outside a batch takes effect at once.
                if !open {
                    return self.commit();
                }
            }
        }
        if self.pending.len() >= SEND_WRITES {
            self.send_writes()?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        let keys = self.sent_keys
            || self
                .pending
                .iter()
                .any(|op| matches!(op, Write::Key { .. }));
        // Key rows are written under the stream's lock; confirmations alone need none.
        if keys {
            self.open_batch()?;
        }
        let ops = std::mem::take(&mut self.pending);
        let conflicts = std::mem::take(&mut self.conflicts);
        self.sent_keys = false;
        // What was read ahead holds only under the lock the transaction ending here holds.
        self.fetched.clear();
        self.absent.clear();
        let written: Vec<u64> = self
            .overlay
            .drain()
            .map(|(k, _)| self.hasher.hash_one(&k))
            .collect();
        self.batch_open = false;
        let (names, stream) = (self.tables.names.clone(), self.stream.clone());
        let moved = self.tables.worker.call(move |c| {
            if ops.is_empty() && conflicts.is_empty() && !keys {
                c.end(true)?;
                return Ok(None);
            }
            c.begin()?;
            let applied = apply(c, &names, &stream.0, &stream.1, ops, conflicts).and_then(|()| {
                if !keys {
                    return Ok(None);
                }
                Ok(Some(
                    c.client
                        .query_one(
                            &names.q(
                                "INSERT INTO {S}.merge_streams (project_id, stream, generation)
                                 VALUES ($1, $2, 1)
                                 ON CONFLICT (project_id, stream)
                                 DO UPDATE SET generation = {S}.merge_streams.generation + 1
                                 RETURNING generation",
                            ),
                            &[&names.project, &stream.0],
                        )?
                        .get::<_, i64>(0),
                ))
            });
            c.settle(applied)
        });
        match moved {
            Ok(Some(generation)) => {
                self.generation = generation;
                if let Some(known) = &mut self.known {
                    known.extend(written);
                }
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => {
                // What the failed batch held is gone; the keys it would have added are not
                // known to exist.
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> Result<()> {
        self.commit()
    }

    fn take_over_unconfirmed(&mut self, mark: u64) -> Result<Vec<KeyedRecord>> {
        self.commit()?;
        let (names, stream) = (self.tables.names.clone(), self.stream.clone());
        self.tables.worker.call(move |c| {
            c.tx(|c| {
                let (stream, run) = (&stream.0, &stream.1);
                let n = &names;
                let rows = c.query(
                    &n.q("SELECT e.key, e.resolved, e.candidates
                            FROM {S}.merge_entities e
                            JOIN {S}.merge_sends s ON s.project_id = e.project_id AND s.id = e.sent_by
                           WHERE e.project_id = $1 AND e.stream = $2 AND s.stream = $2
                             AND s.run_id <> $3 AND e.sent_mark >= s.confirmed_before
                             AND e.resolved IS NOT NULL
                           ORDER BY e.key COLLATE \"C\""),
                    &[&n.project, stream, &run.run_id],
                )?;
                let records = rows
                    .iter()
                    .map(|r| {
                        let key: String = r.get(0);
                        let record = resolved_record(stream, &key, r.get(1), r.get(2))?;
                        Ok((key, record))
                    })
                    .collect::<Result<Vec<_>>>()?;
                if records.is_empty() {
                    return Ok(records);
                }
                check_lease(c, n, run)?;
                let sender = sender_id(c, n, stream, &run.run_id)?;
                c.execute(
                    &n.q("UPDATE {S}.merge_entities e SET sent_by = $4, sent_mark = $5
                           WHERE e.project_id = $1 AND e.stream = $2 AND e.resolved IS NOT NULL
                             AND EXISTS (SELECT 1 FROM {S}.merge_sends s
                                          WHERE s.project_id = $1 AND s.id = e.sent_by
                                            AND s.stream = $2 AND s.run_id <> $3
                                            AND e.sent_mark >= s.confirmed_before)"),
                    &[&n.project, stream, &run.run_id, &sender, &n64(mark)],
                )?;
                c.execute(
                    &n.q("DELETE FROM {S}.merge_sends
                           WHERE project_id = $1 AND stream = $2 AND run_id <> $3"),
                    &[&n.project, stream, &run.run_id],
                )?;
                Ok(records)
            })
        })
    }
}

//! Merged streams on SQLite: [`MergedDb`], a connection of its own to the system database for
//! the merged-stream tables, and [`StreamDb`], one resolver's view with its batched writes
//! (inline, or on a writer thread for a WAL file; see [`writer`]).

mod conflicts;
mod tables;
mod writer;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use crate::error::{Error, Result};
use crate::singer::message::SchemaMessage;
use crate::store::merged::{
    ConflictEntry, ConflictFilter, EntityRow, KeyedRecord, MergeRunStats, MergeWrite, MergedTables,
    ResolverStats, RunConflictCount, StreamRows, StreamRun,
};
use writer::Writes;

/// How long a write waits for another writer of the database.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection to the merged-stream tables of the system database.
#[derive(Debug)]
pub struct MergedDb {
    conn: Connection,
}

impl MergedDb {
    /// Opens the tables in the database at `path`, creating or upgrading them if needed.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(|e| {
            Error::failed(format!(
                "cannot open the system database `{}` for merged streams: {e}",
                path.display()
            ))
        })?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        tables::migrate(&conn)?;
        Ok(MergedDb { conn })
    }

    /// The tables in a private in-memory database (tests and benchmarks).
    pub fn in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory()?;
        tables::migrate(&conn)?;
        Ok(MergedDb { conn })
    }

    /// Wraps a connection the caller opened and configured (tests and benchmarks that choose
    /// its journal mode and durability).
    pub fn from_connection(conn: Connection) -> Result<Self> {
        tables::migrate(&conn)?;
        Ok(MergedDb { conn })
    }

    /// The SCHEMA messages the sources of a merged stream sent last, by source name.
    pub fn load_schemas(&self, stream: &str) -> Result<Vec<(String, SchemaMessage)>> {
        tables::load_schemas(&self.conn, stream)
    }

    /// Remembers the SCHEMA message a source sent for a merged stream.
    pub fn save_schema(&self, stream: &str, source: &str, schema: &SchemaMessage) -> Result<()> {
        tables::save_schema(&self.conn, stream, source, schema)
    }

    /// The resolved table of a merged stream: key and the record last sent, in key order.
    pub fn resolved_records(&self, stream: &str) -> Result<Vec<KeyedRecord>> {
        tables::resolved_records(&self.conn, stream)
    }

    /// Keys of a merged stream currently held back by a `quarantine` rule.
    pub fn quarantined_keys(&self, stream: &str) -> Result<Vec<String>> {
        tables::quarantined_keys(&self.conn, stream)
    }

    /// Every key sent but not yet confirmed, of any stream and run: (stream, run, mark, key),
    /// by mark and key. For tests and inspection.
    pub fn unconfirmed(&self) -> Result<Vec<(String, String, i64, String)>> {
        tables::unconfirmed(&self.conn)
    }

    /// Conflict-log entries, newest first.
    pub fn conflicts(&self, filter: &ConflictFilter) -> Result<Vec<ConflictEntry>> {
        conflicts::list(&self.conn, filter)
    }

    /// One conflict-log entry by id.
    pub fn conflict(&self, id: i64) -> Result<Option<ConflictEntry>> {
        conflicts::show(&self.conn, id)
    }

    /// Conflict counts per run and stream (newest run first), filtered as
    /// [`Self::conflicts`].
    pub fn conflict_counts(&self, filter: &ConflictFilter) -> Result<Vec<RunConflictCount>> {
        conflicts::counts(&self.conn, filter)
    }

    /// Deletes conflict-log entries logged before `older_than` (optionally of one stream);
    /// returns how many.
    pub fn prune_conflicts(
        &self,
        older_than: DateTime<Utc>,
        stream: Option<&str>,
    ) -> Result<usize> {
        conflicts::prune(&self.conn, older_than, stream)
    }

    /// Writes a run's counts to `merge_run_stats`.
    pub fn record_run_stats(&self, run_id: &str, stats: &[MergeRunStats]) -> Result<()> {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for s in stats {
            self.conn.execute(
                "INSERT INTO merge_run_stats
                     (run_id, stream, source, records_in, emitted, resent, conflicts, quarantined,
                      null_keys, unchanged, same_output)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (run_id, stream, source) DO UPDATE SET records_in = excluded.records_in,
                     emitted = excluded.emitted, resent = excluded.resent,
                     unchanged = excluded.unchanged, same_output = excluded.same_output,
                     conflicts = excluded.conflicts, quarantined = excluded.quarantined,
                     null_keys = excluded.null_keys",
                params![
                    run_id,
                    s.stream,
                    s.source,
                    n(s.stats.records_in),
                    n(s.stats.emitted),
                    n(s.stats.resent),
                    n(s.stats.conflicts),
                    n(s.stats.quarantined),
                    n(s.stats.null_keys),
                    n(s.stats.unchanged),
                    n(s.stats.unchanged_output)
                ],
            )?;
        }
        Ok(())
    }

    /// The counts a run recorded, by stream and source.
    pub fn run_stats(&self, run_id: &str) -> Result<Vec<MergeRunStats>> {
        let mut stmt = self.conn.prepare(
            "SELECT stream, source, records_in, emitted, resent, conflicts, quarantined, null_keys,
                    unchanged, same_output
             FROM merge_run_stats WHERE run_id = ?1 ORDER BY stream, source",
        )?;
        let u = |v: i64| u64::try_from(v).unwrap_or(0);
        let rows = stmt.query_map([run_id], |r| {
            Ok(MergeRunStats {
                stream: r.get(0)?,
                source: r.get(1)?,
                stats: ResolverStats {
                    records_in: u(r.get(2)?),
                    emitted: u(r.get(3)?),
                    resent: u(r.get(4)?),
                    conflicts: u(r.get(5)?),
                    quarantined: u(r.get(6)?),
                    null_keys: u(r.get(7)?),
                    unchanged: u(r.get(8)?),
                    unchanged_output: u(r.get(9)?),
                },
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// This connection as the store of one resolver: the rows of `stream` written by run
    /// `run_id`, in batches.
    pub fn into_stream(self, stream: &str, run_id: &str) -> Result<StreamDb> {
        let writes = Writes::new(&self.conn, stream, run_id)?;
        Ok(StreamDb {
            db: self,
            stream: stream.to_owned(),
            run_id: run_id.to_owned(),
            writes,
        })
    }
}

/// Tests read the tables with the functions of [`tables`] and [`conflicts`] directly.
#[cfg(test)]
impl std::ops::Deref for MergedDb {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.conn
    }
}

/// One resolver's rows: reads of its keys, and its writes in batches (one transaction each).
pub struct StreamDb {
    db: MergedDb,
    stream: String,
    run_id: String,
    writes: Writes,
}

impl std::fmt::Debug for StreamDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamDb")
            .field("stream", &self.stream)
            .field("run_id", &self.run_id)
            .field("behind", &self.writes.is_behind())
            .finish_non_exhaustive()
    }
}

impl StreamDb {
    /// The tables, for reads that are not about one key (call [`Self::flush`] first so they
    /// see every write).
    pub fn tables(&self) -> &MergedDb {
        &self.db
    }

    /// Whether the writes go to a writer thread (a WAL database file) rather than inline.
    pub fn is_behind(&self) -> bool {
        self.writes.is_behind()
    }

    /// The row of `key`: the latest one written, else the database's.
    pub fn load(&mut self, key: &str) -> Result<Option<EntityRow>> {
        self.writes.load(&self.db.conn, &self.stream, key)
    }

    /// Writes (or queues) one write into the open batch.
    pub fn write(&mut self, op: MergeWrite) -> Result<()> {
        self.writes.write(&self.db.conn, op)
    }

    /// Ends the batch: commits it (behind a writer thread, without waiting).
    pub fn commit(&mut self) -> Result<()> {
        self.writes.commit(&self.db.conn)
    }

    /// Commits everything written and waits until it is committed; reports any failed write.
    pub fn flush(&mut self) -> Result<()> {
        self.writes.flush(&self.db.conn)
    }

    /// The records other runs sent but no loader confirmed, which this run sends again under
    /// `mark`: they become this run's unconfirmed keys, in one transaction. Call after
    /// [`Self::flush`].
    pub fn take_over_unconfirmed(&mut self, mark: u64) -> Result<Vec<KeyedRecord>> {
        let conn = &self.db.conn;
        let rows = tables::unconfirmed_records(conn, &self.stream, &self.run_id)?;
        if rows.is_empty() {
            return Ok(rows);
        }
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let taken = tables::sender_id(conn, &self.stream, &self.run_id).and_then(|sender| {
            tables::take_over_unconfirmed(conn, &self.stream, &self.run_id, sender, mark)
        });
        match taken {
            Ok(()) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
        Ok(rows)
    }
}

impl MergedTables for MergedDb {
    fn load_schemas(&self, stream: &str) -> Result<Vec<(String, SchemaMessage)>> {
        MergedDb::load_schemas(self, stream)
    }

    fn save_schema(&self, stream: &str, source: &str, schema: &SchemaMessage) -> Result<()> {
        MergedDb::save_schema(self, stream, source, schema)
    }

    fn resolved_records(&self, stream: &str) -> Result<Vec<KeyedRecord>> {
        MergedDb::resolved_records(self, stream)
    }

    fn quarantined_keys(&self, stream: &str) -> Result<Vec<String>> {
        MergedDb::quarantined_keys(self, stream)
    }

    fn unconfirmed(&self) -> Result<Vec<(String, String, i64, String)>> {
        MergedDb::unconfirmed(self)
    }

    fn conflicts(&self, filter: &ConflictFilter) -> Result<Vec<ConflictEntry>> {
        MergedDb::conflicts(self, filter)
    }

    fn conflict(&self, id: i64) -> Result<Option<ConflictEntry>> {
        MergedDb::conflict(self, id)
    }

    fn conflict_counts(&self, filter: &ConflictFilter) -> Result<Vec<RunConflictCount>> {
        MergedDb::conflict_counts(self, filter)
    }

    fn prune_conflicts(&self, older_than: DateTime<Utc>, stream: Option<&str>) -> Result<usize> {
        MergedDb::prune_conflicts(self, older_than, stream)
    }

    fn record_run_stats(&self, run_id: &str, stats: &[MergeRunStats]) -> Result<()> {
        MergedDb::record_run_stats(self, run_id, stats)
    }

    fn run_stats(&self, run_id: &str) -> Result<Vec<MergeRunStats>> {
        MergedDb::run_stats(self, run_id)
    }

    /// One SQLite file is one project on one host: the run's lease is not checked here.
    fn into_stream(self: Box<Self>, stream: &str, run: &StreamRun) -> Result<Box<dyn StreamRows>> {
        Ok(Box::new(MergedDb::into_stream(*self, stream, &run.run_id)?))
    }
}

impl StreamRows for StreamDb {
    fn tables(&self) -> &dyn MergedTables {
        &self.db
    }

    fn is_behind(&self) -> bool {
        StreamDb::is_behind(self)
    }

    fn load(&mut self, key: &str) -> Result<Option<EntityRow>> {
        StreamDb::load(self, key)
    }

    fn write(&mut self, op: MergeWrite) -> Result<()> {
        StreamDb::write(self, op)
    }

    fn commit(&mut self) -> Result<()> {
        StreamDb::commit(self)
    }

    fn flush(&mut self) -> Result<()> {
        StreamDb::flush(self)
    }

    fn take_over_unconfirmed(&mut self, mark: u64) -> Result<Vec<KeyedRecord>> {
        StreamDb::take_over_unconfirmed(self, mark)
    }
}

impl From<MergedDb> for Box<dyn MergedTables> {
    fn from(db: MergedDb) -> Self {
        Box::new(db)
    }
}

//! The resolver's writes: key rows, conflict-log rows, confirmations and commits, applied in
//! order on a connection in one write transaction per batch.
//!
//! On a WAL database the writes go to a thread of their own with its own connection, so
//! resolving the next records (parsing, reading keys, applying the rules) overlaps with SQLite
//! writing the last ones. The resolver then reads a key from [`Writes::load`], which looks in
//! the rows sent to the thread but not yet committed before it reads the database: a record
//! is always resolved against everything resolved before it. Those rows are held until the
//! thread reports their batch committed, so memory is bounded by the batches in flight, not by
//! the number of keys.
//!
//! The guarantees stay those of writing inline: a batch commits as one transaction, the
//! writes of a resolver dropped without flushing are rolled back (the thread's connection
//! closes with its transaction open), and a failed write is an error of the run, reported by
//! the next call that sends work or waits for it ([`Writes::flush`]) and never dropped.

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use rusqlite::Connection;

use super::tables as store;
use crate::error::{Error, Result};
use crate::store::merged::{EntityRow, MergeWrite as Op};

/// Messages that may wait in the queue (bounded: the resolver waits when the thread is this far
/// behind).
const QUEUE: usize = 16;
/// Operations sent to the thread together (one wake-up per this many).
const PARCEL: usize = 512;

enum Msg {
    Ops(Vec<Op>),
    /// Commit the open batch (numbered); `reply` when the sender waits for it.
    Commit {
        batch: u64,
        reply: Option<SyncSender<Result<(), String>>>,
    },
}

/// What the thread reports: a batch committed, or the write that failed.
enum Ack {
    Committed(u64),
    Failed(Error),
}

/// Applies operations on a connection, opening the write transaction on the first write.
pub(super) struct Applier {
    stream: String,
    run_id: String,
    in_tx: bool,
    /// The run's id in `merge_sends` within the open transaction (see `store::sender_id`).
    sender: Option<i64>,
    /// The id of the next conflict-log entry within the open transaction (see
    /// `store::next_conflict_id`).
    next_conflict: Option<i64>,
}

impl Applier {
    fn begin(&mut self, conn: &Connection) -> Result<()> {
        if !self.in_tx {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            self.in_tx = true;
        }
        Ok(())
    }

    fn apply(&mut self, conn: &Connection, op: Op) -> Result<()> {
        match op {
            Op::Entity { key, row, sent } => {
                self.begin(conn)?;
                let sent = match sent {
                    Some(mark) => {
                        let id = match self.sender {
                            Some(id) => id,
                            None => {
                                let id = store::sender_id(conn, &self.stream, &self.run_id)?;
                                self.sender = Some(id);
                                id
                            }
                        };
                        Some((id, mark))
                    }
                    None => None,
                };
                store::save_entity(conn, &self.stream, &key, &row, sent)
            }
            Op::Conflicts(rows) => {
                self.begin(conn)?;
                let first = match self.next_conflict {
                    Some(id) => id,
                    None => store::next_conflict_id(conn)?,
                };
                let next = store::insert_conflicts(conn, &self.stream, &self.run_id, first, &rows)?;
                self.next_conflict = Some(next);
                Ok(())
            }
            Op::Confirm(before) => {
                // Joins the open batch when there is one.
                store::confirm(conn, &self.stream, &self.run_id, before)?;
                if before.is_none() {
                    // The run's row is gone; a later send adds a new one.
                    self.sender = None;
                }
                Ok(())
            }
        }
    }

    fn commit(&mut self, conn: &Connection) -> Result<()> {
        if self.in_tx {
            conn.execute_batch("COMMIT")?;
            self.in_tx = false;
            self.sender = None;
            self.next_conflict = None;
        }
        Ok(())
    }
}

/// Where a resolver's writes go.
pub(super) enum Writes {
    /// On the resolver's own connection, as they come.
    Inline(Applier),
    /// To the writer thread.
    Behind(Behind),
}

pub(super) struct Behind {
    tx: Option<SyncSender<Msg>>,
    acks: Receiver<Ack>,
    thread: Option<JoinHandle<()>>,
    /// The batch being filled.
    batch: u64,
    /// Rows sent but maybe not committed yet, with their batch.
    overlay: HashMap<String, (u64, EntityRow)>,
    /// Operations not sent yet.
    parcel: Vec<Op>,
    /// Whether the resolver's connection holds a read transaction (see [`Writes::load`]).
    reading: bool,
    /// Whether a batch committed since that read transaction began, so it must end before the
    /// next read: the rows of that batch left the overlay.
    stale: bool,
}

impl Writes {
    /// Writes for `stream` of run `run_id`, behind a thread when `conn` is a WAL database
    /// file a second connection can open; inline otherwise.
    pub(super) fn new(conn: &Connection, stream: &str, run_id: &str) -> Result<Writes> {
        let applier = Applier {
            stream: stream.to_owned(),
            run_id: run_id.to_owned(),
            in_tx: false,
            sender: None,
            next_conflict: None,
        };
        let wal = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))?
            .eq_ignore_ascii_case("wal");
        let path = conn.path().filter(|p| !p.is_empty()).map(str::to_owned);
        let (Some(path), true) = (path, wal) else {
            return Ok(Writes::Inline(applier));
        };
        // The writer's commits reset this connection's page cache; reading the file through a
        // memory map (at most 256 MiB of it: shared, reclaimable page cache, not heap) makes
        // the reads that follow cheap.
        conn.pragma_update(None, "mmap_size", 1_i64 << 28)?;
        let writer = Connection::open(&path)?;
        writer.busy_timeout(std::time::Duration::from_secs(60))?;
        let synchronous: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
        writer.pragma_update(None, "synchronous", synchronous)?;
        let foreign_keys: i64 = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
        writer.pragma_update(None, "foreign_keys", foreign_keys)?;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let (ack_tx, acks) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("dsm-merge-writer".into())
            .spawn(move || run_writer(writer, applier, &rx, &ack_tx))
            .map_err(|e| Error::failed(format!("cannot start the merge writer thread: {e}")))?;
        Ok(Writes::Behind(Behind {
            tx: Some(tx),
            acks,
            thread: Some(thread),
            batch: 0,
            overlay: HashMap::new(),
            parcel: Vec::with_capacity(PARCEL),
            reading: false,
            stale: false,
        }))
    }

    pub(super) fn is_behind(&self) -> bool {
        matches!(self, Writes::Behind(_))
    }

    /// The row of `key`: the latest one sent, else the database's.
    ///
    /// Behind the thread, reads share one read transaction until a batch commits: beginning
    /// and ending one per read takes the WAL's locks each time, a measurable share of the
    /// work. The transaction ends as soon as a commit is reported, because the rows of that
    /// batch then leave the overlay and must be read from a snapshot that holds them.
    pub(super) fn load(
        &mut self,
        conn: &Connection,
        stream: &str,
        key: &str,
    ) -> Result<Option<EntityRow>> {
        if let Writes::Behind(b) = self {
            if let Some((_, row)) = b.overlay.get(key) {
                return Ok(Some(row.clone()));
            }
            if b.reading && b.stale {
                b.end_read(conn)?;
            }
            if !b.reading {
                conn.execute_batch("BEGIN")?;
                b.reading = true;
                b.stale = false;
            }
        }
        store::load_entity(conn, stream, key)
    }

    /// Sends (or applies) one write.
    pub(super) fn write(&mut self, conn: &Connection, op: Op) -> Result<()> {
        match self {
            Writes::Inline(a) => a.apply(conn, op),
            Writes::Behind(b) => {
                b.drain_acks()?;
                if let Op::Entity { key, row, .. } = &op {
                    b.overlay.insert(key.clone(), (b.batch, row.clone()));
                }
                // A confirmation outside a batch takes effect at once, as it does inline.
                let now = matches!(op, Op::Confirm(_));
                b.parcel.push(op);
                if now || b.parcel.len() >= PARCEL {
                    b.send_parcel()?;
                }
                Ok(())
            }
        }
    }

    /// Ends the batch: commits it (behind the thread, without waiting).
    pub(super) fn commit(&mut self, conn: &Connection) -> Result<()> {
        match self {
            Writes::Inline(a) => a.commit(conn),
            Writes::Behind(b) => {
                b.drain_acks()?;
                b.send_parcel()?;
                let batch = b.batch;
                b.batch += 1;
                b.send(Msg::Commit { batch, reply: None })
            }
        }
    }

    /// Commits everything sent and waits until it is committed; reports any failed write.
    pub(super) fn flush(&mut self, conn: &Connection) -> Result<()> {
        match self {
            Writes::Inline(a) => a.commit(conn),
            Writes::Behind(b) => {
                // The connection is free for other statements afterwards.
                b.end_read(conn)?;
                b.send_parcel()?;
                let (reply, done) = mpsc::sync_channel(1);
                let batch = b.batch;
                b.batch += 1;
                b.send(Msg::Commit {
                    batch,
                    reply: Some(reply),
                })?;
                let outcome = done
                    .recv()
                    .unwrap_or_else(|_| Err("the merge writer thread stopped".to_owned()));
                // A failure is also reported on the acks, with its own message.
                b.drain_acks()?;
                outcome.map_err(Error::failed)?;
                b.overlay.clear();
                Ok(())
            }
        }
    }
}

impl Behind {
    /// Ends the read transaction of [`Writes::load`], if one is open.
    fn end_read(&mut self, conn: &Connection) -> Result<()> {
        if self.reading {
            self.reading = false;
            conn.execute_batch("COMMIT")?;
        }
        Ok(())
    }

    fn send_parcel(&mut self) -> Result<()> {
        if self.parcel.is_empty() {
            return Ok(());
        }
        let parcel = std::mem::replace(&mut self.parcel, Vec::with_capacity(PARCEL));
        self.send(Msg::Ops(parcel))
    }

    fn send(&mut self, msg: Msg) -> Result<()> {
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(msg).is_ok());
        if sent {
            return Ok(());
        }
        // The thread ended: it reports why on the acks.
        self.drain_acks()?;
        Err(Error::failed("the merge writer thread stopped"))
    }

    /// Forgets the rows of committed batches; returns a write's failure.
    fn drain_acks(&mut self) -> Result<()> {
        while let Ok(ack) = self.acks.try_recv() {
            match ack {
                Ack::Committed(batch) => {
                    self.overlay.retain(|_, (b, _)| *b > batch);
                    self.stale = true;
                }
                Ack::Failed(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Drop for Behind {
    fn drop(&mut self) {
        // What is still to send goes too (a confirmation outside a batch stands, as inline);
        // then closing the queue ends the thread, whose connection rolls back an open batch.
        let _ = self.send_parcel();
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run_writer(
    conn: Connection,
    mut applier: Applier,
    rx: &Receiver<Msg>,
    acks: &mpsc::Sender<Ack>,
) {
    let mut failed: Option<String> = None;
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Ops(ops) => {
                for op in ops {
                    if failed.is_none()
                        && let Err(e) = applier.apply(&conn, op)
                    {
                        failed = Some(e.to_string());
                        let _ = acks.send(Ack::Failed(e));
                    }
                }
            }
            Msg::Commit { batch, reply } => {
                let outcome = match &failed {
                    Some(why) => Err(format!("an earlier write of the merge failed: {why}")),
                    None => match applier.commit(&conn) {
                        Ok(()) => {
                            let _ = acks.send(Ack::Committed(batch));
                            Ok(())
                        }
                        Err(e) => {
                            let why = e.to_string();
                            failed = Some(why.clone());
                            let _ = acks.send(Ack::Failed(e));
                            Err(why)
                        }
                    },
                };
                if let Some(reply) = reply {
                    let _ = reply.send(outcome);
                }
            }
        }
    }
    // The queue closed: a transaction still open is rolled back as the connection closes.
    drop(conn);
}

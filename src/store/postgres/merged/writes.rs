//! A resolver's batch as the connection writes it: key rows (new keys through `COPY`, stored
//! ones as upserts of many rows), confirmations in order, and the conflict log at commit.

use std::collections::HashMap;

use postgres::Client;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::error::SqlState;
use postgres::types::Type;

use super::worker::Conn;
use super::{Names, n64};
use crate::error::{Error, Result};
use crate::store::merged::{ConflictRow, EntityRow, StreamRun};
use crate::store::{RunId, StateId, lease_lost_error};

/// Fails when `run` holds a lease no longer: the flow's lease row is locked (shared) until the
/// transaction ends, so it cannot be taken over before this transaction commits.
pub(super) fn check_lease(c: &mut Client, n: &Names, run: &StreamRun) -> Result<()> {
    let Some(state_id) = &run.lease else {
        return Ok(());
    };
    let row = c.query_opt(
        &n.q("SELECT token IS NOT NULL AND expires_at > clock_timestamp()
                     AND (run_id IS NULL OR run_id = $3)
                FROM {S}.flow_locks WHERE project_id = $1 AND state_id = $2
                 FOR SHARE"),
        &[&n.project, state_id, &run.run_id],
    )?;
    match row {
        Some(r) if !r.get::<_, bool>(0) => Err(lease_lost_error(
            &StateId::new(state_id.as_str()),
            &RunId::new(run.run_id.as_str()),
        )),
        _ => Ok(()),
    }
}

/// The id in `merge_sends` of `run_id` sending records of `stream`, adding the row when missing.
pub(super) fn sender_id(c: &mut Client, n: &Names, stream: &str, run_id: &str) -> Result<i64> {
    Ok(c.query_one(
        &n.q(
            "INSERT INTO {S}.merge_sends (project_id, stream, run_id) VALUES ($1, $2, $3)
              ON CONFLICT (project_id, stream, run_id) DO UPDATE SET stream = excluded.stream
              RETURNING id",
        ),
        &[&n.project, &stream, &run_id],
    )?
    .get(0))
}

/// A write as the connection applies it.
pub(super) enum Write {
    /// A key row; `new`: the batch found no row for the key and has not written it before.
    Key {
        key: String,
        row: EntityRow,
        sent: Option<u64>,
        new: bool,
    },
    /// The loader confirmed the sends before this mark (`None`: all of them).
    Confirm(Option<u64>),
}

/// Key rows of a batch between two confirmations: the latest row per key, in first-write order.
#[derive(Default)]
struct Segment {
    index: HashMap<String, usize>,
    rows: Vec<SegmentRow>,
}

struct SegmentRow {
    key: String,
    row: EntityRow,
    sent: Option<u64>,
    /// The key has no stored row: it is inserted, not upserted.
    new: bool,
}

impl Segment {
    fn add(&mut self, key: String, row: EntityRow, sent: Option<u64>, new: bool) {
        match self.index.get(&key) {
            Some(&i) => {
                let slot = &mut self.rows[i];
                // A later write that sent nothing keeps the earlier send, as the upsert would.
                slot.sent = sent.or(slot.sent);
                slot.row = row;
            }
            None => {
                self.index.insert(key.clone(), self.rows.len());
                self.rows.push(SegmentRow {
                    key,
                    row,
                    sent,
                    new,
                });
            }
        }
    }

    /// Writes the rows: the new ones through `COPY` (a key with a row already fails it, so
    /// nothing is overwritten unread), the others many per upsert.
    fn write(&mut self, c: &mut Conn, n: &Names, stream: &str, run: &StreamRun) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let sender = if self.rows.iter().any(|r| r.sent.is_some()) {
            Some(c.sender_id(n, stream, &run.run_id)?)
        } else {
            None
        };
        let rows = std::mem::take(&mut self.rows);
        self.index.clear();
        let (new, stored): (Vec<SegmentRow>, Vec<SegmentRow>) =
            rows.into_iter().partition(|r| r.new);
        if !new.is_empty() {
            insert_new(c, n, stream, sender, &new)?;
        }
        if stored.is_empty() {
            return Ok(());
        }
        let mut keys = Vec::with_capacity(stored.len());
        let mut candidates = Vec::with_capacity(stored.len());
        let mut resolved: Vec<Option<String>> = Vec::with_capacity(stored.len());
        let mut quarantined: Vec<i32> = Vec::with_capacity(stored.len());
        let mut marks: Vec<Option<i64>> = Vec::with_capacity(stored.len());
        for r in stored {
            keys.push(r.key);
            candidates.push(r.row.candidates);
            resolved.push(r.row.resolved);
            quarantined.push(i32::from(r.row.quarantined));
            marks.push(r.sent.map(n64));
        }
        let upsert = c.statement(
            "upsert",
            n,
            "INSERT INTO {S}.merge_entities
                 (project_id, stream, key, candidates, resolved, quarantined, sent_by, sent_mark)
             SELECT $1, $2, k, c, r, q, CASE WHEN m IS NULL THEN NULL ELSE $3::BIGINT END, m
               FROM unnest($4::TEXT[], $5::TEXT[], $6::TEXT[], $7::INTEGER[], $8::BIGINT[])
                    AS t(k, c, r, q, m)
             ON CONFLICT (project_id, stream, key) DO UPDATE SET
                 candidates = excluded.candidates, resolved = excluded.resolved,
                 quarantined = excluded.quarantined,
                 sent_by = coalesce(excluded.sent_by, {S}.merge_entities.sent_by),
                 sent_mark = coalesce(excluded.sent_mark, {S}.merge_entities.sent_mark)",
        )?;
        c.client.execute(
            &upsert,
            &[
                &n.project,
                &stream,
                &sender,
                &keys,
                &candidates,
                &resolved,
                &quarantined,
                &marks,
            ],
        )?;
        Ok(())
    }
}

/// Inserts the key rows of keys that have none, through `COPY`. A key whose row appeared
/// since the batch read it (written by something other than a resolver, which holds the
/// stream's lock) fails the batch instead of being overwritten unread.
fn insert_new(
    c: &mut Conn,
    n: &Names,
    stream: &str,
    sender: Option<i64>,
    rows: &[SegmentRow],
) -> Result<()> {
    let copy = c.statement(
        "copy_keys",
        n,
        "COPY {S}.merge_entities
             (project_id, stream, key, candidates, resolved, quarantined, sent_by, sent_mark)
         FROM STDIN (FORMAT binary)",
    )?;
    let client = &mut c.client;
    let copied = (|| {
        let sink = client.copy_in(&copy)?;
        let mut w = BinaryCopyInWriter::new(
            sink,
            &[
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::INT4,
                Type::INT8,
                Type::INT8,
            ],
        );
        for r in rows {
            let mark = r.sent.map(n64);
            let by = mark.and(sender);
            w.write(&[
                &n.project,
                &stream,
                &r.key,
                &r.row.candidates,
                &r.row.resolved,
                &i32::from(r.row.quarantined),
                &by,
                &mark,
            ])?;
        }
        w.finish()
    })();
    match copied {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => Err(Error::failed(format!(
            "a key row of merged stream `{stream}` was written to the PostgreSQL store by \
             something other than dsm while this run held the stream's lock (the key had no \
             row when the run read it), so this batch was not saved: {}. Find what writes \
             to the merged-stream tables besides dsm, then run the sync again",
            crate::store::postgres::connect::error_text(&e)
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Ends a batch in its open transaction: its last writes and conflict-log rows, once the run's
/// lease is checked.
pub(super) fn apply(
    c: &mut Conn,
    n: &Names,
    stream: &str,
    run: &StreamRun,
    writes: Vec<Write>,
    conflicts: Vec<ConflictRow>,
) -> Result<()> {
    check_lease(&mut c.client, n, run)?;
    write_keys(c, n, stream, run, writes)?;
    insert_conflicts(c, n, stream, &run.run_id, conflicts)
}

/// Applies key rows and confirmations, in order, in the open transaction.
pub(super) fn write_keys(
    c: &mut Conn,
    n: &Names,
    stream: &str,
    run: &StreamRun,
    writes: Vec<Write>,
) -> Result<()> {
    let mut segment = Segment::default();
    for w in writes {
        match w {
            Write::Key {
                key,
                row,
                sent,
                new,
            } => segment.add(key, row, sent, new),
            Write::Confirm(before) => {
                // The sends before the confirmation name the run's row as it stands.
                segment.write(c, n, stream, run)?;
                // It may delete the run's row in `merge_sends`.
                c.sender = None;
                match before {
                    Some(m) => c.client.execute(
                        &n.q("UPDATE {S}.merge_sends SET confirmed_before = GREATEST(confirmed_before, $4)
                               WHERE project_id = $1 AND stream = $2 AND run_id = $3"),
                        &[&n.project, &stream, &run.run_id, &n64(m)],
                    )?,
                    None => c.client.execute(
                        &n.q("DELETE FROM {S}.merge_sends
                               WHERE project_id = $1 AND stream = $2 AND run_id = $3"),
                        &[&n.project, &stream, &run.run_id],
                    )?,
                };
            }
        }
    }
    segment.write(c, n, stream, run)
}

/// Appends conflict-log rows; their entry ids continue the project's log, handed out under a
/// transaction-level lock so that two runs never take the same ones.
fn insert_conflicts(
    c: &mut Conn,
    n: &Names,
    stream: &str,
    run_id: &str,
    rows: Vec<ConflictRow>,
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    c.client.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&format!("dsm merge conflicts {} {}", n.schema, n.project)],
    )?;
    let last: Option<i64> = c
        .client
        .query_opt(
            &n.q(
                "SELECT id + n FROM {S}.merge_conflicts WHERE project_id = $1
                   ORDER BY id DESC LIMIT 1",
            ),
            &[&n.project],
        )?
        .map(|r| r.get(0));
    let mut id = last.unwrap_or(1);
    let copy = c.statement(
        "copy_conflicts",
        n,
        "COPY {S}.merge_conflicts (project_id, id, stream, key, run_id, logged_at, n, fields)
         FROM STDIN (FORMAT binary)",
    )?;
    let sink = c.client.copy_in(&copy)?;
    let mut w = BinaryCopyInWriter::new(
        sink,
        &[
            Type::TEXT,
            Type::INT8,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
            Type::TEXT,
        ],
    );
    for row in &rows {
        w.write(&[
            &n.project,
            &id,
            &stream,
            &row.key,
            &run_id,
            &row.logged_at,
            &row.n,
            &row.fields,
        ])?;
        id += row.n;
    }
    w.finish()?;
    Ok(())
}

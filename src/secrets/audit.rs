//! The audit log: an append-only table of who changed what (names, never values), chained with
//! HMAC-SHA256 under a key derived from the master key.
//!
//! A plain hash chain could be recomputed by anyone who can write the database; the HMAC needs
//! the master key. The chain's head (last sequence number and MAC) is also written to
//! `audit.head` beside the database, so entries cut from the end are detected too. Pruning keeps
//! the last pruned entry's MAC as a MAC-protected anchor the chain continues from.

use std::path::PathBuf;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::error::SecretsError;
use super::key::{AuditKey, MasterKey};
use super::store::begin;
use super::{actor, schema};

type Result<T, E = SecretsError> = std::result::Result<T, E>;

/// Name of the file beside the database that records the chain's head.
pub const HEAD_FILE: &str = "audit.head";

/// One thing to record: which command did what to which names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The dsm command, e.g. `dsm secrets set` (never its full argv).
    pub command: String,
    /// What happened, e.g. `secret.set`, `config.set`, `state.clear`, `secret.read`.
    pub action: String,
    /// The names affected, e.g. `tap-github.auth_token`. Never values.
    pub targets: Vec<String>,
}

impl Entry {
    /// An entry for `command` doing `action` to `targets`.
    pub fn new<T: Into<String>>(
        command: impl Into<String>,
        action: impl Into<String>,
        targets: impl IntoIterator<Item = T>,
    ) -> Self {
        Entry {
            command: command.into(),
            action: action.into(),
            targets: targets.into_iter().map(Into::into).collect(),
        }
    }
}

/// A stored audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// Position in the chain (1 for the first entry ever).
    pub seq: i64,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// The OS user.
    pub os_user: String,
    /// The host.
    pub host: String,
    /// The dsm command.
    pub command: String,
    /// What happened.
    pub action: String,
    /// The names affected.
    pub targets: Vec<String>,
    #[serde(skip)]
    mac: Vec<u8>,
}

/// The last link of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Sequence number of the last entry.
    pub seq: i64,
    /// Its MAC.
    pub mac: Vec<u8>,
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    /// Entries checked.
    pub entries: usize,
    /// Sequence number the chain starts after (the pruning anchor), 0 if never pruned.
    pub anchored_at: i64,
    /// Tampering found: the log cannot be trusted.
    pub problems: Vec<String>,
    /// Harmless oddities (a head file left behind by an interrupted write).
    pub warnings: Vec<String>,
}

impl AuditReport {
    /// Whether the chain verified.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

fn entry_mac(key: &AuditKey, prev: &[u8], r: &Record, targets_json: &str) -> Vec<u8> {
    key.mac(&[
        prev,
        &r.seq.to_be_bytes(),
        r.at.as_bytes(),
        r.os_user.as_bytes(),
        r.host.as_bytes(),
        r.command.as_bytes(),
        r.action.as_bytes(),
        targets_json.as_bytes(),
    ])
}

fn anchor_mac(key: &AuditKey, seq: i64, mac: &[u8]) -> Vec<u8> {
    key.mac(&[b"anchor", &seq.to_be_bytes(), mac])
}

fn targets_json(targets: &[String]) -> String {
    serde_json::to_string(targets).expect("a list of strings serialises")
}

struct Anchor {
    seq: i64,
    mac: Vec<u8>,
    anchor_mac: Vec<u8>,
}

fn anchor(conn: &Connection) -> Result<Option<Anchor>> {
    Ok(conn
        .query_row(
            "SELECT seq, mac, anchor_mac FROM audit_anchor WHERE id = 1",
            [],
            |r| {
                Ok(Anchor {
                    seq: r.get(0)?,
                    mac: r.get(1)?,
                    anchor_mac: r.get(2)?,
                })
            },
        )
        .optional()?)
}

fn last(conn: &Connection) -> Result<Head> {
    let row: Option<Head> = conn
        .query_row(
            "SELECT seq, mac FROM audit_log ORDER BY seq DESC LIMIT 1",
            [],
            |r| {
                Ok(Head {
                    seq: r.get(0)?,
                    mac: r.get(1)?,
                })
            },
        )
        .optional()?;
    if let Some(head) = row {
        return Ok(head);
    }
    Ok(match anchor(conn)? {
        Some(a) => Head {
            seq: a.seq,
            mac: a.mac,
        },
        None => Head {
            seq: 0,
            mac: Vec::new(),
        },
    })
}

/// Appends `entry` inside the caller's transaction and returns the new head. The caller writes
/// the head file with [`write_head`] after committing.
pub(crate) fn append_in(conn: &Connection, key: &MasterKey, entry: &Entry) -> Result<Head> {
    schema::migrate(conn)?;
    let prev = last(conn)?;
    let mut record = Record {
        seq: prev.seq + 1,
        at: actor::now(),
        os_user: actor::os_user(),
        host: actor::host(),
        command: entry.command.clone(),
        action: entry.action.clone(),
        targets: entry.targets.clone(),
        mac: Vec::new(),
    };
    let targets = targets_json(&record.targets);
    record.mac = entry_mac(&key.audit_key(), &prev.mac, &record, &targets);
    conn.execute(
        "INSERT INTO audit_log (seq, at, os_user, host, command, action, targets, mac)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            record.seq,
            record.at,
            record.os_user,
            record.host,
            record.command,
            record.action,
            targets,
            record.mac
        ],
    )?;
    Ok(Head {
        seq: record.seq,
        mac: record.mac,
    })
}

/// Appends `entry` to the audit log. Other modules call this on every change to configuration,
/// plugins, schedules and state, and on every read of a secret for a run.
///
/// Outside a transaction it commits and updates the head file at once. Inside the caller's
/// transaction the entry commits with it, and the head file catches up at the next append
/// (verification accepts a head that is behind, but not one that is ahead).
pub fn append(conn: &Connection, key: &MasterKey, entry: &Entry) -> Result<()> {
    if !conn.is_autocommit() {
        append_in(conn, key, entry)?;
        return Ok(());
    }
    let tx = begin(conn)?;
    let head = append_in(&tx, key, entry)?;
    tx.commit()?;
    write_head(conn, &head)
}

/// Where the head file of the database behind `conn` lives (`None` for in-memory databases).
pub fn head_path(conn: &Connection) -> Option<PathBuf> {
    let db = PathBuf::from(conn.path().filter(|p| !p.is_empty())?);
    Some(db.parent()?.join(HEAD_FILE))
}

/// Writes the head file atomically (a temporary file renamed over it).
pub fn write_head(conn: &Connection, head: &Head) -> Result<()> {
    let Some(path) = head_path(conn) else {
        return Ok(());
    };
    let text = format!("{} {}\n", head.seq, hex::encode(&head.mac));
    let io = |e| SecretsError::io(format!("cannot write `{}`", path.display()), e);
    crate::files::replace_atomically(&path, text.as_bytes(), crate::files::Mode::Set(0o600))
        .map_err(io)
}

fn read_head(conn: &Connection) -> Result<Option<Result<Head, String>>> {
    let Some(path) = head_path(conn) else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Some(Err(format!(
                "head file `{}` is missing",
                path.display()
            ))));
        }
        Err(e) => {
            return Err(SecretsError::io(
                format!("cannot read `{}`", path.display()),
                e,
            ));
        }
    };
    let parsed = text.trim().split_once(' ').and_then(|(seq, mac)| {
        Some(Head {
            seq: seq.parse().ok()?,
            mac: hex::decode(mac).ok()?,
        })
    });
    Ok(Some(parsed.ok_or_else(|| {
        format!("head file `{}` is unreadable", path.display())
    })))
}

fn records(conn: &Connection, since: Option<&str>) -> Result<Vec<Record>> {
    schema::migrate(conn)?;
    let mut stmt = conn.prepare(
        "SELECT seq, at, os_user, host, command, action, targets, mac FROM audit_log
         WHERE ?1 IS NULL OR at >= ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map(params![since], |r| {
        let targets: String = r.get(6)?;
        Ok(Record {
            seq: r.get(0)?,
            at: r.get(1)?,
            os_user: r.get(2)?,
            host: r.get(3)?,
            command: r.get(4)?,
            action: r.get(5)?,
            targets: serde_json::from_str(&targets).unwrap_or_else(|_| vec![targets]),
            mac: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The entries at or after `since` (RFC 3339 text, compared as text), oldest first.
pub fn list(conn: &Connection, since: Option<&str>) -> Result<Vec<Record>> {
    records(conn, since)
}

fn raw_targets(conn: &Connection, seq: i64) -> Result<String> {
    Ok(
        conn.query_row("SELECT targets FROM audit_log WHERE seq = ?1", [seq], |r| {
            r.get(0)
        })?,
    )
}

/// Walks the chain with `key`, returning the report and the recomputed links.
fn walk(conn: &Connection, key: &AuditKey) -> Result<AuditReport> {
    schema::migrate(conn)?;
    let mut report = AuditReport::default();
    let mut prev = Head {
        seq: 0,
        mac: Vec::new(),
    };
    if let Some(a) = anchor(conn)? {
        if !key.verify(&[b"anchor", &a.seq.to_be_bytes(), &a.mac], &a.anchor_mac) {
            report
                .problems
                .push(format!("the pruning anchor at entry {} was altered", a.seq));
        }
        report.anchored_at = a.seq;
        prev = Head {
            seq: a.seq,
            mac: a.mac,
        };
    }
    for record in records(conn, None)? {
        report.entries += 1;
        if record.seq != prev.seq + 1 {
            report.problems.push(format!(
                "entries {} to {} are missing (deleted)",
                prev.seq + 1,
                record.seq - 1
            ));
        }
        let targets = raw_targets(conn, record.seq)?;
        let expected = entry_mac(key, &prev.mac, &record, &targets);
        if expected != record.mac {
            report.problems.push(format!(
                "entry {} ({} at {}) was altered, inserted or its predecessor removed",
                record.seq, record.action, record.at
            ));
        }
        prev = Head {
            seq: record.seq,
            mac: record.mac,
        };
    }
    match read_head(conn)? {
        Some(Err(problem)) if prev.seq > 0 => report.problems.push(problem),
        None | Some(Err(_)) => {}
        Some(Ok(head)) if head.seq > prev.seq => report.problems.push(format!(
            "entries {} to {} were cut from the end (the head file records entry {})",
            prev.seq + 1,
            head.seq,
            head.seq
        )),
        Some(Ok(head)) => {
            let stored = if head.seq == report.anchored_at {
                anchor(conn)?.map(|a| a.mac)
            } else {
                conn.query_row(
                    "SELECT mac FROM audit_log WHERE seq = ?1",
                    [head.seq],
                    |r| r.get::<_, Vec<u8>>(0),
                )
                .optional()?
            };
            if stored.as_deref() != Some(head.mac.as_slice()) && head.seq > 0 {
                report.problems.push(format!(
                    "entry {} does not match the head file (the log was rewritten)",
                    head.seq
                ));
            } else if head.seq < prev.seq {
                report.warnings.push(format!(
                    "the head file is {} entries behind (an interrupted write); the next change updates it",
                    prev.seq - head.seq
                ));
            }
        }
    }
    Ok(report)
}

/// Verifies the whole chain under `key`: every MAC, no gaps, the anchor, and the head file.
pub fn verify(conn: &Connection, key: &MasterKey) -> Result<AuditReport> {
    walk(conn, &key.audit_key())
}

/// Removes entries older than `before` (RFC 3339), keeping the last removed entry's MAC as the
/// anchor the chain continues from. Refuses when the log does not verify, so pruning cannot hide
/// tampering. Returns how many entries were removed.
pub fn prune(conn: &Connection, key: &MasterKey, before: &str, command: &str) -> Result<usize> {
    let report = verify(conn, key)?;
    if !report.is_ok() {
        return Err(SecretsError::AuditBroken(report.problems.join("; ")));
    }
    let tx = begin(conn)?;
    let boundary: Option<Head> = tx
        .query_row(
            "SELECT seq, mac FROM audit_log WHERE at < ?1 ORDER BY seq DESC LIMIT 1",
            [before],
            |r| {
                Ok(Head {
                    seq: r.get(0)?,
                    mac: r.get(1)?,
                })
            },
        )
        .optional()?;
    let Some(boundary) = boundary else {
        return Ok(0);
    };
    let removed = tx.execute("DELETE FROM audit_log WHERE seq <= ?1", [boundary.seq])?;
    tx.execute(
        "INSERT OR REPLACE INTO audit_anchor (id, seq, mac, anchor_mac) VALUES (1, ?1, ?2, ?3)",
        params![
            boundary.seq,
            boundary.mac,
            anchor_mac(&key.audit_key(), boundary.seq, &boundary.mac)
        ],
    )?;
    let head = append_in(
        &tx,
        key,
        &Entry::new(
            command,
            "audit.prune",
            [format!("entries up to {}", boundary.seq)],
        ),
    )?;
    tx.commit()?;
    write_head(conn, &head)?;
    Ok(removed)
}

/// Re-computes every MAC of the chain under `new_key`, inside the caller's transaction (key
/// rotation). Refuses when the chain does not verify under `old_key`.
pub(crate) fn rekey_in(conn: &Connection, old_key: &MasterKey, new_key: &MasterKey) -> Result<()> {
    let report = verify(conn, old_key)?;
    if !report.is_ok() {
        return Err(SecretsError::AuditBroken(report.problems.join("; ")));
    }
    let new = new_key.audit_key();
    let mut prev_mac = Vec::new();
    if let Some(a) = anchor(conn)? {
        conn.execute(
            "UPDATE audit_anchor SET anchor_mac = ?1 WHERE id = 1",
            [anchor_mac(&new, a.seq, &a.mac)],
        )?;
        prev_mac = a.mac;
    }
    for record in records(conn, None)? {
        let targets = raw_targets(conn, record.seq)?;
        let mac = entry_mac(&new, &prev_mac, &record, &targets);
        conn.execute(
            "UPDATE audit_log SET mac = ?1 WHERE seq = ?2",
            params![mac, record.seq],
        )?;
        prev_mac = mac;
    }
    Ok(())
}

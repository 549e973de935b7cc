//! [`AuditStore`] on SQLite: the `audit_log` and `audit_anchor` tables, and the head file
//! `audit.head` beside the database.

use std::path::PathBuf;

use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use crate::error::{Error, Result};
use crate::store::audit::{
    AUDIT_HEAD_FILE, AuditAnchor, AuditAppend, AuditChain, AuditRow, AuditStore, ChainLink,
    RecordedHead,
};

pub(super) fn anchor(conn: &Connection) -> Result<Option<AuditAnchor>> {
    Ok(conn
        .query_row(
            "SELECT seq, mac, anchor_mac FROM audit_anchor WHERE id = 1",
            [],
            |r| {
                Ok(AuditAnchor {
                    seq: r.get(0)?,
                    mac: r.get(1)?,
                    anchor_mac: r.get(2)?,
                })
            },
        )
        .optional()?)
}

/// The last link: the newest entry, else the anchor, else the empty link.
fn last(conn: &Connection) -> Result<ChainLink> {
    let row: Option<ChainLink> = conn
        .query_row(
            "SELECT seq, mac FROM audit_log ORDER BY seq DESC LIMIT 1",
            [],
            |r| {
                Ok(ChainLink {
                    seq: r.get(0)?,
                    mac: r.get(1)?,
                })
            },
        )
        .optional()?;
    if let Some(link) = row {
        return Ok(link);
    }
    Ok(match anchor(conn)? {
        Some(a) => ChainLink {
            seq: a.seq,
            mac: a.mac,
        },
        None => ChainLink {
            seq: 0,
            mac: Vec::new(),
        },
    })
}

/// Writes one row.
pub(super) fn insert(conn: &Connection, row: &AuditRow) -> Result<()> {
    conn.execute(
        "INSERT INTO audit_log (seq, at, os_user, host, command, action, targets, mac)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            row.seq,
            row.at,
            row.os_user,
            row.host,
            row.command,
            row.action,
            row.targets,
            row.mac
        ],
    )?;
    Ok(())
}

/// Appends the entry `entry` builds inside the caller's transaction; returns the new head,
/// which the caller records with [`SqliteStore::write_head`] after committing.
pub(super) fn append_in(conn: &Connection, entry: &AuditAppend<'_>) -> Result<ChainLink> {
    let row = entry(&last(conn)?);
    insert(conn, &row)?;
    Ok(ChainLink {
        seq: row.seq,
        mac: row.head_mac,
    })
}

pub(super) fn rows(conn: &Connection, since: Option<&str>) -> Result<Vec<AuditRow>> {
    let mut stmt = conn.prepare(
        "SELECT seq, at, os_user, host, command, action, targets, mac FROM audit_log
         WHERE ?1 IS NULL OR at >= ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map(params![since], |r| {
        Ok(AuditRow {
            seq: r.get(0)?,
            at: r.get(1)?,
            os_user: r.get(2)?,
            host: r.get(3)?,
            command: r.get(4)?,
            action: r.get(5)?,
            targets: r.get(6)?,
            mac: r.get(7)?,
            head_mac: Vec::new(),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

impl SqliteStore {
    /// The head file beside the database.
    pub(super) fn head_path(&self) -> Option<PathBuf> {
        Some(self.path.parent()?.join(AUDIT_HEAD_FILE))
    }

    /// Writes the head file atomically, readable by its owner only.
    pub(super) fn write_head(&self, head: &ChainLink) -> Result<()> {
        let Some(path) = self.head_path() else {
            return Ok(());
        };
        let text = format!("{} {}\n", head.seq, hex::encode(&head.mac));
        crate::files::replace_atomically(&path, text.as_bytes(), crate::files::Mode::Set(0o600))
            .map_err(|e| {
                Error::failed(format!("cannot write `{}`: {e}", path.display())).with_source(e)
            })
    }

    fn read_head(&self) -> Result<RecordedHead> {
        let Some(path) = self.head_path() else {
            return Ok(RecordedHead::NotKept);
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(RecordedHead::Problem(format!(
                    "head file `{}` is missing",
                    path.display()
                )));
            }
            Err(e) => {
                return Err(
                    Error::failed(format!("cannot read `{}`: {e}", path.display())).with_source(e),
                );
            }
        };
        let parsed = text.trim().split_once(' ').and_then(|(seq, mac)| {
            Some(ChainLink {
                seq: seq.parse().ok()?,
                mac: hex::decode(mac).ok()?,
            })
        });
        Ok(match parsed {
            Some(link) => RecordedHead::At(link),
            None => RecordedHead::Problem(format!("head file `{}` is unreadable", path.display())),
        })
    }

    /// The chain as stored, read on `conn` (inside a transaction when rotating).
    pub(super) fn chain_in(&self, conn: &Connection) -> Result<AuditChain> {
        Ok(AuditChain {
            anchor: anchor(conn)?,
            rows: rows(conn, None)?,
            head: self.read_head()?,
        })
    }
}

impl AuditStore for SqliteStore {
    fn append_audit(&self, entry: &AuditAppend<'_>) -> Result<ChainLink> {
        let head = self.write(|tx| append_in(tx, entry))?;
        self.write_head(&head)?;
        Ok(head)
    }

    fn audit_rows(&self, since: Option<&str>) -> Result<Vec<AuditRow>> {
        self.read(|c| rows(c, since))
    }

    fn audit_chain(&self) -> Result<AuditChain> {
        self.read(|c| self.chain_in(c))
    }

    fn prune_audit(
        &self,
        before: &str,
        anchor_mac: &dyn Fn(&ChainLink) -> Vec<u8>,
        entry: &dyn Fn(&ChainLink, &ChainLink) -> AuditRow,
    ) -> Result<usize> {
        let done = self.write(|tx| {
            let boundary: Option<ChainLink> = tx
                .query_row(
                    "SELECT seq, mac FROM audit_log WHERE at < ?1 ORDER BY seq DESC LIMIT 1",
                    [before],
                    |r| {
                        Ok(ChainLink {
                            seq: r.get(0)?,
                            mac: r.get(1)?,
                        })
                    },
                )
                .optional()?;
            let Some(boundary) = boundary else {
                return Ok(None);
            };
            let removed = tx.execute("DELETE FROM audit_log WHERE seq <= ?1", [boundary.seq])?;
            tx.execute(
                "INSERT OR REPLACE INTO audit_anchor (id, seq, mac, anchor_mac) VALUES (1, ?1, ?2, ?3)",
                params![boundary.seq, boundary.mac, anchor_mac(&boundary)],
            )?;
            let head = append_in(tx, &|prev: &ChainLink| entry(prev, &boundary))?;
            Ok(Some((removed, head)))
        })?;
        match done {
            None => Ok(0),
            Some((removed, head)) => {
                self.write_head(&head)?;
                Ok(removed)
            }
        }
    }

    fn record_audit_head(&self, head: &ChainLink) -> Result<()> {
        self.write_head(head)
    }
}

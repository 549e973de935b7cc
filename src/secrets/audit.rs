//! The audit log: an append-only table of who changed what (names, never values), chained with
//! HMAC-SHA256 under a key derived from the master key.
//!
//! A plain hash chain could be recomputed by anyone who can write the database; the HMAC needs
//! the master key. The chain's head (the last sequence number, with a MAC of its own under a
//! key derived from the master key with a distinct label) is also recorded outside the entries
//! (`audit.head` beside an SQLite database, the `audit_head` row on PostgreSQL), so entries cut
//! from the end are detected too: a head rewritten to name an earlier entry does not verify
//! without the master key. Pruning keeps the last pruned entry's MAC as a MAC-protected anchor
//! the chain continues from.

use serde::Serialize;

use super::actor;
use super::error::SecretsError;
use super::key::{AuditKey, MasterKey};
use crate::store::Store;
use crate::store::audit::{AuditChain, AuditRow, RecordedHead, Rekeyed};

pub use crate::store::audit::{AUDIT_HEAD_FILE as HEAD_FILE, ChainLink as Head};

type Result<T, E = SecretsError> = std::result::Result<T, E>;

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

/// The head's own MAC: entry `seq` with MAC `entry_mac` is the chain's last, under the head key
/// (see [`MasterKey::head_key`]). Only the master key's holder can make one, so a head
/// rewritten after entries were cut from the end does not verify.
fn head_mac(key: &AuditKey, seq: i64, entry_mac: &[u8]) -> Vec<u8> {
    key.mac(&[b"head", &seq.to_be_bytes(), entry_mac])
}

fn anchor_mac(key: &AuditKey, seq: i64, mac: &[u8]) -> Vec<u8> {
    key.mac(&[b"anchor", &seq.to_be_bytes(), mac])
}

fn targets_json(targets: &[String]) -> String {
    serde_json::to_string(targets).expect("a list of strings serialises")
}

impl Record {
    fn from_row(row: AuditRow) -> Record {
        Record {
            seq: row.seq,
            at: row.at,
            os_user: row.os_user,
            host: row.host,
            command: row.command,
            action: row.action,
            targets: serde_json::from_str(&row.targets).unwrap_or_else(|_| vec![row.targets]),
            mac: row.mac,
        }
    }
}

/// The row that records `entry` after the link `prev`, with its MAC under `key`.
pub(crate) fn next_row(key: &MasterKey, prev: &Head, entry: &Entry) -> AuditRow {
    let mut record = Record {
        seq: prev.seq + 1,
        at: actor::now(),
        os_user: actor::audit_actor(),
        host: actor::host(),
        command: entry.command.clone(),
        action: entry.action.clone(),
        targets: entry.targets.clone(),
        mac: Vec::new(),
    };
    let targets = targets_json(&record.targets);
    record.mac = entry_mac(&key.audit_key(), &prev.mac, &record, &targets);
    let head = head_mac(&key.head_key(), record.seq, &record.mac);
    AuditRow {
        head_mac: head,
        seq: record.seq,
        at: record.at,
        os_user: record.os_user,
        host: record.host,
        command: record.command,
        action: record.action,
        targets,
        mac: record.mac,
    }
}

/// What the store calls, inside its transaction, to build the row recording `entry`.
pub(crate) fn builder<'a>(key: &'a MasterKey, entry: &'a Entry) -> impl Fn(&Head) -> AuditRow + 'a {
    move |prev| next_row(key, prev, entry)
}

/// Appends `entry` to the audit log, in a transaction of its own, and updates the head. Other
/// modules call this on every change to configuration, plugins, schedules and state, and on
/// every read of a secret for a run.
pub fn append(store: &dyn Store, key: &MasterKey, entry: &Entry) -> Result<()> {
    actor::note_token(store);
    store.append_audit(&builder(key, entry))?;
    Ok(())
}

/// The entries at or after `since` (RFC 3339 text, compared as text), oldest first.
pub fn list(store: &dyn Store, since: Option<&str>) -> Result<Vec<Record>> {
    Ok(store
        .audit_rows(since)?
        .into_iter()
        .map(Record::from_row)
        .collect())
}

/// Walks the chain with `master`'s keys, returning the report.
fn walk(chain: &AuditChain, master: &MasterKey) -> AuditReport {
    let key = &master.audit_key();
    let mut report = AuditReport::default();
    let mut prev = Head {
        seq: 0,
        mac: Vec::new(),
    };
    if let Some(a) = &chain.anchor {
        if !key.verify(&[b"anchor", &a.seq.to_be_bytes(), &a.mac], &a.anchor_mac) {
            report
                .problems
                .push(format!("the pruning anchor at entry {} was altered", a.seq));
        }
        report.anchored_at = a.seq;
        prev = Head {
            seq: a.seq,
            mac: a.mac.clone(),
        };
    }
    for row in &chain.rows {
        let record = Record::from_row(row.clone());
        report.entries += 1;
        if record.seq != prev.seq + 1 {
            report.problems.push(format!(
                "entries {} to {} are missing (deleted)",
                prev.seq + 1,
                record.seq - 1
            ));
        }
        let expected = entry_mac(key, &prev.mac, &record, &row.targets);
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
    match &chain.head {
        RecordedHead::Problem(problem) if prev.seq > 0 => report.problems.push(problem.clone()),
        RecordedHead::NotKept | RecordedHead::Problem(_) => {}
        RecordedHead::At(head) if head.seq > prev.seq => report.problems.push(format!(
            "entries {} to {} were cut from the end (the recorded head names entry {})",
            prev.seq + 1,
            head.seq,
            head.seq
        )),
        RecordedHead::At(head) => {
            let stored = if head.seq == report.anchored_at {
                chain.anchor.as_ref().map(|a| a.mac.as_slice())
            } else {
                chain
                    .rows
                    .iter()
                    .find(|r| r.seq == head.seq)
                    .map(|r| r.mac.as_slice())
            };
            let authentic = stored.is_some_and(|mac| {
                master
                    .head_key()
                    .verify(&[b"head", &head.seq.to_be_bytes(), mac], &head.mac)
            });
            if head.seq > 0 && !authentic {
                report.problems.push(match stored {
                    Some(mac) if mac == head.mac.as_slice() => format!(
                        "the recorded head (entry {}) is not authenticated: it holds the entry's own MAC, which anyone who can read the store can copy (a head written by a dsm older than keyed heads, or rewritten after entries were cut from the end); once you have checked the entries, the next audited change records an authenticated head",
                        head.seq
                    ),
                    _ => format!(
                        "the recorded head (entry {}) does not authenticate under the master key (the log or its head was rewritten)",
                        head.seq
                    ),
                });
            } else if head.seq < prev.seq {
                report.warnings.push(format!(
                    "the head file is {} entries behind (an interrupted write); the next change updates it",
                    prev.seq - head.seq
                ));
            }
        }
    }
    report
}

/// Verifies the whole chain under `key`: every MAC, no gaps, the anchor, and the head file.
pub fn verify(store: &dyn Store, key: &MasterKey) -> Result<AuditReport> {
    Ok(walk(&store.audit_chain()?, key))
}

/// Removes entries older than `before` (RFC 3339), keeping the last removed entry's MAC as the
/// anchor the chain continues from. Refuses when the log does not verify, so pruning cannot hide
/// tampering. Returns how many entries were removed.
pub fn prune(store: &dyn Store, key: &MasterKey, before: &str, command: &str) -> Result<usize> {
    let report = verify(store, key)?;
    if !report.is_ok() {
        return Err(SecretsError::AuditBroken(report.problems.join("; ")));
    }
    actor::note_token(store);
    let audit_key = key.audit_key();
    let mark = |boundary: &Head| anchor_mac(&audit_key, boundary.seq, &boundary.mac);
    // The entry names the last pruned entry, which only the store knows inside its
    // transaction.
    let entry = |prev: &Head, boundary: &Head| {
        next_row(
            key,
            prev,
            &Entry::new(
                command,
                "audit.prune",
                [format!("entries up to {}", boundary.seq)],
            ),
        )
    };
    Ok(store.prune_audit(before, &mark, &entry)?)
}

/// Records the chain's last entry as its head, authenticated under `key`: for a copy restored
/// from a bundle, which carries no head (the bundle's own MAC protects its entries).
pub(crate) fn record_head(store: &dyn Store, key: &MasterKey) -> Result<()> {
    let chain = store.audit_chain()?;
    let last = chain
        .rows
        .last()
        .map(|r| (r.seq, r.mac.clone()))
        .or_else(|| chain.anchor.as_ref().map(|a| (a.seq, a.mac.clone())));
    if let Some((seq, mac)) = last {
        store.record_audit_head(&Head {
            seq,
            mac: head_mac(&key.head_key(), seq, &mac),
        })?;
    }
    Ok(())
}

/// Re-computes every MAC of `chain` under `new_key` (key rotation); returns the new MACs and
/// the chain's new last link. Refuses when the chain does not verify under `old_key`.
pub(crate) fn rekey(
    chain: &AuditChain,
    old_key: &MasterKey,
    new_key: &MasterKey,
) -> Result<(Rekeyed, Head)> {
    let report = walk(chain, old_key);
    if !report.is_ok() {
        return Err(SecretsError::AuditBroken(report.problems.join("; ")));
    }
    let new = new_key.audit_key();
    let mut out = Rekeyed::default();
    let mut last = Head {
        seq: 0,
        mac: Vec::new(),
    };
    if let Some(a) = &chain.anchor {
        out.anchor_mac = Some(anchor_mac(&new, a.seq, &a.mac));
        last = Head {
            seq: a.seq,
            mac: a.mac.clone(),
        };
    }
    for row in &chain.rows {
        let record = Record::from_row(row.clone());
        let mac = entry_mac(&new, &last.mac, &record, &row.targets);
        out.macs.push((row.seq, mac.clone()));
        last = Head { seq: row.seq, mac };
    }
    Ok((out, last))
}

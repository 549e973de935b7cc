//! The audit log as the store keeps it: rows chained by MACs, the pruning anchor, and the head
//! (the last link, also kept outside the tables so entries cut from the end show). Computing
//! and checking MACs is [`crate::secrets::audit`]'s job.

use crate::error::Result;

/// Name of the file beside an SQLite store that records the chain's head.
pub const AUDIT_HEAD_FILE: &str = "audit.head";

/// One stored audit entry, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
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
    /// The names affected, as the JSON text the MAC covers.
    pub targets: String,
    /// The entry's MAC.
    pub mac: Vec<u8>,
    /// The MAC that authenticates this entry as the chain's head, under a key of its own
    /// derived from the master key: recorded as the head when the entry is written (never in
    /// the entry's row; empty in rows read back).
    pub head_mac: Vec<u8>,
}

/// A link of the chain: an entry's sequence number and MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    /// Sequence number (0 before the first entry).
    pub seq: i64,
    /// Its MAC (empty before the first entry).
    pub mac: Vec<u8>,
}

/// What pruning left: the last pruned entry's link, and a MAC over it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditAnchor {
    /// Sequence number of the last pruned entry.
    pub seq: i64,
    /// Its MAC, which the next entry chains from.
    pub mac: Vec<u8>,
    /// The anchor's own MAC.
    pub anchor_mac: Vec<u8>,
}

/// The head as recorded outside the tables (or in a table of its own): a [`ChainLink`] whose
/// `mac` is the head's own MAC ([`AuditRow::head_mac`]), not the entry's, so the head cannot
/// be rewritten from what the tables hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordedHead {
    /// This backend keeps no head outside its tables.
    NotKept,
    /// It should exist but is missing or unreadable (the text says which, naming it).
    Problem(String),
    /// The recorded link.
    At(ChainLink),
}

/// The whole chain, read in one go.
#[derive(Debug, Clone)]
pub struct AuditChain {
    /// The pruning anchor, if the log was ever pruned.
    pub anchor: Option<AuditAnchor>,
    /// Every entry, oldest first.
    pub rows: Vec<AuditRow>,
    /// The head recorded outside the tables.
    pub head: RecordedHead,
}

/// New MACs for a whole chain (key rotation).
#[derive(Debug, Clone, Default)]
pub struct Rekeyed {
    /// The anchor's new MAC, when there is an anchor.
    pub anchor_mac: Option<Vec<u8>>,
    /// Each entry's new MAC, by sequence number.
    pub macs: Vec<(i64, Vec<u8>)>,
}

/// Builds the next entry from the chain's last link (called inside the writing transaction,
/// so the link is the one the entry really follows).
pub type AuditAppend<'a> = dyn Fn(&ChainLink) -> AuditRow + 'a;

/// The audit tables.
pub trait AuditStore {
    /// Appends the entry `entry` builds, in a transaction of its own, and records the new head.
    fn append_audit(&self, entry: &AuditAppend<'_>) -> Result<ChainLink>;

    /// The entries at or after `since` (RFC 3339 text, compared as text), oldest first.
    fn audit_rows(&self, since: Option<&str>) -> Result<Vec<AuditRow>>;

    /// The anchor, every entry and the recorded head.
    fn audit_chain(&self) -> Result<AuditChain>;

    /// Removes the entries before `before` (RFC 3339) and keeps the last removed one as the
    /// anchor (with the MAC `anchor_mac` computes), then appends the entry `entry` builds from
    /// the chain's last link and the anchor, in one transaction. Returns how many entries were
    /// removed (0: nothing changed, nothing appended).
    fn prune_audit(
        &self,
        before: &str,
        anchor_mac: &dyn Fn(&ChainLink) -> Vec<u8>,
        entry: &dyn Fn(&ChainLink, &ChainLink) -> AuditRow,
    ) -> Result<usize>;

    /// Records `head` (a sequence number and the head's own MAC) as the chain's head (a
    /// restored copy has none yet).
    fn record_audit_head(&self, head: &ChainLink) -> Result<()>;
}

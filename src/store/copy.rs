//! `dsm store copy`: a whole project's store moved from one backend to another (SQLite to
//! PostgreSQL to go team, and back). Every table both backends keep is read from the source
//! and written to the target in one transaction; the target must hold nothing of the project
//! yet. Afterwards each table's row count and the audit chain (every entry, the anchor) are
//! compared between the two; the command checks the chain's MACs when it has the master key.
//!
//! Not copied: flow leases (transient; a copy is refused while a run holds one) and each
//! backend's own bookkeeping (schema versions, webhook totals,
//! which the SQLite store's triggers rebuild).

use std::path::Path;

use serde::Serialize;

use super::audit::RecordedHead;
use super::postgres::{PgStore, Upgrade};
use super::{Location, SqliteStore};
use crate::error::{Error, Result};

/// How a column's values travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An integer.
    Int,
    /// Text.
    Text,
    /// Bytes.
    Blob,
    /// A time: RFC 3339 text in SQLite, `timestamptz` in PostgreSQL; milliseconds in between.
    Time,
}

/// One value on its way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
    /// Milliseconds since the epoch.
    Time(i64),
}

/// A table both backends keep, by the SQLite store's column names (PostgreSQL adds
/// `project_id`).
#[derive(Debug)]
pub(crate) struct Table {
    pub name: &'static str,
    pub columns: &'static [(&'static str, Kind)],
    /// The order rows are read and written in, on SQLite and on PostgreSQL (a generated id
    /// left out of `columns` is given again, in the same order, by the target).
    pub order_sqlite: &'static str,
    pub order_pg: &'static str,
}

use Kind::{Blob, Int, Text, Time};

/// Every table copied, parents before children.
pub(crate) const TABLES: &[Table] = &[
    Table {
        name: "state",
        columns: &[
            ("state_id", Text),
            ("completed_state", Text),
            ("partial_state", Text),
            ("updated_at", Time),
        ],
        order_sqlite: "state_id",
        order_pg: "state_id",
    },
    Table {
        name: "state_events",
        columns: &[
            ("state_id", Text),
            ("at", Time),
            ("action", Text),
            ("run_id", Text),
            ("detail", Text),
            ("payload", Text),
        ],
        order_sqlite: "event_id",
        order_pg: "event_id",
    },
    Table {
        name: "runs",
        columns: &[
            ("run_id", Text),
            ("state_id", Text),
            ("environment", Text),
            ("trigger", Text),
            ("started_at", Time),
            ("ended_at", Time),
            ("heartbeat_at", Time),
            ("status", Text),
            ("pid", Int),
            ("host", Text),
            ("error", Text),
            ("log_path", Text),
            ("log_tail", Text),
            ("records_sent", Int),
            ("records_confirmed", Int),
        ],
        order_sqlite: "started_at, run_id",
        order_pg: "started_at, run_id",
    },
    Table {
        name: "run_plugins",
        columns: &[
            ("run_id", Text),
            ("plugin", Text),
            ("role", Text),
            ("exit_code", Int),
        ],
        order_sqlite: "rowid",
        order_pg: "seq",
    },
    Table {
        name: "run_streams",
        columns: &[
            ("run_id", Text),
            ("stream", Text),
            ("records", Int),
            ("bytes", Int),
        ],
        order_sqlite: "run_id, stream",
        order_pg: "run_id, stream",
    },
    Table {
        name: "run_artifacts",
        columns: &[
            ("run_id", Text),
            ("path", Text),
            ("kind", Text),
            ("stream", Text),
            ("records", Int),
            ("label", Text),
        ],
        order_sqlite: "run_id, path",
        order_pg: "run_id, path",
    },
    Table {
        name: "run_stream_labels",
        columns: &[
            ("run_id", Text),
            ("stream", Text),
            ("label", Text),
            ("rank", Int),
            ("because", Text),
        ],
        order_sqlite: "run_id, stream",
        order_pg: "run_id, stream",
    },
    Table {
        name: "pruned_run_totals",
        columns: &[
            ("kind", Text),
            ("subject", Text),
            ("detail", Text),
            ("runs", Int),
            ("records", Int),
            ("bytes", Int),
        ],
        order_sqlite: "kind, subject, detail",
        order_pg: "kind, subject, detail",
    },
    Table {
        name: "settings",
        columns: &[
            ("namespace", Text),
            ("name", Text),
            ("value", Text),
            ("updated_at", Time),
        ],
        order_sqlite: "namespace, name",
        order_pg: "namespace, name",
    },
    Table {
        name: "secret_keys",
        columns: &[
            ("version", Int),
            ("check_value", Blob),
            ("created_at", Time),
        ],
        order_sqlite: "version",
        order_pg: "version",
    },
    Table {
        name: "secrets",
        columns: &[
            ("plugin", Text),
            ("setting", Text),
            ("key_version", Int),
            ("nonce", Blob),
            ("ciphertext", Blob),
            ("updated_at", Time),
            ("updated_by", Text),
            ("scope", Text),
        ],
        order_sqlite: "plugin, setting, scope",
        order_pg: "plugin, setting, scope",
    },
    Table {
        name: "audit_log",
        columns: &[
            ("seq", Int),
            ("at", Text),
            ("os_user", Text),
            ("host", Text),
            ("command", Text),
            ("action", Text),
            ("targets", Text),
            ("mac", Blob),
        ],
        order_sqlite: "seq",
        order_pg: "seq",
    },
    Table {
        name: "audit_anchor",
        columns: &[("seq", Int), ("mac", Blob), ("anchor_mac", Blob)],
        order_sqlite: "seq",
        order_pg: "seq",
    },
    // On SQLite the last two columns live in `config_history_files`.
    Table {
        name: "config_history",
        columns: &[
            ("plugin", Text),
            ("version", Int),
            ("plugin_type", Text),
            ("at", Text),
            ("os_user", Text),
            ("command", Text),
            ("action", Text),
            ("setting", Text),
            ("yml", Text),
            ("yml_hash", Text),
            ("stored", Text),
            ("sealed", Text),
            ("environment", Text),
            ("file_text", Text),
        ],
        order_sqlite: "plugin, version",
        order_pg: "plugin, version",
    },
    Table {
        name: "source_status_events",
        columns: &[
            ("source", Text),
            ("status", Text),
            ("reason", Text),
            ("user", Text),
            ("origin", Text),
            ("at", Time),
        ],
        order_sqlite: "event_id",
        order_pg: "event_id",
    },
    Table {
        name: "api_tokens",
        columns: &[
            ("name", Text),
            ("role", Text),
            ("organisation", Text),
            ("token_hash", Blob),
            ("created_at", Time),
            ("created_by", Text),
            ("expires_at", Time),
            ("last_used_at", Time),
        ],
        order_sqlite: "name",
        order_pg: "name",
    },
    Table {
        name: "webhook_events",
        columns: &[
            ("source", Text),
            ("event_id", Text),
            ("seq", Int),
            ("received_at", Time),
            ("size", Int),
            ("payload", Text),
            ("consumed_at", Time),
        ],
        order_sqlite: "id",
        order_pg: "id",
    },
    Table {
        name: "notification_deliveries",
        columns: &[
            ("delivery_id", Text),
            ("event", Text),
            ("source", Text),
            ("receiver", Text),
            ("attempt", Int),
            ("at", Time),
            ("outcome", Text),
            ("detail", Text),
        ],
        order_sqlite: "id",
        order_pg: "id",
    },
    Table {
        name: "source_requests",
        columns: &[
            ("id", Text),
            ("name", Text),
            ("organisation", Text),
            ("requester", Text),
            ("status", Text),
            ("revision", Text),
            ("test", Text),
            ("reason", Text),
            ("created_at", Text),
            ("updated_at", Text),
        ],
        order_sqlite: "id",
        order_pg: "id",
    },
    Table {
        name: "source_request_transitions",
        columns: &[
            ("request_id", Text),
            ("seq", Int),
            ("at", Text),
            ("actor", Text),
            ("action", Text),
            ("status", Text),
            ("reason", Text),
        ],
        order_sqlite: "request_id, seq",
        order_pg: "request_id, seq",
    },
    // Merged streams: the ids of `merge_sends` travel as they are (key rows name them); the
    // target's own sequence then continues past the highest (see `CopyEnd::write_rows`).
    Table {
        name: "merge_schemas",
        columns: &[("stream", Text), ("source", Text), ("schema", Text)],
        order_sqlite: "stream, source",
        order_pg: "stream, source",
    },
    Table {
        name: "merge_sends",
        columns: &[
            ("id", Int),
            ("stream", Text),
            ("run_id", Text),
            ("confirmed_before", Int),
        ],
        order_sqlite: "id",
        order_pg: "id",
    },
    Table {
        name: "merge_entities",
        columns: &[
            ("stream", Text),
            ("key", Text),
            ("candidates", Text),
            ("resolved", Text),
            ("quarantined", Int),
            ("sent_by", Int),
            ("sent_mark", Int),
        ],
        order_sqlite: "stream, key",
        order_pg: "stream, key",
    },
    Table {
        name: "merge_conflicts",
        columns: &[
            ("id", Int),
            ("stream", Text),
            ("key", Text),
            ("run_id", Text),
            ("logged_at", Text),
            ("n", Int),
            ("fields", Text),
        ],
        order_sqlite: "id",
        order_pg: "id",
    },
    Table {
        name: "merge_run_stats",
        columns: &[
            ("run_id", Text),
            ("stream", Text),
            ("source", Text),
            ("records_in", Int),
            ("emitted", Int),
            ("unchanged", Int),
            ("same_output", Int),
            ("resent", Int),
            ("conflicts", Int),
            ("quarantined", Int),
            ("null_keys", Int),
        ],
        order_sqlite: "run_id, stream, source",
        order_pg: "run_id, stream, source",
    },
    // On SQLite one row (`one` = 1); it counts only once a `seq` was handed out.
    Table {
        name: "webhook_sequence",
        columns: &[("value", Int)],
        order_sqlite: "value",
        order_pg: "value",
    },
];

/// The rows of every table, read from a source.
pub(crate) type Rows = Vec<(&'static Table, Vec<Vec<Cell>>)>;

/// What a backend does for a copy.
pub(crate) trait CopyEnd {
    /// How many rows of the project `table` holds.
    fn count_rows(&self, table: &Table) -> Result<u64>;
    /// The project's rows of `table`, in its order.
    fn read_rows(&self, table: &Table) -> Result<Vec<Vec<Cell>>>;
    /// The project's rows of every table (a backend that can reads them in one snapshot).
    fn read_tables(&self, tables: &'static [Table]) -> Result<Rows> {
        tables.iter().map(|t| Ok((t, self.read_rows(t)?))).collect()
    }
    /// Writes every table's rows in one transaction, then moves the store's own id counters
    /// (the sends of merged streams) past every id copied.
    fn write_rows(&self, rows: &Rows) -> Result<()>;
}

/// What a copy did.
#[derive(Debug, Clone, Serialize)]
pub struct CopyReport {
    /// The source (never a password).
    pub from: String,
    /// The target (never a password).
    pub to: String,
    /// Rows copied per table, identical on both sides after the copy.
    pub tables: Vec<TableCount>,
    /// Audit entries compared after the copy (identical, MACs included).
    pub audit_entries: usize,
}

/// One table's row count.
#[derive(Debug, Clone, Serialize)]
pub struct TableCount {
    /// The table.
    pub table: &'static str,
    /// Its rows, on both sides.
    pub rows: u64,
}

enum End {
    Sqlite(SqliteStore),
    Pg(Box<PgStore>),
}

impl End {
    fn open(location: &Location, root: &Path, create: bool) -> Result<End> {
        match location {
            Location::Sqlite(path) => {
                if !create && !path.is_file() {
                    return Err(Error::config(format!(
                        "there is no SQLite store at `{}` to copy from",
                        path.display()
                    ))
                    .hint("check `--from`: a file path or `sqlite:///absolute/path`"));
                }
                Ok(End::Sqlite(SqliteStore::open(path)?))
            }
            Location::Postgres(target) => {
                let id = super::team_project_id(root)?;
                Ok(End::Pg(Box::new(PgStore::open(
                    target,
                    &id,
                    Upgrade::FirstUseOnly,
                )?)))
            }
        }
    }

    fn copy_end(&self) -> &dyn CopyEnd {
        match self {
            End::Sqlite(s) => s,
            End::Pg(p) => p.as_ref(),
        }
    }

    fn store(&self) -> &dyn super::Store {
        match self {
            End::Sqlite(s) => s,
            End::Pg(p) => p.as_ref(),
        }
    }
}

fn describe(location: &Location) -> String {
    match location {
        Location::Sqlite(path) => path.display().to_string(),
        Location::Postgres(t) => t.display.trim_matches('`').to_owned(),
    }
}

/// Copies the store at `from` into the empty store at `to`, for the project at `root` (whose
/// `project_id` names its rows in a PostgreSQL store), and checks the copy. Returns the
/// report and the target, opened, for further checks.
pub fn copy(
    from: &Location,
    to: &Location,
    root: &Path,
) -> Result<(CopyReport, std::sync::Arc<dyn super::Store>)> {
    let (from_text, to_text) = (describe(from), describe(to));
    if from_text == to_text {
        return Err(Error::config(format!(
            "`--from` and `--to` name the same store ({from_text})"
        )));
    }
    let source = End::open(from, root, false)?;
    let target = End::open(to, root, true)?;
    let held: Vec<_> = source
        .store()
        .lock_holders()?
        .into_iter()
        .filter(|h| !h.stale)
        .collect();
    if let Some(h) = held.first() {
        return Err(Error::config(format!(
            "flow `{}` is running (its lease is held by pid {} on `{}`): a copy taken now could miss what it commits",
            h.state_id, h.pid, h.host
        ))
        .hint("copy the store when no run is going (stop the schedulers first)"));
    }
    let report = transfer(
        (source.copy_end(), source.store(), &from_text),
        (target.copy_end(), target.store(), &to_text),
        true,
    )?;
    let target: std::sync::Arc<dyn super::Store> = match target {
        End::Sqlite(s) => std::sync::Arc::new(s),
        End::Pg(p) => std::sync::Arc::new(*p),
    };
    Ok((report, target))
}

/// One end of [`transfer`]: its rows, its store, and how messages name it.
type Side<'a> = (&'a dyn CopyEnd, &'a dyn super::Store, &'a str);

/// Copies every table from `source` into the empty `target` in one transaction, then checks
/// each table's row count and the audit chain on both sides (with `settled`; otherwise, for a
/// source that may be in use, that the target holds what was read and that its chain is where
/// the source's stood) and records the target's audit head.
fn transfer(source: Side<'_>, target: Side<'_>, settled: bool) -> Result<CopyReport> {
    let (from_text, to_text) = (source.2, target.2);
    for table in TABLES {
        let n = target.0.count_rows(table)?;
        if n > 0 {
            return Err(Error::config(format!(
                "the target store {to_text} is not empty: `{}` holds {n} rows of this project",
                table.name
            ))
            .hint("copy into a new database, schema or file; a copy never overwrites a store"));
        }
    }
    let rows = source.0.read_tables(TABLES)?;
    target.0.write_rows(&rows)?;

    // Row counts on both sides.
    let mut tables = Vec::new();
    for (table, copied) in &rows {
        let there = target.0.count_rows(table)?;
        let here = if settled {
            source.0.count_rows(table)?
        } else {
            there
        };
        if there != copied.len() as u64 || here != there {
            return Err(Error::failed(format!(
                "after copying, `{}` holds {there} rows in {to_text} and {here} in {from_text} ({} read)",
                table.name,
                copied.len()
            )));
        }
        tables.push(TableCount {
            table: table.name,
            rows: there,
        });
    }
    // The audit chain, entry by entry; the head recorded where the chain now ends.
    let (a, b) = (source.1.audit_chain()?, target.1.audit_chain()?);
    let same = if settled {
        a.rows == b.rows
    } else {
        a.rows.starts_with(&b.rows)
    };
    if !same || a.anchor != b.anchor {
        return Err(Error::failed(format!(
            "after copying, the audit chain in {to_text} differs from the one in {from_text}"
        )));
    }
    // The head goes as the source recorded it: it carries a MAC only the master key makes,
    // which the copy cannot (and must not) make anew. A copy of a store that moved on while it
    // was read (a bundle's snapshot) ends before that head and keeps none: importing the
    // bundle records a new one.
    let copied_to = b
        .rows
        .last()
        .map(|r| r.seq)
        .or(b.anchor.as_ref().map(|a| a.seq));
    if let RecordedHead::At(head) = &a.head
        && copied_to.is_some_and(|seq| head.seq <= seq)
    {
        target.1.record_audit_head(head)?;
    }
    Ok(CopyReport {
        from: from_text.to_owned(),
        to: to_text.to_owned(),
        tables,
        audit_entries: b.rows.len(),
    })
}

/// Writes the project's rows in the PostgreSQL store `source`, read in one snapshot, as a new
/// SQLite store at `path` with its audit head beside it: what a bundle carries.
pub(crate) fn snapshot_to_sqlite(source: &PgStore, path: &Path) -> Result<()> {
    use super::Store as _;
    let target = SqliteStore::open(path)?;
    let (from_text, to_text) = (source.location(), path.display().to_string());
    transfer(
        (source, source, &from_text),
        (&target, &target, &to_text),
        false,
    )?;
    Ok(())
}

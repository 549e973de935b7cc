//! The SQLite implementation of [`Store`]: WAL, a busy timeout, `BEGIN IMMEDIATE` for every
//! write, and numbered migrations compiled into the binary. One file per concern implements
//! that concern's trait on [`SqliteStore`].

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde_json::Value;

use super::liveness::{self, STALE_AFTER};
use super::{RunStatus, Store, format_time};
use crate::error::{Error, Result};

/// The migrations, in order. A database records the highest version applied in
/// `dsm_schema_migrations`; a database with a higher version than the last one here is refused.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/0001_initial.sql")),
    (
        2,
        "secrets_audit",
        include_str!("../migrations/0002_secrets_audit.sql"),
    ),
    (
        3,
        "source_registry",
        include_str!("../migrations/0003_source_registry.sql"),
    ),
    (
        4,
        "merged_streams",
        include_str!("../migrations/0004_merged_streams.sql"),
    ),
    (
        5,
        "run_artifacts",
        include_str!("../migrations/0005_run_artifacts.sql"),
    ),
    (
        6,
        "merge_runs",
        include_str!("../migrations/0006_merge_runs.sql"),
    ),
    (
        7,
        "config_history",
        include_str!("../migrations/0007_config_history.sql"),
    ),
    (
        8,
        "pruned_run_totals",
        include_str!("../migrations/0008_pruned_run_totals.sql"),
    ),
    (
        9,
        "merge_sends",
        include_str!("../migrations/0009_merge_sends.sql"),
    ),
    (
        10,
        "conflict_log_index",
        include_str!("../migrations/0010_conflict_log_index.sql"),
    ),
    (
        11,
        "merge_rows",
        include_str!("../migrations/0011_merge_rows.sql"),
    ),
    (
        12,
        "classification_labels",
        include_str!("../migrations/0012_classification_labels.sql"),
    ),
    (
        13,
        "config_history_files",
        include_str!("../migrations/0013_config_history_files.sql"),
    ),
    (
        14,
        "api_tokens",
        include_str!("../migrations/0014_api_tokens.sql"),
    ),
    (
        15,
        "webhook_events",
        include_str!("../migrations/0015_webhook_events.sql"),
    ),
    (
        16,
        "source_requests",
        include_str!("../migrations/0016_source_requests.sql"),
    ),
    (
        17,
        "notification_deliveries",
        include_str!("../migrations/0017_notification_deliveries.sql"),
    ),
    (
        18,
        "run_log_tail",
        include_str!("../migrations/0018_run_log_tail.sql"),
    ),
    (
        19,
        "run_record_counts",
        include_str!("../migrations/0019_run_record_counts.sql"),
    ),
    (
        20,
        "notification_deliveries_pg",
        include_str!("../migrations/0020_notification_deliveries_pg.sql"),
    ),
    (
        21,
        "secret_scopes",
        include_str!("../migrations/0021_secret_scopes.sql"),
    ),
    (
        22,
        "merged_streams_pg",
        include_str!("../migrations/0022_merged_streams_pg.sql"),
    ),
    (
        23,
        "merge_keys_bytewise_pg",
        include_str!("../migrations/0023_merge_keys_bytewise_pg.sql"),
    ),
    (
        24,
        "state_commit_pg",
        include_str!("../migrations/0024_state_commit_pg.sql"),
    ),
];

/// How long a write waits for another process's write transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// The schema version this binary writes.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// The system store in one SQLite file. One connection behind a mutex: calls from several
/// threads take turns; calls from several processes are serialised by SQLite's locks.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
    stale_after: Duration,
    key_owner: Option<String>,
}

impl SqliteStore {
    /// Opens the database at `path`, creating its folder and file if needed, and brings its
    /// schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::files::create_private_dir(dir).map_err(|e| {
                Error::failed(format!(
                    "cannot create the folder of the system database `{}`: {e}",
                    path.display()
                ))
                .hint("check the permissions, or pass `--database-uri` to put it elsewhere")
            })?;
        }
        let new = !path.exists();
        let mut conn = Connection::open(path).map_err(|e| open_error(path, e))?;
        // A new store is its owner's alone (0600); SQLite gives its WAL and shared-memory
        // files the same mode. An existing file keeps the mode its owner chose.
        #[cfg(unix)]
        if new {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
                |e| {
                    Error::config(format!(
                        "cannot make the new system database `{}` private: {e}",
                        path.display()
                    ))
                },
            )?;
        }
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // A file that is not a database, is damaged or cannot be read says so at once, with
        // its path and what to do (no retries: these do not go away by waiting).
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(|e| open_error(path, e))?;
        enable_wal(&conn).map_err(|e| match e {
            WalError::Sqlite(e) => open_error(path, e),
            WalError::Other(e) => e,
        })?;
        // FULL by default: a committed bookmark survives a power cut, not only a crash of dsm.
        // Run-history writes relax this for their own transaction (see `write_history`).
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        migrate(&mut conn, path)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            stale_after: STALE_AFTER,
            key_owner: None,
        })
    }

    /// Names the project the store belongs to (its `project_id`), whose key file holds the
    /// master key (see [`crate::store::SecretStore::key_owner`]).
    #[must_use]
    pub fn with_key_owner(mut self, project_id: Option<String>) -> Self {
        self.key_owner = project_id;
        self
    }

    /// Changes the heartbeat age after which a lock or running run counts as stale.
    #[must_use]
    pub fn with_stale_after(mut self, stale_after: Duration) -> Self {
        self.stale_after = stale_after;
        self
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64> {
        self.read(current_version)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the mutex rolled back its transaction (dropped), so the
        // connection is still usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.conn();
        f(&conn)
    }

    /// Runs `f` in a transaction that takes the write lock up front (`BEGIN IMMEDIATE`), so
    /// two writers wait for each other (up to the busy timeout) instead of failing midway.
    fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Like [`Self::write`], for bookkeeping that need not survive a power cut: locks,
    /// heartbeats and run-history rows. The transaction commits with `synchronous=NORMAL`,
    /// which in WAL mode skips the fsync of the log at commit. The database stays consistent
    /// after any crash; a crash of dsm alone loses nothing (the OS has the write); only a
    /// power cut or OS crash may lose the last such transactions, and then the run reads as
    /// killed (stale heartbeat) or is missing. Bookmarks, secrets and settings never go
    /// through here: their commits stay FULL, and a FULL commit also syncs every relaxed
    /// transaction before it.
    fn write_history<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.conn();
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let out = (|| -> Result<T> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })();
        // Back to FULL whatever happened, before any other write can use the connection.
        let restored = conn.pragma_update(None, "synchronous", "FULL");
        let out = out?;
        restored?;
        Ok(out)
    }

    /// Writes a consistent copy of the database to `path` (SQLite's online backup), with the
    /// audit head file beside it when there is one.
    pub fn backup_to(&self, path: &Path) -> Result<()> {
        self.conn()
            .backup(rusqlite::MAIN_DB, path, None)
            .map_err(|e| Error::failed(format!("cannot copy the system database: {e}")))?;
        if let (Some(head), Some(dir)) = (
            self.head_path().filter(|p| p.exists()),
            path.parent().filter(|d| !d.as_os_str().is_empty()),
        ) {
            std::fs::copy(&head, dir.join(super::audit::AUDIT_HEAD_FILE)).map_err(|e| {
                Error::failed(format!("cannot copy the audit head file: {e}")).with_source(e)
            })?;
        }
        Ok(())
    }

    /// Leaves WAL mode and closes the store, so the database is one self-contained file (a
    /// bundle's copy, or a staged import about to be renamed into place).
    pub fn into_single_file(self) -> Result<()> {
        let conn = self
            .conn
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        conn.query_row("PRAGMA journal_mode=DELETE", [], |_| Ok(()))?;
        conn.close().map_err(|(_, e)| Error::from(e))
    }

    /// The schema version of the database at `path`, read without migrating it.
    pub fn open_unmigrated_version(path: &Path) -> Result<i64> {
        let conn = Connection::open(path).map_err(|e| open_error(path, e))?;
        current_version(&conn)
    }

    /// Whether the database at `path` holds anything worth keeping (secrets, audit entries,
    /// state, runs or settings), without creating or migrating it.
    pub fn holds_data(path: &Path) -> Result<bool> {
        if !path.exists() {
            return Ok(false);
        }
        let conn = Connection::open(path)?;
        for table in ["secrets", "audit_log", "state", "runs", "settings"] {
            let n: Option<i64> = conn
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .optional()
                .unwrap_or(None);
            if n.unwrap_or(0) > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn derive_status(
        &self,
        status: RunStatus,
        pid: u32,
        host: &str,
        started_at: DateTime<Utc>,
        hb: DateTime<Utc>,
    ) -> RunStatus {
        if status == RunStatus::Running
            && liveness::is_stale(
                pid,
                host,
                Some(started_at),
                hb,
                Utc::now(),
                self.stale_after,
            )
        {
            RunStatus::Killed
        } else {
            status
        }
    }
}

/// An SQLite failure the store did not explain better: a failed run (exit 1), the
/// database's message kept.
impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::failed(format!("system database error: {e}")).with_source(e)
    }
}

/// Why WAL mode could not be enabled.
enum WalError {
    /// SQLite refused (not busy: that is retried).
    Sqlite(rusqlite::Error),
    /// Anything else, already explained.
    Other(Error),
}

fn enable_wal(conn: &Connection) -> std::result::Result<(), WalError> {
    // Switching to WAL needs a moment of exclusive access; a second process creating the same
    // database at the same instant can see SQLITE_BUSY here, so retry that for a while. Any
    // other error (read-only, full disk, damaged file) will not go away: report it at once.
    let mut last = None;
    for attempt in 0..100u64 {
        match conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0)) {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(mode) => {
                return Err(WalError::Other(
                    Error::failed(format!(
                        "the system database cannot use WAL mode (it stays in `{mode}`)"
                    ))
                    .hint("put the database on a local file system with `--database-uri`"),
                ));
            }
            Err(e) if is_busy(&e) => {
                last = Some(e);
                std::thread::sleep(Duration::from_millis(10 + attempt));
            }
            Err(e) => return Err(WalError::Sqlite(e)),
        }
    }
    Err(last.map_or_else(
        || WalError::Other(Error::failed("cannot enable WAL mode")),
        WalError::Sqlite,
    ))
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// The error for a store that cannot be opened: its path, what is wrong in words, and what to
/// do. A configuration problem (exit 2), not a failed run.
fn open_error(path: &Path, e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode as C;
    let shown = path.display();
    let (what, hint) = match e.sqlite_error_code() {
        Some(C::NotADatabase) => (
            format!("`{shown}` is not a dsm system database (not an SQLite file, or encrypted)"),
            "restore the file from a backup or `dsm import` a bundle into a new store; \
             `--database-uri` points dsm at another file",
        ),
        Some(C::DatabaseCorrupt) => (
            format!("the system database `{shown}` is damaged ({e})"),
            "restore it from a backup or `dsm import` a bundle; `sqlite3 FILE .recover` may \
             save what is left of it",
        ),
        Some(C::ReadOnly) => (
            format!("the system database `{shown}` is read-only"),
            "dsm writes to its store: make the file and its folder writable, or remount the \
             file system read-write",
        ),
        Some(C::DiskFull) => (
            format!("the disk holding the system database `{shown}` is full"),
            "free some space there, then run the command again",
        ),
        Some(C::CannotOpen | C::PermissionDenied) => (
            format!("cannot open the system database `{shown}` ({e})"),
            "check that the file and its folder exist and are readable and writable by you, \
             or pass `--database-uri` to put it elsewhere",
        ),
        Some(C::SystemIoFailure) => (
            format!("the system database `{shown}` cannot be read or written (disk I/O error)"),
            "the file system may be full, read-only or failing: check it (`df`, `mount`), \
             then run the command again",
        ),
        _ => (
            format!("cannot open the system database `{shown}`: {e}"),
            "check the permissions, or pass `--database-uri` to put it elsewhere",
        ),
    };
    Error::config(what).hint(hint).with_source(e)
}

fn current_version(conn: &Connection) -> Result<i64> {
    let has_table: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'dsm_schema_migrations')",
        [],
        |r| r.get(0),
    )?;
    if !has_table {
        return Ok(0);
    }
    Ok(conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM dsm_schema_migrations",
        [],
        |r| r.get(0),
    )?)
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let latest = latest_version();
    let check = |version: i64| -> Result<()> {
        if version > latest {
            return Err(Error::config(format!(
                "the system database `{}` has schema version {version}, newer than this dsm understands ({latest})",
                path.display()
            ))
            .hint("upgrade dsm, or point `--database-uri` at another database"));
        }
        Ok(())
    };
    let version = current_version(conn)?;
    check(version)?;
    if version == latest {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let is_meltano: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version')",
        [],
        |r| r.get(0),
    )?;
    if is_meltano {
        return Err(Error::config(format!(
            "`{}` is Meltano's system database; dsm never writes to it",
            path.display()
        ))
        .hint("read its state with `dsm state import-meltano PATH` and keep dsm's store in `.dsm/dsm.db`"));
    }
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS dsm_schema_migrations (
            version    INTEGER PRIMARY KEY,
            name       TEXT NOT NULL,
            applied_at TEXT NOT NULL
        )",
    )?;
    // Another process may have migrated while we waited for the lock.
    let version = current_version(&tx)?;
    check(version)?;
    if version > 0 && version < latest {
        // Some upgrades rebuild tables, which takes a while on a large store.
        tracing::info!(
            database = %path.display(),
            from = version,
            to = latest,
            "upgrading the system database's schema"
        );
    }
    for (number, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > version) {
        tx.execute_batch(sql).map_err(|e| {
            Error::failed(format!(
                "migration {number} ({name}) of the system database failed: {e}"
            ))
        })?;
        tx.execute(
            "INSERT INTO dsm_schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![number, name, now_text()],
        )?;
        tracing::debug!(version = number, name, "applied migration");
    }
    tx.commit()?;
    Ok(())
}

fn now_text() -> String {
    format_time(Utc::now())
}

fn parse_time(text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            Error::failed(format!(
                "system database holds an invalid time `{text}`: {e}"
            ))
        })
}

fn parse_json(text: &str, what: &str) -> Result<Value> {
    serde_json::from_str(text)
        .map_err(|e| Error::failed(format!("system database holds invalid JSON in {what}: {e}")))
}

fn json_text(value: &Value) -> String {
    value.to_string()
}

/// Whether `text` matches a glob where `*` stands for any run of characters (Meltano's state id
/// patterns).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

impl Store for SqliteStore {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn snapshot_sqlite(&self, path: &Path) -> Result<()> {
        self.backup_to(path)
    }
}

mod audit;
mod config_history;
mod copy;
mod locks;
pub mod merged;
mod notifications;
mod requests;
mod runs;
mod secrets;
mod settings;
mod sources;
mod state;
mod tokens;
mod webhooks;

/// Drops `table` from the SQLite database at `path` (not dsm's store: the output of a built-in
/// target, which `dsm test` cleans up). Waits at most `busy` for the file's other writers.
pub fn drop_table_in(path: &Path, table: &str, busy: Duration) -> std::result::Result<(), String> {
    let drop = || -> rusqlite::Result<()> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(busy)?;
        conn.execute_batch(&format!(
            "DROP TABLE IF EXISTS \"{}\"",
            table.replace('"', "\"\"")
        ))
    };
    drop().map_err(|e| e.to_string())
}

/// SQL on any SQLite file, for tests outside the store that set up or inspect one.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::Path;

    /// Runs `sql` (several statements) on the database at `path`.
    pub(crate) fn execute(path: &Path, sql: &str) {
        rusqlite::Connection::open(path)
            .unwrap()
            .execute_batch(sql)
            .unwrap();
    }

    /// The integer the query `sql` returns.
    pub(crate) fn query_i64(path: &Path, sql: &str) -> i64 {
        rusqlite::Connection::open(path)
            .unwrap()
            .query_row(sql, [], |r| r.get(0))
            .unwrap()
    }

    /// The names of the tables in the database at `path`, sorted.
    pub(crate) fn tables(path: &Path) -> Vec<String> {
        let conn = rusqlite::Connection::open(path).unwrap();
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }
}

#[cfg(test)]
mod secrets_tests;
#[cfg(test)]
mod tests;

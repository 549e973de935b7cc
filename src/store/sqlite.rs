//! The SQLite implementation of [`Store`]: WAL, a busy timeout, `BEGIN IMMEDIATE` for every
//! write, and numbered migrations compiled into the binary.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde_json::Value;

use super::liveness::{self, STALE_AFTER};
use super::state::{self, CommitOutcome, StateId, StoredState, apply_write};
use super::{
    FlowLock, ImportReport, LockHolder, NewRun, PluginExit, PrunedTotal, RunArtifact, RunFilter,
    RunFinish, RunId, RunRecord, RunStatus, SourceStatusChange, StateAction, StateEvent, Store,
    StreamStats, already_running_error, format_time,
};
use crate::classification::StreamLabel;
use crate::error::{Error, Result};

/// The migrations, in order. A database records the highest version applied in
/// `dsm_schema_migrations`; a database with a higher version than the last one here is refused.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("migrations/0001_initial.sql")),
    (
        2,
        "secrets_audit",
        include_str!("migrations/0002_secrets_audit.sql"),
    ),
    (
        3,
        "source_registry",
        include_str!("migrations/0003_source_registry.sql"),
    ),
    (
        4,
        "merged_streams",
        include_str!("migrations/0004_merged_streams.sql"),
    ),
    (
        5,
        "run_artifacts",
        include_str!("migrations/0005_run_artifacts.sql"),
    ),
    (
        6,
        "merge_runs",
        include_str!("migrations/0006_merge_runs.sql"),
    ),
    (
        7,
        "config_history",
        include_str!("migrations/0007_config_history.sql"),
    ),
    (
        8,
        "pruned_run_totals",
        include_str!("migrations/0008_pruned_run_totals.sql"),
    ),
    (
        9,
        "merge_sends",
        include_str!("migrations/0009_merge_sends.sql"),
    ),
    (
        10,
        "conflict_log_index",
        include_str!("migrations/0010_conflict_log_index.sql"),
    ),
    (
        11,
        "merge_rows",
        include_str!("migrations/0011_merge_rows.sql"),
    ),
    (
        12,
        "classification_labels",
        include_str!("migrations/0012_classification_labels.sql"),
    ),
    (
        13,
        "config_history_files",
        include_str!("migrations/0013_config_history_files.sql"),
    ),
    (
        14,
        "api_tokens",
        include_str!("migrations/0014_api_tokens.sql"),
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
        })
    }

    /// The store's connection, for callers that work on the tables directly (the secret and
    /// audit functions): opening the store once and handing over its connection saves opening
    /// the file a second time.
    pub fn into_connection(self) -> Connection {
        self.conn
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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

    fn derive_status(
        &self,
        status: RunStatus,
        pid: u32,
        host: &str,
        hb: DateTime<Utc>,
    ) -> RunStatus {
        if status == RunStatus::Running
            && liveness::is_stale(pid, host, hb, Utc::now(), self.stale_after)
        {
            RunStatus::Killed
        } else {
            status
        }
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

fn read_state_row(conn: &Connection, state_id: &StateId) -> Result<Option<StoredState>> {
    let row = conn
        .query_row(
            "SELECT completed_state, partial_state, updated_at FROM state WHERE state_id = ?1",
            [state_id.as_str()],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            },
        )
        .optional()?;
    row.map(|(c, p, at)| state_from_columns(state_id.clone(), &c, &p, &at))
        .transpose()
}

fn state_from_columns(state_id: StateId, c: &str, p: &str, at: &str) -> Result<StoredState> {
    let what = format!("state `{state_id}`");
    Ok(StoredState {
        completed: parse_json(c, &what)?,
        partial: parse_json(p, &what)?,
        updated_at: Some(parse_time(at)?),
        state_id,
    })
}

fn upsert_state(
    tx: &Transaction<'_>,
    state_id: &StateId,
    completed: &Value,
    partial: &Value,
) -> Result<()> {
    tx.execute(
        "INSERT INTO state (state_id, completed_state, partial_state, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (state_id) DO UPDATE SET completed_state = excluded.completed_state,
             partial_state = excluded.partial_state, updated_at = excluded.updated_at",
        params![state_id.as_str(), json_text(completed), json_text(partial), now_text()],
    )?;
    Ok(())
}

fn record_event(
    tx: &Transaction<'_>,
    state_id: &StateId,
    action: StateAction,
    run_id: Option<&RunId>,
    detail: Option<&str>,
    payload: Option<&Value>,
) -> Result<()> {
    tx.execute(
        "INSERT INTO state_events (state_id, at, action, run_id, detail, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            state_id.as_str(),
            now_text(),
            action.as_str(),
            run_id.map(RunId::as_str),
            detail,
            payload.map(json_text)
        ],
    )?;
    Ok(())
}

fn write_in(
    tx: &Transaction<'_>,
    state_id: &StateId,
    payload: &Value,
    partial: bool,
    action: StateAction,
    run_id: Option<&RunId>,
    detail: Option<&str>,
) -> Result<()> {
    let existing = read_state_row(tx, state_id)?;
    let (completed, new_partial) = apply_write(
        existing.as_ref().map(|s| (&s.completed, &s.partial)),
        payload,
        partial,
    );
    upsert_state(tx, state_id, &completed, &new_partial)?;
    record_event(tx, state_id, action, run_id, detail, Some(payload))
}

fn no_state_error(state_id: &StateId) -> Error {
    Error::config(format!("no state stored for `{state_id}`"))
        .hint("`dsm state list` shows the state ids that have state")
}

type RunRow = (RunRecord, RunStatus);

fn run_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<[Option<String>; 12]> {
    let mut out: [Option<String>; 12] = Default::default();
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = match r.get_ref(i)? {
            rusqlite::types::ValueRef::Null => None,
            rusqlite::types::ValueRef::Integer(n) => Some(n.to_string()),
            rusqlite::types::ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
            other => Some(format!("{other:?}")),
        };
    }
    Ok(out)
}

const RUN_COLUMNS: &str = "run_id, state_id, environment, trigger, started_at, ended_at, heartbeat_at, status, pid, host, error, log_path";

fn build_run(conn: &Connection, cols: [Option<String>; 12]) -> Result<RunRow> {
    let [
        run_id,
        state_id,
        environment,
        trigger,
        started,
        ended,
        hb,
        status,
        pid,
        host,
        error,
        log,
    ] = cols;
    let run_id = RunId::new(run_id.unwrap_or_default());
    let stored_status = RunStatus::parse(status.as_deref().unwrap_or_default())?;
    let mut plugins = Vec::new();
    {
        let mut stmt = conn.prepare(
            "SELECT plugin, role, exit_code FROM run_plugins WHERE run_id = ?1 ORDER BY rowid",
        )?;
        let rows = stmt.query_map([run_id.as_str()], |r| {
            Ok(PluginExit {
                plugin: r.get(0)?,
                role: r.get(1)?,
                exit_code: r.get(2)?,
            })
        })?;
        for row in rows {
            plugins.push(row?);
        }
    }
    let mut streams = Vec::new();
    {
        let mut stmt = conn.prepare(
            "SELECT stream, records, bytes FROM run_streams WHERE run_id = ?1 ORDER BY stream",
        )?;
        let rows = stmt.query_map([run_id.as_str()], |r| {
            Ok(StreamStats {
                stream: r.get(0)?,
                records: r.get::<_, i64>(1)?.max(0) as u64,
                bytes: r.get::<_, i64>(2)?.max(0) as u64,
            })
        })?;
        for row in rows {
            streams.push(row?);
        }
    }
    let record = RunRecord {
        run_id,
        state_id: state_id.map(StateId::new),
        environment,
        trigger: trigger.unwrap_or_default(),
        status: stored_status,
        started_at: parse_time(started.as_deref().unwrap_or_default())?,
        ended_at: ended.as_deref().map(parse_time).transpose()?,
        heartbeat_at: parse_time(hb.as_deref().unwrap_or_default())?,
        pid: pid.and_then(|p| p.parse().ok()).unwrap_or(0),
        host: host.unwrap_or_default(),
        error,
        log_path: log.map(PathBuf::from),
        plugins,
        streams,
    };
    Ok((record, stored_status))
}

fn upsert_plugins(tx: &Transaction<'_>, run_id: &RunId, plugins: &[PluginExit]) -> Result<()> {
    for p in plugins {
        tx.execute(
            "INSERT INTO run_plugins (run_id, plugin, role, exit_code) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (run_id, plugin) DO UPDATE SET role = excluded.role, exit_code = excluded.exit_code",
            params![run_id.as_str(), p.plugin, p.role, p.exit_code],
        )?;
    }
    Ok(())
}

fn no_run_error(run_id: &RunId) -> Error {
    Error::config(format!("no run `{run_id}` in the system database"))
        .hint("`dsm runs list` shows recent runs")
}

impl Store for SqliteStore {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn get_state_row(&self, state_id: &StateId) -> Result<Option<StoredState>> {
        self.read(|c| read_state_row(c, state_id))
    }

    fn commit_state(
        &self,
        state_id: &StateId,
        value_json: &str,
        partial: bool,
        run_id: Option<&RunId>,
    ) -> Result<CommitOutcome> {
        let payload = match state::payload_from_state_value(value_json) {
            Ok(p) => p,
            Err(reason) => {
                tracing::debug!(state_id = %state_id, %reason, "state value not stored");
                return Ok(CommitOutcome::Ignored(reason));
            }
        };
        let detail = if partial { "partial" } else { "complete" };
        self.write(|tx| {
            write_in(
                tx,
                state_id,
                &payload,
                partial,
                StateAction::Committed,
                run_id,
                Some(detail),
            )
        })?;
        Ok(CommitOutcome::Committed)
    }

    fn commit_states(
        &self,
        state_id: &StateId,
        values_json: &[String],
        partial: bool,
        run_id: Option<&RunId>,
    ) -> Result<Vec<CommitOutcome>> {
        let detail = if partial { "partial" } else { "complete" };
        let payloads: Vec<_> = values_json
            .iter()
            .map(|v| state::payload_from_state_value(v))
            .collect();
        self.write(|tx| {
            for payload in payloads.iter().flatten() {
                write_in(
                    tx,
                    state_id,
                    payload,
                    partial,
                    StateAction::Committed,
                    run_id,
                    Some(detail),
                )?;
            }
            Ok(())
        })?;
        Ok(payloads
            .into_iter()
            .map(|p| match p {
                Ok(_) => CommitOutcome::Committed,
                Err(reason) => {
                    tracing::debug!(state_id = %state_id, %reason, "state value not stored");
                    CommitOutcome::Ignored(reason)
                }
            })
            .collect())
    }

    fn write_state(
        &self,
        state_id: &StateId,
        payload: &Value,
        partial: bool,
        action: StateAction,
        detail: Option<&str>,
    ) -> Result<()> {
        self.write(|tx| write_in(tx, state_id, payload, partial, action, None, detail))
    }

    fn list_states(&self, pattern: Option<&str>) -> Result<Vec<StoredState>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT state_id, completed_state, partial_state, updated_at FROM state ORDER BY state_id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, comp, part, at) = row?;
                if pattern.is_none_or(|p| glob_match(p, &id)) {
                    out.push(state_from_columns(StateId::new(id), &comp, &part, &at)?);
                }
            }
            Ok(out)
        })
    }

    fn clear_state(&self, state_id: &StateId) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute("DELETE FROM state WHERE state_id = ?1", [state_id.as_str()])?;
            if n > 0 {
                record_event(tx, state_id, StateAction::Cleared, None, None, None)?;
            }
            Ok(n > 0)
        })
    }

    fn clear_all_states(&self) -> Result<usize> {
        self.write(|tx| {
            let ids: Vec<String> = {
                let mut stmt = tx.prepare("SELECT state_id FROM state")?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            tx.execute("DELETE FROM state", [])?;
            for id in &ids {
                record_event(
                    tx,
                    &StateId::new(id.as_str()),
                    StateAction::Cleared,
                    None,
                    Some("all"),
                    None,
                )?;
            }
            Ok(ids.len())
        })
    }

    fn copy_state(&self, src: &StateId, dst: &StateId, remove_source: bool) -> Result<()> {
        self.write(|tx| {
            let merged = read_state_row(tx, src)?
                .map(|s| s.merged())
                .ok_or_else(|| no_state_error(src))?;
            let (action, detail) = if remove_source {
                (StateAction::Moved, format!("from {src}"))
            } else {
                (StateAction::Copied, format!("from {src}"))
            };
            write_in(tx, dst, &merged, false, action, None, Some(&detail))?;
            if remove_source && src != dst {
                tx.execute("DELETE FROM state WHERE state_id = ?1", [src.as_str()])?;
                record_event(
                    tx,
                    src,
                    StateAction::Cleared,
                    None,
                    Some(&format!("moved to {dst}")),
                    None,
                )?;
            }
            Ok(())
        })
    }

    fn import_states(
        &self,
        rows: &[StoredState],
        overwrite: bool,
        source: &str,
    ) -> Result<ImportReport> {
        self.write(|tx| {
            let mut report = ImportReport::default();
            for row in rows {
                let exists = read_state_row(tx, &row.state_id)?.is_some();
                if exists && !overwrite {
                    report.skipped.push(row.state_id.clone());
                    continue;
                }
                let as_object = |v: &Value| {
                    if v.is_object() {
                        v.clone()
                    } else {
                        Value::Object(Default::default())
                    }
                };
                let (completed, partial) = (as_object(&row.completed), as_object(&row.partial));
                upsert_state(tx, &row.state_id, &completed, &partial)?;
                let payload = serde_json::json!({"completed": completed, "partial": partial});
                record_event(
                    tx,
                    &row.state_id,
                    StateAction::Imported,
                    None,
                    Some(source),
                    Some(&payload),
                )?;
                report.imported.push(row.state_id.clone());
            }
            Ok(report)
        })
    }

    fn state_events(&self, state_id: Option<&StateId>, limit: usize) -> Result<Vec<StateEvent>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT event_id, state_id, at, action, run_id, detail, payload FROM state_events
                 WHERE ?1 IS NULL OR state_id = ?1 ORDER BY event_id LIMIT ?2",
            )?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = stmt.query_map(params![state_id.map(StateId::as_str), limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (event_id, id, at, action, run_id, detail, payload) = row?;
                out.push(StateEvent {
                    event_id,
                    at: parse_time(&at)?,
                    payload: payload
                        .as_deref()
                        .map(|p| parse_json(p, "a state event"))
                        .transpose()?,
                    state_id: StateId::new(id),
                    action,
                    run_id: run_id.map(RunId::new),
                    detail,
                });
            }
            Ok(out)
        })
    }

    fn acquire_lock(
        &self,
        state_id: &StateId,
        run_id: Option<&RunId>,
        force: bool,
    ) -> Result<FlowLock> {
        let token = uuid::Uuid::new_v4().to_string();
        self.write_history(|tx| {
            if let Some(holder) = holder_in(tx, state_id, self.stale_after)? {
                if !holder.stale && !force {
                    return Err(already_running_error(&holder));
                }
                tracing::warn!(
                    state_id = %state_id,
                    pid = holder.pid,
                    host = %holder.host,
                    stale = holder.stale,
                    "taking over the lock of a flow"
                );
            }
            let now = now_text();
            tx.execute(
                "INSERT INTO flow_locks (state_id, token, run_id, pid, host, acquired_at, heartbeat_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                 ON CONFLICT (state_id) DO UPDATE SET token = excluded.token, run_id = excluded.run_id,
                     pid = excluded.pid, host = excluded.host, acquired_at = excluded.acquired_at,
                     heartbeat_at = excluded.heartbeat_at",
                params![
                    state_id.as_str(),
                    token,
                    run_id.map(RunId::as_str),
                    std::process::id(),
                    liveness::host_name(),
                    now
                ],
            )?;
            Ok(())
        })?;
        Ok(FlowLock {
            state_id: state_id.clone(),
            token,
            run_id: run_id.cloned(),
        })
    }

    fn heartbeat(&self, lock: &FlowLock) -> Result<bool> {
        self.write_history(|tx| {
            let now = now_text();
            let n = tx.execute(
                "UPDATE flow_locks SET heartbeat_at = ?1 WHERE state_id = ?2 AND token = ?3",
                params![now, lock.state_id.as_str(), lock.token],
            )?;
            if let Some(run) = &lock.run_id {
                tx.execute(
                    "UPDATE runs SET heartbeat_at = ?1 WHERE run_id = ?2 AND status = 'running'",
                    params![now, run.as_str()],
                )?;
            }
            Ok(n == 1)
        })
    }

    fn release_lock(&self, lock: &FlowLock) -> Result<()> {
        self.write_history(|tx| {
            tx.execute(
                "DELETE FROM flow_locks WHERE state_id = ?1 AND token = ?2",
                params![lock.state_id.as_str(), lock.token],
            )?;
            Ok(())
        })
    }

    fn lock_holder(&self, state_id: &StateId) -> Result<Option<LockHolder>> {
        self.read(|c| holder_in(c, state_id, self.stale_after))
    }

    fn begin_run(&self, run: &NewRun) -> Result<RunId> {
        let run_id = run.run_id.clone().unwrap_or_else(RunId::generate);
        self.write_history(|tx| {
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM runs WHERE run_id = ?1)",
                [run_id.as_str()],
                |r| r.get(0),
            )?;
            if exists {
                return Err(Error::config(format!("run id `{run_id}` is already recorded"))
                    .hint("leave out `--run-id` to get a fresh one"));
            }
            let now = now_text();
            tx.execute(
                "INSERT INTO runs (run_id, state_id, environment, trigger, started_at, heartbeat_at, status, pid, host, log_path)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, 'running', ?6, ?7, ?8)",
                params![
                    run_id.as_str(),
                    run.state_id.as_ref().map(StateId::as_str),
                    run.environment,
                    run.trigger,
                    now,
                    std::process::id(),
                    liveness::host_name(),
                    run.log_path.as_ref().map(|p| p.display().to_string()),
                ],
            )?;
            upsert_plugins(tx, &run_id, &run.plugins)
        })?;
        Ok(run_id)
    }

    fn heartbeat_run(&self, run_id: &RunId) -> Result<()> {
        self.write_history(|tx| {
            tx.execute(
                "UPDATE runs SET heartbeat_at = ?1 WHERE run_id = ?2 AND status = 'running'",
                params![now_text(), run_id.as_str()],
            )?;
            Ok(())
        })
    }

    fn record_stream_stats(&self, run_id: &RunId, stats: &[StreamStats]) -> Result<()> {
        self.write_history(|tx| {
            for s in stats {
                tx.execute(
                    "INSERT INTO run_streams (run_id, stream, records, bytes) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (run_id, stream) DO UPDATE SET records = excluded.records, bytes = excluded.bytes",
                    params![
                        run_id.as_str(),
                        s.stream,
                        i64::try_from(s.records).unwrap_or(i64::MAX),
                        i64::try_from(s.bytes).unwrap_or(i64::MAX)
                    ],
                )
                .map_err(|e| match e {
                    rusqlite::Error::SqliteFailure(f, _)
                        if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                    {
                        no_run_error(run_id)
                    }
                    other => other.into(),
                })?;
            }
            Ok(())
        })
    }

    fn finish_run(&self, run_id: &RunId, finish: &RunFinish) -> Result<()> {
        if finish.status == RunStatus::Running {
            return Err(Error::failed(format!(
                "run `{run_id}` cannot finish with status `running`"
            )));
        }
        self.write_history(|tx| {
            let n = tx.execute(
                "UPDATE runs SET status = ?1, ended_at = ?2, heartbeat_at = ?2, error = ?3 WHERE run_id = ?4",
                params![finish.status.as_str(), now_text(), finish.error, run_id.as_str()],
            )?;
            if n == 0 {
                return Err(no_run_error(run_id));
            }
            upsert_plugins(tx, run_id, &finish.plugins)
        })
    }

    fn get_run(&self, run_id: &RunId) -> Result<Option<RunRecord>> {
        self.read(|c| {
            let cols = c
                .query_row(
                    &format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?1"),
                    [run_id.as_str()],
                    run_from_row,
                )
                .optional()?;
            let Some(cols) = cols else { return Ok(None) };
            let (mut run, stored) = build_run(c, cols).map_err(|e| {
                Error::failed(format!("run `{run_id}` in the system database is unreadable"))
                    .detail(e.message().to_owned())
                    .hint(format!(
                        "other runs are not affected; `dsm runs prune --run-id {run_id}` removes this one"
                    ))
            })?;
            run.status = self.derive_status(stored, run.pid, &run.host, run.heartbeat_at);
            Ok(Some(run))
        })
    }

    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        self.read(|c| {
            let status_sql = match filter.status {
                None => "1",
                Some(RunStatus::Success) => "status = 'success'",
                Some(RunStatus::Failed) => "status = 'failed'",
                // Killed is derived from running rows (and a finisher may record it too).
                Some(RunStatus::Running | RunStatus::Killed) => "status IN ('running', 'killed')",
            };
            let derived = matches!(filter.status, Some(RunStatus::Running | RunStatus::Killed));
            let sql_limit = match (filter.limit, derived) {
                (Some(n), false) => i64::try_from(n).unwrap_or(i64::MAX),
                _ => -1,
            };
            let mut stmt = c.prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE (?1 IS NULL OR state_id = ?1) AND {status_sql}
                 ORDER BY started_at DESC, run_id DESC LIMIT ?2"
            ))?;
            let rows = stmt.query_map(
                params![filter.state_id.as_ref().map(StateId::as_str), sql_limit],
                run_from_row,
            )?;
            let mut out = Vec::new();
            for row in rows {
                let cols = row?;
                let id = cols[0].clone().unwrap_or_default();
                // One damaged row must not hide the rest of the history.
                let (mut run, stored) = match build_run(c, cols) {
                    Ok(built) => built,
                    Err(error) => {
                        tracing::warn!(run_id = %id, error = %error, "skipping an unreadable run row");
                        continue;
                    }
                };
                run.status = self.derive_status(stored, run.pid, &run.host, run.heartbeat_at);
                if filter.status.is_some_and(|s| s != run.status) {
                    continue;
                }
                out.push(run);
                if filter.limit.is_some_and(|n| out.len() >= n) {
                    break;
                }
            }
            Ok(out)
        })
    }

    fn record_run(&self, run: &RunRecord) -> Result<()> {
        self.write(|tx| {
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM runs WHERE run_id = ?1)",
                [run.run_id.as_str()],
                |r| r.get(0),
            )?;
            if exists {
                return Err(Error::config(format!(
                    "run id `{}` is already recorded",
                    run.run_id
                )));
            }
            tx.execute(
                "INSERT INTO runs (run_id, state_id, environment, trigger, started_at, ended_at, heartbeat_at, status, pid, host, error, log_path)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    run.run_id.as_str(),
                    run.state_id.as_ref().map(StateId::as_str),
                    run.environment,
                    run.trigger,
                    format_time(run.started_at),
                    run.ended_at.map(format_time),
                    format_time(run.heartbeat_at),
                    run.status.as_str(),
                    run.pid,
                    run.host,
                    run.error,
                    run.log_path.as_ref().map(|p| p.display().to_string()),
                ],
            )?;
            upsert_plugins(tx, &run.run_id, &run.plugins)?;
            for s in &run.streams {
                tx.execute(
                    "INSERT INTO run_streams (run_id, stream, records, bytes) VALUES (?1, ?2, ?3, ?4)",
                    params![
                        run.run_id.as_str(),
                        s.stream,
                        i64::try_from(s.records).unwrap_or(i64::MAX),
                        i64::try_from(s.bytes).unwrap_or(i64::MAX)
                    ],
                )?;
            }
            Ok(())
        })
    }

    fn list_runs_since(&self, since: DateTime<Utc>) -> Result<Vec<RunRecord>> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE started_at >= ?1
                 ORDER BY started_at DESC, run_id DESC"
            ))?;
            let rows = stmt.query_map([format_time(since)], run_from_row)?;
            let mut out = Vec::new();
            for row in rows {
                let cols = row?;
                let id = cols[0].clone().unwrap_or_default();
                match build_run(c, cols) {
                    Ok((mut run, stored)) => {
                        run.status =
                            self.derive_status(stored, run.pid, &run.host, run.heartbeat_at);
                        out.push(run);
                    }
                    Err(error) => {
                        tracing::warn!(run_id = %id, error = %error, "skipping an unreadable run row");
                    }
                }
            }
            Ok(out)
        })
    }

    fn delete_runs(&self, run_ids: &[RunId]) -> Result<usize> {
        self.write(|tx| {
            let mut n = 0;
            for id in run_ids {
                let id = id.as_str();
                // The run's counters move to the pruned totals first, so `dsm metrics` never
                // reports a counter going down.
                tx.execute(
                    "INSERT INTO pruned_run_totals (kind, subject, detail, runs)
                     SELECT 'source', p.plugin, r.status, 1 FROM run_plugins p
                     JOIN runs r ON r.run_id = p.run_id
                     WHERE p.run_id = ?1 AND p.role = 'extractor'
                     ON CONFLICT (kind, subject, detail) DO UPDATE SET runs = runs + 1",
                    [id],
                )?;
                tx.execute(
                    "INSERT INTO pruned_run_totals (kind, subject, detail, runs)
                     SELECT 'flow', state_id, status, 1 FROM runs
                     WHERE run_id = ?1 AND state_id IS NOT NULL
                     ON CONFLICT (kind, subject, detail) DO UPDATE SET runs = runs + 1",
                    [id],
                )?;
                tx.execute(
                    "INSERT INTO pruned_run_totals (kind, subject, detail, records, bytes)
                     SELECT 'stream', p.plugin, s.stream,
                            MAX(0, CAST(s.records AS INTEGER)), MAX(0, CAST(s.bytes AS INTEGER))
                     FROM run_plugins p
                     JOIN run_streams s ON s.run_id = p.run_id
                     WHERE p.run_id = ?1 AND p.role = 'extractor'
                     ON CONFLICT (kind, subject, detail) DO UPDATE SET
                         records = records + excluded.records, bytes = bytes + excluded.bytes",
                    [id],
                )?;
                tx.execute("DELETE FROM merge_run_stats WHERE run_id = ?1", [id])?;
                tx.execute("DELETE FROM run_plugins WHERE run_id = ?1", [id])?;
                tx.execute("DELETE FROM run_streams WHERE run_id = ?1", [id])?;
                tx.execute("DELETE FROM run_artifacts WHERE run_id = ?1", [id])?;
                tx.execute("DELETE FROM run_stream_labels WHERE run_id = ?1", [id])?;
                n += tx.execute("DELETE FROM runs WHERE run_id = ?1", [id])?;
            }
            Ok(n)
        })
    }

    fn pruned_totals(&self) -> Result<Vec<PrunedTotal>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT kind, subject, detail, runs, records, bytes FROM pruned_run_totals
             ORDER BY kind, subject, detail",
        )?;
        let count = |v: i64| u64::try_from(v).unwrap_or(0);
        let rows = stmt.query_map([], |r| {
            Ok(PrunedTotal {
                kind: r.get(0)?,
                subject: r.get(1)?,
                detail: r.get(2)?,
                runs: count(r.get(3)?),
                records: count(r.get(4)?),
                bytes: count(r.get(5)?),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn record_run_artifacts(&self, run_id: &RunId, artifacts: &[RunArtifact]) -> Result<()> {
        self.write_history(|tx| {
            for a in artifacts {
                tx.execute(
                    "INSERT INTO run_artifacts (run_id, path, kind, stream, records, label) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (run_id, path) DO UPDATE SET kind = excluded.kind, stream = excluded.stream, records = excluded.records, label = excluded.label",
                    params![
                        run_id.as_str(),
                        a.path.display().to_string(),
                        a.kind,
                        a.stream,
                        i64::try_from(a.records).unwrap_or(i64::MAX),
                        a.label
                    ],
                )
                .map_err(|e| match e {
                    rusqlite::Error::SqliteFailure(f, _)
                        if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                    {
                        no_run_error(run_id)
                    }
                    other => other.into(),
                })?;
            }
            Ok(())
        })
    }

    fn run_artifacts(&self, run_id: &RunId) -> Result<Vec<RunArtifact>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT path, kind, stream, records, label FROM run_artifacts WHERE run_id = ?1 ORDER BY kind, stream, path",
            )?;
            let rows = stmt.query_map([run_id.as_str()], |r| {
                Ok(RunArtifact {
                    path: PathBuf::from(r.get::<_, String>(0)?),
                    kind: r.get(1)?,
                    stream: r.get(2)?,
                    records: r.get::<_, i64>(3)?.max(0) as u64,
                    label: r.get(4)?,
                })
            })?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row?);
            }
            Ok(out)
        })
    }

    fn record_stream_labels(&self, run_id: &RunId, labels: &[StreamLabel]) -> Result<()> {
        self.write_history(|tx| {
            for l in labels {
                tx.execute(
                    "INSERT INTO run_stream_labels (run_id, stream, label, rank, because) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (run_id, stream) DO UPDATE SET label = excluded.label, rank = excluded.rank, because = excluded.because",
                    params![run_id.as_str(), l.stream, l.label, l.rank, l.because],
                )?;
            }
            Ok(())
        })
    }

    fn stream_labels(&self, run_id: &RunId) -> Result<Vec<StreamLabel>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT stream, label, rank, because FROM run_stream_labels WHERE run_id = ?1 ORDER BY stream",
            )?;
            let rows = stmt.query_map([run_id.as_str()], |r| {
                Ok(StreamLabel {
                    stream: r.get(0)?,
                    label: r.get(1)?,
                    rank: r.get(2)?,
                    because: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn record_source_status(&self, change: &SourceStatusChange) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO source_status_events (source, status, reason, user, origin, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    change.source,
                    change.status,
                    change.reason,
                    change.user,
                    change.origin,
                    format_time(change.at)
                ],
            )?;
            Ok(())
        })
    }

    fn source_status_history(
        &self,
        source: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SourceStatusChange>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT source, status, reason, user, origin, at FROM source_status_events
                 WHERE (?1 IS NULL OR source = ?1) ORDER BY event_id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(
                params![source, i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                    ))
                },
            )?;
            let mut out = Vec::new();
            for row in rows {
                let (source, status, reason, user, origin, at) = row?;
                out.push(SourceStatusChange {
                    source,
                    status,
                    reason,
                    user,
                    origin,
                    at: parse_time(&at)?,
                });
            }
            Ok(out)
        })
    }

    fn get_setting(&self, namespace: &str, name: &str) -> Result<Option<Value>> {
        self.read(|c| {
            let text: Option<String> = c
                .query_row(
                    "SELECT value FROM settings WHERE namespace = ?1 AND name = ?2",
                    params![namespace, name],
                    |r| r.get(0),
                )
                .optional()?;
            text.map(|t| parse_json(&t, &format!("setting `{name}` of `{namespace}`")))
                .transpose()
        })
    }

    fn set_setting(&self, namespace: &str, name: &str, value: &Value) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO settings (namespace, name, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (namespace, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                params![namespace, name, json_text(value), now_text()],
            )?;
            Ok(())
        })
    }

    fn unset_setting(&self, namespace: &str, name: &str) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                "DELETE FROM settings WHERE namespace = ?1 AND name = ?2",
                params![namespace, name],
            )?;
            Ok(n > 0)
        })
    }

    fn list_settings(&self, namespace: &str) -> Result<Vec<(String, Value)>> {
        self.read(|c| {
            let mut stmt =
                c.prepare("SELECT name, value FROM settings WHERE namespace = ?1 ORDER BY name")?;
            let rows = stmt.query_map([namespace], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (name, text) = row?;
                let value = parse_json(&text, &format!("setting `{name}` of `{namespace}`"))?;
                out.push((name, value));
            }
            Ok(out)
        })
    }
}

fn holder_in(
    conn: &Connection,
    state_id: &StateId,
    stale_after: Duration,
) -> Result<Option<LockHolder>> {
    let row = conn
        .query_row(
            "SELECT pid, host, run_id, acquired_at, heartbeat_at FROM flow_locks WHERE state_id = ?1",
            [state_id.as_str()],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            },
        )
        .optional()?;
    let Some((pid, host, run_id, acquired, hb)) = row else {
        return Ok(None);
    };
    let pid = u32::try_from(pid).unwrap_or(0);
    let heartbeat_at = parse_time(&hb)?;
    let stale = liveness::is_stale(pid, &host, heartbeat_at, Utc::now(), stale_after);
    Ok(Some(LockHolder {
        state_id: state_id.clone(),
        pid,
        host,
        run_id: run_id.map(RunId::new),
        acquired_at: parse_time(&acquired)?,
        heartbeat_at,
        stale,
    }))
}

mod tokens;

#[cfg(test)]
mod tests;

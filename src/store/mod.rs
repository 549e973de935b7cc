//! The system store: state, state events, flow locks, run history and database-stored settings,
//! behind the [`Store`] trait (SQLite today, see [`sqlite`]).
//!
//! Every method blocks on the database. From async code call it through
//! `tokio::task::spawn_blocking` (the handle is `Send + Sync`, share it as `Arc<dyn Store>`).

pub mod liveness;
pub mod meltano;
pub mod sqlite;
pub mod state;
pub mod tokens;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::classification::StreamLabel;
use crate::envvars;
use crate::error::{Error, ErrorKind, Result};
use crate::project::PRIVATE_DIR;

pub use sqlite::SqliteStore;
pub use state::{CommitOutcome, IgnoredReason, StateId, StoredState};
pub use tokens::{NewToken, Role, TokenRecord, TokenStore};

/// The store's file name inside the project's private folder.
pub const DATABASE_FILE: &str = "dsm.db";

/// Identifies one run (a UUID unless the caller chose one, like Meltano's `--run-id`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct RunId(String);

impl RunId {
    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        RunId(uuid::Uuid::now_v7().to_string())
    }

    /// Wraps an id read back from the store or named to look one up.
    pub fn new(id: impl Into<String>) -> Self {
        RunId(id.into())
    }

    /// An id a user chose for a new run (`--run-id`, `DSM_RUN_RUN_ID`): only a UUID, as
    /// Meltano accepts, written in its lower-case hyphenated form. The id names files under
    /// `.dsm/`, so anything else (a path such as `../../x`) is refused.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        uuid::Uuid::try_parse(text.trim())
            .map(|u| RunId(u.hyphenated().to_string()))
            .map_err(|_| {
                format!(
                    "a run id must be a UUID, such as `{}`",
                    uuid::Uuid::now_v7().hyphenated()
                )
            })
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a state row was changed (recorded in the state events table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StateAction {
    /// A run committed a STATE message from its loader.
    Committed,
    /// `state set`: the completed state was replaced.
    Set,
    /// `state merge`: a payload was merged into the partial state.
    Merged,
    /// `state clear`.
    Cleared,
    /// `state copy` onto this id.
    Copied,
    /// `state move` onto this id (the source gets `Cleared`).
    Moved,
    /// `state import` or `state import-meltano`.
    Imported,
}

impl StateAction {
    /// The name stored in the events table.
    pub fn as_str(self) -> &'static str {
        match self {
            StateAction::Committed => "committed",
            StateAction::Set => "set",
            StateAction::Merged => "merged",
            StateAction::Cleared => "cleared",
            StateAction::Copied => "copied",
            StateAction::Moved => "moved",
            StateAction::Imported => "imported",
        }
    }
}

/// One recorded change of a state row.
#[derive(Debug, Clone, Serialize)]
pub struct StateEvent {
    /// Increasing event number.
    pub event_id: i64,
    /// The state id that changed.
    pub state_id: StateId,
    /// When it changed.
    pub at: DateTime<Utc>,
    /// What happened (`committed`, `set`, `merged`, ...).
    pub action: String,
    /// The run that committed it, if any.
    pub run_id: Option<RunId>,
    /// Free text: `partial`/`complete`, the source id of a copy, the file of an import.
    pub detail: Option<String>,
    /// The payload written, if any.
    pub payload: Option<Value>,
}

/// What `import` did with each state id.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    /// Ids written.
    pub imported: Vec<StateId>,
    /// Ids left alone because dsm already had state for them.
    pub skipped: Vec<StateId>,
}

/// A held lock on a flow (its state id). Release it with [`Store::release_lock`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowLock {
    /// The flow's state id.
    pub state_id: StateId,
    /// Proves ownership: only the holder's token releases or refreshes the lock.
    pub token: String,
    /// The run this lock belongs to, refreshed together with the lock by heartbeats.
    pub run_id: Option<RunId>,
}

/// Who holds a flow's lock.
#[derive(Debug, Clone, Serialize)]
pub struct LockHolder {
    /// The flow's state id.
    pub state_id: StateId,
    /// The holder's process id (on `host`).
    pub pid: u32,
    /// The holder's host name.
    pub host: String,
    /// The holder's run, if it registered one.
    pub run_id: Option<RunId>,
    /// When the lock was taken.
    pub acquired_at: DateTime<Utc>,
    /// The holder's last heartbeat.
    pub heartbeat_at: DateTime<Utc>,
    /// Whether the holder is gone (old heartbeat, or dead PID on this host).
    pub stale: bool,
}

/// Status of a run. `Killed` is derived when read: a run still marked running whose process
/// is gone (stale heartbeat, or dead PID on this host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Still going.
    Running,
    /// Finished and succeeded.
    Success,
    /// Finished and failed.
    Failed,
    /// Ended without finishing (killed, crashed, or interrupted).
    Killed,
}

impl RunStatus {
    /// The name stored in the database and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Success => "success",
            RunStatus::Failed => "failed",
            RunStatus::Killed => "killed",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "running" => Ok(RunStatus::Running),
            "success" => Ok(RunStatus::Success),
            "failed" => Ok(RunStatus::Failed),
            "killed" => Ok(RunStatus::Killed),
            other => Err(Error::failed(format!(
                "system database holds an unknown run status `{other}`"
            ))),
        }
    }
}

/// A plugin taking part in a run, and how it exited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginExit {
    /// The plugin's name in `meltano.yml`.
    pub plugin: String,
    /// Its role in the run: `extractor`, `mapper`, `loader`, ...
    pub role: String,
    /// Its exit code (`None` while running, or when killed by a signal).
    pub exit_code: Option<i32>,
}

/// Counts for one stream of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamStats {
    /// The stream name.
    pub stream: String,
    /// Records seen so far.
    pub records: u64,
    /// Bytes of RECORD lines seen so far.
    pub bytes: u64,
}

/// A file a run left behind besides its log (kept with the run, removed when it is pruned).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunArtifact {
    /// Where the file is.
    pub path: PathBuf,
    /// What it is: `quarantine` for records validation set aside.
    pub kind: String,
    /// The stream it belongs to, if one.
    pub stream: Option<String>,
    /// How many records it holds.
    pub records: u64,
    /// The classification label of its stream, when the project classifies its data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// Counters of runs that were pruned from the history, kept so that totals never go down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrunedTotal {
    /// `source` (subject: extractor, detail: run status), `flow` (subject: state id, detail:
    /// run status) or `stream` (subject: extractor, detail: stream).
    pub kind: String,
    /// The extractor or state id.
    pub subject: String,
    /// The run status or the stream.
    pub detail: String,
    /// Runs (`source` and `flow`).
    pub runs: u64,
    /// Records (`stream`).
    pub records: u64,
    /// Bytes of RECORD lines (`stream`).
    pub bytes: u64,
}

/// What the engine knows when a run starts.
#[derive(Debug, Clone, Default)]
pub struct NewRun {
    /// The run id to use (`--run-id`); a fresh one when `None`.
    pub run_id: Option<RunId>,
    /// The flow's state id, if the run has one.
    pub state_id: Option<StateId>,
    /// The active environment.
    pub environment: Option<String>,
    /// What started it: `cli`, `schedule`, `job:<name>`, ...
    pub trigger: String,
    /// The per-run log file with the plugins' stderr.
    pub log_path: Option<PathBuf>,
    /// The plugins taking part (exit codes are filled in by [`Store::finish_run`]).
    pub plugins: Vec<PluginExit>,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunFinish {
    /// `Success`, `Failed` or `Killed` (`Running` is refused).
    pub status: RunStatus,
    /// The error shown to the user, if the run failed.
    pub error: Option<String>,
    /// Exit codes of the plugins (upserted by plugin name).
    pub plugins: Vec<PluginExit>,
}

/// One run as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// The run id.
    pub run_id: RunId,
    /// The flow's state id.
    pub state_id: Option<StateId>,
    /// The environment it ran in.
    pub environment: Option<String>,
    /// What started it.
    pub trigger: String,
    /// Status, with `killed` derived for runs whose process is gone.
    pub status: RunStatus,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// End time (`None` while running or when killed).
    pub ended_at: Option<DateTime<Utc>>,
    /// Last heartbeat of the process running it.
    pub heartbeat_at: DateTime<Utc>,
    /// The PID of the dsm process that ran it.
    pub pid: u32,
    /// The host it ran on.
    pub host: String,
    /// The error text, if it failed.
    pub error: Option<String>,
    /// The per-run log file.
    pub log_path: Option<PathBuf>,
    /// Plugins and their exit codes.
    pub plugins: Vec<PluginExit>,
    /// Per-stream counts.
    pub streams: Vec<StreamStats>,
}

/// One entry of a source's status history (the registry gives `status` and `origin` meaning).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceStatusChange {
    /// The source's plugin name.
    pub source: String,
    /// The status set (`active`, `inactive`, `maintenance`) or a test result (`passed`, `failed`).
    pub status: String,
    /// Why, as the operator or the test wrote it.
    pub reason: Option<String>,
    /// Who made the change, if known.
    pub user: Option<String>,
    /// `operator` for `dsm sources disable|enable|maintenance`, `test` for `dsm test`.
    pub origin: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// Which runs to list (newest first).
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only runs of this state id.
    pub state_id: Option<StateId>,
    /// Only runs with this (derived) status.
    pub status: Option<RunStatus>,
    /// At most this many.
    pub limit: Option<usize>,
}

/// The system store. Implementations are `Send + Sync`; every call blocks, so async callers go
/// through `spawn_blocking`. Each write is one transaction that takes the write lock up front.
pub trait Store: TokenStore + Send + Sync + std::fmt::Debug {
    /// Where the store lives, for messages.
    fn location(&self) -> String;

    // ----- state -----

    /// The stored row for `state_id`, if any.
    fn get_state_row(&self, state_id: &StateId) -> Result<Option<StoredState>>;

    /// The merged payload `{"singer_state": ...}` the next run starts from, if any.
    fn get_state(&self, state_id: &StateId) -> Result<Option<Value>> {
        Ok(self.get_state_row(state_id)?.map(|row| row.merged()))
    }

    /// Commits the `value` of a STATE message the loader printed (its JSON text), wrapped as
    /// `{"singer_state": value}`: `partial` deep-merges it over the partial state, otherwise it
    /// replaces the completed state. `{}`, non-objects and invalid JSON are not stored.
    fn commit_state(
        &self,
        state_id: &StateId,
        value_json: &str,
        partial: bool,
        run_id: Option<&RunId>,
    ) -> Result<CommitOutcome>;

    /// [`Self::commit_state`] for several STATE values in the order the loader printed them,
    /// made durable together (one transaction where the store has them): a burst of states
    /// costs one sync, not one each.
    fn commit_states(
        &self,
        state_id: &StateId,
        values_json: &[String],
        partial: bool,
        run_id: Option<&RunId>,
    ) -> Result<Vec<CommitOutcome>> {
        values_json
            .iter()
            .map(|v| self.commit_state(state_id, v, partial, run_id))
            .collect()
    }

    /// Writes a payload with Meltano's rules (`partial` = merge, else set) and records `action`.
    fn write_state(
        &self,
        state_id: &StateId,
        payload: &Value,
        partial: bool,
        action: StateAction,
        detail: Option<&str>,
    ) -> Result<()>;

    /// All rows whose id matches the glob `pattern` (`*` matches anything), sorted by id.
    fn list_states(&self, pattern: Option<&str>) -> Result<Vec<StoredState>>;

    /// Deletes one row; returns whether it existed.
    fn clear_state(&self, state_id: &StateId) -> Result<bool>;

    /// Deletes every row; returns how many.
    fn clear_all_states(&self) -> Result<usize>;

    /// Sets `dst` to the merged state of `src` (and clears `src` when `remove_source`), in one
    /// transaction. Fails when `src` has no state.
    fn copy_state(&self, src: &StateId, dst: &StateId, remove_source: bool) -> Result<()>;

    /// Writes whole rows (both halves), like `meltano state import`. Existing rows are replaced
    /// when `overwrite`, else skipped. One transaction; `source` is recorded in the events.
    fn import_states(
        &self,
        rows: &[StoredState],
        overwrite: bool,
        source: &str,
    ) -> Result<ImportReport>;

    /// The recorded changes of one state id (or all), oldest first, at most `limit`.
    fn state_events(&self, state_id: Option<&StateId>, limit: usize) -> Result<Vec<StateEvent>>;

    // ----- one run per flow -----

    /// Takes the lock on a flow. Fails with [`ErrorKind::AlreadyRunning`] naming the holder
    /// unless the lock is free, stale, or `force` is set.
    fn acquire_lock(
        &self,
        state_id: &StateId,
        run_id: Option<&RunId>,
        force: bool,
    ) -> Result<FlowLock>;

    /// Refreshes the lock's heartbeat (and its run's). Returns `false` when the lock was taken
    /// over by someone else (with `--force`, or after it went stale).
    fn heartbeat(&self, lock: &FlowLock) -> Result<bool>;

    /// Releases the lock if this holder still has it.
    fn release_lock(&self, lock: &FlowLock) -> Result<()>;

    /// Who holds the lock on `state_id`, if anyone.
    fn lock_holder(&self, state_id: &StateId) -> Result<Option<LockHolder>>;

    // ----- run history -----

    /// Records the start of a run (status `running`, this process's PID and host).
    fn begin_run(&self, run: &NewRun) -> Result<RunId>;

    /// Refreshes a run's heartbeat (runs without a lock; a lock's heartbeat covers its run).
    fn heartbeat_run(&self, run_id: &RunId) -> Result<()>;

    /// Sets the running totals of some streams (replacing earlier totals of the same stream).
    fn record_stream_stats(&self, run_id: &RunId, stats: &[StreamStats]) -> Result<()>;

    /// Records how a run ended.
    fn finish_run(&self, run_id: &RunId, finish: &RunFinish) -> Result<()>;

    /// Records files a run left behind (upserted by path).
    fn record_run_artifacts(&self, run_id: &RunId, artifacts: &[RunArtifact]) -> Result<()>;

    /// The files a run left behind.
    fn run_artifacts(&self, run_id: &RunId) -> Result<Vec<RunArtifact>>;

    /// Records the classification label of each stream a run sends (upserted by stream).
    fn record_stream_labels(&self, run_id: &RunId, labels: &[StreamLabel]) -> Result<()>;

    /// The classification labels a run recorded.
    fn stream_labels(&self, run_id: &RunId) -> Result<Vec<StreamLabel>>;

    /// One run.
    fn get_run(&self, run_id: &RunId) -> Result<Option<RunRecord>>;

    /// Runs, newest first.
    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>>;

    /// Records a complete run with its own times and status (history imports, tests).
    /// Fails when the run id is already recorded.
    fn record_run(&self, run: &RunRecord) -> Result<()>;

    /// Runs started at or after `since`, newest first. Rows that cannot be read (a corrupted
    /// time or status) are skipped with a warning instead of failing the whole listing.
    fn list_runs_since(&self, since: DateTime<Utc>) -> Result<Vec<RunRecord>>;

    /// Deletes runs with their plugin, stream, artifact and merge-count rows, first adding
    /// their counters to the pruned totals in the same transaction; returns how many runs
    /// existed.
    fn delete_runs(&self, run_ids: &[RunId]) -> Result<usize>;

    /// The counters of every run deleted so far (see [`Store::delete_runs`]).
    fn pruned_totals(&self) -> Result<Vec<PrunedTotal>>;

    // ----- source registry -----

    /// Appends a change of a source's status to its history.
    fn record_source_status(&self, change: &SourceStatusChange) -> Result<()>;

    /// The status history of one source (or all), newest first, at most `limit`.
    fn source_status_history(
        &self,
        source: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SourceStatusChange>>;

    // ----- settings stored in the database -----

    /// A setting's value stored with `config set --store=db`. `namespace` is the plugin's
    /// settings namespace (Meltano's `plugin.type.name` style is up to the caller).
    fn get_setting(&self, namespace: &str, name: &str) -> Result<Option<Value>>;

    /// Stores a setting's value.
    fn set_setting(&self, namespace: &str, name: &str, value: &Value) -> Result<()>;

    /// Removes a setting; returns whether it existed.
    fn unset_setting(&self, namespace: &str, name: &str) -> Result<bool>;

    /// All settings of a namespace, sorted by name.
    fn list_settings(&self, namespace: &str) -> Result<Vec<(String, Value)>>;
}

/// Where the store lives, from `--database-uri`, then `DSM_DATABASE_URI`, then
/// `.dsm/dsm.db` in the project. Relative paths are relative to the project root.
pub fn database_path(uri_flag: Option<&str>, project_root: &Path) -> Result<PathBuf> {
    let from_env = std::env::var(envvars::DATABASE_URI)
        .ok()
        .filter(|s| !s.is_empty());
    match uri_flag.map(str::to_owned).or(from_env) {
        Some(uri) => parse_uri(&uri, project_root),
        None => Ok(project_root.join(PRIVATE_DIR).join(DATABASE_FILE)),
    }
}

/// Turns a database URI (`sqlite:///abs/path`, `sqlite:////abs/path` or a plain path) into a
/// path. Other schemes are refused with a hint.
pub fn parse_uri(uri: &str, base: &Path) -> Result<PathBuf> {
    let path = if let Some(rest) = uri.strip_prefix("sqlite://") {
        if rest.is_empty() || !rest.starts_with('/') {
            return Err(Error::config(format!("database URI `{uri}` has no path"))
                .hint("write `sqlite:///absolute/path/to/dsm.db`, or give a plain file path"));
        }
        PathBuf::from(rest)
    } else if let Some((scheme, _)) = uri.split_once("://") {
        return Err(
            Error::config(format!("database URI scheme `{scheme}` is not supported")).hint(
                "dsm's system store is SQLite: pass a file path or `sqlite:///absolute/path`",
            ),
        );
    } else {
        PathBuf::from(uri)
    };
    Ok(if path.is_absolute() {
        path
    } else {
        base.join(path)
    })
}

/// Opens (creating and migrating if needed) the store for a project.
pub fn open_for_project(uri_flag: Option<&str>, project_root: &Path) -> Result<Arc<dyn Store>> {
    let path = database_path(uri_flag, project_root)?;
    Ok(Arc::new(SqliteStore::open(&path)?))
}

/// The error a second run of the same flow gets (exit 3).
pub fn already_running_error(holder: &LockHolder) -> Error {
    let age = Utc::now()
        .signed_duration_since(holder.heartbeat_at)
        .num_seconds()
        .max(0);
    let mut err = Error::new(
        ErrorKind::AlreadyRunning,
        format!(
            "flow `{}` is already running (pid {} on `{}`, started {})",
            holder.state_id,
            holder.pid,
            holder.host,
            format_time(holder.acquired_at)
        ),
    )
    .detail(format!("its last heartbeat was {age}s ago"));
    if let Some(run) = &holder.run_id {
        err = err.detail(format!("run id `{run}`"));
    }
    err.hint(format!(
        "wait for it to finish (`dsm runs list --state-id {}`), or pass `--force` if you are sure it is not running",
        holder.state_id
    ))
}

/// Formats a time the way the store keeps it (RFC 3339, UTC, milliseconds).
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A background thread that refreshes a flow lock's (and its run's) heartbeat until dropped.
#[derive(Debug)]
pub struct HeartbeatThread {
    stop: Option<std::sync::mpsc::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl HeartbeatThread {
    /// Starts refreshing a flow lock (and the run it names) and/or a run without a lock, every
    /// `interval` (see [`liveness::HEARTBEAT_INTERVAL`]). Failures are logged, not fatal: a
    /// missed beat only matters after many intervals.
    pub fn start(
        store: Arc<dyn Store>,
        lock: Option<FlowLock>,
        run_id: Option<RunId>,
        interval: Duration,
    ) -> Self {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        // A lock's heartbeat already refreshes its own run.
        let run_id = run_id.filter(|r| lock.as_ref().and_then(|l| l.run_id.as_ref()) != Some(r));
        let handle = std::thread::Builder::new()
            .name("dsm-heartbeat".into())
            .spawn(move || {
                let mut lock = lock;
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(interval)
                {
                    if let Some(l) = &lock {
                        match store.heartbeat(l) {
                            Ok(true) => {}
                            Ok(false) => {
                                tracing::warn!(state_id = %l.state_id, "flow lock was taken over by another process");
                                lock = None;
                            }
                            Err(error) => {
                                tracing::warn!(state_id = %l.state_id, error = %error, "heartbeat failed");
                            }
                        }
                    }
                    if let Some(run) = &run_id
                        && let Err(error) = store.heartbeat_run(run)
                    {
                        tracing::warn!(run_id = %run, error = %error, "heartbeat failed");
                    }
                }
            })
            .ok();
        HeartbeatThread {
            stop: Some(stop),
            handle,
        }
    }
}

impl Drop for HeartbeatThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

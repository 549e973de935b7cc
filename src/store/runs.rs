//! Run history: runs with their plugins, per-stream counts, artifacts and classification labels,
//! and the totals of pruned runs.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{RunId, StateId};
use crate::classification::StreamLabel;
use crate::error::{Error, Result};

/// Status of a run. `Killed` is derived when read: a run still marked running whose process
/// is gone (stale heartbeat, or dead PID on this host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

impl std::str::FromStr for RunStatus {
    type Err = String;

    /// A status as a user names it (any letter case), such as an HTTP query parameter.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        RunStatus::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("`{s}` is not a run status"))
    }
}

impl RunStatus {
    /// Every status, in the order they are listed to users.
    pub const ALL: [RunStatus; 4] = [
        RunStatus::Running,
        RunStatus::Success,
        RunStatus::Failed,
        RunStatus::Killed,
    ];

    /// The name stored in the database and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Success => "success",
            RunStatus::Failed => "failed",
            RunStatus::Killed => "killed",
        }
    }

    /// Reads a stored name.
    pub fn parse(s: &str) -> Result<Self> {
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
    /// The plugins taking part (exit codes are filled in by [`RunHistory::finish_run`]).
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
    /// RECORD messages read from the extractor (the sum of `streams`).
    pub records_read: u64,
    /// RECORD messages passed to the loader; `None` for runs recorded before dsm counted them
    /// and for runs that have not ended.
    pub records_sent: Option<u64>,
    /// Records the loader confirmed (sent before the latest STATE it emitted); `None` as for
    /// `records_sent`.
    pub records_confirmed: Option<u64>,
}

/// What a run passed to its loader and what the loader confirmed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunCounts {
    /// RECORD messages passed to the loader.
    pub records_sent: u64,
    /// Records sent before the latest STATE the loader emitted.
    pub records_confirmed: u64,
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

/// The run history. Writes of a running run (start, heartbeat, counts, finish) are each one
/// transaction.
pub trait RunHistory {
    /// Records the start of a run (status `running`, this process's PID and host).
    fn begin_run(&self, run: &NewRun) -> Result<RunId>;

    /// Refreshes a run's heartbeat (runs without a lock; a lock's heartbeat covers its run).
    fn heartbeat_run(&self, run_id: &RunId) -> Result<()>;

    /// Sets the running totals of some streams (replacing earlier totals of the same stream).
    fn record_stream_stats(&self, run_id: &RunId, stats: &[StreamStats]) -> Result<()>;

    /// Records what a run sent to its loader and what the loader confirmed.
    fn record_run_counts(&self, run_id: &RunId, counts: &RunCounts) -> Result<()>;

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

    /// The counters of every run deleted so far (see [`RunHistory::delete_runs`]).
    fn pruned_totals(&self) -> Result<Vec<PrunedTotal>>;

    /// The highest classification label each stream ever ran with, sorted by stream (empty
    /// for a store that never recorded labels).
    fn highest_stream_labels(&self) -> Result<Vec<StreamLabel>>;

    /// Keeps the end of a run's log (at most [`LOG_TAIL_BYTES`], secrets already redacted as
    /// in the file) with the run, so a host without the file can show it.
    fn record_log_tail(&self, run_id: &RunId, tail: &str) -> Result<()>;

    /// The end of the run's log that [`RunHistory::record_log_tail`] kept.
    fn run_log_tail(&self, run_id: &RunId) -> Result<Option<String>>;
}

/// The most of a run's log the run history keeps (its last bytes).
pub const LOG_TAIL_BYTES: usize = 64 * 1024;

//! Running flows of a project in two steps: [`plan()`] resolves the plugins' settings once and
//! builds their specs, the stages, the catalog plan and the state id without writing anything
//! or starting any process; [`execute()`] takes the flow lock, records the run, drives the engine
//! and commits every STATE the loader confirms.
//!
//! `dsm run`, `dsm el`, `dsm invoke`, `dsm sync` and schedules (through [`crate::orchestrate`])
//! all come through here; nothing in this module prints.

pub mod blocks;
pub mod catalog;
pub mod command;
mod execute;
pub mod labels;
pub mod merge_stage;
pub mod plan;
mod spec;
pub mod stages;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub use blocks::{CommandStep, Flow};
pub use command::{CommandReport, StepReport, run_steps};
pub use execute::execute;
pub use plan::{FlowPlan, plan};
pub use spec::{SpecBuilder, plugin_env};

use crate::error::{Error, ErrorKind, Result};
use crate::pipeline::{CancelToken, RunStatus, StreamCounts};
use crate::project::{Environment, Plugin, PluginType, Project};
use crate::store::{RunId, StateId};

/// How a flow's STATE messages are written (`--state-strategy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StateStrategy {
    /// Merge when the extractor has a `select_filter` (a partial run), else overwrite.
    #[default]
    Auto,
    /// Deep-merge each STATE over the stored state.
    Merge,
    /// Each STATE replaces the stored state.
    Overwrite,
}

/// A file `dsm el --dump` prints instead of running (Meltano's dumpables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dump {
    /// The catalog the tap would get, after selection.
    Catalog,
    /// The state the tap would start from.
    State,
    /// The extractor's config file.
    ExtractorConfig,
    /// The loader's config file.
    LoaderConfig,
}

/// Options of one run, after flags and environment variables are merged.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Start without state and replace the stored state on the first commit.
    pub full_refresh: bool,
    /// Do not write state (Meltano's `--no-state-update`).
    pub no_state_update: bool,
    /// Take the flow lock even when another run holds it.
    pub force: bool,
    /// An explicit state id (`dsm el --state-id`); else built from the flow.
    pub state_id: Option<String>,
    /// Appended to the state id as `:{suffix}` (overrides the environment's).
    pub state_id_suffix: Option<String>,
    /// How STATE messages are committed.
    pub state_strategy: StateStrategy,
    /// Re-run discovery even when a cached catalog matches.
    pub refresh_catalog: bool,
    /// Resolve everything and report what would run, without starting any plugin.
    pub dry_run: bool,
    /// The run id to record (`--run-id`); a fresh one otherwise.
    pub run_id: Option<String>,
    /// Stop the run after this long (exit 124).
    pub timeout: Option<Duration>,
    /// What started the run: `cli`, `schedule`, `job:<name>` ...
    pub trigger: String,
    /// `--database-uri`.
    pub database_uri: Option<String>,
    /// A shared cancellation token; when `None` the runner cancels on SIGINT/SIGTERM itself.
    pub cancel: Option<CancelToken>,
    /// Replaces the extractor's `select_filter` (`dsm el --select/--exclude`, Meltano's
    /// `_select_filter` override); `None` keeps the project's.
    pub select_filter: Option<Vec<String>>,
    /// A user catalog that replaces the extractor's `catalog` and skips discovery.
    pub catalog: Option<PathBuf>,
    /// A state file the tap starts from instead of the stored state.
    pub state_file: Option<PathBuf>,
    /// Print this file and return without running anything.
    pub dump: Option<Dump>,
    /// With `dump`: show sensitive config values instead of masking them.
    pub dump_unsafe: bool,
    /// Show the live per-stream display while the run moves data (a terminal; one run at a
    /// time).
    pub live_progress: bool,
    /// A progress reporter of the caller's (`dsm serve` reads its counts for the event
    /// stream); takes the place of the live display.
    pub progress: Option<crate::progress::Progress>,
}

/// What one flow's run did.
#[derive(Debug)]
pub struct RunReport {
    /// The flow.
    pub flow: Flow,
    /// The state id the run read and wrote.
    pub state_id: StateId,
    /// The recorded run id (`None` for a dry run).
    pub run_id: Option<RunId>,
    /// How it ended.
    pub status: RunStatus,
    /// The failure, when `status` is not success.
    pub error: Option<Error>,
    /// Records and bytes per stream.
    pub streams: BTreeMap<String, StreamCounts>,
    /// STATE messages committed to the store.
    pub states_committed: u64,
    /// RECORD messages passed to the loader (after mappers and transforms).
    pub records_sent: u64,
    /// Records the loader confirmed (sent before the latest STATE it emitted back).
    pub records_confirmed: u64,
    /// Warnings for the user (e.g. the bookmark did not advance).
    pub warnings: Vec<String>,
    /// How long the pipeline ran.
    pub duration: Duration,
    /// The per-run log file with the plugins' stderr.
    pub log_path: Option<PathBuf>,
    /// For a dry run: the command lines that would run (no config values).
    pub plan: Vec<String>,
    /// With [`RunOptions::dump`]: the file's content; nothing ran.
    pub dump: Option<String>,
    /// Where the data went: the loader and the setting that names its destination
    /// (`` `target-sqlite` (database `output/warehouse.db`) ``), never a sensitive value.
    pub destination: Option<String>,
    /// When an earlier run of the flow succeeded and this one sent records again: why.
    pub resent: Option<String>,
    /// Things worth knowing that are not problems (a cached catalog was used).
    pub notes: Vec<String>,
}

impl RunReport {
    /// RECORD messages read from the extractor, over all streams.
    pub fn records_read(&self) -> u64 {
        self.streams.values().map(|c| c.records).sum()
    }

    /// The report of a flow that did not run (yet): success, nothing moved, nothing recorded.
    pub fn new(flow: &Flow, state_id: StateId) -> RunReport {
        RunReport {
            flow: flow.clone(),
            state_id,
            run_id: None,
            status: RunStatus::Success,
            error: None,
            streams: BTreeMap::new(),
            states_committed: 0,
            records_sent: 0,
            records_confirmed: 0,
            warnings: Vec::new(),
            duration: Duration::ZERO,
            log_path: None,
            plan: Vec::new(),
            dump: None,
            destination: None,
            resent: None,
            notes: Vec::new(),
        }
    }

    /// `Ok` on success, else the run's error with the kind matching its status (exit code).
    pub fn into_result(mut self) -> Result<RunReport> {
        let kind = match self.status {
            RunStatus::Success => return Ok(self),
            RunStatus::Failed => ErrorKind::Failed,
            RunStatus::Interrupted => ErrorKind::Interrupted,
            RunStatus::Terminated => ErrorKind::Terminated,
            RunStatus::TimedOut => ErrorKind::Timeout,
        };
        let err = self
            .error
            .take()
            .unwrap_or_else(|| Error::failed("the run failed"));
        Err(err.with_kind(kind))
    }
}

/// Expands job names, splits the blocks into flows and runs them one after another, stopping at
/// the first failure (whose report is the last one returned). A failed `plugin[:command]` step
/// is the `Err`; see [`run_steps`] for a report of every step.
pub fn run_blocks(
    project: &Project,
    env: Option<&Environment>,
    blocks: &[String],
    opts: &RunOptions,
) -> Result<Vec<RunReport>> {
    let mut reports = Vec::new();
    for step in run_steps(project, env, blocks, opts)? {
        match step {
            StepReport::Flow(r) => reports.push(*r),
            StepReport::Command(c) => {
                if let Some(e) = c.error {
                    return Err(e);
                }
            }
        }
    }
    Ok(reports)
}

/// The state id of a flow under `opts` (explicit id, else Meltano's, with the suffix).
pub fn state_id_for(env: Option<&Environment>, flow: &Flow, opts: &RunOptions) -> StateId {
    if let Some(id) = &opts.state_id {
        return StateId::new(id.clone());
    }
    let suffix = opts
        .state_id_suffix
        .clone()
        .or_else(|| env.and_then(|e| e.state_id_suffix.clone()));
    StateId::for_flow(
        env.map(|e| e.name.as_str()),
        &flow.extractor,
        &flow.loader,
        suffix.as_deref(),
    )
}

/// Runs one flow: [`plan()`], then [`execute()`] (`dsm el --dump extractor-config|loader-config`
/// only render the plan). Setup errors (unknown plugin, lock held → exit 3) are `Err`; a run
/// that started is reported in `Ok` whatever its outcome (see [`RunReport::into_result`]).
pub fn run_flow(
    project: &Project,
    env: Option<&Environment>,
    flow: &Flow,
    opts: &RunOptions,
) -> Result<RunReport> {
    let plan = plan::plan(project, env, flow, opts)?;
    if let Some(dump) = opts.dump
        && let Some(report) = plan.dump_config(dump, opts.dump_unsafe)
    {
        return Ok(report);
    }
    execute::execute(project, plan)
}

/// A mapper block: a mapper plugin's name, or the name of one of its mappings.
fn find_mapper<'a>(
    project: &'a Project,
    name: &str,
) -> Result<(&'a Plugin, Option<&'a crate::project::Mapping>)> {
    if let Ok(p) = project.find_plugin(name, Some(PluginType::Mappers)) {
        return Ok((p, None));
    }
    for p in project.plugins_of(PluginType::Mappers) {
        if let Some(m) = p.mappings.iter().find(|m| m.name == name) {
            return Ok((p, Some(m)));
        }
    }
    Err(Error::config(format!(
        "`{name}` is not a mapper or mapping of this project"
    )))
}

/// Runs `plugin[:command]` with `args` the way `meltano invoke` does (config file, plugin
/// environment, inherited stdio) and returns its exit code (128 + signal when it was killed).
pub fn invoke(
    project: &Project,
    env: Option<&Environment>,
    plugin_name: &str,
    args: &[String],
) -> Result<i32> {
    let step = match plugin_name.split_once(':') {
        Some((plugin, command)) => CommandStep {
            plugin: plugin.to_string(),
            command: Some(command.to_string()),
        },
        None => CommandStep {
            plugin: plugin_name.to_string(),
            command: None,
        },
    };
    // Data piped into a loader comes from nowhere dsm can label: fail closed.
    if let Ok(plugin) = project.find_plugin(&step.plugin, Some(PluginType::Loaders))
        && !std::io::IsTerminal::is_terminal(&std::io::stdin())
    {
        crate::classification::enforce_piped(project, plugin)?;
    }
    command::run(project, env, &step, args, command::CommandOutput::Inherit)
}

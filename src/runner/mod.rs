//! Running flows of a project: resolve plugins and settings, build the plugins' specs, take the
//! flow lock, record the run, drive the engine and commit every STATE the loader confirms.
//!
//! `dsm run`, `dsm el`, `dsm invoke` and (later) `dsm sync` and schedules all come through here;
//! nothing in this module prints.

pub mod blocks;
pub mod catalog;
pub mod command;
pub mod labels;
pub mod merge_stage;
mod spec;
pub mod stages;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

pub use blocks::{CommandStep, Flow};
pub use command::{CommandReport, StepReport, run_steps};
pub use spec::{BUILTINS, plugin_env, resolve_executable};

use crate::error::{Error, ErrorKind, Result};
use crate::pipeline::{self, CancelToken, Pipeline, PipelineOptions, RunStatus, StreamCounts};
use crate::plugin::{PluginRole, PluginSpec, RunDir, RunLog, runtime_base};
use crate::project::{Environment, Plugin, PluginType, Project};
use crate::settings::extras;
use crate::store::{self, NewRun, RunFinish, RunId, StateId, Store, StreamStats};

/// How a flow's STATE messages are written (`--state-strategy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
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

/// Runs one flow: setup errors (unknown plugin, lock held → exit 3) are `Err`; a run that
/// started is reported in `Ok` whatever its outcome (see [`RunReport::into_result`]).
pub fn run_flow(
    project: &Project,
    env: Option<&Environment>,
    flow: &Flow,
    opts: &RunOptions,
) -> Result<RunReport> {
    // `--timeout` bounds the whole run: discovery, then the pipeline in what is left.
    let deadline = opts.timeout.map(|t| std::time::Instant::now() + t);
    let extractor = project.find_plugin(&flow.extractor, Some(PluginType::Extractors))?;
    let loader = project.find_plugin(&flow.loader, Some(PluginType::Loaders))?;
    // Meltano's extras (`select`, `metadata`, `catalog`, `dialect`, ...) as they resolve from
    // the environment, `.env`, the environment's block, meltano.yml and the parent.
    let extractor = &extras::effective_plugin(project, env, extractor)?;
    let loader = &extras::effective_plugin(project, env, loader)?;
    let state_id = state_id_for(env, flow, opts);
    // `dsm el` overrides, applied as Meltano applies its `_select_filter`, `_catalog` and
    // `_state` extras: to the extractor itself, before anything is resolved.
    let overridden = with_overrides(extractor, opts)?;
    let extractor = overridden.as_ref().unwrap_or(extractor);

    let db = opts.database_uri.as_deref();
    if let Some(which @ (Dump::ExtractorConfig | Dump::LoaderConfig)) = opts.dump {
        let extractor_built =
            spec::build_in(project, env, extractor, PluginRole::Extractor, None, db)?;
        let built = match which {
            Dump::ExtractorConfig => extractor_built,
            _ => spec::build_after(
                project,
                env,
                loader,
                PluginRole::Loader,
                None,
                db,
                &extractor_built.shared_env,
            )?,
        };
        let config = if opts.dump_unsafe {
            built
                .spec
                .config
                .unwrap_or_else(|| Value::Object(serde_json::Map::new()))
        } else {
            built.masked_config
        };
        return Ok(dumped(flow, state_id, &config));
    }
    let extractor_built = spec::build_in(project, env, extractor, PluginRole::Extractor, None, db)?;
    let mut extractor_spec = extractor_built.spec;
    // Native transforms are compiled here, before any process (discovery included) starts.
    let mut flow_stages = stages::build(
        project,
        env,
        extractor,
        &mut extractor_spec,
        &flow.mappers,
        &extractor_built.shared_env,
        db,
    )?;
    let loader_built = spec::build_after(
        project,
        env,
        loader,
        PluginRole::Loader,
        None,
        db,
        &extractor_built.shared_env,
    )?;
    let destination = destination(&loader.name, &loader_built.masked_config);
    let mut loader_spec = loader_built.spec;
    // Meltano hands the loader the extractor's variables (never the sensitive ones here).
    for (k, v) in &extractor_built.shared_env {
        loader_spec
            .env
            .entry(k.clone())
            .or_insert_with(|| v.clone());
    }
    // No plugin inherits a variable that carries a secret of any plugin in the flow.
    let mut secret_vars: Vec<String> = std::iter::once(&extractor_spec)
        .chain(flow_stages.process_specs())
        .chain(std::iter::once(&loader_spec))
        .flat_map(|s| s.env_remove.iter().cloned())
        .collect();
    secret_vars.sort();
    secret_vars.dedup();
    // `.env` variables reach every plugin, but not one that carries another plugin's secret.
    let dotenv: Vec<String> = project.dotenv()?.into_iter().map(|(k, _)| k).collect();
    for s in std::iter::once(&mut extractor_spec)
        .chain(flow_stages.process_specs_mut())
        .chain(std::iter::once(&mut loader_spec))
    {
        s.env
            .retain(|k, _| !(dotenv.contains(k) && secret_vars.binary_search(k).is_ok()));
        s.env_remove = secret_vars
            .iter()
            .filter(|k| !s.env.contains_key(*k))
            .cloned()
            .collect();
    }
    // A plugin may print any secret of the flow (a tap echoing its config, a target the
    // extractor's variables): each plugin's stderr is redacted of them all.
    let mut forms: Vec<String> = std::iter::once(&extractor_spec)
        .chain(flow_stages.process_specs())
        .chain(std::iter::once(&loader_spec))
        .flat_map(|s| s.redact.iter().cloned())
        .collect();
    forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    forms.dedup();
    let forms = Arc::new(forms);
    for s in std::iter::once(&mut extractor_spec)
        .chain(flow_stages.process_specs_mut())
        .chain(std::iter::once(&mut loader_spec))
    {
        s.redact = forms.clone();
    }

    // State lives in the project's `file://` / `s3://` state backend when it names one.
    let store = crate::state_backend::open_for_project(opts.database_uri.as_deref(), project)?;
    // The lock comes before the state is read, so a run never starts from a bookmark that the
    // run finishing just before it has since moved.
    let run_id = match opts.run_id.as_deref() {
        Some(text) => RunId::parse(text)
            .map_err(|e| Error::config(e).hint("leave out `--run-id` and dsm makes one"))?,
        None => RunId::generate(),
    };
    let lock = if opts.dry_run || opts.dump.is_some() {
        None
    } else {
        Some(LockGuard {
            lock: store.acquire_lock(&state_id, Some(&run_id), opts.force)?,
            store: store.clone(),
        })
    };
    let base = runtime_base(&project.root().join(".dsm/run"));
    let run_dir = RunDir::create(&base)?;

    // The tap's arguments: catalog per capabilities, state only with the `state` capability.
    let catalog_flag = if extractor.has_capability("catalog") {
        Some("--catalog")
    } else if extractor.has_capability("properties") {
        Some("--properties")
    } else {
        None
    };
    let mut catalog_path = None;
    let mut notes = Vec::new();
    if let Some(flag) = catalog_flag {
        let (path, cached) = catalog::prepare_reporting(&catalog::CatalogInputs {
            project,
            plugin: extractor,
            spec: &extractor_spec,
            refresh: opts.refresh_catalog || opts.full_refresh,
            run_dir: &run_dir,
            deadline,
        })?;
        if cached {
            notes.push(format!(
                "using the catalog of `{}` discovered by an earlier run (its config, `schema` and `metadata` are unchanged); `--refresh-catalog` discovers it again",
                extractor.name
            ));
        }
        extractor_spec.args.push(flag.to_string());
        extractor_spec.args.push(path.display().to_string());
        catalog_path = Some(path);
    }
    // Classification: every stream's label, derived before anything but discovery has run;
    // a stream above the loader's clearance stops the flow here, before the loader starts.
    let catalog_value = match &catalog_path {
        Some(path) => Some(read_prepared_catalog(path)?),
        None => None,
    };
    let labels = labels::derive(project, extractor, &mut flow_stages, catalog_value.as_ref())?;
    let mut guard = None;
    if let Some(labels) = &labels
        && opts.dump != Some(Dump::Catalog)
    {
        let scheme = crate::classification::Scheme::of(project)?;
        if let Some(clearance) = crate::classification::clearance(project, &scheme, loader)? {
            crate::classification::enforce(labels, &loader.name, &clearance)?;
            // With streams not known before the run (`*`), every stream was checked already;
            // otherwise a stream the plan did not name is checked when it arrives.
            let all_checked = labels
                .iter()
                .any(|l| l.stream == crate::classification::OTHER_STREAMS);
            guard = (!all_checked).then(|| {
                labels::Guard::new(labels, scheme.highest(), clearance.label.rank, &loader.name)
            });
        }
    }
    if opts.dump == Some(Dump::Catalog) {
        let Some(path) = &catalog_path else {
            return Err(Error::config(format!(
                "extractor `{}` takes no catalog: it declares neither the `catalog` nor the `properties` capability",
                extractor.name
            ))
            .hint("declare the tap's capabilities in meltano.yml, e.g. `capabilities: [catalog, discover, state]`"));
        };
        let mut catalog = read_prepared_catalog(path)?;
        if let Some(labels) = &labels {
            annotate_catalog(&mut catalog, labels);
        }
        return Ok(dumped(flow, state_id, &catalog));
    }
    // Merged streams this extractor feeds: checked now, before any data moves.
    let merge = merge_stage::prepare(&merge_stage::MergeInputs {
        project,
        env,
        extractor: &flow.extractor,
        catalog: catalog_path.as_deref(),
        db_path: store::database_path(opts.database_uri.as_deref(), project.root())?,
        run_id: &run_id,
        run_dir: &run_dir,
    })?;
    // Whether this flow has synced before: then records sent again deserve a word.
    let synced_before = !store
        .list_runs(&store::RunFilter {
            state_id: Some(state_id.clone()),
            status: Some(store::RunStatus::Success),
            limit: Some(1),
        })?
        .is_empty();
    let mut start_state = None;
    if extractor.has_capability("state") && !opts.full_refresh {
        start_state = match &extractor.state {
            Some(path) => Some(read_state_file(
                &project.root().join(path),
                &extractor.name,
            )?),
            None => store
                .get_state(&state_id)?
                .and_then(|payload| payload.get("singer_state").cloned())
                .map(|s| s.to_string()),
        };
        if start_state.is_none() && !crate::state_backend::holds_state(project) {
            if let Some(place) = meltano_state_elsewhere(project) {
                return Err(refuse_empty_state(&state_id, place));
            }
            let meltano_db = store::meltano::default_path(project.root());
            if store::meltano::has_state(&meltano_db, &state_id)? {
                return Err(refuse_meltano_default(&state_id));
            }
        }
    }
    if opts.dump == Some(Dump::State) {
        let Some(text) = start_state else {
            let why = if opts.full_refresh {
                "`--full-refresh` starts without state".to_string()
            } else if !extractor.has_capability("state") {
                format!(
                    "extractor `{}` does not declare the `state` capability, so it never gets state",
                    extractor.name
                )
            } else {
                "no run of this flow has committed state yet (`dsm state list` shows the stored ids)"
                    .to_string()
            };
            return Err(
                Error::failed(format!("there is no state to dump for `{state_id}`")).hint(why),
            );
        };
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| Error::failed(format!("internal: the state is not JSON: {e}")))?;
        return Ok(dumped(flow, state_id, &value));
    }
    if let Some(text) = start_state {
        let path = run_dir
            .path()
            .join(format!("{}.state.json", extractor_spec.name));
        crate::files::write_private(&path, text.as_bytes())?;
        extractor_spec.args.push("--state".into());
        extractor_spec.args.push(path.display().to_string());
    }

    let report = |status, error, run_id, plan| RunReport {
        flow: flow.clone(),
        state_id: state_id.clone(),
        run_id,
        status,
        error,
        streams: BTreeMap::new(),
        states_committed: 0,
        warnings: Vec::new(),
        duration: Duration::ZERO,
        log_path: None,
        plan,
        dump: None,
        destination: None,
        resent: None,
        notes: notes.clone(),
    };
    if opts.dry_run {
        let command_line = |s: &PluginSpec| {
            let mut line = s.executable.display().to_string();
            if s.config.is_some() {
                line.push_str(" --config <config file>");
            }
            for a in &s.args {
                line.push(' ');
                line.push_str(a);
            }
            line
        };
        let mut plan = vec![command_line(&extractor_spec)];
        plan.extend(flow_stages.plan(command_line));
        plan.push(command_line(&loader_spec));
        return Ok(report(RunStatus::Success, None, None, plan));
    }

    let Some(lock) = lock else {
        return Err(Error::failed("internal: no flow lock outside a dry run"));
    };
    let log_path = project
        .root()
        .join(".dsm/logs")
        .join(format!("{}.log", run_id.as_str()));
    let plugins_of_run: Vec<store::PluginExit> = std::iter::once(&extractor_spec)
        .chain(flow_stages.process_specs())
        .chain(std::iter::once(&loader_spec))
        .map(|s| store::PluginExit {
            plugin: s.name.clone(),
            role: s.role.to_string(),
            exit_code: None,
        })
        .collect();
    let begun = store.begin_run(&NewRun {
        run_id: Some(run_id.clone()),
        state_id: Some(state_id.clone()),
        environment: env.map(|e| e.name.clone()),
        trigger: if opts.trigger.is_empty() {
            "cli".into()
        } else {
            opts.trigger.clone()
        },
        log_path: Some(log_path.clone()),
        plugins: plugins_of_run,
    });
    let run_id = begun?;
    if let Some(labels) = &labels
        && let Err(e) = store.record_stream_labels(&run_id, labels)
    {
        tracing::warn!(error = %e, "could not record the streams' classification labels");
    }
    let heartbeat = store::HeartbeatThread::start(
        store.clone(),
        Some(lock.lock.clone()),
        Some(run_id.clone()),
        store::liveness::HEARTBEAT_INTERVAL,
    );

    let log = RunLog::open(&log_path).ok();
    let progress = opts
        .live_progress
        .then(|| crate::progress::Progress::new(crate::progress::ProgressMode::Live));
    let mut options = PipelineOptions {
        timeout: deadline.map(|d| d.saturating_duration_since(std::time::Instant::now())),
        log,
        progress: progress.clone(),
        loader_takes_batches: loader.has_capability("batch"),
        ..PipelineOptions::default()
    };
    if let Some(size) = project.file().elt.as_ref().and_then(|e| e.buffer_size) {
        options.max_line = usize::try_from(size).unwrap_or(usize::MAX);
    }
    let (stages, quarantined) = flow_stages.into_stages(project.root(), run_id.as_str());
    let pipeline = Pipeline {
        extractor: extractor_spec,
        stages: stages
            .into_iter()
            .chain(
                merge
                    .as_ref()
                    .map(|m| crate::pipeline::Stage::Transform(m.transform())),
            )
            .chain(guard.map(|g| {
                crate::pipeline::Stage::Transform(
                    Box::new(g) as Box<dyn crate::transform::Transform>
                )
            }))
            .collect(),
        loader: loader_spec,
        options,
    };
    let partial = match opts.state_strategy {
        StateStrategy::Merge => true,
        StateStrategy::Overwrite => false,
        StateStrategy::Auto => extractor
            .select_filter
            .as_ref()
            .is_some_and(|f| !f.is_empty()),
    };
    let outcome = drive(
        pipeline,
        &run_dir,
        CommitTarget {
            store: store.clone(),
            state_id: state_id.clone(),
            run_id: run_id.clone(),
            partial,
            full_refresh: opts.full_refresh,
            enabled: !opts.no_state_update,
            merge: merge.as_ref(),
        },
        opts.cancel.clone(),
    )?;
    drop(heartbeat);
    if let Some(p) = &progress {
        // Stops the live display; its last state stays on screen above the summary line.
        p.finished(state_id.as_str(), outcome.status.as_str());
    }
    let merge_warnings = merge.map(|m| m.finish(&outcome)).unwrap_or_default();

    let stats: Vec<StreamStats> = outcome
        .streams
        .iter()
        .map(|(name, c)| StreamStats {
            stream: name.clone(),
            records: c.records,
            bytes: c.bytes,
        })
        .collect();
    if let Err(e) = store.record_stream_stats(&run_id, &stats) {
        tracing::warn!(error = %e, "could not record stream counts");
    }
    let mut warnings = outcome.warnings.clone();
    // The pipeline's generic no-STATE warning gives way to the one below, which names the
    // state id and is left out where it does not apply (a failed run, `--no-state-update`).
    warnings.retain(|w| !w.ends_with(crate::pipeline::NO_STATE_WARNING));
    warnings.extend(record_quarantine(store.as_ref(), &run_id, &quarantined));
    warnings.extend(merge_warnings);
    if outcome.status == RunStatus::Success
        && !outcome.state_advanced()
        && outcome.extractor_states > 0
        && !opts.no_state_update
    {
        warnings.push(format!(
            "loader `{}` emitted no STATE: the bookmark of `{state_id}` did not advance",
            flow.loader
        ));
    }
    let finish = RunFinish {
        status: match outcome.status {
            RunStatus::Success => store::RunStatus::Success,
            RunStatus::Failed | RunStatus::TimedOut => store::RunStatus::Failed,
            RunStatus::Interrupted | RunStatus::Terminated => store::RunStatus::Killed,
        },
        error: outcome.error.as_ref().map(render_error),
        plugins: outcome
            .exits
            .iter()
            .map(|x| store::PluginExit {
                plugin: x.name.clone(),
                role: x.role.to_string(),
                exit_code: x.code,
            })
            .collect(),
    };
    if let Err(e) = store.finish_run(&run_id, &finish) {
        tracing::warn!(error = %e, "could not record the end of the run");
    }
    let resent = (synced_before && outcome.status == RunStatus::Success)
        .then(|| {
            let state = store
                .get_state(&state_id)
                .ok()
                .flatten()
                .and_then(|payload| payload.get("singer_state").cloned());
            resent_note(&outcome.streams, state.as_ref())
        })
        .flatten();
    drop(lock);
    // The documented retention (`DSM_RUNS_RETENTION_KEEP` / `_MAX_AGE`) runs after every run.
    crate::registry::retention::auto_prune(
        store.as_ref(),
        &project.root().join(crate::project::PRIVATE_DIR),
        chrono::Utc::now(),
    );
    let mut error = outcome.error;
    if let Some(e) = error.take() {
        let mut e = e.hint(format!(
            "the plugins' output is in `{}`",
            log_path.display()
        ));
        if outcome.states_committed > 0 {
            e = e.hint(format!(
                "the bookmark of `{state_id}` advanced only as far as the loader confirmed ({} committed)",
                crate::printer::count(outcome.states_committed, "STATE message")
            ));
        }
        error = Some(e);
    }
    Ok(RunReport {
        flow: flow.clone(),
        state_id,
        run_id: Some(run_id),
        status: outcome.status,
        error,
        streams: outcome.streams,
        states_committed: outcome.states_committed,
        warnings,
        duration: outcome.duration,
        log_path: Some(log_path),
        plan: Vec::new(),
        dump: None,
        destination: Some(destination),
        resent,
        notes,
    })
}

/// The settings that name where a loader writes, most telling first.
const DESTINATION_SETTINGS: [&str; 12] = [
    "destination_path",
    "output_path",
    "database",
    "path",
    "file_path",
    "filepath",
    "folder",
    "dbname",
    "database_name",
    "bucket",
    "host",
    "account",
];

/// `` `target-sqlite` (database `output/warehouse.db`) ``: the loader, with the first of
/// [`DESTINATION_SETTINGS`] its config sets (from the masked config: never a secret).
fn destination(loader: &str, masked_config: &Value) -> String {
    let found = DESTINATION_SETTINGS.iter().find_map(|k| {
        let v = masked_config.get(*k)?;
        let text = match v {
            Value::String(s) if !s.is_empty() && s != crate::settings::MASK => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        Some(format!("{k} `{text}`"))
    });
    match found {
        Some(f) => format!("`{loader}` ({f})"),
        None => format!("`{loader}`"),
    }
}

/// Why a run sent records although the flow synced before: streams without a bookmark in the
/// saved state are full-table (every row, every run), and streams with one start again at the
/// bookmarked row, which replication keys compare with `>=` (at-least-once, as the Singer SDK).
fn resent_note(streams: &BTreeMap<String, StreamCounts>, state: Option<&Value>) -> Option<String> {
    let bookmarks = state.and_then(|s| s.get("bookmarks"));
    let has_bookmark = |stream: &str| {
        bookmarks
            .and_then(|b| b.get(stream))
            .is_some_and(|b| b.get("replication_key_value").is_some())
    };
    let (mut full, mut incremental) = (Vec::new(), Vec::new());
    for (stream, _) in streams.iter().filter(|(_, c)| c.records > 0) {
        if has_bookmark(stream) {
            incremental.push(format!("`{stream}`"));
        } else {
            full.push(format!("`{stream}`"));
        }
    }
    let mut parts = Vec::new();
    if !full.is_empty() {
        parts.push(format!(
            "{} full-table (no bookmark), so every run sends all rows",
            list_is(&full)
        ));
    }
    if !incremental.is_empty() {
        parts.push(format!(
            "{} incremental and {} again from the bookmarked row (`>=`: at-least-once)",
            list_is(&incremental),
            if incremental.len() == 1 {
                "starts"
            } else {
                "start"
            }
        ));
    }
    (!parts.is_empty()).then(|| format!("records sent again: {}", parts.join("; ")))
}

/// `` `a` is `` or `` `a`, `b` are ``.
fn list_is(names: &[String]) -> String {
    if names.len() == 1 {
        format!("{} is", names[0])
    } else {
        format!("{} are", names.join(", "))
    }
}

/// The extractor with `dsm el`'s `--select/--exclude`, `--catalog` and `--state` laid over it;
/// `None` when there are none.
fn with_overrides(extractor: &Plugin, opts: &RunOptions) -> Result<Option<Plugin>> {
    if opts.select_filter.is_none() && opts.catalog.is_none() && opts.state_file.is_none() {
        return Ok(None);
    }
    let mut plugin = extractor.clone();
    if let Some(filter) = &opts.select_filter {
        plugin.select_filter = Some(filter.clone());
    }
    if let Some(path) = &opts.catalog {
        if !plugin.has_capability("catalog") && !plugin.has_capability("properties") {
            return Err(Error::config(format!(
                "extractor `{}` takes no catalog: it declares neither the `catalog` nor the `properties` capability",
                plugin.name
            ))
            .hint("declare the tap's capabilities in meltano.yml, e.g. `capabilities: [catalog, discover, state]`, or leave out `--catalog`"));
        }
        plugin.catalog = Some(path.display().to_string());
    }
    if let Some(path) = &opts.state_file {
        if !plugin.has_capability("state") {
            return Err(Error::config(format!(
                "extractor `{}` takes no state: it does not declare the `state` capability",
                plugin.name
            ))
            .hint(
                "declare it in meltano.yml (`capabilities: [..., state]`), or leave out `--state`",
            ));
        }
        plugin.state = Some(path.display().to_string());
    }
    Ok(Some(plugin))
}

/// The catalog file prepared for the tap.
fn read_prepared_catalog(path: &std::path::Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)?;
    serde_json::from_str(&text)
        .map_err(|e| Error::failed(format!("internal: the prepared catalog is not JSON: {e}")))
}

/// Adds each stream's classification label to its stream-level metadata as
/// `dsm-classification` (for `dsm el --dump catalog`; taps ignore keys they do not know).
fn annotate_catalog(catalog: &mut Value, labels: &[crate::classification::StreamLabel]) {
    let other = labels
        .iter()
        .find(|l| l.stream == crate::classification::OTHER_STREAMS);
    let Some(streams) = catalog.get_mut("streams").and_then(Value::as_array_mut) else {
        return;
    };
    for entry in streams {
        let name = entry
            .get("stream")
            .or_else(|| entry.get("tap_stream_id"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let Some(label) = labels.iter().find(|l| l.stream == name).or(other) else {
            continue;
        };
        let Some(metadata) = entry.get_mut("metadata").and_then(Value::as_array_mut) else {
            continue;
        };
        let root = metadata.iter_mut().find(|m| {
            m.get("breadcrumb")
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty)
        });
        if let Some(Value::Object(md)) = root.and_then(|m| m.get_mut("metadata")) {
            md.insert(
                "dsm-classification".into(),
                Value::String(label.label.clone()),
            );
        }
    }
}

/// Reads a state file given with `--state` or the extractor's `state`, checking it is JSON.
fn read_state_file(path: &std::path::Path, extractor: &str) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::config(format!(
            "could not read the state file `{}` of extractor `{extractor}`: {e}",
            path.display()
        ))
        .hint("give the path of a Singer state file, e.g. one written by `dsm state get ID`")
    })?;
    if let Err(e) = serde_json::from_str::<Value>(&text) {
        return Err(Error::config(format!(
            "the state file `{}` is not valid JSON (line {}, column {}): {e}",
            path.display(),
            e.line(),
            e.column()
        ))
        .hint("a state file holds one JSON object, such as `{\"bookmarks\": {...}}`"));
    }
    Ok(text)
}

/// Where Meltano keeps this project's state, when that is not the default system database:
/// `MELTANO_STATE_BACKEND_URI` (process environment, then `.env`) or `state_backend.uri` other
/// than `systemdb`, else `MELTANO_DATABASE_URI` or `database_uri`, the order in which Meltano
/// reads them. Returns the key and where it was found; never its value (a URI can carry a
/// password).
fn meltano_state_elsewhere(project: &Project) -> Option<(&'static str, &'static str)> {
    let dotenv = project.dotenv().unwrap_or_default();
    let from_env = |key: &str| {
        std::env::var(key)
            .ok()
            .map(|v| (v, "in the environment"))
            .or_else(|| {
                dotenv
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| (v.clone(), "in .env"))
            })
            .filter(|(v, _)| !v.trim().is_empty())
    };
    let elsewhere = |uri: &str| uri.trim() != "systemdb";
    if let Some((uri, place)) = from_env("MELTANO_STATE_BACKEND_URI") {
        // The variable wins over meltano.yml, also when it says `systemdb`.
        return elsewhere(&uri).then_some(("MELTANO_STATE_BACKEND_URI", place));
    }
    let file = project.file();
    let backend = file
        .state_backend
        .as_ref()
        .and_then(|b| b.get("uri"))
        .filter(|uri| uri.as_str().map(str::trim) != Some("systemdb"));
    if backend.is_some() {
        return Some(("state_backend.uri", "in meltano.yml"));
    }
    if let Some((_, place)) = from_env("MELTANO_DATABASE_URI") {
        return Some(("MELTANO_DATABASE_URI", place));
    }
    file.database_uri
        .is_some()
        .then_some(("database_uri", "in meltano.yml"))
}

/// The error for a flow that would start from empty state while Meltano keeps its bookmark.
fn refuse_empty_state(state_id: &StateId, (key, place): (&str, &str)) -> Error {
    Error::config(format!(
        "dsm has no state for `{state_id}` and will not start the flow from empty state"
    ))
    .detail(format!(
        "the project keeps its Meltano state elsewhere (`{key}` {place})"
    ))
    .hint("import Meltano's state first: `meltano state export > state.json`, then `dsm state import state.json`")
    .hint("or read a Meltano system database directly: `dsm state import-meltano [PATH]`")
    .hint("to start from empty state on purpose, run with `--full-refresh`")
}

/// The error for a flow that would start from empty state while Meltano's default system
/// database (`.meltano/meltano.db`) has its bookmark.
fn refuse_meltano_default(state_id: &StateId) -> Error {
    Error::config(format!(
        "dsm has no state for `{state_id}` and will not start the flow from empty state"
    ))
    .detail(
        "Meltano's system database `.meltano/meltano.db` has state for it (Meltano ran this flow)",
    )
    .hint("import Meltano's state first: `dsm state import-meltano`")
    .hint("to start from empty state on purpose, run with `--full-refresh`")
}

/// The report of `--dump`: the value as pretty JSON; nothing ran.
fn dumped(flow: &Flow, state_id: StateId, value: &Value) -> RunReport {
    RunReport {
        flow: flow.clone(),
        state_id,
        run_id: None,
        status: RunStatus::Success,
        error: None,
        streams: BTreeMap::new(),
        states_committed: 0,
        warnings: Vec::new(),
        duration: Duration::ZERO,
        log_path: None,
        plan: Vec::new(),
        destination: None,
        resent: None,
        dump: Some(
            serde_json::to_string_pretty(value).expect("serialising a JSON value cannot fail"),
        ),
        notes: Vec::new(),
    }
}

/// Lists the run's dead-letter files in the run history; a warning for each.
fn record_quarantine(
    store: &dyn Store,
    run_id: &RunId,
    quarantined: &stages::Quarantined,
) -> Vec<String> {
    // Every record validation dropped is counted and reported.
    let mut warnings: Vec<String> = quarantined
        .skipped()
        .iter()
        .map(|(stream, n)| {
            format!(
                "{n} record(s) of stream `{stream}` failed validation and were dropped (policy `skip`)"
            )
        })
        .collect();
    for stream in quarantined.unmatched() {
        warnings.push(format!(
            "the extractor's validation policy names stream `{stream}`, which this run did not send: check the name in `annotations.dsm.validation.streams`"
        ));
    }
    let artifacts = quarantined.artifacts();
    if artifacts.is_empty() {
        return warnings;
    }
    if let Err(e) = store.record_run_artifacts(run_id, &artifacts) {
        tracing::warn!(error = %e, "could not record the quarantine files");
    }
    warnings.extend(artifacts.iter().map(|a| {
        format!(
            "{} of stream `{}` failed validation and {} quarantined in `{}`",
            crate::printer::count(a.records, "record"),
            a.stream.as_deref().unwrap_or("?"),
            if a.records == 1 { "was" } else { "were" },
            a.path.display()
        )
    }));
    warnings
}

fn render_error(e: &Error) -> String {
    let mut s = e.message().to_string();
    for d in e.details() {
        s.push('\n');
        s.push_str(d);
    }
    s
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

/// Releases a flow lock when dropped (on every path out of a run).
struct LockGuard {
    store: Arc<dyn Store>,
    lock: store::FlowLock,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Err(e) = self.store.release_lock(&self.lock) {
            tracing::warn!(error = %e, "could not release the flow lock");
        }
    }
}

struct CommitTarget<'a> {
    store: Arc<dyn Store>,
    state_id: StateId,
    run_id: RunId,
    partial: bool,
    full_refresh: bool,
    enabled: bool,
    /// Merge stages learn what the loader confirmed (before the bookmark is written).
    merge: Option<&'a merge_stage::FlowMerge>,
}

/// Saves what the loader confirms: every STATE it prints becomes the flow's bookmark.
struct StateCommitter<'a> {
    target: CommitTarget<'a>,
    /// Whether a full refresh already cleared the stored state.
    cleared: bool,
}

impl pipeline::StateSink for StateCommitter<'_> {
    fn on_state(&mut self, state: &Value) -> Result<()> {
        self.on_states(std::slice::from_ref(state))
    }

    fn on_states(&mut self, states: &[Value]) -> Result<()> {
        let target = &self.target;
        if let Some(m) = target.merge {
            for state in states {
                m.on_loader_state(state)?;
            }
        }
        if !target.enabled {
            return Ok(());
        }
        if target.full_refresh && !target.partial && !self.cleared {
            // A full refresh replaces whatever was stored, partial half included. A partial
            // one (`--select`, or `--state-strategy merge`) merges over it instead, as in
            // Meltano, so the bookmarks of the streams it left out survive.
            target.store.clear_state(&target.state_id)?;
            self.cleared = true;
        }
        let values: Vec<String> = states.iter().map(Value::to_string).collect();
        let outcomes = target.store.commit_states(
            &target.state_id,
            &values,
            target.partial,
            Some(&target.run_id),
        )?;
        for outcome in outcomes {
            if let store::CommitOutcome::Ignored(reason) = outcome {
                tracing::warn!(state_id = %target.state_id, ?reason, "a STATE message was not stored");
            }
        }
        Ok(())
    }
}

fn drive(
    pipeline: Pipeline,
    run_dir: &RunDir,
    target: CommitTarget<'_>,
    cancel: Option<CancelToken>,
) -> Result<pipeline::Outcome> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut sink = StateCommitter {
        target,
        cleared: false,
    };
    Ok(runtime.block_on(async {
        let (token, signals) = match cancel {
            Some(t) => (t, None),
            None => {
                let t = CancelToken::new();
                let h = t.cancel_on_signals().ok();
                (t, h)
            }
        };
        let outcome = pipeline::run(pipeline, run_dir, &mut sink, &token).await;
        if let Some(h) = signals {
            h.abort();
        }
        outcome
    }))
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

/// The spec a plugin would run with (for `sync` and tests): executable, env, config.
pub fn plugin_spec(
    project: &Project,
    env: Option<&Environment>,
    plugin: &Plugin,
    role: PluginRole,
) -> Result<PluginSpec> {
    Ok(spec::build(project, env, plugin, role, None)?.spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn counts(records: u64) -> StreamCounts {
        StreamCounts {
            records,
            ..StreamCounts::default()
        }
    }

    // Issue 30: a second `dsm sync` sent records again without saying why.
    #[test]
    fn resent_note_names_full_table_and_incremental_streams() {
        let streams: BTreeMap<String, StreamCounts> = [
            ("users".to_string(), counts(3)),
            ("orders".to_string(), counts(1)),
            ("empty".to_string(), counts(0)),
        ]
        .into();
        let state =
            json!({"bookmarks": {"orders": {"replication_key": "id", "replication_key_value": 7}}});
        assert_eq!(
            resent_note(&streams, Some(&state)).unwrap(),
            "records sent again: `users` is full-table (no bookmark), so every run sends all rows; \
             `orders` is incremental and starts again from the bookmarked row (`>=`: at-least-once)"
        );
        assert_eq!(
            resent_note(&[("e".to_string(), counts(0))].into(), None),
            None
        );
    }

    #[test]
    fn destination_names_the_loader_and_where_it_writes_never_a_secret() {
        assert_eq!(
            destination("target-sqlite", &json!({"database": "output/warehouse.db"})),
            "`target-sqlite` (database `output/warehouse.db`)"
        );
        assert_eq!(
            destination(
                "target-pg",
                &json!({"host": crate::settings::MASK, "dbname": "dw"})
            ),
            "`target-pg` (dbname `dw`)"
        );
        assert_eq!(destination("target-x", &json!({})), "`target-x`");
    }
}

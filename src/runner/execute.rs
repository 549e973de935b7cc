//! Running a planned flow: take the flow lock, prepare the tap's catalog and start state,
//! record the run, drive the pipeline, commit every STATE the loader confirms, and record how
//! the run ended. `dsm el --dump catalog|state` and `--dry-run` stop on the way, before the run
//! is recorded or any plugin but discovery starts.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::plan::{CatalogPlan, FlowPlan, dumped};
use super::{Dump, RunReport, StateStrategy, catalog, labels, merge_stage, stages};
use crate::error::{Error, Result};
use crate::pipeline::{self, CancelToken, Pipeline, PipelineOptions, RunStatus, StreamCounts};
use crate::plugin::{RunDir, RunLog, runtime_base};
use crate::project::Project;
use crate::store::{self, NewRun, RunFinish, RunId, StateId, Store, StreamStats};

/// Runs a planned flow. Setup errors (the lock held → exit 3, a stream above the loader's
/// clearance) are `Err`; a run that started is reported in `Ok` whatever its outcome (see
/// [`RunReport::into_result`]).
pub fn execute(project: &Project, mut plan: FlowPlan<'_>) -> Result<RunReport> {
    let opts = plan.options.clone();
    // State lives in the project's `file://` / `s3://` state backend when it names one.
    let store = crate::state_backend::open_for_project(opts.database_uri.as_deref(), project)?;
    let run_id = match opts.run_id.as_deref() {
        Some(text) => RunId::parse(text)
            .map_err(|e| Error::config(e).hint("leave out `--run-id` and dsm makes one"))?,
        None => RunId::generate(),
    };
    // The lock comes before the state is read, so a run never starts from a bookmark that the
    // run finishing just before it has since moved.
    let lock = if opts.dry_run || opts.dump.is_some() {
        None
    } else {
        let before = store.lock_holder(&plan.state_id).ok().flatten();
        let lock = LockGuard {
            lock: store.acquire_lock(&plan.state_id, Some(&run_id), opts.force)?,
            store: store.clone(),
        };
        if let Some(gone) = before {
            stop_leftovers(&gone);
        }
        Some(lock)
    };
    let base = runtime_base(&project.root().join(".dsm/run"));
    let run_dir = RunDir::create(&base)?;

    let prepared = prepare_catalog(project, &mut plan, &run_dir)?;
    if opts.dump == Some(Dump::Catalog) {
        return dump_catalog(&plan, &prepared);
    }
    // Merged streams this extractor feeds: checked now, before any data moves.
    let merge = merge_stage::prepare(&merge_stage::MergeInputs {
        project,
        specs: &plan.specs,
        extractor: &plan.flow.extractor,
        catalog: prepared.path.as_deref(),
        db: store::locate(opts.database_uri.as_deref(), project.root())?,
        run_id: &run_id,
        lease: lock.as_ref().map(|_| plan.state_id.as_str()),
        run_dir: &run_dir,
    })?;
    // Whether this flow has synced before: then records sent again deserve a word.
    let synced_before = !store
        .list_runs(&store::RunFilter {
            state_id: Some(plan.state_id.clone()),
            status: Some(store::RunStatus::Success),
            limit: Some(1),
        })?
        .is_empty();
    let start_state = start_state(project, &plan, store.as_ref())?;
    if opts.dump == Some(Dump::State) {
        return dump_state(&plan, start_state);
    }
    if let Some(text) = start_state {
        let path = run_dir
            .path()
            .join(format!("{}.state.json", plan.extractor_spec.name));
        crate::files::write_private(&path, text.as_bytes())?;
        plan.extractor_spec.args.push("--state".into());
        plan.extractor_spec.args.push(path.display().to_string());
    }
    if opts.dry_run {
        let mut report = RunReport::new(&plan.flow, plan.state_id.clone());
        report.plan = plan.command_lines();
        report.notes = prepared.notes;
        return Ok(report);
    }
    let Some(lock) = lock else {
        return Err(Error::failed("internal: no flow lock outside a dry run"));
    };
    let webhook_source = hand_over_webhooks(project, &mut plan, store.as_ref(), &run_dir)?;
    let started = Started {
        store,
        lock,
        run_id,
        run_dir,
        merge,
        synced_before,
        webhook_source,
    };
    run(project, plan, prepared, started)
}

/// The catalog prepared for the tap, the streams' classification labels, and what the run
/// checks against the loader's clearance.
struct PreparedCatalog {
    path: Option<std::path::PathBuf>,
    labels: Option<Vec<crate::classification::StreamLabel>>,
    guard: Option<labels::Guard>,
    notes: Vec<String>,
}

/// Prepares the tap's catalog (the plugin's own file, a cached discovery, or discovery now),
/// derives every stream's label and, unless the catalog is only dumped, stops the flow here
/// when a stream is above the loader's clearance, before the loader starts.
fn prepare_catalog(
    project: &Project,
    plan: &mut FlowPlan<'_>,
    run_dir: &RunDir,
) -> Result<PreparedCatalog> {
    let mut path = None;
    let mut notes = Vec::new();
    if let CatalogPlan::Prepare { flag, refresh } = plan.catalog {
        let (prepared, cached) = catalog::prepare_reporting(&catalog::CatalogInputs {
            project,
            plugin: &plan.extractor,
            spec: &plan.extractor_spec,
            refresh,
            run_dir,
            deadline: plan.deadline,
        })?;
        if cached {
            notes.push(format!(
                "using the catalog of `{}` discovered by an earlier run (its config, `schema` and `metadata` are unchanged); `--refresh-catalog` discovers it again",
                plan.extractor.name
            ));
        }
        plan.extractor_spec.args.push(flag.to_string());
        plan.extractor_spec
            .args
            .push(prepared.display().to_string());
        path = Some(prepared);
    }
    let catalog_value = match &path {
        Some(path) => Some(read_prepared_catalog(path)?),
        None => None,
    };
    let labels = labels::derive(
        project,
        &plan.extractor,
        &mut plan.stages,
        catalog_value.as_ref(),
    )?;
    let mut guard = None;
    if let Some(labels) = &labels
        && plan.options.dump != Some(Dump::Catalog)
    {
        let scheme = crate::classification::Scheme::of(project)?;
        if let Some(clearance) = crate::classification::clearance(project, &scheme, &plan.loader)? {
            crate::classification::enforce(labels, &plan.loader.name, &clearance)?;
            // With streams not known before the run (`*`), every stream was checked already;
            // otherwise a stream the plan did not name is checked when it arrives.
            let all_checked = labels
                .iter()
                .any(|l| l.stream == crate::classification::OTHER_STREAMS);
            guard = (!all_checked).then(|| {
                labels::Guard::new(
                    labels,
                    scheme.highest(),
                    clearance.label.rank,
                    &plan.loader.name,
                )
            });
        }
    }
    Ok(PreparedCatalog {
        path,
        labels,
        guard,
        notes,
    })
}

/// `dsm el --dump catalog`: the catalog the tap would get, each stream's label in its
/// metadata.
fn dump_catalog(plan: &FlowPlan<'_>, prepared: &PreparedCatalog) -> Result<RunReport> {
    let Some(path) = &prepared.path else {
        return Err(Error::config(format!(
            "extractor `{}` takes no catalog: it declares neither the `catalog` nor the `properties` capability",
            plan.extractor.name
        ))
        .hint("declare the tap's capabilities in meltano.yml, e.g. `capabilities: [catalog, discover, state]`"));
    };
    let mut catalog = read_prepared_catalog(path)?;
    if let Some(labels) = &prepared.labels {
        annotate_catalog(&mut catalog, labels);
    }
    Ok(dumped(&plan.flow, plan.state_id.clone(), &catalog))
}

/// The state the tap starts from: the extractor's `state` file, else the stored state; none
/// with `--full-refresh` or without the `state` capability. Refuses to start from empty state
/// while Meltano keeps this flow's bookmark elsewhere.
fn start_state(
    project: &Project,
    plan: &FlowPlan<'_>,
    store: &dyn Store,
) -> Result<Option<String>> {
    let extractor = &plan.extractor;
    if !extractor.has_capability("state") || plan.options.full_refresh {
        return Ok(None);
    }
    let state = match &extractor.state {
        Some(path) => Some(read_state_file(
            &project.root().join(path),
            &extractor.name,
        )?),
        None => store
            .get_state(&plan.state_id)?
            .and_then(|payload| payload.get("singer_state").cloned())
            .map(|s| s.to_string()),
    };
    if state.is_none() && !crate::state_backend::holds_state(project) {
        if let Some(place) = meltano_state_elsewhere(project, plan.specs.inputs()) {
            return Err(refuse_empty_state(&plan.state_id, place));
        }
        let meltano_db = store::meltano::default_path(project.root());
        if store::meltano::has_state(&meltano_db, &plan.state_id)? {
            return Err(refuse_meltano_default(&plan.state_id));
        }
    }
    Ok(state)
}

/// `dsm el --dump state`: the state the tap would start from.
fn dump_state(plan: &FlowPlan<'_>, state: Option<String>) -> Result<RunReport> {
    let state_id = &plan.state_id;
    let Some(text) = state else {
        let why = if plan.options.full_refresh {
            "`--full-refresh` starts without state".to_string()
        } else if !plan.extractor.has_capability("state") {
            format!(
                "extractor `{}` does not declare the `state` capability, so it never gets state",
                plan.extractor.name
            )
        } else {
            "no run of this flow has committed state yet (`dsm state list` shows the stored ids)"
                .to_string()
        };
        return Err(Error::failed(format!("there is no state to dump for `{state_id}`")).hint(why));
    };
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| Error::failed(format!("internal: the state is not JSON: {e}")))?;
    Ok(dumped(&plan.flow, state_id.clone(), &value))
}

/// For an extractor of type `webhook`: marks events an earlier run's loader confirmed, prunes
/// consumed ones past their retention, writes the pending ones to a private file in the run's
/// folder and gives the tap its path as `events_file` (and not the signing secret, which only
/// the server needs). Returns the source's name when it is one.
fn hand_over_webhooks(
    project: &Project,
    plan: &mut FlowPlan<'_>,
    store: &dyn Store,
    run_dir: &RunDir,
) -> Result<Option<String>> {
    let info = crate::registry::catalog::describe(project, &plan.extractor);
    if info.source_type != crate::registry::catalog::SourceType::Webhook {
        return Ok(None);
    }
    let source = plan.extractor.name.clone();
    let retention = crate::webhooks::Retention::of(&plan.extractor)?;
    let bookmark = store
        .get_state(&plan.state_id)?
        .and_then(|payload| payload.get("singer_state").cloned());
    crate::webhooks::catch_up(
        store,
        &source,
        bookmark.as_ref(),
        &retention,
        chrono::Utc::now(),
    )?;
    let (path, count) = crate::webhooks::write_pending(store, &source, run_dir.path())?;
    tracing::info!(source = %source, events = count, "pending webhook events handed to the tap");
    let config = plan
        .extractor_spec
        .config
        .get_or_insert_with(|| Value::Object(Default::default()));
    if let Some(obj) = config.as_object_mut() {
        obj.insert(
            crate::webhooks::EVENTS_FILE_KEY.into(),
            Value::String(path.display().to_string()),
        );
        obj.remove(crate::webhooks::SECRET_SETTING);
    }
    Ok(Some(source))
}

/// What a run holds once it is set to start.
struct Started {
    store: Arc<dyn Store>,
    lock: LockGuard,
    run_id: RunId,
    run_dir: RunDir,
    merge: Option<merge_stage::FlowMerge>,
    synced_before: bool,
    /// The extractor's name when it is a webhook source (its events are consumed as the
    /// loader confirms them).
    webhook_source: Option<String>,
}

/// Records the run, drives the pipeline with the state committer, and records how it ended.
fn run(
    project: &Project,
    plan: FlowPlan<'_>,
    prepared: PreparedCatalog,
    started: Started,
) -> Result<RunReport> {
    let Started {
        store,
        lock,
        run_id,
        run_dir,
        merge,
        synced_before,
        webhook_source,
    } = started;
    let opts = &plan.options;
    let state_id = plan.state_id.clone();
    // A webhook source sends each event once (its bookmark is not `>=`): no resent note.
    let is_webhook = webhook_source.is_some();
    let log_path = project
        .root()
        .join(".dsm/logs")
        .join(format!("{}.log", run_id.as_str()));
    let run_id = record_start(&plan, store.as_ref(), &run_id, &log_path, &prepared)?;
    let heartbeat = store::HeartbeatThread::start(
        store.clone(),
        Some(lock.lock.clone()),
        Some(run_id.clone()),
        store.heartbeat_interval(),
    );

    let log = RunLog::open(&log_path).ok();
    let progress = opts.progress.clone().or_else(|| {
        opts.live_progress
            .then(|| crate::progress::Progress::new(crate::progress::ProgressMode::Live))
    });
    let mut options = PipelineOptions {
        timeout: plan
            .deadline
            .map(|d| d.saturating_duration_since(std::time::Instant::now())),
        log,
        progress: progress.clone(),
        loader_takes_batches: plan.loader.has_capability("batch"),
        owner_run: Some(run_id.as_str().to_owned()),
        ..PipelineOptions::default()
    };
    if let Some(size) = project.file().elt.as_ref().and_then(|e| e.buffer_size) {
        options.max_line = usize::try_from(size).unwrap_or(usize::MAX);
    }
    let partial = match opts.state_strategy {
        StateStrategy::Merge => true,
        StateStrategy::Overwrite => false,
        StateStrategy::Auto => plan
            .extractor
            .select_filter
            .as_ref()
            .is_some_and(|f| !f.is_empty()),
    };
    let (stages, quarantined) = plan.stages.into_stages(project.root(), run_id.as_str());
    let pipeline = Pipeline {
        extractor: plan.extractor_spec,
        stages: stages
            .into_iter()
            .chain(
                merge
                    .as_ref()
                    .map(|m| crate::pipeline::Stage::Transform(m.transform())),
            )
            .chain(prepared.guard.map(|g| {
                crate::pipeline::Stage::Transform(
                    Box::new(g) as Box<dyn crate::transform::Transform>
                )
            }))
            .collect(),
        loader: plan.loader_spec,
        options,
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
            webhook_source,
        },
        opts.cancel.clone(),
    )?;
    drop(heartbeat);
    if let Some(p) = &progress {
        // Stops the live display; its last state stays on screen above the summary line.
        p.finished(state_id.as_str(), outcome.status.as_str());
    }
    let merge_warnings = merge.map(|m| m.finish(&outcome)).unwrap_or_default();
    let mut warnings = record_end(store.as_ref(), &run_id, &outcome, &quarantined);
    if let Some(tail) = log_tail(&log_path)
        && let Err(e) = store.record_log_tail(&run_id, &tail)
    {
        tracing::warn!(error = %e, "could not keep the end of the run's log");
    }
    warnings.extend(merge_warnings);
    notify_end(
        project,
        &store,
        &plan.flow.extractor,
        &state_id,
        &run_id,
        &outcome,
        synced_before,
    );
    if outcome.status == RunStatus::Success
        && !outcome.state_advanced()
        && outcome.extractor_states > 0
        && !opts.no_state_update
    {
        warnings.push(format!(
            "loader `{}` emitted no STATE: the bookmark of `{state_id}` did not advance",
            plan.flow.loader
        ));
    }
    let resent = (synced_before && !is_webhook && outcome.status == RunStatus::Success)
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
        run_id: Some(run_id),
        status: outcome.status,
        error,
        streams: outcome.streams,
        states_committed: outcome.states_committed,
        records_sent: outcome.records_sent,
        records_confirmed: outcome.records_confirmed,
        warnings,
        duration: outcome.duration,
        log_path: Some(log_path),
        destination: Some(plan.destination),
        resent,
        notes: prepared.notes,
        ..RunReport::new(&plan.flow, state_id)
    })
}

/// Records the start of the run (its plugins, trigger, log file) and its streams' labels.
fn record_start(
    plan: &FlowPlan<'_>,
    store: &dyn Store,
    run_id: &RunId,
    log_path: &std::path::Path,
    prepared: &PreparedCatalog,
) -> Result<RunId> {
    let opts = &plan.options;
    let plugins_of_run: Vec<store::PluginExit> = std::iter::once(&plan.extractor_spec)
        .chain(plan.stages.process_specs())
        .chain(std::iter::once(&plan.loader_spec))
        .map(|s| store::PluginExit {
            plugin: s.name.clone(),
            role: s.role.to_string(),
            exit_code: None,
        })
        .collect();
    let run_id = store.begin_run(&NewRun {
        run_id: Some(run_id.clone()),
        state_id: Some(plan.state_id.clone()),
        environment: plan.specs.inputs().environment.map(|e| e.name.clone()),
        trigger: if opts.trigger.is_empty() {
            "cli".into()
        } else {
            opts.trigger.clone()
        },
        log_path: Some(log_path.to_path_buf()),
        plugins: plugins_of_run,
    })?;
    if let Some(labels) = &prepared.labels
        && let Err(e) = store.record_stream_labels(&run_id, labels)
    {
        tracing::warn!(error = %e, "could not record the streams' classification labels");
    }
    Ok(run_id)
}

/// Tells the project's notification receivers (in the background) what the end of a run
/// means for its source: `first_sync_finished` for the flow's first successful run,
/// `source_error` for a failed run after a good one (not again while the flow keeps failing).
fn notify_end(
    project: &Project,
    store: &Arc<dyn Store>,
    source: &str,
    state_id: &store::StateId,
    run_id: &RunId,
    outcome: &pipeline::Outcome,
    synced_before: bool,
) {
    use crate::notify::{Event, emit};
    match outcome.status {
        RunStatus::Success if !synced_before => {
            let records = outcome.streams.values().map(|c| c.records).sum();
            emit(
                project,
                store.clone(),
                Event::first_sync_finished(source, run_id.as_str(), records),
            );
        }
        RunStatus::Failed | RunStatus::TimedOut => {
            let recent = store
                .list_runs(&store::RunFilter {
                    state_id: Some(state_id.clone()),
                    status: None,
                    limit: Some(3),
                })
                .unwrap_or_default();
            let failed_before = recent
                .iter()
                .find(|r| r.run_id != *run_id && r.status != store::RunStatus::Running)
                .is_some_and(|r| r.status != store::RunStatus::Success);
            if !failed_before {
                let error = outcome
                    .error
                    .as_ref()
                    .map_or_else(|| "the run failed".to_owned(), render_error);
                emit(
                    project,
                    store.clone(),
                    Event::source_error(source, &error, Some(run_id.as_str())),
                );
            }
        }
        _ => {}
    }
}

/// The end of a run's log file (its last [`store::LOG_TAIL_BYTES`], from the start of a line),
/// which the run history keeps for hosts without the file; `None` when there is no file. The
/// file holds plugins' output already redacted, so the tail is too.
fn log_tail(path: &std::path::Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let max = store::LOG_TAIL_BYTES as u64;
    let start = file.metadata().ok()?.len().saturating_sub(max);
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes).ok()?;
    let whole_lines = match bytes.iter().position(|&b| b == b'\n') {
        Some(i) if start > 0 => &bytes[i + 1..],
        _ => &bytes[..],
    };
    Some(String::from_utf8_lossy(whole_lines).into_owned())
}

/// Records the run's stream counts, its quarantine files and how it ended; returns the
/// pipeline's and validation's warnings for the user.
fn record_end(
    store: &dyn Store,
    run_id: &RunId,
    outcome: &pipeline::Outcome,
    quarantined: &stages::Quarantined,
) -> Vec<String> {
    let stats: Vec<StreamStats> = outcome
        .streams
        .iter()
        .map(|(name, c)| StreamStats {
            stream: name.clone(),
            records: c.records,
            bytes: c.bytes,
        })
        .collect();
    if let Err(e) = store.record_stream_stats(run_id, &stats) {
        tracing::warn!(error = %e, "could not record stream counts");
    }
    let counts = store::RunCounts {
        records_sent: outcome.records_sent,
        records_confirmed: outcome.records_confirmed,
    };
    if let Err(e) = store.record_run_counts(run_id, &counts) {
        tracing::warn!(error = %e, "could not record what the loader was sent and confirmed");
    }
    let mut warnings = outcome.warnings.clone();
    // The pipeline's generic no-STATE warning gives way to the one the caller adds, which
    // names the state id and is left out where it does not apply (a failed run,
    // `--no-state-update`).
    warnings.retain(|w| !w.ends_with(crate::pipeline::NO_STATE_WARNING));
    warnings.extend(record_quarantine(store, run_id, quarantined));
    // A run whose flow was taken over (its lease lapsed) did not fail: it was stopped.
    let lease_lost = outcome
        .error
        .as_ref()
        .is_some_and(|e| e.message().starts_with("lease lost"));
    let finish = RunFinish {
        status: match outcome.status {
            _ if lease_lost => store::RunStatus::Killed,
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
    if let Err(e) = store.finish_run(run_id, &finish) {
        tracing::warn!(error = %e, "could not record the end of the run");
    }
    warnings
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
fn meltano_state_elsewhere(
    project: &Project,
    inputs: &crate::settings::Inputs<'_>,
) -> Option<(&'static str, &'static str)> {
    let from_env = |key: &str| {
        inputs
            .var(key)
            .map(|(v, place)| {
                let place = match place {
                    crate::settings::Place::Environment => "in the environment",
                    crate::settings::Place::Dotenv => "in .env",
                };
                (v.to_string(), place)
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
    /// A webhook source whose events up to a confirmed bookmark are marked consumed (after the
    /// bookmark is written).
    webhook_source: Option<String>,
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
        // The bookmark is stored first: should marking fail or dsm stop here, the next run
        // catches up from it (`webhooks::catch_up`) and the tap skips what it confirms.
        if let (Some(source), Some(last)) = (&target.webhook_source, states.last()) {
            crate::webhooks::consume_confirmed(target.store.as_ref(), source, last)?;
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

/// After taking over the lock of a holder whose process is gone (a dsm killed with -9 on this
/// host): stops what is left of its plugins, so the flow never has two taps at once.
fn stop_leftovers(gone: &store::LockHolder) {
    let Some(run) = &gone.run_id else { return };
    // Only a holder whose process is gone: a lease that merely expired may belong to a dsm
    // that is paused, not dead, and stops its own plugins when it wakes (`lease lost`).
    if !gone.stale
        || gone.host != store::liveness::host_name()
        || store::liveness::pid_alive(gone.pid)
    {
        return;
    }
    let n = crate::plugin::sys::kill_leftovers(crate::envvars::OWNER_RUN, run.as_str());
    if n > 0 {
        tracing::warn!(
            run_id = %run,
            processes = n,
            "stopped the processes left behind by the run this one took the flow over from"
        );
    }
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
    fn the_kept_log_tail_is_the_last_64_kib_from_a_line_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.log");
        assert_eq!(log_tail(&path), None, "no file, nothing kept");
        let lines: Vec<String> = (0..5000).map(|i| format!("[tap] line {i:05} é")).collect();
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let tail = log_tail(&path).unwrap();
        assert!(tail.len() <= store::LOG_TAIL_BYTES);
        assert!(tail.len() > store::LOG_TAIL_BYTES - 100);
        assert!(
            tail.starts_with("[tap] line "),
            "starts at a line: {}",
            &tail[..40]
        );
        assert!(tail.ends_with("[tap] line 04999 é\n"));
        std::fs::write(&path, "short\n").unwrap();
        assert_eq!(log_tail(&path).unwrap(), "short\n");
    }
}

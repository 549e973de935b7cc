//! Running flows with the runner: what every flow of one `dsm sync`, `dsm schedule run` or
//! `run-due` shares ([`FlowContext`], built from plain values), one attempt of one flow
//! ([`run_flow`]), a whole plan through the executor ([`run_plan`]), the plan of `dsm sync
//! NAMES...` and the sources an operator took out of syncs.

use std::sync::Arc;

use super::project_flows::{runs_in_plain_sync, scheduled_jobs};
use super::{
    Blocks, Flow, FlowKind, FlowNotes, FlowResult, Interval, Plan, RecordCounts, Summary,
    attempt_trigger, project_flows, records, select_by_names,
};
use crate::error::{Error, ErrorKind, Result};
use crate::project::{Environment, Project};
use crate::registry::{SourceState, SourceStatus, held_out_of_syncs};
use crate::runner::{self, RunOptions};
use crate::store::Store;

/// What every flow of one `dsm sync` shares: the project, its active environment, the store.
#[derive(Debug)]
pub struct FlowContext {
    /// The loaded project.
    pub project: Project,
    /// The active environment.
    pub environment: Option<Environment>,
    /// `--database-uri`.
    pub database_uri: Option<String>,
    /// What started the runs (`sync`, `schedule`), recorded in the run history.
    pub trigger: String,
    /// Show the live display of each run (a terminal, one flow at a time).
    pub live_progress: bool,
}

impl FlowContext {
    /// The context of the flows of `project` under `environment`.
    pub fn new(
        project: Project,
        environment: Option<Environment>,
        database_uri: Option<String>,
        trigger: &str,
        live_progress: bool,
    ) -> FlowContext {
        FlowContext {
            project,
            environment,
            database_uri,
            trigger: trigger.to_string(),
            live_progress,
        }
    }

    fn options(&self, flow: &Flow, attempt: u32) -> RunOptions {
        RunOptions {
            state_id: flow.state_id.clone(),
            timeout: flow.timeout,
            trigger: attempt_trigger(
                &self.trigger,
                &flow.name,
                attempt,
                flow.retry.max_attempts(),
            ),
            database_uri: self.database_uri.clone(),
            live_progress: self.live_progress,
            ..RunOptions::default()
        }
    }
}

/// Runs attempt `attempt` (1 for the first) of one flow with the runner: an extractor/loader
/// pair, or a job's tasks one after another (stopping at the first failure). Each attempt is
/// its own run in the history, its trigger naming the attempt. Blocking; [`run_plan`] calls it
/// on a blocking thread.
pub fn run_flow(fc: &FlowContext, flow: &Flow, attempt: u32) -> FlowResult {
    let env = fc.environment.as_ref();
    let opts = fc.options(flow, attempt);
    let reports = match &flow.blocks {
        Blocks::Pair { extractor, loader } => {
            let pair = runner::Flow {
                extractor: extractor.clone(),
                mappers: Vec::new(),
                loader: loader.clone(),
            };
            runner::run_flow(&fc.project, env, &pair, &opts).map(|r| vec![r])
        }
        Blocks::Tasks(tasks) => {
            let mut all = Vec::new();
            let mut outcome = Ok(());
            for task in tasks {
                let blocks: Vec<String> = task.split_whitespace().map(str::to_string).collect();
                match runner::run_blocks(&fc.project, env, &blocks, &opts) {
                    Ok(reports) => {
                        let failed = reports
                            .iter()
                            .any(|r| r.status != crate::pipeline::RunStatus::Success);
                        all.extend(reports);
                        if failed {
                            break;
                        }
                    }
                    Err(e) => {
                        outcome = Err(e);
                        break;
                    }
                }
            }
            outcome.map(|()| all)
        }
    };
    match reports {
        Err(e) if e.kind() == ErrorKind::AlreadyRunning => {
            FlowResult::already_running(e.to_string())
        }
        Err(e) => FlowResult::failure_with_details(e.to_string(), explain(&e)),
        Ok(reports) => {
            for warning in reports.iter().flat_map(|r| r.warnings.iter()) {
                tracing::warn!(flow = %flow.name, "{warning}");
            }
            let counts = reports.iter().fold(RecordCounts::default(), |all, r| {
                all.plus(RecordCounts {
                    read: r.records_read(),
                    sent: r.records_sent,
                    confirmed: r.records_confirmed,
                })
            });
            let records = counts.read;
            let notes = FlowNotes {
                destinations: reports
                    .iter()
                    .filter_map(|r| r.destination.clone())
                    .collect(),
                resent: reports.iter().filter_map(|r| r.resent.clone()).collect(),
                run_ids: reports
                    .iter()
                    .filter_map(|r| r.run_id.as_ref().map(ToString::to_string))
                    .collect(),
            };
            let mut result = match reports.into_iter().find_map(|r| r.into_result().err()) {
                Some(e) => {
                    let mut result = FlowResult::failure_with_details(e.to_string(), explain(&e));
                    result.records = records;
                    result.counts = counts;
                    result
                }
                None => FlowResult {
                    counts,
                    ..FlowResult::success(records)
                },
            };
            result.notes = notes;
            result
        }
    }
}

/// The lines that explain a failed attempt beyond its message: the plugin's last stderr lines
/// and the hints (where the run's log is).
fn explain(e: &Error) -> Vec<String> {
    e.details()
        .iter()
        .cloned()
        .chain(e.hints().iter().map(|h| format!("hint: {h}")))
        .collect()
}

/// Runs `plan` through the executor, `parallel` flows at a time.
pub fn run_plan(fc: Arc<FlowContext>, plan: &Plan, parallel: usize) -> Result<Summary> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let summary = runtime.block_on(crate::orchestrate::execute(
        plan,
        parallel,
        move |flow: Arc<Flow>, attempt| {
            let fc = Arc::clone(&fc);
            async move {
                tokio::task::spawn_blocking(move || run_flow(&fc, &flow, attempt))
                    .await
                    .unwrap_or_else(|e| FlowResult::failure(format!("the flow panicked: {e}")))
            }
        },
        |d| tokio::time::sleep(d),
    ));
    Ok(summary)
}

/// Marks the flows of `plan` that use a source an operator took out of syncs (`dsm sources
/// disable|maintenance`, status `inactive` or `maintenance`) as paused, and returns a notice
/// for each: the executor reports them without starting them, and a pause is not a failure.
pub fn pause_held_sources(
    project: &Project,
    store: &dyn Store,
    plan: &mut Plan,
) -> Result<Vec<String>> {
    // A schedule's `job:` (or a task naming a job) stands for the job's plugins.
    let plugins_of = |flow: &Flow| -> Vec<String> {
        let names = flow.plugin_names();
        let mut out: Vec<String> = crate::runner::blocks::expand_jobs(project, &names)
            .unwrap_or(names)
            .iter()
            .map(|n| n.split(':').next().unwrap_or(n).to_string())
            .collect();
        out.dedup();
        out
    };
    let mut names: Vec<String> = plan.flows.iter().flat_map(|f| plugins_of(f)).collect();
    names.sort();
    names.dedup();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let held: Vec<SourceState> = held_out_of_syncs(store, &refs)?;
    let mut notices = Vec::new();
    if held.is_empty() {
        return Ok(notices);
    }
    for flow in &mut plan.flows {
        let uses = plugins_of(flow);
        let Some(state) = held.iter().find(|s| uses.contains(&s.name)) else {
            continue;
        };
        let status = match state.status {
            SourceStatus::Maintenance => "in maintenance",
            other => other.as_str(),
        };
        let mut reason = format!("source `{}` is {status}", state.name);
        if let Some(why) = &state.reason {
            reason.push_str(&format!(": {why}"));
        }
        notices.push(format!(
            "skipping `{}`: {reason} (`dsm sources enable {}` puts it back)",
            flow.name, state.name
        ));
        Arc::make_mut(flow).paused = Some(reason);
    }
    Ok(notices)
}

/// The plan of `dsm sync NAMES...` (all enabled flows when `names` is empty, except the `@once`
/// schedules in `once_done`, which already ran).
pub fn plan_for(project: &Project, names: &[String], once_done: &[String]) -> Result<Plan> {
    let all = project_flows(project)?;
    let plan = if names.is_empty() {
        let scheduled = scheduled_jobs(project);
        Plan::build(&all, |f| {
            runs_in_plain_sync(f, &scheduled)
                && !(is_once_schedule(f) && once_done.contains(&f.name))
        })?
    } else {
        let chosen = select_by_names(&all, names)?;
        Plan::build(&all, |f| chosen.iter().any(|c| std::ptr::eq(*c, f)))?
    };
    Ok(plan)
}

fn is_once_schedule(flow: &Flow) -> bool {
    flow.kind == FlowKind::Schedule && matches!(flow.interval, Some(Interval::Once))
}

/// The `@once` schedules of the project that already ran (by `run-due`, `schedule run` or a
/// plain `dsm sync`): `@once` runs once ever, so a plain `dsm sync` leaves them out.
pub fn once_schedules_done(project: &Project, store: &dyn Store) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for flow in project_flows(project)?
        .iter()
        .filter(|f| is_once_schedule(f))
    {
        if records::read_record(store, &flow.name)?.last_run.is_some() {
            done.push(flow.name.clone());
        }
    }
    Ok(done)
}

/// Records that the `@once` schedules about to run in a plain `dsm sync` have run (like
/// `run-due`, before they start: a failed `@once` run is not repeated on its own either).
pub fn mark_once_schedules_run(store: &dyn Store, plan: &Plan) -> Result<()> {
    let now = chrono::Utc::now();
    for flow in plan
        .flows
        .iter()
        .filter(|f| is_once_schedule(f) && f.paused.is_none())
    {
        let mut record = records::read_record(store, &flow.name)?;
        record.last_run = Some(now);
        record.first_seen = record.first_seen.or(Some(now));
        records::write_record(store, &flow.name, &record)?;
    }
    Ok(())
}

/// Runs the schedules named in `names` (their `schedule:NAME` locks already taken, kept alive
/// by heartbeats meanwhile), releasing the locks afterwards. Flows whose sources are
/// `inactive` or in `maintenance` are reported as paused, each with a notice given to
/// `notice` before anything runs.
pub fn run_locked_schedules(
    fc: FlowContext,
    store: &Arc<dyn Store>,
    all: &[Flow],
    locks: Vec<crate::store::FlowLock>,
    names: &[String],
    parallel: usize,
    notice: &dyn Fn(String),
) -> Result<Summary> {
    let heartbeats: Vec<crate::store::HeartbeatThread> = locks
        .iter()
        .map(|l| {
            crate::store::HeartbeatThread::start(
                Arc::clone(store),
                Some(l.clone()),
                None,
                store.heartbeat_interval(),
            )
        })
        .collect();
    let plan = Plan::build(all, |f| {
        f.kind == FlowKind::Schedule && names.contains(&f.name)
    });
    let summary = plan.map_err(Error::from).and_then(|mut plan| {
        for n in pause_held_sources(&fc.project, store.as_ref(), &mut plan)? {
            notice(n);
        }
        run_plan(Arc::new(fc), &plan, parallel)
    });
    drop(heartbeats);
    for lock in &locks {
        store.release_lock(lock)?;
    }
    summary
}

/// A source an operator took out of syncs that a run would use.
#[derive(Debug, Clone)]
pub struct HeldSource {
    /// The extractor's name.
    pub name: String,
    /// Why, and by whom since when: `` source `tap-x` is inactive: reason (set by ana on ...) ``.
    pub why: String,
}

/// The first extractor named in `blocks` (which may name jobs) that an operator took out of
/// syncs (`dsm sources disable|maintenance`); `None` when there is none or no store yet.
pub fn held_source(
    project: &Project,
    database_uri: Option<&str>,
    blocks: &[String],
) -> Result<Option<HeldSource>> {
    let names: Vec<String> = runner::blocks::expand_jobs(project, blocks)?
        .iter()
        .map(|b| b.split(':').next().unwrap_or(b).to_string())
        .filter(|n| {
            project
                .plugins_of(crate::project::PluginType::Extractors)
                .any(|p| &p.name == n)
        })
        .collect();
    if names.is_empty() {
        return Ok(None);
    }
    if let crate::store::Location::Sqlite(path) =
        crate::store::locate(database_uri, project.root())?
        && !path.is_file()
    {
        return Ok(None);
    }
    let db = crate::store::open_for_project(database_uri, project.root())?;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let Some(held) = held_out_of_syncs(db.as_ref(), &refs)?.into_iter().next() else {
        return Ok(None);
    };
    let status = match held.status {
        SourceStatus::Maintenance => "in maintenance",
        other => other.as_str(),
    };
    let mut why = format!("source `{}` is {status}", held.name);
    if let Some(reason) = &held.reason {
        why.push_str(&format!(": {reason}"));
    }
    why.push_str(&format!(
        " (set by {}",
        held.set_by.as_deref().unwrap_or("an unnamed operator")
    ));
    if let Some(since) = held.since {
        why.push_str(&format!(" on {}", crate::store::format_time(since)));
    }
    why.push(')');
    Ok(Some(HeldSource {
        name: held.name,
        why,
    }))
}

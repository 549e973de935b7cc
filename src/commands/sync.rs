//! `dsm sync [NAMES...]`: runs every enabled flow of the project (or the named ones) once, in
//! dependency order, up to `--parallel N` at a time, and prints one summary line per flow.
//!
//! Also home of [`run_flow`], the one place orchestration calls the runner, and [`run_plan`],
//! which `dsm schedule run` and `dsm schedule run-due` share.

use std::sync::Arc;

use crate::commands::Context;
use crate::commands::schedule::{read_record, write_record};
use crate::error::{Error, ErrorKind, Result};
use crate::orchestrate::project_flows::{runs_in_plain_sync, scheduled_jobs};
use crate::orchestrate::{
    Blocks, Flow, FlowKind, FlowNotes, FlowResult, FlowStatus, Interval, Overlap, Plan, Summary,
    attempt_trigger, project_flows, select_by_names,
};
use crate::printer::OutputFormat;
use crate::project::{Environment, EnvironmentChoice, Project};
use crate::registry::{SourceState, SourceStatus, held_out_of_syncs};
use crate::runner::{self, RunOptions};
use crate::store::{StateId, Store};

/// Arguments of `dsm sync`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Schedules, jobs or extractors to run (`KIND:NAME` where kinds share a name); all enabled
    /// flows when none is given.
    pub names: Vec<String>,
    /// How many independent flows run at the same time (`-p`/`--parallelism`, Meltano's
    /// spelling, mean the same).
    #[arg(
        short = 'p',
        long,
        visible_alias = "parallelism",
        default_value_t = 1,
        value_name = "N",
        value_parser = crate::cli::parse_parallel
    )]
    pub parallel: usize,
    /// Print the plan (flows in order, with their dependencies) without running anything.
    #[arg(long)]
    pub dry_run: bool,
}

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
    /// Loads the project and its active environment for `ctx`.
    pub fn load(ctx: &Context, trigger: &str) -> Result<FlowContext> {
        let project = Project::load(&ctx.project_root()?)?;
        let choice = EnvironmentChoice {
            flag: ctx.global.environment.clone(),
            none: ctx.global.no_environment,
            use_default: true,
        };
        let environment = project.active_environment(&choice)?.cloned();
        Ok(FlowContext {
            project,
            environment,
            database_uri: ctx.global.database_uri.clone(),
            trigger: trigger.to_string(),
            live_progress: ctx.live_progress(),
        })
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
            let records = reports
                .iter()
                .flat_map(|r| r.streams.values())
                .map(|c| c.records)
                .sum();
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
                    result
                }
                None => FlowResult::success(records),
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
/// disable|maintenance`, status `inactive` or `maintenance`) as paused, with a notice for each:
/// the executor reports them without starting them, and a pause is not a failure.
pub fn pause_held_sources(
    ctx: &Context,
    project: &Project,
    store: &dyn Store,
    plan: &mut Plan,
) -> Result<()> {
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
    if held.is_empty() {
        return Ok(());
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
        ctx.printer.notice(format!(
            "skipping `{}`: {reason} (`dsm sources enable {}` puts it back)",
            flow.name, state.name
        ));
        Arc::make_mut(flow).paused = Some(reason);
    }
    Ok(())
}

/// Prints a summary (lines, or the JSON document) and turns a failure into exit code 1 (and,
/// under [`Overlap::Exit3`], flows left to another process into exit code 3).
pub fn finish(ctx: &Context, summary: &Summary, overlap: Overlap) -> Result<()> {
    let error = match summary.exit_code_with(overlap) {
        0 => None,
        3 => Some(busy(summary)),
        _ => Some(failure(summary)),
    };
    match ctx.text_or_json()? {
        OutputFormat::Json => {
            let mut doc = summary.to_json_with(overlap);
            if let Some(e) = &error {
                doc["error"] = crate::printer::error_json(e);
            }
            ctx.printer.json(&doc);
            // The summary, with its `error` member, is the one JSON document on stdout.
            return error.map_or(Ok(()), |e| Err(e.data_printed()));
        }
        _ => {
            for line in summary.lines() {
                ctx.printer.line(line);
            }
            for flow in &summary.flows {
                for note in &flow.notes.resent {
                    ctx.printer.notice(format!("note: `{}`: {note}", flow.name));
                }
            }
        }
    }
    error.map_or(Ok(()), Err)
}

/// The error of a summary in which nothing failed but some flows were left to the process
/// already running them (exit 3).
fn busy(summary: &Summary) -> Error {
    let busy = summary
        .flows
        .iter()
        .filter(|f| matches!(f.status, FlowStatus::AlreadyRunning | FlowStatus::Waiting))
        .count();
    Error::new(
        ErrorKind::AlreadyRunning,
        format!(
            "{busy} of {} flows did not start: they, or flows they depend on, are running in another process",
            summary.flows.len()
        ),
    )
    .hint("run the sync again when the other run has ended (`dsm runs list` shows it)")
}

/// The error of a summary in which some flow did not succeed (exit 1). Its details say, for
/// each flow that failed or timed out, what went wrong: the message, the plugin's last stderr
/// lines and the run's log file, so a cron mail or CI log shows the cause without digging.
fn failure(summary: &Summary) -> Error {
    let bad = summary.flows.iter().filter(|f| !f.status.is_ok()).count();
    let mut error = Error::failed(format!(
        "{bad} of {} did not succeed",
        crate::printer::count(summary.flows.len() as u64, "flow")
    ));
    for flow in summary
        .flows
        .iter()
        .filter(|f| matches!(f.status, FlowStatus::Failed | FlowStatus::TimedOut))
    {
        if let Some(message) = &flow.error {
            error = error.detail(format!("`{}`: {message}", flow.name));
        }
        for line in &flow.details {
            error = error.detail(format!("  {line}"));
        }
    }
    error
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
fn once_schedules_done(project: &Project, store: &dyn Store) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for flow in project_flows(project)?
        .iter()
        .filter(|f| is_once_schedule(f))
    {
        if read_record(store, &flow.name)?.last_run.is_some() {
            done.push(flow.name.clone());
        }
    }
    Ok(done)
}

/// Records that the `@once` schedules about to run in a plain `dsm sync` have run (like
/// `run-due`, before they start: a failed `@once` run is not repeated on its own either).
fn mark_once_schedules_run(store: &dyn Store, plan: &Plan) -> Result<()> {
    let now = chrono::Utc::now();
    for flow in plan
        .flows
        .iter()
        .filter(|f| is_once_schedule(f) && f.paused.is_none())
    {
        let mut record = read_record(store, &flow.name)?;
        record.last_run = Some(now);
        record.first_seen = record.first_seen.or(Some(now));
        write_record(store, &flow.name, &record)?;
    }
    Ok(())
}

/// The state id a flow's runs lock: its own, or for a job, a per-job key.
pub fn flow_lock_id(flow: &Flow) -> StateId {
    StateId::new(format!("{}:{}", flow.kind.as_str(), flow.name))
}

/// Runs `dsm sync`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let format = ctx.text_or_json()?;
    let fc = FlowContext::load(ctx, "sync")?;
    // A plan changes nothing: a dry run of a project that never ran creates no store.
    let uri = fc.database_uri.as_deref();
    let has_store = crate::store::database_path(uri, fc.project.root())?.exists();
    let store = if args.dry_run && !has_store {
        None
    } else {
        Some(crate::store::open_for_project(uri, fc.project.root())?)
    };
    let once_done = match &store {
        Some(store) if args.names.is_empty() => once_schedules_done(&fc.project, store.as_ref())?,
        _ => Vec::new(),
    };
    let mut plan = plan_for(&fc.project, &args.names, &once_done)?;
    if args.dry_run {
        match format {
            OutputFormat::Json => ctx.printer.json(&serde_json::json!({
                "flows": plan.flows.iter().enumerate().map(|(i, f)| serde_json::json!({
                    "name": f.name,
                    "kind": f.kind,
                    "runs": f.blocks.to_string(),
                    "depends_on": plan.dependencies[i].iter().map(|&d| plan.flows[d].name.clone()).collect::<Vec<_>>(),
                })).collect::<Vec<_>>()
            })),
            _ => {
                for line in plan.describe() {
                    ctx.printer.line(line);
                }
            }
        }
        return Ok(());
    }
    let store = store.expect("opened unless this is a dry run");
    if plan.flows.is_empty() {
        ctx.printer
            .notice("nothing to sync: no enabled schedule, job or extractor with a default loader");
        return Ok(());
    }
    pause_held_sources(ctx, &fc.project, store.as_ref(), &mut plan)?;
    if args.names.is_empty() {
        mark_once_schedules_run(store.as_ref(), &plan)?;
    }
    drop(store);
    let mut fc = fc;
    // Several flows at once would draw over each other's display.
    fc.live_progress &= args.parallel <= 1;
    let summary = run_plan(Arc::new(fc), &plan, args.parallel)?;
    finish(ctx, &summary, Overlap::Exit3)
}

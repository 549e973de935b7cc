//! `dsm schedule add|list|set|remove|run|run-due|export`: Meltano's schedule commands (editing
//! `meltano.yml` in place), running schedules now or when due, and exporting them to cron,
//! systemd or Kubernetes.
//!
//! `run-due` keeps, per schedule, when it was first seen and when it last ran, and each
//! schedule run holds a lock (see [`crate::orchestrate::records`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::commands::Context;
use crate::commands::shared::{flow_context, print_summary};
use crate::envvars;
use crate::error::{Error, Result};
use crate::orchestrate::due::decide_all;
use crate::orchestrate::export::{self, ExportOptions};
use crate::orchestrate::records::{lock_id, read_record, try_lock, write_record};
use crate::orchestrate::sync::run_locked_schedules;
use crate::orchestrate::{
    DueDecision, Flow, FlowContext, FlowKind, Interval, Overlap, ScheduleRecord, project_flows,
};
use crate::printer::OutputFormat;
use crate::project::Project;
use crate::project::edit::{Seg, edit_defining_file, edit_project_file};
use crate::store::{self, FlowLock, Store};

/// Arguments of `dsm schedule`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: ScheduleCommand,
}

/// `dsm schedule` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ScheduleCommand {
    /// Add a schedule of a job (`--job`) or an extractor/loader pair (`--extractor --loader`).
    Add {
        /// The schedule's name.
        name: String,
        #[command(flatten)]
        fields: Fields,
    },
    /// List the schedules (`--format json` for Meltano's JSON shape).
    List,
    /// Change a schedule's interval, job, extractor, loader or transform.
    Set {
        /// The schedule's name.
        name: String,
        #[command(flatten)]
        fields: Fields,
    },
    /// Remove a schedule.
    Remove {
        /// The schedule's name.
        name: String,
    },
    /// Run a schedule now (whatever its interval) and print its summary line.
    Run {
        /// The schedule's name.
        name: String,
    },
    /// Run every schedule whose time has come since its last run; made for a once-a-minute
    /// crontab line. Prints nothing when nothing was due.
    RunDue {
        /// Test-only: take this RFC 3339 time as now (also `DSM_NOW`).
        #[arg(long, hide = true, value_name = "RFC3339")]
        now: Option<String>,
        /// How many due schedules run at the same time.
        #[arg(long, default_value_t = 1, value_name = "N", value_parser = crate::cli::parse_parallel)]
        parallel: usize,
    },
    /// Write crontab lines, systemd units or Kubernetes CronJobs for the schedules
    /// (`--format crontab|systemd|kubernetes`).
    Export {
        /// The container image holding dsm and the project (required for kubernetes).
        #[arg(long)]
        image: Option<String>,
        /// Write the files into this directory instead of printing them.
        #[arg(long, value_name = "DIR")]
        output_dir: Option<PathBuf>,
        /// Kubernetes: the Secret holding the containers' environment (`DSM_DATABASE_URI`,
        /// `PGPASSWORD`, `DSM_MASTER_KEY`); needed with a PostgreSQL store.
        #[arg(long, value_name = "NAME")]
        secret: Option<String>,
    },
}

/// The fields `add` and `set` take (Meltano's options).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Fields {
    /// Interval: `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`, `@once`, `@manual`, or
    /// a cron expression.
    #[arg(long, value_name = "CRON")]
    pub interval: Option<String>,
    /// The job to run.
    #[arg(long, conflicts_with_all = ["extractor", "loader", "transform"])]
    pub job: Option<String>,
    /// The extractor (with `--loader`).
    #[arg(long)]
    pub extractor: Option<String>,
    /// The loader (with `--extractor`).
    #[arg(long)]
    pub loader: Option<String>,
    /// Transform mode of an extractor/loader schedule.
    #[arg(long, value_parser = ["skip", "only", "run"])]
    pub transform: Option<String>,
}

fn schedules_path() -> Vec<Seg> {
    vec![Seg::key("schedules")]
}

fn unknown_schedule(name: &str) -> Error {
    Error::config(format!("schedule `{name}` does not exist"))
        .hint("`dsm schedule list` shows the schedules there are")
}

fn check_interval(interval: &str) -> Result<()> {
    Interval::parse(interval, chrono_tz::Tz::UTC)?;
    Ok(())
}

/// Runs `dsm schedule`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    match args.command {
        ScheduleCommand::Add { name, fields } => add(ctx, &name, &fields),
        ScheduleCommand::Set { name, fields } => set(ctx, &name, &fields),
        ScheduleCommand::Remove { name } => {
            let root = ctx.project_root()?;
            let path = [Seg::key("schedules"), Seg::item(&name)];
            if !edit_defining_file(&root, &path, |doc| {
                doc.remove_item(&schedules_path(), &name)
            })? {
                return Err(unknown_schedule(&name));
            }
            crate::commands::shared::audit(ctx, "dsm schedule remove", "schedule.remove", &name);
            ctx.printer.notice(format!("Removed schedule `{name}`"));
            Ok(())
        }
        ScheduleCommand::List => list(ctx),
        ScheduleCommand::Run { name } => run_now(ctx, &name),
        ScheduleCommand::RunDue { now, parallel } => run_due(ctx, now, parallel),
        ScheduleCommand::Export {
            image,
            output_dir,
            secret,
        } => export(ctx, image, output_dir, secret),
    }
}

fn add(ctx: &Context, name: &str, f: &Fields) -> Result<()> {
    let root = ctx.project_root()?;
    let Some(interval) = &f.interval else {
        return Err(Error::config("`dsm schedule add` needs `--interval`")
            .hint("for example `--interval @daily` or `--interval '0 3 * * *'`"));
    };
    check_interval(interval)?;
    let project = Project::load(&root)?;
    if project.schedules().iter().any(|s| s.name == name) {
        return Err(Error::config(format!("schedule `{name}` already exists"))
            .hint(format!("change it with `dsm schedule set {name} ...`")));
    }
    let entry = match (&f.job, &f.extractor, &f.loader) {
        (Some(job), None, None) => {
            if project.job(job).is_none() {
                return Err(Error::config(format!("job `{job}` does not exist"))
                    .hint(format!("add it first with `dsm job add {job} --tasks ...`")));
            }
            json!({"name": name, "interval": interval, "job": job})
        }
        (None, Some(extractor), Some(loader)) => json!({
            "name": name,
            "extractor": extractor,
            "loader": loader,
            "transform": f.transform.as_deref().unwrap_or("skip"),
            "interval": interval,
        }),
        _ => {
            return Err(Error::config(
                "a schedule runs either `--job JOB` or `--extractor EXTRACTOR --loader LOADER`",
            ));
        }
    };
    edit_project_file(&root, |doc| {
        let mut path = schedules_path();
        path.push(Seg::item(name));
        doc.set(&path, &entry)
    })?;
    crate::commands::shared::audit(ctx, "dsm schedule add", "schedule.add", name);
    ctx.printer.notice(format!("Added schedule `{name}`"));
    Ok(())
}

fn set(ctx: &Context, name: &str, f: &Fields) -> Result<()> {
    let root = ctx.project_root()?;
    let project = Project::load(&root)?;
    if !project.schedules().iter().any(|s| s.name == name) {
        return Err(unknown_schedule(name));
    }
    if let Some(i) = &f.interval {
        check_interval(i)?;
    }
    let changes: Vec<(&str, &Option<String>)> = vec![
        ("interval", &f.interval),
        ("job", &f.job),
        ("extractor", &f.extractor),
        ("loader", &f.loader),
        ("transform", &f.transform),
    ];
    if changes.iter().all(|(_, v)| v.is_none()) {
        return Err(Error::config("nothing to change")
            .hint("pass `--interval`, `--job`, `--extractor`, `--loader` or `--transform`"));
    }
    let owner = [Seg::key("schedules"), Seg::item(name)];
    edit_defining_file(&root, &owner, |doc| {
        let item = |key: &str| vec![Seg::key("schedules"), Seg::item(name), Seg::key(key)];
        for (key, value) in &changes {
            if let Some(v) = value {
                doc.set(&item(key), &Value::String(v.clone()))?;
            }
        }
        // A schedule runs a job or a pair, not both.
        if f.job.is_some() {
            for key in ["extractor", "loader", "transform"] {
                doc.remove(&item(key))?;
            }
        } else if f.extractor.is_some() || f.loader.is_some() {
            doc.remove(&item("job"))?;
        }
        Ok(())
    })?;
    crate::commands::shared::audit(ctx, "dsm schedule set", "schedule.set", name);
    ctx.printer.notice(format!("Updated schedule `{name}`"));
    Ok(())
}

fn list(ctx: &Context) -> Result<()> {
    let project = Project::load(&ctx.project_root()?)?;
    let format = ctx.text_or_json()?;
    let mut jobs = Vec::new();
    let mut elts = Vec::new();
    let timezone = |s: &crate::project::Schedule| {
        s.annotations
            .as_ref()
            .and_then(|a| a.dsm.as_ref())
            .and_then(|d| d.timezone.clone())
    };
    for s in project.schedules() {
        let cron = Interval::parse(
            s.interval.as_deref().unwrap_or("@manual"),
            chrono_tz::Tz::UTC,
        )
        .ok()
        .and_then(|i| i.cron_expression().map(str::to_string));
        match &s.job {
            Some(job) => jobs.push(json!({
                "name": s.name,
                "interval": s.interval,
                "cron_interval": cron,
                "timezone": timezone(s),
                "env": s.env,
                "job": {"name": job, "tasks": project.job(job).map(|j| j.tasks.clone())},
            })),
            None => elts.push(json!({
                "name": s.name,
                "extractor": s.extractor,
                "loader": s.loader,
                "transform": s.transform.as_deref().unwrap_or("skip"),
                "interval": s.interval,
                "cron_interval": cron,
                "timezone": timezone(s),
                "env": s.env,
                "start_date": s.start_date,
                "state_id": s.name,
            })),
        }
    }
    if format == OutputFormat::Json {
        ctx.printer
            .json(&json!({"schedules": {"job": jobs, "elt": elts}}));
        return Ok(());
    }
    for s in project.schedules() {
        let mut interval = s.interval.as_deref().unwrap_or("@manual").to_string();
        if let Some(tz) = timezone(s) {
            interval.push_str(&format!(" {tz}"));
        }
        let runs = match (&s.job, &s.extractor, &s.loader) {
            (Some(job), _, _) => format!("job {job}"),
            (None, Some(e), Some(l)) => format!(
                "elt {e} {l} --transform={}",
                s.transform.as_deref().unwrap_or("skip")
            ),
            _ => "nothing".into(),
        };
        ctx.printer.line(format!("[{interval}] {}: {runs}", s.name));
    }
    Ok(())
}

/// The schedule flows of the project.
fn schedule_flows(project: &Project) -> Result<Vec<Flow>> {
    Ok(project_flows(project)?)
}

/// Runs the locked schedules `names`, printing the notices of paused ones.
fn run_locked(
    ctx: &Context,
    fc: FlowContext,
    store: &Arc<dyn Store>,
    all: &[Flow],
    locks: Vec<FlowLock>,
    names: &[String],
    parallel: usize,
) -> Result<crate::orchestrate::Summary> {
    run_locked_schedules(fc, store, all, locks, names, parallel, &|n| {
        ctx.printer.notice(n)
    })
}

fn run_now(ctx: &Context, name: &str) -> Result<()> {
    let fc = flow_context(ctx, "schedule")?;
    let all = schedule_flows(&fc.project)?;
    if !all
        .iter()
        .any(|f| f.kind == FlowKind::Schedule && f.name == name)
    {
        return Err(unknown_schedule(name));
    }
    let store = store::open_for_project(ctx.global.database_uri.as_deref(), fc.project.root())?;
    let lock = store.acquire_lock(&lock_id(name), None, false)?;
    let mut record = read_record(store.as_ref(), name)?;
    record.last_run = Some(Utc::now());
    record.first_seen = record.first_seen.or(record.last_run);
    write_record(store.as_ref(), name, &record)?;
    let summary = run_locked(ctx, fc, &store, &all, vec![lock], &[name.to_string()], 1)?;
    print_summary(ctx, &summary, Overlap::Exit3)
}

fn now_from(flag: Option<String>) -> Result<DateTime<Utc>> {
    let text = flag.or_else(|| std::env::var(envvars::NOW).ok().filter(|v| !v.is_empty()));
    match text {
        None => Ok(Utc::now()),
        Some(t) => DateTime::parse_from_rfc3339(&t)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| Error::config(format!("`{t}` is not an RFC 3339 time: {e}"))),
    }
}

fn run_due(ctx: &Context, now: Option<String>, parallel: usize) -> Result<()> {
    let now = now_from(now)?;
    let fc = flow_context(ctx, "schedule")?;
    let all = schedule_flows(&fc.project)?;
    let schedules: Vec<Flow> = all
        .iter()
        .filter(|f| f.kind == FlowKind::Schedule)
        .cloned()
        .collect();
    let store = store::open_for_project(ctx.global.database_uri.as_deref(), fc.project.root())?;
    let mut records = HashMap::new();
    for flow in &schedules {
        records.insert(flow.name.clone(), read_record(store.as_ref(), &flow.name)?);
    }
    let mut locks = Vec::new();
    let mut due = Vec::new();
    for (flow, decision) in decide_all(&schedules, &records, now) {
        match decision {
            DueDecision::FirstSeen { .. } => {
                let record = ScheduleRecord {
                    first_seen: Some(now),
                    ..ScheduleRecord::default()
                };
                write_record(store.as_ref(), &flow.name, &record)?;
            }
            DueDecision::StillRunning { .. } => {
                tracing::info!(schedule = %flow.name, "due, but its last run is still going: not started");
            }
            DueDecision::Due { .. } => {
                let Some(lock) = try_lock(store.as_ref(), &flow.name)? else {
                    tracing::info!(schedule = %flow.name, "due, but another process just started it");
                    continue;
                };
                // Another process may have run it between our read and our lock.
                let record = read_record(store.as_ref(), &flow.name)?;
                let record = ScheduleRecord {
                    running: false,
                    ..record
                };
                if !crate::orchestrate::decide_due(flow, &record, now).is_due() {
                    store.release_lock(&lock)?;
                    continue;
                }
                write_record(
                    store.as_ref(),
                    &flow.name,
                    &ScheduleRecord {
                        last_run: Some(now),
                        ..record
                    },
                )?;
                locks.push(lock);
                due.push(flow.name.clone());
            }
            _ => {}
        }
    }
    if due.is_empty() {
        // Nothing due prints no line, but `--format json` still prints its one document.
        let none = crate::orchestrate::Summary { flows: Vec::new() };
        return print_summary(ctx, &none, Overlap::Ignore);
    }
    let summary = run_locked(ctx, fc, &store, &all, locks, &due, parallel)?;
    print_summary(ctx, &summary, Overlap::Ignore)
}

fn export(
    ctx: &Context,
    image: Option<String>,
    output_dir: Option<PathBuf>,
    secret: Option<String>,
) -> Result<()> {
    let root = ctx.project_root()?;
    let project = Project::load(&root)?;
    let flows: Vec<Flow> = schedule_flows(&project)?
        .into_iter()
        .filter(|f| f.kind == FlowKind::Schedule)
        .collect();
    let root = std::fs::canonicalize(&root).unwrap_or(root);
    let mut options = ExportOptions::new(root.display().to_string());
    if let Ok(exe) = std::env::current_exe() {
        options.dsm = exe.display().to_string();
    }
    // The environment this export was made in goes into every job: `--environment`, else
    // the variables that choose it here (a job started by cron or systemd would not see them).
    options.environment = ctx.global.environment.clone().or_else(|| {
        [
            crate::envvars::ENVIRONMENT,
            crate::envvars::MELTANO_ENVIRONMENT,
        ]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
    });
    options.image = image;
    options.shared_store = matches!(
        store::locate(ctx.global.database_uri.as_deref(), &root)?,
        store::Location::Postgres(_)
    );
    if options.shared_store
        && secret.is_none()
        && ctx.global.format.as_deref() == Some("kubernetes")
    {
        return Err(Error::config(
            "with a PostgreSQL store, `--format kubernetes` needs `--secret NAME`: the pods find the store through it",
        )
        .hint("create a Secret with DSM_DATABASE_URI, PGPASSWORD and DSM_MASTER_KEY, and pass its name"));
    }
    options.secret = secret;
    let out = match ctx.global.format.as_deref() {
        Some("crontab") | None => export::crontab(&flows, &options),
        Some("systemd") => export::systemd(&flows, &options)?,
        Some("kubernetes") => {
            if options.image.is_none() {
                return Err(Error::config("`--format kubernetes` needs `--image`").hint(
                    "pass the container image that holds dsm and the project, e.g. `--image registry.example/etl:1`",
                ));
            }
            export::kubernetes(&flows, &options)?
        }
        Some(other) => {
            return Err(Error::config(format!("unknown export format `{other}`"))
                .hint("use `--format crontab`, `--format systemd` or `--format kubernetes`"));
        }
    };
    for skipped in &out.skipped {
        ctx.printer.warn(format!(
            "schedule `{}` left out: {}",
            skipped.name, skipped.reason
        ));
    }
    match output_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            for file in &out.files {
                std::fs::write(dir.join(&file.name), &file.contents)?;
                ctx.printer
                    .notice(format!("wrote `{}`", dir.join(&file.name).display()));
            }
        }
        None => {
            let many = out.files.len() > 1;
            for file in &out.files {
                if many {
                    ctx.printer.line(format!("# --- {} ---", file.name));
                }
                ctx.printer.raw(&file.contents);
            }
        }
    }
    Ok(())
}

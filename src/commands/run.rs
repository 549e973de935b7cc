//! `dsm run BLOCKS...`: extractor, mappers and loader per flow, job names expanded.

use std::time::Duration;

use crate::commands::Context;
use crate::envvars;
use crate::error::{Error, Result};
use crate::printer::OutputFormat;
use crate::project::{EnvironmentChoice, PluginType, Project};
use crate::registry::{SourceStatus, held_out_of_syncs};
use crate::runner::{self, RunOptions, StateStrategy, StepReport};
use crate::store;

/// Arguments of `dsm run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Blocks: EXTRACTOR [MAPPER...] LOADER, repeated, or job names.
    #[arg(required = true, value_name = "BLOCKS")]
    pub blocks: Vec<String>,
    /// The flags shared with `dsm el`.
    #[command(flatten)]
    pub flags: RunFlags,
}

/// Flags of `dsm run` and `dsm el`; each can also come from `DSM_RUN_<FLAG>` or
/// `MELTANO_RUN_<FLAG>` (`DSM_RUN_FULL_REFRESH=1`, `MELTANO_RUN_STATE_ID_SUFFIX=x` ...).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunFlags {
    /// Ignore the stored state and replace it with this run's.
    #[arg(long)]
    pub full_refresh: bool,
    /// Do not write state.
    #[arg(long)]
    pub no_state_update: bool,
    /// Run even when another run of the same flow holds its lock.
    #[arg(long, short = 'f')]
    pub force: bool,
    /// Appended to the state id as `:{SUFFIX}`.
    #[arg(long, value_name = "SUFFIX")]
    pub state_id_suffix: Option<String>,
    /// How STATE messages are written.
    #[arg(long, value_enum)]
    pub state_strategy: Option<StateStrategy>,
    /// Meltano's older spelling of `--state-strategy merge`.
    #[arg(long, hide = true, conflicts_with = "state_strategy")]
    pub merge_state: bool,
    /// Run catalog discovery even when a cached catalog matches.
    #[arg(long)]
    pub refresh_catalog: bool,
    /// Show what would run without starting any plugin.
    #[arg(long, visible_alias = "dry")]
    pub dry_run: bool,
    /// The id to record this run under: a UUID.
    #[arg(long, value_name = "UUID", value_parser = parse_run_id)]
    pub run_id: Option<String>,
    /// Stop the run after this long: seconds, or `90s`, `15m`, `2h` (exit 124).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Install the plugins the run needs when they are missing or changed, then run.
    #[arg(long, overrides_with_all = ["no_install", "only_install"])]
    pub install: bool,
    /// Do not install plugins, even with `auto_install` on.
    #[arg(long, overrides_with_all = ["install", "only_install"])]
    pub no_install: bool,
    /// Install the plugins the run needs when missing or changed, then exit without running.
    #[arg(long, overrides_with_all = ["install", "no_install"])]
    pub only_install: bool,
    /// Run a source an operator disabled or put in maintenance (`dsm sources disable`).
    #[arg(long)]
    pub include_disabled: bool,
}

/// What a run does about plugins that are not installed (Meltano's `--install`,
/// `--no-install`, `--only-install`; without a flag the project's `auto_install` decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallChoice {
    /// As `auto_install` (or `DSM_AUTO_INSTALL` / `MELTANO_AUTO_INSTALL`) says.
    Auto,
    /// Install what is missing, then run.
    Install,
    /// Install nothing.
    NoInstall,
    /// Install what is missing, then stop.
    OnlyInstall,
}

/// Checks a `--run-id`: a UUID only, since it names files (see [`RunId::parse`]).
fn parse_run_id(text: &str) -> std::result::Result<String, String> {
    crate::store::RunId::parse(text).map(|id| id.as_str().to_string())
}

/// Parses a duration flag (`30`, `30s`, `15m`, `2h`) in the one grammar of
/// [`crate::duration`].
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    // The value itself is not repeated (see `usage`): the reason and the grammar are.
    crate::duration::parse(text).map_err(|e| {
        format!(
            "not a duration: {}; {}",
            e.reason,
            crate::duration::DurationError::hint()
        )
    })
}

fn env_value(flag: &str) -> Option<String> {
    [envvars::RUN_PREFIX, envvars::MELTANO_RUN_PREFIX]
        .iter()
        .find_map(|p| std::env::var(format!("{p}{flag}")).ok())
        .filter(|v| !v.is_empty())
}

fn env_bool(flag: &str) -> Result<bool> {
    match env_value(flag) {
        None => Ok(false),
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" | "t" | "y" => Ok(true),
            "0" | "false" | "no" | "off" | "f" | "n" => Ok(false),
            _ => Err(Error::config(format!(
                "`{}{flag}` must be true or false, found `{v}`",
                envvars::RUN_PREFIX
            ))),
        },
    }
}

impl RunFlags {
    /// What to do about plugins that are not installed.
    pub fn install_choice(&self) -> InstallChoice {
        if self.only_install {
            InstallChoice::OnlyInstall
        } else if self.install {
            InstallChoice::Install
        } else if self.no_install {
            InstallChoice::NoInstall
        } else {
            InstallChoice::Auto
        }
    }

    /// The flags merged with their environment variables, as runner options.
    pub fn options(&self, ctx: &Context) -> Result<RunOptions> {
        let state_strategy = match (self.state_strategy, env_value("STATE_STRATEGY")) {
            (Some(s), _) => s,
            (None, _) if self.merge_state => StateStrategy::Merge,
            (None, None) => StateStrategy::Auto,
            (None, Some(v)) => {
                <StateStrategy as clap::ValueEnum>::from_str(&v, true).map_err(|_| {
                    Error::config(format!("unknown state strategy `{v}`"))
                        .hint("use `auto`, `merge` or `overwrite`")
                })?
            }
        };
        let timeout = match (self.timeout, env_value("TIMEOUT")) {
            (Some(t), _) => Some(t),
            (None, None) => None,
            (None, Some(v)) => Some(crate::duration::parse(&v)?),
        };
        Ok(RunOptions {
            full_refresh: self.full_refresh || env_bool("FULL_REFRESH")?,
            no_state_update: self.no_state_update || env_bool("NO_STATE_UPDATE")?,
            force: self.force || env_bool("FORCE")?,
            state_id: None,
            state_id_suffix: self
                .state_id_suffix
                .clone()
                .or_else(|| env_value("STATE_ID_SUFFIX")),
            state_strategy,
            refresh_catalog: self.refresh_catalog || env_bool("REFRESH_CATALOG")?,
            dry_run: self.dry_run || env_bool("DRY_RUN")?,
            run_id: match (&self.run_id, env_value("RUN_ID")) {
                (Some(id), _) => Some(id.clone()),
                (None, Some(v)) => Some(parse_run_id(&v).map_err(Error::config)?),
                (None, None) => None,
            },
            timeout,
            trigger: "cli".into(),
            database_uri: ctx.global.database_uri.clone(),
            cancel: None,
            live_progress: ctx.live_progress(),
            ..RunOptions::default()
        })
    }
}

/// Loads the project for a run (`default_environment` applies, as in Meltano).
pub(crate) fn load(ctx: &Context) -> Result<(Project, Option<String>)> {
    let project = Project::load(&ctx.project_root()?)?;
    let choice = EnvironmentChoice {
        flag: ctx.global.environment.clone(),
        none: ctx.global.no_environment,
        use_default: true,
    };
    let env = project.active_environment(&choice)?.map(|e| e.name.clone());
    Ok((project, env))
}

/// Prints the reports and turns the last failure into the command's error.
pub(crate) fn finish(ctx: &Context, reports: Vec<StepReport>) -> Result<()> {
    let json = ctx.printer.format() == OutputFormat::Json;
    let mut docs = Vec::new();
    let mut failure = None;
    for report in reports {
        let report = match report {
            StepReport::Flow(r) => *r,
            StepReport::Command(c) => {
                if json {
                    docs.push(serde_json::json!({
                        "step": c.step.to_string(),
                        "status": if c.error.is_none() { "success" } else { "failed" },
                        "exit_code": c.exit_code,
                        "duration_ms": u64::try_from(c.duration.as_millis()).unwrap_or(u64::MAX),
                    }));
                }
                match c.error {
                    Some(e) => failure = Some(e),
                    None if c.dry_run => {
                        ctx.printer
                            .notice(format!("dry run: step `{}` would run", c.step));
                    }
                    None => ctx.printer.notice(format!(
                        "step `{}` succeeded in {:.1}s",
                        c.step,
                        c.duration.as_secs_f64()
                    )),
                }
                continue;
            }
        };
        if let Some(text) = &report.dump {
            // `dsm el --dump`: the file is the output, in every format.
            ctx.printer.line(text);
            continue;
        }
        for w in &report.warnings {
            ctx.printer.warn(w);
        }
        for n in &report.notes {
            ctx.printer.notice(n);
        }
        if json {
            docs.push(serde_json::json!({
                "state_id": report.state_id,
                "run_id": report.run_id.as_ref().map(|r| r.as_str().to_string()),
                "status": report.status,
                "extractor": report.flow.extractor,
                "mappers": report.flow.mappers,
                "loader": report.flow.loader,
                "streams": report.streams.iter().map(|(k, c)| (k.clone(), serde_json::json!({"records": c.records, "bytes": c.bytes}))).collect::<serde_json::Map<_, _>>(),
                "states_committed": report.states_committed,
                "duration_ms": u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
                "log_path": report.log_path,
                "plan": report.plan,
            }));
        }
        if !report.plan.is_empty() {
            ctx.printer
                .notice(format!("dry run of `{}`:", report.state_id));
            for line in &report.plan {
                ctx.printer.notice(format!("  {line}"));
            }
        } else if report.status == crate::pipeline::RunStatus::Success {
            let records: u64 = report.streams.values().map(|c| c.records).sum();
            let per_stream: Vec<String> = report
                .streams
                .iter()
                .map(|(k, c)| format!("{k}: {}", c.records))
                .collect();
            ctx.printer.notice(format!(
                "run of `{}` succeeded in {:.1}s: {records} record{}{}",
                report.state_id,
                report.duration.as_secs_f64(),
                if records == 1 { "" } else { "s" },
                if per_stream.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", per_stream.join(", "))
                }
            ));
            if let Some(destination) = &report.destination {
                ctx.printer.notice(format!("  loaded into {destination}"));
            }
            if let Some(note) = &report.resent {
                ctx.printer.notice(format!("note: {note}"));
            }
        }
        if let Err(e) = report.into_result() {
            failure = Some(e);
        }
    }
    if json {
        ctx.printer.json(&docs);
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Refuses to run a source an operator took out of syncs (`dsm sources disable|maintenance`)
/// unless `--include-disabled`; `blocks` may name jobs.
pub(crate) fn check_disabled(
    ctx: &Context,
    project: &Project,
    blocks: &[String],
    include_disabled: bool,
) -> Result<()> {
    let names: Vec<String> = runner::blocks::expand_jobs(project, blocks)?
        .iter()
        .map(|b| b.split(':').next().unwrap_or(b).to_string())
        .filter(|n| {
            project
                .plugins_of(PluginType::Extractors)
                .any(|p| &p.name == n)
        })
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let path = store::database_path(ctx.global.database_uri.as_deref(), project.root())?;
    if !path.is_file() {
        return Ok(());
    }
    let db = store::open_for_project(ctx.global.database_uri.as_deref(), project.root())?;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let Some(held) = held_out_of_syncs(db.as_ref(), &refs)?.into_iter().next() else {
        return Ok(());
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
        why.push_str(&format!(" on {}", store::format_time(since)));
    }
    why.push(')');
    if include_disabled {
        ctx.printer
            .warn(format!("{why}; running it because of `--include-disabled`"));
        return Ok(());
    }
    Err(Error::config(why)
        .hint(format!("`dsm sources enable {}` puts it back", held.name))
        .hint("or pass `--include-disabled` to run it this once"))
}

/// Runs `dsm run`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let (project, env) = load(ctx)?;
    let env = match &env {
        Some(n) => Some(project.environment(n)?),
        None => None,
    };
    check_disabled(ctx, &project, &args.blocks, args.flags.include_disabled)?;
    let opts = args.flags.options(ctx)?;
    let choice = args.flags.install_choice();
    crate::commands::install::auto_install(&ctx.printer, &project, &args.blocks, choice)?;
    if choice == InstallChoice::OnlyInstall {
        return Ok(());
    }
    let reports = runner::run_steps(&project, env, &args.blocks, &opts)?;
    finish(ctx, reports)
}

//! What several commands share (this is not a command): loading the project for a run, the
//! held-source check before one, installing what a run needs, printing run reports and sync
//! summaries, parsing `[TYPE] NAME...` and durations, auditing project changes. Commands import
//! this module, never each other.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use zeroize::Zeroizing;

use crate::commands::Context;
use crate::envvars;
use crate::error::{Error, ErrorKind, Result};
use crate::orchestrate::{FlowContext, FlowStatus, Overlap, Summary};
use crate::plugin::install::{self, InstallChoice, Installer, Outcome, Target};
use crate::printer::{OutputFormat, Printer};
use crate::project::{EnvironmentChoice, Plugin, PluginType, Project};
use crate::runner::{RunOptions, StateStrategy, StepReport};
use crate::secrets::Secret;
use crate::secrets::audit::Entry;

/// Loads the project for a run (`default_environment` applies, as in Meltano) and names its
/// active environment.
pub fn load(ctx: &Context) -> Result<(Project, Option<String>)> {
    let project = Project::load(&ctx.project_root()?)?;
    let choice = EnvironmentChoice {
        flag: ctx.global.environment.clone(),
        none: ctx.global.no_environment,
        use_default: true,
    };
    let env = project.active_environment(&choice)?.map(|e| e.name.clone());
    Ok((project, env))
}

/// What every flow of one `dsm sync` or schedule run shares, from the global flags.
pub fn flow_context(ctx: &Context, trigger: &str) -> Result<FlowContext> {
    let (project, env) = load(ctx)?;
    let environment = match &env {
        Some(n) => Some(project.environment(n)?.clone()),
        None => None,
    };
    Ok(FlowContext::new(
        project,
        environment,
        ctx.global.database_uri.clone(),
        trigger,
        ctx.live_progress(),
    ))
}

/// Refuses to run a source an operator took out of syncs (`dsm sources disable|maintenance`)
/// unless `--include-disabled`; `blocks` may name jobs.
pub fn check_disabled(
    ctx: &Context,
    project: &Project,
    blocks: &[String],
    include_disabled: bool,
) -> Result<()> {
    let Some(held) =
        crate::orchestrate::sync::held_source(project, ctx.global.database_uri.as_deref(), blocks)?
    else {
        return Ok(());
    };
    if include_disabled {
        ctx.printer.warn(format!(
            "{}; running it because of `--include-disabled`",
            held.why
        ));
        return Ok(());
    }
    Err(Error::config(held.why)
        .hint(format!("`dsm sources enable {}` puts it back", held.name))
        .hint("or pass `--include-disabled` to run it this once"))
}

/// What is left of a run's `--timeout` after the installs that began at `started`: the run
/// gets the rest, and none left is the run's timeout (exit 124).
pub fn timeout_left(opts: &mut crate::runner::RunOptions, started: Instant) -> Result<()> {
    if let Some(t) = opts.timeout {
        let left = t.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(Error::new(
                crate::error::ErrorKind::Timeout,
                "installing the run's plugins took the whole of its timeout",
            )
            .hint("raise `--timeout`, or install first with `dsm install`"));
        }
        opts.timeout = Some(left);
    }
    Ok(())
}

/// Installs the plugins that `blocks` name and that are missing or changed, when `choice` says
/// so or, without a flag, when `auto_install` is on.
pub fn install_before_run(
    printer: &Printer,
    project: &Project,
    blocks: &[String],
    choice: InstallChoice,
    deadline: Option<Instant>,
) -> Result<()> {
    let plugins = install::plugins_to_install(project, blocks, choice)?;
    let targets: Vec<Target> = install::targets_of(project, &plugins)
        .into_iter()
        .filter(|t| {
            matches!(
                t.status(),
                install::Status::Missing | install::Status::Changed
            )
        })
        .collect();
    if targets.is_empty() {
        return Ok(());
    }
    let parallel = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    install_targets(printer, &targets, false, parallel, deadline)
}

/// Installs the plugins `words` (`[TYPE] [NAME...]`) name, or all of the project's (of
/// `plugin_type`), `parallel` at a time (`dsm install`, `dsm add --install`).
pub fn install_plugins(
    ctx: &Context,
    words: &[String],
    plugin_type: Option<&str>,
    clean: bool,
    parallel: Option<usize>,
) -> Result<()> {
    let project = Project::load(&ctx.project_root()?)?;
    let (ty, names) = match words {
        [] | [_] if words.iter().all(|w| PluginType::parse(w).is_some()) => {
            let word = words.first().map(String::as_str).or(plugin_type);
            let ty = match word {
                Some(w) => Some(PluginType::parse(w).ok_or_else(|| {
                    Error::config(format!("unknown plugin type `{w}`"))
                        .hint("use one of `extractor`, `loader`, `mapper`, `utility`")
                })?),
                None => None,
            };
            (ty, Vec::new())
        }
        _ => split_type(words, plugin_type)?,
    };
    let chosen: Vec<&Plugin> = if names.is_empty() {
        project
            .plugins()
            .iter()
            .filter(|p| ty.is_none_or(|t| t == p.plugin_type))
            .collect()
    } else {
        names
            .iter()
            .map(|n| project.find_plugin(n, ty))
            .collect::<Result<_>>()?
    };
    let parallel = parallel.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    if parallel == 0 {
        return Err(Error::config("`--parallel` must be at least 1"));
    }
    let targets = install::targets_of(&project, &chosen);
    for p in &chosen {
        if install::is_builtin(p) {
            tracing::debug!(plugin = %p.name, "built-in plugin: nothing to install");
        }
    }
    if targets.is_empty() {
        ctx.printer
            .notice("nothing to install: no plugin chosen has a `pip_url`");
        return Ok(());
    }
    install_targets(&ctx.printer, &targets, clean, parallel, None)
}

/// Installs `targets` (`parallel` at a time), with a spinner per plugin on a terminal and a
/// line per plugin otherwise; the first failure is the error, the others are printed.
pub fn install_targets(
    printer: &Printer,
    targets: &[Target],
    clean: bool,
    parallel: usize,
    deadline: Option<Instant>,
) -> Result<()> {
    let installer = Installer::detect();
    tracing::debug!(installer = installer.name(), "installing plugins");
    let live = printer.stderr_is_terminal() && !printer.is_quiet();
    let multi = live.then(MultiProgress::new);
    let bars: Vec<Option<ProgressBar>> = targets
        .iter()
        .map(|t| {
            multi.as_ref().map(|m| {
                let bar = m.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                        .expect("a fixed template is valid"),
                );
                bar.set_message(format!(
                    "{} `{}`: waiting",
                    t.plugin_type.singular(),
                    t.name
                ));
                bar
            })
        })
        .collect();
    let started: std::sync::Mutex<Vec<Option<Instant>>> =
        std::sync::Mutex::new(vec![None; targets.len()]);
    let index = |t: &Target| targets.iter().position(|o| o.dir == t.dir).unwrap_or(0);
    let report = |t: &Target, result: Option<&Result<Outcome>>| {
        let i = index(t);
        let what = format!("{} `{}`", t.plugin_type.singular(), t.name);
        match result {
            None => {
                if let Ok(mut s) = started.lock() {
                    s[i] = Some(Instant::now());
                }
                if let Some(bar) = &bars[i] {
                    bar.set_message(format!("{what}: installing with {}", installer.name()));
                    bar.enable_steady_tick(Duration::from_millis(120));
                }
            }
            Some(r) => {
                let secs = started
                    .lock()
                    .ok()
                    .and_then(|s| s[i])
                    .map_or(0.0, |t0| t0.elapsed().as_secs_f64());
                let line = match r {
                    Ok(Outcome::Skipped) => format!("{what}: already installed, skipped"),
                    Ok(Outcome::Installed) => {
                        format!("{what}: installed with {} in {secs:.1}s", installer.name())
                    }
                    Err(_) => format!("{what}: failed after {secs:.1}s"),
                };
                match &bars[i] {
                    Some(bar) => bar.finish_with_message(line),
                    None => printer.notice(line),
                }
            }
        }
    };
    let failures = install::install_all(targets, &installer, clean, parallel, deadline, &report);
    if let Some(m) = &multi {
        let _ = m.clear();
    }
    let n = failures.len();
    let mut failures = failures.into_iter();
    match failures.next() {
        None => Ok(()),
        Some((_, first)) => {
            for (_, e) in failures {
                printer.error(&e);
            }
            if n > 1 {
                printer.warn(format!(
                    "{n} of {} plugins failed to install",
                    targets.len()
                ));
            }
            Err(first)
        }
    }
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
    pub state_strategy: Option<StateStrategyArg>,
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

/// `--state-strategy` (the runner's [`StateStrategy`], as clap reads it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StateStrategyArg {
    /// Merge when the extractor has a `select_filter` (a partial run), else overwrite.
    Auto,
    /// Deep-merge each STATE over the stored state.
    Merge,
    /// Each STATE replaces the stored state.
    Overwrite,
}

impl From<StateStrategyArg> for StateStrategy {
    fn from(a: StateStrategyArg) -> StateStrategy {
        match a {
            StateStrategyArg::Auto => StateStrategy::Auto,
            StateStrategyArg::Merge => StateStrategy::Merge,
            StateStrategyArg::Overwrite => StateStrategy::Overwrite,
        }
    }
}

/// Checks a `--run-id`: a UUID only, since it names files (see [`RunId::parse`]).
fn parse_run_id(text: &str) -> std::result::Result<String, String> {
    crate::store::RunId::parse(text).map(|id| id.as_str().to_string())
}

/// The variable that sets a run flag, and its value: `DSM_RUN_<FLAG>` first, then Meltano's
/// name for it (`MELTANO_RUN_<FLAG>`, except `--run-id`, which Meltano reads from
/// `MELTANO_RUN_ID`). Empty values count as unset.
fn env_value(flag: &str) -> Option<(String, String)> {
    let meltano = match flag {
        "RUN_ID" => envvars::MELTANO_RUN_ID.to_string(),
        _ => format!("{}{flag}", envvars::MELTANO_RUN_PREFIX),
    };
    [format!("{}{flag}", envvars::RUN_PREFIX), meltano]
        .into_iter()
        .find_map(|name| {
            std::env::var(&name)
                .ok()
                .filter(|v| !v.is_empty())
                .map(|v| (name, v))
        })
}

fn env_bool(flag: &str) -> Result<bool> {
    match env_value(flag) {
        None => Ok(false),
        Some((name, v)) => match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" | "t" | "y" => Ok(true),
            "0" | "false" | "no" | "off" | "f" | "n" => Ok(false),
            _ => Err(
                Error::config(format!("`{name}` must be true or false, found `{v}`"))
                    .hint(format!("set `{name}` to `true` or `false`, or unset it")),
            ),
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
            (Some(s), _) => s.into(),
            (None, _) if self.merge_state => StateStrategy::Merge,
            (None, None) => StateStrategy::Auto,
            (None, Some((name, v))) => <StateStrategyArg as clap::ValueEnum>::from_str(&v, true)
                .map_err(|_| {
                    Error::config(format!("unknown state strategy `{v}` in `{name}`"))
                        .hint("use `auto`, `merge` or `overwrite`")
                })?
                .into(),
        };
        let timeout = match (self.timeout, env_value("TIMEOUT")) {
            (Some(t), _) => Some(t),
            (None, None) => None,
            (None, Some((name, v))) => Some(crate::duration::parse(&v).map_err(|e| {
                Error::config(format!("`{name}` is not a duration: {e}"))
                    .hint("give seconds, or a duration such as `90s`, `15m` or `2h`")
            })?),
        };
        Ok(RunOptions {
            full_refresh: self.full_refresh || env_bool("FULL_REFRESH")?,
            no_state_update: self.no_state_update || env_bool("NO_STATE_UPDATE")?,
            force: self.force || env_bool("FORCE")?,
            state_id: None,
            state_id_suffix: self
                .state_id_suffix
                .clone()
                .or_else(|| env_value("STATE_ID_SUFFIX").map(|(_, v)| v)),
            state_strategy,
            refresh_catalog: self.refresh_catalog || env_bool("REFRESH_CATALOG")?,
            dry_run: self.dry_run || env_bool("DRY_RUN")?,
            run_id: match (&self.run_id, env_value("RUN_ID")) {
                (Some(id), _) => Some(id.clone()),
                (None, Some((name, v))) => {
                    Some(parse_run_id(&v).map_err(|e| Error::config(format!("`{name}`: {e}")))?)
                }
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

/// Prints the reports and turns the last failure into the command's error.
pub fn print_reports(ctx: &Context, reports: Vec<StepReport>) -> Result<()> {
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
                "records_read": report.records_read(),
                "records_sent": report.records_sent,
                "records_confirmed": report.records_confirmed,
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
            let counts = crate::orchestrate::RecordCounts {
                read: records,
                sent: report.records_sent,
                confirmed: report.records_confirmed,
            };
            ctx.printer.notice(format!(
                "run of `{}` succeeded in {:.1}s: {records} record{}{}{}",
                report.state_id,
                report.duration.as_secs_f64(),
                if records == 1 { "" } else { "s" },
                if per_stream.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", per_stream.join(", "))
                },
                counts.downstream()
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

/// Prints a summary (lines, or the JSON document) and turns a failure into exit code 1 (and,
/// under [`Overlap::Exit3`], flows left to another process into exit code 3).
pub fn print_summary(ctx: &Context, summary: &Summary, overlap: Overlap) -> Result<()> {
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

/// Splits `[TYPE] NAME...` into the type (from the word or `--plugin-type`) and the names.
pub fn split_type(
    words: &[String],
    flag: Option<&str>,
) -> Result<(Option<PluginType>, Vec<String>)> {
    let parse = |w: &str| {
        PluginType::parse(w).ok_or_else(|| {
            Error::config(format!("unknown plugin type `{w}`"))
                .hint("use one of `extractor`, `loader`, `mapper`, `utility`")
        })
    };
    let mut ty = flag.map(parse).transpose()?;
    let mut names: Vec<String> = words.to_vec();
    if words.len() > 1
        && let Some(t) = PluginType::parse(&words[0])
    {
        if ty.is_some_and(|f| f != t) {
            return Err(Error::config(format!(
                "`--plugin-type` and `{}` name different types",
                words[0]
            )));
        }
        ty = Some(t);
        names.remove(0);
    } else if words.len() == 1 && PluginType::parse(&words[0]).is_some() {
        return Err(
            Error::config(format!("`dsm add {}` needs a plugin name", words[0]))
                .hint(format!("for example `dsm add {} NAME`", words[0])),
        );
    }
    Ok((ty, names))
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

/// Records a project change in the audit log when the secrets store is set up (a master key is
/// found); a project without one has no audit log, so nothing is recorded and nothing fails.
pub fn audit(ctx: &Context, command: &str, action: &str, target: &str) {
    use crate::secrets::master_key::KeyLookup;
    let owner = ctx
        .project_root()
        .ok()
        .and_then(|root| crate::store::key_owner(&root));
    let lookup = KeyLookup {
        keyring: None,
        ..KeyLookup::for_project(owner.as_deref())
    };
    if lookup.find().is_err() {
        tracing::debug!(action, "no master key; the change is not audited");
        return;
    }
    let result = (|| -> Result<()> {
        let (_, conn) = ctx.open_project_store()?;
        let (key, _) = crate::secrets::store::find_key_with(conn.as_ref(), lookup)?;
        crate::secrets::audit::append(conn.as_ref(), &key, &Entry::new(command, action, [target]))?;
        Ok(())
    })();
    if let Err(error) = result {
        ctx.printer
            .warn(format!("the change was made but not audited: {error}"));
    }
}

/// Drops one trailing newline (`\n` or `\r\n`), which editors and `echo` add.
pub fn strip_newline(mut text: Zeroizing<String>) -> Zeroizing<String> {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

/// Reads a passphrase: a hidden prompt on a terminal (twice when `confirm`), else the first
/// line of standard input. Never an argument.
pub fn read_passphrase(confirm: bool) -> Result<Secret> {
    let text = if std::io::stdin().is_terminal() {
        let first = Zeroizing::new(rpassword::prompt_password("bundle passphrase: ")?);
        if confirm {
            let again = Zeroizing::new(rpassword::prompt_password("again: ")?);
            if *again != *first {
                return Err(Error::config("the passphrases differ"));
            }
        }
        first
    } else {
        let mut line = Zeroizing::new(String::new());
        std::io::stdin().read_line(&mut line)?;
        strip_newline(line)
    };
    if text.is_empty() {
        return Err(Error::config("the passphrase is empty")
            .hint("type it at the prompt or pipe it on standard input"));
    }
    Ok(Secret::new(text.to_string()))
}

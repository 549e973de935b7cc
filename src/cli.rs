//! The command-line grammar (clap types) and nothing else.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::commands;

pub mod usage;

/// dsm: a fast, safe runtime for Singer connectors that runs Meltano projects.
#[derive(Debug, Parser)]
#[command(
    name = "dsm",
    version,
    about,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Flags every command accepts.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts (the CLI's common contract).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GlobalArgs {
    /// Run as if dsm was started in DIR (the project is searched from there upward).
    #[arg(long, global = true, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// The environment to use (else DSM_ENVIRONMENT, MELTANO_ENVIRONMENT, `default_environment`).
    #[arg(long, global = true, value_name = "NAME")]
    pub environment: Option<String>,
    /// Use no environment at all, not even `default_environment`.
    #[arg(long, global = true, conflicts_with = "environment")]
    pub no_environment: bool,
    /// How much to log on stderr.
    #[arg(long, global = true, value_enum)]
    pub log_level: Option<LogLevel>,
    /// Log lines as text or as JSON objects.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Print only data and errors: no notices, no progress.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// Output format of commands that print data: `text` or `json` (some commands take more).
    #[arg(long, global = true, value_name = "FORMAT")]
    pub format: Option<String>,
    /// The system database (a path or sqlite:///path; default `.dsm/dsm.db` in the project).
    #[arg(long, global = true, value_name = "URI")]
    pub database_uri: Option<String>,
}

/// Log verbosity, with Meltano's level names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Everything, for debugging.
    Debug,
    /// Progress of runs.
    Info,
    /// Only what needs attention.
    #[value(alias = "warn")]
    Warning,
    /// Only failures.
    Error,
    /// Only fatal failures.
    Critical,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Reads `text` as a `value_enum` flag would (case ignored, aliases accepted), for environment
/// variables that stand in for a flag. The error lists the accepted names, each in backticks.
pub fn flag_value<T: ValueEnum>(text: &str) -> Result<T, String> {
    T::from_str(text.trim(), true).map_err(|_| {
        T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value().map(|p| format!("`{}`", p.get_name())))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// dsm's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new project.
    Init(commands::init::Args),
    /// Check the whole project file and report every problem.
    Validate(commands::validate::Args),
    /// Show and change plugin settings.
    Config(commands::config::Args),
    /// Add a plugin to the project.
    Add(commands::add::Args),
    /// Remove a plugin from the project.
    Remove(commands::remove::Args),
    /// List the project's plugins.
    #[command(alias = "plugin")]
    Plugins(commands::plugins::Args),
    /// Install the project's Python plugins into isolated environments.
    Install(commands::install::Args),
    /// Run blocks of plugins: EXTRACTOR [MAPPER...] LOADER, plugin:command, or job names.
    Run(commands::run::Args),
    /// Run one extractor into one loader.
    El(commands::el::Args),
    /// Run a plugin's executable or one of its commands.
    Invoke(commands::invoke::Args),
    /// Show and change which streams and properties an extractor selects.
    Select(commands::select::Args),
    /// Read and change integration state.
    State(commands::state::Args),
    /// Run every enabled flow (or the named ones) once, in dependency order.
    Sync(commands::sync::Args),
    /// Manage jobs.
    Job(commands::job::Args),
    /// Manage schedules and run the due ones.
    Schedule(commands::schedule::Args),
    /// Manage encrypted secrets.
    Secrets(commands::secrets::Args),
    /// Read and verify the audit log.
    Audit(commands::audit::Args),
    /// Export the project's system store as one bundle.
    Export(commands::export::Args),
    /// Restore a bundle written by `dsm export`.
    Import(commands::import::Args),
    /// The registry of sources and destinations.
    Sources(commands::sources::Args),
    /// Test connections of extractors and loaders.
    Test(commands::test::Args),
    /// Health of each source from the run history.
    Health(commands::health::Args),
    /// The run history.
    Runs(commands::runs::Args),
    /// Run logs: list them, show one (Meltano's `logs` commands).
    Logs(commands::logs::Args),
    /// Metrics for monitoring systems.
    Metrics(commands::metrics::Args),
    /// The map of flows: sources, transforms, destinations.
    Flows(commands::flows::Args),
    /// The conflict log of merged streams.
    Conflicts(commands::conflicts::Args),
    /// Print the shell completion script (bash, zsh, fish, powershell, elvish).
    Completions(commands::completions::Args),
    /// Print the manual page, or write one page per command with `--output-dir`.
    Man(commands::man::Args),
    /// API tokens for `dsm serve`.
    Tokens(commands::tokens::Args),
    /// The system store: its backend, schema version and leases; schema upgrades.
    Store(commands::store::Args),
    /// Events webhook sources received on `dsm serve`: list, show, replay.
    Webhooks(commands::webhooks::Args),
    /// Serve the HTTP API over the registry, runs and credentials.
    Serve(commands::serve::Args),
    /// Source requests: submit one, follow it, test, approve or reject it.
    Requests(commands::requests::Args),
}

/// The most flows, tests or installs dsm runs at the same time (`--parallel`).
pub const MAX_PARALLEL: usize = 256;

/// Reads `--parallel N` for every command that takes it: a whole number from 1 to
/// [`MAX_PARALLEL`].
pub fn parse_parallel(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_PARALLEL).contains(&n) => Ok(n),
        Ok(0) => Err("`--parallel` must be at least 1".into()),
        _ => Err(format!(
            "`--parallel` takes a whole number from 1 to {MAX_PARALLEL}"
        )),
    }
}

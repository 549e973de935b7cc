//! One module per subcommand; each turns typed arguments into settings and calls the library.

pub mod add;
pub mod audit;
pub mod completions;
pub mod config;
pub mod conflicts;
pub mod el;
pub mod export;
pub mod flows;
pub mod health;
pub mod import;
pub mod init;
pub mod install;
pub mod invoke;
pub mod job;
pub mod logs;
pub mod man;
pub mod metrics;
pub mod plugins;
pub mod remove;
pub mod requests;
pub mod run;
pub mod runs;
pub mod schedule;
pub mod secrets;
pub mod select;
pub mod serve;
pub mod shared;
pub mod sources;
pub mod state;
pub mod store;
pub mod sync;
pub mod test;
pub mod tokens;
pub mod validate;
pub mod webhooks;

use std::path::PathBuf;

use crate::cli::{Command, GlobalArgs};
use crate::error::{Error, Result};
use crate::printer::{OutputFormat, Printer};

/// What every command gets: the global flags and the printer.
#[derive(Debug)]
pub struct Context {
    /// The global flags as typed.
    pub global: GlobalArgs,
    /// Where output goes.
    pub printer: Printer,
}

impl Context {
    /// Builds the context, checking `--format` for commands that only print text or JSON.
    pub fn new(global: GlobalArgs) -> Self {
        let format = match global.format.as_deref() {
            Some("json") => OutputFormat::Json,
            _ => OutputFormat::Text,
        };
        let printer = Printer::new(format, global.quiet);
        Context { global, printer }
    }

    /// The directory dsm was started in (`--cwd` or the process's), always absolute: plugins
    /// run in the project root, so every path handed to them (config files, catalogs, state)
    /// must not depend on where dsm itself was started, and the upward search for the project
    /// must see the real parents of a relative `--cwd`.
    pub fn cwd(&self) -> Result<PathBuf> {
        match &self.global.cwd {
            Some(dir) => Ok(std::path::absolute(dir)?),
            None => Ok(std::env::current_dir()?),
        }
    }

    /// Whether runs show the live per-stream display: stderr is a terminal, logs are text
    /// and `--quiet` is off. Otherwise dsm prints one summary line per run.
    pub fn live_progress(&self) -> bool {
        use std::io::IsTerminal;
        crate::progress::ProgressMode::choose(
            self.global.quiet,
            std::io::stderr().is_terminal(),
            crate::logging::log_format(&self.global) == crate::cli::LogFormat::Json,
        ) == crate::progress::ProgressMode::Live
    }

    /// The project root: found from `--cwd` (or the current directory) upward, or from
    /// `DSM_PROJECT_ROOT` / `MELTANO_PROJECT_ROOT`.
    pub fn project_root(&self) -> Result<PathBuf> {
        crate::project::find_root(&self.cwd()?)
    }

    /// The system store of the project (or the one `--database-uri` names), opened and
    /// migrated; see [`crate::store::open_for_command`].
    pub fn open_store(&self) -> Result<std::sync::Arc<dyn crate::store::Store>> {
        crate::store::open_for_command(
            self.global.database_uri.as_deref(),
            self.project_root(),
            || self.cwd(),
        )
    }

    /// The store for `dsm state`: as [`Context::open_store`], except that a project whose
    /// `state_backend.uri` is `file://` or `s3://` keeps its state there.
    pub fn open_state_store(&self) -> Result<std::sync::Arc<dyn crate::store::Store>> {
        let store = self.open_store()?;
        match self.project_root() {
            Ok(root) if root.join("meltano.yml").is_file() => {
                let project = crate::project::Project::load(&root)?;
                match crate::store::locate(self.global.database_uri.as_deref(), &root)? {
                    crate::store::Location::Sqlite(db) => {
                        crate::state_backend::attach(store, &project, Some(&db))
                    }
                    crate::store::Location::Postgres(_) => {
                        crate::state_backend::attach(store, &project, None)
                    }
                }
            }
            _ => Ok(store),
        }
    }

    /// The project root and its system store, for commands that need a project.
    pub fn open_project_store(&self) -> Result<(PathBuf, std::sync::Arc<dyn crate::store::Store>)> {
        let root = self.project_root()?;
        let store = crate::store::open_for_project(self.global.database_uri.as_deref(), &root)?;
        Ok((root, store))
    }

    /// The `--format` value for commands that take only `text` and `json`; anything else is a
    /// usage error naming the accepted values.
    pub fn text_or_json(&self) -> Result<OutputFormat> {
        match self.global.format.as_deref() {
            None | Some("text") => Ok(OutputFormat::Text),
            Some("json") => Ok(OutputFormat::Json),
            Some(other) => Err(Error::config(format!("unknown output format `{other}`"))
                .hint("this command accepts `--format text` or `--format json`")),
        }
    }
}

/// Runs a parsed command.
pub fn dispatch(ctx: &Context, command: Command) -> Result<()> {
    match command {
        Command::Init(args) => init::run(ctx, args),
        Command::Validate(args) => validate::run(ctx, args),
        Command::Config(args) => config::run(ctx, args),
        Command::Add(args) => add::run(ctx, args),
        Command::Remove(args) => remove::run(ctx, args),
        Command::Plugins(args) => plugins::run(ctx, args),
        Command::Install(args) => install::run(ctx, args),
        Command::Run(args) => run::run(ctx, args),
        Command::El(args) => el::run(ctx, args),
        Command::Invoke(args) => invoke::run(ctx, args),
        Command::Select(args) => select::run(ctx, args),
        Command::State(args) => state::run(ctx, args),
        Command::Sync(args) => sync::run(ctx, args),
        Command::Job(args) => job::run(ctx, args),
        Command::Schedule(args) => schedule::run(ctx, args),
        Command::Secrets(args) => secrets::run(ctx, args),
        Command::Audit(args) => audit::run(ctx, args),
        Command::Export(args) => export::run(ctx, args),
        Command::Import(args) => import::run(ctx, args),
        Command::Sources(args) => sources::run(ctx, args),
        Command::Test(args) => test::run(ctx, args),
        Command::Health(args) => health::run(ctx, args),
        Command::Runs(args) => runs::run(ctx, args),
        Command::Logs(args) => logs::run(ctx, args),
        Command::Metrics(args) => metrics::run(ctx, args),
        Command::Flows(args) => flows::run(ctx, args),
        Command::Conflicts(args) => conflicts::run(ctx, args),
        Command::Completions(args) => completions::run(ctx, args),
        Command::Man(args) => man::run(ctx, args),
        Command::Tokens(args) => tokens::run(ctx, args),
        Command::Store(args) => store::run(ctx, args),
        Command::Webhooks(args) => webhooks::run(ctx, args),
        Command::Serve(args) => serve::run(ctx, args),
        Command::Requests(args) => requests::run(ctx, args),
    }
}

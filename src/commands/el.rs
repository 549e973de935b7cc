//! `dsm el TAP TARGET`: one extractor into one loader.

use std::path::{Path, PathBuf};

use crate::commands::Context;
use crate::commands::shared::{
    RunFlags, check_disabled, install_before_run, load, print_reports, timeout_left,
};
use crate::error::{Error, Result};
use crate::plugin::install::InstallChoice;
use crate::runner::{self, Dump, Flow};

/// Arguments of `dsm el`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The extractor.
    pub extractor: String,
    /// The loader.
    pub loader: String,
    /// Read and write state under this id instead of `{env}:{tap}-to-{target}`.
    #[arg(long, value_name = "ID", env = crate::envvars::MELTANO_STATE_ID)]
    pub state_id: Option<String>,
    /// Extract only these streams (or `stream.property` patterns); repeatable. Replaces the
    /// extractor's `select_filter` and applies after its `select` rules, as in Meltano.
    #[arg(long, value_name = "PATTERN")]
    pub select: Vec<String>,
    /// Leave out these streams (or patterns); repeatable.
    #[arg(long, value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Give the tap this catalog file instead of discovering one (only `--select` and
    /// `--exclude` apply to it).
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// Start the tap from this state file instead of the stored state.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Print this file as the run would prepare it, and exit without running.
    #[arg(long, value_enum, value_name = "WHAT")]
    pub dump: Option<DumpArg>,
    /// With `--dump`: show sensitive config values instead of `********`.
    #[arg(long = "unsafe", requires = "dump")]
    pub show_secrets: bool,
    /// The flags shared with `dsm run`.
    #[command(flatten)]
    pub flags: RunFlags,
}

/// `--dump` (the runner's [`Dump`], as clap reads it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DumpArg {
    /// The catalog the tap would get, after selection.
    Catalog,
    /// The state the tap would start from.
    State,
    /// The extractor's config file.
    ExtractorConfig,
    /// The loader's config file.
    LoaderConfig,
}

impl From<DumpArg> for Dump {
    fn from(a: DumpArg) -> Dump {
        match a {
            DumpArg::Catalog => Dump::Catalog,
            DumpArg::State => Dump::State,
            DumpArg::ExtractorConfig => Dump::ExtractorConfig,
            DumpArg::LoaderConfig => Dump::LoaderConfig,
        }
    }
}

/// Runs `dsm el`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let (project, env) = load(ctx)?;
    let env = match &env {
        Some(n) => Some(project.environment(n)?),
        None => None,
    };
    if args.dump.is_none() {
        check_disabled(
            ctx,
            &project,
            std::slice::from_ref(&args.extractor),
            args.flags.include_disabled,
        )?;
    }
    let mut opts = args.flags.options(ctx)?;
    opts.state_id = args.state_id;
    // Meltano's `_select_filter` override: the selected entities, then `!entity` for each
    // excluded one; without either flag the extractor's own `select_filter` stays.
    let filter = crate::catalog::SelectFilter::new(&args.select, &args.exclude);
    if !filter.is_empty() {
        opts.select_filter = Some(filter.patterns);
    }
    opts.catalog = args.catalog.as_deref().map(absolute).transpose()?;
    opts.state_file = args.state.as_deref().map(absolute).transpose()?;
    opts.dump = args.dump.map(Dump::from);
    opts.dump_unsafe = args.show_secrets;
    let flow = Flow {
        extractor: args.extractor,
        mappers: Vec::new(),
        loader: args.loader,
    };
    let choice = args.flags.install_choice();
    // `--timeout` bounds the whole run, installs included.
    let started = std::time::Instant::now();
    let deadline = opts.timeout.map(|t| started + t);
    install_before_run(
        &ctx.printer,
        &project,
        &[flow.extractor.clone(), flow.loader.clone()],
        choice,
        deadline,
    )?;
    if choice == InstallChoice::OnlyInstall {
        return Ok(());
    }
    timeout_left(&mut opts, started)?;
    let dumped_secrets = opts.dump.is_some() && opts.dump_unsafe;
    let report = runner::run_flow(&project, env, &flow, &opts)?;
    if dumped_secrets && report.dump.is_some() {
        // A dump with secrets in clear is on the record, as what it is.
        crate::commands::shared::audit(
            ctx,
            "dsm el --dump --unsafe",
            "config.read_plaintext",
            &flow.extractor,
        );
    }
    print_reports(ctx, vec![runner::StepReport::Flow(Box::new(report))])
}

/// A path typed on the command line, made absolute against the current directory.
fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| {
        Error::config(format!(
            "could not resolve the path `{}`: {e}",
            path.display()
        ))
    })
}

//! `dsm run BLOCKS...`: extractor, mappers and loader per flow, job names expanded.

use crate::commands::Context;
use crate::commands::shared::{
    RunFlags, check_disabled, install_before_run, load, print_reports, timeout_left,
};
use crate::error::Result;
use crate::plugin::install::InstallChoice;
use crate::runner;

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

/// Runs `dsm run`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let (project, env) = load(ctx)?;
    let env = match &env {
        Some(n) => Some(project.environment(n)?),
        None => None,
    };
    check_disabled(ctx, &project, &args.blocks, args.flags.include_disabled)?;
    let mut opts = args.flags.options(ctx)?;
    let choice = args.flags.install_choice();
    // `--timeout` bounds the whole run, installs included.
    let started = std::time::Instant::now();
    let deadline = opts.timeout.map(|t| started + t);
    install_before_run(&ctx.printer, &project, &args.blocks, choice, deadline)?;
    if choice == InstallChoice::OnlyInstall {
        return Ok(());
    }
    timeout_left(&mut opts, started)?;
    let reports = runner::run_steps(&project, env, &args.blocks, &opts)?;
    print_reports(ctx, reports)
}

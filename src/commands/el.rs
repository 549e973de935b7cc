//! `dsm el TAP TARGET`: one extractor into one loader.

use crate::commands::Context;
use crate::commands::run::{RunFlags, finish, load};
use crate::error::Result;
use crate::runner::{self, Flow};

/// Arguments of `dsm el`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The extractor.
    pub extractor: String,
    /// The loader.
    pub loader: String,
    /// Read and write state under this id instead of `{env}:{tap}-to-{target}`.
    #[arg(long, value_name = "ID")]
    pub state_id: Option<String>,
    /// The flags shared with `dsm run`.
    #[command(flatten)]
    pub flags: RunFlags,
}

/// Runs `dsm el`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let (project, env) = load(ctx)?;
    let env = match &env {
        Some(n) => Some(project.environment(n)?),
        None => None,
    };
    let mut opts = args.flags.options(ctx)?;
    opts.state_id = args.state_id;
    let flow = Flow {
        extractor: args.extractor,
        mappers: Vec::new(),
        loader: args.loader,
    };
    crate::commands::install::auto_install(
        &ctx.printer,
        &project,
        &[flow.extractor.clone(), flow.loader.clone()],
    )?;
    let report = runner::run_flow(&project, env, &flow, &opts)?;
    finish(ctx, vec![runner::StepReport::Flow(Box::new(report))])
}

//! `dsm install`: installs the project's Python plugins, each into its own environment under
//! `.dsm/plugins/` (see [`crate::plugin::install`]). Built-in plugins and plugins without a
//! `pip_url` need nothing; plugins installed from the same `pip_url` are skipped.

use crate::commands::Context;
use crate::commands::shared::install_plugins;
use crate::error::Result;

/// Arguments of `dsm install`.
#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// `[TYPE] [NAME...]`: only these plugins (default: every plugin of the project).
    #[arg(value_name = "TYPE|NAME")]
    pub plugins: Vec<String>,
    /// Only plugins of this type.
    #[arg(long, value_name = "TYPE")]
    pub plugin_type: Option<String>,
    /// Delete and recreate the environments, even those already installed.
    #[arg(long)]
    pub clean: bool,
    /// How many plugins to install at the same time (default: the number of CPUs).
    #[arg(long, short = 'p', value_name = "N", value_parser = crate::cli::parse_parallel)]
    pub parallel: Option<usize>,
}

/// Runs `dsm install`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    install_plugins(
        ctx,
        &args.plugins,
        args.plugin_type.as_deref(),
        args.clean,
        args.parallel,
    )
}

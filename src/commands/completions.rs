//! `dsm completions SHELL`: the shell completion script, generated from the clap definitions.

use clap::CommandFactory as _;

use crate::cli::Cli;
use crate::commands::Context;
use crate::error::{Error, Result};

/// Arguments of `dsm completions`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Runs `dsm completions`: prints the script on stdout.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    ctx.printer.raw(script(args.shell)?);
    Ok(())
}

/// The completion script of `dsm` for `shell`.
pub fn script(shell: clap_complete::Shell) -> Result<String> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "dsm", &mut out);
    String::from_utf8(out)
        .map_err(|e| Error::failed(format!("the {shell} completion script is not UTF-8: {e}")))
}

//! `dsm man`: the manual page (roff), generated from the clap definitions.

use std::path::PathBuf;

use clap::CommandFactory as _;

use crate::cli::Cli;
use crate::commands::Context;
use crate::error::{Error, Result};

/// Arguments of `dsm man`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write `dsm.1` and one page per subcommand (`dsm-config-list.1`, ...) into DIR instead of
    /// printing `dsm.1` on stdout.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

/// Runs `dsm man`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    match args.output_dir {
        None => ctx.printer.raw(page()?),
        Some(dir) => {
            let dir = ctx.cwd()?.join(dir);
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::failed(format!("cannot create `{}`: {e}", dir.display())))?;
            clap_mangen::generate_to(Cli::command(), &dir).map_err(|e| {
                Error::failed(format!(
                    "cannot write the manual pages to `{}`: {e}",
                    dir.display()
                ))
            })?;
            ctx.printer
                .notice(format!("wrote the manual pages to `{}`", dir.display()));
        }
    }
    Ok(())
}

/// The page `dsm.1`: every command with its description, and the global flags.
pub fn page() -> Result<String> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut out)
        .map_err(|e| Error::failed(format!("cannot render the manual page: {e}")))?;
    String::from_utf8(out).map_err(|e| Error::failed(format!("the manual page is not UTF-8: {e}")))
}

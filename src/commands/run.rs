//! `dsm run` (not written yet).

use crate::commands::Context;
use crate::error::{Error, Result};

/// Arguments of `dsm run`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `dsm run`.
pub fn run(_ctx: &Context, _args: Args) -> Result<()> {
    Err(Error::config(
        "`dsm run` is not available in this build yet",
    ))
}

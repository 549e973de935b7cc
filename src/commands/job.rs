//! `dsm job` (not written yet).

use crate::commands::Context;
use crate::error::{Error, Result};

/// Arguments of `dsm job`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `dsm job`.
pub fn run(_ctx: &Context, _args: Args) -> Result<()> {
    Err(Error::config(
        "`dsm job` is not available in this build yet",
    ))
}

//! `dsm select` (not written yet).

use crate::commands::Context;
use crate::error::{Error, Result};

/// Arguments of `dsm select`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `dsm select`.
pub fn run(_ctx: &Context, _args: Args) -> Result<()> {
    Err(Error::config(
        "`dsm select` is not available in this build yet",
    ))
}

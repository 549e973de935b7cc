//! `dsm schedule` (not written yet).

use crate::commands::Context;
use crate::error::{Error, Result};

/// Arguments of `dsm schedule`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `dsm schedule`.
pub fn run(_ctx: &Context, _args: Args) -> Result<()> {
    Err(Error::config(
        "`dsm schedule` is not available in this build yet",
    ))
}

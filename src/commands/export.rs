//! `dsm export` (not written yet).

use crate::commands::Context;
use crate::error::{Error, Result};

/// Arguments of `dsm export`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `dsm export`.
pub fn run(_ctx: &Context, _args: Args) -> Result<()> {
    Err(Error::config(
        "`dsm export` is not available in this build yet",
    ))
}

//! `dsm runs` (not written yet).

use crate::commands::Context;
use crate::error::{Error, Result};

/// Arguments of `dsm runs`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `dsm runs`.
pub fn run(_ctx: &Context, _args: Args) -> Result<()> {
    Err(Error::config(
        "`dsm runs` is not available in this build yet",
    ))
}

//! `dsm install` (not written yet).

use crate::commands::Context;
use crate::error::{Error, Result};

/// Arguments of `dsm install`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `dsm install`.
pub fn run(_ctx: &Context, _args: Args) -> Result<()> {
    Err(Error::config(
        "`dsm install` is not available in this build yet",
    ))
}

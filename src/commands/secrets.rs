//! `dsm secrets` (not written yet).

use crate::commands::Context;
use crate::error::{Error, Result};

/// Arguments of `dsm secrets`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `dsm secrets`.
pub fn run(_ctx: &Context, _args: Args) -> Result<()> {
    Err(Error::config(
        "`dsm secrets` is not available in this build yet",
    ))
}

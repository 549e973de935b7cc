//! `dsm sync` (not written yet).

use crate::commands::Context;
use crate::error::{Error, Result};

/// Arguments of `dsm sync`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `dsm sync`.
pub fn run(_ctx: &Context, _args: Args) -> Result<()> {
    Err(Error::config(
        "`dsm sync` is not available in this build yet",
    ))
}

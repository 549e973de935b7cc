//! `dsm sources` (not written yet).

use crate::commands::Context;
use crate::error::{Error, Result};

/// Arguments of `dsm sources`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `dsm sources`.
pub fn run(_ctx: &Context, _args: Args) -> Result<()> {
    Err(Error::config(
        "`dsm sources` is not available in this build yet",
    ))
}

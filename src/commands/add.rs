//! `dsm add` (not written yet).

use crate::commands::Context;
use crate::error::{Error, Result};

/// Arguments of `dsm add`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `dsm add`.
pub fn run(_ctx: &Context, _args: Args) -> Result<()> {
    Err(Error::config(
        "`dsm add` is not available in this build yet",
    ))
}

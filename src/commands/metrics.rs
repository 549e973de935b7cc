//! `dsm metrics` (not written yet).

use crate::commands::Context;
use crate::error::{Error, Result};

/// Arguments of `dsm metrics`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `dsm metrics`.
pub fn run(_ctx: &Context, _args: Args) -> Result<()> {
    Err(Error::config(
        "`dsm metrics` is not available in this build yet",
    ))
}

//! `dsm test` (not written yet).

use crate::commands::Context;
use crate::error::{Error, Result};

/// Arguments of `dsm test`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `dsm test`.
pub fn run(_ctx: &Context, _args: Args) -> Result<()> {
    Err(Error::config(
        "`dsm test` is not available in this build yet",
    ))
}

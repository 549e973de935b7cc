//! `dsm health` (not written yet).

use crate::commands::Context;
use crate::error::{Error, Result};

/// Arguments of `dsm health`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `dsm health`.
pub fn run(_ctx: &Context, _args: Args) -> Result<()> {
    Err(Error::config(
        "`dsm health` is not available in this build yet",
    ))
}

//! `dsm remove` (not written yet).

use crate::commands::Context;
use crate::error::{Error, Result};

/// Arguments of `dsm remove`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `dsm remove`.
pub fn run(_ctx: &Context, _args: Args) -> Result<()> {
    Err(Error::config(
        "`dsm remove` is not available in this build yet",
    ))
}

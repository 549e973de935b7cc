//! `dsm flows` (not written yet).

use crate::commands::Context;
use crate::error::{Error, Result};

/// Arguments of `dsm flows`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `dsm flows`.
pub fn run(_ctx: &Context, _args: Args) -> Result<()> {
    Err(Error::config(
        "`dsm flows` is not available in this build yet",
    ))
}

//! `dsm state` (not written yet).

use crate::commands::Context;
use crate::error::{Error, Result};

/// Arguments of `dsm state`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `dsm state`.
pub fn run(_ctx: &Context, _args: Args) -> Result<()> {
    Err(Error::config(
        "`dsm state` is not available in this build yet",
    ))
}

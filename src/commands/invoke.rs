//! `dsm invoke` (not written yet).

use crate::commands::Context;
use crate::error::{Error, Result};

/// Arguments of `dsm invoke`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `dsm invoke`.
pub fn run(_ctx: &Context, _args: Args) -> Result<()> {
    Err(Error::config(
        "`dsm invoke` is not available in this build yet",
    ))
}

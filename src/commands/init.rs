//! `dsm init` (not written yet).

use crate::commands::Context;
use crate::error::{Error, Result};

/// Arguments of `dsm init`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `dsm init`.
pub fn run(_ctx: &Context, _args: Args) -> Result<()> {
    Err(Error::config(
        "`dsm init` is not available in this build yet",
    ))
}

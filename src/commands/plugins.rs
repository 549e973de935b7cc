//! `dsm plugins` (not written yet).

use crate::commands::Context;
use crate::error::{Error, Result};

/// Arguments of `dsm plugins`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `dsm plugins`.
pub fn run(_ctx: &Context, _args: Args) -> Result<()> {
    Err(Error::config(
        "`dsm plugins` is not available in this build yet",
    ))
}

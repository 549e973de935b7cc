//! `dsm config` (not written yet).

use crate::commands::Context;
use crate::error::{Error, Result};

/// Arguments of `dsm config`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `dsm config`.
pub fn run(_ctx: &Context, _args: Args) -> Result<()> {
    Err(Error::config(
        "`dsm config` is not available in this build yet",
    ))
}

//! `dsm import` (not written yet).

use crate::commands::Context;
use crate::error::{Error, Result};

/// Arguments of `dsm import`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `dsm import`.
pub fn run(_ctx: &Context, _args: Args) -> Result<()> {
    Err(Error::config(
        "`dsm import` is not available in this build yet",
    ))
}

//! `dsm conflicts` (not written yet).

use crate::commands::Context;
use crate::error::{Error, Result};

/// Arguments of `dsm conflicts`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `dsm conflicts`.
pub fn run(_ctx: &Context, _args: Args) -> Result<()> {
    Err(Error::config(
        "`dsm conflicts` is not available in this build yet",
    ))
}

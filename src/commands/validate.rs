//! `dsm validate` (not written yet).

use crate::commands::Context;
use crate::error::{Error, Result};

/// Arguments of `dsm validate`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `dsm validate`.
pub fn run(_ctx: &Context, _args: Args) -> Result<()> {
    Err(Error::config(
        "`dsm validate` is not available in this build yet",
    ))
}

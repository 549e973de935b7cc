//! `dsm audit` (not written yet).

use crate::commands::Context;
use crate::error::{Error, Result};

/// Arguments of `dsm audit`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `dsm audit`.
pub fn run(_ctx: &Context, _args: Args) -> Result<()> {
    Err(Error::config(
        "`dsm audit` is not available in this build yet",
    ))
}

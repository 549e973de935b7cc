//! `dsm el` (not written yet).

use crate::commands::Context;
use crate::error::{Error, Result};

/// Arguments of `dsm el`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `dsm el`.
pub fn run(_ctx: &Context, _args: Args) -> Result<()> {
    Err(Error::config("`dsm el` is not available in this build yet"))
}

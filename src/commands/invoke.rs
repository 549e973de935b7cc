//! `dsm invoke PLUGIN[:COMMAND] [ARGS...]`: run a plugin's executable (or one of its commands) with
//! its config and environment;
//! dsm exits with the plugin's exit code.

use crate::commands::Context;
use crate::commands::shared::load;
use crate::error::{Error, Result};
use crate::runner;

/// Arguments of `dsm invoke`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The plugin, or `PLUGIN:COMMAND` for one of its `commands:`.
    pub plugin: String,
    /// Arguments passed to the plugin as they are.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Runs `dsm invoke`. A non-zero exit of the plugin ends dsm with the same code.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let (project, env) = load(ctx)?;
    let env = match &env {
        Some(n) => Some(project.environment(n)?),
        None => None,
    };
    let code = runner::invoke(&project, env, &args.plugin, &args.args)?;
    if code != 0 {
        // The plugin's exit code is the command's; nothing to add to what it printed. Returned
        // (not `process::exit`) so that everything dsm holds is dropped and cleaned up first.
        let code = u8::try_from(code).unwrap_or(1);
        return Err(Error::passthrough(if code == 0 { 1 } else { code }));
    }
    Ok(())
}

//! `dsm remove`: takes a plugin out of `meltano.yml` (and out of every environment's block),
//! deletes its lock file and its installed environment, like `meltano remove`.
//!
//! A plugin that a job, a schedule or another plugin (`inherit_from`) still names is not
//! removed: the project would no longer load.

use crate::commands::Context;
use crate::commands::shared::{audit, split_type};
use crate::error::{Error, Result};
use crate::plugin::manage::{remove_one, still_used};
use crate::project::Project;

/// Arguments of `dsm remove`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// `[TYPE] NAME...`: the type may be left out when the names are unambiguous.
    #[arg(required = true, value_name = "TYPE|NAME")]
    pub plugin: Vec<String>,
    /// The plugin type (instead of a leading TYPE word).
    #[arg(long, value_name = "TYPE")]
    pub plugin_type: Option<String>,
}

/// Runs `dsm remove`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let root = ctx.project_root()?;
    let project = Project::load(&root)?;
    let (ty, names) = split_type(&args.plugin, args.plugin_type.as_deref())?;
    let mut plugins = Vec::new();
    for name in &names {
        let plugin = project.find_plugin(name, ty)?.clone();
        if let Some(why) = still_used(&project, &plugin, &names) {
            return Err(Error::config(format!(
                "{} `{}` is still used: {why}",
                plugin.plugin_type.singular(),
                plugin.name
            ))
            .hint(
                "remove or change what uses it in meltano.yml first, then run `dsm remove` again",
            ));
        }
        plugins.push(plugin);
    }
    for plugin in &plugins {
        remove_one(&project, plugin)?;
        ctx.printer.notice(format!(
            "removed {} `{}` from meltano.yml",
            plugin.plugin_type.singular(),
            plugin.name
        ));
        audit(
            ctx,
            "dsm remove",
            "plugin.remove",
            &format!("{}.{}", plugin.plugin_type.key(), plugin.name),
        );
    }
    Ok(())
}

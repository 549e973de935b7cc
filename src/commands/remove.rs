//! `dsm remove`: takes a plugin out of `meltano.yml` (and out of every environment's block),
//! deletes its lock file and its installed environment, like `meltano remove`.
//!
//! A plugin that a job, a schedule or another plugin (`inherit_from`) still names is not
//! removed: the project would no longer load.

use std::path::Path;

use crate::commands::Context;
use crate::commands::shared::{audit, split_type};
use crate::error::{Error, Result};
use crate::plugin::install;
use crate::project::edit::{self, Seg};
use crate::project::{Definition, Plugin, Project};

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

/// What still names `plugin` (ignoring the plugins being removed together with it).
pub(crate) fn still_used(
    project: &Project,
    plugin: &Plugin,
    removing: &[String],
) -> Option<String> {
    let name = plugin.name.as_str();
    for job in project.jobs() {
        if job.task_list().iter().any(|task| {
            task.split_whitespace()
                .any(|block| block_names(block, name))
        }) {
            return Some(format!("job `{}` runs it", job.name));
        }
    }
    for s in project.schedules() {
        if s.extractor.as_deref() == Some(name) || s.loader.as_deref() == Some(name) {
            return Some(format!("schedule `{}` runs it", s.name));
        }
    }
    for p in project.plugins() {
        if p.parent.as_deref() == Some(name)
            && p.plugin_type == plugin.plugin_type
            && !removing.contains(&p.name)
        {
            return Some(format!(
                "{} `{}` inherits from it",
                p.plugin_type.singular(),
                p.name
            ));
        }
        if p.mappings.iter().any(|m| m.name == name) && p.name != name {
            return Some(format!("it is a mapping of mapper `{}`", p.name));
        }
    }
    None
}

/// Whether a block of a `dsm run` task (`tap-x`, `dbt:run`) names the plugin.
fn block_names(block: &str, name: &str) -> bool {
    block == name || block.split_once(':').is_some_and(|(p, _)| p == name)
}

pub(crate) fn remove_one(project: &Project, plugin: &Plugin) -> Result<()> {
    let root = project.root();
    let ty = plugin.plugin_type.key();
    let envs: Vec<String> = project
        .environments()
        .iter()
        .map(|e| e.name.clone())
        .collect();
    // Each block is removed from the file that holds it, an `include_paths` file included.
    let def = [Seg::key("plugins"), Seg::key(ty), Seg::item(&plugin.name)];
    let removed =
        edit::edit_defining_file(root, &def, |doc| doc.remove_item(&def[..2], &plugin.name))?;
    if !removed {
        return Err(Error::failed(format!(
            "{} `{}` was not found in any project file",
            plugin.plugin_type.singular(),
            plugin.name
        )));
    }
    for env in &envs {
        let block = [
            Seg::key("environments"),
            Seg::item(env),
            Seg::key("config"),
            Seg::key("plugins"),
            Seg::key(ty),
        ];
        edit::edit_defining_file(root, &block, |doc| doc.remove_item(&block, &plugin.name))?;
    }
    // The lock file goes when no other plugin of the project shares it.
    if let Definition::Locked { lock_file } = &plugin.definition {
        remove_file(&root.join(lock_file))?;
    } else if let Some(variant) = &plugin.variant
        && plugin.parent.is_none()
    {
        remove_file(
            &root
                .join("plugins")
                .join(ty)
                .join(format!("{}--{variant}.lock", plugin.name)),
        )?;
    }
    let dir = install::plugin_dir(root, plugin.plugin_type, &plugin.name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| Error::failed(format!("cannot delete `{}`: {e}", dir.display())))?;
    }
    Ok(())
}

fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::failed(format!(
            "cannot delete `{}`: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_name_plugins_with_or_without_a_command() {
        assert!(block_names("tap-x", "tap-x"));
        assert!(block_names("dbt:run", "dbt"));
        assert!(!block_names("tap-xy", "tap-x"));
    }
}

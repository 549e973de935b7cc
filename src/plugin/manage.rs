//! Adding plugins to a project and taking them out again, as `dsm add`/`dsm remove` and the
//! HTTP API's `POST`/`DELETE /api/sources` do: a known plugin's entry and lock file from dsm's
//! catalog ([`crate::project::hub`]), the type a name implies, what still names a plugin, and
//! removing one from every file and environment block that holds it.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value as J};

use crate::error::{Error, Result, did_you_mean};
use crate::plugin::install;
use crate::project::edit::{self, Seg};
use crate::project::hub;
use crate::project::{Definition, Plugin, PluginType, Project};

/// Meltano's guess of a type from a name: `tap-` is an extractor, `target-` a loader.
pub fn infer_type(name: &str) -> Result<PluginType> {
    if name.starts_with("tap-") {
        Ok(PluginType::Extractors)
    } else if name.starts_with("target-") {
        Ok(PluginType::Loaders)
    } else {
        let known = hub::types_of(name);
        match known.as_slice() {
            [only] => Ok(*only),
            _ => Err(Error::config(format!(
                "cannot tell the plugin type of `{name}` from its name"
            ))
            .hint(format!(
                "name the type: `dsm add extractor {name}` (or `loader`, `mapper`, `utility`)"
            ))),
        }
    }
}

/// A lock file to write: its path relative to the project root and its text.
pub type LockFile = (PathBuf, &'static str);

pub fn catalog_entry(
    ty: PluginType,
    name: &str,
    variant: Option<&str>,
) -> Result<(Map<String, J>, Option<LockFile>)> {
    let Some((variant, text)) = hub::entry_text(ty, name, variant) else {
        let variants = hub::variants(ty, name);
        if let Some(want) = variant
            && !variants.is_empty()
        {
            return Err(Error::config(format!(
                "{} `{name}` has no variant `{want}` in dsm's catalog",
                ty.singular()
            ))
            .hint(format!(
                "known variants: {}",
                variants
                    .iter()
                    .map(|v| format!("`{v}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        return Err(unknown_plugin(ty, name));
    };
    let def: J = serde_json::from_str(text).map_err(|e| {
        Error::failed(format!(
            "dsm's catalog entry for `{name}--{variant}` is not valid JSON: {e}"
        ))
    })?;
    let mut entry = Map::new();
    entry.insert("variant".into(), J::String(variant.clone()));
    if let Some(pip) = def.get("pip_url").and_then(J::as_str) {
        entry.insert("pip_url".into(), J::String(pip.to_string()));
    }
    // A built-in's template (`tap-webhook`: `annotations.dsm.source.type: webhook`).
    if let Some(annotations) = def.get("annotations").filter(|a| a.is_object()) {
        entry.insert("annotations".into(), annotations.clone());
    }
    let rel = Path::new("plugins")
        .join(ty.key())
        .join(format!("{name}--{variant}.lock"));
    Ok((entry, Some((rel, text))))
}

fn unknown_plugin(ty: PluginType, name: &str) -> Error {
    let e = Error::config(format!(
        "{} `{name}` is not in dsm's catalog of known plugins",
        ty.singular()
    ));
    let names = hub::names(ty);
    if let Some(m) = did_you_mean(name, names.iter().copied()) {
        return e.hint(format!("did you mean `{m}`?"));
    }
    if let Some(other) = hub::types_of(name).first() {
        return e.hint(format!(
            "`{name}` is a known {}: `dsm add {} {name}`",
            other.singular(),
            other.singular()
        ));
    }
    e.hint(format!(
        "add it with `dsm add {} {name} --custom --pip-url PACKAGE`; `dsm plugins list --available` lists the known plugins",
        ty.singular()
    ))
}

pub fn write_lock(root: &Path, rel: &Path, text: &str) -> Result<()> {
    let path = root.join(rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::failed(format!("cannot create `{}`: {e}", dir.display())))?;
    }
    let mut body = text.trim_end().to_string();
    body.push('\n');
    edit::write_new_shared(&path, &body)
}

/// What still names `plugin` (ignoring the plugins being removed together with it).
pub fn still_used(project: &Project, plugin: &Plugin, removing: &[String]) -> Option<String> {
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

pub fn remove_one(project: &Project, plugin: &Plugin) -> Result<()> {
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

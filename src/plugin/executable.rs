//! Where a plugin's executable is: a path as written, one of dsm's built-in plugins (shipped as
//! binaries next to `dsm`), the plugin's own virtual environment, or a name looked up on `PATH`.

use std::path::PathBuf;

use crate::envvars;
use crate::project::{Plugin, Project};

/// The built-in plugins shipped as binaries next to `dsm`.
pub const BUILTINS: &[&str] = &[
    "tap-csv",
    "tap-jsonl",
    "tap-sqlite",
    "tap-rest",
    "tap-webhook",
    "target-csv",
    "target-jsonl",
    "target-sqlite",
];

/// Where a plugin's executable is: a path as written, a built-in binary (variant `dsm`, or a
/// built-in's name without `pip_url`) next to `dsm` or in `DSM_BUILTIN_BIN_DIR`, the plugin's
/// venv under `.dsm/plugins/` (or Meltano's `.meltano/`), else the name, looked up on `PATH`.
pub fn resolve_executable(project: &Project, plugin: &Plugin) -> PathBuf {
    let exe = if plugin.executable.is_empty() {
        plugin.name.as_str()
    } else {
        plugin.executable.as_str()
    };
    if exe.contains('/') {
        return project.root().join(exe);
    }
    let builtin = plugin.variant.as_deref() == Some("dsm")
        || (plugin.pip_url.is_none() && BUILTINS.contains(&exe));
    if builtin {
        let mut dirs: Vec<PathBuf> = Vec::new();
        if let Some(d) = std::env::var_os(envvars::BUILTIN_BIN_DIR).filter(|d| !d.is_empty()) {
            dirs.push(PathBuf::from(d));
        }
        if let Some(d) = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(PathBuf::from))
        {
            dirs.push(d);
        }
        if let Some(found) = dirs.iter().map(|d| d.join(exe)).find(|p| p.is_file()) {
            return found;
        }
    }
    if plugin.pip_url.is_some() {
        let ty = plugin.plugin_type.key();
        // An inherited plugin with its parent's `pip_url` runs from the parent's environment.
        let owner = crate::plugin::install::venv_owner(project, plugin);
        for dir in [".dsm/plugins", ".meltano"] {
            let candidate = project
                .root()
                .join(dir)
                .join(ty)
                .join(&owner.name)
                .join("venv/bin")
                .join(exe);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from(exe)
}

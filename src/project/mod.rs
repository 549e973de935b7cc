//! `meltano.yml`: the model, environments, inheritance, includes, validation.
//!
//! [`Project::load`] reads the project file and the files its `include_paths` name, validates
//! every one against dsm's schema (all problems of a file at once, with positions), merges them
//! like Meltano, and resolves each plugin's definition: custom (has a `namespace`), inheriting
//! (`inherit_from`), or shadowing a known plugin (definition from its lock file
//! `plugins/<type>/<name>--<variant>.lock`, else from dsm's catalog in [`hub`]).
//!
//! Here: the model of a loaded project and its accessors. Beside it: reading and merging the
//! files ([`load`]), resolving plugin definitions ([`resolve`]) and the checks that produce
//! [`Diagnostic`]s ([`diagnostics`]).

pub mod annotations;
pub mod edit;
pub mod hub;
pub mod model;
pub mod schema;
pub mod yaml;

mod diagnostics;
mod load;
mod resolve;

use std::path::{Path, PathBuf};

use crate::envvars;
use crate::error::{Error, Result, did_you_mean};
pub use annotations::{DsmJob, DsmPlugin, DsmProject};
pub use diagnostics::{Diagnostic, Severity, diagnostics_error};
pub(crate) use edit::project_files;
pub(crate) use load::included_files;
use load::*;
pub use model::{
    Environment, Job, Mapping, Object, PluginDef, PluginType, ProjectFile, Schedule, SettingDef,
};
pub use yaml::Pos;

/// The project file's name, as in Meltano.
pub const PROJECT_FILE: &str = "meltano.yml";

/// dsm's private folder in a project (holds the system store, plugin environments, run logs).
pub const PRIVATE_DIR: &str = ".dsm";

/// Finds the project root the way Meltano does: `DSM_PROJECT_ROOT` (or `MELTANO_PROJECT_ROOT`)
/// when set, else the first directory from `start` upward that holds a `meltano.yml`.
pub fn find_root(start: &Path) -> Result<PathBuf> {
    for var in [envvars::PROJECT_ROOT, envvars::MELTANO_PROJECT_ROOT] {
        if let Some(dir) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            let dir = start.join(dir);
            if dir.join(PROJECT_FILE).is_file() {
                return Ok(dir);
            }
            return Err(Error::config(format!(
                "`{var}` points at `{}`, which has no {PROJECT_FILE}",
                dir.display()
            ))
            .hint(format!("unset `{var}` or point it at a project directory")));
        }
    }
    let mut dir = Some(start);
    while let Some(d) = dir {
        if d.join(PROJECT_FILE).is_file() {
            return Ok(d.to_path_buf());
        }
        dir = d.parent();
    }
    Err(Error::config(format!(
        "no {PROJECT_FILE} found in `{}` or any directory above it",
        start.display()
    ))
    .hint("run dsm inside a project, pass `--cwd DIR`, or create one with `dsm init`"))
}

/// How a plugin gets its definition.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Definition {
    /// Defined in full in the project (it has a `namespace`).
    Custom,
    /// Inherits from another plugin of the project.
    Inherited {
        /// The parent's name.
        parent: String,
    },
    /// Shadows a known plugin, defined by its lock file.
    Locked {
        /// The lock file, relative to the project root.
        lock_file: PathBuf,
    },
    /// Shadows a known plugin, defined by dsm's catalog.
    Catalog,
    /// Not custom and not known: taken as written (a warning says so).
    Unknown,
}

/// A plugin with its definition resolved (inheritance and lock file applied).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plugin {
    /// Its name in the project.
    pub name: String,
    /// Its type.
    pub plugin_type: PluginType,
    /// Where its definition comes from.
    pub definition: Definition,
    /// Namespace (settings' env var prefix besides the name).
    pub namespace: String,
    /// Variant, when known.
    pub variant: Option<String>,
    /// Executable (defaults to the name).
    pub executable: String,
    /// What pip installs.
    pub pip_url: Option<String>,
    /// Python for its venv.
    pub python: Option<String>,
    /// Capabilities.
    pub capabilities: Vec<String>,
    /// Setting definitions (parent's, then own overriding by name).
    pub settings: Vec<SettingDef>,
    /// Commands.
    pub commands: Object,
    /// Selection rules.
    pub select: Option<Vec<String>>,
    /// Selection filter.
    pub select_filter: Option<Vec<String>>,
    /// Metadata rules.
    pub metadata: Option<Object>,
    /// Schema overrides.
    pub schema: Option<Object>,
    /// Catalog file path.
    pub catalog: Option<String>,
    /// State file path.
    pub state: Option<String>,
    /// Load schema.
    pub load_schema: Option<String>,
    /// Whether to reuse a cached catalog.
    pub use_cached_catalog: Option<bool>,
    /// Environment variables of the plugin (parent's, then own).
    pub env: Object,
    /// The plugin's own `config` as written (parent values come through settings resolution).
    pub config: Object,
    /// Mapper mappings.
    pub mappings: Vec<Mapping>,
    /// dsm's annotations.
    pub annotations: DsmPlugin,
    /// The merged definition as written (own entry over parent/lock/catalog).
    pub raw: PluginDef,
    /// The parent's name (for `inherit_from`).
    pub parent: Option<String>,
}

impl Plugin {
    /// Whether the plugin declares a capability.
    pub fn has_capability(&self, cap: &str) -> bool {
        self.capabilities.iter().any(|c| c == cap)
    }

    /// The setting definition for a name or alias.
    pub fn setting(&self, name: &str) -> Option<&SettingDef> {
        self.settings
            .iter()
            .find(|s| s.name == name || s.aliases.iter().flatten().any(|a| a == name))
    }
}

/// Where the active environment was chosen from.
#[derive(Debug, Clone, Default)]
pub struct EnvironmentChoice {
    /// `--environment`.
    pub flag: Option<String>,
    /// `--no-environment`.
    pub none: bool,
    /// Whether `default_environment` applies (every command but `config`, like Meltano).
    pub use_default: bool,
}

/// A loaded project: the merged files, resolved plugins, and what validation found.
#[derive(Debug, Clone)]
pub struct Project {
    root: PathBuf,
    file: ProjectFile,
    plugins: Vec<Plugin>,
    diagnostics: Vec<Diagnostic>,
    tree: yaml::Node,
}

impl Project {
    /// Loads the project at `root`; any structural error fails with all of them listed.
    pub fn load(root: &Path) -> Result<Project> {
        let project = Self::check(root)?;
        if let Some(e) = diagnostics_error(&project.diagnostics) {
            return Err(e);
        }
        Ok(project)
    }

    /// Loads as much of the project as can be read and returns it with every diagnostic, errors
    /// included (for `dsm validate`). Fails only when the main file cannot be read at all.
    pub fn check(root: &Path) -> Result<Project> {
        let main_path = root.join(PROJECT_FILE);
        let text = std::fs::read_to_string(&main_path).map_err(|e| {
            Error::config(format!("cannot read `{}`: {e}", main_path.display()))
                .hint("run dsm inside a project, or create one with `dsm init`")
        })?;
        Ok(Self::check_text(root, &text))
    }

    /// Loads the project at `root` as if its main file held `text` (nothing is written: the
    /// server tests a source's definition before saving it); structural errors fail as in
    /// [`Project::load`].
    pub fn load_with_main(root: &Path, text: &str) -> Result<Project> {
        let project = Self::check_text(root, text);
        if let Some(e) = diagnostics_error(&project.diagnostics) {
            return Err(e);
        }
        Ok(project)
    }

    fn check_text(root: &Path, text: &str) -> Project {
        let mut diagnostics = Vec::new();
        let rel = PathBuf::from(PROJECT_FILE);
        let (tree, mut file) = read_file(text, &rel, &mut diagnostics);

        for (path, included) in includes(root, &file.include_paths, &mut diagnostics) {
            let text = match std::fs::read_to_string(root.join(&path)) {
                Ok(t) => t,
                Err(e) => {
                    diagnostics.push(Diagnostic::error(
                        "unreadable-include",
                        &path,
                        None,
                        format!("cannot read included file: {e}"),
                        None,
                    ));
                    continue;
                }
            };
            let (_, inc) = read_file(&text, &path, &mut diagnostics);
            merge_included(&mut file, inc, &path, &included, &mut diagnostics);
        }

        let mut project = Project {
            root: root.to_path_buf(),
            file,
            plugins: Vec::new(),
            diagnostics,
            tree,
        };
        project.resolve_plugins();
        project.check_references();
        project
    }

    /// The project root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The merged project file (main file plus includes).
    pub fn file(&self) -> &ProjectFile {
        &self.file
    }

    /// The main file's positioned YAML tree.
    pub fn tree(&self) -> &yaml::Node {
        &self.tree
    }

    /// Everything validation found (errors only when loaded with [`Project::check`]).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// Every plugin, in file order by type.
    pub fn plugins(&self) -> &[Plugin] {
        &self.plugins
    }

    /// The plugins of one type.
    pub fn plugins_of(&self, ty: PluginType) -> impl Iterator<Item = &Plugin> {
        self.plugins.iter().filter(move |p| p.plugin_type == ty)
    }

    /// The plugin called `name` (of any type; the first type in Meltano's order wins).
    pub fn plugin(&self, name: &str) -> Result<&Plugin> {
        self.find_plugin(name, None)
    }

    /// The plugin called `name`, optionally of a given type, or an error with a did-you-mean.
    pub fn find_plugin(&self, name: &str, ty: Option<PluginType>) -> Result<&Plugin> {
        if let Some(p) = self
            .plugins
            .iter()
            .find(|p| p.name == name && ty.is_none_or(|t| t == p.plugin_type))
        {
            return Ok(p);
        }
        let what = ty.map_or("plugin", PluginType::singular);
        let e = Error::config(format!("{what} `{name}` is not in the project"));
        Err(
            match did_you_mean(name, self.plugins.iter().map(|p| p.name.as_str())) {
                Some(m) => e.hint(format!("did you mean `{m}`?")),
                None => e.hint(format!(
                    "add it with `dsm add {name}` or check `{PROJECT_FILE}`"
                )),
            },
        )
    }

    /// Environments.
    pub fn environments(&self) -> &[Environment] {
        &self.file.environments
    }

    /// The environment called `name`, or an error naming the ones that exist.
    pub fn environment(&self, name: &str) -> Result<&Environment> {
        if let Some(e) = self.file.environments.iter().find(|e| e.name == name) {
            return Ok(e);
        }
        let names: Vec<&str> = self
            .file
            .environments
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        let e = Error::config(format!(
            "environment `{name}` is not defined in {PROJECT_FILE}"
        ));
        Err(match did_you_mean(name, names.iter().copied()) {
            Some(m) => e.hint(format!("did you mean `{m}`?")),
            None if names.is_empty() => {
                e.hint("the project defines no environments; add one under `environments:`")
            }
            None => e.hint(format!("defined environments: {}", names.join(", "))),
        })
    }

    /// The active environment: `--environment`, then `DSM_ENVIRONMENT`, `MELTANO_ENVIRONMENT`,
    /// then `default_environment` when `choice.use_default`; none with `--no-environment`.
    pub fn active_environment(&self, choice: &EnvironmentChoice) -> Result<Option<&Environment>> {
        if choice.none {
            return Ok(None);
        }
        let from_env = || {
            [envvars::ENVIRONMENT, envvars::MELTANO_ENVIRONMENT]
                .iter()
                .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        };
        let name = choice.flag.clone().or_else(from_env).or_else(|| {
            if choice.use_default {
                self.file.default_environment.clone()
            } else {
                None
            }
        });
        match name {
            None => Ok(None),
            Some(n) => self.environment(&n).map(Some),
        }
    }

    /// Jobs.
    pub fn jobs(&self) -> &[Job] {
        &self.file.jobs
    }

    /// The job called `name`.
    pub fn job(&self, name: &str) -> Option<&Job> {
        self.file.jobs.iter().find(|j| j.name == name)
    }

    /// Schedules.
    pub fn schedules(&self) -> &[Schedule] {
        &self.file.schedules
    }

    /// Project-level `annotations.dsm`.
    pub fn dsm(&self) -> DsmProject {
        self.file
            .annotations
            .as_ref()
            .and_then(|a| a.dsm.clone())
            .unwrap_or_default()
    }

    /// Project-level `env:`.
    pub fn env(&self) -> &Object {
        &self.file.env
    }

    /// `ff.strict_env_var_mode`.
    pub fn strict_env_var_mode(&self) -> bool {
        self.file
            .ff
            .as_ref()
            .and_then(|f| f.strict_env_var_mode)
            .unwrap_or(false)
    }

    /// The variables of the project's `.env` file, in file order (empty when there is none).
    pub fn dotenv(&self) -> Result<Vec<(String, String)>> {
        let path = self.root.join(".env");
        if !path.is_file() {
            return Ok(Vec::new());
        }
        let iter = dotenvy::from_path_iter(&path)
            .map_err(|e| Error::config(format!("cannot read `{}`: {e}", path.display())))?;
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item.map_err(|e| {
                Error::config(format!("`.env` is not valid: {e}"))
                    .hint("each line must be `NAME=value`; quote values with spaces")
            })?;
            out.push((k, v));
        }
        Ok(out)
    }

    /// The active environment's override entry for a plugin, if any.
    pub fn environment_plugin<'a>(
        &self,
        env: &'a Environment,
        plugin: &Plugin,
    ) -> Option<&'a PluginDef> {
        env.config
            .as_ref()?
            .plugins
            .of(plugin.plugin_type)
            .iter()
            .find(|p| p.name == plugin.name)
    }
}

#[cfg(test)]
mod tests;

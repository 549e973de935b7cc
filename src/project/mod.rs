//! `meltano.yml`: the model, environments, inheritance, includes, validation.
//!
//! [`Project::load`] reads the project file and the files its `include_paths` name, validates
//! every one against dsm's schema (all problems of a file at once, with positions), merges them
//! like Meltano, and resolves each plugin's definition: custom (has a `namespace`), inheriting
//! (`inherit_from`), or shadowing a known plugin (definition from its lock file
//! `plugins/<type>/<name>--<variant>.lock`, else from dsm's catalog in [`crate::hub`]).

pub mod annotations;
pub mod edit;
pub mod model;
pub mod schema;
pub mod yaml;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value as J;

use crate::envvars;
use crate::error::{Error, Result, did_you_mean};
pub use annotations::{DsmJob, DsmPlugin, DsmProject};
pub use model::{
    Environment, Job, Mapping, Object, PluginDef, PluginType, ProjectFile, Schedule, SettingDef,
};
pub use yaml::Pos;

/// The project file's name, as in Meltano.
pub const PROJECT_FILE: &str = "meltano.yml";

/// dsm's private folder in a project (holds the system store, plugin environments, run logs).
pub const PRIVATE_DIR: &str = ".dsm";

/// Creates a folder and its missing parents readable by their owner only (0700): the store,
/// logs, run folders and quarantine files under `.dsm/` are nobody else's business.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

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

/// How bad a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The project cannot be used as it is.
    Error,
    /// Worth a look (for example a config key the plugin does not declare).
    Warning,
}

/// One problem found in the project's files.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// A stable name for the kind of problem (`unknown-key`, `inherit-cycle`, ...), for scripts.
    pub code: &'static str,
    /// The file, relative to the project root when inside it.
    pub file: PathBuf,
    /// Where in the file, when known.
    pub pos: Option<Pos>,
    /// What is wrong, one line.
    pub message: String,
    /// What to do next.
    pub hint: Option<String>,
}

impl Diagnostic {
    fn error(
        code: &'static str,
        file: &Path,
        pos: Option<Pos>,
        message: String,
        hint: Option<String>,
    ) -> Self {
        Diagnostic {
            code,
            severity: Severity::Error,
            file: file.to_path_buf(),
            pos,
            message,
            hint,
        }
    }

    /// `message in FILE (line L, column C)`.
    pub fn located(&self) -> String {
        match self.pos {
            Some(p) => format!("{} in {} ({p})", self.message, self.file.display()),
            None => format!("{} in {}", self.message, self.file.display()),
        }
    }

    /// This diagnostic as an [`Error`] (exit 2).
    pub fn to_error(&self) -> Error {
        let e = Error::config(self.located());
        match &self.hint {
            Some(h) => e.hint(h.clone()),
            None => e,
        }
    }
}

/// Turns the error diagnostics into one error listing them all (the first as the message).
pub fn diagnostics_error(diags: &[Diagnostic]) -> Option<Error> {
    let errors: Vec<&Diagnostic> = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    match errors.as_slice() {
        [] => None,
        [one] => Some(one.to_error()),
        many => {
            let mut e = Error::config(format!("{} problems in the project file", many.len()));
            for d in many {
                e = e.detail(d.located());
                if let Some(h) = &d.hint {
                    e = e.detail(format!("  hint: {h}"));
                }
            }
            Some(e.hint("fix them, then check again with `dsm validate`"))
        }
    }
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
        let mut diagnostics = Vec::new();
        let rel = PathBuf::from(PROJECT_FILE);
        let (tree, mut file) = read_file(&text, &rel, &mut diagnostics);

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
        Ok(project)
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

    /// `elt.buffer_size` (Meltano's default 10 MiB when unset).
    pub fn elt_buffer_size(&self) -> u64 {
        self.file
            .elt
            .as_ref()
            .and_then(|e| e.buffer_size)
            .unwrap_or(10_485_760)
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

    fn resolve_plugins(&mut self) {
        let mut resolved: Vec<Plugin> = Vec::new();
        for ty in PluginType::ALL {
            for def in self.file.plugins.of(ty).clone() {
                let mut chain = Vec::new();
                match self.resolve(ty, &def, &mut chain) {
                    Ok(p) => resolved.push(p),
                    Err(d) => {
                        let named = format!("`{}`", def.name);
                        let already = self.diagnostics.iter().any(|x| {
                            x.message.contains("makes a cycle") && x.message.contains(&named)
                        });
                        if !already {
                            self.diagnostics.push(d);
                        }
                    }
                }
            }
        }
        self.plugins = resolved;
    }

    fn plugin_pos(&self, ty: PluginType, name: &str, key: &str) -> Option<Pos> {
        let list = self.tree.get("plugins")?.get(ty.key())?;
        let item = list
            .items()
            .iter()
            .find(|n| n.get("name").map(yaml::Node::to_json) == Some(J::String(name.into())))?;
        item.key_pos(key).or(Some(item.pos))
    }

    fn resolve(
        &mut self,
        ty: PluginType,
        def: &PluginDef,
        chain: &mut Vec<String>,
    ) -> std::result::Result<Plugin, Diagnostic> {
        let file = PathBuf::from(PROJECT_FILE);
        if chain.contains(&def.name) {
            chain.push(def.name.clone());
            return Err(Diagnostic::error(
                "inherit-cycle",
                &file,
                self.plugin_pos(ty, &chain[0], "inherit_from"),
                format!(
                    "`inherit_from` makes a cycle: {}",
                    chain
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(" → ")
                ),
                Some("make one of these plugins inherit from a plugin outside the cycle".into()),
            ));
        }
        chain.push(def.name.clone());
        if let Some(parent_name) = &def.inherit_from {
            // As in Meltano: with a `variant`, or when the project has no plugin of that name,
            // the parent is the known plugin `parent_name` (its lock file, else dsm's catalog).
            let in_project = self
                .file
                .plugins
                .of(ty)
                .iter()
                .find(|p| &p.name == parent_name)
                .filter(|_| def.variant.is_none())
                .cloned();
            if in_project.is_none() {
                let variant = def.variant.as_deref();
                if let Some((lock_file, base)) = find_lock(&self.root, ty, parent_name, variant) {
                    return Ok(build_plugin(
                        ty,
                        def,
                        Some(&base),
                        Definition::Locked { lock_file },
                        None,
                    ));
                }
                if let Some(base) = crate::hub::find(ty, parent_name, variant) {
                    return Ok(build_plugin(
                        ty,
                        def,
                        Some(&base),
                        Definition::Catalog,
                        None,
                    ));
                }
                if let Some(v) = variant {
                    let known = crate::hub::variants(ty, parent_name);
                    let hint = if known.is_empty() {
                        format!(
                            "add its lock file `plugins/{}/{parent_name}--{v}.lock`, or remove `variant` to inherit from a plugin of the project",
                            ty.key()
                        )
                    } else {
                        format!(
                            "known variants of `{parent_name}`: {}; or remove `variant` to inherit from a plugin of the project",
                            known
                                .iter()
                                .map(|k| format!("`{k}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    };
                    return Err(Diagnostic::error(
                        "unknown-variant",
                        &file,
                        self.plugin_pos(ty, &def.name, "variant"),
                        format!(
                            "{} `{}` inherits from `{parent_name}` variant `{v}`, which has no lock file and is not in dsm's catalog",
                            ty.singular(),
                            def.name
                        ),
                        Some(hint),
                    ));
                }
            }
            let Some(parent_def) = in_project else {
                let names: Vec<&str> = self
                    .file
                    .plugins
                    .of(ty)
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect();
                let hint = did_you_mean(parent_name, names.iter().copied())
                    .map(|m| format!("did you mean `{m}`?"))
                    .unwrap_or_else(|| {
                        format!("add {} `{parent_name}` to the project first", ty.singular())
                    });
                return Err(Diagnostic::error(
                    "missing-parent",
                    &file,
                    self.plugin_pos(ty, &def.name, "inherit_from"),
                    format!(
                        "{} `{}` inherits from `{parent_name}`, which is not an {} of the project",
                        ty.singular(),
                        def.name,
                        ty.singular()
                    ),
                    Some(hint),
                ));
            };
            let parent = self.resolve(ty, &parent_def, chain)?;
            return Ok(build_plugin(
                ty,
                def,
                Some(&parent.raw),
                Definition::Inherited {
                    parent: parent.name.clone(),
                },
                Some(parent.name.clone()),
            ));
        }
        if def.namespace.is_some() {
            return Ok(build_plugin(ty, def, None, Definition::Custom, None));
        }
        if let Some((lock_file, base)) =
            find_lock(&self.root, ty, &def.name, def.variant.as_deref())
        {
            return Ok(build_plugin(
                ty,
                def,
                Some(&base),
                Definition::Locked { lock_file },
                None,
            ));
        }
        if let Some(base) = crate::hub::find(ty, &def.name, def.variant.as_deref()) {
            return Ok(build_plugin(
                ty,
                def,
                Some(&base),
                Definition::Catalog,
                None,
            ));
        }
        self.diagnostics.push(Diagnostic {
            code: "unknown-plugin",
            severity: Severity::Warning,
            file: file.clone(),
            pos: self.plugin_pos(ty, &def.name, "name"),
            message: format!(
                "{} `{}` has no `namespace`, no lock file and is not in dsm's catalog; it is taken as written",
                ty.singular(),
                def.name
            ),
            hint: Some(format!(
                "give it a `namespace` to define it as a custom plugin, or add its lock file under `plugins/{}/`",
                ty.key()
            )),
        });
        Ok(build_plugin(ty, def, None, Definition::Unknown, None))
    }

    /// Cross-references: environments' plugins exist, job/schedule names, undeclared config keys.
    fn check_references(&mut self) {
        let file = PathBuf::from(PROJECT_FILE);
        let mut warnings = Vec::new();
        for p in &self.plugins {
            if p.settings.is_empty() {
                continue;
            }
            for key in p.config.keys() {
                let declared = p.setting(key).is_some()
                    || p.settings
                        .iter()
                        .any(|s| s.name.starts_with(&format!("{key}.")));
                if !declared {
                    let names: Vec<&str> = p.settings.iter().map(|s| s.name.as_str()).collect();
                    warnings.push(Diagnostic {
                        code: "undeclared-setting",
                        severity: Severity::Warning,
                        file: file.clone(),
                        pos: self
                            .tree
                            .get("plugins")
                            .and_then(|n| n.get(p.plugin_type.key()))
                            .and_then(|l| {
                                l.items().iter().find(|n| {
                                    n.get("name").map(yaml::Node::to_json)
                                        == Some(J::String(p.name.clone()))
                                })
                            })
                            .and_then(|n| n.get("config"))
                            .and_then(|c| c.key_pos(key)),
                        message: format!(
                            "`{key}` in the config of {} `{}` is not a setting it declares",
                            p.plugin_type.singular(),
                            p.name
                        ),
                        hint: did_you_mean(key, names.iter().copied())
                            .map(|m| format!("did you mean `{m}`?")),
                    });
                }
            }
        }
        self.diagnostics.extend(warnings);
        self.check_duplicates(&file);
        let mut seen = BTreeSet::new();
        for env in &self.file.environments {
            if !seen.insert(env.name.clone()) {
                self.diagnostics.push(Diagnostic::error(
                    "duplicate-environment",
                    &file,
                    None,
                    format!("environment `{}` is defined twice", env.name),
                    None,
                ));
            }
            let Some(cfg) = &env.config else { continue };
            for ty in PluginType::ALL {
                for p in cfg.plugins.of(ty) {
                    if !self
                        .plugins
                        .iter()
                        .any(|q| q.name == p.name && q.plugin_type == ty)
                    {
                        self.diagnostics.push(Diagnostic {
                            code: "unknown-environment-plugin",
                            severity: Severity::Warning,
                            file: file.clone(),
                            pos: None,
                            message: format!(
                                "environment `{}` configures {} `{}`, which is not in the project",
                                env.name,
                                ty.singular(),
                                p.name
                            ),
                            hint: None,
                        });
                    }
                }
            }
        }
        self.check_schedule_time_zones(&file);
        self.check_classification(&file);
        if let Some(d) = &self.file.default_environment
            && !self.file.environments.iter().any(|e| &e.name == d)
        {
            self.diagnostics.push(Diagnostic::error(
                "unknown-default-environment",
                &file,
                self.tree.get("default_environment").map(|n| n.pos),
                format!(
                    "`default_environment` is `{d}`, which is not defined under `environments`"
                ),
                Some("add it under `environments:` or change `default_environment`".into()),
            ));
        }
    }
}

impl Project {
    /// Classification labels: the declaration must hold together, and every label a source, a
    /// field or a loader names must be one of its labels.
    fn check_classification(&mut self, file: &Path) {
        let declared = self.dsm().classification;
        let decl_node = self
            .tree
            .get("annotations")
            .and_then(|a| a.get("dsm"))
            .and_then(|d| d.get("classification"));
        let scheme = match crate::classification::Scheme::from_decl(declared.as_ref()) {
            Ok(s) => s,
            Err(problems) => {
                for p in problems {
                    self.diagnostics.push(Diagnostic::error(
                        "bad-classification",
                        file,
                        decl_node.map(|n| n.pos),
                        format!("`annotations.dsm.classification`: {p}"),
                        Some("declare `labels: [{name, rank, visibility}]` and a `default` that is one of them".into()),
                    ));
                }
                return;
            }
        };
        let mut found = Vec::new();
        for p in &self.plugins {
            let node = self
                .tree
                .get("plugins")
                .and_then(|n| n.get(p.plugin_type.key()))
                .and_then(|l| {
                    l.items().iter().find(|n| {
                        n.get("name").map(yaml::Node::to_json) == Some(J::String(p.name.clone()))
                    })
                })
                .and_then(|n| n.get("annotations"))
                .and_then(|a| a.get("dsm"));
            let mut named: Vec<(String, String, Option<Pos>)> = Vec::new();
            let source_node = node.and_then(|n| n.get("source"));
            if let Some(source) = &p.annotations.source {
                if let Some(c) = &source.classification {
                    named.push((
                        c.clone(),
                        "`annotations.dsm.source.classification`".into(),
                        source_node.and_then(|s| s.key_pos("classification")),
                    ));
                }
                for (stream, fields) in &source.fields {
                    let stream_node = source_node
                        .and_then(|s| s.get("fields"))
                        .and_then(|f| f.get(stream));
                    for (field, label) in fields {
                        named.push((
                            label.clone(),
                            format!("`annotations.dsm.source.fields` (`{stream}.{field}`)"),
                            stream_node.and_then(|s| s.key_pos(field)),
                        ));
                    }
                }
            }
            if let Some(c) = &p.annotations.clearance {
                named.push((
                    c.clone(),
                    "`annotations.dsm.clearance`".into(),
                    node.and_then(|n| n.key_pos("clearance")),
                ));
            }
            if p.plugin_type == PluginType::Loaders
                && p.annotations.clearance.is_none()
                && crate::classification::is_classified(self)
            {
                found.push(Diagnostic {
                    code: "loader-without-clearance",
                    severity: Severity::Warning,
                    file: file.to_path_buf(),
                    pos: node.map(|n| n.pos),
                    message: format!(
                        "loader `{}` declares no clearance: in this classified project it accepts only `{}`, the lowest label",
                        p.name,
                        scheme.lowest().name
                    ),
                    hint: Some(format!(
                        "set `annotations.dsm.clearance` on `{}` to the highest label its destination may hold",
                        p.name
                    )),
                });
            }
            for (label, place, pos) in named {
                if scheme.label(&label).is_none() {
                    let (message, hint) = scheme.unknown(
                        &label,
                        &format!("{place} of {} `{}`", p.plugin_type.singular(), p.name),
                    );
                    found.push(Diagnostic::error(
                        "unknown-classification-label",
                        file,
                        pos,
                        message,
                        Some(hint),
                    ));
                }
            }
        }
        self.diagnostics.extend(found);
    }

    /// The same plugin, job or schedule named twice in `meltano.yml` itself (twice across
    /// files is found while merging the included files): only one of them would be used.
    fn check_duplicates(&mut self, file: &Path) {
        let mut lists: Vec<(Vec<&str>, &str, String)> = PluginType::ALL
            .iter()
            .map(|ty| {
                let names = self.file.plugins.of(*ty).iter().map(|p| p.name.as_str());
                (names.collect(), ty.key(), ty.singular().to_string())
            })
            .collect();
        lists.push((
            self.file.jobs.iter().map(|j| j.name.as_str()).collect(),
            "jobs",
            "job".into(),
        ));
        lists.push((
            self.file
                .schedules
                .iter()
                .map(|s| s.name.as_str())
                .collect(),
            "schedules",
            "schedule".into(),
        ));
        let mut found = Vec::new();
        for (names, key, what) in lists {
            let items = if key == "jobs" || key == "schedules" {
                self.tree.get(key)
            } else {
                self.tree.get("plugins").and_then(|n| n.get(key))
            };
            for (i, name) in names.iter().enumerate() {
                if names[..i].contains(name) {
                    found.push(Diagnostic::error(
                        "duplicate-definition",
                        file,
                        items.and_then(|l| l.items().get(i)).map(|n| n.pos),
                        format!("{what} `{name}` is defined twice"),
                        Some(
                            "keep one definition: commands and runs would read only one of them"
                                .into(),
                        ),
                    ));
                }
            }
        }
        self.diagnostics.extend(found);
    }

    /// A schedule's `annotations.dsm.timezone` must be an IANA name (its cron interval is read
    /// there), and a job has no interval to read in a zone.
    fn check_schedule_time_zones(&mut self, file: &Path) {
        let mut found = Vec::new();
        for (key, kind) in [("schedules", "schedule"), ("jobs", "job")] {
            let Some(list) = self.tree.get(key) else {
                continue;
            };
            for item in list.items() {
                let Some(zone_node) = item
                    .get("annotations")
                    .and_then(|a| a.get("dsm"))
                    .filter(|d| d.get("timezone").is_some())
                else {
                    continue;
                };
                let name = item
                    .get("name")
                    .map(yaml::Node::to_json)
                    .and_then(|n| n.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let pos = zone_node.key_pos("timezone");
                let zone = zone_node
                    .get("timezone")
                    .map(yaml::Node::to_json)
                    .and_then(|z| z.as_str().map(str::to_owned))
                    .unwrap_or_default();
                if kind == "job" {
                    found.push(Diagnostic::error(
                        "timezone-on-job",
                        file,
                        pos,
                        format!("job `{name}` has `annotations.dsm.timezone`, but only schedules have an interval"),
                        Some("move `timezone` to the schedule that runs the job".into()),
                    ));
                } else if zone.trim().parse::<chrono_tz::Tz>().is_err() {
                    let hint =
                        did_you_mean(&zone, chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()))
                            .map(|m| format!("did you mean `{m}`?"))
                            .unwrap_or_else(|| {
                                "use an IANA name such as `UTC` or `Europe/Berlin`".into()
                            });
                    found.push(Diagnostic::error(
                        "unknown-time-zone",
                        file,
                        pos,
                        format!("schedule `{name}` has an unknown time zone `{zone}` in `annotations.dsm.timezone`"),
                        Some(hint),
                    ));
                }
            }
        }
        self.diagnostics.extend(found);
    }
}

/// Reads, validates and types one file; problems go to `diags`.
fn read_file(text: &str, rel: &Path, diags: &mut Vec<Diagnostic>) -> (yaml::Node, ProjectFile) {
    let tree = match yaml::parse(text) {
        Ok(t) => t,
        Err(e) => {
            diags.push(Diagnostic::error(
                "invalid-yaml",
                rel,
                e.pos,
                format!("{} is not valid YAML: {}", rel.display(), e.message),
                Some("check the indentation and quoting around that position".into()),
            ));
            return (
                yaml::Node {
                    value: yaml::Value::Map(Vec::new()),
                    pos: Pos::default(),
                },
                ProjectFile::default(),
            );
        }
    };
    let mut ok = true;
    for v in schema::validate(&tree) {
        let severity = match extra_key(&v) {
            Some(Extra::Known) => continue,
            Some(Extra::Unknown) => Severity::Warning,
            None => {
                ok = false;
                Severity::Error
            }
        };
        let hint = match severity {
            Severity::Warning => Some(format!(
                "Meltano accepts it and dsm ignores it; {}",
                v.hint.as_deref().unwrap_or("remove it if it is a typo")
            )),
            Severity::Error => v.hint,
        };
        diags.push(Diagnostic {
            code: v.code,
            severity,
            file: rel.to_path_buf(),
            pos: Some(v.pos),
            message: v.message,
            hint,
        });
    }
    let json = tree.to_json();
    let file = if ok {
        match serde_json::from_value::<ProjectFile>(json) {
            Ok(f) => f,
            Err(e) => {
                diags.push(Diagnostic::error(
                    "unreadable-project",
                    rel,
                    None,
                    format!(
                        "cannot read the project: {}",
                        without_values(&e.to_string())
                    ),
                    None,
                ));
                ProjectFile::default()
            }
        }
    } else {
        // Keep what can be read so later checks still run.
        lenient(json)
    };
    (tree, file)
}

/// What a key outside dsm's schema is, where Meltano accepts keys of its own choosing.
enum Extra {
    /// A key Meltano or its lock files know (`keywords`, `maintenance_status`, ...) or a
    /// `_`-prefixed one: accepted without a word.
    Known,
    /// Any other key: accepted with a warning (it may be a typo).
    Unknown,
}

/// Keys of plugin definitions (hub entries, lock files) that Meltano accepts and dsm has no use
/// for.
const MELTANO_PLUGIN_KEYS: &[&str] = &[
    "hidden",
    "keywords",
    "maintenance_status",
    "supported_python_versions",
    "domain_url",
    "quality",
    "default_variant",
    "variants",
    "original",
    "update",
    "definition",
];

/// Whether an `unknown-key` violation is a key Meltano accepts anyway: on a plugin, on a
/// plugin's setting, on a schedule or at the top of the file (Meltano keeps those as extras);
/// never inside `annotations.dsm`, an environment or a job, which Meltano or dsm reject.
fn extra_key(v: &schema::Violation) -> Option<Extra> {
    static PLACE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    if v.code != "unknown-key" {
        return None;
    }
    let re = PLACE.get_or_init(|| {
        regex::Regex::new(
            r"^(?:plugins\.[a-z]+\[\d+\]\.(?:settings\[\d+\]\.)?|schedules\[\d+\]\.)?([^.\[\]]+)$",
        )
        .expect("a valid pattern")
    });
    let key = re.captures(&v.path)?.get(1)?.as_str();
    let on_plugin = v.path.starts_with("plugins.") && !v.path.contains(".settings[");
    if key.starts_with('_') || (on_plugin && MELTANO_PLUGIN_KEYS.contains(&key)) {
        Some(Extra::Known)
    } else {
        Some(Extra::Unknown)
    }
}

/// A deserialiser's message without the values it quotes (`invalid type: string "..."`,
/// `unknown variant `...``): the value may be a secret from a plugin's config.
fn without_values(message: &str) -> String {
    static QUOTED: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = QUOTED.get_or_init(|| {
        regex::Regex::new(
            r#"(string|integer|floating point|char|byte array|variant|value) (?:"(?:[^"\\]|\\.)*"|`[^`]*`|-?[0-9][0-9.eE+-]*)"#,
        )
        .expect("a valid pattern")
    });
    re.replace_all(message, "$1").into_owned()
}

/// Best effort typing of a document with structural errors: drops sections that do not fit.
fn lenient(json: J) -> ProjectFile {
    let J::Object(map) = json else {
        return ProjectFile::default();
    };
    let mut out = serde_json::Map::new();
    for (k, v) in map {
        let mut probe = serde_json::Map::new();
        probe.insert(k.clone(), v.clone());
        if serde_json::from_value::<ProjectFile>(J::Object(probe)).is_ok() {
            out.insert(k, v);
        }
    }
    serde_json::from_value(J::Object(out)).unwrap_or_default()
}

/// The files the main file's `include_paths` (in its parsed `tree`) name, relative to the root,
/// in the order they are read; globs that match nothing are left out.
pub(crate) fn included_files(root: &Path, tree: &yaml::Node) -> Vec<PathBuf> {
    let globs: Vec<String> = tree
        .get("include_paths")
        .map(yaml::Node::to_json)
        .and_then(|j| serde_json::from_value(j).ok())
        .unwrap_or_default();
    includes(root, &globs, &mut Vec::new())
        .into_iter()
        .map(|(path, _)| path)
        .collect()
}

/// The files matched by `include_paths`, relative to the root, each with the glob that matched.
fn includes(root: &Path, globs: &[String], diags: &mut Vec<Diagnostic>) -> Vec<(PathBuf, String)> {
    let mut out: Vec<(PathBuf, String)> = Vec::new();
    for pattern in globs {
        let glob = match globset::GlobBuilder::new(pattern.trim_start_matches("./"))
            .literal_separator(true)
            .build()
        {
            Ok(g) => g.compile_matcher(),
            Err(e) => {
                diags.push(Diagnostic::error(
                    "invalid-glob",
                    Path::new(PROJECT_FILE),
                    None,
                    format!("`include_paths` entry `{pattern}` is not a valid glob: {e}"),
                    None,
                ));
                continue;
            }
        };
        let mut matched: Vec<PathBuf> = Vec::new();
        walk(root, root, &mut |rel| {
            if glob.is_match(rel) {
                matched.push(rel.to_path_buf());
            }
        });
        matched.sort();
        if matched.is_empty() {
            diags.push(Diagnostic::error(
                "glob-matches-nothing",
                Path::new(PROJECT_FILE),
                None,
                format!("`include_paths` entry `{pattern}` matches no file"),
                Some(
                    "paths are relative to the project root, for example `./extract/*.meltano.yml`"
                        .into(),
                ),
            ));
        }
        for m in matched {
            if m != Path::new(PROJECT_FILE) && !out.iter().any(|(p, _)| p == &m) {
                out.push((m, pattern.clone()));
            }
        }
    }
    out
}

fn walk(root: &Path, dir: &Path, f: &mut dyn FnMut(&Path)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(std::fs::DirEntry::path);
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name != "." || name == "target" || name == "node_modules" {
            continue;
        }
        if path.is_dir() {
            walk(root, &path, f);
        } else if let Ok(rel) = path.strip_prefix(root) {
            f(rel);
        }
    }
}

/// Merges an included file into the main one like Meltano: lists are appended, `env` is merged;
/// the same plugin, environment, job or schedule defined twice is an error.
fn merge_included(
    main: &mut ProjectFile,
    inc: ProjectFile,
    path: &Path,
    _glob: &str,
    diags: &mut Vec<Diagnostic>,
) {
    let mut dup = |what: &str, name: &str| {
        diags.push(Diagnostic::error(
            "duplicate-definition",
            path,
            None,
            format!("{what} `{name}` is defined both here and in another project file"),
            Some("keep one definition".into()),
        ));
    };
    for ty in PluginType::ALL {
        for p in inc.plugins.of(ty).clone() {
            if main.plugins.of(ty).iter().any(|q| q.name == p.name) {
                dup(ty.singular(), &p.name);
            } else {
                main.plugins.of_mut(ty).push(p);
            }
        }
    }
    for e in inc.environments {
        if main.environments.iter().any(|q| q.name == e.name) {
            dup("environment", &e.name);
        } else {
            main.environments.push(e);
        }
    }
    for j in inc.jobs {
        if main.jobs.iter().any(|q| q.name == j.name) {
            dup("job", &j.name);
        } else {
            main.jobs.push(j);
        }
    }
    for s in inc.schedules {
        if main.schedules.iter().any(|q| q.name == s.name) {
            dup("schedule", &s.name);
        } else {
            main.schedules.push(s);
        }
    }
    for (k, v) in inc.env {
        main.env.entry(k).or_insert(v);
    }
}

/// The lock file of a known plugin: `plugins/<type>/<name>--<variant>.lock`, or the only lock
/// file for that name when no variant is given.
fn find_lock(
    root: &Path,
    ty: PluginType,
    name: &str,
    variant: Option<&str>,
) -> Option<(PathBuf, PluginDef)> {
    let dir = Path::new("plugins").join(ty.key());
    let rel = match variant {
        Some(v) => dir.join(format!("{name}--{v}.lock")),
        None => {
            let prefix = format!("{name}--");
            let mut found: Vec<PathBuf> = std::fs::read_dir(root.join(&dir))
                .ok()?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix) && n.ends_with(".lock"))
                .map(|n| dir.join(n))
                .collect();
            if found.len() != 1 {
                return None;
            }
            found.pop()?
        }
    };
    let text = std::fs::read_to_string(root.join(&rel)).ok()?;
    match serde_json::from_str::<PluginDef>(&text) {
        Ok(def) => Some((rel, def)),
        Err(error) => {
            tracing::warn!(file = %rel.display(), %error, "ignoring unreadable lock file");
            None
        }
    }
}

/// Builds the resolved view: `def` over `base` (parent, lock file or catalog entry).
fn build_plugin(
    ty: PluginType,
    def: &PluginDef,
    base: Option<&PluginDef>,
    definition: Definition,
    parent: Option<String>,
) -> Plugin {
    let empty = PluginDef::default();
    let b = base.unwrap_or(&empty);
    macro_rules! pick {
        ($f:ident) => {
            def.$f.clone().or_else(|| b.$f.clone())
        };
    }
    let mut settings: Vec<SettingDef> = b.settings.clone().unwrap_or_default();
    for s in def.settings.clone().unwrap_or_default() {
        match settings.iter_mut().find(|x| x.name == s.name) {
            Some(existing) => *existing = merge_setting(existing, &s),
            None => settings.push(s),
        }
    }
    let mut env = b.env.clone().unwrap_or_default();
    env.extend(def.env.clone().unwrap_or_default());
    let mut commands = b.commands.clone().unwrap_or_default();
    commands.extend(def.commands.clone().unwrap_or_default());
    let is_inherited = matches!(definition, Definition::Inherited { .. });
    let mut raw = def.clone();
    // As in Meltano, a plugin that inherits (`inherit_from`) has a namespace of its own, from
    // its own name: its parent's environment variables reach it only through the inherited
    // layer, below what it sets itself. A shadowing or locked definition keeps the base's.
    raw.namespace = if is_inherited {
        def.namespace.clone()
    } else {
        pick!(namespace)
    };
    raw.variant = pick!(variant);
    raw.executable = pick!(executable);
    raw.pip_url = pick!(pip_url);
    raw.python = pick!(python);
    raw.capabilities = pick!(capabilities);
    raw.settings = Some(settings.clone());
    raw.commands = Some(commands.clone());
    raw.env = Some(env.clone());
    raw.label = pick!(label);
    raw.description = pick!(description);
    raw.docs = pick!(docs);
    raw.repo = pick!(repo);
    raw.settings_group_validation = pick!(settings_group_validation);
    raw.select = pick!(select);
    raw.select_filter = pick!(select_filter);
    raw.metadata = pick!(metadata);
    raw.schema = pick!(schema);
    raw.catalog = pick!(catalog);
    raw.state = pick!(state);
    raw.load_schema = pick!(load_schema);
    raw.use_cached_catalog = pick!(use_cached_catalog);
    raw.mappings = pick!(mappings);
    raw.dialect = pick!(dialect);
    raw.vars = pick!(vars);
    raw.package_name = pick!(package_name);
    raw.annotations = pick!(annotations);
    // The parent's config is a settings layer of its own, and a lock file or catalog entry
    // never carries project config: the entry keeps its own `config` only.
    raw.config = def.config.clone();
    Plugin {
        name: def.name.clone(),
        plugin_type: ty,
        definition,
        namespace: raw
            .namespace
            .clone()
            .unwrap_or_else(|| def.name.replace('-', "_")),
        variant: raw.variant.clone(),
        executable: raw.executable.clone().unwrap_or_else(|| {
            if is_inherited {
                b.executable.clone().unwrap_or_else(|| b.name.clone())
            } else {
                def.name.clone()
            }
        }),
        pip_url: raw.pip_url.clone(),
        python: raw.python.clone(),
        capabilities: raw.capabilities.clone().unwrap_or_default(),
        settings,
        commands,
        select: raw.select.clone(),
        select_filter: raw.select_filter.clone(),
        metadata: raw.metadata.clone(),
        schema: raw.schema.clone(),
        catalog: raw.catalog.clone(),
        state: raw.state.clone(),
        load_schema: raw.load_schema.clone(),
        use_cached_catalog: raw.use_cached_catalog,
        env,
        config: def.config.clone().unwrap_or_default(),
        mappings: raw.mappings.clone().unwrap_or_default(),
        annotations: raw
            .annotations
            .as_ref()
            .and_then(|a| a.dsm.clone())
            .unwrap_or_default(),
        raw,
        parent,
    }
}

/// A project's setting definition over the base one: keys given in the project win.
fn merge_setting(base: &SettingDef, over: &SettingDef) -> SettingDef {
    let mut b = serde_json::to_value(base).expect("settings serialise");
    let o = serde_json::to_value(over).expect("settings serialise");
    if let (J::Object(bm), J::Object(om)) = (&mut b, o) {
        for (k, v) in om {
            if !v.is_null() {
                bm.insert(k, v);
            }
        }
    }
    serde_json::from_value(b).unwrap_or_else(|_| over.clone())
}

#[cfg(test)]
mod tests;

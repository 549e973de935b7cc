//! Resolving each plugin's definition: custom, inherited, or shadowing a known plugin (from
//! its lock file or dsm's catalog).

use super::*;

use std::path::{Path, PathBuf};

use serde_json::Value as J;

use crate::error::did_you_mean;

impl Project {
    pub(super) fn resolve_plugins(&mut self) {
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

    pub(super) fn plugin_pos(&self, ty: PluginType, name: &str, key: &str) -> Option<Pos> {
        let list = self.tree.get("plugins")?.get(ty.key())?;
        let item = list
            .items()
            .iter()
            .find(|n| n.get("name").map(yaml::Node::to_json) == Some(J::String(name.into())))?;
        item.key_pos(key).or(Some(item.pos))
    }

    pub(super) fn resolve(
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
                if let Some(base) = super::hub::find(ty, parent_name, variant) {
                    return Ok(build_plugin(
                        ty,
                        def,
                        Some(&base),
                        Definition::Catalog,
                        None,
                    ));
                }
                if let Some(v) = variant {
                    let known = super::hub::variants(ty, parent_name);
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
        if let Some(base) = super::hub::find(ty, &def.name, def.variant.as_deref()) {
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
}

/// The lock file of a known plugin: `plugins/<type>/<name>--<variant>.lock`, or the only lock
/// file for that name when no variant is given.
pub(super) fn find_lock(
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
pub(super) fn build_plugin(
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
pub(super) fn merge_setting(base: &SettingDef, over: &SettingDef) -> SettingDef {
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

//! From a project's plugin to a [`PluginSpec`]: executable, config and environment as Meltano
//! builds them, except that sensitive values travel only in the private config file.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::Result;
use crate::plugin::executable::resolve_executable;
use crate::plugin::{PluginRole, PluginSpec};
use crate::project::{Environment, Mapping, Object, Plugin, Project};
use crate::secrets::layer::{Reveal, StoreLayer};
use crate::settings::{self, Inputs, PluginSettings, ResolvedSettings};

/// The sensitive values of a config (the string leaves its masked copy hides) into `secrets`,
/// and the values of user-name settings (`user`, `username`, `login`, `client_id`) into
/// `users`, for [`crate::plugin::redaction_forms`].
fn masked_leaves(
    config: &Value,
    masked: &Value,
    key: &str,
    secrets: &mut Vec<String>,
    users: &mut Vec<String>,
) {
    match (config, masked) {
        (Value::Object(c), Value::Object(m)) => {
            for (k, v) in c {
                masked_leaves(v, m.get(k).unwrap_or(&Value::Null), k, secrets, users);
            }
        }
        (Value::Array(c), Value::Array(m)) => {
            for (i, v) in c.iter().enumerate() {
                masked_leaves(v, m.get(i).unwrap_or(&Value::Null), key, secrets, users);
            }
        }
        (Value::String(c), m) if m != config => secrets.push(c.clone()),
        (Value::Number(_) | Value::Bool(_), m) if m != config => secrets.push(config.to_string()),
        (Value::String(c), _) => {
            let k = key.to_ascii_lowercase();
            if ["user", "username", "user_name", "login", "client_id"].contains(&k.as_str()) {
                users.push(c.clone());
            }
        }
        _ => {}
    }
}

/// A plugin's spec plus the variables Meltano passes on from an extractor to the loader.
pub struct Built {
    /// The spec.
    pub spec: PluginSpec,
    /// `MELTANO_EXTRACTOR_*`, `MELTANO_EXTRACT_*` and the extractor's non-sensitive settings.
    pub shared_env: BTreeMap<String, String>,
    /// The config file's content with sensitive values masked (`dsm el --dump ...-config`).
    pub masked_config: Value,
}

/// The variables for a plugin's settings, leaving out sensitive ones, and the names that could
/// carry a sensitive value (to remove from the inherited environment).
pub fn plugin_env(resolved: &ResolvedSettings) -> (Vec<(String, String)>, Vec<String>) {
    let mut public = resolved.clone();
    public.values.retain(|v| !v.sensitive);
    let mut secret = resolved.clone();
    secret.values.retain(|v| v.sensitive);
    let mut remove: Vec<String> = secret
        .plugin_env(false)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    for v in &secret.values {
        remove.extend(v.env_vars.iter().cloned());
    }
    remove.sort();
    remove.dedup();
    (public.plugin_env(false), remove)
}

/// A plugin's Meltano extras (`_select`, `_dialect`, ...) with Meltano's defaults, for its
/// environment. `_catalog` and `_state` only when set; mappers have none.
fn extras(plugin: &Plugin, role: PluginRole) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = Vec::new();
    if role == PluginRole::Mapper {
        return out;
    }
    let object = |o: &Option<Object>| Value::Object(o.clone().unwrap_or_default());
    let list = |l: &Option<Vec<String>>, default: &[&str]| {
        Value::from(
            l.clone()
                .unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect()),
        )
    };
    if role == PluginRole::Extractor {
        if let Some(c) = &plugin.catalog {
            out.push(("_catalog".into(), Value::from(c.clone())));
        }
        if let Some(st) = &plugin.state {
            out.push(("_state".into(), Value::from(st.clone())));
        }
        let load_schema = plugin
            .load_schema
            .clone()
            .unwrap_or_else(|| plugin.namespace.clone());
        out.push(("_load_schema".into(), Value::from(load_schema)));
        out.push((
            "_metadata".into(),
            settings::extras::nested(object(&plugin.metadata)),
        ));
        out.push((
            "_schema".into(),
            settings::extras::nested(object(&plugin.schema)),
        ));
        out.push(("_select".into(), list(&plugin.select, &["*.*"])));
        out.push(("_select_filter".into(), list(&plugin.select_filter, &[])));
        out.push((
            "_use_cached_catalog".into(),
            Value::from(plugin.use_cached_catalog.unwrap_or(true)),
        ));
    } else {
        let dialect = plugin
            .raw
            .dialect
            .clone()
            .unwrap_or_else(|| plugin.namespace.clone());
        out.push(("_dialect".into(), Value::from(dialect)));
    }
    let parser = plugin
        .raw
        .log_parser
        .clone()
        .unwrap_or_else(|| "singer-sdk".to_string());
    out.push(("_log_parser".into(), Value::from(parser)));
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Builds the specs of a flow's plugins from inputs captured once: the process environment and
/// `.env` (see [`Inputs::capture`]), the active environment, and the system database named by
/// `--database-uri` (or `DSM_DATABASE_URI`, or the project's default). Values stored there
/// (plain settings and, decrypted with the master key, secrets) take their place in the
/// settings' layers; each secret a plugin receives is audited, and reaches it only in the
/// config file.
pub struct SpecBuilder<'a> {
    project: &'a Project,
    inputs: Inputs<'a>,
    db: crate::store::Location,
}

impl<'a> SpecBuilder<'a> {
    /// Captures the inputs of `project` under `env`.
    pub fn new(
        project: &'a Project,
        env: Option<&'a Environment>,
        database_uri: Option<&str>,
    ) -> Result<SpecBuilder<'a>> {
        Ok(SpecBuilder {
            project,
            inputs: Inputs::capture(project, env)?,
            db: crate::store::locate(database_uri, project.root())?,
        })
    }

    /// The captured inputs.
    pub fn inputs(&self) -> &Inputs<'a> {
        &self.inputs
    }

    /// The project.
    pub fn project(&self) -> &'a Project {
        self.project
    }

    /// `plugin` with its effective extras in its fields.
    pub fn effective(&self, plugin: &Plugin) -> Result<Plugin> {
        settings::extras::effective_plugin(self.project, plugin, &self.inputs)
    }

    /// Resolves everything `plugin` gets. A plugin downstream of an extractor also sees
    /// `upstream` (the extractor's [`Built::shared_env`]), as Meltano's loader settings do, so
    /// a loader `config` can refer to `$MELTANO_EXTRACT__LOAD_SCHEMA`; the shell's own
    /// variables win.
    pub fn resolve(
        &self,
        plugin: &Plugin,
        upstream: &BTreeMap<String, String>,
    ) -> Result<PluginSettings> {
        let layer = StoreLayer::at(
            &self.db,
            self.project.root(),
            Reveal::ForRun(format!("dsm run ({})", plugin.name)),
        )?
        .in_environment(self.inputs.environment.map(|e| e.name.as_str()));
        let inputs = self.inputs.downstream_of(upstream);
        let resolved = settings::resolve_plugin(self.project, plugin, &inputs.with_store(&layer))?;
        for w in &resolved.settings.warnings {
            tracing::warn!(plugin = %plugin.name, "{w}");
        }
        Ok(resolved)
    }

    /// Resolves `plugin` and builds its spec in `role`; a mapping's config is laid over the
    /// mapper's.
    pub fn build(
        &self,
        plugin: &Plugin,
        role: PluginRole,
        mapping: Option<&Mapping>,
        upstream: &BTreeMap<String, String>,
    ) -> Result<Built> {
        let resolved = self.resolve(plugin, upstream)?;
        Ok(self.spec(&resolved, role, mapping))
    }

    /// The spec of a resolved plugin (whose `plugin` may carry `dsm el`'s overrides).
    pub fn spec(
        &self,
        resolved: &PluginSettings,
        role: PluginRole,
        mapping: Option<&Mapping>,
    ) -> Built {
        from_resolved(self.project, &self.inputs, resolved, role, mapping)
    }
}

/// Puts a resolved plugin together into its spec: the config file's content, the variables
/// of its `env:` blocks, `.env`, its settings and Meltano's extras, its executable.
fn from_resolved(
    project: &Project,
    inputs: &Inputs<'_>,
    resolved: &PluginSettings,
    role: PluginRole,
    mapping: Option<&Mapping>,
) -> Built {
    let plugin = &resolved.plugin;
    let mut config = resolved.config.clone();
    let mut masked_config = resolved.masked_config.clone();
    for c in [&mut config, &mut masked_config] {
        if let (Some(m), Some(obj)) = (mapping, c.as_object_mut()) {
            for (k, v) in &m.config {
                obj.insert(k.clone(), v.clone());
            }
        }
    }
    let process_env = &inputs.process_env;
    let dotenv = &inputs.dotenv;
    let mut vars = resolved.settings.env_overlay.clone();
    let (setting_vars, remove) = plugin_env(&resolved.settings);
    let mut shared = BTreeMap::new();
    let (kind, verb) = match role {
        PluginRole::Extractor => ("EXTRACTOR", "EXTRACT"),
        PluginRole::Mapper => ("MAPPER", "MAP"),
        PluginRole::Loader => ("LOADER", "LOAD"),
    };
    shared.insert(format!("MELTANO_{kind}_NAME"), plugin.name.clone());
    shared.insert(
        format!("MELTANO_{kind}_NAMESPACE"),
        plugin.namespace.clone(),
    );
    shared.insert(
        format!("MELTANO_{kind}_VARIANT"),
        plugin
            .variant
            .clone()
            .unwrap_or_else(|| "default".to_string()),
    );
    // Meltano's extras, each as `<NAME>__<EXTRA>`, `<NAMESPACE>__<EXTRA>` and
    // `MELTANO_<VERB>__<EXTRA>`, with its defaults; arrays and objects as Python writes JSON.
    // An object extra also gets a variable per leaf (`TAP_X__METADATA_USERS_REPLICATION_METHOD`).
    let meltano_prefix = format!("MELTANO_{verb}");
    let prefixes = [
        plugin.name.as_str(),
        plugin.namespace.as_str(),
        meltano_prefix.as_str(),
    ];
    for (extra, value) in extras(plugin, role) {
        let mut entries = vec![(extra.clone(), settings::env_text(&value))];
        if let Value::Object(map) = &value {
            entries.extend(
                settings::flatten(map, &|_| false)
                    .into_iter()
                    .map(|(k, v)| (format!("{extra}.{k}"), settings::env_text(&v))),
            );
        }
        for (name, text) in entries {
            for prefix in prefixes {
                shared.insert(settings::env_var_name(prefix, &name), text.clone());
            }
        }
    }
    for (k, v) in setting_vars {
        shared.insert(k, v);
    }
    for (k, v) in &shared {
        vars.entry(k.clone()).or_insert_with(|| v.clone());
    }

    let executable = resolve_executable(project, plugin);
    // A venv's bin directory goes first on PATH, as Meltano does.
    if let Some(bin) = executable.parent().filter(|p| p.ends_with("venv/bin")) {
        let path = process_env.get("PATH").cloned().unwrap_or_default();
        vars.insert("PATH".into(), format!("{}:{path}", bin.display()));
        if let Some(venv) = bin.parent() {
            vars.insert("VIRTUAL_ENV".into(), venv.display().to_string());
        }
    }
    let redact = {
        let (mut secrets, mut users) = (Vec::new(), Vec::new());
        masked_leaves(&config, &masked_config, "", &mut secrets, &mut users);
        std::sync::Arc::new(crate::plugin::redaction_forms(&secrets, &users))
    };
    let mut spec = PluginSpec::new(plugin.name.clone(), role, executable)
        .config(config)
        .cwd(project.root());
    spec.redact = redact;
    // A secret written to `.env` (where `meltano config set` puts them) reaches the plugin
    // only through its config file.
    vars.retain(|k, _| !(dotenv.contains_key(k) && remove.contains(k)));
    // Nothing that grants access to dsm itself reaches a plugin (see `envvars::ACCESS`).
    vars.retain(|k, _| !crate::envvars::grants_access(k));
    spec.env = vars;
    spec.env_remove = remove
        .into_iter()
        .filter(|k| !spec.env.contains_key(k))
        .collect();
    Built {
        spec,
        shared_env: if role == PluginRole::Extractor {
            shared
        } else {
            BTreeMap::new()
        },
        masked_config,
    }
}

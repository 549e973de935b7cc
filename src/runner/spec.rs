//! From a project's plugin to a [`PluginSpec`]: executable, config and environment as Meltano
//! builds them, except that sensitive values travel only in the private config file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use crate::envvars;
use crate::error::Result;
use crate::plugin::{PluginRole, PluginSpec};
use crate::project::{Environment, Mapping, Object, Plugin, Project};
use crate::secrets::layer::{Reveal, StoreLayer};
use crate::settings::{self, Inputs, ResolvedSettings, expand};

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

/// The built-in plugins shipped as binaries next to `dsm`.
pub const BUILTINS: &[&str] = &[
    "tap-csv",
    "tap-jsonl",
    "tap-sqlite",
    "tap-rest",
    "target-csv",
    "target-jsonl",
    "target-sqlite",
];

/// A plugin's spec plus the variables Meltano passes on from an extractor to the loader.
pub struct Built {
    /// The spec.
    pub spec: PluginSpec,
    /// `MELTANO_EXTRACTOR_*`, `MELTANO_EXTRACT_*` and the extractor's non-sensitive settings.
    pub shared_env: BTreeMap<String, String>,
    /// The config file's content with sensitive values masked (`dsm el --dump ...-config`).
    pub masked_config: Value,
}

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

fn overlay(
    block: &Object,
    env: &mut BTreeMap<String, String>,
    lookup_base: &BTreeMap<String, String>,
) {
    for (k, v) in block {
        let raw = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut exp = expand::Expansion::default();
        let value = {
            let lookup = |n: &str| env.get(n).or_else(|| lookup_base.get(n)).cloned();
            expand::expand_str(&raw, &lookup, &mut exp)
        };
        env.insert(k.clone(), value);
    }
}

/// Builds the spec of `plugin` in `role`; a mapping's config is laid over the mapper's. The
/// system database is the one `DSM_DATABASE_URI` or the project's default names.
pub fn build(
    project: &Project,
    env: Option<&Environment>,
    plugin: &Plugin,
    role: PluginRole,
    mapping: Option<&Mapping>,
) -> Result<Built> {
    build_in(project, env, plugin, role, mapping, None)
}

/// [`build`] with the system database named by `--database-uri`. Values stored there (plain
/// settings and, decrypted with the master key, secrets) take their place in the settings'
/// layers; each secret a plugin receives is audited, and reaches it only in the config file.
pub fn build_in(
    project: &Project,
    env: Option<&Environment>,
    plugin: &Plugin,
    role: PluginRole,
    mapping: Option<&Mapping>,
    database_uri: Option<&str>,
) -> Result<Built> {
    build_after(
        project,
        env,
        plugin,
        role,
        mapping,
        database_uri,
        &BTreeMap::new(),
    )
}

/// [`build_in`] for a plugin downstream of an extractor: its settings also see `upstream` (the
/// extractor's [`Built::shared_env`]), as Meltano's loader settings do, so a loader `config`
/// can refer to `$MELTANO_EXTRACT__LOAD_SCHEMA`. The shell's own variables win.
pub fn build_after(
    project: &Project,
    env: Option<&Environment>,
    plugin: &Plugin,
    role: PluginRole,
    mapping: Option<&Mapping>,
    database_uri: Option<&str>,
    upstream: &BTreeMap<String, String>,
) -> Result<Built> {
    let db = crate::store::database_path(database_uri, project.root())?;
    let layer = StoreLayer::open(&db, Reveal::ForRun(format!("dsm run ({})", plugin.name)))?;
    let mut inputs = Inputs {
        store: &layer,
        ..Inputs::from_process(env)
    };
    for (k, v) in upstream {
        inputs
            .process_env
            .entry(k.clone())
            .or_insert_with(|| v.clone());
    }
    let resolved = settings::resolve(project, plugin, &inputs)?;
    for w in &resolved.warnings {
        tracing::warn!(plugin = %plugin.name, "{w}");
    }
    let mut config = resolved.config_json();
    let mut masked_config = resolved.config_json_masked(true);
    for c in [&mut config, &mut masked_config] {
        if let (Some(m), Some(obj)) = (mapping, c.as_object_mut()) {
            for (k, v) in &m.config {
                obj.insert(k.clone(), v.clone());
            }
        }
    }
    let process_env: BTreeMap<String, String> = std::env::vars().collect();
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    vars.insert(
        envvars::MELTANO_PROJECT_ROOT.into(),
        project.root().display().to_string(),
    );
    if let Some(e) = env {
        vars.insert(envvars::MELTANO_ENVIRONMENT.into(), e.name.clone());
    }
    overlay(project.env(), &mut vars, &process_env);
    // Meltano hands a plugin the variables of the project's `.env` too, over the project's
    // `env:` block; here the shell's own values win, and secrets are dropped below.
    let dotenv: BTreeMap<String, String> = project.dotenv()?.into_iter().collect();
    for (k, v) in &dotenv {
        if !process_env.contains_key(k) {
            vars.insert(k.clone(), v.clone());
        }
    }
    // Meltano expands a plugin's `env:` against the environment's `env:` block (expanded
    // first), though the environment's block still wins over the plugin's in the end.
    let mut active = vars.clone();
    if let Some(e) = env {
        overlay(&e.env, &mut active, &process_env);
    }
    let mut plugin_vars = active.clone();
    overlay(&plugin.env, &mut plugin_vars, &process_env);
    for k in plugin.env.keys() {
        if let Some(v) = plugin_vars.get(k) {
            vars.insert(k.clone(), v.clone());
        }
    }
    if let Some(e) = env {
        for k in e.env.keys() {
            if let Some(v) = active.get(k) {
                vars.insert(k.clone(), v.clone());
            }
        }
        if let Some(ep) = project.environment_plugin(e, plugin)
            && let Some(block) = &ep.env
        {
            overlay(block, &mut vars, &process_env);
        }
    }
    let (setting_vars, remove) = plugin_env(&resolved);
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
    Ok(Built {
        spec,
        shared_env: if role == PluginRole::Extractor {
            shared
        } else {
            BTreeMap::new()
        },
        masked_config,
    })
}

//! Config history: every change dsm makes to a plugin's configuration is a numbered version
//! holding what the plugin's configuration was after it: its entries in `meltano.yml` (top level
//! and per environment), its plain values in the system database, and its secret-store rows,
//! still encrypted. [`rollback`] restores a version, and refuses when `meltano.yml` was edited
//! by hand since the last recorded version (the hash of the plugin's entries no longer matches).

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Serialize;
use serde_json::{Map, Value as J, json};
use sha2::{Digest, Sha256};

use super::actor;
use super::key::MasterKey;
use super::layer::settings_namespace;
use super::store::check_key;
use crate::error::{Error, Result};
use crate::project::PluginType;
use crate::project::edit::{self, Seg};
use crate::store::Store;
use crate::store::config_history::{ConfigRestore, ConfigVersionRow};
use crate::store::secrets::SealedSecret;

/// Which plugin a history belongs to.
#[derive(Debug, Clone)]
pub struct PluginRef<'a> {
    /// The plugin's type, when the project defines it.
    pub plugin_type: Option<PluginType>,
    /// The plugin's name.
    pub name: &'a str,
    /// The environment the change is made in (`None` for the top level of `meltano.yml`).
    pub environment: Option<&'a str>,
}

/// One version, as `dsm config history` shows it (never values of sensitive settings).
#[derive(Debug, Clone, Serialize)]
pub struct Version {
    /// The version number, from 1.
    pub version: i64,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// The OS user.
    pub user: String,
    /// The environment the change was made in (`None` for the top level, or not recorded).
    pub environment: Option<String>,
    /// The command that made the change.
    pub command: String,
    /// `baseline`, `set`, `unset`, `reset`, `secret.set`, `secret.unset` or `rollback`.
    pub action: String,
    /// The setting changed, when one was.
    pub setting: Option<String>,
    /// The plugin's non-sensitive configuration in `meltano.yml` after the change.
    pub config: J,
    /// Plain values in the system database after the change.
    pub stored: J,
    /// Names of the settings with an encrypted value after the change.
    pub secrets: Vec<String>,
}

/// The plugin's entries in `meltano.yml`: `{"plugin": entry, "environments": {env: entry}}`.
fn yml_block(root: &Path, p: &PluginRef<'_>) -> Result<J> {
    let Some(ty) = p.plugin_type else {
        return Ok(J::Null);
    };
    let path = root.join(crate::project::PROJECT_FILE);
    let text = std::fs::read_to_string(&path)?;
    let doc: J = serde_saphyr::from_str(&text)
        .map_err(|e| Error::config(format!("cannot read `{}`: {e}", path.display())))?;
    let find = |plugins: Option<&J>| -> J {
        plugins
            .and_then(|ps| ps.get(ty.key()))
            .and_then(J::as_array)
            .and_then(|list| {
                list.iter()
                    .find(|e| e.get("name").and_then(J::as_str) == Some(p.name))
            })
            .cloned()
            .unwrap_or(J::Null)
    };
    let mut envs = Map::new();
    for env in doc
        .get("environments")
        .and_then(J::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = env.get("name").and_then(J::as_str) else {
            continue;
        };
        let entry = find(env.get("config").and_then(|c| c.get("plugins")));
        if !entry.is_null() {
            envs.insert(name.to_string(), entry);
        }
    }
    Ok(json!({ "plugin": find(doc.get("plugins")), "environments": envs }))
}

/// `meltano.yml` as data without the plugin's entries (top level and in every environment),
/// and without the containers that leaves empty: what a rollback of the plugin must not change.
fn rest_of_file(text: &str, ty: PluginType, name: &str) -> Option<J> {
    let mut doc: J = serde_saphyr::from_str(text).ok()?;
    fn drop_plugin(plugins: &mut J, ty: PluginType, name: &str) {
        let Some(map) = plugins.as_object_mut() else {
            return;
        };
        if let Some(J::Array(list)) = map.get_mut(ty.key()) {
            list.retain(|e| e.get("name").and_then(J::as_str) != Some(name));
            if list.is_empty() {
                map.remove(ty.key());
            }
        }
    }
    if let Some(plugins) = doc.get_mut("plugins") {
        drop_plugin(plugins, ty, name);
    }
    for env in doc
        .get_mut("environments")
        .and_then(J::as_array_mut)
        .into_iter()
        .flatten()
    {
        let Some(env) = env.as_object_mut() else {
            continue;
        };
        if let Some(config) = env.get_mut("config").and_then(J::as_object_mut) {
            if let Some(plugins) = config.get_mut("plugins") {
                drop_plugin(plugins, ty, name);
                if plugins.as_object().is_some_and(Map::is_empty) {
                    config.remove("plugins");
                }
            }
            if config.is_empty() {
                env.remove("config");
            }
        }
    }
    Some(doc)
}

fn hash(v: &J) -> String {
    hex::encode(Sha256::digest(v.to_string().as_bytes()))
}

fn stored_values(store: &dyn Store, p: &PluginRef<'_>) -> Result<J> {
    let Some(ty) = p.plugin_type else {
        return Ok(J::Object(Map::new()));
    };
    let mut out = Map::new();
    for (k, v) in store.raw_settings(&settings_namespace(ty, p.name))? {
        out.insert(k, serde_json::from_str(&v).unwrap_or(J::String(v)));
    }
    Ok(J::Object(out))
}

fn sealed_rows(store: &dyn Store, plugin: &str) -> Result<J> {
    Ok(J::Array(
        store
            .sealed_secrets(Some(plugin))?
            .into_iter()
            .map(|s| {
                let mut row = json!({
                    "setting": s.setting,
                    "key_version": s.key_version,
                    "nonce": B64.encode(s.nonce),
                    "ciphertext": B64.encode(s.ciphertext),
                });
                // Only an environment's value names its scope: rows of project-wide values
                // read as they always did.
                if let Some(scope) = s.scope {
                    row["scope"] = J::String(scope);
                }
                row
            })
            .collect(),
    ))
}

/// Records the plugin's configuration as it is now as version 1 (`baseline`), when it has no
/// history yet, so the first change can be rolled back. Call before changing anything.
pub fn ensure_baseline(
    store: &dyn Store,
    root: &Path,
    p: &PluginRef<'_>,
    command: &str,
) -> Result<()> {
    if store.latest_config_version(p.name)?.is_none() {
        record(store, root, p, command, "baseline", None)?;
    }
    Ok(())
}

/// Records the plugin's configuration as it is now, after a change; returns the new version.
pub fn record(
    store: &dyn Store,
    root: &Path,
    p: &PluginRef<'_>,
    command: &str,
    action: &str,
    setting: Option<&str>,
) -> Result<i64> {
    let yml = yml_block(root, p)?;
    let file_text = std::fs::read_to_string(root.join(crate::project::PROJECT_FILE)).ok();
    let stored = stored_values(store, p)?;
    let sealed = sealed_rows(store, p.name)?;
    store.record_config_version(&ConfigVersionRow {
        plugin: p.name.to_string(),
        version: 0,
        plugin_type: p.plugin_type.map(|t| t.key().to_string()),
        at: actor::now(),
        os_user: actor::os_user(),
        command: command.to_string(),
        action: action.to_string(),
        setting: setting.map(str::to_string),
        yml: yml.to_string(),
        yml_hash: hash(&yml),
        stored: stored.to_string(),
        sealed: sealed.to_string(),
        environment: p.environment.map(str::to_string),
        file_text,
    })
}

/// The non-sensitive view of a plugin entry's `config` (sensitive values never reach
/// `meltano.yml` through dsm, but a hand-written one is masked all the same).
fn config_of(entry: &J, sensitive: &dyn Fn(&str) -> bool) -> J {
    let mut config = entry.get("config").cloned().unwrap_or(J::Null);
    if let Some(map) = config.as_object_mut() {
        for (k, v) in map.iter_mut() {
            if sensitive(k) {
                *v = J::String(crate::settings::MASK.into());
            }
        }
    }
    config
}

/// Every version of `plugin`, oldest first. `sensitive` tells which setting names to mask.
pub fn list(
    store: &dyn Store,
    plugin: &str,
    sensitive: &dyn Fn(&str) -> bool,
) -> Result<Vec<Version>> {
    let mut out = Vec::new();
    for row in store.config_versions(plugin)? {
        let ConfigVersionRow {
            version,
            at,
            os_user: user,
            command,
            action,
            setting,
            yml,
            stored,
            sealed,
            environment,
            ..
        } = row;
        let yml: J = serde_json::from_str(&yml).unwrap_or(J::Null);
        let mut config = Map::new();
        if let Some(entry) = yml.get("plugin").filter(|e| !e.is_null()) {
            config.insert("meltano.yml".into(), config_of(entry, sensitive));
        }
        for (env, entry) in yml
            .get("environments")
            .and_then(J::as_object)
            .into_iter()
            .flatten()
        {
            config.insert(format!("environment {env}"), config_of(entry, sensitive));
        }
        let mut stored: J = serde_json::from_str(&stored).unwrap_or(J::Null);
        if let Some(map) = stored.as_object_mut() {
            for (k, v) in map.iter_mut() {
                if sensitive(k) {
                    *v = J::String(crate::settings::MASK.into());
                }
            }
        }
        let sealed: J = serde_json::from_str(&sealed).unwrap_or(J::Null);
        let secrets = sealed
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.get("setting")?.as_str().map(str::to_string))
            .collect();
        out.push(Version {
            version,
            at,
            user,
            environment,
            command,
            action,
            setting,
            config: J::Object(config),
            stored,
            secrets,
        });
    }
    Ok(out)
}

/// Restores `plugin` to `version`: its `config` in `meltano.yml` (top level and every
/// environment), its plain values in the system database and its encrypted secrets. Refuses
/// when the plugin's entries in `meltano.yml` differ from the last recorded version (edited by
/// hand). Returns the new version recorded for the rollback.
pub fn rollback(
    store: &dyn Store,
    root: &Path,
    p: &PluginRef<'_>,
    version: i64,
    key: Option<&MasterKey>,
    command: &str,
) -> Result<i64> {
    let Some(row) = store.config_version(p.name, version)? else {
        return Err(
            Error::config(format!("`{}` has no config version {version}", p.name)).hint(format!(
                "`dsm config history {}` lists its versions",
                p.name
            )),
        );
    };
    let (last, last_hash) = store
        .latest_config_version(p.name)?
        .expect("a version exists, so a latest one does");
    let now = yml_block(root, p)?;
    if hash(&now) != last_hash {
        return Err(Error::config(format!(
            "meltano.yml's entries for `{}` were edited by hand since config version {last}",
            p.name
        ))
        .hint("rolling back would overwrite those edits; undo them, or make the change with `dsm config set`")
        .hint(format!(
            "`dsm config history {}` shows what each version holds",
            p.name
        )));
    }
    let parse = |text: &str| -> Result<J> {
        serde_json::from_str(text).map_err(|e| {
            Error::failed(format!(
                "config version {version} of `{}` is damaged: {e}",
                p.name
            ))
        })
    };
    let target = parse(&row.yml)?;
    let stored = parse(&row.stored)?;
    let sealed = parse(&row.sealed)?;
    let sealed = sealed.as_array().cloned().unwrap_or_default();
    if !sealed.is_empty()
        || !sealed_rows(store, p.name)?
            .as_array()
            .is_none_or(Vec::is_empty)
    {
        let key = key.ok_or_else(|| {
            Error::config(format!(
                "rolling back `{}` changes its encrypted secrets, which needs the master key",
                p.name
            ))
            .hint("create or point dsm at the key: `dsm secrets init`, `DSM_MASTER_KEY_FILE`")
        })?;
        let current = check_key(store, key, "the master key")?;
        if sealed
            .iter()
            .any(|s| s.get("key_version").and_then(J::as_i64) != Some(current))
        {
            return Err(Error::config(format!(
                "config version {version} of `{}` holds secrets encrypted under an older master key",
                p.name
            ))
            .hint("the key was rotated since; set those secrets again with `dsm secrets set`"));
        }
    }

    // meltano.yml first: if it fails, nothing else changed. When the rest of the file is as it
    // was at that version, the file is restored byte for byte (comments, quoting, order);
    // otherwise only the plugin's `config` entries are rewritten.
    let saved_text: Option<String> = row.file_text;
    let file = root.join(crate::project::PROJECT_FILE);
    let current_text = std::fs::read_to_string(&file)?;
    let verbatim = saved_text.filter(|then| {
        p.plugin_type.is_some_and(|ty| {
            rest_of_file(then, ty, p.name)
                .is_some_and(|a| rest_of_file(&current_text, ty, p.name).is_some_and(|b| a == b))
        })
    });
    if let Some(text) = &verbatim {
        if *text != current_text {
            crate::files::replace_atomically(&file, text.as_bytes(), crate::files::Mode::Keep)?;
        }
    } else if let Some(ty) = p.plugin_type {
        let envs_now: Vec<String> = now
            .get("environments")
            .and_then(J::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let envs_then: Vec<String> = target
            .get("environments")
            .and_then(J::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let mut places: Vec<(Option<String>, J)> = vec![(
            None,
            target
                .get("plugin")
                .and_then(|e| e.get("config"))
                .cloned()
                .unwrap_or(J::Null),
        )];
        for env in envs_now.iter().chain(envs_then.iter()) {
            if places.iter().any(|(e, _)| e.as_deref() == Some(env)) {
                continue;
            }
            let config = target
                .get("environments")
                .and_then(|m| m.get(env))
                .and_then(|e| e.get("config"))
                .cloned()
                .unwrap_or(J::Null);
            places.push((Some(env.clone()), config));
        }
        for (env, config) in &places {
            let mut path = edit::plugin_path(env.as_deref(), ty.key(), p.name);
            path.push(Seg::key("config"));
            edit::edit_defining_file(root, &path, |doc| match config {
                J::Object(m) if !m.is_empty() => doc.set(&path, config),
                _ => doc.remove(&path).map(|_| ()),
            })?;
        }
    }
    let namespace = p.plugin_type.map(|ty| settings_namespace(ty, p.name));
    let values: Vec<(String, String)> = stored
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    let mut secrets = Vec::with_capacity(sealed.len());
    for s in &sealed {
        let text = |k: &str| s.get(k).and_then(J::as_str).unwrap_or_default().to_string();
        let bytes = |k: &str| {
            B64.decode(text(k))
                .map_err(|e| Error::failed(format!("config history row is damaged: {e}")))
        };
        secrets.push(SealedSecret {
            plugin: p.name.to_string(),
            setting: text("setting"),
            scope: s.get("scope").and_then(J::as_str).map(str::to_string),
            key_version: s.get("key_version").and_then(J::as_i64).unwrap_or_default(),
            nonce: bytes("nonce")?,
            ciphertext: bytes("ciphertext")?,
        });
    }
    store.restore_config(&ConfigRestore {
        namespace: namespace.as_deref(),
        values: &values,
        plugin: p.name,
        secrets: &secrets,
        updated_by: &actor::os_user(),
    })?;
    if let Some(key) = key {
        super::audit::append(
            store,
            key,
            &super::audit::Entry::new(
                command,
                "config.rollback",
                [format!("{} to version {version}", p.name)],
            ),
        )?;
    }
    record(
        store,
        root,
        p,
        command,
        "rollback",
        Some(&format!("to version {version}")),
    )
}

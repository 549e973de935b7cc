//! The encrypted secret store: one value per plugin setting, AES-256-GCM under the master key,
//! kept by the system store's [`SecretStore`](crate::store::SecretStore).
//!
//! Every change appends an entry to the audit log in the same transaction. Values never leave
//! this module except as [`Secret`].

use serde::Serialize;

use super::audit::{self, Entry};
use super::error::SecretsError;
use super::key::{Binding, MasterKey, Sealed};
use super::master_key::KeyLookup;
use super::{Secret, actor};
use crate::store::Store;
use crate::store::secrets::{KeyCheck, Rotation, SealedSecret};

pub use crate::store::SecretInfo;

type Result<T, E = SecretsError> = std::result::Result<T, E>;

/// The outcome of [`verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// How many values decrypted.
    pub ok: usize,
    /// `(plugin, setting)` of values that did not.
    pub failed: Vec<(String, String)>,
}

/// Finds the master key of `store`'s project (see [`KeyLookup`]) and checks it against the
/// store's key check value.
pub fn find_key(
    store: &dyn Store,
) -> crate::error::Result<(MasterKey, super::master_key::KeySource)> {
    find_key_with(store, KeyLookup::for_project(store.key_owner().as_deref()))
}

/// As [`find_key`], looking where `lookup` says (its project file is set from the store's
/// project when it has none): the key with the id the store needs, any key for a store that
/// has none yet.
pub fn find_key_with(
    store: &dyn Store,
    mut lookup: KeyLookup,
) -> crate::error::Result<(MasterKey, super::master_key::KeySource)> {
    if lookup.project_file.is_none() {
        lookup.project_file = store
            .key_owner()
            .as_deref()
            .and_then(super::master_key::project_key_file);
    }
    let wanted = store
        .current_key()?
        .map(|k| super::key::key_id_of(&k.check_value));
    let (key, source) = lookup.find_for(wanted.as_deref())?;
    check_key(store, &key, &source.to_string())?;
    Ok((key, source))
}

/// The id of the key `store`'s secrets are encrypted under, if a key was ever registered.
pub fn store_key_id(store: &dyn Store) -> Result<Option<String>> {
    Ok(store
        .current_key()?
        .map(|k| super::key::key_id_of(&k.check_value)))
}

/// Checks `key` against the store's key check value and returns the key version. The first key
/// used with a store is registered as version 1.
pub fn check_key(store: &dyn Store, key: &MasterKey, source_name: &str) -> Result<i64> {
    match store.current_key()? {
        Some(k) if k.check_value == key.check_value() => Ok(k.version),
        Some(k) => Err(SecretsError::WrongKey {
            source_name: source_name.to_string(),
            given: key.key_id(),
            wanted: super::key::key_id_of(&k.check_value),
        }),
        None => {
            store.register_first_key(&key.check_value())?;
            check_key(store, key, source_name)
        }
    }
}

fn check_names(plugin: &str, setting: &str) -> Result<()> {
    for (what, name) in [("plugin", plugin), ("setting", setting)] {
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(SecretsError::Invalid(format!(
                "`{name}` is not a valid {what} name"
            )));
        }
    }
    Ok(())
}

fn seal(
    key: &MasterKey,
    plugin: &str,
    setting: &str,
    scope: Option<&str>,
    version: i64,
    value: &Secret,
) -> SealedSecret {
    let sealed = key.seal(
        &Binding {
            plugin,
            setting,
            key_version: version,
            scope,
        },
        value.expose().as_bytes(),
    );
    SealedSecret {
        plugin: plugin.to_string(),
        setting: setting.to_string(),
        scope: scope.map(str::to_string),
        key_version: version,
        nonce: sealed.nonce,
        ciphertext: sealed.ciphertext,
    }
}

/// How the audit log names a secret: `plugin.setting`, with the environment it belongs to
/// when it is not the whole project's.
pub fn target_name(plugin: &str, setting: &str, scope: Option<&str>) -> String {
    match scope {
        None => format!("{plugin}.{setting}"),
        Some(env) => format!("{plugin}.{setting} (environment {env})"),
    }
}

fn check_scope(scope: Option<&str>) -> Result<()> {
    match scope {
        Some(env) if env.is_empty() || env.chars().any(char::is_control) => Err(
            SecretsError::Invalid(format!("`{env}` is not a valid environment name")),
        ),
        _ => Ok(()),
    }
}

/// Encrypts and stores `value` as `plugin`'s `setting` for the whole project, replacing any
/// earlier value, and audits the change as done by `command`.
pub fn set_secret(
    store: &dyn Store,
    key: &MasterKey,
    plugin: &str,
    setting: &str,
    value: &Secret,
    command: &str,
) -> Result<()> {
    set_secret_in(store, key, plugin, setting, None, value, command)
}

/// As [`set_secret`], for the environment `scope` (`None`: the whole project).
pub fn set_secret_in(
    store: &dyn Store,
    key: &MasterKey,
    plugin: &str,
    setting: &str,
    scope: Option<&str>,
    value: &Secret,
    command: &str,
) -> Result<()> {
    check_names(plugin, setting)?;
    check_scope(scope)?;
    let version = check_key(store, key, "the given key")?;
    let sealed = seal(key, plugin, setting, scope, version, value);
    let entry = Entry::new(command, "secret.set", [target_name(plugin, setting, scope)]);
    actor::note_token(store);
    store.put_secret(&sealed, &actor::os_user(), &audit::builder(key, &entry))?;
    Ok(())
}

/// Seals `value` as `plugin`'s `setting` (for the whole project) under the store's current key
/// without storing it: a source request stores its secrets in the same transaction as the
/// request.
pub fn seal_for(
    store: &dyn Store,
    key: &MasterKey,
    plugin: &str,
    setting: &str,
    value: &Secret,
) -> Result<SealedSecret> {
    check_names(plugin, setting)?;
    let version = check_key(store, key, "the given key")?;
    Ok(seal(key, plugin, setting, None, version, value))
}

/// Opens a value [`seal_for`] sealed (or any stored one).
pub fn open_sealed(key: &MasterKey, sealed: &SealedSecret) -> Result<Secret> {
    decrypt(key, sealed)
}

fn decrypt(key: &MasterKey, s: &SealedSecret) -> Result<Secret> {
    let undecryptable = || SecretsError::Undecryptable {
        plugin: s.plugin.clone(),
        setting: s.setting.clone(),
    };
    let plain = key
        .open(
            &Binding {
                plugin: &s.plugin,
                setting: &s.setting,
                key_version: s.key_version,
                scope: s.scope.as_deref(),
            },
            &Sealed {
                nonce: s.nonce.clone(),
                ciphertext: s.ciphertext.clone(),
            },
        )
        .ok_or_else(undecryptable)?;
    Secret::from_utf8(plain.to_vec()).map_err(|_| undecryptable())
}

/// The project-wide value of `plugin`'s `setting`, or `None` when none is stored.
pub fn get_secret(
    store: &dyn Store,
    key: &MasterKey,
    plugin: &str,
    setting: &str,
) -> Result<Option<Secret>> {
    get_secret_in(store, key, plugin, setting, None)
}

/// The value of `plugin`'s `setting` stored for exactly `scope` (an environment, or the whole
/// project for `None`), or `None` when none is stored there.
pub fn get_secret_in(
    store: &dyn Store,
    key: &MasterKey,
    plugin: &str,
    setting: &str,
    scope: Option<&str>,
) -> Result<Option<Secret>> {
    check_key(store, key, "the given key")?;
    match store.sealed_secret(plugin, setting, scope)? {
        None => Ok(None),
        Some(sealed) => decrypt(key, &sealed).map(Some),
    }
}

/// The scope whose value of `plugin`'s `setting` applies in `environment`: the environment's
/// own when it has one, else the project's (`Some(None)`); `None` when neither is stored.
/// Needs no key.
pub fn applicable_scope(
    store: &dyn Store,
    plugin: &str,
    setting: &str,
    environment: Option<&str>,
) -> Result<Option<Option<String>>> {
    let stored: Vec<Option<String>> = store
        .sealed_secrets(Some(plugin))?
        .into_iter()
        .filter(|s| s.setting == setting)
        .map(|s| s.scope)
        .collect();
    if let Some(env) = environment
        && stored.iter().any(|s| s.as_deref() == Some(env))
    {
        return Ok(Some(Some(env.to_string())));
    }
    Ok(stored.contains(&None).then_some(None))
}

/// Reads the value of `plugin`'s `setting` that applies in `environment` (the environment's,
/// else the project's) to hand to a plugin for a run, and audits the read (names only).
pub fn read_for_run(
    store: &dyn Store,
    key: &MasterKey,
    plugin: &str,
    setting: &str,
    environment: Option<&str>,
    command: &str,
) -> Result<Option<Secret>> {
    check_key(store, key, "the given key")?;
    let Some(scope) = applicable_scope(store, plugin, setting, environment)? else {
        return Ok(None);
    };
    let value = get_secret_in(store, key, plugin, setting, scope.as_deref())?;
    if value.is_some() {
        audit::append(
            store,
            key,
            &Entry::new(
                command,
                "secret.read",
                [target_name(plugin, setting, scope.as_deref())],
            ),
        )?;
    }
    Ok(value)
}

/// Removes a stored project-wide value; `NotFound` when there was none.
pub fn unset(
    store: &dyn Store,
    key: &MasterKey,
    plugin: &str,
    setting: &str,
    command: &str,
) -> Result<()> {
    unset_in(store, key, plugin, setting, None, command)
}

/// Removes the value stored for `scope` (an environment, or the whole project for `None`);
/// `NotFound` when there was none.
pub fn unset_in(
    store: &dyn Store,
    key: &MasterKey,
    plugin: &str,
    setting: &str,
    scope: Option<&str>,
    command: &str,
) -> Result<()> {
    check_key(store, key, "the given key")?;
    actor::note_token(store);
    let entry = Entry::new(
        command,
        "secret.unset",
        [target_name(plugin, setting, scope)],
    );
    if !store.delete_secret(plugin, setting, scope, &audit::builder(key, &entry))? {
        return Err(SecretsError::NotFound {
            plugin: plugin.to_string(),
            setting: setting.to_string(),
        });
    }
    Ok(())
}

/// Every stored secret's name, plugin and last change, sorted; never values. Needs no key.
pub fn list(store: &dyn Store) -> Result<Vec<SecretInfo>> {
    Ok(store.secret_infos()?)
}

/// Checks that every stored value decrypts with `key` under its plugin and setting.
pub fn verify(store: &dyn Store, key: &MasterKey) -> Result<VerifyReport> {
    check_key(store, key, "the given key")?;
    let mut report = VerifyReport::default();
    for sealed in store.sealed_secrets(None)? {
        match decrypt(key, &sealed) {
            Ok(_) => report.ok += 1,
            Err(_) => report.failed.push((
                sealed.plugin,
                match sealed.scope {
                    None => sealed.setting,
                    Some(env) => format!("{} (environment {env})", sealed.setting),
                },
            )),
        }
    }
    Ok(report)
}

/// Re-encrypts every value under `new_key` (the next key version), re-keys the audit chain and
/// records the rotation, all in one transaction: if anything fails, nothing changes and
/// `old_key` keeps working. Returns how many values were re-encrypted.
pub fn rotate(
    store: &dyn Store,
    old_key: &MasterKey,
    new_key: &MasterKey,
    command: &str,
) -> Result<usize> {
    let old_version = check_key(store, old_key, "the current key")?;
    if old_key.check_value() == new_key.check_value() {
        return Err(SecretsError::Invalid(
            "the new master key is the same as the current one".to_string(),
        ));
    }
    let new_version = old_version + 1;
    actor::note_token(store);
    // The closure's own errors keep their kind: they travel through the store as dsm errors.
    let mut failure: Option<SecretsError> = None;
    let result = store.rotate_secrets(&mut |input| {
        let plan = || -> Result<Rotation> {
            let mut secrets = Vec::with_capacity(input.secrets.len());
            for s in &input.secrets {
                let value = decrypt(old_key, s)?;
                secrets.push(seal(
                    new_key,
                    &s.plugin,
                    &s.setting,
                    s.scope.as_deref(),
                    new_version,
                    &value,
                ));
            }
            let (chain, last) = audit::rekey(&input.chain, old_key, new_key)?;
            let entry = audit::next_row(
                new_key,
                &last,
                &Entry::new(
                    command,
                    "secrets.rotate",
                    [format!("key version {old_version} -> {new_version}")],
                ),
            );
            Ok(Rotation {
                secrets,
                key: KeyCheck {
                    version: new_version,
                    check_value: new_key.check_value(),
                },
                chain,
                entry,
            })
        };
        plan().map_err(|e| {
            let shown = crate::error::Error::failed(e.to_string());
            failure = Some(e);
            shown
        })
    });
    match (result, failure) {
        (Ok(n), _) => Ok(n),
        (Err(_), Some(e)) => Err(e),
        (Err(e), None) => Err(e.into()),
    }
}

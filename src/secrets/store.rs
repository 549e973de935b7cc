//! The encrypted secret store: one row per plugin setting, AES-256-GCM under the master key.
//!
//! Every change appends an entry to the audit log in the same transaction. Values never leave
//! this module except as [`Secret`].

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::Serialize;

use super::audit::{self, Entry};
use super::error::SecretsError;
use super::key::{Binding, MasterKey, Sealed};
use super::{Secret, actor, schema};

type Result<T, E = SecretsError> = std::result::Result<T, E>;

/// A stored secret's name and history, never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretInfo {
    /// Plugin name.
    pub plugin: String,
    /// Setting name.
    pub setting: String,
    /// When it was last set (RFC 3339, UTC).
    pub updated_at: String,
    /// The OS user who last set it.
    pub updated_by: String,
    /// Version of the master key it is encrypted under.
    pub key_version: i64,
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// How many values decrypted.
    pub ok: usize,
    /// `(plugin, setting)` of values that did not.
    pub failed: Vec<(String, String)>,
}

/// Begins an immediate (write-locking) transaction on a shared connection.
pub(crate) fn begin(conn: &Connection) -> Result<Transaction<'_>> {
    Ok(Transaction::new_unchecked(
        conn,
        TransactionBehavior::Immediate,
    )?)
}

/// The current key version and its check value, if a key was ever registered.
fn current_key(conn: &Connection) -> Result<Option<(i64, Vec<u8>)>> {
    Ok(conn
        .query_row(
            "SELECT version, check_value FROM secret_keys ORDER BY version DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// Checks `key` against the store's key check value and returns the key version. The first key
/// used with a store is registered as version 1.
pub fn check_key(conn: &Connection, key: &MasterKey, source_name: &str) -> Result<i64> {
    schema::migrate(conn)?;
    match current_key(conn)? {
        Some((version, check)) if check == key.check_value() => Ok(version),
        Some(_) => Err(SecretsError::WrongKey {
            source_name: source_name.to_string(),
        }),
        None => {
            conn.execute(
                "INSERT OR IGNORE INTO secret_keys (version, check_value, created_at) VALUES (1, ?1, ?2)",
                params![key.check_value(), actor::now()],
            )?;
            check_key(conn, key, source_name)
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

/// Encrypts and stores `value` as `plugin`'s `setting`, replacing any earlier value, and audits
/// the change as done by `command`.
pub fn set_secret(
    conn: &Connection,
    key: &MasterKey,
    plugin: &str,
    setting: &str,
    value: &Secret,
    command: &str,
) -> Result<()> {
    check_names(plugin, setting)?;
    let version = check_key(conn, key, "the given key")?;
    let tx = begin(conn)?;
    let sealed = key.seal(
        &Binding {
            plugin,
            setting,
            key_version: version,
        },
        value.expose().as_bytes(),
    );
    tx.execute(
        "INSERT INTO secrets (plugin, setting, key_version, nonce, ciphertext, updated_at, updated_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (plugin, setting) DO UPDATE SET key_version = excluded.key_version,
           nonce = excluded.nonce, ciphertext = excluded.ciphertext,
           updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        params![
            plugin,
            setting,
            version,
            sealed.nonce,
            sealed.ciphertext,
            actor::now(),
            actor::os_user()
        ],
    )?;
    let head = audit::append_in(
        &tx,
        key,
        &Entry::new(command, "secret.set", [format!("{plugin}.{setting}")]),
    )?;
    tx.commit()?;
    audit::write_head(conn, &head)?;
    Ok(())
}

fn load(conn: &Connection, plugin: &str, setting: &str) -> Result<Option<(i64, Sealed)>> {
    Ok(conn
        .query_row(
            "SELECT key_version, nonce, ciphertext FROM secrets WHERE plugin = ?1 AND setting = ?2",
            params![plugin, setting],
            |r| {
                Ok((
                    r.get(0)?,
                    Sealed {
                        nonce: r.get(1)?,
                        ciphertext: r.get(2)?,
                    },
                ))
            },
        )
        .optional()?)
}

fn decrypt(
    key: &MasterKey,
    plugin: &str,
    setting: &str,
    version: i64,
    sealed: &Sealed,
) -> Result<Secret> {
    let undecryptable = || SecretsError::Undecryptable {
        plugin: plugin.to_string(),
        setting: setting.to_string(),
    };
    let plain = key
        .open(
            &Binding {
                plugin,
                setting,
                key_version: version,
            },
            sealed,
        )
        .ok_or_else(undecryptable)?;
    Secret::from_utf8(plain.to_vec()).map_err(|_| undecryptable())
}

/// The value of `plugin`'s `setting`, or `None` when none is stored.
pub fn get_secret(
    conn: &Connection,
    key: &MasterKey,
    plugin: &str,
    setting: &str,
) -> Result<Option<Secret>> {
    check_key(conn, key, "the given key")?;
    match load(conn, plugin, setting)? {
        None => Ok(None),
        Some((version, sealed)) => decrypt(key, plugin, setting, version, &sealed).map(Some),
    }
}

/// Reads a value to hand to a plugin for a run, and audits the read (names only).
pub fn read_for_run(
    conn: &Connection,
    key: &MasterKey,
    plugin: &str,
    setting: &str,
    command: &str,
) -> Result<Option<Secret>> {
    let value = get_secret(conn, key, plugin, setting)?;
    if value.is_some() {
        audit::append(
            conn,
            key,
            &Entry::new(command, "secret.read", [format!("{plugin}.{setting}")]),
        )?;
    }
    Ok(value)
}

/// Removes a stored value; `NotFound` when there was none.
pub fn unset(
    conn: &Connection,
    key: &MasterKey,
    plugin: &str,
    setting: &str,
    command: &str,
) -> Result<()> {
    check_key(conn, key, "the given key")?;
    let tx = begin(conn)?;
    let removed = tx.execute(
        "DELETE FROM secrets WHERE plugin = ?1 AND setting = ?2",
        params![plugin, setting],
    )?;
    if removed == 0 {
        return Err(SecretsError::NotFound {
            plugin: plugin.to_string(),
            setting: setting.to_string(),
        });
    }
    let head = audit::append_in(
        &tx,
        key,
        &Entry::new(command, "secret.unset", [format!("{plugin}.{setting}")]),
    )?;
    tx.commit()?;
    audit::write_head(conn, &head)?;
    Ok(())
}

/// Every stored secret's name, plugin and last change, sorted; never values. Needs no key.
pub fn list(conn: &Connection) -> Result<Vec<SecretInfo>> {
    schema::migrate(conn)?;
    let mut stmt = conn.prepare(
        "SELECT plugin, setting, updated_at, updated_by, key_version FROM secrets ORDER BY plugin, setting",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(SecretInfo {
            plugin: r.get(0)?,
            setting: r.get(1)?,
            updated_at: r.get(2)?,
            updated_by: r.get(3)?,
            key_version: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

type Row = (String, String, i64, Sealed);

fn all_rows(conn: &Connection) -> Result<Vec<Row>> {
    let mut stmt = conn.prepare(
        "SELECT plugin, setting, key_version, nonce, ciphertext FROM secrets ORDER BY plugin, setting",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            Sealed {
                nonce: r.get(3)?,
                ciphertext: r.get(4)?,
            },
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Checks that every stored value decrypts with `key` under its plugin and setting.
pub fn verify(conn: &Connection, key: &MasterKey) -> Result<VerifyReport> {
    check_key(conn, key, "the given key")?;
    let mut report = VerifyReport::default();
    for (plugin, setting, version, sealed) in all_rows(conn)? {
        match decrypt(key, &plugin, &setting, version, &sealed) {
            Ok(_) => report.ok += 1,
            Err(_) => report.failed.push((plugin, setting)),
        }
    }
    Ok(report)
}

/// Re-encrypts every value under `new_key` (the next key version), re-keys the audit chain and
/// records the rotation, all in one transaction: if anything fails, nothing changes and
/// `old_key` keeps working. Returns how many values were re-encrypted.
pub fn rotate(
    conn: &Connection,
    old_key: &MasterKey,
    new_key: &MasterKey,
    command: &str,
) -> Result<usize> {
    let old_version = check_key(conn, old_key, "the current key")?;
    if old_key.check_value() == new_key.check_value() {
        return Err(SecretsError::Invalid(
            "the new master key is the same as the current one".to_string(),
        ));
    }
    let new_version = old_version + 1;
    let tx = begin(conn)?;
    let rows = all_rows(&tx)?;
    for (plugin, setting, version, sealed) in &rows {
        let value = decrypt(old_key, plugin, setting, *version, sealed)?;
        let resealed = new_key.seal(
            &Binding {
                plugin,
                setting,
                key_version: new_version,
            },
            value.expose().as_bytes(),
        );
        tx.execute(
            "UPDATE secrets SET key_version = ?3, nonce = ?4, ciphertext = ?5 WHERE plugin = ?1 AND setting = ?2",
            params![plugin, setting, new_version, resealed.nonce, resealed.ciphertext],
        )?;
    }
    audit::rekey_in(&tx, old_key, new_key)?;
    tx.execute("DELETE FROM secret_keys", [])?;
    tx.execute(
        "INSERT INTO secret_keys (version, check_value, created_at) VALUES (?1, ?2, ?3)",
        params![new_version, new_key.check_value(), actor::now()],
    )?;
    let head = audit::append_in(
        &tx,
        new_key,
        &Entry::new(
            command,
            "secrets.rotate",
            [format!("key version {old_version} -> {new_version}")],
        ),
    )?;
    tx.commit()?;
    audit::write_head(conn, &head)?;
    Ok(rows.len())
}

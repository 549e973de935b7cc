//! Encrypted secret values and the master key's metadata, as the store keeps them. Sealing and
//! opening values is [`crate::secrets`]' job: the store sees only ciphertext.

use serde::Serialize;

use super::audit::{AuditAppend, AuditChain, AuditRow, Rekeyed};
use crate::error::Result;

/// One stored secret: a setting of a plugin, encrypted under a version of the master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSecret {
    /// Plugin name.
    pub plugin: String,
    /// Setting name.
    pub setting: String,
    /// The environment the value belongs to; `None`: the whole project.
    pub scope: Option<String>,
    /// Version of the master key it is encrypted under.
    pub key_version: i64,
    /// The AES-GCM nonce.
    pub nonce: Vec<u8>,
    /// The ciphertext with its tag.
    pub ciphertext: Vec<u8>,
}

/// How a scope is kept in a table: `''` for the whole project.
pub fn scope_column(scope: Option<&str>) -> &str {
    scope.unwrap_or("")
}

/// A scope as read from a table.
pub fn scope_of(column: String) -> Option<String> {
    (!column.is_empty()).then_some(column)
}

/// A stored secret's name and history, never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretInfo {
    /// Plugin name.
    pub plugin: String,
    /// Setting name.
    pub setting: String,
    /// The environment the value belongs to; `null`: the whole project.
    pub environment: Option<String>,
    /// When it was last set (RFC 3339, UTC).
    pub updated_at: String,
    /// The OS user who last set it.
    pub updated_by: String,
    /// Version of the master key it is encrypted under.
    pub key_version: i64,
}

/// The registered master key: its version and check value (never the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCheck {
    /// The key's version, from 1, raised by every rotation.
    pub version: i64,
    /// A value derived from the key that tells whether a key is the right one.
    pub check_value: Vec<u8>,
}

/// What a rotation reads, inside its transaction.
#[derive(Debug, Clone)]
pub struct RotationInput {
    /// Every stored secret, sorted by plugin and setting.
    pub secrets: Vec<SealedSecret>,
    /// The audit chain as stored.
    pub chain: AuditChain,
}

/// What a rotation writes, in the same transaction.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// Every secret, re-encrypted under the new key (same plugin and setting).
    pub secrets: Vec<SealedSecret>,
    /// The new key's version and check value; it replaces every earlier key.
    pub key: KeyCheck,
    /// The audit chain's new MACs.
    pub chain: Rekeyed,
    /// The entry that records the rotation (its MAC under the new key).
    pub entry: AuditRow,
}

/// The secret table and the master key's metadata.
pub trait SecretStore {
    /// The `project_id` of the project this store was opened for, which names the project's
    /// own master key file; `None` when unknown (a store opened by path, a project without one).
    fn key_owner(&self) -> Option<String> {
        None
    }

    /// The current key's version and check value, if a key was ever registered.
    fn current_key(&self) -> Result<Option<KeyCheck>>;

    /// Registers `check_value` as key version 1, unless a key is registered already.
    fn register_first_key(&self, check_value: &[u8]) -> Result<()>;

    /// One stored secret of one scope (an environment's, or the project's for `None`).
    fn sealed_secret(
        &self,
        plugin: &str,
        setting: &str,
        scope: Option<&str>,
    ) -> Result<Option<SealedSecret>>;

    /// The stored secrets of one plugin (or all), of every scope, sorted by plugin, setting
    /// and scope (the project's first).
    fn sealed_secrets(&self, plugin: Option<&str>) -> Result<Vec<SealedSecret>>;

    /// Every stored secret's name, scope and last change, sorted by plugin, setting and scope.
    fn secret_infos(&self) -> Result<Vec<SecretInfo>>;

    /// Stores (or replaces) a secret as set by `updated_by`, and appends the audit entry
    /// `entry` builds, in one transaction.
    fn put_secret(
        &self,
        secret: &SealedSecret,
        updated_by: &str,
        entry: &AuditAppend<'_>,
    ) -> Result<()>;

    /// Deletes a secret of one scope and appends the audit entry, in one transaction. Returns
    /// `false` (and records nothing) when there was no such secret.
    fn delete_secret(
        &self,
        plugin: &str,
        setting: &str,
        scope: Option<&str>,
        entry: &AuditAppend<'_>,
    ) -> Result<bool>;

    /// Re-encrypts every secret and re-keys the audit chain in one transaction: `rotate` gets
    /// what is stored and returns what to write; if it fails, nothing changes. Returns how
    /// many secrets were re-encrypted.
    fn rotate_secrets(
        &self,
        rotate: &mut dyn FnMut(RotationInput) -> Result<Rotation>,
    ) -> Result<usize>;
}

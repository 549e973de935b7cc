//! Config history as the store keeps it: numbered versions of a plugin's configuration, and the
//! restore of a version's stored values in one transaction. What a version holds and how a
//! rollback edits `meltano.yml` is [`crate::secrets::history`]'s job.

use super::secrets::SealedSecret;
use crate::error::Result;

/// One version of a plugin's configuration, as stored (JSON documents as text).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigVersionRow {
    /// The plugin's name.
    pub plugin: String,
    /// The version number, from 1 (assigned by the store when recorded).
    pub version: i64,
    /// The plugin's type key (`extractors`, ...), when known.
    pub plugin_type: Option<String>,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// The OS user.
    pub os_user: String,
    /// The command that made the change.
    pub command: String,
    /// What the change was (`baseline`, `set`, ...).
    pub action: String,
    /// The setting changed, when one was.
    pub setting: Option<String>,
    /// The plugin's entries in `meltano.yml` (JSON).
    pub yml: String,
    /// SHA-256 of `yml`, hex.
    pub yml_hash: String,
    /// Plain stored values (JSON object).
    pub stored: String,
    /// Encrypted secrets (JSON array).
    pub sealed: String,
    /// The environment the change was made in.
    pub environment: Option<String>,
    /// The whole project file at that version (read back by [`ConfigHistoryStore::config_version`]
    /// only).
    pub file_text: Option<String>,
}

/// What a rollback writes back to the store.
#[derive(Debug, Clone)]
pub struct ConfigRestore<'a> {
    /// The plugin's settings namespace, when it has one (its values are replaced).
    pub namespace: Option<&'a str>,
    /// The plain values to store: name and JSON text.
    pub values: &'a [(String, String)],
    /// The plugin whose secrets are replaced.
    pub plugin: &'a str,
    /// The secrets to store.
    pub secrets: &'a [SealedSecret],
    /// Who restores them.
    pub updated_by: &'a str,
}

/// The config history tables.
pub trait ConfigHistoryStore {
    /// The newest version of `plugin` and its `yml_hash`.
    fn latest_config_version(&self, plugin: &str) -> Result<Option<(i64, String)>>;

    /// Records `row` as the plugin's next version (its `version` is ignored); returns it.
    fn record_config_version(&self, row: &ConfigVersionRow) -> Result<i64>;

    /// Every version of `plugin`, oldest first (without the project files).
    fn config_versions(&self, plugin: &str) -> Result<Vec<ConfigVersionRow>>;

    /// One version of `plugin`, with its project file.
    fn config_version(&self, plugin: &str, version: i64) -> Result<Option<ConfigVersionRow>>;

    /// Replaces the plugin's stored values and secrets, in one transaction.
    fn restore_config(&self, restore: &ConfigRestore<'_>) -> Result<()>;
}

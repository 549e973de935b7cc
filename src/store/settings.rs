//! Plain setting values stored in the system database (`config set --store=db`), by namespace.

use serde_json::Value;

use crate::error::Result;

/// The `settings` table.
pub trait SettingsStore {
    /// A setting's value stored with `config set --store=db`. `namespace` is the plugin's
    /// settings namespace (Meltano's `plugin.type.name` style is up to the caller).
    fn get_setting(&self, namespace: &str, name: &str) -> Result<Option<Value>>;

    /// Stores a setting's value.
    fn set_setting(&self, namespace: &str, name: &str, value: &Value) -> Result<()>;

    /// Removes a setting; returns whether it existed.
    fn unset_setting(&self, namespace: &str, name: &str) -> Result<bool>;

    /// All settings of a namespace, sorted by name.
    fn list_settings(&self, namespace: &str) -> Result<Vec<(String, Value)>>;

    /// The values of a namespace as the JSON text stored, sorted by name (for callers that
    /// report an unreadable value in their own words).
    fn raw_settings(&self, namespace: &str) -> Result<Vec<(String, String)>>;

    /// Removes every setting of a namespace; returns how many there were.
    fn clear_settings(&self, namespace: &str) -> Result<usize>;
}

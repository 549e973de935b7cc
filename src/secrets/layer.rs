//! The system store as a layer of setting resolution: plain values from the database's
//! `settings` table and sensitive values from the encrypted secret store.
//!
//! Reading the layer never creates a database: a project without one has nothing stored. The
//! master key is looked up only when a secret's clear value is needed, so `dsm config list`
//! (masked) works without a key, and a run needs one only when a stored secret reaches a plugin.

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;

use super::key::MasterKey;
use super::store;
use crate::error::{Error, Result};
use crate::project::{Object, PluginType};
use crate::settings::SystemStore;
use crate::store::Store;

/// What the layer does with a stored secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reveal {
    /// Only tell that it exists; resolution shows it masked. Needs no master key.
    Masked,
    /// Decrypt it (for `config --unsafe`); not audited.
    Clear,
    /// Decrypt it for a plugin and audit the read as done by this command.
    ForRun(String),
}

/// The namespace Meltano uses for a plugin's values in its system database
/// (`<type>.<name>.default`; "default" is there for Meltano's historical reasons).
pub fn settings_namespace(plugin_type: PluginType, plugin: &str) -> String {
    format!("{}.{plugin}.default", plugin_type.key())
}

/// The system database as a [`SystemStore`].
pub struct StoreLayer {
    conn: Option<Arc<dyn Store>>,
    reveal: Reveal,
    key: RefCell<Option<MasterKey>>,
    environment: Option<String>,
}

impl std::fmt::Debug for StoreLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreLayer")
            .field("open", &self.conn.is_some())
            .field("reveal", &self.reveal)
            .finish_non_exhaustive()
    }
}

impl StoreLayer {
    /// The layer for the database at `db_path`; empty when the file does not exist.
    pub fn open(db_path: &Path, reveal: Reveal) -> Result<StoreLayer> {
        let conn = if db_path.exists() {
            Some(crate::store::open_path(db_path)?)
        } else {
            None
        };
        Ok(StoreLayer {
            conn,
            reveal,
            key: RefCell::new(None),
            environment: None,
        })
    }

    /// The layer for the store at `location`: an SQLite file as [`StoreLayer::open`] opens
    /// it, a PostgreSQL store opened for the project at `root`.
    pub fn at(
        location: &crate::store::Location,
        root: &Path,
        reveal: Reveal,
    ) -> Result<StoreLayer> {
        match location {
            crate::store::Location::Sqlite(path) => StoreLayer::open(path, reveal),
            crate::store::Location::Postgres(_) => Ok(StoreLayer {
                conn: Some(crate::store::open_location(location, root)?),
                reveal,
                key: RefCell::new(None),
                environment: None,
            }),
        }
    }

    /// A layer that holds nothing (for callers with no database).
    pub fn empty() -> StoreLayer {
        StoreLayer {
            conn: None,
            reveal: Reveal::Masked,
            key: RefCell::new(None),
            environment: None,
        }
    }

    /// The layer as seen from `environment`: a secret stored for it wins over the project's
    /// value of the same setting (secrets of other environments are not seen).
    #[must_use]
    pub fn in_environment(mut self, environment: Option<&str>) -> StoreLayer {
        self.environment = environment.map(str::to_string);
        self
    }

    fn key(&self, conn: &dyn Store) -> Result<MasterKey> {
        if let Some(k) = self.key.borrow().as_ref() {
            return Ok(k.clone());
        }
        let (key, _) = store::find_key(conn)?;
        *self.key.borrow_mut() = Some(key.clone());
        Ok(key)
    }
}

impl SystemStore for StoreLayer {
    fn plugin_values(&self, plugin_type: PluginType, plugin: &str) -> Result<Object> {
        let Some(conn) = &self.conn else {
            return Ok(Object::new());
        };
        let namespace = settings_namespace(plugin_type, plugin);
        let mut out = Object::new();
        for (name, text) in conn.raw_settings(&namespace)? {
            let value = serde_json::from_str(&text).map_err(|e| {
                Error::config(format!(
                    "the system database holds a malformed value for setting `{name}` of `{plugin}`: {e}"
                ))
                .hint(format!("remove it with `dsm config unset {plugin} {name}`"))
            })?;
            out.insert(name, value);
        }
        Ok(out)
    }

    fn secret_names(&self, plugin: &str) -> Result<Vec<String>> {
        let Some(conn) = &self.conn else {
            return Ok(Vec::new());
        };
        let mut names: Vec<String> = conn
            .sealed_secrets(Some(plugin))?
            .into_iter()
            .filter(|s| s.scope.is_none() || s.scope == self.environment)
            .map(|s| s.setting)
            .collect();
        names.dedup();
        Ok(names)
    }

    fn secret_value(&self, plugin: &str, setting: &str) -> Result<Option<String>> {
        let Some(conn) = &self.conn else {
            return Ok(None);
        };
        if self.reveal == Reveal::Masked {
            return Ok(None);
        }
        let key = self.key(conn.as_ref()).map_err(|e| {
            e.detail(format!(
                "setting `{setting}` of `{plugin}` is stored encrypted and needs the master key"
            ))
        })?;
        let environment = self.environment.as_deref();
        let value = match &self.reveal {
            Reveal::ForRun(command) => {
                store::read_for_run(conn.as_ref(), &key, plugin, setting, environment, command)?
            }
            _ => match store::applicable_scope(conn.as_ref(), plugin, setting, environment)? {
                None => None,
                Some(scope) => {
                    store::get_secret_in(conn.as_ref(), &key, plugin, setting, scope.as_deref())?
                }
            },
        };
        Ok(value.map(|s| s.expose().to_string()))
    }
}

//! Encrypted secrets, the master key, and the audit log.
//!
//! Sensitive setting values are stored encrypted (AES-256-GCM, see [`key`]) in the system store
//! ([`store`]); the master key is found by [`master_key`]; every change is recorded in the
//! HMAC-chained [`audit`] log. Values travel as [`Secret`], which never prints.

mod actor;
pub mod audit;
pub mod bundle;
pub mod dotenv;
mod error;
pub mod history;
pub mod key;
pub mod layer;
pub mod master_key;
pub mod schema;
mod secret;
pub mod sensitive;
pub mod store;

pub use error::SecretsError;

use std::path::Path;

/// Opens a connection to the system database at `db_path` for the secret and audit functions,
/// after the store has created or migrated it (WAL, numbered migrations).
pub fn open_connection(db_path: &Path) -> crate::error::Result<rusqlite::Connection> {
    Ok(crate::store::SqliteStore::open(db_path)?.into_connection())
}
pub use key::MasterKey;
pub use secret::{MASK, Secret};
pub use store::{SecretInfo, get_secret, list, read_for_run, rotate, set_secret, unset, verify};

#[cfg(test)]
mod tests;

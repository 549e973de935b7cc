//! The tables of the secret store and the audit log.
//!
//! They are migration 2 of the system store (`src/store/migrations/`). The statements are
//! idempotent, so [`migrate`] can also run them on any connection handed to this module.

use rusqlite::Connection;

/// The SQL that creates the secret-store and audit tables: the system store's migration 2.
pub const SCHEMA: &str = include_str!("../store/migrations/0002_secrets_audit.sql");

/// Creates the secret-store and audit tables when they do not exist yet.
pub fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

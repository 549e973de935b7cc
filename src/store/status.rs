//! `dsm store status` and `dsm store migrate`: which backend a project's store is, its schema
//! version, the projects it holds and the flows' leases.

use std::path::Path;

use serde::Serialize;

use super::postgres::{self, PgStore, Upgrade};
use super::{Location, LockHolder, RunLocks, SqliteStore};
use crate::error::Result;

/// What `dsm store status` reports (`--format json`: `schemas/cli/store-status.schema.json`).
#[derive(Debug, Clone, Serialize)]
pub struct StoreStatus {
    /// `sqlite` or `postgresql`.
    pub backend: &'static str,
    /// The file, or `user@host:port/database?schema=NAME` (never a password).
    pub location: String,
    /// The schema version of the store.
    pub schema_version: i64,
    /// The schema version this dsm writes.
    pub latest_version: i64,
    /// This project's `project_id` (which a PostgreSQL store files its rows under).
    pub project_id: Option<String>,
    /// Every project with rows in the store (a PostgreSQL schema may hold several).
    pub projects: Vec<String>,
    /// The flows' held leases (stale ones included).
    pub leases: Vec<LockHolder>,
}

fn local_project_id(root: &Path) -> Option<String> {
    crate::project::Project::load(root)
        .ok()
        .and_then(|p| p.file().project_id.clone())
}

/// The status of the store at `location` for the project at `root` (an SQLite store is
/// created and migrated as every command does; a PostgreSQL one only on first use).
pub fn status(location: &Location, root: &Path) -> Result<StoreStatus> {
    match location {
        Location::Sqlite(path) => {
            let store = SqliteStore::open(path)?;
            let project_id = local_project_id(root);
            Ok(StoreStatus {
                backend: "sqlite",
                location: path.display().to_string(),
                schema_version: store.schema_version()?,
                latest_version: super::sqlite::latest_version(),
                projects: project_id.iter().cloned().collect(),
                project_id,
                leases: store.lock_holders()?,
            })
        }
        Location::Postgres(target) => {
            let id = super::team_project_id(root)?;
            let store = PgStore::open(target, &id, Upgrade::FirstUseOnly)?;
            let pg = store.status()?;
            Ok(StoreStatus {
                backend: "postgresql",
                location: target.display.trim_matches('`').to_owned(),
                schema_version: pg.version,
                latest_version: pg.latest_version,
                project_id: Some(id),
                projects: pg.projects,
                leases: store.lock_holders()?,
            })
        }
    }
}

/// Brings the store at `location` to this dsm's schema version; returns the version it had and
/// the one it has now.
pub fn migrate(location: &Location, root: &Path) -> Result<(i64, i64)> {
    match location {
        Location::Sqlite(path) => {
            let before = if path.exists() {
                SqliteStore::open_unmigrated_version(path)?
            } else {
                0
            };
            let store = SqliteStore::open(path)?;
            Ok((before, store.schema_version()?))
        }
        Location::Postgres(target) => {
            let before = postgres::current_version(target)?;
            let id = super::team_project_id(root)?;
            let store = PgStore::open(target, &id, Upgrade::Allowed)?;
            Ok((before, store.status()?.version))
        }
    }
}

//! The system store: every byte dsm keeps in its database, and the only module that speaks SQL.
//!
//! Each concern is a trait of its own ([`StateStore`], [`RunLocks`], [`RunHistory`],
//! [`SettingsStore`], [`SourceStatusStore`], [`TokenStore`], [`WebhookStore`], [`RequestStore`] ...) taking and returning plain
//! values; [`Store`] gathers them. A backend (SQLite today, see [`sqlite`]) implements every
//! trait, and the contract suite in `tests/store/contract.rs` runs against each backend.
//!
//! Every method blocks on the database. From async code call it through
//! `tokio::task::spawn_blocking` (the handle is `Send + Sync`, share it as `Arc<dyn Store>`).

pub mod audit;
pub mod config_history;
pub mod copy;
pub mod liveness;
pub mod locks;
pub mod meltano;
pub mod merged;
pub mod notifications;
pub mod postgres;
pub mod requests;
pub mod runs;
pub mod secrets;
pub mod settings;
pub mod sources;
pub mod sqlite;
pub mod state;
pub mod status;
pub mod tokens;
pub mod webhooks;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::envvars;
use crate::error::{Error, Result};
use crate::project::PRIVATE_DIR;

pub use audit::{AuditRow, AuditStore, ChainLink};
pub use config_history::{ConfigHistoryStore, ConfigVersionRow};
pub use locks::{
    FlowLock, HeartbeatThread, LockHolder, RunLocks, already_running_error, lease_lost_error,
};
pub use notifications::{DeliveryAttempt, DeliveryOutcome, DeliveryRetention, NotificationStore};
pub use requests::{
    NewRequest, RequestFilter, RequestRecord, RequestRevision, RequestStatus, RequestStore,
    RequestUpdate, Transition,
};
pub use runs::{
    LOG_TAIL_BYTES, NewRun, PluginExit, PrunedTotal, RunArtifact, RunCounts, RunFilter, RunFinish,
    RunHistory, RunRecord, RunStatus, StreamStats,
};
pub use secrets::{SealedSecret, SecretInfo, SecretStore};
pub use settings::SettingsStore;
pub use sources::{SourceStatusChange, SourceStatusStore};
pub use sqlite::SqliteStore;
pub use state::{
    CommitOutcome, IgnoredReason, ImportReport, StateAction, StateEvent, StateId, StateStore,
    StoredState,
};
pub use tokens::{NewToken, Role, TokenRecord, TokenStore};
pub use webhooks::{
    NewWebhookEvent, Received, WebhookCounts, WebhookEvent, WebhookLimits, WebhookStore,
};

/// The store's traits, for callers that use a [`Store`] through its concerns' methods.
pub mod prelude {
    pub use super::NotificationStore;
    pub use super::{
        AuditStore, ConfigHistoryStore, RequestStore, RunHistory, RunLocks, SecretStore,
        SettingsStore, SourceStatusStore, StateStore, Store, TokenStore, WebhookStore,
    };
}

/// The store's file name inside the project's private folder.
pub const DATABASE_FILE: &str = "dsm.db";

/// Identifies one run (a UUID unless the caller chose one, like Meltano's `--run-id`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct RunId(String);

impl RunId {
    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        RunId(uuid::Uuid::now_v7().to_string())
    }

    /// Wraps an id read back from the store or named to look one up.
    pub fn new(id: impl Into<String>) -> Self {
        RunId(id.into())
    }

    /// An id a user chose for a new run (`--run-id`, `DSM_RUN_RUN_ID`): only a UUID, as
    /// Meltano accepts, written in its lower-case hyphenated form. The id names files under
    /// `.dsm/`, so anything else (a path such as `../../x`) is refused.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        uuid::Uuid::try_parse(text.trim())
            .map(|u| RunId(u.hyphenated().to_string()))
            .map_err(|_| {
                format!(
                    "a run id must be a UUID, such as `{}`",
                    uuid::Uuid::now_v7().hyphenated()
                )
            })
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The whole system store: every concern's trait, implemented by each backend. Implementations
/// are `Send + Sync`; every call blocks, so async callers go through `spawn_blocking`. Each
/// write is one transaction that takes the write lock up front.
pub trait Store:
    StateStore
    + RunLocks
    + RunHistory
    + SourceStatusStore
    + SettingsStore
    + TokenStore
    + SecretStore
    + AuditStore
    + ConfigHistoryStore
    + WebhookStore
    + NotificationStore
    + RequestStore
    + Send
    + Sync
    + std::fmt::Debug
{
    /// Where the store lives, for messages.
    fn location(&self) -> String;

    /// Writes a consistent copy of the whole store as a new SQLite database at `path` (with
    /// the audit head file beside it where the store keeps one): what a bundle carries.
    fn snapshot_sqlite(&self, path: &Path) -> Result<()>;

    /// How often a run refreshes its flow lock and its run's heartbeat.
    fn heartbeat_interval(&self) -> std::time::Duration {
        liveness::HEARTBEAT_INTERVAL
    }
}

/// Where a store lives: an SQLite file, or a schema of a PostgreSQL database (team mode).
#[derive(Debug, Clone)]
pub enum Location {
    /// The SQLite file.
    Sqlite(PathBuf),
    /// The PostgreSQL database and schema.
    Postgres(Box<postgres::PgTarget>),
}

impl Location {
    /// The SQLite file, or the error naming `feature` that a PostgreSQL store cannot serve yet.
    pub fn sqlite_path(&self, feature: &str) -> Result<&Path> {
        match self {
            Location::Sqlite(path) => Ok(path),
            Location::Postgres(_) => Err(postgres::unsupported::not_yet(feature)),
        }
    }
}

/// Where the store lives, from `--database-uri`, then `DSM_DATABASE_URI`, then
/// `.dsm/dsm.db` in the project: a `postgresql://` (or `postgres://`) URI names a PostgreSQL
/// store, anything else an SQLite file (relative paths from the project root).
pub fn locate(uri_flag: Option<&str>, project_root: &Path) -> Result<Location> {
    match explicit_uri(uri_flag) {
        Some(uri) if postgres::is_postgres_uri(&uri) => Ok(Location::Postgres(Box::new(
            postgres::PgTarget::parse(&uri)?,
        ))),
        Some(uri) => Ok(Location::Sqlite(parse_uri(&uri, project_root)?)),
        None => Ok(Location::Sqlite(
            project_root.join(PRIVATE_DIR).join(DATABASE_FILE),
        )),
    }
}

fn explicit_uri(uri_flag: Option<&str>) -> Option<String> {
    let from_env = std::env::var(envvars::DATABASE_URI)
        .ok()
        .filter(|s| !s.is_empty());
    uri_flag.map(str::to_owned).or(from_env)
}

/// The `project_id` of the project at `root`, which team mode keeps its rows under.
pub fn team_project_id(root: &Path) -> Result<String> {
    let project = crate::project::Project::load(root)?;
    project
        .file()
        .project_id
        .clone()
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| {
            Error::config(format!(
                "`{}` has no `project_id`, which a PostgreSQL store needs to keep this project's rows apart from other projects'",
                root.join("meltano.yml").display()
            ))
            .hint(format!(
                "add a line `project_id: {}` to meltano.yml (any unique text; keep it the same on every host)",
                uuid::Uuid::new_v4()
            ))
        })
}

/// The `project_id` of the project at `root`, which names its master key file; `None` when it
/// has none (or its project file does not load: whatever reads it next reports that). Read
/// once per project and process, as a run opens its store several times.
pub fn key_owner(root: &Path) -> Option<String> {
    static SEEN: std::sync::Mutex<Vec<(PathBuf, Option<String>)>> =
        std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, id)) = seen.iter().find(|(r, _)| r == root) {
        return id.clone();
    }
    let id = crate::project::Project::load(root)
        .ok()
        .and_then(|p| p.file().project_id.clone())
        .filter(|id| !id.trim().is_empty());
    seen.push((root.to_path_buf(), id.clone()));
    id
}

/// Opens the store at `location` for the project at `project_root` (a PostgreSQL store needs
/// the project's `project_id`).
pub fn open_location(location: &Location, project_root: &Path) -> Result<Arc<dyn Store>> {
    match location {
        Location::Sqlite(path) => {
            refuse_a_lost_store(path, project_root)?;
            let owner = key_owner(project_root);
            Ok(Arc::new(SqliteStore::open(path)?.with_key_owner(owner)))
        }
        Location::Postgres(target) => {
            let id = team_project_id(project_root)?;
            // One connection per store and project for the life of the process: a run opens
            // the store from several places (its source's status, each plugin's secrets, the
            // run itself), one after the other, and each new connection costs a login.
            static OPEN: std::sync::Mutex<Vec<(String, Arc<postgres::PgStore>)>> =
                std::sync::Mutex::new(Vec::new());
            let key = format!("{}\u{0}{id}", target.display);
            let mut open = OPEN
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((_, store)) = open.iter().find(|(k, _)| *k == key) {
                return Ok(store.clone());
            }
            let project = crate::project::Project::load(project_root)?;
            let lease = postgres::LeaseTimes::resolve(project.dsm().store.as_ref())?;
            let store = Arc::new(
                postgres::PgStore::open(target, &id, postgres::Upgrade::FirstUseOnly)?
                    .with_lease(lease),
            );
            open.push((key, store.clone()));
            Ok(store)
        }
    }
}

/// Where the store lives, from `--database-uri`, then `DSM_DATABASE_URI`, then
/// `.dsm/dsm.db` in the project. Relative paths are relative to the project root.
/// A PostgreSQL store (see [`locate`]) has no path: this is an error for it, for the parts of
/// dsm that work on the SQLite file itself.
pub fn database_path(uri_flag: Option<&str>, project_root: &Path) -> Result<PathBuf> {
    match explicit_uri(uri_flag) {
        Some(uri) => parse_uri(&uri, project_root),
        None => Ok(project_root.join(PRIVATE_DIR).join(DATABASE_FILE)),
    }
}

/// Turns a database URI (`sqlite:///abs/path`, `sqlite:////abs/path` or a plain path) into a
/// path. Other schemes are refused with a hint.
pub fn parse_uri(uri: &str, base: &Path) -> Result<PathBuf> {
    if postgres::is_postgres_uri(uri) {
        return Err(postgres::unsupported::not_yet("this command"));
    }
    let path = if let Some(rest) = uri.strip_prefix("sqlite://") {
        if rest.is_empty() || !rest.starts_with('/') {
            return Err(Error::config(format!("database URI `{uri}` has no path"))
                .hint("write `sqlite:///absolute/path/to/dsm.db`, or give a plain file path"));
        }
        PathBuf::from(rest)
    } else if let Some((scheme, _)) = uri.split_once("://") {
        return Err(
            Error::config(format!("database URI scheme `{scheme}` is not supported")).hint(
                "pass a file path or `sqlite:///absolute/path` (SQLite), or `postgresql://USER@HOST/DATABASE` (team mode)",
            ),
        );
    } else {
        PathBuf::from(uri)
    };
    Ok(if path.is_absolute() {
        path
    } else {
        base.join(path)
    })
}

/// Opens (creating and migrating if needed) the store for a project.
pub fn open_for_project(uri_flag: Option<&str>, project_root: &Path) -> Result<Arc<dyn Store>> {
    open_location(&locate(uri_flag, project_root)?, project_root)
}

/// Opens the store a command works on. With `--database-uri` (`uri_flag`) or
/// `DSM_DATABASE_URI` it is wherever that says, a relative path taken from the project root or,
/// outside a project, from `cwd`; otherwise it is the project's `.dsm/dsm.db`, and outside a
/// project `project_root`'s error is returned.
pub fn open_for_command(
    uri_flag: Option<&str>,
    project_root: Result<PathBuf>,
    cwd: impl FnOnce() -> Result<PathBuf>,
) -> Result<Arc<dyn Store>> {
    let explicit = uri_flag.is_some()
        || std::env::var_os(envvars::DATABASE_URI).is_some_and(|v| !v.is_empty());
    let base = if explicit {
        project_root.or_else(|_| cwd())?
    } else {
        project_root?
    };
    open_for_project(uri_flag, &base)
}

/// What shows that a project had a store: the audit head beside the database, and the run
/// logs and quarantine files of the project's private folder.
fn signs_of_an_earlier_store(path: &Path, project_root: &Path) -> Vec<PathBuf> {
    let mut signs = Vec::new();
    let head = path
        .parent()
        .unwrap_or(Path::new("."))
        .join(audit::AUDIT_HEAD_FILE);
    if head.is_file() {
        signs.push(head);
    }
    for dir in ["logs", "quarantine"] {
        let dir = project_root.join(PRIVATE_DIR).join(dir);
        let used = std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some());
        if used {
            signs.push(dir);
        }
    }
    signs
}

/// A store is created on first use only when nothing shows an earlier one existed: a
/// deleted or emptied database would otherwise start a silent full re-sync without secrets
/// or bookmarks.
fn refuse_a_lost_store(path: &Path, project_root: &Path) -> Result<()> {
    let lost = match std::fs::metadata(path) {
        Ok(m) => m.len() == 0,
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    };
    if !lost {
        return Ok(());
    }
    let signs = signs_of_an_earlier_store(path, project_root);
    if signs.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = signs.iter().map(|p| format!("`{}`", p.display())).collect();
    Err(Error::config(format!(
        "the system database `{}` is {}, but this project had one ({} show it); dsm does not start over without bookmarks and secrets on its own",
        path.display(),
        if path.exists() { "empty" } else { "missing" },
        shown.join(", ")
    ))
    .hint(format!("restore `{}` from a backup", path.display()))
    .hint("or restore an export bundle: `dsm import BUNDLE`")
    .hint("or start a new, empty store on purpose: `dsm store reset` (recorded in the audit log)"))
}

/// Starts a new, empty store where a lost one was (`dsm store reset`): only when the database
/// is missing or empty, so nothing is ever thrown away. The old audit head is kept beside it
/// as `audit.head.before-reset`.
pub fn reset_lost_store(path: &Path) -> Result<Arc<dyn Store>> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
        return Err(Error::config(format!(
            "the system database `{}` exists; `dsm store reset` only replaces a missing or empty one",
            path.display()
        ))
        .hint("move the database away yourself first if you really mean to start over"));
    }
    let head = path
        .parent()
        .unwrap_or(Path::new("."))
        .join(audit::AUDIT_HEAD_FILE);
    if head.is_file() {
        let kept = head.with_extension("head.before-reset");
        std::fs::rename(&head, &kept)
            .map_err(|e| Error::failed(format!("cannot move `{}` aside: {e}", head.display())))?;
    }
    if path.exists() {
        std::fs::remove_file(path)
            .map_err(|e| Error::failed(format!("cannot remove `{}`: {e}", path.display())))?;
    }
    open_path(path)
}

/// Opens (creating and migrating if needed) the store at a path [`database_path`] gave. A
/// project's own store (`<root>/.dsm/dsm.db` beside its `meltano.yml`) knows its project, whose
/// `project_id` names its master key file (see [`SecretStore::key_owner`]).
pub fn open_path(path: &Path) -> Result<Arc<dyn Store>> {
    let owner = path
        .parent()
        .filter(|dir| dir.file_name() == Some(std::ffi::OsStr::new(PRIVATE_DIR)))
        .and_then(Path::parent)
        .filter(|root| {
            path.file_name() == Some(std::ffi::OsStr::new(DATABASE_FILE))
                && root.join(crate::project::PROJECT_FILE).is_file()
        })
        .and_then(key_owner);
    Ok(Arc::new(SqliteStore::open(path)?.with_key_owner(owner)))
}

/// Formats a time the way the store keeps it (RFC 3339, UTC, milliseconds).
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

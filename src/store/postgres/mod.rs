//! The PostgreSQL implementation of [`Store`] for team mode: several hosts (and several
//! projects, kept apart by `project_id`) share one database, in the schema the URI names
//! (`schema=NAME`, default `dsm`). Every query names its schema and project explicitly and no
//! session state is relied on, so the store works through a transaction-pooling pooler.
//!
//! What it keeps: state and its events, flow leases, run history, settings, encrypted secrets,
//! the audit chain, config history, source status, API tokens, webhook events and merged
//! streams (in [`PgMerged`], on a connection of its own); bundles are made from it and
//! restored into it through the row copy of `dsm store copy`. A feature it cannot serve is an
//! error naming it, never a silent local fallback.

mod config_history;
mod connect;
mod copy;
mod locks;
mod merged;
mod notifications;
mod requests;
mod runs;
mod secrets;
mod settings;
mod state;
mod tokens;
pub(crate) mod unsupported;
mod webhooks;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use postgres::{Client, GenericClient, Transaction};
use serde::Serialize;
use serde_json::Value;

pub use connect::{DEFAULT_SCHEMA, PgTarget, is_postgres_uri};
pub use merged::PgMerged;

use super::Store;
use crate::error::{Error, Result};

/// The migrations, numbered as the SQLite store's: schema version N means the same release on
/// both backends. PostgreSQL starts at 14 (everything up to SQLite's 0014 in one script).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        14,
        "team_store",
        include_str!("migrations/0014_team_store.sql"),
    ),
    (
        15,
        "webhook_events",
        include_str!("migrations/0015_webhook_events.sql"),
    ),
    (
        16,
        "source_requests",
        include_str!("migrations/0016_source_requests.sql"),
    ),
    (
        17,
        "notification_deliveries",
        include_str!("migrations/0017_notification_deliveries.sql"),
    ),
    (
        18,
        "team_store_rest",
        include_str!("migrations/0018_team_store_rest.sql"),
    ),
    (
        19,
        "run_record_counts",
        include_str!("migrations/0019_run_record_counts.sql"),
    ),
    (
        20,
        "notifications_and_requests",
        include_str!("migrations/0020_notification_deliveries.sql"),
    ),
    (
        21,
        "secret_scopes",
        include_str!("migrations/0021_secret_scopes.sql"),
    ),
    (
        22,
        "merged_streams",
        include_str!("migrations/0022_merged_streams.sql"),
    ),
    (
        23,
        "merge_keys_bytewise",
        include_str!("migrations/0023_merge_keys_bytewise.sql"),
    ),
    (
        24,
        "state_commit",
        include_str!("migrations/0024_state_commit.sql"),
    ),
];

/// The schema version this binary writes.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Default lease timings (see [`LeaseTimes`]).
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// A lease not renewed for this long is free, on the database's clock.
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(60);

/// How often a run renews its flow's lease, and how long an unrenewed lease lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTimes {
    /// Renewal interval.
    pub heartbeat: Duration,
    /// Expiry, measured on the database server's clock from the last renewal.
    pub expiry: Duration,
}

impl Default for LeaseTimes {
    fn default() -> Self {
        LeaseTimes {
            heartbeat: DEFAULT_HEARTBEAT,
            expiry: DEFAULT_EXPIRY,
        }
    }
}

impl LeaseTimes {
    /// The defaults, overridden by `DSM_LEASE_HEARTBEAT` and `DSM_LEASE_EXPIRY`. The expiry must
    /// be longer than the heartbeat.
    pub fn from_env() -> Result<LeaseTimes> {
        LeaseTimes::resolve(None)
    }

    /// The defaults, overridden by the project's `annotations.dsm.store`, overridden by
    /// `DSM_LEASE_HEARTBEAT` and `DSM_LEASE_EXPIRY`.
    pub fn resolve(
        options: Option<&crate::project::annotations::StoreOptions>,
    ) -> Result<LeaseTimes> {
        use crate::project::annotations::Duration as Written;
        let annotated = |key: &str, d: Option<&Written>| -> Result<Option<Duration>> {
            match d {
                None => Ok(None),
                Some(Written::Seconds(n)) => Ok(Some(Duration::from_secs(*n))),
                Some(Written::Text(t)) => crate::duration::parse(t).map(Some).map_err(|e| {
                    Error::config(format!("annotations.dsm.store.{key}: {e}"))
                        .hint(crate::duration::DurationError::hint())
                }),
            }
        };
        let heartbeat_default = annotated(
            "lease_heartbeat",
            options.and_then(|o| o.lease_heartbeat.as_ref()),
        )?
        .unwrap_or(DEFAULT_HEARTBEAT);
        let expiry_default = annotated(
            "lease_expiry",
            options.and_then(|o| o.lease_expiry.as_ref()),
        )?
        .unwrap_or(DEFAULT_EXPIRY);
        let read = |name: &str, default: Duration| -> Result<Duration> {
            match std::env::var(name).ok().filter(|v| !v.trim().is_empty()) {
                None => Ok(default),
                Some(text) => crate::duration::parse(&text).map_err(|e| {
                    Error::config(format!("{name}: {e}"))
                        .hint(crate::duration::DurationError::hint())
                }),
            }
        };
        let times = LeaseTimes {
            heartbeat: read(crate::envvars::LEASE_HEARTBEAT, heartbeat_default)?,
            expiry: read(crate::envvars::LEASE_EXPIRY, expiry_default)?,
        };
        if times.heartbeat.is_zero() || times.expiry <= times.heartbeat {
            return Err(Error::config(format!(
                "the lease expiry ({:?}) must be longer than its heartbeat ({:?})",
                times.expiry, times.heartbeat
            ))
            .hint("make the expiry (DSM_LEASE_EXPIRY or annotations.dsm.store.lease_expiry) several heartbeats long (the defaults are 10s and 60s)"));
        }
        Ok(times)
    }
}

/// Whether opening may upgrade an older schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    /// Only an empty database is migrated (first use); an older one is refused.
    FirstUseOnly,
    /// `dsm store migrate`: bring any older schema up to date.
    Allowed,
}

/// The system store in a PostgreSQL schema, for one project.
pub struct PgStore {
    client: Mutex<Option<Client>>,
    target: PgTarget,
    /// The schema, quoted for SQL.
    schema: String,
    project: String,
    lease: LeaseTimes,
    /// How long a lost connection is tried again (`DSM_STORE_RECONNECT`).
    reconnect: Duration,
}

/// How long a lost connection is tried again by default.
pub const DEFAULT_RECONNECT: Duration = Duration::from_secs(30);

fn reconnect_window() -> Result<Duration> {
    match std::env::var(crate::envvars::STORE_RECONNECT)
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        None => Ok(DEFAULT_RECONNECT),
        Some(text) => crate::duration::parse(&text).map_err(|e| {
            Error::config(format!("{}: {e}", crate::envvars::STORE_RECONNECT))
                .hint(crate::duration::DurationError::hint())
        }),
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .field("project", &self.project)
            .finish_non_exhaustive()
    }
}

/// What `dsm store status` shows of a PostgreSQL store.
#[derive(Debug, Clone, Serialize)]
pub struct PgStatus {
    /// Schema version of the database.
    pub version: i64,
    /// The version this dsm writes.
    pub latest_version: i64,
    /// Every project with rows in the schema.
    pub projects: Vec<String>,
}

impl PgStore {
    /// Connects to `target` for `project_id` and checks (or, on first use, creates) the schema.
    pub fn open(target: &PgTarget, project_id: &str, upgrade: Upgrade) -> Result<PgStore> {
        let lease = LeaseTimes::from_env()?;
        let reconnect = reconnect_window()?;
        let mut client = target.connect()?;
        let schema = format!("\"{}\"", target.schema);
        migrate(&mut client, &schema, target, upgrade)?;
        Ok(PgStore {
            client: Mutex::new(Some(client)),
            target: target.clone(),
            schema,
            project: project_id.to_owned(),
            lease,
            reconnect,
        })
    }

    /// Replaces the lease timings (tests).
    #[must_use]
    pub fn with_lease(mut self, lease: LeaseTimes) -> Self {
        self.lease = lease;
        self
    }

    /// Replaces the reconnect window (tests; `DSM_STORE_RECONNECT` sets it otherwise).
    #[must_use]
    pub fn with_reconnect(mut self, window: Duration) -> Self {
        self.reconnect = window;
        self
    }

    /// The lease timings in use.
    pub fn lease(&self) -> LeaseTimes {
        self.lease
    }

    /// The project whose rows this handle reads and writes.
    pub fn project_id(&self) -> &str {
        &self.project
    }

    /// The schema version and the projects in the schema.
    pub fn status(&self) -> Result<PgStatus> {
        self.read(|c| {
            let version: i64 = c
                .query_one(
                    &self.q("SELECT COALESCE(MAX(version), 0) FROM {S}.dsm_schema_migrations"),
                    &[],
                )?
                .get(0);
            let rows = c.query(
                &self.q(
                    "SELECT project_id FROM {S}.state UNION SELECT project_id FROM {S}.runs
                     UNION SELECT project_id FROM {S}.flow_locks
                     UNION SELECT project_id FROM {S}.settings
                     UNION SELECT project_id FROM {S}.secrets
                     UNION SELECT project_id FROM {S}.audit_log ORDER BY 1",
                ),
                &[],
            )?;
            Ok(PgStatus {
                version,
                latest_version: latest_version(),
                projects: rows.iter().map(|r| r.get(0)).collect(),
            })
        })
    }

    /// `sql` with `{S}` replaced by the quoted schema.
    fn q(&self, sql: &str) -> String {
        sql.replace("{S}", &self.schema)
    }

    /// The connection, reconnecting when the last one was lost: for up to the reconnect
    /// window (`DSM_STORE_RECONNECT`), every quarter second (a server restarting, a network
    /// cut), then the last error, naming the setting.
    fn client(&self) -> Result<MutexGuard<'_, Option<Client>>> {
        let mut guard = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = None;
            let started = std::time::Instant::now();
            loop {
                match self.target.connect() {
                    Ok(client) => {
                        *guard = Some(client);
                        break;
                    }
                    Err(e) if started.elapsed() < self.reconnect => {
                        tracing::debug!(error = %e.message(), "reconnecting to the store");
                        std::thread::sleep(Duration::from_millis(250));
                    }
                    Err(e) => {
                        return Err(e.hint(format!(
                            "the connection was lost and did not come back within {:?} ({} sets how long to try)",
                            self.reconnect,
                            crate::envvars::STORE_RECONNECT
                        )));
                    }
                }
            }
        }
        Ok(guard)
    }

    /// Runs `f` with the connection; when it fails because the connection was lost, runs it
    /// again on a new one (within the reconnect window), unless `f` marked the failure final
    /// (a commit whose outcome is unknown is never sent twice).
    fn retrying<T>(&self, f: impl Fn(&mut Client, &AtomicBool) -> Result<T>) -> Result<T> {
        let started = std::time::Instant::now();
        loop {
            let mut guard = self.client()?;
            let client = guard
                .as_mut()
                .ok_or_else(|| Error::failed("the PostgreSQL store has no connection"))?;
            let final_ = AtomicBool::new(false);
            match f(client, &final_) {
                Err(e)
                    if client.is_closed()
                        && !final_.load(Ordering::SeqCst)
                        && started.elapsed() < self.reconnect =>
                {
                    tracing::debug!(error = %e.message(), "the store's connection was lost; trying again");
                    drop(guard);
                    std::thread::sleep(Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    /// Runs `f` with the connection. The client blocks on an async runtime of its own, which
    /// cannot start on a thread that drives another one (a run's pipeline commits its states
    /// from one): there `f` runs on a short-lived thread of its own.
    ///
    /// Every call is a transaction, reads too: a transaction-pooling pooler hands a client a
    /// server connection per transaction, so the client's prepared statements must be made,
    /// used and closed inside one (outside, a statement left on a shared server connection
    /// clashes with another client's of the same name).
    fn read<T: Send>(
        &self,
        f: impl Fn(&mut Transaction<'_>) -> Result<T> + Send + Sync,
    ) -> Result<T> {
        self.write(f)
    }

    /// Runs `f` in one transaction, committed when it returns `Ok`.
    fn write<T: Send>(
        &self,
        f: impl Fn(&mut Transaction<'_>) -> Result<T> + Send + Sync,
    ) -> Result<T> {
        off_runtime(|| {
            self.retrying(|c, final_| {
                let mut tx = c.transaction()?;
                let out = f(&mut tx)?;
                tx.commit()
                    .inspect_err(|_| final_.store(true, Ordering::SeqCst))?;
                Ok(out)
            })
        })
    }

    /// Runs `f`, one statement outside any transaction block (its own transaction on the
    /// server: one round trip, where [`PgStore::write`] takes three). `f` must be safe to send
    /// twice: when the connection drops before the answer comes, nobody knows whether it
    /// landed, and it is sent again on a new connection.
    fn call<T: Send>(&self, f: impl Fn(&mut Client) -> Result<T> + Send + Sync) -> Result<T> {
        off_runtime(|| self.retrying(|c, _| f(c)))
    }

    /// Runs one transaction in three steps: `first` reads, `middle` (a caller's callback, which
    /// need not be `Send`) computes on the calling thread, `last` writes; committed when all
    /// three return `Ok`. Where the connection must be used from a thread of its own (see
    /// [`PgStore::read`]) the steps hand their values over channels, and `middle` still runs
    /// on the caller's thread.
    fn write_split<I: Send, O: Send, T: Send>(
        &self,
        first: impl FnOnce(&mut Transaction<'_>) -> Result<I> + Send,
        middle: impl FnOnce(I) -> Result<O>,
        last: impl FnOnce(&mut Transaction<'_>, O) -> Result<T> + Send,
    ) -> Result<T> {
        let db =
            |client: &mut Client, hand_over: &mut dyn FnMut(I) -> Option<O>| -> Result<Option<T>> {
                let mut tx = client.transaction()?;
                let i = first(&mut tx)?;
                let Some(o) = hand_over(i) else {
                    return Ok(None);
                };
                let out = last(&mut tx, o)?;
                tx.commit()?;
                Ok(Some(out))
            };
        let connection = || -> Result<MutexGuard<'_, Option<Client>>> { self.client() };
        if tokio::runtime::Handle::try_current().is_err() {
            let mut guard = connection()?;
            let client = guard
                .as_mut()
                .ok_or_else(|| Error::failed("the PostgreSQL store has no connection"))?;
            let mut middle = Some(middle);
            let mut failure = None;
            let out = db(client, &mut |i| match middle.take().map(|m| m(i)) {
                Some(Ok(o)) => Some(o),
                Some(Err(e)) => {
                    failure = Some(e);
                    None
                }
                None => None,
            })?;
            return match (out, failure) {
                (Some(t), _) => Ok(t),
                (None, Some(e)) => Err(e),
                (None, None) => Err(Error::failed("a store transaction was abandoned")),
            };
        }
        std::thread::scope(|scope| {
            let (to_caller, from_db) = std::sync::mpsc::channel::<I>();
            let (to_db, from_caller) = std::sync::mpsc::channel::<Option<O>>();
            let worker = scope.spawn(move || -> Result<Option<T>> {
                let mut guard = connection()?;
                let client = guard
                    .as_mut()
                    .ok_or_else(|| Error::failed("the PostgreSQL store has no connection"))?;
                db(client, &mut |i| {
                    to_caller.send(i).ok()?;
                    from_caller.recv().ok().flatten()
                })
            });
            let mut failure = None;
            if let Ok(i) = from_db.recv() {
                match middle(i) {
                    Ok(o) => drop(to_db.send(Some(o))),
                    Err(e) => {
                        failure = Some(e);
                        drop(to_db.send(None));
                    }
                }
            }
            drop(to_db);
            let out = worker.join().unwrap_or_else(|_| {
                Err(Error::failed(
                    "a call to the PostgreSQL store panicked (see the log above)",
                ))
            })?;
            match (out, failure) {
                (Some(t), _) => Ok(t),
                (None, Some(e)) => Err(e),
                (None, None) => Err(Error::failed("a store transaction was abandoned")),
            }
        })
    }

    /// The lease expiry in milliseconds, as a query parameter.
    fn expiry_ms(&self) -> f64 {
        self.lease.expiry.as_secs_f64() * 1000.0
    }
}

/// Runs `f`, on a short-lived thread of its own when called from a thread that drives an
/// async runtime: the client blocks on a runtime of its own, which cannot start there (a run's
/// pipeline commits its states from one).
fn off_runtime<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|scope| {
        scope.spawn(f).join().unwrap_or_else(|_| {
            Err(Error::failed(
                "a call to the PostgreSQL store panicked (see the log above)",
            ))
        })
    })
}

/// A PostgreSQL failure the store did not explain better: a failed run (exit 1).
impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        Error::failed(format!(
            "PostgreSQL store error: {}",
            connect::error_text(&e)
        ))
        .with_source(e)
    }
}

fn schema_version(c: &mut impl GenericClient, schema: &str) -> Result<i64> {
    let exists: bool = c
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&format!("{schema}.dsm_schema_migrations")],
        )?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(c.query_one(
        &format!("SELECT COALESCE(MAX(version), 0) FROM {schema}.dsm_schema_migrations"),
        &[],
    )?
    .get(0))
}

fn migrate(client: &mut Client, schema: &str, target: &PgTarget, upgrade: Upgrade) -> Result<()> {
    let latest = latest_version();
    let check = |version: i64| -> Result<()> {
        if version > latest {
            return Err(Error::config(format!(
                "the PostgreSQL store {} has schema version {version}, newer than this dsm understands ({latest})",
                target.display
            ))
            .hint("upgrade dsm on this host to the version the other hosts run"));
        }
        if version > 0 && version < latest && upgrade == Upgrade::FirstUseOnly {
            return Err(Error::config(format!(
                "the PostgreSQL store {} has schema version {version}; this dsm needs {latest}",
                target.display
            ))
            .hint("run `dsm store migrate` once (other hosts keep working until then), then run this again"));
        }
        Ok(())
    };
    let version = {
        let mut tx = client.transaction()?;
        let version = schema_version(&mut tx, schema)?;
        tx.commit()?;
        version
    };
    check(version)?;
    if version == latest {
        return Ok(());
    }
    let mut tx = client.transaction()?;
    // Two hosts migrating at once take turns (a transaction-level lock: fine for poolers).
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&format!("dsm schema {schema}")],
    )?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.dsm_schema_migrations (
             version    BIGINT PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )"
    ))?;
    let version = schema_version(&mut tx, schema)?;
    check(version)?;
    for (number, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > version) {
        tx.batch_execute(&sql.replace("{S}", schema)).map_err(|e| {
            Error::failed(format!(
                "migration {number} ({name}) of the PostgreSQL store failed: {}",
                connect::error_text(&e)
            ))
        })?;
        tx.execute(
            &format!("INSERT INTO {schema}.dsm_schema_migrations (version, name) VALUES ($1, $2)"),
            &[number, name],
        )?;
        tracing::debug!(version = number, name, "applied migration");
    }
    tx.commit()?;
    Ok(())
}

/// The schema version of the store at `target` (0: empty), read without migrating it.
pub fn current_version(target: &PgTarget) -> Result<i64> {
    let mut client = target.connect()?;
    let mut tx = client.transaction()?;
    let version = schema_version(&mut tx, &format!("\"{}\"", target.schema))?;
    tx.commit()?;
    Ok(version)
}

/// A time read back as milliseconds since the epoch.
fn time_ms(ms: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| {
        Error::failed(format!(
            "the PostgreSQL store holds an invalid time ({ms} ms)"
        ))
    })
}

fn parse_json(text: &str, what: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| {
        Error::failed(format!(
            "the PostgreSQL store holds invalid JSON in {what}: {e}"
        ))
    })
}

impl Store for PgStore {
    fn location(&self) -> String {
        self.target.display.clone()
    }

    fn snapshot_sqlite(&self, path: &Path) -> Result<()> {
        super::copy::snapshot_to_sqlite(self, path)
    }

    fn heartbeat_interval(&self) -> Duration {
        self.lease.heartbeat
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn both_backends_are_at_the_same_schema_version() {
        // A migration added to one backend needs its twin in the other (an SQLite-only
        // feature's twin may be empty, but it takes the number).
        assert_eq!(
            super::latest_version(),
            crate::store::sqlite::latest_version()
        );
    }
}

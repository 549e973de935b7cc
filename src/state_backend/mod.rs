//! Meltano's filesystem state backends (`state_backend.uri` of `file://…` or `s3://…`): state
//! read and written in Meltano's own layout and locking, so Meltano and dsm can take turns on one
//! project's state.
//!
//! Layout (Meltano 4's `BaseFilesystemStateStoreManager`): under the backend's base directory
//! or key prefix, `<state_id>/state.json` holds `{"completed": {...}, "partial": {...}}`, and
//! `<state_id>/lock` holds the time the lock was taken, in seconds since the epoch as text
//! (Python's `str(datetime.now(timezone.utc).timestamp())`). A lock older than
//! `state_backend.lock_timeout_seconds` (default 10) is stale: Meltano deletes it and takes the
//! lock. dsm creates the lock with a conditional write (an exclusive link on files,
//! `If-None-Match: *` on S3), so two dsm processes can never both hold it; Meltano writes its
//! lock without a condition, so against Meltano the lock is as good as Meltano's own.
//!
//! When a backend is set, [`BackedStore`] sends every state call there; run history, run locks
//! and everything else stay in dsm's store.

pub mod file;
pub mod s3;
pub mod sigv4;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::classification::StreamLabel;
use crate::error::{Error, Result};
use crate::project::Project;
use crate::store::audit::{AuditAppend, AuditChain};
use crate::store::config_history::ConfigRestore;
use crate::store::secrets::{KeyCheck, Rotation, RotationInput};
use crate::store::state::{apply_write, payload_from_state_value};
use crate::store::tokens::{NewToken, TokenRecord, TokenStore};
use crate::store::webhooks::{
    NewWebhookEvent, Received, WebhookCounts, WebhookEvent, WebhookLimits, WebhookStore,
};
use crate::store::{
    self, CommitOutcome, FlowLock, ImportReport, LockHolder, NewRun, PrunedTotal, RunArtifact,
    RunFilter, RunFinish, RunId, RunRecord, SourceStatusChange, StateAction, StateEvent, StateId,
    Store, StoredState, StreamStats,
};
use crate::store::{
    AuditRow, AuditStore, ChainLink, ConfigHistoryStore, ConfigVersionRow, RunHistory, RunLocks,
    SealedSecret, SecretInfo, SecretStore, SettingsStore, SourceStatusStore, StateStore,
};

/// The file holding a state id's state, as Meltano names it.
pub const STATE_FILE: &str = "state.json";
/// The file holding a state id's lock, as Meltano names it.
pub const LOCK_FILE: &str = "lock";

use crate::envvars::{
    MELTANO_STATE_BACKEND_LOCK_RETRY as ENV_LOCK_RETRY,
    MELTANO_STATE_BACKEND_LOCK_TIMEOUT as ENV_LOCK_TIMEOUT,
    MELTANO_STATE_BACKEND_S3_ENDPOINT as ENV_S3_ENDPOINT,
    MELTANO_STATE_BACKEND_S3_KEY_ID as ENV_S3_KEY_ID,
    MELTANO_STATE_BACKEND_S3_SECRET as ENV_S3_SECRET, MELTANO_STATE_BACKEND_URI as ENV_URI,
};

/// The name under which `dsm secrets set` keeps the backend's sensitive settings
/// (`dsm secrets set meltano state_backend.s3.aws_secret_access_key`).
pub const SECRET_NAMESPACE: &str = "meltano";

/// A write's condition, where the backend can enforce one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Write whatever is there.
    None,
    /// Only create: fail when the object exists (`If-None-Match: *`).
    IfAbsent,
    /// Only replace the version read before (`If-Match: <etag>`).
    IfMatch(String),
}

/// An object read from a backend, with the version a conditional write can name.
#[derive(Debug, Clone)]
pub struct Object {
    /// The bytes.
    pub body: Vec<u8>,
    /// The version (S3's ETag, a content hash for files).
    pub version: String,
}

/// The few object operations Meltano's layout needs. Keys are `/`-separated and relative to
/// the backend's base directory or prefix.
pub trait Objects: Send + Sync + std::fmt::Debug {
    /// The backend as the user wrote it, without credentials (for messages).
    fn describe(&self) -> String;
    /// The object at `key`, or `None`.
    fn get(&self, key: &str) -> Result<Option<Object>>;
    /// Writes `body` at `key` if `condition` holds; returns `false` when it did not.
    fn put(&self, key: &str, body: &[u8], condition: &Condition) -> Result<bool>;
    /// Deletes `key` (nothing when it is absent).
    fn delete(&self, key: &str) -> Result<()>;
    /// Every key under the base.
    fn list(&self) -> Result<Vec<String>>;
    /// Removes what is left of a state id's folder once its files are gone (files only).
    fn tidy(&self, _state_id: &str) {}
}

/// The resolved `state_backend.*` settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `state_backend.uri`.
    pub uri: String,
    /// Where the URI came from, for messages.
    pub origin: &'static str,
    /// `state_backend.lock_timeout_seconds` (Meltano's default 10).
    pub lock_timeout: Duration,
    /// `state_backend.lock_retry_seconds` (Meltano's default 1).
    pub lock_retry: Duration,
    /// `state_backend.s3.endpoint_url`.
    pub s3_endpoint: Option<String>,
    /// `state_backend.s3.aws_access_key_id`.
    pub s3_key_id: Option<String>,
    /// `state_backend.s3.aws_secret_access_key`.
    pub s3_secret: Option<crate::secrets::Secret>,
}

/// Meltano's layout and locking over a backend's objects.
#[derive(Debug)]
pub struct StateBackend {
    objects: Box<dyn Objects>,
    lock_timeout: Duration,
    lock_retry: Duration,
}

/// A `state_backend` setting and where it was found: the variable `env` in the environment,
/// then in `.env`, then the key `path` under `state_backend:` in meltano.yml.
fn setting(
    project: &Project,
    dotenv: &[(String, String)],
    env: &str,
    path: &[&str],
) -> Option<(String, &'static str)> {
    if let Some(v) = std::env::var(env).ok().filter(|v| !v.trim().is_empty()) {
        return Some((v, "in the environment"));
    }
    if let Some((_, v)) = dotenv
        .iter()
        .find(|(k, v)| k == env && !v.trim().is_empty())
    {
        return Some((v.clone(), "in .env"));
    }
    let block = project.file().state_backend.as_ref()?;
    // Nested (`s3: {endpoint_url: …}`) or dotted (`s3.endpoint_url: …`) keys, as Meltano reads both.
    let (first, rest) = path.split_first()?;
    let nested = rest
        .iter()
        .fold(block.get(*first), |at, key| at.and_then(|v| v.get(*key)));
    let value = nested.or_else(|| block.get(&path.join(".")))?;
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Null => return None,
        other => other.to_string(),
    };
    Some((text, "in meltano.yml"))
}

fn seconds(value: Option<(String, &'static str)>, name: &str, default: u64) -> Result<Duration> {
    let Some((text, place)) = value else {
        return crate::duration::seconds(default)
            .map_err(|e| Error::config(format!("internal: {e}")));
    };
    let n: f64 = text.trim().parse().map_err(|_| {
        Error::config(format!(
            "`state_backend.{name}` {place} is `{text}`, not a number of seconds"
        ))
        .hint(format!(
            "write a whole number, e.g. `state_backend.{name}: {default}`"
        ))
    })?;
    crate::duration::seconds_f64(n).map_err(|e| {
        Error::config(format!(
            "`state_backend.{name}` {place} is out of range: {e}"
        ))
        .hint(format!(
            "write a whole number, e.g. `state_backend.{name}: {default}`"
        ))
    })
}

impl Settings {
    /// The project's state backend settings, or `None` when state stays in the system database
    /// (`systemdb`, Meltano's default). Read in Meltano's order: the environment, `.env`, then
    /// `meltano.yml`. Sensitive S3 values may also come from dsm's secret store (`db_path`).
    pub fn for_project(
        project: &Project,
        db_path: Option<&std::path::Path>,
    ) -> Result<Option<Settings>> {
        let dotenv = project.dotenv().unwrap_or_default();
        let get = |env: &str, path: &[&str]| setting(project, &dotenv, env, path);
        let Some((uri, origin)) = get(ENV_URI, &["uri"]) else {
            return Ok(None);
        };
        let uri = uri.trim().to_owned();
        if uri == "systemdb" {
            return Ok(None);
        }
        let mut s3_secret = get(ENV_S3_SECRET, &["s3", "aws_secret_access_key"])
            .map(|(v, _)| crate::secrets::Secret::new(v));
        let mut s3_key_id = get(ENV_S3_KEY_ID, &["s3", "aws_access_key_id"]).map(|(v, _)| v);
        if uri.starts_with("s3://")
            && (s3_secret.is_none() || s3_key_id.is_none())
            && let Some(db) = db_path
        {
            s3_key_id = s3_key_id.or(stored_secret(db, "state_backend.s3.aws_access_key_id")?);
            if s3_secret.is_none() {
                s3_secret = stored_secret(db, "state_backend.s3.aws_secret_access_key")?
                    .map(crate::secrets::Secret::new);
            }
        }
        Ok(Some(Settings {
            origin,
            lock_timeout: seconds(
                get(ENV_LOCK_TIMEOUT, &["lock_timeout_seconds"]),
                "lock_timeout_seconds",
                10,
            )?,
            lock_retry: seconds(
                get(ENV_LOCK_RETRY, &["lock_retry_seconds"]),
                "lock_retry_seconds",
                1,
            )?,
            s3_endpoint: get(ENV_S3_ENDPOINT, &["s3", "endpoint_url"]).map(|(v, _)| v),
            s3_key_id,
            s3_secret,
            uri,
        }))
    }

    /// The backend these settings name. `gs://` and `azure://` are refused (exit 2).
    pub fn open(&self) -> Result<StateBackend> {
        let scheme = self.uri.split_once("://").map(|(s, _)| s).unwrap_or("");
        let objects: Box<dyn Objects> = match scheme {
            "file" => Box::new(file::FileObjects::new(&self.uri)?),
            "s3" => Box::new(s3::S3Objects::new(self)?),
            "gs" | "azure" => {
                return Err(Error::config(format!(
                    "the `{scheme}://` state backend (`state_backend.uri` {}) is not supported by dsm",
                    self.origin
                ))
                .detail("dsm reads and writes Meltano's `file://` and `s3://` state backends; `gs://` (Google Cloud Storage) and `azure://` (Azure Blob Storage) are not")
                .hint("export the state with `meltano state export > state.json` and keep it in dsm (`dsm state import state.json`), or move it to an `s3://` or `file://` backend"));
            }
            _ => {
                return Err(Error::config(format!(
                    "`state_backend.uri` {} has an unknown scheme: `{}`",
                    self.origin,
                    redact_uri(&self.uri)
                ))
                .hint("write `systemdb`, `file:///absolute/path` or `s3://bucket/prefix`"));
            }
        };
        Ok(StateBackend {
            objects,
            lock_timeout: self.lock_timeout,
            lock_retry: self.lock_retry,
        })
    }
}

/// A URI with any `user:password@` taken out, for messages.
pub fn redact_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_owned();
    };
    let authority = rest.split('/').next().unwrap_or("");
    match authority.rsplit_once('@') {
        Some((_, host)) => {
            let path = &rest[authority.len()..];
            format!("{scheme}://********@{host}{path}")
        }
        None => uri.to_owned(),
    }
}

/// A value kept with `dsm secrets set meltano NAME`, read only when it exists (so a project
/// without stored backend secrets needs no master key).
fn stored_secret(db: &std::path::Path, name: &str) -> Result<Option<String>> {
    use crate::secrets::layer::{Reveal, StoreLayer};
    use crate::settings::SystemStore;
    let layer = StoreLayer::open(db, Reveal::ForRun("state backend".into()))?;
    if !layer
        .secret_names(SECRET_NAMESPACE)?
        .iter()
        .any(|n| n == name)
    {
        return Ok(None);
    }
    layer.secret_value(SECRET_NAMESPACE, name)
}

/// Whether a `state_backend.uri` names a backend dsm reads and writes (`file://`, `s3://`).
pub fn is_supported(uri: &str) -> bool {
    let uri = uri.trim();
    uri.starts_with("file://") || uri.starts_with("s3://")
}

/// Whether the project's state lives in a `file://` or `s3://` backend (then the backend is the
/// one place for it, and an empty state there is simply a first run).
pub fn holds_state(project: &Project) -> bool {
    let dotenv = project.dotenv().unwrap_or_default();
    setting(project, &dotenv, ENV_URI, &["uri"]).is_some_and(|(uri, _)| is_supported(&uri))
}

/// Wraps `store` so its state lives in the project's state backend, when one is set.
/// `gs://`, `azure://` and unknown schemes are refused (exit 2). `db_path` is dsm's database,
/// where `dsm secrets set meltano state_backend.s3.…` keeps the backend's secrets.
pub fn attach(
    store: Arc<dyn Store>,
    project: &Project,
    db_path: Option<&std::path::Path>,
) -> Result<Arc<dyn Store>> {
    match Settings::for_project(project, db_path)? {
        None => Ok(store),
        Some(settings) => Ok(Arc::new(BackedStore {
            inner: store,
            backend: settings.open()?,
        })),
    }
}

/// [`store::open_for_project`] with the project's state backend attached: what a flow and the
/// `dsm state` commands open.
pub fn open_for_project(uri_flag: Option<&str>, project: &Project) -> Result<Arc<dyn Store>> {
    let location = store::locate(uri_flag, project.root())?;
    let store = store::open_location(&location, project.root())?;
    match &location {
        store::Location::Sqlite(db) => attach(store, project, Some(db)),
        store::Location::Postgres(_) => attach(store, project, None),
    }
}

fn check_state_id(id: &StateId) -> Result<()> {
    let s = id.as_str();
    if s.is_empty()
        || s == "."
        || s == ".."
        || s.contains('/')
        || s.contains('\\')
        || s.contains('\0')
    {
        return Err(Error::config(format!(
            "state id `{s}` cannot be a folder name in the state backend"
        ))
        .hint(
            "a state id in a `file://` or `s3://` backend has no `/`, `\\` and is not `.` or `..`",
        ));
    }
    Ok(())
}

fn key(id: &StateId, file: &str) -> String {
    format!("{}/{file}", id.as_str())
}

/// Python's `str(float)` of a timestamp, as Meltano writes it into a lock.
fn lock_text(now: DateTime<Utc>) -> String {
    format!("{}.{:06}", now.timestamp(), now.timestamp_subsec_micros())
}

/// A held lock; released (deleted) on drop.
struct LockGuard<'a> {
    backend: &'a StateBackend,
    key: String,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.backend.objects.delete(&self.key) {
            tracing::warn!(error = %e, key = %self.key, "could not release a state backend lock");
        }
    }
}

impl StateBackend {
    /// A backend over `objects` with Meltano's lock timings.
    pub fn new(
        objects: Box<dyn Objects>,
        lock_timeout: Duration,
        lock_retry: Duration,
    ) -> StateBackend {
        StateBackend {
            objects,
            lock_timeout,
            lock_retry,
        }
    }

    /// Takes `<state_id>/lock`: waits while a live lock is there, takes over a stale one (older
    /// than `lock_timeout_seconds`, Meltano's rule), and fails once it has waited
    /// `lock_timeout_seconds` for locks that stay live.
    fn lock(&self, id: &StateId) -> Result<LockGuard<'_>> {
        check_state_id(id)?;
        let key = key(id, LOCK_FILE);
        let started = Instant::now();
        let mut waited = false;
        loop {
            let now = Utc::now();
            if self
                .objects
                .put(&key, lock_text(now).as_bytes(), &Condition::IfAbsent)?
            {
                if waited {
                    tracing::info!(state_id = %id, waited_ms = started.elapsed().as_millis() as u64, "took the state backend lock after waiting");
                }
                return Ok(LockGuard { backend: self, key });
            }
            // `None`: released in between; look again (within the same deadline).
            let age = match self.objects.get(&key)? {
                None => None,
                Some(held) => {
                    let text = String::from_utf8_lossy(&held.body).trim().to_owned();
                    let Some(taken) = text.parse::<f64>().ok().filter(|t| t.is_finite()) else {
                        return Err(Error::failed(format!(
                            "the lock `{key}` in state backend `{}` does not hold a time (it holds `{}`)",
                            self.objects.describe(),
                            text.chars().take(40).collect::<String>()
                        ))
                        .hint("Meltano and dsm write the lock time in seconds since 1970; delete the lock if nothing is writing this state"));
                    };
                    let age = now.timestamp_micros() as f64 / 1e6 - taken;
                    if age > self.lock_timeout.as_secs_f64() {
                        tracing::warn!(state_id = %id, age_s = age, "taking over a stale state backend lock");
                        self.objects.delete(&key)?;
                        continue;
                    }
                    Some(age)
                }
            };
            if started.elapsed() >= self.lock_timeout {
                let age = age.unwrap_or_default().max(0.0);
                return Err(Error::failed(format!(
                    "the state of `{id}` stayed locked in state backend `{}` for {:.0}s (`state_backend.lock_timeout_seconds`)",
                    self.objects.describe(),
                    self.lock_timeout.as_secs_f64()
                ))
                .detail(format!("the lock `{key}` was last taken {age:.1}s ago by another Meltano or dsm process"))
                .hint("wait for the other run's state write to finish and try again; a lock older than the timeout is taken over"));
            }
            waited = true;
            std::thread::sleep(
                self.lock_retry
                    .min(self.lock_timeout.saturating_sub(started.elapsed()))
                    .max(Duration::from_millis(10)),
            );
        }
    }

    /// The state of `id` with the version to name when replacing it.
    fn read(&self, id: &StateId) -> Result<Option<(StoredState, String)>> {
        check_state_id(id)?;
        let k = key(id, STATE_FILE);
        let Some(obj) = self.objects.get(&k)? else {
            return Ok(None);
        };
        let bad = |why: String| {
            Error::failed(format!(
                "`{k}` in state backend `{}` is not Meltano state: {why}",
                self.objects.describe()
            ))
            .hint("it should hold `{\"completed\": {...}, \"partial\": {...}}`; fix or delete it")
        };
        let doc: Value = serde_json::from_slice(&obj.body).map_err(|e| bad(e.to_string()))?;
        let Value::Object(doc) = doc else {
            return Err(bad("not a JSON object".into()));
        };
        let half = |name: &str| match doc.get(name) {
            None | Some(Value::Null) => Ok(Value::Object(Map::new())),
            Some(v @ Value::Object(_)) => Ok(v.clone()),
            Some(_) => Err(bad(format!("`{name}` is not an object"))),
        };
        Ok(Some((
            StoredState {
                state_id: id.clone(),
                completed: half("completed")?,
                partial: half("partial")?,
                updated_at: None,
            },
            obj.version,
        )))
    }

    /// Writes both halves, only over the version read (`None`: only when absent). Returns
    /// `false` when someone else wrote in between.
    fn write(
        &self,
        id: &StateId,
        completed: &Value,
        partial: &Value,
        read: Option<&str>,
    ) -> Result<bool> {
        let mut doc = Map::new();
        doc.insert("completed".into(), completed.clone());
        doc.insert("partial".into(), partial.clone());
        let body = serde_json::to_vec(&Value::Object(doc)).expect("a JSON value serialises");
        let condition = match read {
            Some(v) => Condition::IfMatch(v.to_owned()),
            None => Condition::IfAbsent,
        };
        self.objects.put(&key(id, STATE_FILE), &body, &condition)
    }

    /// Under the lock: reads the state, computes the new halves with `change`, writes them with
    /// a conditional write, and reads again if the write lost a race (a few times).
    fn update<T>(
        &self,
        id: &StateId,
        mut change: impl FnMut(Option<&StoredState>) -> Result<(Option<(Value, Value)>, T)>,
    ) -> Result<T> {
        let _lock = self.lock(id)?;
        for _ in 0..5 {
            let current = self.read(id)?;
            let (new, out) = change(current.as_ref().map(|(s, _)| s))?;
            let Some((completed, partial)) = new else {
                return Ok(out);
            };
            if self.write(
                id,
                &completed,
                &partial,
                current.as_ref().map(|(_, v)| v.as_str()),
            )? {
                return Ok(out);
            }
            tracing::warn!(state_id = %id, "the state changed while it was being written; reading it again");
        }
        Err(Error::failed(format!(
            "the state of `{id}` in state backend `{}` kept changing while dsm wrote it",
            self.objects.describe()
        ))
        .hint(
            "another process is writing this state without taking its lock; stop it and try again",
        ))
    }

    /// The state of `id`, if any.
    pub fn get(&self, id: &StateId) -> Result<Option<StoredState>> {
        Ok(self.read(id)?.map(|(s, _)| s))
    }

    /// The state ids with a `state.json`, matching `pattern` (`*` for any run of characters).
    pub fn ids(&self, pattern: Option<&str>) -> Result<Vec<StateId>> {
        let mut ids: Vec<String> = self
            .objects
            .list()?
            .into_iter()
            .filter_map(|k| {
                let (id, file) = k.split_once('/')?;
                (file == STATE_FILE && !id.is_empty()).then(|| id.to_owned())
            })
            .filter(|id| pattern.is_none_or(|p| store::sqlite::glob_match(p, id)))
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids.into_iter().map(StateId::new).collect())
    }

    /// Deletes the state of `id` under its lock; returns whether there was any.
    pub fn clear(&self, id: &StateId) -> Result<bool> {
        let existed = {
            let _lock = self.lock(id)?;
            let existed = self.objects.get(&key(id, STATE_FILE))?.is_some();
            self.objects.delete(&key(id, STATE_FILE))?;
            existed
        };
        self.objects.tidy(id.as_str());
        Ok(existed)
    }

    /// Replaces both halves of `id`.
    pub fn put(&self, id: &StateId, completed: &Value, partial: &Value) -> Result<()> {
        self.update(id, |_| Ok((Some((completed.clone(), partial.clone())), ())))
    }

    /// The backend as written in `state_backend.uri`, without credentials.
    pub fn describe(&self) -> String {
        self.objects.describe()
    }
}

/// dsm's store with the state in a Meltano state backend: state calls go to the backend, all
/// else (run history, run locks, settings, tokens) to the store.
#[derive(Debug)]
pub struct BackedStore {
    inner: Arc<dyn Store>,
    backend: StateBackend,
}

impl BackedStore {
    /// `inner` with its state in `backend`.
    pub fn new(inner: Arc<dyn Store>, backend: StateBackend) -> BackedStore {
        BackedStore { inner, backend }
    }
}

impl TokenStore for BackedStore {
    fn create_token(&self, token: &NewToken) -> Result<TokenRecord> {
        self.inner.create_token(token)
    }
    fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        self.inner.list_tokens()
    }
    fn revoke_token(&self, name: &str) -> Result<bool> {
        self.inner.revoke_token(name)
    }
    fn touch_token(&self, name: &str, at: DateTime<Utc>) -> Result<()> {
        self.inner.touch_token(name, at)
    }
}

impl WebhookStore for BackedStore {
    fn receive_webhook(&self, event: &NewWebhookEvent, limits: &WebhookLimits) -> Result<Received> {
        self.inner.receive_webhook(event, limits)
    }
    fn webhook_events(
        &self,
        source: &str,
        after_seq: i64,
        pending_only: bool,
        limit: usize,
    ) -> Result<Vec<WebhookEvent>> {
        self.inner
            .webhook_events(source, after_seq, pending_only, limit)
    }
    fn pending_webhooks(
        &self,
        source: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<WebhookEvent>> {
        self.inner.pending_webhooks(source, after_seq, limit)
    }
    fn webhook_event(&self, source: &str, id: i64) -> Result<Option<WebhookEvent>> {
        self.inner.webhook_event(source, id)
    }
    fn webhook_counts(&self, source: &str) -> Result<WebhookCounts> {
        self.inner.webhook_counts(source)
    }
    fn consume_webhooks(&self, source: &str, through_seq: i64, at: DateTime<Utc>) -> Result<u64> {
        self.inner.consume_webhooks(source, through_seq, at)
    }
    fn replay_webhooks(&self, source: &str, ids: Option<&[i64]>) -> Result<Vec<i64>> {
        self.inner.replay_webhooks(source, ids)
    }
    fn prune_webhooks(&self, source: &str, consumed_before: DateTime<Utc>) -> Result<u64> {
        self.inner.prune_webhooks(source, consumed_before)
    }
}

impl crate::store::NotificationStore for BackedStore {
    fn record_delivery(
        &self,
        attempt: &crate::store::DeliveryAttempt,
        retention: crate::store::DeliveryRetention,
    ) -> Result<()> {
        self.inner.record_delivery(attempt, retention)
    }
    fn deliveries_since(&self, since: DateTime<Utc>) -> Result<Vec<crate::store::DeliveryAttempt>> {
        self.inner.deliveries_since(since)
    }
}

impl crate::store::RequestStore for BackedStore {
    fn create_request(
        &self,
        request: &crate::store::NewRequest,
        secrets: &[crate::store::SealedSecret],
        entry: &AuditAppend<'_>,
    ) -> Result<()> {
        self.inner.create_request(request, secrets, entry)
    }
    fn request(&self, id: &str) -> Result<Option<crate::store::RequestRecord>> {
        self.inner.request(id)
    }
    fn list_requests(
        &self,
        filter: &crate::store::RequestFilter,
    ) -> Result<Vec<crate::store::RequestRecord>> {
        self.inner.list_requests(filter)
    }
    fn update_request(
        &self,
        update: &crate::store::RequestUpdate,
        entry: &AuditAppend<'_>,
    ) -> Result<bool> {
        self.inner.update_request(update, entry)
    }
    fn prune_requests(
        &self,
        before: &str,
        entry: &crate::store::requests::PruneAudit<'_>,
    ) -> Result<Vec<String>> {
        self.inner.prune_requests(before, entry)
    }
}

impl Store for BackedStore {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn snapshot_sqlite(&self, path: &std::path::Path) -> Result<()> {
        self.inner.snapshot_sqlite(path)
    }

    fn heartbeat_interval(&self) -> std::time::Duration {
        self.inner.heartbeat_interval()
    }
}

impl StateStore for BackedStore {
    fn get_state_row(&self, state_id: &StateId) -> Result<Option<StoredState>> {
        self.backend.get(state_id)
    }

    fn commit_state(
        &self,
        state_id: &StateId,
        value_json: &str,
        partial: bool,
        run_id: Option<&RunId>,
    ) -> Result<CommitOutcome> {
        let mut out = self.commit_states(state_id, &[value_json.to_owned()], partial, run_id)?;
        Ok(out.pop().unwrap_or(CommitOutcome::Committed))
    }

    fn commit_states(
        &self,
        state_id: &StateId,
        values_json: &[String],
        partial: bool,
        _run_id: Option<&RunId>,
    ) -> Result<Vec<CommitOutcome>> {
        self.backend.update(state_id, |current| {
            let mut halves = current.map(|s| (s.completed.clone(), s.partial.clone()));
            let mut outcomes = Vec::with_capacity(values_json.len());
            for text in values_json {
                match payload_from_state_value(text) {
                    Ok(payload) => {
                        halves = Some(apply_write(
                            halves.as_ref().map(|(c, p)| (c, p)),
                            &payload,
                            partial,
                        ));
                        outcomes.push(CommitOutcome::Committed);
                    }
                    Err(reason) => outcomes.push(CommitOutcome::Ignored(reason)),
                }
            }
            let changed = outcomes.contains(&CommitOutcome::Committed);
            Ok((halves.filter(|_| changed), outcomes))
        })
    }

    fn write_state(
        &self,
        state_id: &StateId,
        payload: &Value,
        partial: bool,
        _action: StateAction,
        _detail: Option<&str>,
    ) -> Result<()> {
        self.backend.update(state_id, |current| {
            let existing = current.map(|s| (&s.completed, &s.partial));
            Ok((Some(apply_write(existing, payload, partial)), ()))
        })
    }

    fn list_states(&self, pattern: Option<&str>) -> Result<Vec<StoredState>> {
        let mut rows = Vec::new();
        for id in self.backend.ids(pattern)? {
            if let Some(row) = self.backend.get(&id)? {
                rows.push(row);
            }
        }
        Ok(rows)
    }

    fn clear_state(&self, state_id: &StateId) -> Result<bool> {
        self.backend.clear(state_id)
    }

    fn clear_all_states(&self) -> Result<usize> {
        let mut n = 0;
        for id in self.backend.ids(None)? {
            if self.backend.clear(&id)? {
                n += 1;
            }
        }
        Ok(n)
    }

    fn copy_state(&self, src: &StateId, dst: &StateId, remove_source: bool) -> Result<()> {
        let merged = self.backend.get(src)?.map(|s| s.merged()).ok_or_else(|| {
            Error::config(format!("no state stored for `{src}`"))
                .hint("`dsm state list` shows the state ids that have state")
        })?;
        self.backend.update(dst, |current| {
            let existing = current.map(|s| (&s.completed, &s.partial));
            Ok((Some(apply_write(existing, &merged, false)), ()))
        })?;
        if remove_source && src != dst {
            self.backend.clear(src)?;
        }
        Ok(())
    }

    fn import_states(
        &self,
        rows: &[StoredState],
        overwrite: bool,
        _source: &str,
    ) -> Result<ImportReport> {
        let mut report = ImportReport::default();
        for row in rows {
            let wrote = self.backend.update(&row.state_id, |current| {
                if current.is_some() && !overwrite {
                    return Ok((None, false));
                }
                Ok((Some((row.completed.clone(), row.partial.clone())), true))
            })?;
            if wrote {
                report.imported.push(row.state_id.clone());
            } else {
                report.skipped.push(row.state_id.clone());
            }
        }
        Ok(report)
    }

    fn state_events(&self, state_id: Option<&StateId>, limit: usize) -> Result<Vec<StateEvent>> {
        self.inner.state_events(state_id, limit)
    }
}

impl RunLocks for BackedStore {
    fn acquire_lock(
        &self,
        state_id: &StateId,
        run_id: Option<&RunId>,
        force: bool,
    ) -> Result<FlowLock> {
        self.inner.acquire_lock(state_id, run_id, force)
    }
    fn heartbeat(&self, lock: &FlowLock) -> Result<bool> {
        self.inner.heartbeat(lock)
    }
    fn release_lock(&self, lock: &FlowLock) -> Result<()> {
        self.inner.release_lock(lock)
    }
    fn lock_holder(&self, state_id: &StateId) -> Result<Option<LockHolder>> {
        self.inner.lock_holder(state_id)
    }

    fn lock_holders(&self) -> Result<Vec<LockHolder>> {
        self.inner.lock_holders()
    }
}

impl RunHistory for BackedStore {
    fn begin_run(&self, run: &NewRun) -> Result<RunId> {
        self.inner.begin_run(run)
    }
    fn heartbeat_run(&self, run_id: &RunId) -> Result<()> {
        self.inner.heartbeat_run(run_id)
    }
    fn record_stream_stats(&self, run_id: &RunId, stats: &[StreamStats]) -> Result<()> {
        self.inner.record_stream_stats(run_id, stats)
    }
    fn record_run_counts(&self, run_id: &RunId, counts: &crate::store::RunCounts) -> Result<()> {
        self.inner.record_run_counts(run_id, counts)
    }
    fn finish_run(&self, run_id: &RunId, finish: &RunFinish) -> Result<()> {
        self.inner.finish_run(run_id, finish)
    }
    fn record_log_tail(&self, run_id: &RunId, tail: &str) -> Result<()> {
        self.inner.record_log_tail(run_id, tail)
    }
    fn run_log_tail(&self, run_id: &RunId) -> Result<Option<String>> {
        self.inner.run_log_tail(run_id)
    }
    fn record_run_artifacts(&self, run_id: &RunId, artifacts: &[RunArtifact]) -> Result<()> {
        self.inner.record_run_artifacts(run_id, artifacts)
    }
    fn run_artifacts(&self, run_id: &RunId) -> Result<Vec<RunArtifact>> {
        self.inner.run_artifacts(run_id)
    }
    fn record_stream_labels(&self, run_id: &RunId, labels: &[StreamLabel]) -> Result<()> {
        self.inner.record_stream_labels(run_id, labels)
    }
    fn stream_labels(&self, run_id: &RunId) -> Result<Vec<StreamLabel>> {
        self.inner.stream_labels(run_id)
    }
    fn get_run(&self, run_id: &RunId) -> Result<Option<RunRecord>> {
        self.inner.get_run(run_id)
    }
    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        self.inner.list_runs(filter)
    }
    fn record_run(&self, run: &RunRecord) -> Result<()> {
        self.inner.record_run(run)
    }
    fn list_runs_since(&self, since: DateTime<Utc>) -> Result<Vec<RunRecord>> {
        self.inner.list_runs_since(since)
    }
    fn delete_runs(&self, run_ids: &[RunId]) -> Result<usize> {
        self.inner.delete_runs(run_ids)
    }
    fn pruned_totals(&self) -> Result<Vec<PrunedTotal>> {
        self.inner.pruned_totals()
    }
    fn highest_stream_labels(&self) -> Result<Vec<StreamLabel>> {
        self.inner.highest_stream_labels()
    }
}

impl SourceStatusStore for BackedStore {
    fn record_source_status(&self, change: &SourceStatusChange) -> Result<()> {
        self.inner.record_source_status(change)
    }
    fn source_status_history(
        &self,
        source: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SourceStatusChange>> {
        self.inner.source_status_history(source, limit)
    }
}

impl SettingsStore for BackedStore {
    fn get_setting(&self, namespace: &str, name: &str) -> Result<Option<Value>> {
        self.inner.get_setting(namespace, name)
    }
    fn set_setting(&self, namespace: &str, name: &str, value: &Value) -> Result<()> {
        self.inner.set_setting(namespace, name, value)
    }
    fn unset_setting(&self, namespace: &str, name: &str) -> Result<bool> {
        self.inner.unset_setting(namespace, name)
    }
    fn list_settings(&self, namespace: &str) -> Result<Vec<(String, Value)>> {
        self.inner.list_settings(namespace)
    }
    fn raw_settings(&self, namespace: &str) -> Result<Vec<(String, String)>> {
        self.inner.raw_settings(namespace)
    }
    fn clear_settings(&self, namespace: &str) -> Result<usize> {
        self.inner.clear_settings(namespace)
    }
}

impl SecretStore for BackedStore {
    fn current_key(&self) -> Result<Option<KeyCheck>> {
        self.inner.current_key()
    }
    fn register_first_key(&self, check_value: &[u8]) -> Result<()> {
        self.inner.register_first_key(check_value)
    }
    fn key_owner(&self) -> Option<String> {
        self.inner.key_owner()
    }
    fn sealed_secret(
        &self,
        plugin: &str,
        setting: &str,
        scope: Option<&str>,
    ) -> Result<Option<SealedSecret>> {
        self.inner.sealed_secret(plugin, setting, scope)
    }
    fn sealed_secrets(&self, plugin: Option<&str>) -> Result<Vec<SealedSecret>> {
        self.inner.sealed_secrets(plugin)
    }
    fn secret_infos(&self) -> Result<Vec<SecretInfo>> {
        self.inner.secret_infos()
    }
    fn put_secret(
        &self,
        secret: &SealedSecret,
        updated_by: &str,
        entry: &AuditAppend<'_>,
    ) -> Result<()> {
        self.inner.put_secret(secret, updated_by, entry)
    }
    fn delete_secret(
        &self,
        plugin: &str,
        setting: &str,
        scope: Option<&str>,
        entry: &AuditAppend<'_>,
    ) -> Result<bool> {
        self.inner.delete_secret(plugin, setting, scope, entry)
    }
    fn rotate_secrets(
        &self,
        rotate: &mut dyn FnMut(RotationInput) -> Result<Rotation>,
    ) -> Result<usize> {
        self.inner.rotate_secrets(rotate)
    }
}

impl AuditStore for BackedStore {
    fn append_audit(&self, entry: &AuditAppend<'_>) -> Result<ChainLink> {
        self.inner.append_audit(entry)
    }
    fn audit_rows(&self, since: Option<&str>) -> Result<Vec<AuditRow>> {
        self.inner.audit_rows(since)
    }
    fn audit_chain(&self) -> Result<AuditChain> {
        self.inner.audit_chain()
    }
    fn prune_audit(
        &self,
        before: &str,
        anchor_mac: &dyn Fn(&ChainLink) -> Vec<u8>,
        entry: &dyn Fn(&ChainLink, &ChainLink) -> AuditRow,
    ) -> Result<usize> {
        self.inner.prune_audit(before, anchor_mac, entry)
    }
    fn record_audit_head(&self, head: &ChainLink) -> Result<()> {
        self.inner.record_audit_head(head)
    }
}

impl ConfigHistoryStore for BackedStore {
    fn latest_config_version(&self, plugin: &str) -> Result<Option<(i64, String)>> {
        self.inner.latest_config_version(plugin)
    }
    fn record_config_version(&self, row: &ConfigVersionRow) -> Result<i64> {
        self.inner.record_config_version(row)
    }
    fn config_versions(&self, plugin: &str) -> Result<Vec<ConfigVersionRow>> {
        self.inner.config_versions(plugin)
    }
    fn config_version(&self, plugin: &str, version: i64) -> Result<Option<ConfigVersionRow>> {
        self.inner.config_version(plugin, version)
    }
    fn restore_config(&self, restore: &ConfigRestore<'_>) -> Result<()> {
        self.inner.restore_config(restore)
    }
}

#[cfg(test)]
mod tests;

//! Notifications: telling people and systems that a source request was submitted, approved or
//! rejected, that a source's first sync finished, or that a source went into error.
//!
//! The project declares its receivers in `annotations.dsm.notifications`, each a `webhook`
//! (`{url, secret}`) or a `command` (argv) with the `events` it gets. [`emit`] is the one entry
//! point: it picks the receivers of the event and delivers to them on a thread of its own, so
//! a run or a request never waits for a receiver.
//!
//! - A webhook gets a JSON POST: a Slack-compatible `text`, the event's name and fields, signed
//!   the way dsm's incoming webhooks are ([`crate::webhooks::sign`]): `X-DSM-Timestamp` (unix
//!   seconds) and `X-DSM-Signature: sha256=<hex of HMAC-SHA256(secret, "<timestamp>.<body>")>`.
//!   The secret is written as a reference, `$NAME`: the secret store's `notifications` entry
//!   `NAME` (`dsm secrets set notifications NAME`), else the variable `NAME` of the environment
//!   or `.env`. Its value appears nowhere but in the signature.
//! - A command gets the same JSON on stdin, like a plugin: in the project folder, with an
//!   environment of `PATH`, `HOME`, `LANG`, `LC_ALL`, `TZ`, `TMPDIR` and `DSM_EVENT` only (no
//!   master key, token, store password or notification secret).
//!
//! A failed attempt (no 2xx answer, a connection error, a non-zero exit, no answer within
//! [`ATTEMPT_TIMEOUT`]) is tried again after [`FIRST_BACKOFF`], doubling, [`ATTEMPTS`] times in
//! all. Every attempt is recorded in the system store ([`crate::store::NotificationStore`]),
//! bounded by [`RETENTION`]; a delivery whose last attempt failed shows in `dsm health` and the
//! dashboard's overview ([`failed_deliveries`]).

mod deliver;

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::project::Project;
use crate::project::annotations::NotificationDecl;
use crate::store::{DeliveryAttempt, DeliveryOutcome, DeliveryRetention, Store};

/// Attempts per delivery.
pub const ATTEMPTS: u32 = 5;
/// The wait after the first failed attempt; each later wait doubles it.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// How long one attempt may take (a webhook's answer, a command's exit).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of the delivery log is kept.
pub const RETENTION: DeliveryRetention = DeliveryRetention {
    max_age: match chrono::TimeDelta::try_days(30) {
        Some(d) => d,
        None => panic!("30 days is a valid duration"),
    },
    max_attempts: 10_000,
};
/// How long a command waits at its end for its deliveries (every attempt and wait fits).
pub const DRAIN_LIMIT: Duration = Duration::from_secs(90);
/// The secret store's plugin name under which webhook secrets are kept.
pub const SECRET_NAMESPACE: &str = "notifications";

/// An event's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A source request was submitted (for approvers).
    RequestSubmitted,
    /// A request was approved.
    RequestApproved,
    /// A request was rejected (with the reason).
    RequestRejected,
    /// A source's first successful sync finished (with the record count).
    FirstSyncFinished,
    /// A source went into error: a run failed after a good one, or a connection test failed.
    SourceError,
}

impl EventKind {
    /// Every event, as declared in `events:`.
    pub const ALL: [EventKind; 5] = [
        EventKind::RequestSubmitted,
        EventKind::RequestApproved,
        EventKind::RequestRejected,
        EventKind::FirstSyncFinished,
        EventKind::SourceError,
    ];

    /// The name in `events:` and in the document.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RequestSubmitted => "request_submitted",
            EventKind::RequestApproved => "request_approved",
            EventKind::RequestRejected => "request_rejected",
            EventKind::FirstSyncFinished => "first_sync_finished",
            EventKind::SourceError => "source_error",
        }
    }

    /// Reads a name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// Something that happened, to tell the receivers of its kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// When.
    pub at: DateTime<Utc>,
    /// The source it is about, if any.
    pub source: Option<String>,
    /// The event's fields (`reason`, `records`, `error`, `request_id` ...).
    pub fields: Map<String, Value>,
    /// The line a chat shows.
    pub text: String,
}

impl Event {
    fn new(kind: EventKind, source: Option<&str>, fields: Value, text: String) -> Event {
        Event {
            kind,
            at: Utc::now(),
            source: source.map(str::to_owned),
            fields: match fields {
                Value::Object(map) => map,
                _ => Map::new(),
            },
            text,
        }
    }

    /// A request for the source `name` was submitted by `by`.
    pub fn request_submitted(request_id: &str, name: &str, by: &str) -> Event {
        Event::new(
            EventKind::RequestSubmitted,
            Some(name),
            json!({"request_id": request_id, "by": by}),
            format!(
                "dsm: {by} requests the source `{name}` (request {request_id}); it awaits approval"
            ),
        )
    }

    /// The request for `name` was approved by `by`.
    pub fn request_approved(request_id: &str, name: &str, by: &str) -> Event {
        Event::new(
            EventKind::RequestApproved,
            Some(name),
            json!({"request_id": request_id, "by": by}),
            format!("dsm: the request for `{name}` (request {request_id}) was approved by {by}"),
        )
    }

    /// The request for `name` was rejected by `by` for `reason`.
    pub fn request_rejected(request_id: &str, name: &str, by: &str, reason: &str) -> Event {
        Event::new(
            EventKind::RequestRejected,
            Some(name),
            json!({"request_id": request_id, "by": by, "reason": reason}),
            format!(
                "dsm: the request for `{name}` (request {request_id}) was rejected by {by}: {reason}"
            ),
        )
    }

    /// The first successful sync of `source` finished, run `run_id`, `records` records.
    pub fn first_sync_finished(source: &str, run_id: &str, records: u64) -> Event {
        Event::new(
            EventKind::FirstSyncFinished,
            Some(source),
            json!({"run_id": run_id, "records": records}),
            format!("dsm: the first sync of `{source}` finished: {records} records (run {run_id})"),
        )
    }

    /// `source` went into error: `error` says why; `run_id` is the failed run, if a run failed.
    pub fn source_error(source: &str, error: &str, run_id: Option<&str>) -> Event {
        Event::new(
            EventKind::SourceError,
            Some(source),
            json!({"run_id": run_id, "error": error}),
            format!("dsm: source `{source}` is in error: {error}"),
        )
    }

    /// The document a receiver gets.
    pub fn document(&self, delivery_id: &str) -> Value {
        let mut doc = Map::new();
        doc.insert("text".into(), Value::String(self.text.clone()));
        doc.insert("event".into(), Value::String(self.kind.as_str().into()));
        doc.insert("delivery_id".into(), Value::String(delivery_id.into()));
        doc.insert(
            "at".into(),
            Value::String(crate::store::format_time(self.at)),
        );
        doc.insert(
            "source".into(),
            self.source.clone().map_or(Value::Null, Value::String),
        );
        for (k, v) in &self.fields {
            doc.entry(k.clone()).or_insert_with(|| v.clone());
        }
        Value::Object(doc)
    }
}

/// Where a notification goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A signed JSON POST to `url`, with the secret named by `secret` (`$NAME`).
    Webhook {
        /// The URL.
        url: String,
        /// The name of the secret's variable (without `$`).
        secret: String,
    },
    /// A program and its arguments, the event on stdin.
    Command(Vec<String>),
}

/// One receiver of `annotations.dsm.notifications`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receiver {
    /// Its place in `annotations.dsm.notifications` (from 0).
    pub index: usize,
    /// Where it goes.
    pub target: Target,
    /// What it gets.
    pub events: Vec<EventKind>,
}

impl Receiver {
    /// How deliveries name it: `notifications[I] webhook scheme://host` (no credentials, path,
    /// query or fragment: a chat's webhook URL carries its secret in the path) or
    /// `notifications[I] command PROGRAM`.
    pub fn label(&self) -> String {
        let what = match &self.target {
            Target::Webhook { url, .. } => format!("webhook {}", deliver::url_label(url)),
            Target::Command(argv) => format!("command {}", argv.first().map_or("", |a| a)),
        };
        format!("notifications[{}] {what}", self.index)
    }
}

/// The name in a `$NAME` or `${NAME}` reference.
fn reference_name(text: &str) -> Option<&str> {
    let rest = text.strip_prefix('$')?;
    let name = rest
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .unwrap_or(rest);
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    (first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')).then_some(name)
}

/// Reads the declared receiver at `index` of `annotations.dsm.notifications`; what is wrong
/// with it otherwise.
pub fn receiver(index: usize, decl: &NotificationDecl) -> std::result::Result<Receiver, String> {
    let mut events = Vec::new();
    for name in &decl.events {
        let kind = EventKind::parse(name).ok_or_else(|| {
            let names = EventKind::ALL.map(EventKind::as_str);
            match crate::error::did_you_mean(name, names.iter().copied()) {
                Some(close) => format!("unknown event `{name}`: did you mean `{close}`?"),
                None => format!("unknown event `{name}`: use {}", names.join(", ")),
            }
        })?;
        events.push(kind);
    }
    if events.is_empty() {
        return Err("`events` is empty: name the events it gets".into());
    }
    let target = match (&decl.webhook, &decl.command) {
        (Some(hook), None) => {
            if !(hook.url.starts_with("http://") || hook.url.starts_with("https://")) {
                return Err(format!(
                    "webhook `url` `{}` is not an http:// or https:// URL",
                    deliver::url_label(&hook.url)
                ));
            }
            let secret = reference_name(&hook.secret).ok_or_else(|| {
                "webhook `secret` must be a reference such as `$NOTIFY_SECRET` (the secret store's `notifications` entry, or a variable), never the secret itself".to_owned()
            })?;
            Target::Webhook {
                url: hook.url.clone(),
                secret: secret.to_owned(),
            }
        }
        (None, Some(argv)) if argv.first().is_some_and(|p| !p.trim().is_empty()) => {
            Target::Command(argv.clone())
        }
        (None, Some(_)) => {
            return Err("`command` is empty: give the program and its arguments".into());
        }
        _ => return Err("give either `webhook` or `command`".into()),
    };
    Ok(Receiver {
        index,
        target,
        events,
    })
}

/// The project's receivers; the first one that does not hold is a configuration error.
pub fn receivers(project: &Project) -> Result<Vec<Receiver>> {
    project
        .dsm()
        .notifications
        .iter()
        .enumerate()
        .map(|(i, decl)| {
            receiver(i, decl).map_err(|why| {
                Error::config(format!("`annotations.dsm.notifications[{i}]`: {why}"))
                    .hint("run `dsm validate` to see where")
            })
        })
        .collect()
}

/// Deliveries still going in this process.
static PENDING: Mutex<Vec<JoinHandle<()>>> = Mutex::new(Vec::new());

/// Tells every receiver of the project that gets `event`, in the background (a thread of its
/// own; nothing here blocks or fails the caller). A project whose notifications do not hold is
/// logged, not raised.
pub fn emit(project: &Project, store: Arc<dyn Store>, event: Event) {
    let receivers = match receivers(project) {
        Ok(all) => all
            .into_iter()
            .filter(|r| r.events.contains(&event.kind))
            .collect::<Vec<_>>(),
        Err(error) => {
            tracing::warn!(error = %error.message(), "notifications are not sent");
            return;
        }
    };
    if receivers.is_empty() {
        return;
    }
    let context = deliver::Context {
        root: project.root().to_path_buf(),
        dotenv: project.dotenv().unwrap_or_default(),
        store,
    };
    let spawned = std::thread::Builder::new()
        .name("dsm-notify".into())
        .spawn(move || {
            let mut threads = Vec::new();
            for receiver in receivers {
                let context = context.clone();
                let event = event.clone();
                threads.push(std::thread::spawn(move || {
                    deliver::deliver(&context, &receiver, &event);
                }));
            }
            for t in threads {
                let _ = t.join();
            }
        });
    match spawned {
        Ok(handle) => {
            let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
            pending.retain(|h| !h.is_finished());
            pending.push(handle);
        }
        Err(e) => tracing::warn!(error = %e, "could not start a thread for notifications"),
    }
}

/// Waits, at most `limit`, for this process's deliveries (with their retries) to end: a command
/// that emitted events calls it before it exits, after its own work is done and reported.
pub fn wait_for_deliveries(limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let left = {
            let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
            pending.retain(|h| !h.is_finished());
            pending.len()
        };
        if left == 0 {
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                deliveries = left,
                "notifications still being delivered are abandoned"
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A receiver whose deliveries failed (every attempt) in a window.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedReceiver {
    /// The receiver's label.
    pub receiver: String,
    /// Deliveries to it in the window.
    pub deliveries: usize,
    /// Of those, the ones whose last attempt failed.
    pub failed: usize,
    /// The newest delivered one.
    pub last_delivered: Option<DateTime<Utc>>,
    /// The newest failed one.
    pub last_failed: Option<DateTime<Utc>>,
    /// Why the newest failed one failed, with its event.
    pub last_error: Option<String>,
}

impl FailedReceiver {
    /// Its line of `dsm health`: failing, with its deliveries as the runs.
    pub fn health(&self) -> crate::registry::Health {
        let rate = |n: usize| (self.deliveries > 0).then(|| n as f64 / self.deliveries as f64);
        crate::registry::Health {
            subject: crate::registry::Subject::Notification(self.receiver.clone()),
            verdict: crate::registry::Verdict::Failing,
            reason: format!(
                "{} of {} deliveries failed after every attempt",
                self.failed, self.deliveries
            ),
            runs: self.deliveries,
            successes: self.deliveries - self.failed,
            failures: self.failed,
            running: 0,
            success_rate: rate(self.deliveries - self.failed),
            error_rate: rate(self.failed),
            last_success: self.last_delivered,
            last_failure: self.last_failed,
            last_error: self.last_error.clone(),
            records_per_second: None,
            bytes_per_second: None,
            duration_p50: None,
            duration_p90: None,
            duration_p99: None,
        }
    }
}

/// The receivers with failed deliveries among the attempts since `since`, by label.
pub fn failed_deliveries(store: &dyn Store, since: DateTime<Utc>) -> Result<Vec<FailedReceiver>> {
    let attempts = store.deliveries_since(since)?;
    let mut by: std::collections::BTreeMap<String, FailedReceiver> = Default::default();
    for a in attempts
        .iter()
        .filter(|a| a.outcome != DeliveryOutcome::Retrying)
    {
        let entry = by
            .entry(a.receiver.clone())
            .or_insert_with(|| FailedReceiver {
                receiver: a.receiver.clone(),
                deliveries: 0,
                failed: 0,
                last_delivered: None,
                last_failed: None,
                last_error: None,
            });
        entry.deliveries += 1;
        match a.outcome {
            DeliveryOutcome::Delivered => entry.last_delivered = Some(a.at),
            _ => {
                entry.failed += 1;
                entry.last_failed = Some(a.at);
                entry.last_error = Some(format!(
                    "{} after {} attempts: {}",
                    a.event,
                    a.attempt,
                    a.detail.as_deref().unwrap_or("failed")
                ));
            }
        }
    }
    Ok(by.into_values().filter(|r| r.failed > 0).collect())
}

/// Records one attempt (a store that cannot is logged, never raised).
fn record(store: &dyn Store, attempt: &DeliveryAttempt) {
    if let Err(error) = store.record_delivery(attempt, RETENTION) {
        tracing::warn!(error = %error.message(), receiver = %attempt.receiver, "could not record a notification delivery");
    }
}

#[cfg(test)]
mod tests;

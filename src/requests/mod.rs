//! Source requests: someone who may not connect a source asks for one; an approver tests it
//! and approves it (it becomes a source in `meltano.yml`) or rejects it with a reason. Every
//! transition is recorded with the request and in the HMAC-chained audit log, in one
//! transaction.
//!
//! The lifecycle lives here, shared by `dsm requests` and `/api/requests`, which only parse and
//! print. What depends on the caller (resolving a catalog template, running a connection test)
//! comes in through a [`Connector`].

pub mod events;
mod lifecycle;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::error::Error;
use crate::project::Project;
use crate::secrets::Secret;
use crate::store::tokens::Capability;
use crate::store::{Role, Store, TokenRecord};

pub use crate::store::requests::{
    RequestRecord, RequestRevision, RequestStatus, Transition, secret_owner,
};
pub use lifecycle::{
    Approval, approve, cancel, first_sync, get, list, prune_expired, record_first_sync, reject,
    resubmit, submit, test,
};

/// How long a rejected request waits for its resubmission before it is deleted with its
/// secrets, unless `annotations.dsm.requests.retention` says otherwise.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long an approval's connection test may take.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The most requests a list returns.
pub const MAX_LIST: usize = 1000;
/// The most secrets one request carries.
pub const MAX_SECRETS: usize = 100;
/// The longest secret value, in bytes.
pub const MAX_SECRET_BYTES: usize = 64 * 1024;
/// The longest description or note, in characters.
pub const MAX_TEXT: usize = 10_000;

/// Who acts on a request: a token's holder, or the local OS user (an admin without an
/// organisation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// How requests and their history record it: `token:NAME` or `uid:N`.
    pub id: String,
    /// Its role.
    pub role: Role,
    /// Its organisation, if any.
    pub organisation: Option<String>,
}

impl Actor {
    /// The holder of a token.
    pub fn token(record: &TokenRecord) -> Actor {
        Actor {
            id: format!("token:{}", record.name),
            role: record.role,
            organisation: record.organisation.clone(),
        }
    }

    /// The local OS user, recorded by user id: an admin without an organisation.
    pub fn local() -> Actor {
        Actor {
            id: format!("uid:{}", crate::secrets::os_uid()),
            role: Role::Admin,
            organisation: None,
        }
    }

    /// The actor of a CLI command: the token in `DSM_TOKEN` (looked up in the store; never a
    /// flag, so it stays out of argv), else the local OS user.
    pub fn from_env(store: &dyn Store) -> crate::error::Result<Actor> {
        let Some(token) = std::env::var(crate::envvars::TOKEN)
            .ok()
            .filter(|t| !t.trim().is_empty())
        else {
            return Ok(Actor::local());
        };
        let token = zeroize::Zeroizing::new(token);
        let tokens = store.list_tokens()?;
        crate::serve::token::authenticate(&tokens, token.trim(), chrono::Utc::now())
            .map(|r| Actor::token(&r))
            .ok_or_else(|| {
                Error::config(format!(
                    "the token in `{}` is not valid",
                    crate::envvars::TOKEN
                ))
                .hint("it may be mistyped, revoked or expired; `dsm tokens list` shows the tokens, or unset it to act as the local user")
            })
    }

    /// Whether this actor may do `what`.
    pub fn may(&self, what: Capability) -> bool {
        self.role.may(what)
    }

    /// Whether this actor may see `request`: its requester always; approvers and admins every
    /// request.
    pub fn sees(&self, request: &RequestRecord) -> bool {
        request.requester == self.id || self.may(Capability::ReviewRequests)
    }
}

/// What a requester submits (or resubmits): the request and its secret values (sealed at once,
/// never shown again). No `Debug`: it holds secret values.
pub struct Submission {
    /// The request (its `secrets` names are taken from `secrets`).
    pub request: RequestRevision,
    /// The values of sensitive settings.
    pub secrets: BTreeMap<String, Secret>,
}

/// A plugin entry built from a catalog template, and the lock file that comes with it.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The entry as `meltano.yml` gets it (without `name`).
    pub entry: Map<String, Value>,
    /// A lock file to write with it: its path relative to the project root and its text.
    pub lock: Option<(PathBuf, String)>,
}

/// The outcome of a connection test.
#[derive(Debug, Clone)]
pub struct TestReport {
    /// Whether every test passed.
    pub succeeded: bool,
    /// One line: what failed, or that it passed.
    pub summary: String,
    /// The document of `dsm test NAME --format json`.
    pub document: Value,
}

/// What the lifecycle needs from its caller.
pub trait Connector {
    /// The entry of a catalog template (`NAME` or `NAME--VARIANT`) for an extractor.
    fn template(&self, template: &str) -> crate::error::Result<Resolved>;

    /// Runs the connection test of the extractor `name` of `project` (which holds the
    /// request's definition and secrets in memory), stopping it after `timeout`.
    fn test(
        &self,
        project: &Project,
        name: &str,
        timeout: Duration,
    ) -> crate::error::Result<TestReport>;
}

/// Why a request operation was refused.
#[derive(Debug)]
pub enum RequestError {
    /// No request with that id, or one the caller may not see (404).
    NotFound(String),
    /// The caller's role may not do this, or it is their own request (403).
    Forbidden {
        /// What was refused.
        message: String,
        /// What to do.
        hint: String,
    },
    /// A field is missing or not valid (422).
    Invalid {
        /// The field (its JSON name).
        field: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The request's status does not allow this, or the name is taken (409).
    Conflict {
        /// What conflicts.
        message: String,
        /// What to do.
        hint: String,
    },
    /// The connection test failed and the approval was not overridden (422; exit 1).
    TestFailed {
        /// What failed.
        summary: String,
        /// The test's document.
        document: Value,
    },
    /// Anything else.
    Other(Error),
}

impl RequestError {
    fn forbidden(message: impl Into<String>, hint: impl Into<String>) -> Self {
        RequestError::Forbidden {
            message: message.into(),
            hint: hint.into(),
        }
    }

    fn invalid(field: &str, message: impl Into<String>) -> Self {
        RequestError::Invalid {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    fn conflict(message: impl Into<String>, hint: impl Into<String>) -> Self {
        RequestError::Conflict {
            message: message.into(),
            hint: hint.into(),
        }
    }
}

impl From<Error> for RequestError {
    fn from(e: Error) -> Self {
        RequestError::Other(e)
    }
}

impl From<crate::secrets::SecretsError> for RequestError {
    fn from(e: crate::secrets::SecretsError) -> Self {
        RequestError::Other(e.into())
    }
}

impl From<RequestError> for Error {
    /// The CLI's error: a failed test exits 1, everything else the caller got wrong 2.
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::NotFound(id) => Error::config(format!("no source request `{id}`"))
                .hint("`dsm requests list` shows the requests you may see"),
            RequestError::Forbidden { message, hint } => Error::config(message).hint(hint),
            RequestError::Invalid { field, message } => {
                Error::config(format!("`{field}`: {message}"))
            }
            RequestError::Conflict { message, hint } => Error::config(message).hint(hint),
            RequestError::TestFailed { summary, .. } => Error::failed(format!(
                "the connection test failed, so the request was not approved: {summary}"
            ))
            .hint("fix the request (the requester resubmits it), reject it with a reason, or approve it anyway with `--override-test --reason TEXT`"),
            RequestError::Other(e) => e,
        }
    }
}

/// `annotations.dsm.requests` of `project`, read: the retention of rejected requests and
/// whether an approval starts the source's first sync.
pub fn options(project: &Project) -> crate::error::Result<(Duration, bool)> {
    let options = project.dsm().requests.unwrap_or_default();
    let retention = match &options.retention {
        None => DEFAULT_RETENTION,
        Some(crate::project::annotations::Duration::Seconds(n)) => Duration::from_secs(*n),
        Some(crate::project::annotations::Duration::Text(t)) => {
            crate::duration::parse(t).map_err(|e| {
                Error::config(format!("annotations.dsm.requests.retention: {e}"))
                    .hint(crate::duration::DurationError::hint())
            })?
        }
    };
    Ok((retention, options.first_sync.unwrap_or(false)))
}

/// A test's report from its results, with the document of `dsm test NAME --format json`.
pub fn report(results: &[crate::registry::probe::ProbeResult]) -> TestReport {
    use crate::registry::probe::ProbeStatus;
    let failed = results.iter().filter(|r| r.status.is_failure()).count();
    let count = |s: ProbeStatus| results.iter().filter(|r| r.status == s).count();
    let summary = match results.iter().find(|r| r.status.is_failure()) {
        None => "passed".to_owned(),
        Some(r) => format!(
            "test `{}` {}: {}",
            r.test,
            r.status.as_str(),
            r.reason.as_deref().unwrap_or("no reason given")
        ),
    };
    TestReport {
        succeeded: failed == 0,
        summary,
        document: serde_json::json!({
            "results": results,
            "passed": count(ProbeStatus::Passed),
            "failed": failed,
            "skipped": count(ProbeStatus::Skipped),
            "succeeded": failed == 0,
        }),
    }
}

//! API tokens of `dsm serve`: who may call the HTTP API and with which role. The store keeps a
//! SHA-256 of each token, never the token (see [`crate::serve::token`] for making and checking
//! them).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{Error, Result};

/// What a token may do. `viewer`, `operator` and `admin` each include the ones before them;
/// `requester` and `approver` stand beside that chain (see [`Role::may`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads sources, runs, flows, health and metrics.
    Viewer,
    /// Also tests sources, starts syncs, sets credentials and stops runs.
    Operator,
    /// Also registers, changes and deletes sources, reads the audit log, and approves and
    /// rejects source requests.
    Admin,
    /// Submits, follows, resubmits and cancels its own source requests, and reads sources
    /// (a requester token always has an organisation).
    Requester,
    /// Reads every source request and source, tests requests, approves and rejects them.
    Approver,
}

/// One thing a role may do; [`Role::may`] says which roles may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// Read sources, runs, flows, health and metrics (every role).
    Read,
    /// Test sources, start syncs, set credentials, stop runs (operator, admin).
    Operate,
    /// Change sources, read the audit log (admin).
    Administer,
    /// Submit source requests and follow, resubmit and cancel one's own (requester, admin).
    SubmitRequests,
    /// Read every source request, test, approve and reject them (approver, admin).
    ReviewRequests,
}

impl Capability {
    /// The role named in a refusal: the least role that has the capability.
    pub fn least_role(self) -> Role {
        match self {
            Capability::Read => Role::Viewer,
            Capability::Operate => Role::Operator,
            Capability::Administer => Role::Admin,
            Capability::SubmitRequests => Role::Requester,
            Capability::ReviewRequests => Role::Approver,
        }
    }
}

impl From<Role> for Capability {
    /// What the `viewer < operator < admin` chain's roles stand for when a check names one.
    fn from(role: Role) -> Self {
        match role {
            Role::Viewer => Capability::Read,
            Role::Operator => Capability::Operate,
            Role::Admin => Capability::Administer,
            Role::Requester => Capability::SubmitRequests,
            Role::Approver => Capability::ReviewRequests,
        }
    }
}

impl Role {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Requester => "requester",
            Role::Approver => "approver",
        }
    }

    /// Whether this role may do `what`.
    pub fn may(self, what: Capability) -> bool {
        use Capability as C;
        matches!(
            (self, what),
            (_, C::Read)
                | (Role::Operator | Role::Admin, C::Operate)
                | (Role::Admin, C::Administer)
                | (Role::Requester | Role::Admin, C::SubmitRequests)
                | (Role::Approver | Role::Admin, C::ReviewRequests)
        )
    }

    /// Reads a stored name.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            "requester" => Ok(Role::Requester),
            "approver" => Ok(Role::Approver),
            other => Err(Error::failed(format!(
                "system database holds an unknown token role `{other}`"
            ))),
        }
    }
}

/// A token to record (its hash; the token itself is never stored).
#[derive(Debug, Clone)]
pub struct NewToken {
    /// The token's name, unique.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The organisation it is limited to (`None`: all of them).
    pub organisation: Option<String>,
    /// SHA-256 of the token.
    pub token_hash: Vec<u8>,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// Who created it (the OS user).
    pub created_by: String,
}

/// A stored token, without anything that grants access except its hash.
#[derive(Debug, Clone, Serialize)]
pub struct TokenRecord {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The organisation it is limited to.
    pub organisation: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Who created it.
    pub created_by: String,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was last accepted by the server (updated at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// SHA-256 of the token; never serialised.
    #[serde(skip)]
    pub token_hash: Vec<u8>,
}

impl TokenRecord {
    /// Whether the token has expired at `now`.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// The token table of the system store.
pub trait TokenStore {
    /// Records a new token. Fails when a token of that name exists.
    fn create_token(&self, token: &NewToken) -> Result<TokenRecord>;

    /// Every token, sorted by name.
    fn list_tokens(&self) -> Result<Vec<TokenRecord>>;

    /// Deletes a token; returns whether it existed.
    fn revoke_token(&self, name: &str) -> Result<bool>;

    /// Records that a token was used at `at`.
    fn touch_token(&self, name: &str, at: DateTime<Utc>) -> Result<()>;
}

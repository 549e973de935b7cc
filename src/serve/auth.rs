//! Who is calling: bearer tokens checked against the store's hashes, roles, the `--read-only`
//! switch, and the limit on failed attempts per address.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::App;
use super::problem::Problem;
use crate::store::Role;
use crate::store::tokens::Capability;

/// Failed attempts from one address within [`FAILURE_WINDOW`] after which it gets 429.
pub const MAX_FAILURES: usize = 10;
/// The window failed attempts are counted in.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// How often a token's `last_used_at` is written at most.
const TOUCH_EVERY: chrono::TimeDelta = match chrono::TimeDelta::try_seconds(60) {
    Some(d) => d,
    None => panic!("60 seconds is a valid duration"),
};

/// The caller of a request, once its token is accepted.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's name (what the audit log and access log record).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The organisation it is limited to, if any.
    pub organisation: Option<String>,
}

impl Caller {
    /// Whether the caller sees every source whatever its organisation and label: the
    /// approver and the organisation-less admin. The one place this rule lives (see
    /// [`crate::registry::access`] for the rest).
    pub fn sees_all(&self) -> bool {
        self.role == Role::Approver || (self.organisation.is_none() && self.role == Role::Admin)
    }

    /// What the caller sees of the registry.
    pub fn viewer(&self) -> crate::registry::access::Viewer {
        crate::registry::access::Viewer {
            organisation: self.organisation.clone(),
            sees_all: self.sees_all(),
        }
    }

    /// Refuses with 403 unless the caller's role may do what `role` stands for (a role of
    /// the `viewer < operator < admin` chain: that role or a higher one; see
    /// [`Capability`]).
    pub fn require(&self, role: Role) -> Result<(), Problem> {
        self.require_to(Capability::from(role))
    }

    /// Refuses with 403 unless the caller's role may do `what`.
    pub fn require_to(&self, what: Capability) -> Result<(), Problem> {
        if self.role.may(what) {
            Ok(())
        } else {
            let needed = what.least_role();
            let needs = match what {
                Capability::SubmitRequests => "requester or admin".to_owned(),
                Capability::ReviewRequests => "approver or admin".to_owned(),
                _ => needed.as_str().to_owned(),
            };
            Err(Problem::forbidden(format!(
                "token `{}` has the {} role; this needs {needs}",
                self.name,
                self.role.as_str(),
            ))
            .detail(format!(
                "ask an administrator for a token with `dsm tokens create NAME --role {}`",
                needed.as_str()
            )))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| Problem::unauthorized("this request needs a token"))
    }
}

/// Failed attempts per address, in a sliding window.
#[derive(Debug, Default)]
pub struct FailureLimiter {
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl FailureLimiter {
    /// Seconds the address must wait, when it has used up its failed attempts.
    pub fn blocked_for(&self, addr: IpAddr, now: Instant) -> Option<u64> {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let list = map.get_mut(&addr)?;
        while list
            .front()
            .is_some_and(|t| now.duration_since(*t) >= FAILURE_WINDOW)
        {
            list.pop_front();
        }
        if list.is_empty() {
            map.remove(&addr);
            return None;
        }
        (list.len() >= MAX_FAILURES).then(|| {
            let oldest = *list.front().expect("the list is not empty");
            let left = FAILURE_WINDOW.saturating_sub(now.duration_since(oldest));
            left.as_secs().max(1)
        })
    }

    /// Records a failed attempt.
    pub fn record_failure(&self, addr: IpAddr, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded memory under a flood from many addresses: forget windows that have passed.
        if map.len() > 10_000 {
            map.retain(|_, l| {
                l.back()
                    .is_some_and(|t| now.duration_since(*t) < FAILURE_WINDOW)
            });
        }
        let list = map.entry(addr).or_default();
        list.push_back(now);
        while list.len() > MAX_FAILURES {
            list.pop_front();
        }
    }
}

/// Which tokens had their last use written recently, so concurrent requests write it once.
#[derive(Debug, Default)]
pub struct Touches {
    last: Mutex<HashMap<String, Instant>>,
}

impl Touches {
    /// Whether this request is the one to write `name`'s last use (none did in the last
    /// minute).
    pub fn claim(&self, name: &str, now: Instant) -> bool {
        let every = Duration::from_secs(60);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last
            .get(name)
            .is_some_and(|at| now.duration_since(*at) < every)
        {
            return false;
        }
        if last.len() > 10_000 {
            last.retain(|_, at| now.duration_since(*at) < every);
        }
        last.insert(name.to_owned(), now);
        true
    }
}

/// The browser session cookie.
pub const SESSION_COOKIE: &str = "dsm_session";
/// A session unused this long ends.
pub const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);

#[derive(Debug)]
struct Session {
    token_hash: Vec<u8>,
    last_seen: Instant,
}

/// Browser sessions: a random id in an `HttpOnly`, `SameSite=Strict` cookie stands for a token.
/// Only a hash of each id is kept, in memory (a restart ends every session).
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<Vec<u8>, Session>>,
}

impl Sessions {
    /// Starts a session for the token whose hash is `token_hash`; returns the session id.
    pub fn create(&self, token_hash: Vec<u8>, now: Instant) -> zeroize::Zeroizing<String> {
        let id = super::token::generate();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| now.duration_since(s.last_seen) < SESSION_IDLE);
        map.insert(
            super::token::hash(&id),
            Session {
                token_hash,
                last_seen: now,
            },
        );
        id
    }

    /// The token hash of a live session, refreshing its idle time.
    fn touch(&self, id: &str, now: Instant) -> Option<Vec<u8>> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let key = super::token::hash(id);
        let session = map.get_mut(&key)?;
        if now.duration_since(session.last_seen) >= SESSION_IDLE {
            map.remove(&key);
            return None;
        }
        session.last_seen = now;
        Some(session.token_hash.clone())
    }

    /// Ends a session; returns whether it existed.
    pub fn end(&self, id: &str) -> bool {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&super::token::hash(id)).is_some()
    }
}

/// The value of the session cookie, if the request carries one.
pub fn session_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Whether the request's `Origin` is this server (the same scheme, host and port as its
/// `Host`): a state-changing request carrying the session cookie must come from the server's
/// own pages.
fn same_origin(headers: &axum::http::HeaderMap, tls: bool) -> bool {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let scheme = if tls { "https" } else { "http" };
    matches!((origin, host), (Some(o), Some(h)) if o == format!("{scheme}://{h}"))
}

/// Paths answered without a token (`/api/session` checks the token in its body itself, the
/// webhook intake each request's signature; the dashboard's files hold no data).
fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/api/session")
        || path.starts_with("/api/webhooks/")
        || super::dashboard::is_dashboard_path(path)
}
/// Whether a request changes something (refused under `--read-only`).
pub fn is_state_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn bearer(request: &Request) -> Option<Result<&str, ()>> {
    let value = request.headers().get(header::AUTHORIZATION)?;
    let text = value.to_str().map_err(|_| ());
    Some(text.and_then(|t| {
        let (scheme, token) = t.split_once(' ').ok_or(())?;
        if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() {
            Ok(token.trim())
        } else {
            Err(())
        }
    }))
}

/// The authentication layer: public paths pass; everything else needs a valid bearer token or
/// session cookie (whose token becomes the request's [`Caller`]); a state-changing request by
/// cookie needs the server's own `Origin`; addresses with too many failures get 429; under
/// `--read-only` state-changing requests get 403.
/// Answers a request refused before its handler ran, after reading what is left of its body
/// (bounded by the API's 1 MiB limit): a client still sending a body must not see the
/// connection close under it instead of the answer.
async fn refuse(request: Request, response: Response) -> Response {
    let _ = axum::body::to_bytes(request.into_body(), 1024 * 1024).await;
    response
}

pub async fn authenticate(
    State(app): State<Arc<App>>,
    ConnectInfo(super::Peer(peer)): ConnectInfo<super::Peer>,
    mut request: Request,
    next: Next,
) -> Response {
    if is_public(request.uri().path()) {
        return next.run(request).await;
    }
    let now = Instant::now();
    if let Some(secs) = app.limiter.blocked_for(peer.ip(), now) {
        let mut problem = Problem::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "too many failed attempts from this address",
        )
        .detail(format!("try again in {secs} s with a valid token"));
        problem.retry_after = Some(secs);
        return refuse(request, problem.into_response()).await;
    }
    // A bearer token first; without one, the session cookie.
    let credential = match bearer(&request) {
        Some(Ok(token)) => Ok(token.to_owned()),
        Some(Err(())) => {
            app.limiter.record_failure(peer.ip(), now);
            let answer = Problem::unauthorized("the Authorization header is not `Bearer TOKEN`")
                .detail("send `Authorization: Bearer TOKEN`")
                .into_response();
            return refuse(request, answer).await;
        }
        None => match session_cookie(request.headers()) {
            Some(id) => Err(id),
            None => {
                let answer = Problem::unauthorized("this request needs a token")
                    .detail("send `Authorization: Bearer TOKEN`; `dsm tokens create NAME --role viewer` makes one")
                    .into_response();
                return refuse(request, answer).await;
            }
        },
    };
    let by_session = credential.is_err();
    let token_hash = match credential {
        Ok(token) => Some(super::token::hash(&token)),
        Err(id) => app.sessions.touch(&id, now),
    };
    if by_session
        && is_state_changing(request.method())
        && !same_origin(request.headers(), app.secure_cookies)
    {
        let answer = Problem::forbidden("a cross-site request was refused")
            .detail("a request carrying the session cookie that changes something must send the server's own `Origin`")
            .into_response();
        return refuse(request, answer).await;
    }
    let store = app.store.clone();
    let turn = match super::store_turn().await {
        Ok(turn) => turn,
        Err(problem) => return refuse(request, problem.into_response()).await,
    };
    let found = tokio::task::spawn_blocking(move || -> crate::error::Result<_> {
        let Some(token_hash) = token_hash else {
            return Ok(None);
        };
        let tokens = store.list_tokens()?;
        Ok(super::token::by_hash(&tokens, &token_hash, Utc::now()))
    })
    .await;
    drop(turn);
    // The token's last use is written at most once a minute, by one request, off the
    // request's path: a burst of requests must not queue behind as many store writes.
    if let Ok(Ok(Some(t))) = &found {
        let now = Utc::now();
        if t.last_used_at.is_none_or(|at| now - at >= TOUCH_EVERY)
            && app.touches.claim(&t.name, Instant::now())
        {
            let store = app.store.clone();
            let name = t.name.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(error) = store.touch_token(&name, now) {
                    tracing::warn!(error = %error.message(), "could not record a token's last use");
                }
            });
        }
    }
    let record = match found {
        Ok(Ok(Some(record))) => record,
        Ok(Ok(None)) => {
            app.limiter.record_failure(peer.ip(), now);
            let problem = if by_session {
                Problem::unauthorized("the session is not valid")
                    .detail("it ended, its token was revoked or expired, or it was idle for 12 hours; sign in again with POST /api/session")
            } else {
                Problem::unauthorized("the token is not valid").detail(
                    "it may be mistyped, revoked or expired; `dsm tokens list` shows the tokens",
                )
            };
            return refuse(request, problem.into_response()).await;
        }
        Ok(Err(error)) => return Problem::from(error).into_response(),
        Err(_) => return Problem::internal().into_response(),
    };
    if app.read_only && is_state_changing(request.method()) {
        return Problem::forbidden("the server is read-only")
            .detail("it was started with `--read-only`; restart it without to allow changes")
            .into_response();
    }
    let caller = Caller {
        name: record.name,
        role: record.role,
        organisation: record.organisation,
    };
    request.extensions_mut().insert(caller.clone());
    let mut response = next.run(request).await;
    // For the access log, which runs outside this layer.
    response.extensions_mut().insert(caller);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_blocked_after_ten_failures_in_a_minute_and_freed_after() {
        let limiter = FailureLimiter::default();
        let addr: IpAddr = "127.0.0.9".parse().unwrap();
        let other: IpAddr = "127.0.0.10".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..MAX_FAILURES {
            assert_eq!(limiter.blocked_for(addr, t0), None, "after {i}");
            limiter.record_failure(addr, t0);
        }
        let wait = limiter
            .blocked_for(addr, t0 + Duration::from_secs(15))
            .unwrap();
        assert_eq!(wait, 45);
        assert_eq!(limiter.blocked_for(other, t0), None);
        assert_eq!(limiter.blocked_for(addr, t0 + FAILURE_WINDOW), None);
    }

    #[test]
    fn roles_include_the_lower_ones() {
        let caller = Caller {
            name: "ops".into(),
            role: Role::Operator,
            organisation: None,
        };
        assert!(caller.require(Role::Viewer).is_ok());
        assert!(caller.require(Role::Operator).is_ok());
        let refused = caller.require(Role::Admin).unwrap_err();
        assert_eq!(refused.status, 403);
    }

    #[test]
    fn requesters_and_approvers_read_but_neither_operate_nor_administer() {
        let as_role = |role| Caller {
            name: "t".into(),
            role,
            organisation: Some("uni".into()),
        };
        for role in [Role::Requester, Role::Approver] {
            let caller = as_role(role);
            assert!(caller.require(Role::Viewer).is_ok(), "{role:?} reads");
            assert_eq!(caller.require(Role::Operator).unwrap_err().status, 403);
            assert_eq!(caller.require(Role::Admin).unwrap_err().status, 403);
        }
        assert!(
            as_role(Role::Requester)
                .require_to(Capability::SubmitRequests)
                .is_ok()
        );
        assert!(
            as_role(Role::Requester)
                .require_to(Capability::ReviewRequests)
                .is_err()
        );
        assert!(
            as_role(Role::Approver)
                .require_to(Capability::ReviewRequests)
                .is_ok()
        );
        assert!(
            as_role(Role::Approver)
                .require_to(Capability::SubmitRequests)
                .is_err()
        );
        assert!(
            as_role(Role::Admin)
                .require_to(Capability::ReviewRequests)
                .is_ok()
        );
        for role in [Role::Viewer, Role::Operator] {
            assert!(
                as_role(role)
                    .require_to(Capability::ReviewRequests)
                    .is_err()
            );
            assert!(
                as_role(role)
                    .require_to(Capability::SubmitRequests)
                    .is_err()
            );
        }
    }
}

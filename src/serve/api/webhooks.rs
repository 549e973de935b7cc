//! `POST /api/webhooks/{source}`: events pushed by third parties for a source of type
//! `webhook`. No token: the request is signed with the source's `secret` (see
//! [`crate::webhooks`]), and failures count against the sender's address like failed logins.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use zeroize::Zeroizing;

use super::*;
use crate::project::{Plugin, PluginType, Project};
use crate::serve::Peer;
use crate::serve::auth::FailureLimiter;
use crate::store::{NewWebhookEvent, Received};
use crate::webhooks::{self as hooks, Retention};

/// How long a resolved secret is used before it is read again (a changed secret takes effect
/// within this time).
const SECRET_TTL: Duration = Duration::from_secs(5);

/// A source's secret as last resolved (`None`: it has none), and when.
type CachedSecret = (Instant, Option<Zeroizing<String>>);

/// The intake's own state: failed attempts per address (kept apart from the token limiter, so
/// a misconfigured sender does not lock its network's operators out of the API) and the
/// sources' secrets, resolved at most every [`SECRET_TTL`].
#[derive(Debug, Default)]
pub struct Intake {
    /// Failed attempts per address.
    pub limiter: FailureLimiter,
    secrets: Mutex<HashMap<String, CachedSecret>>,
}

impl Intake {
    fn cached(&self, source: &str, now: Instant) -> Option<Option<Zeroizing<String>>> {
        let map = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        map.get(source)
            .filter(|(at, _)| now.duration_since(*at) < SECRET_TTL)
            .map(|(_, s)| s.clone())
    }

    fn remember(&self, source: &str, secret: Option<Zeroizing<String>>, now: Instant) {
        let mut map = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 1_000 {
            map.retain(|_, (at, _)| now.duration_since(*at) < SECRET_TTL);
        }
        map.insert(source.to_owned(), (now, secret));
    }

    fn fail(&self, peer: IpAddr, problem: Problem) -> Problem {
        self.limiter.record_failure(peer, Instant::now());
        problem
    }
}

/// Path parameter of the webhook intake.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct WebhookSource {
    /// The name in `meltano.yml` of an extractor of type `webhook`.
    pub source: String,
}

/// An event was stored (202), or had been stored before under the same `X-DSM-Event-Id` (200).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAccepted {
    /// The stored event's id (`dsm webhooks show SOURCE ID`).
    pub id: i64,
    /// Whether an event with this `X-DSM-Event-Id` was stored before (nothing new was stored).
    pub duplicate: bool,
}

/// The source's signing secret, through the normal settings path (meltano.yml, environment,
/// `.env`, the secret store); `None` when it has none.
fn resolve_secret(
    app: &App,
    project: &Project,
    plugin: &Plugin,
) -> crate::error::Result<Option<Zeroizing<String>>> {
    use crate::secrets::layer::{Reveal, StoreLayer};
    let env = project.active_environment(&app.environment)?;
    let inputs = crate::settings::Inputs::capture(project, env)?;
    // Not audited per request: the intake reads the secret every few seconds at most, and an
    // audit entry per event would drown the log.
    let layer = StoreLayer::at(&app.location, &app.root, Reveal::Clear)?;
    let resolved = crate::settings::resolve_plugin(project, plugin, &inputs.with_store(&layer))?;
    let secret = resolved
        .config
        .get(hooks::SECRET_SETTING)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(|s| Zeroizing::new(s.to_owned()));
    Ok(secret)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Receives an event for a source of type `webhook`. Needs no token: the body is signed with
/// the source's `secret` setting, `X-DSM-Signature: sha256=<hex of HMAC-SHA256(secret,
/// "<X-DSM-Timestamp>.<body>")>`, and the timestamp (unix seconds) must be within 300 s of the
/// server's clock. The event is stored durably before the answer. Failed attempts (unknown
/// source, bad or stale signature) count against the address: after 10 in a minute it gets 429.
#[utoipa::path(post, path = "/api/webhooks/{source}", tag = "webhooks", security(()),
    params(WebhookSource,
        ("X-DSM-Timestamp" = Option<String>, Header, description = "When the request was signed, in unix seconds"),
        ("X-DSM-Signature" = Option<String>, Header, description = "`sha256=` and the hex HMAC-SHA256 of `<timestamp>.<body>` with the source's secret"),
        ("X-DSM-Event-Id" = Option<String>, Header, description = "The sender's id of the event (1 to 200 visible ASCII characters); an event with an id stored before is not stored again")),
    request_body(content = Object, content_type = "application/json", description = "The event: any JSON document of at most 1 MiB"),
    responses(
        (status = 202, body = WebhookAccepted, description = "The event is stored"),
        (status = 200, body = WebhookAccepted, description = "An event with this `X-DSM-Event-Id` was stored before"),
        (status = 400, body = Problem, content_type = "application/problem+json", description = "The body is not JSON, or the event id is not valid"),
        (status = 401, body = Problem, content_type = "application/problem+json", description = "A signature header is missing, the signature does not match, or the timestamp is more than 300 s off"),
        (status = 403, body = Problem, content_type = "application/problem+json", description = "The server is read-only"),
        (status = 404, body = Problem, content_type = "application/problem+json", description = "No extractor of type `webhook` has this name"),
        (status = 429, body = Problem, content_type = "application/problem+json", description = "Too many failed attempts from this address"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "The source cannot take events now (its pending events fill its bounds, or it has no secret)")))]
pub(super) async fn receive(
    State(app): State<Arc<App>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    Path(WebhookSource { source }): Path<WebhookSource>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<WebhookAccepted>), Problem> {
    let intake = &app.webhooks;
    if let Some(secs) = intake.limiter.blocked_for(peer.ip(), Instant::now()) {
        let mut problem = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed attempts from this address",
        )
        .detail(format!("try again in {secs} s with a valid signature"));
        problem.retry_after = Some(secs);
        return Err(problem);
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            crate::serve::too_large()
        } else {
            Problem::bad_request("the request body could not be read")
        }
    })?;
    if app.read_only {
        return Err(Problem::forbidden("the server is read-only")
            .detail("it was started with `--read-only` and stores no events"));
    }
    let (project, loaded) = app.project()?;
    let is_webhook_source = loaded.sources.iter().any(|s| {
        s.name == source
            && s.plugin_type == "extractor"
            && s.source_type == crate::registry::catalog::SourceType::Webhook
    });
    let plugin = project
        .plugins_of(PluginType::Extractors)
        .find(|p| p.name == source)
        .filter(|_| is_webhook_source)
        .cloned();
    let Some(plugin) = plugin else {
        return Err(intake.fail(
            peer.ip(),
            Problem::not_found("no webhook source of this name").detail(
                "events go to `/api/webhooks/NAME` where NAME is an extractor whose `annotations.dsm.source.type` is `webhook`",
            ),
        ));
    };
    let now = Instant::now();
    let secret = match intake.cached(&source, now) {
        Some(secret) => secret,
        None => {
            let (app2, project2, plugin2) = (app.clone(), project.clone(), plugin.clone());
            let secret = blocking(move || {
                resolve_secret(&app2, &project2, &plugin2).map_err(|e| {
                    tracing::warn!(source = %plugin2.name, error = %e.message(), "cannot resolve a webhook source's secret");
                    Problem::new(StatusCode::SERVICE_UNAVAILABLE, "the source cannot take events now")
                        .detail("its secret could not be read; the server's log says why")
                })
            })
            .await?;
            intake.remember(&source, secret.clone(), now);
            secret
        }
    };
    let Some(secret) = secret else {
        tracing::warn!(source = %source, "a webhook source has no `secret` set; its events are refused");
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the source cannot take events now",
        )
        .detail("its operator has not set its signing secret"));
    };
    let unix_now = Utc::now().timestamp();
    if let Err(refusal) = hooks::verify(
        secret.as_bytes(),
        header(&headers, hooks::TIMESTAMP_HEADER),
        header(&headers, hooks::SIGNATURE_HEADER),
        &body,
        unix_now,
    ) {
        return Err(intake.fail(
            peer.ip(),
            Problem::unauthorized(refusal.message()).detail(
                "sign `<X-DSM-Timestamp>.<body>` with HMAC-SHA256 and the source's secret; send `X-DSM-Signature: sha256=<hex>` and the current unix time in `X-DSM-Timestamp`",
            ),
        ));
    }
    let event_id = match headers.get(hooks::EVENT_ID_HEADER) {
        None => None,
        Some(v) => match v.to_str().ok().filter(|t| hooks::valid_event_id(t)) {
            Some(t) => Some(t.to_owned()),
            None => {
                return Err(Problem::bad_request("`X-DSM-Event-Id` is not valid")
                    .detail("send 1 to 200 visible ASCII characters, or leave it out"));
            }
        },
    };
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
        return Err(
            Problem::bad_request("the request body is not valid JSON").detail(e.to_string())
        );
    }
    let payload = String::from_utf8(body.to_vec())
        .map_err(|_| Problem::bad_request("the request body is not UTF-8"))?;
    let retention = Retention::of(&plugin).map_err(|e| {
        tracing::warn!(source = %source, error = %e.message(), "a webhook source's options do not read");
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "the source cannot take events now")
            .detail("its `annotations.dsm.webhooks` do not read; the server's log says why")
    })?;
    let store = app.store.clone();
    let event = NewWebhookEvent {
        source: source.clone(),
        event_id,
        payload,
        received_at: Utc::now(),
    };
    let received = blocking(move || {
        store
            .receive_webhook(&event, &retention.limits)
            .map_err(Problem::from)
    })
    .await?;
    match received {
        Received::Stored(e) => Ok((
            StatusCode::ACCEPTED,
            Json(WebhookAccepted {
                id: e.id,
                duplicate: false,
            }),
        )),
        Received::Duplicate(e) => Ok((
            StatusCode::OK,
            Json(WebhookAccepted {
                id: e.id,
                duplicate: true,
            }),
        )),
        Received::Full { pending, bytes } => {
            tracing::warn!(source = %source, pending, bytes, "a webhook source is full; an event was refused");
            let mut problem = Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the source holds as many pending events as it may",
            )
            .detail(format!(
                "{pending} events ({bytes} bytes) wait for a run of `{source}`; send again after it ran"
            ));
            problem.retry_after = Some(60);
            Err(problem)
        }
    }
}

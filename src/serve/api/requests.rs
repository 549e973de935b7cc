//! Source requests over HTTP (`/api/requests`): the lifecycle of [`crate::requests`], with the
//! caller's token as the actor. A request the caller may not see answers 404.

use std::collections::BTreeMap;

use serde_json::Map;

use super::*;
use crate::requests::{
    self as lifecycle, Actor, Connector, RequestError, RequestRecord, RequestRevision,
    RequestStatus, Resolved, Submission, TestReport,
};
use crate::secrets::Secret;

/// How the audit log names these calls.
const VIA: &str = "dsm serve";

/// The body of `POST /api/requests`. No `Debug`: `secrets` holds secret values.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRequestBody {
    /// The source's name once approved (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// What the source is for.
    pub description: Option<String>,
    /// A plugin of dsm's catalog, `NAME` or `NAME--VARIANT`. Give this or `plugin`.
    pub template: Option<String>,
    /// A full plugin definition, as its entry in `meltano.yml` would be. Give this or
    /// `template`.
    #[schema(value_type = Option<Object>)]
    pub plugin: Option<Map<String, Value>>,
    /// Settings that are not sensitive.
    #[schema(value_type = Option<Object>)]
    pub config: Option<Map<String, Value>>,
    /// Sensitive settings: sealed at once, never shown again.
    pub secrets: Option<BTreeMap<String, String>>,
    /// The classification label of the source's data.
    pub classification: String,
    /// Notes for the approver.
    pub notes: Option<String>,
}

/// The body of `POST /api/requests/{id}/resubmit`: what changes (anything left out stays as
/// submitted). No `Debug`: `secrets` holds secret values.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ResubmitBody {
    /// What the source is for.
    pub description: Option<String>,
    /// A plugin of dsm's catalog (replaces `plugin`).
    pub template: Option<String>,
    /// A full plugin definition (replaces `template`).
    #[schema(value_type = Option<Object>)]
    pub plugin: Option<Map<String, Value>>,
    /// Settings that are not sensitive (merged into those submitted).
    #[schema(value_type = Option<Object>)]
    pub config: Option<Map<String, Value>>,
    /// Sensitive settings (replace those of the same name).
    pub secrets: Option<BTreeMap<String, String>>,
    /// The classification label.
    pub classification: Option<String>,
    /// Notes for the approver.
    pub notes: Option<String>,
}

/// The body of `POST /api/requests/{id}/approve`.
#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    /// Approve even though the connection test fails (needs `reason`).
    pub override_test: Option<bool>,
    /// Why the failed test is overridden.
    pub reason: Option<String>,
}

/// The body of `POST /api/requests/{id}/reject`.
#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RejectBody {
    /// Why: the requester reads it to fix the request (422 without one).
    pub reason: Option<String>,
}

/// `GET /api/requests` filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RequestsQuery {
    /// Only the caller's own requests.
    pub mine: Option<bool>,
    /// Only requests with this status.
    pub status: Option<RequestStatus>,
}

/// A request's id.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RequestId {
    /// The request's id (a UUID).
    pub id: String,
}

/// A request's id and status after a change.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestChanged {
    /// The request's id.
    pub id: String,
    /// Its status now.
    pub status: RequestStatus,
}

/// The requests the caller may see.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestList {
    /// Newest first: the caller's own, or every request for approvers and admins.
    pub requests: Vec<RequestRecord>,
}

/// A request's connection test.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestTested {
    /// The request's id.
    pub id: String,
    /// Its status.
    pub status: RequestStatus,
    /// Whether every test passed.
    pub succeeded: bool,
    /// `passed`, or which test failed and why.
    pub summary: String,
    /// The document of `dsm test NAME --format json`.
    #[schema(value_type = Object)]
    pub test: Value,
}

/// An approved request.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestApproved {
    /// The request's id.
    pub id: String,
    /// `approved`.
    pub status: RequestStatus,
    /// The source it became.
    pub source: String,
    /// Its connection test's document.
    #[schema(value_type = Object)]
    pub test: Value,
    /// Whether its first sync was started (`annotations.dsm.requests.first_sync`); its
    /// outcome becomes the request's `first_sync` step.
    pub first_sync: bool,
}

fn actor(caller: &Caller) -> Actor {
    Actor {
        id: format!("token:{}", caller.name),
        role: caller.role,
        organisation: caller.organisation.clone(),
    }
}

impl From<RequestError> for Problem {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::NotFound(id) => Problem::not_found(format!("no source request `{id}`")),
            RequestError::Forbidden { message, hint } => Problem::forbidden(message).detail(hint),
            RequestError::Invalid { field, message } => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "the request is not valid")
                    .field(format!("/{}", field.replace('.', "/")), message)
            }
            RequestError::Conflict { message, hint } => {
                Problem::new(StatusCode::CONFLICT, message).detail(hint)
            }
            RequestError::TestFailed { summary, .. } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the connection test failed, so the request was not approved",
            )
            .detail(format!(
                "{summary}; approve with `override_test: true` and a `reason` to approve it anyway"
            )),
            RequestError::Other(e) => Problem::from(e),
        }
    }
}

fn secrets(values: Option<BTreeMap<String, String>>) -> BTreeMap<String, Secret> {
    values
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, Secret::new(v)))
        .collect()
}

/// The server's connector: templates as `POST /api/sources` resolves them, tests as
/// `POST /api/source-tests` runs them.
struct ApiConnector {
    app: Arc<App>,
    runtime: tokio::runtime::Handle,
}

fn problem_error(p: Problem) -> crate::error::Error {
    let detail = p.detail.clone().unwrap_or_default();
    crate::error::Error::config(format!("{} {detail}", p.title).trim().to_owned())
}

impl Connector for ApiConnector {
    fn template(&self, template: &str) -> crate::error::Result<Resolved> {
        let name = template.split("--").next().unwrap_or(template).to_owned();
        let new = edit::new_entry(
            &self.app,
            NewSource {
                name,
                template: Some(template.to_owned()),
                plugin: None,
                plugin_type: Some(PluginKind::Extractor),
                config: None,
                secrets: None,
                source: None,
            },
        )
        .map_err(problem_error)?;
        Ok(Resolved {
            entry: new.entry,
            lock: new.lock.map(|(rel, text)| (rel, text.to_owned())),
        })
    }

    fn test(
        &self,
        project: &crate::project::Project,
        name: &str,
        timeout: std::time::Duration,
    ) -> crate::error::Result<TestReport> {
        let results = self
            .runtime
            .block_on(actions::probe_source(
                &self.app,
                Arc::new(project.clone()),
                name.to_owned(),
                timeout.as_secs().max(1),
            ))
            .map_err(problem_error)?;
        Ok(lifecycle::report(&results))
    }
}

/// Runs a long lifecycle step (a connection test) on a thread of its own, outside the store's
/// turns (it takes one itself for its short steps).
async fn long<T: Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(&ApiConnector, &crate::secrets::MasterKey) -> Result<T, Problem> + Send + 'static,
) -> Result<T, Problem> {
    let connector = ApiConnector {
        app: app.clone(),
        runtime: tokio::runtime::Handle::current(),
    };
    tokio::task::spawn_blocking(move || {
        let key = sources::secret_key(connector.app.store.as_ref())?;
        f(&connector, &key)
    })
    .await
    .unwrap_or_else(|_| Err(Problem::internal()))
}

/// Submits a source request (requester or admin): 201 with its id and status. Its secrets are
/// sealed at once and never shown again; nothing is written to `meltano.yml`.
#[utoipa::path(post, path = "/api/requests", tag = "requests", request_body = NewRequestBody,
    responses((status = 201, body = RequestChanged, headers(("Location" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn submit_request(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiJson(body): ApiJson<NewRequestBody>,
) -> Result<Response, Problem> {
    let actor = actor(&caller);
    let app2 = app.clone();
    let r = blocking(move || {
        let (project, _) = app2.project()?;
        let key = sources::secret_key(app2.store.as_ref())?;
        lifecycle::prune_expired(app2.store.as_ref(), &key, &project, VIA)?;
        let sub = Submission {
            request: RequestRevision {
                name: body.name,
                template: body.template,
                plugin: body.plugin,
                config: body.config.unwrap_or_default(),
                secrets: Vec::new(),
                classification: body.classification,
                description: body.description,
                notes: body.notes,
            },
            secrets: secrets(body.secrets),
        };
        let r = lifecycle::submit(app2.store.as_ref(), &key, &project, &actor, VIA, sub)?;
        crate::requests::events::announce(&project, app2.store.clone(), &r);
        Ok(r)
    })
    .await?;
    let mut response = (
        StatusCode::CREATED,
        Json(RequestChanged {
            id: r.id.clone(),
            status: r.status,
        }),
    )
        .into_response();
    response.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&format!("/api/requests/{}", r.id))
            .map_err(|_| Problem::internal())?,
    );
    Ok(response)
}

/// The requests the caller may see, newest first: a requester's own; every request for
/// approvers and admins (`mine=true`: their own).
#[utoipa::path(get, path = "/api/requests", tag = "requests", params(RequestsQuery),
    responses((status = 200, body = RequestList),
        (status = 403, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn list_requests(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<RequestsQuery>,
) -> Result<Response, Problem> {
    let actor = actor(&caller);
    let list = blocking(move || {
        Ok(lifecycle::list(
            app.store.as_ref(),
            &actor,
            q.mine.unwrap_or(false),
            q.status,
        )?)
    })
    .await?;
    Ok(Json(RequestList { requests: list }).into_response())
}

/// One request with its history (never its secret values); 404 for one the caller may not
/// see.
#[utoipa::path(get, path = "/api/requests/{id}", tag = "requests", params(RequestId),
    responses((status = 200, body = RequestRecord),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn get_request(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let actor = actor(&caller);
    let r = blocking(move || Ok(lifecycle::get(app.store.as_ref(), &actor, &id)?)).await?;
    Ok(Json(r).into_response())
}

/// Runs a pending request's connection test (approver or admin) and records its result.
#[utoipa::path(post, path = "/api/requests/{id}/test", tag = "requests", params(RequestId),
    responses((status = 200, body = RequestTested),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn test_request(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let actor = actor(&caller);
    let (r, report) = long(&app, move |c, key| {
        let (project, _) = c.app.project()?;
        Ok(lifecycle::test(
            c.app.store.as_ref(),
            key,
            &project,
            &actor,
            VIA,
            &id,
            c,
        )?)
    })
    .await?;
    Ok(Json(RequestTested {
        id: r.id,
        status: r.status,
        succeeded: report.succeeded,
        summary: report.summary,
        test: report.document,
    })
    .into_response())
}

/// Approves a pending request (approver or admin; 403 for its own requester): its connection
/// test runs first and a failure refuses (422) unless `override_test` with a `reason`. The
/// source is added to `meltano.yml`, its secrets move to the encrypted store, its status is
/// `active`.
#[utoipa::path(post, path = "/api/requests/{id}/approve", tag = "requests", params(RequestId),
    request_body = ApproveBody,
    responses((status = 200, body = RequestApproved),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn approve_request(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ApproveBody>,
) -> Result<Response, Problem> {
    let actor = actor(&caller);
    let actor_again = actor.clone();
    let reason = if body.override_test.unwrap_or(false) {
        Some(body.reason.unwrap_or_default())
    } else {
        None
    };
    let approval = long(&app, move |c, key| {
        let (project, _) = c.app.project()?;
        let approval = lifecycle::approve(
            c.app.store.as_ref(),
            key,
            &project,
            &actor,
            VIA,
            &id,
            reason.as_deref(),
            c,
        )?;
        crate::requests::events::announce(&project, c.app.store.clone(), &approval.request);
        Ok(approval)
    })
    .await?;
    app.reload_if_changed()?;
    // The first sync runs after the answer, on a thread of its own; its outcome is the
    // request's `first_sync` step.
    let first_sync = approval.first_sync;
    if first_sync {
        let app = app.clone();
        let actor = actor_again;
        let request = approval.request.clone();
        tokio::task::spawn_blocking(move || {
            let result = sources::secret_key(app.store.as_ref())
                .map_err(|p| problem_error(p).into())
                .and_then(|key| {
                    lifecycle::first_sync(
                        app.store.as_ref(),
                        &key,
                        &actor,
                        VIA,
                        &request,
                        &app.root,
                        &app.environment,
                        app.database_uri.as_deref(),
                    )
                });
            if let Err(e) = result {
                tracing::warn!(error = %crate::error::Error::from(e).message(), "the first sync of an approved request could not run");
            }
        });
    }
    Ok(Json(RequestApproved {
        id: approval.request.id.clone(),
        status: approval.request.status,
        source: approval.request.request.name.clone(),
        test: approval.test.document,
        first_sync,
    })
    .into_response())
}

/// Rejects a pending request with a reason (approver or admin; 403 for its own requester; 422
/// without a reason).
#[utoipa::path(post, path = "/api/requests/{id}/reject", tag = "requests", params(RequestId),
    request_body = RejectBody,
    responses((status = 200, body = RequestChanged),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn reject_request(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RejectBody>,
) -> Result<Response, Problem> {
    let actor = actor(&caller);
    let r = blocking(move || {
        let key = sources::secret_key(app.store.as_ref())?;
        let r = lifecycle::reject(
            app.store.as_ref(),
            &key,
            &actor,
            VIA,
            &id,
            body.reason.as_deref(),
        )?;
        let (project, _) = app.project()?;
        crate::requests::events::announce(&project, app.store.clone(), &r);
        Ok(r)
    })
    .await?;
    Ok(Json(RequestChanged {
        id: r.id,
        status: r.status,
    })
    .into_response())
}

/// Resubmits a rejected request (its requester only), changed by the fields given.
#[utoipa::path(post, path = "/api/requests/{id}/resubmit", tag = "requests", params(RequestId),
    request_body = ResubmitBody,
    responses((status = 200, body = RequestChanged),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn resubmit_request(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ResubmitBody>,
) -> Result<Response, Problem> {
    let actor = actor(&caller);
    let r = blocking(move || {
        let (project, _) = app.project()?;
        let key = sources::secret_key(app.store.as_ref())?;
        let old = lifecycle::get(app.store.as_ref(), &actor, &id)?;
        let mut request = old.request;
        if body.template.is_some() {
            request.template = body.template;
            request.plugin = None;
        }
        if body.plugin.is_some() {
            request.plugin = body.plugin;
            request.template = None;
        }
        if let Some(config) = body.config {
            request.config.extend(config);
        }
        if let Some(c) = body.classification {
            request.classification = c;
        }
        if body.description.is_some() {
            request.description = body.description;
        }
        if body.notes.is_some() {
            request.notes = body.notes;
        }
        let sub = Submission {
            request,
            secrets: secrets(body.secrets),
        };
        let r = lifecycle::resubmit(
            app.store.as_ref(),
            &key,
            &project,
            &actor,
            VIA,
            &id,
            Some(sub),
        )?;
        crate::requests::events::announce(&project, app.store.clone(), &r);
        Ok(r)
    })
    .await?;
    Ok(Json(RequestChanged {
        id: r.id,
        status: r.status,
    })
    .into_response())
}

/// Cancels a pending or rejected request (its requester, or an admin); its secrets are
/// destroyed.
#[utoipa::path(post, path = "/api/requests/{id}/cancel", tag = "requests", params(RequestId),
    responses((status = 200, body = RequestChanged),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn cancel_request(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let actor = actor(&caller);
    let r = blocking(move || {
        let key = sources::secret_key(app.store.as_ref())?;
        Ok(lifecycle::cancel(
            app.store.as_ref(),
            &key,
            &actor,
            VIA,
            &id,
        )?)
    })
    .await?;
    Ok(Json(RequestChanged {
        id: r.id,
        status: r.status,
    })
    .into_response())
}

//! The service endpoints: liveness, readiness, the OpenAPI document, the flow map, the audit
//! log and the Prometheus metrics.

use super::*;

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Alive {
    /// Always `ok`.
    pub status: String,
}

/// Liveness: the process answers. Needs no token.
#[utoipa::path(get, path = "/healthz", tag = "service", security(()),
    responses((status = 200, body = Alive)))]
pub(super) async fn healthz() -> Json<Alive> {
    Json(Alive {
        status: "ok".into(),
    })
}

/// Readiness: the store answers and `meltano.yml` loads. Needs no token.
#[utoipa::path(get, path = "/readyz", tag = "service", security(()),
    responses((status = 200, body = Alive), (status = 503, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn readyz(State(app): State<Arc<App>>) -> Result<Json<Alive>, Problem> {
    let store = app.store.clone();
    blocking(move || {
        store.list_tokens().map(|_| ()).map_err(|e| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the system store does not answer",
            )
            .detail(e.message().to_owned())
        })
    })
    .await?;
    // A file that stopped loading keeps the last good project in use, but the server is not
    // serving what is on disk: not ready until it is fixed.
    let loaded = app.loaded();
    if let Some(error) = loaded.error {
        return Err(
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "meltano.yml does not load")
                .detail(error),
        );
    }
    Ok(Json(Alive {
        status: "ready".into(),
    }))
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "service",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub(super) async fn openapi_json(_caller: Caller) -> Json<&'static Value> {
    Json(openapi_document())
}

// ----- flows, audit, metrics -----

/// The flow map: the document of `dsm flows --format json`.
#[utoipa::path(get, path = "/api/flows", tag = "flows",
    responses((status = 200, body = FlowsDocument),
        (status = 401, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn flows(
    State(app): State<Arc<App>>,
    caller: Caller,
) -> Result<Response, Problem> {
    let (project, loaded) = app.project()?;
    let store = app.store.clone();
    let viewer = (!caller.sees_all()).then(|| caller.viewer());
    blocking(move || {
        let mut flows = crate::registry::flowmap::flows_with_status(&project, store.as_ref())?;
        // Only flows whose every extractor and loader the caller sees.
        if let Some(viewer) = viewer {
            flows.retain(|f| {
                f.chains.iter().flatten().all(|step| {
                    !matches!(step.role.as_str(), "extractor" | "loader")
                        || viewer.sees_name(&loaded.sources, &step.name)
                })
            });
        }
        Ok(Json(flows).into_response())
    })
    .await
}

/// Filters and paging of `GET /api/audit`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only entries at or after this time (`2026-01-31` or RFC 3339).
    pub since: Option<String>,
    /// Only entries before this time.
    pub until: Option<String>,
    /// Entries per page (1 to 500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The audit log, oldest first (admin only): who changed what, names never values.
#[utoipa::path(get, path = "/api/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Page<AuditEntry>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn audit(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Response, Problem> {
    caller.require(Role::Admin)?;
    if let Some(org) = &caller.organisation {
        return Err(Problem::forbidden(format!(
            "token `{}` is limited to organisation `{org}`; the audit log spans every organisation",
            caller.name
        ))
        .detail("read it with an admin token without an organisation, or `dsm audit list`"));
    }
    let paging = Paging::read(q.limit, q.cursor.as_deref())?;
    let since = time_param("since", &q.since)?.map(crate::store::format_time);
    let until = time_param("until", &q.until)?.map(crate::store::format_time);
    let store = app.store.clone();
    blocking(move || {
        let records = crate::secrets::audit::list(store.as_ref(), since.as_deref())
            .map_err(crate::error::Error::from)?;
        let records: Vec<_> = records
            .into_iter()
            .filter(|r| until.as_deref().is_none_or(|u| r.at.as_str() < u))
            .collect();
        Ok(Json(paging.page(records)).into_response())
    })
    .await
}

/// The Prometheus text of `dsm metrics`.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain"),
        (status = 401, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn metrics(
    State(app): State<Arc<App>>,
    caller: Caller,
) -> Result<Response, Problem> {
    let store = app.store.clone();
    let viewer = (!caller.sees_all()).then(|| caller.viewer());
    let sources = app.loaded().sources;
    blocking(move || {
        let mut runs = store.list_runs_since(DateTime::<Utc>::UNIX_EPOCH)?;
        let mut pruned = store.pruned_totals()?;
        // Only the runs of sources the caller sees (pruned flow totals name no source).
        if let Some(viewer) = viewer {
            runs.retain(|r| viewer.sees_run(&sources, r));
            pruned.retain(|t| t.kind != "flow" && viewer.sees_name(&sources, &t.subject));
        }
        let snap = crate::registry::snapshot(&runs, &pruned, Utc::now());
        let mut response = crate::registry::render_prometheus(&snap).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        Ok(response)
    })
    .await
}

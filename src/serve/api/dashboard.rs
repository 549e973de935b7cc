//! What the web dashboard needs besides the registry and runs, public like the rest of the
//! API: the plugin catalog with declared settings (the wizard's templates), an overview of
//! every source by status and health, and operator status changes with a reason.

use super::*;
use crate::registry::health::Verdict;
use crate::registry::status::{OperatorStatus, set_operator_status, source_statuses};

cli_document!(
    CatalogPlugin,
    "An entry of `dsm plugins list --available --format json`: a plugin of dsm's catalog with its declared settings."
);

/// Filters and paging of `GET /api/plugins`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PluginsQuery {
    /// Only `extractor` or `loader`.
    #[param(value_type = Option<PluginKind>)]
    pub plugin_type: Option<String>,
    /// Only plugins whose name, variant, label, description or keywords hold every word.
    pub q: Option<String>,
    /// Entries per page (1 to 500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// dsm's catalog of extractors and loaders a source can be registered from (`template` of
/// `POST /api/sources`), in catalog order, with their declared settings (sensitive ones
/// without a default).
#[utoipa::path(get, path = "/api/plugins", tag = "sources", params(PluginsQuery),
    responses((status = 200, body = Page<CatalogPlugin>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn list_plugins(
    _caller: Caller,
    ApiQuery(q): ApiQuery<PluginsQuery>,
) -> Result<Json<Page<Value>>, Problem> {
    use crate::project::{PluginType, hub};
    let paging = Paging::read(q.limit, q.cursor.as_deref())?;
    let kind: Option<PluginKind> = parse_enum("plugin_type", &q.plugin_type)?;
    let search = q.q.filter(|s| !s.trim().is_empty());
    let all: Vec<&hub::Known> = hub::all()
        .iter()
        .filter(|k| match kind {
            Some(PluginKind::Extractor) => k.plugin_type == PluginType::Extractors,
            Some(PluginKind::Loader) => k.plugin_type == PluginType::Loaders,
            None => matches!(k.plugin_type, PluginType::Extractors | PluginType::Loaders),
        })
        .filter(|k| search.as_deref().is_none_or(|s| hub::matches(k, s)))
        .collect();
    let page = paging.page(all);
    Ok(Json(Page {
        items: page.items.into_iter().map(hub::document).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// How many sources have a status.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusCount {
    /// The status.
    pub status: SourceStatus,
    /// How many sources have it.
    pub count: usize,
}

/// How many extractors have a health verdict (the last 24 hours).
#[derive(Debug, Serialize, ToSchema)]
pub struct VerdictCount {
    /// `failing`, `stale`, `degraded`, `healthy` or `no-runs`.
    pub verdict: String,
    /// How many extractors have it.
    pub count: usize,
}

/// A source that needs a look: its last run failed, or its health is not good.
#[derive(Debug, Serialize, ToSchema)]
pub struct Attention {
    /// The source.
    pub source: String,
    /// Its status.
    pub status: SourceStatus,
    /// Its health verdict (`failing`, `stale`, `degraded`, `healthy` or `no-runs`).
    pub verdict: String,
    /// Why: the health reason, or the status reason.
    pub reason: Option<String>,
}

/// A receiver of notifications whose deliveries failed (the last 24 hours).
#[derive(Debug, Serialize, ToSchema)]
pub struct FailedDelivery {
    /// The receiver (`notifications[I] webhook scheme://host` or `notifications[I] command
    /// PROGRAM`).
    pub receiver: String,
    /// Deliveries whose every attempt failed.
    pub failed: usize,
    /// Deliveries to it.
    pub deliveries: usize,
    /// The newest failure's event and reason.
    pub last_error: Option<String>,
}

/// Every source at a glance.
#[derive(Debug, Serialize, ToSchema)]
pub struct Overview {
    /// How many sources (extractors and loaders) the project has.
    pub total: usize,
    /// Sources per status (every status, zero included).
    pub by_status: Vec<StatusCount>,
    /// Extractors per health verdict (every verdict, zero included).
    pub by_verdict: Vec<VerdictCount>,
    /// Up to 50 sources needing a look, worst first: failing, in error, stale, degraded.
    pub attention: Vec<Attention>,
    /// Receivers of notifications with failed deliveries in the last 24 hours (shown to
    /// callers without an organisation).
    pub failed_deliveries: Vec<FailedDelivery>,
}

/// The most entries of [`Overview::attention`].
const ATTENTION_MAX: usize = 50;

/// Every source by status and health, the ones needing a look first (the dashboard's overview).
#[utoipa::path(get, path = "/api/overview", tag = "sources",
    responses((status = 200, body = Overview),
        (status = 401, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn overview(
    State(app): State<Arc<App>>,
    caller: Caller,
) -> Result<Json<Overview>, Problem> {
    let (project, loaded) = app.project()?;
    let store = app.store.clone();
    let viewer = caller.viewer();
    blocking(move || {
        // Only the sources the caller sees, in the counts too.
        let visible: Vec<&SourceInfo> = loaded.sources.iter().filter(|s| viewer.sees(s)).collect();
        let names: Vec<&str> = visible.iter().map(|s| s.name.as_str()).collect();
        let states = source_statuses(store.as_ref(), &names)?;
        let now = Utc::now();
        let window = chrono::TimeDelta::try_hours(24).expect("24 hours is a valid duration");
        let expected_every = schedule_expectations(&project, now);
        let lookback = expected_every
            .values()
            .copied()
            .chain([window])
            .max()
            .unwrap_or(window);
        let runs = store.list_runs_since(now - lookback)?;
        let extractors: Vec<String> = visible
            .iter()
            .filter(|s| s.plugin_type == "extractor")
            .map(|s| s.name.clone())
            .collect();
        let report = health_report(
            &runs,
            &HealthOptions {
                now,
                since: now - window,
                failing_after: 3,
                expected_every,
                known_sources: extractors.clone(),
            },
        );
        let health: std::collections::HashMap<&str, &crate::registry::Health> = report
            .iter()
            .filter(|h| matches!(h.subject, Subject::Source(_)))
            .map(|h| (h.subject.name(), h))
            .collect();
        let verdicts = [
            Verdict::Failing,
            Verdict::Stale,
            Verdict::Degraded,
            Verdict::Healthy,
            Verdict::NoRuns,
        ];
        let by_verdict = verdicts
            .iter()
            .map(|v| VerdictCount {
                verdict: v.as_str().to_owned(),
                count: extractors
                    .iter()
                    .filter(|e| health.get(e.as_str()).is_some_and(|h| h.verdict == *v))
                    .count(),
            })
            .collect();
        let by_status = SourceStatus::ALL
            .iter()
            .map(|s| StatusCount {
                status: *s,
                count: states.iter().filter(|st| st.status == *s).count(),
            })
            .collect();
        let rank = |status: SourceStatus, verdict: Option<Verdict>| match (status, verdict) {
            (_, Some(Verdict::Failing)) => Some(0),
            (SourceStatus::Error, _) => Some(1),
            (_, Some(Verdict::Stale)) => Some(2),
            (_, Some(Verdict::Degraded)) => Some(3),
            _ => None,
        };
        let mut attention: Vec<(usize, Attention)> = states
            .iter()
            .filter_map(|st| {
                let h = health.get(st.name.as_str());
                let r = rank(st.status, h.map(|h| h.verdict))?;
                Some((
                    r,
                    Attention {
                        source: st.name.clone(),
                        status: st.status,
                        verdict: h.map_or("no-runs", |h| h.verdict.as_str()).to_owned(),
                        reason: h
                            .filter(|h| h.verdict != Verdict::Healthy)
                            .map(|h| h.reason.clone())
                            .or_else(|| st.reason.clone()),
                    },
                ))
            })
            .collect();
        let failed_deliveries = if viewer.organisation.is_none() {
            crate::notify::failed_deliveries(store.as_ref(), now - window)?
                .into_iter()
                .map(|f| FailedDelivery {
                    receiver: f.receiver,
                    failed: f.failed,
                    deliveries: f.deliveries,
                    last_error: f.last_error,
                })
                .collect()
        } else {
            Vec::new()
        };
        attention.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.source.cmp(&b.1.source)));
        attention.truncate(ATTENTION_MAX);
        Ok(Json(Overview {
            total: visible.len(),
            by_status,
            by_verdict,
            attention: attention.into_iter().map(|(_, a)| a).collect(),
            failed_deliveries,
        }))
    })
    .await
}

/// A status an operator sets.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperatorStatusParam {
    /// Enabled again (clears a disable or maintenance).
    Active,
    /// Disabled: syncs skip it.
    Inactive,
    /// Under maintenance: syncs skip it with a notice.
    Maintenance,
}

/// The body of `POST /api/sources/{id}/status`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusChange {
    /// The new status.
    pub status: OperatorStatusParam,
    /// Why (kept in the status history; required for `inactive` and `maintenance`).
    pub reason: Option<String>,
}

/// Disables, enables or puts a source under maintenance (operator), as `dsm sources disable`,
/// `enable` and `maintenance` do; answers the source as listed.
#[utoipa::path(post, path = "/api/sources/{id}/status", tag = "sources", params(SourceId),
    request_body = StatusChange,
    responses((status = 200, body = SourceEntry),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn set_status(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StatusChange>,
) -> Result<Json<SourceEntry>, Problem> {
    caller.require(Role::Operator)?;
    let (_, loaded) = app.project()?;
    let info = super::sources::find_own_source(&loaded.sources, &id, &caller)?.clone();
    let status = match body.status {
        OperatorStatusParam::Active => OperatorStatus::Active,
        OperatorStatusParam::Inactive => OperatorStatus::Inactive,
        OperatorStatusParam::Maintenance => OperatorStatus::Maintenance,
    };
    let reason = body
        .reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    if status != OperatorStatus::Active && reason.is_none() {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "a reason is required to set `{}` to {}",
                info.name,
                status.as_str()
            ),
        )
        .detail("say why, for the status history (for example \"vendor API migration\")")
        .field("/reason", "give a reason"));
    }
    if reason.as_ref().is_some_and(|r| r.len() > 1000) {
        return Err(
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "the reason is too long")
                .field("/reason", "use at most 1000 bytes"),
        );
    }
    let store = app.store.clone();
    let user = format!("dsm serve (token {})", caller.name);
    let name = info.name.clone();
    let environment = loaded.environment.clone();
    let entry = blocking(move || {
        set_operator_status(
            store.as_ref(),
            &name,
            status,
            reason.as_deref(),
            Some(&user),
            Utc::now(),
        )?;
        let (mut entries, _) = list_sources(
            store.as_ref(),
            std::slice::from_ref(&info),
            &SourceFilter::default(),
            environment.as_deref(),
            0,
            1,
        )?;
        entries.pop().ok_or_else(Problem::internal)
    })
    .await?;
    app.runs.emit(
        "source_status",
        serde_json::json!({"source": entry.info.name, "status": entry.status.as_str()}),
    );
    super::record_audit(
        &app,
        &caller,
        "source.status",
        [format!("{}={}", entry.info.name, status.as_str())],
    )
    .await;
    Ok(Json(entry))
}

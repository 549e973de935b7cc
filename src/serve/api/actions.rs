//! Actions on sources and runs: a connection test, a sync, stopping a run this server started.

use super::*;
use crate::serve::executor::{Refused, RunRequest};

/// The longest `timeout` of a test, in seconds.
pub const MAX_TEST_TIMEOUT: u64 = 3600;

/// `timeout` of `POST /api/sources/{id}/test`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TestQuery {
    /// Seconds the test may take before it is stopped and reported as timed out (1 to 3600,
    /// default 60).
    #[param(minimum = 1, maximum = 3600)]
    pub timeout: Option<u64>,
}

/// Runs the same connection test as `dsm test NAME` (operator), synchronously, and answers
/// with the document of `dsm test NAME --format json`: the source's results and the totals.
/// A failed test is still a 200 (`succeeded: false`); the source's status records it.
#[utoipa::path(post, path = "/api/sources/{id}/test", tag = "sources", params(SourceId, TestQuery),
    responses((status = 200, body = TestDocument),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn test_source(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<TestQuery>,
) -> Result<Response, Problem> {
    caller.require(Role::Operator)?;
    let timeout = test_timeout(&q)?;
    let (project, loaded) = app.project()?;
    let info = super::sources::find_own_source(&loaded.sources, &id, &caller)?.clone();
    let results = probe_source(&app, project.clone(), info.name.clone(), timeout).await?;
    let store = app.store.clone();
    let source = info.name.clone();
    let (results, status) = blocking(move || {
        for warning in
            crate::registry::plan::record_results(&project, &store, &[source.as_str()], &results)
        {
            tracing::warn!("{warning}");
        }
        let status = crate::registry::status::source_statuses(store.as_ref(), &[source.as_str()])
            .ok()
            .and_then(|s| s.into_iter().next())
            .map(|s| s.status.as_str());
        Ok((results, status))
    })
    .await?;
    if let Some(status) = status {
        app.runs.emit(
            "source_status",
            serde_json::json!({"source": info.name, "status": status}),
        );
    }
    super::record_audit(&app, &caller, "source.test", [info.name.clone()]).await;
    Ok(Json(test_document(&results)).into_response())
}

/// Tests a source's definition before it is saved (operator; admin for a full `plugin`
/// definition, which names what runs): the body of `POST /api/sources`, checked the same way,
/// and the same test as `POST /api/sources/{id}/test`. Nothing is written: not `meltano.yml`,
/// not the secrets (they reach the plugin only through its private config file), not a test
/// result. 409 when the name is taken.
#[utoipa::path(post, path = "/api/source-tests", tag = "sources", params(TestQuery),
    request_body = super::edit::NewSource,
    responses((status = 200, body = TestDocument),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn test_new_source(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<TestQuery>,
    ApiJson(body): ApiJson<super::edit::NewSource>,
) -> Result<Response, Problem> {
    caller.require(Role::Operator)?;
    if body.plugin.is_some() {
        caller.require(Role::Admin)?;
    }
    let timeout = test_timeout(&q)?;
    let new = super::edit::new_entry(&app, body)?;
    let name = new.name.clone();
    let app2 = app.clone();
    let project = blocking(move || super::edit::project_with(&app2, new)).await?;
    let results = probe_source(&app, Arc::new(project), name.clone(), timeout).await?;
    super::record_audit(&app, &caller, "source.test", [name]).await;
    Ok(Json(test_document(&results)).into_response())
}

/// The `timeout` of a test, checked.
fn test_timeout(q: &TestQuery) -> Result<u64, Problem> {
    let timeout = q.timeout.unwrap_or(60);
    if !(1..=MAX_TEST_TIMEOUT).contains(&timeout) {
        return Err(Problem::bad_request("`timeout` is out of range").field(
            "#/query/timeout",
            format!("use 1 to {MAX_TEST_TIMEOUT} seconds"),
        ));
    }
    Ok(timeout)
}

/// Runs `dsm test NAME`'s probes of `name` in `project`; 422 when it has no test.
pub(super) async fn probe_source(
    app: &App,
    project: Arc<crate::project::Project>,
    name: String,
    timeout: u64,
) -> Result<Vec<crate::registry::probe::ProbeResult>, Problem> {
    let choice = app.environment.clone();
    let shown = name.clone();
    let (probes, run_dir) = blocking(move || {
        let env = project.active_environment(&choice)?.cloned();
        let (probes, run_dir) =
            crate::registry::plan::probes_for_plugin(&project, env.as_ref(), &name)?;
        Ok((probes, run_dir))
    })
    .await?;
    if probes.is_empty() {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("`{shown}` has no test"),
        )
        .detail(
            "extractors, dsm's built-in loaders and plugins with `test*` commands have tests",
        ));
    }
    Ok(crate::registry::probe::run_probes(
        probes,
        1,
        std::time::Duration::from_secs(timeout),
        run_dir,
    )
    .await)
}

/// The document of `dsm test NAME --format json`: the results and the totals.
fn test_document(results: &[crate::registry::probe::ProbeResult]) -> Value {
    use crate::registry::probe::ProbeStatus;
    let failed = results.iter().filter(|r| r.status.is_failure()).count();
    let count = |s: ProbeStatus| results.iter().filter(|r| r.status == s).count();
    serde_json::json!({
        "results": results,
        "passed": count(ProbeStatus::Passed),
        "failed": failed,
        "skipped": count(ProbeStatus::Skipped),
        "succeeded": failed == 0,
    })
}

/// The answer of `POST /api/sources/{id}/sync`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunStarted {
    /// The run's id (`GET /api/runs/{id}`, `DELETE /api/runs/{id}`).
    pub run_id: String,
}

/// Starts the flow `dsm sync NAME` would run for the source (operator), in this server's
/// process with the same run lock as the CLI: 202 with the run id at once; the run's progress
/// is on `GET /api/events`. 409 when it already runs, here or anywhere sharing the system
/// database; 422 when the source has no flow.
#[utoipa::path(post, path = "/api/sources/{id}/sync", tag = "sources", params(SourceId),
    responses((status = 202, body = RunStarted),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn sync_source(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    caller.require(Role::Operator)?;
    let (project, loaded) = app.project()?;
    let info = super::sources::find_own_source(&loaded.sources, &id, &caller)?.clone();
    if let Some(run) = app.runs.running_for(&info.name) {
        return Err(already_running(
            &info.name,
            &format!("run `{run}` of this server"),
        ));
    }
    if app.installs.is_installing(&info.name) {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            format!("`{}` is being installed", info.name),
        )
        .detail("wait for its `install_progress` event with status `installed`, then sync"));
    }
    let choice = app.environment.clone();
    let store = app.store.clone();
    let database = app.database_uri.clone();
    let source = info.name.clone();
    let request = blocking(move || {
        let env = project.active_environment(&choice)?.cloned();
        let all = crate::orchestrate::project_flows(&project).map_err(crate::error::Error::from)?;
        let flow = crate::orchestrate::select_by_names(&all, std::slice::from_ref(&source))
            .ok()
            .and_then(|chosen| chosen.first().map(|f| (*f).clone()))
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("`{source}` has no flow to sync"),
                )
                .detail(format!(
                    "give it a loader: `annotations.dsm.default_loader` on `{source}`, a job or a schedule; `GET /api/flows` lists the flows"
                ))
            })?;
        let options = RunOptions {
            state_id: flow.state_id.clone(),
            timeout: flow.timeout,
            trigger: crate::orchestrate::attempt_trigger("serve", &flow.name, 1, 1),
            database_uri: database,
            ..RunOptions::default()
        };
        if let Some(lock) = crate::serve::executor::lock_of(env.as_ref(), &flow, &options)
            && let Some(holder) = store.lock_holder(&lock)?
            && !holder.stale
        {
            let by = match &holder.run_id {
                Some(run) => format!("run `{run}` (pid {} on `{}`)", holder.pid, holder.host),
                None => format!("pid {} on `{}`", holder.pid, holder.host),
            };
            return Err(already_running(&source, &by));
        }
        Ok(RunRequest {
            project,
            environment: env,
            flow,
            source,
            options,
        })
    })
    .await?;
    let source = request.source.clone();
    match app.runs.start(request) {
        Ok(run_id) => {
            super::record_audit(&app, &caller, "source.sync", [source]).await;
            Ok((
                StatusCode::ACCEPTED,
                Json(RunStarted {
                    run_id: run_id.to_string(),
                }),
            )
                .into_response())
        }
        Err(Refused::Running(run)) => Err(already_running(
            &source,
            &format!("run `{run}` of this server"),
        )),
        Err(Refused::ShuttingDown) => Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        )
        .detail("start the sync again once the server is back")),
    }
}

fn already_running(source: &str, by: &str) -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        format!("`{source}` is already running"),
    )
    .detail(format!(
        "held by {by}; wait for it to finish (GET /api/events tells when)"
    ))
}

/// The answer of `DELETE /api/runs/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunStopping {
    /// The run's id.
    pub run_id: String,
    /// Always `stopping`: the loader flushes, then the run is recorded as `killed`
    /// (`run_finished` on `GET /api/events`).
    pub status: String,
}

/// Stops a run this server started (operator): the extractor is stopped, the loader flushes
/// what it has, and the run is recorded as `killed`. 409 for a run this server did not start.
#[utoipa::path(delete, path = "/api/runs/{id}", tag = "runs", params(RunIdParam),
    responses((status = 202, body = RunStopping),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn stop_run(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    caller.require(Role::Operator)?;
    let no_run = |id: &str| {
        Problem::not_found(format!("no run `{id}` in the system database"))
            .detail("GET /api/runs lists recent runs")
    };
    if let Some(source) = app.runs.source_of(&id) {
        // A run of a source the caller does not see does not exist for it; one of another
        // organisation's source it sees is not its to stop.
        let loaded = app.loaded();
        let viewer = caller.viewer();
        if !viewer.sees_name(&loaded.sources, &source) {
            return Err(no_run(&id));
        }
        super::sources::find_own_source(&loaded.sources, &source, &caller)?;
    }
    if app.runs.stop(&id) {
        super::record_audit(&app, &caller, "run.stop", [id.clone()]).await;
        return Ok((
            StatusCode::ACCEPTED,
            Json(RunStopping {
                run_id: id,
                status: "stopping".into(),
            }),
        )
            .into_response());
    }
    let store = app.store.clone();
    let run_id = RunId::new(id.clone());
    let viewer = caller.viewer();
    let sources = app.loaded().sources;
    let run = blocking(move || {
        Ok(store
            .get_run(&run_id)?
            .filter(|run| viewer.sees_run(&sources, run)))
    })
    .await?;
    match run {
        None => Err(no_run(&id)),
        Some(run) => Err(Problem::new(
            StatusCode::CONFLICT,
            format!("run `{id}` was not started by this server"),
        )
        .detail(if run.status == RunStatus::Running {
            "stop it where it runs (Ctrl-C or SIGTERM to its `dsm` process)".to_owned()
        } else {
            format!("it is not running: its status is `{}`", run.status.as_str())
        })),
    }
}

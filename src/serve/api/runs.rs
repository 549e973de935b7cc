//! The run history: listing and one run with its log tail.

use super::*;

/// Filters and paging of `GET /api/runs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// Only runs of this extractor.
    pub source: Option<String>,
    /// Only runs with this status.
    #[param(value_type = Option<RunStatusParam>)]
    pub status: Option<String>,
    /// Only runs started at or after this time (`2026-01-31` or RFC 3339).
    pub since: Option<String>,
    /// Only runs started before this time.
    pub until: Option<String>,
    /// Entries per page (1 to 500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A run's status in the run history.
#[derive(Debug, ToSchema)]
#[schema(as = RunStatus)]
pub enum RunStatusParam {
    /// Still going.
    #[schema(rename = "running")]
    Running,
    /// Succeeded.
    #[schema(rename = "success")]
    Success,
    /// Failed.
    #[schema(rename = "failed")]
    Failed,
    /// Ended without finishing.
    #[schema(rename = "killed")]
    Killed,
}

#[derive(Serialize)]
struct Listed<'a> {
    #[serde(flatten)]
    run: &'a RunRecord,
    attempt: u32,
}

/// The run history, newest first.
#[utoipa::path(get, path = "/api/runs", tag = "runs", params(RunsQuery),
    responses((status = 200, body = Page<RunListItem>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn list_runs(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<RunsQuery>,
) -> Result<Response, Problem> {
    let paging = Paging::read(q.limit, q.cursor.as_deref())?;
    let status: Option<RunStatus> = q
        .status
        .as_deref()
        .map(|t| {
            t.parse().map_err(|_| {
                let accepted: Vec<&str> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
                Problem::bad_request("`status` is not valid".to_string()).field(
                    "#/query/status".to_string(),
                    format!("use one of: {}", accepted.join(", ")),
                )
            })
        })
        .transpose()?;
    let since = time_param("since", &q.since)?;
    let until = time_param("until", &q.until)?;
    let store = app.store.clone();
    let viewer = (!caller.sees_all()).then(|| caller.viewer());
    let sources = app.loaded().sources;
    blocking(move || {
        let runs = match since {
            Some(since) => store.list_runs_since(since)?,
            None => store.list_runs(&RunFilter {
                state_id: None,
                status,
                limit: None,
            })?,
        };
        let runs: Vec<RunRecord> = runs
            .into_iter()
            .filter(|r| status.is_none_or(|s| r.status == s))
            .filter(|r| until.is_none_or(|u| r.started_at < u))
            .filter(|r| viewer.as_ref().is_none_or(|v| v.sees_run(&sources, r)))
            .filter(|r| {
                q.source.as_deref().is_none_or(|src| {
                    r.plugins
                        .iter()
                        .any(|p| p.role == "extractor" && p.plugin == src)
                })
            })
            .collect();
        let page = paging.page(runs);
        let items: Vec<Listed<'_>> = page
            .items
            .iter()
            .map(|run| Listed {
                run,
                attempt: crate::orchestrate::attempt_of_trigger(&run.trigger),
            })
            .collect();
        Ok(
            Json(serde_json::json!({ "items": items, "next_cursor": page.next_cursor }))
                .into_response(),
        )
    })
    .await
}

/// Path parameter of a run.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RunIdParam {
    /// The run id.
    pub id: String,
}

/// The last `n` lines of a run's log with credentials in URLs and the project's written-out
/// secret values hidden.
pub(super) fn log_tail(path: &std::path::Path, secrets: &[String], n: usize) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    // Read only the end of a long log.
    const TAIL_BYTES: u64 = 256 * 1024;
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut bytes = Vec::new();
    if file
        .seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)))
        .is_err()
        || file.take(TAIL_BYTES).read_to_end(&mut bytes).is_err()
    {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|line| {
            let mut line = crate::plugin::install::redact(line);
            for secret in secrets {
                if secret.len() >= 4 {
                    line = line.replace(secret.as_str(), "********");
                }
            }
            line
        })
        .collect()
}

/// Every secret value written out in the project's plugin configs (not `$VAR` references).
pub(super) fn written_secrets(project: &crate::project::Project) -> Vec<String> {
    fn walk(value: &Value, secret: bool, out: &mut Vec<String>) {
        match value {
            Value::String(s) if secret && !s.starts_with('$') => out.push(s.clone()),
            Value::Object(map) => {
                for (k, v) in map {
                    walk(v, secret || is_secret_key(k), out);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, secret, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for info in project_sources_of(project) {
        walk(&info.config, false, &mut out);
    }
    out
}

pub(super) fn project_sources_of(project: &crate::project::Project) -> Vec<SourceInfo> {
    crate::registry::catalog::project_sources(project)
}

/// One run: the document of `dsm runs show --format json` plus the tail of its log.
#[utoipa::path(get, path = "/api/runs/{id}", tag = "runs", params(RunIdParam),
    responses((status = 200, body = RunDocument),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn get_run(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let store = app.store.clone();
    let (location, root) = (app.location.clone(), app.root.clone());
    let loaded = app.loaded();
    let project = loaded.project;
    let viewer = caller.viewer();
    blocking(move || {
        let run_id = RunId::new(id);
        let run = store
            .get_run(&run_id)?
            .filter(|run| viewer.sees_run(&loaded.sources, run))
            .ok_or_else(|| {
                Problem::not_found(format!("no run `{run_id}` in the system database"))
                    .detail("GET /api/runs lists recent runs")
            })?;
        let artifacts = store.run_artifacts(&run_id)?;
        let merged = crate::store::merged::open(&location, &root)
            .and_then(|c| c.run_stats(run_id.as_str()))
            .unwrap_or_default();
        let secrets = project.as_deref().map(written_secrets).unwrap_or_default();
        let tail = run
            .log_path
            .as_deref()
            .map(|p| log_tail(p, &secrets, LOG_TAIL_LINES))
            .unwrap_or_default();
        let mut doc = serde_json::to_value(&run).map_err(|_| Problem::internal())?;
        let obj = doc.as_object_mut().ok_or_else(Problem::internal)?;
        // The document of `dsm runs show --format json`: the labels its streams had too.
        let labels = store.stream_labels(&run_id)?;
        obj.insert(
            "labels".into(),
            serde_json::to_value(&labels).map_err(|_| Problem::internal())?,
        );
        obj.insert(
            "artifacts".into(),
            serde_json::to_value(&artifacts).map_err(|_| Problem::internal())?,
        );
        if !merged.is_empty() {
            obj.insert(
                "merged_streams".into(),
                serde_json::to_value(&merged).map_err(|_| Problem::internal())?,
            );
        }
        obj.insert("log_tail".into(), serde_json::json!(tail));
        Ok(Json(doc).into_response())
    })
    .await
}

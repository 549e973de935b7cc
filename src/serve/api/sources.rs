//! The registry of sources: listing, one source with its settings, its health, credentials.

use super::*;

/// Filters and paging of `GET /api/sources`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SourcesQuery {
    /// Only sources of this type.
    #[serde(rename = "type")]
    #[param(value_type = Option<SourceType>)]
    pub source_type: Option<String>,
    /// Only sources of this provider (any case).
    pub provider: Option<String>,
    /// Only sources of this data category (any case).
    pub category: Option<String>,
    /// Only sources with this status.
    #[param(value_type = Option<SourceStatus>)]
    pub status: Option<String>,
    /// Only sources with every one of these labels (comma-separated).
    pub label: Option<String>,
    /// Only `extractor` or `loader`.
    #[param(value_type = Option<PluginKind>)]
    pub plugin_type: Option<String>,
    /// Text searched in name, provider, category, labels, type and status reason.
    pub q: Option<String>,
    /// Entries per page (1 to 500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A source's plugin type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PluginKind {
    /// An extractor (tap).
    Extractor,
    /// A loader (target).
    Loader,
}

impl super::QueryEnum for PluginKind {
    fn all() -> &'static [Self] {
        &[PluginKind::Extractor, PluginKind::Loader]
    }
    fn wire_name(self) -> &'static str {
        match self {
            PluginKind::Extractor => "extractor",
            PluginKind::Loader => "loader",
        }
    }
}

/// Lists the registry's sources (extractors and loaders), sorted by name.
#[utoipa::path(get, path = "/api/sources", tag = "sources", params(SourcesQuery),
    responses((status = 200, body = Page<SourceEntry>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn list_sources_handler(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SourcesQuery>,
) -> Result<Json<Page<SourceEntry>>, Problem> {
    let paging = Paging::read(q.limit, q.cursor.as_deref())?;
    let plugin_type: Option<PluginKind> = parse_enum("plugin_type", &q.plugin_type)?;
    let filter = SourceFilter {
        source_type: parse_enum("type", &q.source_type)?,
        status: parse_enum("status", &q.status)?,
        category: q.category,
        provider: q.provider,
        labels: q
            .label
            .iter()
            .flat_map(|l| l.split(','))
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        plugin_type: plugin_type.map(|k| match k {
            PluginKind::Extractor => "extractor".to_owned(),
            PluginKind::Loader => "loader".to_owned(),
        }),
        search: q.q.filter(|s| !s.is_empty()),
        viewer: (!caller.sees_all()).then(|| caller.viewer()),
    };
    let (_, loaded) = app.project()?;
    let store = app.store.clone();
    blocking(move || {
        let (items, more) = list_sources(
            store.as_ref(),
            &loaded.sources,
            &filter,
            loaded.environment.as_deref(),
            paging.offset,
            paging.limit,
        )?;
        Ok(Json(Page {
            items,
            next_cursor: paging.next(more),
        }))
    })
    .await
}

/// A setting that is not sensitive.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlainSetting {
    /// The setting's name.
    pub name: String,
    /// Always `false`.
    pub sensitive: bool,
    /// Whether `meltano.yml` gives it a value.
    pub is_set: bool,
    /// Its value in `meltano.yml`, else its declared default (any JSON value, or null).
    #[schema(value_type = Value, required = true)]
    pub value: Option<Value>,
    /// Its declared kind.
    pub kind: Option<String>,
}

/// A sensitive setting (declared `sensitive`, `kind: password`, or named like a credential):
/// only whether it is set, never a value.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SensitiveSetting {
    /// The setting's name.
    pub name: String,
    /// Always `true`.
    pub sensitive: bool,
    /// Whether a value is set (in `meltano.yml`, the secret store or the system database).
    pub is_set: bool,
}

/// A setting of a source. A sensitive one never carries its value.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum SettingView {
    /// A setting that is not sensitive.
    Plain(PlainSetting),
    /// A sensitive setting.
    Sensitive(SensitiveSetting),
}

/// One source with its settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceDetail {
    /// The source, as listed.
    #[serde(flatten)]
    pub entry: SourceEntry,
    /// Its declared and configured settings, sorted by name.
    pub settings: Vec<SettingView>,
    /// Where its plugin's installation stands (a source registered from a template that needs
    /// installing is installed in the background; `install_progress` events follow it).
    pub install: crate::serve::installs::InstallView,
}

/// The source called `id`, when the caller sees it: a source it may not see answers 404 like
/// one that does not exist (and is never suggested).
pub(super) fn find_source<'a>(
    sources: &'a [SourceInfo],
    id: &str,
    caller: &Caller,
) -> Result<&'a SourceInfo, Problem> {
    let viewer = caller.viewer();
    sources
        .iter()
        .find(|s| s.name == id && viewer.sees(s))
        .ok_or_else(|| {
            let mut problem =
                Problem::not_found(format!("no extractor or loader `{id}` in meltano.yml"));
            let visible = sources
                .iter()
                .filter(|s| viewer.sees(s))
                .map(|s| s.name.as_str());
            problem.detail = Some(match crate::error::did_you_mean(id, visible) {
                Some(close) => {
                    format!("did you mean `{close}`? GET /api/sources lists every source")
                }
                None => "GET /api/sources lists every source".into(),
            });
            problem
        })
}

/// The source called `id`, when the caller may act on it (test, sync, credentials, status,
/// edits): 404 when it does not see it, 403 when it sees another organisation's source.
pub(super) fn find_own_source<'a>(
    sources: &'a [SourceInfo],
    id: &str,
    caller: &Caller,
) -> Result<&'a SourceInfo, Problem> {
    let info = find_source(sources, id, caller)?;
    if caller.viewer().acts_on(info) {
        return Ok(info);
    }
    let owner = info.organisation.as_deref().map_or_else(
        || "the platform".to_owned(),
        |o| format!("organisation `{o}`"),
    );
    Err(Problem::forbidden(format!(
        "`{}` belongs to {owner}; token `{}` acts only on its organisation's sources",
        info.name, caller.name
    ))
    .detail("ask someone of its organisation, or a platform operator, to do it"))
}

/// Path parameter of a source.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SourceId {
    /// The plugin's name in `meltano.yml`.
    pub id: String,
}

/// One source: what it is, its status and its settings (sensitive ones as set / not set).
#[utoipa::path(get, path = "/api/sources/{id}", tag = "sources", params(SourceId),
    responses((status = 200, body = SourceDetail, headers(("ETag" = String, description = "The version of the source's entry; send it back in `If-Match`"))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn get_source(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let (project, loaded) = app.project()?;
    let info = find_source(&loaded.sources, &id, &caller)?.clone();
    let app2 = app.clone();
    blocking(move || {
        // A file that does not read right now (being edited, broken) gives no ETag: the last
        // good project still answers, and an edit without a fresh ETag is refused.
        let tag = super::edit::etag_of(&app2.root, &info).ok();
        let detail = source_detail(&app2, &project, &loaded, info)?;
        let response = Json(detail).into_response();
        match tag {
            Some(tag) => super::edit::with_etag(response, &tag),
            None => Ok(response),
        }
    })
    .await
}

/// The document of one source (blocking: it reads the store and the secret store).
pub(super) fn source_detail(
    app: &App,
    project: &crate::project::Project,
    loaded: &crate::serve::Loaded,
    info: SourceInfo,
) -> Result<SourceDetail, Problem> {
    let store = app.store.clone();
    {
        let filter = SourceFilter::default();
        let one = std::slice::from_ref(&info);
        let (mut entries, _) = list_sources(
            store.as_ref(),
            one,
            &filter,
            loaded.environment.as_deref(),
            0,
            1,
        )?;
        let entry = entries.pop().ok_or_else(Problem::internal)?;
        let plugin = project
            .plugins()
            .iter()
            .find(|p| p.name == info.name && p.plugin_type.singular() == info.plugin_type)
            .ok_or_else(Problem::internal)?;
        let stored: Vec<String> = crate::secrets::store::list(store.as_ref())
            .map_err(crate::error::Error::from)
            .map(|list| {
                list.into_iter()
                    .filter(|s| s.plugin == info.name)
                    .map(|s| s.setting)
                    .collect()
            })
            .unwrap_or_default();
        let namespace = crate::secrets::layer::settings_namespace(plugin.plugin_type, &plugin.name);
        let config = info.config.as_object().cloned().unwrap_or_default();
        let mut names: Vec<String> = plugin
            .settings
            .iter()
            .map(|s| s.name.clone())
            .chain(config.keys().cloned())
            .collect();
        names.sort();
        names.dedup();
        let mut settings = Vec::with_capacity(names.len());
        for name in names {
            let def = plugin.settings.iter().find(|s| s.name == name);
            let declared = def.is_some_and(|d| {
                d.sensitive == Some(true) || d.kind.as_deref() == Some("password")
            });
            let in_yml = config.get(&name).filter(|v| !v.is_null());
            let sensitive = crate::secrets::sensitive::is_sensitive(&name, declared)
                || (def.is_none() && is_secret_key(&name));
            if sensitive {
                let is_set = in_yml.is_some_and(|v| v.as_str() != Some(""))
                    || stored.contains(&name)
                    || store.get_setting(&namespace, &name)?.is_some();
                settings.push(SettingView::Sensitive(SensitiveSetting {
                    name,
                    sensitive: true,
                    is_set,
                }));
            } else {
                settings.push(SettingView::Plain(PlainSetting {
                    is_set: in_yml.is_some(),
                    value: in_yml
                        .map(crate::registry::catalog::mask_config)
                        .or_else(|| def.and_then(|d| d.value.clone())),
                    kind: def.and_then(|d| d.kind.clone()),
                    name,
                    sensitive: false,
                }));
            }
        }
        let install = app.installs.view(project, plugin);
        Ok(SourceDetail {
            entry,
            settings,
            install,
        })
    }
}

/// The source's entry of `dsm health --format json` (the last 24 hours).
#[utoipa::path(get, path = "/api/sources/{id}/health", tag = "sources", params(SourceId),
    responses((status = 200, body = HealthEntry),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn source_health(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let (project, loaded) = app.project()?;
    let info = find_source(&loaded.sources, &id, &caller)?.clone();
    let store = app.store.clone();
    blocking(move || {
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
        let report = health_report(
            &runs,
            &HealthOptions {
                now,
                since: now - window,
                failing_after: 3,
                expected_every,
                known_sources: vec![info.name.clone()],
            },
        );
        let subject = Subject::Source(info.name.clone());
        report
            .into_iter()
            .find(|h| h.subject == subject)
            .map(|h| Json(h).into_response())
            .ok_or_else(|| {
                Problem::not_found(format!("no health for `{}`", info.name))
                    .detail("health is judged for extractors, from their runs")
            })
    })
    .await
}

// ----- actions -----

/// The body of `POST /api/sources/{id}/credentials`.
/// No `Debug`: the values are secrets.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialsRequest {
    /// Sensitive settings and their new values.
    pub settings: std::collections::BTreeMap<String, String>,
}

/// What `POST /api/sources/{id}/credentials` changed: names only.
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialsSet {
    /// The source.
    pub source: String,
    /// The settings set, sorted.
    pub settings: Vec<String>,
}

/// Sets or rotates sensitive settings of a source in the encrypted secret store (operator).
/// Values never come back; the answer lists the names.
#[utoipa::path(post, path = "/api/sources/{id}/credentials", tag = "sources", params(SourceId),
    request_body = CredentialsRequest,
    responses((status = 200, body = CredentialsSet),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn set_credentials(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CredentialsRequest>,
) -> Result<Json<CredentialsSet>, Problem> {
    caller.require(Role::Operator)?;
    let (project, loaded) = app.project()?;
    let info = find_own_source(&loaded.sources, &id, &caller)?.clone();
    if body.settings.is_empty() {
        return Err(
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "no settings to set")
                .field("/settings", "name at least one sensitive setting"),
        );
    }
    let plugin = project
        .plugins()
        .iter()
        .find(|p| p.name == info.name && p.plugin_type.singular() == info.plugin_type)
        .ok_or_else(Problem::internal)?
        .clone();
    check_credentials(&plugin, &body.settings, "/settings")?;
    let app2 = app.clone();
    blocking(move || {
        let names = write_secrets(&app2, &plugin, body.settings, &caller)?;
        Ok(Json(CredentialsSet {
            source: plugin.name.clone(),
            settings: names,
        }))
    })
    .await
}

/// Whether a setting of `plugin` is sensitive: declared `sensitive` or `kind: password`, or
/// named like a credential.
pub(super) fn is_sensitive_setting(plugin: &crate::project::Plugin, name: &str) -> bool {
    let def = plugin.settings.iter().find(|s| s.name == name);
    let declared =
        def.is_some_and(|d| d.sensitive == Some(true) || d.kind.as_deref() == Some("password"));
    crate::secrets::sensitive::is_sensitive(name, declared)
        || (def.is_none() && is_secret_key(name))
}

/// A JSON pointer segment.
pub(super) fn pointer_segment(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// Refuses settings that are not sensitive or have empty values (422 naming each under `at`).
pub(super) fn check_credentials(
    plugin: &crate::project::Plugin,
    settings: &std::collections::BTreeMap<String, String>,
    at: &str,
) -> Result<(), Problem> {
    let mut refused = Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "only sensitive settings are set here",
    )
    .detail(format!(
        "set other settings in meltano.yml or with `dsm config set {} NAME`",
        plugin.name
    ));
    for (name, value) in settings {
        if !is_sensitive_setting(plugin, name) {
            refused = refused.field(
                format!("{at}/{}", pointer_segment(name)),
                "not a sensitive setting",
            );
        } else if value.is_empty() {
            refused = refused.field(
                format!("{at}/{}", pointer_segment(name)),
                "the value is empty",
            );
        }
    }
    if refused.errors.is_empty() {
        Ok(())
    } else {
        Err(refused)
    }
}

/// The master key of the secret store, checked against it; 409 when there is none.
pub(super) fn secret_key(
    conn: &dyn crate::store::Store,
) -> Result<crate::secrets::MasterKey, Problem> {
    crate::secrets::store::find_key(conn)
        .map(|(key, _)| key)
        .map_err(|e| {
            Problem::new(StatusCode::CONFLICT, "the secret store cannot be written")
                .detail(format!(
                    "{e}; start `dsm serve` where `dsm secrets init` made the master key (or set `DSM_MASTER_KEY_FILE`)"
                ))
        })
}

/// Sets sensitive settings of `plugin` in the encrypted secret store (blocking); returns the
/// names set. 409 when the store has no usable master key.
pub(super) fn write_secrets(
    app: &App,
    plugin: &crate::project::Plugin,
    settings: std::collections::BTreeMap<String, String>,
    caller: &Caller,
) -> Result<Vec<String>, Problem> {
    let conn = app.store.clone();
    let key = secret_key(conn.as_ref())?;
    let command = format!("dsm serve (token {})", caller.name);
    let pref = crate::secrets::history::PluginRef {
        plugin_type: Some(plugin.plugin_type),
        name: &plugin.name,
        environment: None,
    };
    crate::secrets::history::ensure_baseline(conn.as_ref(), &app.root, &pref, &command)?;
    let names: Vec<String> = settings.keys().cloned().collect();
    for (name, value) in settings {
        let value = crate::secrets::Secret::new(value);
        crate::secrets::set_secret(conn.as_ref(), &key, &plugin.name, &name, &value, &command)
            .map_err(crate::error::Error::from)?;
        crate::secrets::history::record(
            conn.as_ref(),
            &app.root,
            &pref,
            &command,
            "set",
            Some(&name),
        )?;
    }
    Ok(names)
}

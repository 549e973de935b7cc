//! The endpoints: thin handlers over the library functions the CLI commands use, and the
//! OpenAPI 3.1 document generated from them.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ObjectBuilder, RefOr, Schema};
use utoipa::{IntoParams, Modify, OpenApi, PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::problem::Problem;
use super::{App, blocking};
use crate::registry::catalog::{SourceInfo, SourceType, is_secret_key};
use crate::registry::health::schedule_expectations;
use crate::registry::listing::{SourceEntry, SourceFilter, list_sources};
use crate::registry::{HealthOptions, SourceStatus, Subject, health_report};
use crate::store::{Role, RunFilter, RunId, RunRecord, RunStatus};

/// Items per page without `limit`.
pub const DEFAULT_LIMIT: usize = 50;
/// The largest `limit`.
pub const MAX_LIMIT: usize = 500;
/// Lines of a run's log in `GET /api/runs/{id}`.
pub const LOG_TAIL_LINES: usize = 50;

/// A page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    /// The entries of this page.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// A query string parsed into `T`; a query that does not parse is a 400 problem.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e| {
                Problem::bad_request("the query string is not valid").detail(e.body_text())
            })
    }
}

/// A JSON request body parsed into `T`: malformed JSON is 400, a well-formed body with unknown
/// fields or wrong types is 422 (with a pointer), a body over the limit is 413.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Problem> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                let v = v.split(';').next().unwrap_or("").trim();
                v.eq_ignore_ascii_case("application/json")
                    || v.to_ascii_lowercase().ends_with("+json")
            });
        if !is_json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the request body must be JSON",
            )
            .detail("send `Content-Type: application/json`"));
        }
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    super::too_large()
                } else {
                    Problem::bad_request("the request body could not be read")
                }
            })?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let parsed = serde_path_to_error::deserialize::<_, T>(&mut de);
        if parsed.is_ok()
            && let Err(e) = de.end()
        {
            return Err(Problem::bad_request("the request body is not valid JSON")
                .detail(format!("at line {}, column {}: {e}", e.line(), e.column())));
        }
        match parsed {
            Ok(v) => Ok(ApiJson(v)),
            Err(e) => {
                let inner = e.inner();
                if inner.is_syntax() || inner.is_eof() {
                    Err(
                        Problem::bad_request("the request body is not valid JSON").detail(format!(
                            "at line {}, column {}",
                            inner.line(),
                            inner.column()
                        )),
                    )
                } else {
                    let pointer = e
                        .path()
                        .iter()
                        .map(|seg| match seg {
                            serde_path_to_error::Segment::Seq { index } => index.to_string(),
                            serde_path_to_error::Segment::Map { key } => {
                                key.replace('~', "~0").replace('/', "~1")
                            }
                            serde_path_to_error::Segment::Enum { variant } => variant.clone(),
                            serde_path_to_error::Segment::Unknown => "?".into(),
                        })
                        .fold(String::new(), |acc, seg| acc + "/" + &seg);
                    let mut detail = inner.to_string();
                    if let Some(at) = detail.find(" at line ") {
                        detail.truncate(at);
                    }
                    Err(Problem::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "the request body is not valid",
                    )
                    .field(pointer, detail))
                }
            }
        }
    }
}

fn parse_enum<E: clap::ValueEnum>(name: &str, text: &Option<String>) -> Result<Option<E>, Problem> {
    text.as_deref()
        .map(|t| {
            E::from_str(t, true).map_err(|_| {
                let accepted: Vec<String> = E::value_variants()
                    .iter()
                    .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_owned()))
                    .collect();
                Problem::bad_request(format!("`{name}` is not valid")).field(
                    format!("#/query/{name}"),
                    format!("use one of: {}", accepted.join(", ")),
                )
            })
        })
        .transpose()
}

/// `limit` and `cursor` of a list, checked.
#[derive(Debug, Clone, Copy)]
struct Paging {
    offset: usize,
    limit: usize,
}

impl Paging {
    fn read(limit: Option<usize>, cursor: Option<&str>) -> Result<Paging, Problem> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Problem::bad_request("`limit` is out of range")
                .field("#/query/limit", format!("use 1 to {MAX_LIMIT}")));
        }
        let offset = match cursor {
            None => 0,
            Some(c) => base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.strip_prefix("o:").and_then(|n| n.parse().ok()))
                .ok_or_else(|| {
                    Problem::bad_request("`cursor` is not valid").field(
                        "#/query/cursor",
                        "pass the `next_cursor` of the previous page as it is",
                    )
                })?,
        };
        Ok(Paging { offset, limit })
    }

    fn next(self, more: bool) -> Option<String> {
        more.then(|| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(format!("o:{}", self.offset + self.limit))
        })
    }

    fn page<T>(self, all: Vec<T>) -> Page<T> {
        let more = all.len() > self.offset.saturating_add(self.limit);
        let items = all.into_iter().skip(self.offset).take(self.limit).collect();
        Page {
            items,
            next_cursor: self.next(more),
        }
    }
}

fn time_param(name: &str, text: &Option<String>) -> Result<Option<DateTime<Utc>>, Problem> {
    text.as_deref()
        .map(|t| {
            crate::commands::audit::parse_time(t)
                .ok()
                .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
                .map(|d| d.with_timezone(&Utc))
                .ok_or_else(|| {
                    Problem::bad_request(format!("`{name}` is not a time")).field(
                        format!("#/query/{name}"),
                        "use `2026-01-31` or `2026-01-31T12:00:00Z`",
                    )
                })
        })
        .transpose()
}

// ----- documents whose schema is the CLI's (schemas/cli/) -----

/// A document described by one of the CLI's JSON Schemas; its component is replaced by that
/// schema in [`openapi_document`].
macro_rules! cli_document {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug)]
        pub struct $name;
        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new().build().into()
            }
        }
        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

cli_document!(RunListItem, "An entry of `dsm runs list --format json`.");
cli_document!(
    RunDocument,
    "The document of `dsm runs show --format json` plus `log_tail`."
);
cli_document!(HealthEntry, "An entry of `dsm health --format json`.");
cli_document!(FlowsDocument, "The document of `dsm flows --format json`.");
cli_document!(AuditEntry, "An entry of `dsm audit list --format json`.");

/// Which CLI schema each document component is, and whether it is the schema's `items`.
const CLI_SCHEMAS: &[(&str, &str, bool)] = &[
    (
        "RunListItem",
        include_str!("../../schemas/cli/runs-list.schema.json"),
        true,
    ),
    (
        "RunDocument",
        include_str!("../../schemas/cli/runs-show.schema.json"),
        false,
    ),
    (
        "HealthEntry",
        include_str!("../../schemas/cli/health.schema.json"),
        true,
    ),
    (
        "FlowsDocument",
        include_str!("../../schemas/cli/flows.schema.json"),
        false,
    ),
    (
        "AuditEntry",
        include_str!("../../schemas/cli/audit-list.schema.json"),
        true,
    ),
];

fn embed_cli_schema(name: &str, text: &str, items: bool) -> Value {
    let mut schema: Value = serde_json::from_str(text).expect("the CLI schemas are valid JSON");
    let obj = schema.as_object_mut().expect("a CLI schema is an object");
    obj.remove("$schema");
    obj.remove("$id");
    let defs = obj.remove("$defs");
    let mut out = if items {
        obj.remove("items").expect("a list schema has `items`")
    } else {
        schema
    };
    if let (Some(defs), Some(o)) = (defs, out.as_object_mut()) {
        o.insert("$defs".into(), defs);
    }
    if name == "RunDocument" {
        let props = out["properties"]
            .as_object_mut()
            .expect("runs-show has properties");
        props.insert(
            "log_tail".into(),
            serde_json::json!({
                "type": "array",
                "items": {"type": "string"},
                "description": "The last lines of the run's log, secrets redacted."
            }),
        );
        out["required"]
            .as_array_mut()
            .expect("runs-show lists its required properties")
            .push("log_tail".into());
    }
    let text = serde_json::to_string(&out).expect("JSON serialises");
    serde_json::from_str(&text.replace(
        "\"#/$defs/",
        &format!("\"#/components/schemas/{name}/$defs/"),
    ))
    .expect("JSON round-trips")
}

// ----- the document -----

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        api.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "dsm",
        description = "The HTTP API of `dsm serve`: the registry of sources, runs and flows."
    ),
    modifiers(&BearerAuth),
    components(schemas(Problem, PluginKind, RunStatusParam))
)]
struct ApiDoc;

/// The API's routes with their OpenAPI descriptions (one list, so the two cannot drift).
pub fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(openapi_json))
        .routes(routes!(list_sources_handler))
        .routes(routes!(get_source))
        .routes(routes!(source_health))
        .routes(routes!(list_runs))
        .routes(routes!(get_run))
        .routes(routes!(flows))
        .routes(routes!(audit))
        .routes(routes!(metrics))
        .routes(routes!(set_credentials))
        .routes(routes!(create_session, end_session))
}

/// The OpenAPI 3.1 document of the API, as served by `GET /api/openapi.json`.
pub fn openapi_document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let (_, api) = routes().split_for_parts();
        let mut doc = serde_json::to_value(&api).expect("the OpenAPI document serialises");
        doc["info"]["version"] = Value::String(env!("CARGO_PKG_VERSION").into());
        let schemas = doc["components"]["schemas"]
            .as_object_mut()
            .expect("the document has component schemas");
        for (name, text, items) in CLI_SCHEMAS {
            schemas.insert((*name).to_owned(), embed_cli_schema(name, text, *items));
        }
        add_common_responses(&mut doc);
        doc
    })
}

/// Adds the answers every operation behind a token can give, set in one place like the layers
/// that give them: 401 (no or bad token), 429 (too many failures), 403 for state-changing
/// ones (`--read-only`, cross-site cookie), 413 for ones with a body, 400 for ones with query
/// parameters.
fn add_common_responses(doc: &mut Value) {
    let problem = serde_json::json!({
        "description": "A problem document",
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    });
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            let public = op["security"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|r| r.as_object().is_some_and(|o| o.is_empty()))
            });
            let has_query = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
            let mut codes = Vec::new();
            if !public {
                codes.extend(["401", "429"]);
                if method != "get" {
                    codes.push("403");
                }
            }
            if !op["requestBody"].is_null() {
                codes.push("413");
            }
            if has_query {
                codes.push("400");
            }
            let Some(responses) = op["responses"].as_object_mut() else {
                continue;
            };
            for code in codes {
                responses
                    .entry(code.to_owned())
                    .or_insert_with(|| problem.clone());
            }
        }
    }
}

// ----- service -----

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Alive {
    /// Always `ok`.
    pub status: String,
}

/// Liveness: the process answers. Needs no token.
#[utoipa::path(get, path = "/healthz", tag = "service", security(()),
    responses((status = 200, body = Alive)))]
async fn healthz() -> Json<Alive> {
    Json(Alive {
        status: "ok".into(),
    })
}

/// Readiness: the store answers and `meltano.yml` loads. Needs no token.
#[utoipa::path(get, path = "/readyz", tag = "service", security(()),
    responses((status = 200, body = Alive), (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn readyz(State(app): State<Arc<App>>) -> Result<Json<Alive>, Problem> {
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
async fn openapi_json(_caller: Caller) -> Json<&'static Value> {
    Json(openapi_document())
}

// ----- sources -----

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum PluginKind {
    /// An extractor (tap).
    Extractor,
    /// A loader (target).
    Loader,
}

/// Lists the registry's sources (extractors and loaders), sorted by name.
#[utoipa::path(get, path = "/api/sources", tag = "sources", params(SourcesQuery),
    responses((status = 200, body = Page<SourceEntry>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn list_sources_handler(
    State(app): State<Arc<App>>,
    _caller: Caller,
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
}

fn find_source<'a>(sources: &'a [SourceInfo], id: &str) -> Result<&'a SourceInfo, Problem> {
    sources.iter().find(|s| s.name == id).ok_or_else(|| {
        let mut problem =
            Problem::not_found(format!("no extractor or loader `{id}` in meltano.yml"));
        problem.detail = Some(
            match crate::error::did_you_mean(id, sources.iter().map(|s| s.name.as_str())) {
                Some(close) => {
                    format!("did you mean `{close}`? GET /api/sources lists every source")
                }
                None => "GET /api/sources lists every source".into(),
            },
        );
        problem
    })
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
    responses((status = 200, body = SourceDetail),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_source(
    State(app): State<Arc<App>>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SourceDetail>, Problem> {
    let (project, loaded) = app.project()?;
    let info = find_source(&loaded.sources, &id)?.clone();
    let store = app.store.clone();
    let db_path = app.database_path.clone();
    blocking(move || {
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
        let stored: Vec<String> = crate::store::open_path(&db_path)
            .and_then(|c| Ok(crate::secrets::store::list(c.as_ref())?))
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
        Ok(Json(SourceDetail { entry, settings }))
    })
    .await
}

/// The source's entry of `dsm health --format json` (the last 24 hours).
#[utoipa::path(get, path = "/api/sources/{id}/health", tag = "sources", params(SourceId),
    responses((status = 200, body = HealthEntry),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn source_health(
    State(app): State<Arc<App>>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let (project, loaded) = app.project()?;
    let info = find_source(&loaded.sources, &id)?.clone();
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

// ----- runs -----

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
async fn list_runs(
    State(app): State<Arc<App>>,
    _caller: Caller,
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
fn log_tail(path: &std::path::Path, secrets: &[String], n: usize) -> Vec<String> {
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
fn written_secrets(project: &crate::project::Project) -> Vec<String> {
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

fn project_sources_of(project: &crate::project::Project) -> Vec<SourceInfo> {
    crate::registry::catalog::project_sources(project)
}

/// One run: the document of `dsm runs show --format json` plus the tail of its log.
#[utoipa::path(get, path = "/api/runs/{id}", tag = "runs", params(RunIdParam),
    responses((status = 200, body = RunDocument),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_run(
    State(app): State<Arc<App>>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let store = app.store.clone();
    let db_path = app.database_path.clone();
    let project = app.loaded().project;
    blocking(move || {
        let run_id = RunId::new(id);
        let run = store.get_run(&run_id)?.ok_or_else(|| {
            Problem::not_found(format!("no run `{run_id}` in the system database"))
                .detail("GET /api/runs lists recent runs")
        })?;
        let artifacts = store.run_artifacts(&run_id)?;
        let merged = crate::store::merged::MergedDb::open(&db_path)
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

// ----- flows, audit, metrics -----

/// The flow map: the document of `dsm flows --format json`.
#[utoipa::path(get, path = "/api/flows", tag = "flows",
    responses((status = 200, body = FlowsDocument),
        (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn flows(State(app): State<Arc<App>>, _caller: Caller) -> Result<Response, Problem> {
    let (project, _) = app.project()?;
    let store = app.store.clone();
    blocking(move || {
        let flows = crate::registry::flowmap::flows_with_status(&project, store.as_ref())?;
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
async fn audit(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Response, Problem> {
    caller.require(Role::Admin)?;
    let paging = Paging::read(q.limit, q.cursor.as_deref())?;
    let since = time_param("since", &q.since)?.map(crate::store::format_time);
    let until = time_param("until", &q.until)?.map(crate::store::format_time);
    let db_path = app.database_path.clone();
    blocking(move || {
        let conn = crate::store::open_path(&db_path)?;
        let records = crate::secrets::audit::list(conn.as_ref(), since.as_deref())
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
async fn metrics(State(app): State<Arc<App>>, _caller: Caller) -> Result<Response, Problem> {
    let store = app.store.clone();
    blocking(move || {
        let runs = store.list_runs_since(DateTime::<Utc>::UNIX_EPOCH)?;
        let snap = crate::registry::snapshot(&runs, &store.pruned_totals()?, Utc::now());
        let mut response = crate::registry::render_prometheus(&snap).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        Ok(response)
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
async fn set_credentials(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CredentialsRequest>,
) -> Result<Json<CredentialsSet>, Problem> {
    caller.require(Role::Operator)?;
    let (project, loaded) = app.project()?;
    let info = find_source(&loaded.sources, &id)?.clone();
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
    let mut refused = Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "only sensitive settings are set here",
    )
    .detail(format!(
        "set other settings in meltano.yml or with `dsm config set {} NAME`",
        info.name
    ));
    for (name, value) in &body.settings {
        let def = plugin.settings.iter().find(|s| &s.name == name);
        let declared =
            def.is_some_and(|d| d.sensitive == Some(true) || d.kind.as_deref() == Some("password"));
        let sensitive = crate::secrets::sensitive::is_sensitive(name, declared)
            || (def.is_none() && is_secret_key(name));
        if !sensitive {
            refused = refused.field(
                format!("/settings/{}", name.replace('~', "~0").replace('/', "~1")),
                "not a sensitive setting",
            );
        } else if value.is_empty() {
            refused = refused.field(
                format!("/settings/{}", name.replace('~', "~0").replace('/', "~1")),
                "the value is empty",
            );
        }
    }
    if !refused.errors.is_empty() {
        return Err(refused);
    }
    let db_path = app.database_path.clone();
    let root = app.root.clone();
    blocking(move || {
        use crate::secrets::master_key::KeyLookup;
        let conn = crate::store::open_path(&db_path)?;
        let key = KeyLookup::from_env()
            .find()
            .and_then(|(key, source)| {
                crate::secrets::store::check_key(conn.as_ref(), &key, &source.to_string()).map(|_| key)
            })
            .map_err(|e| {
                Problem::new(StatusCode::CONFLICT, "the secret store cannot be written")
                    .detail(format!(
                        "{e}; start `dsm serve` where `dsm secrets init` made the master key (or set `DSM_MASTER_KEY_FILE`)"
                    ))
            })?;
        let command = format!("dsm serve (token {})", caller.name);
        let pref = crate::secrets::history::PluginRef {
            plugin_type: Some(plugin.plugin_type),
            name: &plugin.name,
            environment: None,
        };
        crate::secrets::history::ensure_baseline(conn.as_ref(), &root, &pref, &command)?;
        let names: Vec<String> = body.settings.keys().cloned().collect();
        for (name, value) in body.settings {
            let value = crate::secrets::Secret::new(value);
            crate::secrets::set_secret(conn.as_ref(), &key, &plugin.name, &name, &value, &command)
                .map_err(crate::error::Error::from)?;
            crate::secrets::history::record(conn.as_ref(), &root, &pref, &command, "set", Some(&name))?;
        }
        Ok(Json(CredentialsSet {
            source: plugin.name.clone(),
            settings: names,
        }))
    })
    .await
}

// ----- browser sessions -----

/// The body of `POST /api/session`. No `Debug`: it holds a token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// An API token (`dsm tokens create`).
    pub token: String,
}

/// Who a session acts as.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionInfo {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The organisation it is limited to.
    pub organisation: Option<String>,
    /// When the token (and so the session) expires; sessions also end after 12 hours idle.
    pub expires_at: Option<String>,
}

/// Signs a browser in: checks the token and sets the `HttpOnly`, `SameSite=Strict` cookie
/// `dsm_session`, which then stands for the token. Needs no `Authorization` header.
#[utoipa::path(post, path = "/api/session", tag = "session", security(()),
    request_body = SessionRequest,
    responses((status = 201, body = SessionInfo, headers(("Set-Cookie" = String, description = "dsm_session"))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn create_session(
    State(app): State<Arc<App>>,
    axum::extract::ConnectInfo(super::Peer(peer)): axum::extract::ConnectInfo<super::Peer>,
    ApiJson(body): ApiJson<SessionRequest>,
) -> Result<Response, Problem> {
    let now = std::time::Instant::now();
    if let Some(secs) = app.limiter.blocked_for(peer.ip(), now) {
        let mut problem = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed attempts from this address",
        )
        .detail(format!("try again in {secs} s with a valid token"));
        problem.retry_after = Some(secs);
        return Err(problem);
    }
    let store = app.store.clone();
    let token = body.token;
    let found = blocking(move || {
        let tokens = store.list_tokens()?;
        Ok(super::token::authenticate(&tokens, &token, Utc::now()))
    })
    .await?;
    let Some(record) = found else {
        app.limiter.record_failure(peer.ip(), now);
        return Err(Problem::unauthorized("the token is not valid")
            .detail("it may be mistyped, revoked or expired; `dsm tokens list` shows the tokens"));
    };
    let id = app.sessions.create(record.token_hash.clone(), now);
    let mut cookie = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Strict",
        super::auth::SESSION_COOKIE,
        id.as_str()
    );
    if app.secure_cookies {
        cookie.push_str("; Secure");
    }
    if let Some(at) = record.expires_at {
        let secs = (at - Utc::now()).num_seconds().max(0);
        cookie.push_str(&format!("; Max-Age={secs}"));
    }
    let info = SessionInfo {
        name: record.name.clone(),
        role: record.role,
        organisation: record.organisation.clone(),
        expires_at: record.expires_at.map(crate::store::format_time),
    };
    let mut response = (StatusCode::CREATED, Json(info)).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|_| Problem::internal())?,
    );
    response.extensions_mut().insert(Caller {
        name: record.name,
        role: record.role,
        organisation: record.organisation,
    });
    Ok(response)
}

/// Signs a browser out: ends the session of the `dsm_session` cookie and clears the cookie.
#[utoipa::path(delete, path = "/api/session", tag = "session", security(()),
    responses((status = 204, description = "The session ended (or there was none)")))]
async fn end_session(State(app): State<Arc<App>>, headers: axum::http::HeaderMap) -> Response {
    if let Some(id) = super::auth::session_cookie(&headers) {
        app.sessions.end(&id);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("dsm_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

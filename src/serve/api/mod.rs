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

mod actions;
mod edit;
mod events;
mod requests;
mod runs;
mod service;
mod session;
mod sources;
mod webhooks;

pub use actions::{RunStarted, RunStopping, TestQuery};
pub use edit::NewSource;
use sources::find_source;
pub use webhooks::{Intake, WebhookAccepted, WebhookSource};

pub use requests::{
    ApproveBody, NewRequestBody, RejectBody, RequestApproved, RequestChanged, RequestId,
    RequestList, RequestTested, RequestsQuery, ResubmitBody,
};
pub use runs::{RunIdParam, RunStatusParam, RunsQuery};
pub use service::{Alive, AuditQuery};
pub use session::{SessionInfo, SessionRequest};
pub use sources::{
    CredentialsRequest, CredentialsSet, PlainSetting, PluginKind, SensitiveSetting, SettingView,
    SourceDetail, SourceId, SourcesQuery,
};

use super::auth::Caller;
use super::problem::Problem;
use super::{App, blocking};
use crate::registry::catalog::{SourceInfo, SourceType, is_secret_key};
use crate::registry::health::schedule_expectations;
use crate::registry::listing::{SourceEntry, SourceFilter, list_sources};
use crate::registry::{HealthOptions, SourceStatus, Subject, health_report};
use crate::runner::RunOptions;
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
                    crate::serve::too_large()
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

/// A query parameter that takes one of a closed set of values, by their wire names.
trait QueryEnum: Copy + 'static {
    /// Every value, in the order the error message lists them.
    fn all() -> &'static [Self];
    /// The value's name on the wire.
    fn wire_name(self) -> &'static str;
}

impl QueryEnum for crate::registry::catalog::SourceType {
    fn all() -> &'static [Self] {
        &Self::ALL
    }
    fn wire_name(self) -> &'static str {
        self.as_str()
    }
}

impl QueryEnum for crate::registry::SourceStatus {
    fn all() -> &'static [Self] {
        &Self::ALL
    }
    fn wire_name(self) -> &'static str {
        self.as_str()
    }
}

/// Reads a query parameter of a closed set (case does not matter), or answers 400 listing the
/// values it takes.
fn parse_enum<E: QueryEnum>(name: &str, text: &Option<String>) -> Result<Option<E>, Problem> {
    text.as_deref()
        .map(|t| {
            E::all()
                .iter()
                .copied()
                .find(|v| v.wire_name().eq_ignore_ascii_case(t))
                .ok_or_else(|| {
                    let accepted: Vec<&str> = E::all().iter().map(|v| v.wire_name()).collect();
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
            crate::duration::moment(t, Utc::now()).map_err(|_| {
                Problem::bad_request(format!("`{name}` is not a time")).field(
                    format!("#/query/{name}"),
                    "use `2026-01-31`, `2026-01-31T12:00:00Z` or a duration back from now (`7d`)",
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
cli_document!(
    TestDocument,
    "The document of `dsm test NAME --format json` (without `error`)."
);

// After `cli_document!`, which it uses.
mod dashboard;
pub use dashboard::{
    Attention, FailedDelivery, OperatorStatusParam, Overview, PluginsQuery, StatusChange,
    StatusCount, VerdictCount,
};

/// Which CLI schema each document component is, and whether it is the schema's `items`.
const CLI_SCHEMAS: &[(&str, &str, bool)] = &[
    (
        "RunListItem",
        include_str!("../../../schemas/cli/runs-list.schema.json"),
        true,
    ),
    (
        "RunDocument",
        include_str!("../../../schemas/cli/runs-show.schema.json"),
        false,
    ),
    (
        "HealthEntry",
        include_str!("../../../schemas/cli/health.schema.json"),
        true,
    ),
    (
        "FlowsDocument",
        include_str!("../../../schemas/cli/flows.schema.json"),
        false,
    ),
    (
        "AuditEntry",
        include_str!("../../../schemas/cli/audit-list.schema.json"),
        true,
    ),
    (
        "TestDocument",
        include_str!("../../../schemas/cli/test.schema.json"),
        false,
    ),
    (
        "CatalogPlugin",
        include_str!("../../../schemas/cli/plugins-list-available.schema.json"),
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
        .routes(routes!(service::healthz))
        .routes(routes!(service::readyz))
        .routes(routes!(service::openapi_json))
        .routes(routes!(sources::list_sources_handler, edit::create_source))
        .routes(routes!(
            sources::get_source,
            edit::replace_source,
            edit::patch_source,
            edit::delete_source
        ))
        .routes(routes!(sources::source_health))
        .routes(routes!(actions::test_source))
        .routes(routes!(actions::test_new_source))
        .routes(routes!(actions::sync_source))
        .routes(routes!(runs::list_runs))
        .routes(routes!(runs::get_run, actions::stop_run))
        .routes(routes!(events::events))
        .routes(routes!(service::flows))
        .routes(routes!(service::audit))
        .routes(routes!(service::metrics))
        .routes(routes!(sources::set_credentials))
        .routes(routes!(session::create_session, session::end_session))
        .routes(routes!(dashboard::list_plugins))
        .routes(routes!(dashboard::overview))
        .routes(routes!(dashboard::set_status))
        .routes(routes!(webhooks::receive))
        .routes(routes!(requests::submit_request, requests::list_requests))
        .routes(routes!(requests::get_request))
        .routes(routes!(requests::test_request))
        .routes(routes!(requests::approve_request))
        .routes(routes!(requests::reject_request))
        .routes(routes!(requests::resubmit_request))
        .routes(routes!(requests::cancel_request))
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

/// Writes a state-changing call into the audit chain as `dsm serve (token NAME)` (names, never
/// values). Without a master key there is no chain to write to; that is logged.
pub(super) async fn record_audit<T: Into<String>>(
    app: &App,
    caller: &Caller,
    action: &'static str,
    targets: impl IntoIterator<Item = T>,
) {
    let targets: Vec<String> = targets.into_iter().map(Into::into).collect();
    let store = app.store.clone();
    let command = format!("dsm serve (token {})", caller.name);
    let _ = tokio::task::spawn_blocking(move || {
        use crate::secrets::master_key::KeyLookup;
        let lookup = KeyLookup {
            keyring: None,
            ..KeyLookup::from_env()
        };
        let result = (|| -> crate::error::Result<()> {
            let Ok((key, _)) = crate::secrets::store::find_key_with(store.as_ref(), lookup) else {
                tracing::debug!(action, "no master key; the change is not audited");
                return Ok(());
            };
            crate::secrets::audit::append(
                store.as_ref(),
                &key,
                &crate::secrets::audit::Entry::new(command, action, targets),
            )?;
            Ok(())
        })();
        if let Err(error) = result {
            tracing::warn!(error = %error.message(), action, "the change was made but not audited");
        }
    })
    .await;
}

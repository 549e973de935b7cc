//! Registering, replacing, patching and deleting sources (admin): written into the project
//! file that defines the plugin with the CLI's comment-preserving edit, under the project's
//! edit lock; each source's entry carries an `ETag`, and `If-Match` is honoured.

use std::collections::BTreeMap;
use std::path::PathBuf;

use axum::http::HeaderMap;
use serde_json::Map;
use sha2::Digest as _;

use super::*;
use crate::project::edit::{self as yedit, Document, Seg};
use crate::project::{Plugin, PluginType, Project};
use crate::serve::api::sources::{
    check_credentials, is_sensitive_setting, pointer_segment, secret_key, source_detail,
    write_secrets,
};

fn plugin_type_of(singular: &str) -> PluginType {
    if singular == "loader" {
        PluginType::Loaders
    } else {
        PluginType::Extractors
    }
}

/// The file that defines the plugin (relative to the project root) and its entry there as
/// written (`null` when no file has it).
fn read_entry(
    root: &std::path::Path,
    ty: PluginType,
    name: &str,
) -> Result<(PathBuf, Value), Problem> {
    let path = yedit::plugin_path(None, ty.key(), name);
    let rel = yedit::defining_file(root, &path)?;
    let text = std::fs::read_to_string(root.join(&rel)).map_err(crate::error::Error::from)?;
    let tree = crate::project::yaml::parse(&text).map_err(|e| {
        Problem::new(
            StatusCode::CONFLICT,
            format!("{} is not valid YAML", rel.display()),
        )
        .detail(format!("{}; fix the file on disk first", e.message))
    })?;
    let entry = tree
        .get("plugins")
        .and_then(|p| p.get(ty.key()))
        .and_then(|seq| {
            seq.items().iter().find(|i| {
                i.get("name").map(crate::project::yaml::Node::to_json)
                    == Some(Value::String(name.to_owned()))
            })
        })
        .map(crate::project::yaml::Node::to_json)
        .unwrap_or(Value::Null);
    Ok((rel, entry))
}

fn etag(entry: &Value) -> String {
    let digest = sha2::Sha256::digest(serde_json::to_vec(entry).unwrap_or_default());
    format!("\"{}\"", hex::encode(&digest[..16]))
}

/// The `ETag` of a source's entry as written in its project file.
pub(super) fn etag_of(root: &std::path::Path, info: &SourceInfo) -> Result<String, Problem> {
    let (_, entry) = read_entry(root, plugin_type_of(&info.plugin_type), &info.name)?;
    Ok(etag(&entry))
}

/// Adds the `ETag` header.
pub(super) fn with_etag(mut response: Response, tag: &str) -> Result<Response, Problem> {
    response.headers_mut().insert(
        header::ETAG,
        HeaderValue::from_str(tag).map_err(|_| Problem::internal())?,
    );
    Ok(response)
}

/// `If-Match` of a request: `None` when absent.
fn if_match(headers: &HeaderMap) -> Result<Option<Vec<String>>, Problem> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| {
        Problem::bad_request("`If-Match` is not valid")
            .detail("send the `ETag` of GET /api/sources/{id}")
    })?;
    Ok(Some(
        text.split(',')
            .map(|t| t.trim().trim_start_matches("W/").to_owned())
            .filter(|t| !t.is_empty())
            .collect(),
    ))
}

fn check_if_match(wanted: Option<&[String]>, current: &str, name: &str) -> Result<(), Problem> {
    match wanted {
        Some(tags) if !tags.iter().any(|t| t == "*" || t == current) => Err(Problem::new(
            StatusCode::CONFLICT,
            format!("`{name}` was changed since you read it"),
        )
        .detail(format!(
            "its entry is now {current}; GET /api/sources/{name} again, apply your change to what it shows, and send the new `ETag` in `If-Match`"
        ))),
        _ => Ok(()),
    }
}

/// Refuses values of sensitive settings in a `config` object (they go to `/credentials`):
/// `null` (unset) and `$VAR` references are fine.
fn refuse_sensitive(
    config: Option<&Value>,
    sensitive: impl Fn(&str) -> bool,
    at: &str,
    name: &str,
) -> Result<(), Problem> {
    let Some(Value::Object(config)) = config else {
        return Ok(());
    };
    let mut refused = Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "sensitive settings are not set here",
    )
    .detail(format!(
        "set them with POST /api/sources/{name}/credentials (or `secrets` when registering); a `$VAR` reference is fine"
    ));
    for (key, value) in config {
        let reference = value.as_str().is_some_and(|s| s.starts_with('$'));
        if sensitive(key) && !value.is_null() && !reference {
            refused = refused.field(
                format!("{at}/{}", pointer_segment(key)),
                "a sensitive setting",
            );
        }
    }
    if refused.errors.is_empty() {
        Ok(())
    } else {
        Err(refused)
    }
}

/// Names declared sensitive in a plugin definition's `settings` list.
fn declared_sensitive(def: &Map<String, Value>) -> Vec<String> {
    def.get("settings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|s| s["sensitive"] == Value::Bool(true) || s["kind"] == "password")
        .filter_map(|s| s["name"].as_str().map(str::to_owned))
        .collect()
}

fn name_is_valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.')
}

/// Writes a change of `rel` under the project's edit lock: `change` gets the document and the
/// entry as it is now (after `If-Match` was checked against it); the result must load as a
/// project, else the file is put back and the answer is 422. Reloads the server's project.
fn write_checked(
    app: &App,
    ty: PluginType,
    name: &str,
    wanted: Option<&[String]>,
    change: impl FnOnce(&mut Document, &Value) -> Result<(), Problem>,
    verify: impl FnOnce(&Project) -> Result<(), Problem>,
) -> Result<(), Problem> {
    let _lock = yedit::lock_project(&app.root)?;
    let (rel, current) = read_entry(&app.root, ty, name)?;
    check_if_match(wanted, &etag(&current), name)?;
    let path = app.root.join(&rel);
    let before = std::fs::read_to_string(&path).map_err(crate::error::Error::from)?;
    let mut doc = Document::new(before.clone());
    change(&mut doc, &current)?;
    if doc.text() == before {
        return Ok(());
    }
    crate::files::replace_atomically(&path, doc.text().as_bytes(), crate::files::Mode::Keep)
        .map_err(crate::error::Error::from)?;
    let checked = match Project::load(&app.root) {
        Err(error) => {
            let mut problem = Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the change would leave a project that does not load",
            )
            .detail(error.message().to_owned());
            if !error.hints().is_empty() {
                problem.detail = Some(format!("{}; {}", error.message(), error.hints().join("; ")));
            }
            Err(problem)
        }
        Ok(project) => verify(&project),
    };
    if let Err(problem) = checked {
        crate::files::replace_atomically(&path, before.as_bytes(), crate::files::Mode::Keep)
            .map_err(crate::error::Error::from)?;
        return Err(problem);
    }
    app.reload_if_changed()?;
    Ok(())
}

/// A change the comment-preserving edit cannot make (422: it is the request's).
fn edit_error(error: crate::error::Error) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "the change cannot be written into the project file",
    )
    .detail(error.message().to_owned())
}

/// The source's document after a change, with its new `ETag`.
fn answer(app: &App, caller: &Caller, status: StatusCode, name: &str) -> Result<Response, Problem> {
    let (project, loaded) = app.project()?;
    let info = find_source(&loaded.sources, name, caller)?.clone();
    let tag = etag_of(&app.root, &info)?;
    let detail = source_detail(app, &project, &loaded, info)?;
    let mut response = (status, Json(detail)).into_response();
    if status == StatusCode::CREATED {
        response.headers_mut().insert(
            header::LOCATION,
            HeaderValue::from_str(&format!("/api/sources/{name}"))
                .map_err(|_| Problem::internal())?,
        );
    }
    with_etag(response, &tag)
}

/// Refuses a change after which the caller could no longer act on the source (an
/// organisation's admin moving a source out of its organisation, or registering one in
/// another): 422 on `pointer`.
fn stays_own(
    caller: &Caller,
    project: &Project,
    ty: PluginType,
    name: &str,
    pointer: &str,
) -> Result<(), Problem> {
    let Some(plugin) = project
        .plugins()
        .iter()
        .find(|p| p.name == name && p.plugin_type == ty)
    else {
        return Ok(());
    };
    let info = crate::registry::catalog::describe(project, plugin);
    if caller.viewer().acts_on(&info) {
        return Ok(());
    }
    let wanted = caller
        .organisation
        .as_deref()
        .map_or_else(|| "none".to_owned(), |o| format!("`{o}`"));
    Err(Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("token `{}` keeps sources in its organisation", caller.name),
    )
    .field(pointer, format!("use {wanted}")))
}

/// The body of `POST /api/sources`. No `Debug`: `secrets` holds secret values.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSource {
    /// The plugin's name in `meltano.yml` (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// A plugin of dsm's catalog, `NAME` or `NAME--VARIANT`: the source is that plugin (same
    /// name) or inherits from it (another name). Give this or `plugin`.
    pub template: Option<String>,
    /// A full plugin definition, as its entry in `meltano.yml` would be. Give this or
    /// `template`.
    #[schema(value_type = Option<Object>)]
    pub plugin: Option<Map<String, Value>>,
    /// `extractor` or `loader`; guessed from a `tap-`/`target-` name when left out.
    pub plugin_type: Option<PluginKind>,
    /// Settings that are not sensitive.
    #[schema(value_type = Option<Object>)]
    pub config: Option<Map<String, Value>>,
    /// Sensitive settings: stored in the encrypted secret store, never in `meltano.yml`.
    pub secrets: Option<BTreeMap<String, String>>,
    /// What the source is for the registry (`annotations.dsm.source`: `type`, `provider`,
    /// `category`, `labels`, `classification`, `fields`).
    #[schema(value_type = Option<Object>)]
    pub source: Option<Value>,
}

/// Registers a source (admin): written into `meltano.yml`; its secrets go to the encrypted
/// store. 409 when the name is taken.
#[utoipa::path(post, path = "/api/sources", tag = "sources", request_body = NewSource,
    responses((status = 201, body = SourceDetail, headers(("ETag" = String), ("Location" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn create_source(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiJson(body): ApiJson<NewSource>,
) -> Result<Response, Problem> {
    caller.require(Role::Admin)?;
    let mut body = body;
    if let Some(org) = &caller.organisation {
        // An organisation's admin registers its organisation's sources.
        let source = body.source.get_or_insert_with(|| Value::Object(Map::new()));
        if let Some(obj) = source.as_object_mut() {
            obj.entry("organisation")
                .or_insert_with(|| Value::String(org.clone()));
        }
    }
    let NewEntry {
        name,
        ty,
        entry,
        lock,
        secrets,
    } = new_entry(&app, body)?;
    if let Some((rel, text)) = lock {
        let root = app.root.clone();
        blocking(move || Ok(crate::plugin::manage::write_lock(&root, &rel, text)?)).await?;
    }
    let audited = name.clone();
    let app2 = app.clone();
    let caller2 = caller.clone();
    let response = blocking(move || {
        let path = yedit::plugin_path(None, ty.key(), &name);
        write_checked(
            &app2,
            ty,
            &name,
            None,
            |doc, current| {
                if !current.is_null() {
                    return Err(Problem::new(
                        StatusCode::CONFLICT,
                        format!("a plugin `{name}` already exists"),
                    ));
                }
                doc.set(&path, &Value::Object(entry)).map_err(edit_error)
            },
            |project| {
                stays_own(&caller2, project, ty, &name, "/source/organisation")?;
                // The secrets are checked against the definition as it loads (a template's
                // settings come from the catalog), before anything stays written.
                if !secrets.is_empty() {
                    let plugin = project
                        .plugins()
                        .iter()
                        .find(|p| p.name == name && p.plugin_type == ty)
                        .ok_or_else(Problem::internal)?;
                    check_credentials(plugin, &secrets, "/secrets")?;
                    secret_key(app2.store.as_ref())?;
                }
                Ok(())
            },
        )?;
        if !secrets.is_empty() {
            let (project, _) = app2.project()?;
            let plugin = project
                .plugins()
                .iter()
                .find(|p| p.name == name && p.plugin_type == ty)
                .ok_or_else(Problem::internal)?
                .clone();
            write_secrets(&app2, &plugin, secrets, &caller2)?;
        }
        // A plugin that needs installing is installed in the background; the answer already
        // says `installing` and `install_progress` events follow.
        let (project, _) = app2.project()?;
        if let Some(plugin) = project
            .plugins()
            .iter()
            .find(|p| p.name == name && p.plugin_type == ty)
        {
            app2.installs.start(&app2.runs, &project, plugin);
        }
        answer(&app2, &caller2, StatusCode::CREATED, &name)
    })
    .await?;
    super::record_audit(&app, &caller, "source.create", [audited]).await;
    Ok(response)
}

/// A new source's entry as `POST /api/sources` would write it, checked, not yet written. No
/// `Debug`: `secrets` holds secret values.
pub(super) struct NewEntry {
    /// The plugin's name.
    pub name: String,
    ty: PluginType,
    /// The plugin's entry as `meltano.yml` gets it.
    pub entry: Map<String, Value>,
    /// The catalog's lock file of a template (written only when the source is saved).
    pub lock: Option<crate::plugin::manage::LockFile>,
    secrets: BTreeMap<String, String>,
}

/// Checks the body of `POST /api/sources` (422 with pointers, 409 for a name in use) and builds
/// the plugin's entry from it.
pub(super) fn new_entry(app: &App, body: NewSource) -> Result<NewEntry, Problem> {
    let invalid = |pointer: &str, detail: &str| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the request body is not valid",
        )
        .field(pointer, detail)
    };
    if !name_is_valid(&body.name) {
        return Err(invalid(
            "/name",
            "use 1 to 100 letters, digits, `-`, `_` or `.` (not starting with `.`)",
        ));
    }
    let ty = match (body.plugin_type, &body.template) {
        (Some(PluginKind::Extractor), _) => PluginType::Extractors,
        (Some(PluginKind::Loader), _) => PluginType::Loaders,
        (None, template) => {
            let guess = |n: &str| crate::plugin::manage::infer_type(n).ok();
            match guess(&body.name).or_else(|| {
                template
                    .as_deref()
                    .and_then(|t| guess(t.split("--").next().unwrap_or(t)))
            }) {
                Some(t @ (PluginType::Extractors | PluginType::Loaders)) => t,
                _ => {
                    return Err(invalid(
                        "/plugin_type",
                        "say `extractor` or `loader` (the name does not tell)",
                    ));
                }
            }
        }
    };
    let mut lock = None;
    let mut entry = match (&body.template, body.plugin) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(invalid("/template", "give either `template` or `plugin`"));
        }
        (None, Some(def)) => {
            if def
                .get("name")
                .is_some_and(|n| n.as_str() != Some(body.name.as_str()))
            {
                return Err(invalid("/plugin/name", "leave it out or repeat `name`"));
            }
            let declared = declared_sensitive(&def);
            refuse_sensitive(
                def.get("config"),
                |k| {
                    declared.iter().any(|d| d == k)
                        || crate::secrets::sensitive::is_sensitive(k, false)
                        || is_secret_key(k)
                },
                "/plugin/config",
                &body.name,
            )?;
            let mut def = def;
            def.remove("name");
            def
        }
        (Some(template), None) => {
            let (parent, variant) = match template.split_once("--") {
                Some((p, v)) => (p.to_owned(), Some(v.to_owned())),
                None => (template.clone(), None),
            };
            let (known, known_lock) =
                crate::plugin::manage::catalog_entry(ty, &parent, variant.as_deref()).map_err(
                    |e| Problem::from(e).field("/template", "not a plugin of dsm's catalog"),
                )?;
            let mut entry = Map::new();
            if parent != body.name {
                entry.insert("inherit_from".into(), Value::String(parent));
            }
            entry.extend(known);
            lock = known_lock;
            entry
        }
    };
    if let Some(config) = body.config {
        let declared = declared_sensitive(&entry);
        let value = Value::Object(config);
        refuse_sensitive(
            Some(&value),
            |k| {
                declared.iter().any(|d| d == k)
                    || crate::secrets::sensitive::is_sensitive(k, false)
                    || is_secret_key(k)
            },
            "/config",
            &body.name,
        )?;
        let merged = match (entry.remove("config"), value) {
            (Some(Value::Object(mut mine)), Value::Object(more)) => {
                mine.extend(more);
                Value::Object(mine)
            }
            (_, value) => value,
        };
        entry.insert("config".into(), merged);
    }
    if let Some(source) = body.source {
        if let Err(e) =
            serde_json::from_value::<crate::project::annotations::SourceInfo>(source.clone())
        {
            return Err(invalid("/source", &e.to_string()));
        }
        let annotations = entry
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if !annotations.is_object() {
            return Err(invalid("/plugin/annotations", "must be an object"));
        }
        let dsm = annotations
            .as_object_mut()
            .expect("checked to be an object")
            .entry("dsm")
            .or_insert_with(|| Value::Object(Map::new()));
        match dsm.as_object_mut() {
            Some(dsm) => {
                dsm.insert("source".into(), source);
            }
            None => return Err(invalid("/plugin/annotations/dsm", "must be an object")),
        }
    }
    let secrets = body.secrets.unwrap_or_default();
    let (_, loaded) = app.project()?;
    if loaded.sources.iter().any(|s| s.name == body.name) {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            format!("a source `{}` already exists", body.name),
        )
        .detail("pick another name, or change it with PUT or PATCH /api/sources/{id}"));
    }
    Ok(NewEntry {
        name: body.name,
        ty,
        entry,
        lock,
        secrets,
    })
}

/// The project as it would load with `new` added to `meltano.yml`, in memory only: nothing is
/// written. The secrets sit in the in-memory entry's `config`, so they reach the plugin the way
/// every setting does, through its private config file, and are stored nowhere.
pub(super) fn project_with(app: &App, new: NewEntry) -> Result<Project, Problem> {
    let NewEntry {
        name,
        ty,
        mut entry,
        secrets,
        ..
    } = new;
    let text =
        std::fs::read_to_string(app.root.join("meltano.yml")).map_err(crate::error::Error::from)?;
    let mut doc = Document::new(text);
    let path = yedit::plugin_path(None, ty.key(), &name);
    doc.set(&path, &Value::Object(entry.clone()))
        .map_err(edit_error)?;
    let load = |doc: &Document| {
        Project::load_with_main(&app.root, doc.text()).map_err(|error| {
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the definition does not load as part of the project",
            )
            .detail(error.message().to_owned())
        })
    };
    let project = load(&doc)?;
    if secrets.is_empty() {
        return Ok(project);
    }
    let plugin = project
        .plugins()
        .iter()
        .find(|p| p.name == name && p.plugin_type == ty)
        .ok_or_else(Problem::internal)?;
    check_credentials(plugin, &secrets, "/secrets")?;
    let config = entry
        .entry("config")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(config) = config.as_object_mut() {
        config.extend(secrets.into_iter().map(|(k, v)| (k, Value::String(v))));
    }
    // Nothing of this second load's errors is shown: the text holds the secrets.
    doc.set(&path, &Value::Object(entry))
        .map_err(|_| Problem::internal())?;
    Project::load_with_main(&app.root, doc.text()).map_err(|_| Problem::internal())
}

/// Checks a new entry for `plugin`: no values of sensitive settings, no other name.
fn check_entry(plugin: &Plugin, entry: &Map<String, Value>, at: &str) -> Result<(), Problem> {
    if entry
        .get("name")
        .is_some_and(|n| n.as_str() != Some(plugin.name.as_str()))
    {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a source cannot be renamed",
        )
        .field(format!("{at}name"), "leave it out or repeat the name"));
    }
    let declared = declared_sensitive(entry);
    refuse_sensitive(
        entry.get("config"),
        |k| declared.iter().any(|d| d == k) || is_sensitive_setting(plugin, k),
        &format!("{at}config"),
        &plugin.name,
    )
}

fn plugin_for(app: &App, id: &str, caller: &Caller) -> Result<Plugin, Problem> {
    let (project, loaded) = app.project()?;
    let info = super::sources::find_own_source(&loaded.sources, id, caller)?;
    project
        .plugins()
        .iter()
        .find(|p| p.name == info.name && p.plugin_type.singular() == info.plugin_type)
        .cloned()
        .ok_or_else(Problem::internal)
}

/// Replaces the source's entry (admin) with a plugin definition as written in `meltano.yml`,
/// in the file that defines it. Values of sensitive settings are refused (use
/// `/credentials`). With `If-Match`, 409 unless it is the entry's current `ETag`.
#[utoipa::path(put, path = "/api/sources/{id}", tag = "sources", params(SourceId),
    request_body(content = Object, description = "The plugin's entry as in `meltano.yml` (without or with the same `name`)"),
    responses((status = 200, body = SourceDetail, headers(("ETag" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn replace_source(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(entry): ApiJson<Map<String, Value>>,
) -> Result<Response, Problem> {
    caller.require(Role::Admin)?;
    let wanted = if_match(&headers)?;
    let plugin = plugin_for(&app, &id, &caller)?;
    check_entry(&plugin, &entry, "/")?;
    let app2 = app.clone();
    let caller2 = caller.clone();
    let name = plugin.name.clone();
    let response = blocking(move || {
        let path = yedit::plugin_path(None, plugin.plugin_type.key(), &plugin.name);
        write_checked(
            &app2,
            plugin.plugin_type,
            &plugin.name,
            wanted.as_deref(),
            |doc, _| doc.set(&path, &Value::Object(entry)).map_err(edit_error),
            |project| {
                stays_own(
                    &caller2,
                    project,
                    plugin.plugin_type,
                    &plugin.name,
                    "/annotations/dsm/source/organisation",
                )
            },
        )?;
        answer(&app2, &caller2, StatusCode::OK, &plugin.name)
    })
    .await?;
    super::record_audit(&app, &caller, "source.replace", [name]).await;
    Ok(response)
}

/// RFC 7396: applies `patch` to `target`.
fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("made an object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Changes the source's entry with a JSON merge patch (RFC 7396; admin): each top-level key
/// of the patch is set or (with `null`) removed in place, so the rest of the entry keeps its
/// comments. Values of sensitive settings are refused (use `/credentials`). With `If-Match`,
/// 409 unless it is the entry's current `ETag`.
#[utoipa::path(patch, path = "/api/sources/{id}", tag = "sources", params(SourceId),
    request_body(content = Object, description = "A JSON merge patch of the plugin's entry", content_type = "application/merge-patch+json"),
    responses((status = 200, body = SourceDetail, headers(("ETag" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn patch_source(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(patch): ApiJson<Map<String, Value>>,
) -> Result<Response, Problem> {
    caller.require(Role::Admin)?;
    let wanted = if_match(&headers)?;
    let plugin = plugin_for(&app, &id, &caller)?;
    check_entry(&plugin, &patch, "/")?;
    let app2 = app.clone();
    let caller2 = caller.clone();
    let name = plugin.name.clone();
    let response = blocking(move || {
        let base = yedit::plugin_path(None, plugin.plugin_type.key(), &plugin.name);
        write_checked(
            &app2,
            plugin.plugin_type,
            &plugin.name,
            wanted.as_deref(),
            |doc, current| {
                let mut merged = current.clone();
                merge_patch(&mut merged, &Value::Object(patch.clone()));
                for key in patch.keys() {
                    if key == "name" {
                        continue;
                    }
                    let mut path = base.clone();
                    path.push(Seg::key(key));
                    match merged.get(key) {
                        None => {
                            doc.remove(&path).map_err(edit_error)?;
                        }
                        Some(v) => doc.set(&path, v).map_err(edit_error)?,
                    }
                }
                Ok(())
            },
            |project| {
                stays_own(
                    &caller2,
                    project,
                    plugin.plugin_type,
                    &plugin.name,
                    "/annotations/dsm/source/organisation",
                )
            },
        )?;
        answer(&app2, &caller2, StatusCode::OK, &plugin.name)
    })
    .await?;
    super::record_audit(&app, &caller, "source.patch", [name]).await;
    Ok(response)
}

/// Deletes the source (admin) from the file that defines it, with its environment blocks and
/// lock file, as `dsm remove` does. 409 while a run holds it or while a plugin inherits from
/// it (or a job, schedule or mapper names it). With `If-Match`, 409 unless it is the entry's
/// current `ETag`.
#[utoipa::path(delete, path = "/api/sources/{id}", tag = "sources", params(SourceId),
    responses((status = 204, description = "Deleted"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn delete_source(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    caller.require(Role::Admin)?;
    let wanted = if_match(&headers)?;
    let plugin = plugin_for(&app, &id, &caller)?;
    if let Some(run) = app.runs.running_for(&plugin.name) {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            format!("`{}` is running", plugin.name),
        )
        .detail(format!(
            "run `{run}` holds it; stop it with DELETE /api/runs/{run} or wait"
        )));
    }
    let app2 = app.clone();
    let name = plugin.name.clone();
    blocking(move || {
        let (project, _) = app2.project()?;
        if let Some(why) = crate::plugin::manage::still_used(&project, &plugin, &[]) {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                format!("`{}` is still used: {why}", plugin.name),
            )
            .detail("change or delete what uses it first"));
        }
        let states =
            crate::registry::status::source_statuses(app2.store.as_ref(), &[plugin.name.as_str()])?;
        if let Some(run) = states.first().and_then(|s| s.running_run.clone()) {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                format!("`{}` is running", plugin.name),
            )
            .detail(format!("run `{run}` holds it; wait for it to finish")));
        }
        let _lock = yedit::lock_project(&app2.root)?;
        let (_, current) = read_entry(&app2.root, plugin.plugin_type, &plugin.name)?;
        check_if_match(wanted.as_deref(), &etag(&current), &plugin.name)?;
        crate::plugin::manage::remove_one(&project, &plugin)?;
        app2.reload_if_changed()?;
        Ok(())
    })
    .await?;
    super::record_audit(&app, &caller, "source.delete", [name]).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

//! The operations on requests: who may do each, what each checks, and the transition each
//! records (with its audit entry, in the store's transaction).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Map, Value, json};

use super::{
    Actor, Connector, MAX_LIST, MAX_SECRET_BYTES, MAX_SECRETS, MAX_TEXT, RequestError,
    RequestRecord, RequestRevision, RequestStatus, Resolved, Submission, TestReport, Transition,
    events, secret_owner,
};
use crate::project::Project;
use crate::project::edit::{self as yedit, Document};
use crate::secrets::audit::{self, Entry};
use crate::secrets::{MasterKey, Secret};
use crate::store::requests::{NewRequest, RequestFilter, RequestUpdate};
use crate::store::tokens::Capability;
use crate::store::{SealedSecret, Store};

type Result<T, E = RequestError> = std::result::Result<T, E>;

/// A template's lock file: its path relative to the project root and its text.
type LockFile = Option<(std::path::PathBuf, String)>;

fn now() -> String {
    crate::store::format_time(Utc::now())
}

/// The audit log's `command` of an operation: how it was called and by whom.
fn command(via: &str, actor: &Actor) -> String {
    format!("{via} ({})", actor.id)
}

/// The audit entry of a transition: the request, the source's name, and the reason if any.
fn entry(via: &str, actor: &Actor, action: &str, r: &RequestRecord, reason: Option<&str>) -> Entry {
    let mut targets = vec![
        format!("request:{}", r.id),
        format!("source:{}", r.request.name),
    ];
    if let Some(reason) = reason {
        targets.push(format!("reason:{reason}"));
    }
    Entry::new(command(via, actor), action, targets)
}

fn require(actor: &Actor, what: Capability, doing: &str) -> Result<()> {
    if actor.may(what) {
        return Ok(());
    }
    let who = match what {
        Capability::ReviewRequests => "an approver or admin",
        _ => "a requester or admin",
    };
    Err(RequestError::forbidden(
        format!(
            "`{}` has the {} role; {doing} needs {who}",
            actor.id,
            actor.role.as_str()
        ),
        "ask an administrator for a token with the role it needs (`dsm tokens create`)",
    ))
}

/// The request `id` if `actor` may see it (else not found, as if it did not exist).
pub fn get(store: &dyn Store, actor: &Actor, id: &str) -> Result<RequestRecord> {
    if !actor.may(Capability::SubmitRequests) && !actor.may(Capability::ReviewRequests) {
        require(actor, Capability::SubmitRequests, "reading source requests")?;
    }
    let not_found = || RequestError::NotFound(id.to_owned());
    let id = uuid::Uuid::try_parse(id.trim())
        .map_err(|_| not_found())?
        .hyphenated()
        .to_string();
    match store.request(&id)? {
        Some(r) if actor.sees(&r) => Ok(r),
        _ => Err(not_found()),
    }
}

/// The requests `actor` may see, newest first: a requester's own; every request for approvers
/// and admins (`mine`: only their own too).
pub fn list(
    store: &dyn Store,
    actor: &Actor,
    mine: bool,
    status: Option<RequestStatus>,
) -> Result<Vec<RequestRecord>> {
    let reviewer = actor.may(Capability::ReviewRequests);
    if !reviewer {
        require(actor, Capability::SubmitRequests, "reading source requests")?;
    }
    Ok(store.list_requests(&RequestFilter {
        requester: (mine || !reviewer).then(|| actor.id.clone()),
        status,
        limit: MAX_LIST,
    })?)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.')
}

/// Names a plugin definition declares sensitive in its `settings`.
fn declared_sensitive(def: &Map<String, Value>) -> Vec<String> {
    def.get("settings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|s| s["sensitive"] == Value::Bool(true) || s["kind"] == "password")
        .filter_map(|s| s["name"].as_str().map(str::to_owned))
        .collect()
}

/// Checks a submission against the project: a valid, free name; a template or a plugin; a
/// known classification label; no secret values in `config`; bounded secrets and texts.
fn check(project: &Project, sub: &Submission) -> Result<()> {
    let r = &sub.request;
    if !valid_name(&r.name) {
        return Err(RequestError::invalid(
            "name",
            "use 1 to 100 letters, digits, `-`, `_` or `.` (not starting with `.`)",
        ));
    }
    match (&r.template, &r.plugin) {
        (Some(_), None) | (None, Some(_)) => {}
        _ => {
            return Err(RequestError::invalid(
                "template",
                "give either a template or a full plugin definition",
            ));
        }
    }
    if let Some(def) = &r.plugin
        && def
            .get("name")
            .is_some_and(|n| n.as_str() != Some(r.name.as_str()))
    {
        return Err(RequestError::invalid(
            "plugin.name",
            "leave it out or repeat the request's name",
        ));
    }
    if r.classification.trim().is_empty() {
        return Err(RequestError::invalid(
            "classification",
            "every request needs a classification label",
        ));
    }
    let scheme = crate::classification::Scheme::of(project)?;
    if scheme.label(&r.classification).is_none() {
        let (message, hint) = scheme.unknown(&r.classification, "the request");
        return Err(RequestError::invalid(
            "classification",
            format!("{message}; {hint}"),
        ));
    }
    let declared = r
        .plugin
        .as_ref()
        .map(declared_sensitive)
        .unwrap_or_default();
    for (key, value) in &r.config {
        let reference = value.as_str().is_some_and(|s| s.starts_with('$'));
        let sensitive = declared.iter().any(|d| d == key)
            || crate::secrets::sensitive::is_sensitive(key, false);
        if sensitive && !value.is_null() && !reference {
            return Err(RequestError::invalid(
                &format!("config.{key}"),
                "a sensitive setting: give it as a secret (read from stdin), not in config",
            ));
        }
    }
    if sub.secrets.len() > MAX_SECRETS {
        return Err(RequestError::invalid(
            "secrets",
            format!("at most {MAX_SECRETS} secrets per request"),
        ));
    }
    for (key, value) in &sub.secrets {
        if key.is_empty() || key.chars().any(char::is_control) {
            return Err(RequestError::invalid(
                "secrets",
                format!("`{key}` is not a setting name"),
            ));
        }
        if value.is_empty() || value.expose().len() > MAX_SECRET_BYTES {
            return Err(RequestError::invalid(
                &format!("secrets.{key}"),
                format!(
                    "a secret's value is 1 byte to {} KiB",
                    MAX_SECRET_BYTES / 1024
                ),
            ));
        }
    }
    for (field, text) in [("description", &r.description), ("notes", &r.notes)] {
        if text.as_ref().is_some_and(|t| t.chars().count() > MAX_TEXT) {
            return Err(RequestError::invalid(
                field,
                format!("at most {MAX_TEXT} characters"),
            ));
        }
    }
    if project.plugins().iter().any(|p| p.name == r.name) {
        return Err(RequestError::conflict(
            format!("a plugin `{}` already exists in the project", r.name),
            "pick another name for the request",
        ));
    }
    Ok(())
}

fn seal_all(
    store: &dyn Store,
    key: &MasterKey,
    owner: &str,
    secrets: &BTreeMap<String, Secret>,
) -> Result<Vec<SealedSecret>> {
    secrets
        .iter()
        .map(|(k, v)| Ok(crate::secrets::store::seal_for(store, key, owner, k, v)?))
        .collect()
}

/// Submits a request (requester or admin). Its secrets are sealed at once and never shown.
pub fn submit(
    store: &dyn Store,
    key: &MasterKey,
    project: &Project,
    actor: &Actor,
    via: &str,
    mut sub: Submission,
) -> Result<RequestRecord> {
    require(
        actor,
        Capability::SubmitRequests,
        "submitting a source request",
    )?;
    sub.request.secrets = sub.secrets.keys().cloned().collect();
    check(project, &sub)?;
    let id = uuid::Uuid::new_v4().hyphenated().to_string();
    let sealed = seal_all(store, key, &secret_owner(&id), &sub.secrets)?;
    let new = NewRequest {
        id: id.clone(),
        organisation: actor.organisation.clone(),
        requester: actor.id.clone(),
        request: sub.request,
        submitted: Transition {
            at: now(),
            actor: actor.id.clone(),
            action: "submitted".into(),
            status: RequestStatus::Pending,
            reason: None,
        },
    };
    let audited = Entry::new(
        command(via, actor),
        "request.submit",
        [
            format!("request:{id}"),
            format!("source:{}", new.request.name),
        ],
    );
    store.create_request(&new, &sealed, &audit::builder(key, &audited))?;
    let record = store
        .request(&id)?
        .ok_or_else(|| RequestError::NotFound(id.clone()))?;
    events::transition("request_submitted", &record, &json!({}));
    Ok(record)
}

/// Records `transition` on `r` (which must still have `expected`), with the audit entry.
fn record(
    store: &dyn Store,
    key: &MasterKey,
    via: &str,
    actor: &Actor,
    r: &RequestRecord,
    update: RequestUpdate,
    action: &str,
) -> Result<RequestRecord> {
    let audited = entry(via, actor, action, r, update.transition.reason.as_deref());
    if !store.update_request(&update, &audit::builder(key, &audited))? {
        return Err(RequestError::conflict(
            format!("source request `{}` changed meanwhile", r.id),
            "show it again and retry",
        ));
    }
    store
        .request(&r.id)?
        .ok_or_else(|| RequestError::NotFound(r.id.clone()))
}

fn update(r: &RequestRecord, actor: &Actor, action: &str, status: RequestStatus) -> RequestUpdate {
    RequestUpdate {
        id: r.id.clone(),
        expected: r.status,
        transition: Transition {
            at: now(),
            actor: actor.id.clone(),
            action: action.into(),
            status,
            reason: None,
        },
        revision: None,
        test: None,
        reason: None,
        destroy_secrets: false,
        put_secrets: Vec::new(),
    }
}

fn must_be(r: &RequestRecord, status: RequestStatus, doing: &str) -> Result<()> {
    if r.status == status {
        return Ok(());
    }
    Err(RequestError::conflict(
        format!(
            "source request `{}` is {}; only a {} request can be {doing}",
            r.id,
            r.status.as_str(),
            status.as_str()
        ),
        "`dsm requests show ID` shows its history",
    ))
}

fn not_own(r: &RequestRecord, actor: &Actor, doing: &str) -> Result<()> {
    if r.requester == actor.id {
        return Err(RequestError::forbidden(
            format!(
                "`{}` submitted request `{}` and cannot {doing} it",
                actor.id, r.id
            ),
            "another approver or admin decides it: no one decides their own request",
        ));
    }
    Ok(())
}

/// The plugin entry the request becomes, and the lock file of its template.
fn build_entry(
    project: &Project,
    r: &RequestRevision,
    r_organisation: Option<&str>,
    connector: &dyn Connector,
) -> Result<(Map<String, Value>, LockFile)> {
    let (mut entry, lock) = match (&r.template, &r.plugin) {
        (Some(template), _) => {
            let parent = template.split("--").next().unwrap_or(template);
            let Resolved { entry: known, lock } = connector
                .template(template)
                .map_err(|e| RequestError::invalid("template", e.message().to_owned()))?;
            let mut entry = Map::new();
            if parent != r.name {
                entry.insert("inherit_from".into(), Value::String(parent.to_owned()));
            }
            entry.extend(known);
            (entry, lock)
        }
        (None, Some(def)) => {
            let mut def = def.clone();
            def.remove("name");
            (def, None)
        }
        (None, None) => {
            return Err(RequestError::invalid(
                "template",
                "give either a template or a full plugin definition",
            ));
        }
    };
    if !r.config.is_empty() {
        let merged = match entry.remove("config") {
            Some(Value::Object(mut mine)) => {
                mine.extend(r.config.clone());
                mine
            }
            _ => r.config.clone(),
        };
        entry.insert("config".into(), Value::Object(merged));
    }
    let annotations = entry
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    let dsm = annotations
        .as_object_mut()
        .map(|a| a.entry("dsm").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
        .ok_or_else(|| {
            RequestError::invalid("plugin.annotations", "`annotations.dsm` must be an object")
        })?;
    // The source's flow: the project's default loader, unless the definition names one.
    if let Some(loader) = project.dsm().defaults.and_then(|d| d.default_loader)
        && !dsm.contains_key("default_loader")
    {
        dsm.insert("default_loader".into(), Value::String(loader));
    }
    let source = dsm
        .entry("source")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| {
            RequestError::invalid(
                "plugin.annotations",
                "`annotations.dsm.source` must be an object",
            )
        })?;
    source.insert(
        "classification".into(),
        Value::String(r.classification.clone()),
    );
    // The source belongs to the organisation that asked for it.
    if let Some(organisation) = r_organisation {
        source.insert(
            "organisation".into(),
            Value::String(organisation.to_owned()),
        );
    }
    Ok((entry, lock))
}

fn open_secrets(store: &dyn Store, key: &MasterKey, id: &str) -> Result<BTreeMap<String, Secret>> {
    store
        .sealed_secrets(Some(&secret_owner(id)))?
        .iter()
        .map(|s| {
            Ok((
                s.setting.clone(),
                crate::secrets::store::open_sealed(key, s)?,
            ))
        })
        .collect()
}

/// Runs the request's connection test on the project with the request in memory: nothing is
/// written, the secrets reach the plugin only through its private config file.
fn run_test(
    project: &Project,
    r: &RequestRecord,
    entry: &Map<String, Value>,
    secrets: &BTreeMap<String, Secret>,
    connector: &dyn Connector,
    timeout: Duration,
) -> Result<TestReport> {
    let root = project.root();
    let text = std::fs::read_to_string(root.join(crate::project::PROJECT_FILE))
        .map_err(crate::error::Error::from)?;
    let path = yedit::plugin_path(None, "extractors", &r.request.name);
    let mut doc = Document::new(text);
    if doc.has(&path)? {
        return Err(RequestError::conflict(
            format!(
                "a plugin `{}` already exists in the project",
                r.request.name
            ),
            "reject the request, or ask its requester to resubmit it under another name",
        ));
    }
    doc.set(&path, &Value::Object(entry.clone()))?;
    Project::load_with_main(root, doc.text()).map_err(|e| {
        RequestError::invalid(
            "plugin",
            format!(
                "the definition does not load as part of the project: {}",
                e.message()
            ),
        )
    })?;
    let mut with_secrets = entry.clone();
    if let Some(config) = with_secrets
        .entry("config")
        .or_insert_with(|| json!({}))
        .as_object_mut()
    {
        for (k, v) in secrets {
            config.insert(k.clone(), Value::String(v.expose().to_owned()));
        }
    }
    doc.set(&path, &Value::Object(with_secrets))
        .map_err(|_| crate::error::Error::failed("cannot add the request's secrets to its test"))?;
    // Nothing of this load's errors is shown: the text holds the secrets.
    let loaded = Project::load_with_main(root, doc.text())
        .map_err(|_| crate::error::Error::failed("the request with its secrets does not load"))?;
    Ok(connector.test(&loaded, &r.request.name, timeout)?)
}

/// Runs a pending request's connection test (approver or admin) and records the result.
pub fn test(
    store: &dyn Store,
    key: &MasterKey,
    project: &Project,
    actor: &Actor,
    via: &str,
    id: &str,
    connector: &dyn Connector,
) -> Result<(RequestRecord, TestReport)> {
    require(
        actor,
        Capability::ReviewRequests,
        "testing a source request",
    )?;
    let r = get(store, actor, id)?;
    must_be(&r, RequestStatus::Pending, "tested")?;
    let (entry, _) = build_entry(project, &r.request, r.organisation.as_deref(), connector)?;
    let secrets = open_secrets(store, key, &r.id)?;
    let report = run_test(
        project,
        &r,
        &entry,
        &secrets,
        connector,
        super::TEST_TIMEOUT,
    )?;
    let record = record_test(store, key, via, actor, &r, &report)?;
    Ok((record, report))
}

fn record_test(
    store: &dyn Store,
    key: &MasterKey,
    via: &str,
    actor: &Actor,
    r: &RequestRecord,
    report: &TestReport,
) -> Result<RequestRecord> {
    let mut u = update(r, actor, "tested", r.status);
    u.transition.reason = Some(report.summary.clone());
    u.test = Some(report.document.clone());
    record(store, key, via, actor, r, u, "request.test")
}

/// What an approval did.
#[derive(Debug, Clone)]
pub struct Approval {
    /// The request, approved.
    pub request: RequestRecord,
    /// Its connection test.
    pub test: TestReport,
    /// Whether `annotations.dsm.requests.first_sync` asks for the source's first sync now
    /// (the caller starts it and records it with [`record_first_sync`]).
    pub first_sync: bool,
}

/// Approves a pending request (approver or admin, never its requester): runs its connection
/// test (a failure refuses unless `override_reason` is given), adds the source to the project
/// file with the comment-preserving edit, moves its secrets to the source, and sets its status
/// `active`.
#[allow(clippy::too_many_arguments)]
pub fn approve(
    store: &dyn Store,
    key: &MasterKey,
    project: &Project,
    actor: &Actor,
    via: &str,
    id: &str,
    override_reason: Option<&str>,
    connector: &dyn Connector,
) -> Result<Approval> {
    require(
        actor,
        Capability::ReviewRequests,
        "approving a source request",
    )?;
    let r = get(store, actor, id)?;
    not_own(&r, actor, "approve")?;
    must_be(&r, RequestStatus::Pending, "approved")?;
    let override_reason = match override_reason.map(str::trim) {
        Some("") => {
            return Err(RequestError::invalid(
                "reason",
                "overriding the connection test needs a reason",
            ));
        }
        other => other,
    };
    let (entry, lock) = build_entry(project, &r.request, r.organisation.as_deref(), connector)?;
    let secrets = open_secrets(store, key, &r.id)?;
    let report = run_test(
        project,
        &r,
        &entry,
        &secrets,
        connector,
        super::TEST_TIMEOUT,
    )?;
    if !report.succeeded && override_reason.is_none() {
        record_test(store, key, via, actor, &r, &report)?;
        return Err(RequestError::TestFailed {
            summary: report.summary.clone(),
            document: report.document.clone(),
        });
    }
    let name = r.request.name.clone();
    let root = project.root().to_path_buf();
    let _lock = yedit::lock_project(&root)?;
    let file = root.join(crate::project::PROJECT_FILE);
    let before = std::fs::read_to_string(&file).map_err(crate::error::Error::from)?;
    let path = yedit::plugin_path(None, "extractors", &name);
    let mut doc = Document::new(before.clone());
    if doc.has(&path)? {
        return Err(RequestError::conflict(
            format!("a plugin `{name}` already exists in the project"),
            "reject the request, or ask its requester to resubmit it under another name",
        ));
    }
    doc.set(&path, &Value::Object(entry))?;
    if let Some((rel, text)) = &lock {
        let at = root.join(rel);
        if !at.exists() {
            if let Some(dir) = at.parent() {
                std::fs::create_dir_all(dir).map_err(crate::error::Error::from)?;
            }
            yedit::write_new_shared(&at, &format!("{}\n", text.trim_end()))?;
        }
    }
    let restore = || {
        crate::files::replace_atomically(&file, before.as_bytes(), crate::files::Mode::Keep)
            .map_err(crate::error::Error::from)
    };
    crate::files::replace_atomically(&file, doc.text().as_bytes(), crate::files::Mode::Keep)
        .map_err(crate::error::Error::from)?;
    let sealed = match seal_all(store, key, &name, &secrets) {
        Ok(sealed) => sealed,
        Err(e) => {
            restore()?;
            return Err(e);
        }
    };
    let mut u = update(&r, actor, "approved", RequestStatus::Approved);
    u.transition.reason = override_reason.map(|why| format!("approved over a failed test: {why}"));
    u.reason = Some(u.transition.reason.clone());
    u.test = Some(report.document.clone());
    u.destroy_secrets = true;
    u.put_secrets = sealed;
    let approved = match record(store, key, via, actor, &r, u, "request.approve") {
        Ok(approved) => approved,
        Err(e) => {
            restore()?;
            return Err(e);
        }
    };
    crate::registry::status::set_operator_status(
        store,
        &name,
        crate::registry::status::OperatorStatus::Active,
        Some(&format!("source request {} approved", r.id)),
        Some(&actor.id),
        Utc::now(),
    )?;
    events::transition(
        "request_approved",
        &approved,
        &json!({"approver": actor.id, "override_reason": override_reason}),
    );
    let (_, first_sync) = super::options(project)?;
    Ok(Approval {
        request: approved,
        test: report,
        first_sync,
    })
}

/// Records the first sync of an approved request's source and its outcome.
pub fn record_first_sync(
    store: &dyn Store,
    key: &MasterKey,
    actor: &Actor,
    via: &str,
    id: &str,
    outcome: &str,
    records: Option<u64>,
) -> Result<RequestRecord> {
    let r = store
        .request(id)?
        .ok_or_else(|| RequestError::NotFound(id.to_owned()))?;
    must_be(&r, RequestStatus::Approved, "synced")?;
    let mut u = update(&r, actor, "first_sync", RequestStatus::Approved);
    u.transition.reason = Some(outcome.to_owned());
    let synced = record(store, key, via, actor, &r, u, "request.first_sync")?;
    events::transition(
        "first_sync_finished",
        &synced,
        &json!({"outcome": outcome, "records": records}),
    );
    Ok(synced)
}

/// Runs an approved request's first sync: `dsm sync NAME` in a process of its own (this
/// binary, its summary read as JSON, its log on stderr, acting as the local process, not as a
/// token), and records its outcome. Returns the outcome (`succeeded` or `failed: WHY`) and the
/// records it read.
#[allow(clippy::too_many_arguments)]
pub fn first_sync(
    store: &dyn Store,
    key: &MasterKey,
    actor: &Actor,
    via: &str,
    r: &RequestRecord,
    root: &std::path::Path,
    environment: &crate::project::EnvironmentChoice,
    database_uri: Option<&str>,
) -> Result<(String, Option<u64>)> {
    let name = &r.request.name;
    let exe = std::env::current_exe().map_err(crate::error::Error::from)?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["sync", name.as_str(), "--format", "json"]);
    cmd.arg("--cwd").arg(root);
    if let Some(env) = &environment.flag {
        cmd.args(["--environment", env]);
    }
    if environment.none {
        cmd.arg("--no-environment");
    }
    if let Some(uri) = database_uri {
        cmd.args(["--database-uri", uri]);
    }
    cmd.env_remove(crate::envvars::TOKEN)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    let out = cmd.output().map_err(crate::error::Error::from)?;
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let flow = summary["flows"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == name.as_str()));
    let records = flow.and_then(|f| f["records"].as_u64());
    let outcome = match flow {
        Some(f) if f["status"] == "succeeded" => "succeeded".to_owned(),
        Some(f) => format!(
            "failed: {}",
            f["error"]
                .as_str()
                .unwrap_or(f["status"].as_str().unwrap_or("unknown"))
        ),
        None => format!(
            "failed: {}",
            summary["error"]["message"]
                .as_str()
                .unwrap_or("the sync printed no summary")
        ),
    };
    record_first_sync(store, key, actor, via, &r.id, &outcome, records)?;
    Ok((outcome, records))
}

/// Rejects a pending request with a reason (approver or admin, never its requester). Its
/// secrets stay sealed for a resubmission until the retention passes.
#[allow(clippy::too_many_arguments)]
pub fn reject(
    store: &dyn Store,
    key: &MasterKey,
    actor: &Actor,
    via: &str,
    id: &str,
    reason: Option<&str>,
) -> Result<RequestRecord> {
    require(
        actor,
        Capability::ReviewRequests,
        "rejecting a source request",
    )?;
    let reason = reason
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            RequestError::invalid(
                "reason",
                "a rejection needs a reason: the requester reads it to fix the request",
            )
        })?;
    if reason.chars().count() > MAX_TEXT {
        return Err(RequestError::invalid(
            "reason",
            format!("at most {MAX_TEXT} characters"),
        ));
    }
    let r = get(store, actor, id)?;
    not_own(&r, actor, "reject")?;
    must_be(&r, RequestStatus::Pending, "rejected")?;
    let mut u = update(&r, actor, "rejected", RequestStatus::Rejected);
    u.transition.reason = Some(reason.to_owned());
    u.reason = Some(Some(reason.to_owned()));
    let rejected = record(store, key, via, actor, &r, u, "request.reject")?;
    events::transition("request_rejected", &rejected, &json!({"reason": reason}));
    Ok(rejected)
}

fn own(store: &dyn Store, actor: &Actor, id: &str, doing: &str) -> Result<RequestRecord> {
    let r = get(store, actor, id)?;
    if r.requester != actor.id {
        return Err(RequestError::forbidden(
            format!("only the requester of `{}` can {doing} it", r.id),
            "the requester's own token does this",
        ));
    }
    Ok(r)
}

/// Resubmits a rejected request (its requester only), changed by `changes` when given; new
/// secrets replace those of the same name.
pub fn resubmit(
    store: &dyn Store,
    key: &MasterKey,
    project: &Project,
    actor: &Actor,
    via: &str,
    id: &str,
    changes: Option<Submission>,
) -> Result<RequestRecord> {
    let r = own(store, actor, id, "resubmit")?;
    must_be(&r, RequestStatus::Rejected, "resubmitted")?;
    let mut sub = changes.unwrap_or_else(|| Submission {
        request: r.request.clone(),
        secrets: BTreeMap::new(),
    });
    let mut names: Vec<String> = r.request.secrets.clone();
    names.extend(sub.secrets.keys().cloned());
    names.sort();
    names.dedup();
    check(project, &sub)?;
    sub.request.secrets = names;
    let mut u = update(&r, actor, "resubmitted", RequestStatus::Pending);
    u.put_secrets = seal_all(store, key, &secret_owner(&r.id), &sub.secrets)?;
    u.revision = Some(sub.request);
    u.reason = Some(None);
    let resubmitted = record(store, key, via, actor, &r, u, "request.resubmit")?;
    events::transition(
        "request_submitted",
        &resubmitted,
        &json!({"resubmitted": true}),
    );
    Ok(resubmitted)
}

/// Cancels a pending or rejected request (its requester, or an admin) and destroys its
/// secrets.
pub fn cancel(
    store: &dyn Store,
    key: &MasterKey,
    actor: &Actor,
    via: &str,
    id: &str,
) -> Result<RequestRecord> {
    let r = if actor.may(Capability::Administer) {
        get(store, actor, id)?
    } else {
        own(store, actor, id, "cancel")?
    };
    if !matches!(r.status, RequestStatus::Pending | RequestStatus::Rejected) {
        return Err(RequestError::conflict(
            format!(
                "source request `{}` is {}; only a pending or rejected request can be cancelled",
                r.id,
                r.status.as_str()
            ),
            "`dsm requests show ID` shows its history",
        ));
    }
    let mut u = update(&r, actor, "cancelled", RequestStatus::Cancelled);
    u.destroy_secrets = true;
    record(store, key, via, actor, &r, u, "request.cancel")
}

/// Deletes rejected and cancelled requests older than the project's retention, with their
/// secrets; the audit log records which. Returns their ids.
pub fn prune_expired(
    store: &dyn Store,
    key: &MasterKey,
    project: &Project,
    via: &str,
) -> Result<Vec<String>> {
    let (retention, _) = super::options(project)?;
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let before = Utc::now()
        .checked_sub_signed(retention)
        .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
    let before = crate::store::format_time(before);
    let cmd = via.to_owned();
    Ok(store.prune_requests(&before, &|prev, ids| {
        let entry = Entry::new(
            cmd.clone(),
            "request.expire",
            ids.iter().map(|id| format!("request:{id}")),
        );
        audit::builder(key, &entry)(prev)
    })?)
}

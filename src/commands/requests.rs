//! `dsm requests`: source requests from the command line (submit, list, show, test, approve,
//! reject, resubmit, cancel). The actor is the token in `DSM_TOKEN`, else the local OS user;
//! the lifecycle is [`crate::requests`]'.

use std::collections::BTreeMap;
use std::io::{BufRead as _, Read as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::commands::Context;
use crate::commands::shared::load;
use crate::error::{Error, Result};
use crate::printer::OutputFormat;
use crate::project::{PluginType, Project};
use crate::requests::{
    self as lifecycle, Actor, Connector, RequestRecord, RequestRevision, RequestStatus, Resolved,
    Submission, TestReport,
};
use crate::secrets::{MasterKey, Secret};
use crate::store::Store;

/// How the audit log names these commands.
const VIA: &str = "dsm requests";
/// The largest `--plugin-file` read.
const MAX_PLUGIN_FILE: u64 = 1024 * 1024;

/// Arguments of `dsm requests`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: RequestsCommand,
}

/// The `dsm requests` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum RequestsCommand {
    /// Ask for a new source (requester or admin); secret values are read from stdin, one per
    /// line, in the order of `--secret`.
    Submit(SubmitArgs),
    /// List the requests you may see: your own, or all of them for approvers and admins.
    List {
        /// Only the requests you submitted.
        #[arg(long)]
        mine: bool,
        /// Only requests with this status.
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
    },
    /// Show one request with its history (never its secret values).
    Show {
        /// The request's id (a UUID).
        id: String,
    },
    /// Run a pending request's connection test (approver or admin).
    Test {
        /// The request's id (a UUID).
        id: String,
    },
    /// Approve a pending request (approver or admin, not its requester): its connection test
    /// runs first and a failure refuses the approval unless overridden.
    Approve {
        /// The request's id (a UUID).
        id: String,
        /// Approve even though the connection test fails (needs `--reason`).
        #[arg(long, requires = "reason")]
        override_test: bool,
        /// Why the failed test is overridden.
        #[arg(long, value_name = "TEXT", requires = "override_test")]
        reason: Option<String>,
    },
    /// Reject a pending request with a reason (approver or admin, not its requester).
    Reject {
        /// The request's id (a UUID).
        id: String,
        /// Why: the requester reads it to fix the request.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Resubmit a rejected request of yours, changed by the options given.
    Resubmit {
        /// The request's id (a UUID).
        id: String,
        /// What changes (anything left out stays as submitted).
        #[command(flatten)]
        definition: DefinitionArgs,
    },
    /// Cancel a pending or rejected request of yours; its secrets are destroyed.
    Cancel {
        /// The request's id (a UUID).
        id: String,
    },
}

/// A request status as `--status` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusArg {
    /// Waiting for an approver.
    Pending,
    /// Approved: the source is in the project.
    Approved,
    /// Rejected with a reason.
    Rejected,
    /// Withdrawn by its requester.
    Cancelled,
}

impl From<StatusArg> for RequestStatus {
    fn from(s: StatusArg) -> Self {
        match s {
            StatusArg::Pending => RequestStatus::Pending,
            StatusArg::Approved => RequestStatus::Approved,
            StatusArg::Rejected => RequestStatus::Rejected,
            StatusArg::Cancelled => RequestStatus::Cancelled,
        }
    }
}

/// Arguments of `dsm requests submit`.
#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// The source's name once approved.
    pub name: String,
    /// What is asked for.
    #[command(flatten)]
    pub definition: DefinitionArgs,
}

/// A request's definition on the command line.
#[derive(Debug, Default, clap::Args)]
pub struct DefinitionArgs {
    /// A plugin of dsm's catalog: `PLUGIN` or `PLUGIN--VARIANT`.
    #[arg(long, value_name = "PLUGIN", conflicts_with = "plugin_file")]
    pub template: Option<String>,
    /// A YAML or JSON file with the full plugin definition (as its `meltano.yml` entry).
    #[arg(long, value_name = "FILE")]
    pub plugin_file: Option<PathBuf>,
    /// A setting that is not sensitive (repeatable); `V` is read as JSON when it is JSON.
    #[arg(long = "config", value_name = "K=V")]
    pub config: Vec<String>,
    /// A sensitive setting (repeatable); its value is read from stdin, one per line.
    #[arg(long = "secret", value_name = "K")]
    pub secret: Vec<String>,
    /// The classification label of the source's data.
    #[arg(long, value_name = "LABEL")]
    pub classification: Option<String>,
    /// What the source is for.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Notes for the approver.
    #[arg(long, value_name = "TEXT")]
    pub notes: Option<String>,
}

/// Runs `dsm requests`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let format = ctx.text_or_json()?;
    let (project, _) = load(ctx)?;
    let store = ctx.open_store()?;
    let actor = Actor::from_env(store.as_ref())?;
    let key = || -> Result<MasterKey> {
        let key = crate::secrets::store::find_key(store.as_ref())?.0;
        lifecycle::prune_expired(store.as_ref(), &key, &project, VIA)?;
        Ok(key)
    };
    let connector = CliConnector { ctx };
    match args.command {
        RequestsCommand::Submit(a) => {
            let sub = submission(&a.definition, Some(a.name), None)?;
            let r = lifecycle::submit(store.as_ref(), &key()?, &project, &actor, VIA, sub)?;
            crate::requests::events::announce(&project, store.clone(), &r);
            changed(ctx, format, &r, "submitted")
        }
        RequestsCommand::List { mine, status } => {
            let list = lifecycle::list(store.as_ref(), &actor, mine, status.map(Into::into))?;
            print_list(ctx, format, &list)
        }
        RequestsCommand::Show { id } => {
            let r = lifecycle::get(store.as_ref(), &actor, &id)?;
            print_one(ctx, format, &r)
        }
        RequestsCommand::Test { id } => {
            let key = key()?;
            let (r, report) =
                lifecycle::test(store.as_ref(), &key, &project, &actor, VIA, &id, &connector)?;
            match format {
                OutputFormat::Json => ctx.printer.json(&json!({
                    "id": r.id,
                    "status": r.status,
                    "succeeded": report.succeeded,
                    "summary": report.summary,
                    "test": report.document,
                })),
                _ => ctx.printer.line(format!(
                    "request {}: connection test {}",
                    r.id, report.summary
                )),
            }
            Ok(())
        }
        RequestsCommand::Approve {
            id,
            override_test,
            reason,
        } => {
            let key = key()?;
            let reason = if override_test { reason } else { None };
            let approval = lifecycle::approve(
                store.as_ref(),
                &key,
                &project,
                &actor,
                VIA,
                &id,
                reason.as_deref(),
                &connector,
            )?;
            crate::requests::events::announce(&project, store.clone(), &approval.request);
            let name = approval.request.request.name.clone();
            let first_sync = approval
                .first_sync
                .then(|| first_sync(ctx, store.as_ref(), &key, &actor, &approval.request))
                .transpose()?;
            match format {
                OutputFormat::Json => ctx.printer.json(&json!({
                    "id": approval.request.id,
                    "status": approval.request.status,
                    "source": name,
                    "test": approval.test.document,
                    "first_sync": first_sync,
                })),
                _ => {
                    ctx.printer.line(format!(
                        "request {} approved: source `{name}` added to the project (test {})",
                        approval.request.id, approval.test.summary
                    ));
                    if let Some(outcome) = first_sync {
                        ctx.printer
                            .line(format!("first sync of `{name}`: {outcome}"));
                    }
                }
            }
            Ok(())
        }
        RequestsCommand::Reject { id, reason } => {
            let r =
                lifecycle::reject(store.as_ref(), &key()?, &actor, VIA, &id, reason.as_deref())?;
            crate::requests::events::announce(&project, store.clone(), &r);
            changed(ctx, format, &r, "rejected")
        }
        RequestsCommand::Resubmit { id, definition } => {
            let old = lifecycle::get(store.as_ref(), &actor, &id)?;
            let sub = submission(&definition, None, Some(&old.request))?;
            let r = lifecycle::resubmit(
                store.as_ref(),
                &key()?,
                &project,
                &actor,
                VIA,
                &id,
                Some(sub),
            )?;
            crate::requests::events::announce(&project, store.clone(), &r);
            changed(ctx, format, &r, "resubmitted")
        }
        RequestsCommand::Cancel { id } => {
            let r = lifecycle::cancel(store.as_ref(), &key()?, &actor, VIA, &id)?;
            changed(ctx, format, &r, "cancelled")
        }
    }
}

/// Runs the approved source's first sync and records its outcome.
fn first_sync(
    ctx: &Context,
    store: &dyn Store,
    key: &MasterKey,
    actor: &Actor,
    r: &RequestRecord,
) -> Result<String> {
    let choice = crate::project::EnvironmentChoice {
        flag: ctx.global.environment.clone(),
        none: ctx.global.no_environment,
        use_default: true,
    };
    let root = ctx.project_root()?;
    let (outcome, _) = lifecycle::first_sync(
        store,
        key,
        actor,
        VIA,
        r,
        &root,
        &choice,
        ctx.global.database_uri.as_deref(),
    )?;
    Ok(outcome)
}

fn changed(ctx: &Context, format: OutputFormat, r: &RequestRecord, what: &str) -> Result<()> {
    match format {
        OutputFormat::Json => ctx.printer.json(&json!({"id": r.id, "status": r.status})),
        _ => ctx.printer.line(format!(
            "request {} {what} (status {})",
            r.id,
            r.status.as_str()
        )),
    }
    Ok(())
}

fn print_list(ctx: &Context, format: OutputFormat, list: &[RequestRecord]) -> Result<()> {
    match format {
        OutputFormat::Json => ctx.printer.json(&json!({ "requests": list })),
        _ => {
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|r| {
                    vec![
                        r.id.clone(),
                        r.request.name.clone(),
                        r.status.as_str().to_owned(),
                        r.organisation.clone().unwrap_or_else(|| "-".into()),
                        r.requester.clone(),
                        r.updated_at.clone(),
                        r.reason.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            ctx.printer.table(
                &[
                    "ID",
                    "NAME",
                    "STATUS",
                    "ORGANISATION",
                    "REQUESTER",
                    "UPDATED",
                    "REASON",
                ],
                &rows,
            );
        }
    }
    Ok(())
}

fn print_one(ctx: &Context, format: OutputFormat, r: &RequestRecord) -> Result<()> {
    if format == OutputFormat::Json {
        ctx.printer.json(r);
        return Ok(());
    }
    let p = &ctx.printer;
    let what = r
        .request
        .template
        .as_ref()
        .map(|t| format!("template {t}"))
        .unwrap_or_else(|| "a full plugin definition".into());
    p.line(format!("request {}: `{}` ({what})", r.id, r.request.name));
    p.line(format!("status:         {}", r.status.as_str()));
    p.line(format!(
        "organisation:   {}",
        r.organisation.as_deref().unwrap_or("-")
    ));
    p.line(format!("requester:      {}", r.requester));
    p.line(format!("classification: {}", r.request.classification));
    if let Some(d) = &r.request.description {
        p.line(format!("description:    {d}"));
    }
    if let Some(n) = &r.request.notes {
        p.line(format!("notes:          {n}"));
    }
    if !r.request.secrets.is_empty() {
        p.line(format!(
            "secrets:        {} (values sealed, never shown)",
            r.request.secrets.join(", ")
        ));
    }
    if let Some(reason) = &r.reason {
        p.line(format!("reason:         {reason}"));
    }
    p.line("history:");
    for t in &r.history {
        p.line(format!(
            "  {}  {:<11} {:<9} {}{}",
            t.at,
            t.action,
            t.status.as_str(),
            t.actor,
            t.reason
                .as_ref()
                .map(|x| format!(": {x}"))
                .unwrap_or_default()
        ));
    }
    Ok(())
}

/// A request from the options given, on top of `base` (a resubmission's request as it was).
fn submission(
    args: &DefinitionArgs,
    name: Option<String>,
    base: Option<&RequestRevision>,
) -> Result<Submission> {
    let mut request = base.cloned().unwrap_or_else(|| RequestRevision {
        name: String::new(),
        template: None,
        plugin: None,
        config: Map::new(),
        secrets: Vec::new(),
        classification: String::new(),
        description: None,
        notes: None,
    });
    if let Some(name) = name {
        request.name = name;
    }
    if base.is_none() && args.template.is_none() && args.plugin_file.is_none() {
        return Err(Error::config("a request needs `--template PLUGIN` or `--plugin-file FILE`")
            .hint("`--template tap-csv` asks for a plugin of dsm's catalog; `--plugin-file FILE` gives a full definition"));
    }
    if base.is_none() && args.classification.is_none() {
        return Err(Error::config("a request needs `--classification LABEL`")
            .hint("the label of the source's data, e.g. `--classification internal`"));
    }
    if let Some(t) = &args.template {
        request.template = Some(t.clone());
        request.plugin = None;
    }
    if let Some(path) = &args.plugin_file {
        request.plugin = Some(read_plugin_file(path)?);
        request.template = None;
    }
    for pair in &args.config {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            Error::config(format!("`--config {pair}` is not `KEY=VALUE`"))
                .hint("write `--config path=data.csv`; sensitive settings go with `--secret KEY`")
        })?;
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
        request.config.insert(k.trim().to_owned(), value);
    }
    if let Some(c) = &args.classification {
        request.classification = c.clone();
    }
    if args.description.is_some() {
        request.description = args.description.clone();
    }
    if args.notes.is_some() {
        request.notes = args.notes.clone();
    }
    Ok(Submission {
        request,
        secrets: read_secrets(&args.secret)?,
    })
}

fn read_plugin_file(path: &std::path::Path) -> Result<Map<String, Value>> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::config(format!("cannot read `{}`: {e}", path.display())))?;
    if meta.len() > MAX_PLUGIN_FILE {
        return Err(Error::config(format!(
            "`{}` is {} bytes; a plugin definition is at most 1 MiB",
            path.display(),
            meta.len()
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::config(format!("cannot read `{}`: {e}", path.display())))?;
    let tree = crate::project::yaml::parse(&text).map_err(|e| {
        Error::config(format!(
            "`{}` is not valid YAML: {}",
            path.display(),
            e.message
        ))
    })?;
    match tree.to_json() {
        Value::Object(map) => Ok(map),
        _ => Err(Error::config(format!(
            "`{}` does not hold a plugin definition",
            path.display()
        ))
        .hint("write the plugin's entry as in meltano.yml: `namespace:`, `executable:`, `settings:` ...")),
    }
}

/// One value per `--secret`, from stdin, one per line (bounded).
fn read_secrets(names: &[String]) -> Result<BTreeMap<String, Secret>> {
    let mut out = BTreeMap::new();
    if names.is_empty() {
        return Ok(out);
    }
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let limit = u64::try_from(lifecycle::MAX_SECRET_BYTES).unwrap_or(u64::MAX) + 2;
    for (i, name) in names.iter().enumerate() {
        let mut line = zeroize::Zeroizing::new(Vec::new());
        let n = (&mut input).take(limit).read_until(b'\n', &mut line)?;
        if n == 0 {
            return Err(Error::config(format!(
                "expected {} secret values on stdin (one per line, for {}); got {i}",
                names.len(),
                names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
            ))
            .hint("pipe the values in the order of `--secret`, e.g. `printf '%s\\n' \"$PASSWORD\" | dsm requests submit ...`"));
        }
        if !line.ends_with(b"\n") && n as u64 >= limit {
            return Err(Error::config(format!(
                "the value of secret `{name}` on stdin is longer than {} KiB",
                lifecycle::MAX_SECRET_BYTES / 1024
            )));
        }
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        let value = Secret::from_utf8(std::mem::take(&mut *line)).map_err(|_| {
            Error::config(format!(
                "the value of secret `{name}` on stdin is not UTF-8"
            ))
        })?;
        out.insert(name.clone(), value);
    }
    Ok(out)
}

/// The CLI's connector: templates from dsm's catalog, tests as `dsm test NAME` runs them.
struct CliConnector<'a> {
    ctx: &'a Context,
}

impl Connector for CliConnector<'_> {
    fn template(&self, template: &str) -> Result<Resolved> {
        let (parent, variant) = match template.split_once("--") {
            Some((p, v)) => (p, Some(v)),
            None => (template, None),
        };
        let (entry, lock) =
            crate::plugin::manage::catalog_entry(PluginType::Extractors, parent, variant)?;
        Ok(Resolved {
            entry,
            lock: lock.map(|(rel, text)| (rel, text.to_owned())),
        })
    }

    fn test(&self, project: &Project, name: &str, timeout: Duration) -> Result<TestReport> {
        let choice = crate::project::EnvironmentChoice {
            flag: self.ctx.global.environment.clone(),
            none: self.ctx.global.no_environment,
            use_default: true,
        };
        let env = project.active_environment(&choice)?.cloned();
        let (probes, run_dir) =
            crate::registry::plan::probes_for_plugin(project, env.as_ref(), name)?;
        if probes.is_empty() {
            return Err(Error::config(format!("`{name}` has no connection test")));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let results = runtime.block_on(crate::registry::probe::run_probes(
            probes,
            1,
            timeout,
            Arc::clone(&run_dir),
        ));
        drop(runtime);
        Ok(lifecycle::report(&results))
    }
}

//! `dsm webhooks`: the events a webhook source received on `dsm serve` (list, show, replay).

use serde::Serialize;
use serde_json::Value;

use crate::commands::Context;
use crate::commands::shared::audit;
use crate::error::{Error, Result};
use crate::printer::OutputFormat;
use crate::project::{PluginType, Project};
use crate::registry::catalog::{SourceType, describe};
use crate::store::{WebhookEvent, format_time};

/// Arguments of `dsm webhooks`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: WebhooksCommand,
}

/// The `dsm webhooks` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum WebhooksCommand {
    /// List a source's events in delivery order: id, event id, received, size, pending or
    /// consumed.
    List {
        /// The webhook source (an extractor of type `webhook`).
        source: String,
        /// Only events no run has delivered yet.
        #[arg(long)]
        pending: bool,
        /// At most this many events (the oldest deliveries first).
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Show one event with its payload.
    Show {
        /// The webhook source.
        source: String,
        /// The event's id (from `dsm webhooks list`).
        id: i64,
    },
    /// Make consumed events pending again, so the next run of the source sends them again.
    Replay {
        /// The webhook source.
        source: String,
        /// The events' ids; without any, every consumed event of the source.
        ids: Vec<i64>,
    },
}

/// An event as `list` and `show` print it.
#[derive(Debug, Serialize)]
struct EventDoc {
    id: i64,
    event_id: Option<String>,
    seq: i64,
    received_at: String,
    size: u64,
    status: &'static str,
    consumed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<Value>,
}

impl EventDoc {
    fn of(e: &WebhookEvent) -> Result<EventDoc> {
        let payload = match &e.payload {
            None => None,
            Some(text) => Some(serde_json::from_str(text).map_err(|err| {
                Error::failed(format!(
                    "webhook event {} of `{}` in the system store is not JSON: {err}",
                    e.id, e.source
                ))
            })?),
        };
        Ok(EventDoc {
            id: e.id,
            event_id: e.event_id.clone(),
            seq: e.seq,
            received_at: format_time(e.received_at),
            size: e.size,
            status: if e.consumed_at.is_some() {
                "consumed"
            } else {
                "pending"
            },
            consumed_at: e.consumed_at.map(format_time),
            payload,
        })
    }
}

/// What `dsm webhooks replay --format json` prints.
#[derive(Debug, Serialize)]
struct ReplayDoc<'a> {
    source: &'a str,
    replayed: Vec<i64>,
}

/// Runs `dsm webhooks`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let format = ctx.text_or_json()?;
    let project = Project::load(&ctx.project_root()?)?;
    match args.command {
        WebhooksCommand::List {
            source,
            pending,
            limit,
        } => {
            check_source(&project, &source)?;
            list(ctx, format, &source, pending, limit)
        }
        WebhooksCommand::Show { source, id } => {
            check_source(&project, &source)?;
            show(ctx, format, &source, id)
        }
        WebhooksCommand::Replay { source, ids } => {
            check_source(&project, &source)?;
            replay(ctx, format, &source, &ids)
        }
    }
}

/// Refuses a name that is not an extractor of type `webhook`, naming the ones there are.
fn check_source(project: &Project, source: &str) -> Result<()> {
    let webhook_sources: Vec<&str> = project
        .plugins_of(PluginType::Extractors)
        .filter(|p| describe(project, p).source_type == SourceType::Webhook)
        .map(|p| p.name.as_str())
        .collect();
    if webhook_sources.contains(&source) {
        return Ok(());
    }
    let mut err = if project
        .plugins_of(PluginType::Extractors)
        .any(|p| p.name == source)
    {
        Error::config(format!("extractor `{source}` is not a webhook source"))
            .hint("a webhook source has `annotations.dsm.source.type: webhook` (`dsm add tap-webhook` sets it)")
    } else {
        Error::config(format!("no extractor `{source}` in meltano.yml"))
    };
    if let Some(close) = crate::error::did_you_mean(source, webhook_sources.iter().copied()) {
        err = err.hint(format!("did you mean `{close}`?"));
    } else if !webhook_sources.is_empty() {
        err = err.hint(format!(
            "the webhook sources are: {}",
            webhook_sources.join(", ")
        ));
    }
    Err(err)
}

fn list(
    ctx: &Context,
    format: OutputFormat,
    source: &str,
    pending: bool,
    limit: usize,
) -> Result<()> {
    let store = ctx.open_store()?;
    let events = store.webhook_events(source, i64::MIN, pending, limit)?;
    let docs = events
        .iter()
        .map(EventDoc::of)
        .collect::<Result<Vec<_>>>()?;
    match format {
        OutputFormat::Json => ctx.printer.json(&docs),
        OutputFormat::Text if docs.is_empty() => ctx.printer.notice(format!(
            "no {}events for `{source}`; senders POST them to `/api/webhooks/{source}` on `dsm serve`",
            if pending { "pending " } else { "" }
        )),
        OutputFormat::Text => {
            let rows: Vec<Vec<String>> = docs
                .iter()
                .map(|d| {
                    vec![
                        d.id.to_string(),
                        d.event_id.clone().unwrap_or_else(|| "-".into()),
                        d.received_at.clone(),
                        d.size.to_string(),
                        d.status.to_owned(),
                    ]
                })
                .collect();
            ctx.printer
                .table(&["ID", "EVENT ID", "RECEIVED", "BYTES", "STATUS"], &rows);
            let counts = store.webhook_counts(source)?;
            ctx.printer.notice(format!(
                "`{source}`: {} pending, {} consumed",
                counts.pending, counts.consumed
            ));
        }
    }
    Ok(())
}

fn show(ctx: &Context, format: OutputFormat, source: &str, id: i64) -> Result<()> {
    let store = ctx.open_store()?;
    let Some(event) = store.webhook_event(source, id)? else {
        return Err(
            Error::config(format!("source `{source}` has no event {id}"))
                .hint(format!("`dsm webhooks list {source}` shows its events")),
        );
    };
    let doc = EventDoc::of(&event)?;
    match format {
        OutputFormat::Json => ctx.printer.json(&doc),
        OutputFormat::Text => {
            ctx.printer.line(format!("id:          {}", doc.id));
            ctx.printer.line(format!(
                "event id:    {}",
                doc.event_id.as_deref().unwrap_or("-")
            ));
            ctx.printer
                .line(format!("received:    {}", doc.received_at));
            ctx.printer.line(format!("size:        {} bytes", doc.size));
            ctx.printer.line(format!(
                "status:      {}{}",
                doc.status,
                doc.consumed_at
                    .as_deref()
                    .map(|t| format!(" ({t})"))
                    .unwrap_or_default()
            ));
            let pretty = serde_json::to_string_pretty(doc.payload.as_ref().unwrap_or(&Value::Null))
                .map_err(|e| Error::failed(format!("cannot print the payload: {e}")))?;
            ctx.printer.line(pretty);
        }
    }
    Ok(())
}

fn replay(ctx: &Context, format: OutputFormat, source: &str, ids: &[i64]) -> Result<()> {
    let store = ctx.open_store()?;
    let replayed = store.replay_webhooks(source, (!ids.is_empty()).then_some(ids))?;
    let missing: Vec<String> = ids
        .iter()
        .filter(|id| !replayed.contains(id))
        .map(i64::to_string)
        .collect();
    if !missing.is_empty() {
        ctx.printer.warn(format!(
            "not replayed (no such consumed event of `{source}`): {}",
            missing.join(", ")
        ));
    }
    if !replayed.is_empty() {
        let what = if ids.is_empty() {
            format!("{source} (all {} consumed events)", replayed.len())
        } else {
            format!(
                "{source} events {}",
                replayed
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            )
        };
        audit(ctx, "dsm webhooks replay", "webhooks.replay", &what);
    }
    match format {
        OutputFormat::Json => ctx.printer.json(&ReplayDoc { source, replayed }),
        OutputFormat::Text => ctx.printer.notice(format!(
            "{} of `{source}` pending again; the next run sends {}",
            crate::printer::count(replayed.len() as u64, "event"),
            if replayed.len() == 1 { "it" } else { "them" }
        )),
    }
    Ok(())
}

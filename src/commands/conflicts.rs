//! `dsm conflicts list|show|counts|prune`: the conflict log of merged streams.

use chrono::Utc;

use crate::commands::Context;
use crate::error::{Error, Result};
use crate::printer::OutputFormat;
use crate::store::merged::{ConflictEntry, ConflictFilter, MergedTables};

/// Arguments of `dsm conflicts`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: ConflictsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ConflictsCommand {
    /// List logged disagreements, newest first.
    List(FilterArgs),
    /// Show one entry with its candidates by source.
    Show {
        /// The entry's id (from `dsm conflicts list`).
        id: i64,
    },
    /// Count entries per run and merged stream.
    Counts(FilterArgs),
    /// Delete entries older than a time.
    Prune {
        /// `30d`, `12h`, a date (`2024-01-31`) or an RFC 3339 time.
        #[arg(long)]
        older_than: String,
        /// Only this merged stream.
        #[arg(long)]
        stream: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
struct FilterArgs {
    /// Only this merged stream.
    #[arg(long)]
    stream: Option<String>,
    /// Only entries where this source had a candidate.
    #[arg(long)]
    source: Option<String>,
    /// Only entries since `30d`, `12h`, a date or an RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// Only this run.
    #[arg(long)]
    run_id: Option<String>,
    /// At most this many entries.
    #[arg(long)]
    limit: Option<u32>,
}

fn open(ctx: &Context) -> Result<Box<dyn MergedTables>> {
    let root = ctx.project_root()?;
    let location = crate::store::locate(ctx.global.database_uri.as_deref(), &root)?;
    let crate::store::Location::Sqlite(path) = &location else {
        return crate::store::merged::open(&location, &root);
    };
    if !path.is_file() {
        return Err(
            Error::config(format!("no system database at `{}`", path.display()))
                .hint("run a merged flow with `dsm sync` first, or pass `--database-uri`"),
        );
    }
    // Opening the store brings its schema (and so the conflict-log table) up to date.
    drop(crate::store::SqliteStore::open(path)?);
    crate::store::merged::open(&location, &root)
}

fn filter(args: FilterArgs) -> Result<ConflictFilter> {
    Ok(ConflictFilter {
        stream: args.stream,
        source: args.source,
        since: args
            .since
            .map(|s| crate::duration::moment(&s, Utc::now()))
            .transpose()?,
        run_id: args.run_id,
        limit: args.limit,
    })
}

fn row(e: &ConflictEntry) -> Vec<String> {
    vec![
        e.id.to_string(),
        e.logged_at.clone(),
        e.stream.clone(),
        e.key.to_string(),
        e.field.clone(),
        e.rule.clone(),
        e.outcome.clone(),
        e.winning_source.clone().unwrap_or_else(|| "-".into()),
    ]
}

/// Runs `dsm conflicts`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let format = ctx.text_or_json()?;
    let conn = open(ctx)?;
    match args.command {
        ConflictsCommand::List(f) => {
            let entries = conn.conflicts(&filter(f)?)?;
            match format {
                OutputFormat::Json => ctx.printer.json(&entries),
                OutputFormat::Text => ctx.printer.table(
                    &[
                        "ID", "LOGGED", "STREAM", "KEY", "FIELD", "RULE", "OUTCOME", "WINNER",
                    ],
                    &entries.iter().map(row).collect::<Vec<_>>(),
                ),
            }
        }
        ConflictsCommand::Show { id } => {
            let entry = conn.conflict(id)?.ok_or_else(|| {
                Error::config(format!("no conflict-log entry {id}"))
                    .hint("`dsm conflicts list` shows the ids")
            })?;
            match format {
                OutputFormat::Json => ctx.printer.json(&entry),
                OutputFormat::Text => {
                    ctx.printer.table(
                        &[
                            "ID", "LOGGED", "STREAM", "KEY", "FIELD", "RULE", "OUTCOME", "WINNER",
                        ],
                        &[row(&entry)],
                    );
                    ctx.printer.line(format!("run: {}", entry.run_id));
                    if let Some(obj) = entry.candidates.as_object() {
                        for (source, value) in obj {
                            ctx.printer.line(format!("  {source}: {value}"));
                        }
                    }
                    if let Some(w) = &entry.winner {
                        ctx.printer.line(format!("winner: {w}"));
                    }
                }
            }
        }
        ConflictsCommand::Counts(f) => {
            let counts = conn.conflict_counts(&filter(f)?)?;
            match format {
                OutputFormat::Json => ctx.printer.json(&counts),
                OutputFormat::Text => ctx.printer.table(
                    &[
                        "RUN",
                        "STREAM",
                        "CONFLICTS",
                        "QUARANTINED",
                        "FAILED",
                        "FIRST",
                    ],
                    &counts
                        .iter()
                        .map(|c| {
                            vec![
                                c.run_id.clone(),
                                c.stream.clone(),
                                c.conflicts.to_string(),
                                c.quarantined.to_string(),
                                c.failed.to_string(),
                                c.first_logged_at.clone(),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
        }
        ConflictsCommand::Prune { older_than, stream } => {
            let cutoff = crate::duration::moment(&older_than, Utc::now())?;
            let n = conn.prune_conflicts(cutoff, stream.as_deref())?;
            match format {
                OutputFormat::Json => ctx.printer.json(&serde_json::json!({ "pruned": n })),
                OutputFormat::Text => ctx
                    .printer
                    .notice(format!("pruned {n} conflict-log entries")),
            }
        }
    }
    Ok(())
}

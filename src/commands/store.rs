//! `dsm store`: the system store itself (`status`, `migrate`, `reset`).

use crate::commands::Context;
use crate::error::Result;
use crate::printer::OutputFormat;
use crate::store::{format_time, status};

/// Arguments of `dsm store`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: StoreCommand,
}

/// The `dsm store` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Show the store's backend, schema version, projects and held leases.
    Status,
    /// Bring an older store's schema up to this dsm's version (a PostgreSQL store shared by
    /// several hosts is only upgraded this way).
    Migrate,
    /// Start a new, empty store in place of a missing or emptied one, on purpose (dsm refuses
    /// to do so by itself when the project shows it had a store). Recorded in the audit log.
    Reset,
}

/// Runs `dsm store`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let format = ctx.text_or_json()?;
    let root = ctx.project_root()?;
    let location = crate::store::locate(ctx.global.database_uri.as_deref(), &root)?;
    match args.command {
        StoreCommand::Status => {
            let s = status::status(&location, &root)?;
            match format {
                OutputFormat::Json => ctx.printer.json(&s),
                OutputFormat::Text => {
                    ctx.printer.line(format!("backend:  {}", s.backend));
                    ctx.printer.line(format!("location: {}", s.location));
                    ctx.printer.line(format!(
                        "schema:   version {} (this dsm: {})",
                        s.schema_version, s.latest_version
                    ));
                    ctx.printer
                        .line(format!("projects: {}", s.projects.join(", ")));
                    if s.leases.is_empty() {
                        ctx.printer.line("leases:   none held");
                    } else {
                        let rows: Vec<Vec<String>> = s
                            .leases
                            .iter()
                            .map(|l| {
                                vec![
                                    l.state_id.to_string(),
                                    l.run_id
                                        .as_ref()
                                        .map(ToString::to_string)
                                        .unwrap_or_default(),
                                    format!("{} (pid {})", l.host, l.pid),
                                    format_time(l.heartbeat_at),
                                    if l.stale { "stale" } else { "held" }.to_owned(),
                                ]
                            })
                            .collect();
                        ctx.printer
                            .table(&["FLOW", "RUN ID", "HOLDER", "HEARTBEAT", "LEASE"], &rows);
                    }
                }
            }
        }
        StoreCommand::Reset => {
            let crate::store::Location::Sqlite(path) = &location else {
                return Err(crate::error::Error::config(
                    "`dsm store reset` replaces a project's lost SQLite store; a PostgreSQL store is kept by its server",
                ));
            };
            drop(crate::store::reset_lost_store(path)?);
            crate::commands::shared::audit(
                ctx,
                "dsm store reset",
                "store.reset",
                &path.display().to_string(),
            );
            match format {
                OutputFormat::Json => ctx
                    .printer
                    .json(&serde_json::json!({"reset": path.display().to_string()})),
                OutputFormat::Text => ctx.printer.notice(format!(
                    "started a new, empty store at `{}`: no bookmarks, secrets or history (set secrets again with `dsm config set`)",
                    path.display()
                )),
            }
        }
        StoreCommand::Migrate => {
            let (before, after) = status::migrate(&location, &root)?;
            match format {
                OutputFormat::Json => ctx
                    .printer
                    .json(&serde_json::json!({"from_version": before, "to_version": after})),
                OutputFormat::Text if before == after => ctx
                    .printer
                    .notice(format!("the store is at schema version {after} already")),
                OutputFormat::Text => ctx.printer.notice(format!(
                    "upgraded the store from schema version {before} to {after}"
                )),
            }
        }
    }
    Ok(())
}

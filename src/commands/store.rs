//! `dsm store`: the system store itself (`status`, `migrate`, `copy`, `reset`).

use crate::commands::Context;
use crate::error::{Error, Result};
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
    /// Copy the project's whole store to another backend (SQLite to PostgreSQL, or back) and
    /// check the copy: row counts and the audit chain. The target must be empty.
    Copy(CopyArgs),
}

/// Arguments of `dsm store copy`.
#[derive(Debug, clap::Args)]
pub struct CopyArgs {
    /// The store to copy: a file path, `sqlite:///path` or `postgresql://USER@HOST/DB` (a
    /// password belongs in `PGPASSWORD` or `.pgpass`, not here).
    #[arg(long, value_name = "URI")]
    pub from: String,
    /// The empty store to copy into (same forms).
    #[arg(long, value_name = "URI")]
    pub to: String,
}

/// What `dsm store copy --format json` prints (`schemas/cli/store-copy.schema.json`).
#[derive(Debug, serde::Serialize)]
struct CopyDoc {
    #[serde(flatten)]
    report: crate::store::copy::CopyReport,
    /// Whether the audit chain's MACs were checked with the master key (they are when this
    /// host has the store's key).
    audit_macs_checked: bool,
}

/// Runs `dsm store`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let format = ctx.text_or_json()?;
    let root = ctx.project_root()?;
    // `copy` names both its stores; the others work on the project's.
    let location = || crate::store::locate(ctx.global.database_uri.as_deref(), &root);
    match args.command {
        StoreCommand::Copy(copy) => copy_store(ctx, format, &root, &copy)?,
        StoreCommand::Status => {
            let s = status::status(&location()?, &root)?;
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
            let crate::store::Location::Sqlite(path) = &location()? else {
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
            let (before, after) = status::migrate(&location()?, &root)?;
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

fn copy_store(
    ctx: &Context,
    format: OutputFormat,
    root: &std::path::Path,
    args: &CopyArgs,
) -> Result<()> {
    let from = crate::store::locate(Some(&args.from), root)?;
    let to = crate::store::locate(Some(&args.to), root)?;
    let (report, target) = crate::store::copy::copy(&from, &to, root)?;
    // The MACs need the master key; a host without it still gets the entry-by-entry check.
    let mut audit_macs_checked = false;
    if report.audit_entries > 0 && target.current_key()?.is_some() {
        match crate::secrets::store::find_key(target.as_ref()) {
            Ok((key, _)) => {
                let verified = crate::secrets::audit::verify(target.as_ref(), &key)?;
                if !verified.is_ok() {
                    let mut err = Error::failed(format!(
                        "the audit chain copied to {} does not verify",
                        report.to
                    ));
                    for problem in &verified.problems {
                        err = err.detail(problem);
                    }
                    return Err(err.hint("run `dsm audit verify` against the source store"));
                }
                audit_macs_checked = true;
            }
            Err(e) => ctx.printer.warn(format!(
                "the audit chain was compared entry by entry, but its MACs were not checked: {}",
                e.message()
            )),
        }
    }
    match format {
        OutputFormat::Json => ctx.printer.json(&CopyDoc {
            report,
            audit_macs_checked,
        }),
        OutputFormat::Text => {
            let rows: Vec<Vec<String>> = report
                .tables
                .iter()
                .filter(|t| t.rows > 0)
                .map(|t| vec![t.table.to_owned(), t.rows.to_string()])
                .collect();
            ctx.printer.table(&["TABLE", "ROWS"], &rows);
            ctx.printer.notice(format!(
                "copied {} to {}: row counts match, audit chain identical ({} entries{})",
                report.from,
                report.to,
                report.audit_entries,
                if audit_macs_checked {
                    ", MACs verified"
                } else {
                    ""
                }
            ));
        }
    }
    Ok(())
}

//! `dsm audit`: read, verify and prune the audit log.

use crate::commands::Context;
use crate::error::{Error, Result};
use crate::printer::OutputFormat;
use crate::secrets::audit;

/// Arguments of `dsm audit`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// The `dsm audit` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// List entries (names of what changed, never values).
    List {
        /// Only entries at or after this time (`2026-01-31` or RFC 3339).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
    },
    /// Check the HMAC chain: detects edited, inserted, deleted and cut-off entries.
    Verify,
    /// Remove entries older than a time; verification keeps working from an anchor.
    Prune {
        /// Remove entries before this time (`2026-01-31` or RFC 3339).
        #[arg(long, value_name = "TIME")]
        before: String,
    },
}

/// A user's moment in the stored form (UTC, RFC 3339, milliseconds), so that text comparison
/// in SQL is time comparison.
fn parse_time(text: &str) -> Result<String> {
    let moment = crate::duration::moment(text, chrono::Utc::now())?;
    Ok(moment.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Runs `dsm audit`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let format = ctx.text_or_json()?;
    let (_, conn) = ctx.open_project_store()?;
    match args.command {
        AuditCommand::List { since } => {
            let since = since.as_deref().map(parse_time).transpose()?;
            let records = audit::list(conn.as_ref(), since.as_deref())?;
            if format == OutputFormat::Json {
                ctx.printer.json(&records);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = records
                .into_iter()
                .map(|r| {
                    vec![
                        r.seq.to_string(),
                        r.at,
                        format!("{}@{}", r.os_user, r.host),
                        r.command,
                        r.action,
                        r.targets.join(", "),
                    ]
                })
                .collect();
            ctx.printer.table(
                &["SEQ", "TIME", "WHO", "COMMAND", "ACTION", "TARGETS"],
                &rows,
            );
            Ok(())
        }
        AuditCommand::Verify => {
            let (key, _) = crate::secrets::store::find_key(conn.as_ref())?;
            let report = audit::verify(conn.as_ref(), &key)?;
            let error = (!report.is_ok()).then(|| {
                let mut err = Error::failed(format!(
                    "the audit log was tampered with ({} problems)",
                    report.problems.len()
                ));
                for problem in &report.problems {
                    err = err.detail(problem);
                }
                err.hint("compare with a backup of the store (for an SQLite store, with `.dsm/audit.head` beside it)")
            });
            for warning in &report.warnings {
                ctx.printer.warn(warning);
            }
            if format == OutputFormat::Json {
                // One document (`schemas/cli/audit-verify.schema.json`), with the contract's
                // `error` member when the chain does not verify.
                let mut doc = serde_json::to_value(&report).expect("the report is plain data");
                if let Some(e) = &error {
                    doc["error"] = crate::printer::error_json(e);
                }
                ctx.printer.json(&doc);
                return error.map_or(Ok(()), |e| Err(e.data_printed()));
            }
            if report.is_ok() {
                ctx.printer
                    .line(format!("audit log verified: {} entries", report.entries));
            }
            error.map_or(Ok(()), Err)
        }
        AuditCommand::Prune { before } => {
            let (key, _) = crate::secrets::store::find_key(conn.as_ref())?;
            let before = parse_time(&before)?;
            let removed = audit::prune(conn.as_ref(), &key, &before, "dsm audit prune")?;
            if format == OutputFormat::Json {
                ctx.printer.json(&serde_json::json!({ "removed": removed }));
            } else {
                ctx.printer.line(format!("removed {removed} entries"));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_normalised_to_utc_millis() {
        assert_eq!(
            parse_time("2026-01-31").unwrap(),
            "2026-01-31T00:00:00.000Z"
        );
        assert_eq!(
            parse_time("2026-01-31T12:00:00+02:00").unwrap(),
            "2026-01-31T10:00:00.000Z"
        );
        assert_eq!(parse_time("yesterday").unwrap_err().exit_code(), 2);
    }
}

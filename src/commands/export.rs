//! `dsm export`: the project's system store as one bundle file.

use std::path::PathBuf;

use crate::commands::Context;
use crate::commands::shared::read_passphrase;
use crate::error::Result;
use crate::printer::OutputFormat;
use crate::secrets::bundle;

/// Arguments of `dsm export`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle file to write (readable by its owner only).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: PathBuf,
    /// Re-encrypt the secrets under a passphrase (asked for, never an argument), so the bundle
    /// can be restored without this project's master key.
    #[arg(long)]
    pub passphrase: bool,
}

/// Runs `dsm export`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let format = ctx.text_or_json()?;
    let (_, conn) = ctx.open_project_store()?;
    let (key, _) = crate::secrets::store::find_key(conn.as_ref())?;
    let passphrase = args.passphrase.then(|| read_passphrase(true)).transpose()?;
    let summary = bundle::export(conn.as_ref(), &key, passphrase.as_ref(), &args.output)?;
    if format == OutputFormat::Json {
        ctx.printer.json(&summary);
    } else {
        ctx.printer.line(format!(
            "exported the system store ({} secrets, {} audit entries) to `{}`",
            summary.secrets,
            summary.audit_entries,
            args.output.display()
        ));
        if let Some(label) = &summary.classification {
            ctx.printer.notice(format!(
                "the bundle holds data labelled up to `{label}` (merged rows, conflict logs, bookmarks): keep it where that label may go"
            ));
        }
    }
    Ok(())
}

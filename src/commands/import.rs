//! `dsm import`: restore a bundle written by `dsm export` into a fresh project.

use std::path::PathBuf;

use crate::commands::Context;
use crate::commands::shared::read_passphrase;
use crate::error::{Error, Result};
use crate::printer::OutputFormat;
use crate::secrets::bundle::{self, Protection};
use crate::secrets::master_key::KeyLookup;

/// Arguments of `dsm import`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle file.
    pub file: PathBuf,
    /// The bundle's secrets are under a passphrase (asked for, never an argument).
    #[arg(long)]
    pub passphrase: bool,
}

/// Runs `dsm import`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let format = ctx.text_or_json()?;
    let root = ctx.project_root()?;
    let db_path = crate::store::database_path(ctx.global.database_uri.as_deref(), &root)?;
    let owner = crate::store::key_owner(&root);
    let (key, _) = KeyLookup::for_project(owner.as_deref()).find()?;
    let (bundle, _) = bundle::read(&args.file)?;
    let needs_passphrase = matches!(bundle.secrets, Protection::Passphrase { .. });
    if needs_passphrase && !args.passphrase {
        return Err(Error::config(format!(
            "the secrets in `{}` are protected by a passphrase",
            args.file.display()
        ))
        .hint("run `dsm import FILE --passphrase`"));
    }
    let passphrase = needs_passphrase
        .then(|| read_passphrase(false))
        .transpose()?;
    let summary = bundle::import(&args.file, &key, passphrase.as_ref(), &db_path).map_err(|e| {
        let wrong_key = matches!(e, crate::secrets::SecretsError::WrongKey { .. });
        let err = Error::from(e);
        if wrong_key {
            err.hint("or export again with `dsm export --passphrase` to move secrets between keys")
        } else {
            err
        }
    })?;
    // Brings an older bundle's schema up to date.
    drop(crate::store::SqliteStore::open(&db_path)?);
    if format == OutputFormat::Json {
        ctx.printer.json(&summary);
    } else {
        ctx.printer.line(format!(
            "imported {} secrets and {} audit entries into `{}`",
            summary.secrets,
            summary.audit_entries,
            db_path.display()
        ));
    }
    Ok(())
}

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
    let location = crate::store::locate(ctx.global.database_uri.as_deref(), &root)?;
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
    let imported = match &location {
        crate::store::Location::Sqlite(path) => {
            bundle::import(&args.file, &key, passphrase.as_ref(), path)
        }
        crate::store::Location::Postgres(_) => {
            bundle::import_into(&args.file, &key, passphrase.as_ref(), &location, &root)
        }
    };
    let summary = imported.map_err(|e| {
        let wrong_key = matches!(e, crate::secrets::SecretsError::WrongKey { .. });
        let err = Error::from(e);
        if wrong_key {
            err.hint("or export again with `dsm export --passphrase` to move secrets between keys")
        } else {
            err
        }
    })?;
    let place = match &location {
        crate::store::Location::Sqlite(path) => {
            // Brings an older bundle's schema up to date.
            drop(crate::store::SqliteStore::open(path)?);
            format!("`{}`", path.display())
        }
        crate::store::Location::Postgres(target) => target.display.clone(),
    };
    if format == OutputFormat::Json {
        ctx.printer.json(&summary);
    } else {
        ctx.printer.line(format!(
            "imported {} secrets and {} audit entries into {place}",
            summary.secrets, summary.audit_entries,
        ));
    }
    Ok(())
}

//! `dsm tokens`: the API tokens of `dsm serve` (create, list, revoke).

use chrono::Utc;
use serde::Serialize;

use crate::commands::Context;
use crate::commands::shared::audit;
use crate::error::{Error, Result};
use crate::printer::OutputFormat;
use crate::serve::token;
use crate::store::{Role, format_time};

/// Arguments of `dsm tokens`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: TokensCommand,
}

/// The `dsm tokens` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TokensCommand {
    /// Create a token and print it once (only its hash is kept).
    Create(CreateArgs),
    /// List tokens: name, role, organisation, created, expires, last used. Never the token.
    List,
    /// Delete a token: requests carrying it are refused from then on.
    Revoke {
        /// The token's name.
        name: String,
    },
}

/// Arguments of `dsm tokens create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// A name for the token (who or what uses it), e.g. `ci-bot`.
    pub name: String,
    /// What the token may do: `viewer` reads, `operator` also tests, syncs, sets credentials and
    /// stops runs, `admin` also changes sources, reads the audit log and decides source
    /// requests; `requester` submits source requests for its organisation, `approver` tests,
    /// approves and rejects them.
    #[arg(long, value_enum)]
    pub role: RoleArg,
    /// Limit the token to one organisation (default: all).
    #[arg(long, value_name = "ORG")]
    pub organisation: Option<String>,
    /// Make the token stop working after this long: `30d`, `12h`, `90m`.
    #[arg(long, value_name = "DURATION")]
    pub expires: Option<String>,
}

/// A token role as `--role` takes it (the store's [`Role`] knows nothing of clap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleArg {
    /// Reads sources, runs, flows, health and metrics.
    Viewer,
    /// Also tests sources, starts syncs, sets credentials and stops runs.
    Operator,
    /// Also registers, changes and deletes sources, reads the audit log, approves and rejects
    /// source requests.
    Admin,
    /// Submits and follows its own source requests (needs `--organisation`).
    Requester,
    /// Reads, tests, approves and rejects every source request.
    Approver,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Viewer => Role::Viewer,
            RoleArg::Operator => Role::Operator,
            RoleArg::Admin => Role::Admin,
            RoleArg::Requester => Role::Requester,
            RoleArg::Approver => Role::Approver,
        }
    }
}

/// What `dsm tokens create --format json` prints.
#[derive(Debug, Serialize)]
struct CreatedDoc<'a> {
    name: &'a str,
    role: Role,
    organisation: Option<&'a str>,
    expires_at: Option<String>,
    token: &'a str,
}

/// Runs `dsm tokens`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let format = ctx.text_or_json()?;
    match args.command {
        TokensCommand::Create(a) => create(ctx, format, a),
        TokensCommand::List => list(ctx, format),
        TokensCommand::Revoke { name } => revoke(ctx, format, &name),
    }
}

fn create(ctx: &Context, format: OutputFormat, args: CreateArgs) -> Result<()> {
    let expires_at = match args.expires.as_deref() {
        None => None,
        Some(text) => {
            let d = crate::orchestrate::retry::parse_duration(text).map_err(|e| {
                Error::config(format!("`--expires {text}`: {e}"))
                    .hint("write a duration such as `30d`, `12h` or `90m`")
            })?;
            if d.is_zero() {
                return Err(Error::config("`--expires` must be longer than zero")
                    .hint("leave it out for a token that does not expire"));
            }
            let d = chrono::Duration::from_std(d).map_err(|_| {
                Error::config(format!("`--expires {text}` is too long"))
                    .hint("leave it out for a token that does not expire")
            })?;
            Some(Utc::now() + d)
        }
    };
    let store = ctx.open_store()?;
    let created = token::create(
        store.as_ref(),
        &args.name,
        args.role.into(),
        args.organisation,
        expires_at,
        crate::registry::status::current_user().unwrap_or_else(|| "unknown".into()),
    )?;
    audit(ctx, "dsm tokens create", "token.create", &args.name);
    let rec = &created.record;
    match format {
        OutputFormat::Json => ctx.printer.json(&CreatedDoc {
            name: &rec.name,
            role: rec.role,
            organisation: rec.organisation.as_deref(),
            expires_at: rec.expires_at.map(format_time),
            token: &created.token,
        }),
        OutputFormat::Text => {
            ctx.printer.line(created.token.as_str());
            ctx.printer.notice(format!(
                "created {} token `{}`{}; it is shown only this once",
                rec.role.as_str(),
                rec.name,
                rec.expires_at
                    .map(|t| format!(" (expires {})", format_time(t)))
                    .unwrap_or_default()
            ));
        }
    }
    Ok(())
}

fn list(ctx: &Context, format: OutputFormat) -> Result<()> {
    let store = ctx.open_store()?;
    let tokens = store.list_tokens()?;
    match format {
        OutputFormat::Json => ctx.printer.json(&tokens),
        OutputFormat::Text if tokens.is_empty() => ctx
            .printer
            .notice("no tokens; `dsm tokens create NAME --role viewer` makes one"),
        OutputFormat::Text => {
            let dash = |t: Option<chrono::DateTime<Utc>>| t.map_or_else(|| "-".into(), format_time);
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .map(|t| {
                    vec![
                        t.name.clone(),
                        t.role.as_str().to_owned(),
                        t.organisation.clone().unwrap_or_else(|| "-".into()),
                        format_time(t.created_at),
                        dash(t.expires_at),
                        dash(t.last_used_at),
                    ]
                })
                .collect();
            ctx.printer.table(
                &[
                    "NAME",
                    "ROLE",
                    "ORGANISATION",
                    "CREATED",
                    "EXPIRES",
                    "LAST USED",
                ],
                &rows,
            );
        }
    }
    Ok(())
}

fn revoke(ctx: &Context, format: OutputFormat, name: &str) -> Result<()> {
    let store = ctx.open_store()?;
    if !store.revoke_token(name)? {
        let names: Vec<String> = store.list_tokens()?.into_iter().map(|t| t.name).collect();
        let mut err = Error::config(format!("no token named `{name}`"));
        if let Some(close) = crate::error::did_you_mean(name, names.iter().map(String::as_str)) {
            err = err.hint(format!("did you mean `{close}`?"));
        }
        return Err(err.hint("`dsm tokens list` shows every token"));
    }
    audit(ctx, "dsm tokens revoke", "token.revoke", name);
    match format {
        OutputFormat::Json => ctx.printer.json(&serde_json::json!({ "revoked": name })),
        OutputFormat::Text => ctx.printer.notice(format!("revoked token `{name}`")),
    }
    Ok(())
}

//! `dsm plugins list`: the project's plugins with their variant, where their definition comes
//! from and whether they are installed; `--available` lists dsm's catalog of known plugins.

use serde_json::json;

use crate::commands::Context;
use crate::error::Result;
use crate::plugin::install;
use crate::printer::OutputFormat;
use crate::project::hub;
use crate::project::{Definition, PluginType, Project};

/// Arguments of `dsm plugins`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: PluginsCommand,
}

/// `dsm plugins` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum PluginsCommand {
    /// List the project's plugins (or, with `--available`, the known plugins `dsm add` takes).
    List(ListArgs),
}

/// Arguments of `dsm plugins list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// List dsm's catalog of known plugins instead of the project's.
    #[arg(long)]
    pub available: bool,
    /// Only plugins of this type.
    #[arg(long, visible_alias = "type", value_name = "TYPE")]
    pub plugin_type: Option<String>,
    /// With `--available`: only plugins whose name, variant, label, description or keywords hold
    /// every word of TEXT (ignoring case).
    #[arg(long, value_name = "TEXT", requires = "available")]
    pub search: Option<String>,
}

/// Runs `dsm plugins`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let format = ctx.text_or_json()?;
    match args.command {
        PluginsCommand::List(a) => {
            let ty = match a.plugin_type.as_deref() {
                Some(t) => {
                    crate::commands::shared::split_type(&[t.to_string(), String::new()], None)?.0
                }
                None => None,
            };
            if a.available {
                available(ctx, format, ty, a.search.as_deref())
            } else {
                list(ctx, format, ty)
            }
        }
    }
}

fn list(ctx: &Context, format: OutputFormat, ty: Option<PluginType>) -> Result<()> {
    let project = Project::load(&ctx.project_root()?)?;
    let plugins: Vec<_> = project
        .plugins()
        .iter()
        .filter(|p| ty.is_none_or(|t| t == p.plugin_type))
        .collect();
    if format == OutputFormat::Json {
        let items: Vec<_> = plugins
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "type": p.plugin_type.singular(),
                    "variant": p.variant,
                    // (A parent that is a known plugin, not one of the project, too.)
                    "inherit_from": p.parent.as_ref().or(p.raw.inherit_from.as_ref()),
                    "definition": p.definition,
                    "pip_url": p.pip_url.as_deref().map(install::redact),
                    "executable": crate::plugin::executable::resolve_executable(&project, p),
                    "status": install::status(&project, p),
                })
            })
            .collect();
        ctx.printer.json(&items);
        return Ok(());
    }
    if plugins.is_empty() {
        ctx.printer
            .notice("the project has no plugins; add one with `dsm add NAME`");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = plugins
        .iter()
        .map(|p| {
            let source = match &p.definition {
                Definition::Custom => "custom".to_string(),
                Definition::Inherited { parent } => format!("inherits {parent}"),
                Definition::Locked { lock_file } => lock_file.display().to_string(),
                Definition::Catalog => "dsm catalog".to_string(),
                Definition::Unknown => "unknown".to_string(),
            };
            vec![
                p.plugin_type.singular().to_string(),
                p.name.clone(),
                p.variant.clone().unwrap_or_else(|| "-".into()),
                source,
                install::status(&project, p).word().to_string(),
            ]
        })
        .collect();
    ctx.printer
        .table(&["TYPE", "NAME", "VARIANT", "DEFINITION", "STATUS"], &rows);
    Ok(())
}

fn available(
    ctx: &Context,
    format: OutputFormat,
    ty: Option<PluginType>,
    search: Option<&str>,
) -> Result<()> {
    let items: Vec<&hub::Known> = hub::all()
        .iter()
        .filter(|k| ty.is_none_or(|t| t == k.plugin_type))
        .filter(|k| search.is_none_or(|s| hub::matches(k, s)))
        .collect();
    // What `dsm add NAME` picks when no variant is given.
    let picked = |k: &hub::Known| {
        hub::lookup(k.plugin_type, k.name, None).is_some_and(|d| d.variant == k.variant)
    };
    if format == OutputFormat::Json {
        let out: Vec<_> = items.iter().map(|k| hub::document(k)).collect();
        ctx.printer.json(&out);
        return Ok(());
    }
    if items.is_empty() {
        let what = search.map_or_else(String::new, |s| format!(" matching `{s}`"));
        ctx.printer.notice(format!(
            "dsm's catalog has no {}{what}",
            ty.map_or("plugin".to_string(), |t| t.singular().to_string())
        ));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|k| {
            let variant = if picked(k) {
                format!("{} (default)", k.variant)
            } else {
                k.variant.to_string()
            };
            vec![
                k.plugin_type.singular().to_string(),
                k.name.to_string(),
                variant,
                k.summary.label.clone().unwrap_or_default(),
                k.summary
                    .pip_url
                    .clone()
                    .unwrap_or_else(|| "(built-in)".into()),
            ]
        })
        .collect();
    ctx.printer
        .table(&["TYPE", "NAME", "VARIANT", "LABEL", "PIP_URL"], &rows);
    Ok(())
}

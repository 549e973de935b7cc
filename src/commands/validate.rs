//! `dsm validate`: checks the whole project and reports every problem at once.

use crate::commands::Context;
use crate::error::Result;
use crate::printer::OutputFormat;
use crate::project::{self, Project, Severity};

/// Arguments of `dsm validate`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `dsm validate`: exit 0 when the project is valid (warnings allowed), 2 otherwise.
pub fn run(ctx: &Context, _args: Args) -> Result<()> {
    let format = ctx.text_or_json()?;
    let root = ctx.project_root()?;
    let project = Project::check(&root)?;
    let diags = project.diagnostics();
    let warnings: Vec<_> = diags
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .collect();
    if let Some(error) = project::diagnostics_error(diags) {
        for w in &warnings {
            ctx.printer.warn(w.located());
        }
        return Err(error);
    }
    match format {
        OutputFormat::Json => {
            for w in &warnings {
                ctx.printer.warn(w.located());
            }
            ctx.printer.json(&serde_json::json!({
            "valid": true,
            "plugins": project.plugins().len(),
            "warnings": warnings,
            }));
        }
        OutputFormat::Text => {
            for w in &warnings {
                ctx.printer.warn(w.located());
                if let Some(h) = &w.hint {
                    ctx.printer.notice(format!("hint: {h}"));
                }
            }
            ctx.printer.line(format!(
                "{} is valid: {} plugins, {} environments, {} jobs, {} schedules{}",
                project::PROJECT_FILE,
                project.plugins().len(),
                project.environments().len(),
                project.jobs().len(),
                project.schedules().len(),
                if warnings.is_empty() {
                    String::new()
                } else {
                    format!(" ({} warnings)", warnings.len())
                }
            ));
        }
    }
    Ok(())
}

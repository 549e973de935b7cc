//! `dsm validate`: checks the whole project and reports every problem at once.

use crate::commands::Context;
use crate::error::Result;
use crate::printer::{self, OutputFormat};
use crate::project::{self, Diagnostic, Project, Severity};

/// Arguments of `dsm validate`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// One diagnostic as `--format json` prints it (`schemas/cli/validate.schema.json`).
fn diagnostic_json(d: &Diagnostic) -> serde_json::Value {
    serde_json::json!({
        "file": d.file.display().to_string(),
        "line": d.pos.map(|p| p.line),
        "column": d.pos.map(|p| p.column),
        "severity": d.severity,
        "code": d.code,
        "message": d.message,
        "hint": d.hint,
    })
}

/// Runs `dsm validate`: exit 0 when the project is valid (warnings allowed), 2 otherwise.
/// With `--format json`, stdout is one document listing every diagnostic of every file
/// (errors and warnings), also when the project is invalid.
pub fn run(ctx: &Context, _args: Args) -> Result<()> {
    let format = ctx.text_or_json()?;
    let root = ctx.project_root()?;
    let project = Project::check(&root)?;
    let mut diags = project.diagnostics().to_vec();
    // What breaks only when flows run, once the file itself reads.
    if project::diagnostics_error(&diags).is_none() {
        diags.extend(crate::orchestrate::check::check(&project));
    }
    let diags = diags.as_slice();
    let warnings: Vec<_> = diags
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .collect();
    for w in &warnings {
        ctx.printer.warn(w.located());
        if format == OutputFormat::Text
            && let Some(h) = &w.hint
        {
            ctx.printer.notice(format!("hint: {h}"));
        }
    }
    // Stream maps and transforms compile as a run would compile them, before any plugin starts.
    let error = project::diagnostics_error(diags).or_else(|| {
        let mut errors = crate::runner::stages::check_transforms(&project).into_iter();
        let first = errors.next()?;
        Some(errors.fold(first, |all, e| all.detail(format!("also: {}", e.message()))))
    });
    if format == OutputFormat::Json {
        let mut doc = serde_json::json!({
            "valid": error.is_none(),
            "plugins": project.plugins().len(),
            "errors": diags.len() - warnings.len(),
            "warnings": warnings.len(),
            "diagnostics": diags.iter().map(diagnostic_json).collect::<Vec<_>>(),
        });
        if let Some(e) = &error {
            doc["error"] = printer::error_json(e);
        }
        ctx.printer.json(&doc);
        return match error {
            Some(e) => Err(e.data_printed()),
            None => Ok(()),
        };
    }
    if let Some(error) = error {
        return Err(error);
    }
    ctx.printer.line(format!(
        "{} is valid: {}, {}, {}, {}{}",
        project::PROJECT_FILE,
        printer::count(project.plugins().len() as u64, "plugin"),
        printer::count(project.environments().len() as u64, "environment"),
        printer::count(project.jobs().len() as u64, "job"),
        printer::count(project.schedules().len() as u64, "schedule"),
        if warnings.is_empty() {
            String::new()
        } else {
            format!(" ({})", printer::count(warnings.len() as u64, "warning"))
        }
    ));
    Ok(())
}

//! `dsm flows`: the flow map, each source → transforms/mappers → destination with schedule,
//! dependencies and the source's status, as text, `--format dot`, `--format mermaid` or JSON.

use crate::commands::Context;
use crate::commands::state::open_store;
use crate::error::{Error, Result};
use crate::project::Project;
use crate::registry::flowmap::{flows_with_status, render_dot, render_mermaid, render_text};

/// Arguments of `dsm flows` (`--format text|dot|mermaid|json`).
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `dsm flows`.
pub fn run(ctx: &Context, _args: Args) -> Result<()> {
    let format = ctx.global.format.clone().unwrap_or_else(|| "text".into());
    if !matches!(format.as_str(), "text" | "dot" | "mermaid" | "json") {
        return Err(Error::config(format!("unknown output format `{format}`"))
            .hint("`dsm flows` accepts `--format text`, `dot`, `mermaid` or `json`"));
    }
    let project = Project::load(&ctx.project_root()?)?;
    let store = open_store(ctx)?;
    let flows = flows_with_status(&project, store.as_ref())?;
    match format.as_str() {
        "json" => ctx.printer.json(&flows),
        _ if flows.is_empty() => ctx.printer.notice(
            "no flows: add a schedule, a job, or `annotations.dsm.default_loader` to an extractor",
        ),
        "dot" => ctx.printer.raw(render_dot(&flows)),
        "mermaid" => ctx.printer.raw(render_mermaid(&flows)),
        _ => ctx.printer.raw(render_text(&flows)),
    }
    Ok(())
}

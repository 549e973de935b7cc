//! `dsm flows`: the flow map, each source → transforms/mappers → destination with schedule,
//! dependencies and the source's status, as text, `--format dot`, `--format mermaid` or JSON.

use crate::commands::Context;
use crate::commands::state::open_store;
use crate::error::{Error, Result};
use crate::project::Project;
use crate::registry::flowmap::{flow_map, render_dot, render_mermaid, render_text};
use crate::registry::source_statuses;

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
    let mut flows = flow_map(&project);
    let store = open_store(ctx)?;
    let names: Vec<&str> = flows.iter().filter_map(|f| f.first_extractor()).collect();
    let statuses = source_statuses(store.as_ref(), &names)?;
    for f in &mut flows {
        f.status = f.first_extractor().and_then(|e| {
            statuses
                .iter()
                .find(|s| s.name == e)
                .map(|s| s.status.as_str().to_owned())
        });
    }
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

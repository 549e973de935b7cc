//! `dsm flows`: the flow map, each source → transforms/mappers → destination with schedule,
//! dependencies and the source's status, as text, `--format dot`, `--format mermaid` or JSON.

use crate::classification;
use crate::commands::Context;
use crate::error::{Error, Result};
use crate::project::{PluginType, Project};
use crate::registry::flowmap::{
    FlowEntry, flows_with_status, render_dot, render_mermaid, render_text,
};
use crate::runner;

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
    let store = ctx.open_store()?;
    let mut flows = flows_with_status(&project, store.as_ref())?;
    fill_labels(&project, &mut flows)?;
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

/// In a classified project, each chain's extractor gets its source's label and its loader the
/// highest label it would receive (from the declarations; a run derives them exactly) and its
/// clearance.
fn fill_labels(project: &Project, flows: &mut [FlowEntry]) -> Result<()> {
    if !classification::is_classified(project) {
        return Ok(());
    }
    let scheme = classification::Scheme::of(project)?;
    for chain in flows.iter_mut().flat_map(|f| f.chains.iter_mut()) {
        let mut extractor: Option<&crate::project::Plugin> = None;
        let mut mappers: Vec<String> = Vec::new();
        for step in chain.iter_mut() {
            match step.role.as_str() {
                "extractor" => {
                    let plugin = project.find_plugin(&step.name, Some(PluginType::Extractors))?;
                    step.label = Some(source_label(&scheme, plugin));
                    extractor = Some(plugin);
                    mappers.clear();
                }
                "mapper" => mappers.push(step.name.clone()),
                "loader" => {
                    let Some(e) = extractor else { continue };
                    let loader = project.find_plugin(&step.name, Some(PluginType::Loaders))?;
                    let labels =
                        runner::labels::declared(project, e, &mappers)?.unwrap_or_default();
                    let top = classification::highest(&labels);
                    step.label = top.map(|l| l.label.clone());
                    if let Some(c) = classification::clearance(project, &scheme, loader)? {
                        step.refused = top.is_some_and(|l| l.rank > c.label.rank);
                        step.clearance = Some(c.label.name);
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The label a source declares, else the project's default.
fn source_label(scheme: &classification::Scheme, plugin: &crate::project::Plugin) -> String {
    plugin
        .annotations
        .source
        .as_ref()
        .and_then(|s| s.classification.clone())
        .unwrap_or_else(|| scheme.default_label().name.clone())
}

//! The flow map: each flow of the project (schedules, jobs, extractors with a default loader)
//! as a chain source → transforms/mappers → destination, with its schedule, dependencies and
//! the status of its source, rendered as text, Graphviz dot or Mermaid.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::project::{PluginType, Project};

/// One step of a flow's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// The block as written (`tap-github`, `dbt:run`), or `transform:<type>` for a built-in
    /// transform of the extractor.
    pub name: String,
    /// `extractor`, `transform`, `mapper`, `loader`, `command` or `unknown`.
    pub role: String,
    /// In a classified project: an extractor's source label, or the highest label a loader
    /// receives (derived through the chain); filled in by the caller.
    pub label: Option<String>,
    /// In a classified project, a loader's clearance; filled in by the caller.
    pub clearance: Option<String>,
    /// Whether the loader's label is above its clearance (the flow is refused when it runs).
    pub refused: bool,
}

impl Step {
    /// The step as text: its name, and its label and clearance when it has them.
    fn display(&self) -> String {
        match (&self.label, &self.clearance) {
            (Some(l), Some(c)) if self.refused => {
                format!("{} [{l} above clearance {c}: refused]", self.name)
            }
            (Some(l), Some(c)) => format!("{} [{l}, clearance {c}]", self.name),
            (Some(l), None) => format!("{} [{l}]", self.name),
            _ => self.name.clone(),
        }
    }
}

/// One flow.
#[derive(Debug, Clone, Serialize)]
pub struct FlowEntry {
    /// The schedule, job or extractor name.
    pub name: String,
    /// `schedule`, `job` or `extractor`.
    pub kind: String,
    /// The interval, for schedules.
    pub interval: Option<String>,
    /// Flows that must succeed first (`annotations.dsm.depends_on`).
    pub depends_on: Vec<String>,
    /// Whether it runs (`annotations.dsm.enabled`).
    pub enabled: bool,
    /// One chain per task (a pair or job task).
    pub chains: Vec<Vec<Step>>,
    /// The status of the flow's first extractor, filled in by the caller.
    pub status: Option<String>,
}

fn classify(project: &Project, block: &str) -> Step {
    let role = if block.contains(':') {
        "command"
    } else {
        match project.plugin(block).map(|p| p.plugin_type) {
            Ok(PluginType::Extractors) => "extractor",
            Ok(PluginType::Loaders) => "loader",
            Ok(PluginType::Mappers) => "mapper",
            Ok(_) => "command",
            Err(_) => {
                let is_mapping = project
                    .plugins_of(PluginType::Mappers)
                    .any(|m| m.mappings.iter().any(|mp| mp.name == block));
                if is_mapping { "mapper" } else { "unknown" }
            }
        }
    };
    Step {
        name: block.to_owned(),
        role: role.to_owned(),
        label: None,
        clearance: None,
        refused: false,
    }
}

/// A chain from blocks, with each extractor's built-in transforms after it.
fn chain(project: &Project, blocks: &[&str]) -> Vec<Step> {
    let mut out = Vec::new();
    for block in blocks {
        let step = classify(project, block);
        let transforms: Vec<Step> = match (step.role.as_str(), project.plugin(block)) {
            ("extractor", Ok(p)) => p
                .annotations
                .transforms
                .iter()
                .map(|t| Step {
                    name: format!("transform:{}", t.kind),
                    role: "transform".to_owned(),
                    label: None,
                    clearance: None,
                    refused: false,
                })
                .collect(),
            _ => Vec::new(),
        };
        out.push(step);
        out.extend(transforms);
    }
    out
}

fn dsm_job(
    a: &Option<crate::project::model::Annotations<crate::project::DsmJob>>,
) -> (Vec<String>, bool) {
    let dsm = a.as_ref().and_then(|a| a.dsm.clone()).unwrap_or_default();
    (dsm.depends_on, dsm.enabled != Some(false))
}

/// [`flow_map`] with each flow's status: its first extractor's (`dsm flows`, `GET /api/flows`).
pub fn flows_with_status(
    project: &Project,
    store: &dyn crate::store::Store,
) -> crate::error::Result<Vec<FlowEntry>> {
    let mut flows = flow_map(project);
    let names: Vec<&str> = flows.iter().filter_map(|f| f.first_extractor()).collect();
    let statuses = super::source_statuses(store, &names)?;
    for f in &mut flows {
        f.status = f.first_extractor().and_then(|e| {
            statuses
                .iter()
                .find(|s| s.name == e)
                .map(|s| s.status.as_str().to_owned())
        });
    }
    Ok(flows)
}

/// The project's flows: schedules first, then jobs no schedule runs, then extractors with a
/// default loader that no schedule or job names.
pub fn flow_map(project: &Project) -> Vec<FlowEntry> {
    let mut out = Vec::new();
    let mut covered_jobs = std::collections::HashSet::new();
    let mut covered_extractors = std::collections::HashSet::new();
    for s in project.schedules() {
        let (depends_on, enabled) = dsm_job(&s.annotations);
        let chains: Vec<Vec<Step>> = if let Some(job) = s.job.as_deref() {
            covered_jobs.insert(job.to_owned());
            project
                .job(job)
                .map(|j| j.task_list())
                .unwrap_or_default()
                .iter()
                .map(|t| chain(project, &t.split_whitespace().collect::<Vec<_>>()))
                .collect()
        } else {
            let blocks: Vec<&str> = s
                .extractor
                .iter()
                .chain(s.loader.iter())
                .map(String::as_str)
                .collect();
            vec![chain(project, &blocks)]
        };
        out.push(FlowEntry {
            name: s.name.clone(),
            kind: "schedule".into(),
            interval: s.interval.clone(),
            depends_on,
            enabled,
            chains,
            status: None,
        });
    }
    for j in project.jobs() {
        if covered_jobs.contains(&j.name) {
            continue;
        }
        let (depends_on, enabled) = dsm_job(&j.annotations);
        out.push(FlowEntry {
            name: j.name.clone(),
            kind: "job".into(),
            interval: None,
            depends_on,
            enabled,
            chains: j
                .task_list()
                .iter()
                .map(|t| chain(project, &t.split_whitespace().collect::<Vec<_>>()))
                .collect(),
            status: None,
        });
    }
    for f in &out {
        for c in &f.chains {
            for step in c.iter().filter(|s| s.role == "extractor") {
                covered_extractors.insert(step.name.clone());
            }
        }
    }
    let default_loader = project.dsm().defaults.and_then(|d| d.default_loader);
    for e in project.plugins_of(PluginType::Extractors) {
        if covered_extractors.contains(&e.name) {
            continue;
        }
        let Some(loader) = e
            .annotations
            .default_loader
            .clone()
            .or(default_loader.clone())
        else {
            continue;
        };
        out.push(FlowEntry {
            name: e.name.clone(),
            kind: "extractor".into(),
            interval: None,
            depends_on: Vec::new(),
            enabled: e.annotations.enabled != Some(false),
            chains: vec![chain(project, &[e.name.as_str(), loader.as_str()])],
            status: None,
        });
    }
    out
}

impl FlowEntry {
    /// The first extractor of the flow, whose status the flow shows.
    pub fn first_extractor(&self) -> Option<&str> {
        self.chains
            .iter()
            .flatten()
            .find(|s| s.role == "extractor")
            .map(|s| s.name.as_str())
    }

    fn title(&self) -> String {
        let mut t = format!("{} {}", self.kind, self.name);
        if let Some(i) = &self.interval {
            let _ = write!(t, " ({i})");
        }
        if !self.enabled {
            t.push_str(" [disabled]");
        }
        if let Some(s) = &self.status {
            let _ = write!(t, " [{s}]");
        }
        t
    }
}

/// Plain text: one header line per flow, one indented line per chain.
pub fn render_text(flows: &[FlowEntry]) -> String {
    let mut out = String::new();
    for f in flows {
        let _ = writeln!(out, "{}", f.title());
        if !f.depends_on.is_empty() {
            let _ = writeln!(out, "  after: {}", f.depends_on.join(", "));
        }
        for c in &f.chains {
            let names: Vec<String> = c.iter().map(Step::display).collect();
            let _ = writeln!(out, "  {}", names.join(" → "));
        }
    }
    out
}

fn dot_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn shape(role: &str) -> &'static str {
    match role {
        "extractor" => "cylinder",
        "loader" => "box3d",
        "transform" | "mapper" => "cds",
        _ => "box",
    }
}

/// Graphviz dot: one cluster per flow, dashed edges for dependencies.
pub fn render_dot(flows: &[FlowEntry]) -> String {
    let mut out = String::from(
        "digraph dsm_flows {\n  rankdir=LR;\n  compound=true;\n  node [fontname=\"Helvetica\"];\n",
    );
    let index: HashMap<&str, usize> = flows
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name.as_str(), i))
        .collect();
    let mut firsts: Vec<Option<String>> = Vec::new();
    for (i, f) in flows.iter().enumerate() {
        let _ = writeln!(
            out,
            "  subgraph cluster_{i} {{\n    label={};",
            dot_quote(&f.title())
        );
        let mut first = None;
        for (c, steps) in f.chains.iter().enumerate() {
            let ids: Vec<String> = (0..steps.len()).map(|j| format!("f{i}_{c}_{j}")).collect();
            for (id, step) in ids.iter().zip(steps) {
                let _ = writeln!(
                    out,
                    "    {id} [label={}, shape={}{}];",
                    dot_quote(&step.display()),
                    shape(&step.role),
                    if step.refused { ", color=red" } else { "" }
                );
            }
            if ids.len() > 1 {
                let _ = writeln!(out, "    {};", ids.join(" -> "));
            }
            if first.is_none() {
                first = ids.first().cloned();
            }
        }
        let _ = writeln!(out, "  }}");
        firsts.push(first);
    }
    for (i, f) in flows.iter().enumerate() {
        for dep in &f.depends_on {
            if let (Some(&d), Some(Some(to))) = (index.get(dep.as_str()), firsts.get(i))
                && let Some(Some(from)) = firsts.get(d)
            {
                let _ = writeln!(
                    out,
                    "  {from} -> {to} [style=dashed, ltail=cluster_{d}, lhead=cluster_{i}, label=\"then\"];"
                );
            }
        }
    }
    out.push_str("}\n");
    out
}

fn mermaid_label(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "#quot;"))
}

/// Mermaid flowchart: one subgraph per flow, dotted edges for dependencies.
pub fn render_mermaid(flows: &[FlowEntry]) -> String {
    let mut out = String::from("flowchart LR\n");
    let index: HashMap<&str, usize> = flows
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name.as_str(), i))
        .collect();
    for (i, f) in flows.iter().enumerate() {
        let _ = writeln!(out, "  subgraph flow{i} [{}]", mermaid_label(&f.title()));
        for (c, steps) in f.chains.iter().enumerate() {
            let ids: Vec<String> = (0..steps.len()).map(|j| format!("f{i}_{c}_{j}")).collect();
            for (id, step) in ids.iter().zip(steps) {
                let (open, close) = match step.role.as_str() {
                    "extractor" | "loader" => ("[(", ")]"),
                    "transform" | "mapper" => ("[/", "/]"),
                    _ => ("[", "]"),
                };
                let _ = writeln!(
                    out,
                    "    {id}{open}{}{close}",
                    mermaid_label(&step.display())
                );
            }
            if ids.len() > 1 {
                let _ = writeln!(out, "    {}", ids.join(" --> "));
            }
        }
        let _ = writeln!(out, "  end");
    }
    for (i, f) in flows.iter().enumerate() {
        for dep in &f.depends_on {
            if let Some(d) = index.get(dep.as_str()) {
                let _ = writeln!(out, "  flow{d} -.->|then| flow{i}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"version: 1
plugins:
  extractors:
  - name: tap-github
    annotations:
      dsm:
        transforms:
        - type: rename
  - name: tap-csv
    annotations:
      dsm:
        default_loader: target-jsonl
  - name: tap-lonely
  loaders:
  - name: target-jsonl
  - name: target-sqlite
  mappers:
  - name: meltano-map-transformer
    mappings:
    - name: hash-emails
      config: {}
schedules:
- name: github-daily
  extractor: tap-github
  loader: target-sqlite
  transform: skip
  interval: '@daily'
- name: nightly-job
  job: github-job
  interval: '0 2 * * *'
  annotations:
    dsm:
      depends_on: [github-daily]
jobs:
- name: github-job
  tasks:
  - tap-github hash-emails target-jsonl
"#;

    fn flows() -> Vec<FlowEntry> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("meltano.yml"), YAML).unwrap();
        let project = Project::load(dir.path()).unwrap();
        let mut flows = flow_map(&project);
        flows[0].status = Some("error".into());
        flows
    }

    #[test]
    fn registry_flow_map_text() {
        assert_eq!(
            render_text(&flows()),
            "schedule github-daily (@daily) [error]\n  tap-github → transform:rename → target-sqlite\n\
             schedule nightly-job (0 2 * * *)\n  after: github-daily\n  tap-github → transform:rename → hash-emails → target-jsonl\n\
             extractor tap-csv\n  tap-csv → target-jsonl\n"
        );
        let f = flows();
        let roles: Vec<&str> = f[1].chains[0].iter().map(|s| s.role.as_str()).collect();
        assert_eq!(roles, ["extractor", "transform", "mapper", "loader"]);
        assert_eq!(f[1].first_extractor(), Some("tap-github"));
    }

    #[test]
    fn registry_flow_map_dot_and_mermaid() {
        let dot = render_dot(&flows());
        assert!(dot.starts_with("digraph dsm_flows {\n"), "{dot}");
        assert!(
            dot.contains(
                "  subgraph cluster_0 {\n    label=\"schedule github-daily (@daily) [error]\";\n"
            ),
            "{dot}"
        );
        assert!(
            dot.contains("    f0_0_0 [label=\"tap-github\", shape=cylinder];\n"),
            "{dot}"
        );
        assert!(dot.contains("    f0_0_0 -> f0_0_1 -> f0_0_2;\n"), "{dot}");
        assert!(dot.contains("  f0_0_0 -> f1_0_0 [style=dashed, ltail=cluster_0, lhead=cluster_1, label=\"then\"];\n"), "{dot}");
        assert!(dot.ends_with("}\n"));
        assert_eq!(dot.matches('{').count(), dot.matches('}').count());

        let mm = render_mermaid(&flows());
        assert!(mm.starts_with("flowchart LR\n"));
        assert!(
            mm.contains("  subgraph flow1 [\"schedule nightly-job (0 2 * * *)\"]\n"),
            "{mm}"
        );
        assert!(mm.contains("    f1_0_2[/\"hash-emails\"/]\n"), "{mm}");
        assert!(
            mm.contains("    f1_0_0 --> f1_0_1 --> f1_0_2 --> f1_0_3\n"),
            "{mm}"
        );
        assert!(mm.contains("  flow0 -.->|then| flow1\n"), "{mm}");
        assert_eq!(
            mm.matches("subgraph").count(),
            mm.matches("\n  end\n").count()
        );
    }
}

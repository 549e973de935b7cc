//! Merged streams in a run (`annotations.dsm.merged_streams`, resolved by `crate::merge`): which
//! merged streams the flow's extractor feeds, the checks made before any data moves, the stage
//! put last before the loader, and what is recorded when the run ends.

use std::path::{Path, PathBuf};

use chrono::Utc;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::merge::{self, MergeRun, MergeStage, MergedStream, RunContext};
use crate::pipeline::{Outcome, RunStatus};
use crate::plugin::{PluginRole, RunDir};
use crate::project::{PluginType, Project};
use crate::singer::message::SchemaMessage;
use crate::store::RunId;
use crate::store::merged::MergedTables;

/// The merge stages of one flow, with what the end of the run needs.
#[derive(Debug)]
pub struct FlowMerge {
    run: MergeRun,
    db: crate::store::Location,
    root: PathBuf,
    run_id: RunId,
}

/// The merged streams declared in the project, checked against the project's extractors.
pub fn declarations(project: &Project) -> Result<Vec<MergedStream>> {
    let typed = project.dsm().merged_streams;
    if typed.is_empty() {
        return Ok(Vec::new());
    }
    let mut list = serde_json::to_value(&typed)
        .map_err(|e| Error::failed(format!("internal: merged streams do not serialise: {e}")))?;
    drop_unset(&mut list);
    let mut dsm = Map::new();
    dsm.insert("merged_streams".into(), list);
    let decls = merge::merged_streams(&Value::Object(dsm))
        .map_err(|e| Error::from(e).detail("in `annotations.dsm.merged_streams` of meltano.yml"))?;
    let extractors: Vec<&str> = project
        .plugins_of(PluginType::Extractors)
        .map(|p| p.name.as_str())
        .collect();
    for d in &decls {
        for s in &d.sources {
            if !extractors.contains(&s.extractor.as_str()) {
                let mut e = Error::config(format!(
                    "merged stream `{}` takes source `{}` from extractor `{}`, which is not an extractor of this project",
                    d.name, s.name, s.extractor
                ));
                e = match crate::error::did_you_mean(&s.extractor, extractors.iter().copied()) {
                    Some(m) => e.hint(format!("did you mean `{m}`?")),
                    None => e.hint("add it with `dsm add extractor`, or fix the source"),
                };
                return Err(e);
            }
        }
    }
    Ok(decls)
}

/// Optional keys serialise as null and absent lists as `[]`; the declaration reads both as
/// "not given" only when they are left out.
fn drop_unset(v: &mut Value) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(drop_unset),
        Value::Object(map) => {
            map.retain(|k, v| {
                let empty_list =
                    matches!(v, Value::Array(a) if a.is_empty()) && (k == "key" || k == "priority");
                !v.is_null() && !empty_list
            });
            map.values_mut().for_each(drop_unset);
        }
        _ => {}
    }
}

/// What a flow needs to know to run its merge stages.
pub struct MergeInputs<'a> {
    /// The project.
    pub project: &'a Project,
    /// Resolves the other sources' specs from the flow's captured inputs.
    pub specs: &'a super::spec::SpecBuilder<'a>,
    /// The flow's extractor.
    pub extractor: &'a str,
    /// The catalog file the extractor runs with, if it takes one.
    pub catalog: Option<&'a Path>,
    /// The system store.
    pub db: crate::store::Location,
    /// The run.
    pub run_id: &'a RunId,
    /// The state id of the flow whose lease the run holds (none in a dry run).
    pub lease: Option<&'a str>,
    /// The run's private directory (for discovering other sources' catalogs).
    pub run_dir: &'a RunDir,
}

/// The merge stages of the flow, when its extractor feeds a merged stream. Every check that
/// does not need data is made here, before any plugin starts: the declaration, the sources'
/// extractors, and the schemas (this extractor's catalog, what the other sources sent before or
/// their catalogs) against the rules: a problem is a configuration error (exit 2).
pub fn prepare(inputs: &MergeInputs<'_>) -> Result<Option<FlowMerge>> {
    let decls = declarations(inputs.project)?;
    let fed: Vec<&MergedStream> = decls
        .iter()
        .filter(|d| d.sources.iter().any(|s| s.extractor == inputs.extractor))
        .collect();
    if fed.is_empty() {
        return Ok(None);
    }
    let root = inputs.project.root().to_path_buf();
    let conn = open(&inputs.db, &root)?;
    let catalog = match inputs.catalog {
        Some(path) => Some(read_json(path)?),
        None => None,
    };
    for d in &fed {
        check_schemas(inputs, conn.as_ref(), d, catalog.as_ref())?;
    }
    drop(conn);

    let run = RunContext {
        run_id: inputs.run_id.as_str().to_owned(),
        started_at: Utc::now(),
        lease: inputs.lease.map(str::to_owned),
    };
    let mut stages = Vec::new();
    for d in fed {
        for s in d.sources.iter().filter(|s| s.extractor == inputs.extractor) {
            let stage = MergeStage::new(open(&inputs.db, &root)?, d.clone(), &s.name, run.clone())?;
            stages.push(stage);
        }
    }
    Ok(Some(FlowMerge {
        run: MergeRun::new(stages),
        db: inputs.db.clone(),
        root,
        run_id: inputs.run_id.clone(),
    }))
}

fn open(location: &crate::store::Location, root: &Path) -> Result<Box<dyn MergedTables>> {
    crate::store::merged::open(location, root)
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::failed(format!("could not read `{}`: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::failed(format!("`{}` is not JSON: {e}", path.display())))
}

/// The SCHEMA message a catalog describes for `stream`.
fn schema_from_catalog(catalog: &Value, stream: &str) -> Option<SchemaMessage> {
    let entry = catalog.get("streams")?.as_array()?.iter().find(|s| {
        s.get("tap_stream_id").and_then(Value::as_str) == Some(stream)
            || s.get("stream").and_then(Value::as_str) == Some(stream)
    })?;
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut key = entry.get("key_properties").map(strings).unwrap_or_default();
    if key.is_empty()
        && let Some(meta) = entry.get("metadata").and_then(Value::as_array)
        && let Some(top) = meta.iter().find(|m| {
            m.get("breadcrumb")
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty)
        })
    {
        key = top
            .pointer("/metadata/table-key-properties")
            .map(strings)
            .unwrap_or_default();
    }
    Some(SchemaMessage {
        stream: stream.to_owned(),
        schema: entry.get("schema").cloned().unwrap_or(Value::Null),
        key_properties: key,
        bookmark_properties: None,
        extra: Map::new(),
    })
}

/// Checks a merged stream's rules against the schemas known before the run: this extractor's
/// catalog; for the other sources what they sent in earlier runs, else their catalogs.
fn check_schemas(
    inputs: &MergeInputs<'_>,
    conn: &dyn MergedTables,
    decl: &MergedStream,
    catalog: Option<&Value>,
) -> Result<()> {
    let stored = conn.load_schemas(&decl.name)?;
    let mut known: Vec<(String, SchemaMessage)> = Vec::new();
    for s in &decl.sources {
        let schema = if s.extractor == inputs.extractor {
            match catalog {
                Some(c) => Some(schema_from_catalog(c, &s.stream).ok_or_else(|| {
                    Error::config(format!(
                        "merged stream `{}` takes stream `{}` of extractor `{}`, which its catalog does not have",
                        decl.name, s.stream, s.extractor
                    ))
                    .hint(format!(
                        "`dsm select {} --list --all` lists the extractor's streams",
                        s.extractor
                    ))
                })?),
                None => None,
            }
        } else {
            match stored.iter().find(|(name, _)| *name == s.name) {
                Some((_, m)) => Some(m.clone()),
                None => other_catalog(inputs, &s.extractor)
                    .and_then(|c| schema_from_catalog(&c, &s.stream)),
            }
        };
        if let Some(m) = schema {
            known.push((s.name.clone(), m));
        }
    }
    let refs: Vec<(&str, &SchemaMessage)> = known.iter().map(|(n, m)| (n.as_str(), m)).collect();
    decl.merged_schema(&refs).map_err(|e| {
        Error::from(e).detail(format!(
            "checked before the run against the schemas of: {}",
            known
                .iter()
                .map(|(n, _)| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    Ok(())
}

/// Another source's catalog (cached discovery, or discovery now); `None` when it cannot be had,
/// since that source's own run checks it again.
fn other_catalog(inputs: &MergeInputs<'_>, extractor: &str) -> Option<Value> {
    let plugin = inputs
        .project
        .find_plugin(extractor, Some(PluginType::Extractors))
        .ok()?;
    let resolved = inputs.specs.resolve(plugin, &Default::default()).ok()?;
    let plugin = &resolved.plugin;
    let spec = inputs
        .specs
        .spec(&resolved, PluginRole::Extractor, None)
        .spec;
    let found = super::catalog::prepare(&super::catalog::CatalogInputs {
        project: inputs.project,
        plugin,
        spec: &spec,
        refresh: false,
        run_dir: inputs.run_dir,
        deadline: None,
    });
    match found {
        Ok(path) => read_json(&path).ok(),
        Err(e) => {
            tracing::warn!(extractor, error = %e, "no catalog to check a merged stream against");
            None
        }
    }
}

impl FlowMerge {
    /// The stage to put last before the loader.
    pub fn transform(&self) -> Box<dyn crate::transform::Transform> {
        self.run.transform()
    }

    /// Call when the loader confirmed `state`, before the bookmark is committed.
    pub fn on_loader_state(&self, state: &Value) -> Result<()> {
        Ok(self.run.on_loader_state(state)?)
    }

    /// Ends the merge side of the run and records its counts; a failure here is a warning.
    pub fn finish(&self, outcome: &Outcome) -> Vec<String> {
        let succeeded = outcome.status == RunStatus::Success;
        let done = open(&self.db, &self.root).and_then(|conn| {
            Ok(self
                .run
                .finish(succeeded, conn.as_ref(), self.run_id.as_str())?)
        });
        match done {
            Ok(stats) => {
                for s in &stats {
                    tracing::info!(stream = %s.stream, source = %s.source, records = s.stats.records_in,
                        sent = s.stats.emitted, conflicts = s.stats.conflicts, "merged stream resolved");
                }
                Vec::new()
            }
            Err(e) => vec![format!(
                "could not record the merged streams' counts of this run: {}",
                e.message()
            )],
        }
    }
}

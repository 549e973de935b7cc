//! The classification labels of a flow's streams (`crate::classification`), derived through the
//! flow's steps and merged streams, and the stage that keeps a stream no plan named from the
//! loader.

use std::collections::HashMap;

use serde_json::Value;

use super::stages::FlowStages;
use crate::classification::{self, Derivation, OTHER_STREAMS, Scheme, StreamLabel};
use crate::error::Result;
use crate::project::{Plugin, PluginType, Project};
use crate::singer::Message;
use crate::transform::{Transform, TransformError};

/// The streams a catalog selects, by the name their messages carry (`stream`, else
/// `tap_stream_id`).
pub fn catalog_streams(catalog: &Value) -> Vec<String> {
    let selected: Vec<String> = crate::catalog::selected_properties(catalog)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    catalog
        .get("streams")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let id = entry.get("tap_stream_id").and_then(Value::as_str)?;
            selected.iter().any(|s| s == id).then(|| {
                entry
                    .get("stream")
                    .and_then(Value::as_str)
                    .unwrap_or(id)
                    .to_owned()
            })
        })
        .collect()
}

/// The labels of the streams flow `extractor` → `stages` → merged streams sends; `catalog` is
/// the catalog the extractor runs with, when it takes one. `None` when the project does not
/// classify its data.
pub fn derive(
    project: &Project,
    extractor: &Plugin,
    stages: &mut FlowStages,
    catalog: Option<&Value>,
) -> Result<Option<Vec<StreamLabel>>> {
    if !classification::is_classified(project) {
        return Ok(None);
    }
    let scheme = Scheme::of(project)?;
    let streams = catalog.map(catalog_streams);
    let mut d = Derivation::of_source(&scheme, extractor, streams.as_deref())?;
    stages.derive(&mut d);
    merged(project, &scheme, &extractor.name, &mut d)?;
    Ok(Some(d.labels()))
}

/// Labels from the project's declarations alone, for listings that run nothing (`dsm flows`,
/// `dsm sources`): the extractor's `catalog` file when it has one, its
/// `annotations.dsm.transforms`, mappers run as processes and merged streams. Stream maps in
/// plugin settings are not read here (that needs the settings); a run applies them.
pub fn declared(
    project: &Project,
    extractor: &Plugin,
    mappers: &[String],
) -> Result<Option<Vec<StreamLabel>>> {
    if !classification::is_classified(project) {
        return Ok(None);
    }
    let scheme = Scheme::of(project)?;
    let catalog = extractor
        .catalog
        .as_ref()
        .and_then(|p| std::fs::read_to_string(project.root().join(p)).ok())
        .and_then(|t| serde_json::from_str::<Value>(&t).ok());
    let streams = catalog.as_ref().map(catalog_streams);
    let mut d = Derivation::of_source(&scheme, extractor, streams.as_deref())?;
    for t in &extractor.annotations.transforms {
        if let Ok(transform) = super::stages::annotation_transform(
            t,
            "a transform",
            crate::project::annotations::Dialect::Extended,
        ) {
            d.through(transform.as_ref());
        }
    }
    for name in mappers {
        if let Ok((mapper, _)) = super::find_mapper(project, name)
            && !super::stages::is_map_transformer(mapper)
        {
            d.through_process(name);
        }
    }
    merged(project, &scheme, &extractor.name, &mut d)?;
    Ok(Some(d.labels()))
}

/// Streams of `extractor` that feed a merged stream become that stream, which takes the highest
/// label of all its sources (the other extractors' streams as they declare them).
fn merged(project: &Project, scheme: &Scheme, extractor: &str, d: &mut Derivation) -> Result<()> {
    for decl in super::merge_stage::declarations(project)? {
        if !decl.sources.iter().any(|s| s.extractor == extractor) {
            continue;
        }
        let mut others = Vec::new();
        for s in decl.sources.iter().filter(|s| s.extractor != extractor) {
            let plugin = project.find_plugin(&s.extractor, Some(PluginType::Extractors))?;
            let theirs =
                Derivation::of_source(scheme, plugin, Some(std::slice::from_ref(&s.stream)))?;
            others.push(theirs.content(&s.stream));
        }
        for s in decl.sources.iter().filter(|s| s.extractor == extractor) {
            d.into_merged(&s.stream, &decl.name, std::mem::take(&mut others));
        }
    }
    Ok(())
}

/// The last stage before a classified flow's loader: a stream the plan did not name (a tap that
/// sends a stream it was not asked for) passes only when the label it would have fits the
/// loader's clearance; it is never forwarded otherwise, and the run fails.
pub struct Guard {
    planned: HashMap<String, u32>,
    other: Option<u32>,
    unknown_rank: u32,
    unknown_label: String,
    clearance: u32,
    loader: String,
}

impl Guard {
    /// A guard for `labels` (the plan) into a loader cleared to rank `clearance`; a stream not
    /// in the plan counts as `highest` unless the plan has [`OTHER_STREAMS`].
    pub fn new(
        labels: &[StreamLabel],
        highest: &classification::Label,
        clearance: u32,
        loader: &str,
    ) -> Guard {
        Guard {
            planned: labels
                .iter()
                .filter(|l| l.stream != OTHER_STREAMS)
                .map(|l| (l.stream.clone(), l.rank))
                .collect(),
            other: labels
                .iter()
                .find(|l| l.stream == OTHER_STREAMS)
                .map(|l| l.rank),
            unknown_rank: highest.rank,
            unknown_label: highest.name.clone(),
            clearance,
            loader: loader.to_owned(),
        }
    }
}

impl Transform for Guard {
    fn touches(&self, stream: &str) -> bool {
        !self.planned.contains_key(stream)
    }

    fn apply(&mut self, message: Message, out: &mut Vec<Message>) -> Result<(), TransformError> {
        let Some(stream) = message.stream() else {
            out.push(message);
            return Ok(());
        };
        if self.other.unwrap_or(self.unknown_rank) <= self.clearance {
            out.push(message);
            return Ok(());
        }
        Err(TransformError {
            message: format!(
                "the extractor sent stream `{stream}`, which the run's plan did not name: its classification is unknown (counted as `{}`), above the clearance of loader `{}`; it was not passed on",
                self.unknown_label, self.loader
            ),
            hint: Some("select the stream in the extractor's catalog, so its label is derived before the run".into()),
        })
    }
}

//! Meltano's block syntax: `EXTRACTOR [MAPPER|MAPPING...] LOADER`, job names expanded.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::project::{PluginType, Project};

/// One extractor-to-loader flow, with the mappers (or mapping names) between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// The extractor's name.
    pub extractor: String,
    /// Mapper plugin names or mapping names, in order.
    pub mappers: Vec<String>,
    /// The loader's name.
    pub loader: String,
}

/// Expands job names into their tasks (recursively, one level of lists flattened).
pub fn expand_jobs(project: &Project, blocks: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for block in blocks {
        expand_one(project, block, &mut out, 0)?;
    }
    Ok(out)
}

fn expand_one(project: &Project, block: &str, out: &mut Vec<String>, depth: usize) -> Result<()> {
    if depth > 16 {
        return Err(Error::config(format!("job `{block}` expands into itself")));
    }
    let Some(job) = project.job(block) else {
        out.push(block.to_string());
        return Ok(());
    };
    let mut words: Vec<String> = Vec::new();
    collect_task_words(&job.tasks, &mut words);
    for w in words {
        expand_one(project, &w, out, depth + 1)?;
    }
    Ok(())
}

fn collect_task_words(tasks: &Value, out: &mut Vec<String>) {
    match tasks {
        Value::String(s) => out.extend(s.split_whitespace().map(str::to_string)),
        Value::Array(items) => items.iter().for_each(|t| collect_task_words(t, out)),
        _ => {}
    }
}

/// Which kind of block a name is.
fn kind_of(project: &Project, name: &str) -> Option<PluginType> {
    if name.contains(':') {
        return None;
    }
    for ty in [
        PluginType::Extractors,
        PluginType::Loaders,
        PluginType::Mappers,
    ] {
        if project.plugins_of(ty).any(|p| p.name == name) {
            return Some(ty);
        }
    }
    let is_mapping = project
        .plugins_of(PluginType::Mappers)
        .any(|p| p.mappings.iter().any(|m| m.name == name));
    is_mapping.then_some(PluginType::Mappers)
}

/// Splits (already job-expanded) blocks into flows. `plugin:command` steps are refused.
pub fn parse(project: &Project, blocks: &[String]) -> Result<Vec<Flow>> {
    if blocks.is_empty() {
        return Err(Error::config("no blocks to run")
            .hint("name an extractor and a loader, e.g. `dsm run tap-csv target-sqlite`"));
    }
    let mut flows = Vec::new();
    let mut i = 0;
    while i < blocks.len() {
        let name = &blocks[i];
        match kind_of(project, name) {
            Some(PluginType::Extractors) => {}
            Some(other) => {
                return Err(Error::config(format!(
                    "block `{name}` is a {} but a flow must start with an extractor",
                    other.singular()
                ))
                .hint("write blocks as EXTRACTOR [MAPPER...] LOADER"));
            }
            None if name.contains(':') => {
                return Err(Error::config(format!(
                    "`{name}`: running a plugin command as a block is not supported yet"
                ))
                .hint(format!(
                    "run it on its own with `dsm invoke {}`",
                    name.replace(':', " ")
                )));
            }
            None => return Err(unknown_block(project, name)),
        }
        let extractor = name.clone();
        let mut mappers = Vec::new();
        i += 1;
        loop {
            let Some(next) = blocks.get(i) else {
                return Err(Error::config(format!(
                    "extractor `{extractor}` has no loader after it"
                ))
                .hint("write blocks as EXTRACTOR [MAPPER...] LOADER"));
            };
            match kind_of(project, next) {
                Some(PluginType::Mappers) => mappers.push(next.clone()),
                Some(PluginType::Loaders) => {
                    flows.push(Flow {
                        extractor: extractor.clone(),
                        mappers: std::mem::take(&mut mappers),
                        loader: next.clone(),
                    });
                    i += 1;
                    break;
                }
                Some(_) => {
                    return Err(Error::config(format!(
                        "extractor `{extractor}` is followed by extractor `{next}` without a loader"
                    ))
                    .hint("write blocks as EXTRACTOR [MAPPER...] LOADER"));
                }
                None => return Err(unknown_block(project, next)),
            }
            i += 1;
        }
    }
    Ok(flows)
}

fn unknown_block(project: &Project, name: &str) -> Error {
    let known: Vec<&str> = project
        .plugins()
        .iter()
        .map(|p| p.name.as_str())
        .chain(project.jobs().iter().map(|j| j.name.as_str()))
        .collect();
    let mut err = Error::config(format!(
        "`{name}` is not a plugin, mapping or job of this project"
    ));
    if let Some(s) = crate::error::did_you_mean(name, known.iter().copied()) {
        err = err.hint(format!("did you mean `{s}`?"));
    } else {
        err = err.hint("add it with `dsm add`, or list what there is with `dsm plugins`");
    }
    err
}

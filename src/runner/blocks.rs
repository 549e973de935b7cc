//! Meltano's block syntax: `EXTRACTOR [MAPPER|MAPPING...] LOADER` flows and `plugin[:command]`
//! steps, job names expanded.

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

/// A plugin run on its own between flows: `plugin:command` runs one of its `commands:`, a bare
/// plugin name (a utility, say) runs its executable with no arguments, as in `meltano run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandStep {
    /// The plugin's name.
    pub plugin: String,
    /// The command's name, when the block was `plugin:command`.
    pub command: Option<String>,
}

impl std::fmt::Display for CommandStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.command {
            Some(c) => write!(f, "{}:{c}", self.plugin),
            None => f.write_str(&self.plugin),
        }
    }
}

/// One step of `dsm run`: a flow, or a plugin (command) run on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Extractor, mappers, loader.
    Flow(Flow),
    /// `plugin[:command]`.
    Command(CommandStep),
}

/// Expands job names into their tasks, as `meltano run` does: one level only, so a job's tasks
/// are plugin names even when a job has the same name (a job `tap-csv` whose task is
/// `tap-csv target-jsonl` is common), and a job never expands into itself.
pub fn expand_jobs(project: &Project, blocks: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for block in blocks {
        match project.job(block) {
            Some(job) => collect_task_words(&job.tasks, &mut out),
            None => out.push(block.clone()),
        }
    }
    Ok(out)
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

/// A block that is not part of a flow: `plugin:command` for a command the plugin declares, or
/// the bare name of a plugin that is not an extractor, mapper or loader.
fn command_step(project: &Project, name: &str) -> Result<Option<CommandStep>> {
    if let Some((plugin_name, command)) = name.split_once(':') {
        let Some(plugin) = project.plugins().iter().find(|p| p.name == plugin_name) else {
            return Err(unknown_block(project, plugin_name));
        };
        if !plugin.commands.contains_key(command) {
            let mut err = Error::config(format!(
                "{} `{plugin_name}` has no command `{command}`",
                plugin.plugin_type.singular()
            ));
            let known: Vec<&str> = plugin.commands.keys().map(String::as_str).collect();
            err = match crate::error::did_you_mean(command, known.iter().copied()) {
                Some(s) => err.hint(format!("did you mean `{plugin_name}:{s}`?")),
                None if known.is_empty() => err.hint(format!(
                    "declare it under `commands:` of `{plugin_name}` in meltano.yml"
                )),
                None => err.hint(format!("its commands are: {}", known.join(", "))),
            };
            return Err(err);
        }
        return Ok(Some(CommandStep {
            plugin: plugin_name.to_string(),
            command: Some(command.to_string()),
        }));
    }
    let standalone = project.plugins().iter().any(|p| {
        p.name == name
            && !matches!(
                p.plugin_type,
                PluginType::Extractors | PluginType::Loaders | PluginType::Mappers
            )
    });
    Ok(standalone.then(|| CommandStep {
        plugin: name.to_string(),
        command: None,
    }))
}

/// Splits (already job-expanded) blocks into steps: flows (`EXTRACTOR [MAPPER...] LOADER`) and
/// `plugin[:command]` steps, in the order given.
pub fn parse(project: &Project, blocks: &[String]) -> Result<Vec<Step>> {
    if blocks.is_empty() {
        return Err(Error::config("no blocks to run")
            .hint("name an extractor and a loader, e.g. `dsm run tap-csv target-sqlite`"));
    }
    let mut steps = Vec::new();
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
            None => match command_step(project, name)? {
                Some(step) => {
                    steps.push(Step::Command(step));
                    i += 1;
                    continue;
                }
                None => return Err(unknown_block(project, name)),
            },
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
                    steps.push(Step::Flow(Flow {
                        extractor: extractor.clone(),
                        mappers: std::mem::take(&mut mappers),
                        loader: next.clone(),
                    }));
                    i += 1;
                    break;
                }
                Some(_) => {
                    return Err(Error::config(format!(
                        "extractor `{extractor}` is followed by extractor `{next}` without a loader"
                    ))
                    .hint("write blocks as EXTRACTOR [MAPPER...] LOADER"));
                }
                None if command_step(project, next)?.is_some() => {
                    return Err(Error::config(format!(
                        "extractor `{extractor}` is followed by `{next}` before its loader"
                    ))
                    .hint("a `plugin:command` step goes before or after a whole EXTRACTOR [MAPPER...] LOADER flow"));
                }
                None => return Err(unknown_block(project, next)),
            }
            i += 1;
        }
    }
    Ok(steps)
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

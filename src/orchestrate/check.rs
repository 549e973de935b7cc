//! Checks of what breaks only when flows run, for `dsm validate`: a job task naming no plugin or
//! job, a schedule naming an unknown job or plugin, an interval that is not a valid cron
//! expression, `depends_on` cycles, a config value of the wrong kind for its setting and a
//! stream map that does not compile. Each finding names the file and line that define it.

use std::path::{Path, PathBuf};

use super::interval::Interval;
use super::{OrchestrateError, Plan, project_flows};
use crate::error::did_you_mean;
use crate::project::annotations::Dialect;
use crate::project::edit::{self, Seg};
use crate::project::{Diagnostic, PROJECT_FILE, PluginType, Pos, Project, Severity, yaml};
use crate::transform::StreamMaps;

/// Every problem found, as error diagnostics.
pub fn check(project: &Project) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let known = |word: &str| -> bool {
        let name = word.split(':').next().unwrap_or(word);
        project.plugins().iter().any(|p| p.name == name)
            || project.job(name).is_some()
            || project
                .plugins_of(PluginType::Mappers)
                .any(|p| p.mappings.iter().any(|m| m.name == name))
    };
    let names: Vec<String> = project
        .plugins()
        .iter()
        .map(|p| p.name.clone())
        .chain(project.jobs().iter().map(|j| j.name.clone()))
        .collect();
    let suggest = |word: &str| {
        did_you_mean(word, names.iter().map(String::as_str)).map(|m| format!("did you mean `{m}`?"))
    };
    for job in project.jobs() {
        let mut words = Vec::new();
        collect_words(&job.tasks, &mut words);
        for word in words.iter().filter(|w| !known(w)) {
            let (file, pos) = locate(project.root(), "jobs", &job.name, "tasks");
            out.push(error(
                "unknown-task",
                file,
                pos,
                format!(
                    "job `{}` has a task naming `{word}`, which is no plugin, mapping or job of the project",
                    job.name
                ),
                suggest(word).or_else(|| Some("`dsm plugins list` shows the project's plugins".into())),
            ));
        }
    }
    for schedule in project.schedules() {
        if let Some(job) = &schedule.job
            && project.job(job).is_none()
        {
            let (file, pos) = locate(project.root(), "schedules", &schedule.name, "job");
            let jobs: Vec<&str> = project.jobs().iter().map(|j| j.name.as_str()).collect();
            out.push(error(
                "unknown-job",
                file,
                pos,
                format!(
                    "schedule `{}` runs job `{job}`, which is not defined",
                    schedule.name
                ),
                did_you_mean(job, jobs.iter().copied())
                    .map(|m| format!("did you mean `{m}`?"))
                    .or_else(|| {
                        Some("define it under `jobs:` or change the schedule's `job`".into())
                    }),
            ));
        }
        for (key, value, ty) in [
            ("extractor", &schedule.extractor, PluginType::Extractors),
            ("loader", &schedule.loader, PluginType::Loaders),
        ] {
            if let Some(name) = value
                && !project.plugins_of(ty).any(|p| &p.name == name)
            {
                let (file, pos) = locate(project.root(), "schedules", &schedule.name, key);
                out.push(error(
                    "unknown-plugin",
                    file,
                    pos,
                    format!(
                        "schedule `{}` names {key} `{name}`, which is not in the project",
                        schedule.name
                    ),
                    suggest(name),
                ));
            }
        }
        if let Some(interval) = &schedule.interval
            && let Err(e) = Interval::parse(interval, chrono_tz::UTC)
        {
            let (file, pos) = locate(project.root(), "schedules", &schedule.name, "interval");
            let hint = match &e {
                OrchestrateError::BadInterval {
                    suggestion: Some(s),
                    ..
                } => format!("did you mean `{s}`?"),
                _ => "write five cron fields (minute hour day month weekday) or a shortcut such as `@daily`".into(),
            };
            out.push(error(
                "invalid-interval",
                file,
                pos,
                e.to_string(),
                Some(hint),
            ));
        }
    }
    check_plugins(project, &mut out);
    // Cycles of `depends_on` (and other plan errors) stop `dsm sync` before anything runs.
    if let Ok(flows) = project_flows::project_flows(project)
        && let Err(e) = Plan::build(&flows, |_| true)
        && matches!(e, OrchestrateError::Cycle { .. })
    {
        out.push(error(
            "dependency-cycle",
            PathBuf::from(PROJECT_FILE),
            None,
            e.to_string(),
            Some("remove one `depends_on` entry along the cycle".into()),
        ));
    }
    out
}

/// Plugin config values of the wrong kind, and stream maps that do not compile (or use what
/// the Singer SDK lacks while the project keeps to the `sdk` dialect).
fn check_plugins(project: &Project, out: &mut Vec<Diagnostic>) {
    let extended = project.dsm().stream_maps.map(|o| o.dialect) == Some(Dialect::Extended);
    for plugin in project.plugins() {
        let ty = plugin.plugin_type.key();
        for (key, value) in &plugin.config {
            let Some(kind) = plugin.setting(key).and_then(|d| d.kind.as_deref()) else {
                continue;
            };
            if let Some(expected) = wrong_kind(kind, value) {
                let (file, pos) = locate_plugin(project.root(), ty, &plugin.name, &["config", key]);
                out.push(error(
                    "wrong-kind",
                    file,
                    pos,
                    format!(
                        "setting `{key}` of {} `{}` is of kind `{kind}`, but its value in the config is not {expected}",
                        plugin.plugin_type.singular(),
                        plugin.name
                    ),
                    Some(format!("write {expected}, or an environment variable reference such as `${{{}}}`", crate::settings::env_var_name(&plugin.name, key))),
                ));
            }
        }
        let mut maps: Vec<(String, Vec<&str>, serde_json::Value)> = Vec::new();
        if plugin.config.contains_key("stream_maps") {
            maps.push((
                "its config".into(),
                vec!["config", "stream_maps"],
                serde_json::Value::Object(plugin.config.clone()),
            ));
        }
        for m in &plugin.mappings {
            if m.config.contains_key("stream_maps") {
                maps.push((
                    format!("mapping `{}`", m.name),
                    vec!["mappings"],
                    serde_json::Value::Object(m.config.clone()),
                ));
            }
        }
        for (i, t) in plugin.annotations.transforms.iter().enumerate() {
            if t.kind.replace('-', "_") == "stream_maps" {
                maps.push((
                    format!("transform {} of `annotations.dsm.transforms`", i + 1),
                    vec!["annotations"],
                    serde_json::Value::Object(t.config.clone()),
                ));
            }
        }
        for (what, keys, config) in maps {
            let problem = match StreamMaps::from_config(&config) {
                Err(e) => Some((e.message, e.hint)),
                Ok(compiled) if !extended => compiled.beyond_sdk().into_iter().next().map(|(map, prop, name)| {
                    (
                        format!("stream map `{map}`, property `{prop}` uses `{name}`, which the Singer SDK's stream maps do not have"),
                        Some("rewrite it with what the SDK has, or set `annotations.dsm.stream_maps.dialect: extended` to make the project dsm-only".into()),
                    )
                }),
                Ok(_) => None,
            };
            if let Some((message, hint)) = problem {
                let (file, pos) = locate_plugin(project.root(), ty, &plugin.name, &keys);
                out.push(error(
                    "invalid-stream-map",
                    file,
                    pos,
                    format!(
                        "{} `{}`, {what}: {message}",
                        plugin.plugin_type.singular(),
                        plugin.name
                    ),
                    hint,
                ));
            }
        }
    }
}

/// What a value of setting kind `kind` should be, when `value` is not that; a string holding an
/// environment variable reference is left to run time.
fn wrong_kind(kind: &str, value: &serde_json::Value) -> Option<&'static str> {
    use serde_json::Value as J;
    if let J::String(s) = value
        && s.contains('$')
    {
        return None;
    }
    let ok = match (kind, value) {
        (_, J::Null) => true,
        ("integer", J::Number(n)) => n.is_i64() || n.is_u64(),
        ("integer", J::String(s)) => s.trim().parse::<i64>().is_ok(),
        ("integer", _) => false,
        ("boolean", J::Bool(_)) => true,
        ("boolean", J::String(s)) => matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "true" | "false" | "1" | "0" | "yes" | "no" | "on" | "off" | "t" | "f" | "y" | "n"
        ),
        ("boolean", _) => false,
        ("array", J::Array(_)) => true,
        ("array", J::String(s)) => serde_json::from_str::<Vec<J>>(s).is_ok(),
        ("array", _) => false,
        ("object", J::Object(_)) => true,
        ("object", J::String(s)) => serde_json::from_str::<serde_json::Map<String, J>>(s).is_ok(),
        ("object", _) => false,
        _ => true,
    };
    (!ok).then_some(match kind {
        "integer" => "a whole number",
        "boolean" => "`true` or `false`",
        "array" => "a list",
        _ => "a mapping",
    })
}

/// The file defining plugin `name` of type `ty` (its key under `plugins:`) and the position of
/// the key path `keys` inside its entry (of the entry when absent).
fn locate_plugin(root: &Path, ty: &str, name: &str, keys: &[&str]) -> (PathBuf, Option<Pos>) {
    let owner = [Seg::key("plugins"), Seg::key(ty), Seg::item(name)];
    let file = edit::defining_file(root, &owner).unwrap_or_else(|_| PathBuf::from(PROJECT_FILE));
    let pos = std::fs::read_to_string(root.join(&file))
        .ok()
        .and_then(|text| yaml::parse(&text).ok())
        .and_then(|tree| {
            let item = tree.get("plugins")?.get(ty)?.items().iter().find(|n| {
                n.get("name").map(yaml::Node::to_json) == Some(serde_json::json!(name))
            })?;
            let mut node = item;
            let mut pos = item.pos;
            for key in keys {
                let Some(p) = node.key_pos(key) else { break };
                pos = p;
                match node.get(key) {
                    Some(n) => node = n,
                    None => break,
                }
            }
            Some(pos)
        });
    (file, pos)
}

fn collect_words(tasks: &serde_json::Value, out: &mut Vec<String>) {
    match tasks {
        serde_json::Value::String(s) => out.extend(s.split_whitespace().map(str::to_string)),
        serde_json::Value::Array(items) => items.iter().for_each(|t| collect_words(t, out)),
        _ => {}
    }
}

fn error(
    code: &'static str,
    file: PathBuf,
    pos: Option<Pos>,
    message: String,
    hint: Option<String>,
) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        code,
        file,
        pos,
        message,
        hint,
    }
}

/// The file that defines `section[name]` and the position of its `key` (of the item when the
/// key is absent).
fn locate(root: &Path, section: &str, name: &str, key: &str) -> (PathBuf, Option<Pos>) {
    let owner = [Seg::key(section), Seg::item(name)];
    let file = edit::defining_file(root, &owner).unwrap_or_else(|_| PathBuf::from(PROJECT_FILE));
    let pos = std::fs::read_to_string(root.join(&file))
        .ok()
        .and_then(|text| yaml::parse(&text).ok())
        .and_then(|tree| {
            let item = tree.get(section)?.items().iter().find(|n| {
                n.get("name").map(yaml::Node::to_json) == Some(serde_json::json!(name))
            })?;
            Some(item.key_pos(key).unwrap_or(item.pos))
        });
    (file, pos)
}

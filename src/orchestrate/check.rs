//! Checks of what breaks only when flows run, for `dsm validate`: a job task naming no plugin or
//! job, a schedule naming an unknown job or plugin, an interval that is not a valid cron
//! expression, and `depends_on` cycles. Each finding names the file and line that define it.

use std::path::{Path, PathBuf};

use super::interval::Interval;
use super::{OrchestrateError, Plan, project_flows};
use crate::error::did_you_mean;
use crate::project::edit::{self, Seg};
use crate::project::{Diagnostic, PROJECT_FILE, PluginType, Pos, Project, Severity, yaml};

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

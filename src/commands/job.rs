//! `dsm job add|list|set|remove`: Meltano's job commands, editing `meltano.yml` in place
//! (comments and key order kept).

use serde_json::{Value, json};

use crate::commands::Context;
use crate::error::{Error, Result};
use crate::printer::OutputFormat;
use crate::project::edit::{Seg, edit_defining_file, edit_project_file};
use crate::project::{Project, yaml};

/// Arguments of `dsm job`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: JobCommand,
}

/// `dsm job` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum JobCommand {
    /// Add a job: `--tasks 'tap target'` or a YAML list `--tasks '["tap target", "tap2 target2"]'`.
    Add {
        /// The job's name.
        job_name: String,
        /// The tasks: one block list, or a YAML list of them (lists of lists allowed).
        #[arg(long, required = true)]
        tasks: String,
    },
    /// List the jobs (or one), as `name: tasks` or with `--format json`.
    List {
        /// Only this job.
        job_name: Option<String>,
    },
    /// Replace an existing job's tasks.
    Set {
        /// The job's name.
        job_name: String,
        /// The new tasks, as for `add`.
        #[arg(long, required = true)]
        tasks: String,
    },
    /// Remove a job.
    Remove {
        /// The job's name.
        job_name: String,
    },
}

/// Reads `--tasks` the way Meltano does: a YAML list of strings or lists of strings, or one
/// block list as plain text (stored as a one-item list).
pub fn parse_tasks(text: &str) -> Result<Value> {
    let trimmed = text.trim();
    let parsed = if trimmed.starts_with('[') {
        Some(
            yaml::parse(trimmed)
                .map_err(|e| {
                    Error::config(format!("`--tasks` is not a valid YAML list: {}", e.message))
                })?
                .to_json(),
        )
    } else {
        None
    };
    let tasks = match parsed {
        Some(Value::Array(items)) => items,
        Some(other) => vec![other],
        None => vec![Value::String(trimmed.to_string())],
    };
    let ok = |v: &Value| match v {
        Value::String(s) => !s.trim().is_empty(),
        Value::Array(parts) => parts.iter().all(|p| matches!(p, Value::String(_))),
        _ => false,
    };
    if tasks.is_empty() || !tasks.iter().all(ok) {
        return Err(Error::config(format!("`--tasks` must name at least one block list, got `{text}`"))
            .hint("write `--tasks 'tap-x target-y'` or `--tasks '[\"tap-x target-y\", \"tap-z target-y\"]'`"));
    }
    Ok(Value::Array(tasks))
}

fn jobs_path() -> Vec<Seg> {
    vec![Seg::key("jobs")]
}

fn unknown_job(name: &str) -> Error {
    Error::config(format!("job `{name}` does not exist"))
        .hint("`dsm job list` shows the jobs there are")
}

/// Runs `dsm job`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let root = ctx.project_root()?;
    match args.command {
        JobCommand::Add { job_name, tasks } => {
            let tasks = parse_tasks(&tasks)?;
            let project = Project::load(&root)?;
            if project.job(&job_name).is_some() {
                return Err(
                    Error::config(format!("job `{job_name}` already exists")).hint(format!(
                        "change it with `dsm job set {job_name} --tasks ...`"
                    )),
                );
            }
            edit_project_file(&root, |doc| {
                let mut path = jobs_path();
                path.push(Seg::item(&job_name));
                doc.set(&path, &json!({"name": job_name, "tasks": tasks}))
            })?;
            ctx.printer.notice(format!("Added job `{job_name}`"));
            Ok(())
        }
        JobCommand::Set { job_name, tasks } => {
            let tasks = parse_tasks(&tasks)?;
            let project = Project::load(&root)?;
            if project.job(&job_name).is_none() {
                return Err(unknown_job(&job_name));
            }
            let path = [Seg::key("jobs"), Seg::item(&job_name), Seg::key("tasks")];
            edit_defining_file(&root, &path, |doc| doc.set(&path, &tasks))?;
            ctx.printer.notice(format!("Updated job `{job_name}`"));
            Ok(())
        }
        JobCommand::Remove { job_name } => {
            let path = [Seg::key("jobs"), Seg::item(&job_name)];
            let removed =
                edit_defining_file(&root, &path, |doc| doc.remove_item(&jobs_path(), &job_name))?;
            if !removed {
                return Err(unknown_job(&job_name));
            }
            ctx.printer.notice(format!("Removed job `{job_name}`"));
            Ok(())
        }
        JobCommand::List { job_name } => {
            let project = Project::load(&root)?;
            let jobs: Vec<_> = project
                .jobs()
                .iter()
                .filter(|j| job_name.as_ref().is_none_or(|n| &j.name == n))
                .collect();
            if let Some(n) = &job_name
                && jobs.is_empty()
            {
                return Err(unknown_job(n));
            }
            match ctx.text_or_json()? {
                OutputFormat::Json => ctx.printer.json(&json!({
                    "jobs": jobs.iter().map(|j| json!({"job_name": j.name, "tasks": j.tasks})).collect::<Vec<_>>()
                })),
                _ => {
                    for j in jobs {
                        ctx.printer
                            .line(format!("{}: {}", j.name, j.tasks));
                    }
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_are_a_block_list_or_a_yaml_list() {
        assert_eq!(
            parse_tasks("tap-x target-y").unwrap(),
            json!(["tap-x target-y"])
        );
        assert_eq!(
            parse_tasks(r#"["tap-x target-y", ["tap-z", "target-y"]]"#).unwrap(),
            json!(["tap-x target-y", ["tap-z", "target-y"]])
        );
        assert!(parse_tasks("  ").is_err());
        assert!(parse_tasks("[1]").is_err());
    }
}

//! Running a plugin on its own: `dsm invoke PLUGIN[:COMMAND]` and the `plugin[:command]` steps of
//! `dsm run`.
//!
//! A command comes from the plugin's `commands:` in meltano.yml, either a string of arguments or
//! `{args, executable}`. As in Meltano, its arguments replace the plugin's default ones (so no
//! `--config`), `$VAR`/`${VAR}` in them expand against the plugin's environment, and the result is
//! split like a shell would split it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::blocks::CommandStep;
use super::spec;
use crate::error::{Error, Result};
use crate::plugin::{PluginRole, RunDir, runtime_base};
use crate::project::{Environment, Plugin, PluginType, Project};
use crate::settings::expand;

/// Where the child's standard output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandOutput {
    /// dsm's own stdout (`dsm invoke`: the plugin's output is the command's output).
    Inherit,
    /// dsm's stderr (`dsm run`: stdout stays free for dsm's report, e.g. `--format json`).
    Stderr,
}

/// What a `plugin[:command]` step of `dsm run` did.
#[derive(Debug)]
pub struct CommandReport {
    /// The step.
    pub step: CommandStep,
    /// The child's exit code (128 + signal when it was killed).
    pub exit_code: i32,
    /// How long it ran.
    pub duration: Duration,
    /// The failure, when the exit code is not 0.
    pub error: Option<Error>,
    /// A dry run: the step was not started.
    pub dry_run: bool,
}

/// The executable and arguments of `plugin:command`, expanded against `env`.
fn command_line(
    plugin: &Plugin,
    command: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(Option<String>, Vec<String>)> {
    let where_ = format!("command `{command}` of `{}` in meltano.yml", plugin.name);
    let def = plugin.commands.get(command).ok_or_else(|| {
        Error::config(format!(
            "{} `{}` has no command `{command}`",
            plugin.plugin_type.singular(),
            plugin.name
        ))
        .hint(format!(
            "declare it under `commands:` of `{}` in meltano.yml",
            plugin.name
        ))
    })?;
    let (args, executable) = match def {
        Value::String(s) => (s.clone(), None),
        Value::Object(o) => {
            let args = match o.get("args") {
                Some(Value::String(s)) => s.clone(),
                None | Some(Value::Null) => String::new(),
                Some(other) => {
                    return Err(Error::config(format!(
                        "`args` of {where_} must be a string, found `{other}`"
                    ))
                    .hint(
                        "write the arguments as one string, e.g. `args: run --select my_model`",
                    ));
                }
            };
            let exe = match o.get("executable") {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                _ => None,
            };
            (args, exe)
        }
        other => {
            return Err(Error::config(format!(
                "{where_} must be a string or a mapping with `args`, found `{other}`"
            ))
            .hint("e.g. `commands: {run: \"run --select my_model\"}`"));
        }
    };
    let mut found = expand::Expansion::default();
    let expanded = expand::expand_str(&args, lookup, &mut found);
    for name in &found.missing {
        tracing::warn!(plugin = %plugin.name, command, variable = %name, "a variable in the command's arguments is not set; it expands to nothing");
    }
    let words = shlex::split(&expanded).ok_or_else(|| {
        Error::config(format!("the arguments of {where_} have an unclosed quote"))
            .hint("close the quote, or escape it with a backslash")
    })?;
    Ok((executable, words))
}

/// Runs `plugin` (or one of its commands) with `extra` arguments appended, the way `meltano
/// invoke` does: the plugin's environment, a private config file for a plain extractor, mapper
/// or loader, and its working directory. Returns the exit code (128 + signal when killed).
pub fn run(
    project: &Project,
    env: Option<&Environment>,
    step: &CommandStep,
    extra: &[String],
    output: CommandOutput,
) -> Result<i32> {
    let specs = spec::SpecBuilder::new(project, env, None)?;
    let resolved = specs.resolve(
        project.find_plugin(&step.plugin, None)?,
        &Default::default(),
    )?;
    let plugin = &resolved.plugin;
    let role = match plugin.plugin_type {
        PluginType::Loaders => PluginRole::Loader,
        PluginType::Mappers => PluginRole::Mapper,
        _ => PluginRole::Extractor,
    };
    let spec = specs.spec(&resolved, role, None).spec;
    let base = runtime_base(&project.root().join(".dsm/run"));
    let run_dir = RunDir::create(&base)?;

    let mut executable = spec.executable.clone();
    let mut args: Vec<String> = Vec::new();
    match &step.command {
        Some(command) => {
            let process_env = &specs.inputs().process_env;
            let lookup = |n: &str| {
                spec.env
                    .get(n)
                    .or_else(|| {
                        process_env
                            .get(n)
                            .filter(|_| !spec.env_remove.iter().any(|r| r == n))
                    })
                    .cloned()
            };
            let (exe, words) = command_line(plugin, command, &lookup)?;
            if let Some(exe) = exe {
                // A command's own executable is found like the plugin's (venv, then PATH).
                let mut alias = plugin.clone();
                alias.executable = exe;
                executable = crate::plugin::executable::resolve_executable(project, &alias);
            }
            args.extend(words);
        }
        None => {
            let takes_config = matches!(
                plugin.plugin_type,
                PluginType::Extractors | PluginType::Loaders | PluginType::Mappers
            );
            if takes_config && let Some(config) = &spec.config {
                let path = run_dir.write_config(&spec.name, config)?;
                args.push("--config".into());
                args.push(path.display().to_string());
            }
        }
    }
    args.extend(extra.iter().cloned());

    let mut cmd = std::process::Command::new(&executable);
    cmd.args(&args);
    crate::plugin::apply_env(&spec, &mut cmd);
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    if output == CommandOutput::Stderr {
        use std::os::fd::AsFd;
        let err = std::io::stderr().as_fd().try_clone_to_owned()?;
        cmd.stdout(Stdio::from(err));
    }
    let status = cmd
        .status()
        .map_err(|e| cannot_start(plugin, step, &executable, &e))?;
    drop(run_dir);
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

fn cannot_start(
    plugin: &Plugin,
    step: &CommandStep,
    executable: &std::path::Path,
    e: &std::io::Error,
) -> Error {
    Error::failed(format!(
        "could not start {} `{step}` (`{}`): {e}",
        plugin.plugin_type.singular(),
        executable.display()
    ))
    .hint(format!(
        "check that `{}` is installed (`dsm install {}`) and executable",
        executable.display(),
        plugin.name
    ))
}

/// Runs a `plugin[:command]` step of `dsm run`: its stdout goes to dsm's stderr, and a non-zero
/// exit is a failed step (exit code 1 for the run), as in `meltano run`.
pub fn run_step(
    project: &Project,
    env: Option<&Environment>,
    step: &CommandStep,
) -> Result<CommandReport> {
    let started = Instant::now();
    let exit_code = run(project, env, step, &[], CommandOutput::Stderr)?;
    let error = (exit_code != 0).then(|| {
        Error::failed(format!(
            "step `{step}` exited with status {exit_code} after {:.1}s",
            started.elapsed().as_secs_f64()
        ))
        .hint("its output is above; the steps after it did not run")
    });
    Ok(CommandReport {
        step: step.clone(),
        exit_code,
        duration: started.elapsed(),
        error,
        dry_run: false,
    })
}

/// What one step of `dsm run` did.
#[derive(Debug)]
pub enum StepReport {
    /// A flow's run.
    Flow(Box<super::RunReport>),
    /// A `plugin[:command]` step.
    Command(CommandReport),
}

impl StepReport {
    /// Whether the step succeeded (the next step runs only then).
    pub fn succeeded(&self) -> bool {
        match self {
            StepReport::Flow(r) => r.status == crate::pipeline::RunStatus::Success,
            StepReport::Command(c) => c.error.is_none(),
        }
    }
}

/// Expands job names, splits the blocks into steps and runs them one after another, stopping at
/// the first failure (whose report is the last one returned).
pub fn run_steps(
    project: &Project,
    env: Option<&Environment>,
    blocks: &[String],
    opts: &super::RunOptions,
) -> Result<Vec<StepReport>> {
    let expanded = super::blocks::expand_jobs(project, blocks)?;
    let steps = super::blocks::parse(project, &expanded)?;
    let mut reports = Vec::new();
    for step in steps {
        let report = match &step {
            super::blocks::Step::Flow(flow) => {
                StepReport::Flow(Box::new(super::run_flow(project, env, flow, opts)?))
            }
            super::blocks::Step::Command(c) if opts.dry_run => StepReport::Command(CommandReport {
                step: c.clone(),
                exit_code: 0,
                duration: Duration::ZERO,
                error: None,
                dry_run: true,
            }),
            super::blocks::Step::Command(c) => StepReport::Command(run_step(project, env, c)?),
        };
        let ok = report.succeeded();
        reports.push(report);
        if !ok {
            break;
        }
    }
    Ok(reports)
}

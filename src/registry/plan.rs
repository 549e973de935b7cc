//! Planning connection tests: which plugins a `dsm test` (or the HTTP API's
//! `POST /api/sources/{id}/test`) tests, the probes each gets (extract, load, the plugin's own
//! `test*` commands) with their resolved specs and catalog plans, and writing the results into
//! each plugin's status history. [`super::probe`] runs the probes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use crate::error::{Error, Result, did_you_mean};
use crate::plugin::{PluginRole, PluginSpec, RunDir, runtime_base};
use crate::project::{Environment, Plugin, PluginType, Project};
use crate::registry::probe::{
    CatalogPlan, Cleanup, Probe, ProbeKind, ProbeResult, ProbeStatus, TEST_STREAM,
};
use crate::registry::status::record_test_result;
use crate::runner;

/// What to test: named plugins, or all; and whether loaders not built into dsm get a load test.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// The plugins named (empty with `all`).
    pub names: Vec<String>,
    /// Every extractor, dsm's built-in loaders, and every plugin's `test*` commands.
    pub all: bool,
    /// Also load-test loaders not built into dsm (they keep the test stream).
    pub loaders: bool,
}

/// dsm's built-in targets (their tests clean up after themselves).
const BUILTIN_TARGETS: [&str; 3] = ["target-jsonl", "target-csv", "target-sqlite"];

/// The built-in file targets and the extension of the file each writes per stream.
const BUILTIN_FILE_TARGETS: [(&str, &str); 2] = [("target-jsonl", "jsonl"), ("target-csv", "csv")];

/// The plugins to test, each with whether it was named (named plugins always get a result).
pub fn choose<'a>(project: &'a Project, selection: &Selection) -> Result<Vec<(&'a Plugin, bool)>> {
    if selection.all {
        return Ok(project.plugins().iter().map(|p| (p, false)).collect());
    }
    let mut chosen: Vec<(&Plugin, bool)> = Vec::new();
    for name in &selection.names {
        let Some(plugin) = project.plugins().iter().find(|p| &p.name == name) else {
            let mut err = Error::config(format!("no plugin `{name}` in meltano.yml"));
            if let Some(close) =
                did_you_mean(name, project.plugins().iter().map(|p| p.name.as_str()))
            {
                err = err.hint(format!("did you mean `{close}`?"));
            }
            return Err(err.hint("`dsm sources list` shows every extractor and loader"));
        };
        if !chosen.iter().any(|(p, _)| std::ptr::eq(*p, plugin)) {
            chosen.push((plugin, true));
        }
    }
    Ok(chosen)
}

fn role_of(plugin: &Plugin) -> PluginRole {
    match plugin.plugin_type {
        PluginType::Loaders => PluginRole::Loader,
        PluginType::Mappers => PluginRole::Mapper,
        _ => PluginRole::Extractor,
    }
}

pub fn probes_for(
    project: &Project,
    env: Option<&Environment>,
    plugin: &Plugin,
    named: bool,
    selection: &Selection,
    run_dir: &RunDir,
) -> Result<Vec<Probe>> {
    let (plugin, spec) = runner::plan::plugin(project, env, plugin, role_of(plugin), None)?;
    let plugin = &plugin;
    let plugin_type = plugin.plugin_type.singular();
    let probe = |kind: ProbeKind, spec: PluginSpec| {
        let cannot_run = not_installed(&spec);
        Probe {
            plugin: plugin.name.clone(),
            plugin_type,
            kind,
            spec,
            cannot_run,
            skip: None,
        }
    };
    let mut probes = Vec::new();
    match plugin.plugin_type {
        PluginType::Extractors => {
            let (catalog, problem) = catalog_plan(project, plugin, &spec, run_dir);
            let mut p = probe(ProbeKind::Extract { catalog }, spec.clone());
            if p.cannot_run.is_none() {
                p.cannot_run = problem;
            }
            probes.push(p);
        }
        PluginType::Loaders => {
            let builtin = builtin_cleanup(project, plugin, &spec);
            if builtin.is_some() || selection.loaders {
                probes.push(probe(ProbeKind::Load { cleanup: builtin }, spec.clone()));
            } else if named && test_commands(plugin).is_empty() {
                let mut p = probe(ProbeKind::Load { cleanup: None }, spec.clone());
                p.cannot_run = None;
                p.skip = Some(format!(
                    "a load test leaves stream `{TEST_STREAM}` in the destination of a loader not built into dsm; pass `--loaders` to run it anyway"
                ));
                probes.push(p);
            }
        }
        _ => {}
    }
    for (name, command) in test_commands(plugin) {
        let cmd_spec = command_spec(&spec, &command);
        probes.push(probe(ProbeKind::Command { name }, cmd_spec));
    }
    if probes.is_empty() && named {
        probes.push(Probe {
            plugin: plugin.name.clone(),
            plugin_type,
            kind: ProbeKind::Command {
                name: "test".into(),
            },
            spec,
            cannot_run: None,
            skip: Some(format!(
                "{plugin_type} `{}` has no `test` command",
                plugin.name
            )),
        });
    }
    Ok(probes)
}

/// How the tap under test gets its catalog, and a problem that keeps the test from running.
fn catalog_plan(
    project: &Project,
    plugin: &Plugin,
    spec: &PluginSpec,
    run_dir: &RunDir,
) -> (CatalogPlan, Option<String>) {
    let flag = if plugin.has_capability("catalog") {
        "--catalog"
    } else if plugin.has_capability("properties") {
        "--properties"
    } else {
        return (CatalogPlan::None, None);
    };
    if plugin.catalog.is_some() {
        // The project's own catalog: selection applied, no discovery needed.
        let inputs = runner::catalog::CatalogInputs {
            project,
            plugin,
            spec,
            refresh: false,
            run_dir,
            deadline: None,
        };
        return match runner::catalog::prepare(&inputs) {
            Ok(path) => (
                CatalogPlan::File {
                    flag: flag.into(),
                    path,
                },
                None,
            ),
            Err(e) => (CatalogPlan::None, Some(e.message().to_owned())),
        };
    }
    let object =
        |o: &Option<crate::project::Object>| o.clone().map(Value::Object).unwrap_or(Value::Null);
    (
        CatalogPlan::Discover {
            flag: flag.into(),
            select: plugin
                .select
                .clone()
                .unwrap_or_else(|| vec!["*.*".to_string()]),
            metadata: object(&plugin.metadata),
            schema: object(&plugin.schema),
            select_filter: plugin.select_filter.clone().unwrap_or_default(),
        },
        None,
    )
}

/// For dsm's built-in targets: where the test stream lands, so it can be removed again.
fn builtin_cleanup(project: &Project, plugin: &Plugin, spec: &PluginSpec) -> Option<Cleanup> {
    let exe = spec.executable.file_name()?.to_str()?;
    let builtin = plugin.variant.as_deref() == Some("dsm")
        || (plugin.pip_url.is_none() && BUILTIN_TARGETS.contains(&exe));
    if !builtin {
        return None;
    }
    let config = spec.config.as_ref().and_then(Value::as_object);
    let setting = |key: &str| config.and_then(|c| c.get(key)).and_then(Value::as_str);
    let root = spec.cwd.as_deref().unwrap_or(project.root());
    let resolve = |p: &str| {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            root.join(p)
        }
    };
    if exe == "target-sqlite" {
        let db = setting("database").or_else(|| setting("path"))?;
        return Some(Cleanup::SqliteTable(resolve(db)));
    }
    let (_, ext) = BUILTIN_FILE_TARGETS.iter().find(|(n, _)| *n == exe)?;
    let dir = resolve(setting("destination_path").unwrap_or("."));
    Some(Cleanup::File(dir.join(format!("{TEST_STREAM}.{ext}"))))
}

/// A plugin command as Meltano writes it: a string of arguments, or `{args, executable}`.
struct Command {
    args: String,
    executable: Option<String>,
}

/// The plugin's commands named `test` or starting with `test` (Meltano's `meltano test`), by name.
fn test_commands(plugin: &Plugin) -> Vec<(String, Command)> {
    let mut out: Vec<(String, Command)> = plugin
        .commands
        .iter()
        .filter(|(name, _)| name.starts_with("test"))
        .map(|(name, value)| {
            let command = match value {
                Value::String(s) => Command {
                    args: s.clone(),
                    executable: None,
                },
                Value::Object(o) => Command {
                    args: o
                        .get("args")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    executable: o
                        .get("executable")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                },
                other => Command {
                    args: other.to_string(),
                    executable: None,
                },
            };
            (name.clone(), command)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The spec of a command: the plugin's environment, the command's executable and its
/// arguments with `$VAR` expanded from that environment, and no `--config` (like Meltano,
/// the command's arguments say what it needs).
fn command_spec(base: &PluginSpec, command: &Command) -> PluginSpec {
    let mut spec = base.clone();
    spec.config = None;
    if let Some(exe) = &command.executable {
        spec.executable = if exe.contains('/') {
            spec.cwd.as_deref().unwrap_or(Path::new(".")).join(exe)
        } else {
            PathBuf::from(exe)
        };
    }
    let lookup = |name: &str| {
        base.env
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
    };
    let mut expansion = crate::settings::expand::Expansion::default();
    let words = shlex::split(&command.args)
        .unwrap_or_else(|| command.args.split_whitespace().map(str::to_owned).collect());
    spec.args = words
        .iter()
        .map(|w| crate::settings::expand::expand_str(w, &lookup, &mut expansion))
        .collect();
    spec
}

/// `Some(reason)` when the executable cannot be found: not installed.
fn not_installed(spec: &PluginSpec) -> Option<String> {
    let exe = &spec.executable;
    let found = if exe.components().count() > 1 {
        exe.is_file()
    } else {
        let path = spec
            .env
            .get("PATH")
            .cloned()
            .or_else(|| std::env::var("PATH").ok())
            .unwrap_or_default();
        std::env::split_paths(&path).any(|d| d.join(exe).is_file())
    };
    (!found).then(|| {
        format!(
            "`{}` is not installed (no executable `{}`); run `dsm install` first",
            spec.name,
            exe.display()
        )
    })
}

/// Writes each tested plugin's overall result into its status history; returns warnings for
/// the results that could not be written.
/// A plugin whose tests failed while it was not in error goes into error: the project's
/// `source_error` receivers are told (in the background).
pub fn record_results(
    project: &Project,
    store: &Arc<dyn crate::store::Store>,
    plugins: &[&str],
    results: &[ProbeResult],
) -> Vec<String> {
    let now = chrono::Utc::now();
    let mut warnings = Vec::new();
    for plugin in plugins {
        let mine: Vec<&ProbeResult> = results
            .iter()
            .filter(|r| r.plugin == *plugin && r.status != ProbeStatus::Skipped)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let failure = mine.iter().find(|r| r.status.is_failure());
        let reason = failure.map(|r| {
            format!(
                "test `{}` {}: {}",
                r.test,
                r.status.as_str(),
                r.reason.as_deref().unwrap_or("")
            )
        });
        let was_in_error = || {
            crate::registry::status::source_statuses(store.as_ref(), &[plugin])
                .ok()
                .and_then(|s| s.into_iter().next())
                .is_some_and(|s| s.status == crate::registry::SourceStatus::Error)
        };
        let newly_failing = failure.is_some() && !was_in_error();
        if let Err(e) = record_test_result(
            store.as_ref(),
            plugin,
            failure.is_none(),
            reason.as_deref(),
            now,
        ) {
            warnings.push(format!(
                "could not record the test result of `{plugin}`: {}",
                e.message()
            ));
        } else if let (true, Some(reason)) = (newly_failing, &reason) {
            crate::notify::emit(
                project,
                store.clone(),
                crate::notify::Event::source_error(plugin, reason, None),
            );
        }
    }
    warnings
}

/// The tests `dsm test NAME` runs for one plugin, and the run folder they share (the HTTP
/// API's `POST /api/sources/{id}/test` runs them with [`run_probes`]).
pub fn probes_for_plugin(
    project: &Project,
    env: Option<&Environment>,
    name: &str,
) -> Result<(Vec<Probe>, Arc<RunDir>)> {
    let selection = Selection {
        names: vec![name.to_owned()],
        all: false,
        loaders: false,
    };
    let chosen = choose(project, &selection)?;
    let base = runtime_base(&project.root().join(".dsm/run"));
    let run_dir = Arc::new(RunDir::create(&base)?);
    let mut probes = Vec::new();
    for (plugin, named) in &chosen {
        probes.extend(probes_for(
            project, env, plugin, *named, &selection, &run_dir,
        )?);
    }
    Ok((probes, run_dir))
}

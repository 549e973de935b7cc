//! Planning a flow: everything a run needs decided before anything runs. Each plugin's spec
//! (executable, config, environment) from settings resolved once, the stages between the
//! extractor and the loader (native transforms compiled), how the tap gets its catalog, the
//! state id (which is also the lock to take) and where the data goes.
//!
//! Planning writes nothing and starts no process; it reads the project, the captured process
//! environment and `.env`, and the system store's settings and secrets. `dsm el --dump
//! extractor-config|loader-config` render a plan; [`super::execute()`] runs one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::spec::SpecBuilder;
use super::stages::{self, FlowStages};
use super::{Dump, Flow, RunOptions, RunReport, state_id_for};
use crate::error::{Error, Result};
use crate::plugin::{PluginRole, PluginSpec};
use crate::project::{Environment, Plugin, PluginType, Project};
use crate::store::StateId;

/// How the tap gets its catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogPlan {
    /// It takes none (neither the `catalog` nor the `properties` capability).
    None,
    /// The catalog is prepared (the plugin's own file, a cached discovery, or discovery) and
    /// passed with `flag` (`--catalog` or `--properties`).
    Prepare {
        /// The tap's flag.
        flag: &'static str,
        /// Discover again even when a cached catalog matches.
        refresh: bool,
    },
}

/// A flow, planned: what [`super::execute()`] runs.
pub struct FlowPlan<'a> {
    /// The flow.
    pub flow: Flow,
    /// The state id the run reads and writes; its lock is the one the run takes.
    pub state_id: StateId,
    /// The extractor, with its effective extras and `dsm el`'s overrides.
    pub extractor: Plugin,
    /// The loader, with its effective extras.
    pub loader: Plugin,
    /// The extractor's spec (catalog and state arguments are added when the run prepares them).
    pub extractor_spec: PluginSpec,
    /// The stages between extractor and loader.
    pub stages: FlowStages,
    /// The loader's spec.
    pub loader_spec: PluginSpec,
    /// How the tap gets its catalog.
    pub catalog: CatalogPlan,
    /// The extractor's config file as resolved (before dsm takes the stream maps it runs
    /// itself out of it), and its masked copy.
    pub extractor_config: (Value, Value),
    /// The loader's config file and its masked copy.
    pub loader_config: (Value, Value),
    /// Where the data goes (see [`destination`]).
    pub destination: String,
    /// The run's options.
    pub options: RunOptions,
    /// When `--timeout` ends the run (discovery included).
    pub deadline: Option<Instant>,
    /// The resolver the plan was made with (the run resolves the other sources of merged
    /// streams with it).
    pub specs: SpecBuilder<'a>,
}

/// Plans `flow` under `opts`: setup errors (an unknown plugin, a bad setting, a stream map that
/// does not compile) are `Err`; nothing is written and nothing started.
pub fn plan<'a>(
    project: &'a Project,
    env: Option<&'a Environment>,
    flow: &Flow,
    opts: &RunOptions,
) -> Result<FlowPlan<'a>> {
    // `--timeout` bounds the whole run: discovery, then the pipeline in what is left.
    let deadline = opts.timeout.map(|t| Instant::now() + t);
    let extractor = project.find_plugin(&flow.extractor, Some(PluginType::Extractors))?;
    let loader = project.find_plugin(&flow.loader, Some(PluginType::Loaders))?;
    let specs = SpecBuilder::new(project, env, opts.database_uri.as_deref())?;
    // Meltano's extras (`select`, `metadata`, `catalog`, `dialect`, ...) resolve with the
    // settings, from the environment, `.env`, the environment's block, meltano.yml and the parent.
    let mut extractor = specs.resolve(extractor, &BTreeMap::new())?;
    let state_id = state_id_for(env, flow, opts);
    // `dsm el` overrides, applied as Meltano applies its `_select_filter`, `_catalog` and
    // `_state` extras: to the extractor itself, before its spec is built.
    if let Some(overridden) = with_overrides(&extractor.plugin, opts)? {
        extractor.plugin = overridden;
    }
    let extractor_built = specs.spec(&extractor, PluginRole::Extractor, None);
    let extractor_config = (
        extractor_built
            .spec
            .config
            .clone()
            .unwrap_or_else(|| Value::Object(serde_json::Map::new())),
        extractor_built.masked_config.clone(),
    );
    let mut extractor_spec = extractor_built.spec;
    // Native transforms are compiled here, before any process (discovery included) starts.
    let mut flow_stages = stages::build(
        &specs,
        &extractor.plugin,
        &mut extractor_spec,
        &flow.mappers,
        &extractor_built.shared_env,
    )?;
    let loader = specs.resolve(loader, &extractor_built.shared_env)?;
    let loader_built = specs.spec(&loader, PluginRole::Loader, None);
    let destination = destination(&loader.plugin.name, &loader_built.masked_config);
    let loader_config = (
        loader_built
            .spec
            .config
            .clone()
            .unwrap_or_else(|| Value::Object(serde_json::Map::new())),
        loader_built.masked_config.clone(),
    );
    let mut loader_spec = loader_built.spec;
    // Meltano hands the loader the extractor's variables (never the sensitive ones here).
    for (k, v) in &extractor_built.shared_env {
        loader_spec
            .env
            .entry(k.clone())
            .or_insert_with(|| v.clone());
    }
    seal(
        &mut extractor_spec,
        &mut flow_stages,
        &mut loader_spec,
        &specs.inputs().dotenv,
    );
    let extractor = extractor.plugin;
    let catalog = if extractor.has_capability("catalog") {
        CatalogPlan::Prepare {
            flag: "--catalog",
            refresh: opts.refresh_catalog || opts.full_refresh,
        }
    } else if extractor.has_capability("properties") {
        CatalogPlan::Prepare {
            flag: "--properties",
            refresh: opts.refresh_catalog || opts.full_refresh,
        }
    } else {
        CatalogPlan::None
    };
    Ok(FlowPlan {
        flow: flow.clone(),
        state_id,
        extractor,
        loader: loader.plugin,
        extractor_spec,
        stages: flow_stages,
        loader_spec,
        catalog,
        extractor_config,
        loader_config,
        destination,
        options: opts.clone(),
        deadline,
        specs,
    })
}

/// Keeps the flow's secrets where they belong: no plugin inherits a variable that carries a
/// secret of any plugin in the flow (nor gets one from `.env`), and each plugin's stderr is
/// redacted of every secret of the flow (a tap may echo its config, a target the extractor's
/// variables).
fn seal(
    extractor: &mut PluginSpec,
    stages: &mut FlowStages,
    loader: &mut PluginSpec,
    dotenv: &BTreeMap<String, String>,
) {
    let mut secret_vars: Vec<String> = std::iter::once(&*extractor)
        .chain(stages.process_specs())
        .chain(std::iter::once(&*loader))
        .flat_map(|s| s.env_remove.iter().cloned())
        .collect();
    secret_vars.sort();
    secret_vars.dedup();
    for s in std::iter::once(&mut *extractor)
        .chain(stages.process_specs_mut())
        .chain(std::iter::once(&mut *loader))
    {
        s.env
            .retain(|k, _| !(dotenv.contains_key(k) && secret_vars.binary_search(k).is_ok()));
        s.env_remove = secret_vars
            .iter()
            .filter(|k| !s.env.contains_key(*k))
            .cloned()
            .collect();
    }
    let mut forms: Vec<String> = std::iter::once(&*extractor)
        .chain(stages.process_specs())
        .chain(std::iter::once(&*loader))
        .flat_map(|s| s.redact.iter().cloned())
        .collect();
    forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    forms.dedup();
    let forms = Arc::new(forms);
    for s in std::iter::once(&mut *extractor)
        .chain(stages.process_specs_mut())
        .chain(std::iter::once(&mut *loader))
    {
        s.redact = forms.clone();
    }
}

impl FlowPlan<'_> {
    /// `dsm el --dump extractor-config|loader-config`: the config file the plugin would get,
    /// masked unless `unsafe_values`. Other dumps need the run's side ([`super::execute()`]).
    pub fn dump_config(&self, which: Dump, unsafe_values: bool) -> Option<RunReport> {
        let (config, masked) = match which {
            Dump::ExtractorConfig => &self.extractor_config,
            Dump::LoaderConfig => &self.loader_config,
            Dump::Catalog | Dump::State => return None,
        };
        let value = if unsafe_values { config } else { masked };
        Some(dumped(&self.flow, self.state_id.clone(), value))
    }

    /// The command lines a dry run shows, in flow order (no config values).
    pub fn command_lines(&self) -> Vec<String> {
        let command_line = |s: &PluginSpec| {
            let mut line = s.executable.display().to_string();
            if s.config.is_some() {
                line.push_str(" --config <config file>");
            }
            for a in &s.args {
                line.push(' ');
                line.push_str(a);
            }
            line
        };
        let mut lines = vec![command_line(&self.extractor_spec)];
        lines.extend(self.stages.plan(command_line));
        lines.push(command_line(&self.loader_spec));
        lines
    }
}

/// One plugin, planned on its own (`dsm test`'s probes): the plugin with its effective extras
/// and its spec in `role`.
pub fn plugin(
    project: &Project,
    env: Option<&Environment>,
    plugin: &Plugin,
    role: PluginRole,
    database_uri: Option<&str>,
) -> Result<(Plugin, PluginSpec)> {
    let specs = SpecBuilder::new(project, env, database_uri)?;
    let resolved = specs.resolve(plugin, &BTreeMap::new())?;
    let spec = specs.spec(&resolved, role, None).spec;
    Ok((resolved.plugin, spec))
}

/// The report of `--dump`: the value as pretty JSON; nothing ran.
pub(super) fn dumped(flow: &Flow, state_id: StateId, value: &Value) -> RunReport {
    let mut report = RunReport::new(flow, state_id);
    report.dump =
        Some(serde_json::to_string_pretty(value).expect("serialising a JSON value cannot fail"));
    report
}

/// The settings that name where a loader writes, most telling first.
const DESTINATION_SETTINGS: [&str; 12] = [
    "destination_path",
    "output_path",
    "database",
    "path",
    "file_path",
    "filepath",
    "folder",
    "dbname",
    "database_name",
    "bucket",
    "host",
    "account",
];

/// `` `target-sqlite` (database `output/warehouse.db`) ``: the loader, with the first of
/// [`DESTINATION_SETTINGS`] its config sets (from the masked config: never a secret).
fn destination(loader: &str, masked_config: &Value) -> String {
    let found = DESTINATION_SETTINGS.iter().find_map(|k| {
        let v = masked_config.get(*k)?;
        let text = match v {
            Value::String(s) if !s.is_empty() && s != crate::settings::MASK => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        Some(format!("{k} `{text}`"))
    });
    match found {
        Some(f) => format!("`{loader}` ({f})"),
        None => format!("`{loader}`"),
    }
}

/// The extractor with `dsm el`'s `--select/--exclude`, `--catalog` and `--state` laid over it;
/// `None` when there are none.
fn with_overrides(extractor: &Plugin, opts: &RunOptions) -> Result<Option<Plugin>> {
    if opts.select_filter.is_none() && opts.catalog.is_none() && opts.state_file.is_none() {
        return Ok(None);
    }
    let mut plugin = extractor.clone();
    if let Some(filter) = &opts.select_filter {
        plugin.select_filter = Some(filter.clone());
    }
    if let Some(path) = &opts.catalog {
        if !plugin.has_capability("catalog") && !plugin.has_capability("properties") {
            return Err(Error::config(format!(
                "extractor `{}` takes no catalog: it declares neither the `catalog` nor the `properties` capability",
                plugin.name
            ))
            .hint("declare the tap's capabilities in meltano.yml, e.g. `capabilities: [catalog, discover, state]`, or leave out `--catalog`"));
        }
        plugin.catalog = Some(path.display().to_string());
    }
    if let Some(path) = &opts.state_file {
        if !plugin.has_capability("state") {
            return Err(Error::config(format!(
                "extractor `{}` takes no state: it does not declare the `state` capability",
                plugin.name
            ))
            .hint(
                "declare it in meltano.yml (`capabilities: [..., state]`), or leave out `--state`",
            ));
        }
        plugin.state = Some(path.display().to_string());
    }
    Ok(Some(plugin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Issue 19: a plan resolves every plugin of the flow (settings, the stages' native stream
    // maps, the catalog plan) and writes nothing and starts nothing: no system database, no run
    // directory, no plugin process.
    #[test]
    fn planning_writes_nothing_and_starts_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::write(
            root.join("meltano.yml"),
            "version: 1
plugins:
  extractors:
  - name: tap-a
    executable: ./tap.sh
    capabilities: [catalog, discover, state]
    settings:
    - {name: token, kind: password}
    - {name: region}
    config:
      token: s3cr3t
      region: eu
      stream_maps: {users: {email: __NULL__}}
  loaders:
  - name: target-b
    executable: ./target.sh
    settings:
    - {name: database}
    config:
      database: out.db
",
        )
        .unwrap();
        // Either plugin, if started, leaves a file behind.
        for name in ["tap.sh", "target.sh"] {
            let path = root.join(name);
            std::fs::write(&path, "#!/bin/sh\ntouch started\n").unwrap();
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let project = Project::load(root).unwrap();
        let flow = Flow {
            extractor: "tap-a".into(),
            mappers: Vec::new(),
            loader: "target-b".into(),
        };
        let db = root.join("elsewhere.db");
        let opts = RunOptions {
            database_uri: Some(db.display().to_string()),
            ..RunOptions::default()
        };
        let plan = plan(&project, None, &flow, &opts).unwrap();
        assert_eq!(plan.state_id.as_str(), "tap-a-to-target-b");
        assert_eq!(
            plan.catalog,
            CatalogPlan::Prepare {
                flag: "--catalog",
                refresh: false
            }
        );
        assert_eq!(plan.destination, "`target-b` (database `out.db`)");
        assert_eq!(
            plan.extractor_config.1["token"],
            json!(crate::settings::MASK)
        );
        // dsm runs the stream maps itself: they left the tap's config file.
        let config = plan.extractor_spec.config.as_ref().unwrap();
        assert!(config.get("stream_maps").is_none(), "{config}");
        assert_eq!(config["token"], json!("s3cr3t"));
        assert!(plan.extractor_spec.redact.iter().any(|f| f == "s3cr3t"));
        assert_eq!(
            plan.command_lines().len(),
            3,
            "tap, stream maps, target: {:?}",
            plan.command_lines()
        );
        let dump = plan.dump_config(Dump::ExtractorConfig, false).unwrap();
        assert!(!dump.dump.unwrap().contains("s3cr3t"));
        drop(plan);
        assert!(!db.exists(), "no system database");
        assert!(
            !root.join(crate::project::PRIVATE_DIR).exists(),
            "no `.dsm`"
        );
        assert!(!root.join("started").exists(), "no plugin started");
    }

    #[test]
    fn destination_names_the_loader_and_where_it_writes_never_a_secret() {
        assert_eq!(
            destination("target-sqlite", &json!({"database": "output/warehouse.db"})),
            "`target-sqlite` (database `output/warehouse.db`)"
        );
        assert_eq!(
            destination(
                "target-pg",
                &json!({"host": crate::settings::MASK, "dbname": "dw"})
            ),
            "`target-pg` (dbname `dw`)"
        );
        assert_eq!(destination("target-x", &json!({})), "`target-x`");
    }
}

//! What setting resolution reads besides `meltano.yml`, captured once per command, and the one
//! resolver that turns it into everything a plugin gets.
//!
//! [`Inputs::capture`] snapshots the process environment and reads the project's `.env` once;
//! the active environment and the system store (plain values and secrets) come with it. From
//! those, [`resolve_plugin`] gives one plugin's effective extras, its settings with their
//! origins, its config file (and the masked copy for display) and the variables its `env:`
//! blocks set ([`EnvLayers`], expanded once, with `ff.strict_env_var_mode` honoured).

use std::collections::BTreeMap;

use serde_json::Value as J;

use super::{NoStore, ResolvedSettings, SystemStore, expand, extras, missing_vars};
use crate::error::Result;
use crate::project::{Environment, Object, Plugin, Project};

/// What resolution reads besides the project: the captured process environment and `.env`,
/// the active environment and the system store.
#[derive(Clone)]
pub struct Inputs<'a> {
    /// The active environment, if any.
    pub environment: Option<&'a Environment>,
    /// The process environment.
    pub process_env: BTreeMap<String, String>,
    /// The variables of the project's `.env` file.
    pub dotenv: BTreeMap<String, String>,
    /// The system store.
    pub store: &'a dyn SystemStore,
}

impl std::fmt::Debug for Inputs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values can be secrets: only the names.
        f.debug_struct("Inputs")
            .field("environment", &self.environment.map(|e| &e.name))
            .field("process_env", &self.process_env.keys().collect::<Vec<_>>())
            .field("dotenv", &self.dotenv.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<'a> Inputs<'a> {
    /// Captures the process environment and the project's `.env` (once), with no store.
    pub fn capture(project: &Project, environment: Option<&'a Environment>) -> Result<Inputs<'a>> {
        Ok(Inputs {
            environment,
            process_env: std::env::vars().collect(),
            dotenv: project.dotenv()?.into_iter().collect(),
            store: &NoStore,
        })
    }

    /// The same captured inputs reading values from `store`.
    pub fn with_store<'b>(&self, store: &'b dyn SystemStore) -> Inputs<'b>
    where
        'a: 'b,
    {
        Inputs {
            environment: self.environment,
            process_env: self.process_env.clone(),
            dotenv: self.dotenv.clone(),
            store,
        }
    }

    /// The inputs of a plugin downstream of an extractor: `upstream` (the extractor's variables
    /// Meltano passes on) is added to the process environment; the shell's own values win.
    pub fn downstream_of(&self, upstream: &BTreeMap<String, String>) -> Inputs<'a> {
        let mut out = self.clone();
        for (k, v) in upstream {
            out.process_env
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        out
    }

    /// A variable as Meltano reads it: the process environment, then `.env`.
    pub fn var(&self, name: &str) -> Option<(&str, Place)> {
        self.process_env
            .get(name)
            .map(|v| (v.as_str(), Place::Environment))
            .or_else(|| self.dotenv.get(name).map(|v| (v.as_str(), Place::Dotenv)))
    }
}

/// Where [`Inputs::var`] found a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The process environment.
    Environment,
    /// The project's `.env`.
    Dotenv,
}

/// The `env:` blocks that apply to one plugin, expanded once in Meltano's order: the project's
/// block, then the active environment's, then the plugin's own (expanded against the
/// environment's, though the environment's block wins in the end), then the plugin's block in
/// the environment. `$VAR` looks at the blocks expanded so far, then the process environment,
/// then `.env`; an undefined one is an error under `ff.strict_env_var_mode`, else a warning.
#[derive(Debug, Clone, Default)]
pub struct EnvLayers {
    /// `MELTANO_PROJECT_ROOT`, `MELTANO_ENVIRONMENT` and the project's block.
    project: BTreeMap<String, String>,
    /// Everything the blocks set, the later blocks over the earlier.
    all: BTreeMap<String, String>,
    /// The names the blocks after the project's set.
    later: Vec<String>,
}

impl EnvLayers {
    /// Expands the blocks for `plugin`.
    pub fn expand(
        project: &Project,
        plugin: &Plugin,
        inputs: &Inputs<'_>,
        strict: bool,
        warnings: &mut Vec<String>,
    ) -> Result<EnvLayers> {
        let overlay = |block: &Object,
                       into: &mut BTreeMap<String, String>,
                       warnings: &mut Vec<String>|
         -> Result<()> {
            for (k, v) in block {
                let raw = match v {
                    J::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let mut exp = expand::Expansion::default();
                let lookup = |n: &str| {
                    into.get(n)
                        .or_else(|| inputs.process_env.get(n))
                        .or_else(|| inputs.dotenv.get(n))
                        .cloned()
                };
                let value = expand::expand_str(&raw, &lookup, &mut exp);
                missing_vars(&exp, strict, &format!("`env` variable `{k}`"), warnings)?;
                into.insert(k.clone(), value);
            }
            Ok(())
        };
        // Meltano puts its own project variables into the environment values expand against.
        let mut all = BTreeMap::new();
        all.insert(
            crate::envvars::MELTANO_PROJECT_ROOT.to_string(),
            project.root().display().to_string(),
        );
        if let Some(e) = inputs.environment {
            all.insert(
                crate::envvars::MELTANO_ENVIRONMENT.to_string(),
                e.name.clone(),
            );
        }
        overlay(project.env(), &mut all, warnings)?;
        let project_level = all.clone();
        let mut later: Vec<String> = Vec::new();
        // Meltano expands a plugin's `env:` against the environment's `env:` block (expanded
        // first), though the environment's block still wins over the plugin's in the end.
        let mut active = all.clone();
        if let Some(e) = inputs.environment {
            overlay(&e.env, &mut active, warnings)?;
        }
        let mut plugin_vars = active.clone();
        overlay(&plugin.env, &mut plugin_vars, warnings)?;
        for k in plugin.env.keys() {
            if let Some(v) = plugin_vars.get(k) {
                all.insert(k.clone(), v.clone());
                later.push(k.clone());
            }
        }
        if let Some(e) = inputs.environment {
            for k in e.env.keys() {
                if let Some(v) = active.get(k) {
                    all.insert(k.clone(), v.clone());
                    later.push(k.clone());
                }
            }
            if let Some(ep) = project.environment_plugin(e, plugin)
                && let Some(block) = &ep.env
            {
                overlay(block, &mut all, warnings)?;
                later.extend(block.keys().cloned());
            }
        }
        Ok(EnvLayers {
            project: project_level,
            all,
            later,
        })
    }

    /// The environment settings are read from and expanded against: the process environment
    /// with the blocks laid over it (`.env` is looked at after it).
    pub fn resolution_env(
        &self,
        process_env: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut env = process_env.clone();
        env.extend(self.all.iter().map(|(k, v)| (k.clone(), v.clone())));
        env
    }

    /// The variables the plugin's process gets on top of the inherited environment: the
    /// project's block, then the variables of `.env` the shell does not set (Meltano hands a
    /// plugin the project's `.env` too, over the project's block), then the later blocks.
    pub fn plugin_env(
        &self,
        process_env: &BTreeMap<String, String>,
        dotenv: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut vars = self.project.clone();
        for (k, v) in dotenv {
            if !process_env.contains_key(k) {
                vars.insert(k.clone(), v.clone());
            }
        }
        for k in &self.later {
            if let Some(v) = self.all.get(k) {
                vars.insert(k.clone(), v.clone());
            }
        }
        vars
    }
}

/// Everything one plugin gets, resolved from one set of [`Inputs`].
#[derive(Debug, Clone)]
pub struct PluginSettings {
    /// The plugin with its effective extras (`select`, `metadata`, `catalog`, ...) in its
    /// fields.
    pub plugin: Plugin,
    /// Its settings, with the origin of each value and the `env:` overlay
    /// ([`ResolvedSettings::env_overlay`]).
    pub settings: ResolvedSettings,
    /// The content of its config file (unmasked: handle with care).
    pub config: J,
    /// The same with sensitive values masked, for display.
    pub masked_config: J,
}

/// Resolves everything `plugin` gets from `inputs`: extras, settings, config file and its
/// masked copy, and the variables of the `env:` blocks.
pub fn resolve_plugin(
    project: &Project,
    plugin: &Plugin,
    inputs: &Inputs<'_>,
) -> Result<PluginSettings> {
    let effective = extras::effective_plugin(project, plugin, inputs)?;
    let settings = super::resolve(project, &effective, inputs)?;
    let config = settings.config_json();
    let masked_config = settings.config_json_masked(true);
    Ok(PluginSettings {
        plugin: effective,
        settings,
        config,
        masked_config,
    })
}

//! Meltano's plugin extras (`select`, `metadata`, `schema`, `catalog`, `state`, `select_filter`,
//! `load_schema`, `use_cached_catalog`, `dialect`, `log_parser`), resolved like settings.
//!
//! Meltano defines each extra as a setting named with a leading underscore (`_select`), so it is
//! read, highest first, from the process environment and `.env` as `<NAME>__SELECT` or
//! `<NAMESPACE>__SELECT` (arrays and objects as JSON), the active environment's plugin block, the
//! plugin's own entry in `meltano.yml`, the parent plugin (`inherit_from`), then the plugin's
//! definition and Meltano's default. [`resolve`] does that once; [`effective_plugin`] gives the
//! plugin with those values in its fields, for everything that reads selection, catalog or state.

use std::collections::BTreeMap;

use serde_json::Value as J;

use crate::error::{Error, Result};
use crate::project::{Plugin, PluginDef, PluginType, Project};
use crate::settings::{Inputs, Source, env_var_name};

/// How an extra's text in a variable is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Array,
    Object,
    Boolean,
}

/// One extra: its key in `meltano.yml` (without Meltano's leading underscore) and its kind.
struct ExtraDef {
    key: &'static str,
    kind: Kind,
}

const EXTRACTOR: &[ExtraDef] = &[
    ExtraDef {
        key: "log_parser",
        kind: Kind::Text,
    },
    ExtraDef {
        key: "catalog",
        kind: Kind::Text,
    },
    ExtraDef {
        key: "state",
        kind: Kind::Text,
    },
    ExtraDef {
        key: "load_schema",
        kind: Kind::Text,
    },
    ExtraDef {
        key: "select",
        kind: Kind::Array,
    },
    ExtraDef {
        key: "metadata",
        kind: Kind::Object,
    },
    ExtraDef {
        key: "schema",
        kind: Kind::Object,
    },
    ExtraDef {
        key: "select_filter",
        kind: Kind::Array,
    },
    ExtraDef {
        key: "use_cached_catalog",
        kind: Kind::Boolean,
    },
];

const LOADER: &[ExtraDef] = &[
    ExtraDef {
        key: "log_parser",
        kind: Kind::Text,
    },
    ExtraDef {
        key: "dialect",
        kind: Kind::Text,
    },
];

fn defs(ty: PluginType) -> &'static [ExtraDef] {
    match ty {
        PluginType::Extractors => EXTRACTOR,
        PluginType::Loaders => LOADER,
        _ => &[],
    }
}

/// One resolved extra.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExtraValue {
    /// Meltano's name for it, with the leading underscore (`_select`).
    pub name: String,
    /// The value (`None` when unset, as `catalog` and `state` are by default).
    pub value: Option<J>,
    /// Where it came from.
    pub source: Source,
    /// The variables it is read from, most specific first (`TAP_X__SELECT`, ...).
    pub env_vars: Vec<String>,
}

/// Every extra of one plugin, in Meltano's order.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// The values.
    pub values: Vec<ExtraValue>,
}

impl Extras {
    /// The extra called `key` (`select` or `_select`).
    pub fn get(&self, key: &str) -> Option<&ExtraValue> {
        let key = key.trim_start_matches('_');
        self.values
            .iter()
            .find(|v| v.name.trim_start_matches('_') == key)
    }

    /// The value of `key` when something other than the default set it.
    fn set(&self, key: &str) -> Option<&J> {
        self.get(key)
            .filter(|v| !matches!(v.source, Source::Default | Source::Unset))
            .and_then(|v| v.value.as_ref())
    }

    /// Puts the values that are set into `plugin`'s fields (defaults stay `None`, for the
    /// readers to apply, as they do for a plugin that sets nothing).
    pub fn apply(&self, plugin: &mut Plugin) {
        let strings = |v: Option<&J>| {
            v.and_then(J::as_array).map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect::<Vec<_>>()
            })
        };
        let text = |v: Option<&J>| v.and_then(J::as_str).map(str::to_string);
        let object = |v: Option<&J>| v.and_then(J::as_object).cloned();
        match plugin.plugin_type {
            PluginType::Extractors => {
                plugin.select = strings(self.set("select"));
                plugin.select_filter = strings(self.set("select_filter"));
                plugin.metadata = object(self.set("metadata"));
                plugin.schema = object(self.set("schema"));
                plugin.catalog = text(self.set("catalog"));
                plugin.state = text(self.set("state"));
                plugin.load_schema = text(self.set("load_schema"));
                plugin.use_cached_catalog = self.set("use_cached_catalog").and_then(J::as_bool);
                plugin.raw.select = plugin.select.clone();
                plugin.raw.select_filter = plugin.select_filter.clone();
                plugin.raw.metadata = plugin.metadata.clone();
                plugin.raw.schema = plugin.schema.clone();
                plugin.raw.catalog = plugin.catalog.clone();
                plugin.raw.state = plugin.state.clone();
                plugin.raw.load_schema = plugin.load_schema.clone();
                plugin.raw.use_cached_catalog = plugin.use_cached_catalog;
            }
            PluginType::Loaders => plugin.raw.dialect = text(self.set("dialect")),
            _ => return,
        }
        plugin.raw.log_parser = text(self.set("log_parser"));
    }
}

/// An extra's value in a plugin block, as JSON.
fn from_def(def: &PluginDef, key: &str) -> Option<J> {
    let list = |l: &Option<Vec<String>>| l.clone().map(J::from);
    let text = |t: &Option<String>| t.clone().map(J::String);
    let object = |o: &Option<crate::project::Object>| o.clone().map(J::Object);
    match key {
        "select" => list(&def.select),
        "select_filter" => list(&def.select_filter),
        "metadata" => object(&def.metadata),
        "schema" => object(&def.schema),
        "catalog" => text(&def.catalog),
        "state" => text(&def.state),
        "load_schema" => text(&def.load_schema),
        "use_cached_catalog" => def.use_cached_catalog.map(J::Bool),
        "dialect" => text(&def.dialect),
        "log_parser" => text(&def.log_parser),
        _ => None,
    }
}

/// Meltano's default for an extra of `plugin`.
fn default(plugin: &Plugin, key: &str) -> Option<J> {
    Some(match key {
        "log_parser" => J::from("singer-sdk"),
        "load_schema" | "dialect" => J::from(plugin.namespace.clone()),
        "select" => J::from(vec!["*.*"]),
        "metadata" | "schema" => J::Object(Default::default()),
        "select_filter" => J::Array(Vec::new()),
        "use_cached_catalog" => J::Bool(true),
        _ => return None,
    })
}

/// Reads an extra's text from a variable by its kind, or says which variable is wrong.
fn parse(text: &str, kind: Kind, var: &str, place: &str) -> Result<J> {
    let expected = match kind {
        Kind::Text => return Ok(J::String(text.to_string())),
        Kind::Boolean => {
            // Meltano's `truthy`: anything else is false.
            let t = text.trim().to_ascii_lowercase();
            return Ok(J::Bool(matches!(t.as_str(), "true" | "1" | "yes" | "on")));
        }
        Kind::Array => "a JSON array of strings",
        Kind::Object => "a JSON object",
    };
    let example = match kind {
        Kind::Object => format!(r#"{var}='{{"users": {{"replication-method": "FULL_TABLE"}}}}'"#),
        _ => format!(r#"{var}='["users.*"]'"#),
    };
    let bad = |why: String| {
        Error::config(format!("`{var}` {place} must be {expected}: {why}")).hint(format!(
            "write it as JSON with double quotes, such as {example}"
        ))
    };
    let value: J = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    match (kind, &value) {
        (Kind::Object, J::Object(_)) => Ok(value),
        (Kind::Array, J::Array(items)) if items.iter().all(J::is_string) => Ok(value),
        (Kind::Array, J::Array(_)) => Err(bad("an item is not a string".into())),
        (_, other) => Err(bad(format!("it holds {}", json_kind(other)))),
    }
}

fn json_kind(v: &J) -> &'static str {
    match v {
        J::Null => "null",
        J::Bool(_) => "a boolean",
        J::Number(_) => "a number",
        J::String(_) => "a string",
        J::Array(_) => "an array",
        J::Object(_) => "an object",
    }
}

/// Resolves the extras of `plugin` in Meltano's order (see the module's documentation) from
/// the captured `inputs`.
pub fn resolve(project: &Project, plugin: &Plugin, inputs: &Inputs<'_>) -> Result<Extras> {
    let list = defs(plugin.plugin_type);
    if list.is_empty() {
        return Ok(Extras::default());
    }
    let environment = inputs.environment;
    let env_block = environment.and_then(|e| project.environment_plugin(e, plugin));
    let own = project
        .file()
        .plugins
        .of(plugin.plugin_type)
        .iter()
        .find(|d| d.name == plugin.name);
    let parent = match &plugin.parent {
        Some(name) => {
            let p = project.find_plugin(name, Some(plugin.plugin_type))?;
            Some(resolve(project, p, inputs)?)
        }
        None => None,
    };
    let mut prefixes = vec![plugin.name.as_str()];
    if plugin.namespace != plugin.name {
        prefixes.push(plugin.namespace.as_str());
    }
    let mut values = Vec::new();
    for def in list {
        let name = format!("_{}", def.key);
        let mut env_vars: Vec<String> = Vec::new();
        for p in &prefixes {
            let var = env_var_name(p, &name);
            if !env_vars.contains(&var) {
                env_vars.push(var);
            }
        }
        // Meltano's `_metadata` has the alias `metadata`, so `TAP_X_METADATA` works too.
        if def.key == "metadata" {
            for p in &prefixes {
                let var = env_var_name(p, def.key);
                if !env_vars.contains(&var) {
                    env_vars.push(var);
                }
            }
        }
        let from_vars = |map: &BTreeMap<String, String>, place: &str| -> Result<Option<J>> {
            match env_vars.iter().find_map(|v| map.get(v).map(|t| (v, t))) {
                Some((var, text)) => parse(text, def.kind, var, place).map(Some),
                None => Ok(None),
            }
        };
        let inherited = parent.as_ref().and_then(|p| p.set(def.key)).filter(|_| {
            matches!(
                plugin.definition,
                crate::project::Definition::Inherited { .. }
            )
        });
        let (value, source) = if let Some(v) = from_vars(&inputs.process_env, "in the environment")?
        {
            (Some(v), Source::Env)
        } else if let Some(v) = from_vars(&inputs.dotenv, "in `.env`")? {
            (Some(v), Source::Dotenv)
        } else if let Some(v) = env_block.and_then(|d| from_def(d, def.key)) {
            (Some(v), Source::Environment)
        } else if let Some(v) = own.and_then(|d| from_def(d, def.key)) {
            (Some(v), Source::MeltanoYml)
        } else if let Some(v) = inherited {
            (Some(v.clone()), Source::Inherited)
        } else if let Some(v) = from_def(&plugin.raw, def.key).or_else(|| default(plugin, def.key))
        {
            // A lock file's or dsm's catalog's value counts as the plugin's default.
            (Some(v), Source::Default)
        } else {
            (None, Source::Unset)
        };
        values.push(ExtraValue {
            name,
            value,
            source,
            env_vars,
        });
    }
    Ok(Extras { values })
}

/// `plugin` with its effective extras in its fields, read from the captured `inputs`; the
/// plugin as it is when it has no extras.
pub fn effective_plugin(project: &Project, plugin: &Plugin, inputs: &Inputs<'_>) -> Result<Plugin> {
    let extras = resolve(project, plugin, inputs)?;
    let mut out = plugin.clone();
    if !extras.values.is_empty() {
        extras.apply(&mut out);
    }
    Ok(out)
}

/// Meltano's `nest_object` for `_metadata` and `_schema`: `a.b: x` becomes `a: {b: x}`.
pub fn nested(v: J) -> J {
    let J::Object(map) = v else { return v };
    let mut out = serde_json::Map::new();
    for (k, val) in map {
        let val = nested(val);
        let mut parts = k.split('.').collect::<Vec<_>>();
        let last = parts.pop().unwrap_or_default().to_string();
        let mut cur = &mut out;
        for p in parts {
            let slot = cur
                .entry(p.to_string())
                .or_insert_with(|| J::Object(serde_json::Map::new()));
            if !slot.is_object() {
                *slot = J::Object(serde_json::Map::new());
            }
            cur = slot.as_object_mut().expect("made an object above");
        }
        match (cur.get_mut(&last), val) {
            (Some(J::Object(existing)), J::Object(new)) => existing.extend(new),
            (_, val) => {
                cur.insert(last, val);
            }
        }
    }
    J::Object(out)
}

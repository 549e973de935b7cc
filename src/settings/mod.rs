//! Layered setting resolution in Meltano's order, with the origin of every value.
//!
//! Highest first: the process environment (with the project's, the environment's and the
//! plugin's `env:` blocks laid over it, as Meltano does), `.env`, the active environment's block,
//! the plugin's `config` in `meltano.yml`, the system store (given by the caller), the parent
//! plugin (`inherit_from`), the declared default. Values from files and defaults have `$VAR` /
//! `${VAR}` expanded; every value is then typed by its setting's `kind`.

pub mod expand;
pub mod extras;
mod inputs;
pub mod processors;

use std::collections::BTreeMap;

use serde_json::{Map, Value as J};

use crate::error::{Error, Result};
use crate::project::{Object, Plugin, PluginType, Project, SettingDef};

pub use inputs::{EnvLayers, Inputs, Place, PluginSettings, resolve_plugin};

/// What `--safe` output shows instead of a sensitive value.
pub const MASK: &str = "********";

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The process environment (or an `env:` block of the project).
    Env,
    /// The project's `.env` file.
    Dotenv,
    /// dsm's encrypted secret store (it takes the place `.env` has in Meltano's order).
    SecretStore,
    /// The active environment's block in `meltano.yml`.
    Environment,
    /// The plugin's `config` in `meltano.yml`.
    MeltanoYml,
    /// dsm's system store.
    SystemStore,
    /// The parent plugin.
    Inherited,
    /// The declared default.
    Default,
    /// No value anywhere.
    Unset,
}

impl Source {
    /// How `config list` names the source.
    pub fn label(self) -> &'static str {
        match self {
            Source::Env => "environment",
            Source::Dotenv => ".env",
            Source::SecretStore => "encrypted secret store",
            Source::Environment => "environment block in meltano.yml",
            Source::MeltanoYml => "meltano.yml",
            Source::SystemStore => "system store",
            Source::Inherited => "inherited",
            Source::Default => "default",
            Source::Unset => "unset",
        }
    }
}

/// Values a caller keeps outside the project files, per plugin: plain values in the system
/// database, and sensitive values in the encrypted secret store.
pub trait SystemStore {
    /// The flat `setting name → value` map stored in the system database for one plugin.
    fn plugin_values(&self, plugin_type: PluginType, plugin: &str) -> Result<Object>;

    /// The names of the settings of `plugin` that have an encrypted value.
    fn secret_names(&self, _plugin: &str) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// The clear value of a stored secret, or `None` when this store only tells that a value
    /// exists (resolution for display, where it is masked anyway). Called only for values that
    /// win resolution, so a store that audits reads audits only what a plugin receives.
    fn secret_value(&self, _plugin: &str, _setting: &str) -> Result<Option<String>> {
        Ok(None)
    }
}

/// A store with nothing in it.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoStore;

impl SystemStore for NoStore {
    fn plugin_values(&self, _: PluginType, _: &str) -> Result<Object> {
        Ok(Object::new())
    }
}

/// One resolved setting.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SettingValue {
    /// The setting's name (`a.b` for nested).
    pub name: String,
    /// The typed value (`None` when unset, or when it expanded to nothing).
    pub value: Option<J>,
    /// Where it came from.
    pub source: Source,
    /// The value before `$VAR` expansion, when expansion changed it.
    pub unexpanded: Option<J>,
    /// The definition (a synthesised string one for undeclared keys).
    #[serde(skip)]
    pub definition: SettingDef,
    /// Whether the plugin declares it.
    pub declared: bool,
    /// Whether the value must be masked.
    pub sensitive: bool,
    /// Variables it is read from, most specific first.
    pub env_vars: Vec<String>,
    /// The value after the setting's `value_post_processor` (or `parse_date` for a
    /// `date_iso8601` setting), when that changed it: what the plugin's config file holds.
    #[serde(skip)]
    pub processed: Option<J>,
}

impl SettingValue {
    /// The value for the plugin's config file and `config print`: post-processed, masked when
    /// sensitive and `safe`.
    pub fn config_value(&self, safe: bool) -> Option<J> {
        match &self.processed {
            Some(p) if !(safe && self.sensitive) => Some(p.clone()),
            _ => self.display_value(safe),
        }
    }

    /// The value for display: masked when sensitive and `safe`.
    pub fn display_value(&self, safe: bool) -> Option<J> {
        match &self.value {
            Some(v) if safe && self.sensitive && !is_empty(v) => Some(J::String(MASK.into())),
            other => other.clone(),
        }
    }
}

fn is_empty(v: &J) -> bool {
    matches!(v, J::Null) || v.as_str() == Some("")
}

/// All settings of one plugin, resolved.
#[derive(Debug, Clone)]
pub struct ResolvedSettings {
    /// The plugin's name.
    pub plugin: String,
    /// The plugin's type.
    pub plugin_type: PluginType,
    /// Declared settings in order, then undeclared keys found in config.
    pub values: Vec<SettingValue>,
    /// Warnings (undefined `$VAR`s), for the caller to show.
    pub warnings: Vec<String>,
    /// The variables the project's, the environment's and the plugin's `env:` blocks (and
    /// `.env`) set for the plugin's process, expanded; see [`EnvLayers`].
    pub env_overlay: BTreeMap<String, String>,
    /// The variables the plugin runs with (see [`ResolvedSettings::plugin_env`]).
    env_prefixes: Vec<String>,
    verb: String,
}

/// Meltano's env var name: parts joined with `_`, non-alphanumerics to `_`, upper case.
pub fn env_var_name(prefix: &str, name: &str) -> String {
    [prefix, name]
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("_")
}

/// The verb Meltano uses in `MELTANO_<VERB>_<SETTING>` for a plugin type.
pub fn type_verb(ty: PluginType) -> &'static str {
    match ty {
        PluginType::Extractors => "extract",
        PluginType::Loaders => "load",
        PluginType::Transforms => "transform",
        PluginType::Transformers => "transform",
        PluginType::Orchestrators => "orchestrat",
        PluginType::Files => "file",
        PluginType::Utilities => "utilize",
        PluginType::Mappers => "map",
    }
}

/// Flattens a config map to `a.b` keys, stopping at keys that name a declared setting.
pub fn flatten(config: &Object, declared: &dyn Fn(&str) -> bool) -> Vec<(String, J)> {
    fn go(prefix: &str, map: &Object, declared: &dyn Fn(&str) -> bool, out: &mut Vec<(String, J)>) {
        for (k, v) in map {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                J::Object(inner) if !declared(&key) && !inner.is_empty() => {
                    go(&key, inner, declared, out);
                }
                other => out.push((key, other.clone())),
            }
        }
    }
    let mut out = Vec::new();
    go("", config, declared, &mut out);
    out
}

/// Looks a setting up in a config map: the flat key first, then the nested path.
fn lookup(config: &Object, name: &str) -> Option<J> {
    let parts: Vec<&str> = name.split('.').collect();
    lookup_parts(config, &parts)
}

/// Finds `a.b.c` as `{"a.b.c"}`, `{"a": {"b.c"}}`, `{"a.b": {"c"}}` or `{"a": {"b": {"c"}}}`:
/// flattening a config that has dotted keys inside objects makes such names.
fn lookup_parts(config: &Object, parts: &[&str]) -> Option<J> {
    for split in (1..=parts.len()).rev() {
        let Some(v) = config.get(&parts[..split].join(".")) else {
            continue;
        };
        if split == parts.len() {
            return Some(v.clone());
        }
        if let Some(found) = v.as_object().and_then(|o| lookup_parts(o, &parts[split..])) {
            return Some(found);
        }
    }
    None
}

/// Nests flat `a.b` keys into objects (Meltano's processing of `config print` output).
pub fn nest(flat: &[(String, J)]) -> J {
    let mut root = Map::new();
    for (k, v) in flat {
        let parts: Vec<&str> = k.split('.').collect();
        let mut cur = &mut root;
        for p in &parts[..parts.len() - 1] {
            let entry = cur
                .entry((*p).to_string())
                .or_insert_with(|| J::Object(Map::new()));
            if !entry.is_object() {
                *entry = J::Object(Map::new());
            }
            cur = entry.as_object_mut().expect("just made an object");
        }
        cur.insert(parts[parts.len() - 1].to_string(), v.clone());
    }
    J::Object(root)
}

/// Resolves every setting of `plugin`.
pub fn resolve(
    project: &Project,
    plugin: &Plugin,
    inputs: &Inputs<'_>,
) -> Result<ResolvedSettings> {
    let parent = match &plugin.parent {
        Some(p) => Some(resolve(project, project.plugin(p)?, inputs)?),
        None => None,
    };
    let strict = project.strict_env_var_mode();
    let mut warnings = Vec::new();

    // The environment Meltano expands against and reads settings from: `.env` under the
    // process environment, with the project's, plugin's and environment's `env:` over both.
    let dotenv = &inputs.dotenv;
    let env_plugin = inputs
        .environment
        .and_then(|e| project.environment_plugin(e, plugin));
    let layers = inputs::EnvLayers::expand(project, plugin, inputs, strict, &mut warnings)?;
    let env_map = layers.resolution_env(&inputs.process_env);

    // Definitions: declared ones, then undeclared keys (parent's first, then own).
    // Like Meltano, config is flattened all the way down and a key that is not a setting's
    // exact name (aliases do not count) becomes a custom setting; nesting merges them back.
    let is_declared = |k: &str| plugin.settings.iter().any(|s| s.name == k);
    let mut defs: Vec<(SettingDef, bool)> =
        plugin.settings.iter().map(|s| (s.clone(), true)).collect();
    let mut custom_names: Vec<String> = Vec::new();
    if let Some(p) = &parent {
        custom_names.extend(
            p.values
                .iter()
                .filter(|v| !v.declared)
                .map(|v| v.name.clone()),
        );
    }
    let env_config = env_plugin
        .and_then(|e| e.config.clone())
        .unwrap_or_default();
    for (k, _) in flatten(&plugin.config, &|_| false)
        .into_iter()
        .chain(flatten(&env_config, &|_| false))
    {
        if !is_declared(&k) && !custom_names.contains(&k) {
            custom_names.push(k);
        }
    }
    let secret_names = inputs.store.secret_names(&plugin.name)?;
    for k in &secret_names {
        if !is_declared(k) && !custom_names.contains(k) {
            custom_names.push(k.clone());
        }
    }
    for name in custom_names {
        defs.push((
            SettingDef {
                name,
                ..SettingDef::default()
            },
            false,
        ));
    }

    let store = inputs
        .store
        .plugin_values(plugin.plugin_type, &plugin.name)?;
    let prefixes = dedup(vec![plugin.name.clone(), plugin.namespace.clone()]);
    let mut values = Vec::new();
    for (def, declared) in defs {
        let mut names = vec![def.name.clone()];
        names.extend(def.aliases.clone().unwrap_or_default());
        let env_vars: Vec<String> = dedup(
            names
                .iter()
                .flat_map(|n| prefixes.iter().map(move |p| env_var_name(p, n)))
                .collect(),
        );
        let from_env = |map: &BTreeMap<String, String>| {
            env_vars
                .iter()
                .find_map(|v| map.get(v).map(|s| J::String(s.clone())))
        };
        let from_map = |m: &Object| names.iter().find_map(|n| lookup(m, n));
        // A secret that only says it exists (masked resolution) is shown masked, never cast.
        let mut masked_secret = false;
        let (raw, source, expandable) = if let Some(v) = from_env(&env_map) {
            (Some(v), Source::Env, false)
        } else if let Some(v) = from_env(dotenv) {
            (Some(v), Source::Dotenv, false)
        } else if secret_names.contains(&def.name) {
            let v = match inputs.store.secret_value(&plugin.name, &def.name)? {
                Some(clear) => J::String(clear),
                None => {
                    masked_secret = true;
                    J::String(MASK.into())
                }
            };
            (Some(v), Source::SecretStore, false)
        } else if let Some(v) = from_map(&env_config) {
            (Some(v), Source::Environment, true)
        } else if let Some(v) = from_map(&plugin.config) {
            (Some(v), Source::MeltanoYml, true)
        } else if let Some(v) = from_map(&store) {
            (Some(v), Source::SystemStore, false)
        } else if let Some(v) = parent
            .as_ref()
            .and_then(|p| p.values.iter().find(|v| v.name == def.name))
            .and_then(|v| v.value.clone())
        {
            (Some(v), Source::Inherited, false)
        } else if let Some(v) = def.value.clone().filter(|v| !v.is_null()) {
            (Some(v), Source::Default, true)
        } else {
            (None, Source::Unset, false)
        };
        let mut unexpanded = None;
        let mut value = raw.clone();
        if expandable && let Some(v) = &raw {
            let mut exp = expand::Expansion::default();
            let lookup = |n: &str| env_map.get(n).cloned().or_else(|| dotenv.get(n).cloned());
            let expanded = expand::expand(v, &lookup, &mut exp);
            missing_vars(
                &exp,
                strict,
                &format!("setting `{}` of `{}`", def.name, plugin.name),
                &mut warnings,
            )?;
            if &expanded != v {
                unexpanded = Some(v.clone());
                // A string made only of undefined variables counts as no value, like Meltano.
                value = if is_empty(&expanded) && !is_empty(v) {
                    None
                } else {
                    Some(expanded)
                };
            }
        }
        let value = match value {
            Some(v) if masked_secret => Some(v),
            Some(v) => Some(cast(&def, v, &plugin.name, source)?),
            None => None,
        };
        let post = def
            .value_post_processor
            .as_deref()
            .or((def.kind.as_deref() == Some("date_iso8601")).then_some("parse_date"));
        let processed = match (&value, post) {
            (Some(v), Some(name)) if !masked_secret && !v.is_null() => {
                let out = processors::apply(name, v.clone(), &def.name, &plugin.name)?;
                (&out != v).then_some(out)
            }
            _ => None,
        };
        let sensitive = is_sensitive(&def) || source == Source::SecretStore;
        values.push(SettingValue {
            processed,
            name: def.name.clone(),
            value,
            source,
            unexpanded,
            sensitive,
            declared,
            env_vars,
            definition: def,
        });
    }
    let mut env_prefixes = prefixes;
    if let Some(p) = &parent {
        env_prefixes.extend(p.env_prefixes.iter().cloned());
    }
    let verb = format!("meltano_{}", type_verb(plugin.plugin_type));
    Ok(ResolvedSettings {
        plugin: plugin.name.clone(),
        plugin_type: plugin.plugin_type,
        values,
        warnings,
        env_prefixes: dedup(env_prefixes),
        verb,
        env_overlay: layers.plugin_env(&inputs.process_env, dotenv),
    })
}

/// Whether a setting's definition makes it sensitive: `sensitive: true`, a `password` or
/// `oauth` kind (as Meltano treats them), or `annotations: {dsm: {sensitive: true}}` (for a
/// setting a plugin's own definition does not mark, without changing what Meltano reads).
pub fn is_sensitive(def: &SettingDef) -> bool {
    def.sensitive.unwrap_or(false)
        || matches!(def.kind.as_deref(), Some("password" | "oauth"))
        || def
            .annotations
            .as_ref()
            .and_then(|a| a.get("dsm"))
            .and_then(|d| {
                serde_json::from_value::<crate::project::annotations::DsmSetting>(d.clone()).ok()
            })
            .and_then(|d| d.sensitive)
            .unwrap_or(false)
}

fn dedup(v: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in v {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

pub(crate) fn missing_vars(
    exp: &expand::Expansion,
    strict: bool,
    what: &str,
    warnings: &mut Vec<String>,
) -> Result<()> {
    for name in &exp.missing {
        if strict {
            return Err(Error::config(format!(
                "{what} refers to `${name}`, which is not set"
            ))
            .hint(format!("set `{name}` in the environment or in `.env`"))
            .hint("`ff.strict_env_var_mode` is on in meltano.yml, so undefined variables are errors"));
        }
        warnings.push(format!(
            "{what} refers to `${name}`, which is not set; using an empty string"
        ));
    }
    Ok(())
}

/// Types a value by its setting's kind (Meltano casts strings; options must match).
pub fn cast(def: &SettingDef, value: J, plugin: &str, source: Source) -> Result<J> {
    let kind = def.kind.as_deref().unwrap_or("string");
    let bad = |expected: &str, shown: &str| {
        Error::config(format!(
            "setting `{}` of `{plugin}` must be {expected}, but its value from {} is {shown}",
            def.name,
            source.label()
        ))
    };
    let shown = |v: &J| {
        if is_sensitive(def) || source == Source::SecretStore {
            MASK.to_string()
        } else {
            v.to_string()
        }
    };
    let v = match (kind, &value) {
        ("boolean", J::String(s)) => J::Bool(matches!(
            s.to_lowercase().as_str(),
            "true" | "1" | "yes" | "on"
        )),
        ("integer", J::String(s)) => match s.trim().parse::<i64>() {
            Ok(i) => J::from(i),
            Err(_) => {
                return Err(
                    bad("an integer", &shown(&value)).hint("write a whole number such as `42`")
                );
            }
        },
        ("decimal", J::String(s)) => match serde_json::from_str::<serde_json::Number>(s.trim()) {
            Ok(n) => J::Number(n),
            Err(_) => {
                return Err(
                    bad("a decimal number", &shown(&value)).hint("write a number such as `3.14`")
                );
            }
        },
        ("object", J::String(s)) => match serde_json::from_str::<J>(s) {
            Ok(o @ J::Object(_)) => o,
            _ => {
                return Err(bad("a JSON object", &shown(&value))
                    .hint(r#"write it as JSON, such as `{"key": "value"}`"#));
            }
        },
        ("array", J::String(s)) => match serde_json::from_str::<J>(s) {
            Ok(a @ J::Array(_)) => a,
            _ => {
                return Err(bad("a JSON array", &shown(&value))
                    .hint(r#"write it as JSON, such as `["a", "b"]`"#));
            }
        },
        ("email", J::String(s)) => {
            let ok = regex::Regex::new(r"^[a-zA-Z0-9_.+-]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+$")
                .expect("the pattern compiles")
                .is_match(s);
            if !ok {
                return Err(bad("an email address", &shown(&value)));
            }
            value
        }
        ("date_iso8601", J::String(s)) => {
            let ok = regex::Regex::new(
                r"^(\d{4})-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])(?:[ T]([01]\d|2[0-3]):([0-5]\d):([0-5]\d)(?:\.(\d+))?)?(Z|[+-](?:0\d|1[0-2]):(?:00|30))?$",
            )
            .expect("the pattern compiles")
            .is_match(s)
                // A relative date (`yesterday`, `3 days ago`) becomes an ISO time when the
                // config file is written (`parse_date`, as in Meltano).
                || processors::parse_date(s, chrono::Utc::now()).is_some();
            if !ok {
                return Err(bad("an ISO 8601 date", &shown(&value)).hint(
                    "write it as `2024-01-31` or `2024-01-31T12:00:00Z`, or relative as `7 days ago`",
                ));
            }
            value
        }
        _ => value,
    };
    if kind == "options"
        && let Some(options) = &def.options
        && !options.iter().any(|o| o.value == v)
    {
        let names: Vec<String> = options.iter().map(|o| o.value.to_string()).collect();
        return Err(
            bad("one of its options", &shown(&v)).hint(format!("use one of: {}", names.join(", ")))
        );
    }
    match &def.value_processor {
        Some(name) if !v.is_null() => processors::apply(name, v, &def.name, plugin),
        _ => Ok(v),
    }
}

/// Checks a value typed for `dsm config set` or `dsm secrets set` against the setting's kind
/// before anything is stored, and returns it typed. A value the kind refuses is a usage error
/// (exit 2) naming the setting and its kind; the value itself is shown only when `show_value`
/// (never for a sensitive setting).
pub fn check_set_value(def: &SettingDef, text: &str, plugin: &str, show_value: bool) -> Result<J> {
    let kind = def.kind.as_deref().unwrap_or("string");
    let expected = match kind {
        "integer" => "a whole number",
        "decimal" => "a number",
        "boolean" => "`true` or `false`",
        "object" => "a JSON object",
        "array" => "a JSON array",
        "options" => "one of its options",
        "email" => "an email address",
        "date_iso8601" => "an ISO 8601 date",
        _ => "a value of that kind",
    };
    let refuse = |hints: &[String]| {
        let got = if show_value {
            format!("`{text}`")
        } else {
            "the value given (not shown)".to_string()
        };
        let mut e = Error::config(format!(
            "setting `{}` of `{plugin}` is of kind `{kind}` and takes {expected}; {got} is not",
            def.name
        ));
        for h in hints {
            e = e.hint(h.clone());
        }
        e
    };
    // A `$VAR` reference is expanded at run time, where the expanded value is checked.
    let reference = regex::Regex::new(r"\$\{?[A-Za-z_]").expect("the pattern compiles");
    if reference.is_match(text) {
        return Ok(J::String(text.to_string()));
    }
    if kind == "boolean" {
        return match text.trim().to_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(J::Bool(true)),
            "false" | "0" | "no" | "off" => Ok(J::Bool(false)),
            _ => Err(refuse(&["write `true` or `false`".to_string()])),
        };
    }
    let raw = serde_json::from_str::<J>(text).unwrap_or_else(|_| J::String(text.to_string()));
    let typed = cast(def, raw, plugin, Source::Env)
        .or_else(|_| cast(def, J::String(text.to_string()), plugin, Source::Env))
        .map_err(|e| refuse(e.hints()))?;
    let fits = match kind {
        "integer" => typed.as_i64().is_some() || typed.as_u64().is_some(),
        "decimal" => typed.is_number(),
        "object" => typed.is_object(),
        "array" => typed.is_array(),
        _ => true,
    };
    if !fits {
        return Err(refuse(&[]));
    }
    Ok(typed)
}

impl ResolvedSettings {
    /// The setting called `name`.
    pub fn get(&self, name: &str) -> Option<&SettingValue> {
        self.values.iter().find(|v| v.name == name)
    }

    /// The nested config object for the plugin's config file (unmasked; handle with care).
    pub fn config_json(&self) -> J {
        self.config_json_masked(false)
    }

    /// The nested config object, with sensitive values masked when `safe`.
    pub fn config_json_masked(&self, safe: bool) -> J {
        // Undeclared `blob.k` values (flattening the config produces them) merge into a declared
        // object `blob`, as in Meltano, but never replace a declared value that a
        // post-processor turned into something else (`stringify`; Meltano crashes there).
        let shadowed = |v: &SettingValue| {
            !v.declared
                && self.values.iter().any(|d| {
                    d.declared
                        && d.config_value(false).is_some_and(|x| !x.is_object())
                        && v.name.len() > d.name.len()
                        && v.name.starts_with(&d.name)
                        && v.name.as_bytes()[d.name.len()] == b'.'
                })
        };
        let flat: Vec<(String, J)> = self
            .values
            .iter()
            .filter(|v| !shadowed(v))
            .filter_map(|v| v.config_value(safe).map(|val| (v.name.clone(), val)))
            .collect();
        nest(&flat)
    }

    /// The variables Meltano hands the plugin for its settings: `<NAME>_<SETTING>`,
    /// `<NAMESPACE>_<SETTING>`, the parent's prefixes, `MELTANO_<VERB>_<SETTING>` and the
    /// setting's own `env:`. Masked values when `safe`.
    pub fn plugin_env(&self, safe: bool) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for v in &self.values {
            let Some(value) = v.display_value(safe) else {
                continue;
            };
            let flat = match &value {
                J::Object(_) if !v.declared || v.definition.kind.as_deref() != Some("object") => {
                    flatten(value.as_object().expect("matched an object"), &|_| false)
                        .into_iter()
                        .map(|(k, val)| (format!("{}.{k}", v.name), val))
                        .collect()
                }
                _ => vec![(v.name.clone(), value.clone())],
            };
            for (name, val) in flat {
                let text = env_text(&val);
                let mut vars: Vec<String> = Vec::new();
                if let Some(e) = &v.definition.env {
                    vars.push(e.clone());
                }
                for p in self.env_prefixes.iter().chain(std::iter::once(&self.verb)) {
                    vars.push(env_var_name(p, &name));
                }
                for var in dedup(vars) {
                    if !out.iter().any(|(k, _)| k == &var) {
                        out.push((var, text.clone()));
                    }
                }
            }
        }
        out
    }
}

/// A value as an environment variable's text.
pub fn env_text(v: &J) -> String {
    match v {
        J::String(s) => s.clone(),
        J::Null => String::new(),
        other => crate::pyjson::dumps(other),
    }
}

#[cfg(test)]
mod tests;

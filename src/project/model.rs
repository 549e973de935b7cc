//! The typed model of one `meltano.yml` file (and of each included file), key for key as in
//! Meltano's schema. Built from the YAML tree after validation, so every field is lenient here.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as J};

use crate::project::annotations::{DsmJob, DsmPlugin, DsmProject};

/// A JSON object in file order (`env:`, `config:`, `metadata:` ...).
pub type Object = Map<String, J>;

/// The eight plugin types, spelled as the keys under `plugins:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginType {
    /// Singer taps.
    Extractors,
    /// Singer targets.
    Loaders,
    /// Singer mappers.
    Mappers,
    /// Orchestrators (Airflow, Dagster).
    Orchestrators,
    /// Transformers (dbt).
    Transformers,
    /// File bundles.
    Files,
    /// Utilities.
    Utilities,
    /// dbt packages.
    Transforms,
}

impl PluginType {
    /// Every type, in the order Meltano lists them.
    pub const ALL: [PluginType; 8] = [
        PluginType::Extractors,
        PluginType::Loaders,
        PluginType::Transforms,
        PluginType::Orchestrators,
        PluginType::Transformers,
        PluginType::Files,
        PluginType::Utilities,
        PluginType::Mappers,
    ];

    /// The key under `plugins:` (`extractors`).
    pub fn key(self) -> &'static str {
        match self {
            PluginType::Extractors => "extractors",
            PluginType::Loaders => "loaders",
            PluginType::Mappers => "mappers",
            PluginType::Orchestrators => "orchestrators",
            PluginType::Transformers => "transformers",
            PluginType::Files => "files",
            PluginType::Utilities => "utilities",
            PluginType::Transforms => "transforms",
        }
    }

    /// The singular word (`extractor`), as in messages and `--plugin-type`.
    pub fn singular(self) -> &'static str {
        match self {
            PluginType::Extractors => "extractor",
            PluginType::Loaders => "loader",
            PluginType::Mappers => "mapper",
            PluginType::Orchestrators => "orchestrator",
            PluginType::Transformers => "transformer",
            PluginType::Files => "file",
            PluginType::Utilities => "utility",
            PluginType::Transforms => "transform",
        }
    }

    /// Parses `extractor` or `extractors` (and the other types the same way).
    pub fn parse(s: &str) -> Option<PluginType> {
        PluginType::ALL
            .into_iter()
            .find(|t| t.key() == s || t.singular() == s)
    }
}

/// `annotations:` at some level: `dsm` typed, other tools' entries kept as they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Annotations<T> {
    /// dsm's own keys.
    pub dsm: Option<T>,
    /// Other tools' annotations, ignored by dsm.
    #[serde(flatten)]
    pub other: Object,
}

/// One `meltano.yml` (or included file), as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProjectFile {
    /// Deprecated `version: 1`.
    pub version: Option<J>,
    /// Project annotations (`annotations.dsm` is [`DsmProject`]).
    pub annotations: Option<Annotations<DsmProject>>,
    /// Environment used when none is named (not by `config`).
    pub default_environment: Option<String>,
    /// Telemetry opt-in (dsm sends nothing).
    pub send_anonymous_usage_stats: Option<bool>,
    /// The project's id.
    pub project_id: Option<String>,
    /// Required Meltano version.
    pub requires_meltano: Option<String>,
    /// Meltano's system database (dsm reads its state table for import only).
    pub database_uri: Option<String>,
    /// Python for plugin venvs.
    pub python: Option<String>,
    /// Where Meltano keeps state.
    pub state_backend: Option<Object>,
    /// Plugin venv settings.
    pub venv: Option<Object>,
    /// Environments.
    pub environments: Vec<Environment>,
    /// Other files to merge in (globs relative to the project root).
    pub include_paths: Vec<String>,
    /// Plugins by type.
    pub plugins: Plugins,
    /// Schedules.
    pub schedules: Vec<Schedule>,
    /// Project-level environment variables.
    pub env: Object,
    /// Jobs.
    pub jobs: Vec<Job>,
    /// Meltano database retries.
    pub database_max_retries: Option<i64>,
    /// Meltano database retry wait.
    pub database_retry_timeout: Option<i64>,
    /// Read-only project.
    pub project_readonly: Option<bool>,
    /// CLI settings (`log_config`).
    pub cli: Option<Object>,
    /// `elt.buffer_size`.
    pub elt: Option<Elt>,
    /// Experimental features.
    pub experimental: Option<bool>,
    /// Feature flags.
    pub ff: Option<FeatureFlags>,
    /// Meltano Hub API root.
    pub hub_api_root: Option<String>,
    /// Meltano Hub URL.
    pub hub_url: Option<String>,
    /// Meltano Hub auth header.
    pub hub_url_auth: Option<J>,
    /// Telemetry endpoints.
    pub snowplow: Option<Object>,
    /// Auto-install plugins.
    pub auto_install: Option<bool>,
}

/// `elt:` settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Elt {
    /// Longest line between plugins, in bytes (Meltano's default 10 MiB).
    pub buffer_size: Option<u64>,
}

/// `ff:` feature flags.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FeatureFlags {
    /// An undefined `$VAR` is an error instead of an empty string.
    pub strict_env_var_mode: Option<bool>,
    /// Lock files are required for known plugins.
    pub plugin_locks_required: Option<bool>,
}

/// `plugins:`, one list per type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Plugins {
    /// Extractors.
    pub extractors: Vec<PluginDef>,
    /// Loaders.
    pub loaders: Vec<PluginDef>,
    /// Mappers.
    pub mappers: Vec<PluginDef>,
    /// Orchestrators.
    pub orchestrators: Vec<PluginDef>,
    /// Transformers.
    pub transformers: Vec<PluginDef>,
    /// File bundles.
    pub files: Vec<PluginDef>,
    /// Utilities.
    pub utilities: Vec<PluginDef>,
    /// Transforms.
    pub transforms: Vec<PluginDef>,
}

impl Plugins {
    /// The list for one type.
    pub fn of(&self, ty: PluginType) -> &Vec<PluginDef> {
        match ty {
            PluginType::Extractors => &self.extractors,
            PluginType::Loaders => &self.loaders,
            PluginType::Mappers => &self.mappers,
            PluginType::Orchestrators => &self.orchestrators,
            PluginType::Transformers => &self.transformers,
            PluginType::Files => &self.files,
            PluginType::Utilities => &self.utilities,
            PluginType::Transforms => &self.transforms,
        }
    }

    /// The list for one type, to change.
    pub fn of_mut(&mut self, ty: PluginType) -> &mut Vec<PluginDef> {
        match ty {
            PluginType::Extractors => &mut self.extractors,
            PluginType::Loaders => &mut self.loaders,
            PluginType::Mappers => &mut self.mappers,
            PluginType::Orchestrators => &mut self.orchestrators,
            PluginType::Transformers => &mut self.transformers,
            PluginType::Files => &mut self.files,
            PluginType::Utilities => &mut self.utilities,
            PluginType::Transforms => &mut self.transforms,
        }
    }
}

/// One plugin entry under `plugins.<type>` as written (the union of every type's keys), also the
/// shape of a lock file and of a catalog entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PluginDef {
    /// Plugin annotations (`annotations.dsm` is [`DsmPlugin`]).
    pub annotations: Option<Annotations<DsmPlugin>>,
    /// The plugin's name in this project.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Type (in lock files).
    pub plugin_type: Option<String>,
    /// Source repository.
    pub repo: Option<String>,
    /// Extension repository.
    pub ext_repo: Option<String>,
    /// Parent plugin name.
    pub inherit_from: Option<String>,
    /// What pip installs.
    pub pip_url: Option<String>,
    /// Variant of a known plugin.
    pub variant: Option<String>,
    /// Namespace (defaults to the name with `-` as `_`).
    pub namespace: Option<String>,
    /// Setting values.
    pub config: Option<Object>,
    /// Label.
    pub label: Option<String>,
    /// Logo.
    pub logo_url: Option<String>,
    /// Python for this plugin's venv.
    pub python: Option<String>,
    /// Executable (defaults to the name).
    pub executable: Option<String>,
    /// Setting definitions.
    pub settings: Option<Vec<SettingDef>>,
    /// Docs link.
    pub docs: Option<String>,
    /// Valid combinations of required settings.
    pub settings_group_validation: Option<Vec<Vec<String>>>,
    /// Commands (`name: "args"` or objects).
    pub commands: Option<Object>,
    /// Plugins this one needs.
    pub requires: Option<Object>,
    /// Required Meltano version.
    pub requires_meltano: Option<String>,
    /// Environment variables for the plugin.
    pub env: Option<Object>,
    /// Capabilities (`catalog`, `discover`, `state`, ...).
    pub capabilities: Option<Vec<String>>,
    /// Extractor: catalog file path.
    pub catalog: Option<String>,
    /// Extractor: load schema.
    pub load_schema: Option<String>,
    /// Extractor: metadata rules.
    pub metadata: Option<Object>,
    /// Extractor: schema overrides.
    pub schema: Option<Object>,
    /// Extractor: state file path.
    pub state: Option<String>,
    /// Extractor: selection rules.
    pub select: Option<Vec<String>>,
    /// Extractor: selection filter.
    pub select_filter: Option<Vec<String>>,
    /// Extractor: reuse the discovered catalog.
    pub use_cached_catalog: Option<bool>,
    /// Extractor: log parser.
    pub log_parser: Option<String>,
    /// Loader: SQL dialect.
    pub dialect: Option<String>,
    /// Transform: dbt vars.
    pub vars: Option<Object>,
    /// Transform: dbt package name.
    pub package_name: Option<String>,
    /// Mapper: named mappings.
    pub mappings: Option<Vec<Mapping>>,
}

/// One named mapping of a mapper.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Mapping {
    /// Annotations.
    pub annotations: Option<Object>,
    /// Name used in `dsm run` blocks.
    pub name: String,
    /// The mapper's config for this mapping.
    pub config: Object,
}

/// A setting definition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SettingDef {
    /// Annotations.
    pub annotations: Option<Object>,
    /// Name, `a.b` for nested.
    pub name: String,
    /// Other names accepted in `config` and `config set`.
    pub aliases: Option<Vec<String>>,
    /// Label.
    pub label: Option<String>,
    /// Default value.
    pub value: Option<J>,
    /// Placeholder.
    pub placeholder: Option<String>,
    /// Kind (string when absent).
    pub kind: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Tooltip.
    pub tooltip: Option<String>,
    /// Docs link.
    pub documentation: Option<String>,
    /// Hidden.
    pub hidden: Option<bool>,
    /// Sensitive: masked in output, never written to meltano.yml.
    pub sensitive: Option<bool>,
    /// Extra environment variable name.
    pub env: Option<String>,
    /// Value processor.
    pub value_processor: Option<String>,
    /// Value post-processor.
    pub value_post_processor: Option<String>,
    /// OAuth provider.
    pub oauth: Option<Object>,
    /// Options of an `options` setting.
    pub options: Option<Vec<SettingOption>>,
    /// Whether the value is environment-specific.
    pub env_specific: Option<bool>,
}

/// One option of an `options` setting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SettingOption {
    /// Label.
    pub label: String,
    /// Value.
    pub value: J,
}

/// An environment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Environment {
    /// Annotations.
    pub annotations: Option<Object>,
    /// Name.
    pub name: String,
    /// Plugin overrides.
    pub config: Option<EnvironmentConfig>,
    /// Environment variables.
    pub env: Object,
    /// Suffix for state ids (accepted by real Meltano).
    pub state_id_suffix: Option<String>,
}

/// `environments[].config`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EnvironmentConfig {
    /// Per-type plugin overrides (`name`, `config`, `env`, extractor keys).
    pub plugins: Plugins,
}

/// A job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Job {
    /// Annotations (`annotations.dsm` is [`DsmJob`]).
    pub annotations: Option<Annotations<DsmJob>>,
    /// Name.
    pub name: String,
    /// Tasks: a string, or a list of strings and lists of strings.
    pub tasks: J,
}

impl Job {
    /// The tasks, each one `dsm run` block list as a string.
    pub fn task_list(&self) -> Vec<String> {
        match &self.tasks {
            J::String(s) => vec![s.clone()],
            J::Array(items) => items
                .iter()
                .map(|t| match t {
                    J::String(s) => s.clone(),
                    J::Array(parts) => parts
                        .iter()
                        .filter_map(J::as_str)
                        .collect::<Vec<_>>()
                        .join(" "),
                    other => other.to_string(),
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// A schedule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Schedule {
    /// Annotations (`annotations.dsm` is [`DsmJob`]).
    pub annotations: Option<Annotations<DsmJob>>,
    /// Name.
    pub name: String,
    /// The job it runs.
    pub job: Option<String>,
    /// Legacy elt schedule: extractor.
    pub extractor: Option<String>,
    /// Environment variables.
    pub env: Object,
    /// Legacy elt schedule: loader.
    pub loader: Option<String>,
    /// Cron expression or `@daily`-style interval.
    pub interval: Option<String>,
    /// Legacy elt schedule: transform mode.
    pub transform: Option<String>,
    /// First run date.
    pub start_date: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::schema::property_names_of;

    fn fields<T: Serialize + Default>() -> Vec<String> {
        let J::Object(map) = serde_json::to_value(T::default()).unwrap() else {
            panic!("not an object")
        };
        let mut keys: Vec<String> = map.keys().cloned().collect();
        keys.sort();
        keys
    }

    fn schema_keys(pointers: &[&str]) -> Vec<String> {
        let mut keys: Vec<String> = pointers.iter().flat_map(|p| property_names_of(p)).collect();
        keys.sort();
        keys.dedup();
        keys
    }

    #[test]
    fn rust_types_and_schema_agree() {
        assert_eq!(fields::<ProjectFile>(), schema_keys(&["#"]));
        let plugin_pointers: Vec<String> = PluginType::ALL
            .iter()
            .map(|t| format!("#/$defs/plugins/{}", t.key()))
            .collect();
        let ptrs: Vec<&str> = plugin_pointers.iter().map(String::as_str).collect();
        assert_eq!(fields::<PluginDef>(), schema_keys(&ptrs));
        assert_eq!(
            fields::<SettingDef>(),
            schema_keys(&["#/$defs/base_setting"])
        );
        assert_eq!(
            fields::<Environment>(),
            schema_keys(&["#/$defs/environments"])
        );
        assert_eq!(fields::<Job>(), schema_keys(&["#/$defs/jobs"]));
        assert_eq!(fields::<Schedule>(), schema_keys(&["#/$defs/schedules"]));
        assert_eq!(fields::<Plugins>(), schema_keys(&["#/properties/plugins"]));
        assert_eq!(fields::<Elt>(), schema_keys(&["#/properties/elt"]));
        assert_eq!(fields::<FeatureFlags>(), schema_keys(&["#/properties/ff"]));
    }

    #[test]
    fn plugin_type_parses_both_spellings() {
        assert_eq!(PluginType::parse("extractor"), Some(PluginType::Extractors));
        assert_eq!(PluginType::parse("utilities"), Some(PluginType::Utilities));
        assert_eq!(PluginType::parse("tap"), None);
    }
}

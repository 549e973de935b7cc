//! What each source and destination is: type, provider, data category and labels, from the
//! plugin's `annotations.dsm.source` in `meltano.yml` (inherited through `inherit_from`) or,
//! failing that, dsm's small catalog of known plugins.
//!
//! ```yaml
//! plugins:
//!   extractors:
//!   - name: tap-github
//!     annotations:
//!       dsm:
//!         source: {type: api, provider: GitHub, category: engineering, labels: [prod]}
//! ```

use serde::Serialize;
use serde_json::Value;

use crate::plugin::executable::BUILTINS;
use crate::project::annotations::SourceKind;
use crate::project::hub;
use crate::project::{Plugin, PluginType, Project};

/// The broad kind of a source or destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceType {
    /// Files: CSV, JSONL, Parquet, object storage.
    File,
    /// Operational databases.
    Database,
    /// Web APIs and SaaS.
    Api,
    /// Analytical warehouses.
    Warehouse,
    /// Events pushed to `dsm serve` (`POST /api/webhooks/{source}`).
    Webhook,
    /// Anything else.
    Other,
}

impl SourceType {
    /// Every value, in the order lists and help show them.
    pub const ALL: [SourceType; 6] = [
        SourceType::File,
        SourceType::Database,
        SourceType::Api,
        SourceType::Warehouse,
        SourceType::Webhook,
        SourceType::Other,
    ];

    /// The word shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceType::File => "file",
            SourceType::Database => "database",
            SourceType::Api => "api",
            SourceType::Warehouse => "warehouse",
            SourceType::Webhook => "webhook",
            SourceType::Other => "other",
        }
    }
}

/// One extractor or loader of the project, as the registry describes it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SourceInfo {
    /// The plugin's name.
    pub name: String,
    /// `extractor` or `loader`.
    pub plugin_type: String,
    /// Its type.
    #[serde(rename = "type")]
    pub source_type: SourceType,
    /// Who provides the data (`GitHub`, `PostgreSQL`).
    pub provider: Option<String>,
    /// The kind of data (`engineering`, `finance`).
    pub category: Option<String>,
    /// Free labels.
    pub labels: Vec<String>,
    /// The plugin it inherits from, if any.
    pub inherit_from: Option<String>,
    /// Its variant, if any.
    pub variant: Option<String>,
    /// In a classified project: an extractor's source label (declared, else the project's
    /// default), or a loader's clearance (declared, else the lowest label); filled in by the
    /// caller.
    pub classification: Option<String>,
    /// In a classified project, the label of each stream an extractor sends to a loader, derived
    /// from the declarations (`*`: streams not known before a run); filled in by the caller.
    pub stream_labels: Vec<crate::classification::StreamLabel>,
    /// The organisation it belongs to (`annotations.dsm.source.organisation`); `null`: the
    /// platform's.
    pub organisation: Option<String>,
    /// Who besides its organisation sees it: the visibility of its classification label
    /// (declared, else the project's default; `own` when the labels do not hold together).
    #[serde(skip)]
    pub visibility: crate::project::annotations::Visibility,
    /// Its `config` block, sensitive values masked ([`mask_plugin_config`]).
    #[serde(skip)]
    pub config: Value,
}

/// Type and provider of plugins dsm knows, by (base) name. The built-in plugins first, then
/// common Singer connectors; anything else is judged by words in its name, then by the keywords
/// of its entry in dsm's catalog of known plugins.
const KNOWN: &[(&str, SourceType, &str)] = &[
    ("tap-csv", SourceType::File, "CSV files"),
    ("tap-jsonl", SourceType::File, "JSONL files"),
    ("tap-sqlite", SourceType::Database, "SQLite"),
    ("tap-rest", SourceType::Api, "REST API"),
    ("tap-webhook", SourceType::Webhook, "Webhooks"),
    ("target-jsonl", SourceType::File, "JSONL files"),
    ("target-csv", SourceType::File, "CSV files"),
    ("target-sqlite", SourceType::Database, "SQLite"),
    ("tap-postgres", SourceType::Database, "PostgreSQL"),
    ("target-postgres", SourceType::Database, "PostgreSQL"),
    ("tap-mysql", SourceType::Database, "MySQL"),
    ("tap-github", SourceType::Api, "GitHub"),
    ("tap-gitlab", SourceType::Api, "GitLab"),
    ("tap-salesforce", SourceType::Api, "Salesforce"),
    ("tap-stripe", SourceType::Api, "Stripe"),
    ("target-snowflake", SourceType::Warehouse, "Snowflake"),
    ("target-bigquery", SourceType::Warehouse, "BigQuery"),
    ("target-redshift", SourceType::Warehouse, "Redshift"),
    ("target-duckdb", SourceType::Warehouse, "DuckDB"),
];

/// The catalog's type and provider for a plugin name.
pub fn catalog_entry(name: &str) -> (SourceType, Option<&'static str>) {
    if let Some((_, t, p)) = KNOWN.iter().find(|(n, _, _)| *n == name) {
        return (*t, Some(p));
    }
    let words = [
        (
            &["csv", "jsonl", "parquet", "s3", "gcs", "sftp", "file"][..],
            SourceType::File,
        ),
        (
            &["postgres", "mysql", "mssql", "oracle", "mongodb", "sqlite"][..],
            SourceType::Database,
        ),
        (
            &["snowflake", "bigquery", "redshift", "databricks", "duckdb"][..],
            SourceType::Warehouse,
        ),
        (&["api", "rest", "graphql"][..], SourceType::Api),
    ];
    for (list, t) in words {
        if list.iter().any(|w| name.contains(w)) {
            return (t, None);
        }
    }
    (SourceType::Other, None)
}

impl From<SourceKind> for SourceType {
    fn from(kind: SourceKind) -> Self {
        match kind {
            SourceKind::File => SourceType::File,
            SourceKind::Database => SourceType::Database,
            SourceKind::Api => SourceType::Api,
            SourceKind::Warehouse => SourceType::Warehouse,
            SourceKind::Webhook => SourceType::Webhook,
            SourceKind::Other => SourceType::Other,
        }
    }
}

/// The name the catalog knows a plugin by: its own, or that of the plugin it inherits from (a
/// plugin of the project, or a known plugin named by `inherit_from` with a `variant`).
fn base_name<'a>(project: &'a Project, plugin: &'a Plugin) -> &'a str {
    let mut current = plugin;
    for _ in 0..16 {
        match current
            .parent
            .as_deref()
            .and_then(|p| project.plugin(p).ok())
        {
            Some(parent) => current = parent,
            None => break,
        }
    }
    current
        .raw
        .inherit_from
        .as_deref()
        .filter(|_| current.parent.is_none())
        .unwrap_or(&current.name)
}

/// The known plugin a project plugin is, judged by what it runs: a built-in plugin (its variant
/// `dsm`, or its executable a built-in one with nothing to install), else the catalog plugin
/// whose package it installs, else the plugin it inherits from or its own name when dsm knows
/// that name, else the catalog plugin whose namespace or executable it has, else its base name.
fn identity<'a>(project: &'a Project, plugin: &'a Plugin) -> &'a str {
    let exe = if plugin.executable.is_empty() {
        plugin.name.as_str()
    } else {
        plugin.executable.as_str()
    };
    let builtin =
        plugin.variant.as_deref() == Some(hub::BUILTIN_VARIANT) || plugin.pip_url.is_none();
    if builtin && let Some(b) = BUILTINS.iter().find(|b| **b == exe) {
        return b;
    }
    let ty = plugin.plugin_type;
    if let Some(k) = hub::identify(ty, plugin.pip_url.as_deref(), "", "") {
        return k.name;
    }
    let base = base_name(project, plugin);
    if KNOWN.iter().any(|(n, _, _)| *n == base) || !hub::variants(ty, base).is_empty() {
        return base;
    }
    hub::identify(ty, None, &plugin.namespace, exe).map_or(base, |k| k.name)
}

/// The type Meltano's index gives a known plugin by its keywords (`file`, `database`, `api`).
fn type_from_keywords(ty: PluginType, name: &str) -> Option<SourceType> {
    let known = hub::lookup(ty, name, None)?;
    let has = |w: &str| {
        known
            .summary
            .keywords
            .iter()
            .any(|k| k.eq_ignore_ascii_case(w))
    };
    if has("file") {
        Some(SourceType::File)
    } else if has("database") || has("db") {
        Some(SourceType::Database)
    } else if has("api") {
        Some(SourceType::Api)
    } else {
        None
    }
}

/// Describes one plugin.
pub fn describe(project: &Project, plugin: &Plugin) -> SourceInfo {
    let scheme = crate::classification::Scheme::of(project).ok();
    describe_with(project, scheme.as_ref(), plugin)
}

fn describe_with(
    project: &Project,
    scheme: Option<&crate::classification::Scheme>,
    plugin: &Plugin,
) -> SourceInfo {
    let annotation = plugin.annotations.source.clone().unwrap_or_default();
    let name = identity(project, plugin);
    let (mut cat_type, mut cat_provider) = catalog_entry(name);
    if cat_type == SourceType::Other
        && let Some(t) = type_from_keywords(plugin.plugin_type, name)
    {
        cat_type = t;
    }
    if cat_provider.is_none() {
        cat_provider =
            hub::lookup(plugin.plugin_type, name, None).and_then(|k| k.summary.label.as_deref());
    }
    SourceInfo {
        name: plugin.name.clone(),
        plugin_type: plugin.plugin_type.singular().to_owned(),
        source_type: annotation.kind.map_or(cat_type, SourceType::from),
        provider: annotation
            .provider
            .clone()
            .or(cat_provider.map(str::to_owned)),
        category: annotation.category.clone(),
        labels: annotation.labels.clone(),
        inherit_from: plugin
            .parent
            .clone()
            .or_else(|| plugin.raw.inherit_from.clone()),
        variant: plugin.variant.clone(),
        classification: None,
        stream_labels: Vec::new(),
        organisation: annotation.organisation.clone(),
        visibility: crate::classification::source_visibility(scheme, plugin),
        config: mask_plugin_config(plugin),
    }
}

/// Every extractor and loader of the project, extractors first, in file order.
pub fn project_sources(project: &Project) -> Vec<SourceInfo> {
    let scheme = crate::classification::Scheme::of(project).ok();
    [PluginType::Extractors, PluginType::Loaders]
        .into_iter()
        .flat_map(|ty| project.plugins_of(ty))
        .map(|p| describe_with(project, scheme.as_ref(), p))
        .collect()
}

/// Whether a config key names a secret (its value is never shown).
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "key",
        "credential",
        "private",
        "auth",
    ]
    .iter()
    .any(|w| k.contains(w))
}

/// A plugin's `config` block with its sensitive values replaced by `********`, by the one rule
/// of `settings::is_sensitive` (declared `sensitive`, kind `password`/`oauth`) for every
/// setting the plugin declares; a key it does not declare falls back to [`mask_config`]'s
/// name words, so an undeclared secret is not shown either. Variable references (`$TOKEN`)
/// are kept.
pub fn mask_plugin_config(plugin: &Plugin) -> Value {
    let masked = |v: &Value| match v {
        Value::String(s) if s.starts_with('$') => v.clone(),
        _ => Value::String("********".into()),
    };
    Value::Object(
        plugin
            .config
            .iter()
            .map(|(k, v)| {
                let shown = match plugin.setting(k) {
                    Some(def) if crate::settings::is_sensitive(def) => masked(v),
                    Some(_) => v.clone(),
                    None => {
                        let one = serde_json::json!({ k.clone(): v.clone() });
                        mask_config(&one)[k.as_str()].clone()
                    }
                };
                (k.clone(), shown)
            })
            .collect(),
    )
}

/// A copy of a config block with secret-looking values replaced by `********` (environment
/// variable references like `$TOKEN` are kept: they name where the secret lives, not the secret).
pub fn mask_config(config: &Value) -> Value {
    match config {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let masked = match v {
                        Value::String(s) if is_secret_key(k) && !s.starts_with('$') => {
                            Value::String("********".into())
                        }
                        Value::Object(_) | Value::Array(_) if is_secret_key(k) => {
                            Value::String("********".into())
                        }
                        Value::Number(_) | Value::Bool(_) if is_secret_key(k) => {
                            Value::String("********".into())
                        }
                        other => mask_config(other),
                    };
                    (k.clone(), masked)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(mask_config).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const YAML: &str = r#"
version: 1
plugins:
  extractors:
  - name: tap-github
    variant: meltanolabs
    config:
      repositories: [acme/api]
      auth_token: ghp_abcdef
      client: {private_key: xyz, id: 7}
    annotations:
      dsm:
        source: {type: api, provider: GitHub, category: engineering, labels: [prod, team-a]}
  - name: tap-github-staging
    inherit_from: tap-github
  - name: tap-postgres
  - name: tap-weird-thing
    annotations:
      other_tool: {x: 1}
  loaders:
  - name: target-jsonl
"#;

    fn project(yaml: &str) -> (tempfile::TempDir, Project) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("meltano.yml"), yaml).unwrap();
        let project = Project::load(dir.path()).unwrap();
        (dir, project)
    }

    #[test]
    fn registry_catalog_reads_annotations_inheritance_and_the_catalog() {
        let (_dir, p) = project(YAML);
        let all = project_sources(&p);
        let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "tap-github",
                "tap-github-staging",
                "tap-postgres",
                "tap-weird-thing",
                "target-jsonl"
            ]
        );
        let gh = &all[0];
        assert_eq!(gh.source_type, SourceType::Api);
        assert_eq!(gh.provider.as_deref(), Some("GitHub"));
        assert_eq!(gh.category.as_deref(), Some("engineering"));
        assert_eq!(gh.labels, ["prod", "team-a"]);
        // Inherits the parent's annotations.
        assert_eq!(all[1].labels, ["prod", "team-a"]);
        assert_eq!(all[1].inherit_from.as_deref(), Some("tap-github"));
        assert_eq!(all[2].source_type, SourceType::Database);
        assert_eq!(all[2].provider.as_deref(), Some("PostgreSQL"));
        assert_eq!(all[3].source_type, SourceType::Other);
        assert_eq!(all[4].plugin_type, "loader");
        assert_eq!(all[4].source_type, SourceType::File);
    }

    #[test]
    fn registry_catalog_masks_secret_config_values() {
        let (_dir, p) = project(YAML);
        let gh = &project_sources(&p)[0];
        assert_eq!(
            mask_config(&gh.config),
            json!({"repositories": ["acme/api"], "auth_token": "********", "client": {"private_key": "********", "id": 7}})
        );
        assert_eq!(
            mask_config(&json!({"api_key": "$GH_KEY"})),
            json!({"api_key": "$GH_KEY"})
        );
    }

    #[test]
    fn registry_catalog_guesses_types_from_names() {
        assert_eq!(catalog_entry("tap-s3-csv").0, SourceType::File);
        assert_eq!(catalog_entry("target-databricks").0, SourceType::Warehouse);
        assert_eq!(catalog_entry("tap-mongodb").0, SourceType::Database);
        assert_eq!(catalog_entry("tap-zendesk").0, SourceType::Other);
    }
}

//! What each source and destination is: type, provider, data category and labels, from the
//! plugin's `annotations.dsm.source` in `meltano.yml` or, failing that, dsm's small catalog of
//! known plugins.
//!
//! Until the project model serves this, the plugin lists are read straight from `meltano.yml`
//! (`plugins.extractors` and `plugins.loaders`; Meltano ignores `annotations`, so the block is
//! safe to add to a project Meltano also runs).
//!
//! ```yaml
//! plugins:
//!   extractors:
//!   - name: tap-github
//!     annotations:
//!       dsm:
//!         source: {type: api, provider: GitHub, category: engineering, labels: [prod]}
//! ```

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// The broad kind of a source or destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
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
    /// Anything else.
    Other,
}

impl SourceType {
    /// The word shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceType::File => "file",
            SourceType::Database => "database",
            SourceType::Api => "api",
            SourceType::Warehouse => "warehouse",
            SourceType::Other => "other",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "file" => SourceType::File,
            "database" | "db" => SourceType::Database,
            "api" => SourceType::Api,
            "warehouse" => SourceType::Warehouse,
            "other" => SourceType::Other,
            _ => return None,
        })
    }
}

/// One extractor or loader of the project, as the registry describes it.
#[derive(Debug, Clone, Serialize)]
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
    /// Its `config` block as written (mask it before showing it).
    #[serde(skip)]
    pub config: Value,
}

/// Type and provider of plugins dsm knows, by (base) name. The built-in plugins first, then
/// common Singer connectors; anything else is judged by words in its name.
const KNOWN: &[(&str, SourceType, &str)] = &[
    ("tap-csv", SourceType::File, "CSV files"),
    ("tap-jsonl", SourceType::File, "JSONL files"),
    ("tap-sqlite", SourceType::Database, "SQLite"),
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

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn describe(plugin: &Value, plugin_type: &str, parents: &[SourceInfo]) -> Option<SourceInfo> {
    let name = plugin.get("name").and_then(text)?;
    let inherit_from = plugin.get("inherit_from").and_then(text);
    let annotation = plugin.pointer("/annotations/dsm/source");
    let base = inherit_from.as_deref().unwrap_or(&name);
    let parent = parents
        .iter()
        .find(|p| Some(&p.name) == inherit_from.as_ref());
    let (cat_type, cat_provider) = catalog_entry(base);
    let source_type = annotation
        .and_then(|a| a.get("type"))
        .and_then(Value::as_str)
        .and_then(SourceType::parse)
        .or(parent.map(|p| p.source_type))
        .unwrap_or(cat_type);
    let field = |key: &str| annotation.and_then(|a| a.get(key)).and_then(text);
    let labels = match annotation.and_then(|a| a.get("labels")) {
        Some(Value::Array(items)) => items.iter().filter_map(text).collect(),
        Some(v) => text(v).into_iter().collect(),
        None => parent.map(|p| p.labels.clone()).unwrap_or_default(),
    };
    Some(SourceInfo {
        provider: field("provider")
            .or_else(|| parent.and_then(|p| p.provider.clone()))
            .or(cat_provider.map(str::to_owned)),
        category: field("category").or_else(|| parent.and_then(|p| p.category.clone())),
        labels,
        variant: plugin.get("variant").and_then(text),
        config: plugin.get("config").cloned().unwrap_or(Value::Null),
        name,
        plugin_type: plugin_type.to_owned(),
        source_type,
        inherit_from,
    })
}

/// Every extractor and loader in a project file's text.
pub fn sources_from_yaml(yaml: &str) -> Result<Vec<SourceInfo>> {
    let doc: Value = serde_saphyr::from_str(yaml).map_err(|e| {
        Error::config(format!("cannot read meltano.yml: {e}"))
            .hint("`dsm validate` shows what is wrong with the project file")
    })?;
    let mut out: Vec<SourceInfo> = Vec::new();
    for (key, plugin_type) in [("extractors", "extractor"), ("loaders", "loader")] {
        let Some(Value::Array(plugins)) = doc.pointer(&format!("/plugins/{key}")) else {
            continue;
        };
        for plugin in plugins {
            if let Some(info) = describe(plugin, plugin_type, &out) {
                out.push(info);
            }
        }
    }
    Ok(out)
}

/// Every extractor and loader of the project at `root`.
pub fn project_sources(root: &Path) -> Result<Vec<SourceInfo>> {
    let path = root.join(crate::project::PROJECT_FILE);
    let yaml = std::fs::read_to_string(&path)
        .map_err(|e| Error::config(format!("cannot read `{}`: {e}", path.display())))?;
    sources_from_yaml(&yaml)
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

    #[test]
    fn registry_catalog_reads_annotations_inheritance_and_the_catalog() {
        let all = sources_from_yaml(YAML).unwrap();
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
        let gh = &sources_from_yaml(YAML).unwrap()[0];
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
    fn registry_catalog_reports_a_broken_project_file() {
        let err = sources_from_yaml("plugins: [unclosed").unwrap_err();
        assert!(
            err.message().starts_with("cannot read meltano.yml"),
            "{}",
            err.message()
        );
    }
}

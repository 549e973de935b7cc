//! The tap's catalog for a run: the project's own `catalog`, or `--discover` output cached under
//! `.dsm/run/<extractor>/`, with the plugin's `select` patterns marked in its metadata.
//!
//! This is the simple form of Meltano's selection (stream and top-level property globs, `!`
//! excludes, `automatic` always and `unsupported` never selected); `src/catalog/` replaces it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::plugin::{PluginSpec, RunDir};
use crate::project::{Plugin, Project};

/// One `select` pattern split into stream and property globs.
struct Pattern {
    exclude: bool,
    stream: globset::GlobMatcher,
    property: globset::GlobMatcher,
}

fn glob(text: &str) -> Result<globset::GlobMatcher> {
    globset::Glob::new(text)
        .map(|g| g.compile_matcher())
        .map_err(|e| Error::config(format!("invalid select pattern `{text}`: {e}")))
}

fn patterns(select: &[String]) -> Result<Vec<Pattern>> {
    select
        .iter()
        .map(|raw| {
            let (exclude, body) = match raw.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, raw.as_str()),
            };
            let (stream, property) = split_pattern(body);
            Ok(Pattern {
                exclude,
                stream: glob(&stream)?,
                property: glob(&property)?,
            })
        })
        .collect()
}

/// `stream.prop` on the first unescaped dot (`\.` is a literal dot); a bare stream means `stream.*`.
fn split_pattern(p: &str) -> (String, String) {
    let mut stream = String::new();
    let mut chars = p.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'.') => {
                stream.push_str("[.]");
                chars.next();
            }
            '.' => return (stream, chars.collect()),
            other => stream.push(other),
        }
    }
    (stream, "*".to_string())
}

fn stream_name(entry: &Value) -> String {
    entry
        .get("tap_stream_id")
        .or_else(|| entry.get("stream"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Marks `selected` in every stream's metadata according to `select` (Meltano's default `*.*`).
pub fn apply_select(catalog: &mut Value, select: &[String]) -> Result<()> {
    let pats = patterns(select)?;
    let included = |stream: &str, prop: Option<&str>| -> bool {
        let matches = |p: &Pattern| {
            p.stream.is_match(stream) && prop.is_none_or(|prop| p.property.is_match(prop))
        };
        pats.iter().any(|p| !p.exclude && matches(p))
            && !pats.iter().any(|p| {
                // `!stream` (or `!stream.*`) excludes the whole stream; `!stream.prop` one property.
                p.exclude
                    && p.stream.is_match(stream)
                    && match prop {
                        Some(prop) => p.property.is_match(prop),
                        None => p.property.is_match("*") && p.property.glob().glob() == "*",
                    }
            })
    };
    let Some(streams) = catalog.get_mut("streams").and_then(Value::as_array_mut) else {
        return Ok(());
    };
    for entry in streams {
        let name = stream_name(entry);
        let props: Vec<String> = entry
            .pointer("/schema/properties")
            .and_then(Value::as_object)
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        let Some(obj) = entry.as_object_mut() else {
            continue;
        };
        let metadata = obj
            .entry("metadata")
            .or_insert_with(|| Value::Array(Vec::new()));
        let Some(list) = metadata.as_array_mut() else {
            continue;
        };
        // Missing entries are created: one for the stream and one per top-level property.
        let has = |list: &Vec<Value>, crumb: &Value| {
            list.iter().any(|m| m.get("breadcrumb") == Some(crumb))
        };
        if !has(list, &json!([])) {
            list.push(json!({"breadcrumb": [], "metadata": {}}));
        }
        for p in &props {
            let crumb = json!(["properties", p]);
            if !has(list, &crumb) {
                list.push(json!({"breadcrumb": crumb, "metadata": {}}));
            }
        }
        let stream_selected = included(&name, None);
        for m in list.iter_mut() {
            let crumb: Vec<String> = m
                .get("breadcrumb")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) else {
                continue;
            };
            let inclusion = meta.get("inclusion").and_then(Value::as_str).unwrap_or("");
            let selected = match (inclusion, crumb.as_slice()) {
                ("unsupported", _) => false,
                ("automatic", _) => stream_selected || crumb.is_empty(),
                (_, []) => stream_selected,
                (_, [kw, prop]) if kw == "properties" => {
                    stream_selected && included(&name, Some(prop))
                }
                _ => stream_selected,
            };
            if crumb.is_empty() && inclusion == "automatic" {
                meta.insert("selected".into(), Value::Bool(stream_selected));
            } else {
                meta.insert("selected".into(), Value::Bool(selected));
            }
        }
    }
    Ok(())
}

/// Where a run's catalog comes from.
pub struct CatalogInputs<'a> {
    /// The project.
    pub project: &'a Project,
    /// The extractor.
    pub plugin: &'a Plugin,
    /// The extractor's spec (config, env), used to run `--discover`.
    pub spec: &'a PluginSpec,
    /// Re-run discovery even when a cached catalog matches.
    pub refresh: bool,
    /// The run's private directory.
    pub run_dir: &'a RunDir,
}

/// The catalog file to pass to the tap, written into the run directory.
pub fn prepare(inputs: &CatalogInputs<'_>) -> Result<PathBuf> {
    let CatalogInputs {
        project,
        plugin,
        spec,
        refresh,
        run_dir,
    } = inputs;
    let mut catalog = match &plugin.catalog {
        Some(path) => {
            let path = project.root().join(path);
            read_json(&path).map_err(|e| {
                e.hint(format!(
                    "the `catalog` of extractor `{}` must be a Singer catalog file",
                    plugin.name
                ))
            })?
        }
        None => discovered(project, plugin, spec, *refresh, run_dir)?,
    };
    let select = plugin
        .select
        .clone()
        .unwrap_or_else(|| vec!["*.*".to_string()]);
    apply_select(&mut catalog, &select)?;
    let path = run_dir.path().join(format!("{}.catalog.json", spec.name));
    write_private(&path, &catalog)?;
    Ok(path)
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::config(format!("could not read `{}`: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::config(format!("`{}` is not valid JSON: {e}", path.display())))
}

fn write_private(path: &Path, value: &Value) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(&serde_json::to_vec(value).map_err(|e| Error::failed(e.to_string()))?)?;
    Ok(())
}

fn discovered(
    project: &Project,
    plugin: &Plugin,
    spec: &PluginSpec,
    refresh: bool,
    run_dir: &RunDir,
) -> Result<Value> {
    let dir = project.root().join(".dsm/run").join(&plugin.name);
    let cache = dir.join("tap.properties.json");
    let key_file = dir.join("tap.properties.key");
    let key = {
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(&spec.config).unwrap_or_default());
        h.update(serde_json::to_vec(&plugin.schema).unwrap_or_default());
        h.update(serde_json::to_vec(&plugin.metadata).unwrap_or_default());
        h.update(spec.executable.display().to_string().as_bytes());
        hex::encode(h.finalize())
    };
    let use_cache = !refresh && plugin.use_cached_catalog != Some(false);
    if use_cache
        && std::fs::read_to_string(&key_file).is_ok_and(|k| k.trim() == key)
        && let Ok(v) = read_json(&cache)
    {
        tracing::debug!(plugin = %plugin.name, "using the cached catalog");
        return Ok(v);
    }
    let mut cmd = Command::new(&spec.executable);
    if let Some(config) = &spec.config {
        let path = run_dir.write_config(&spec.name, config)?;
        cmd.arg("--config").arg(path);
    }
    cmd.arg("--discover");
    for k in &spec.env_remove {
        cmd.env_remove(k);
    }
    cmd.envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    let out = cmd.output().map_err(|e| {
        Error::failed(format!(
            "could not start extractor `{}` (`{}`) for discovery: {e}",
            plugin.name,
            spec.executable.display()
        ))
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut err = Error::failed(format!(
            "catalog discovery of extractor `{}` failed ({})",
            plugin.name, out.status
        ));
        let lines: Vec<&str> = stderr.lines().collect();
        for line in &lines[lines.len().saturating_sub(20)..] {
            err = err.detail(format!("| {line}"));
        }
        return Err(err.hint("supply a catalog with `catalog:` in meltano.yml to skip discovery"));
    }
    let catalog: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        Error::failed(format!(
            "extractor `{}` printed a catalog that is not JSON: {e}",
            plugin.name
        ))
    })?;
    std::fs::create_dir_all(&dir)?;
    write_private(&cache, &catalog)?;
    std::fs::write(&key_file, &key)?;
    Ok(catalog)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Value {
        json!({"streams": [
            {"tap_stream_id": "users", "schema": {"properties": {"id": {}, "email": {}}},
             "metadata": [{"breadcrumb": ["properties", "id"], "metadata": {"inclusion": "automatic"}}]},
            {"tap_stream_id": "orders", "schema": {"properties": {"id": {}}}}
        ]})
    }

    fn selected(c: &Value, stream: usize, crumb: Value) -> bool {
        c["streams"][stream]["metadata"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["breadcrumb"] == crumb)
            .unwrap()["metadata"]["selected"]
            .as_bool()
            .unwrap()
    }

    #[test]
    fn bare_stream_selects_its_properties_and_others_are_deselected() {
        let mut c = catalog();
        apply_select(&mut c, &["users".into()]).unwrap();
        assert!(selected(&c, 0, json!([])));
        assert!(selected(&c, 0, json!(["properties", "email"])));
        assert!(!selected(&c, 1, json!([])));
    }

    #[test]
    fn excludes_drop_a_property_but_automatic_stays() {
        let mut c = catalog();
        apply_select(
            &mut c,
            &["*.*".into(), "!users.email".into(), "!users.id".into()],
        )
        .unwrap();
        assert!(selected(&c, 0, json!([])));
        assert!(!selected(&c, 0, json!(["properties", "email"])));
        assert!(selected(&c, 0, json!(["properties", "id"])));
        assert!(selected(&c, 1, json!([])));
    }
}

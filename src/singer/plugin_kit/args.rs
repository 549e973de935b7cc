//! The command line every Singer program shares, and reading the files it names.

use super::*;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// The arguments every Singer tap and target accepts.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PluginArgs {
    /// `--about`: describe the plugin and exit.
    pub about: bool,
    /// `--format json|markdown|text` for `--about`.
    pub format: Option<String>,
    /// `--discover`: print the catalog and exit.
    pub discover: bool,
    /// `--config FILE` (repeatable; later files override earlier keys).
    pub config: Vec<PathBuf>,
    /// `--catalog FILE` or the legacy `--properties FILE`.
    pub catalog: Option<PathBuf>,
    /// `--state FILE`.
    pub state: Option<PathBuf>,
    /// `--input FILE` (targets: read this instead of stdin).
    pub input: Option<PathBuf>,
    /// `--version`.
    pub version: bool,
    /// `--help`.
    pub help: bool,
}

impl PluginArgs {
    /// Parses arguments (without the program name).
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Self, PluginError> {
        let mut out = PluginArgs::default();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
                _ => (arg.clone(), None),
            };
            let mut value = |name: &str| -> Result<String, PluginError> {
                match inline.clone().or_else(|| it.next()) {
                    Some(v) => Ok(v),
                    None => Err(PluginError::Usage(format!("`{name}` needs a value"))),
                }
            };
            match flag.as_str() {
                "--about" => out.about = true,
                "--discover" => out.discover = true,
                "--version" | "-v" => out.version = true,
                "--help" | "-h" => out.help = true,
                "--format" => out.format = Some(value("--format")?),
                "--config" | "-c" => out.config.push(PathBuf::from(value("--config")?)),
                "--catalog" => out.catalog = Some(PathBuf::from(value("--catalog")?)),
                "--properties" | "-p" => {
                    out.catalog = Some(PathBuf::from(value("--properties")?));
                }
                "--state" | "-s" => out.state = Some(PathBuf::from(value("--state")?)),
                "--input" => out.input = Some(PathBuf::from(value("--input")?)),
                other => return Err(PluginError::Usage(format!("unknown argument `{other}`"))),
            }
        }
        Ok(out)
    }

    /// Reads and merges the `--config` files (an empty object when there are none).
    pub fn load_config(&self) -> Result<Map<String, Value>, PluginError> {
        let mut merged = Map::new();
        for path in &self.config {
            match read_json(path, "config")? {
                Value::Object(obj) => merged.extend(obj),
                _ => {
                    return Err(PluginError::config(format!(
                        "config file `{}` must hold a JSON object",
                        path.display()
                    )));
                }
            }
        }
        Ok(merged)
    }

    /// Reads the `--catalog`/`--properties` file, when given.
    pub fn load_catalog(&self) -> Result<Option<Value>, PluginError> {
        self.catalog
            .as_deref()
            .map(|p| read_json(p, "catalog"))
            .transpose()
    }

    /// Reads the `--state` file, when given (an empty file counts as no state).
    pub fn load_state(&self) -> Result<Value, PluginError> {
        match &self.state {
            None => Ok(Value::Null),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    PluginError::config(format!("cannot read state file `{}`: {e}", p.display()))
                })?;
                if text.trim().is_empty() {
                    return Ok(Value::Null);
                }
                serde_json::from_str(&text).map_err(|e| {
                    PluginError::config(format!(
                        "state file `{}` is not valid JSON: {e}",
                        p.display()
                    ))
                })
            }
        }
    }
}

/// Reads a JSON file, naming it and its role in any error.
pub fn read_json(path: &Path, role: &str) -> Result<Value, PluginError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        PluginError::config(format!("cannot read {role} file `{}`: {e}", path.display()))
    })?;
    serde_json::from_str(&text).map_err(|e| {
        PluginError::config(format!(
            "{role} file `{}` is not valid JSON: {e}",
            path.display()
        ))
    })
}

/// Expands a path or glob (relative to the working directory) into sorted file paths.
pub fn expand_glob(pattern: &str) -> Result<Vec<PathBuf>, PluginError> {
    let has_meta = pattern.contains(['*', '?', '[', '{']);
    if !has_meta {
        return Ok(vec![PathBuf::from(pattern)]);
    }
    let glob = globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| PluginError::config(format!("bad glob `{pattern}`: {e}")))?
        .compile_matcher();
    // Walk from the longest directory prefix without glob characters.
    let base: PathBuf = {
        let mut b = PathBuf::new();
        for comp in Path::new(pattern).components() {
            let s = comp.as_os_str().to_string_lossy();
            if s.contains(['*', '?', '[', '{']) {
                break;
            }
            b.push(comp);
        }
        if b.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            b
        }
    };
    let mut found = Vec::new();
    let mut stack = vec![base.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = if base == Path::new(".") {
                    path.strip_prefix("./").unwrap_or(&path).to_path_buf()
                } else {
                    path.clone()
                };
                if glob.is_match(&rel) {
                    found.push(rel);
                }
            }
        }
    }
    found.sort();
    if found.is_empty() {
        return Err(PluginError::config_hint(
            format!("no file matches `{pattern}`"),
            "paths and globs are relative to the directory the plugin runs in",
        ));
    }
    Ok(found)
}

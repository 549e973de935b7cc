//! Reading the project file and its included files: schema validation, Meltano's keys dsm
//! does not model, and merging included files into one project.

use super::*;

use std::path::{Path, PathBuf};

use serde_json::Value as J;

/// Reads, validates and types one file; problems go to `diags`.
pub(super) fn read_file(
    text: &str,
    rel: &Path,
    diags: &mut Vec<Diagnostic>,
) -> (yaml::Node, ProjectFile) {
    let tree = match yaml::parse(text) {
        Ok(t) => t,
        Err(e) => {
            diags.push(Diagnostic::error(
                "invalid-yaml",
                rel,
                e.pos,
                format!("{} is not valid YAML: {}", rel.display(), e.message),
                Some("check the indentation and quoting around that position".into()),
            ));
            return (
                yaml::Node {
                    value: yaml::Value::Map(Vec::new()),
                    pos: Pos::default(),
                },
                ProjectFile::default(),
            );
        }
    };
    let mut ok = true;
    for v in schema::validate(&tree) {
        let severity = match extra_key(&v) {
            Some(Extra::Known) => continue,
            Some(Extra::Unknown) => Severity::Warning,
            None => {
                ok = false;
                Severity::Error
            }
        };
        let hint = match severity {
            Severity::Warning => Some(format!(
                "Meltano accepts it and dsm ignores it; {}",
                v.hint.as_deref().unwrap_or("remove it if it is a typo")
            )),
            Severity::Error => v.hint,
        };
        diags.push(Diagnostic {
            code: v.code,
            severity,
            file: rel.to_path_buf(),
            pos: Some(v.pos),
            message: v.message,
            hint,
        });
    }
    let json = tree.to_json();
    let file = if ok {
        match serde_json::from_value::<ProjectFile>(json) {
            Ok(f) => f,
            Err(e) => {
                diags.push(Diagnostic::error(
                    "unreadable-project",
                    rel,
                    None,
                    format!(
                        "cannot read the project: {}",
                        without_values(&e.to_string())
                    ),
                    None,
                ));
                ProjectFile::default()
            }
        }
    } else {
        // Keep what can be read so later checks still run.
        lenient(json)
    };
    (tree, file)
}

/// What a key outside dsm's schema is, where Meltano accepts keys of its own choosing.
pub(super) enum Extra {
    /// A key Meltano or its lock files know (`keywords`, `maintenance_status`, ...) or a
    /// `_`-prefixed one: accepted without a word.
    Known,
    /// Any other key: accepted with a warning (it may be a typo).
    Unknown,
}

/// Keys of plugin definitions (hub entries, lock files) that Meltano accepts and dsm has no use
/// for.
pub(super) const MELTANO_PLUGIN_KEYS: &[&str] = &[
    "hidden",
    "keywords",
    "maintenance_status",
    "supported_python_versions",
    "domain_url",
    "quality",
    "default_variant",
    "variants",
    "original",
    "update",
    "definition",
];

/// Whether an `unknown-key` violation is a key Meltano accepts anyway: on a plugin, on a
/// plugin's setting, on a schedule or at the top of the file (Meltano keeps those as extras);
/// never inside `annotations.dsm`, an environment or a job, which Meltano or dsm reject.
pub(super) fn extra_key(v: &schema::Violation) -> Option<Extra> {
    static PLACE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    if v.code != "unknown-key" {
        return None;
    }
    let re = PLACE.get_or_init(|| {
        regex::Regex::new(
            r"^(?:plugins\.[a-z]+\[\d+\]\.(?:settings\[\d+\]\.)?|schedules\[\d+\]\.)?([^.\[\]]+)$",
        )
        .expect("a valid pattern")
    });
    let key = re.captures(&v.path)?.get(1)?.as_str();
    let on_plugin = v.path.starts_with("plugins.") && !v.path.contains(".settings[");
    if key.starts_with('_') || (on_plugin && MELTANO_PLUGIN_KEYS.contains(&key)) {
        Some(Extra::Known)
    } else {
        Some(Extra::Unknown)
    }
}

/// A deserialiser's message without the values it quotes (`invalid type: string "..."`,
/// `unknown variant `...``): the value may be a secret from a plugin's config.
pub(super) fn without_values(message: &str) -> String {
    static QUOTED: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = QUOTED.get_or_init(|| {
        regex::Regex::new(
            r#"(string|integer|floating point|char|byte array|variant|value) (?:"(?:[^"\\]|\\.)*"|`[^`]*`|-?[0-9][0-9.eE+-]*)"#,
        )
        .expect("a valid pattern")
    });
    re.replace_all(message, "$1").into_owned()
}

/// Best effort typing of a document with structural errors: drops sections that do not fit.
pub(super) fn lenient(json: J) -> ProjectFile {
    let J::Object(map) = json else {
        return ProjectFile::default();
    };
    let mut out = serde_json::Map::new();
    for (k, v) in map {
        let mut probe = serde_json::Map::new();
        probe.insert(k.clone(), v.clone());
        if serde_json::from_value::<ProjectFile>(J::Object(probe)).is_ok() {
            out.insert(k, v);
        }
    }
    serde_json::from_value(J::Object(out)).unwrap_or_default()
}

/// The files the main file's `include_paths` (in its parsed `tree`) name, relative to the root,
/// in the order they are read; globs that match nothing are left out.
pub(crate) fn included_files(root: &Path, tree: &yaml::Node) -> Vec<PathBuf> {
    let globs: Vec<String> = tree
        .get("include_paths")
        .map(yaml::Node::to_json)
        .and_then(|j| serde_json::from_value(j).ok())
        .unwrap_or_default();
    includes(root, &globs, &mut Vec::new())
        .into_iter()
        .map(|(path, _)| path)
        .collect()
}

/// The files matched by `include_paths`, relative to the root, each with the glob that matched.
pub(super) fn includes(
    root: &Path,
    globs: &[String],
    diags: &mut Vec<Diagnostic>,
) -> Vec<(PathBuf, String)> {
    let mut out: Vec<(PathBuf, String)> = Vec::new();
    for pattern in globs {
        let glob = match globset::GlobBuilder::new(pattern.trim_start_matches("./"))
            .literal_separator(true)
            .build()
        {
            Ok(g) => g.compile_matcher(),
            Err(e) => {
                diags.push(Diagnostic::error(
                    "invalid-glob",
                    Path::new(PROJECT_FILE),
                    None,
                    format!("`include_paths` entry `{pattern}` is not a valid glob: {e}"),
                    None,
                ));
                continue;
            }
        };
        let mut matched: Vec<PathBuf> = Vec::new();
        walk(root, root, &mut |rel| {
            if glob.is_match(rel) {
                matched.push(rel.to_path_buf());
            }
        });
        matched.sort();
        if matched.is_empty() {
            diags.push(Diagnostic::error(
                "glob-matches-nothing",
                Path::new(PROJECT_FILE),
                None,
                format!("`include_paths` entry `{pattern}` matches no file"),
                Some(
                    "paths are relative to the project root, for example `./extract/*.meltano.yml`"
                        .into(),
                ),
            ));
        }
        for m in matched {
            if m != Path::new(PROJECT_FILE) && !out.iter().any(|(p, _)| p == &m) {
                out.push((m, pattern.clone()));
            }
        }
    }
    out
}

pub(super) fn walk(root: &Path, dir: &Path, f: &mut dyn FnMut(&Path)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(std::fs::DirEntry::path);
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name != "." || name == "target" || name == "node_modules" {
            continue;
        }
        if path.is_dir() {
            walk(root, &path, f);
        } else if let Ok(rel) = path.strip_prefix(root) {
            f(rel);
        }
    }
}

/// Merges an included file into the main one like Meltano: lists are appended, `env` is merged;
/// the same plugin, environment, job or schedule defined twice is an error.
pub(super) fn merge_included(
    main: &mut ProjectFile,
    inc: ProjectFile,
    path: &Path,
    _glob: &str,
    diags: &mut Vec<Diagnostic>,
) {
    let mut dup = |what: &str, name: &str| {
        diags.push(Diagnostic::error(
            "duplicate-definition",
            path,
            None,
            format!("{what} `{name}` is defined both here and in another project file"),
            Some("keep one definition".into()),
        ));
    };
    for ty in PluginType::ALL {
        for p in inc.plugins.of(ty).clone() {
            if main.plugins.of(ty).iter().any(|q| q.name == p.name) {
                dup(ty.singular(), &p.name);
            } else {
                main.plugins.of_mut(ty).push(p);
            }
        }
    }
    for e in inc.environments {
        if main.environments.iter().any(|q| q.name == e.name) {
            dup("environment", &e.name);
        } else {
            main.environments.push(e);
        }
    }
    for j in inc.jobs {
        if main.jobs.iter().any(|q| q.name == j.name) {
            dup("job", &j.name);
        } else {
            main.jobs.push(j);
        }
    }
    for s in inc.schedules {
        if main.schedules.iter().any(|q| q.name == s.name) {
            dup("schedule", &s.name);
        } else {
            main.schedules.push(s);
        }
    }
    for (k, v) in inc.env {
        main.env.entry(k).or_insert(v);
    }
}

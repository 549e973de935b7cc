//! `import-env`: moving plaintext secrets out of a project's `.env` into the encrypted store.
//!
//! Only simple one-line assignments are moved (`NAME=value`, optionally `export`-prefixed and
//! quoted), which is what Meltano's `meltano config set` writes. Every other line, comments and
//! blank lines included, is kept byte for byte.

use std::path::Path;

use serde::Serialize;
use zeroize::Zeroizing;

use super::error::SecretsError;
use super::key::MasterKey;
use super::sensitive::is_sensitive;
use super::{Secret, store};
use crate::store::Store;

type Result<T, E = SecretsError> = std::result::Result<T, E>;

/// A variable moved into the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Moved {
    /// The variable, e.g. `TAP_GITHUB_AUTH_TOKEN`.
    pub variable: String,
    /// The plugin it belongs to.
    pub plugin: String,
    /// The setting, e.g. `auth_token`.
    pub setting: String,
}

/// What `import-env` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EnvImport {
    /// Variables now in the store and gone from `.env`.
    pub moved: Vec<Moved>,
    /// Sensitive-looking variables left in `.env`, with the reason.
    pub skipped: Vec<(String, String)>,
}

/// A parsed `NAME=value` line.
struct Assignment {
    name: String,
    value: Zeroizing<String>,
}

/// Parses one line as a simple assignment; `None` for comments, blanks and anything else.
fn parse_line(line: &str) -> Option<Result<Assignment, String>> {
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return None;
    }
    let body = trimmed.strip_prefix("export ").unwrap_or(trimmed);
    let (name, raw) = body.split_once('=')?;
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let raw = raw.trim();
    let value = match raw.chars().next() {
        Some(q @ ('"' | '\'')) => {
            if raw.len() < 2 || !raw.ends_with(q) {
                return Some(Err(format!(
                    "`{name}` has a multi-line or unterminated quoted value"
                )));
            }
            let inner = &raw[1..raw.len() - 1];
            if q == '"' && inner.contains('\\') {
                return Some(Err(format!("`{name}` has escape sequences")));
            }
            inner.to_string()
        }
        _ => raw
            .split_once(" #")
            .map_or(raw, |(v, _)| v)
            .trim_end()
            .to_string(),
    };
    Some(Ok(Assignment {
        name: name.to_string(),
        value: Zeroizing::new(value),
    }))
}

/// The environment-variable prefix of a plugin, the way Meltano builds it (`tap-github` →
/// `TAP_GITHUB_`).
pub fn env_prefix(plugin: &str) -> String {
    let mut prefix: String = plugin
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    prefix.push('_');
    prefix
}

/// The plugin and setting a variable belongs to: the longest matching plugin prefix wins (so
/// `tap-github-org` beats `tap-github`).
fn owner(variable: &str, plugins: &[String]) -> Option<(String, String)> {
    plugins
        .iter()
        .filter_map(|p| {
            let rest = variable.strip_prefix(&env_prefix(p))?;
            (!rest.is_empty()).then(|| (p.clone(), rest.to_ascii_lowercase()))
        })
        .max_by_key(|(p, _)| p.len())
}

/// Moves the sensitive assignments of `env_file` that belong to one of `plugins` into the store,
/// then rewrites the file without them (atomically, keeping its permissions). `declared` says
/// whether a plugin's setting is declared sensitive. Values are stored before the file is
/// rewritten, so an interruption leaves them in both places, never in neither.
/// Variables the project files refer to (`${NAME}` or `$NAME`) stay in `.env` with a
/// reason: moved into the store, those references would expand to nothing. `referenced` is,
/// by file name, the variables each file expands.
pub fn import_env(
    db: &dyn Store,
    key: &MasterKey,
    env_file: &Path,
    plugins: &[String],
    declared: &dyn Fn(&str, &str) -> bool,
    command: &str,
    referenced: &[(String, Vec<String>)],
) -> Result<EnvImport> {
    let io = |e| SecretsError::io(format!("cannot read `{}`", env_file.display()), e);
    let text = Zeroizing::new(std::fs::read_to_string(env_file).map_err(io)?);
    let mut report = EnvImport::default();
    let mut kept = Zeroizing::new(String::with_capacity(text.len()));
    for line in text.split_inclusive('\n') {
        let Some(parsed) = parse_line(line.trim_end_matches(['\n', '\r'])) else {
            kept.push_str(line);
            continue;
        };
        let assignment = match parsed {
            Ok(a) => a,
            Err(reason) => {
                let name = line.split('=').next().unwrap_or("").trim().to_string();
                if is_sensitive(&name, false) {
                    report.skipped.push((name, reason));
                }
                kept.push_str(line);
                continue;
            }
        };
        let owner = owner(&assignment.name, plugins);
        let sensitive = match &owner {
            Some((plugin, setting)) => is_sensitive(&assignment.name, declared(plugin, setting)),
            None => is_sensitive(&assignment.name, false),
        };
        if !sensitive {
            kept.push_str(line);
            continue;
        }
        let Some((plugin, setting)) = owner else {
            report.skipped.push((
                assignment.name,
                "it belongs to no plugin in meltano.yml".to_string(),
            ));
            kept.push_str(line);
            continue;
        };
        if let Some(file) = referenced
            .iter()
            .find(|(_, names)| names.contains(&assignment.name))
            .map(|(file, _)| file)
        {
            report.skipped.push((
                assignment.name.clone(),
                format!(
                    "`{file}` refers to it as `${{{}}}`, which would expand to nothing once it left `.env`; set `{setting}` of `{plugin}` with `dsm config set` and drop the reference, then import again",
                    assignment.name
                ),
            ));
            kept.push_str(line);
            continue;
        }
        let value = Secret::new(assignment.value.to_string());
        store::set_secret(db, key, &plugin, &setting, &value, command)?;
        report.moved.push(Moved {
            variable: assignment.name,
            plugin,
            setting,
        });
    }
    if !report.moved.is_empty() {
        rewrite(env_file, kept.as_bytes())?;
    }
    Ok(report)
}

/// Replaces `path` with `contents` through a temporary file in the same directory, keeping the
/// original's permissions.
fn rewrite(path: &Path, contents: &[u8]) -> Result<()> {
    let io = |e| SecretsError::io(format!("cannot rewrite `{}`", path.display()), e);
    // The file must exist; it keeps its permissions.
    std::fs::metadata(path).map_err(io)?;
    crate::files::replace_atomically(path, contents, crate::files::Mode::Keep).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_sensitive_lines_and_keeps_everything_else_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::SqliteStore::open(&dir.path().join("dsm.db")).unwrap();
        let key = MasterKey::generate();
        let env = dir.path().join(".env");
        std::fs::write(
            &env,
            "# comment\nTAP_GITHUB_AUTH_TOKEN='ghp_abc'\nTAP_GITHUB_REPOSITORIES=[\"a/b\"]\n\n\
             export TARGET_PG_PASSWORD=pw123 # inline\nTARGET_PG_ACCOUNT=acct\nOTHER_API_KEY=zzz\n",
        )
        .unwrap();
        let plugins = vec!["tap-github".to_string(), "target-pg".to_string()];
        let declared = |plugin: &str, setting: &str| plugin == "target-pg" && setting == "account";
        let report = import_env(
            &conn,
            &key,
            &env,
            &plugins,
            &declared,
            "dsm secrets import-env",
            &[],
        )
        .unwrap();
        let moved: Vec<_> = report
            .moved
            .iter()
            .map(|m| (m.plugin.as_str(), m.setting.as_str()))
            .collect();
        assert_eq!(
            moved,
            [
                ("tap-github", "auth_token"),
                ("target-pg", "password"),
                ("target-pg", "account")
            ]
        );
        assert_eq!(report.skipped.len(), 1);
        assert_eq!(report.skipped[0].0, "OTHER_API_KEY");
        assert_eq!(
            std::fs::read_to_string(&env).unwrap(),
            "# comment\nTAP_GITHUB_REPOSITORIES=[\"a/b\"]\n\nOTHER_API_KEY=zzz\n"
        );
        let get = |p, s| {
            store::get_secret(&conn, &key, p, s)
                .unwrap()
                .unwrap()
                .expose()
                .to_string()
        };
        assert_eq!(get("tap-github", "auth_token"), "ghp_abc");
        assert_eq!(get("target-pg", "password"), "pw123");
        assert_eq!(get("target-pg", "account"), "acct");
    }

    #[test]
    fn the_longest_plugin_prefix_owns_a_variable() {
        let plugins = vec!["tap-github".to_string(), "tap-github-org".to_string()];
        assert_eq!(
            owner("TAP_GITHUB_ORG_TOKEN", &plugins),
            Some(("tap-github-org".to_string(), "token".to_string()))
        );
        assert_eq!(owner("TAP_GITLAB_TOKEN", &plugins), None);
    }

    #[test]
    fn unterminated_quotes_are_left_alone() {
        assert!(matches!(parse_line("A_TOKEN=\"abc"), Some(Err(_))));
        assert!(parse_line("# A_TOKEN=x").is_none());
    }
}

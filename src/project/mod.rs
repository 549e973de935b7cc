//! `meltano.yml`: the model, environments, inheritance, includes, validation.

use std::path::{Path, PathBuf};

use crate::envvars;
use crate::error::{Error, Result};

/// The project file's name, as in Meltano.
pub const PROJECT_FILE: &str = "meltano.yml";

/// dsm's private folder in a project (holds the system store, plugin environments, run logs).
pub const PRIVATE_DIR: &str = ".dsm";

/// Finds the project root the way Meltano does: `DSM_PROJECT_ROOT` (or `MELTANO_PROJECT_ROOT`)
/// when set, else the first directory from `start` upward that holds a `meltano.yml`.
pub fn find_root(start: &Path) -> Result<PathBuf> {
    for var in [envvars::PROJECT_ROOT, envvars::MELTANO_PROJECT_ROOT] {
        if let Some(dir) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            let dir = start.join(dir);
            if dir.join(PROJECT_FILE).is_file() {
                return Ok(dir);
            }
            return Err(Error::config(format!(
                "`{var}` points at `{}`, which has no {PROJECT_FILE}",
                dir.display()
            ))
            .hint(format!("unset `{var}` or point it at a project directory")));
        }
    }
    let mut dir = Some(start);
    while let Some(d) = dir {
        if d.join(PROJECT_FILE).is_file() {
            return Ok(d.to_path_buf());
        }
        dir = d.parent();
    }
    Err(Error::config(format!(
        "no {PROJECT_FILE} found in `{}` or any directory above it",
        start.display()
    ))
    .hint("run dsm inside a project, pass `--cwd DIR`, or create one with `dsm init`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_project_from_a_subdirectory() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(PROJECT_FILE), "version: 1\n").unwrap();
        let sub = tmp.path().join("a/b");
        std::fs::create_dir_all(&sub).unwrap();
        assert_eq!(find_root(&sub).unwrap(), tmp.path());
    }

    #[test]
    fn no_project_is_a_config_error_with_a_hint() {
        let tmp = tempfile::tempdir().unwrap();
        let err = find_root(tmp.path()).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.hints()[0].contains("dsm init"));
    }
}

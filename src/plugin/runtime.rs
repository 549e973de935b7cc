//! The private per-run directory holding plugin config files.
//!
//! Plugin config (which carries secrets) reaches a plugin only through a file that its owner alone
//! can read, in a 0700 directory named after the owning dsm process. The directory is removed when
//! the run ends, also on failure (a guard with `Drop`), and a later run removes directories whose
//! owning process is dead (a run killed with SIGKILL cannot clean up after itself).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::envvars;

const PREFIX: &str = "dsm-run-";

/// Where private run directories go: `$DSM_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR`, else
/// `fallback` (the project's `.dsm/run/`).
pub fn runtime_base(fallback: &Path) -> PathBuf {
    for var in [envvars::RUNTIME_DIR, envvars::XDG_RUNTIME_DIR] {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            return PathBuf::from(v);
        }
    }
    fallback.to_path_buf()
}

/// A private directory for one run; removed with everything in it when dropped.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Creates `<base>/dsm-run-<pid>-<uuid>` with mode 0700, creating `base` (0700) if needed,
    /// after removing leftovers of dead runs in `base`.
    pub fn create(base: &Path) -> io::Result<RunDir> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(base)?;
        remove_stale(base);
        let name = format!("{PREFIX}{}-{}", std::process::id(), uuid::Uuid::new_v4());
        let path = base.join(name);
        fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(RunDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `config` as `<plugin>.json`, readable and writable by the owner only (0600).
    pub fn write_config(&self, plugin: &str, config: &serde_json::Value) -> io::Result<PathBuf> {
        let safe: String = plugin
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut path = self.path.join(format!("{safe}.config.json"));
        let mut n = 1;
        while path.exists() {
            n += 1;
            path = self.path.join(format!("{safe}-{n}.config.json"));
        }
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        let bytes = serde_json::to_vec(config).expect("a JSON value always serialises");
        // No fsync: the child reads the file through the page cache and the file is removed
        // when the run ends, so forcing it to disk would only slow every start (and put the
        // secrets it holds on the disk sooner).
        file.write_all(&bytes)?;
        Ok(path)
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if let Err(error) = fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), %error, "could not remove the run directory");
        }
    }
}

/// Removes `dsm-run-<pid>-*` directories in `base` whose process is gone.
fn remove_stale(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || super::sys::process_alive(pid) {
            continue;
        }
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            match fs::remove_dir_all(entry.path()) {
                Ok(()) => {
                    tracing::info!(path = %entry.path().display(), "removed the run directory of a dead run")
                }
                Err(error) => {
                    tracing::warn!(path = %entry.path().display(), %error, "could not remove a stale run directory")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn config_is_private_and_removed_with_the_guard() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("run");
        let dir = RunDir::create(&base).unwrap();
        let mode = fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let file = dir
            .write_config("tap-x", &serde_json::json!({"token": "s3cret"}))
            .unwrap();
        let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let second = dir.write_config("tap-x", &serde_json::json!({})).unwrap();
        assert_ne!(file, second);
        let path = dir.path().to_path_buf();
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn leftovers_of_dead_runs_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = tmp.path().join(format!("{PREFIX}{dead}-old"));
        let live = tmp.path().join(format!("{PREFIX}1-old"));
        let other = tmp.path().join("unrelated");
        for d in [&stale, &live, &other] {
            fs::create_dir(d).unwrap();
        }
        let _dir = RunDir::create(tmp.path()).unwrap();
        assert!(!stale.exists());
        assert!(live.exists(), "pid 1 is alive");
        assert!(other.exists());
    }
}

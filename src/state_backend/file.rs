//! `file://` state backends: Meltano's layout in a local folder. Writes go through a temporary
//! file in the same folder, so a reader never sees half a file: renamed over the old one, or
//! linked into place when the file must not exist yet (the lock), which fails if it does.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use super::{Condition, Object, Objects, sigv4::sha256_hex};
use crate::error::{Error, Result};

/// A folder of state ids.
#[derive(Debug)]
pub struct FileObjects {
    uri: String,
    base: PathBuf,
}

impl FileObjects {
    /// The folder of `file:///absolute/path` (Meltano takes the URI's path and ignores its host;
    /// dsm refuses a host other than `localhost` rather than guess).
    pub fn new(uri: &str) -> Result<FileObjects> {
        let rest = uri.strip_prefix("file://").unwrap_or(uri);
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if (!host.is_empty() && host != "localhost") || path.is_empty() {
            return Err(Error::config(format!(
                "state backend `{uri}` does not name an absolute folder"
            ))
            .hint("write `file:///absolute/path/to/state` (three slashes)"));
        }
        Ok(FileObjects {
            uri: uri.to_owned(),
            base: PathBuf::from(path),
        })
    }

    fn path(&self, key: &str) -> PathBuf {
        key.split('/')
            .fold(self.base.clone(), |p, part| p.join(part))
    }

    fn io_error(&self, what: &str, path: &Path, e: &std::io::Error) -> Error {
        Error::failed(format!(
            "cannot {what} `{}` in state backend `{}`: {e}",
            path.display(),
            self.uri
        ))
        .hint("check that the folder exists and that this user may write to it")
    }
}

impl Objects for FileObjects {
    fn describe(&self) -> String {
        self.uri.clone()
    }

    fn get(&self, key: &str) -> Result<Option<Object>> {
        let path = self.path(key);
        match std::fs::read(&path) {
            Ok(body) => Ok(Some(Object {
                version: sha256_hex(&body),
                body,
            })),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io_error("read", &path, &e)),
        }
    }

    fn put(&self, key: &str, body: &[u8], condition: &Condition) -> Result<bool> {
        let path = self.path(key);
        let dir = path.parent().unwrap_or(&self.base);
        std::fs::create_dir_all(dir).map_err(|e| self.io_error("create", dir, &e))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".dsm-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|e| self.io_error("write in", dir, &e))?;
        tmp.write_all(body)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| self.io_error("write", tmp.path(), &e))?;
        match condition {
            Condition::IfAbsent => match tmp.persist_noclobber(&path) {
                Ok(_) => Ok(true),
                Err(e) if e.error.kind() == ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(self.io_error("create", &path, &e.error)),
            },
            Condition::IfMatch(version) => {
                // Files have no compare-and-swap: the lock makes writers take turns, and this
                // check catches a writer that ignored it since the state was read.
                match self.get(key)? {
                    Some(current) if current.version == *version => {}
                    _ => return Ok(false),
                }
                tmp.persist(&path)
                    .map_err(|e| self.io_error("replace", &path, &e.error))?;
                Ok(true)
            }
            Condition::None => {
                tmp.persist(&path)
                    .map_err(|e| self.io_error("replace", &path, &e.error))?;
                Ok(true)
            }
        }
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io_error("delete", &path, &e)),
        }
    }

    fn list(&self) -> Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.base) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io_error("list", &self.base, &e)),
        };
        let mut keys = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.io_error("list", &self.base, &e))?;
            let Some(id) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            for file in [super::STATE_FILE, super::LOCK_FILE] {
                if entry.path().join(file).is_file() {
                    keys.push(format!("{id}/{file}"));
                }
            }
        }
        Ok(keys)
    }

    fn tidy(&self, state_id: &str) {
        // Only an empty folder goes: one that still holds a lock or someone's file stays.
        let _ = std::fs::remove_dir(self.base.join(state_id));
    }
}

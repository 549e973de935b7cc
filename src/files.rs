//! Writing files the one way dsm writes them: owner-only files and folders for anything under
//! `.dsm/` or holding secrets (0600 files, 0700 folders), and atomic replacement of files others
//! read while dsm writes them.
//!
//! Atomic replacement writes a temporary file beside the target and renames it over the target,
//! so a reader never sees half a file. Only a regular file is replaced that way: a symlink keeps
//! pointing where it did (the file it names is replaced), and a device, FIFO or socket
//! (`/dev/stdout`, `/dev/null`) is written through, never replaced by a regular file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// Owner-only permissions for files.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Owner-only permissions for folders.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Creates a folder and its missing parents readable by their owner only (0700): the store,
/// logs, run folders and quarantine files under `.dsm/` are nobody else's business.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(path)
}

/// Writes `bytes` to `path`, creating it readable and writable by its owner only (0600) or
/// truncating it.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(PRIVATE_FILE_MODE)
        .open(path)?;
    file.write_all(bytes)
}

/// Opens `path` for appending, creating it owner-only (0600): logs and quarantined records.
pub fn append_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(PRIVATE_FILE_MODE)
        .open(path)
}

/// The permissions a file replaced by [`replace_atomically`] ends up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Those of the file replaced; a new file is owner-only (0600).
    Keep,
    /// These, whatever the file had.
    Set(u32),
}

/// Replaces the content of `path` with `bytes` atomically (see the module documentation for
/// symlinks and files that are not regular). The data is synced before the rename.
pub fn replace_atomically(path: &Path, bytes: &[u8], mode: Mode) -> io::Result<()> {
    let through = |create: bool| -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .truncate(true)
            .create(create)
            .open(path)?;
        f.write_all(bytes)
    };
    match fs::metadata(path) {
        // A device, FIFO or socket, directly or behind a symlink.
        Ok(meta) if !meta.is_file() && !meta.is_dir() => through(false),
        // A regular file behind a symlink: replace the file, keep the link.
        Ok(meta) if meta.is_file() && path.is_symlink() => {
            replace_regular(&fs::canonicalize(path)?, bytes, mode)
        }
        // A symlink to nothing yet: create the file it names.
        Err(_) if path.is_symlink() => through(true),
        _ => replace_regular(path, bytes, mode),
    }
}

/// [`replace_atomically`] for a path that is a regular file or does not exist.
fn replace_regular(path: &Path, bytes: &[u8], mode: Mode) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.as_deref().unwrap_or("dsm")))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    let permissions = match mode {
        Mode::Set(bits) => Some(fs::Permissions::from_mode(bits)),
        Mode::Keep => fs::metadata(path).ok().map(|m| m.permissions()),
    };
    if let Some(p) = permissions {
        fs::set_permissions(tmp.path(), p)?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_files_and_folders_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        create_private_dir(&sub).unwrap();
        assert_eq!(mode_of(&sub), 0o700);
        assert_eq!(mode_of(&dir.path().join("a")), 0o700);
        let file = sub.join("f");
        write_private(&file, b"one").unwrap();
        write_private(&file, b"2").unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"2");
        assert_eq!(mode_of(&file), 0o600);
        let log = sub.join("log");
        append_private(&log).unwrap().write_all(b"x").unwrap();
        append_private(&log).unwrap().write_all(b"y").unwrap();
        assert_eq!(fs::read(&log).unwrap(), b"xy");
        assert_eq!(mode_of(&log), 0o600);
    }

    #[test]
    fn replacing_keeps_or_sets_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        replace_atomically(&file, b"new", Mode::Keep).unwrap();
        assert_eq!(mode_of(&file), 0o600);
        fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).unwrap();
        replace_atomically(&file, b"again", Mode::Keep).unwrap();
        assert_eq!(
            (fs::read(&file).unwrap(), mode_of(&file)),
            (b"again".to_vec(), 0o640)
        );
        replace_atomically(&file, b"shared", Mode::Set(0o644)).unwrap();
        assert_eq!(mode_of(&file), 0o644);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_symlink_is_kept_and_the_file_it_names_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        let link = dir.path().join("link");
        fs::write(&real, "old").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        replace_atomically(&link, b"new", Mode::Keep).unwrap();
        assert!(link.is_symlink());
        assert_eq!(fs::read_to_string(&real).unwrap(), "new");
        // A dangling link gets the file it names.
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("later"), &dangling).unwrap();
        replace_atomically(&dangling, b"made", Mode::Keep).unwrap();
        assert!(dangling.is_symlink());
        assert_eq!(
            fs::read_to_string(dir.path().join("later")).unwrap(),
            "made"
        );
    }

    #[test]
    fn a_device_is_written_through_not_replaced() {
        replace_atomically(Path::new("/dev/null"), b"discarded", Mode::Keep).unwrap();
        assert!(!fs::metadata("/dev/null").unwrap().is_file());
    }
}

//! Finding and creating the master key: `DSM_MASTER_KEY`, then a key file readable by its owner
//! only (`DSM_MASTER_KEY_FILE`, else the project's own `<user config dir>/dsm/keys/<project_id>.key`,
//! else the shared `<user config dir>/dsm/master.key` of projects without a `project_id`), then
//! the OS keyring. Each key has a key id (see [`MasterKey::key_id`]); a store names the id it
//! needs, so a lookup never settles for another project's key.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use super::error::SecretsError;
use super::key::MasterKey;
use crate::envvars;

type Result<T, E = SecretsError> = std::result::Result<T, E>;

/// Keyring service and account names under which `dsm secrets init --keyring` stores the key.
pub const KEYRING_SERVICE: &str = "dsm";
/// See [`KEYRING_SERVICE`].
pub const KEYRING_USER: &str = "master-key";

/// Where a master key came from (shown in messages, never the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The `DSM_MASTER_KEY` variable.
    Env,
    /// A key file.
    File(PathBuf),
    /// The OS keyring.
    Keyring,
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Env => write!(f, "`{}`", envvars::MASTER_KEY),
            KeySource::File(path) => write!(f, "key file `{}`", path.display()),
            KeySource::Keyring => f.write_str("the OS keyring"),
        }
    }
}

/// An OS keyring reached through `keyring-core`.
#[derive(Clone)]
pub struct Keyring {
    store: Arc<keyring_core::CredentialStore>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keyring({})", self.store.vendor())
    }
}

fn keyring_error(e: &keyring_core::Error) -> String {
    // Only the kind: some variants carry the stored bytes, which must not be shown.
    match e {
        keyring_core::Error::NoEntry => "no entry".to_string(),
        keyring_core::Error::NoStorageAccess(_) => {
            "the keyring is locked or not accessible".to_string()
        }
        keyring_core::Error::PlatformFailure(p) => format!("platform failure: {p}"),
        keyring_core::Error::BadEncoding(_) | keyring_core::Error::BadDataFormat(..) => {
            "the stored entry is not a key".to_string()
        }
        _ => "the keyring refused the request".to_string(),
    }
}

impl Keyring {
    /// A keyring backed by `store` (the platform's, or `keyring_core::mock` in tests).
    pub fn new(store: Arc<keyring_core::CredentialStore>) -> Self {
        Keyring { store }
    }

    /// The platform keyring, or why there is none. On Linux a secret service needs a D-Bus
    /// session bus; without one (a headless server) this answers at once instead of waiting for
    /// a bus timeout.
    pub fn platform() -> Result<Keyring, String> {
        #[cfg(target_os = "linux")]
        {
            if !session_bus_reachable() {
                return Err(
                    "no D-Bus session bus (a headless machine has no secret service)".to_string(),
                );
            }
            within(
                "the secret service",
                dbus_secret_service_keyring_store::Store::new,
            )?
            .map(|store| Keyring::new(store))
            .map_err(|e| format!("the secret service is not reachable: {}", keyring_error(&e)))
        }
        #[cfg(not(target_os = "linux"))]
        Err("this build has no OS keyring store for this platform".to_string())
    }

    fn entry(&self) -> Result<keyring_core::Entry> {
        self.store
            .build(KEYRING_SERVICE, KEYRING_USER, None)
            .map_err(|e| SecretsError::KeyringUnavailable(keyring_error(&e)))
    }

    /// The key stored in the keyring, `None` when there is none.
    pub fn load(&self) -> Result<Option<MasterKey>> {
        let this = self.clone();
        within("the OS keyring", move || this.load_now())
            .map_err(SecretsError::KeyringUnavailable)?
    }

    fn load_now(&self) -> Result<Option<MasterKey>> {
        match self.entry()?.get_password() {
            Ok(text) => {
                let text = Zeroizing::new(text);
                MasterKey::from_base64(&text)
                    .map(Some)
                    .map_err(|e| SecretsError::BadKey {
                        source_name: KeySource::Keyring.to_string(),
                        reason: e.to_string(),
                    })
            }
            Err(keyring_core::Error::NoEntry) => Ok(None),
            Err(e) => Err(SecretsError::KeyringUnavailable(keyring_error(&e))),
        }
    }

    /// Stores `key`; refuses to replace an existing one.
    pub fn store(&self, key: &MasterKey) -> Result<()> {
        if self.load()?.is_some() {
            return Err(SecretsError::KeyExists(KeySource::Keyring.to_string()));
        }
        let entry = self.entry()?;
        let text = key.to_base64();
        within("the OS keyring", move || entry.set_password(&text))
            .map_err(SecretsError::KeyringUnavailable)?
            .map_err(|e| SecretsError::KeyringUnavailable(keyring_error(&e)))
    }
}

/// How long dsm waits for the OS keyring. A session bus that accepts connections but never
/// answers (a hung daemon, a stale socket forwarded over SSH) would otherwise block dsm for
/// good; past this the keyring counts as unavailable and the lookup goes on.
const KEYRING_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `f` on its own thread and gives up waiting after [`KEYRING_TIMEOUT`]. A thread left
/// blocked in a D-Bus call ends with the process.
fn within<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::result::Result<T, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("keyring".into())
        .spawn(move || {
            // The receiver is gone when the wait timed out; nothing is left to tell.
            let _ = tx.send(f());
        })
        .map_err(|e| format!("cannot ask {what}: {e}"))?;
    rx.recv_timeout(KEYRING_TIMEOUT).map_err(|_| {
        format!(
            "{what} did not answer within {} s",
            KEYRING_TIMEOUT.as_secs()
        )
    })
}

/// Whether a D-Bus session bus can be connected to right now (a quick, local check).
#[cfg(target_os = "linux")]
fn session_bus_reachable() -> bool {
    let Some(address) = std::env::var_os("DBUS_SESSION_BUS_ADDRESS") else {
        return false;
    };
    let address = address.to_string_lossy();
    address.split(';').any(|part| {
        let Some(rest) = part.strip_prefix("unix:") else {
            return false;
        };
        rest.split(',').any(|kv| match kv.split_once('=') {
            Some(("path", path)) => std::os::unix::net::UnixStream::connect(path).is_ok(),
            _ => false,
        })
    })
}

/// Where the key is looked for. [`KeyLookup::from_env`] reads the process environment; tests
/// build one by hand.
#[derive(Debug, Clone, Default)]
pub struct KeyLookup {
    /// The value of `DSM_MASTER_KEY`.
    pub env_value: Option<Zeroizing<String>>,
    /// The value of `DSM_MASTER_KEY_FILE` (must exist when set).
    pub key_file: Option<PathBuf>,
    /// The project's own key file, `<user config dir>/dsm/keys/<project_id>.key` (skipped when
    /// absent or when the project has no `project_id`).
    pub project_file: Option<PathBuf>,
    /// The folder of per-project key files, searched for a key with the id a store needs (a
    /// project copied under another name, a rotation interrupted before its new key file was
    /// moved into place).
    pub keys_dir: Option<PathBuf>,
    /// The shared key file of dsm before per-project keys (skipped when absent).
    pub default_file: Option<PathBuf>,
    /// The keyring to ask last, if any.
    pub keyring: Option<Keyring>,
    /// Why there is no keyring (reported when no key is found).
    pub keyring_unavailable: Option<String>,
}

fn config_dir() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|d| d.config_dir().join("dsm"))
}

/// The key file shared by every project without a `project_id`:
/// `<user config dir>/dsm/master.key`.
pub fn default_key_file() -> Option<PathBuf> {
    config_dir().map(|d| d.join("master.key"))
}

/// The folder of per-project key files: `<user config dir>/dsm/keys`.
pub fn keys_dir() -> Option<PathBuf> {
    config_dir().map(|d| d.join("keys"))
}

/// The file name of the key of the project with `project_id`: the id itself when it is a plain
/// name (letters, digits, `-`, `_`, `.`, as `dsm init`'s UUIDs are), else a hash of it, so no
/// id can name a path outside the folder.
pub fn project_key_file_name(project_id: &str) -> String {
    let plain = !project_id.is_empty()
        && project_id.len() <= 128
        && !project_id.starts_with('.')
        && project_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if plain {
        format!("{project_id}.key")
    } else {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(project_id.as_bytes());
        format!("{}.key", hex::encode(&digest[..16]))
    }
}

/// The key file of the project with `project_id`, in [`keys_dir`].
pub fn project_key_file(project_id: &str) -> Option<PathBuf> {
    keys_dir().map(|d| d.join(project_key_file_name(project_id)))
}

/// Whether a file in [`keys_dir`] may hold a key: `*.key`, and a rotation's staged `*.key.new`.
fn is_key_file_name(name: &str) -> bool {
    name.ends_with(".key") || name.ends_with(".key.new")
}

impl KeyLookup {
    /// The lookup dsm uses outside a project: the environment, the shared default file, the
    /// platform keyring.
    pub fn from_env() -> Self {
        let (keyring, keyring_unavailable) = match Keyring::platform() {
            Ok(k) => (Some(k), None),
            Err(why) => (None, Some(why)),
        };
        KeyLookup {
            env_value: std::env::var(envvars::MASTER_KEY)
                .ok()
                .filter(|v| !v.is_empty())
                .map(Zeroizing::new),
            key_file: std::env::var_os(envvars::MASTER_KEY_FILE)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            project_file: None,
            keys_dir: keys_dir(),
            default_file: default_key_file(),
            keyring,
            keyring_unavailable,
        }
    }

    /// The lookup for the project with `project_id` (`None`: a project without one): as
    /// [`KeyLookup::from_env`], with the project's own key file before the shared one.
    pub fn for_project(project_id: Option<&str>) -> Self {
        KeyLookup {
            project_file: project_id.and_then(project_key_file),
            ..KeyLookup::from_env()
        }
    }

    /// Finds a key, in order: the variable, the key file, the project's key file, the shared
    /// key file, the keyring.
    pub fn find(&self) -> Result<(MasterKey, KeySource)> {
        self.find_for(None)
    }

    /// Finds the key with id `wanted` (any key when `None`: a store that has none yet). The
    /// variable and `DSM_MASTER_KEY_FILE` are taken as they are (the store's check tells a
    /// wrong one); the other places are skipped when they hold another key, and the folder of
    /// per-project key files is searched for one with the wanted id.
    pub fn find_for(&self, wanted: Option<&str>) -> Result<(MasterKey, KeySource)> {
        let mut tried = Vec::new();
        if let Some(text) = &self.env_value {
            let key = MasterKey::from_base64(text).map_err(|e| SecretsError::BadKey {
                source_name: KeySource::Env.to_string(),
                reason: e.to_string(),
            })?;
            return Ok((key, KeySource::Env));
        }
        tried.push(format!("`{}` (not set)", envvars::MASTER_KEY));
        if let Some(path) = &self.key_file {
            return Ok((read_key_file(path)?, KeySource::File(path.clone())));
        }
        tried.push(format!("`{}` (not set)", envvars::MASTER_KEY_FILE));
        let fits = |key: &MasterKey| wanted.is_none_or(|id| key.key_id() == id);
        let file = |path: &Path, tried: &mut Vec<String>| -> Result<Option<MasterKey>> {
            if !path.exists() {
                tried.push(format!("`{}` (no such file)", path.display()));
                return Ok(None);
            }
            let key = read_key_file(path)?;
            if fits(&key) {
                return Ok(Some(key));
            }
            tried.push(format!(
                "`{}` (holds key id {})",
                path.display(),
                key.key_id()
            ));
            Ok(None)
        };
        if let Some(path) = &self.project_file
            && let Some(key) = file(path, &mut tried)?
        {
            return Ok((key, KeySource::File(path.clone())));
        }
        if let (Some(id), Some(dir)) = (wanted, &self.keys_dir)
            && let Some((key, path)) = search_dir(dir, id, self.project_file.as_deref())
        {
            return Ok((key, KeySource::File(path)));
        }
        if wanted.is_some()
            && let Some(dir) = &self.keys_dir
        {
            tried.push(format!("the other key files in `{}`", dir.display()));
        }
        if let Some(path) = &self.default_file
            && let Some(key) = file(path, &mut tried)?
        {
            return Ok((key, KeySource::File(path.clone())));
        }
        match &self.keyring {
            Some(keyring) => match keyring.load() {
                Ok(Some(key)) if fits(&key) => return Ok((key, KeySource::Keyring)),
                Ok(Some(key)) => {
                    tried.push(format!("the OS keyring (holds key id {})", key.key_id()))
                }
                Ok(None) => tried.push("the OS keyring (no dsm entry)".to_string()),
                Err(e) => tried.push(format!("the OS keyring ({e})")),
            },
            None => tried.push(format!(
                "the OS keyring ({})",
                self.keyring_unavailable
                    .as_deref()
                    .unwrap_or("not available")
            )),
        }
        match wanted {
            None => Err(SecretsError::NoKey { tried }),
            Some(id) => Err(SecretsError::MissingKeyId {
                key_id: id.to_string(),
                tried,
                put_at: self
                    .project_file
                    .clone()
                    .or_else(|| self.default_file.clone()),
            }),
        }
    }
}

/// A key file in `dir` (other than `skip`, already tried) holding the key with id `wanted`.
/// Files that cannot be read, or that others could read, are passed over.
fn search_dir(dir: &Path, wanted: &str, skip: Option<&Path>) -> Option<(MasterKey, PathBuf)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            Some(p.as_path()) != skip
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(is_key_file_name)
        })
        .collect();
    paths.sort();
    paths.into_iter().find_map(|path| {
        let key = read_key_file(&path).ok()?;
        (key.key_id() == wanted).then_some((key, path))
    })
}

/// Reads a key file, refusing one that other users could read or that belongs to someone else.
pub fn read_key_file(path: &Path) -> Result<MasterKey> {
    let io = |e| SecretsError::io(format!("cannot read key file `{}`", path.display()), e);
    let meta = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SecretsError::KeyFileMissing(path.to_path_buf()));
        }
        other => other.map_err(io)?,
    };
    check_private(path, &meta)?;
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
    MasterKey::from_base64(&text).map_err(|e| SecretsError::BadKey {
        source_name: KeySource::File(path.to_path_buf()).to_string(),
        reason: e.to_string(),
    })
}

#[cfg(unix)]
fn check_private(path: &Path, meta: &std::fs::Metadata) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretsError::KeyFilePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    // The owner of /proc/self is the process's user: no unsafe getuid() needed.
    if let Ok(me) = std::fs::metadata("/proc/self")
        && me.uid() != meta.uid()
    {
        return Err(SecretsError::KeyFileOwner {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _meta: &std::fs::Metadata) -> Result<()> {
    Ok(())
}

/// Writes a new key file readable by its owner only (mode 0600, created so; never widened
/// first), creating its directory with mode 0700. Refuses to overwrite an existing file.
pub fn write_key_file(path: &Path, key: &MasterKey) -> Result<()> {
    let io = |e| SecretsError::io(format!("cannot write key file `{}`", path.display()), e);
    if path.exists() {
        return Err(SecretsError::KeyExists(format!("`{}`", path.display())));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::files::create_private_dir(dir).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io)?;
    let mut text = key.to_base64();
    text.push('\n');
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_key_wins_over_files_and_keyring() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("k");
        let file_key = MasterKey::generate();
        write_key_file(&file, &file_key).unwrap();
        let env_key = MasterKey::generate();
        let lookup = KeyLookup {
            env_value: Some(env_key.to_base64()),
            key_file: Some(file.clone()),
            ..KeyLookup::default()
        };
        assert_eq!(lookup.find().unwrap(), (env_key, KeySource::Env));
        let lookup = KeyLookup {
            env_value: None,
            ..lookup
        };
        assert_eq!(lookup.find().unwrap(), (file_key, KeySource::File(file)));
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_readable_by_others_is_refused_with_a_chmod_hint() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("master.key");
        write_key_file(&file, &MasterKey::generate()).unwrap();
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_key_file(&file).unwrap_err();
        assert!(matches!(
            err,
            SecretsError::KeyFilePermissions { mode: 0o644, .. }
        ));
        let err = crate::error::Error::from(err);
        assert_eq!(err.exit_code(), 2);
        assert!(err.hints()[0].contains("chmod 600"), "{:?}", err.hints());
    }

    #[test]
    fn no_key_anywhere_lists_the_places_tried() {
        let tmp = tempfile::tempdir().unwrap();
        let lookup = KeyLookup {
            default_file: Some(tmp.path().join("absent.key")),
            keyring_unavailable: Some("no D-Bus session bus".to_string()),
            ..KeyLookup::default()
        };
        let SecretsError::NoKey { tried } = lookup.find().unwrap_err() else {
            panic!("expected NoKey");
        };
        assert_eq!(tried.len(), 4);
        assert!(tried[3].contains("no D-Bus session bus"));
    }

    #[test]
    fn a_store_gets_the_key_with_its_id_or_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = tmp.path().join("keys");
        let (mine, other, old) = (
            MasterKey::generate(),
            MasterKey::generate(),
            MasterKey::generate(),
        );
        write_key_file(&keys.join("mine.key"), &mine).unwrap();
        write_key_file(&keys.join("other.key"), &other).unwrap();
        write_key_file(&tmp.path().join("master.key"), &old).unwrap();
        let lookup = KeyLookup {
            project_file: Some(keys.join("mine.key")),
            keys_dir: Some(keys.clone()),
            default_file: Some(tmp.path().join("master.key")),
            ..KeyLookup::default()
        };
        // A store without a key takes the project's own; one that needs another id gets it
        // from wherever it is, never the project's file holding a different key.
        assert_eq!(lookup.find().unwrap().0, mine);
        assert_eq!(lookup.find_for(Some(&mine.key_id())).unwrap().0, mine);
        let (key, source) = lookup.find_for(Some(&other.key_id())).unwrap();
        assert_eq!(
            (key, source),
            (other, KeySource::File(keys.join("other.key")))
        );
        assert_eq!(lookup.find_for(Some(&old.key_id())).unwrap().0, old);
        let missing = MasterKey::generate().key_id();
        let SecretsError::MissingKeyId {
            key_id,
            tried,
            put_at,
        } = lookup.find_for(Some(&missing)).unwrap_err()
        else {
            panic!("expected MissingKeyId");
        };
        assert_eq!(key_id, missing);
        assert_eq!(put_at, Some(keys.join("mine.key")));
        assert!(
            tried.iter().any(|t| t.contains(&mine.key_id())),
            "{tried:?}"
        );
        let err = crate::error::Error::from(SecretsError::MissingKeyId {
            key_id,
            tried,
            put_at,
        });
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains(&missing), "{err}");
    }

    #[test]
    fn a_project_id_never_names_a_file_outside_the_keys_folder() {
        assert_eq!(
            project_key_file_name("4b5e1b1e-0000-4000-8000-000000000001"),
            "4b5e1b1e-0000-4000-8000-000000000001.key"
        );
        for id in ["../../etc/passwd", "a/b", "..", "", "x y"] {
            let name = project_key_file_name(id);
            assert!(
                !name.contains('/') && !name.starts_with('.') && name.ends_with(".key"),
                "{id:?} -> {name}"
            );
        }
        assert_ne!(project_key_file_name("a/b"), project_key_file_name("a/c"));
    }

    #[test]
    fn a_malformed_env_key_is_a_clear_error() {
        let lookup = KeyLookup {
            env_value: Some(Zeroizing::new("c2hvcnQ=".to_string())),
            ..KeyLookup::default()
        };
        let err = lookup.find().unwrap_err().to_string();
        assert!(
            err.contains("DSM_MASTER_KEY") && err.contains("5 bytes"),
            "{err}"
        );
    }

    #[test]
    fn the_keyring_is_asked_last_and_init_does_not_overwrite() {
        let keyring = Keyring::new(keyring_core::mock::Store::new().unwrap());
        let key = MasterKey::generate();
        keyring.store(&key).unwrap();
        assert!(matches!(
            keyring.store(&MasterKey::generate()),
            Err(SecretsError::KeyExists(_))
        ));
        let lookup = KeyLookup {
            keyring: Some(keyring),
            ..KeyLookup::default()
        };
        assert_eq!(lookup.find().unwrap(), (key, KeySource::Keyring));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_missing_session_bus_is_detected_without_waiting() {
        // Runs on CI's headless machine; the check must not block on a bus timeout.
        let started = std::time::Instant::now();
        let _ = session_bus_reachable();
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }
}

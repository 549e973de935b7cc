//! `dsm export` / `dsm import`: the whole system store as one versioned bundle.
//!
//! A bundle is a JSON document holding a consistent SQLite copy of the store (taken with the
//! online backup API) and its SHA-256. Secrets stay encrypted: under the master key, or, with a
//! passphrase, re-encrypted on the copy under a key derived with Argon2id, so the bundle can be
//! restored where the original master key is not available. The audit chain travels with them.

use std::path::{Path, PathBuf};

use aes_gcm::aead::{OsRng, rand_core::RngCore};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::audit::{self, Entry};
use super::error::SecretsError;
use super::key::{KEY_LEN, MasterKey};
use super::{Secret, store};
use crate::store::{SqliteStore, Store};

type Result<T, E = SecretsError> = std::result::Result<T, E>;

/// The `format` field of every bundle.
pub const FORMAT: &str = "dsm-bundle";
/// The bundle version this build writes and reads (2: authenticated with a key; version 1
/// had only an unkeyed checksum and is refused).
pub const VERSION: u32 = 2;

/// The most Argon2id memory a bundle may ask for (KiB: 1 GiB), iterations and lanes: a
/// bundle is untrusted input, checked before anything is allocated.
const MAX_M_COST: u32 = 1024 * 1024;
const MAX_T_COST: u32 = 10;
const MAX_P_COST: u32 = 8;

/// How the secrets in a bundle are encrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "encryption", rename_all = "snake_case")]
pub enum Protection {
    /// Under the project's master key (import needs the same key).
    MasterKey,
    /// Under a key derived from a passphrase with Argon2id.
    Passphrase {
        /// Random salt, base64.
        salt: String,
        /// Memory cost in KiB.
        m_cost: u32,
        /// Iterations.
        t_cost: u32,
        /// Parallelism.
        p_cost: u32,
    },
}

/// The bundle document.
#[derive(Debug, Serialize, Deserialize)]
pub struct Bundle {
    /// Always [`FORMAT`].
    pub format: String,
    /// The bundle version, [`VERSION`].
    pub version: u32,
    /// When it was written.
    pub created_at: String,
    /// The dsm version that wrote it.
    pub dsm_version: String,
    /// How its secrets are encrypted.
    pub secrets: Protection,
    /// The classification labels of the data the store holds (merged streams' rows, conflict
    /// logs, bookmarks): the label each stream last ran with, by stream. Empty for a project
    /// that does not classify its data, and in bundles written before labels existed.
    #[serde(default)]
    pub labels: Vec<BundleLabel>,
    /// SHA-256 of the database bytes, hex.
    pub sha256: String,
    /// HMAC-SHA256 of the header and the database bytes under a key derived from the master
    /// key or the passphrase key, hex: a bundle changed after export does not import.
    pub mac: String,
    /// The SQLite database, base64.
    pub database: String,
}

/// The classification label of one stream whose data a bundle may hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleLabel {
    /// The stream.
    pub stream: String,
    /// The highest label it ran with.
    pub label: String,
    /// That label's rank.
    pub rank: u32,
}

/// The labels recorded by the runs in the store: the highest of each stream.
fn recorded_labels(store: &dyn Store) -> Vec<BundleLabel> {
    store
        .highest_stream_labels()
        .unwrap_or_default()
        .into_iter()
        .map(|l| BundleLabel {
            stream: l.stream,
            label: l.label,
            rank: l.rank,
        })
        .collect()
}

/// The name of the highest of `labels`.
fn highest_label(labels: &[BundleLabel]) -> Option<String> {
    labels
        .iter()
        .fold(None, |best: Option<&BundleLabel>, l| match best {
            Some(b) if b.rank >= l.rank => Some(b),
            _ => Some(l),
        })
        .map(|l| l.label.clone())
}

/// What an export or import moved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The highest classification label of the data in the bundle (none when unlabelled).
    pub classification: Option<String>,
    /// Secrets in the bundle.
    pub secrets: usize,
    /// Audit entries in the bundle.
    pub audit_entries: usize,
    /// Size of the database in bytes.
    pub database_bytes: usize,
}

/// What a bundle's MAC covers: every header field that changes how it imports, then the
/// database bytes.
struct MacParts<'a> {
    header: Vec<u8>,
    database: &'a [u8],
}

impl MacParts<'_> {
    fn as_parts(&self) -> [&[u8]; 2] {
        [&self.header, self.database]
    }
}

fn mac_parts<'a>(bundle: &Bundle, database: &'a [u8]) -> MacParts<'a> {
    let header = serde_json::to_vec(&(
        &bundle.format,
        bundle.version,
        &bundle.created_at,
        &bundle.dsm_version,
        &bundle.secrets,
        &bundle.labels,
        &bundle.sha256,
    ))
    .expect("a bundle header serialises");
    MacParts { header, database }
}

/// Refuses Argon2id parameters past what dsm ever writes by a wide margin, before anything
/// is allocated (a bundle is untrusted input).
fn check_argon_limits(m: u32, t: u32, p: u32) -> Result<()> {
    if m > MAX_M_COST || t > MAX_T_COST || p > MAX_P_COST {
        return Err(SecretsError::Invalid(format!(
            "the bundle asks for Argon2id memory {m} KiB, {t} iterations and {p} lanes; dsm allows at most {MAX_M_COST} KiB (1 GiB), {MAX_T_COST} iterations and {MAX_P_COST} lanes, so it is not from dsm or was changed"
        )));
    }
    Ok(())
}

fn passphrase_key(passphrase: &Secret, salt: &[u8], m: u32, t: u32, p: u32) -> Result<MasterKey> {
    let params = argon2::Params::new(m, t, p, Some(KEY_LEN)).map_err(|e| {
        SecretsError::Invalid(format!("bad Argon2id parameters in the bundle: {e}"))
    })?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    argon
        .hash_password_into(passphrase.expose().as_bytes(), salt, out.as_mut())
        .map_err(|e| SecretsError::Invalid(format!("cannot derive the passphrase key: {e}")))?;
    Ok(MasterKey::from_bytes(*out))
}

/// How many secrets and audit entries a store holds.
fn counts(store: &dyn Store) -> Result<(usize, usize)> {
    Ok((store.secret_infos()?.len(), store.audit_rows(None)?.len()))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes `path` atomically with owner-only permissions.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::files::replace_atomically(path, bytes, crate::files::Mode::Set(0o600))
        .map_err(|e| SecretsError::io(format!("cannot write `{}`", path.display()), e))
}

/// Exports `store` to `output`. With a passphrase the copy's secrets and audit
/// chain are re-keyed to the passphrase key; the live store is untouched (except for an audit
/// entry recording the export).
pub fn export(
    live: &dyn Store,
    key: &MasterKey,
    passphrase: Option<&Secret>,
    output: &Path,
) -> Result<Summary> {
    store::check_key(live, key, "the current key")?;
    audit::append(
        live,
        key,
        &Entry::new(
            "dsm export",
            "bundle.export",
            [output.display().to_string()],
        ),
    )?;
    let scratch =
        tempfile::tempdir().map_err(|e| SecretsError::io("cannot make a temporary folder", e))?;
    let copy_path = scratch.path().join("bundle.db");
    // The copy's chain is checked against the live head file (copied beside it) when it is
    // re-keyed.
    live.snapshot_sqlite(&copy_path)?;
    let copy = SqliteStore::open(&copy_path)?;
    let mut bundle_key = None;
    let protection = match passphrase {
        None => Protection::MasterKey,
        Some(passphrase) => {
            let mut salt = [0u8; 16];
            OsRng.fill_bytes(&mut salt);
            let (m_cost, t_cost, p_cost) = (
                argon2::Params::DEFAULT_M_COST,
                argon2::Params::DEFAULT_T_COST,
                argon2::Params::DEFAULT_P_COST,
            );
            let derived = passphrase_key(passphrase, &salt, m_cost, t_cost, p_cost)?;
            store::rotate(&copy, key, &derived, "dsm export --passphrase")?;
            bundle_key = Some(derived);
            Protection::Passphrase {
                salt: BASE64.encode(salt),
                m_cost,
                t_cost,
                p_cost,
            }
        }
    };
    let summary_counts = counts(&copy)?;
    let labels = recorded_labels(&copy);
    let classification = highest_label(&labels);
    // Leave WAL mode so the copy is one self-contained file.
    copy.into_single_file()?;
    let bytes = std::fs::read(&copy_path)
        .map_err(|e| SecretsError::io("cannot read the database copy", e))?;
    let bundle = Bundle {
        format: FORMAT.to_string(),
        version: VERSION,
        created_at: super::actor::now(),
        dsm_version: env!("CARGO_PKG_VERSION").to_string(),
        secrets: protection,
        labels,
        sha256: sha256_hex(&bytes),
        mac: String::new(),
        database: BASE64.encode(&bytes),
    };
    let mac_key = match &bundle_key {
        Some(k) => k.bundle_key(),
        None => key.bundle_key(),
    };
    let mut bundle = bundle;
    bundle.mac = hex::encode(mac_key.mac(&mac_parts(&bundle, &bytes).as_parts()));
    let text = serde_json::to_vec_pretty(&bundle).expect("a bundle serialises");
    write_private(output, &text)?;
    Ok(Summary {
        classification,
        secrets: summary_counts.0,
        audit_entries: summary_counts.1,
        database_bytes: bytes.len(),
    })
}

/// Reads and checks a bundle file.
pub fn read(path: &Path) -> Result<(Bundle, Vec<u8>)> {
    let text = std::fs::read(path)
        .map_err(|e| SecretsError::io(format!("cannot read `{}`", path.display()), e))?;
    let bundle: Bundle = serde_json::from_slice(&text).map_err(|e| {
        SecretsError::Invalid(format!("`{}` is not a dsm bundle: {e}", path.display()))
    })?;
    if bundle.format != FORMAT || bundle.version != VERSION {
        let why = if bundle.format == FORMAT && bundle.version < VERSION {
            " (older bundles carry no key-checked MAC, so a changed one could not be told apart: export it again with this dsm)"
        } else {
            ""
        };
        return Err(SecretsError::Invalid(format!(
            "`{}` is a `{}` bundle of version {}; this dsm reads `{FORMAT}` version {VERSION}{why}",
            path.display(),
            bundle.format,
            bundle.version
        )));
    }
    let bytes = BASE64.decode(&bundle.database).map_err(|_| {
        SecretsError::Invalid(format!("`{}` is damaged (bad base64)", path.display()))
    })?;
    if sha256_hex(&bytes) != bundle.sha256 {
        return Err(SecretsError::Invalid(format!(
            "`{}` is damaged (its checksum does not match)",
            path.display()
        )));
    }
    Ok((bundle, bytes))
}

/// Restores the bundle at `bundle_path` as the database `db_path` of a fresh project, with its
/// secrets and audit chain under `key`. Refuses to overwrite a store that holds data.
pub fn import(
    bundle_path: &Path,
    key: &MasterKey,
    passphrase: Option<&Secret>,
    db_path: &Path,
) -> Result<Summary> {
    let (bundle, bytes) = read(bundle_path)?;
    // The key that decrypts the bundle's secrets also authenticates it: nothing is written
    // before the MAC holds.
    let passphrase_derived = match &bundle.secrets {
        Protection::MasterKey => None,
        Protection::Passphrase {
            salt,
            m_cost,
            t_cost,
            p_cost,
        } => {
            let Some(passphrase) = passphrase else {
                return Err(SecretsError::Invalid(
                    "this bundle's secrets are protected by a passphrase; pass `--passphrase`"
                        .to_string(),
                ));
            };
            check_argon_limits(*m_cost, *t_cost, *p_cost)?;
            let salt = BASE64
                .decode(salt)
                .map_err(|_| SecretsError::Invalid("the bundle's salt is damaged".to_string()))?;
            Some(passphrase_key(
                passphrase, &salt, *m_cost, *t_cost, *p_cost,
            )?)
        }
    };
    let mac_key = passphrase_derived
        .as_ref()
        .map_or_else(|| key.bundle_key(), MasterKey::bundle_key);
    let tag = hex::decode(&bundle.mac).unwrap_or_default();
    if !mac_key.verify(&mac_parts(&bundle, &bytes).as_parts(), &tag) {
        let which = if passphrase_derived.is_some() {
            "the passphrase is wrong, or the bundle was changed after it was exported"
        } else {
            "it was exported under another master key (import it with that project's key, or export it again with `dsm export --passphrase`), or changed after it was exported"
        };
        return Err(SecretsError::Invalid(format!(
            "`{}` does not authenticate: {which}; nothing was imported",
            bundle_path.display()
        )));
    }
    if SqliteStore::holds_data(db_path)? {
        return Err(SecretsError::Invalid(format!(
            "the system database `{}` already holds data; import restores into a fresh project",
            db_path.display()
        )));
    }
    let dir: PathBuf = db_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    std::fs::create_dir_all(&dir)
        .map_err(|e| SecretsError::io("cannot create the database folder", e))?;
    // Staged in a private folder beside the target (same file system, so the final rename is
    // atomic); nothing reaches the project's folder unless the whole import succeeds.
    let staging = tempfile::Builder::new()
        .prefix(".import-")
        .tempdir_in(&dir)
        .map_err(|e| SecretsError::io("cannot stage the import", e))?;
    let staged = staging.path().join("dsm.db");
    std::fs::write(&staged, &bytes).map_err(|e| SecretsError::io("cannot stage the import", e))?;
    // Opening brings an older bundle's schema up to date.
    let conn = SqliteStore::open(&staged)?;
    // The bundle has no head file: its own last entry is the head (the bundle's MAC protects
    // it), recorded under the key its chain is under (the passphrase's, until re-keyed).
    audit::record_head(&conn, passphrase_derived.as_ref().unwrap_or(key))?;
    match &bundle.secrets {
        Protection::MasterKey => {
            store::check_key(&conn, key, "the current key")?;
        }
        Protection::Passphrase { .. } => {
            let bundle_key = passphrase_derived
                .as_ref()
                .expect("derived above for a passphrase bundle");
            if store::check_key(&conn, bundle_key, "the passphrase").is_err() {
                return Err(SecretsError::Invalid("the passphrase is wrong".to_string()));
            }
            store::rotate(&conn, bundle_key, key, "dsm import")?;
        }
    }
    let report = audit::verify(&conn, key)?;
    if !report.is_ok() {
        return Err(SecretsError::AuditBroken(report.problems.join("; ")));
    }
    audit::append(
        &conn,
        key,
        &Entry::new(
            "dsm import",
            "bundle.import",
            [bundle_path.display().to_string()],
        ),
    )?;
    let (secrets, audit_entries) = counts(&conn)?;
    let summary = Summary {
        classification: highest_label(&bundle.labels),
        secrets,
        audit_entries,
        database_bytes: bytes.len(),
    };
    conn.into_single_file()?;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db_path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    let io = |e| SecretsError::io(format!("cannot write `{}`", db_path.display()), e);
    std::fs::rename(&staged, db_path).map_err(io)?;
    std::fs::rename(
        staging.path().join(audit::HEAD_FILE),
        dir.join(audit::HEAD_FILE),
    )
    .map_err(io)?;
    Ok(summary)
}

/// Restores the bundle at `bundle_path` into the empty store at `to` (a PostgreSQL store: the
/// project's rows under its `project_id`, for the project at `root`). The bundle is restored
/// as [`import`] does into a private SQLite file first (authenticated, re-keyed, its audit
/// chain verified), then copied as `dsm store copy` copies: every table in one transaction,
/// counted and its audit chain compared on both sides, a target holding rows of the project
/// refused. Nothing is written to `to` unless all of it is.
pub fn import_into(
    bundle_path: &Path,
    key: &MasterKey,
    passphrase: Option<&Secret>,
    to: &crate::store::Location,
    root: &Path,
) -> Result<Summary> {
    let scratch =
        tempfile::tempdir().map_err(|e| SecretsError::io("cannot make a temporary folder", e))?;
    let staged = scratch.path().join("dsm.db");
    let summary = import(bundle_path, key, passphrase, &staged)?;
    crate::store::copy::copy(&crate::store::Location::Sqlite(staged), to, root)?;
    Ok(summary)
}

//! Errors of the secret store, the master key and the audit log, with the hints that fix them.
//! No variant carries a secret value.

use std::path::PathBuf;

use crate::error::Error;

/// Something the secret store, key lookup or audit log could not do.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// No master key in any of the places looked at.
    #[error("no master key found for the secret store")]
    NoKey {
        /// Where dsm looked, in order.
        tried: Vec<String>,
    },
    /// No key with the id the store needs in any of the places looked at.
    #[error(
        "this project's secrets are encrypted under master key id {key_id}, which none of the places dsm looked at holds"
    )]
    MissingKeyId {
        /// The id of the key the store needs.
        key_id: String,
        /// Where dsm looked, in order.
        tried: Vec<String>,
        /// Where the key belongs (the project's key file), if known.
        put_at: Option<PathBuf>,
    },
    /// A key was found but is not the one the store was created with.
    #[error(
        "the master key from {source_name} (key id {given}) does not match the key this project's secrets are encrypted with (key id {wanted})"
    )]
    WrongKey {
        /// Where the key came from.
        source_name: String,
        /// The id of the key found.
        given: String,
        /// The id of the key the store needs.
        wanted: String,
    },
    /// A key was found but could not be parsed.
    #[error("the master key from {source_name} is not usable: {reason}")]
    BadKey {
        /// Where the key came from.
        source_name: String,
        /// Why (never the key itself).
        reason: String,
    },
    /// The key file can be read by others.
    #[error("key file `{}` is readable by other users (mode {mode:o})", path.display())]
    KeyFilePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file belongs to another user.
    #[error("key file `{}` is owned by another user", path.display())]
    KeyFileOwner {
        /// The key file.
        path: PathBuf,
    },
    /// The key file named by `DSM_MASTER_KEY_FILE` does not exist.
    #[error("key file `{}` does not exist", .0.display())]
    KeyFileMissing(PathBuf),
    /// Refused to overwrite an existing key.
    #[error("a master key already exists at {0}")]
    KeyExists(String),
    /// The OS keyring is not reachable.
    #[error("the OS keyring is not available: {0}")]
    KeyringUnavailable(String),
    /// No such secret.
    #[error("no secret `{setting}` stored for `{plugin}`")]
    NotFound {
        /// Plugin name.
        plugin: String,
        /// Setting name.
        setting: String,
    },
    /// A stored value failed authentication.
    #[error("secret `{setting}` of `{plugin}` does not decrypt (it was altered or moved)")]
    Undecryptable {
        /// Plugin name.
        plugin: String,
        /// Setting name.
        setting: String,
    },
    /// The audit log failed verification; rotation would hide that.
    #[error("the audit log does not verify: {0}")]
    AuditBroken(String),
    /// Bad input from the user (empty value, bad name, ...).
    #[error("{0}")]
    Invalid(String),
    /// The system store failed (its error says how).
    #[error("{0}")]
    Store(#[from] Error),
    /// A file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What dsm was doing.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl SecretsError {
    /// An I/O error with what dsm was doing.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SecretsError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<SecretsError> for Error {
    fn from(e: SecretsError) -> Self {
        let message = e.to_string();
        match e {
            SecretsError::NoKey { tried } => {
                let mut err = Error::config(message);
                for place in tried {
                    err = err.detail(format!("looked at {place}"));
                }
                err.hint("create a key with `dsm secrets init`, or set `DSM_MASTER_KEY` (base64 of 32 bytes)")
            }
            SecretsError::MissingKeyId {
                ref key_id,
                tried,
                put_at,
            } => {
                let mut err = Error::config(message);
                for place in tried {
                    err = err.detail(format!("looked at {place}"));
                }
                let hint = match put_at {
                    Some(path) => format!(
                        "copy the key with id {key_id} (from the host or backup that has it) to `{}` (mode 0600), or point `DSM_MASTER_KEY_FILE` at it",
                        path.display()
                    ),
                    None => format!(
                        "point `DSM_MASTER_KEY_FILE` at the key with id {key_id}, or set `DSM_MASTER_KEY`"
                    ),
                };
                err.hint(hint).hint(
                    "if another host rotated the key, fetch the new key from it; nothing was changed here",
                )
            }
            SecretsError::WrongKey { .. } => Error::config(message)
                .hint("use the master key this project was set up with (`DSM_MASTER_KEY`, `DSM_MASTER_KEY_FILE` or the keyring)")
                .hint("to change keys, run `dsm secrets rotate` while the old key is still available"),
            SecretsError::BadKey { .. } => Error::config(message)
                .hint("a master key is the base64 of 32 random bytes; `dsm secrets init` writes one"),
            SecretsError::KeyFilePermissions { ref path, .. } => {
                let hint = format!("run `chmod 600 {}`", path.display());
                Error::config(message).hint(hint)
            }
            SecretsError::KeyFileOwner { .. } => Error::config(message)
                .hint("the key file must belong to the user running dsm"),
            SecretsError::KeyFileMissing(ref path) => {
                let hint = format!("create it with `dsm secrets init --key-file {}`, or point `DSM_MASTER_KEY_FILE` at the right file", path.display());
                Error::config(message).hint(hint)
            }
            SecretsError::KeyExists(_) => Error::config(message)
                .hint("remove it first if you really mean to replace it (secrets encrypted with it become unreadable), or use `dsm secrets rotate`"),
            SecretsError::KeyringUnavailable(_) => Error::config(message)
                .hint("use `dsm secrets init --key-file PATH` on machines without a keyring service"),
            SecretsError::NotFound { .. } => {
                Error::config(message).hint("`dsm secrets list` shows the stored names")
            }
            SecretsError::Undecryptable { .. } => Error::failed(message)
                .hint("set the value again with `dsm secrets set PLUGIN SETTING`"),
            SecretsError::AuditBroken(_) => Error::failed(message)
                .hint("run `dsm audit verify` for details"),
            SecretsError::Invalid(_) => Error::config(message),
            SecretsError::Store(e) => e,
            SecretsError::Io { source, .. } => Error::failed(message).with_source(source),
        }
    }
}

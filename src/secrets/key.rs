//! The master key and the keys derived from it: secret encryption (AES-256-GCM), the key check
//! value that tells a wrong key apart, and the audit-log MAC key.

use std::fmt;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload, rand_core::RngCore};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

/// Length of the master key in bytes (AES-256).
pub const KEY_LEN: usize = 32;
/// Length of an AES-GCM nonce in bytes (96 bits).
pub const NONCE_LEN: usize = 12;

/// Labels for deriving separate keys from the master key (HMAC-SHA256 of the label), so the
/// encryption key, the key check value and the audit key never coincide.
const LABEL_ENCRYPT: &[u8] = b"dsm secret encryption v1";
const LABEL_CHECK: &[u8] = b"dsm key check v1";
const LABEL_AUDIT: &[u8] = b"dsm audit chain v1";
const LABEL_BUNDLE: &[u8] = b"dsm export bundle v2";
const LABEL_HEAD: &[u8] = b"dsm audit head v1";

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8]) -> HmacSha256 {
    <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// Why a master key could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyParseError {
    /// Not base64.
    #[error("it is not valid base64")]
    NotBase64,
    /// Wrong number of bytes.
    #[error("it decodes to {0} bytes, not {KEY_LEN}")]
    WrongLength(usize),
}

/// The 32-byte master key; wiped on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey([u8; KEY_LEN]);

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl MasterKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Self {
        let mut bytes = [0u8; KEY_LEN];
        OsRng.fill_bytes(&mut bytes);
        MasterKey(bytes)
    }

    /// A key from its raw bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        MasterKey(bytes)
    }

    /// Parses the base64 form (surrounding whitespace ignored).
    pub fn from_base64(text: &str) -> Result<Self, KeyParseError> {
        let bytes = Zeroizing::new(
            BASE64
                .decode(text.trim())
                .map_err(|_| KeyParseError::NotBase64)?,
        );
        let array: [u8; KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyParseError::WrongLength(bytes.len()))?;
        Ok(MasterKey(array))
    }

    /// The base64 form, for writing a key file or the keyring.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(BASE64.encode(self.0))
    }

    fn derive(&self, label: &[u8]) -> Zeroizing<[u8; 32]> {
        let mut mac = hmac(&self.0);
        mac.update(label);
        Zeroizing::new(mac.finalize().into_bytes().into())
    }

    /// The key check value stored with the database: tells whether a key is the one the secrets
    /// were encrypted with, without decrypting anything.
    pub fn check_value(&self) -> Vec<u8> {
        self.derive(LABEL_CHECK).to_vec()
    }

    /// The key's id: the first 8 bytes of its check value, in hex. It names the key in messages
    /// and key files without revealing anything that helps to guess it (a keyed hash).
    pub fn key_id(&self) -> String {
        key_id_of(&self.check_value())
    }

    /// The key for the audit log's HMAC chain.
    pub fn audit_key(&self) -> AuditKey {
        AuditKey(*self.derive(LABEL_AUDIT))
    }

    /// The key that authenticates the audit chain's recorded head (a key of its own: the head
    /// is kept where the chain's MACs can be read, so it must not be something they give).
    pub fn head_key(&self) -> AuditKey {
        AuditKey(*self.derive(LABEL_HEAD))
    }

    /// The HMAC key that authenticates an export bundle made under this key (an [`AuditKey`]
    /// by type: the same length-prefixed HMAC, with a key of its own).
    pub fn bundle_key(&self) -> AuditKey {
        AuditKey(*self.derive(LABEL_BUNDLE))
    }

    fn cipher(&self) -> Aes256Gcm {
        let key = self.derive(LABEL_ENCRYPT);
        Aes256Gcm::new_from_slice(key.as_slice()).expect("the derived key is 32 bytes")
    }

    /// Encrypts `plain` for `plugin`/`setting` under key `version`, with a fresh random nonce.
    pub fn seal(&self, binding: &Binding<'_>, plain: &[u8]) -> Sealed {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = binding.associated_data();
        let ciphertext = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        Sealed {
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    /// Decrypts a value sealed for the same `binding`; `None` when the key, the binding or the
    /// bytes differ (AES-GCM authenticates all three).
    pub fn open(&self, binding: &Binding<'_>, sealed: &Sealed) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.nonce.len() != NONCE_LEN {
            return None;
        }
        let aad = binding.associated_data();
        self.cipher()
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .ok()
            .map(Zeroizing::new)
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(********)")
    }
}

/// The key id (see [`MasterKey::key_id`]) of the key whose check value is `check_value`.
pub fn key_id_of(check_value: &[u8]) -> String {
    hex::encode(&check_value[..check_value.len().min(KEY_ID_BYTES)])
}

/// How many bytes of the check value make a key id (16 hex digits).
const KEY_ID_BYTES: usize = 8;

/// The key of the audit log's HMAC chain, derived from the master key.
#[derive(Clone)]
pub struct AuditKey([u8; 32]);

impl Drop for AuditKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl AuditKey {
    /// HMAC-SHA256 of `parts`, each prefixed with its length so fields cannot run together.
    pub fn mac(&self, parts: &[&[u8]]) -> Vec<u8> {
        let mut mac = hmac(&self.0);
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().to_vec()
    }

    /// Whether `tag` is the MAC of `parts` (constant-time comparison).
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let mut mac = hmac(&self.0);
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.verify_slice(tag).is_ok()
    }
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditKey(********)")
    }
}

/// What a ciphertext is bound to: the plugin, the setting and the key version. A value moved
/// onto another setting, or relabelled with another version, fails to decrypt.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// Plugin name, e.g. `tap-github`.
    pub plugin: &'a str,
    /// Setting name, e.g. `auth_token`.
    pub setting: &'a str,
    /// Version of the master key the value is encrypted under.
    pub key_version: i64,
    /// The environment the value belongs to (`None`: the whole project). A value moved to
    /// another environment fails to decrypt too.
    pub scope: Option<&'a str>,
}

impl Binding<'_> {
    fn associated_data(&self) -> Vec<u8> {
        let mut aad = b"dsm-secret-v1".to_vec();
        for part in [self.plugin.as_bytes(), self.setting.as_bytes()] {
            aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
            aad.extend_from_slice(part);
        }
        aad.extend_from_slice(&self.key_version.to_be_bytes());
        // A project-wide value keeps the associated data it always had (stores written before
        // per-environment secrets decrypt as they are).
        if let Some(scope) = self.scope {
            aad.extend_from_slice(b"scope");
            aad.extend_from_slice(&(scope.len() as u64).to_be_bytes());
            aad.extend_from_slice(scope.as_bytes());
        }
        aad
    }
}

/// A nonce and ciphertext (with its GCM tag) as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The 96-bit nonce.
    pub nonce: Vec<u8>,
    /// Ciphertext followed by the 16-byte tag.
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({} bytes)", self.ciphertext.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding<'a>(plugin: &'a str, setting: &'a str) -> Binding<'a> {
        Binding {
            plugin,
            setting,
            key_version: 1,
            scope: None,
        }
    }

    #[test]
    fn round_trips_and_uses_a_fresh_nonce_each_time() {
        let key = MasterKey::generate();
        let b = binding("tap-github", "auth_token");
        let one = key.seal(&b, b"s3cret");
        let two = key.seal(&b, b"s3cret");
        assert_ne!(one.nonce, two.nonce);
        assert_ne!(one.ciphertext, two.ciphertext);
        assert_eq!(key.open(&b, &one).unwrap().as_slice(), b"s3cret");
    }

    #[test]
    fn a_value_moved_to_another_setting_or_version_does_not_decrypt() {
        let key = MasterKey::generate();
        let sealed = key.seal(&binding("tap-github", "auth_token"), b"s3cret");
        assert!(
            key.open(&binding("tap-github", "password"), &sealed)
                .is_none()
        );
        assert!(
            key.open(&binding("tap-gitlab", "auth_token"), &sealed)
                .is_none()
        );
        let other_version = Binding {
            key_version: 2,
            ..binding("tap-github", "auth_token")
        };
        assert!(key.open(&other_version, &sealed).is_none());
        let prod = Binding {
            scope: Some("prod"),
            ..binding("tap-github", "auth_token")
        };
        assert!(key.open(&prod, &sealed).is_none());
        let in_prod = key.seal(&prod, b"s3cret");
        assert!(
            key.open(&binding("tap-github", "auth_token"), &in_prod)
                .is_none()
        );
        let staging = Binding {
            scope: Some("staging"),
            ..prod
        };
        assert!(key.open(&staging, &in_prod).is_none());
        assert_eq!(key.open(&prod, &in_prod).unwrap().as_slice(), b"s3cret");
    }

    #[test]
    fn a_wrong_key_does_not_decrypt_and_has_another_check_value() {
        let key = MasterKey::generate();
        let other = MasterKey::generate();
        let b = binding("p", "s");
        assert!(other.open(&b, &key.seal(&b, b"x")).is_none());
        assert_ne!(key.check_value(), other.check_value());
        assert_eq!(key.check_value(), key.clone().check_value());
    }

    #[test]
    fn base64_form_round_trips_and_bad_lengths_are_refused() {
        let key = MasterKey::generate();
        assert_eq!(MasterKey::from_base64(&key.to_base64()).unwrap(), key);
        assert_eq!(
            MasterKey::from_base64("c2hvcnQ="),
            Err(KeyParseError::WrongLength(5))
        );
        assert_eq!(
            MasterKey::from_base64("not base64!"),
            Err(KeyParseError::NotBase64)
        );
        assert!(!format!("{key:?}").contains(&*key.to_base64()));
    }

    #[test]
    fn audit_macs_separate_fields() {
        let k = MasterKey::generate().audit_key();
        let tag = k.mac(&[b"ab", b"c"]);
        assert_ne!(tag, k.mac(&[b"a", b"bc"]));
        assert!(k.verify(&[b"ab", b"c"], &tag));
        assert!(!k.verify(&[b"ab", b"d"], &tag));
    }
}

//! API tokens: making them, hashing them for the store, and checking a presented token against
//! the stored hashes in constant time.

use aes_gcm::aead::{OsRng, rand_core::RngCore};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::store::{NewToken, Role, TokenRecord, TokenStore};

/// Every token starts with this, so a leaked one is easy to recognise (and to scan for).
pub const PREFIX: &str = "dsm_";

/// A fresh token: the prefix and 32 bytes (256 bits) from the operating system's generator,
/// base64url without padding.
pub fn generate() -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(bytes.as_mut_slice());
    let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_slice());
    Zeroizing::new(format!("{PREFIX}{body}"))
}

/// The SHA-256 of a token, as stored. A token carries 256 random bits, so a fast hash is
/// enough: there is nothing to guess that a slow password hash would protect.
pub fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Checks a token name: letters, digits, `-`, `_` and `.`, 1 to 64 characters.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::config(format!("`{name}` is not a valid token name"))
            .hint("use 1 to 64 letters, digits, `-`, `_` or `.`, e.g. `ci-bot`"))
    }
}

/// What `dsm tokens create` made: the stored record and the token, shown once.
#[derive(Debug)]
pub struct Created {
    /// The stored record.
    pub record: TokenRecord,
    /// The token itself; it is not kept anywhere.
    pub token: Zeroizing<String>,
}

/// Makes and records a token.
pub fn create(
    store: &dyn TokenStore,
    name: &str,
    role: Role,
    organisation: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    created_by: String,
) -> Result<Created> {
    check_name(name)?;
    let organisation = organisation.filter(|o| !o.trim().is_empty());
    if role == Role::Requester && organisation.is_none() {
        return Err(Error::config(format!(
            "token `{name}` has the requester role, which needs an organisation"
        ))
        .hint("add `--organisation ORG`: a requester submits requests for its organisation"));
    }
    let token = generate();
    let record = store.create_token(&NewToken {
        name: name.to_owned(),
        role,
        organisation,
        token_hash: hash(&token),
        expires_at,
        created_by,
    })?;
    Ok(Created { record, token })
}

/// Finds the token that `presented` is, comparing its hash with every stored hash in constant
/// time (all of them, without stopping at a match). Expired tokens never match.
pub fn authenticate(
    tokens: &[TokenRecord],
    presented: &str,
    now: DateTime<Utc>,
) -> Option<TokenRecord> {
    by_hash(tokens, &hash(presented), now)
}

/// [`authenticate`] with the token's hash.
pub fn by_hash(
    tokens: &[TokenRecord],
    presented: &[u8],
    now: DateTime<Utc>,
) -> Option<TokenRecord> {
    let mut found = None;
    for record in tokens {
        let equal: bool = record.token_hash.ct_eq(presented).into();
        if equal && found.is_none() {
            found = Some(record);
        }
    }
    found.filter(|r| !r.is_expired(now)).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, token: &str, expires_at: Option<DateTime<Utc>>) -> TokenRecord {
        TokenRecord {
            name: name.into(),
            role: Role::Viewer,
            organisation: None,
            created_at: Utc::now(),
            created_by: "me".into(),
            expires_at,
            last_used_at: None,
            token_hash: hash(token),
        }
    }

    #[test]
    fn tokens_are_long_random_and_prefixed() {
        let a = generate();
        let b = generate();
        assert!(a.starts_with(PREFIX));
        assert_eq!(a.len(), PREFIX.len() + 43);
        assert_ne!(*a, *b);
    }

    #[test]
    fn authenticate_finds_the_matching_unexpired_token_only() {
        let now = Utc::now();
        let tokens = vec![
            record("a", "dsm_one", None),
            record("b", "dsm_two", None),
            record("old", "dsm_three", Some(now - chrono::Duration::seconds(1))),
        ];
        assert_eq!(authenticate(&tokens, "dsm_two", now).unwrap().name, "b");
        assert!(authenticate(&tokens, "dsm_tw", now).is_none());
        assert!(authenticate(&tokens, "", now).is_none());
        assert!(authenticate(&tokens, "dsm_three", now).is_none());
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("ci-bot.1_x").is_ok());
        for bad in ["", "a b", "x/y", &"n".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}

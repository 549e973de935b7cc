//! Encrypted secrets, the master key, and the audit log.
//!
//! Sensitive setting values are stored encrypted (AES-256-GCM, see [`key`]) in the system store
//! ([`store`]; the rows themselves are kept by [`crate::store::SecretStore`]); the master key is found by [`master_key`]; every change is recorded in the
//! HMAC-chained [`audit`] log. Values travel as [`Secret`], which never prints.

mod actor;
pub mod audit;
pub mod bundle;
pub mod dotenv;
mod error;
pub mod history;
pub mod key;
pub mod layer;
pub mod master_key;
mod secret;
pub mod sensitive;
pub mod store;

pub use actor::os_uid;
pub use error::SecretsError;

pub use key::MasterKey;
pub use secret::{MASK, Secret};
pub use store::{SecretInfo, get_secret, list, read_for_run, rotate, set_secret, unset, verify};

//! [`Secret`]: a sensitive value that prints as `********` and is wiped from memory on drop.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

/// What a [`Secret`] shows in `Debug`, `Display` and logs instead of its value.
pub const MASK: &str = "********";

/// A sensitive setting value (password, token, key).
///
/// `Debug` and `Display` print [`MASK`], so a secret that slips into a log line, an error message
/// or `--format json` (it has no `Serialize`) shows nothing. The bytes are zeroized when it is
/// dropped. Read the value with [`Secret::expose`], only where it is handed to a plugin.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a value, taking ownership so no unwiped copy is left with the caller.
    pub fn new(value: String) -> Self {
        Secret(Zeroizing::new(value))
    }

    /// Wraps raw bytes that must be UTF-8 (values decrypted from the store); the bytes are wiped
    /// either way.
    pub fn from_utf8(mut bytes: Vec<u8>) -> Result<Self, std::str::Utf8Error> {
        match std::str::from_utf8(&bytes) {
            Ok(_) => Ok(Secret::new(
                String::from_utf8(bytes).expect("checked just above"),
            )),
            Err(e) => {
                bytes.zeroize();
                Err(e)
            }
        }
    }

    /// The plain value. Call only where the value must leave dsm (a plugin's private config).
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// Whether the value is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret::new(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s}"), MASK);
        assert_eq!(format!("{s:?}"), MASK);
        let wrapped = Some(vec![s.clone()]);
        assert!(!format!("{wrapped:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn invalid_utf8_is_refused() {
        assert!(Secret::from_utf8(vec![0xff, 0xfe]).is_err());
        assert_eq!(Secret::from_utf8(b"ok".to_vec()).unwrap().expose(), "ok");
    }
}

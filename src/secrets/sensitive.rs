//! Which settings count as sensitive: the one place that decides.

/// Name endings that mark an environment variable or setting as sensitive until the settings
/// model passes declared sensitivity (`sensitive: true` / `annotations.dsm`).
pub const SENSITIVE_SUFFIXES: &[&str] = &["_PASSWORD", "_TOKEN", "_SECRET", "_KEY", "_API_KEY"];

/// Whether a setting or variable is sensitive: declared so, or named like a credential.
/// Case-insensitive, so both `TAP_X_PASSWORD` and `password` match.
pub fn is_sensitive(name: &str, declared_sensitive: bool) -> bool {
    if declared_sensitive {
        return true;
    }
    let upper = name.to_ascii_uppercase();
    let bare = ["PASSWORD", "TOKEN", "SECRET", "KEY", "API_KEY"];
    SENSITIVE_SUFFIXES.iter().any(|s| upper.ends_with(s)) || bare.contains(&upper.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_names_and_declared_settings_are_sensitive() {
        assert!(is_sensitive("TAP_GITHUB_AUTH_TOKEN", false));
        assert!(is_sensitive("TARGET_PG_PASSWORD", false));
        assert!(is_sensitive("tap_stripe_api_key", false));
        assert!(is_sensitive("TAP_X_CLIENT_SECRET", false));
        assert!(is_sensitive("password", false));
        assert!(is_sensitive("TAP_X_ACCOUNT", true));
        assert!(!is_sensitive("TAP_GITHUB_REPOSITORIES", false));
        assert!(!is_sensitive("TAP_X_KEYS_TO_SYNC", false));
        assert!(!is_sensitive("MONKEY", false));
    }
}

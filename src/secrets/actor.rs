//! Who and where: the OS user, the host name and the time recorded with every change.

/// The OS user running dsm (`USER`, `LOGNAME` or `USERNAME`; else the account of the process's
/// user id in `/etc/passwd`, as cron and containers often set none of them; else `uid N`), or
/// `unknown`.
pub fn os_user() -> String {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
        .or_else(account_of_process)
        .unwrap_or_else(|| "unknown".to_string())
}

/// Who the audit log records: the OS user with the process's user id (`ann (uid 1000)`), so an
/// entry never rests on a variable like `$USER` alone; with the API token's name when the
/// command runs with `DSM_TOKEN` (`ann (uid 1000, token ci)`, see [`note_token`]).
pub fn audit_actor() -> String {
    let token = match TOKEN.get() {
        Some(Some(TokenNote::Valid(name))) => format!(", token {name}"),
        Some(Some(TokenNote::Invalid)) => format!(", an invalid `{}`", crate::envvars::TOKEN),
        _ => String::new(),
    };
    format!("{} (uid {}{token})", os_user(), os_uid())
}

/// What `DSM_TOKEN` says about who runs this process.
enum TokenNote {
    /// A token the store knows (not revoked or expired): its name.
    Valid(String),
    /// A value that is no token of this store.
    Invalid,
}

/// `DSM_TOKEN` as looked up in the store, once per process (`None`: not set).
static TOKEN: std::sync::OnceLock<Option<TokenNote>> = std::sync::OnceLock::new();

/// Looks `DSM_TOKEN` up in `store` (once per process) so the audit entries this process writes
/// name the token's holder. The name comes from the store's record of the token, never from
/// the variable: a value that is no valid token is recorded as such. Call before the store's
/// write transaction starts (the lookup reads the store).
pub fn note_token(store: &dyn crate::store::Store) {
    TOKEN.get_or_init(|| {
        let token = std::env::var(crate::envvars::TOKEN)
            .ok()
            .filter(|t| !t.trim().is_empty())?;
        let token = zeroize::Zeroizing::new(token);
        let known = store.list_tokens().ok().and_then(|tokens| {
            crate::serve::token::authenticate(&tokens, token.trim(), chrono::Utc::now())
        });
        Some(match known {
            Some(record) => TokenNote::Valid(record.name),
            None => TokenNote::Invalid,
        })
    });
}

/// This process's user id, as text (`unknown` where there is none): what a source request
/// records for the local user.
pub fn os_uid() -> String {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        if let Ok(meta) = std::fs::metadata("/proc/self") {
            return meta.uid().to_string();
        }
    }
    "unknown".to_string()
}

/// The account name of this process's real user id, from `/etc/passwd` (no `unsafe`: the id is
/// read from the owner of `/proc/self`).
#[cfg(unix)]
fn account_of_process() -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let name = passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_string())
    });
    Some(name.unwrap_or_else(|| format!("uid {uid}")))
}

#[cfg(not(unix))]
fn account_of_process() -> Option<String> {
    None
}

/// The machine's host name, or `unknown`.
pub fn host() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| {
            std::fs::read_to_string(path)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".to_string())
}

/// The current UTC time as RFC 3339 with milliseconds (sorts as text).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

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
/// entry never rests on a variable like `$USER` alone.
pub fn audit_actor() -> String {
    format!("{} (uid {})", os_user(), os_uid())
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

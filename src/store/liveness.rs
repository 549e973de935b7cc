//! Is the process that holds a lock or owns a run still alive? Host names, PIDs and heartbeats.

use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// How often a holder should refresh its heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);

/// A heartbeat older than this marks a lock or run as stale (the holder died or hung).
pub const STALE_AFTER: Duration = Duration::from_secs(120);

/// This machine's host name (read once).
pub fn host_name() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        let from_proc = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        from_proc
            .or_else(|| {
                Command::new("hostname")
                    .stderr(Stdio::null())
                    .output()
                    .ok()
                    .filter(|o| o.status.success())
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| "localhost".to_owned())
    })
}

/// Whether a process with this PID exists on this host and has not exited (zombies count as
/// exited: they will never refresh a heartbeat again).
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    if cfg!(target_os = "linux") {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state letter follows the command name, which is in parentheses and may
            // itself contain spaces or parentheses: look after the last `)`.
            Ok(stat) => !matches!(
                stat.rfind(')')
                    .and_then(|i| stat[i + 1..].split_whitespace().next()),
                Some("Z" | "X" | "x")
            ),
            Err(_) => false,
        }
    } else {
        // `ps -p` succeeds when the process exists, also when it belongs to another user
        // (`kill -0` would fail with EPERM there and wrongly call it dead).
        Command::new("ps")
            .args(["-p", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(true)
    }
}

/// Whether the holder recorded as (`pid`, `host`, `heartbeat_at`) should be treated as gone: its
/// heartbeat is older than `stale_after`, or it ran on this host and its PID is dead.
pub fn is_stale(
    pid: u32,
    host: &str,
    heartbeat_at: DateTime<Utc>,
    now: DateTime<Utc>,
    stale_after: Duration,
) -> bool {
    let age = now.signed_duration_since(heartbeat_at);
    let limit = chrono::Duration::from_std(stale_after).unwrap_or(chrono::Duration::MAX);
    if age > limit {
        return true;
    }
    host == host_name() && !pid_alive(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_an_exited_child_is_not() {
        assert!(pid_alive(std::process::id()));
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!pid_alive(pid));
    }

    #[test]
    fn old_heartbeat_or_dead_pid_is_stale() {
        let now = Utc::now();
        let me = std::process::id();
        assert!(!is_stale(me, host_name(), now, now, STALE_AFTER));
        let old = now - chrono::Duration::seconds(121);
        assert!(is_stale(me, host_name(), old, now, STALE_AFTER));
        // Another host's PID cannot be checked: only the heartbeat counts.
        assert!(!is_stale(
            u32::MAX - 1,
            "elsewhere.invalid",
            now,
            now,
            STALE_AFTER
        ));
        assert!(is_stale(u32::MAX - 1, host_name(), now, now, STALE_AFTER));
    }
}

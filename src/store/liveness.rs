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

/// Whether the holder recorded as (`pid`, `host`, `since`, `heartbeat_at`) should be treated as
/// gone: its heartbeat is older than `stale_after`, or it ran on this host and the process with
/// its PID is dead or is not the holder. A process that started after `since` (when the lock was
/// taken or the run began) cannot be the holder: the PID was used again, as it is when a
/// container restarts into a new PID namespace with the same host name and its first
/// processes get the same small PIDs. `since` must come from this host's clock (`None` where
/// it was the database's).
pub fn is_stale(
    pid: u32,
    host: &str,
    since: Option<DateTime<Utc>>,
    heartbeat_at: DateTime<Utc>,
    now: DateTime<Utc>,
    stale_after: Duration,
) -> bool {
    let age = now.signed_duration_since(heartbeat_at);
    let limit = chrono::Duration::from_std(stale_after).unwrap_or(chrono::Duration::MAX);
    if age > limit {
        return true;
    }
    host == host_name() && (!pid_alive(pid) || since.is_some_and(|t| started_after(pid, t)))
}

/// How much later than the recorded moment a process may have started and still be the one
/// recorded: the recorded moment comes from the same clock, but `/proc` counts start times in
/// ticks from a boot time given in whole seconds.
const START_SLACK: Duration = Duration::from_secs(2);

/// Whether the process with this PID started clearly after `since` (`false` when that cannot be
/// told).
fn started_after(pid: u32, since: DateTime<Utc>) -> bool {
    match (
        process_started_at(pid),
        since.checked_add_signed(signed(START_SLACK)),
    ) {
        (Some(started), Some(limit)) => started > limit,
        _ => false,
    }
}

fn signed(d: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX)
}

/// When the process with this PID started, from `/proc` (Linux only).
fn process_started_at(pid: u32) -> Option<DateTime<Utc>> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    // Field 22 of `/proc/PID/stat`: the start time in clock ticks after boot. Fields are
    // counted after the command name, which is in parentheses and may hold spaces.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks: i64 = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()?;
    let boot: i64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // `/proc` reports times in USER_HZ, which the kernel fixes at 100 for user space.
    const USER_HZ: i64 = 100;
    let after_boot = chrono::TimeDelta::try_milliseconds(ticks.checked_mul(1000 / USER_HZ)?)?;
    DateTime::from_timestamp(boot, 0)?.checked_add_signed(after_boot)
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
        assert!(!is_stale(me, host_name(), Some(now), now, now, STALE_AFTER));
        let old = now - chrono::Duration::seconds(121);
        assert!(is_stale(me, host_name(), Some(now), old, now, STALE_AFTER));
        // Another host's PID cannot be checked: only the heartbeat counts.
        assert!(!is_stale(
            u32::MAX - 1,
            "elsewhere.invalid",
            Some(now),
            now,
            now,
            STALE_AFTER
        ));
        assert!(is_stale(
            u32::MAX - 1,
            host_name(),
            Some(now),
            now,
            now,
            STALE_AFTER
        ));
    }

    #[test]
    fn a_live_pid_that_started_after_the_lock_was_taken_is_not_its_holder() {
        // A restarted container: same host name, the PID used again by a process that started
        // after the lock was taken. This process started before `now`, so it cannot have taken
        // a lock an hour from now, and it may have taken one a day ago.
        let now = Utc::now();
        let me = std::process::id();
        let started = process_started_at(me).expect("/proc tells when this process started");
        assert!(
            started <= now + chrono::Duration::seconds(1),
            "{started} {now}"
        );
        assert!(now - started < chrono::Duration::days(1), "{started} {now}");
        let before_me = started - chrono::Duration::minutes(5);
        assert!(is_stale(
            me,
            host_name(),
            Some(before_me),
            now,
            now,
            STALE_AFTER
        ));
        assert!(!is_stale(
            me,
            host_name(),
            Some(started),
            now,
            now,
            STALE_AFTER
        ));
        // Without the moment, a live PID is taken at its word.
        assert!(!is_stale(me, host_name(), None, now, now, STALE_AFTER));
    }
}

//! The system calls the plugin runner needs that the standard library does not offer:
//! signalling a whole process group, asking whether a process id is still alive, and growing a
//! pipe's buffer.

use std::io;

/// SIGTERM: asks a plugin to stop.
pub const SIGTERM: i32 = libc::SIGTERM;
/// SIGKILL: stops a plugin that ignored SIGTERM.
pub const SIGKILL: i32 = libc::SIGKILL;

/// Sends `signal` to every process in the group `pgid` (a child spawned as its own group leader).
pub fn signal_group(pgid: u32, signal: i32) -> io::Result<()> {
    let pgid = i32::try_from(pgid).map_err(|_| io::Error::other("process id out of range"))?;
    if pgid <= 1 {
        // Never signal our own group (0) or everything (-1 / init).
        return Err(io::Error::other("refusing to signal process group <= 1"));
    }
    if raw_kill(-pgid, signal) == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether a process with this id exists (it may belong to another user).
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    if raw_kill(pid, 0) == 0 {
        return true;
    }
    // EPERM: it exists but is not ours.
    io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Asks the kernel for a pipe buffer of `bytes` (Linux; elsewhere a no-op). Larger pipes mean
/// fewer wake-ups between a fast tap, dsm and the target. Failure is harmless and ignored.
pub fn grow_pipe(fd: &impl std::os::fd::AsRawFd, bytes: usize) {
    #[cfg(target_os = "linux")]
    {
        let Ok(bytes) = i32::try_from(bytes) else {
            return;
        };
        let _ = raw_set_pipe_size(fd.as_raw_fd(), bytes);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (fd, bytes);
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn raw_set_pipe_size(fd: i32, bytes: i32) -> i32 {
    // SAFETY: fcntl(F_SETPIPE_SZ) takes an fd and an integer and touches no memory of ours; an
    // invalid fd or size returns -1.
    unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, bytes) }
}

#[allow(unsafe_code)]
fn raw_kill(pid: i32, signal: i32) -> i32 {
    // SAFETY: kill(2) takes two integers and touches no memory of ours; any value is sound
    // (invalid ones return -1 with errno set).
    unsafe { libc::kill(pid, signal) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_process_is_alive_and_group_one_is_refused() {
        assert!(process_alive(std::process::id()));
        assert!(signal_group(1, 0).is_err());
        assert!(signal_group(0, 0).is_err());
    }
}

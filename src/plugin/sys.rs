//! The system calls the plugin runner needs that the standard library does not offer:
//! signalling a whole process group, asking whether a process id is still alive, growing a
//! pipe's buffer, and moving pipe contents without copying them (`tee`/`splice`, Linux).

use std::io;
#[cfg(target_os = "linux")]
use std::os::fd::{AsRawFd, BorrowedFd};

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

/// Stops, with SIGKILL to their process groups, the processes of this user whose environment
/// holds `name=value`: what is left of a run whose dsm was killed with -9 (the parent-death
/// signal stops the plugins themselves, not processes they started in turn). Returns how many
/// processes it found (Linux; elsewhere none). dsm's own process group is never signalled.
pub fn kill_leftovers(name: &str, value: &str) -> usize {
    if !cfg!(target_os = "linux") {
        return 0;
    }
    let marker = format!("{name}={value}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let own_group = own_process_group();
    let mut found = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        // Another user's processes (and ones that exited meanwhile) cannot be read: skipped.
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if !environ
            .split(|b| *b == 0)
            .any(|var| var == marker.as_bytes())
        {
            continue;
        }
        found += 1;
        match process_group(pid) {
            Some(group) if Some(group) != own_group && group > 1 => {
                let _ = signal_group(group, SIGKILL);
            }
            _ => {}
        }
        if let Ok(pid) = i32::try_from(pid)
            && pid > 1
        {
            raw_kill(pid, SIGKILL);
        }
    }
    found
}

/// The process group of `pid`, from `/proc/PID/stat` (its fifth field).
fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

fn own_process_group() -> Option<u32> {
    process_group(std::process::id())
}

/// Makes the child that `cmd` starts get SIGKILL when dsm dies (Linux's parent-death signal;
/// elsewhere nothing): a `kill -9` of dsm cannot leave a tap running that a later run would
/// start a second time. Set before `exec`, so it holds for the plugin's own program; the
/// child dies at once if dsm is already gone by then. The signal follows the thread that
/// spawned the child, so plugins are started from threads that outlive them (the runtime's).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt as _;
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before `exec` and only makes
    // async-signal-safe system calls (`prctl`, `getppid`, `raise`), touching no memory that
    // another thread could hold locked.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // dsm died between the fork and the prctl: do not start the plugin at all.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                libc::raise(libc::SIGKILL);
            }
            Ok(())
        });
    }
}

/// On systems without a parent-death signal, nothing.
#[cfg(not(target_os = "linux"))]
pub fn die_with_parent(_cmd: &mut std::process::Command) {}

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

/// Duplicates up to `len` bytes waiting in the pipe `from` into the pipe `to` without consuming
/// them (tee(2), non-blocking). `Ok(0)`: `from` is empty and closed.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn tee(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    // SAFETY: tee(2) takes two fds, a length and flags, and touches no memory of ours; the
    // borrowed fds are open for the duration of the call.
    let n = unsafe {
        libc::tee(
            from.as_raw_fd(),
            to.as_raw_fd(),
            len,
            libc::SPLICE_F_NONBLOCK,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Moves up to `len` bytes from the pipe `from` into the pipe `to` (splice(2), non-blocking):
/// the kernel hands the pages over instead of copying them.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    // SAFETY: splice(2) between two pipes with null offsets touches no memory of ours; the
    // borrowed fds are open for the duration of the call.
    let n = unsafe {
        libc::splice(
            from.as_raw_fd(),
            std::ptr::null_mut(),
            to.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Puts a file descriptor in non-blocking mode (O_NONBLOCK).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: fcntl(F_GETFL / F_SETFL) takes an fd and integers and touches no memory of ours.
    let r = unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 {
            flags
        } else {
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK)
        }
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How many bytes wait in a pipe (FIONREAD).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn pipe_pending(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which points at a live local.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

/// A pipe's buffer size in bytes (F_GETPIPE_SZ).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn pipe_capacity(fd: BorrowedFd<'_>) -> io::Result<usize> {
    // SAFETY: fcntl(F_GETPIPE_SZ) takes an fd and touches no memory of ours.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPIPE_SZ) };
    usize::try_from(r).map_err(|_| io::Error::last_os_error())
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

//! One run per flow: the lock a run holds on its flow's state id, refreshed by heartbeats.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{RunId, StateId, Store, format_time};
use crate::error::{Error, ErrorKind, Result};

/// A held lock on a flow (its state id). Release it with [`RunLocks::release_lock`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowLock {
    /// The flow's state id.
    pub state_id: StateId,
    /// Proves ownership: only the holder's token releases or refreshes the lock.
    pub token: String,
    /// The run this lock belongs to, refreshed together with the lock by heartbeats.
    pub run_id: Option<RunId>,
}

/// Who holds a flow's lock.
#[derive(Debug, Clone, Serialize)]
pub struct LockHolder {
    /// The flow's state id.
    pub state_id: StateId,
    /// The holder's process id (on `host`).
    pub pid: u32,
    /// The holder's host name.
    pub host: String,
    /// The holder's run, if it registered one.
    pub run_id: Option<RunId>,
    /// When the lock was taken.
    pub acquired_at: DateTime<Utc>,
    /// The holder's last heartbeat.
    pub heartbeat_at: DateTime<Utc>,
    /// Whether the holder is gone (old heartbeat, or dead PID on this host).
    pub stale: bool,
}

/// The flow locks. A lock is taken atomically; only the holder's token refreshes or releases it.
pub trait RunLocks {
    /// Takes the lock on a flow. Fails with [`ErrorKind::AlreadyRunning`] naming the holder
    /// unless the lock is free, stale, or `force` is set.
    fn acquire_lock(
        &self,
        state_id: &StateId,
        run_id: Option<&RunId>,
        force: bool,
    ) -> Result<FlowLock>;

    /// Refreshes the lock's heartbeat (and its run's). Returns `false` when the lock was taken
    /// over by someone else (with `--force`, or after it went stale).
    fn heartbeat(&self, lock: &FlowLock) -> Result<bool>;

    /// Releases the lock if this holder still has it.
    fn release_lock(&self, lock: &FlowLock) -> Result<()>;

    /// Who holds the lock on `state_id`, if anyone.
    fn lock_holder(&self, state_id: &StateId) -> Result<Option<LockHolder>>;

    /// Every held lock (stale ones included), sorted by state id.
    fn lock_holders(&self) -> Result<Vec<LockHolder>>;
}

/// The error a second run of the same flow gets (exit 3).
pub fn already_running_error(holder: &LockHolder) -> Error {
    let age = Utc::now()
        .signed_duration_since(holder.heartbeat_at)
        .num_seconds()
        .max(0);
    let mut err = Error::new(
        ErrorKind::AlreadyRunning,
        format!(
            "flow `{}` is already running (pid {} on `{}`, started {})",
            holder.state_id,
            holder.pid,
            holder.host,
            format_time(holder.acquired_at)
        ),
    )
    .detail(format!("its last heartbeat was {age}s ago"));
    if let Some(run) = &holder.run_id {
        err = err.detail(format!("run id `{run}`"));
    }
    err.hint(format!(
        "wait for it to finish (`dsm runs list --state-id {}`), or pass `--force` if you are sure it is not running",
        holder.state_id
    ))
}

/// The error of a run whose flow was taken over by another run (its lease lapsed, or
/// `--force`): none of its state is committed any more. The run stops and is recorded killed.
pub fn lease_lost_error(state_id: &StateId, run_id: &RunId) -> Error {
    Error::failed(format!(
        "lease lost: run `{run_id}` no longer holds the lease of flow `{state_id}`, so its state is not committed"
    ))
    .hint("another process took the flow over after this run stopped renewing its lease (paused, cut off, or too slow); the run that holds it now carries on from the last committed bookmark")
}

/// A background thread that refreshes a flow lock's (and its run's) heartbeat until dropped.
#[derive(Debug)]
pub struct HeartbeatThread {
    stop: Option<std::sync::mpsc::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl HeartbeatThread {
    /// Starts refreshing a flow lock (and the run it names) and/or a run without a lock, every
    /// `interval` (see [`liveness::HEARTBEAT_INTERVAL`]). Failures are logged, not fatal: a
    /// missed beat only matters after many intervals.
    pub fn start(
        store: Arc<dyn Store>,
        lock: Option<FlowLock>,
        run_id: Option<RunId>,
        interval: Duration,
    ) -> Self {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        // A lock's heartbeat already refreshes its own run.
        let run_id = run_id.filter(|r| lock.as_ref().and_then(|l| l.run_id.as_ref()) != Some(r));
        let handle = std::thread::Builder::new()
            .name("dsm-heartbeat".into())
            .spawn(move || {
                let mut lock = lock;
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(interval)
                {
                    if let Some(l) = &lock {
                        match store.heartbeat(l) {
                            Ok(true) => {}
                            Ok(false) => {
                                tracing::warn!(state_id = %l.state_id, "flow lock was taken over by another process");
                                lock = None;
                            }
                            Err(error) => {
                                tracing::warn!(state_id = %l.state_id, error = %error, "heartbeat failed");
                            }
                        }
                    }
                    if let Some(run) = &run_id
                        && let Err(error) = store.heartbeat_run(run)
                    {
                        tracing::warn!(run_id = %run, error = %error, "heartbeat failed");
                    }
                }
            })
            .ok();
        HeartbeatThread {
            stop: Some(stop),
            handle,
        }
    }
}

impl Drop for HeartbeatThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

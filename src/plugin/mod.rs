//! Spawning taps, targets and mappers: environment, private config files, stderr capture,
//! shutdown.
//!
//! A [`PluginSpec`] is what the settings layer resolved for one plugin; [`spawn`] starts it as
//! its own process group with its config in a private [`RunDir`], reads its stderr on a task of
//! its own (forwarded to tracing and the run's log file, the last lines kept for errors), and
//! [`PluginProcess::wait_or_stop`] stops it the way Meltano users expect: SIGTERM to the group,
//! then SIGKILL after a grace period.

pub mod executable;
pub mod install;
pub mod manage;
mod process;
mod runtime;
pub mod sys;

pub use process::{
    MIN_REDACTED_LEN, PluginExit, PluginProcess, PluginRole, PluginSpec, RunLog, STDERR_TAIL_LINES,
    StderrTail, StopRequest, apply_env, redact, redaction_forms, spawn, withhold_access,
};
pub use runtime::{RunDir, runtime_base};

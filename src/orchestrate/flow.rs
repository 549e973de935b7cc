//! The [`Flow`]: one thing `dsm sync` runs (a schedule, a job, or an extractor with a default loader).

use std::time::Duration;

use super::interval::Interval;
use super::retry::RetryPolicy;

/// Where a flow comes from in `meltano.yml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowKind {
    /// A `schedules` entry.
    Schedule,
    /// A `jobs` entry.
    Job,
    /// An extractor with `annotations.dsm.default_loader`.
    Extractor,
}

impl FlowKind {
    /// The word used in messages (`schedule`, `job`, `extractor`).
    pub fn as_str(self) -> &'static str {
        match self {
            FlowKind::Schedule => "schedule",
            FlowKind::Job => "job",
            FlowKind::Extractor => "extractor",
        }
    }
}

/// What a flow runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocks {
    /// An extractor/loader pair (a schedule with `extractor`/`loader`, or an extractor's default loader).
    Pair {
        /// The extractor's name.
        extractor: String,
        /// The loader's name.
        loader: String,
    },
    /// A job's tasks, each a space-separated block list as in Meltano (`tap-x target-y dbt:run`).
    Tasks(Vec<String>),
}

/// One thing `dsm sync` runs, with everything orchestration needs to know about it.
///
/// Built from the project model (schedules, jobs, extractors with a default loader); the
/// orchestration code only ever sees flows, so it does not depend on the project file's shape.
#[derive(Debug, Clone)]
pub struct Flow {
    /// The schedule, job or extractor name.
    pub name: String,
    /// Where the flow comes from.
    pub kind: FlowKind,
    /// What it runs.
    pub blocks: Blocks,
    /// The state id (a schedule's name for an extractor/loader schedule, as Meltano does).
    pub state_id: Option<String>,
    /// When it runs on its own; `None` for jobs and extractors, which only run when synced.
    pub interval: Option<Interval>,
    /// Names of flows that must succeed before this one starts (`annotations.dsm.depends_on`).
    pub depends_on: Vec<String>,
    /// Retries, backoff and timeout (`annotations.dsm.retries`, `retry_backoff`, `timeout`).
    pub retry: RetryPolicy,
    /// How long one attempt may take (`annotations.dsm.timeout`).
    pub timeout: Option<Duration>,
    /// `annotations.dsm.enabled` (true unless set to false).
    pub enabled: bool,
}

impl Flow {
    /// A flow with no interval, no dependencies, no retries and no timeout.
    pub fn new(name: impl Into<String>, kind: FlowKind, blocks: Blocks) -> Flow {
        Flow {
            name: name.into(),
            kind,
            blocks,
            state_id: None,
            interval: None,
            depends_on: Vec::new(),
            retry: RetryPolicy::default(),
            timeout: None,
            enabled: true,
        }
    }

    /// Whether `dsm sync` (without names) runs this flow: enabled, and its interval (if any)
    /// is not `@manual`/`@none`.
    pub fn runs_in_sync(&self) -> bool {
        self.enabled && self.interval.as_ref().is_none_or(Interval::runs_on_its_own)
    }
}

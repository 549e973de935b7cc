//! Flows, jobs, schedules, dependencies between flows, retries: what `dsm sync` runs.
//!
//! The pieces, one file each:
//! - [`interval`]: Meltano's `@` shortcuts and cron expressions, next and latest ticks;
//! - [`flow`]: the [`Flow`] the other pieces work on (built from a schedule, job or extractor);
//! - [`due`]: which schedules `dsm schedule run-due` starts now;
//! - [`graph`]: `depends_on` between flows, order and cycles;
//! - [`retry`]: `retries`, `retry_backoff`, `timeout` and durations;
//! - [`executor`]: runs a plan with a concurrency limit, retries, timeouts and skips;
//! - [`summary`]: the end-of-sync lines, the JSON shape and the exit code;
//! - [`export`]: crontab lines, systemd units and Kubernetes CronJobs;
//! - [`sync`]: running flows with the runner (one attempt, a whole plan), the plan of `dsm sync`;
//! - [`records`]: what the store remembers about each schedule, and its lock.

pub mod check;
pub mod due;
pub mod executor;
pub mod export;
pub mod flow;
pub mod graph;
pub mod interval;
pub mod project_flows;
pub mod records;
pub mod retry;
pub mod summary;
pub mod sync;

pub use due::{DueDecision, ScheduleRecord, decide_due};
pub use executor::{AttemptOutcome, FlowResult, execute};
pub use flow::{Blocks, Flow, FlowAnnotations, FlowKind, parse_time_zone};
pub use graph::{Plan, select_by_names};
pub use interval::Interval;
pub use project_flows::project_flows;
pub use retry::{RetryBackoff, RetryPolicy, attempt_of_trigger, attempt_trigger, parse_duration};
pub use summary::{
    AttemptReport, FlowNotes, FlowReport, FlowStatus, Overlap, RecordCounts, Summary,
};
pub use sync::{FlowContext, run_flow, run_plan};

use crate::error::Error;

/// What can go wrong while planning flows, reading intervals or exporting schedules.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OrchestrateError {
    /// An interval that is neither a known shortcut nor a 5-field cron expression.
    #[error("interval `{interval}` is not valid: {reason}")]
    BadInterval {
        /// The interval as written.
        interval: String,
        /// Why it was rejected.
        reason: String,
        /// The closest known shortcut, if any is close.
        suggestion: Option<String>,
    },
    /// A schedule's `annotations.dsm.timezone` that is not in the IANA database.
    #[error(
        "schedule `{schedule}` has an unknown time zone `{zone}` in `annotations.dsm.timezone`"
    )]
    UnknownTimeZone {
        /// The schedule's name.
        schedule: String,
        /// The zone as written.
        zone: String,
        /// The closest IANA name, if any is close.
        suggestion: Option<String>,
    },
    /// `annotations.dsm.timezone` on a job, which has no interval to read in it.
    #[error("job `{0}` has `annotations.dsm.timezone`, but only schedules have an interval")]
    TimeZoneOnJob(String),
    /// `depends_on` names a flow that does not exist.
    #[error("flow `{flow}` depends on `{dependency}`, which is not a schedule, job or extractor")]
    UnknownDependency {
        /// The dependant.
        flow: String,
        /// The missing name.
        dependency: String,
        /// The closest existing flow name, if any is close.
        suggestion: Option<String>,
    },
    /// A name given to `dsm sync` that is no schedule, job or extractor.
    #[error("`{name}` is not a schedule, job or extractor with a default loader")]
    UnknownFlow {
        /// The name as given.
        name: String,
        /// The closest existing flow name, if any is close.
        suggestion: Option<String>,
    },
    /// A name shared by flows of different kinds.
    #[error("`{name}` names more than one flow: {}", kinds.iter().map(|k| with_article(k)).collect::<Vec<_>>().join(", "))]
    AmbiguousName {
        /// The name as given.
        name: String,
        /// The kinds that have a flow of that name.
        kinds: Vec<String>,
    },
    /// `depends_on` goes round in a circle; `cycle` starts and ends with the same name.
    #[error("flows depend on each other in a cycle: {}", cycle.join(" → "))]
    Cycle {
        /// The names along the cycle, the first repeated at the end.
        cycle: Vec<String>,
    },
    /// Two flows with the same name were given to the planner.
    #[error("more than one flow is named `{0}`")]
    DuplicateFlow(String),
    /// A duration such as `5m` that could not be read.
    #[error("duration `{value}` is not valid: {reason}")]
    BadDuration {
        /// The text as written.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// An orchestration key in `annotations.dsm` with a value of the wrong shape.
    #[error("in `annotations.dsm`: {0}")]
    BadAnnotation(String),
    /// A schedule that a scheduler format cannot express.
    #[error("schedule `{schedule}` cannot be exported to {format}: {reason}")]
    NotExportable {
        /// The schedule's name.
        schedule: String,
        /// The target format.
        format: String,
        /// Why not.
        reason: String,
    },
}

/// `a schedule`, `a job`, `an extractor`.
fn with_article(kind: &str) -> String {
    let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {kind}")
}

impl From<OrchestrateError> for Error {
    fn from(e: OrchestrateError) -> Self {
        let message = e.to_string();
        let error = Error::config(message);
        match e {
            OrchestrateError::BadInterval {
                suggestion: Some(s),
                ..
            }
            | OrchestrateError::UnknownDependency {
                suggestion: Some(s),
                ..
            }
            | OrchestrateError::UnknownFlow {
                suggestion: Some(s),
                ..
            }
            | OrchestrateError::UnknownTimeZone {
                suggestion: Some(s),
                ..
            } => error.hint(format!("did you mean `{s}`?")),
            OrchestrateError::AmbiguousName { name, kinds } => {
                let mut error = error;
                for kind in kinds {
                    error = error.hint(format!("write `{kind}:{name}` for the {kind}"));
                }
                error
            }
            OrchestrateError::BadInterval { .. } => error
                .hint("use a shortcut such as `@daily` or a cron expression such as `0 3 * * *`"),
            OrchestrateError::UnknownDependency { .. } | OrchestrateError::UnknownFlow { .. } => {
                error.hint("`dsm schedule list` and `dsm job list` show the flows there are")
            }
            OrchestrateError::Cycle { .. } => {
                error.hint("remove one `depends_on` entry along the cycle")
            }
            OrchestrateError::UnknownTimeZone { .. } => {
                error.hint("use an IANA name such as `UTC` or `Europe/Berlin`")
            }
            OrchestrateError::TimeZoneOnJob(_) => error
                .hint("move `timezone` to the `annotations.dsm` of the schedule that runs the job"),
            _ => error,
        }
    }
}

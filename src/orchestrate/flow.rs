//! The [`Flow`]: one thing `dsm sync` runs (a schedule, a job, or an extractor with a default loader).

use std::time::Duration;

use chrono_tz::Tz;

use super::OrchestrateError;
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

impl std::fmt::Display for Blocks {
    /// `tap-x → target-y`, or a job's tasks separated by `; `.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Blocks::Pair { extractor, loader } => write!(f, "{extractor} → {loader}"),
            Blocks::Tasks(tasks) => f.write_str(&tasks.join("; ")),
        }
    }
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
    /// Set when one of its sources is `inactive` or in `maintenance`: why. The executor reports
    /// such a flow as paused without starting it.
    pub paused: Option<String>,
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
            paused: None,
        }
    }

    /// The plugin names its blocks use (extractors, mappers, loaders, utilities, and job
    /// names inside tasks), `:command` suffixes removed, in order without repeats.
    pub fn plugin_names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut push = |name: &str| {
            let name = name.split(':').next().unwrap_or(name);
            if !name.is_empty() && !out.iter().any(|n| n == name) {
                out.push(name.to_string());
            }
        };
        match &self.blocks {
            Blocks::Pair { extractor, loader } => {
                push(extractor);
                push(loader);
            }
            Blocks::Tasks(tasks) => tasks
                .iter()
                .flat_map(|t| t.split_whitespace())
                .for_each(&mut push),
        }
        out
    }

    /// Whether `dsm sync` (without names) runs this flow: enabled, and its interval (if any)
    /// is not `@manual`/`@none`.
    pub fn runs_in_sync(&self) -> bool {
        self.enabled && self.interval.as_ref().is_none_or(Interval::runs_on_its_own)
    }
}

/// The orchestration keys of a schedule's or job's `annotations.dsm` block: `depends_on`,
/// `retries`, `retry_backoff`, `timeout`, `enabled` (see [`super::retry`] for the shapes).
#[derive(Debug, Clone, PartialEq)]
pub struct FlowAnnotations {
    /// `depends_on`: a name or a list of names (`KIND:NAME` where kinds share a name).
    pub depends_on: Vec<String>,
    /// `retries` and `retry_backoff`.
    pub retry: RetryPolicy,
    /// `timeout`.
    pub timeout: Option<Duration>,
    /// `enabled` (default true).
    pub enabled: bool,
}

impl Default for FlowAnnotations {
    fn default() -> Self {
        FlowAnnotations {
            depends_on: Vec::new(),
            retry: RetryPolicy::default(),
            timeout: None,
            enabled: true,
        }
    }
}

impl Flow {
    /// Sets the orchestration fields from a flow's `annotations.dsm`.
    pub fn with_annotations(mut self, annotations: FlowAnnotations) -> Flow {
        self.depends_on = annotations.depends_on;
        self.retry = annotations.retry;
        self.timeout = annotations.timeout;
        self.enabled = annotations.enabled;
        self
    }
}

/// Reads the IANA time zone name (`UTC`, `Europe/Berlin`) of schedule `schedule`.
pub fn parse_time_zone(schedule: &str, name: &str) -> Result<Tz, OrchestrateError> {
    name.trim()
        .parse::<Tz>()
        .map_err(|_| OrchestrateError::UnknownTimeZone {
            schedule: schedule.to_string(),
            zone: name.to_string(),
            suggestion: crate::error::did_you_mean(
                name,
                chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()),
            )
            .map(str::to_owned),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_set_the_orchestration_fields() {
        let a = FlowAnnotations {
            depends_on: vec!["load-users".into(), "job:daily".into()],
            timeout: Some(Duration::from_secs(3600)),
            enabled: false,
            ..FlowAnnotations::default()
        };
        let flow = Flow::new("f", FlowKind::Job, Blocks::Tasks(vec![])).with_annotations(a);
        assert_eq!(flow.depends_on, ["load-users", "job:daily"]);
        assert_eq!(flow.timeout, Some(Duration::from_secs(3600)));
        assert!(!flow.runs_in_sync());
    }

    #[test]
    fn manual_schedules_and_disabled_flows_stay_out_of_sync() {
        let mut flow = Flow::new("s", FlowKind::Schedule, Blocks::Tasks(vec![]));
        assert!(flow.runs_in_sync());
        flow.interval = Some(Interval::parse("@none", Tz::UTC).unwrap());
        assert!(!flow.runs_in_sync());
        flow.interval = Some(Interval::parse("@once", Tz::UTC).unwrap());
        assert!(flow.runs_in_sync());
    }

    #[test]
    fn time_zones_are_iana_names() {
        assert_eq!(
            parse_time_zone("s", "Europe/Berlin").unwrap(),
            Tz::Europe__Berlin
        );
        assert!(matches!(
            parse_time_zone("s", "Mars/Olympus").unwrap_err(),
            OrchestrateError::UnknownTimeZone { schedule, zone, .. }
                if schedule == "s" && zone == "Mars/Olympus"
        ));
        match parse_time_zone("s", "Europe/Berlim").unwrap_err() {
            OrchestrateError::UnknownTimeZone { suggestion, .. } => {
                assert_eq!(suggestion.as_deref(), Some("Europe/Berlin"))
            }
            other => panic!("{other:?}"),
        }
    }
}

//! The flows of a project: its schedules, its jobs, and its extractors with
//! `annotations.dsm.default_loader`, in that order (the order `dsm sync` runs independent
//! flows in).
//!
//! - A schedule with a `job` runs the job's tasks; one with `extractor`/`loader` runs the pair
//!   with the schedule's name as its state id, as Meltano does (so imported bookmarks are found).
//!   Its `interval` is read in UTC, or in the IANA zone of its `annotations.dsm.timezone`
//!   (cron fields are local times there, daylight saving included); a schedule without one
//!   is `@manual`. A job has no interval, so `timezone` on a job is an error.
//! - A job runs its tasks. `dsm sync` without names leaves out jobs that a schedule runs, so
//!   each job runs once.
//! - An extractor with a default loader runs that pair with the usual state id.
//!
//! The orchestration keys (`depends_on`, `retries`, `retry_backoff`, `timeout`, `enabled`) come
//! from each schedule's or job's `annotations.dsm`; an extractor's `annotations.dsm.enabled`
//! applies to its flow. `retry_backoff` in `meltano.yml` is one duration: the wait before the
//! first retry, doubling up to at least five minutes.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono_tz::Tz;

use super::OrchestrateError;
use super::flow::{Blocks, Flow, FlowAnnotations, FlowKind, parse_time_zone};
use super::interval::Interval;
use super::retry::{RetryBackoff, parse_duration};
use crate::project::{DsmJob, PluginType, Project, Schedule, annotations};

/// Every flow of the project, schedules first, then jobs, then extractors with a default loader.
pub fn project_flows(project: &Project) -> Result<Vec<Flow>, OrchestrateError> {
    let mut flows = Vec::new();
    for schedule in project.schedules() {
        flows.push(schedule_flow(schedule)?);
    }
    for job in project.jobs() {
        let dsm = job.annotations.as_ref().and_then(|a| a.dsm.as_ref());
        if dsm.is_some_and(|d| d.timezone.is_some()) {
            return Err(OrchestrateError::TimeZoneOnJob(job.name.clone()));
        }
        let flow = Flow::new(&job.name, FlowKind::Job, Blocks::Tasks(job.task_list()))
            .with_annotations(flow_annotations(dsm)?);
        flows.push(flow);
    }
    for extractor in project.plugins_of(PluginType::Extractors) {
        let dsm = &extractor.annotations;
        let Some(loader) = dsm.default_loader.clone() else {
            continue;
        };
        let mut flow = Flow::new(
            &extractor.name,
            FlowKind::Extractor,
            Blocks::Pair {
                extractor: extractor.name.clone(),
                loader,
            },
        );
        flow.enabled = dsm.enabled.unwrap_or(true);
        flows.push(flow);
    }
    Ok(flows)
}

/// The names of jobs that some schedule runs (left out of a plain `dsm sync`).
pub fn scheduled_jobs(project: &Project) -> BTreeSet<String> {
    project
        .schedules()
        .iter()
        .filter_map(|s| s.job.clone())
        .collect()
}

/// Whether a plain `dsm sync` (no names) runs `flow`: enabled, not `@manual`/`@none`, and not
/// a job that a schedule runs.
pub fn runs_in_plain_sync(flow: &Flow, scheduled_jobs: &BTreeSet<String>) -> bool {
    flow.runs_in_sync() && !(flow.kind == FlowKind::Job && scheduled_jobs.contains(&flow.name))
}

/// The flow of one schedule.
pub fn schedule_flow(schedule: &Schedule) -> Result<Flow, OrchestrateError> {
    let blocks = match (&schedule.job, &schedule.extractor, &schedule.loader) {
        (Some(job), _, _) => Blocks::Tasks(vec![job.clone()]),
        (None, Some(extractor), Some(loader)) => Blocks::Pair {
            extractor: extractor.clone(),
            loader: loader.clone(),
        },
        _ => {
            return Err(OrchestrateError::BadAnnotation(format!(
                "schedule `{}` has neither a `job` nor an `extractor` and `loader`",
                schedule.name
            )));
        }
    };
    let pair = matches!(blocks, Blocks::Pair { .. });
    let dsm = schedule.annotations.as_ref().and_then(|a| a.dsm.as_ref());
    let mut flow = Flow::new(&schedule.name, FlowKind::Schedule, blocks)
        .with_annotations(flow_annotations(dsm)?);
    if pair {
        flow.state_id = Some(schedule.name.clone());
    }
    let tz = match dsm.and_then(|d| d.timezone.as_deref()) {
        Some(zone) => parse_time_zone(&schedule.name, zone)?,
        None => Tz::UTC,
    };
    let written = schedule.interval.as_deref().unwrap_or("@manual");
    flow.interval = Some(Interval::parse(written, tz)?);
    Ok(flow)
}

/// A schedule's or job's `annotations.dsm` as orchestration settings.
pub fn flow_annotations(dsm: Option<&DsmJob>) -> Result<FlowAnnotations, OrchestrateError> {
    let mut out = FlowAnnotations::default();
    let Some(dsm) = dsm else { return Ok(out) };
    out.depends_on = dsm.depends_on.clone();
    out.retry.retries = dsm.retries.unwrap_or(0);
    if let Some(initial) = &dsm.retry_backoff {
        let initial = duration(initial)?;
        let default = RetryBackoff::default();
        out.retry.backoff = RetryBackoff {
            initial,
            max: default.max.max(initial),
            multiplier: default.multiplier,
        };
    }
    out.timeout = dsm.timeout.as_ref().map(duration).transpose()?;
    out.enabled = dsm.enabled.unwrap_or(true);
    Ok(out)
}

fn duration(d: &annotations::Duration) -> Result<Duration, OrchestrateError> {
    match d {
        annotations::Duration::Seconds(s) => {
            crate::duration::seconds(*s).map_err(|e| OrchestrateError::BadDuration {
                value: e.text,
                reason: e.reason.to_string(),
            })
        }
        annotations::Duration::Text(t) => parse_duration(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dsm_job(json: serde_json::Value) -> DsmJob {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn annotations_become_flow_settings() {
        let a = flow_annotations(Some(&dsm_job(serde_json::json!({
            "depends_on": ["a"], "retries": 2, "retry_backoff": "10m", "timeout": "1h", "enabled": false
        }))))
        .unwrap();
        assert_eq!(a.depends_on, ["a"]);
        assert_eq!(a.retry.max_attempts(), 3);
        assert_eq!(a.retry.backoff.initial, Duration::from_secs(600));
        assert!(a.retry.backoff.max >= a.retry.backoff.initial);
        assert_eq!(a.timeout, Some(Duration::from_secs(3600)));
        assert!(!a.enabled);
        assert_eq!(flow_annotations(None).unwrap(), FlowAnnotations::default());
    }

    #[test]
    fn elt_schedules_use_their_name_as_state_id() {
        let s = Schedule {
            name: "daily-users".into(),
            extractor: Some("tap-x".into()),
            loader: Some("target-y".into()),
            interval: Some("@daily".into()),
            ..Schedule::default()
        };
        let flow = schedule_flow(&s).unwrap();
        assert_eq!(flow.state_id.as_deref(), Some("daily-users"));
        assert!(flow.runs_in_sync());
        let manual = Schedule {
            interval: Some("@manual".into()),
            ..s
        };
        assert!(!schedule_flow(&manual).unwrap().runs_in_sync());
    }

    #[test]
    fn schedule_time_zone_comes_from_its_annotations() {
        let s: Schedule = serde_json::from_value(serde_json::json!({
            "name": "tokyo",
            "extractor": "tap-x",
            "loader": "target-y",
            "interval": "@daily",
            "annotations": {"dsm": {"timezone": "Asia/Tokyo"}}
        }))
        .unwrap();
        let flow = schedule_flow(&s).unwrap();
        assert_eq!(flow.interval.as_ref().unwrap().tz(), Tz::Asia__Tokyo);
        let bad: Schedule = serde_json::from_value(serde_json::json!({
            "name": "mars",
            "job": "j",
            "interval": "@daily",
            "annotations": {"dsm": {"timezone": "Mars/Olympus"}}
        }))
        .unwrap();
        let err = schedule_flow(&bad).unwrap_err().to_string();
        assert!(
            err.contains("`mars`") && err.contains("`Mars/Olympus`"),
            "{err}"
        );
    }
}

//! Health of sources (extractors) and flows (state ids) from the run history: rates,
//! throughput, duration percentiles over a window, and a verdict.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::{run_duration, run_extractors};
use crate::store::{RunRecord, RunStatus};

/// What a health line is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Subject {
    /// An extractor, over every flow it takes part in.
    Source(String),
    /// A flow, by its state id.
    Flow(String),
    /// A receiver of notifications with failed deliveries (see `crate::notify`).
    Notification(String),
}

impl Subject {
    /// The source's or flow's name.
    pub fn name(&self) -> &str {
        match self {
            Subject::Source(n) | Subject::Flow(n) | Subject::Notification(n) => n,
        }
    }

    /// `source`, `flow` or `notification`.
    pub fn kind(&self) -> &'static str {
        match self {
            Subject::Source(_) => "source",
            Subject::Flow(_) => "flow",
            Subject::Notification(_) => "notification",
        }
    }
}

/// The verdict of one health line, worst first in [`health_report`]'s precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The newest finished runs all failed (see [`HealthOptions::failing_after`]).
    Failing,
    /// No successful run within its expected interval.
    Stale,
    /// Some runs in the window failed, but not the latest ones.
    Degraded,
    /// Every finished run in the window succeeded.
    Healthy,
    /// No finished run in the window and no expected interval to judge by.
    NoRuns,
}

impl Verdict {
    /// The word shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Failing => "failing",
            Verdict::Stale => "stale",
            Verdict::Degraded => "degraded",
            Verdict::Healthy => "healthy",
            Verdict::NoRuns => "no-runs",
        }
    }
}

/// How to judge health.
#[derive(Debug, Clone)]
pub struct HealthOptions {
    /// The current time.
    pub now: DateTime<Utc>,
    /// The window's start: rates and percentiles count runs started at or after it.
    pub since: DateTime<Utc>,
    /// A subject is failing when this many of its newest finished runs all failed (or every
    /// finished run in the window failed, when there are fewer).
    pub failing_after: usize,
    /// How often each subject is expected to succeed (its schedule's interval), by source or
    /// flow name. A subject without an entry is never stale.
    pub expected_every: HashMap<String, Duration>,
    /// Sources to report even without any run (the project's extractors).
    pub known_sources: Vec<String>,
}

/// Health of one source or flow.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// What this line is about.
    #[serde(flatten)]
    pub subject: Subject,
    /// The verdict.
    pub verdict: Verdict,
    /// Why, in a few words.
    pub reason: String,
    /// Finished runs in the window.
    pub runs: usize,
    /// Successful runs in the window.
    pub successes: usize,
    /// Failed or killed runs in the window.
    pub failures: usize,
    /// Runs still going.
    pub running: usize,
    /// `successes / runs`, when there were runs.
    pub success_rate: Option<f64>,
    /// `failures / runs`, when there were runs.
    pub error_rate: Option<f64>,
    /// Start of the newest successful run (in everything given, not only the window).
    pub last_success: Option<DateTime<Utc>>,
    /// Start of the newest failed or killed run.
    pub last_failure: Option<DateTime<Utc>>,
    /// The error of the newest failed run.
    pub last_error: Option<String>,
    /// Records per second over the successful runs in the window.
    pub records_per_second: Option<f64>,
    /// Bytes per second over the successful runs in the window.
    pub bytes_per_second: Option<f64>,
    /// Median run duration in seconds (finished runs in the window).
    pub duration_p50: Option<f64>,
    /// 90th percentile run duration in seconds.
    pub duration_p90: Option<f64>,
    /// 99th percentile run duration in seconds.
    pub duration_p99: Option<f64>,
}

/// Health of every source and flow found in `runs` (newest first or any order), plus every
/// name in `expected_every` that has no runs at all (those are stale). Sources come first,
/// then flows, each sorted by name.
pub fn health_report(runs: &[RunRecord], opts: &HealthOptions) -> Vec<Health> {
    let mut groups: BTreeMap<Subject, Vec<&RunRecord>> = BTreeMap::new();
    for run in runs {
        for extractor in run_extractors(run) {
            groups
                .entry(Subject::Source(extractor.to_owned()))
                .or_default()
                .push(run);
        }
        if let Some(state_id) = &run.state_id {
            groups
                .entry(Subject::Flow(state_id.to_string()))
                .or_default()
                .push(run);
        }
    }
    let named: std::collections::HashSet<String> =
        groups.keys().map(|s| s.name().to_owned()).collect();
    for name in opts.expected_every.keys().chain(&opts.known_sources) {
        if !named.contains(name) {
            groups.entry(Subject::Source(name.clone())).or_default();
        }
    }
    groups
        .into_iter()
        .map(|(subject, mut runs)| {
            runs.sort_by_key(|r| std::cmp::Reverse(r.started_at));
            judge(subject, &runs, opts)
        })
        .collect()
}

fn is_failure(status: RunStatus) -> bool {
    matches!(status, RunStatus::Failed | RunStatus::Killed)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn ratio(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

fn judge(subject: Subject, newest_first: &[&RunRecord], opts: &HealthOptions) -> Health {
    let finished: Vec<&RunRecord> = newest_first
        .iter()
        .copied()
        .filter(|r| r.status != RunStatus::Running)
        .collect();
    let in_window: Vec<&RunRecord> = finished
        .iter()
        .copied()
        .filter(|r| r.started_at >= opts.since)
        .collect();
    let running = newest_first
        .iter()
        .filter(|r| r.status == RunStatus::Running)
        .count();
    let successes = in_window
        .iter()
        .filter(|r| r.status == RunStatus::Success)
        .count();
    let failures = in_window.iter().filter(|r| is_failure(r.status)).count();
    let last_success = finished
        .iter()
        .find(|r| r.status == RunStatus::Success)
        .map(|r| r.started_at);
    let last_failed = finished.iter().find(|r| is_failure(r.status));

    let (mut records, mut bytes, mut secs) = (0u64, 0u64, 0f64);
    for r in in_window.iter().filter(|r| r.status == RunStatus::Success) {
        records += r.streams.iter().map(|s| s.records).sum::<u64>();
        bytes += r.streams.iter().map(|s| s.bytes).sum::<u64>();
        secs += run_duration(r).map_or(0.0, |d| d.num_milliseconds() as f64 / 1000.0);
    }
    let per_second = |n: u64| (secs > 0.0).then(|| n as f64 / secs);

    let mut durations: Vec<f64> = in_window
        .iter()
        .filter_map(|r| run_duration(r))
        .map(|d| d.num_milliseconds() as f64 / 1000.0)
        .collect();
    durations.sort_by(f64::total_cmp);

    let n = opts.failing_after.max(1).min(in_window.len());
    let newest_failed = n > 0 && in_window.iter().take(n).all(|r| is_failure(r.status));
    let expected = opts.expected_every.get(subject.name());
    let (verdict, reason) = if newest_failed {
        let runs = if n == 1 {
            "run".to_string()
        } else {
            format!("{n} runs")
        };
        (Verdict::Failing, format!("the last {runs} failed"))
    } else if let Some(every) = expected
        && last_success.is_none_or(|t| opts.now.signed_duration_since(t) > *every)
    {
        let reason = match last_success {
            Some(t) => format!(
                "last success {} ago, expected every {}",
                format_age(opts.now.signed_duration_since(t)),
                format_age(*every)
            ),
            None => format!("no successful run, expected every {}", format_age(*every)),
        };
        (Verdict::Stale, reason)
    } else if failures > 0 {
        (
            Verdict::Degraded,
            format!(
                "{failures} of {} failed",
                crate::printer::count(in_window.len() as u64, "run")
            ),
        )
    } else if in_window.is_empty() {
        (Verdict::NoRuns, "no finished run in the window".to_owned())
    } else {
        (
            Verdict::Healthy,
            crate::printer::count(successes as u64, "successful run"),
        )
    };

    Health {
        subject,
        verdict,
        reason,
        runs: in_window.len(),
        successes,
        failures,
        running,
        success_rate: ratio(successes, in_window.len()),
        error_rate: ratio(failures, in_window.len()),
        last_success,
        last_failure: last_failed.map(|r| r.started_at),
        last_error: finished
            .iter()
            .find(|r| is_failure(r.status) && r.error.is_some())
            .and_then(|r| r.error.clone()),
        records_per_second: per_second(records),
        bytes_per_second: per_second(bytes),
        duration_p50: percentile(&durations, 0.50),
        duration_p90: percentile(&durations, 0.90),
        duration_p99: percentile(&durations, 0.99),
    }
}

/// How often each extractor is expected to succeed, from the project's schedules: a schedule's
/// period (the gap between its two latest cron ticks) plus a tenth of it (at least a minute)
/// for the run itself. Legacy `extractor`/`loader` schedules name their extractor; job
/// schedules name every extractor in the job's tasks. `@manual`, `@once` and schedules that
/// do not parse set no expectation. With several schedules the most frequent wins.
pub fn schedule_expectations(
    project: &crate::project::Project,
    now: DateTime<Utc>,
) -> HashMap<String, Duration> {
    use crate::orchestrate::interval::Interval;
    use crate::project::PluginType;
    let extractors: std::collections::HashSet<&str> = project
        .plugins_of(PluginType::Extractors)
        .map(|p| p.name.as_str())
        .collect();
    let mut out: HashMap<String, Duration> = HashMap::new();
    for schedule in project.schedules() {
        let Some(interval) = schedule
            .interval
            .as_deref()
            .and_then(|i| Interval::parse(i, chrono_tz::UTC).ok())
        else {
            continue;
        };
        let Some(last) = interval.latest_due_at_or_before(now) else {
            continue;
        };
        let Some(next) = interval.next_after(last) else {
            continue;
        };
        let period = next - last;
        let expected = period
            + (period / 10).max(Duration::try_minutes(1).expect("a minute fits in a TimeDelta"));
        let mut names: Vec<String> = schedule.extractor.iter().cloned().collect();
        if let Some(job) = schedule.job.as_deref().and_then(|j| project.job(j)) {
            for task in job.task_list() {
                names.extend(
                    task.split_whitespace()
                        .filter(|b| extractors.contains(b))
                        .map(str::to_owned),
                );
            }
        }
        for name in names {
            out.entry(name)
                .and_modify(|d| *d = (*d).min(expected))
                .or_insert(expected);
        }
    }
    out
}

/// A short human age: `45s`, `12m`, `3h`, `2d`.
pub fn format_age(d: Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m", s / 60),
        3_600..86_400 => format!("{}h", s / 3_600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::testing::{RunSpec, now, store};
    use crate::store::RunStatus::{Failed, Killed, Running, Success};

    fn opts(window: Duration) -> HealthOptions {
        HealthOptions {
            now: now(),
            since: now() - window,
            failing_after: 3,
            expected_every: HashMap::new(),
            known_sources: vec!["tap-known".into()],
        }
    }

    fn line<'a>(report: &'a [Health], subject: &Subject) -> &'a Health {
        report.iter().find(|h| &h.subject == subject).unwrap()
    }

    fn src(name: &str) -> Subject {
        Subject::Source(name.into())
    }

    #[test]
    fn registry_health_computes_rates_throughput_and_percentiles_from_stored_runs() {
        let (_dir, store) = store();
        // Ten successful runs of 10..=100 seconds, each 1,000 records / 50,000 bytes.
        for i in 1..=10 {
            RunSpec::new(
                &format!("ok-{i}"),
                "tap-github",
                Success,
                Duration::hours(i),
                Duration::seconds(10 * i),
            )
            .stream("issues", 600, 30_000)
            .stream("users", 400, 20_000)
            .write(store.as_ref());
        }
        RunSpec::new(
            "bad",
            "tap-github",
            Failed,
            Duration::hours(11),
            Duration::seconds(5),
        )
        .write(store.as_ref());
        // Outside the 24h window: counted for last success only.
        RunSpec::new(
            "old",
            "tap-github",
            Failed,
            Duration::days(3),
            Duration::seconds(5),
        )
        .write(store.as_ref());

        let runs = store.list_runs_since(now() - Duration::days(30)).unwrap();
        let report = health_report(&runs, &opts(Duration::hours(24)));
        let h = line(&report, &src("tap-github"));
        assert_eq!((h.runs, h.successes, h.failures), (11, 10, 1));
        assert_eq!(h.success_rate, Some(10.0 / 11.0));
        assert_eq!(h.error_rate, Some(1.0 / 11.0));
        assert_eq!(h.last_success, Some(now() - Duration::hours(1)));
        assert_eq!(h.last_failure, Some(now() - Duration::hours(11)));
        assert_eq!(h.last_error.as_deref(), Some("`tap-github` exited with 1"));
        // 10,000 records over 550 seconds of successful runs.
        assert_eq!(h.records_per_second, Some(10_000.0 / 550.0));
        assert_eq!(h.bytes_per_second, Some(500_000.0 / 550.0));
        // Durations 5, 10, 20, ..., 100: nearest rank of 11 values.
        assert_eq!(h.duration_p50, Some(50.0));
        assert_eq!(h.duration_p90, Some(90.0));
        assert_eq!(h.duration_p99, Some(100.0));
        assert_eq!(h.verdict, Verdict::Degraded);
        // The flow of the same runs gets its own line.
        let flow = line(
            &report,
            &Subject::Flow("dev:tap-github-to-target-jsonl".into()),
        );
        assert_eq!(flow.runs, 11);
    }

    #[test]
    fn registry_health_verdicts_failing_stale_healthy() {
        let (_dir, store) = store();
        let s = store.as_ref();
        // tap-a: success then three failures in a row (newest) -> failing.
        RunSpec::new(
            "a0",
            "tap-a",
            Success,
            Duration::hours(5),
            Duration::seconds(1),
        )
        .write(s);
        for i in 1..=3 {
            RunSpec::new(
                &format!("a{i}"),
                "tap-a",
                Failed,
                Duration::hours(4 - i),
                Duration::seconds(1),
            )
            .write(s);
        }
        // tap-b: only successes, the newest 3 hours ago, expected hourly -> stale.
        RunSpec::new(
            "b0",
            "tap-b",
            Success,
            Duration::hours(3),
            Duration::seconds(1),
        )
        .write(s);
        // tap-c: a killed run, then a success -> degraded; a running run does not count.
        RunSpec::new(
            "c0",
            "tap-c",
            Killed,
            Duration::hours(2),
            Duration::seconds(1),
        )
        .write(s);
        RunSpec::new(
            "c1",
            "tap-c",
            Success,
            Duration::hours(1),
            Duration::seconds(1),
        )
        .write(s);
        RunSpec::new(
            "c2",
            "tap-c",
            Running,
            Duration::minutes(1),
            Duration::seconds(1),
        )
        .write(s);
        // tap-d: all good within its daily interval -> healthy.
        RunSpec::new(
            "d0",
            "tap-d",
            Success,
            Duration::hours(2),
            Duration::seconds(1),
        )
        .write(s);

        let mut o = opts(Duration::hours(24));
        o.expected_every.insert("tap-b".into(), Duration::hours(1));
        o.expected_every.insert("tap-d".into(), Duration::days(1));
        o.expected_every
            .insert("tap-never".into(), Duration::days(1));
        let runs = store.list_runs_since(now() - Duration::days(2)).unwrap();
        let report = health_report(&runs, &o);

        assert_eq!(line(&report, &src("tap-a")).verdict, Verdict::Failing);
        assert_eq!(
            line(&report, &src("tap-a")).reason,
            "the last 3 runs failed"
        );
        let b = line(&report, &src("tap-b"));
        assert_eq!(b.verdict, Verdict::Stale);
        assert_eq!(b.reason, "last success 3h ago, expected every 1h");
        let c = line(&report, &src("tap-c"));
        assert_eq!((c.verdict, c.runs, c.running), (Verdict::Degraded, 2, 1));
        assert_eq!(line(&report, &src("tap-d")).verdict, Verdict::Healthy);
        let never = line(&report, &src("tap-never"));
        assert_eq!(never.verdict, Verdict::Stale);
        assert_eq!(never.runs, 0);
    }

    #[test]
    fn registry_health_expectations_come_from_schedules() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("meltano.yml"),
            r#"version: 1
plugins:
  extractors:
  - name: tap-a
  - name: tap-b
  - name: tap-c
  loaders:
  - name: target-jsonl
schedules:
- name: a-hourly
  extractor: tap-a
  loader: target-jsonl
  transform: skip
  interval: '@hourly'
- name: a-daily
  extractor: tap-a
  loader: target-jsonl
  transform: skip
  interval: '@daily'
- name: b-job
  job: b-and-c
  interval: '*/15 * * * *'
- name: c-manual
  extractor: tap-c
  loader: target-jsonl
  transform: skip
  interval: '@manual'
jobs:
- name: b-and-c
  tasks:
  - tap-b target-jsonl
"#,
        )
        .unwrap();
        let project = crate::project::Project::load(dir.path()).unwrap();
        let got = schedule_expectations(&project, now());
        assert_eq!(
            got.get("tap-a"),
            Some(&(Duration::hours(1) + Duration::minutes(6)))
        );
        assert_eq!(
            got.get("tap-b"),
            Some(&(Duration::minutes(16) + Duration::seconds(30)))
        );
        assert_eq!(got.get("tap-c"), None);
    }

    #[test]
    fn registry_health_a_single_failed_run_is_failing_and_an_empty_window_has_no_runs() {
        let (_dir, store) = store();
        RunSpec::new(
            "x",
            "tap-x",
            Failed,
            Duration::hours(1),
            Duration::seconds(1),
        )
        .write(store.as_ref());
        RunSpec::new(
            "y",
            "tap-y",
            Success,
            Duration::days(3),
            Duration::seconds(1),
        )
        .write(store.as_ref());
        let runs = store.list_runs_since(now() - Duration::days(7)).unwrap();
        let report = health_report(&runs, &opts(Duration::hours(24)));
        assert_eq!(line(&report, &src("tap-x")).verdict, Verdict::Failing);
        let y = line(&report, &src("tap-y"));
        assert_eq!(
            (y.verdict, y.runs, y.success_rate),
            (Verdict::NoRuns, 0, None)
        );
        assert_eq!(y.last_success, Some(now() - Duration::days(3)));
        // A project extractor that never ran still gets its line.
        let known = line(&report, &src("tap-known"));
        assert_eq!((known.verdict, known.runs), (Verdict::NoRuns, 0));
    }
}

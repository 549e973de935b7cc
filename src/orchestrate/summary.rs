//! What `dsm sync` says at the end: one line per flow, the exit code, and the JSON shape
//! (`schemas/sync-summary.schema.json`).

use std::time::Duration;

use serde::Serialize;

use super::flow::FlowKind;

/// How a flow, or one attempt of it, ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowStatus {
    /// It ran and succeeded.
    Succeeded,
    /// It ran and failed.
    Failed,
    /// It was stopped after its `timeout`.
    TimedOut,
    /// It did not run because a dependency did not succeed.
    Skipped,
    /// It did not run because an operator took one of its sources out of syncs (`inactive` or
    /// `maintenance`), or a dependency was paused. Not a failure.
    Paused,
    /// It did not start because another process runs the same flow right now. Not a failure:
    /// an overlapping cron run is skipped, not retried.
    AlreadyRunning,
    /// It did not start because a flow it depends on runs in another process right now (its
    /// data is not ready yet). Not a failure, like [`FlowStatus::AlreadyRunning`].
    Waiting,
}

/// How a summary's exit code treats flows that did not start because they, or a flow they
/// depend on, run in another process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// Not a failure and not worth a non-zero exit: `dsm schedule run-due`, called every minute,
    /// meets a long run still going as a matter of course.
    Ignore,
    /// Exit code 3 (the CLI's "not started, already running") when nothing failed: a `dsm sync`
    /// or `dsm schedule run` asked for now did not do all it was asked.
    Exit3,
}

impl FlowStatus {
    /// Whether a flow that ended so counts as a success for the exit code: it succeeded, an
    /// operator paused it, or another process is running it.
    pub fn is_ok(self) -> bool {
        matches!(
            self,
            FlowStatus::Succeeded
                | FlowStatus::Paused
                | FlowStatus::AlreadyRunning
                | FlowStatus::Waiting
        )
    }

    /// The word used in the summary lines.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowStatus::Succeeded => "succeeded",
            FlowStatus::Failed => "failed",
            FlowStatus::TimedOut => "timed out",
            FlowStatus::Skipped => "skipped",
            FlowStatus::Paused => "paused",
            FlowStatus::AlreadyRunning => "running elsewhere",
            FlowStatus::Waiting => "waiting",
        }
    }
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    // Milliseconds are enough for people and scripts, and keep the JSON short.
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// What a flow's summary line adds for people (not part of the JSON document).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowNotes {
    /// Where the data went: the loader and its destination, one per run of the attempt.
    pub destinations: Vec<String>,
    /// Why records were sent again though the flow synced before.
    pub resent: Vec<String>,
    /// The run ids of the attempt, for `dsm runs show`.
    pub run_ids: Vec<String>,
}

/// Records of a flow or attempt at each step: read from the extractor, passed to the loader
/// (after mappers and transforms), confirmed by the loader (sent before the latest STATE it
/// emitted back).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RecordCounts {
    /// RECORD messages read from the extractor.
    #[serde(rename = "records_read")]
    pub read: u64,
    /// RECORD messages passed to the loader.
    #[serde(rename = "records_sent")]
    pub sent: u64,
    /// Records the loader confirmed.
    #[serde(rename = "records_confirmed")]
    pub confirmed: u64,
}

impl RecordCounts {
    /// The same number at every step.
    pub fn all(records: u64) -> RecordCounts {
        RecordCounts {
            read: records,
            sent: records,
            confirmed: records,
        }
    }

    /// Adds another attempt's or run's counts.
    pub fn plus(self, other: RecordCounts) -> RecordCounts {
        RecordCounts {
            read: self.read.saturating_add(other.read),
            sent: self.sent.saturating_add(other.sent),
            confirmed: self.confirmed.saturating_add(other.confirmed),
        }
    }

    /// For people, after the records read: what differs downstream (`, 1,000 sent, 800
    /// confirmed`), or nothing when every record read was sent and confirmed.
    pub fn downstream(&self) -> String {
        if self.sent == self.read && self.confirmed == self.sent {
            return String::new();
        }
        format!(
            ", {} sent, {} confirmed",
            crate::progress::group_thousands(self.sent),
            crate::progress::group_thousands(self.confirmed)
        )
    }
}

/// One attempt of a flow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptReport {
    /// 1 for the first attempt, 2 for the first retry, ...
    pub number: u32,
    /// How the attempt ended (never `skipped`).
    pub status: FlowStatus,
    /// Records read from the extractor in this attempt (as `counts.read`).
    pub records: u64,
    /// Records read, sent to the loader and confirmed by it.
    #[serde(flatten)]
    pub counts: RecordCounts,
    /// How long the attempt took.
    #[serde(rename = "duration_seconds", serialize_with = "seconds")]
    pub duration: Duration,
    /// What went wrong, when it did not succeed.
    pub error: Option<String>,
    /// More about the failure for people (stderr tail, log file); in the sync's error details,
    /// not in the JSON document's flows.
    #[serde(skip)]
    pub details: Vec<String>,
    /// Destination, records sent again, run ids.
    #[serde(skip)]
    pub notes: FlowNotes,
}

/// One flow's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowReport {
    /// The schedule, job or extractor name.
    pub name: String,
    /// Where the flow comes from.
    pub kind: FlowKind,
    /// The last attempt's status, or `skipped`.
    pub status: FlowStatus,
    /// Records read over all attempts (as `counts.read`).
    pub records: u64,
    /// Records read, sent to the loader and confirmed by it, over all attempts.
    #[serde(flatten)]
    pub counts: RecordCounts,
    /// From the start of the first attempt to the end of the last, waits included.
    #[serde(rename = "duration_seconds", serialize_with = "seconds")]
    pub duration: Duration,
    /// Every attempt, in order (empty when skipped).
    pub attempts: Vec<AttemptReport>,
    /// The last attempt's error.
    pub error: Option<String>,
    /// The last attempt's [`AttemptReport::details`].
    #[serde(skip)]
    pub details: Vec<String>,
    /// For a skipped flow: the dependency that failed or was skipped; for a flow paused
    /// because of a dependency: that dependency.
    pub skipped_because: Option<String>,
    /// For a paused flow: why (`source `tap-x` is in maintenance: reason`).
    pub paused_reason: Option<String>,
    /// The last attempt's [`AttemptReport::notes`].
    #[serde(skip)]
    pub notes: FlowNotes,
}

/// All flows of one `dsm sync`, in plan order (dependencies first, then the project file's order).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The flows' results.
    pub flows: Vec<FlowReport>,
}

impl Summary {
    /// Whether every flow succeeded, was paused by an operator or is running elsewhere (an
    /// empty sync succeeds).
    pub fn succeeded(&self) -> bool {
        self.flows.iter().all(|f| f.status.is_ok())
    }

    /// 0 when every flow succeeded, was paused or is running elsewhere, else 1 (so cron mail and
    /// CI read it right); `dsm schedule run-due`'s rule.
    pub fn exit_code(&self) -> u8 {
        self.exit_code_with(Overlap::Ignore)
    }

    /// 1 when a flow failed, timed out or was skipped; otherwise 3 under [`Overlap::Exit3`] when a
    /// flow did not start because it or a dependency runs elsewhere; otherwise 0.
    pub fn exit_code_with(&self, overlap: Overlap) -> u8 {
        if !self.succeeded() {
            return 1;
        }
        let busy = self
            .flows
            .iter()
            .any(|f| matches!(f.status, FlowStatus::AlreadyRunning | FlowStatus::Waiting));
        if busy && overlap == Overlap::Exit3 {
            3
        } else {
            0
        }
    }

    /// One line per flow, names aligned:
    /// `github-daily  succeeded  1,204 records  12.4s  1 attempt`.
    pub fn lines(&self) -> Vec<String> {
        let width = self.flows.iter().map(|f| f.name.len()).max().unwrap_or(0);
        self.flows
            .iter()
            .map(|f| {
                let mut line = format!("{:<width$}  {:<9}", f.name, f.status.as_str());
                if f.status == FlowStatus::Skipped {
                    if let Some(dep) = &f.skipped_because {
                        line.push_str(&format!("  `{dep}` did not succeed"));
                    }
                    return line;
                }
                if f.status == FlowStatus::Waiting {
                    if let Some(dep) = &f.skipped_because {
                        line.push_str(&format!("  `{dep}` is running elsewhere"));
                    }
                    return line;
                }
                if f.status == FlowStatus::Paused {
                    match (&f.paused_reason, &f.skipped_because) {
                        (Some(reason), _) => line.push_str(&format!("  {reason}")),
                        (None, Some(dep)) => line.push_str(&format!("  `{dep}` is paused")),
                        (None, None) => {}
                    }
                    return line;
                }
                let attempts = f.attempts.len();
                line.push_str(&format!(
                    "  {} record{}{}  {}  {} attempt{}",
                    crate::progress::group_thousands(f.records),
                    if f.records == 1 { "" } else { "s" },
                    f.counts.downstream(),
                    human_duration(f.duration),
                    attempts,
                    if attempts == 1 { "" } else { "s" },
                ));
                if let Some(error) = &f.error {
                    // A line per flow: a message of several lines shows its first, and says
                    // where the rest is.
                    let mut lines = error.lines();
                    line.push_str(&format!("  {}", lines.next().unwrap_or_default()));
                    if lines.next().is_some() {
                        match f.notes.run_ids.last() {
                            Some(id) => line.push_str(&format!(" (more: `dsm runs show {id}`)")),
                            None => line.push_str(" (more below)"),
                        }
                    }
                }
                if f.status == FlowStatus::Succeeded && !f.notes.destinations.is_empty() {
                    line.push_str(&format!("  → {}", f.notes.destinations.join(", ")));
                }
                line
            })
            .collect()
    }

    /// The `--format json` document (`schemas/sync-summary.schema.json`).
    pub fn to_json(&self) -> serde_json::Value {
        self.to_json_with(Overlap::Ignore)
    }

    /// The `--format json` document, its `exit_code` under the given rule.
    pub fn to_json_with(&self, overlap: Overlap) -> serde_json::Value {
        let mut value = serde_json::to_value(self).expect("a summary is plain data");
        let object = value.as_object_mut().expect("a summary is an object");
        object.insert("succeeded".into(), self.succeeded().into());
        object.insert("exit_code".into(), self.exit_code_with(overlap).into());
        value
    }
}

/// `0.4s`, `12.4s`, `3m05s`, `1h02m`.
fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(name: &str, status: FlowStatus, records: u64, attempts: u32) -> FlowReport {
        let attempts: Vec<AttemptReport> = (1..=attempts)
            .map(|number| AttemptReport {
                number,
                status: if number == attempts {
                    status
                } else {
                    FlowStatus::Failed
                },
                records: 0,
                counts: RecordCounts::default(),
                duration: Duration::from_millis(1500),
                error: None,
                details: Vec::new(),
                notes: FlowNotes::default(),
            })
            .collect();
        FlowReport {
            name: name.into(),
            kind: FlowKind::Schedule,
            status,
            records,
            counts: RecordCounts::all(records),
            duration: Duration::from_millis(12_400),
            attempts,
            error: (status == FlowStatus::Failed)
                .then(|| "extractor `tap-x` exited with status 1".into()),
            details: Vec::new(),
            skipped_because: (status == FlowStatus::Skipped).then(|| "load".into()),
            paused_reason: (status == FlowStatus::Paused)
                .then(|| "source `tap-x` is inactive: moved to the new API".into()),
            notes: FlowNotes::default(),
        }
    }

    // Issue 30: a multi-line error broke the summary, and a sync did not say where data went.
    #[test]
    fn lines_show_an_error_s_first_line_and_where_the_data_went() {
        let mut failed = report("load", FlowStatus::Failed, 0, 1);
        failed.error = Some("Traceback (most recent call last):\n  File x\nValueError".into());
        failed.notes.run_ids = vec!["0192-abc".into()];
        let mut ok = report("csv", FlowStatus::Succeeded, 1, 1);
        ok.notes.destinations = vec!["`target-sqlite` (database `out.db`)".into()];
        let summary = Summary {
            flows: vec![failed, ok],
        };
        assert_eq!(
            summary.lines(),
            [
                "load  failed     0 records  12.4s  1 attempt  Traceback (most recent call last): (more: `dsm runs show 0192-abc`)",
                "csv   succeeded  1 record  12.4s  1 attempt  → `target-sqlite` (database `out.db`)",
            ]
        );
    }

    #[test]
    fn lines_show_status_records_duration_attempts() {
        let summary = Summary {
            flows: vec![
                report("load", FlowStatus::Failed, 0, 3),
                report("github-daily", FlowStatus::Succeeded, 1_204_000, 1),
                report("report", FlowStatus::Skipped, 0, 0),
                report("legacy", FlowStatus::Paused, 0, 0),
            ],
        };
        assert_eq!(
            summary.lines(),
            [
                "load          failed     0 records  12.4s  3 attempts  extractor `tap-x` exited with status 1",
                "github-daily  succeeded  1,204,000 records  12.4s  1 attempt",
                "report        skipped    `load` did not succeed",
                "legacy        paused     source `tap-x` is inactive: moved to the new API",
            ]
        );
        assert_eq!(summary.exit_code(), 1);
    }

    #[test]
    fn a_line_says_what_was_sent_and_confirmed_when_it_differs_from_what_was_read() {
        let mut flow = report("users", FlowStatus::Succeeded, 1_000, 1);
        flow.counts = RecordCounts {
            read: 1_000,
            sent: 990,
            confirmed: 500,
        };
        let summary = Summary { flows: vec![flow] };
        assert_eq!(
            summary.lines(),
            ["users  succeeded  1,000 records, 990 sent, 500 confirmed  12.4s  1 attempt"]
        );
        let doc = serde_json::to_value(&summary.flows[0]).unwrap();
        assert_eq!(doc["records_read"], 1_000);
        assert_eq!(doc["records_sent"], 990);
        assert_eq!(doc["records_confirmed"], 500);
    }

    #[test]
    fn exit_code_is_zero_only_when_every_flow_succeeded() {
        let ok = Summary {
            flows: vec![report("a", FlowStatus::Succeeded, 1, 1)],
        };
        assert_eq!(ok.exit_code(), 0);
        assert_eq!(Summary { flows: vec![] }.exit_code(), 0);
        let paused = Summary {
            flows: vec![
                report("a", FlowStatus::Succeeded, 1, 1),
                report("b", FlowStatus::Paused, 0, 0),
            ],
        };
        assert_eq!(paused.exit_code(), 0, "a paused source is not a failure");
        for bad in [
            FlowStatus::Failed,
            FlowStatus::TimedOut,
            FlowStatus::Skipped,
        ] {
            let s = Summary {
                flows: vec![
                    report("a", FlowStatus::Succeeded, 1, 1),
                    report("b", bad, 0, 1),
                ],
            };
            assert_eq!(s.exit_code(), 1, "{bad:?}");
            assert_eq!(s.exit_code_with(Overlap::Exit3), 1, "{bad:?}");
        }
    }

    #[test]
    fn a_flow_running_elsewhere_exits_3_only_where_asked_and_never_hides_a_failure() {
        for busy in [FlowStatus::AlreadyRunning, FlowStatus::Waiting] {
            let s = Summary {
                flows: vec![
                    report("a", FlowStatus::Succeeded, 1, 1),
                    report("b", busy, 0, 0),
                ],
            };
            assert_eq!(s.exit_code(), 0, "{busy:?}");
            assert_eq!(s.exit_code_with(Overlap::Exit3), 3, "{busy:?}");
            assert_eq!(s.to_json_with(Overlap::Exit3)["exit_code"], 3);
            let failed = Summary {
                flows: vec![
                    report("a", FlowStatus::Failed, 1, 1),
                    report("b", busy, 0, 0),
                ],
            };
            assert_eq!(failed.exit_code_with(Overlap::Exit3), 1, "{busy:?}");
        }
    }

    #[test]
    fn durations_and_numbers_read_well() {
        assert_eq!(human_duration(Duration::from_millis(400)), "0.4s");
        assert_eq!(human_duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(human_duration(Duration::from_secs(3720)), "1h02m");
        assert_eq!(crate::progress::group_thousands(999), "999");
        assert_eq!(crate::progress::group_thousands(1000), "1,000");
    }

    /// The checked-in schema names exactly the keys the summary writes, and requires them all.
    #[test]
    fn json_matches_the_checked_in_schema() {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../schemas/sync-summary.schema.json")).unwrap();
        let summary = Summary {
            flows: vec![report("a", FlowStatus::Failed, 3, 2)],
        };
        let json = summary.to_json();
        assert_eq!(json["exit_code"], 1);
        assert_eq!(json["flows"][0]["status"], "failed");
        assert_eq!(json["flows"][0]["duration_seconds"].as_f64(), Some(12.4));

        fn keys(v: &serde_json::Value) -> Vec<String> {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        }
        fn required(v: &serde_json::Value) -> Vec<String> {
            let mut k: Vec<String> = v["required"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect();
            k.sort();
            k
        }
        let flow_schema = &schema["$defs"]["flow"];
        let attempt_schema = &schema["$defs"]["attempt"];
        for (value, sch) in [
            (&json, &schema),
            (&json["flows"][0], flow_schema),
            (&json["flows"][0]["attempts"][0], attempt_schema),
        ] {
            // `error` is added by the command when a flow failed (the printer's error object).
            let mut props = keys(&sch["properties"]);
            if std::ptr::eq(sch, &schema) {
                props.retain(|k| k != "error");
            }
            assert_eq!(keys(value), props);
            assert_eq!(keys(value), required(sch));
        }
        let statuses: Vec<&str> = schema["$defs"]["status"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        for status in [
            FlowStatus::Succeeded,
            FlowStatus::Failed,
            FlowStatus::TimedOut,
            FlowStatus::Skipped,
            FlowStatus::Paused,
            FlowStatus::AlreadyRunning,
        ] {
            let written = serde_json::to_value(status).unwrap();
            assert!(statuses.contains(&written.as_str().unwrap()), "{written}");
        }
    }
}

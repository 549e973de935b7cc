//! `dsm runs`: the run history (list and show), with `killed` derived for runs whose process
//! is gone.

use chrono::{DateTime, Utc};

use crate::commands::Context;
use crate::error::{Error, Result};
use crate::merge::MergeRunStats;
use crate::printer::OutputFormat;
use crate::registry::{PrunePolicy, parse_age, prune_runs, run_extractors};
use crate::store::{RunArtifact, RunFilter, RunId, RunRecord, RunStatus, StateId, format_time};

/// Arguments of `dsm runs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: RunsCommand,
}

/// `dsm runs` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first.
    List {
        /// Only runs of this flow (its state id).
        #[arg(long, visible_alias = "flow", value_name = "STATE_ID")]
        state_id: Option<String>,
        /// Only runs with this extractor.
        #[arg(long, value_name = "EXTRACTOR")]
        source: Option<String>,
        /// Only runs started within this age: `24h`, `7d`.
        #[arg(long, value_name = "AGE")]
        since: Option<String>,
        /// Only runs with this status.
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        /// At most this many runs.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Show one run: plugins and exit codes, streams, error, log file.
    Show {
        /// The run id.
        run_id: String,
    },
    /// Remove old runs with their per-run log and quarantine files. With both flags a run goes
    /// only when it is older than the age and not among the newest N of its flow. Automatic
    /// pruning after each run: `DSM_RUNS_RETENTION_MAX_AGE` and `DSM_RUNS_RETENTION_KEEP`.
    Prune {
        /// Remove runs started longer ago than this: `30d`, `12h`.
        #[arg(long, value_name = "AGE")]
        older_than: Option<String>,
        /// Keep the newest N runs of each flow.
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
        /// Show what would be removed without removing it.
        #[arg(long)]
        dry_run: bool,
        /// Remove this run (repeatable), whatever its age; also a run whose row is damaged.
        #[arg(long = "run-id", value_name = "RUN_ID")]
        run_ids: Vec<String>,
    },
}

/// A run status as `--status` takes it (the store's [`RunStatus`] knows nothing of clap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusArg {
    /// Still going.
    Running,
    /// Finished and succeeded.
    Success,
    /// Finished and failed.
    Failed,
    /// Ended without finishing (killed, crashed, or interrupted).
    Killed,
}

impl From<StatusArg> for RunStatus {
    fn from(s: StatusArg) -> Self {
        match s {
            StatusArg::Running => RunStatus::Running,
            StatusArg::Success => RunStatus::Success,
            StatusArg::Failed => RunStatus::Failed,
            StatusArg::Killed => RunStatus::Killed,
        }
    }
}

/// Runs `dsm runs`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let format = ctx.text_or_json()?;
    match args.command {
        RunsCommand::List {
            state_id,
            source,
            since,
            status,
            limit,
        } => {
            let status = status.map(RunStatus::from);
            let store = ctx.open_store()?;
            let state_id = state_id.map(StateId::new);
            let runs = match (&since, &source) {
                (None, None) => store.list_runs(&RunFilter {
                    state_id,
                    status,
                    limit: Some(limit),
                })?,
                _ => {
                    let all = match &since {
                        Some(age) => store.list_runs_since(
                            Utc::now()
                                .checked_sub_signed(parse_age(age)?)
                                .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC),
                        )?,
                        None => store.list_runs(&RunFilter {
                            state_id: state_id.clone(),
                            status,
                            limit: None,
                        })?,
                    };
                    all.into_iter()
                        .filter(|r| state_id.is_none() || r.state_id == state_id)
                        .filter(|r| status.is_none_or(|s| r.status == s))
                        .filter(|r| {
                            source
                                .as_deref()
                                .is_none_or(|src| run_extractors(r).any(|e| e == src))
                        })
                        .take(limit)
                        .collect()
                }
            };
            match format {
                OutputFormat::Json => {
                    let listed: Vec<Listed<'_>> = runs.iter().map(Listed::new).collect();
                    ctx.printer.json(&listed)
                }
                OutputFormat::Text if runs.is_empty() => ctx.printer.notice("no runs recorded"),
                OutputFormat::Text => {
                    let rows: Vec<Vec<String>> = runs.iter().map(list_row).collect();
                    ctx.printer.table(
                        &[
                            "RUN ID", "STATE ID", "STATUS", "STARTED", "DURATION", "RECORDS",
                            "TRIGGER",
                        ],
                        &rows,
                    );
                }
            }
            Ok(())
        }
        RunsCommand::Show { run_id } => {
            let id = RunId::new(run_id);
            let store = ctx.open_store()?;
            let run = store.get_run(&id)?.ok_or_else(|| {
                Error::config(format!("no run `{id}` in the system database"))
                    .hint("`dsm runs list` shows recent runs")
            })?;
            let shown = Shown {
                labels: store.stream_labels(&id)?,
                artifacts: store.run_artifacts(&id)?,
                merged_streams: merge_counts(ctx, &id),
                run: &run,
            };
            match format {
                OutputFormat::Json => ctx.printer.json(&shown),
                OutputFormat::Text => ctx.printer.raw(render_show(&shown)),
            }
            Ok(())
        }
        RunsCommand::Prune {
            older_than,
            keep,
            dry_run,
            run_ids,
        } => {
            let store = ctx.open_store()?;
            let private = ctx
                .project_root()
                .map(|root| root.join(crate::project::PRIVATE_DIR))
                .ok();
            let policy = PrunePolicy {
                older_than: older_than.as_deref().map(parse_age).transpose()?,
                keep,
                run_dirs: private
                    .as_deref()
                    .map(PrunePolicy::project_run_dirs)
                    .unwrap_or_default(),
                dry_run,
                run_ids: run_ids.into_iter().map(RunId::new).collect(),
            };
            let outcome = prune_runs(store.as_ref(), &policy, Utc::now())?;
            match format {
                OutputFormat::Json => ctx.printer.json(&outcome),
                OutputFormat::Text => {
                    let verb = if dry_run { "would remove" } else { "removed" };
                    ctx.printer.notice(format!(
                        "{verb} {} and {}",
                        crate::printer::count(outcome.runs.len() as u64, "run"),
                        crate::printer::count(outcome.files.len() as u64, "file")
                    ));
                    for (path, reason) in &outcome.failed_files {
                        ctx.printer
                            .warn(format!("could not remove `{}`: {reason}", path.display()));
                    }
                }
            }
            Ok(())
        }
    }
}

fn duration(run: &RunRecord) -> String {
    let end: DateTime<Utc> = match (run.ended_at, run.status) {
        (Some(end), _) => end,
        (None, RunStatus::Running) => Utc::now(),
        (None, _) => run.heartbeat_at,
    };
    let ms = end
        .signed_duration_since(run.started_at)
        .num_milliseconds()
        .max(0);
    let secs = ms as f64 / 1000.0;
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        let s = ms / 1000;
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

fn list_row(run: &RunRecord) -> Vec<String> {
    let records: u64 = run.streams.iter().map(|s| s.records).sum();
    vec![
        run.run_id.to_string(),
        run.state_id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_else(|| "-".into()),
        run.status.as_str().to_owned(),
        format_time(run.started_at),
        duration(run),
        records.to_string(),
        run.trigger.clone(),
    ]
}

/// A run as `dsm runs list --format json` writes it: the record, plus the attempt number a
/// retried flow's trigger carries (1 otherwise).
#[derive(serde::Serialize)]
struct Listed<'a> {
    #[serde(flatten)]
    run: &'a RunRecord,
    /// 1 for a first attempt, 2 for the first retry, ...
    attempt: u32,
}

impl<'a> Listed<'a> {
    fn new(run: &'a RunRecord) -> Self {
        Listed {
            run,
            attempt: crate::orchestrate::attempt_of_trigger(&run.trigger),
        }
    }
}

/// A run with the files it left behind and what it did to merged streams.
#[derive(serde::Serialize)]
struct Shown<'a> {
    #[serde(flatten)]
    run: &'a RunRecord,
    /// The classification label of each stream the run sent (empty in an unclassified
    /// project).
    labels: Vec<crate::classification::StreamLabel>,
    /// Quarantine files and the like.
    artifacts: Vec<RunArtifact>,
    /// Per merged stream and source: records in, sent, conflicts logged ...
    #[serde(skip_serializing_if = "Vec::is_empty")]
    merged_streams: Vec<MergeRunStats>,
}

/// The merged-stream counts of a run (none when the database has none or cannot be read).
fn merge_counts(ctx: &Context, id: &RunId) -> Vec<MergeRunStats> {
    let base = ctx.project_root().or_else(|_| ctx.cwd());
    let counts = base.and_then(|b| {
        let location = crate::store::locate(ctx.global.database_uri.as_deref(), &b)?;
        crate::store::merged::open(&location, &b)?.run_stats(id.as_str())
    });
    counts.unwrap_or_else(|e| {
        tracing::warn!(error = %e.message(), "could not read the merged-stream counts of the run");
        Vec::new()
    })
}

fn render_show(shown: &Shown<'_>) -> String {
    let run = shown.run;
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let mut out = String::new();
    let mut field = |k: &str, v: String| out.push_str(&format!("{k:<12} {v}\n"));
    field("run id", run.run_id.to_string());
    field(
        "state id",
        opt(run.state_id.as_ref().map(ToString::to_string)),
    );
    field("environment", opt(run.environment.clone()));
    field("status", run.status.as_str().to_owned());
    field("trigger", run.trigger.clone());
    field("started", format_time(run.started_at));
    field("ended", opt(run.ended_at.map(format_time)));
    field("duration", duration(run));
    field("process", format!("pid {} on `{}`", run.pid, run.host));
    field(
        "log file",
        opt(run.log_path.as_ref().map(|p| p.display().to_string())),
    );
    if let Some(error) = &run.error {
        field("error", error.clone());
    }
    if !run.plugins.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = run
            .plugins
            .iter()
            .map(|p| {
                vec![
                    p.plugin.clone(),
                    p.role.clone(),
                    p.exit_code.map_or_else(|| "-".into(), |c| c.to_string()),
                ]
            })
            .collect();
        out.push_str(&crate::printer::render_table(
            &["PLUGIN", "ROLE", "EXIT CODE"],
            &rows,
        ));
    }
    if !run.streams.is_empty() {
        out.push('\n');
        let label_of = |stream: &str| {
            shown
                .labels
                .iter()
                .find(|l| l.stream == stream)
                .or_else(|| {
                    shown
                        .labels
                        .iter()
                        .find(|l| l.stream == crate::classification::OTHER_STREAMS)
                })
                .map_or_else(|| "-".to_owned(), |l| l.label.clone())
        };
        let rows: Vec<Vec<String>> = run
            .streams
            .iter()
            .map(|s| {
                let mut row = vec![s.stream.clone(), s.records.to_string(), s.bytes.to_string()];
                if !shown.labels.is_empty() {
                    row.push(label_of(&s.stream));
                }
                row
            })
            .collect();
        let headers: &[&str] = if shown.labels.is_empty() {
            &["STREAM", "RECORDS", "BYTES"]
        } else {
            &["STREAM", "RECORDS", "BYTES", "LABEL"]
        };
        out.push_str(&crate::printer::render_table(headers, &rows));
    } else if !shown.labels.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = shown
            .labels
            .iter()
            .map(|l| vec![l.stream.clone(), l.label.clone(), l.because.clone()])
            .collect();
        out.push_str(&crate::printer::render_table(
            &["STREAM", "LABEL", "BECAUSE"],
            &rows,
        ));
    }
    if !shown.artifacts.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = shown
            .artifacts
            .iter()
            .map(|a| {
                vec![
                    a.kind.clone(),
                    a.stream.clone().unwrap_or_else(|| "-".into()),
                    a.label.clone().unwrap_or_else(|| "-".into()),
                    a.records.to_string(),
                    a.path.display().to_string(),
                ]
            })
            .collect();
        out.push_str(&crate::printer::render_table(
            &["FILE", "STREAM", "LABEL", "RECORDS", "PATH"],
            &rows,
        ));
    }
    if !shown.merged_streams.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = shown
            .merged_streams
            .iter()
            .map(|m| {
                vec![
                    m.stream.clone(),
                    m.source.clone(),
                    m.stats.records_in.to_string(),
                    m.stats.emitted.to_string(),
                    m.stats.resent.to_string(),
                    m.stats.conflicts.to_string(),
                    m.stats.quarantined.to_string(),
                ]
            })
            .collect();
        out.push_str(&crate::printer::render_table(
            &[
                "MERGED STREAM",
                "SOURCE",
                "RECORDS",
                "SENT",
                "SENT AGAIN",
                "CONFLICTS",
                "QUARANTINED",
            ],
            &rows,
        ));
    }
    out
}

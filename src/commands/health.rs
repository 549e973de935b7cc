//! `dsm health`: one line per source (and optionally per flow) from the run history, with a
//! verdict: healthy, degraded, failing, stale.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::commands::Context;
use crate::error::{Error, ErrorKind, Result};
use crate::printer::OutputFormat;
use crate::project::{PluginType, Project};
use crate::registry::health::{format_age, schedule_expectations};
use crate::registry::{Health, HealthOptions, Subject, Verdict, health_report, parse_age};
use crate::store::format_time;

/// Arguments of `dsm health`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The window rates and percentiles are computed over: `24h`, `7d`, `90m`.
    #[arg(long, default_value = "24h", value_name = "AGE")]
    pub since: String,
    /// A source or flow is failing when this many of its newest runs failed.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub failing_after: usize,
    /// How often NAME (a source or a flow's state id) must succeed, e.g. `tap-github=1h`;
    /// without a successful run in that time it is stale. Repeatable; overrides what the
    /// project's schedules imply (their interval plus a tenth).
    #[arg(long = "expect", value_name = "NAME=AGE")]
    pub expect: Vec<String>,
    /// Also show one line per flow (state id).
    #[arg(long)]
    pub flows: bool,
    /// Exit with status 1 when any line is failing or stale (for cron checks).
    #[arg(long)]
    pub check: bool,
}

fn parse_expect(items: &[String]) -> Result<HashMap<String, chrono::Duration>> {
    items
        .iter()
        .map(|item| {
            let (name, age) = item.split_once('=').ok_or_else(|| {
                Error::config(format!("`--expect {item}` has no `=`"))
                    .hint("write `--expect tap-github=1h`")
            })?;
            Ok((name.trim().to_owned(), parse_age(age)?))
        })
        .collect()
}

/// Runs `dsm health`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let format = ctx.text_or_json()?;
    let window = parse_age(&args.since)?;
    let now = Utc::now();
    // Schedules of the project set the expectations; `--expect` overrides them. Without a
    // project (only `--database-uri`) there are no schedules to judge staleness by.
    let project = match ctx.project_root() {
        Ok(root) => Some(Project::load(&root)?),
        Err(_) => None,
    };
    let mut expected_every = project
        .as_ref()
        .map(|p| schedule_expectations(p, now))
        .unwrap_or_default();
    let known_sources: Vec<String> = project
        .iter()
        .flat_map(|p| p.plugins_of(PluginType::Extractors))
        .map(|e| e.name.clone())
        .collect();
    expected_every.extend(parse_expect(&args.expect)?);
    // Look back far enough to find the last success of anything expected less often than the
    // window.
    let lookback = expected_every
        .values()
        .copied()
        .chain([window])
        .max()
        .unwrap_or(window);
    let store = ctx.open_store()?;
    let earliest = |d: chrono::Duration| {
        now.checked_sub_signed(d)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    };
    let runs = store.list_runs_since(earliest(lookback))?;
    let opts = HealthOptions {
        now,
        since: earliest(window),
        failing_after: args.failing_after,
        expected_every,
        known_sources,
    };
    let mut report: Vec<Health> = health_report(&runs, &opts)
        .into_iter()
        .filter(|h| args.flows || matches!(h.subject, Subject::Source(_)))
        .collect();
    // Receivers of notifications whose deliveries failed in the window.
    report.extend(
        crate::notify::failed_deliveries(store.as_ref(), earliest(window))?
            .iter()
            .map(crate::notify::FailedReceiver::health),
    );
    match format {
        OutputFormat::Json => ctx.printer.json(&report),
        OutputFormat::Text if report.is_empty() => ctx.printer.notice(format!(
            "no extractors and no runs in the last {}",
            args.since
        )),
        OutputFormat::Text => ctx.printer.table(
            &[
                "KIND",
                "NAME",
                "VERDICT",
                "RUNS",
                "SUCCESS",
                "LAST SUCCESS",
                "LAST FAILURE",
                "REC/S",
                "P50",
                "P90",
                "P99",
                "REASON",
            ],
            &report.iter().map(|h| text_row(h, now)).collect::<Vec<_>>(),
        ),
    }
    let failing = |h: &&Health| matches!(h.verdict, Verdict::Failing | Verdict::Stale);
    let receivers = report
        .iter()
        .filter(failing)
        .filter(|h| matches!(h.subject, Subject::Notification(_)))
        .count();
    let bad = report.iter().filter(failing).count() - receivers;
    if args.check && bad + receivers > 0 {
        let mut message = format!("{bad} source(s) or flow(s) are failing or stale");
        if receivers > 0 {
            message.push_str(&format!(
                "; {receivers} notification receiver(s) had failed deliveries"
            ));
        }
        return Err(Error::new(ErrorKind::Failed, message));
    }
    Ok(())
}

fn text_row(h: &Health, now: chrono::DateTime<Utc>) -> Vec<String> {
    let dash = || "-".to_owned();
    let ago = |t: Option<chrono::DateTime<Utc>>| {
        t.map_or_else(dash, |t| {
            format!("{} ({} ago)", format_time(t), format_age(now - t))
        })
    };
    let secs = |v: Option<f64>| v.map_or_else(dash, |s| format!("{s:.1}s"));
    vec![
        h.subject.kind().to_owned(),
        h.subject.name().to_owned(),
        h.verdict.as_str().to_owned(),
        h.runs.to_string(),
        h.success_rate
            .map_or_else(dash, |r| format!("{:.0}%", r * 100.0)),
        ago(h.last_success),
        ago(h.last_failure),
        h.records_per_second
            .map_or_else(dash, |r| format!("{r:.1}")),
        secs(h.duration_p50),
        secs(h.duration_p90),
        secs(h.duration_p99),
        h.reason.clone(),
    ]
}

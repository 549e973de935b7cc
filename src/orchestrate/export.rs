//! `dsm schedule export`: crontab lines, systemd timer and service units, Kubernetes CronJobs.
//!
//! Pure string generators: they take flows and options and return file contents. Each
//! scheduled run calls `dsm schedule run NAME` in the project directory, so locks, state and
//! run history work the same as from a shell. `@once`, `@manual`/`@none` and flows without an
//! interval have no recurring equivalent and are reported as skipped.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use chrono_tz::Tz;

use super::OrchestrateError;
use super::flow::Flow;
use super::interval::Interval;

/// What the generators need to know besides the schedules.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The project directory the commands run in (crontab and systemd).
    pub project_dir: String,
    /// The dsm executable (an absolute path is safest for cron and systemd).
    pub dsm: String,
    /// `--environment` to pass to every run, if any.
    pub environment: Option<String>,
    /// Kubernetes: the container image holding dsm and the project (required there).
    pub image: Option<String>,
    /// Kubernetes: where the project sits inside the image.
    pub container_project_dir: String,
    /// Kubernetes: the PersistentVolumeClaim mounted at the project's `.dsm/`.
    pub volume_claim: String,
    /// Kubernetes: the size requested for that claim.
    pub volume_size: String,
    /// Kubernetes: a Secret whose keys become the container's environment (the store URI,
    /// `PGPASSWORD`, the master key).
    pub secret: Option<String>,
    /// Kubernetes: the store is a PostgreSQL database the pods share (team mode), so no claim
    /// is needed for `.dsm/`.
    pub shared_store: bool,
}

impl ExportOptions {
    /// Options for the project at `project_dir`, with dsm found on `PATH`.
    pub fn new(project_dir: impl Into<String>) -> ExportOptions {
        ExportOptions {
            project_dir: project_dir.into(),
            dsm: "dsm".into(),
            environment: None,
            image: None,
            container_project_dir: "/project".into(),
            volume_claim: "dsm-state".into(),
            volume_size: "1Gi".into(),
            secret: None,
            shared_store: false,
        }
    }

    /// The words of `dsm [--environment E] schedule run NAME`.
    fn run_words(&self, name: &str) -> Vec<String> {
        let mut words = vec![self.dsm.clone()];
        if let Some(env) = &self.environment {
            words.push("--environment".into());
            words.push(env.clone());
        }
        words.extend(["schedule".into(), "run".into(), name.to_string()]);
        words
    }
}

/// One generated file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFile {
    /// A suggested file name (`crontab`, `dsm-daily.timer`, `dsm-schedules.yaml`).
    pub name: String,
    /// Its contents.
    pub contents: String,
}

/// A schedule left out of the export, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The schedule's name.
    pub name: String,
    /// Why it has no equivalent.
    pub reason: String,
}

/// What an export produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Export {
    /// The files to write or print.
    pub files: Vec<ExportFile>,
    /// Schedules with no recurring equivalent.
    pub skipped: Vec<Skipped>,
}

/// The cron expression and time zone of a flow that recurs, or why it does not.
fn recurring(flow: &Flow) -> Result<(&str, Tz), String> {
    match &flow.interval {
        Some(Interval::Cron { expression, tz, .. }) => Ok((expression, *tz)),
        Some(Interval::Once) => Err(format!(
            "`@once` runs a single time; run it with `dsm schedule run {}`",
            flow.name
        )),
        Some(Interval::Manual { written }) => Err(format!("`{written}` runs only when named")),
        None => Err(format!("a {} has no interval", flow.kind.as_str())),
    }
}

/// Quotes a word for `sh` when it needs it.
fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A double-quoted YAML scalar (JSON string syntax, which YAML reads the same way).
fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// Crontab lines: one per recurring schedule, with `CRON_TZ=` before each change of time zone
/// (cronie and most modern crons read it; Meltano's schedules are in UTC unless told otherwise).
/// A disabled schedule is written commented out.
pub fn crontab(flows: &[Flow], options: &ExportOptions) -> Export {
    let mut out = String::new();
    let mut skipped = Vec::new();
    let _ = writeln!(out, "# dsm schedules for {}", options.project_dir);
    let _ = writeln!(
        out,
        "# Generated by `dsm schedule export --format crontab`; install with `crontab FILE`."
    );
    let mut current_tz: Option<Tz> = None;
    for flow in flows {
        let (expression, tz) = match recurring(flow) {
            Ok(found) => found,
            Err(reason) => {
                let _ = writeln!(out, "# {} skipped: {reason}", flow.name);
                skipped.push(Skipped {
                    name: flow.name.clone(),
                    reason,
                });
                continue;
            }
        };
        if current_tz != Some(tz) {
            let _ = writeln!(out, "CRON_TZ={}", tz.name());
            current_tz = Some(tz);
        }
        let command: Vec<String> = options
            .run_words(&flow.name)
            .iter()
            .map(|w| shell_quote(w))
            .collect();
        // `%` ends a crontab command line unless escaped.
        let line = format!(
            "{expression} cd {} && {}",
            shell_quote(&options.project_dir),
            command.join(" ")
        )
        .replace('%', r"\%");
        if flow.enabled {
            let _ = writeln!(out, "{line}");
        } else {
            let _ = writeln!(out, "# disabled: {line}");
        }
    }
    Export {
        files: vec![ExportFile {
            name: "crontab".into(),
            contents: out,
        }],
        skipped,
    }
}

/// A unit-name-safe form of a schedule name.
fn unit_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("dsm-{cleaned}")
}

/// systemd units: a oneshot `.service` running the schedule and a `.timer` with the
/// `OnCalendar=` equivalent of its cron expression. `Persistent=true` runs a missed tick once
/// after boot, as `run-due` does. A disabled schedule gets units without an `[Install]` section.
pub fn systemd(flows: &[Flow], options: &ExportOptions) -> Result<Export, OrchestrateError> {
    let mut export = Export::default();
    let mut seen = BTreeSet::new();
    for flow in flows {
        let (expression, tz) = match recurring(flow) {
            Ok(found) => found,
            Err(reason) => {
                export.skipped.push(Skipped {
                    name: flow.name.clone(),
                    reason,
                });
                continue;
            }
        };
        let unit = unit_name(&flow.name);
        if !seen.insert(unit.clone()) {
            return Err(not_exportable(
                flow,
                "systemd",
                format!("another schedule also becomes the unit name `{unit}`"),
            ));
        }
        let calendars = on_calendar(expression, tz)
            .map_err(|reason| not_exportable(flow, "systemd", reason))?;
        let interval = flow.interval.as_ref().map(Interval::written).unwrap_or("");
        let exec: Vec<String> = options
            .run_words(&flow.name)
            .iter()
            .map(|w| systemd_quote(w))
            .collect();
        let mut service = String::new();
        let _ = writeln!(service, "[Unit]");
        let _ = writeln!(
            service,
            "Description=dsm schedule {} ({interval})",
            flow.name
        );
        let _ = writeln!(service);
        let _ = writeln!(service, "[Service]");
        let _ = writeln!(service, "Type=oneshot");
        let _ = writeln!(
            service,
            "WorkingDirectory={}",
            systemd_quote(&options.project_dir)
        );
        let _ = writeln!(service, "ExecStart={}", exec.join(" "));
        let mut timer = String::new();
        let _ = writeln!(timer, "[Unit]");
        let _ = writeln!(
            timer,
            "Description=Runs dsm schedule {} ({interval})",
            flow.name
        );
        let _ = writeln!(timer);
        let _ = writeln!(timer, "[Timer]");
        for calendar in &calendars {
            let _ = writeln!(timer, "OnCalendar={calendar}");
        }
        let _ = writeln!(timer, "Persistent=true");
        let _ = writeln!(timer, "Unit={unit}.service");
        if flow.enabled {
            let _ = writeln!(timer);
            let _ = writeln!(timer, "[Install]");
            let _ = writeln!(timer, "WantedBy=timers.target");
        }
        export.files.push(ExportFile {
            name: format!("{unit}.service"),
            contents: service,
        });
        export.files.push(ExportFile {
            name: format!("{unit}.timer"),
            contents: timer,
        });
    }
    Ok(export)
}

fn not_exportable(flow: &Flow, format: &str, reason: String) -> OrchestrateError {
    OrchestrateError::NotExportable {
        schedule: flow.name.clone(),
        format: format.into(),
        reason,
    }
}

/// Quotes a word for a systemd `ExecStart=` or path setting when it needs it.
fn systemd_quote(word: &str) -> String {
    if !word.is_empty() && !word.contains(|c: char| c.is_whitespace() || "\"'\\%$;".contains(c)) {
        word.to_string()
    } else {
        let escaped = word
            .replace('\\', r"\\")
            .replace('"', "\\\"")
            .replace('%', "%%")
            .replace('$', "$$");
        format!("\"{escaped}\"")
    }
}

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

/// The values one cron field allows, or `None` for every value (`*`).
fn cron_field(field: &str, min: u32, max: u32, names: &[&str]) -> Result<Option<Vec<u32>>, String> {
    if field == "*" {
        return Ok(None);
    }
    let value = |text: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
            return Ok(min + u32::try_from(i).expect("few names"));
        }
        let v: u32 = text
            .parse()
            .map_err(|_| format!("`{field}` uses syntax that has no systemd equivalent"))?;
        // cron allows 7 for Sunday.
        let v = if names.len() == 7 && v == 7 { 0 } else { v };
        if v < min || v > max {
            return Err(format!("`{text}` is outside {min}-{max}"));
        }
        Ok(v)
    };
    let mut values = BTreeSet::new();
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => (
                range,
                step.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("`{part}` has a bad step"))?,
            ),
            None => (part, 1),
        };
        let (low, high) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else if part.contains('/') {
            (value(range)?, max)
        } else {
            let v = value(range)?;
            (v, v)
        };
        let mut v = low;
        while v <= high {
            values.insert(v);
            v += step;
        }
    }
    Ok(Some(values.into_iter().collect()))
}

fn join(values: &Option<Vec<u32>>, width: usize) -> String {
    match values {
        None => "*".into(),
        Some(values) => values
            .iter()
            .map(|v| format!("{v:0width$}"))
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// The `OnCalendar=` values equivalent to a 5-field cron expression in `tz`. Cron runs when
/// the day of month *or* the weekday matches if both are restricted; systemd requires both,
/// so that case becomes two calendar lines.
pub fn on_calendar(expression: &str, tz: Tz) -> Result<Vec<String>, String> {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let [minute, hour, dom, month, dow] = fields[..] else {
        return Err(format!("`{expression}` does not have 5 fields"));
    };
    let minute = cron_field(minute, 0, 59, &[])?;
    let hour = cron_field(hour, 0, 23, &[])?;
    let days = cron_field(dom, 1, 31, &[])?;
    let months = cron_field(month, 1, 12, &MONTHS)?;
    let weekdays = cron_field(dow, 0, 6, &WEEKDAYS)?;
    let weekday_names = weekdays.as_ref().map(|days| {
        // Monday first, as systemd prints them.
        let mut sorted: Vec<u32> = days.clone();
        sorted.sort_by_key(|d| (d + 6) % 7);
        sorted
            .iter()
            .map(|d| WEEKDAYS[*d as usize])
            .collect::<Vec<_>>()
            .join(",")
    });
    let time = format!("{}:{}:00", join(&hour, 2), join(&minute, 2));
    let date = |days: &Option<Vec<u32>>| format!("*-{}-{}", join(&months, 2), join(days, 2));
    let zone = tz.name();
    Ok(match (&weekday_names, &days) {
        (Some(names), Some(_)) => vec![
            format!("{names} {} {time} {zone}", date(&None)),
            format!("{} {time} {zone}", date(&days)),
        ],
        (Some(names), None) => vec![format!("{names} {} {time} {zone}", date(&None))],
        (None, _) => vec![format!("{} {time} {zone}", date(&days))],
    })
}

/// A Kubernetes object name (DNS-1123, at most 52 characters so the CronJob's Jobs fit).
fn kubernetes_name(name: &str) -> String {
    let mut cleaned: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    cleaned = format!("dsm-{cleaned}");
    cleaned.truncate(52);
    cleaned.trim_end_matches('-').to_string()
}

/// Kubernetes manifests: one CronJob per recurring schedule with `concurrencyPolicy: Forbid`,
/// running the image's own `dsm` (never the exporting host's path), with the environment of
/// the Secret `options.secret` names when one does. With an SQLite store, one
/// PersistentVolumeClaim for the project's `.dsm/` (the store with state, locks and run
/// history; a pod without it would start every run from empty state) mounted by every CronJob;
/// with a shared PostgreSQL store, none. A disabled schedule's CronJob is `suspend: true`.
/// Kubernetes does not retry: dsm's own `retries` apply.
pub fn kubernetes(flows: &[Flow], options: &ExportOptions) -> Result<Export, OrchestrateError> {
    let image = options
        .image
        .as_deref()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| OrchestrateError::NotExportable {
            schedule: "*".into(),
            format: "kubernetes".into(),
            reason: "a container image is required (`--image`)".into(),
        })?;
    let mut out = String::new();
    let mut skipped = Vec::new();
    let claim = yaml_str(&options.volume_claim);
    let _ = writeln!(
        out,
        "# dsm schedules, generated by `dsm schedule export --format kubernetes`."
    );
    if let Some(secret) = &options.secret {
        let _ = writeln!(
            out,
            "# Each container's environment comes from the Secret `{secret}`: DSM_DATABASE_URI (no password in it), PGPASSWORD and DSM_MASTER_KEY."
        );
    }
    let mut first = true;
    if !options.shared_store {
        let _ = writeln!(
            out,
            "# Every CronJob mounts the same claim at .dsm/: give it ReadWriteMany storage, or keep the pods on one node."
        );
        let _ = writeln!(out, "apiVersion: v1");
        let _ = writeln!(out, "kind: PersistentVolumeClaim");
        let _ = writeln!(out, "metadata:");
        let _ = writeln!(out, "  name: {claim}");
        let _ = writeln!(out, "spec:");
        let _ = writeln!(out, "  accessModes:");
        let _ = writeln!(out, "    - ReadWriteOnce");
        let _ = writeln!(out, "  resources:");
        let _ = writeln!(out, "    requests:");
        let _ = writeln!(out, "      storage: {}", yaml_str(&options.volume_size));
        first = false;
    } else {
        let _ = writeln!(
            out,
            "# The store is a PostgreSQL database the pods share: no volume is needed."
        );
    }
    let mut seen = BTreeSet::new();
    let dsm_dir = format!(
        "{}/{}",
        options.container_project_dir.trim_end_matches('/'),
        crate::project::PRIVATE_DIR
    );
    for flow in flows {
        let (expression, tz) = match recurring(flow) {
            Ok(found) => found,
            Err(reason) => {
                let _ = writeln!(out, "# {} skipped: {reason}", flow.name);
                skipped.push(Skipped {
                    name: flow.name.clone(),
                    reason,
                });
                continue;
            }
        };
        let name = kubernetes_name(&flow.name);
        if !seen.insert(name.clone()) {
            return Err(not_exportable(
                flow,
                "kubernetes",
                format!("another schedule also becomes the name `{name}`"),
            ));
        }
        // The image's dsm, on its PATH: the exporting host's path means nothing in a pod.
        let mut words = options.run_words(&flow.name);
        words[0] = "dsm".into();
        let command: Vec<String> = words.iter().map(|w| yaml_str(w)).collect();
        if !first {
            let _ = writeln!(out, "---");
        }
        first = false;
        let _ = writeln!(out, "apiVersion: batch/v1");
        let _ = writeln!(out, "kind: CronJob");
        let _ = writeln!(out, "metadata:");
        let _ = writeln!(out, "  name: {name}");
        let _ = writeln!(out, "  labels:");
        let _ = writeln!(out, "    app.kubernetes.io/managed-by: dsm");
        let _ = writeln!(out, "  annotations:");
        let _ = writeln!(out, "    dsm/schedule: {}", yaml_str(&flow.name));
        let _ = writeln!(out, "spec:");
        let _ = writeln!(out, "  schedule: {}", yaml_str(expression));
        let _ = writeln!(out, "  timeZone: {}", yaml_str(tz.name()));
        let _ = writeln!(out, "  concurrencyPolicy: Forbid");
        let _ = writeln!(out, "  suspend: {}", !flow.enabled);
        let _ = writeln!(out, "  jobTemplate:");
        let _ = writeln!(out, "    spec:");
        let _ = writeln!(out, "      backoffLimit: 0");
        let _ = writeln!(out, "      template:");
        let _ = writeln!(out, "        spec:");
        let _ = writeln!(out, "          restartPolicy: Never");
        let _ = writeln!(out, "          containers:");
        let _ = writeln!(out, "            - name: dsm");
        let _ = writeln!(out, "              image: {}", yaml_str(image));
        let _ = writeln!(
            out,
            "              workingDir: {}",
            yaml_str(&options.container_project_dir)
        );
        let _ = writeln!(out, "              command: [{}]", command.join(", "));
        if let Some(secret) = &options.secret {
            let _ = writeln!(out, "              envFrom:");
            let _ = writeln!(out, "                - secretRef:");
            let _ = writeln!(out, "                    name: {}", yaml_str(secret));
        }
        if !options.shared_store {
            let _ = writeln!(out, "              volumeMounts:");
            let _ = writeln!(out, "                - name: dsm-state");
            let _ = writeln!(out, "                  mountPath: {}", yaml_str(&dsm_dir));
            let _ = writeln!(out, "          volumes:");
            let _ = writeln!(out, "            - name: dsm-state");
            let _ = writeln!(out, "              persistentVolumeClaim:");
            let _ = writeln!(out, "                claimName: {claim}");
        }
    }
    Ok(Export {
        files: vec![ExportFile {
            name: "dsm-schedules.yaml".into(),
            contents: out,
        }],
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrate::flow::{Blocks, FlowKind};
    use serde_json::Value;

    fn schedule(name: &str, interval: &str, tz: &str) -> Flow {
        let mut f = Flow::new(
            name,
            FlowKind::Schedule,
            Blocks::Pair {
                extractor: "tap-csv".into(),
                loader: "target-jsonl".into(),
            },
        );
        f.interval = Some(Interval::parse(interval, tz.parse().unwrap()).unwrap());
        f
    }

    fn flows() -> Vec<Flow> {
        let mut off = schedule("paused", "@hourly", "UTC");
        off.enabled = false;
        vec![
            schedule("github-daily", "@daily", "UTC"),
            schedule("berlin_morning", "30 6 * * 1-5", "Europe/Berlin"),
            schedule("backfill", "@once", "UTC"),
            schedule("by-hand", "@manual", "UTC"),
            off,
        ]
    }

    fn options() -> ExportOptions {
        let mut o = ExportOptions::new("/srv/my project");
        o.environment = Some("prod".into());
        o
    }

    #[test]
    fn crontab_expands_shortcuts_and_changes_time_zone_per_line() {
        let export = crontab(&flows(), &options());
        let text = &export.files[0].contents;
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("# dsm") && !l.starts_with("# Generated"))
            .collect();
        assert_eq!(
            lines,
            [
                "CRON_TZ=UTC",
                "0 0 * * * cd '/srv/my project' && dsm --environment prod schedule run github-daily",
                "CRON_TZ=Europe/Berlin",
                "30 6 * * 1-5 cd '/srv/my project' && dsm --environment prod schedule run berlin_morning",
                "# backfill skipped: `@once` runs a single time; run it with `dsm schedule run backfill`",
                "# by-hand skipped: `@manual` runs only when named",
                "CRON_TZ=UTC",
                "# disabled: 0 * * * * cd '/srv/my project' && dsm --environment prod schedule run paused",
            ]
        );
        let skipped: Vec<&str> = export.skipped.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(skipped, ["backfill", "by-hand"]);
    }

    #[test]
    fn crontab_quotes_odd_names_and_escapes_percent() {
        let export = crontab(
            &[schedule("it's 100%", "@hourly", "UTC")],
            &ExportOptions::new("/p"),
        );
        assert!(
            export.files[0]
                .contents
                .contains(r"0 * * * * cd /p && dsm schedule run 'it'\''s 100\%'"),
            "{}",
            export.files[0].contents
        );
    }

    #[test]
    fn on_calendar_covers_shortcuts_lists_steps_and_weekdays() {
        let utc = Tz::UTC;
        assert_eq!(
            on_calendar("0 0 * * *", utc).unwrap(),
            ["*-*-* 00:00:00 UTC"]
        );
        assert_eq!(
            on_calendar("0 * * * *", utc).unwrap(),
            ["*-*-* *:00:00 UTC"]
        );
        assert_eq!(
            on_calendar("0 0 1 1 *", utc).unwrap(),
            ["*-01-01 00:00:00 UTC"]
        );
        assert_eq!(
            on_calendar("0 0 * * 0", utc).unwrap(),
            ["Sun *-*-* 00:00:00 UTC"]
        );
        assert_eq!(
            on_calendar("*/20 9-11 * * 1-5", utc).unwrap(),
            ["Mon,Tue,Wed,Thu,Fri *-*-* 09,10,11:00,20,40:00 UTC"]
        );
        assert_eq!(
            on_calendar("0 12 * JAN,jul sun,7", utc).unwrap(),
            ["Sun *-01,07-* 12:00:00 UTC"]
        );
        // Cron ORs a restricted day of month with a restricted weekday; systemd ANDs them.
        assert_eq!(
            on_calendar("0 3 1,15 * 5", "Europe/Berlin".parse().unwrap()).unwrap(),
            [
                "Fri *-*-* 03:00:00 Europe/Berlin",
                "*-*-01,15 03:00:00 Europe/Berlin"
            ]
        );
        assert!(on_calendar("0 0 L * *", utc).is_err());
        assert!(on_calendar("0 0 * * 5#2", utc).is_err());
    }

    #[test]
    fn systemd_writes_a_service_and_a_timer_per_recurring_schedule() {
        let export = systemd(&flows(), &options()).unwrap();
        let names: Vec<&str> = export.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "dsm-github-daily.service",
                "dsm-github-daily.timer",
                "dsm-berlin_morning.service",
                "dsm-berlin_morning.timer",
                "dsm-paused.service",
                "dsm-paused.timer",
            ]
        );
        let service = &export.files[0].contents;
        assert!(service.contains("Type=oneshot\n"), "{service}");
        assert!(
            service.contains("WorkingDirectory=\"/srv/my project\"\n"),
            "{service}"
        );
        assert!(
            service.contains("ExecStart=dsm --environment prod schedule run github-daily\n"),
            "{service}"
        );
        let timer = &export.files[3].contents;
        assert!(
            timer.contains("OnCalendar=Mon,Tue,Wed,Thu,Fri *-*-* 06:30:00 Europe/Berlin\n"),
            "{timer}"
        );
        assert!(
            timer.contains("Persistent=true\n")
                && timer.contains("Unit=dsm-berlin_morning.service\n"),
            "{timer}"
        );
        assert!(timer.contains("WantedBy=timers.target"), "{timer}");
        assert!(
            !export.files[5].contents.contains("[Install]"),
            "a disabled timer is not installed"
        );
        assert_eq!(export.skipped.len(), 2);
    }

    #[test]
    fn kubernetes_needs_an_image() {
        let err = kubernetes(&flows(), &options()).unwrap_err();
        assert!(err.to_string().contains("`--image`"), "{err}");
    }

    #[test]
    fn kubernetes_cronjobs_forbid_overlap_and_mount_the_store() {
        let mut options = options();
        options.image = Some("registry.example/acme/dsm-project:1.2".into());
        let export = kubernetes(&flows(), &options).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&export.files[0].contents).unwrap();
        assert_eq!(docs.len(), 4, "a claim and three CronJobs");
        assert_eq!(docs[0]["kind"], "PersistentVolumeClaim");
        assert_eq!(docs[0]["metadata"]["name"], "dsm-state");
        let names: Vec<&str> = docs[1..]
            .iter()
            .map(|d| d["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["dsm-github-daily", "dsm-berlin-morning", "dsm-paused"]
        );
        for doc in &docs[1..] {
            assert_eq!(doc["apiVersion"], "batch/v1");
            assert_eq!(doc["kind"], "CronJob");
            assert_eq!(doc["spec"]["concurrencyPolicy"], "Forbid");
            let pod = &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"];
            assert_eq!(pod["restartPolicy"], "Never");
            let container = &pod["containers"][0];
            assert_eq!(container["image"], "registry.example/acme/dsm-project:1.2");
            assert_eq!(container["workingDir"], "/project");
            assert_eq!(container["volumeMounts"][0]["mountPath"], "/project/.dsm");
            assert_eq!(
                container["volumeMounts"][0]["name"],
                pod["volumes"][0]["name"]
            );
            assert_eq!(
                pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
                "dsm-state"
            );
        }
        let berlin = &docs[2];
        assert_eq!(berlin["spec"]["schedule"], "30 6 * * 1-5");
        assert_eq!(berlin["spec"]["timeZone"], "Europe/Berlin");
        assert_eq!(berlin["spec"]["suspend"], false);
        assert_eq!(
            berlin["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"],
            serde_json::json!([
                "dsm",
                "--environment",
                "prod",
                "schedule",
                "run",
                "berlin_morning"
            ])
        );
        assert_eq!(docs[3]["spec"]["suspend"], true);
        assert_eq!(docs[1]["spec"]["schedule"], "0 0 * * *");
    }

    #[test]
    fn names_that_collide_after_cleaning_are_an_error() {
        let mut options = ExportOptions::new("/p");
        options.image = Some("img".into());
        let flows = [
            schedule("a_b", "@daily", "UTC"),
            schedule("a.b", "@daily", "UTC"),
        ];
        assert!(matches!(
            kubernetes(&flows, &options),
            Err(OrchestrateError::NotExportable { .. })
        ));
        let flows = [
            schedule("a b", "@daily", "UTC"),
            schedule("a/b", "@daily", "UTC"),
        ];
        assert!(matches!(
            systemd(&flows, &options),
            Err(OrchestrateError::NotExportable { .. })
        ));
    }

    // Issue 23: runnable as is in team mode: the image's dsm, the Secret's environment, no
    // claim for a PostgreSQL store.
    #[test]
    fn kubernetes_with_a_shared_store_takes_its_environment_from_a_secret() {
        let mut options = options();
        options.dsm = "/home/me/.cargo/bin/dsm".into();
        options.image = Some("registry.example/acme/etl:2".into());
        options.secret = Some("dsm-store".into());
        options.shared_store = true;
        let export = kubernetes(&flows(), &options).unwrap();
        let text = &export.files[0].contents;
        assert!(!text.contains("/home/me"), "{text}");
        let docs: Vec<Value> = serde_saphyr::from_multiple(text).unwrap();
        assert_eq!(docs.len(), 3, "three CronJobs, no claim: {text}");
        for doc in &docs {
            assert_eq!(doc["kind"], "CronJob");
            let pod = &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"];
            assert!(pod.get("volumes").is_none(), "{text}");
            let container = &pod["containers"][0];
            assert_eq!(container["command"][0], "dsm");
            assert_eq!(container["envFrom"][0]["secretRef"]["name"], "dsm-store");
            assert!(container.get("volumeMounts").is_none());
        }
        // With an SQLite store the claim stays, and the Secret is still used.
        options.shared_store = false;
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(&kubernetes(&flows(), &options).unwrap().files[0].contents)
                .unwrap();
        assert_eq!(docs[0]["kind"], "PersistentVolumeClaim");
        assert_eq!(
            docs[1]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["envFrom"]
                [0]["secretRef"]["name"],
            "dsm-store"
        );
    }
}

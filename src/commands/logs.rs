//! `dsm logs`: the per-run log files, with Meltano 4's `logs list`, `logs show` and `logs dir`.
//!
//! A run's log is the file its run-history row names (`.dsm/logs/<run id>.log`); the listing
//! reads the run history, so a log whose file was pruned still shows its run, marked as gone.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::commands::Context;
use crate::error::{Error, Result};
use crate::printer::OutputFormat;
use crate::store::{RunFilter, RunId, RunRecord, RunStatus, format_time};

/// Arguments of `dsm logs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: LogsCommand,
}

/// `dsm logs` subcommands (Meltano 4's).
#[derive(Debug, clap::Subcommand)]
pub enum LogsCommand {
    /// List recent runs with their log files, newest first.
    List {
        /// At most this many runs.
        #[arg(long, short = 'l', default_value_t = 10)]
        limit: usize,
    },
    /// Print the log of one run (`dsm logs list` gives the ids).
    Show {
        /// The run id (the log id).
        log_id: String,
        /// Only the last N lines.
        #[arg(long, short = 'n', value_name = "N")]
        tail: Option<usize>,
    },
    /// Print the folder that holds the run logs.
    Dir,
}

/// The most a JSON document carries of a log shown whole; larger logs need `--tail`.
const MAX_JSON_LOG_BYTES: u64 = 16 * 1024 * 1024;
/// The most read from the end of a file to find its last lines (a log of one huge line).
const MAX_TAIL_BYTES: u64 = 64 * 1024 * 1024;

/// A run's log as `dsm logs list --format json` lists it (Meltano's keys, plus dsm's).
#[derive(Debug, Serialize)]
struct Listed {
    /// The run id, which names the log (Meltano's key).
    log_id: String,
    /// The flow's state id, or the trigger for a run without one (Meltano's `job_name`).
    job_name: String,
    /// The run's status in Meltano's words: `SUCCESS`, `FAIL`, `RUNNING`, `DEAD`.
    state: &'static str,
    /// The run's status in dsm's words: `success`, `failed`, `running`, `killed`.
    status: &'static str,
    started_at: String,
    ended_at: Option<String>,
    duration_seconds: Option<f64>,
    trigger: String,
    /// The log file, if the run has one.
    log_path: Option<PathBuf>,
    /// Whether the log file is still on this host.
    log_exists: bool,
    /// Its size in bytes, when it exists.
    log_bytes: Option<u64>,
}

/// `dsm logs list --format json`.
#[derive(Debug, Serialize)]
struct ListDoc {
    runs: Vec<Listed>,
    total: usize,
}

/// `dsm logs show --format json`.
#[derive(Debug, Serialize)]
struct ShowDoc {
    log_id: String,
    job_name: String,
    state: &'static str,
    status: &'static str,
    started_at: String,
    ended_at: Option<String>,
    log_path: PathBuf,
    /// The `--tail` asked for, if any.
    tail: Option<usize>,
    /// The number of lines in `content`.
    lines: usize,
    /// The log (or its last lines).
    content: String,
    /// The host that ran it.
    host: String,
    /// Whether `content` comes from the end of the log the run history keeps (the file is not
    /// on this host), not from the file.
    from_store: bool,
}

/// Runs `dsm logs`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let format = ctx.text_or_json()?;
    match args.command {
        LogsCommand::List { limit } => list(ctx, format, limit),
        LogsCommand::Show { log_id, tail } => show(ctx, format, &log_id, tail),
        LogsCommand::Dir => {
            let dir = ctx
                .project_root()?
                .join(crate::project::PRIVATE_DIR)
                .join("logs");
            match format {
                OutputFormat::Json => ctx.printer.json(&serde_json::json!({ "path": dir })),
                OutputFormat::Text => ctx.printer.line(dir.display().to_string()),
            }
            Ok(())
        }
    }
}

fn meltano_state(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Running => "RUNNING",
        RunStatus::Success => "SUCCESS",
        RunStatus::Failed => "FAIL",
        RunStatus::Killed => "DEAD",
    }
}

fn job_name(run: &RunRecord) -> String {
    run.state_id
        .as_ref()
        .map_or_else(|| run.trigger.clone(), ToString::to_string)
}

fn seconds(run: &RunRecord) -> Option<f64> {
    let end: DateTime<Utc> = run.ended_at?;
    let ms = end
        .signed_duration_since(run.started_at)
        .num_milliseconds()
        .max(0);
    Some(ms as f64 / 1000.0)
}

fn list(ctx: &Context, format: OutputFormat, limit: usize) -> Result<()> {
    if limit == 0 {
        return Err(Error::config("`--limit` must be at least 1"));
    }
    let store = ctx.open_store()?;
    let runs = store.list_runs(&RunFilter {
        state_id: None,
        status: None,
        limit: Some(limit),
    })?;
    let listed: Vec<Listed> = runs
        .iter()
        .map(|run| {
            let size = run
                .log_path
                .as_deref()
                .and_then(|p| std::fs::metadata(p).ok())
                .filter(std::fs::Metadata::is_file)
                .map(|m| m.len());
            Listed {
                log_id: run.run_id.to_string(),
                job_name: job_name(run),
                state: meltano_state(run.status),
                status: run.status.as_str(),
                started_at: format_time(run.started_at),
                ended_at: run.ended_at.map(format_time),
                duration_seconds: seconds(run),
                trigger: run.trigger.clone(),
                log_path: run.log_path.clone(),
                log_exists: size.is_some(),
                log_bytes: size,
            }
        })
        .collect();
    match format {
        OutputFormat::Json => ctx.printer.json(&ListDoc {
            total: listed.len(),
            runs: listed,
        }),
        OutputFormat::Text if listed.is_empty() => ctx.printer.notice("no runs recorded"),
        OutputFormat::Text => {
            let rows: Vec<Vec<String>> = listed
                .iter()
                .map(|l| {
                    vec![
                        l.status.to_owned(),
                        l.log_id.clone(),
                        l.job_name.clone(),
                        l.started_at.clone(),
                        l.duration_seconds
                            .map_or_else(|| "-".into(), |s| format!("{s:.1}s")),
                        match l.log_bytes {
                            Some(b) => crate::progress::group_thousands(b),
                            None => "gone".into(),
                        },
                        l.trigger.clone(),
                    ]
                })
                .collect();
            ctx.printer.table(
                &[
                    "STATUS", "LOG ID", "JOB NAME", "STARTED", "DURATION", "BYTES", "TRIGGER",
                ],
                &rows,
            );
            ctx.printer
                .notice("`dsm logs show LOG_ID` prints one run's log");
        }
    }
    Ok(())
}

fn show(ctx: &Context, format: OutputFormat, log_id: &str, tail: Option<usize>) -> Result<()> {
    let store = ctx.open_store()?;
    let id = RunId::new(log_id.to_owned());
    let run = store.get_run(&id)?.ok_or_else(|| {
        Error::config(format!("no run `{log_id}` in the system database"))
            .hint("`dsm logs list` shows recent runs and their log ids")
    })?;
    let path = run.log_path.clone().ok_or_else(|| {
        Error::config(format!("run `{log_id}` has no log file"))
            .hint("runs recorded before they started a plugin (dry runs, refused runs) keep no log")
    })?;
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(e) => {
            // Not on this host (or pruned here): the end of the log the run history keeps.
            let Some(kept) = store.run_log_tail(&id)? else {
                return Err(Error::config(format!(
                    "the log of run `{log_id}` cannot be read: `{}`: {e}",
                    path.display()
                ))
                .hint("`dsm runs prune` removes logs with their runs; a log stays on the host that ran it"));
            };
            return show_kept(ctx, format, &run, &path, tail, &kept, &e);
        }
    };
    let content = match tail {
        Some(n) => read_tail(&mut file, n, &path)?,
        None => {
            let size = file.metadata()?.len();
            if format == OutputFormat::Json && size > MAX_JSON_LOG_BYTES {
                return Err(Error::config(format!(
                    "the log of run `{log_id}` is {} bytes, more than a JSON document carries",
                    crate::progress::group_thousands(size)
                ))
                .hint("add `--tail N` for its last lines, or read the file itself")
                .hint(format!("the file: `{}`", path.display())));
            }
            if format == OutputFormat::Text {
                ctx.printer.notice(format!(
                    "log of run `{log_id}` ({}, {}):",
                    job_name(&run),
                    run.status.as_str()
                ));
                // Streamed, so a large log never sits in memory.
                ctx.printer.copy_from(&mut file)?;
                return Ok(());
            }
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            String::from_utf8_lossy(&bytes).into_owned()
        }
    };
    match format {
        OutputFormat::Json => ctx.printer.json(&ShowDoc {
            log_id: log_id.to_owned(),
            job_name: job_name(&run),
            state: meltano_state(run.status),
            status: run.status.as_str(),
            started_at: format_time(run.started_at),
            ended_at: run.ended_at.map(format_time),
            log_path: path,
            tail,
            lines: content.lines().count(),
            content,
            host: run.host.clone(),
            from_store: false,
        }),
        OutputFormat::Text => {
            ctx.printer.notice(format!(
                "last {} line{} of the log of run `{log_id}` ({}, {}):",
                content.lines().count(),
                if content.lines().count() == 1 {
                    ""
                } else {
                    "s"
                },
                job_name(&run),
                run.status.as_str()
            ));
            ctx.printer.raw(content);
        }
    }
    Ok(())
}

/// Shows the end of a run's log that the run history keeps, saying so (the file is on the host
/// that ran it, or was removed).
fn show_kept(
    ctx: &Context,
    format: OutputFormat,
    run: &RunRecord,
    path: &Path,
    tail: Option<usize>,
    kept: &str,
    why: &std::io::Error,
) -> Result<()> {
    let content = match tail {
        Some(n) => {
            let lines: Vec<&str> = kept.lines().collect();
            let mut out = lines[lines.len().saturating_sub(n)..].join("\n");
            if !out.is_empty() {
                out.push('\n');
            }
            out
        }
        None => kept.to_owned(),
    };
    let log_id = run.run_id.as_str();
    if format == OutputFormat::Json {
        ctx.printer.json(&ShowDoc {
            log_id: log_id.to_owned(),
            job_name: job_name(run),
            state: meltano_state(run.status),
            status: run.status.as_str(),
            started_at: format_time(run.started_at),
            ended_at: run.ended_at.map(format_time),
            log_path: path.to_path_buf(),
            tail,
            lines: content.lines().count(),
            content,
            host: run.host.clone(),
            from_store: true,
        });
        return Ok(());
    }
    ctx.printer.notice(format!(
        "the log file `{}` of run `{log_id}` cannot be read on this host ({why}); the run ran on `{}`",
        path.display(),
        run.host
    ));
    ctx.printer.notice(format!(
        "showing {} of its end that the run history keeps (at most {} KiB) ({}, {}):",
        crate::printer::count(content.lines().count() as u64, "line"),
        crate::store::LOG_TAIL_BYTES / 1024,
        job_name(run),
        run.status.as_str()
    ));
    ctx.printer.raw(content);
    Ok(())
}

/// The last `n` lines of a file, read backwards in blocks from its end (a log can be large).
fn read_tail(file: &mut File, n: usize, path: &Path) -> Result<String> {
    const BLOCK: u64 = 64 * 1024;
    if n == 0 {
        return Ok(String::new());
    }
    let size = file.metadata()?.len();
    let mut start = size;
    let mut buf: Vec<u8> = Vec::new();
    // A final newline ends the last line; it does not start another.
    let wanted = n + usize::from(size > 0);
    loop {
        let newlines = buf.iter().filter(|b| **b == b'\n').count();
        if start == 0 || newlines >= wanted {
            break;
        }
        if size - start >= MAX_TAIL_BYTES {
            return Err(Error::config(format!(
                "the last {n} lines of `{}` are longer than {} bytes",
                path.display(),
                crate::progress::group_thousands(MAX_TAIL_BYTES)
            ))
            .hint("ask for fewer lines, or read the file itself"));
        }
        let step = BLOCK.min(start);
        start -= step;
        file.seek(SeekFrom::Start(start))?;
        let mut block = vec![0; usize::try_from(step).expect("a block is 64 KiB")];
        file.read_exact(&mut block)?;
        block.extend_from_slice(&buf);
        buf = block;
    }
    let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
    let from = body
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'\n')
        .nth(n - 1)
        .map_or(0, |(i, _)| i + 1);
    Ok(String::from_utf8_lossy(&buf[from..]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tail_of(text: &str, n: usize) -> String {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        read_tail(&mut f, n, Path::new("x.log")).unwrap()
    }

    #[test]
    fn tail_keeps_the_last_lines_whole() {
        assert_eq!(tail_of("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail_of("a\nb\nc", 2), "b\nc");
        assert_eq!(tail_of("a\nb\nc\n", 5), "a\nb\nc\n");
        assert_eq!(tail_of("", 3), "");
        assert_eq!(tail_of("only\n", 1), "only\n");
    }

    #[test]
    fn tail_crosses_block_boundaries() {
        let lines: Vec<String> = (0..50_000).map(|i| format!("line {i}")).collect();
        let text = lines.join("\n") + "\n";
        let got = tail_of(&text, 3);
        assert_eq!(got, "line 49997\nline 49998\nline 49999\n");
        let got = tail_of(&text, 20_000);
        assert_eq!(got.lines().count(), 20_000);
        assert!(got.starts_with("line 30000\n"));
    }
}

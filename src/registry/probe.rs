//! Connection tests (`dsm test`): start a plugin for real, decide from what it does whether its
//! connection works, and stop it.
//!
//! * An extractor passes at its first RECORD or BATCH message; then its process group gets
//!   SIGTERM (SIGKILL after a grace period). A tap that exits first, or fails, fails the test
//!   with the tail of its stderr.
//! * A loader gets a small stream `_dsm_test` (one SCHEMA, one RECORD, one STATE) and passes
//!   when it exits 0. For dsm's built-in targets the test then removes what was written; for
//!   any other target the result says what it leaves behind (Singer has no way to drop a
//!   stream again).
//! * A plugin's `test*` commands (Meltano's `meltano test`) pass when they exit 0.
//!
//! Every test has a deadline; at the deadline the process group is stopped and the test is
//! reported as timed out.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};

use crate::plugin::{PluginProcess, PluginSpec, RunDir, spawn};
use crate::singer::codec::{LineError, LineReader};
use crate::singer::{MessageKind, scan};

/// The stream a loader test writes.
pub const TEST_STREAM: &str = "_dsm_test";

/// How long a stopped plugin gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// Longest stdout line read from a tap under test (a first record is rarely this long).
const MAX_LINE: usize = 64 * 1024 * 1024;

/// Largest `--discover` output read (catalogs of big databases run to megabytes, not more).
const MAX_CATALOG_BYTES: u64 = 256 * 1024 * 1024;

/// What a test checks.
#[derive(Debug, Clone)]
pub enum ProbeKind {
    /// An extractor's connection: it must emit a RECORD or BATCH.
    Extract {
        /// How the tap gets its catalog.
        catalog: CatalogPlan,
    },
    /// A loader accepts the `_dsm_test` stream.
    Load {
        /// How to remove the stream afterwards (`None`: it is left behind).
        cleanup: Option<Cleanup>,
    },
    /// One of the plugin's `test*` commands.
    Command {
        /// The command's name (`test`, `test-connection` ...).
        name: String,
    },
}

/// How an extractor under test gets its catalog.
#[derive(Debug, Clone)]
pub enum CatalogPlan {
    /// No catalog: the tap runs without `--catalog`/`--properties`.
    None,
    /// A catalog file is ready: pass it with this flag.
    File {
        /// `--catalog` or `--properties`.
        flag: String,
        /// The file.
        path: PathBuf,
    },
    /// Run `--discover` first (within the test's deadline), apply the selection, pass the result.
    Discover {
        /// `--catalog` or `--properties`.
        flag: String,
        /// The extractor's `select` rules (`*.*` when it has none).
        select: Vec<String>,
        /// Its `metadata` rules.
        metadata: Value,
        /// Its `schema` overrides.
        schema: Value,
        /// Its `select_filter`.
        select_filter: Vec<String>,
    },
}

/// How a built-in target's test stream is removed after the test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleanup {
    /// Delete this file (`target-jsonl`, `target-csv`).
    File(PathBuf),
    /// Drop table `_dsm_test` from this SQLite database (`target-sqlite`).
    SqliteTable(PathBuf),
}

/// One test to run.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The plugin's name.
    pub plugin: String,
    /// Its plugin type (`extractor`, `loader`, `utility` ...).
    pub plugin_type: &'static str,
    /// What to check.
    pub kind: ProbeKind,
    /// How to start it.
    pub spec: PluginSpec,
    /// When set, the test is not run and is reported as failed with this reason (a plugin that
    /// is not installed).
    pub cannot_run: Option<String>,
    /// When set, the test is not run and is reported as skipped with this reason.
    pub skip: Option<String>,
}

impl Probe {
    /// The test's name in results: `connection`, `load` or the command name.
    pub fn test_name(&self) -> String {
        match &self.kind {
            ProbeKind::Extract { .. } => "connection".into(),
            ProbeKind::Load { .. } => "load".into(),
            ProbeKind::Command { name } => name.clone(),
        }
    }
}

/// How a test ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeStatus {
    /// It passed.
    Passed,
    /// It failed.
    Failed,
    /// It did not finish within its timeout and was stopped.
    TimedOut,
    /// It was not run.
    Skipped,
}

impl ProbeStatus {
    /// The word shown in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeStatus::Passed => "passed",
            ProbeStatus::Failed => "failed",
            ProbeStatus::TimedOut => "timed out",
            ProbeStatus::Skipped => "skipped",
        }
    }

    /// Whether the test counts as a failure (for the exit code).
    pub fn is_failure(self) -> bool {
        matches!(self, ProbeStatus::Failed | ProbeStatus::TimedOut)
    }
}

/// One test's result.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    /// The plugin's name.
    pub plugin: String,
    /// Its plugin type (`extractor`, `loader`, `utility` ...).
    pub plugin_type: &'static str,
    /// `connection`, `load` or a command name.
    pub test: String,
    /// How it ended.
    pub status: ProbeStatus,
    /// How long it took, in seconds.
    pub duration_seconds: f64,
    /// Why it failed, timed out or was skipped.
    pub reason: Option<String>,
    /// The last lines of the plugin's stderr (on failure).
    pub stderr_tail: Vec<String>,
    /// What the test left in the destination, when anything.
    pub leaves_behind: Option<String>,
}

struct Verdict {
    status: ProbeStatus,
    reason: Option<String>,
    show_stderr: bool,
    leaves_behind: Option<String>,
}

impl Verdict {
    fn pass() -> Self {
        Verdict {
            status: ProbeStatus::Passed,
            reason: None,
            show_stderr: false,
            leaves_behind: None,
        }
    }

    fn fail(reason: impl Into<String>) -> Self {
        Verdict {
            status: ProbeStatus::Failed,
            reason: Some(reason.into()),
            show_stderr: true,
            leaves_behind: None,
        }
    }
}

/// Runs `probes`, at most `parallel` at a time and started in their order, each with `timeout`;
/// results come back in the order of `probes`.
pub async fn run_probes(
    probes: Vec<Probe>,
    parallel: usize,
    timeout: Duration,
    run_dir: Arc<RunDir>,
) -> Vec<ProbeResult> {
    let limit = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut handles = Vec::new();
    for probe in probes {
        let run_dir = Arc::clone(&run_dir);
        let fallback = (probe.plugin.clone(), probe.plugin_type, probe.test_name());
        // The permit is taken here, before the task exists, so tests start in the order given
        // (with `--parallel 1`, strictly one after another in that order).
        let permit = Arc::clone(&limit).acquire_owned().await;
        let handle = tokio::spawn(async move {
            let _permit = permit;
            run_probe(&probe, timeout, &run_dir).await
        });
        handles.push((fallback, handle));
    }
    let mut results = Vec::new();
    for ((plugin, plugin_type, test), handle) in handles {
        results.push(handle.await.unwrap_or_else(|e| ProbeResult {
            plugin,
            plugin_type,
            test,
            status: ProbeStatus::Failed,
            duration_seconds: 0.0,
            reason: Some(format!("the test stopped unexpectedly: {e}")),
            stderr_tail: Vec::new(),
            leaves_behind: None,
        }));
    }
    results
}

/// Runs one test within `timeout`.
pub async fn run_probe(probe: &Probe, timeout: Duration, run_dir: &RunDir) -> ProbeResult {
    let started = Instant::now();
    let result = |verdict: Verdict, tail: Vec<String>| ProbeResult {
        plugin: probe.plugin.clone(),
        plugin_type: probe.plugin_type,
        test: probe.test_name(),
        status: verdict.status,
        duration_seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        reason: verdict.reason,
        stderr_tail: if verdict.show_stderr {
            tail
        } else {
            Vec::new()
        },
        leaves_behind: verdict.leaves_behind,
    };
    if let Some(reason) = &probe.skip {
        let mut v = Verdict::pass();
        v.status = ProbeStatus::Skipped;
        v.reason = Some(reason.clone());
        return result(v, Vec::new());
    }
    if let Some(reason) = &probe.cannot_run {
        let mut v = Verdict::fail(reason.clone());
        v.show_stderr = false;
        return result(v, Vec::new());
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut tail = Vec::new();
    let verdict = match &probe.kind {
        ProbeKind::Extract { catalog } => {
            extract(probe, catalog, deadline, timeout, run_dir, &mut tail).await
        }
        ProbeKind::Load { cleanup } => {
            load(
                probe,
                cleanup.as_ref(),
                deadline,
                timeout,
                run_dir,
                &mut tail,
            )
            .await
        }
        ProbeKind::Command { .. } => command(probe, deadline, timeout, run_dir, &mut tail).await,
    };
    result(verdict, tail)
}

fn timed_out(what: &str, timeout: Duration) -> Verdict {
    Verdict {
        status: ProbeStatus::TimedOut,
        reason: Some(format!(
            "{what} within the timeout of {}s; stopped it",
            timeout.as_secs_f64()
        )),
        show_stderr: true,
        leaves_behind: None,
    }
}

fn start(
    spec: &PluginSpec,
    run_dir: &RunDir,
    stdin: bool,
) -> std::result::Result<PluginProcess, Verdict> {
    spawn(spec, run_dir, stdin, None).map_err(|e| {
        let mut text = e.message().to_owned();
        for h in e.hints() {
            text.push_str("; ");
            text.push_str(h);
        }
        Verdict::fail(text)
    })
}

async fn extract(
    probe: &Probe,
    catalog: &CatalogPlan,
    deadline: tokio::time::Instant,
    timeout: Duration,
    run_dir: &RunDir,
    tail: &mut Vec<String>,
) -> Verdict {
    let mut spec = probe.spec.clone();
    match catalog {
        CatalogPlan::None => {}
        CatalogPlan::File { flag, path } => {
            spec.args.push(flag.clone());
            spec.args.push(path.display().to_string());
        }
        CatalogPlan::Discover { flag, .. } => {
            match discover(probe, catalog, deadline, timeout, run_dir, tail).await {
                Ok(path) => {
                    spec.args.push(flag.clone());
                    spec.args.push(path.display().to_string());
                }
                Err(v) => return v,
            }
        }
    }
    let mut process = match start(&spec, run_dir, false) {
        Ok(p) => p,
        Err(v) => return v,
    };
    let stdout = process.take_stdout().expect("stdout is piped");
    let mut reader = LineReader::new(BufReader::new(stdout), MAX_LINE);
    let mut buf = Vec::new();
    let mut line_no: u64 = 0;
    // Reads until the first RECORD or BATCH (`Some(kind)`), the end of output (`None`), or a
    // read error.
    let read = async {
        loop {
            match reader.read_line_async(&mut buf).await {
                Ok(true) => {
                    line_no += 1;
                    if let Ok(env) = scan(&buf)
                        && matches!(env.kind, MessageKind::Record | MessageKind::Batch)
                    {
                        return Ok(Some(env.kind));
                    }
                }
                Ok(false) => return Ok(None),
                Err(LineError::TooLong { .. }) => {
                    return Err(format!(
                        "output line {} is longer than {MAX_LINE} bytes",
                        line_no + 1
                    ));
                }
                Err(LineError::Io(e)) => return Err(format!("could not read its output: {e}")),
            }
        }
    };
    let outcome = tokio::time::timeout_at(deadline, read).await;
    let verdict = match outcome {
        Err(_) => {
            process.stop(STOP_GRACE).await;
            timed_out("it emitted no RECORD or BATCH message", timeout)
        }
        Ok(Ok(Some(_))) => {
            // The connection works: the rest of the sync is not needed.
            process.stop(STOP_GRACE).await;
            Verdict::pass()
        }
        Ok(Err(reason)) => {
            process.stop(STOP_GRACE).await;
            Verdict::fail(reason)
        }
        Ok(Ok(None)) => {
            let exit = wait_until(&mut process, deadline).await;
            match exit {
                None => timed_out("it did not exit after closing its output", timeout),
                Some(exit) if exit.success() => Verdict::fail(format!(
                    "it exited with status 0 after {} without a RECORD or BATCH message",
                    crate::printer::count(line_no, "line")
                )),
                Some(exit) => Verdict::fail(format!("it exited with {}", exit.describe())),
            }
        }
    };
    *tail = process.stderr_tail().lines();
    verdict
}

/// Waits for the process to exit until `deadline`; at the deadline stops it and returns `None`.
async fn wait_until(
    process: &mut PluginProcess,
    deadline: tokio::time::Instant,
) -> Option<crate::plugin::PluginExit> {
    let (tx, mut rx) = tokio::sync::watch::channel(crate::plugin::StopRequest::None);
    let waiting = process.wait_or_stop(&mut rx, STOP_GRACE);
    tokio::pin!(waiting);
    tokio::select! {
        exit = &mut waiting => Some(exit),
        () = tokio::time::sleep_until(deadline) => {
            tx.send_replace(crate::plugin::StopRequest::Terminate);
            waiting.await;
            None
        }
    }
}

async fn discover(
    probe: &Probe,
    plan: &CatalogPlan,
    deadline: tokio::time::Instant,
    timeout: Duration,
    run_dir: &RunDir,
    tail: &mut Vec<String>,
) -> std::result::Result<PathBuf, Verdict> {
    let CatalogPlan::Discover {
        select,
        metadata,
        schema,
        select_filter,
        ..
    } = plan
    else {
        unreachable!("discover is called for CatalogPlan::Discover only")
    };
    let mut spec = probe.spec.clone();
    spec.args.push("--discover".into());
    let mut process = start(&spec, run_dir, false)?;
    let stdout = process.take_stdout().expect("stdout is piped");
    let mut bytes = Vec::new();
    let read = async { stdout.take(MAX_CATALOG_BYTES).read_to_end(&mut bytes).await };
    let read = tokio::time::timeout_at(deadline, read).await;
    let exit = match read {
        Ok(_) => wait_until(&mut process, deadline).await,
        Err(_) => {
            process.stop(STOP_GRACE).await;
            None
        }
    };
    *tail = process.stderr_tail().lines();
    let exit = exit.ok_or_else(|| timed_out("catalog discovery did not finish", timeout))?;
    if !exit.success() {
        return Err(Verdict::fail(format!(
            "catalog discovery (`--discover`) exited with {}",
            exit.describe()
        )));
    }
    let mut catalog: Value = serde_json::from_slice(&bytes).map_err(|e| {
        Verdict::fail(format!(
            "catalog discovery printed something that is not a JSON catalog: {e}"
        ))
    })?;
    let filter = crate::catalog::SelectFilter {
        patterns: select_filter.clone(),
    };
    crate::catalog::apply_selection(&mut catalog, select, metadata, schema, &filter)
        .map_err(|e| Verdict::fail(format!("the discovered catalog: {e}")))?;
    let path = run_dir
        .path()
        .join(format!("{}.test-catalog.json", probe.plugin));
    let text = serde_json::to_vec(&catalog).expect("a JSON value serialises");
    crate::files::write_private(&path, &text)
        .map_err(|e| Verdict::fail(format!("could not write the catalog: {e}")))?;
    Ok(path)
}

/// The three messages a loader test sends.
pub fn test_stream(now: chrono::DateTime<chrono::Utc>) -> String {
    let at = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let schema = serde_json::json!({
        "type": "SCHEMA",
        "stream": TEST_STREAM,
        "schema": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "checked_at": {"type": "string", "format": "date-time"}
            }
        },
        "key_properties": ["id"]
    });
    let record = serde_json::json!({
        "type": "RECORD",
        "stream": TEST_STREAM,
        "record": {"id": 1, "checked_at": at}
    });
    let state = serde_json::json!({
        "type": "STATE",
        "value": {"bookmarks": {TEST_STREAM: {"checked_at": at}}}
    });
    format!("{schema}\n{record}\n{state}\n")
}

async fn load(
    probe: &Probe,
    cleanup: Option<&Cleanup>,
    deadline: tokio::time::Instant,
    timeout: Duration,
    run_dir: &RunDir,
    tail: &mut Vec<String>,
) -> Verdict {
    let footprint = cleanup.map(Footprint::before);
    let mut process = match start(&probe.spec, run_dir, true) {
        Ok(p) => p,
        Err(v) => return v,
    };
    let mut stdin = process.take_stdin().expect("stdin is piped");
    let mut stdout = process.take_stdout().expect("stdout is piped");
    let input = test_stream(chrono::Utc::now());
    let feed = async move {
        // A target that exits early closes the pipe: its exit status tells why.
        let _ = stdin.write_all(input.as_bytes()).await;
        let _ = stdin.shutdown().await;
        drop(stdin);
        let mut sink = Vec::new();
        let _ = (&mut stdout)
            .take(16 * 1024 * 1024)
            .read_to_end(&mut sink)
            .await;
    };
    let fed = tokio::time::timeout_at(deadline, feed).await;
    let exit = match fed {
        Ok(()) => wait_until(&mut process, deadline).await,
        Err(_) => {
            process.stop(STOP_GRACE).await;
            None
        }
    };
    *tail = process.stderr_tail().lines();
    let leaves = |what: String| Some(what);
    let mut verdict = match exit {
        None => timed_out("the loader did not finish", timeout),
        Some(exit) if exit.success() => Verdict::pass(),
        Some(exit) => Verdict::fail(format!("it exited with {}", exit.describe())),
    };
    verdict.leaves_behind = match cleanup {
        None => leaves(format!(
            "stream `{TEST_STREAM}` with one record (id 1) in the loader's destination"
        )),
        Some(c) => match footprint
            .as_ref()
            .map_or_else(|| remove_test_stream(c), |f| f.undo(c))
        {
            Ok(()) => None,
            Err(e) => leaves(format!("{e} (remove it by hand)")),
        },
    };
    verdict
}

impl Cleanup {
    /// The file the test writes to.
    fn path(&self) -> &Path {
        match self {
            Cleanup::File(p) | Cleanup::SqliteTable(p) => p,
        }
    }
}

/// What existed before a load test, so that what the test created can go again: the file
/// (a new database goes whole, with its `-wal`/`-shm`/`-journal` companions) and the folders
/// the target made for it.
#[derive(Debug)]
pub struct Footprint {
    existed: bool,
    /// Folders that did not exist, deepest first.
    created_dirs: Vec<PathBuf>,
}

impl Footprint {
    /// Notes what exists of `cleanup`'s file and its folders now.
    pub fn before(cleanup: &Cleanup) -> Footprint {
        let path = cleanup.path();
        let created_dirs = path
            .ancestors()
            .skip(1)
            .filter(|d| !d.as_os_str().is_empty())
            .take_while(|d| !d.exists())
            .map(Path::to_path_buf)
            .collect();
        Footprint {
            existed: path.exists(),
            created_dirs,
        }
    }

    /// Removes the test stream, then whatever the test created that was not there before.
    pub fn undo(&self, cleanup: &Cleanup) -> std::result::Result<(), String> {
        remove_test_stream(cleanup)?;
        if !self.existed {
            let path = cleanup.path();
            let mut files = vec![path.to_path_buf()];
            if matches!(cleanup, Cleanup::SqliteTable(_)) {
                for suffix in ["-wal", "-shm", "-journal"] {
                    let mut p = path.as_os_str().to_owned();
                    p.push(suffix);
                    files.push(PathBuf::from(p));
                }
            }
            for f in files {
                match std::fs::remove_file(&f) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(format!("could not remove `{}`: {e}", f.display())),
                }
            }
        }
        // Only empty folders go: anything else written there since is not the test's.
        for dir in &self.created_dirs {
            let _ = std::fs::remove_dir(dir);
        }
        Ok(())
    }
}

/// Removes what a built-in target wrote for the test stream.
pub fn remove_test_stream(cleanup: &Cleanup) -> std::result::Result<(), String> {
    match cleanup {
        Cleanup::File(path) => match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("could not remove `{}`: {e}", path.display())),
        },
        Cleanup::SqliteTable(db) => {
            if !db.exists() {
                return Ok(());
            }
            crate::store::sqlite::drop_table_in(db, TEST_STREAM, Duration::from_secs(5)).map_err(
                |e| {
                    format!(
                        "could not drop table `{TEST_STREAM}` in `{}`: {e}",
                        db.display()
                    )
                },
            )
        }
    }
}

async fn command(
    probe: &Probe,
    deadline: tokio::time::Instant,
    timeout: Duration,
    run_dir: &RunDir,
    tail: &mut Vec<String>,
) -> Verdict {
    let mut process = match start(&probe.spec, run_dir, false) {
        Ok(p) => p,
        Err(v) => return v,
    };
    let mut stdout = process.take_stdout().expect("stdout is piped");
    let drain = async move {
        let mut chunk = vec![0u8; 64 * 1024];
        while let Ok(n) = stdout.read(&mut chunk).await {
            if n == 0 {
                break;
            }
        }
    };
    let drained = tokio::time::timeout_at(deadline, drain).await;
    let exit = match drained {
        Ok(()) => wait_until(&mut process, deadline).await,
        Err(_) => {
            process.stop(STOP_GRACE).await;
            None
        }
    };
    *tail = process.stderr_tail().lines();
    match exit {
        None => timed_out("the command did not finish", timeout),
        Some(exit) if exit.success() => Verdict::pass(),
        Some(exit) => Verdict::fail(format!("the command exited with {}", exit.describe())),
    }
}

/// The results as JUnit XML (the dialect CI systems read: one `testsuite`, one `testcase` per
/// test, `failure` with the reason and stderr tail, `skipped`).
pub fn junit_xml(results: &[ProbeResult]) -> String {
    let failures = results.iter().filter(|r| r.status.is_failure()).count();
    let skipped = results
        .iter()
        .filter(|r| r.status == ProbeStatus::Skipped)
        .count();
    let total: f64 = results.iter().map(|r| r.duration_seconds).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"dsm test\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{total:.3}\">\n",
        results.len()
    ));
    out.push_str(&format!(
        "  <testsuite name=\"dsm test\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{total:.3}\">\n",
        results.len()
    ));
    for r in results {
        out.push_str(&format!(
            "    <testcase classname=\"{}.{}\" name=\"{}\" time=\"{:.3}\"",
            r.plugin_type,
            xml_escape(&r.plugin),
            xml_escape(&r.test),
            r.duration_seconds
        ));
        let reason = r.reason.as_deref().unwrap_or("");
        match r.status {
            ProbeStatus::Passed if r.leaves_behind.is_none() => out.push_str("/>\n"),
            ProbeStatus::Passed => {
                out.push_str(">\n");
                out.push_str(&format!(
                    "      <system-out>leaves behind: {}</system-out>\n",
                    xml_escape(r.leaves_behind.as_deref().unwrap_or(""))
                ));
                out.push_str("    </testcase>\n");
            }
            ProbeStatus::Skipped => {
                out.push_str(&format!(
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>\n",
                    xml_escape(reason)
                ));
            }
            ProbeStatus::Failed | ProbeStatus::TimedOut => {
                let kind = if r.status == ProbeStatus::TimedOut {
                    "timeout"
                } else {
                    "failure"
                };
                out.push_str(&format!(
                    ">\n      <failure type=\"{kind}\" message=\"{}\">",
                    xml_escape(reason)
                ));
                out.push_str(&xml_escape(&r.stderr_tail.join("\n")));
                out.push_str("</failure>\n    </testcase>\n");
            }
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// Escapes text for XML content and attribute values; drops characters XML 1.0 cannot carry.
fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::testing as sql;

    fn result(status: ProbeStatus, reason: Option<&str>) -> ProbeResult {
        ProbeResult {
            plugin: "tap-<x>".into(),
            plugin_type: "extractor",
            test: "connection".into(),
            status,
            duration_seconds: 1.25,
            reason: reason.map(str::to_owned),
            stderr_tail: vec!["boom & \u{1b}[31mred".into()],
            leaves_behind: None,
        }
    }

    #[test]
    fn junit_escapes_names_and_stderr_and_counts_failures() {
        let xml = junit_xml(&[
            result(ProbeStatus::Passed, None),
            result(ProbeStatus::Failed, Some("exited with \"status 1\"")),
            result(ProbeStatus::TimedOut, Some("hung")),
            result(ProbeStatus::Skipped, Some("not asked")),
        ]);
        assert!(xml.contains("tests=\"4\" failures=\"2\" errors=\"0\" skipped=\"1\""));
        assert!(xml.contains("classname=\"extractor.tap-&lt;x&gt;\""));
        assert!(xml.contains("message=\"exited with &quot;status 1&quot;\""));
        assert!(xml.contains("boom &amp; ?[31mred"));
        assert!(xml.contains("<failure type=\"timeout\""));
        assert!(xml.contains("<skipped message=\"not asked\"/>"));
    }

    #[test]
    fn test_stream_is_schema_record_state() {
        let text = test_stream(crate::registry::testing::now());
        let kinds: Vec<MessageKind> = text
            .lines()
            .map(|l| scan(l.as_bytes()).unwrap().kind)
            .collect();
        assert_eq!(
            kinds,
            [MessageKind::Schema, MessageKind::Record, MessageKind::State]
        );
    }

    #[test]
    fn cleanup_drops_the_sqlite_table_and_removes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("w.db");
        sql::execute(
            &db,
            "CREATE TABLE \"_dsm_test\" (id INTEGER); CREATE TABLE keep (id INTEGER);",
        );
        remove_test_stream(&Cleanup::SqliteTable(db.clone())).unwrap();
        assert_eq!(sql::tables(&db), ["keep"]);
        let file = dir.path().join("_dsm_test.jsonl");
        std::fs::write(&file, "{}\n").unwrap();
        remove_test_stream(&Cleanup::File(file.clone())).unwrap();
        assert!(!file.exists());
        // Already gone is fine.
        remove_test_stream(&Cleanup::File(file)).unwrap();
    }

    // Issue 30: `dsm test` of a loader left the database file and folders it created.
    #[test]
    fn undo_removes_what_the_test_created_and_keeps_what_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("new/deeper/w.db");
        let cleanup = Cleanup::SqliteTable(db.clone());
        let footprint = Footprint::before(&cleanup);
        std::fs::create_dir_all(db.parent().unwrap()).unwrap();
        sql::execute(
            &db,
            "PRAGMA journal_mode = WAL; CREATE TABLE \"_dsm_test\" (id INTEGER);",
        );
        footprint.undo(&cleanup).unwrap();
        assert!(!dir.path().join("new").exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        // A database that was there keeps its file and its other tables.
        let db = dir.path().join("kept.db");
        sql::execute(&db, "CREATE TABLE keep (id INTEGER);");
        let cleanup = Cleanup::SqliteTable(db.clone());
        let footprint = Footprint::before(&cleanup);
        sql::execute(&db, "CREATE TABLE \"_dsm_test\" (id INTEGER);");
        footprint.undo(&cleanup).unwrap();
        assert!(db.exists());

        // A file target's new folder goes with its file.
        let file = dir.path().join("out/_dsm_test.jsonl");
        let cleanup = Cleanup::File(file.clone());
        let footprint = Footprint::before(&cleanup);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "{}\n").unwrap();
        footprint.undo(&cleanup).unwrap();
        assert!(!dir.path().join("out").exists());
    }
}

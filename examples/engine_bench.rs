//! Benchmark driver for `benches/engine.sh`: runs `cat FILE` → dsm's pipeline → a counting
//! target through the library API (what `dsm run` does once wired), and reports the figures.
//!
//! Usage: `engine_bench INPUT TARGET_EXE SUMMARY_FILE RUNTIME_DIR`

#![allow(clippy::print_stderr, reason = "a benchmark driver reports on stderr")]

use std::process::ExitCode;

use dsm::pipeline::{self, CancelToken, Pipeline, PipelineOptions};
use dsm::plugin::{PluginRole, PluginSpec, RunDir};

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds this process's threads have run so far (from /proc/self/task/*/schedstat, in
/// nanoseconds): dsm's own share of the work, apart from the tap's and the target's.
fn own_cpu_seconds() -> Option<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 / 1e9)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, target, summary, runtime] = args.as_slice() else {
        eprintln!("usage: engine_bench INPUT TARGET_EXE SUMMARY_FILE RUNTIME_DIR");
        return ExitCode::from(2);
    };
    let run_dir = match RunDir::create(std::path::Path::new(runtime)) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("engine_bench: {e}");
            return ExitCode::from(2);
        }
    };
    let mut states = 0u64;
    let mut sink = |_: &serde_json::Value| -> Result<(), dsm::error::Error> {
        states += 1;
        Ok(())
    };
    let outcome = pipeline::run(
        Pipeline {
            extractor: PluginSpec::new("tap-cat", PluginRole::Extractor, "cat").args([input]),
            stages: Vec::new(),
            loader: PluginSpec::new("target-count", PluginRole::Loader, target)
                .args(["--summary", summary]),
            options: PipelineOptions::default(),
        },
        &run_dir,
        &mut sink,
        &CancelToken::new(),
    )
    .await;
    let records: u64 = outcome.streams.values().map(|c| c.records).sum();
    let bytes: u64 = outcome.streams.values().map(|c| c.bytes).sum();
    eprintln!(
        "engine_bench: status={:?} records={records} bytes={bytes} states={states} seconds={:.3} cpu_seconds={} peak_rss_kib={}",
        outcome.status,
        outcome.duration.as_secs_f64(),
        own_cpu_seconds().map_or("?".into(), |s| format!("{s:.3}")),
        peak_rss_kib().map_or("?".into(), |k| k.to_string()),
    );
    if let Some(e) = &outcome.error {
        eprintln!("engine_bench: error: {}", e.message());
    }
    ExitCode::from(outcome.status.exit_code())
}

//! `dsm test [NAMES] [--all]`: connection tests built for CI (see [`crate::registry::probe`]).
//!
//! Exit 0 when every test passed (skipped ones do not count), 1 when any failed or timed out,
//! 2 on configuration errors (an unknown name, nothing chosen).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::commands::Context;
use crate::commands::shared::load;
use crate::error::{Error, Result};
use crate::plugin::{RunDir, runtime_base};
use crate::printer::OutputFormat;
use crate::registry::plan::{Selection, choose, probes_for, record_results};
use crate::registry::probe::{ProbeResult, ProbeStatus, junit_xml, run_probes};

/// Arguments of `dsm test`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The plugins to test (extractors, loaders, or any plugin with `test*` commands).
    pub names: Vec<String>,
    /// Test every extractor, dsm's built-in loaders, and every plugin's `test*` commands.
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
    /// Also test loaders that are not built into dsm. Such a test leaves the stream
    /// `_dsm_test` (one record) in the destination: Singer has no way to drop it again.
    #[arg(long)]
    pub loaders: bool,
    /// How many tests run at the same time.
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = crate::cli::parse_parallel)]
    pub parallel: usize,
    /// How long one test may take before it is stopped and reported as timed out: seconds,
    /// or `90s`, `15m`, `2h`.
    #[arg(long, default_value = "60", value_name = "DURATION", value_parser = crate::commands::shared::parse_duration)]
    pub timeout: Duration,
    /// Also write the results as JUnit XML to this file.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

/// Runs `dsm test`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let format = ctx.text_or_json()?;
    if args.timeout.is_zero() {
        return Err(Error::config("`--timeout` must be at least 1 second"));
    }
    if args.names.is_empty() && !args.all {
        return Err(Error::config("no plugin to test")
            .hint("name the plugins (`dsm test tap-github`) or pass `--all`"));
    }
    let (project, env_name) = load(ctx)?;
    let env = match &env_name {
        Some(n) => Some(project.environment(n)?),
        None => None,
    };
    let selection = Selection {
        names: args.names.clone(),
        all: args.all,
        loaders: args.loaders,
    };
    let chosen = choose(&project, &selection)?;
    let base = runtime_base(&project.root().join(".dsm/run"));
    let run_dir = Arc::new(RunDir::create(&base)?);
    let mut probes = Vec::new();
    for (plugin, named) in &chosen {
        probes.extend(probes_for(
            &project, env, plugin, *named, &selection, &run_dir,
        )?);
    }
    if probes.is_empty() {
        return Err(Error::config("nothing to test")
            .hint("extractors, dsm's built-in loaders and plugins with `test*` commands have tests; pass `--loaders` for other loaders"));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let results = runtime.block_on(run_probes(
        probes,
        args.parallel,
        args.timeout,
        Arc::clone(&run_dir),
    ));
    drop(runtime);
    drop(run_dir);

    match ctx.open_store() {
        Ok(store) => {
            let names: Vec<&str> = chosen.iter().map(|(p, _)| p.name.as_str()).collect();
            for warning in record_results(&project, &store, &names, &results) {
                ctx.printer.warn(warning);
            }
        }
        Err(e) => ctx.printer.warn(format!(
            "could not record the test results in the run history: {}",
            e.message()
        )),
    }
    if let Some(path) = &args.junit {
        write_junit(path, &results)?;
    }
    let failed = results.iter().filter(|r| r.status.is_failure()).count();
    let count = |s: ProbeStatus| results.iter().filter(|r| r.status == s).count();
    let error = (failed > 0).then(|| {
        Error::failed(format!("{failed} of {} tests failed", results.len()))
            .hint("the reason and the last lines of each failed plugin's stderr are shown above")
    });
    match format {
        OutputFormat::Json => {
            // One document on stdout, with the contract's `error` member when a test failed
            // (`schemas/cli/test.schema.json`); the error also goes to stderr as text.
            let mut doc = serde_json::json!({
                "results": results,
                "passed": count(ProbeStatus::Passed),
                "failed": failed,
                "skipped": count(ProbeStatus::Skipped),
                "succeeded": failed == 0,
            });
            if let Some(e) = &error {
                doc["error"] = crate::printer::error_json(e);
            }
            ctx.printer.json(&doc);
            error.map_or(Ok(()), |e| Err(e.data_printed()))
        }
        _ => {
            print_text(ctx, &results);
            error.map_or(Ok(()), Err)
        }
    }
}

fn write_junit(path: &Path, results: &[ProbeResult]) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            Error::config(format!(
                "could not create the folder of `{}`: {e}",
                path.display()
            ))
        })?;
    }
    std::fs::write(path, junit_xml(results)).map_err(|e| {
        Error::config(format!(
            "could not write the JUnit report `{}`: {e}",
            path.display()
        ))
    })
}

fn print_text(ctx: &Context, results: &[ProbeResult]) {
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            vec![
                r.plugin.clone(),
                r.plugin_type.to_owned(),
                r.test.clone(),
                r.status.as_str().to_owned(),
                format!("{:.1}s", r.duration_seconds),
                r.reason.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    ctx.printer.table(
        &["PLUGIN", "TYPE", "TEST", "STATUS", "DURATION", "REASON"],
        &rows,
    );
    for r in results {
        if r.status.is_failure() && !r.stderr_tail.is_empty() {
            ctx.printer.line("");
            ctx.printer.line(format!(
                "{} `{}` ({}): last lines of its stderr:",
                r.plugin_type, r.plugin, r.test
            ));
            for l in &r.stderr_tail {
                ctx.printer.line(format!("  | {l}"));
            }
        }
        if let Some(left) = &r.leaves_behind {
            ctx.printer
                .notice(format!("note: `{}` test leaves behind {left}", r.plugin));
        }
    }
}

//! `dsm metrics`: counters and gauges from the run history in the Prometheus text format (for
//! the node exporter's textfile collector) or JSON.
//!
//! On a cron server: `dsm metrics --format prometheus --output /var/lib/node_exporter/dsm.prom`
//! after each run (or every minute). The file is written to a temp file in the same folder and
//! renamed over the old one, so the collector never reads half a file.

use std::path::PathBuf;

use chrono::{DateTime, Utc};

use crate::commands::Context;
use crate::error::{Error, Result};
use crate::registry::{render_prometheus, snapshot, write_atomically};

/// Arguments of `dsm metrics` (`--format prometheus|json`, prometheus by default).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write to this file atomically (temp file + rename) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Runs `dsm metrics`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let json = match ctx.global.format.as_deref() {
        None | Some("prometheus") => false,
        Some("json") => true,
        Some(other) => {
            return Err(Error::config(format!("unknown output format `{other}`"))
                .hint("`dsm metrics` accepts `--format prometheus` or `--format json`"));
        }
    };
    let store = ctx.open_store()?;
    let runs = store.list_runs_since(DateTime::<Utc>::UNIX_EPOCH)?;
    let snap = snapshot(&runs, &store.pruned_totals()?, Utc::now());
    let text = if json {
        let mut t =
            serde_json::to_string_pretty(&snap).expect("serialising plain data cannot fail");
        t.push('\n');
        t
    } else {
        render_prometheus(&snap)
    };
    match args.output {
        Some(path) => {
            write_atomically(&path, &text)?;
            ctx.printer
                .notice(format!("metrics written to `{}`", path.display()));
        }
        None => ctx.printer.raw(text),
    }
    Ok(())
}

//! `dsm sync [NAMES...]`: runs every enabled flow of the project (or the named ones) once, in
//! dependency order, up to `--parallel N` at a time, and prints one summary line per flow.
//! The running itself is [`crate::orchestrate::sync`].

use std::sync::Arc;

use crate::commands::Context;
use crate::commands::shared::{flow_context, print_summary};
use crate::error::Result;
use crate::orchestrate::sync::{
    mark_once_schedules_run, once_schedules_done, pause_held_sources, plan_for,
};
use crate::orchestrate::{Overlap, run_plan};
use crate::printer::OutputFormat;

/// Arguments of `dsm sync`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Schedules, jobs or extractors to run (`KIND:NAME` where kinds share a name); all enabled
    /// flows when none is given.
    pub names: Vec<String>,
    /// How many independent flows run at the same time (`-p`/`--parallelism`, Meltano's
    /// spelling, mean the same).
    #[arg(
        short = 'p',
        long,
        visible_alias = "parallelism",
        default_value_t = 1,
        value_name = "N",
        value_parser = crate::cli::parse_parallel
    )]
    pub parallel: usize,
    /// Print the plan (flows in order, with their dependencies) without running anything.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `dsm sync`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let format = ctx.text_or_json()?;
    let fc = flow_context(ctx, "sync")?;
    // A plan changes nothing: a dry run of a project that never ran creates no store.
    let uri = fc.database_uri.as_deref();
    let has_store = match crate::store::locate(uri, fc.project.root())? {
        crate::store::Location::Sqlite(path) => path.exists(),
        crate::store::Location::Postgres(_) => true,
    };
    let store = if args.dry_run && !has_store {
        None
    } else {
        Some(crate::store::open_for_project(uri, fc.project.root())?)
    };
    let once_done = match &store {
        Some(store) if args.names.is_empty() => once_schedules_done(&fc.project, store.as_ref())?,
        _ => Vec::new(),
    };
    let mut plan = plan_for(&fc.project, &args.names, &once_done)?;
    if args.dry_run {
        match format {
            OutputFormat::Json => ctx.printer.json(&serde_json::json!({
                "flows": plan.flows.iter().enumerate().map(|(i, f)| serde_json::json!({
                    "name": f.name,
                    "kind": f.kind,
                    "runs": f.blocks.to_string(),
                    "depends_on": plan.dependencies[i].iter().map(|&d| plan.flows[d].name.clone()).collect::<Vec<_>>(),
                })).collect::<Vec<_>>()
            })),
            _ => {
                for line in plan.describe() {
                    ctx.printer.line(line);
                }
            }
        }
        return Ok(());
    }
    let store = store.expect("opened unless this is a dry run");
    if plan.flows.is_empty() {
        ctx.printer
            .notice("nothing to sync: no enabled schedule, job or extractor with a default loader");
        return Ok(());
    }
    for notice in pause_held_sources(&fc.project, store.as_ref(), &mut plan)? {
        ctx.printer.notice(notice);
    }
    if args.names.is_empty() {
        mark_once_schedules_run(store.as_ref(), &plan)?;
    }
    drop(store);
    let mut fc = fc;
    // Several flows at once would draw over each other's display.
    fc.live_progress &= args.parallel <= 1;
    let summary = run_plan(Arc::new(fc), &plan, args.parallel)?;
    print_summary(ctx, &summary, Overlap::Exit3)
}

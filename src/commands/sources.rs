//! `dsm sources`: the registry of the project's extractors and loaders: list with filters,
//! show one, and operator status changes (`disable`, `enable`, `maintenance`).

use chrono::{Duration, Utc};

use crate::commands::Context;
use crate::error::{Error, Result, did_you_mean};
use crate::printer::OutputFormat;
use crate::project::{EnvironmentChoice, Project};
use crate::registry::catalog::{SourceInfo, SourceType, project_sources};
use crate::registry::listing::{SourceFilter, list_sources};
use crate::registry::status::current_user;
use crate::registry::{
    Health, HealthOptions, OperatorStatus, SourceState, SourceStatus, Subject, health_report,
    set_operator_status, source_statuses, status_history,
};
use crate::store::{RunRecord, SourceStatusChange, format_time};

/// Arguments of `dsm sources`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: SourcesCommand,
}

/// `dsm sources` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SourcesCommand {
    /// List extractors and loaders with type, provider, category, labels and status.
    List(ListArgs),
    /// Show one source: what it is, its config (secrets masked), status history, last runs
    /// and health.
    Show {
        /// The plugin name.
        name: String,
    },
    /// Mark a source inactive: syncs skip it with a notice.
    Disable(ChangeArgs),
    /// Make a disabled source or one under maintenance active again.
    Enable(ChangeArgs),
    /// Mark a source under maintenance: syncs skip it with a notice.
    Maintenance(ChangeArgs),
}

// The flags' values are the registry's own types; their command-line grammar lives here so the
// library does not depend on clap. The help texts are the types' doc comments.
impl clap::ValueEnum for SourceType {
    fn value_variants<'a>() -> &'a [Self] {
        &SourceType::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let help = match self {
            SourceType::File => "Files: CSV, JSONL, Parquet, object storage",
            SourceType::Database => "Operational databases",
            SourceType::Api => "Web APIs and SaaS",
            SourceType::Warehouse => "Analytical warehouses",
            SourceType::Webhook => "Events pushed to `dsm serve` by webhook",
            SourceType::Other => "Anything else",
        };
        Some(clap::builder::PossibleValue::new(self.as_str()).help(help))
    }
}

impl clap::ValueEnum for SourceStatus {
    fn value_variants<'a>() -> &'a [Self] {
        &SourceStatus::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let help = match self {
            SourceStatus::Active => "Enabled, and its last run succeeded (or it has not run yet)",
            SourceStatus::Inactive => "Disabled by an operator: syncs skip it",
            SourceStatus::Syncing => "A run is going right now (live heartbeat)",
            SourceStatus::Error => "Its last run failed or was killed",
            SourceStatus::Maintenance => "Under maintenance, set by an operator: syncs skip it",
        };
        Some(clap::builder::PossibleValue::new(self.as_str()).help(help))
    }
}

/// Filters of `dsm sources list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only sources of this type.
    #[arg(long = "type", value_enum)]
    pub source_type: Option<SourceType>,
    /// Only sources with this status.
    #[arg(long, value_enum)]
    pub status: Option<SourceStatus>,
    /// Only sources of this data category.
    #[arg(long)]
    pub category: Option<String>,
    /// Only sources of this provider.
    #[arg(long)]
    pub provider: Option<String>,
    /// Only sources with this label (repeat to require several).
    #[arg(long)]
    pub label: Vec<String>,
    /// Free text matched against name, provider, category, labels and status reason.
    #[arg(long)]
    pub search: Option<String>,
}

/// Arguments of a status change.
#[derive(Debug, clap::Args)]
pub struct ChangeArgs {
    /// The plugin name.
    pub name: String,
    /// Why (kept in the status history; required for `disable` and `maintenance`).
    #[arg(long)]
    pub reason: Option<String>,
}

impl ListArgs {
    fn filter(&self) -> SourceFilter {
        SourceFilter {
            source_type: self.source_type,
            status: self.status,
            category: self.category.clone(),
            provider: self.provider.clone(),
            labels: self.label.clone(),
            plugin_type: None,
            search: self.search.clone(),
            viewer: None,
        }
    }
}

fn environment(ctx: &Context, project: &Project) -> Result<Option<String>> {
    let choice = EnvironmentChoice {
        flag: ctx.global.environment.clone(),
        none: ctx.global.no_environment,
        use_default: true,
    };
    Ok(project.active_environment(&choice)?.map(|e| e.name.clone()))
}

fn find<'a>(sources: &'a [SourceInfo], name: &str) -> Result<&'a SourceInfo> {
    sources.iter().find(|s| s.name == name).ok_or_else(|| {
        let mut err = Error::config(format!("no extractor or loader `{name}` in meltano.yml"));
        if let Some(close) = did_you_mean(name, sources.iter().map(|s| s.name.as_str())) {
            err = err.hint(format!("did you mean `{close}`?"));
        }
        err.hint("`dsm sources list` shows every source")
    })
}

/// Runs `dsm sources`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let format = ctx.text_or_json()?;
    let project = Project::load(&ctx.project_root()?)?;
    let mut sources = project_sources(&project);
    fill_classification(&project, &mut sources)?;
    let store = ctx.open_store()?;
    match args.command {
        SourcesCommand::List(filters) => {
            let env = environment(ctx, &project)?;
            let (entries, _) = list_sources(
                store.as_ref(),
                &sources,
                &filters.filter(),
                env.as_deref(),
                0,
                usize::MAX,
            )?;
            match format {
                OutputFormat::Json => ctx.printer.json(&entries),
                OutputFormat::Text if entries.is_empty() => {
                    ctx.printer.notice("no sources match");
                }
                OutputFormat::Text => {
                    let rows: Vec<Vec<String>> = entries
                        .iter()
                        .map(|e| {
                            vec![
                                e.info.name.clone(),
                                e.info.plugin_type.clone(),
                                e.info.source_type.as_str().to_owned(),
                                e.info.provider.clone().unwrap_or_else(|| "-".into()),
                                e.info.category.clone().unwrap_or_else(|| "-".into()),
                                if e.info.labels.is_empty() {
                                    "-".into()
                                } else {
                                    e.info.labels.join(",")
                                },
                                e.info.classification.clone().unwrap_or_else(|| "-".into()),
                                e.status.as_str().to_owned(),
                                e.reason.clone().unwrap_or_default(),
                            ]
                        })
                        .collect();
                    ctx.printer.table(
                        &[
                            "NAME",
                            "PLUGIN",
                            "TYPE",
                            "PROVIDER",
                            "CATEGORY",
                            "LABELS",
                            "CLASSIFICATION",
                            "STATUS",
                            "REASON",
                        ],
                        &rows,
                    );
                }
            }
            Ok(())
        }
        SourcesCommand::Show { name } => {
            let info = find(&sources, &name)?;
            let status = source_statuses(store.as_ref(), &[name.as_str()])?.remove(0);
            let history = status_history(store.as_ref(), &name, 20)?;
            let now = Utc::now();
            let window = Duration::try_days(7).expect("seven days fit in a TimeDelta");
            let runs: Vec<RunRecord> = store
                .list_runs_since(now - window)?
                .into_iter()
                .filter(|r| r.plugins.iter().any(|p| p.plugin == name))
                .collect();
            let health: Option<Health> = health_report(
                &runs,
                &HealthOptions {
                    now,
                    since: now - window,
                    failing_after: 3,
                    expected_every: Default::default(),
                    known_sources: Vec::new(),
                },
            )
            .into_iter()
            .find(|h| h.subject == Subject::Source(name.clone()));
            let last_runs: Vec<&RunRecord> = runs.iter().take(5).collect();
            // Masked when the source was listed, by the plugin's declared settings.
            let config = info.config.clone();
            match format {
                OutputFormat::Json => ctx.printer.json(&serde_json::json!({
                    "source": info,
                    "config": config,
                    "status": status,
                    "status_history": history,
                    "last_runs": last_runs,
                    "health_7d": health,
                })),
                OutputFormat::Text => ctx.printer.raw(render_show(
                    info,
                    &config,
                    &status,
                    &history,
                    &last_runs,
                    health.as_ref(),
                )),
            }
            Ok(())
        }
        SourcesCommand::Disable(change) => operator_change(
            ctx,
            &sources,
            store.as_ref(),
            change,
            OperatorStatus::Inactive,
        ),
        SourcesCommand::Enable(change) => operator_change(
            ctx,
            &sources,
            store.as_ref(),
            change,
            OperatorStatus::Active,
        ),
        SourcesCommand::Maintenance(change) => operator_change(
            ctx,
            &sources,
            store.as_ref(),
            change,
            OperatorStatus::Maintenance,
        ),
    }
}

/// In a classified project: each extractor's source label and derived stream labels, each
/// loader's clearance.
fn fill_classification(project: &Project, sources: &mut [SourceInfo]) -> Result<()> {
    use crate::classification::{Scheme, clearance, is_classified};
    use crate::project::PluginType;
    if !is_classified(project) {
        return Ok(());
    }
    let scheme = Scheme::of(project)?;
    for info in sources.iter_mut() {
        if info.plugin_type == "loader" {
            let loader = project.find_plugin(&info.name, Some(PluginType::Loaders))?;
            info.classification = clearance(project, &scheme, loader)?.map(|c| c.label.name);
        } else {
            let plugin = project.find_plugin(&info.name, Some(PluginType::Extractors))?;
            info.classification = Some(
                plugin
                    .annotations
                    .source
                    .as_ref()
                    .and_then(|s| s.classification.clone())
                    .unwrap_or_else(|| scheme.default_label().name.clone()),
            );
            info.stream_labels =
                crate::runner::labels::declared(project, plugin, &[])?.unwrap_or_default();
        }
    }
    Ok(())
}

fn operator_change(
    ctx: &Context,
    sources: &[SourceInfo],
    store: &dyn crate::store::Store,
    change: ChangeArgs,
    status: OperatorStatus,
) -> Result<()> {
    find(sources, &change.name)?;
    let reason = change
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    if status != OperatorStatus::Active && reason.is_none() {
        return Err(Error::config(format!(
            "`--reason` is required to set `{}` to {}",
            change.name,
            status.as_str()
        ))
        .hint("say why, for the status history: `--reason \"vendor API migration\"`"));
    }
    let user = current_user();
    set_operator_status(
        store,
        &change.name,
        status,
        reason,
        user.as_deref(),
        Utc::now(),
    )?;
    crate::commands::shared::audit(
        ctx,
        &format!("dsm sources {}", status.as_str()),
        "source.status",
        &format!("{} -> {}", change.name, status.as_str()),
    );
    ctx.printer.notice(format!(
        "`{}` is now {}{}",
        change.name,
        match status {
            OperatorStatus::Maintenance => "in maintenance",
            other => other.as_str(),
        },
        if status == OperatorStatus::Active {
            ""
        } else {
            " (syncs skip it)"
        }
    ));
    Ok(())
}

fn render_show(
    info: &SourceInfo,
    config: &serde_json::Value,
    status: &SourceState,
    history: &[SourceStatusChange],
    runs: &[&RunRecord],
    health: Option<&Health>,
) -> String {
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let mut out = String::new();
    let mut field = |k: &str, v: String| out.push_str(&format!("{k:<12} {v}\n"));
    field("name", info.name.clone());
    field("plugin", info.plugin_type.clone());
    field("type", info.source_type.as_str().to_owned());
    field("provider", dash(info.provider.clone()));
    field("category", dash(info.category.clone()));
    field(
        "labels",
        dash((!info.labels.is_empty()).then(|| info.labels.join(", "))),
    );
    if let Some(c) = &info.classification {
        let what = if info.plugin_type == "loader" {
            "clearance"
        } else {
            "classification"
        };
        field(what, c.clone());
    }
    for l in &info.stream_labels {
        let stream = if l.stream == crate::classification::OTHER_STREAMS {
            "other streams".to_owned()
        } else {
            format!("stream {}", l.stream)
        };
        field("", format!("{stream}: {} ({})", l.label, l.because));
    }
    field("status", status.status.as_str().to_owned());
    if let Some(reason) = &status.reason {
        field("reason", reason.clone());
    }
    if let Some(h) = health {
        field(
            "health (7d)",
            format!("{} ({})", h.verdict.as_str(), h.reason),
        );
    }
    if config.as_object().is_some_and(|m| !m.is_empty()) {
        out.push_str("\nconfig:\n");
        for (k, v) in config.as_object().into_iter().flatten() {
            out.push_str(&format!("  {k}: {v}\n"));
        }
    }
    if !history.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = history
            .iter()
            .map(|c| {
                vec![
                    format_time(c.at),
                    c.status.clone(),
                    c.origin.clone(),
                    dash(c.user.clone()),
                    c.reason.clone().unwrap_or_default(),
                ]
            })
            .collect();
        out.push_str(&crate::printer::render_table(
            &["AT", "STATUS", "BY", "USER", "REASON"],
            &rows,
        ));
    }
    if !runs.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = runs
            .iter()
            .map(|r| {
                vec![
                    r.run_id.to_string(),
                    r.status.as_str().to_owned(),
                    format_time(r.started_at),
                    r.error.clone().unwrap_or_default(),
                ]
            })
            .collect();
        out.push_str(&crate::printer::render_table(
            &["RUN ID", "STATUS", "STARTED", "ERROR"],
            &rows,
        ));
    }
    out
}

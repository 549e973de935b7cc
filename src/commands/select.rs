//! `dsm select`: show or change which streams and properties an extractor extracts, like
//! `meltano select`.
//!
//! Adding, removing and clearing patterns edit the extractor's `select` in `meltano.yml` (in the
//! active environment's block when an environment is named, as Meltano does). `--list` runs the
//! tap with `--discover`, applies the project's rules and prints each property's state.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value as J, json};

use crate::catalog::{self, SelectFilter, SelectPattern, SelectionState};
use crate::commands::Context;
use crate::error::{Error, Result};
use crate::printer::OutputFormat;
use crate::project::edit::{self, Seg};
use crate::project::{EnvironmentChoice, Plugin, PluginType, Project};
use crate::settings::{self, Inputs};

/// Arguments of `dsm select`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The extractor.
    pub extractor: String,
    /// Stream pattern (default `*`).
    pub entities_filter: Option<String>,
    /// Property pattern (default `*`).
    pub attributes_filter: Option<String>,
    /// List the current selection (runs the tap with `--discover`).
    #[arg(long, conflicts_with_all = ["exclude", "rm", "clear"])]
    pub list: bool,
    /// With `--list`: show unselected properties too.
    #[arg(long, requires = "list")]
    pub all: bool,
    /// With `--list`: print JSON (same as `--format json`).
    #[arg(long, requires = "list")]
    pub json: bool,
    /// Add the pattern as an exclusion (`!stream.property`).
    #[arg(long)]
    pub exclude: bool,
    /// Remove the pattern instead of adding it.
    #[arg(long = "rm", visible_alias = "remove", conflicts_with = "clear")]
    pub rm: bool,
    /// Remove every pattern (the `select` becomes empty).
    #[arg(long)]
    pub clear: bool,
}

/// Runs `dsm select`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let format = if args.json {
        OutputFormat::Json
    } else {
        ctx.text_or_json()?
    };
    let project = Project::load(&ctx.project_root()?)?;
    // Like `config`, an environment is used only when one is named.
    let choice = EnvironmentChoice {
        flag: ctx.global.environment.clone(),
        none: ctx.global.no_environment,
        use_default: false,
    };
    let environment = project.active_environment(&choice)?.cloned();
    let plugin = project
        .find_plugin(&args.extractor, Some(PluginType::Extractors))?
        .clone();

    let env_def = environment
        .as_ref()
        .and_then(|e| project.environment_plugin(e, &plugin));

    if args.list {
        return list(
            ctx,
            &project,
            environment.as_ref(),
            &plugin,
            args.all,
            format,
        );
    }

    let env_name = environment.as_ref().map(|e| e.name.clone());
    // The list being edited: the environment's own when editing an environment (Meltano writes
    // the environment's `select`, which then replaces the plugin's), else the plugin's.
    let mut patterns: Vec<String> = match &env_name {
        Some(_) => env_def.and_then(|d| d.select.clone()).unwrap_or_default(),
        None => plugin.raw.select.clone().unwrap_or_default(),
    };
    let place = match &env_name {
        Some(e) => format!("environment `{e}` in meltano.yml"),
        None => "meltano.yml".to_string(),
    };
    let pattern = format!(
        "{}{}.{}",
        if args.exclude { "!" } else { "" },
        args.entities_filter.as_deref().unwrap_or("*"),
        args.attributes_filter.as_deref().unwrap_or("*")
    );
    let mut appended: Option<String> = None;
    let message = if args.clear {
        patterns.clear();
        format!(
            "cleared the `select` patterns of extractor `{}` in {place}",
            plugin.name
        )
    } else if args.rm {
        let before = patterns.len();
        patterns.retain(|p| *p != pattern);
        if patterns.len() == before {
            return Err(Error::config(format!(
                "pattern `{pattern}` is not in the `select` of extractor `{}` in {place}",
                plugin.name
            ))
            .hint(format!(
                "`dsm select {} --list` shows the enabled patterns",
                plugin.name
            )));
        }
        format!(
            "removed `{pattern}` from the `select` of extractor `{}` in {place}",
            plugin.name
        )
    } else if patterns.contains(&pattern) {
        ctx.printer.notice(format!(
            "`{pattern}` is already in the `select` of extractor `{}` in {place}",
            plugin.name
        ));
        return Ok(());
    } else {
        patterns.push(pattern.clone());
        appended = Some(pattern.clone());
        format!(
            "added `{pattern}` to the `select` of extractor `{}` in {place}",
            plugin.name
        )
    };

    let mut path = edit::plugin_path(
        env_name.as_deref(),
        PluginType::Extractors.key(),
        &plugin.name,
    );
    path.push(Seg::key("select"));
    let value = J::Array(patterns.into_iter().map(J::String).collect());
    edit::edit_defining_file(project.root(), &path, |doc| {
        // Appending keeps the comments of the other patterns.
        if let Some(p) = &appended
            && doc.append(&path, &J::String(p.clone()))?
        {
            return Ok(());
        }
        doc.set(&path, &value)
    })?;
    ctx.printer.notice(message);
    Ok(())
}

/// Width of the widest state name, for `[selected   ]` marks as Meltano prints them.
const MARK_WIDTH: usize = 11;

fn list(
    ctx: &Context,
    project: &Project,
    environment: Option<&crate::project::Environment>,
    plugin: &Plugin,
    show_all: bool,
    format: OutputFormat,
) -> Result<()> {
    // The extras as Meltano resolves them: variables, `.env`, environment block, meltano.yml,
    // parent, default.
    let inputs = Inputs::capture(project, environment)?;
    let plugin = &crate::settings::extras::effective_plugin(project, plugin, &inputs)?;
    let select = plugin
        .select
        .clone()
        .unwrap_or_else(|| vec![catalog::DEFAULT_SELECT.to_string()]);
    let object = |o: &Option<crate::project::Object>| o.clone().map(J::Object).unwrap_or(J::Null);
    let metadata = object(&plugin.metadata);
    let schema = object(&plugin.schema);
    let filter = SelectFilter {
        patterns: plugin.select_filter.clone().unwrap_or_default(),
    };
    let custom = plugin.catalog.clone();

    let mut cat = match &custom {
        Some(file) => read_catalog(&project.root().join(file))?,
        None => discover(project, &inputs, plugin)?,
    };
    let applied = if custom.is_some() {
        catalog::apply_select_filter(&mut cat, &filter)
    } else {
        catalog::apply_selection(&mut cat, &select, &metadata, &schema, &filter)
    };
    applied.map_err(|e| {
        Error::failed(format!(
            "cannot apply the selection rules of extractor `{}`",
            plugin.name
        ))
        .detail(e.to_string())
    })?;

    let report = catalog::selection_report(&cat);
    let mut rows: Vec<(String, SelectionState, String, SelectionState)> = Vec::new();
    for stream in &report {
        // Like Meltano, a stream without stream-level metadata is not listed.
        let Some(stream_state) = stream.selection else {
            continue;
        };
        for (prop, prop_state) in &stream.properties {
            let state = stream_state.combine(*prop_state);
            if show_all || state.is_extracted() {
                rows.push((
                    stream.tap_stream_id.clone(),
                    stream_state,
                    prop.clone(),
                    state,
                ));
            }
        }
    }

    if format == OutputFormat::Json {
        let streams: Vec<J> = report
            .iter()
            .filter_map(|s| {
                let st = s.selection?;
                let props: Vec<J> = rows
                    .iter()
                    .filter(|r| r.0 == s.tap_stream_id)
                    .map(|r| json!({"property": r.2, "selection": r.3}))
                    .collect();
                (show_all || !props.is_empty()).then(|| {
                    json!({"tap_stream_id": s.tap_stream_id, "selection": st, "properties": props})
                })
            })
            .collect();
        ctx.printer.json(&json!({
            "extractor": plugin.name,
            "patterns": select,
            "streams": streams,
        }));
        return Ok(());
    }

    let mut out = String::from("Legend:\n");
    for s in [
        SelectionState::Selected,
        SelectionState::Excluded,
        SelectionState::Automatic,
        SelectionState::Unsupported,
    ] {
        out.push_str(&format!("\t{}\n", s.as_str()));
    }
    out.push_str("\nEnabled patterns:\n");
    for p in &select {
        out.push_str(&format!("\t{}\n", SelectPattern::parse(p).raw));
    }
    out.push_str("\nSelected properties:\n");
    for (stream, _, prop, state) in &rows {
        out.push_str(&format!(
            "\t[{:<MARK_WIDTH$}] {stream}.{prop}\n",
            state.as_str()
        ));
    }
    ctx.printer.raw(out);
    Ok(())
}

fn read_catalog(path: &Path) -> Result<J> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::config(format!("cannot read the catalog `{}`", path.display())).detail(e.to_string())
    })?;
    serde_json::from_str(&text).map_err(|e| {
        Error::config(format!("catalog `{}` is not valid JSON", path.display()))
            .detail(e.to_string())
    })
}

/// Runs the tap with `--config <private file> --discover` and parses its catalog.
fn discover(project: &Project, inputs: &Inputs<'_>, plugin: &Plugin) -> Result<J> {
    if !plugin.has_capability("discover") {
        return Err(Error::config(format!(
            "cannot list the selection of extractor `{}`: it does not declare the `discover` capability",
            plugin.name
        ))
        .hint("add `discover` (and `catalog` or `properties`) to its `capabilities` in meltano.yml"));
    }
    let resolved = settings::resolve(project, plugin, inputs)?;
    // The config reaches the tap through a file only its owner can read, removed afterwards.
    let dir = tempfile::Builder::new().prefix("dsm-discover-").tempdir()?;
    let config_path = dir.path().join("config.json");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&config_path)?;
        f.write_all(resolved.config_json().to_string().as_bytes())?;
    }
    // The same lookup a run uses: built-ins next to dsm, the plugin's venv, then `PATH`.
    let exe = crate::plugin::executable::resolve_executable(project, plugin);
    let mut cmd = Command::new(&exe);
    cmd.arg("--config")
        .arg(&config_path)
        .arg("--discover")
        .current_dir(project.root())
        .stdin(Stdio::null())
        .env(crate::envvars::MELTANO_PROJECT_ROOT, project.root());
    crate::plugin::withhold_access(&mut cmd);
    let output = cmd.output().map_err(|e| {
        Error::failed(format!(
            "cannot run extractor `{}` (`{}`) with `--discover`",
            plugin.name,
            exe.display()
        ))
        .detail(e.to_string())
        .hint(format!(
            "install it with `dsm install extractor {}`",
            plugin.name
        ))
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let mut err = Error::failed(format!(
            "extractor `{}` exited with {} during `--discover`",
            plugin.name, output.status
        ));
        let lines: Vec<&str> = stderr.lines().collect();
        for line in &lines[lines.len().saturating_sub(20)..] {
            err = err.detail(format!("| {line}"));
        }
        return Err(err.hint(format!(
            "`dsm invoke {} --discover` shows what the tap does",
            plugin.name
        )));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| {
        Error::failed(format!(
            "extractor `{}` printed an invalid catalog during `--discover`",
            plugin.name
        ))
        .detail(e.to_string())
    })
}

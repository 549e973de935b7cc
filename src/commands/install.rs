//! `dsm install`: installs the project's Python plugins, each into its own environment under
//! `.dsm/plugins/` (see [`crate::plugin::install`]). Built-in plugins and plugins without a
//! `pip_url` need nothing; plugins installed from the same `pip_url` are skipped.

use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::commands::Context;
use crate::commands::add::split_type;
use crate::envvars;
use crate::error::{Error, Result};
use crate::plugin::install::{self, Installer, Outcome, Status, Target};
use crate::printer::Printer;
use crate::project::{Plugin, PluginType, Project};

/// Arguments of `dsm install`.
#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// `[TYPE] [NAME...]`: only these plugins (default: every plugin of the project).
    #[arg(value_name = "TYPE|NAME")]
    pub plugins: Vec<String>,
    /// Only plugins of this type.
    #[arg(long, value_name = "TYPE")]
    pub plugin_type: Option<String>,
    /// Delete and recreate the environments, even those already installed.
    #[arg(long)]
    pub clean: bool,
    /// How many plugins to install at the same time (default: the number of CPUs).
    #[arg(long, short = 'p', value_name = "N", value_parser = crate::cli::parse_parallel)]
    pub parallel: Option<usize>,
}

/// Runs `dsm install`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let project = Project::load(&ctx.project_root()?)?;
    let (ty, names) = match args.plugins.as_slice() {
        [] | [_] if args.plugins.iter().all(|w| PluginType::parse(w).is_some()) => {
            let word = args.plugins.first().or(args.plugin_type.as_ref());
            let ty = match word {
                Some(w) => Some(PluginType::parse(w).ok_or_else(|| {
                    Error::config(format!("unknown plugin type `{w}`"))
                        .hint("use one of `extractor`, `loader`, `mapper`, `utility`")
                })?),
                None => None,
            };
            (ty, Vec::new())
        }
        _ => split_type(&args.plugins, args.plugin_type.as_deref())?,
    };
    let chosen: Vec<&Plugin> = if names.is_empty() {
        project
            .plugins()
            .iter()
            .filter(|p| ty.is_none_or(|t| t == p.plugin_type))
            .collect()
    } else {
        names
            .iter()
            .map(|n| project.find_plugin(n, ty))
            .collect::<Result<_>>()?
    };
    let parallel = args.parallel.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    if parallel == 0 {
        return Err(Error::config("`--parallel` must be at least 1"));
    }
    let targets = targets_of(&project, &chosen);
    for p in &chosen {
        if install::is_builtin(p) {
            tracing::debug!(plugin = %p.name, "built-in plugin: nothing to install");
        }
    }
    if targets.is_empty() {
        ctx.printer
            .notice("nothing to install: no plugin chosen has a `pip_url`");
        return Ok(());
    }
    install_targets(&ctx.printer, &targets, args.clean, parallel)
}

/// The distinct environments the plugins need (an inherited plugin shares its parent's).
fn targets_of(project: &Project, plugins: &[&Plugin]) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    for p in plugins {
        if let Some(t) = install::target(project, p)
            && !out.iter().any(|o| o.dir == t.dir)
        {
            out.push(t);
        }
    }
    out
}

/// Installs what `plugins` need and is missing or changed, before a run (`auto_install`).
pub fn ensure_installed(printer: &Printer, project: &Project, plugins: &[&Plugin]) -> Result<()> {
    let targets: Vec<Target> = targets_of(project, plugins)
        .into_iter()
        .filter(|t| matches!(t.status(), Status::Missing | Status::Changed))
        .collect();
    if targets.is_empty() {
        return Ok(());
    }
    let parallel = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    install_targets(printer, &targets, false, parallel)
}

fn install_targets(
    printer: &Printer,
    targets: &[Target],
    clean: bool,
    parallel: usize,
) -> Result<()> {
    let installer = Installer::detect();
    tracing::debug!(installer = installer.name(), "installing plugins");
    let live = printer.stderr_is_terminal() && !printer.is_quiet();
    let multi = live.then(MultiProgress::new);
    let bars: Vec<Option<ProgressBar>> = targets
        .iter()
        .map(|t| {
            multi.as_ref().map(|m| {
                let bar = m.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                        .expect("a fixed template is valid"),
                );
                bar.set_message(format!(
                    "{} `{}`: waiting",
                    t.plugin_type.singular(),
                    t.name
                ));
                bar
            })
        })
        .collect();
    let started: std::sync::Mutex<Vec<Option<Instant>>> =
        std::sync::Mutex::new(vec![None; targets.len()]);
    let index = |t: &Target| targets.iter().position(|o| o.dir == t.dir).unwrap_or(0);
    let report = |t: &Target, result: Option<&Result<Outcome>>| {
        let i = index(t);
        let what = format!("{} `{}`", t.plugin_type.singular(), t.name);
        match result {
            None => {
                if let Ok(mut s) = started.lock() {
                    s[i] = Some(Instant::now());
                }
                if let Some(bar) = &bars[i] {
                    bar.set_message(format!("{what}: installing with {}", installer.name()));
                    bar.enable_steady_tick(Duration::from_millis(120));
                }
            }
            Some(r) => {
                let secs = started
                    .lock()
                    .ok()
                    .and_then(|s| s[i])
                    .map_or(0.0, |t0| t0.elapsed().as_secs_f64());
                let line = match r {
                    Ok(Outcome::Skipped) => format!("{what}: already installed, skipped"),
                    Ok(Outcome::Installed) => {
                        format!("{what}: installed with {} in {secs:.1}s", installer.name())
                    }
                    Err(_) => format!("{what}: failed after {secs:.1}s"),
                };
                match &bars[i] {
                    Some(bar) => bar.finish_with_message(line),
                    None => printer.notice(line),
                }
            }
        }
    };
    let failures = install::install_all(targets, &installer, clean, parallel, &report);
    if let Some(m) = &multi {
        let _ = m.clear();
    }
    let n = failures.len();
    let mut failures = failures.into_iter();
    match failures.next() {
        None => Ok(()),
        Some((_, first)) => {
            for (_, e) in failures {
                printer.error(&e);
            }
            if n > 1 {
                printer.warn(format!(
                    "{n} of {} plugins failed to install",
                    targets.len()
                ));
            }
            Err(first)
        }
    }
}

/// Whether `auto_install` is on: `DSM_AUTO_INSTALL` / `MELTANO_AUTO_INSTALL`, else the project's
/// `auto_install:`. Off when unset (Meltano's default is on; dsm never reaches for the network
/// unless asked).
pub fn auto_install_enabled(project: &Project) -> Result<bool> {
    for var in [envvars::AUTO_INSTALL, envvars::MELTANO_AUTO_INSTALL] {
        if let Ok(v) = std::env::var(var)
            && !v.is_empty()
        {
            return match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" | "t" | "y" => Ok(true),
                "0" | "false" | "no" | "off" | "f" | "n" => Ok(false),
                _ => Err(Error::config(format!(
                    "`{var}` must be true or false, found `{v}`"
                ))),
            };
        }
    }
    Ok(project.file().auto_install == Some(true))
}

/// Installs the plugins that `blocks` (after job expansion) name and that are missing or
/// changed, when `choice` says so (`--install`, `--only-install`) or, without a flag, when
/// `auto_install` is on.
pub fn auto_install(
    printer: &Printer,
    project: &Project,
    blocks: &[String],
    choice: crate::commands::run::InstallChoice,
) -> Result<()> {
    use crate::commands::run::InstallChoice;
    let install = match choice {
        InstallChoice::Install | InstallChoice::OnlyInstall => true,
        InstallChoice::NoInstall => false,
        InstallChoice::Auto => auto_install_enabled(project)?,
    };
    if !install {
        return Ok(());
    }
    let words = crate::runner::blocks::expand_jobs(project, blocks)?;
    let plugins: Vec<&Plugin> = project
        .plugins()
        .iter()
        .filter(|p| {
            words.iter().any(|w| {
                let name = w.split_once(':').map_or(w.as_str(), |(n, _)| n);
                name == p.name || p.mappings.iter().any(|m| m.name == name)
            })
        })
        .collect();
    ensure_installed(printer, project, &plugins)
}

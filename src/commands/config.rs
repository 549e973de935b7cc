//! `dsm config`: show and change plugin settings, in Meltano 4's shape:
//! `dsm config [--safe|--unsafe] list|print|set|unset|reset PLUGIN ...`.

use serde_json::Value as J;

use crate::commands::Context;
use crate::error::{Error, Result};
use crate::printer::OutputFormat;
use crate::project::edit::{self, Seg};
use crate::project::{EnvironmentChoice, Plugin, PluginType, Project};
use crate::settings::{self, Inputs, MASK, ResolvedSettings, Source};

/// Arguments of `dsm config`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show sensitive values in clear.
    #[arg(long = "unsafe", overrides_with = "safe")]
    pub unsafe_: bool,
    /// Mask sensitive values (the default).
    #[arg(long, overrides_with = "unsafe_")]
    pub safe: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: ConfigCommand,
}

/// The plugin a `config` subcommand works on.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The plugin's name.
    pub plugin: String,
    /// Its type, when two plugins share a name (`extractor`, `loader`, ...).
    #[arg(long)]
    pub plugin_type: Option<String>,
}

/// `dsm config` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// List settings with their values, variables and where each value came from.
    List {
        /// The plugin.
        #[command(flatten)]
        target: Target,
    },
    /// Print the plugin's configuration (`--format json`, the default, or `--format env`).
    Print {
        /// The plugin.
        #[command(flatten)]
        target: Target,
    },
    /// Set a setting: `dsm config set PLUGIN NAME [SUBNAME...] VALUE`.
    Set {
        /// The plugin.
        #[command(flatten)]
        target: Target,
        /// The setting name (several words for a nested setting), then the value.
        #[arg(num_args = 2.., required = true, value_name = "NAME... VALUE")]
        words: Vec<String>,
    },
    /// Remove a setting's value from where `set` writes it.
    Unset {
        /// The plugin.
        #[command(flatten)]
        target: Target,
        /// The setting name (several words for a nested setting).
        #[arg(num_args = 1.., required = true)]
        name: Vec<String>,
    },
    /// Remove every value of the plugin's settings (back to defaults).
    Reset {
        /// The plugin.
        #[command(flatten)]
        target: Target,
    },
}

struct Loaded {
    project: Project,
    environment: Option<String>,
}

fn load(ctx: &Context) -> Result<Loaded> {
    let project = Project::load(&ctx.project_root()?)?;
    // Like Meltano, `config` uses an environment only when one is named.
    let choice = EnvironmentChoice {
        flag: ctx.global.environment.clone(),
        none: ctx.global.no_environment,
        use_default: false,
    };
    let environment = project.active_environment(&choice)?.map(|e| e.name.clone());
    Ok(Loaded {
        project,
        environment,
    })
}

fn plugin<'a>(l: &'a Loaded, t: &Target) -> Result<&'a Plugin> {
    let ty = match &t.plugin_type {
        None => None,
        Some(s) => Some(PluginType::parse(s).ok_or_else(|| {
            Error::config(format!("unknown plugin type `{s}`"))
                .hint("use extractor, loader, mapper, transform, transformer, orchestrator, utility or file")
        })?),
    };
    l.project.find_plugin(&t.plugin, ty)
}

fn resolve(ctx: &Context, l: &Loaded, p: &Plugin) -> Result<ResolvedSettings> {
    let env = match &l.environment {
        Some(n) => Some(l.project.environment(n)?),
        None => None,
    };
    let r = settings::resolve(&l.project, p, &Inputs::from_process(env))?;
    for w in &r.warnings {
        ctx.printer.warn(w);
    }
    Ok(r)
}

/// Runs `dsm config`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let safe = !args.unsafe_;
    match args.command {
        ConfigCommand::List { target } => list(ctx, &target, safe),
        ConfigCommand::Print { target } => print(ctx, &target, safe),
        ConfigCommand::Set { target, words } => set(ctx, &target, &words),
        ConfigCommand::Unset { target, name } => unset(ctx, &target, &name),
        ConfigCommand::Reset { target } => reset(ctx, &target),
    }
}

fn print(ctx: &Context, target: &Target, safe: bool) -> Result<()> {
    let l = load(ctx)?;
    let p = plugin(&l, target)?;
    let r = resolve(ctx, &l, p)?;
    match ctx.global.format.as_deref() {
        None | Some("json") => ctx.printer.json(&r.config_json_masked(safe)),
        Some("env") => {
            for (k, v) in r.plugin_env(safe) {
                ctx.printer.line(format!("{k}={}", shell_quote(&v)));
            }
        }
        Some(other) => {
            return Err(Error::config(format!("unknown output format `{other}`"))
                .hint("`dsm config print` accepts `--format json` or `--format env`"));
        }
    }
    Ok(())
}

fn shell_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', r"'\''"))
}

fn list(ctx: &Context, target: &Target, safe: bool) -> Result<()> {
    let format = ctx.text_or_json()?;
    let l = load(ctx)?;
    let p = plugin(&l, target)?;
    let r = resolve(ctx, &l, p)?;
    if format == OutputFormat::Json {
        let rows: Vec<J> = r
            .values
            .iter()
            .map(|v| {
                serde_json::json!({
                    "name": v.name,
                    "value": v.display_value(safe),
                    "source": v.source,
                    "env_var": v.env_vars.first(),
                    "kind": v.definition.kind.clone().unwrap_or_else(|| "string".into()),
                    "sensitive": v.sensitive,
                    "declared": v.declared,
                    "default": if safe && v.sensitive { v.definition.value.as_ref().map(|_| J::from(MASK)) } else { v.definition.value.clone() },
                })
            })
            .collect();
        ctx.printer.json(&serde_json::json!({
            "plugin": p.name,
            "plugin_type": p.plugin_type.singular(),
            "environment": l.environment,
            "settings": rows,
        }));
        return Ok(());
    }
    let mut text = String::new();
    for (title, declared) in [
        ("Settings:", true),
        ("Custom, possibly unsupported by the plugin:", false),
    ] {
        let rows: Vec<_> = r.values.iter().filter(|v| v.declared == declared).collect();
        if rows.is_empty() {
            continue;
        }
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(title);
        text.push('\n');
        for v in rows {
            let env = v
                .env_vars
                .first()
                .map(|e| format!(" [env: {e}]"))
                .unwrap_or_default();
            let value = match v.display_value(safe) {
                Some(J::String(s)) if s == MASK => "(redacted)".to_string(),
                Some(val) => val.to_string(),
                None => "(unset)".to_string(),
            };
            let origin = match v.source {
                Source::Unset => String::new(),
                Source::Inherited => format!(
                    " (inherited from `{}`)",
                    p.parent.as_deref().unwrap_or("parent")
                ),
                s => format!(" (from {})", s.label()),
            };
            text.push_str(&format!("{}{env} current value: {value}{origin}\n", v.name));
        }
    }
    if text.is_empty() {
        text = format!(
            "{} `{}` has no settings\n",
            p.plugin_type.singular(),
            p.name
        );
    }
    ctx.printer.raw(text);
    Ok(())
}

/// The setting name from words: several words make a nested name.
fn setting_name(words: &[String]) -> String {
    words.join(".")
}

fn config_path(l: &Loaded, p: &Plugin, words: &[String]) -> Vec<Seg> {
    let mut path = edit::plugin_path(l.environment.as_deref(), p.plugin_type.key(), &p.name);
    path.push(Seg::key("config"));
    path.extend(words.iter().map(Seg::key));
    path
}

fn set(ctx: &Context, target: &Target, words: &[String]) -> Result<()> {
    let l = load(ctx)?;
    let p = plugin(&l, target)?;
    let (value_text, name_words) = words.split_last().expect("clap requires two words");
    let name = setting_name(name_words);
    let def = p.setting(&name).cloned();
    let raw =
        serde_json::from_str::<J>(value_text).unwrap_or_else(|_| J::String(value_text.clone()));
    let typed = match &def {
        Some(d) => settings::cast(d, raw.clone(), &p.name, Source::Env)
            .or_else(|_| settings::cast(d, J::String(value_text.clone()), &p.name, Source::Env))?,
        None => raw,
    };
    let sensitive = def.as_ref().is_some_and(|d| {
        d.sensitive.unwrap_or(false) || matches!(d.kind.as_deref(), Some("password" | "oauth"))
    });
    let root = l.project.root().to_path_buf();
    if sensitive {
        // Like Meltano: a sensitive value never goes into meltano.yml.
        let var = settings::env_var_name(
            &p.name,
            &def.as_ref().expect("sensitive implies declared").name,
        );
        edit::dotenv_set(&root, &var, &settings::env_text(&typed))?;
        ctx.printer.notice(format!(
            "{} `{}` setting `{name}` was set in `.env` as `{var}`: {MASK}",
            p.plugin_type.singular(),
            p.name
        ));
        return Ok(());
    }
    if def.is_none() {
        ctx.printer.warn(format!(
            "`{name}` is not a setting {} `{}` declares; it is stored anyway",
            p.plugin_type.singular(),
            p.name
        ));
    }
    let path = config_path(&l, p, name_words);
    edit::edit_project_file(&root, |doc| doc.set(&path, &typed))?;
    let place = match &l.environment {
        Some(e) => format!("environment `{e}` in meltano.yml"),
        None => "meltano.yml".to_string(),
    };
    ctx.printer.notice(format!(
        "{} `{}` setting `{name}` was set in {place}: {}",
        p.plugin_type.singular(),
        p.name,
        edit::inline(&typed)
    ));
    Ok(())
}

fn unset(ctx: &Context, target: &Target, words: &[String]) -> Result<()> {
    let l = load(ctx)?;
    let p = plugin(&l, target)?;
    let name = setting_name(words);
    let root = l.project.root().to_path_buf();
    let mut removed = false;
    for path in [
        config_path(&l, p, words),
        config_path(&l, p, std::slice::from_ref(&name)),
    ] {
        removed |= edit::edit_project_file(&root, |doc| doc.remove(&path))?;
    }
    let def = p.setting(&name);
    if let Some(d) = def {
        let var = settings::env_var_name(&p.name, &d.name);
        removed |= edit::dotenv_unset(&root, &[var])? > 0;
    }
    if removed {
        ctx.printer.notice(format!(
            "{} `{}` setting `{name}` was unset",
            p.plugin_type.singular(),
            p.name
        ));
    } else {
        ctx.printer.notice(format!(
            "{} `{}` setting `{name}` had no value to unset",
            p.plugin_type.singular(),
            p.name
        ));
    }
    Ok(())
}

fn reset(ctx: &Context, target: &Target) -> Result<()> {
    let l = load(ctx)?;
    let p = plugin(&l, target)?;
    let root = l.project.root().to_path_buf();
    let mut path = edit::plugin_path(l.environment.as_deref(), p.plugin_type.key(), &p.name);
    path.push(Seg::key("config"));
    let had = edit::edit_project_file(&root, |doc| doc.remove(&path))?;
    let vars: Vec<String> = p
        .settings
        .iter()
        .filter(|d| {
            d.sensitive.unwrap_or(false) || matches!(d.kind.as_deref(), Some("password" | "oauth"))
        })
        .map(|d| settings::env_var_name(&p.name, &d.name))
        .collect();
    let dot = edit::dotenv_unset(&root, &vars)?;
    ctx.printer.notice(format!(
        "{} `{}` was reset{}",
        p.plugin_type.singular(),
        p.name,
        if had || dot > 0 {
            ""
        } else {
            " (it had no stored values)"
        }
    ));
    Ok(())
}

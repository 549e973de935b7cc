//! `dsm config`: show and change plugin settings, in Meltano 4's shape:
//! `dsm config [--safe|--unsafe] list|print|set|unset|reset PLUGIN ...`.

use std::io::{IsTerminal, Read};

use std::sync::Arc;

use serde_json::Value as J;
use zeroize::Zeroizing;

use crate::commands::Context;
use crate::error::{Error, Result};
use crate::printer::OutputFormat;
use crate::project::edit::{self, Seg};
use crate::project::{EnvironmentChoice, Plugin, PluginType, Project};
use crate::secrets::history::{self, PluginRef};
use crate::secrets::layer::{Reveal, StoreLayer, settings_namespace};
use crate::secrets::{self as secret_store, MasterKey, Secret};
use crate::settings::extras::Extras;
use crate::settings::{self, Inputs, MASK, ResolvedSettings, Source, is_sensitive};
use crate::store::Store;

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
        /// List only the plugin's extras (`_select`, `_metadata`, `_catalog`, ...), each with
        /// its variables and where its value came from.
        #[arg(long)]
        extras: bool,
    },
    /// Print the plugin's configuration (`--format json`, the default, or `--format env`).
    Print {
        /// The plugin.
        #[command(flatten)]
        target: Target,
        /// Print only the plugin's extras, as JSON (`{"_select": [...], ...}`).
        #[arg(long)]
        extras: bool,
    },
    /// Set a setting: `dsm config set PLUGIN NAME [SUBNAME...] [VALUE]`. A sensitive setting
    /// goes into the encrypted secret store; give its value at the hidden prompt or with
    /// `--value-stdin`, not as an argument (shell history keeps arguments).
    Set {
        /// The plugin.
        #[command(flatten)]
        target: Target,
        /// The setting name (several words for a nested setting), then the value.
        #[arg(num_args = 1.., required = true, value_name = "NAME... [VALUE]")]
        words: Vec<String>,
        /// Read the value from standard input (one trailing newline is dropped).
        #[arg(long)]
        value_stdin: bool,
        /// Where to write: `auto` (sensitive settings to the encrypted store, others to
        /// meltano.yml), `secrets`, `dotenv` (plain `.env`, like Meltano), `meltano_yml`, `db`.
        #[arg(long, default_value = "auto", value_parser = ["auto", "secrets", "dotenv", "meltano_yml", "db"])]
        store: String,
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
    /// List the versions of the plugin's configuration that dsm recorded (never secret values).
    History {
        /// The plugin.
        #[command(flatten)]
        target: Target,
    },
    /// Restore the plugin's configuration to a recorded version.
    Rollback {
        /// The plugin.
        #[command(flatten)]
        target: Target,
        /// The version to restore (see `dsm config history`).
        #[arg(long = "to", value_name = "VERSION")]
        to: i64,
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

fn location(ctx: &Context, l: &Loaded) -> Result<crate::store::Location> {
    crate::store::locate(ctx.global.database_uri.as_deref(), l.project.root())
}

/// The store, when there is one to read: an SQLite file that does not exist holds nothing (and
/// reading creates none); a PostgreSQL store is opened.
fn existing_store(ctx: &Context, l: &Loaded) -> Result<Option<Arc<dyn Store>>> {
    match location(ctx, l)? {
        crate::store::Location::Sqlite(path) if !path.exists() => Ok(None),
        at => crate::store::open_location(&at, l.project.root()).map(Some),
    }
}

fn resolve(ctx: &Context, l: &Loaded, p: &Plugin, safe: bool) -> Result<ResolvedSettings> {
    let env = match &l.environment {
        Some(n) => Some(l.project.environment(n)?),
        None => None,
    };
    // Masked output needs no master key: a stored secret only says it exists.
    let reveal = if safe { Reveal::Masked } else { Reveal::Clear };
    let layer = StoreLayer::at(&location(ctx, l)?, l.project.root(), reveal)?
        .in_environment(l.environment.as_deref());
    let inputs = Inputs {
        store: &layer,
        ..Inputs::capture(&l.project, env)?
    };
    let r = settings::resolve(&l.project, p, &inputs)?;
    for w in &r.warnings {
        ctx.printer.warn(w);
    }
    Ok(r)
}

/// Runs `dsm config`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let safe = !args.unsafe_;
    match args.command {
        ConfigCommand::List { target, extras } if extras => list_extras(ctx, &target),
        ConfigCommand::List { target, .. } => {
            list(ctx, &target, safe)?;
            if !safe {
                // A read of secrets in clear is on the record, as what it is.
                crate::commands::shared::audit(
                    ctx,
                    "dsm config --unsafe list",
                    "config.read_plaintext",
                    &target.plugin,
                );
            }
            Ok(())
        }
        ConfigCommand::Print { target, extras } if extras => print_extras(ctx, &target),
        ConfigCommand::Print { target, .. } => {
            print(ctx, &target, safe)?;
            if !safe {
                crate::commands::shared::audit(
                    ctx,
                    "dsm config --unsafe print",
                    "config.read_plaintext",
                    &target.plugin,
                );
            }
            Ok(())
        }
        ConfigCommand::Set {
            target,
            words,
            value_stdin,
            store,
        } => set(ctx, &target, &words, value_stdin, &store),
        ConfigCommand::Unset { target, name } => unset(ctx, &target, &name),
        ConfigCommand::Reset { target } => reset(ctx, &target),
        ConfigCommand::History { target } => history(ctx, &target),
        ConfigCommand::Rollback { target, to } => rollback(ctx, &target, to),
    }
}

fn print(ctx: &Context, target: &Target, safe: bool) -> Result<()> {
    let l = load(ctx)?;
    let p = plugin(&l, target)?;
    let r = resolve(ctx, &l, p, safe)?;
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

/// The extras of the plugin a `config` subcommand names, with the environment it names.
fn resolve_extras(ctx: &Context, target: &Target) -> Result<(Plugin, Extras)> {
    let l = load(ctx)?;
    let p = plugin(&l, target)?.clone();
    let env = match &l.environment {
        Some(n) => Some(l.project.environment(n)?),
        None => None,
    };
    let inputs = Inputs::capture(&l.project, env)?;
    let extras = settings::extras::resolve(&l.project, &p, &inputs)?;
    Ok((p, extras))
}

/// `config print --extras`: Meltano's `{"_name": value}` document, `_metadata` and `_schema`
/// nested as Meltano's `nest_object` leaves them.
fn print_extras(ctx: &Context, target: &Target) -> Result<()> {
    if let Some(other) = ctx.global.format.as_deref().filter(|f| *f != "json") {
        return Err(Error::config(format!(
            "`--extras` prints JSON only, not `--format {other}`"
        ))
        .hint("leave out `--format`, or use `--format json`"));
    }
    let (_, extras) = resolve_extras(ctx, target)?;
    let mut doc = serde_json::Map::new();
    for v in &extras.values {
        let value = v.value.clone().unwrap_or(J::Null);
        let value = match v.name.as_str() {
            "_metadata" | "_schema" => settings::extras::nested(value),
            _ => value,
        };
        doc.insert(v.name.clone(), value);
    }
    ctx.printer.json(&J::Object(doc));
    Ok(())
}

/// `config list --extras`: each extra with its variables, value and origin.
fn list_extras(ctx: &Context, target: &Target) -> Result<()> {
    let format = ctx.text_or_json()?;
    let (p, extras) = resolve_extras(ctx, target)?;
    let origin = |source: Source| match source {
        Source::Unset | Source::Default => "default".to_string(),
        Source::Inherited => format!(
            "inherited from `{}`",
            p.parent.as_deref().unwrap_or("parent")
        ),
        s => format!("from {}", s.label()),
    };
    if format == OutputFormat::Json {
        let rows: Vec<J> = extras
            .values
            .iter()
            .map(|v| {
                serde_json::json!({
                    "name": v.name,
                    "value": v.value,
                    "source": v.source,
                    "env_vars": v.env_vars,
                })
            })
            .collect();
        ctx.printer.json(&serde_json::json!({
            "plugin": p.name,
            "plugin_type": p.plugin_type.singular(),
            "extras": rows,
        }));
        return Ok(());
    }
    if extras.values.is_empty() {
        ctx.printer.raw(format!(
            "{} `{}` has no extras\n",
            p.plugin_type.singular(),
            p.name
        ));
        return Ok(());
    }
    let mut text = String::new();
    for (title, configured) in [("Configured:", true), ("Optional:", false)] {
        let rows: Vec<_> = extras
            .values
            .iter()
            .filter(|v| matches!(v.source, Source::Default | Source::Unset) != configured)
            .collect();
        if rows.is_empty() {
            continue;
        }
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(title);
        text.push('\n');
        for v in rows {
            let value = match &v.value {
                Some(val) => val.to_string(),
                None => "(unset)".to_string(),
            };
            text.push_str(&format!(
                "{} [env: {}] current value: {value} ({})\n",
                v.name,
                v.env_vars.join(", "),
                origin(v.source)
            ));
        }
    }
    ctx.printer.raw(text);
    Ok(())
}

fn shell_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', r"'\''"))
}

fn list(ctx: &Context, target: &Target, safe: bool) -> Result<()> {
    let format = ctx.text_or_json()?;
    let l = load(ctx)?;
    let p = plugin(&l, target)?;
    let r = resolve(ctx, &l, p, safe)?;
    // Which scope each value from the secret store comes from: the environment's own value,
    // or the project's.
    let mut scopes: std::collections::BTreeMap<&str, &'static str> = Default::default();
    if r.values.iter().any(|v| v.source == Source::SecretStore)
        && let Some(store) = existing_store(ctx, &l)?
    {
        for v in r.values.iter().filter(|v| v.source == Source::SecretStore) {
            let applies = secret_store::store::applicable_scope(
                store.as_ref(),
                &p.name,
                &v.name,
                l.environment.as_deref(),
            )?;
            if let Some(scope) = applies {
                scopes.insert(
                    &v.name,
                    if scope.is_some() {
                        "environment"
                    } else {
                        "project"
                    },
                );
            }
        }
    }
    if format == OutputFormat::Json {
        let rows: Vec<J> = r
            .values
            .iter()
            .map(|v| {
                serde_json::json!({
                    "scope": scopes.get(v.name.as_str()),
                    "name": v.name,
                    "value": v.display_value(safe),
                    "source": v.source,
                    "env_var": v.env_vars.first(),
                    "env_vars": v.env_vars,
                    "kind": v.definition.kind.clone().unwrap_or_else(|| "string".into()),
                    "sensitive": v.sensitive,
                    "declared": v.declared,
                    "default": if safe && v.sensitive { v.definition.value.as_ref().map(|_| J::from(MASK)) } else { v.definition.value.clone() },
                    "unexpanded": unexpanded(v, safe),
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
            // Like Meltano: every variable that sets it, the declared default where the value
            // is not that default, and the value as written where `$VAR` expansion changed it.
            let env = if v.env_vars.is_empty() {
                String::new()
            } else {
                format!(" [env: {}]", v.env_vars.join(", "))
            };
            let shown = |val: Option<J>| match val {
                Some(J::String(s)) if s == MASK => "(redacted)".to_string(),
                Some(val) => val.to_string(),
                None => "(unset)".to_string(),
            };
            let default = match &v.definition.value {
                Some(d) if !d.is_null() && !matches!(v.source, Source::Default | Source::Unset) => {
                    let d = if safe && v.sensitive {
                        J::from(MASK)
                    } else {
                        d.clone()
                    };
                    format!(" (default: {})", shown(Some(d)))
                }
                _ => String::new(),
            };
            let value = shown(v.display_value(safe));
            let raw = unexpanded(v, safe)
                .map(|u| format!(": {}", shown(Some(u))))
                .unwrap_or_default();
            let origin = match v.source {
                Source::Unset => String::new(),
                Source::Inherited => format!(
                    " (inherited from `{}`)",
                    p.parent.as_deref().unwrap_or("parent")
                ),
                Source::SecretStore => match scopes.get(v.name.as_str()) {
                    Some(&"environment") => format!(
                        " (from {} for environment `{}`)",
                        Source::SecretStore.label(),
                        l.environment.as_deref().unwrap_or_default()
                    ),
                    Some(_) => format!(
                        " (from {} for the whole project)",
                        Source::SecretStore.label()
                    ),
                    None => format!(" (from {})", Source::SecretStore.label()),
                },
                s => format!(" (from {}{raw})", s.label()),
            };
            text.push_str(&format!(
                "{}{env}{default} current value: {value}{origin}\n",
                v.name
            ));
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

/// The value as written before `$VAR` expansion, when expansion changed it (masked when the
/// setting is sensitive and `safe`).
fn unexpanded(v: &settings::SettingValue, safe: bool) -> Option<J> {
    let raw = v.unexpanded.clone()?;
    Some(if safe && v.sensitive {
        J::from(MASK)
    } else {
        raw
    })
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

fn plugin_ref<'a>(p: &'a Plugin, l: &'a Loaded) -> PluginRef<'a> {
    PluginRef {
        plugin_type: Some(p.plugin_type),
        name: &p.name,
        environment: l.environment.as_deref(),
    }
}

/// Opens (creating if needed) the system database, for commands that write to it.
fn open_db(ctx: &Context, l: &Loaded) -> Result<Arc<dyn Store>> {
    crate::store::open_location(&location(ctx, l)?, l.project.root())
}

/// The master key, checked against the database; `None` when there is none to find.
fn find_key(conn: &dyn Store) -> Result<MasterKey> {
    Ok(secret_store::store::find_key(conn)?.0)
}

/// Reads a value from standard input, or from a hidden prompt on a terminal.
fn read_value(prompt: bool, what: &str) -> Result<Zeroizing<String>> {
    let mut text = if prompt && std::io::stdin().is_terminal() {
        Zeroizing::new(rpassword::prompt_password(format!(
            "value of {what} (input hidden): "
        ))?)
    } else {
        let mut text = Zeroizing::new(String::new());
        std::io::stdin().read_to_string(&mut text)?;
        text
    };
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

/// Where `config set` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Secrets,
    Dotenv,
    MeltanoYml,
    Db,
}

fn set(
    ctx: &Context,
    target: &Target,
    words: &[String],
    value_stdin: bool,
    store: &str,
) -> Result<()> {
    let l = load(ctx)?;
    let p = plugin(&l, target)?;
    let whole = setting_name(words);
    // All words name the setting when the value comes from stdin or a prompt.
    let (name_words, value_arg) = if value_stdin || p.setting(&whole).is_some_and(is_sensitive) {
        (words, None)
    } else if let Some((value, names)) = words.split_last().filter(|(_, n)| !n.is_empty()) {
        (names, Some(value.clone()))
    } else {
        return Err(
            Error::config(format!("no value given for `{whole}` of `{}`", p.name))
                .hint("write `dsm config set PLUGIN NAME VALUE`, or pass `--value-stdin`"),
        );
    };
    let name = setting_name(name_words);
    let def = p.setting(&name).cloned();
    let sensitive = def.as_ref().is_some_and(is_sensitive);
    let kind = p.plugin_type.singular();
    let place = match (store, sensitive) {
        ("auto", true) | ("secrets", _) => Place::Secrets,
        ("auto", false) | ("meltano_yml", false) => Place::MeltanoYml,
        ("dotenv", _) => Place::Dotenv,
        ("db", false) => Place::Db,
        (other, _) => {
            return Err(Error::config(format!(
                "`{name}` of `{}` is sensitive and is never written to {}",
                p.name,
                if other == "db" {
                    "the system database in plain text"
                } else {
                    "meltano.yml"
                }
            ))
            .hint("leave out `--store` to keep it in the encrypted secret store, or use `--store dotenv`"));
        }
    };
    let value_text: Zeroizing<String> = match value_arg {
        Some(v) => {
            if sensitive {
                ctx.printer.warn(format!(
                    "`{name}` of `{}` is sensitive, and a value given as an argument stays in your shell history",
                    p.name
                ));
                ctx.printer.notice(format!(
                    "hint: run `dsm config set {} {name}` to type it at a hidden prompt, or pipe it with `--value-stdin`",
                    p.name
                ));
            }
            Zeroizing::new(v)
        }
        None => read_value(!value_stdin, &format!("`{name}` for {kind} `{}`", p.name))?,
    };
    if sensitive && !value_text.is_empty() && value_text.len() < crate::plugin::MIN_REDACTED_LEN {
        ctx.printer.warn(format!(
            "`{name}` of `{}` is shorter than {} characters: dsm cannot redact so short a value from what plugins print",
            p.name,
            crate::plugin::MIN_REDACTED_LEN
        ));
    }
    let raw = serde_json::from_str::<J>(&value_text)
        .unwrap_or_else(|_| J::String(value_text.to_string()));
    let typed = match &def {
        Some(d) => settings::check_set_value(d, &value_text, &p.name, !sensitive)?,
        None => raw,
    };
    let root = l.project.root().to_path_buf();
    let conn = open_db(ctx, &l)?;
    let pref = plugin_ref(p, &l);
    let command = format!("dsm config set {} {name}", p.name);
    // The key is checked before anything changes, so a missing key changes nothing.
    let key = match place {
        Place::Secrets => Some(find_key(conn.as_ref()).map_err(|e| {
            e.hint("or pass `--store dotenv` to write it to `.env` in plain text, as Meltano does")
        })?),
        _ => None,
    };
    history::ensure_baseline(conn.as_ref(), &root, &pref, &command)?;
    let shown = if sensitive {
        MASK.to_string()
    } else {
        edit::inline(&typed)
    };
    let where_ = match place {
        Place::Secrets => {
            let text = Secret::new(settings::env_text(&typed));
            secret_store::store::set_secret_in(
                conn.as_ref(),
                key.as_ref().expect("looked up for this place"),
                &p.name,
                &name,
                l.environment.as_deref(),
                &text,
                &command,
            )?;
            match &l.environment {
                Some(e) => format!("the encrypted secret store for environment `{e}`"),
                None => "the encrypted secret store for the whole project".to_string(),
            }
        }
        Place::Dotenv => {
            let var = settings::env_var_name(&p.name, &name);
            edit::dotenv_set(&root, &var, &settings::env_text(&typed))?;
            format!("`.env` as `{var}`")
        }
        Place::Db => {
            conn.set_setting(&settings_namespace(p.plugin_type, &p.name), &name, &typed)?;
            "the system database".to_string()
        }
        Place::MeltanoYml => {
            if def.is_none() {
                ctx.printer.warn(format!(
                    "`{name}` is not a setting {kind} `{}` declares; it is stored anyway",
                    p.name
                ));
            }
            let path = config_path(&l, p, name_words);
            edit::edit_defining_file(&root, &path, |doc| doc.set(&path, &typed))?;
            match &l.environment {
                Some(e) => format!("environment `{e}` in meltano.yml"),
                None => "meltano.yml".to_string(),
            }
        }
    };
    let version = history::record(conn.as_ref(), &root, &pref, &command, "set", Some(&name))?;
    ctx.printer.notice(format!(
        "{kind} `{}` setting `{name}` was set in {where_}: {shown} (config version {version})",
        p.name
    ));
    Ok(())
}

/// Removes the secret stored for `scope` (an environment, or the whole project) when there is
/// one; needs the key only then.
fn unset_secret(
    conn: &dyn Store,
    p: &Plugin,
    name: &str,
    scope: Option<&str>,
    command: &str,
) -> Result<bool> {
    let stored = secret_store::list(conn)?
        .iter()
        .any(|s| s.plugin == p.name && s.setting == name && s.environment.as_deref() == scope);
    if !stored {
        return Ok(false);
    }
    let key = find_key(conn)?;
    secret_store::store::unset_in(conn, &key, &p.name, name, scope, command)?;
    Ok(true)
}

fn unset(ctx: &Context, target: &Target, words: &[String]) -> Result<()> {
    let l = load(ctx)?;
    let p = plugin(&l, target)?;
    let name = setting_name(words);
    let root = l.project.root().to_path_buf();
    let conn = open_db(ctx, &l)?;
    let pref = plugin_ref(p, &l);
    let command = format!("dsm config unset {} {name}", p.name);
    history::ensure_baseline(conn.as_ref(), &root, &pref, &command)?;
    let mut removed = unset_secret(conn.as_ref(), p, &name, l.environment.as_deref(), &command)?;
    for path in [
        config_path(&l, p, words),
        config_path(&l, p, std::slice::from_ref(&name)),
    ] {
        removed |= edit::edit_defining_file(&root, &path, |doc| doc.remove(&path))?;
    }
    let var = settings::env_var_name(&p.name, &name);
    removed |= edit::dotenv_unset(&root, &[var])? > 0;
    removed |= conn.unset_setting(&settings_namespace(p.plugin_type, &p.name), &name)?;
    let kind = p.plugin_type.singular();
    if removed {
        let version = history::record(conn.as_ref(), &root, &pref, &command, "unset", Some(&name))?;
        ctx.printer.notice(format!(
            "{kind} `{}` setting `{name}` was unset (config version {version})",
            p.name
        ));
    } else {
        ctx.printer.notice(format!(
            "{kind} `{}` setting `{name}` had no value to unset",
            p.name
        ));
    }
    Ok(())
}

fn reset(ctx: &Context, target: &Target) -> Result<()> {
    let l = load(ctx)?;
    let p = plugin(&l, target)?;
    let root = l.project.root().to_path_buf();
    let conn = open_db(ctx, &l)?;
    let pref = plugin_ref(p, &l);
    let command = format!("dsm config reset {}", p.name);
    history::ensure_baseline(conn.as_ref(), &root, &pref, &command)?;
    // The secrets of the scope being reset: the environment's, or the whole project's.
    let scope = l.environment.as_deref();
    let secrets: Vec<String> = secret_store::list(conn.as_ref())?
        .into_iter()
        .filter(|s| s.plugin == p.name && s.environment.as_deref() == scope)
        .map(|s| s.setting)
        .collect();
    if !secrets.is_empty() {
        let key = find_key(conn.as_ref())?;
        for s in &secrets {
            secret_store::store::unset_in(conn.as_ref(), &key, &p.name, s, scope, &command)?;
        }
    }
    let mut path = edit::plugin_path(l.environment.as_deref(), p.plugin_type.key(), &p.name);
    path.push(Seg::key("config"));
    let had = edit::edit_defining_file(&root, &path, |doc| doc.remove(&path))?;
    let vars: Vec<String> = p
        .settings
        .iter()
        .filter(|d| is_sensitive(d))
        .map(|d| settings::env_var_name(&p.name, &d.name))
        .collect();
    let dot = edit::dotenv_unset(&root, &vars)?;
    let db = conn.clear_settings(&settings_namespace(p.plugin_type, &p.name))?;
    let changed = had || dot > 0 || db > 0 || !secrets.is_empty();
    let suffix = if changed {
        let version = history::record(conn.as_ref(), &root, &pref, &command, "reset", None)?;
        format!(" (config version {version})")
    } else {
        " (it had no stored values)".to_string()
    };
    ctx.printer.notice(format!(
        "{} `{}` was reset{suffix}",
        p.plugin_type.singular(),
        p.name
    ));
    Ok(())
}

fn history(ctx: &Context, target: &Target) -> Result<()> {
    let format = ctx.text_or_json()?;
    let l = load(ctx)?;
    let p = plugin(&l, target)?;
    let sensitive = |name: &str| p.setting(name).is_some_and(is_sensitive);
    let versions = match existing_store(ctx, &l)? {
        Some(store) => history::list(store.as_ref(), &p.name, &sensitive)?,
        None => Vec::new(),
    };
    if format == OutputFormat::Json {
        ctx.printer.json(&serde_json::json!({
            "plugin": p.name,
            "plugin_type": p.plugin_type.singular(),
            "versions": versions,
        }));
        return Ok(());
    }
    if versions.is_empty() {
        ctx.printer.notice(format!(
            "no configuration changes of `{}` recorded yet",
            p.name
        ));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = versions
        .iter()
        .map(|v| {
            vec![
                v.version.to_string(),
                v.at.clone(),
                v.user.clone(),
                v.environment.clone().unwrap_or_else(|| "-".into()),
                v.action.clone(),
                v.setting.clone().unwrap_or_default(),
                v.command.clone(),
            ]
        })
        .collect();
    ctx.printer.table(
        &[
            "VERSION",
            "AT",
            "BY",
            "ENVIRONMENT",
            "ACTION",
            "SETTING",
            "COMMAND",
        ],
        &rows,
    );
    Ok(())
}

fn rollback(ctx: &Context, target: &Target, to: i64) -> Result<()> {
    let l = load(ctx)?;
    let p = plugin(&l, target)?;
    let root = l.project.root().to_path_buf();
    let conn = open_db(ctx, &l)?;
    // The key is needed only when secrets change; rollback says so if it is missing.
    let key = find_key(conn.as_ref()).ok();
    let command = format!("dsm config rollback {} --to {to}", p.name);
    let version = history::rollback(
        conn.as_ref(),
        &root,
        &plugin_ref(p, &l),
        to,
        key.as_ref(),
        &command,
    )?;
    if ctx.printer.format() == OutputFormat::Json {
        ctx.printer.json(&serde_json::json!({
            "plugin": p.name, "restored": to, "version": version,
        }));
    } else {
        ctx.printer.notice(format!(
            "{} `{}` was rolled back to config version {to} (recorded as version {version})",
            p.plugin_type.singular(),
            p.name
        ));
    }
    Ok(())
}

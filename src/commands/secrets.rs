//! `dsm secrets`: the master key and the encrypted secret store.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::commands::Context;
use crate::commands::shared::strip_newline;
use crate::envvars;
use crate::error::{Error, Result};
use crate::printer::OutputFormat;
use crate::secrets::master_key::{self, KeySource, Keyring};
use crate::secrets::{self, MasterKey, Secret, dotenv, history, store};

/// Arguments of `dsm secrets`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: SecretsCommand,
}

/// The `dsm secrets` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SecretsCommand {
    /// Create a master key (in a key file readable only by you, or in the OS keyring).
    Init(InitArgs),
    /// List stored secrets: plugin, setting, last change. Never values.
    List,
    /// Store a value, read from a hidden prompt, standard input or a file (never an argument).
    Set(SetArgs),
    /// Remove a stored value.
    Unset(NameArgs),
    /// Re-encrypt every value under a new master key, in one transaction.
    Rotate(RotateArgs),
    /// Check that every stored value decrypts with the current key.
    Verify,
    /// Move plaintext secrets out of the project's `.env` into the store.
    ImportEnv(ImportEnvArgs),
}

/// Arguments of `dsm secrets init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Write the key to this file (default `<user config dir>/dsm/master.key`).
    #[arg(long, value_name = "PATH", conflicts_with = "keyring")]
    pub key_file: Option<PathBuf>,
    /// Store the key in the OS keyring instead of a file.
    #[arg(long)]
    pub keyring: bool,
}

/// A plugin and one of its settings.
#[derive(Debug, clap::Args)]
pub struct NameArgs {
    /// The plugin, e.g. `tap-github`.
    pub plugin: String,
    /// The setting, e.g. `auth_token`.
    pub setting: String,
}

/// Arguments of `dsm secrets set`.
#[derive(Debug, clap::Args)]
pub struct SetArgs {
    #[command(flatten)]
    /// Which value.
    pub name: NameArgs,
    /// Read the value from this file (one trailing newline is dropped).
    #[arg(long, value_name = "PATH")]
    pub from_file: Option<PathBuf>,
}

/// Arguments of `dsm secrets rotate`.
#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    /// Write the new key to this file. Needed when the current key comes from `DSM_MASTER_KEY`
    /// or the keyring; by default a key file is replaced in place.
    #[arg(long, value_name = "PATH")]
    pub new_key_file: Option<PathBuf>,
}

/// Arguments of `dsm secrets import-env`.
#[derive(Debug, clap::Args)]
pub struct ImportEnvArgs {
    /// The file to move secrets out of (default: the project's `.env`).
    #[arg(long, value_name = "PATH")]
    pub env_file: Option<PathBuf>,
}

/// Runs `dsm secrets`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let format = ctx.text_or_json()?;
    match args.command {
        SecretsCommand::Init(a) => init(ctx, format, a),
        SecretsCommand::List => list(ctx, format),
        SecretsCommand::Set(a) => set(ctx, format, a),
        SecretsCommand::Unset(a) => unset(ctx, format, a),
        SecretsCommand::Rotate(a) => rotate(ctx, format, a),
        SecretsCommand::Verify => verify(ctx, format),
        SecretsCommand::ImportEnv(a) => import_env(ctx, format, a),
    }
}

fn init(ctx: &Context, format: OutputFormat, args: InitArgs) -> Result<()> {
    let key = MasterKey::generate();
    let place = if args.keyring {
        let keyring = Keyring::platform().map_err(secrets::SecretsError::KeyringUnavailable)?;
        keyring.store(&key)?;
        KeySource::Keyring
    } else {
        let path = match args.key_file {
            Some(p) => p,
            None => own_key_file(ctx).ok_or_else(|| {
                Error::config("cannot tell the user config directory")
                    .hint("pass `--key-file PATH`")
            })?,
        };
        master_key::write_key_file(&path, &key)?;
        KeySource::File(path)
    };
    if format == OutputFormat::Json {
        ctx.printer
            .json(&serde_json::json!({ "created": place.to_string(), "key_id": key.key_id() }));
    } else {
        ctx.printer.line(format!(
            "created a master key (id {}) in {place}",
            key.key_id()
        ));
    }
    ctx.printer
        .notice("back it up: secrets encrypted with it cannot be recovered without it");
    if let KeySource::File(path) = &place
        && own_key_file(ctx).as_deref() != Some(path.as_path())
    {
        ctx.printer.notice(format!(
            "hint: set `{}={}` so dsm finds it",
            envvars::MASTER_KEY_FILE,
            path.display()
        ));
    }
    if std::env::var_os(envvars::MASTER_KEY).is_some() {
        ctx.printer.warn(format!(
            "`{}` is set and takes precedence over the new key",
            envvars::MASTER_KEY
        ));
    }
    Ok(())
}

/// The environment a secret is stored for: the one named (`--environment`, `DSM_ENVIRONMENT`,
/// `MELTANO_ENVIRONMENT`; it must exist), else `None`, the whole project. As for `dsm config`,
/// `default_environment` does not count.
fn scope(ctx: &Context, root: &Path) -> Result<Option<String>> {
    let choice = crate::project::EnvironmentChoice {
        flag: ctx.global.environment.clone(),
        none: ctx.global.no_environment,
        use_default: false,
    };
    let named = choice.flag.is_some()
        || [envvars::ENVIRONMENT, envvars::MELTANO_ENVIRONMENT]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
    if choice.none || !named {
        return Ok(None);
    }
    // Named: it must be one of the project's environments.
    let project = crate::project::Project::load(root)?;
    Ok(project.active_environment(&choice)?.map(|e| e.name.clone()))
}

/// The project's `project_id`, when dsm runs in a project that has one.
fn project_id(ctx: &Context) -> Option<String> {
    ctx.project_root()
        .ok()
        .and_then(|root| crate::store::key_owner(&root))
}

/// Where dsm looks for this project's key without being told: the project's own key file
/// (`<user config dir>/dsm/keys/<project_id>.key`), or, in a project without a `project_id`
/// or outside a project, the shared default file.
fn own_key_file(ctx: &Context) -> Option<PathBuf> {
    match project_id(ctx) {
        Some(id) => master_key::project_key_file(&id),
        None => master_key::default_key_file(),
    }
}

fn list(ctx: &Context, format: OutputFormat) -> Result<()> {
    let (_, conn) = ctx.open_project_store()?;
    let secrets = secrets::list(conn.as_ref())?;
    if format == OutputFormat::Json {
        ctx.printer.json(&secrets);
        return Ok(());
    }
    if secrets.is_empty() {
        ctx.printer.notice("no secrets stored");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = secrets
        .into_iter()
        .map(|s| {
            let scope = match s.environment {
                Some(env) => format!("environment {env}"),
                None => "project".to_string(),
            };
            vec![s.plugin, s.setting, scope, s.updated_at, s.updated_by]
        })
        .collect();
    ctx.printer
        .table(&["PLUGIN", "SETTING", "SCOPE", "UPDATED", "BY"], &rows);
    Ok(())
}

fn read_value(args: &SetArgs) -> Result<Secret> {
    let text = if let Some(path) = &args.from_file {
        Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| Error::config(format!("cannot read `{}`: {e}", path.display())))?,
        )
    } else if std::io::stdin().is_terminal() {
        let prompt = format!(
            "value of `{}` for `{}` (input hidden): ",
            args.name.setting, args.name.plugin
        );
        Zeroizing::new(rpassword::prompt_password(prompt)?)
    } else {
        let mut text = Zeroizing::new(String::new());
        std::io::stdin().read_to_string(&mut text)?;
        text
    };
    let text = strip_newline(text);
    if text.is_empty() {
        return Err(Error::config("the value is empty")
            .hint("type it at the prompt, pipe it on stdin, or pass `--from-file PATH`")
            .hint("to remove a value use `dsm secrets unset PLUGIN SETTING`"));
    }
    Ok(Secret::new(text.to_string()))
}

fn done(ctx: &Context, format: OutputFormat, action: &str, name: &NameArgs, text: String) {
    if format == OutputFormat::Json {
        ctx.printer.json(&serde_json::json!({
            "action": action, "plugin": name.plugin, "setting": name.setting,
        }));
    } else {
        ctx.printer.notice(text);
    }
}

/// Records a secret change in the plugin's config history (the plugin's type comes from the
/// project when it defines the plugin).
fn record_history(
    root: &Path,
    conn: &dyn crate::store::Store,
    plugin: &str,
    command: &str,
    change: Option<(&str, &str)>,
) -> Result<()> {
    let plugin_type = crate::project::Project::load(root)
        .ok()
        .and_then(|p| p.find_plugin(plugin, None).ok().map(|p| p.plugin_type));
    let pref = history::PluginRef {
        plugin_type,
        name: plugin,
        // Secrets belong to the plugin, not to one environment.
        environment: None,
    };
    match change {
        None => history::ensure_baseline(conn, root, &pref, command),
        Some((action, setting)) => {
            history::record(conn, root, &pref, command, action, Some(setting)).map(|_| ())
        }
    }
}

fn set(ctx: &Context, format: OutputFormat, args: SetArgs) -> Result<()> {
    let (root, conn) = ctx.open_project_store()?;
    let (key, _) = store::find_key(conn.as_ref())?;
    let value = read_value(&args)?;
    let n = &args.name;
    // A value the setting's kind refuses is refused now, not at the next run.
    if let Some(def) = crate::project::Project::load(&root)
        .ok()
        .and_then(|p| p.find_plugin(&n.plugin, None).ok().cloned())
        .and_then(|p| p.setting(&n.setting).cloned())
    {
        crate::settings::check_set_value(&def, value.expose(), &n.plugin, false)?;
    }
    let scope = scope(ctx, &root)?;
    record_history(&root, conn.as_ref(), &n.plugin, "dsm secrets set", None)?;
    store::set_secret_in(
        conn.as_ref(),
        &key,
        &n.plugin,
        &n.setting,
        scope.as_deref(),
        &value,
        "dsm secrets set",
    )?;
    record_history(
        &root,
        conn.as_ref(),
        &n.plugin,
        "dsm secrets set",
        Some(("secret.set", &n.setting)),
    )?;
    let text = match &scope {
        Some(env) => format!(
            "stored `{}` for `{}` in environment `{env}` (encrypted)",
            n.setting, n.plugin
        ),
        None => format!(
            "stored `{}` for `{}` for the whole project (encrypted)",
            n.setting, n.plugin
        ),
    };
    done(ctx, format, "set", n, text);
    Ok(())
}

fn unset(ctx: &Context, format: OutputFormat, args: NameArgs) -> Result<()> {
    let (root, conn) = ctx.open_project_store()?;
    let (key, _) = store::find_key(conn.as_ref())?;
    let scope = scope(ctx, &root)?;
    record_history(
        &root,
        conn.as_ref(),
        &args.plugin,
        "dsm secrets unset",
        None,
    )?;
    store::unset_in(
        conn.as_ref(),
        &key,
        &args.plugin,
        &args.setting,
        scope.as_deref(),
        "dsm secrets unset",
    )?;
    record_history(
        &root,
        conn.as_ref(),
        &args.plugin,
        "dsm secrets unset",
        Some(("secret.unset", &args.setting)),
    )?;
    let text = format!("removed `{}` of `{}`", args.setting, args.plugin);
    done(ctx, format, "unset", &args, text);
    Ok(())
}

fn rotate(ctx: &Context, format: OutputFormat, args: RotateArgs) -> Result<()> {
    let (_, conn) = ctx.open_project_store()?;
    let (old, source) = store::find_key(conn.as_ref())?;
    let new = MasterKey::generate();
    // Where the new key goes: the file asked for; else the project's own key file (never the
    // shared default file, which other projects may use); else the key file named by
    // `DSM_MASTER_KEY_FILE`, replaced in place.
    let shared = master_key::default_key_file();
    let own = conn
        .key_owner()
        .as_deref()
        .and_then(master_key::project_key_file);
    let named = std::env::var_os(envvars::MASTER_KEY_FILE)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let target = match (args.new_key_file, own, &source) {
        (Some(path), _, _) => Target::New(path),
        (None, _, KeySource::File(path)) if named.as_ref() == Some(path) => {
            Target::Replace(path.clone())
        }
        (None, Some(own), _) => Target::Replace(own),
        (None, None, KeySource::File(path)) if shared.as_ref() != Some(path) => {
            Target::Replace(path.clone())
        }
        (None, None, KeySource::File(path)) => {
            return Err(Error::config(format!(
                "the current key is the shared key file `{}`, which every project without a `project_id` on this machine uses; replacing it would lock them out",
                path.display()
            ))
            .hint(format!(
                "add a line `project_id: {}` to meltano.yml: the project then gets a key file of its own",
                uuid::Uuid::new_v4()
            ))
            .hint("or pass `--new-key-file PATH` and point `DSM_MASTER_KEY_FILE` at it afterwards"));
        }
        (None, None, _) => {
            return Err(Error::config(format!(
                "the current key comes from {source}, which dsm cannot rewrite"
            ))
            .hint("pass `--new-key-file PATH` and point `DSM_MASTER_KEY_FILE` at it afterwards"));
        }
    };
    // The new key is on disk before the database changes, so it can never be lost; the old
    // key stays where it is until the rotation has committed (a key file being replaced is
    // staged beside it as `*.new`, which the key lookup also searches, so a crash between
    // the commit and the rename loses nothing).
    let (written, replaces) = match target {
        Target::New(path) => (path, None),
        Target::Replace(path) => {
            let mut staged = path.clone().into_os_string();
            staged.push(".new");
            let staged = PathBuf::from(staged);
            if staged.exists() {
                return Err(Error::config(format!(
                    "`{}` exists: an earlier rotation was interrupted",
                    staged.display()
                ))
                .hint(format!(
                    "run `dsm secrets verify`: if it passes, remove `{}`; if not, the store needs the key in it (move it over `{}`)",
                    staged.display(),
                    path.display()
                )));
            }
            (staged, Some(path))
        }
    };
    master_key::write_key_file(&written, &new)?;
    let count = match secrets::rotate(conn.as_ref(), &old, &new, "dsm secrets rotate") {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&written);
            return Err(Error::from(e).detail("nothing changed; the current key still works"));
        }
    };
    let key_file = match replaces {
        Some(path) => {
            std::fs::rename(&written, &path).map_err(|e| {
                Error::failed(format!("the new key is in `{}`: {e}", written.display())).hint(
                    format!(
                        "move it over `{}` by hand; the old key no longer works",
                        path.display()
                    ),
                )
            })?;
            path
        }
        None => written,
    };
    if format == OutputFormat::Json {
        ctx.printer.json(&serde_json::json!({
            "re_encrypted": count, "key_file": key_file.display().to_string(),
            "key_id": new.key_id(),
        }));
    } else {
        ctx.printer.line(format!(
            "re-encrypted {count} secrets under a new key (id {}) in `{}`",
            new.key_id(),
            key_file.display()
        ));
    }
    if std::env::var_os(envvars::MASTER_KEY).is_some() {
        ctx.printer.warn(format!(
            "unset `{}` (it holds the old key) and use the new key file",
            envvars::MASTER_KEY
        ));
    }
    Ok(())
}

/// Where `dsm secrets rotate` writes the new key.
enum Target {
    /// A new file (`--new-key-file`).
    New(PathBuf),
    /// A key file replaced once the rotation committed.
    Replace(PathBuf),
}

fn verify(ctx: &Context, format: OutputFormat) -> Result<()> {
    let (_, conn) = ctx.open_project_store()?;
    let (key, _) = store::find_key(conn.as_ref())?;
    let report = secrets::verify(conn.as_ref(), &key)?;
    let error = (!report.failed.is_empty()).then(|| {
        let mut err = Error::failed(format!("{} secrets do not decrypt", report.failed.len()));
        for (plugin, setting) in &report.failed {
            err = err.detail(format!("`{setting}` of `{plugin}`"));
        }
        err.hint("set each again with `dsm secrets set PLUGIN SETTING`")
    });
    if format == OutputFormat::Json {
        // One document (`schemas/cli/secrets-verify.schema.json`), with the contract's `error`
        // member when something does not decrypt.
        let mut doc = serde_json::to_value(&report).expect("the report is plain data");
        if let Some(e) = &error {
            doc["error"] = crate::printer::error_json(e);
        }
        ctx.printer.json(&doc);
        return error.map_or(Ok(()), |e| Err(e.data_printed()));
    }
    ctx.printer.line(format!("{} secrets decrypt", report.ok));
    error.map_or(Ok(()), Err)
}

/// The plugin names declared in `meltano.yml` (every plugin type). Replaced by the project
/// model once it lands.
fn plugin_names(root: &Path) -> Result<Vec<String>> {
    let path = root.join(crate::project::PROJECT_FILE);
    let text = std::fs::read_to_string(&path)?;
    let doc: serde_json::Value = serde_saphyr::from_str(&text)
        .map_err(|e| Error::config(format!("cannot read `{}`: {e}", path.display())))?;
    let mut names: Vec<String> = doc
        .get("plugins")
        .and_then(|p| p.as_object())
        .into_iter()
        .flat_map(|kinds| kinds.values())
        .filter_map(|list| list.as_array())
        .flatten()
        .filter_map(|p| p.get("name")?.as_str().map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

fn import_env(ctx: &Context, format: OutputFormat, args: ImportEnvArgs) -> Result<()> {
    let (root, conn) = ctx.open_project_store()?;
    let (key, _) = store::find_key(conn.as_ref())?;
    let env_file = args.env_file.unwrap_or_else(|| root.join(".env"));
    if !env_file.exists() {
        return Err(Error::config(format!(
            "no `{}` to import",
            env_file.display()
        )));
    }
    let plugins = plugin_names(&root)?;
    let referenced: Vec<(String, Vec<String>)> = crate::project::project_files(&root)?
        .into_iter()
        .filter_map(|rel| {
            let text = std::fs::read_to_string(root.join(&rel)).ok()?;
            Some((
                rel.display().to_string(),
                crate::settings::expand::referenced(&text),
            ))
        })
        .collect();
    let report = dotenv::import_env(
        conn.as_ref(),
        &key,
        &env_file,
        &plugins,
        &|_, _| false,
        "dsm secrets import-env",
        &referenced,
    )?;
    if format == OutputFormat::Json {
        ctx.printer.json(&report);
    } else {
        for m in &report.moved {
            ctx.printer.line(format!(
                "moved `{}` to `{}` of `{}`",
                m.variable, m.setting, m.plugin
            ));
        }
        if report.moved.is_empty() {
            ctx.printer.notice("no plaintext secrets to move");
        }
    }
    for (variable, reason) in &report.skipped {
        ctx.printer
            .warn(format!("left `{variable}` in `.env`: {reason}"));
    }
    Ok(())
}

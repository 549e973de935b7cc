//! `dsm add`: adds a plugin to `meltano.yml` the way `meltano add` does.
//!
//! A known plugin comes from dsm's catalog ([`crate::project::hub`]): the project gets `name`, `variant`
//! and `pip_url`, and the full definition is written as Meltano 4's lock file
//! `plugins/<type>/<name>--<variant>.lock`. `--inherit-from` adds `name` and `inherit_from`;
//! `--custom` adds a definition from flags (Meltano prompts for them; dsm never prompts). The rest
//! of `meltano.yml` keeps its comments and order.

use serde_json::{Map, Value as J};

use crate::commands::Context;
use crate::commands::shared::{audit, install_plugins, split_type};
use crate::error::{Error, Result, did_you_mean};
use crate::plugin::manage::{catalog_entry, infer_type, write_lock};
use crate::project::edit;
use crate::project::hub;
use crate::project::{PluginType, Project};

/// Arguments of `dsm add`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// `[TYPE] NAME...`: the type (`extractor`, `loader`, `mapper`, `utility`) may be left out
    /// when every name starts with `tap-` or `target-`.
    #[arg(required = true, value_name = "TYPE|NAME")]
    pub plugin: Vec<String>,
    /// The plugin type (instead of a leading TYPE word).
    #[arg(long, value_name = "TYPE")]
    pub plugin_type: Option<String>,
    /// A variant of a known plugin other than the default one (with `--as`/`--inherit-from`:
    /// of the known plugin inherited from).
    #[arg(long)]
    pub variant: Option<String>,
    /// Add a plugin inheriting from this plugin of the project.
    #[arg(long, value_name = "PLUGIN", conflicts_with = "custom")]
    pub inherit_from: Option<String>,
    /// `dsm add TYPE PARENT --as NAME` is `dsm add TYPE NAME --inherit-from PARENT`.
    #[arg(long = "as", value_name = "NAME", conflicts_with_all = ["custom", "inherit_from"])]
    pub as_name: Option<String>,
    /// Define the plugin from the flags below instead of the catalog.
    #[arg(long)]
    pub custom: bool,
    /// `--custom`: the namespace (default: the name with `_` for `-`).
    #[arg(long, requires = "custom")]
    pub namespace: Option<String>,
    /// `--custom`: what `pip install` installs (none for a local executable).
    #[arg(long, requires = "custom")]
    pub pip_url: Option<String>,
    /// `--custom`: the executable (default: the name).
    #[arg(long, requires = "custom")]
    pub executable: Option<String>,
    /// `--custom`: capabilities, comma-separated (`catalog,discover,state`).
    #[arg(long, requires = "custom", value_delimiter = ',')]
    pub capabilities: Vec<String>,
    /// `--custom`: settings, comma-separated `name` or `name:kind` (`host,port:integer,password:password`).
    #[arg(long, requires = "custom", value_delimiter = ',')]
    pub settings: Vec<String>,
    /// The Python interpreter for the plugin's environment (written as `python:`).
    #[arg(long)]
    pub python: Option<String>,
    /// Install the added plugins right away (`dsm install NAME`).
    #[arg(long, conflicts_with = "no_install")]
    pub install: bool,
    /// Do not install (the default; accepted for compatibility with `meltano add`).
    #[arg(long)]
    pub no_install: bool,
}

/// The setting kinds Meltano accepts in `--settings name:kind`.
const SETTING_KINDS: &[&str] = &[
    "string",
    "integer",
    "boolean",
    "date_iso8601",
    "email",
    "password",
    "oauth",
    "options",
    "file",
    "array",
    "object",
    "hidden",
    "decimal",
];

/// Runs `dsm add`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let root = ctx.project_root()?;
    let project = Project::load(&root)?;
    let (ty_word, mut names) = split_type(&args.plugin, args.plugin_type.as_deref())?;
    let mut inherit_from = args.inherit_from.clone();
    if let Some(as_name) = &args.as_name {
        if names.len() != 1 {
            return Err(Error::config("`--as` takes exactly one plugin name")
                .hint("add the plugins one at a time"));
        }
        inherit_from = Some(names.remove(0));
        names.push(as_name.clone());
    }
    let mut added = Vec::new();
    for name in &names {
        let ty = match (ty_word, &inherit_from) {
            (Some(t), _) => t,
            // `dsm add tap-csv --as files`: the parent's name tells the type.
            (None, Some(parent)) => infer_type(name).or_else(|_| infer_type(parent))?,
            (None, None) => infer_type(name)?,
        };
        if project.plugins_of(ty).any(|p| &p.name == name) {
            ctx.printer.warn(format!(
                "{} `{name}` already exists in meltano.yml",
                ty.singular()
            ));
            continue;
        }
        let (entry, lock) = if args.custom {
            (custom_entry(name, &args)?, None)
        } else if let Some(parent) = &inherit_from {
            let in_project = project.plugins_of(ty).any(|p| &p.name == parent);
            if args.variant.is_some() || (!in_project && !hub::variants(ty, parent).is_empty()) {
                // As Meltano does: the parent is the known plugin of that variant (a variant
                // named is always the known plugin's, even when the project has `parent`).
                let (known, lock) = catalog_entry(ty, parent, args.variant.as_deref())?;
                let mut entry = Map::new();
                entry.insert("inherit_from".into(), J::String(parent.clone()));
                entry.extend(known);
                (entry, lock)
            } else {
                (inherited_entry(&project, ty, parent)?, None)
            }
        } else {
            catalog_entry(ty, name, args.variant.as_deref())?
        };
        let mut entry = entry;
        if let Some(py) = &args.python {
            entry.insert("python".into(), J::String(py.clone()));
        }
        if let Some((rel, text)) = &lock {
            write_lock(&root, rel, text)?;
        }
        let path = edit::plugin_path(None, ty.key(), name);
        edit::edit_project_file(&root, |doc| doc.set(&path, &J::Object(entry.clone())))?;
        let how = match (&lock, &inherit_from, args.custom) {
            (_, _, true) => "custom".to_string(),
            (Some((rel, _)), Some(p), _) => format!(
                "inheriting from `{p}` variant `{}`, lock file `{}`",
                entry.get("variant").and_then(J::as_str).unwrap_or_default(),
                rel.display()
            ),
            (_, Some(p), _) => format!("inheriting from `{p}`"),
            (Some((rel, _)), _, _) => format!(
                "variant `{}`, lock file `{}`",
                entry.get("variant").and_then(J::as_str).unwrap_or_default(),
                rel.display()
            ),
            _ => String::new(),
        };
        ctx.printer.notice(format!(
            "added {} `{name}` to meltano.yml ({how})",
            ty.singular()
        ));
        audit(
            ctx,
            "dsm add",
            "plugin.add",
            &format!("{}.{name}", ty.key()),
        );
        added.push(name.clone());
    }
    if args.install && !added.is_empty() {
        install_plugins(ctx, &added, None, false, None)?;
    }
    Ok(())
}

fn inherited_entry(project: &Project, ty: PluginType, parent: &str) -> Result<Map<String, J>> {
    if !project.plugins_of(ty).any(|p| p.name == parent) {
        let e = Error::config(format!(
            "cannot inherit from `{parent}`: the project has no {} of that name",
            ty.singular()
        ));
        let names: Vec<&str> = project.plugins_of(ty).map(|p| p.name.as_str()).collect();
        return Err(match did_you_mean(parent, names.iter().copied()) {
            Some(m) => e.hint(format!("did you mean `{m}`?")),
            None => e.hint(format!(
                "add it first: `dsm add {} {parent}`",
                ty.singular()
            )),
        });
    }
    let mut entry = Map::new();
    entry.insert("inherit_from".into(), J::String(parent.to_string()));
    Ok(entry)
}

fn custom_entry(name: &str, args: &Args) -> Result<Map<String, J>> {
    let mut entry = Map::new();
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| name.replace('-', "_"));
    entry.insert("namespace".into(), J::String(namespace));
    if let Some(pip) = args.pip_url.as_deref().filter(|p| !p.is_empty()) {
        entry.insert("pip_url".into(), J::String(pip.to_string()));
    }
    if let Some(exe) = &args.executable {
        entry.insert("executable".into(), J::String(exe.clone()));
    }
    let caps: Vec<J> = args
        .capabilities
        .iter()
        .map(|c| c.trim())
        .filter(|c| !c.is_empty())
        .map(|c| J::String(c.to_string()))
        .collect();
    if !caps.is_empty() {
        entry.insert("capabilities".into(), J::Array(caps));
    }
    let mut settings = Vec::new();
    for s in args
        .settings
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        let mut def = Map::new();
        let (setting, kind) = match s.split_once(':') {
            Some((n, k)) => (n.trim(), Some(k.trim())),
            None => (s, None),
        };
        def.insert("name".into(), J::String(setting.to_string()));
        if let Some(kind) = kind {
            if !SETTING_KINDS.contains(&kind) {
                return Err(Error::config(format!(
                    "unknown setting kind `{kind}` in `--settings {s}`"
                ))
                .hint(format!("kinds: {}", SETTING_KINDS.join(", "))));
            }
            def.insert("kind".into(), J::String(kind.to_string()));
        }
        settings.push(J::Object(def));
    }
    if !settings.is_empty() {
        entry.insert("settings".into(), J::Array(settings));
    }
    Ok(entry)
}

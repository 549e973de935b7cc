//! The tap's catalog for a run: the project's own `catalog`, or `--discover` output cached under
//! `.dsm/run/<extractor>/`, with Meltano's selection rules (`crate::catalog`) applied.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::Sha256;

use crate::error::{Error, ErrorKind, Result};
use crate::plugin::{PluginSpec, RunDir};
use crate::project::{Plugin, Project};

/// Where a run's catalog comes from.
pub struct CatalogInputs<'a> {
    /// The project.
    pub project: &'a Project,
    /// The extractor.
    pub plugin: &'a Plugin,
    /// The extractor's spec (config, env), used to run `--discover`.
    pub spec: &'a PluginSpec,
    /// Re-run discovery even when a cached catalog matches.
    pub refresh: bool,
    /// The run's private directory.
    pub run_dir: &'a RunDir,
    /// When the run's `--timeout` (or a schedule's) expires: discovery is stopped then.
    pub deadline: Option<Instant>,
}

/// The catalog file to pass to the tap, written into the run directory.
pub fn prepare(inputs: &CatalogInputs<'_>) -> Result<PathBuf> {
    prepare_reporting(inputs).map(|(path, _)| path)
}

/// [`prepare`], also saying whether the catalog is one an earlier run discovered (cached).
pub fn prepare_reporting(inputs: &CatalogInputs<'_>) -> Result<(PathBuf, bool)> {
    let CatalogInputs {
        project,
        plugin,
        spec,
        refresh,
        run_dir,
        deadline,
    } = inputs;
    let mut cached = false;
    let mut catalog = match &plugin.catalog {
        Some(path) => {
            let path = project.root().join(path);
            read_json(&path).map_err(|e| {
                e.hint(format!(
                    "the `catalog` of extractor `{}` must be a Singer catalog file",
                    plugin.name
                ))
            })?
        }
        None => {
            let (catalog, from_cache) =
                discovered(project, plugin, spec, *refresh, run_dir, *deadline)?;
            cached = from_cache;
            catalog
        }
    };
    let filter = crate::catalog::SelectFilter {
        patterns: plugin.select_filter.clone().unwrap_or_default(),
    };
    let invalid = |e: crate::catalog::CatalogError| {
        Error::config(format!("the catalog of extractor `{}`: {e}", plugin.name))
    };
    if plugin.catalog.is_some() {
        // Meltano applies only the select filter to a user-supplied catalog.
        crate::catalog::apply_select_filter(&mut catalog, &filter).map_err(invalid)?;
    } else {
        let select = plugin
            .select
            .clone()
            .unwrap_or_else(|| vec!["*.*".to_string()]);
        let object = |o: &Option<crate::project::Object>| {
            o.clone().map(Value::Object).unwrap_or(Value::Null)
        };
        crate::catalog::apply_selection(
            &mut catalog,
            &select,
            &object(&plugin.metadata),
            &object(&plugin.schema),
            &filter,
        )
        .map_err(invalid)?;
    }
    let path = run_dir.path().join(format!("{}.catalog.json", spec.name));
    write_private(&path, &catalog)?;
    Ok((path, cached))
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::config(format!("could not read `{}`: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::config(format!("`{}` is not valid JSON: {e}", path.display())))
}

fn write_private(path: &Path, value: &Value) -> Result<()> {
    let bytes = serde_json::to_vec(value).map_err(|e| Error::failed(e.to_string()))?;
    Ok(crate::files::write_private(path, &bytes)?)
}

/// The project's key for catalog cache keys: 32 random bytes in `.dsm/run/cache.key` (0600),
/// made on first use.
fn cache_key_secret(root: &Path) -> Result<Vec<u8>> {
    let path = root.join(".dsm/run/cache.key");
    if let Ok(bytes) = std::fs::read(&path)
        && bytes.len() == 32
    {
        return Ok(bytes);
    }
    crate::files::create_private_dir(&root.join(".dsm/run"))?;
    let bytes: [u8; 32] = rand::random();
    crate::files::write_private(&path, &bytes)?;
    Ok(bytes.to_vec())
}

fn discovered(
    project: &Project,
    plugin: &Plugin,
    spec: &PluginSpec,
    refresh: bool,
    run_dir: &RunDir,
    deadline: Option<Instant>,
) -> Result<(Value, bool)> {
    let dir = project.root().join(".dsm/run").join(&plugin.name);
    let cache = dir.join("tap.properties.json");
    let key_file = dir.join("tap.properties.key");
    crate::files::create_private_dir(&dir)?;
    // Keyed, so the cache key (which covers the config, secrets included) says nothing about
    // a secret to whoever reads it without the project's private key file.
    let key = {
        use hmac::Mac as _;
        let mut h = hmac::Hmac::<Sha256>::new_from_slice(&cache_key_secret(project.root())?)
            .expect("HMAC takes a key of any length");
        h.update(&serde_json::to_vec(&spec.config).unwrap_or_default());
        h.update(&serde_json::to_vec(&plugin.schema).unwrap_or_default());
        h.update(&serde_json::to_vec(&plugin.metadata).unwrap_or_default());
        h.update(spec.executable.display().to_string().as_bytes());
        // A new version of the package can discover a different catalog.
        h.update(plugin.pip_url.as_deref().unwrap_or_default().as_bytes());
        hex::encode(h.finalize().into_bytes())
    };
    // As in Meltano, only a plugin installed from a package is cached: one without `pip_url`
    // (a built-in or local program) or installed editable (`-e`) may discover something new
    // on every run.
    let cacheable = plugin
        .pip_url
        .as_deref()
        .is_some_and(|p| !p.trim_start().starts_with("-e"));
    let use_cache = cacheable && !refresh && plugin.use_cached_catalog != Some(false);
    if use_cache
        && std::fs::read_to_string(&key_file).is_ok_and(|k| k.trim() == key)
        && let Ok(v) = read_json(&cache)
    {
        return Ok((v, true));
    }
    let mut cmd = Command::new(&spec.executable);
    if let Some(config) = &spec.config {
        let path = run_dir.write_config(&spec.name, config)?;
        cmd.arg("--config").arg(path);
    }
    cmd.arg("--discover");
    crate::plugin::apply_env(spec, &mut cmd);
    // Output goes to unnamed temporary files, so waiting on the process (bounded by the
    // deadline) never blocks on a full pipe.
    let mut stdout = tempfile::tempfile()?;
    let mut stderr = tempfile::tempfile()?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(stdout.try_clone()?))
        .stderr(Stdio::from(stderr.try_clone()?))
        // Its own process group, so a timeout stops a wrapper script's children too.
        .process_group(0);
    crate::plugin::sys::die_with_parent(&mut cmd);
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    let mut child = cmd.spawn().map_err(|e| {
        Error::failed(format!(
            "could not start extractor `{}` (`{}`) for discovery: {e}",
            plugin.name,
            spec.executable.display()
        ))
    })?;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = crate::plugin::sys::signal_group(child.id(), crate::plugin::sys::SIGKILL);
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "catalog discovery of extractor `{}` did not finish within the run's timeout",
                    plugin.name
                ),
            )
            .hint("raise `--timeout`, or supply a catalog with `catalog:` in meltano.yml to skip discovery"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |file: &mut std::fs::File| -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        file.seek(SeekFrom::Start(0))?;
        file.read_to_end(&mut buf)?;
        Ok(buf)
    };
    let out_bytes = read(&mut stdout)?;
    if !status.success() {
        let err_bytes = read(&mut stderr)?;
        let stderr = String::from_utf8_lossy(&err_bytes);
        let mut err = Error::failed(format!(
            "catalog discovery of extractor `{}` failed ({status})",
            plugin.name
        ));
        let lines: Vec<&str> = stderr.lines().collect();
        for line in &lines[lines.len().saturating_sub(20)..] {
            err = err.detail(format!("| {line}"));
        }
        return Err(err.hint("supply a catalog with `catalog:` in meltano.yml to skip discovery"));
    }
    let catalog: Value = serde_json::from_slice(&out_bytes).map_err(|e| {
        Error::failed(format!(
            "extractor `{}` printed a catalog that is not JSON: {e}",
            plugin.name
        ))
    })?;
    if cacheable {
        std::fs::create_dir_all(&dir)?;
        write_private(&cache, &catalog)?;
        crate::files::write_private(&key_file, key.as_bytes())?;
    } else {
        // A cache left by an older dsm must not be read by a later one.
        let _ = std::fs::remove_file(&key_file);
    }
    Ok((catalog, false))
}

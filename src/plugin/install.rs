//! Installing Python plugins: one isolated virtual environment per plugin with a `pip_url`, at
//! `.dsm/plugins/<type>/<name>/venv`, like Meltano's `.meltano/<type>/<name>/venv`.
//!
//! `uv` is used when it is on `PATH` (`uv venv` + `uv pip install`), else the interpreter's own
//! `python -m venv` and pip. The interpreter is the plugin's `python:`, else the project's, else
//! `python3`. A stamp file beside the environment records what was installed, so a second install
//! is skipped unless `pip_url` or `python` changed. An inherited plugin with its parent's
//! `pip_url` shares the parent's environment, as in Meltano.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::project::{Plugin, PluginType, Project};

/// The file beside a plugin's environment that records what was installed.
pub const STAMP_FILE: &str = "dsm-install.json";

/// How many lines of the installer's output an error shows.
pub const ERROR_TAIL_LINES: usize = 25;

/// The directory of a plugin's installation: `.dsm/plugins/<type>/<name>`.
pub fn plugin_dir(root: &Path, ty: PluginType, name: &str) -> PathBuf {
    root.join(".dsm/plugins").join(ty.key()).join(name)
}

/// The plugin whose environment `plugin` uses: itself, or the ancestor it inherits from while
/// the `pip_url` stays the same.
pub fn venv_owner<'a>(project: &'a Project, plugin: &'a Plugin) -> &'a Plugin {
    let mut cur = plugin;
    for _ in 0..32 {
        let Some(parent) = cur
            .parent
            .as_deref()
            .and_then(|n| project.plugins_of(cur.plugin_type).find(|p| p.name == n))
        else {
            break;
        };
        if parent.pip_url != cur.pip_url {
            break;
        }
        cur = parent;
    }
    cur
}

/// What was installed, as recorded in [`STAMP_FILE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// The `pip_url` installed.
    pub pip_url: String,
    /// The `python:` asked for (none: the default interpreter).
    pub python: Option<String>,
    /// `uv` or `pip`.
    pub installer: String,
    /// When (RFC 3339, UTC).
    pub installed_at: String,
}

/// Where a plugin stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// One of dsm's built-in plugins: nothing to install.
    BuiltIn,
    /// No `pip_url`: an executable found on `PATH` or at a path.
    NoPipUrl,
    /// Installed, and the stamp matches `pip_url` and `python`.
    Installed,
    /// Installed from a different `pip_url` or `python`: `dsm install` reinstalls it.
    Changed,
    /// Not installed yet.
    Missing,
}

impl Status {
    /// The word `dsm plugins list` shows.
    pub fn word(&self) -> &'static str {
        match self {
            Status::BuiltIn => "built-in",
            Status::NoPipUrl => "no pip_url",
            Status::Installed => "installed",
            Status::Changed => "pip_url changed",
            Status::Missing => "not installed",
        }
    }
}

/// One environment to install.
#[derive(Debug, Clone)]
pub struct Target {
    /// The plugin that owns the environment.
    pub name: String,
    /// Its type.
    pub plugin_type: PluginType,
    /// What pip installs (split like a shell would).
    pub pip_url: String,
    /// The interpreter asked for.
    pub python: Option<String>,
    /// `.dsm/plugins/<type>/<name>`.
    pub dir: PathBuf,
}

impl Target {
    /// The environment's directory.
    pub fn venv(&self) -> PathBuf {
        self.dir.join("venv")
    }

    fn stamp(&self) -> Option<Stamp> {
        let text = std::fs::read_to_string(self.dir.join(STAMP_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Where this environment stands.
    pub fn status(&self) -> Status {
        match self.stamp() {
            None => Status::Missing,
            Some(_) if !self.venv().join("bin/python").exists() => Status::Missing,
            Some(s) if s.pip_url == self.pip_url && s.python == self.python => Status::Installed,
            Some(_) => Status::Changed,
        }
    }
}

/// Whether dsm runs `plugin` from its own built-in binaries.
pub fn is_builtin(plugin: &Plugin) -> bool {
    let exe = if plugin.executable.is_empty() {
        plugin.name.as_str()
    } else {
        plugin.executable.as_str()
    };
    plugin.variant.as_deref() == Some("dsm")
        || (plugin.pip_url.is_none() && super::executable::BUILTINS.contains(&exe))
}

/// The environment `plugin` needs installed, if any.
pub fn target(project: &Project, plugin: &Plugin) -> Option<Target> {
    if is_builtin(plugin) {
        return None;
    }
    let owner = venv_owner(project, plugin);
    let pip_url = owner.pip_url.clone().filter(|p| !p.trim().is_empty())?;
    Some(Target {
        name: owner.name.clone(),
        plugin_type: owner.plugin_type,
        pip_url,
        python: owner
            .python
            .clone()
            .or_else(|| project.file().python.clone()),
        dir: plugin_dir(project.root(), owner.plugin_type, &owner.name),
    })
}

/// Where `plugin` stands.
pub fn status(project: &Project, plugin: &Plugin) -> Status {
    if is_builtin(plugin) {
        return Status::BuiltIn;
    }
    match target(project, plugin) {
        Some(t) => t.status(),
        None => Status::NoPipUrl,
    }
}

/// The tool that builds environments.
#[derive(Debug, Clone)]
pub enum Installer {
    /// `uv` at this path.
    Uv(PathBuf),
    /// The interpreter's `venv` module and pip.
    Pip,
}

impl Installer {
    /// `uv` when it is on `PATH`, else pip.
    pub fn detect() -> Installer {
        match find_on_path("uv") {
            Some(uv) => Installer::Uv(uv),
            None => Installer::Pip,
        }
    }

    /// `uv` or `pip`.
    pub fn name(&self) -> &'static str {
        match self {
            Installer::Uv(_) => "uv",
            Installer::Pip => "pip",
        }
    }
}

/// Looks `program` up on `PATH`.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file() && is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

/// The interpreter for `python:` as written: a path, a command (`python3.9`), or a bare
/// version (`3.9`, which means `python3.9`). None: `python3`, then `python`.
fn interpreter(python: Option<&str>) -> Result<PathBuf> {
    let candidates: Vec<String> = match python {
        Some(p) if p.contains('/') => return Ok(PathBuf::from(p)),
        Some(p) if p.chars().all(|c| c.is_ascii_digit() || c == '.') => {
            vec![format!("python{p}")]
        }
        Some(p) => vec![p.to_string()],
        None => vec!["python3".into(), "python".into()],
    };
    candidates
        .iter()
        .find_map(|c| find_on_path(c))
        .ok_or_else(|| {
            Error::config(format!(
                "no Python interpreter found: {} not on PATH",
                candidates
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ))
            .hint("install Python 3 (or `uv`, which can fetch one), or set `python:` on the plugin or project in meltano.yml to an interpreter's path")
        })
}

/// Hides `user:password@` in URLs, so credentials in a `pip_url` never reach messages or logs.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '/' || c == '\'' || c == '"')
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("****");
                out.push_str(&tail[at..end]);
            }
            None => out.push_str(&tail[..end]),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Installs every target, `parallel` at a time, calling `report` from the worker threads when
/// one starts (`None`) and when it ends. Returns the failures (the others are installed).
pub fn install_all(
    targets: &[Target],
    installer: &Installer,
    clean: bool,
    parallel: usize,
    deadline: Option<Instant>,
    report: &(dyn Fn(&Target, Option<&Result<Outcome>>) + Sync),
) -> Vec<(Target, Error)> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..parallel.clamp(1, targets.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(t) = targets.get(i) else { break };
                    report(t, None);
                    let result = install_observed(t, installer, clean, deadline, &|_| {});
                    report(t, Some(&result));
                    if let Err(e) = result {
                        failures
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push((t.clone(), e));
                    }
                }
            });
        }
    });
    failures
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What one install did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Already installed from the same `pip_url`.
    Skipped,
    /// Installed (or reinstalled).
    Installed,
}

/// Installs `target` (removing its environment first when `clean`, or when what was installed
/// differs), unless it is installed already.
pub fn install(target: &Target, installer: &Installer, clean: bool) -> Result<Outcome> {
    install_observed(target, installer, clean, None, &|_| {})
}

/// [`install`], calling `step` with each step's name (`python -m venv`, `pip install` ...)
/// as it starts. Past `deadline` (a run's `--timeout`) the installer and its children are
/// killed and the error is a timeout (exit 124); the half-built environment is removed.
pub fn install_observed(
    target: &Target,
    installer: &Installer,
    clean: bool,
    deadline: Option<Instant>,
    step: &dyn Fn(&str),
) -> Result<Outcome> {
    let status = target.status();
    if !clean && status == Status::Installed {
        return Ok(Outcome::Skipped);
    }
    let what = format!("{} `{}`", target.plugin_type.singular(), target.name);
    if target.dir.exists() {
        std::fs::remove_dir_all(&target.dir)
            .map_err(|e| Error::failed(format!("cannot delete `{}`: {e}", target.dir.display())))?;
    }
    std::fs::create_dir_all(&target.dir)
        .map_err(|e| Error::failed(format!("cannot create `{}`: {e}", target.dir.display())))?;
    let venv = target.venv();
    let args = shlex::split(&target.pip_url)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            Error::config(format!(
                "the `pip_url` of {what} cannot be split into arguments (unbalanced quotes?)"
            ))
            .hint("fix `pip_url` in meltano.yml")
        })?;
    let log_path = target.dir.join("install.log");
    let mut log = std::fs::File::create(&log_path)
        .map_err(|e| Error::failed(format!("cannot create `{}`: {e}", log_path.display())))?;
    let steps: Vec<(String, Command)> = match installer {
        Installer::Uv(uv) => {
            let mut mk = Command::new(uv);
            mk.arg("venv").arg("--quiet").arg(&venv);
            if let Some(py) = &target.python {
                mk.arg("--python").arg(py);
            }
            let mut pip = Command::new(uv);
            pip.args(["pip", "install", "--python"])
                .arg(venv.join("bin/python"))
                .args(&args);
            vec![("uv venv".into(), mk), ("uv pip install".into(), pip)]
        }
        Installer::Pip => {
            let python = interpreter(target.python.as_deref())?;
            let mut mk = Command::new(&python);
            mk.args(["-m", "venv"]).arg(&venv);
            let mut pip = Command::new(venv.join("bin/python"));
            pip.args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
            ])
            .args(&args);
            vec![
                (format!("{} -m venv", python.display()), mk),
                ("pip install".into(), pip),
            ]
        }
    };
    for (label, mut cmd) in steps {
        step(&label);
        // The installer's own variables of the parent would point it elsewhere.
        cmd.env_remove("VIRTUAL_ENV")
            .env_remove("PYTHONHOME")
            .env_remove("PIP_REQUIRE_VIRTUALENV")
            .stdin(Stdio::null());
        let output = match run_capturing(&mut cmd, deadline) {
            Ok(Some(output)) => output,
            Ok(None) => {
                let _ = std::fs::remove_dir_all(&venv);
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!("installing {what} did not finish within the run's timeout (`{label}` was stopped)"),
                )
                .hint("raise `--timeout`, or install first with `dsm install` and run with `--no-install`"));
            }
            Err(e) => {
                return Err(Error::failed(format!(
                    "cannot start `{label}` to install {what}: {e}"
                ))
                .hint("check that Python (or uv) is installed and on PATH"));
            }
        };
        use std::io::Write as _;
        let _ = log.write_all(redact(&output.text).as_bytes());
        if !output.success {
            let tail: Vec<String> = output
                .text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(redact)
                .collect();
            let start = tail.len().saturating_sub(ERROR_TAIL_LINES);
            let mut err = Error::failed(format!(
                "installing {what} failed: `{label}` exited with {}",
                output.status
            ))
            .detail("last lines of its output:");
            for line in &tail[start..] {
                err = err.detail(format!("| {line}"));
            }
            let _ = std::fs::remove_dir_all(&venv);
            return Err(err.hint(format!(
                "check `pip_url` ({}) of {what} in meltano.yml; the whole output is in `{}`",
                redact(&target.pip_url),
                log_path.display()
            )));
        }
    }
    let stamp = Stamp {
        pip_url: target.pip_url.clone(),
        python: target.python.clone(),
        installer: installer.name().to_string(),
        installed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    let text = serde_json::to_string_pretty(&stamp).expect("a stamp always serializes");
    crate::files::replace_atomically(
        &target.dir.join(STAMP_FILE),
        (text + "\n").as_bytes(),
        crate::files::Mode::Keep,
    )?;
    Ok(Outcome::Installed)
}

struct Captured {
    success: bool,
    status: String,
    text: String,
}

/// Runs a command with stdout and stderr read into one text (stderr after stdout); `None`
/// when `deadline` passed first (the command and its process group are killed). The output
/// goes to unnamed temporary files, so waiting never blocks on a full pipe.
fn run_capturing(
    cmd: &mut Command,
    deadline: Option<Instant>,
) -> std::io::Result<Option<Captured>> {
    use std::io::Seek as _;
    use std::os::unix::process::CommandExt as _;
    // A package's build scripts are plugin code too: no dsm access variable reaches them.
    super::process::withhold_access(cmd);
    let mut out = tempfile::tempfile()?;
    let mut err = tempfile::tempfile()?;
    let mut child = cmd
        .stdout(Stdio::from(out.try_clone()?))
        .stderr(Stdio::from(err.try_clone()?))
        // Its own process group, so a timeout stops pip's build subprocesses too.
        .process_group(0)
        .spawn()?;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = super::sys::signal_group(child.id(), super::sys::SIGKILL);
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |f: &mut std::fs::File| -> std::io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        f.rewind()?;
        f.read_to_end(&mut buf)?;
        Ok(buf)
    };
    let mut text = String::from_utf8_lossy(&read(&mut out)?).into_owned();
    text.push_str(&String::from_utf8_lossy(&read(&mut err)?));
    Ok(Some(Captured {
        success: status.success(),
        status: match status.code() {
            Some(c) => format!("status {c}"),
            None => "a signal".to_string(),
        },
        text,
    }))
}

/// What a run does about plugins that are not installed (Meltano's `--install`,
/// `--no-install`, `--only-install`; without a flag the project's `auto_install` decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallChoice {
    /// As `auto_install` (or `DSM_AUTO_INSTALL` / `MELTANO_AUTO_INSTALL`) says.
    Auto,
    /// Install what is missing, then run.
    Install,
    /// Install nothing.
    NoInstall,
    /// Install what is missing, then stop.
    OnlyInstall,
}

/// The plugins a run of `blocks` (after job expansion) installs first under `choice`: those
/// the blocks name (or whose mappings they name) when `choice` says so (`--install`,
/// `--only-install`) or, without a flag, when `auto_install` is on; none otherwise.
pub fn plugins_to_install<'a>(
    project: &'a Project,
    blocks: &[String],
    choice: InstallChoice,
) -> Result<Vec<&'a Plugin>> {
    let install = match choice {
        InstallChoice::Install | InstallChoice::OnlyInstall => true,
        InstallChoice::NoInstall => false,
        InstallChoice::Auto => auto_install_enabled(project)?,
    };
    if !install {
        return Ok(Vec::new());
    }
    let words = crate::runner::blocks::expand_jobs(project, blocks)?;
    Ok(project
        .plugins()
        .iter()
        .filter(|p| {
            words.iter().any(|w| {
                let name = w.split_once(':').map_or(w.as_str(), |(n, _)| n);
                name == p.name || p.mappings.iter().any(|m| m.name == name)
            })
        })
        .collect())
}

/// Whether `auto_install` is on: `DSM_AUTO_INSTALL` / `MELTANO_AUTO_INSTALL`, else the project's
/// `auto_install:`. Off when unset (Meltano's default is on; dsm never reaches for the network
/// unless asked).
pub fn auto_install_enabled(project: &Project) -> Result<bool> {
    for var in [
        crate::envvars::AUTO_INSTALL,
        crate::envvars::MELTANO_AUTO_INSTALL,
    ] {
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

/// The distinct environments the plugins need (an inherited plugin shares its parent's).
pub fn targets_of(project: &Project, plugins: &[&Plugin]) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    for p in plugins {
        if let Some(t) = target(project, p)
            && !out.iter().any(|o| o.dir == t.dir)
        {
            out.push(t);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_hidden() {
        assert_eq!(
            redact("git+https://user:tok@github.com/a/b.git@v1 x"),
            "git+https://****@github.com/a/b.git@v1 x"
        );
        assert_eq!(redact("tap-x==1.0"), "tap-x==1.0");
        assert_eq!(
            redact("https://github.com/a/b.git"),
            "https://github.com/a/b.git"
        );
    }

    #[test]
    fn a_bare_version_means_that_python_command() {
        let err = interpreter(Some("0.0.1")).unwrap_err();
        assert!(err.message().contains("`python0.0.1`"), "{}", err.message());
    }
}

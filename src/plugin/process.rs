//! One plugin process: how it is started, how its stderr is read, how it is stopped.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::BufReader;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::runtime::RunDir;
use super::sys;
use crate::error::Error;
use crate::singer::codec::{LineError, LineReader};

/// How many lines of a plugin's stderr are kept for error messages.
pub const STDERR_TAIL_LINES: usize = 40;

/// Longest stderr line kept whole; longer ones are cut (stderr is for people, not data).
const STDERR_MAX_LINE: usize = 64 * 1024;

/// The part a plugin plays in a pipeline (Meltano's plugin types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginRole {
    /// A tap.
    Extractor,
    /// A Singer mapper between extractor and loader.
    Mapper,
    /// A target.
    Loader,
}

impl fmt::Display for PluginRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PluginRole::Extractor => "extractor",
            PluginRole::Mapper => "mapper",
            PluginRole::Loader => "loader",
        })
    }
}

/// Everything needed to start one plugin, as resolved from the project and its settings.
#[derive(Clone)]
pub struct PluginSpec {
    /// The plugin's name in the project (`tap-github`).
    pub name: String,
    /// Extractor, mapper or loader.
    pub role: PluginRole,
    /// The executable to run.
    pub executable: PathBuf,
    /// Arguments after `--config <file>` (`--catalog`, `--state`, a mapper's arguments ...).
    pub args: Vec<String>,
    /// Variables added to dsm's own environment for the child (never secrets).
    pub env: BTreeMap<String, String>,
    /// Variables removed from the inherited environment.
    pub env_remove: Vec<String>,
    /// The plugin's config; written to a private file and passed as `--config <file>`.
    pub config: Option<serde_json::Value>,
    /// The working directory (the project root, usually).
    pub cwd: Option<PathBuf>,
    /// Sensitive values dsm hands the plugin, in every form it may print them (see
    /// [`redaction_forms`]): replaced by `********` in whatever dsm keeps of its stderr.
    pub redact: Arc<Vec<String>>,
}

/// Shortest sensitive value dsm redacts: a shorter one would mask ordinary words
/// (`dsm config set` warns about such values).
pub const MIN_REDACTED_LEN: usize = 6;

/// The forms a plugin may print a secret in: as is, JSON-escaped, URL-encoded, and for each
/// user name the base64 of `user:secret` (HTTP basic authentication). Values shorter than
/// [`MIN_REDACTED_LEN`] are left out; the longest forms come first, so a longer one is
/// replaced before a shorter one inside it.
pub fn redaction_forms(secrets: &[String], users: &[String]) -> Vec<String> {
    use base64::Engine as _;
    let mut forms = Vec::new();
    for secret in secrets.iter().filter(|s| s.len() >= MIN_REDACTED_LEN) {
        forms.push(secret.clone());
        let json = serde_json::to_string(secret).expect("a string serialises");
        forms.push(json[1..json.len() - 1].to_string());
        let url: String = secret
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        forms.push(url.replace("%20", "+"));
        forms.push(url);
        for user in users {
            let pair = format!("{user}:{secret}");
            forms.push(base64::engine::general_purpose::STANDARD.encode(&pair));
            forms.push(base64::engine::general_purpose::URL_SAFE.encode(&pair));
        }
    }
    forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    forms.dedup();
    forms
}

/// `line` with every form in `forms` replaced by `********`.
pub fn redact<'l>(line: &'l str, forms: &[String]) -> std::borrow::Cow<'l, str> {
    let mut out = std::borrow::Cow::Borrowed(line);
    for form in forms {
        if out.contains(form.as_str()) {
            out = std::borrow::Cow::Owned(out.replace(form.as_str(), "********"));
        }
    }
    out
}

impl fmt::Debug for PluginSpec {
    // Config and environment values may be secret: only their keys are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginSpec")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("executable", &self.executable)
            .field("args", &self.args)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("config", &self.config.as_ref().map(|_| "********"))
            .field("cwd", &self.cwd)
            .field("redact", &self.redact.len())
            .finish()
    }
}

impl PluginSpec {
    /// A plugin with no arguments, environment or config.
    pub fn new(name: impl Into<String>, role: PluginRole, executable: impl Into<PathBuf>) -> Self {
        PluginSpec {
            name: name.into(),
            role,
            executable: executable.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            env_remove: Vec::new(),
            config: None,
            cwd: None,
            redact: Arc::default(),
        }
    }

    /// Adds arguments.
    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets one environment variable.
    #[must_use]
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Sets the config written to the private config file.
    #[must_use]
    pub fn config(mut self, config: serde_json::Value) -> Self {
        self.config = Some(config);
        self
    }

    /// Sets the working directory.
    #[must_use]
    pub fn cwd(mut self, cwd: impl Into<PathBuf>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    /// "extractor `tap-x`", for messages.
    pub fn label(&self) -> String {
        format!("{} `{}`", self.role, self.name)
    }
}

/// The per-run log file that every plugin's stderr is copied to, one prefixed line at a time.
#[derive(Debug, Clone)]
pub struct RunLog {
    file: Arc<Mutex<std::fs::File>>,
}

impl RunLog {
    /// Opens (appending) or creates the log file.
    pub fn open(path: &Path) -> std::io::Result<RunLog> {
        if let Some(parent) = path.parent() {
            crate::files::create_private_dir(parent)?;
        }
        let file = crate::files::append_private(path)?;
        Ok(RunLog {
            file: Arc::new(Mutex::new(file)),
        })
    }

    fn write_line(&self, plugin: &str, line: &str) {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        // A failing log write must not fail the run; the line also went to tracing.
        let _ = writeln!(file, "[{plugin}] {line}");
    }
}

/// The last lines a plugin wrote to stderr.
#[derive(Debug, Clone, Default)]
pub struct StderrTail {
    lines: Arc<Mutex<VecDeque<String>>>,
}

impl StderrTail {
    fn push(&self, line: String) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() == STDERR_TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The kept lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Adds the kept lines to an error as `| line` details.
    pub fn add_to(&self, mut error: Error) -> Error {
        let lines = self.lines();
        if !lines.is_empty() {
            error = error.detail("last lines of its stderr:");
            for l in lines {
                error = error.detail(format!("| {l}"));
            }
        }
        error
    }
}

/// How a plugin ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginExit {
    /// The plugin's name.
    pub name: String,
    /// Its role.
    pub role: PluginRole,
    /// The exit code, when it exited normally.
    pub code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// Whether dsm asked it to stop (SIGTERM or SIGKILL).
    pub stopped_by_dsm: bool,
}

impl PluginExit {
    fn from_status(
        name: &str,
        role: PluginRole,
        status: ExitStatus,
        stopped_by_dsm: bool,
    ) -> PluginExit {
        use std::os::unix::process::ExitStatusExt;
        PluginExit {
            name: name.to_owned(),
            role,
            code: status.code(),
            signal: status.signal(),
            stopped_by_dsm,
        }
    }

    /// Whether it exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// "status 3" or "signal 9", for messages.
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("status {c}"),
            (None, Some(s)) => format!("signal {s}"),
            (None, None) => "an unknown status".into(),
        }
    }
}

/// What the pipeline asks of a running plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StopRequest {
    /// Let it run.
    None,
    /// SIGTERM to its group, then SIGKILL after the grace period.
    Terminate,
    /// SIGKILL to its group now.
    Kill,
}

/// Applies a spec's environment to a command about to start the plugin: its variables, the
/// ones it must not inherit, and last every dsm variable that grants access (the master key,
/// tokens, the store's address), whichever layer set it.
pub fn apply_env(spec: &PluginSpec, cmd: &mut std::process::Command) {
    for key in &spec.env_remove {
        cmd.env_remove(key);
    }
    cmd.envs(&spec.env);
    withhold_access(cmd);
}

/// Removes every dsm variable that grants access from a plugin command's environment, both
/// inherited and set on the command.
pub fn withhold_access(cmd: &mut std::process::Command) {
    let set: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| v.and(k.to_str()).map(str::to_string))
        .filter(|k| crate::envvars::grants_access(k))
        .collect();
    for key in crate::envvars::access_vars_present().into_iter().chain(set) {
        cmd.env_remove(key);
    }
}

/// A started plugin.
#[derive(Debug)]
pub struct PluginProcess {
    name: String,
    role: PluginRole,
    child: Child,
    pid: u32,
    stderr_task: Option<JoinHandle<()>>,
    tail: StderrTail,
}

/// Starts a plugin as its own process group: stdout piped, stdin piped when `stdin` is true
/// (null otherwise: extractors never read dsm's stdin), stderr read on its own task.
pub fn spawn(
    spec: &PluginSpec,
    run_dir: &RunDir,
    stdin: bool,
    log: Option<&RunLog>,
) -> Result<PluginProcess, Error> {
    let mut cmd = Command::new(&spec.executable);
    if let Some(config) = &spec.config {
        let path = run_dir.write_config(&spec.name, config).map_err(|e| {
            Error::failed(format!(
                "could not write the config file of {} in `{}`: {e}",
                spec.label(),
                run_dir.path().display()
            ))
        })?;
        cmd.arg("--config").arg(path);
    }
    cmd.args(&spec.args);
    apply_env(spec, cmd.as_std_mut());
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group, so SIGTERM reaches a wrapper script's children too, and a
        // Ctrl-C in the terminal reaches dsm only (dsm then stops the plugins in order).
        .process_group(0);
    crate::plugin::sys::die_with_parent(cmd.as_std_mut());
    let mut child = cmd.spawn().map_err(|e| {
        Error::failed(format!(
            "could not start {} (`{}`): {e}",
            spec.label(),
            spec.executable.display()
        ))
        .hint(format!(
            "check that `{}` is installed and executable",
            spec.executable.display()
        ))
    })?;
    let pid = child.id().expect("a just-spawned child has a pid");
    let tail = StderrTail::default();
    let stderr = child.stderr.take().expect("stderr was piped");
    let stderr_task = tokio::spawn(read_stderr(
        stderr,
        spec.name.clone(),
        spec.role,
        tail.clone(),
        log.cloned(),
        spec.redact.clone(),
    ));
    tracing::debug!(plugin = %spec.name, role = %spec.role, pid, "plugin started");
    Ok(PluginProcess {
        name: spec.name.clone(),
        role: spec.role,
        child,
        pid,
        stderr_task: Some(stderr_task),
        tail,
    })
}

async fn read_stderr(
    stderr: tokio::process::ChildStderr,
    name: String,
    role: PluginRole,
    tail: StderrTail,
    log: Option<RunLog>,
    redactions: Arc<Vec<String>>,
) {
    let mut reader = LineReader::new(BufReader::new(stderr), STDERR_MAX_LINE);
    let mut buf = Vec::new();
    loop {
        let line = match reader.read_line_async(&mut buf).await {
            Ok(true) => String::from_utf8_lossy(&buf).into_owned(),
            Ok(false) => break,
            Err(LineError::TooLong { excerpt, .. }) => {
                if reader.skip_rest_of_line_async().await.is_err() {
                    break;
                }
                excerpt
            }
            Err(LineError::Io(_)) => break,
        };
        // A secret the plugin echoes is kept nowhere: not in dsm's stderr, the log file, or
        // the tail that error messages and the run history quote.
        let line = redact(&line, &redactions).into_owned();
        tracing::info!(plugin = %name, role = %role, stdio = "stderr", "{line}");
        if let Some(log) = &log {
            log.write_line(&name, &line);
        }
        tail.push(line);
    }
}

impl PluginProcess {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its role.
    pub fn role(&self) -> PluginRole {
        self.role
    }

    /// Its process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its stdin, once (only when spawned with `stdin: true`).
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// Its stdout, once.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// The last lines of its stderr so far.
    pub fn stderr_tail(&self) -> StderrTail {
        self.tail.clone()
    }

    /// Waits for the plugin to exit, stopping it when `stop` asks: SIGTERM to its process group,
    /// SIGKILL after `grace`. Then waits (at most `grace`) for its stderr to be read to the end.
    pub async fn wait_or_stop(
        &mut self,
        stop: &mut watch::Receiver<StopRequest>,
        grace: Duration,
    ) -> PluginExit {
        let mut requested = StopRequest::None;
        let mut kill_at: Option<tokio::time::Instant> = None;
        let status = loop {
            let kill_timer = async {
                match kill_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                status = self.child.wait() => break status,
                changed = stop.changed(), if requested != StopRequest::Kill => {
                    let wanted = if changed.is_ok() { *stop.borrow_and_update() } else { StopRequest::None };
                    if changed.is_err() {
                        // Nobody can ask any more: just wait for the exit.
                        match self.child.wait().await {
                            Ok(s) => break Ok(s),
                            Err(e) => break Err(e),
                        }
                    }
                    if wanted > requested {
                        requested = wanted;
                        match wanted {
                            StopRequest::Terminate => {
                                tracing::debug!(plugin = %self.name, pid = self.pid, "sending SIGTERM");
                                let _ = sys::signal_group(self.pid, sys::SIGTERM);
                                kill_at = Some(tokio::time::Instant::now() + grace);
                            }
                            StopRequest::Kill => {
                                let _ = sys::signal_group(self.pid, sys::SIGKILL);
                                kill_at = None;
                            }
                            StopRequest::None => {}
                        }
                    }
                }
                () = kill_timer => {
                    tracing::warn!(plugin = %self.name, pid = self.pid, "did not stop after SIGTERM; sending SIGKILL");
                    let _ = sys::signal_group(self.pid, sys::SIGKILL);
                    requested = StopRequest::Kill;
                    kill_at = None;
                }
            }
        };
        let stopped = requested != StopRequest::None;
        let exit = match status {
            Ok(status) => PluginExit::from_status(&self.name, self.role, status, stopped),
            Err(error) => {
                tracing::warn!(plugin = %self.name, %error, "could not wait for the plugin");
                PluginExit {
                    name: self.name.clone(),
                    role: self.role,
                    code: None,
                    signal: None,
                    stopped_by_dsm: stopped,
                }
            }
        };
        self.finish_stderr(grace).await;
        exit
    }

    /// Stops the plugin (SIGTERM, then SIGKILL after `grace`) and waits for it.
    pub async fn stop(&mut self, grace: Duration) -> PluginExit {
        let (tx, mut rx) = watch::channel(StopRequest::None);
        tx.send_replace(StopRequest::Terminate);
        self.wait_or_stop(&mut rx, grace).await
    }

    async fn finish_stderr(&mut self, limit: Duration) {
        if let Some(mut task) = self.stderr_task.take() {
            // A grandchild that kept stderr open must not hang the run.
            if tokio::time::timeout(limit, &mut task).await.is_err() {
                task.abort();
            }
        }
    }
}

//! Installing the plugin of a source registered over HTTP: in the background, with the same
//! library call as `dsm install`, and progress on the event stream as `install_progress
//! {source, step, status[, detail]}` events (`status` is `running`, then `installed` or
//! `failed`). The source's document says where its installation stands meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::plugin::install::{self, Installer, Status, Target};
use crate::project::{Plugin, Project};
use crate::serve::executor::Runs;

/// Where a source's plugin installation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstallStatus {
    /// One of dsm's built-in plugins: nothing to install.
    BuiltIn,
    /// No `pip_url`: an executable found on `PATH` or at a path.
    NoPipUrl,
    /// Installed from its current `pip_url`.
    Installed,
    /// Installed from another `pip_url`: `dsm install` reinstalls it.
    Changed,
    /// Not installed.
    NotInstalled,
    /// This server is installing it now.
    Installing,
    /// This server's last attempt failed (`detail` says why).
    Failed,
}

/// A source's installation, as its document shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct InstallView {
    /// Where it stands.
    pub status: InstallStatus,
    /// Why the last attempt failed (the installer's message, secrets redacted).
    pub detail: Option<String>,
}

#[derive(Debug, Clone)]
enum Attempt {
    Running,
    Failed(String),
}

/// The installations this server started.
#[derive(Debug, Default)]
pub struct Installs {
    attempts: Mutex<HashMap<String, Attempt>>,
}

impl Installs {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Attempt>> {
        self.attempts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this server is installing `source`'s plugin now.
    pub fn is_installing(&self, source: &str) -> bool {
        matches!(self.lock().get(source), Some(Attempt::Running))
    }

    /// Where `plugin`'s installation stands.
    pub fn view(&self, project: &Project, plugin: &Plugin) -> InstallView {
        let on_disk = install::status(project, plugin);
        let attempt = self.lock().get(&plugin.name).cloned();
        let status = match (&attempt, &on_disk) {
            (Some(Attempt::Running), _) => InstallStatus::Installing,
            (_, Status::Installed) => InstallStatus::Installed,
            (Some(Attempt::Failed(_)), _) => InstallStatus::Failed,
            (None, Status::BuiltIn) => InstallStatus::BuiltIn,
            (None, Status::NoPipUrl) => InstallStatus::NoPipUrl,
            (None, Status::Changed) => InstallStatus::Changed,
            (None, _) => InstallStatus::NotInstalled,
        };
        let detail = match attempt {
            Some(Attempt::Failed(why)) if status == InstallStatus::Failed => Some(why),
            _ => None,
        };
        InstallView { status, detail }
    }

    /// Starts installing `plugin` on its own thread when it needs it (missing, or installed
    /// from another `pip_url`) and no installation of it runs already. Returns whether one
    /// started.
    pub fn start(self: &Arc<Self>, runs: &Arc<Runs>, project: &Project, plugin: &Plugin) -> bool {
        let Some(target) = install::target(project, plugin) else {
            return false;
        };
        if target.status() == Status::Installed {
            return false;
        }
        {
            let mut attempts = self.lock();
            if matches!(attempts.get(&plugin.name), Some(Attempt::Running)) {
                return false;
            }
            attempts.insert(plugin.name.clone(), Attempt::Running);
        }
        let installs = Arc::clone(self);
        let runs = Arc::clone(runs);
        let source = plugin.name.clone();
        let spawned = std::thread::Builder::new()
            .name("dsm-serve-install".into())
            .spawn({
                let source = source.clone();
                move || installs.run(&runs, &source, &target)
            });
        if spawned.is_err() {
            self.lock().insert(
                source,
                Attempt::Failed("the server could not start a thread to install it".into()),
            );
            return false;
        }
        true
    }

    fn run(&self, runs: &Runs, source: &str, target: &Target) {
        let progress = |step: &str, status: &str| {
            runs.emit(
                "install_progress",
                json!({"source": source, "step": step, "status": status}),
            );
        };
        progress("start", "running");
        let result =
            install::install_observed(target, &Installer::detect(), false, None, &|step| {
                progress(step, "running")
            });
        match result {
            Ok(_) => {
                self.lock().remove(source);
                progress("done", "installed");
            }
            Err(e) => {
                let mut why = install::redact(&e.to_string());
                for hint in e.hints() {
                    why.push_str("; ");
                    why.push_str(&install::redact(hint));
                }
                self.lock()
                    .insert(source.to_owned(), Attempt::Failed(why.clone()));
                runs.emit(
                    "install_progress",
                    json!({"source": source, "step": "done", "status": "failed", "detail": why}),
                );
            }
        }
    }
}

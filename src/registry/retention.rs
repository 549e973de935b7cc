//! Retention of the run history: removing old runs with their per-run log files and
//! quarantine files, so a server running flows every minute does not grow without bound.
//!
//! Per-run files are found by the run's `log_path`, and by name in the folders given in
//! [`PrunePolicy::run_dirs`] (by default `.dsm/logs` and `.dsm/quarantine`): every entry whose
//! name starts with the run id (a file like `<run_id>.jsonl` or a folder `<run_id>/`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::envvars;
use crate::error::{Error, Result};
use crate::store::{RunFilter, RunId, RunRecord, RunStatus, Store};

/// Folders under the project's private folder that hold per-run files named by run id.
pub const RUN_FILE_DIRS: [&str; 2] = ["logs", "quarantine"];

/// Which runs to remove.
#[derive(Debug, Clone, Default)]
pub struct PrunePolicy {
    /// Remove runs started longer ago than this.
    pub older_than: Option<Duration>,
    /// Keep the newest this many runs of each flow (runs without a flow count as one group).
    /// With `older_than` too, a run goes only when both rules let it go.
    pub keep: Option<usize>,
    /// Folders holding per-run files named by run id.
    pub run_dirs: Vec<PathBuf>,
    /// List what would go without removing anything.
    pub dry_run: bool,
    /// Remove exactly these runs (any status but running), whatever their age; also runs whose
    /// row is too damaged to read.
    pub run_ids: Vec<RunId>,
}

impl PrunePolicy {
    /// The default per-run folders of a project's private folder (`.dsm`).
    pub fn project_run_dirs(private_dir: &Path) -> Vec<PathBuf> {
        RUN_FILE_DIRS.iter().map(|d| private_dir.join(d)).collect()
    }
}

/// What pruning did (or would do, on a dry run).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneOutcome {
    /// Runs removed from the history.
    pub runs: Vec<RunId>,
    /// Files and folders removed.
    pub files: Vec<PathBuf>,
    /// Files that could not be removed, with the reason (the run rows are removed anyway).
    pub failed_files: Vec<(PathBuf, String)>,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

/// Chooses the runs the policy removes, from runs given newest first. Running runs are never
/// chosen.
pub fn runs_to_prune<'a>(
    runs_newest_first: &'a [RunRecord],
    policy: &PrunePolicy,
    now: DateTime<Utc>,
) -> Vec<&'a RunRecord> {
    let mut seen_per_flow: HashMap<Option<&str>, usize> = HashMap::new();
    let mut out = Vec::new();
    for run in runs_newest_first {
        let rank = seen_per_flow
            .entry(run.state_id.as_ref().map(|s| s.as_str()))
            .or_default();
        *rank += 1;
        if run.status == RunStatus::Running {
            continue;
        }
        let too_old = policy.older_than.map(|age| run.started_at < now - age);
        let beyond_keep = policy.keep.map(|n| *rank > n);
        let remove = match (too_old, beyond_keep) {
            (Some(a), Some(b)) => a && b,
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => false,
        };
        if remove {
            out.push(run);
        }
    }
    out
}

fn per_run_files(run: &RunRecord, dirs: &[PathBuf]) -> Vec<PathBuf> {
    let files: Vec<PathBuf> = run
        .log_path
        .iter()
        .filter(|p| p.exists())
        .cloned()
        .collect();
    files_named_by(&run.run_id, dirs, files)
}

/// Adds to `files` the entries of `dirs` whose name starts with the run id.
fn files_named_by(run_id: &RunId, dirs: &[PathBuf], mut files: Vec<PathBuf>) -> Vec<PathBuf> {
    let run = RunIdOnly { run_id };
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(run.run_id.as_str()) && !files.contains(&entry.path()) {
                files.push(entry.path());
            }
        }
    }
    files
}

struct RunIdOnly<'a> {
    run_id: &'a RunId,
}

/// Removes the runs the policy chooses, with their per-run files. A policy with neither
/// `older_than` nor `keep` is refused, so a typo cannot wipe the history.
pub fn prune_runs(
    store: &dyn Store,
    policy: &PrunePolicy,
    now: DateTime<Utc>,
) -> Result<PruneOutcome> {
    if policy.older_than.is_none() && policy.keep.is_none() && policy.run_ids.is_empty() {
        return Err(
            Error::config("`runs prune` needs `--older-than`, `--keep` or `--run-id`")
                .hint("for example `dsm runs prune --older-than 30d --keep 100`"),
        );
    }
    let runs = store.list_runs(&RunFilter::default())?;
    let mut chosen = if policy.older_than.is_some() || policy.keep.is_some() {
        runs_to_prune(&runs, policy, now)
    } else {
        Vec::new()
    };
    let mut outcome = PruneOutcome {
        dry_run: policy.dry_run,
        ..PruneOutcome::default()
    };
    for id in &policy.run_ids {
        if id.as_str().contains(['/', '\\']) || id.as_str().starts_with('.') {
            return Err(Error::config(format!("`{id}` is not a run id"))
                .hint("`dsm runs list` shows the run ids"));
        }
        match runs.iter().find(|r| &r.run_id == id) {
            Some(r) if r.status == RunStatus::Running => {
                return Err(Error::config(format!("run `{id}` is still running"))
                    .hint("stop it first, or wait until it ends"));
            }
            Some(r) => {
                if !chosen.iter().any(|c| c.run_id == r.run_id) {
                    chosen.push(r);
                }
            }
            // Not listed: unknown, or a row too damaged to read. Either way its rows and the
            // files named by its id go.
            None => {
                let files = files_named_by(id, &policy.run_dirs, Vec::new());
                let existed = policy.dry_run || store.delete_runs(std::slice::from_ref(id))? > 0;
                if !existed && files.is_empty() {
                    return Err(
                        Error::config(format!("no run `{id}` in the system database"))
                            .hint("`dsm runs list` shows the run ids"),
                    );
                }
                outcome.runs.push(id.clone());
                remove_files(files, policy.dry_run, &mut outcome);
            }
        }
    }
    for run in &chosen {
        outcome.runs.push(run.run_id.clone());
        let mut files = per_run_files(run, &policy.run_dirs);
        // Files the run recorded (quarantine files) go too, wherever they are.
        for a in store.run_artifacts(&run.run_id).unwrap_or_default() {
            if a.path.exists() && !files.contains(&a.path) {
                files.push(a.path);
            }
        }
        remove_files(files, policy.dry_run, &mut outcome);
    }
    if !policy.dry_run {
        let listed: Vec<RunId> = chosen.iter().map(|r| r.run_id.clone()).collect();
        store.delete_runs(&listed)?;
    }
    Ok(outcome)
}

fn remove_files(files: Vec<PathBuf>, dry_run: bool, outcome: &mut PruneOutcome) {
    for path in files {
        if dry_run {
            outcome.files.push(path);
            continue;
        }
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match removed {
            Ok(()) => outcome.files.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a per-run file");
                outcome.failed_files.push((path, e.to_string()));
            }
        }
    }
}

/// The automatic retention policy from [`envvars::RUNS_RETENTION_MAX_AGE`] and
/// [`envvars::RUNS_RETENTION_KEEP`] (read through `lookup`, normally `std::env::var`), or
/// `None` when neither is set.
pub fn policy_from_env(
    private_dir: &Path,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<PrunePolicy>> {
    let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
    let older_than = get(envvars::RUNS_RETENTION_MAX_AGE)
        .map(|v| super::parse_age(&v))
        .transpose()
        .map_err(|e| e.detail(format!("in `{}`", envvars::RUNS_RETENTION_MAX_AGE)))?;
    let keep = get(envvars::RUNS_RETENTION_KEEP)
        .map(|v| {
            v.trim().parse::<usize>().map_err(|_| {
                Error::config(format!(
                    "`{}` must be a whole number, not `{v}`",
                    envvars::RUNS_RETENTION_KEEP
                ))
            })
        })
        .transpose()?;
    if older_than.is_none() && keep.is_none() {
        return Ok(None);
    }
    Ok(Some(PrunePolicy {
        older_than,
        keep,
        run_dirs: PrunePolicy::project_run_dirs(private_dir),
        dry_run: false,
        run_ids: Vec::new(),
    }))
}

/// Prunes with the environment's policy, if any: the engine calls this after a run finishes.
/// Failures are logged, never fatal for the run.
pub fn auto_prune(store: &dyn Store, private_dir: &Path, now: DateTime<Utc>) {
    match policy_from_env(private_dir, |n| std::env::var(n).ok()) {
        Ok(None) => {}
        Ok(Some(policy)) => match prune_runs(store, &policy, now) {
            Ok(outcome) if !outcome.runs.is_empty() => {
                tracing::info!(
                    runs = outcome.runs.len(),
                    files = outcome.files.len(),
                    "pruned the run history"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(error = %error, "automatic pruning failed"),
        },
        Err(error) => tracing::warn!(error = %error, "automatic pruning is misconfigured"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::testing::{RunSpec, now, store};

    #[test]
    fn registry_prune_by_age_and_count_removes_rows_logs_and_quarantine_files() {
        let (dir, store) = store();
        let s = store.as_ref();
        let private = dir.path().join(".dsm");
        let dirs = PrunePolicy::project_run_dirs(&private);
        for d in &dirs {
            std::fs::create_dir_all(d).unwrap();
        }
        // Flow A: runs 1..=5 days old; flow B: one run 40 days old; one live run.
        for day in 1..=5 {
            let id = format!("a{day}");
            let spec = RunSpec::new(
                &id,
                "tap-a",
                RunStatus::Success,
                Duration::days(day),
                Duration::seconds(1),
            );
            let mut rec = spec.record();
            let log = private.join("logs").join(format!("{id}.log"));
            std::fs::write(&log, "stderr lines").unwrap();
            rec.log_path = Some(log);
            s.record_run(&rec).unwrap();
            std::fs::create_dir_all(private.join("quarantine").join(&id)).unwrap();
            std::fs::write(
                private.join("quarantine").join(&id).join("users.jsonl"),
                "{}",
            )
            .unwrap();
        }
        RunSpec::new(
            "b1",
            "tap-b",
            RunStatus::Failed,
            Duration::days(40),
            Duration::seconds(1),
        )
        .write(s);
        RunSpec::new(
            "live",
            "tap-b",
            RunStatus::Running,
            Duration::days(50),
            Duration::seconds(1),
        )
        .write(s);

        // Neither rule: refused.
        let err = prune_runs(s, &PrunePolicy::default(), now()).unwrap_err();
        assert!(
            err.message()
                .contains("needs `--older-than`, `--keep` or `--run-id`")
        );

        // Dry run: nothing removed.
        let policy = PrunePolicy {
            older_than: Some(Duration::days(2)),
            keep: Some(2),
            run_dirs: dirs.clone(),
            dry_run: true,
            run_ids: Vec::new(),
        };
        let planned = prune_runs(s, &policy, now()).unwrap();
        assert_eq!(planned.runs.len(), 3);
        assert_eq!(s.list_runs(&RunFilter::default()).unwrap().len(), 7);

        // Older than 2 days AND beyond the newest 2 of its flow: a3, a4, a5 go. b1 is old but
        // the only finished run of its flow; the live run is never touched.
        let done = prune_runs(
            s,
            &PrunePolicy {
                dry_run: false,
                ..policy
            },
            now(),
        )
        .unwrap();
        let mut ids: Vec<&str> = done.runs.iter().map(RunId::as_str).collect();
        ids.sort();
        assert_eq!(ids, ["a3", "a4", "a5"]);
        assert_eq!(done.files.len(), 6, "{:?}", done.files);
        let left: Vec<String> = s
            .list_runs(&RunFilter::default())
            .unwrap()
            .iter()
            .map(|r| r.run_id.to_string())
            .collect();
        assert_eq!(left, ["a1", "a2", "b1", "live"]);
        assert!(private.join("logs/a2.log").exists());
        assert!(!private.join("logs/a3.log").exists());
        assert!(private.join("quarantine/a1").exists());
        assert!(!private.join("quarantine/a5").exists());

        // Age alone: b1 (40 days) goes now.
        let by_age = PrunePolicy {
            older_than: Some(Duration::days(30)),
            run_dirs: dirs,
            ..PrunePolicy::default()
        };
        let done = prune_runs(s, &by_age, now()).unwrap();
        assert_eq!(done.runs, [RunId::new("b1")]);
        assert!(s.get_run(&RunId::new("b1")).unwrap().is_none());
        assert!(s.get_run(&RunId::new("live")).unwrap().is_some());
    }
}

#[cfg(test)]
mod env_tests {
    use super::*;

    #[test]
    fn registry_retention_policy_from_environment() {
        let dir = Path::new("/p/.dsm");
        assert!(policy_from_env(dir, |_| None).unwrap().is_none());
        let p = policy_from_env(dir, |n| match n {
            envvars::RUNS_RETENTION_MAX_AGE => Some("30d".into()),
            envvars::RUNS_RETENTION_KEEP => Some("100".into()),
            _ => None,
        })
        .unwrap()
        .unwrap();
        assert_eq!(
            (p.older_than, p.keep),
            (Some(Duration::days(30)), Some(100))
        );
        assert_eq!(p.run_dirs, [dir.join("logs"), dir.join("quarantine")]);
        let err = policy_from_env(dir, |n| {
            (n == envvars::RUNS_RETENTION_KEEP).then(|| "lots".to_owned())
        })
        .unwrap_err();
        assert_eq!(
            err.message(),
            "`DSM_RUNS_RETENTION_KEEP` must be a whole number, not `lots`"
        );
    }
}

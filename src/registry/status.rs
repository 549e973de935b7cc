//! A source's status: set by operators (`inactive`, `maintenance`), derived from a live run
//! (`syncing`, from the run's heartbeat and its flow lock, never stored) or from the last
//! finished run (`active`, `error` with the error kept).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::run_extractors;
use crate::error::Result;
use crate::store::{RunFilter, RunId, RunRecord, RunStatus, SourceStatusChange, Store};

/// The `origin` of history rows written by operators.
pub const ORIGIN_OPERATOR: &str = "operator";
/// The `origin` of history rows written by connection tests.
pub const ORIGIN_TEST: &str = "test";

/// A source's status as shown to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceStatus {
    /// Enabled, and its last run succeeded (or it has not run yet).
    Active,
    /// Disabled by an operator: syncs skip it.
    Inactive,
    /// A run is going right now (live heartbeat).
    Syncing,
    /// Its last run failed or was killed.
    Error,
    /// Under maintenance, set by an operator: syncs skip it.
    Maintenance,
}

impl SourceStatus {
    /// Every value, in the order lists and help show them.
    pub const ALL: [SourceStatus; 5] = [
        SourceStatus::Active,
        SourceStatus::Inactive,
        SourceStatus::Syncing,
        SourceStatus::Error,
        SourceStatus::Maintenance,
    ];

    /// The word shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceStatus::Active => "active",
            SourceStatus::Inactive => "inactive",
            SourceStatus::Syncing => "syncing",
            SourceStatus::Error => "error",
            SourceStatus::Maintenance => "maintenance",
        }
    }
}

/// What an operator can set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorStatus {
    /// `dsm sources enable`: clears an earlier disable or maintenance.
    Active,
    /// `dsm sources disable`.
    Inactive,
    /// `dsm sources maintenance`.
    Maintenance,
}

impl OperatorStatus {
    /// The word stored in the history.
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorStatus::Active => "active",
            OperatorStatus::Inactive => "inactive",
            OperatorStatus::Maintenance => "maintenance",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(OperatorStatus::Active),
            "inactive" => Some(OperatorStatus::Inactive),
            "maintenance" => Some(OperatorStatus::Maintenance),
            _ => None,
        }
    }
}

/// A source's status with the facts behind it.
#[derive(Debug, Clone, Serialize)]
pub struct SourceState {
    /// The source's plugin name.
    pub name: String,
    /// The status.
    pub status: SourceStatus,
    /// The operator's reason (for `inactive`/`maintenance`) or the last run's error (`error`).
    pub reason: Option<String>,
    /// Who set the operator status, if known.
    pub set_by: Option<String>,
    /// Since when the status holds, when known.
    pub since: Option<DateTime<Utc>>,
    /// The run going on now, if any (also under an operator status).
    pub running_run: Option<RunId>,
    /// The last finished run.
    pub last_run: Option<RunId>,
    /// Whether syncs should skip this source (`inactive` or `maintenance`).
    pub skipped_by_syncs: bool,
}

/// Whether a run involves the source (as extractor, or as any plugin for loaders).
fn involves(run: &RunRecord, name: &str) -> bool {
    run_extractors(run).any(|e| e == name) || run.plugins.iter().any(|p| p.plugin == name)
}

/// The status of `name`. Operator statuses win (a running run is still reported in
/// `running_run`); then a live run makes it `syncing`; then the last finished run decides.
pub fn source_status(store: &dyn Store, name: &str) -> Result<SourceState> {
    Ok(source_statuses(store, &[name])?.remove(0))
}

/// The statuses of several sources, reading the run history once.
pub fn source_statuses(store: &dyn Store, names: &[&str]) -> Result<Vec<SourceState>> {
    // Newest first; `Running` is already turned into `Killed` when the heartbeat is stale.
    let runs = store.list_runs(&RunFilter::default())?;
    let history = store.source_status_history(None, usize::MAX)?;
    names
        .iter()
        .map(|name| status_of(store, name, &runs, &history))
        .collect()
}

fn status_of(
    store: &dyn Store,
    name: &str,
    runs: &[RunRecord],
    history: &[SourceStatusChange],
) -> Result<SourceState> {
    let operator = history
        .iter()
        .find(|c| c.source == name && c.origin == ORIGIN_OPERATOR);
    let mut running = None;
    let mut last_finished = None;
    for run in runs.iter().filter(|r| involves(r, name)) {
        if run.status == RunStatus::Running {
            // The flow lock must be live too: a lock taken over or released means the run is
            // no longer doing work for this source.
            let live = match &run.state_id {
                Some(id) => store
                    .lock_holder(id)?
                    .is_some_and(|h| !h.stale && h.run_id.as_ref() == Some(&run.run_id)),
                None => true,
            };
            if live && running.is_none() {
                running = Some(run);
            }
        } else if last_finished.is_none() {
            last_finished = Some(run);
        }
        if running.is_some() && last_finished.is_some() {
            break;
        }
    }
    let mut state = SourceState {
        name: name.to_owned(),
        status: SourceStatus::Active,
        reason: None,
        set_by: None,
        since: None,
        running_run: running.map(|r| r.run_id.clone()),
        last_run: last_finished.map(|r| r.run_id.clone()),
        skipped_by_syncs: false,
    };
    if let Some(op) = &operator {
        let status = match OperatorStatus::parse(&op.status) {
            Some(OperatorStatus::Inactive) => Some(SourceStatus::Inactive),
            Some(OperatorStatus::Maintenance) => Some(SourceStatus::Maintenance),
            _ => None,
        };
        if let Some(status) = status {
            state.status = status;
            state.reason = op.reason.clone();
            state.set_by = op.user.clone();
            state.since = Some(op.at);
            state.skipped_by_syncs = true;
            return Ok(state);
        }
    }
    // A connection test newer than the last finished run decides `active`/`error` (a failing
    // `dsm test` after a good run is the freshest news about the source, and the other way round).
    let test = history
        .iter()
        .find(|c| c.source == name && c.origin == ORIGIN_TEST)
        .filter(|t| last_finished.is_none_or(|r| t.at >= r.ended_at.unwrap_or(r.heartbeat_at)));
    if let Some(run) = running {
        state.status = SourceStatus::Syncing;
        state.since = Some(run.started_at);
    } else if let Some(test) = test {
        state.since = Some(test.at);
        if test.status != "passed" {
            state.status = SourceStatus::Error;
            state.reason = Some(
                test.reason
                    .clone()
                    .unwrap_or_else(|| "its last connection test failed".into()),
            );
        }
    } else if let Some(run) = last_finished {
        if run.status == RunStatus::Success {
            state.since = run.ended_at;
        } else {
            state.status = SourceStatus::Error;
            state.reason =
                Some(run.error.clone().unwrap_or_else(|| {
                    format!("run `{}` was {}", run.run_id, run.status.as_str())
                }));
            state.since = run.ended_at.or(Some(run.heartbeat_at));
        }
    }
    Ok(state)
}

/// Records an operator's status change (`enable` = [`OperatorStatus::Active`]).
pub fn set_operator_status(
    store: &dyn Store,
    name: &str,
    status: OperatorStatus,
    reason: Option<&str>,
    user: Option<&str>,
    at: DateTime<Utc>,
) -> Result<()> {
    store.record_source_status(&SourceStatusChange {
        source: name.to_owned(),
        status: status.as_str().to_owned(),
        reason: reason.map(str::to_owned),
        user: user.map(str::to_owned),
        origin: ORIGIN_OPERATOR.to_owned(),
        at,
    })
}

/// Records the result of a connection test in the source's history.
pub fn record_test_result(
    store: &dyn Store,
    name: &str,
    passed: bool,
    reason: Option<&str>,
    at: DateTime<Utc>,
) -> Result<()> {
    store.record_source_status(&SourceStatusChange {
        source: name.to_owned(),
        status: if passed { "passed" } else { "failed" }.to_owned(),
        reason: reason.map(str::to_owned),
        user: None,
        origin: ORIGIN_TEST.to_owned(),
        at,
    })
}

/// A source's status history, newest first.
pub fn status_history(
    store: &dyn Store,
    name: &str,
    limit: usize,
) -> Result<Vec<SourceStatusChange>> {
    store.source_status_history(Some(name), limit)
}

/// Which of `names` an operator took out of syncs (`inactive` or `maintenance`), with the
/// operator's reason: what `dsm sync` needs, read from the status history alone (not the run
/// history, which can be long).
pub fn held_out_of_syncs(store: &dyn Store, names: &[&str]) -> Result<Vec<SourceState>> {
    let history = store.source_status_history(None, usize::MAX)?;
    let mut held = Vec::new();
    for name in names {
        // Newest first: the latest operator change decides.
        let Some(op) = history
            .iter()
            .find(|c| c.source == *name && c.origin == ORIGIN_OPERATOR)
        else {
            continue;
        };
        let status = match OperatorStatus::parse(&op.status) {
            Some(OperatorStatus::Inactive) => SourceStatus::Inactive,
            Some(OperatorStatus::Maintenance) => SourceStatus::Maintenance,
            _ => continue,
        };
        held.push(SourceState {
            name: (*name).to_owned(),
            status,
            reason: op.reason.clone(),
            set_by: op.user.clone(),
            since: Some(op.at),
            running_run: None,
            last_run: None,
            skipped_by_syncs: true,
        });
    }
    Ok(held)
}

/// The user running dsm, for the history (`USER`, then `USERNAME`).
pub fn current_user() -> Option<String> {
    ["USER", "USERNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::registry::testing::{RunSpec, now, store};
    use crate::store::{NewRun, PluginExit, RunFinish, StateId};

    #[test]
    fn registry_status_comes_from_the_last_run_and_keeps_its_error() {
        let (_dir, store) = store();
        let s = store.as_ref();
        let fresh = source_status(s, "tap-github").unwrap();
        assert_eq!(fresh.status, SourceStatus::Active);
        assert_eq!(fresh.last_run, None);

        RunSpec::new(
            "r1",
            "tap-github",
            RunStatus::Success,
            Duration::hours(2),
            Duration::seconds(3),
        )
        .write(s);
        RunSpec::new(
            "r2",
            "tap-github",
            RunStatus::Failed,
            Duration::hours(1),
            Duration::seconds(3),
        )
        .write(s);
        let st = source_status(s, "tap-github").unwrap();
        assert_eq!(st.status, SourceStatus::Error);
        assert_eq!(st.reason.as_deref(), Some("`tap-github` exited with 1"));
        assert_eq!(st.last_run, Some(RunId::new("r2")));

        RunSpec::new(
            "r3",
            "tap-github",
            RunStatus::Success,
            Duration::minutes(30),
            Duration::seconds(3),
        )
        .write(s);
        let st = source_status(s, "tap-github").unwrap();
        assert_eq!((st.status, st.reason), (SourceStatus::Active, None));
        // Another source's runs do not leak in.
        assert_eq!(source_status(s, "tap-other").unwrap().last_run, None);
    }

    #[test]
    fn registry_status_syncing_needs_a_live_lock_and_is_never_stored() {
        let (_dir, store) = store();
        let s = store.as_ref();
        let state_id = StateId::new("dev:tap-pg-to-target-jsonl");
        let run_id = s
            .begin_run(&NewRun {
                state_id: Some(state_id.clone()),
                trigger: "cli".into(),
                plugins: vec![PluginExit {
                    plugin: "tap-pg".into(),
                    role: "extractor".into(),
                    exit_code: None,
                }],
                ..NewRun::default()
            })
            .unwrap();
        // A running run without its lock (taken over or never taken) is not syncing.
        assert_eq!(
            source_status(s, "tap-pg").unwrap().status,
            SourceStatus::Active
        );
        let lock = s.acquire_lock(&state_id, Some(&run_id), false).unwrap();
        let st = source_status(s, "tap-pg").unwrap();
        assert_eq!(st.status, SourceStatus::Syncing);
        assert_eq!(st.running_run, Some(run_id.clone()));
        assert!(
            s.source_status_history(None, 10).unwrap().is_empty(),
            "syncing is derived, never written"
        );
        s.finish_run(
            &run_id,
            &RunFinish {
                status: RunStatus::Failed,
                error: Some("loader exited with 2".into()),
                plugins: vec![],
            },
        )
        .unwrap();
        s.release_lock(&lock).unwrap();
        let st = source_status(s, "tap-pg").unwrap();
        assert_eq!(st.status, SourceStatus::Error);
        assert_eq!(st.reason.as_deref(), Some("loader exited with 2"));
    }

    #[test]
    fn registry_held_out_of_syncs_follows_the_latest_operator_change() {
        let (_dir, store) = store();
        let s = store.as_ref();
        let at = now();
        set_operator_status(
            s,
            "tap-a",
            OperatorStatus::Inactive,
            Some("retired"),
            None,
            at,
        )
        .unwrap();
        set_operator_status(s, "tap-b", OperatorStatus::Maintenance, None, None, at).unwrap();
        set_operator_status(
            s,
            "tap-b",
            OperatorStatus::Active,
            None,
            None,
            at + Duration::minutes(1),
        )
        .unwrap();
        record_test_result(s, "tap-c", false, Some("401"), at).unwrap();
        let held = held_out_of_syncs(s, &["tap-a", "tap-b", "tap-c", "tap-d"]).unwrap();
        assert_eq!(held.len(), 1, "{held:?}");
        assert_eq!(held[0].name, "tap-a");
        assert_eq!(held[0].status, SourceStatus::Inactive);
        assert_eq!(held[0].reason.as_deref(), Some("retired"));
    }

    #[test]
    fn registry_operator_status_wins_and_is_kept_in_history() {
        let (_dir, store) = store();
        let s = store.as_ref();
        RunSpec::new(
            "r1",
            "tap-csv",
            RunStatus::Failed,
            Duration::hours(1),
            Duration::seconds(1),
        )
        .write(s);
        set_operator_status(
            s,
            "tap-csv",
            OperatorStatus::Maintenance,
            Some("vendor API migration"),
            Some("ana"),
            now(),
        )
        .unwrap();
        let st = source_status(s, "tap-csv").unwrap();
        assert_eq!(st.status, SourceStatus::Maintenance);
        assert_eq!(st.reason.as_deref(), Some("vendor API migration"));
        assert_eq!(st.set_by.as_deref(), Some("ana"));
        assert!(st.skipped_by_syncs);

        record_test_result(s, "tap-csv", true, None, now() + Duration::minutes(1)).unwrap();
        // A test result does not lift maintenance.
        assert_eq!(
            source_status(s, "tap-csv").unwrap().status,
            SourceStatus::Maintenance
        );

        set_operator_status(
            s,
            "tap-csv",
            OperatorStatus::Active,
            Some("done"),
            Some("ana"),
            now() + Duration::minutes(2),
        )
        .unwrap();
        let st = source_status(s, "tap-csv").unwrap();
        // Enabled again: the passing connection test is newer than the failed run, so it decides.
        assert_eq!(st.status, SourceStatus::Active);
        assert!(!st.skipped_by_syncs);
        // A failing test makes it `error` with the test's reason ...
        record_test_result(
            s,
            "tap-csv",
            false,
            Some("test `connection` failed: exited with status 1"),
            now() + Duration::minutes(3),
        )
        .unwrap();
        let st = source_status(s, "tap-csv").unwrap();
        assert_eq!(st.status, SourceStatus::Error);
        assert_eq!(
            st.reason.as_deref(),
            Some("test `connection` failed: exited with status 1")
        );
        // ... until a newer run succeeds.
        let mut ok = RunSpec::new(
            "r2",
            "tap-csv",
            RunStatus::Success,
            Duration::zero(),
            Duration::minutes(5),
        );
        ok.error = None;
        ok.write(s);
        assert_eq!(
            source_status(s, "tap-csv").unwrap().status,
            SourceStatus::Active
        );

        let history = status_history(s, "tap-csv", 10).unwrap();
        let seen: Vec<(&str, &str)> = history
            .iter()
            .map(|c| (c.status.as_str(), c.origin.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                ("failed", "test"),
                ("active", "operator"),
                ("passed", "test"),
                ("maintenance", "operator")
            ]
        );
        assert_eq!(history[3].at, now());
    }
}

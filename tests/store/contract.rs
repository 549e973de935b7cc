//! The store's contract: what every backend of the system store must do, written against the
//! store's traits only. [`sqlite`] runs it on SQLite and [`postgres`] on PostgreSQL (a
//! database per test on the server `DSM_TEST_PG_URL` names); a new backend adds a factory and
//! one line in [`run_contract!`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use dsm::error::ErrorKind;
use dsm::store::audit::{AuditRow, ChainLink, RecordedHead};
use dsm::store::config_history::{ConfigRestore, ConfigVersionRow};
use dsm::store::prelude::*;
use dsm::store::secrets::SealedSecret;
use dsm::store::{
    CommitOutcome, NewRun, NewToken, NewWebhookEvent, PluginExit, Received, Role, RunCounts,
    RunFilter, RunFinish, RunId, RunStatus, SourceStatusChange, StateAction, StateId, StoredState,
    StreamStats, WebhookLimits,
};

pub use crate::contract_scopes::secrets_are_kept_per_environment;

/// Makes empty stores of one backend.
pub trait Backend {
    /// A new, empty store, and what keeps it alive (a temporary folder, a database to drop).
    fn open(&self) -> (Box<dyn std::any::Any>, Arc<dyn Store>) {
        self.open_leased(Duration::from_secs(60))
    }

    /// A new, empty store whose flow locks lapse when not renewed for `expiry`.
    fn open_leased(&self, expiry: Duration) -> (Box<dyn std::any::Any>, Arc<dyn Store>);

    /// A second handle (a connection of its own, as another host or process has) on the store
    /// `guard` keeps alive.
    fn reopen(&self, guard: &dyn std::any::Any) -> Arc<dyn Store>;
}

/// SQLite files in temporary folders.
pub struct Sqlite;

impl Backend for Sqlite {
    fn open_leased(&self, expiry: Duration) -> (Box<dyn std::any::Any>, Arc<dyn Store>) {
        let tmp = tempfile::tempdir().unwrap();
        let store = dsm::store::SqliteStore::open(&tmp.path().join(".dsm/dsm.db"))
            .unwrap()
            .with_stale_after(expiry);
        (Box::new(tmp), Arc::new(store))
    }

    fn reopen(&self, guard: &dyn std::any::Any) -> Arc<dyn Store> {
        let tmp = guard.downcast_ref::<tempfile::TempDir>().unwrap();
        Arc::new(dsm::store::SqliteStore::open(&tmp.path().join(".dsm/dsm.db")).unwrap())
    }
}

/// A PostgreSQL database per store, in a schema of its own (not the default one, so the
/// `schema=` parameter is exercised).
pub struct Postgres;

impl Backend for Postgres {
    fn open_leased(&self, expiry: Duration) -> (Box<dyn std::any::Any>, Arc<dyn Store>) {
        use dsm::store::postgres::{LeaseTimes, PgStore, PgTarget, Upgrade};
        let db = crate::pg::TestDb::new("contract");
        let target = PgTarget::parse(&db.uri(Some("team_contract"))).unwrap();
        let store = PgStore::open(&target, "contract-project", Upgrade::FirstUseOnly)
            .unwrap()
            .with_lease(LeaseTimes {
                heartbeat: expiry / 6,
                expiry,
            });
        (Box::new(db), Arc::new(store))
    }

    fn reopen(&self, guard: &dyn std::any::Any) -> Arc<dyn Store> {
        use dsm::store::postgres::{PgStore, PgTarget, Upgrade};
        let db = guard.downcast_ref::<crate::pg::TestDb>().unwrap();
        let target = PgTarget::parse(&db.uri(Some("team_contract"))).unwrap();
        Arc::new(PgStore::open(&target, "contract-project", Upgrade::FirstUseOnly).unwrap())
    }
}

/// One `#[test]` per contract function, for one backend.
macro_rules! run_contract {
    ($module:ident, $backend:expr, [$($name:ident),* $(,)?]) => {
        mod $module {
            $(
                #[test]
                fn $name() {
                    super::$name(&$backend);
                }
            )*
        }
    };
}

run_contract!(
    sqlite,
    super::Sqlite,
    [
        commits_follow_meltanos_partial_and_complete_rules,
        empty_or_invalid_state_never_overwrites_a_bookmark,
        every_change_is_an_event,
        copying_missing_state_fails_and_changes_nothing,
        list_filters_with_star_globs,
        import_skips_existing_ids_unless_overwriting,
        a_second_lock_on_a_flow_is_refused_naming_the_holder,
        run_history_records_each_step,
        settings_round_trip,
        a_burst_of_states_commits_as_one_sequence_of_single_commits_would,
        secrets_are_stored_sealed_and_audited,
        the_audit_chain_appends_and_prunes_in_one_transaction,
        config_versions_number_and_restore,
        source_status_is_a_history,
        tokens_round_trip,
        a_lapsed_lock_is_taken_over_and_fences_out_its_old_holder,
        webhook_events_are_deduplicated_consumed_in_order_replayed_and_bounded,
        notification_deliveries_are_kept_in_order_and_bounded,
        state_events_keep_only_the_newest_of_each_state_id,
        concurrent_audit_appends_never_fork_the_chain,
        the_end_of_a_runs_log_is_kept_with_the_run,
        source_requests_record_every_transition_with_their_secrets_and_audit,
        secrets_are_kept_per_environment,
    ]
);

run_contract!(
    postgres,
    super::Postgres,
    [
        commits_follow_meltanos_partial_and_complete_rules,
        empty_or_invalid_state_never_overwrites_a_bookmark,
        every_change_is_an_event,
        copying_missing_state_fails_and_changes_nothing,
        list_filters_with_star_globs,
        import_skips_existing_ids_unless_overwriting,
        a_second_lock_on_a_flow_is_refused_naming_the_holder,
        run_history_records_each_step,
        settings_round_trip,
        a_burst_of_states_commits_as_one_sequence_of_single_commits_would,
        secrets_are_stored_sealed_and_audited,
        the_audit_chain_appends_and_prunes_in_one_transaction,
        config_versions_number_and_restore,
        source_status_is_a_history,
        tokens_round_trip,
        a_lapsed_lock_is_taken_over_and_fences_out_its_old_holder,
        notification_deliveries_are_kept_in_order_and_bounded,
        state_events_keep_only_the_newest_of_each_state_id,
        webhook_events_are_deduplicated_consumed_in_order_replayed_and_bounded,
        source_requests_record_every_transition_with_their_secrets_and_audit,
        concurrent_audit_appends_never_fork_the_chain,
        the_end_of_a_runs_log_is_kept_with_the_run,
        secrets_are_kept_per_environment,
    ]
);

fn sid(s: &str) -> StateId {
    StateId::new(s)
}

pub fn commits_follow_meltanos_partial_and_complete_rules(b: &dyn Backend) {
    let (_guard, store) = b.open();
    let id = sid("dev:tap-a-to-target-b");
    assert_eq!(store.get_state(&id).unwrap(), None);
    store
        .commit_state(&id, r#"{"bookmarks":{"users":{"ts":1}}}"#, false, None)
        .unwrap();
    store
        .commit_state(&id, r#"{"bookmarks":{"orders":{"id":5}}}"#, true, None)
        .unwrap();
    store
        .commit_state(&id, r#"{"bookmarks":{"orders":{"id":6}}}"#, true, None)
        .unwrap();
    let row = store.get_state_row(&id).unwrap().unwrap();
    assert_eq!(
        row.completed,
        json!({"singer_state": {"bookmarks": {"users": {"ts": 1}}}})
    );
    assert_eq!(
        row.partial,
        json!({"singer_state": {"bookmarks": {"orders": {"id": 6}}}})
    );
    assert_eq!(
        store.get_state(&id).unwrap().unwrap(),
        json!({"singer_state": {"bookmarks": {"users": {"ts": 1}, "orders": {"id": 6}}}})
    );
    // A complete commit replaces completed and clears partial.
    store
        .commit_state(&id, r#"{"bookmarks":{"x":1}}"#, false, None)
        .unwrap();
    let row = store.get_state_row(&id).unwrap().unwrap();
    assert_eq!(row.partial, json!({}));
    assert_eq!(
        store.get_state(&id).unwrap().unwrap(),
        json!({"singer_state": {"bookmarks": {"x": 1}}})
    );
}

pub fn empty_or_invalid_state_never_overwrites_a_bookmark(b: &dyn Backend) {
    let (_guard, store) = b.open();
    let id = sid("dev:a-to-b");
    store
        .commit_state(&id, r#"{"bookmarks":{"u":1}}"#, false, None)
        .unwrap();
    for bad in ["{}", "not json", "[]", "null"] {
        for partial in [false, true] {
            let out = store.commit_state(&id, bad, partial, None).unwrap();
            assert!(matches!(out, CommitOutcome::Ignored(_)), "{bad}");
        }
    }
    assert_eq!(
        store.get_state(&id).unwrap().unwrap(),
        json!({"singer_state": {"bookmarks": {"u": 1}}})
    );
    // Only the one real commit is in the event log.
    let events = store.state_events(Some(&id), 100).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, "committed");
}

/// Issue 20 (20): a tap that emits STATE all the time cannot grow the store without bound.
pub fn state_events_keep_only_the_newest_of_each_state_id(b: &dyn Backend) {
    let (_guard, store) = b.open();
    let kept = usize::try_from(dsm::store::state::STATE_EVENTS_KEPT).unwrap();
    let run = RunId::new("r1");
    let values: Vec<String> = (0..kept + 50)
        .map(|i| format!(r#"{{"bookmarks": {{"users": {{"id": {i}}}}}}}"#))
        .collect();
    // Most in batches, the last ones one at a time (a run's usual commit, which a backend may
    // make one statement of): either way exactly the newest `kept` stay.
    let (batched, single) = values.split_at(kept - 10);
    for chunk in batched.chunks(100) {
        store
            .commit_states(&sid("busy"), chunk, false, Some(&run))
            .unwrap();
    }
    for value in single {
        store
            .commit_state(&sid("busy"), value, false, Some(&run))
            .unwrap();
        let n = store
            .state_events(Some(&sid("busy")), kept * 2)
            .unwrap()
            .len();
        assert!(n <= kept, "{n} events kept after a single commit");
    }
    store
        .commit_state(&sid("quiet"), r#"{"x": 1}"#, false, Some(&run))
        .unwrap();
    let busy = store.state_events(Some(&sid("busy")), kept * 2).unwrap();
    assert_eq!(busy.len(), kept);
    // The newest are the ones kept, and other state ids keep theirs.
    let newest = busy.iter().map(|e| e.event_id).max().unwrap();
    let oldest = busy.iter().map(|e| e.event_id).min().unwrap();
    assert_eq!(newest - oldest + 1, i64::try_from(kept).unwrap());
    assert_eq!(
        store.state_events(Some(&sid("quiet")), 10).unwrap().len(),
        1
    );
    assert_eq!(
        store.get_state(&sid("busy")).unwrap().unwrap()["singer_state"]["bookmarks"]["users"]["id"],
        json!(kept + 49)
    );
}

pub fn every_change_is_an_event(b: &dyn Backend) {
    let (_guard, store) = b.open();
    let a = sid("a");
    let b = sid("b");
    let run = RunId::new("r1");
    store
        .commit_state(&a, r#"{"x":1}"#, true, Some(&run))
        .unwrap();
    store
        .write_state(
            &a,
            &json!({"singer_state": {"y": 2}}),
            true,
            StateAction::Merged,
            None,
        )
        .unwrap();
    store.copy_state(&a, &b, false).unwrap();
    store.copy_state(&b, &sid("c"), true).unwrap();
    store.clear_state(&a).unwrap();
    let events = store.state_events(None, 100).unwrap();
    let summary: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.state_id.to_string(), e.action.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            ("a", "committed"),
            ("a", "merged"),
            ("b", "copied"),
            ("c", "moved"),
            ("b", "cleared"),
            ("a", "cleared")
        ]
        .map(|(x, y)| (x.to_owned(), y.to_owned()))
    );
    assert_eq!(events[0].run_id, Some(run));
    assert_eq!(
        store.get_state(&sid("c")).unwrap().unwrap(),
        json!({"singer_state": {"x": 1, "y": 2}})
    );
    assert!(store.get_state(&b).unwrap().is_none());
}

pub fn copying_missing_state_fails_and_changes_nothing(b: &dyn Backend) {
    let (_guard, store) = b.open();
    let err = store
        .copy_state(&sid("nope"), &sid("dst"), false)
        .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(store.list_states(None).unwrap().is_empty());
}

pub fn list_filters_with_star_globs(b: &dyn Backend) {
    let (_guard, store) = b.open();
    for id in ["dev:tap-a-to-t", "dev:tap_b-to-t", "prod:tap-a-to-t"] {
        store
            .commit_state(&sid(id), r#"{"a":1}"#, false, None)
            .unwrap();
    }
    let ids = |p: Option<&str>| -> Vec<String> {
        store
            .list_states(p)
            .unwrap()
            .into_iter()
            .map(|s| s.state_id.to_string())
            .collect()
    };
    assert_eq!(ids(None).len(), 3);
    assert_eq!(ids(Some("dev:*")), ["dev:tap-a-to-t", "dev:tap_b-to-t"]);
    assert_eq!(ids(Some("*tap-a*")), ["dev:tap-a-to-t", "prod:tap-a-to-t"]);
    assert_eq!(ids(Some("dev:tap-a-to-t")), ["dev:tap-a-to-t"]);
    assert!(ids(Some("dev")).is_empty());
}

pub fn import_skips_existing_ids_unless_overwriting(b: &dyn Backend) {
    let (_guard, store) = b.open();
    store
        .commit_state(&sid("a"), r#"{"mine":1}"#, false, None)
        .unwrap();
    let rows = vec![
        StoredState {
            state_id: sid("a"),
            completed: json!({"singer_state": {"theirs": 1}}),
            partial: json!({}),
            updated_at: None,
        },
        StoredState {
            state_id: sid("b"),
            completed: json!({"singer_state": {"b": 1}}),
            partial: json!({"singer_state": {"p": 2}}),
            updated_at: None,
        },
    ];
    let report = store.import_states(&rows, false, "test").unwrap();
    assert_eq!(report.imported, [sid("b")]);
    assert_eq!(report.skipped, [sid("a")]);
    assert_eq!(
        store.get_state(&sid("a")).unwrap().unwrap(),
        json!({"singer_state": {"mine": 1}})
    );
    assert_eq!(
        store.get_state(&sid("b")).unwrap().unwrap(),
        json!({"singer_state": {"b": 1, "p": 2}})
    );
    let report = store.import_states(&rows, true, "test").unwrap();
    assert_eq!(report.imported.len(), 2);
    assert_eq!(
        store.get_state(&sid("a")).unwrap().unwrap(),
        json!({"singer_state": {"theirs": 1}})
    );
}

pub fn a_second_lock_on_a_flow_is_refused_naming_the_holder(b: &dyn Backend) {
    let (_guard, store) = b.open();
    let id = sid("dev:tap-a-to-target-b");
    let lock = store.acquire_lock(&id, None, false).unwrap();
    let err = store.acquire_lock(&id, None, false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyRunning);
    assert_eq!(err.exit_code(), 3);
    assert!(
        err.message().contains("`dev:tap-a-to-target-b`"),
        "{}",
        err.message()
    );
    assert!(
        err.message()
            .contains(&format!("pid {}", std::process::id()))
    );
    assert!(err.hints()[0].contains("--force"));
    assert!(store.heartbeat(&lock).unwrap());
    // --force takes it over; the old holder learns it lost the lock.
    let forced = store.acquire_lock(&id, None, true).unwrap();
    assert!(!store.heartbeat(&lock).unwrap());
    store.release_lock(&lock).unwrap(); // not the holder any more: no effect
    assert!(store.lock_holder(&id).unwrap().is_some());
    store.release_lock(&forced).unwrap();
    assert!(store.lock_holder(&id).unwrap().is_none());
    store.acquire_lock(&id, None, false).unwrap();
}

pub fn run_history_records_each_step(b: &dyn Backend) {
    let (_guard, store) = b.open();
    let run = store
        .begin_run(&NewRun {
            state_id: Some(sid("dev:a-to-b")),
            environment: Some("dev".into()),
            trigger: "cli".into(),
            log_path: Some("/tmp/x.log".into()),
            plugins: vec![
                PluginExit {
                    plugin: "tap-a".into(),
                    role: "extractor".into(),
                    exit_code: None,
                },
                PluginExit {
                    plugin: "target-b".into(),
                    role: "loader".into(),
                    exit_code: None,
                },
            ],
            ..NewRun::default()
        })
        .unwrap();
    let got = store.get_run(&run).unwrap().unwrap();
    assert_eq!(got.status, RunStatus::Running);
    assert_eq!(got.pid, std::process::id());
    store
        .record_stream_stats(
            &run,
            &[StreamStats {
                stream: "users".into(),
                records: 5,
                bytes: 100,
            }],
        )
        .unwrap();
    store
        .record_stream_stats(
            &run,
            &[StreamStats {
                stream: "users".into(),
                records: 9,
                bytes: 180,
            }],
        )
        .unwrap();
    store
        .finish_run(
            &run,
            &RunFinish {
                status: RunStatus::Failed,
                error: Some("extractor `tap-a` exited with status 3".into()),
                plugins: vec![
                    PluginExit {
                        plugin: "tap-a".into(),
                        role: "extractor".into(),
                        exit_code: Some(3),
                    },
                    PluginExit {
                        plugin: "target-b".into(),
                        role: "loader".into(),
                        exit_code: Some(0),
                    },
                ],
            },
        )
        .unwrap();
    // Not counted yet: unknown, not zero.
    let before = store.get_run(&run).unwrap().unwrap();
    assert_eq!(
        (before.records_sent, before.records_confirmed),
        (None, None)
    );
    store
        .record_run_counts(
            &run,
            &RunCounts {
                records_sent: 8,
                records_confirmed: 6,
            },
        )
        .unwrap();
    assert!(
        store
            .record_run_counts(&RunId::new("nope"), &RunCounts::default())
            .is_err()
    );
    let got = store.get_run(&run).unwrap().unwrap();
    assert_eq!(got.status, RunStatus::Failed);
    assert!(got.ended_at.is_some());
    assert_eq!(got.records_read, 9);
    assert_eq!(
        (got.records_sent, got.records_confirmed),
        (Some(8), Some(6))
    );
    // `dsm runs list` reads the same.
    let listed = store.list_runs(&RunFilter::default()).unwrap();
    let listed = listed.iter().find(|r| r.run_id == run).unwrap();
    assert_eq!(
        (
            listed.records_read,
            listed.records_sent,
            listed.records_confirmed
        ),
        (9, Some(8), Some(6))
    );
    assert_eq!(
        got.streams,
        [StreamStats {
            stream: "users".into(),
            records: 9,
            bytes: 180
        }]
    );
    assert_eq!(got.plugins[0].exit_code, Some(3));
    assert_eq!(got.plugins[1].exit_code, Some(0));
    assert_eq!(got.log_path.as_deref(), Some(Path::new("/tmp/x.log")));
    // Reusing a run id is refused; unknown runs are reported.
    let dup = store.begin_run(&NewRun {
        run_id: Some(run.clone()),
        trigger: "cli".into(),
        ..NewRun::default()
    });
    assert!(dup.is_err());
    assert!(
        store
            .finish_run(
                &RunId::new("nope"),
                &RunFinish {
                    status: RunStatus::Success,
                    error: None,
                    plugins: vec![]
                }
            )
            .is_err()
    );
    assert!(
        store
            .record_stream_stats(
                &RunId::new("nope"),
                &[StreamStats {
                    stream: "s".into(),
                    records: 1,
                    bytes: 1
                }]
            )
            .is_err()
    );
}

pub fn the_end_of_a_runs_log_is_kept_with_the_run(b: &dyn Backend) {
    let (_guard, store) = b.open();
    let run = store.begin_run(&NewRun::default()).unwrap();
    assert_eq!(store.run_log_tail(&run).unwrap(), None);
    store
        .record_log_tail(&run, "[tap] one\n[tap] two\n")
        .unwrap();
    assert_eq!(
        store.run_log_tail(&run).unwrap().as_deref(),
        Some("[tap] one\n[tap] two\n")
    );
    assert_eq!(store.run_log_tail(&RunId::new("nope")).unwrap(), None);
    // The host is recorded with the run.
    let host = store.get_run(&run).unwrap().unwrap().host;
    assert!(!host.is_empty());
}

pub fn settings_round_trip(b: &dyn Backend) {
    let (_guard, store) = b.open();
    assert_eq!(store.get_setting("tap-a", "start_date").unwrap(), None);
    store
        .set_setting("tap-a", "start_date", &json!("2024-01-01"))
        .unwrap();
    store.set_setting("tap-a", "limit", &json!(10)).unwrap();
    store.set_setting("tap-a", "limit", &json!(20)).unwrap();
    store.set_setting("tap-b", "limit", &json!(1)).unwrap();
    assert_eq!(
        store.get_setting("tap-a", "limit").unwrap(),
        Some(json!(20))
    );
    assert_eq!(
        store.list_settings("tap-a").unwrap(),
        [
            ("limit".to_owned(), json!(20)),
            ("start_date".to_owned(), json!("2024-01-01"))
        ]
    );
    assert!(store.unset_setting("tap-a", "limit").unwrap());
    assert!(!store.unset_setting("tap-a", "limit").unwrap());
    assert_eq!(store.get_setting("tap-a", "limit").unwrap(), None);
}

pub fn a_burst_of_states_commits_as_one_sequence_of_single_commits_would(b: &dyn Backend) {
    // Issue 3: states that queue up while dsm saves are saved in one transaction. The result
    // must be what committing them one by one gives: same payload, one event per state, and
    // the bad ones skipped.
    let burst = [
        r#"{"bookmarks":{"users":{"ts":1}}}"#,
        "{}",
        r#"{"bookmarks":{"orders":{"id":5}}}"#,
        r#"{"bookmarks":{"orders":{"id":6}}}"#,
    ];
    for partial in [false, true] {
        let (_guard, one_by_one) = b.open();
        let (_guard2, together) = b.open();
        let id = sid("dev:tap-to-target");
        for s in burst {
            one_by_one.commit_state(&id, s, partial, None).unwrap();
        }
        let values: Vec<String> = burst.iter().map(|s| (*s).to_owned()).collect();
        let outcomes = together.commit_states(&id, &values, partial, None).unwrap();
        assert_eq!(outcomes.len(), 4);
        assert!(matches!(outcomes[1], CommitOutcome::Ignored(_)));
        assert!(
            outcomes
                .iter()
                .filter(|o| matches!(o, CommitOutcome::Committed))
                .count()
                == 3
        );
        assert_eq!(
            together.get_state_row(&id).unwrap().unwrap().merged(),
            one_by_one.get_state_row(&id).unwrap().unwrap().merged()
        );
        let events = |s: &dyn Store| -> Vec<String> {
            s.state_events(Some(&id), 100)
                .unwrap()
                .into_iter()
                .map(|e| e.action)
                .collect()
        };
        assert_eq!(events(together.as_ref()), events(one_by_one.as_ref()));
        assert_eq!(events(together.as_ref()).len(), 3);
    }
}

pub fn secrets_are_stored_sealed_and_audited(b: &dyn Backend) {
    let (_guard, store) = b.open();
    assert_eq!(store.current_key().unwrap(), None);
    store.register_first_key(b"check-1").unwrap();
    store.register_first_key(b"check-2").unwrap();
    let key = store.current_key().unwrap().unwrap();
    assert_eq!(
        (key.version, key.check_value.as_slice()),
        (1, &b"check-1"[..])
    );
    let sealed = |setting: &str, byte: u8| SealedSecret {
        plugin: "tap-a".into(),
        setting: setting.into(),
        scope: None,
        key_version: 1,
        nonce: vec![byte; 12],
        ciphertext: vec![byte; 20],
    };
    let entry = |action: &'static str| {
        move |prev: &ChainLink| AuditRow {
            seq: prev.seq + 1,
            at: "2026-01-01T00:00:00.000Z".into(),
            os_user: "me".into(),
            host: "here".into(),
            command: "dsm test".into(),
            action: action.into(),
            targets: "[\"tap-a.password\"]".into(),
            mac: vec![u8::try_from(prev.seq + 1).unwrap(); 32],
            head_mac: vec![0xEE; 32],
        }
    };
    store
        .put_secret(&sealed("password", 1), "me", &entry("secret.set"))
        .unwrap();
    store
        .put_secret(&sealed("password", 2), "me", &entry("secret.set"))
        .unwrap();
    store
        .put_secret(&sealed("token", 3), "me", &entry("secret.set"))
        .unwrap();
    assert_eq!(
        store.sealed_secret("tap-a", "password", None).unwrap(),
        Some(sealed("password", 2))
    );
    assert_eq!(store.sealed_secret("tap-a", "nope", None).unwrap(), None);
    assert_eq!(
        store.sealed_secrets(Some("tap-a")).unwrap(),
        [sealed("password", 2), sealed("token", 3)]
    );
    assert!(store.sealed_secrets(Some("tap-b")).unwrap().is_empty());
    let infos = store.secret_infos().unwrap();
    assert_eq!(infos.len(), 2);
    assert_eq!(
        (infos[0].setting.as_str(), infos[0].updated_by.as_str()),
        ("password", "me")
    );
    assert!(
        store
            .delete_secret("tap-a", "token", None, &entry("secret.unset"))
            .unwrap()
    );
    assert!(
        !store
            .delete_secret("tap-a", "token", None, &entry("secret.unset"))
            .unwrap()
    );
    // Every change and only changes were audited, chained in order.
    let rows = store.audit_rows(None).unwrap();
    let actions: Vec<(i64, &str)> = rows.iter().map(|r| (r.seq, r.action.as_str())).collect();
    assert_eq!(
        actions,
        [
            (1, "secret.set"),
            (2, "secret.set"),
            (3, "secret.set"),
            (4, "secret.unset")
        ]
    );
    // A rotation that fails changes nothing.
    let failed = store.rotate_secrets(&mut |_| Err(dsm::error::Error::failed("no")));
    assert!(failed.is_err());
    assert_eq!(store.current_key().unwrap().unwrap().version, 1);
    assert_eq!(store.sealed_secrets(None).unwrap(), [sealed("password", 2)]);
    // A rotation replaces values, MACs and the key, and appends its entry, together.
    let n = store
        .rotate_secrets(&mut |input| {
            assert_eq!(input.secrets, [sealed("password", 2)]);
            assert_eq!(input.chain.rows.len(), 4);
            let mut s = sealed("password", 9);
            s.key_version = 2;
            Ok(dsm::store::secrets::Rotation {
                secrets: vec![s],
                key: dsm::store::secrets::KeyCheck {
                    version: 2,
                    check_value: b"check-2".to_vec(),
                },
                chain: dsm::store::audit::Rekeyed {
                    anchor_mac: None,
                    macs: input
                        .chain
                        .rows
                        .iter()
                        .map(|r| (r.seq, vec![7; 32]))
                        .collect(),
                },
                entry: entry("secrets.rotate")(&ChainLink {
                    seq: 4,
                    mac: vec![7; 32],
                }),
            })
        })
        .unwrap();
    assert_eq!(n, 1);
    let key = store.current_key().unwrap().unwrap();
    assert_eq!(
        (key.version, key.check_value.as_slice()),
        (2, &b"check-2"[..])
    );
    assert_eq!(
        store
            .sealed_secret("tap-a", "password", None)
            .unwrap()
            .unwrap()
            .nonce,
        vec![9; 12]
    );
    let rows = store.audit_rows(None).unwrap();
    assert_eq!(rows.len(), 5);
    assert!(rows[..4].iter().all(|r| r.mac == vec![7; 32]));
    assert_eq!(rows[4].action, "secrets.rotate");
}

pub fn the_audit_chain_appends_and_prunes_in_one_transaction(b: &dyn Backend) {
    let (_guard, store) = b.open();
    let at = |day: u32| format!("2026-01-{day:02}T00:00:00.000Z");
    let entry = |day: u32| {
        let at = at(day);
        move |prev: &ChainLink| AuditRow {
            seq: prev.seq + 1,
            at: at.clone(),
            os_user: "me".into(),
            host: "here".into(),
            command: "dsm test".into(),
            action: "config.set".into(),
            targets: "[]".into(),
            mac: vec![u8::try_from(prev.seq + 1).unwrap(); 32],
            head_mac: vec![0xEE; 32],
        }
    };
    for day in 1..=4 {
        let head = store.append_audit(&entry(day)).unwrap();
        assert_eq!(head.seq, i64::from(day));
    }
    assert_eq!(store.audit_rows(Some(&at(3))).unwrap().len(), 2);
    let chain = store.audit_chain().unwrap();
    assert!(chain.anchor.is_none());
    assert_eq!(chain.rows.len(), 4);
    let RecordedHead::At(head) = &chain.head else {
        panic!("no recorded head: {:?}", chain.head);
    };
    // The head keeps the entry's head MAC, not the entry's MAC.
    assert_eq!((head.seq, head.mac.as_slice()), (4, &[0xEE; 32][..]));
    // Nothing older than the first entry: nothing changes.
    let none = store
        .prune_audit(&at(1), &|_| vec![0; 32], &|_, _| unreachable!())
        .unwrap();
    assert_eq!(none, 0);
    let removed = store
        .prune_audit(
            &at(3),
            &|link| vec![link.seq as u8; 32],
            &|prev, boundary| {
                assert_eq!((prev.seq, boundary.seq), (4, 2));
                entry(5)(prev)
            },
        )
        .unwrap();
    assert_eq!(removed, 2);
    let chain = store.audit_chain().unwrap();
    let anchor = chain.anchor.unwrap();
    assert_eq!(
        (anchor.seq, anchor.mac.clone(), anchor.anchor_mac),
        (2, vec![2; 32], vec![2; 32])
    );
    let seqs: Vec<i64> = chain.rows.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [3, 4, 5]);
}

/// Two writers with connections of their own (two hosts) append to one chain at once, each
/// entry's MAC made from its predecessor's as the real chain does: every entry lands, numbered
/// without gaps or twins, and each one chains from the entry before it (no fork).
pub fn concurrent_audit_appends_never_fork_the_chain(b: &dyn Backend) {
    use sha2::{Digest, Sha256};
    let (guard, first) = b.open();
    let second = b.reopen(guard.as_ref());
    let mac = |prev: &[u8], seq: i64, writer: &str| -> Vec<u8> {
        let mut h = Sha256::new();
        h.update(prev);
        h.update(seq.to_le_bytes());
        h.update(writer.as_bytes());
        h.finalize().to_vec()
    };
    const EACH: usize = 40;
    std::thread::scope(|scope| {
        for (writer, store) in [("one", &first), ("two", &second)] {
            scope.spawn(move || {
                for _ in 0..EACH {
                    store
                        .append_audit(&|prev: &ChainLink| AuditRow {
                            seq: prev.seq + 1,
                            at: "2026-01-01T00:00:00.000Z".into(),
                            os_user: "me".into(),
                            host: writer.into(),
                            command: "dsm test".into(),
                            action: "config.set".into(),
                            targets: "[]".into(),
                            mac: mac(&prev.mac, prev.seq + 1, writer),
                            head_mac: head_of(&mac(&prev.mac, prev.seq + 1, writer)),
                        })
                        .unwrap();
                }
            });
        }
    });
    let chain = first.audit_chain().unwrap();
    assert_eq!(chain.rows.len(), 2 * EACH);
    let mut prev: Vec<u8> = Vec::new();
    for (i, row) in chain.rows.iter().enumerate() {
        assert_eq!(row.seq, i as i64 + 1);
        assert_eq!(
            row.mac,
            mac(&prev, row.seq, &row.host),
            "entry {} forks",
            row.seq
        );
        prev = row.mac.clone();
    }
    for writer in ["one", "two"] {
        assert_eq!(chain.rows.iter().filter(|r| r.host == writer).count(), EACH);
    }
    // The recorded head names a real entry (SQLite writes its head file after committing, so
    // under a race it may name an earlier one).
    if let RecordedHead::At(head) = &chain.head {
        let row = &chain.rows[usize::try_from(head.seq).unwrap() - 1];
        assert_eq!(head_of(&row.mac), head.mac);
    }
}

/// What the concurrent writers record as each entry's head MAC (the store keeps it as given).
fn head_of(mac: &[u8]) -> Vec<u8> {
    mac.iter().rev().copied().collect()
}

pub fn config_versions_number_and_restore(b: &dyn Backend) {
    let (_guard, store) = b.open();
    assert_eq!(store.latest_config_version("tap-a").unwrap(), None);
    let row = |action: &str, hash: &str| ConfigVersionRow {
        plugin: "tap-a".into(),
        plugin_type: Some("extractors".into()),
        at: "2026-01-01T00:00:00.000Z".into(),
        os_user: "me".into(),
        command: "dsm config set".into(),
        action: action.into(),
        yml: "{}".into(),
        yml_hash: hash.into(),
        stored: "{}".into(),
        sealed: "[]".into(),
        environment: Some("dev".into()),
        file_text: Some("version: 1\n".into()),
        ..ConfigVersionRow::default()
    };
    assert_eq!(
        store.record_config_version(&row("baseline", "h1")).unwrap(),
        1
    );
    assert_eq!(store.record_config_version(&row("set", "h2")).unwrap(), 2);
    assert_eq!(
        store.latest_config_version("tap-a").unwrap(),
        Some((2, "h2".to_owned()))
    );
    let versions = store.config_versions("tap-a").unwrap();
    let summary: Vec<(i64, &str, Option<&str>)> = versions
        .iter()
        .map(|v| (v.version, v.action.as_str(), v.environment.as_deref()))
        .collect();
    assert_eq!(
        summary,
        [(1, "baseline", Some("dev")), (2, "set", Some("dev"))]
    );
    let one = store.config_version("tap-a", 1).unwrap().unwrap();
    assert_eq!(one.file_text.as_deref(), Some("version: 1\n"));
    assert!(store.config_version("tap-a", 3).unwrap().is_none());
    // A restore replaces the plugin's stored values and secrets, and nothing else.
    store
        .set_setting("extractors.tap-a.default", "old", &json!(1))
        .unwrap();
    store
        .set_setting("extractors.tap-b.default", "keep", &json!(2))
        .unwrap();
    let secret = SealedSecret {
        plugin: "tap-a".into(),
        setting: "password".into(),
        scope: None,
        key_version: 1,
        nonce: vec![1; 12],
        ciphertext: vec![2; 20],
    };
    store
        .restore_config(&ConfigRestore {
            namespace: Some("extractors.tap-a.default"),
            values: &[("limit".to_owned(), "20".to_owned())],
            plugin: "tap-a",
            secrets: std::slice::from_ref(&secret),
            updated_by: "me",
        })
        .unwrap();
    assert_eq!(
        store.list_settings("extractors.tap-a.default").unwrap(),
        [("limit".to_owned(), json!(20))]
    );
    assert_eq!(
        store.raw_settings("extractors.tap-b.default").unwrap(),
        [("keep".to_owned(), "2".to_owned())]
    );
    assert_eq!(store.sealed_secrets(Some("tap-a")).unwrap(), [secret]);
    assert_eq!(store.clear_settings("extractors.tap-a.default").unwrap(), 1);
    assert!(
        store
            .list_settings("extractors.tap-a.default")
            .unwrap()
            .is_empty()
    );
}

pub fn source_status_is_a_history(b: &dyn Backend) {
    let (_guard, store) = b.open();
    let change = |source: &str, status: &str, minute: u32| SourceStatusChange {
        source: source.into(),
        status: status.into(),
        reason: Some("why".into()),
        user: None,
        origin: "operator".into(),
        at: format!("2026-01-01T00:{minute:02}:00Z").parse().unwrap(),
    };
    store
        .record_source_status(&change("tap-a", "inactive", 1))
        .unwrap();
    store
        .record_source_status(&change("tap-b", "maintenance", 2))
        .unwrap();
    store
        .record_source_status(&change("tap-a", "active", 3))
        .unwrap();
    let a = store.source_status_history(Some("tap-a"), 10).unwrap();
    assert_eq!(
        a,
        [change("tap-a", "active", 3), change("tap-a", "inactive", 1)]
    );
    assert_eq!(store.source_status_history(None, 2).unwrap().len(), 2);
}

pub fn tokens_round_trip(b: &dyn Backend) {
    let (_guard, store) = b.open();
    let token = NewToken {
        name: "ci".into(),
        role: Role::Operator,
        organisation: None,
        token_hash: vec![1; 32],
        expires_at: None,
        created_by: "me".into(),
    };
    let made = store.create_token(&token).unwrap();
    assert_eq!((made.name.as_str(), made.role), ("ci", Role::Operator));
    assert!(store.create_token(&token).is_err(), "names are unique");
    let at = "2026-01-01T00:00:00Z".parse().unwrap();
    store.touch_token("ci", at).unwrap();
    let listed = store.list_tokens().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_used_at, Some(at));
    assert_eq!(listed[0].token_hash, vec![1; 32]);
    assert!(store.revoke_token("ci").unwrap());
    assert!(!store.revoke_token("ci").unwrap());
    assert!(store.list_tokens().unwrap().is_empty());
    // Every role is kept, those of source requests too.
    for (i, role) in [Role::Requester, Role::Approver].into_iter().enumerate() {
        let made = store
            .create_token(&NewToken {
                name: format!("r{i}"),
                role,
                organisation: Some("uni".into()),
                token_hash: vec![u8::try_from(i + 2).unwrap(); 32],
                ..token.clone()
            })
            .unwrap();
        assert_eq!(made.role, role);
    }
    assert_eq!(store.list_tokens().unwrap().len(), 2);
}

/// One lock design on every backend: a lock whose holder stops renewing it lapses; the next
/// taker gets it, the old holder's heartbeat says it lost it, and the old run can no longer
/// commit state (its commits fail with `lease lost`), while the new holder's do.
pub fn a_lapsed_lock_is_taken_over_and_fences_out_its_old_holder(b: &dyn Backend) {
    let (_guard, store) = b.open_leased(Duration::from_millis(500));
    let id = sid("dev:tap-a-to-target-b");
    let (first, second) = (RunId::generate(), RunId::generate());
    let old = store.acquire_lock(&id, Some(&first), false).unwrap();
    store
        .commit_state(&id, r#"{"n":1}"#, false, Some(&first))
        .unwrap();
    // Renewed, it stays held.
    std::thread::sleep(Duration::from_millis(300));
    assert!(store.heartbeat(&old).unwrap());
    std::thread::sleep(Duration::from_millis(300));
    let err = store.acquire_lock(&id, Some(&second), false).unwrap_err();
    assert_eq!(err.exit_code(), 3, "{}", err.message());
    // Not renewed for longer than the expiry: the next run takes it.
    std::thread::sleep(Duration::from_millis(900));
    let new = store.acquire_lock(&id, Some(&second), false).unwrap();
    assert!(!store.heartbeat(&old).unwrap());
    let err = store
        .commit_state(&id, r#"{"n":0}"#, false, Some(&first))
        .unwrap_err();
    assert!(err.message().contains("lease lost"), "{}", err.message());
    let err = store
        .commit_states(&id, &[r#"{"n":0}"#.to_owned()], true, Some(&first))
        .unwrap_err();
    assert!(err.message().contains("lease lost"), "{}", err.message());
    // The fenced commits wrote nothing: neither the state nor an event.
    assert_eq!(
        store.get_state(&id).unwrap().unwrap(),
        json!({"singer_state": {"n": 1}})
    );
    assert_eq!(store.state_events(Some(&id), 10).unwrap().len(), 1);
    store
        .commit_state(&id, r#"{"n":2}"#, false, Some(&second))
        .unwrap();
    assert_eq!(
        store.get_state(&id).unwrap().unwrap(),
        json!({"singer_state": {"n": 2}})
    );
    // The old holder's release changes nothing.
    store.release_lock(&old).unwrap();
    let holder = store.lock_holder(&id).unwrap().unwrap();
    assert_eq!(holder.run_id, Some(second.clone()));
    assert!(!holder.stale);
    store.release_lock(&new).unwrap();
    assert!(store.lock_holder(&id).unwrap().is_none());
}

pub fn webhook_events_are_deduplicated_consumed_in_order_replayed_and_bounded(b: &dyn Backend) {
    let (_guard, store) = b.open();
    let roomy = WebhookLimits {
        max_events: 100,
        max_bytes: 1 << 20,
    };
    let at: chrono::DateTime<chrono::Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let event = |source: &str, id: Option<&str>, payload: &str| NewWebhookEvent {
        source: source.into(),
        event_id: id.map(str::to_owned),
        payload: payload.into(),
        received_at: at,
    };
    let stored = |r: Received| match r {
        Received::Stored(e) => e,
        other => panic!("not stored: {other:?}"),
    };
    let a = stored(
        store
            .receive_webhook(&event("hooks", Some("e1"), r#"{"n":1}"#), &roomy)
            .unwrap(),
    );
    let b2 = stored(
        store
            .receive_webhook(&event("hooks", None, r#"{"n":2}"#), &roomy)
            .unwrap(),
    );
    // Another source's events and event ids are its own.
    stored(
        store
            .receive_webhook(&event("other", Some("e1"), "{}"), &roomy)
            .unwrap(),
    );
    match store
        .receive_webhook(&event("hooks", Some("e1"), r#"{"n":9}"#), &roomy)
        .unwrap()
    {
        Received::Duplicate(e) => assert_eq!(e.id, a.id),
        other => panic!("not a duplicate: {other:?}"),
    }
    assert!(a.seq < b2.seq && a.received_at == at && a.size == 7);
    let shown = store.webhook_event("hooks", a.id).unwrap().unwrap();
    assert_eq!(
        shown.payload.as_deref(),
        Some(r#"{"n":1}"#),
        "the first payload is kept"
    );
    assert_eq!(store.webhook_event("other", a.id).unwrap(), None);

    // A run confirmed the first event; one more arrives meanwhile.
    assert_eq!(store.consume_webhooks("hooks", a.seq, at).unwrap(), 1);
    let c = stored(
        store
            .receive_webhook(&event("hooks", None, r#"{"n":3}"#), &roomy)
            .unwrap(),
    );
    let pending: Vec<i64> = store
        .pending_webhooks("hooks", i64::MIN, 10)
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(pending, [b2.id, c.id]);
    assert!(
        store.pending_webhooks("hooks", i64::MIN, 10).unwrap()[0]
            .payload
            .is_some()
    );
    let counts = store.webhook_counts("hooks").unwrap();
    assert_eq!((counts.pending, counts.consumed), (2, 1));

    // Replay gives the consumed event a number past every other.
    assert_eq!(
        store
            .replay_webhooks("hooks", Some(&[a.id, c.id, 999]))
            .unwrap(),
        [a.id]
    );
    let again = store.webhook_event("hooks", a.id).unwrap().unwrap();
    assert!(again.consumed_at.is_none() && again.seq > c.seq);
    let order: Vec<i64> = store
        .webhook_events("hooks", i64::MIN, false, 10)
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(order, [b2.id, c.id, a.id]);

    // Retention deletes consumed events only.
    store.consume_webhooks("hooks", c.seq, at).unwrap();
    let later: chrono::DateTime<chrono::Utc> = "2026-02-01T00:00:00Z".parse().unwrap();
    assert_eq!(store.prune_webhooks("hooks", later).unwrap(), 2);
    let left: Vec<i64> = store
        .webhook_events("hooks", i64::MIN, false, 10)
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, [a.id]);

    // Bounds: consumed events make room, pending ones never do.
    let tight = WebhookLimits {
        max_events: 2,
        max_bytes: 1 << 20,
    };
    stored(
        store
            .receive_webhook(&event("hooks", None, "[1]"), &tight)
            .unwrap(),
    );
    match store
        .receive_webhook(&event("hooks", None, "[2]"), &tight)
        .unwrap()
    {
        Received::Full { pending, .. } => assert_eq!(pending, 2),
        other => panic!("not refused: {other:?}"),
    }
    let last_seq = store
        .webhook_events("hooks", i64::MIN, false, 10)
        .unwrap()
        .last()
        .unwrap()
        .seq;
    store.consume_webhooks("hooks", last_seq, at).unwrap();
    stored(
        store
            .receive_webhook(&event("hooks", None, "[3]"), &tight)
            .unwrap(),
    );
    assert_eq!(store.webhook_counts("hooks").unwrap().pending, 1);
    let small = WebhookLimits {
        max_events: 100,
        max_bytes: 10,
    };
    assert!(matches!(
        store
            .receive_webhook(&event("hooks", None, r#"{"too":"long"}"#), &small)
            .unwrap(),
        Received::Full { .. }
    ));
    // The counts follow every insert, consumption, replay and deletion.
    let all = store.webhook_events("hooks", i64::MIN, false, 100).unwrap();
    let counts = store.webhook_counts("hooks").unwrap();
    let pending = all.iter().filter(|e| e.consumed_at.is_none()).count() as u64;
    assert_eq!(counts.pending, pending);
    assert_eq!(counts.consumed, all.len() as u64 - pending);
    assert_eq!(counts.bytes, all.iter().map(|e| e.size).sum::<u64>());
    assert_eq!(store.webhook_counts("nobody").unwrap(), Default::default());
}

fn delivery(id: &str, attempt: u32, secs_ago: i64) -> dsm::store::DeliveryAttempt {
    dsm::store::DeliveryAttempt {
        delivery_id: id.into(),
        event: "source_error".into(),
        source: Some("tap-a".into()),
        receiver: "notifications[0] webhook https://h.example".into(),
        attempt,
        at: chrono::Utc::now() - chrono::TimeDelta::try_seconds(secs_ago).unwrap(),
        outcome: if attempt == 5 {
            dsm::store::DeliveryOutcome::Failed
        } else {
            dsm::store::DeliveryOutcome::Retrying
        },
        detail: Some("HTTP 500".into()),
    }
}

pub fn notification_deliveries_are_kept_in_order_and_bounded(b: &dyn Backend) {
    let (_guard, store) = b.open();
    let keep = dsm::store::DeliveryRetention {
        max_age: chrono::TimeDelta::try_days(1).unwrap(),
        max_attempts: 3,
    };
    for (i, attempt) in (1..=5).enumerate() {
        store
            .record_delivery(&delivery("d1", attempt, 100 - i as i64), keep)
            .unwrap();
    }
    let since = chrono::Utc::now() - chrono::TimeDelta::try_hours(1).unwrap();
    let kept = store.deliveries_since(since).unwrap();
    // The newest 3, oldest first, as recorded.
    assert_eq!(
        kept.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        [3, 4, 5]
    );
    assert_eq!(kept[2], delivery("d1", 5, 96).clone_with_time(kept[2].at));
    // Older than `max_age`: gone once anything is recorded.
    store
        .record_delivery(&delivery("old", 1, 2 * 86_400), keep)
        .unwrap();
    store.record_delivery(&delivery("d2", 1, 0), keep).unwrap();
    let all = store
        .deliveries_since(chrono::DateTime::<chrono::Utc>::MIN_UTC)
        .unwrap();
    assert!(all.iter().all(|a| a.delivery_id != "old"), "{all:?}");
    assert_eq!(all.last().unwrap().delivery_id, "d2");
}

trait WithTime {
    fn clone_with_time(self, at: chrono::DateTime<chrono::Utc>) -> Self;
}

impl WithTime for dsm::store::DeliveryAttempt {
    fn clone_with_time(mut self, at: chrono::DateTime<chrono::Utc>) -> Self {
        self.at = at;
        self
    }
}
/// Source requests: created with their sealed secrets and an audit entry in one transaction;
/// each transition is recorded only from the status it expects; approval moves the secrets;
/// pruning removes old rejected requests with their secrets.
pub fn source_requests_record_every_transition_with_their_secrets_and_audit(b: &dyn Backend) {
    use dsm::store::requests::{
        NewRequest, RequestFilter, RequestRevision, RequestStatus, RequestUpdate, Transition,
        secret_owner,
    };
    let (_guard, store) = b.open();
    let entry = |action: &'static str| {
        move |prev: &ChainLink| AuditRow {
            seq: prev.seq + 1,
            at: "2026-01-01T00:00:00.000Z".into(),
            os_user: "me".into(),
            host: "here".into(),
            command: "dsm requests".into(),
            action: action.into(),
            targets: "[]".into(),
            mac: vec![u8::try_from(prev.seq + 1).unwrap(); 32],
            head_mac: vec![0xEE; 32],
        }
    };
    let sealed = |plugin: &str, byte: u8| SealedSecret {
        plugin: plugin.into(),
        setting: "password".into(),
        scope: None,
        key_version: 1,
        nonce: vec![byte; 12],
        ciphertext: vec![byte; 20],
    };
    let transition = |action: &str, status, at: &str| Transition {
        at: at.into(),
        actor: "token:alice".into(),
        action: action.into(),
        status,
        reason: None,
    };
    let new = |id: &str, name: &str| NewRequest {
        id: id.into(),
        organisation: Some("uni".into()),
        requester: "token:alice".into(),
        request: RequestRevision {
            name: name.into(),
            template: Some("tap-csv".into()),
            plugin: None,
            config: serde_json::Map::new(),
            secrets: vec!["password".into()],
            classification: "public".into(),
            description: Some("people".into()),
            notes: None,
        },
        submitted: transition(
            "submitted",
            RequestStatus::Pending,
            "2026-01-01T00:00:00.000Z",
        ),
    };
    let a = "00000000-0000-4000-8000-00000000000a";
    let z = "00000000-0000-4000-8000-00000000000b";
    store
        .create_request(
            &new(a, "tap-a"),
            &[sealed(&secret_owner(a), 1)],
            &entry("request.submit"),
        )
        .unwrap();
    store
        .create_request(
            &new(z, "tap-z"),
            &[sealed(&secret_owner(z), 2)],
            &entry("request.submit"),
        )
        .unwrap();
    assert!(
        store
            .create_request(
                &new("x", "tap-x"),
                &[sealed("tap-x", 3)],
                &entry("request.submit")
            )
            .is_err(),
        "a request's secrets are its own"
    );
    let got = store.request(a).unwrap().unwrap();
    assert_eq!(got.status, RequestStatus::Pending);
    assert_eq!(got.history.len(), 1);
    assert_eq!(got.request.name, "tap-a");
    assert_eq!(store.request("nope").unwrap(), None);
    let all = store
        .list_requests(&RequestFilter {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(all.len(), 2);
    let limited = store
        .list_requests(&RequestFilter {
            limit: 1,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(limited.len(), 1);

    // Rejecting `z`; a second decision expecting `pending` writes nothing.
    let reject = RequestUpdate {
        id: z.into(),
        expected: RequestStatus::Pending,
        transition: Transition {
            reason: Some("why".into()),
            ..transition(
                "rejected",
                RequestStatus::Rejected,
                "2026-01-02T00:00:00.000Z",
            )
        },
        revision: None,
        test: None,
        reason: Some(Some("why".into())),
        destroy_secrets: false,
        put_secrets: Vec::new(),
    };
    assert!(
        store
            .update_request(&reject, &entry("request.reject"))
            .unwrap()
    );
    assert!(
        !store
            .update_request(&reject, &entry("request.reject"))
            .unwrap()
    );
    let z_now = store.request(z).unwrap().unwrap();
    assert_eq!(
        (z_now.status, z_now.reason.as_deref()),
        (RequestStatus::Rejected, Some("why"))
    );
    assert_eq!(z_now.history.len(), 2);
    let rejected = store
        .list_requests(&RequestFilter {
            status: Some(RequestStatus::Rejected),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(rejected.len(), 1);

    // Approving `a` moves its secret to the source.
    let approve = RequestUpdate {
        id: a.into(),
        expected: RequestStatus::Pending,
        transition: transition(
            "approved",
            RequestStatus::Approved,
            "2026-01-02T00:00:00.000Z",
        ),
        revision: None,
        test: Some(json!({"succeeded": true})),
        reason: None,
        destroy_secrets: true,
        put_secrets: vec![sealed("tap-a", 9)],
    };
    assert!(
        store
            .update_request(&approve, &entry("request.approve"))
            .unwrap()
    );
    assert!(
        store
            .sealed_secrets(Some(&secret_owner(a)))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.sealed_secrets(Some("tap-a")).unwrap(),
        [sealed("tap-a", 9)]
    );
    assert_eq!(
        store.request(a).unwrap().unwrap().test,
        Some(json!({"succeeded": true}))
    );

    // Pruning takes the rejected request older than the cut with its secret, not the approved.
    let none = store
        .prune_requests("2026-01-01T12:00:00.000Z", &|prev, _| {
            entry("request.expire")(prev)
        })
        .unwrap();
    assert!(none.is_empty());
    let pruned = store
        .prune_requests("2026-02-01T00:00:00.000Z", &|prev, _| {
            entry("request.expire")(prev)
        })
        .unwrap();
    assert_eq!(pruned, [z.to_owned()]);
    assert_eq!(store.request(z).unwrap(), None);
    assert!(
        store
            .sealed_secrets(Some(&secret_owner(z)))
            .unwrap()
            .is_empty()
    );
    assert!(store.request(a).unwrap().is_some());
    let actions: Vec<String> = store
        .audit_rows(None)
        .unwrap()
        .into_iter()
        .map(|r| r.action)
        .collect();
    assert_eq!(
        actions,
        [
            "request.submit",
            "request.submit",
            "request.reject",
            "request.approve",
            "request.expire"
        ]
    );
}

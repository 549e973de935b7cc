use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::error::ErrorKind;

fn open() -> (tempfile::TempDir, SqliteStore) {
    let tmp = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&tmp.path().join(".dsm/dsm.db")).unwrap();
    (tmp, store)
}

fn sid(s: &str) -> StateId {
    StateId::new(s)
}

#[test]
fn opening_creates_the_file_in_wal_mode_at_the_latest_version() {
    let (tmp, store) = open();
    assert!(tmp.path().join(".dsm/dsm.db").is_file());
    assert_eq!(store.schema_version().unwrap(), latest_version());
    let mode: String = store
        .read(|c| Ok(c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(mode, "wal");
    drop(store);
    // Reopening does not re-run migrations.
    let again = SqliteStore::open(&tmp.path().join(".dsm/dsm.db")).unwrap();
    assert_eq!(again.schema_version().unwrap(), latest_version());
}

#[test]
fn a_database_newer_than_the_binary_is_refused_with_a_hint() {
    let (tmp, store) = open();
    store
        .write(|tx| {
            tx.execute(
                "INSERT INTO dsm_schema_migrations VALUES (99, 'future', '2099-01-01T00:00:00.000Z')",
                [],
            )?;
            Ok(())
        })
        .unwrap();
    drop(store);
    let err = SqliteStore::open(&tmp.path().join(".dsm/dsm.db")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.message().contains("schema version 99"),
        "{}",
        err.message()
    );
    assert!(err.hints()[0].contains("upgrade dsm"));
}

#[test]
fn meltanos_database_is_never_migrated() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("meltano.db");
    let c = Connection::open(&path).unwrap();
    c.execute_batch("CREATE TABLE alembic_version (version_num TEXT)")
        .unwrap();
    drop(c);
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(err.message().contains("Meltano's system database"));
    let c = Connection::open(&path).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1, "nothing was created in Meltano's database");
}

#[test]
fn commits_follow_meltanos_partial_and_complete_rules() {
    let (_tmp, store) = open();
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

#[test]
fn empty_or_invalid_state_never_overwrites_a_bookmark() {
    let (_tmp, store) = open();
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

#[test]
fn every_change_is_an_event() {
    let (_tmp, store) = open();
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

#[test]
fn copying_missing_state_fails_and_changes_nothing() {
    let (_tmp, store) = open();
    let err = store
        .copy_state(&sid("nope"), &sid("dst"), false)
        .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(store.list_states(None).unwrap().is_empty());
}

#[test]
fn list_filters_with_star_globs() {
    let (_tmp, store) = open();
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
    assert!(glob_match("a*b*c", "axxbyyc"));
    assert!(!glob_match("a*b*c", "axxcyyb"));
    assert!(!glob_match("ab*ba", "aba"));
}

#[test]
fn import_skips_existing_ids_unless_overwriting() {
    let (_tmp, store) = open();
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

#[test]
fn a_second_lock_on_a_flow_is_refused_naming_the_holder() {
    let (_tmp, store) = open();
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

#[test]
fn a_lock_with_an_old_heartbeat_or_a_dead_pid_is_taken() {
    let (_tmp, store) = open();
    let id = sid("f");
    store.acquire_lock(&id, None, false).unwrap();
    store
        .write(|tx| {
            tx.execute(
                "UPDATE flow_locks SET heartbeat_at = '2000-01-01T00:00:00.000Z'",
                [],
            )?;
            Ok(())
        })
        .unwrap();
    assert!(store.lock_holder(&id).unwrap().unwrap().stale);
    store.acquire_lock(&id, None, false).unwrap();

    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    store
        .write(|tx| {
            tx.execute("UPDATE flow_locks SET pid = ?1", [dead])?;
            Ok(())
        })
        .unwrap();
    assert!(store.lock_holder(&id).unwrap().unwrap().stale);
    store.acquire_lock(&id, None, false).unwrap();
}

#[test]
fn run_history_records_each_step() {
    let (_tmp, store) = open();
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
    let got = store.get_run(&run).unwrap().unwrap();
    assert_eq!(got.status, RunStatus::Failed);
    assert!(got.ended_at.is_some());
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

#[test]
fn a_running_run_whose_process_died_reads_as_killed() {
    let (_tmp, store) = open();
    let live = store
        .begin_run(&NewRun {
            trigger: "cli".into(),
            ..NewRun::default()
        })
        .unwrap();
    let dead = store
        .begin_run(&NewRun {
            trigger: "cli".into(),
            ..NewRun::default()
        })
        .unwrap();
    let old = store
        .begin_run(&NewRun {
            trigger: "cli".into(),
            ..NewRun::default()
        })
        .unwrap();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    store
        .write(|tx| {
            tx.execute(
                "UPDATE runs SET pid = ?1 WHERE run_id = ?2",
                params![pid, dead.as_str()],
            )?;
            tx.execute(
                "UPDATE runs SET heartbeat_at = '2000-01-01T00:00:00.000Z' WHERE run_id = ?1",
                [old.as_str()],
            )?;
            Ok(())
        })
        .unwrap();
    assert_eq!(
        store.get_run(&live).unwrap().unwrap().status,
        RunStatus::Running
    );
    assert_eq!(
        store.get_run(&dead).unwrap().unwrap().status,
        RunStatus::Killed
    );
    assert_eq!(
        store.get_run(&old).unwrap().unwrap().status,
        RunStatus::Killed
    );
    let killed = store
        .list_runs(&RunFilter {
            status: Some(RunStatus::Killed),
            ..RunFilter::default()
        })
        .unwrap();
    assert_eq!(killed.len(), 2);
    let running = store
        .list_runs(&RunFilter {
            status: Some(RunStatus::Running),
            ..RunFilter::default()
        })
        .unwrap();
    assert_eq!(
        running.iter().map(|r| r.run_id.clone()).collect::<Vec<_>>(),
        [live]
    );
    let limited = store
        .list_runs(&RunFilter {
            limit: Some(2),
            ..RunFilter::default()
        })
        .unwrap();
    assert_eq!(limited.len(), 2);
    // Newest first.
    assert_eq!(limited[0].run_id, old);
}

#[test]
fn settings_round_trip() {
    let (_tmp, store) = open();
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

#[test]
fn threads_share_one_store_handle() {
    let (_tmp, store) = open();
    let store: Arc<dyn Store> = Arc::new(store);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..25 {
                    store
                        .commit_state(&sid("shared"), &format!(r#"{{"t{t}":{i}}}"#), true, None)
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let state = store.get_state(&sid("shared")).unwrap().unwrap();
    for t in 0..4 {
        assert_eq!(state["singer_state"][format!("t{t}")], json!(24));
    }
    assert_eq!(store.state_events(None, 1000).unwrap().len(), 100);
}

#[test]
fn database_uris_and_paths() {
    let base = Path::new("/proj");
    assert_eq!(
        crate::store::parse_uri("sqlite:////abs/x.db", base).unwrap(),
        Path::new("//abs/x.db")
    );
    assert_eq!(
        crate::store::parse_uri("sqlite:///abs/x.db", base).unwrap(),
        Path::new("/abs/x.db")
    );
    assert_eq!(
        crate::store::parse_uri("rel/x.db", base).unwrap(),
        Path::new("/proj/rel/x.db")
    );
    let err = crate::store::parse_uri("postgresql://u@h/db", base).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.hints()[0].contains("SQLite"));
}

#[test]
fn the_handle_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SqliteStore>();
    assert_send_sync::<Arc<dyn Store>>();
}

#[test]
fn the_heartbeat_thread_keeps_a_lock_fresh_and_stops_on_drop() {
    let (_tmp, store) = open();
    let store: Arc<dyn Store> = Arc::new(store.with_stale_after(Duration::from_secs(1)));
    let id = sid("dev:hb");
    let run = store
        .begin_run(&NewRun {
            state_id: Some(id.clone()),
            trigger: "cli".into(),
            ..NewRun::default()
        })
        .unwrap();
    let lock = store.acquire_lock(&id, Some(&run), false).unwrap();
    let beat = crate::store::HeartbeatThread::start(
        Arc::clone(&store),
        Some(lock.clone()),
        None,
        Duration::from_millis(50),
    );
    std::thread::sleep(Duration::from_millis(1500));
    // Without the thread both would be stale after 1s.
    assert!(!store.lock_holder(&id).unwrap().unwrap().stale);
    assert_eq!(
        store.get_run(&run).unwrap().unwrap().status,
        RunStatus::Running
    );
    drop(beat);
    std::thread::sleep(Duration::from_millis(1200));
    assert!(store.lock_holder(&id).unwrap().unwrap().stale);
    assert_eq!(
        store.get_run(&run).unwrap().unwrap().status,
        RunStatus::Killed
    );
}

#[test]
fn the_heartbeat_thread_keeps_a_run_without_a_lock_alive() {
    let (_tmp, store) = open();
    let store: Arc<dyn Store> = Arc::new(store.with_stale_after(Duration::from_secs(1)));
    let run = store
        .begin_run(&NewRun {
            trigger: "cli".into(),
            ..NewRun::default()
        })
        .unwrap();
    let beat = crate::store::HeartbeatThread::start(
        Arc::clone(&store),
        None,
        Some(run.clone()),
        Duration::from_millis(50),
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        store.get_run(&run).unwrap().unwrap().status,
        RunStatus::Running
    );
    drop(beat);
}

/// `PRAGMA synchronous` of the store's connection: 1 is NORMAL, 2 is FULL.
fn synchronous(store: &SqliteStore) -> i64 {
    store
        .read(|c| Ok(c.query_row("PRAGMA synchronous", [], |r| r.get(0))?))
        .unwrap()
}

#[test]
fn run_history_writes_relax_durability_for_themselves_only() {
    // Issue 3: run-history rows commit without an fsync; bookmarks must still commit FULL, so
    // a relaxed write must hand the connection back at FULL, also when it fails.
    let (_tmp, store) = open();
    assert_eq!(synchronous(&store), 2);
    let run = store
        .begin_run(&NewRun {
            trigger: "cli".into(),
            ..NewRun::default()
        })
        .unwrap();
    assert_eq!(synchronous(&store), 2);
    let dup = store.begin_run(&NewRun {
        run_id: Some(run.clone()),
        trigger: "cli".into(),
        ..NewRun::default()
    });
    assert!(dup.is_err());
    assert_eq!(synchronous(&store), 2);
    // Inside a relaxed write the connection is at NORMAL; inside a bookmark write at FULL.
    let inside = store
        .write_history(|tx| Ok(tx.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))?))
        .unwrap();
    assert_eq!(inside, 1);
    let inside = store
        .write(|tx| Ok(tx.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))?))
        .unwrap();
    assert_eq!(inside, 2);
    store
        .commit_state(
            &sid("dev:a-to-b"),
            r#"{"bookmarks":{"s":1}}"#,
            false,
            Some(&run),
        )
        .unwrap();
    assert_eq!(synchronous(&store), 2);
}

#[test]
fn a_burst_of_states_commits_as_one_sequence_of_single_commits_would() {
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
        let (_tmp, one_by_one) = open();
        let (_tmp2, together) = open();
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
        let events = |s: &SqliteStore| -> Vec<String> {
            s.state_events(Some(&id), 100)
                .unwrap()
                .into_iter()
                .map(|e| e.action)
                .collect()
        };
        assert_eq!(events(&together), events(&one_by_one));
        assert_eq!(events(&together).len(), 3);
    }
}

#[test]
fn a_store_at_version_10_upgrades_with_its_merged_streams_intact() {
    // Migration 11 rebuilds the conflict log and the key rows: what a store made by the
    // previous release holds must read the same afterwards.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("dsm.db");
    let c = Connection::open(&path).unwrap();
    c.execute_batch(
        "CREATE TABLE dsm_schema_migrations (
            version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
    )
    .unwrap();
    for (number, name, sql) in MIGRATIONS.iter().filter(|m| m.0 <= 10) {
        c.execute_batch(sql).unwrap();
        c.execute(
            "INSERT INTO dsm_schema_migrations VALUES (?1, ?2, '2026-01-01T00:00:00.000Z')",
            params![number, name],
        )
        .unwrap();
    }
    c.execute_batch(
        r#"INSERT INTO merge_entities (stream, key, candidates, resolved, quarantined, run_id)
           VALUES ('companies', '[1]', '{"csv":{"r":{"id":1,"name":"Acme"},"f":"2026-01-01T00:00:00Z"}}',
                   '{"id":1,"name":"Acme"}', 0, 'r1');
           INSERT INTO merge_conflicts (id, stream, key, field, candidates, winner, winning_source,
                   rule, outcome, run_id, logged_at)
           VALUES (7, 'companies', '[1]', 'name', '{"csv":"Acme","api":"ACME"}', '"Acme"', 'csv',
                   'priority', 'resolved', 'r1', '2026-01-01T00:00:00.000Z');"#,
    )
    .unwrap();
    drop(c);

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), latest_version());
    let (records, entry) = store
        .read(|c| {
            let records = crate::merge::store::resolved_records(c, "companies")
                .map_err(|e| Error::failed(e.to_string()))?;
            let entry =
                crate::merge::conflicts::show(c, 7).map_err(|e| Error::failed(e.to_string()))?;
            Ok((records, entry))
        })
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].1["name"], json!("Acme"));
    let entry = entry.expect("entry 7 kept its id");
    assert_eq!(
        (entry.field.as_str(), entry.candidates, entry.winner),
        (
            "name",
            json!({"csv": "Acme", "api": "ACME"}),
            Some(json!("Acme"))
        )
    );
}

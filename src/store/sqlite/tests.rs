use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::error::ErrorKind;
use crate::store::prelude::*;
use crate::store::{NewRun, RunFilter, StateId};

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

/// A restarted container: the same host name, and the holder's PID now belongs to another
/// live process, one that started after the lock was taken. It is not the holder.
#[test]
fn a_lock_whose_pid_now_belongs_to_a_younger_process_is_taken() {
    let (_tmp, store) = open();
    let id = sid("f");
    store.acquire_lock(&id, None, false).unwrap();
    let mut other = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    store
        .write(|tx| {
            tx.execute("UPDATE flow_locks SET pid = ?1", [other.id()])?;
            Ok(())
        })
        .unwrap();
    // Taken a minute before that process started: another process held it.
    store
        .write(|tx| {
            tx.execute(
                "UPDATE flow_locks SET acquired_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-60 seconds')",
                [],
            )?;
            Ok(())
        })
        .unwrap();
    let holder = store.lock_holder(&id).unwrap().unwrap();
    assert!(holder.stale, "{holder:?}");
    store.acquire_lock(&id, None, false).unwrap();
    // Taken after it started: the live process may be the holder, and the lock holds.
    store
        .write(|tx| {
            tx.execute("UPDATE flow_locks SET pid = ?1", [other.id()])?;
            Ok(())
        })
        .unwrap();
    assert!(!store.lock_holder(&id).unwrap().unwrap().stale);
    let err = store.acquire_lock(&id, None, false).unwrap_err();
    assert_eq!(err.exit_code(), 3, "{err}");
    other.kill().unwrap();
    other.wait().unwrap();
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
    let merged = super::merged::MergedDb::open(&path).unwrap();
    let records = merged.resolved_records("companies").unwrap();
    let entry = merged.conflict(7).unwrap();
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

#[test]
fn state_id_globs_match_like_meltanos() {
    assert!(glob_match("a*b*c", "axxbyyc"));
    assert!(!glob_match("a*b*c", "axxcyyb"));
    assert!(!glob_match("ab*ba", "aba"));
}

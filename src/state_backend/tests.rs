use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::file::FileObjects;
use super::*;
use crate::error::ErrorKind;
use crate::store::SqliteStore;

fn backed(dir: &std::path::Path, timeout_ms: u64) -> BackedStore {
    let inner: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("dsm.db")).unwrap());
    let objects = FileObjects::new(&format!("file://{}", dir.join("state").display())).unwrap();
    BackedStore::new(
        inner,
        StateBackend::new(
            Box::new(objects),
            Duration::from_millis(timeout_ms),
            Duration::from_millis(20),
        ),
    )
}

fn read_json(path: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn state_is_written_in_meltanos_layout_and_the_lock_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let store = backed(dir.path(), 500);
    let id = StateId::new("dev:tap-a-to-target-b");
    let out = store
        .commit_states(
            &id,
            &[r#"{"bookmarks":{"a":1}}"#.into(), "{}".into()],
            false,
            None,
        )
        .unwrap();
    assert_eq!(out[0], CommitOutcome::Committed);
    assert!(matches!(out[1], CommitOutcome::Ignored(_)));
    let folder = dir.path().join("state/dev:tap-a-to-target-b");
    assert_eq!(
        read_json(&folder.join("state.json")),
        json!({"completed": {"singer_state": {"bookmarks": {"a": 1}}}, "partial": {}})
    );
    assert!(!folder.join("lock").exists(), "the lock is released");
    // A partial write merges over the partial half; a complete one clears it, as in Meltano.
    store
        .commit_state(&id, r#"{"bookmarks":{"b":2}}"#, true, None)
        .unwrap();
    assert_eq!(
        store.get_state(&id).unwrap().unwrap(),
        json!({"singer_state": {"bookmarks": {"a": 1, "b": 2}}})
    );
    assert_eq!(
        read_json(&folder.join("state.json"))["partial"],
        json!({"singer_state": {"bookmarks": {"b": 2}}})
    );
    assert_eq!(
        store.list_states(Some("dev:*")).unwrap()[0].state_id,
        id,
        "listed from the folders"
    );
    assert!(store.clear_state(&id).unwrap());
    assert!(store.get_state(&id).unwrap().is_none());
    assert!(!store.clear_state(&id).unwrap());
}

#[test]
fn meltanos_file_with_null_halves_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = backed(dir.path(), 500);
    let folder = dir.path().join("state/x");
    std::fs::create_dir_all(&folder).unwrap();
    // What Meltano's `MeltanoState.json()` writes for state set with only a partial half.
    std::fs::write(
        folder.join("state.json"),
        r#"{"completed": null, "partial": {"singer_state": {"p": 1}}}"#,
    )
    .unwrap();
    assert_eq!(
        store.get_state(&StateId::new("x")).unwrap().unwrap(),
        json!({"singer_state": {"p": 1}})
    );
    std::fs::write(folder.join("state.json"), "[1]").unwrap();
    let err = store.get_state(&StateId::new("x")).unwrap_err();
    assert!(err.message().contains("is not Meltano state"), "{err:?}");
}

#[test]
fn a_live_lock_makes_a_write_wait_then_fail_and_a_stale_one_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let store = backed(dir.path(), 300);
    let id = StateId::new("flow");
    store
        .write_state(
            &id,
            &json!({"singer_state": {"v": 1}}),
            false,
            StateAction::Set,
            None,
        )
        .unwrap();
    let lock = dir.path().join("state/flow/lock");
    // A lock that stays live while dsm waits (its holder's clock is ahead, or it keeps taking it).
    let future = chrono::Utc::now().timestamp() + 3600;
    std::fs::write(&lock, format!("{future}.5")).unwrap();
    let err = store
        .write_state(
            &id,
            &json!({"singer_state": {"v": 2}}),
            false,
            StateAction::Set,
            None,
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Failed);
    assert!(err.message().contains("stayed locked"), "{}", err.message());
    assert!(
        err.message().contains("lock_timeout_seconds"),
        "{}",
        err.message()
    );
    assert_eq!(
        store.get_state(&id).unwrap().unwrap(),
        json!({"singer_state": {"v": 1}}),
        "nothing was written"
    );
    assert!(lock.exists(), "someone else's live lock is left alone");
    // Older than `lock_timeout_seconds`: stale, taken over as Meltano does.
    std::fs::write(&lock, "1000000000.25").unwrap();
    store
        .write_state(
            &id,
            &json!({"singer_state": {"v": 3}}),
            false,
            StateAction::Set,
            None,
        )
        .unwrap();
    assert_eq!(
        store.get_state(&id).unwrap().unwrap(),
        json!({"singer_state": {"v": 3}})
    );
    assert!(!lock.exists());
    // A lock that holds no time is reported, not overwritten.
    std::fs::write(&lock, "garbage").unwrap();
    let err = store.clear_state(&id).unwrap_err();
    assert!(
        err.message().contains("does not hold a time"),
        "{}",
        err.message()
    );
}

#[test]
fn the_lock_is_created_only_when_absent() {
    let dir = tempfile::tempdir().unwrap();
    let objects = FileObjects::new(&format!("file://{}", dir.path().display())).unwrap();
    assert!(objects.put("a/lock", b"1.0", &Condition::IfAbsent).unwrap());
    assert!(!objects.put("a/lock", b"2.0", &Condition::IfAbsent).unwrap());
    assert_eq!(objects.get("a/lock").unwrap().unwrap().body, b"1.0");
    let v = objects.get("a/lock").unwrap().unwrap().version;
    assert!(
        !objects
            .put("a/lock", b"3.0", &Condition::IfMatch("other".into()))
            .unwrap()
    );
    assert!(
        objects
            .put("a/lock", b"3.0", &Condition::IfMatch(v))
            .unwrap()
    );
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path().join("a"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["lock"]);
}

#[test]
fn state_ids_that_are_not_folder_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = backed(dir.path(), 300);
    for id in ["../escape", "a/b", ".."] {
        let err = store.get_state(&StateId::new(id)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{id}");
    }
}

fn settings(uri: &str) -> Settings {
    Settings {
        uri: uri.into(),
        origin: "in meltano.yml",
        lock_timeout: Duration::from_secs(10),
        lock_retry: Duration::from_secs(1),
        s3_endpoint: None,
        s3_key_id: None,
        s3_secret: None,
    }
}

#[test]
fn gcs_and_azure_are_refused_by_name() {
    for (uri, name) in [("gs://b/p", "gs://"), ("azure://c/p", "azure://")] {
        let err = settings(uri).open().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.message().contains(name), "{}", err.message());
    }
    let err = settings("ftp://user:pw@host/x").open().unwrap_err();
    assert!(
        !format!("{err:?}").contains("pw"),
        "no password in the message"
    );
    assert!(settings("file:///tmp/x").open().is_ok());
    assert_eq!(
        settings("file://relative/x").open().unwrap_err().kind(),
        ErrorKind::Config
    );
}

#[test]
fn uris_lose_their_credentials_in_messages() {
    assert_eq!(
        redact_uri("s3://AK:SECRET@bucket/p"),
        "s3://********@bucket/p"
    );
    assert_eq!(redact_uri("s3://bucket/p@x"), "s3://bucket/p@x");
    assert_eq!(redact_uri("file:///a"), "file:///a");
}

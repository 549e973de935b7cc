//! Several real processes on one store: this test binary started again as a helper, told what
//! to do through environment variables, reporting through files.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dsm::store::prelude::*;
use dsm::store::{NewRun, SqliteStore, StateId};
use serde_json::json;

use crate::{TestProject, parse};

const MODE: &str = "DSM_STORE_TEST_HELPER";
const DB: &str = "DSM_STORE_TEST_DB";
const DIR: &str = "DSM_STORE_TEST_DIR";
const INDEX: &str = "DSM_STORE_TEST_INDEX";

const FLOW: &str = "dev:tap-race-to-target-race";

/// Runs the helper named by `DSM_STORE_TEST_HELPER`, if any.
pub fn main_if_helper() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    let db = PathBuf::from(std::env::var(DB).unwrap());
    let dir = PathBuf::from(std::env::var(DIR).unwrap());
    let n: usize = std::env::var(INDEX).unwrap().parse().unwrap();
    let store = SqliteStore::open(&db).unwrap();
    report(&dir, &format!("ready-{n}"), "");
    wait_for(&dir.join("go"), Duration::from_secs(60));
    match mode.as_str() {
        // Many small write transactions interleaved with the other writers.
        "write" => {
            for i in 0..100 {
                store
                    .commit_state(
                        &StateId::new("dev:shared"),
                        &format!(r#"{{"p{n}":{i}}}"#),
                        true,
                        None,
                    )
                    .unwrap();
            }
            report(&dir, &format!("result-{n}"), "done");
        }
        // Race for the flow lock; the winner holds it long enough for every loser to try.
        "lock" => match store.acquire_lock(&StateId::new(FLOW), None, false) {
            Ok(lock) => {
                report(&dir, &format!("result-{n}"), "won");
                wait_for(&dir.join("release"), Duration::from_secs(60));
                store.release_lock(&lock).unwrap();
            }
            Err(e) => report(
                &dir,
                &format!("result-{n}"),
                &format!("lost {} {}", e.exit_code(), e.message()),
            ),
        },
        // Take the lock, start a run, and hang until killed.
        "hold" => {
            let run = store
                .begin_run(&NewRun {
                    state_id: Some(StateId::new(FLOW)),
                    trigger: "test".into(),
                    ..NewRun::default()
                })
                .unwrap();
            let _lock = store
                .acquire_lock(&StateId::new(FLOW), Some(&run), false)
                .unwrap();
            report(&dir, &format!("result-{n}"), run.as_str());
            std::thread::sleep(Duration::from_secs(120));
        }
        other => panic!("unknown helper mode {other}"),
    }
}

fn report(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, dir.join(name)).unwrap();
}

fn wait_for(path: &Path, limit: Duration) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < limit,
            "timed out waiting for {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn spawn(mode: &str, db: &Path, dir: &Path, n: usize) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    crate::clean_env(&mut cmd);
    cmd.args([
        "helper_process",
        "--exact",
        "--test-threads=1",
        "--nocapture",
    ])
    .env(MODE, mode)
    .env(DB, db)
    .env(DIR, dir)
    .env(INDEX, n.to_string())
    .stdout(Stdio::null())
    .stderr(Stdio::inherit())
    .spawn()
    .unwrap()
}

/// Starts `count` helpers and lets them go at the same moment.
fn start_together(mode: &str, db: &Path, dir: &Path, count: usize) -> Vec<Child> {
    let children: Vec<Child> = (0..count).map(|n| spawn(mode, db, dir, n)).collect();
    for n in 0..count {
        wait_for(&dir.join(format!("ready-{n}")), Duration::from_secs(60));
    }
    std::fs::write(dir.join("go"), "").unwrap();
    children
}

#[test]
fn concurrent_writer_processes_wait_and_never_fail() {
    let p = TestProject::new();
    let dir = tempfile::tempdir().unwrap();
    let count = 4;
    let children = start_together("write", &p.db(), dir.path(), count);
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a writer failed");
    }
    let state = parse(&p.ok(&["state", "get", "dev:shared"]));
    for n in 0..count {
        assert_eq!(state["singer_state"][format!("p{n}")], json!(99));
    }
    let store = SqliteStore::open(&p.db()).unwrap();
    assert_eq!(store.state_events(None, 10_000).unwrap().len(), 100 * count);
}

#[test]
fn exactly_one_of_racing_processes_takes_the_flow_lock() {
    let p = TestProject::new();
    SqliteStore::open(&p.db()).unwrap(); // created up front; the race is about the lock only
    let dir = tempfile::tempdir().unwrap();
    let count = 4;
    let children = start_together("lock", &p.db(), dir.path(), count);
    let results: Vec<String> = (0..count)
        .map(|n| {
            let path = dir.path().join(format!("result-{n}"));
            wait_for(&path, Duration::from_secs(60));
            std::fs::read_to_string(path).unwrap()
        })
        .collect();
    std::fs::write(dir.path().join("release"), "").unwrap();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let winners = results.iter().filter(|r| *r == "won").count();
    assert_eq!(winners, 1, "{results:#?}");
    for lost in results.iter().filter(|r| *r != "won") {
        assert!(lost.starts_with("lost 3 "), "{lost}");
        assert!(
            lost.contains(&format!("flow `{FLOW}` is already running (pid ")),
            "{lost}"
        );
        assert!(lost.contains("started 20"), "{lost}");
    }
    // Released by the winner: free again.
    let store = SqliteStore::open(&p.db()).unwrap();
    assert!(store.lock_holder(&StateId::new(FLOW)).unwrap().is_none());
}

#[test]
fn a_killed_holder_frees_its_flow_and_its_run_reads_as_killed() {
    let p = TestProject::new();
    SqliteStore::open(&p.db()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut child = start_together("hold", &p.db(), dir.path(), 1).remove(0);
    let result = dir.path().join("result-0");
    wait_for(&result, Duration::from_secs(60));
    let run_id = std::fs::read_to_string(result).unwrap();

    let store = SqliteStore::open(&p.db()).unwrap();
    let flow = StateId::new(FLOW);
    let err = store.acquire_lock(&flow, None, false).unwrap_err();
    assert_eq!(err.exit_code(), 3);
    assert!(
        err.message().contains(&format!("pid {}", child.id())),
        "{}",
        err.message()
    );
    let listed = parse(&p.ok(&["runs", "list", "--format", "json"]));
    assert_eq!(listed[0]["status"], json!("running"));

    child.kill().unwrap();
    child.wait().unwrap();

    let listed = parse(&p.ok(&["runs", "list", "--format", "json"]));
    assert_eq!(listed[0]["run_id"], json!(run_id));
    assert_eq!(listed[0]["status"], json!("killed"));
    let killed = parse(&p.ok(&["runs", "list", "--status", "killed", "--format", "json"]));
    assert_eq!(killed.as_array().unwrap().len(), 1);
    assert!(store.lock_holder(&flow).unwrap().unwrap().stale);
    let lock = store.acquire_lock(&flow, None, false).unwrap();
    store.release_lock(&lock).unwrap();
}

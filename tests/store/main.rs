//! The system store end to end: `dsm state` and `dsm runs` against real SQLite files, several
//! real processes writing and racing for a flow lock, and parity with real Meltano's state.
//!
//! Processes are this test binary started again in "helper" mode (see [`helper_process`]).

#![allow(
    clippy::unwrap_used,
    reason = "test support code: a failed unwrap fails the test"
)]

mod boundary;
mod bundles;
mod chaos;
mod contract;
mod contract_scopes;
mod helper;
mod meltano;
mod merged;
mod pg;
mod serve_pg;
mod team;
mod team_keys;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

/// A temporary project with a `meltano.yml`, running dsm with a clean environment.
pub struct TestProject {
    dir: tempfile::TempDir,
}

impl Default for TestProject {
    fn default() -> Self {
        Self::new()
    }
}

impl TestProject {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("meltano.yml"),
            "version: 1\ndefault_environment: dev\nproject_id: 4b5e1b1e-0000-4000-8000-000000000001\nsend_anonymous_usage_stats: false\nenvironments:\n- name: dev\n",
        )
        .unwrap();
        TestProject { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn db(&self) -> PathBuf {
        self.path().join(".dsm/dsm.db")
    }

    pub fn dsm(&self, args: &[&str]) -> Output {
        self.dsm_with_stdin(args, None)
    }

    pub fn dsm_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsm"));
        cmd.args(args).current_dir(self.path());
        clean_env(&mut cmd);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut pipe = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            pipe.write_all(text.as_bytes()).unwrap();
        }
        drop(pipe);
        child.wait_with_output().unwrap()
    }

    /// Runs dsm and expects success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.dsm(args);
        assert!(
            out.status.success(),
            "dsm {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// A command's stdout as JSON, or a failure that shows the text.
pub fn parsed(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Removes inherited variables that would change what dsm or Meltano does.
pub fn clean_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("DSM_") && key != "DSM_TEST_VENV"
            || key.starts_with("MELTANO_")
            || key.starts_with("TAP_")
            || key.starts_with("TARGET_")
        {
            cmd.env_remove(key);
        }
    }
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn state_commands_follow_meltanos_shapes() {
    let p = TestProject::new();
    let id = "dev:tap-a-to-target-b";
    p.ok(&[
        "state",
        "set",
        "--force",
        id,
        r#"{"singer_state":{"bookmarks":{"users":{"n":-73.985130,"id":123456789012345678901}}}}"#,
    ]);
    assert!(p.db().is_file(), "the store lives in .dsm/dsm.db");
    p.ok(&[
        "state",
        "merge",
        id,
        r#"{"singer_state":{"bookmarks":{"orders":{"id":5}}}}"#,
    ]);
    // Compact JSON, numbers exactly as given, partial merged over completed.
    assert_eq!(
        p.ok(&["state", "get", id]),
        "{\"singer_state\":{\"bookmarks\":{\"users\":{\"n\":-73.985130,\"id\":123456789012345678901},\"orders\":{\"id\":5}}}}\n"
    );
    assert!(
        p.ok(&["--format", "pretty", "state", "get", id])
            .contains("\n  \"singer_state\": {\n")
    );
    assert_eq!(p.ok(&["state", "get", "dev:nothing-to-here"]), "{}\n");

    p.ok(&["state", "copy", id, "prod:tap-a-to-target-b"]);
    p.ok(&[
        "state",
        "move",
        "prod:tap-a-to-target-b",
        "prod:tap-a-to-target-b:x",
    ]);
    assert_eq!(
        p.ok(&["state", "list"]),
        "dev:tap-a-to-target-b\nprod:tap-a-to-target-b:x\n"
    );
    assert_eq!(
        p.ok(&["state", "list", "prod:*"]),
        "prod:tap-a-to-target-b:x\n"
    );
    assert_eq!(
        p.ok(&["state", "list", "--pattern", "dev:*"]),
        "dev:tap-a-to-target-b\n"
    );
    assert_eq!(
        parse(&p.ok(&["--format", "json", "state", "list"])),
        json!(["dev:tap-a-to-target-b", "prod:tap-a-to-target-b:x"])
    );

    // merge --from-state-id and --input-file
    let file = p.path().join("s.json");
    std::fs::write(&file, r#"{"singer_state":{"bookmarks":{"extra":{"v":1}}}}"#).unwrap();
    p.ok(&[
        "state",
        "merge",
        "prod:tap-a-to-target-b:x",
        "--input-file",
        file.to_str().unwrap(),
    ]);
    p.ok(&[
        "state",
        "merge",
        id,
        "--from-state-id",
        "prod:tap-a-to-target-b:x",
    ]);
    let got = parse(&p.ok(&["state", "get", id]));
    assert_eq!(got["singer_state"]["bookmarks"]["extra"], json!({"v": 1}));

    // Export, clear everything, import it back: the same rows.
    let export = p.ok(&["state", "export"]);
    let exported = parse(&export);
    assert_eq!(
        exported[id]["completed"],
        parse(
            r#"{"singer_state":{"bookmarks":{"users":{"n":-73.985130,"id":123456789012345678901}}}}"#
        )
    );
    assert_eq!(
        exported[id]["partial"]["singer_state"]["bookmarks"]["orders"],
        json!({"id": 5})
    );
    p.ok(&["state", "clear", "--all", "--force"]);
    assert_eq!(p.ok(&["state", "list"]), "");
    let out = p.dsm_with_stdin(&["state", "import"], Some(&export));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(p.ok(&["state", "export"]), export);

    p.ok(&["state", "clear", id]);
    assert_eq!(p.ok(&["state", "get", id]), "{}\n");

    // Every change was recorded as an event.
    let conn = rusqlite::Connection::open(p.db()).unwrap();
    let actions: Vec<String> = conn
        .prepare("SELECT action FROM state_events WHERE state_id = ?1 ORDER BY event_id")
        .unwrap()
        .query_map([id], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        actions,
        ["set", "merged", "merged", "cleared", "imported", "cleared"]
    );
}

#[test]
fn bad_state_input_is_refused_and_keeps_the_bookmark() {
    let p = TestProject::new();
    let id = "dev:a-to-b";
    p.ok(&["state", "set", id, r#"{"singer_state":{"b":1}}"#]);
    for bad in [
        &["state", "set", id, "{}"][..],
        &["state", "set", id, "{"],
        &["state", "merge", id, r#"{"b":2}"#],
    ] {
        let out = p.dsm(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("hint: "), "{stderr}");
    }
    assert_eq!(
        p.ok(&["state", "get", id]),
        "{\"singer_state\":{\"b\":1}}\n"
    );
    let out = p.dsm(&["state", "clear", "--all"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    let out = p.dsm(&["state", "copy", "dev:none", "dev:x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no state stored for `dev:none`"));
    // --no-validate stores a payload without `singer_state`.
    p.ok(&["state", "set", "--no-validate", "raw", r#"{"x":1}"#]);
    assert_eq!(p.ok(&["state", "get", "raw"]), "{\"x\":1}\n");
}

#[test]
fn database_uri_flag_and_variable_choose_the_file() {
    let p = TestProject::new();
    let elsewhere = p.path().join("other/store.db");
    let uri = format!("sqlite://{}", elsewhere.display());
    p.ok(&[
        "--database-uri",
        &uri,
        "state",
        "set",
        "a",
        r#"{"singer_state":{"x":1}}"#,
    ]);
    assert!(elsewhere.is_file());
    assert!(!p.db().exists());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsm"));
    clean_env(&mut cmd);
    let out = cmd
        .args(["state", "get", "a"])
        .current_dir(p.path())
        .env("DSM_DATABASE_URI", &elsewhere)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"singer_state\":{\"x\":1}}\n"
    );
    // A PostgreSQL URI names a team store: a server that does not answer is named.
    let out = p.dsm(&[
        "--database-uri",
        "postgresql://u@127.0.0.1:9/db?sslmode=disable",
        "state",
        "list",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot connect to the PostgreSQL store `u@127.0.0.1:9/db?schema=dsm`"),
        "{stderr}"
    );
}

#[test]
fn a_database_from_a_newer_dsm_is_refused() {
    let p = TestProject::new();
    p.ok(&["state", "list"]);
    let conn = rusqlite::Connection::open(p.db()).unwrap();
    conn.execute(
        "INSERT INTO dsm_schema_migrations VALUES (1000, 'future', '2099-01-01T00:00:00.000Z')",
        [],
    )
    .unwrap();
    drop(conn);
    let out = p.dsm(&["state", "list"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("schema version 1000"), "{stderr}");
    assert!(stderr.contains("hint: upgrade dsm"), "{stderr}");
}

#[test]
fn runs_list_and_show_read_the_history() {
    use dsm::store::prelude::*;
    use dsm::store::{NewRun, PluginExit, RunFinish, RunStatus, SqliteStore, StateId, StreamStats};
    let p = TestProject::new();
    let store = SqliteStore::open(&p.db()).unwrap();
    let ok = store
        .begin_run(&NewRun {
            state_id: Some(StateId::new("dev:a-to-b")),
            environment: Some("dev".into()),
            trigger: "cli".into(),
            plugins: vec![PluginExit {
                plugin: "tap-a".into(),
                role: "extractor".into(),
                exit_code: None,
            }],
            ..NewRun::default()
        })
        .unwrap();
    store
        .record_stream_stats(
            &ok,
            &[StreamStats {
                stream: "users".into(),
                records: 42,
                bytes: 4200,
            }],
        )
        .unwrap();
    store
        .finish_run(
            &ok,
            &RunFinish {
                status: RunStatus::Success,
                error: None,
                plugins: vec![PluginExit {
                    plugin: "tap-a".into(),
                    role: "extractor".into(),
                    exit_code: Some(0),
                }],
            },
        )
        .unwrap();
    let bad = store
        .begin_run(&NewRun {
            state_id: Some(StateId::new("dev:c-to-d")),
            trigger: "schedule".into(),
            ..NewRun::default()
        })
        .unwrap();
    store
        .finish_run(
            &bad,
            &RunFinish {
                status: RunStatus::Failed,
                error: Some("loader `d` exited with status 1".into()),
                plugins: vec![],
            },
        )
        .unwrap();
    drop(store);

    let all = parse(&p.ok(&["runs", "list", "--format", "json"]));
    assert_eq!(all.as_array().unwrap().len(), 2);
    assert_eq!(all[0]["run_id"], json!(bad.as_str()));
    assert_eq!(all[0]["status"], json!("failed"));
    assert_eq!(
        all[1]["streams"][0],
        json!({"stream": "users", "records": 42, "bytes": 4200})
    );
    let only = parse(&p.ok(&["runs", "list", "--status", "success", "--format", "json"]));
    assert_eq!(only.as_array().unwrap().len(), 1);
    let by_id = parse(&p.ok(&[
        "runs",
        "list",
        "--state-id",
        "dev:c-to-d",
        "--format",
        "json",
    ]));
    assert_eq!(by_id[0]["run_id"], json!(bad.as_str()));
    assert_eq!(
        parse(&p.ok(&["runs", "list", "--limit", "1", "--format", "json"]))
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let text = p.ok(&["runs", "list"]);
    assert!(text.starts_with("RUN ID"), "{text}");
    assert!(
        text.contains("success") && text.contains("failed"),
        "{text}"
    );
    let show = p.ok(&["runs", "show", ok.as_str()]);
    assert!(show.contains("users") && show.contains("42"), "{show}");
    assert!(
        show.contains("tap-a") && show.contains("extractor"),
        "{show}"
    );
    let show = parse(&p.ok(&["--format", "json", "runs", "show", bad.as_str()]));
    assert_eq!(show["error"], json!("loader `d` exited with status 1"));
    let out = p.dsm(&["runs", "show", "nope"]);
    assert_eq!(out.status.code(), Some(2));
}

/// Entry point of helper processes (does nothing when run as a normal test).
#[test]
fn helper_process() {
    helper::main_if_helper();
}

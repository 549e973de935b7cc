//! Snapshots of the commands that move data and keep its state: `run`, `el`, `invoke`, `state`,
//! `sync`, `job`, `schedule` (harness in `snapshots.rs`).

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use crate::snapshots::{project, snap, snap_both, snap_runs};

#[test]
fn run_and_el() {
    let p = project();
    let (run, _) = snap_both(&p, "run", &["run", "tap-csv", "target-jsonl"]);
    assert_eq!(run.code, 0);
    assert_eq!(p.read("out/users.jsonl").lines().count(), 6, "two runs");
    let (dry, _) = snap_both(
        &p,
        "run_dry_run",
        &["run", "--dry-run", "tap-csv", "target-jsonl"],
    );
    assert_eq!(dry.code, 0);
    let (el, _) = snap_both(&p, "el", &["el", "tap-csv", "target-jsonl"]);
    assert_eq!(el.code, 0);
    let dump = snap(
        &p,
        "el_dump_config",
        &[
            "el",
            "tap-csv",
            "target-jsonl",
            "--dump",
            "extractor-config",
        ],
    );
    assert_eq!(dump.code, 0);
    let (unknown, _) = snap_both(&p, "run_unknown_plugin", &["run", "tap-csv", "target-jsnl"]);
    assert_eq!(unknown.code, 2);
    // A tap that fails: the file it reads is gone.
    std::fs::remove_file(p.root().join("users.csv")).unwrap();
    let (failed, _) = snap_both(&p, "run_failed", &["run", "tap-csv", "target-jsonl"]);
    assert_eq!(failed.code, 1);
}

#[test]
fn invoke() {
    let p = project();
    let out = snap(&p, "invoke_discover", &["invoke", "tap-csv", "--discover"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn state() {
    let p = project();
    let run = p.dsm(&["run", "tap-csv", "target-jsonl"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let id = "dev:tap-csv-to-target-jsonl";
    let (list, _) = snap_both(&p, "state_list", &["state", "list"]);
    assert_eq!(list.code, 0);
    let (get, _) = snap_both(&p, "state_get", &["state", "get", id]);
    assert_eq!(get.code, 0);
    let outs = snap_runs(
        &p,
        "state_change",
        &[
            (
                &[
                    "state",
                    "set",
                    "manual",
                    r#"{"singer_state": {"bookmarks": {"users": {"id": 1}}}}"#,
                    "--force",
                ],
                "",
            ),
            (
                &[
                    "state",
                    "merge",
                    "manual",
                    r#"{"singer_state": {"bookmarks": {"people": {"id": 7}}}}"#,
                ],
                "",
            ),
            (&["state", "get", "manual"], ""),
            (&["state", "set", "manual", "not json", "--force"], ""),
            (&["state", "copy", "manual", "copied", "--force"], ""),
            (&["state", "move", "copied", "moved", "--force"], ""),
            (&["state", "list", "m*"], ""),
            (&["state", "clear", "moved", "--force"], ""),
            (&["state", "get", "moved"], ""),
        ],
    );
    assert_eq!(outs[0].code, 0, "{}", outs[0].stderr);
    assert_ne!(outs[3].code, 0);
    let (export, _) = snap_both(&p, "state_export", &["state", "export"]);
    assert_eq!(export.code, 0);
    let outs = snap_runs(
        &p,
        "state_import",
        &[
            (
                &["state", "import"],
                r#"{"imported": {"completed": {"singer_state": {"bookmarks": {"users": {"id": 3}}}}}}"#,
            ),
            (&["state", "get", "imported"], ""),
            (&["state", "import-meltano"], ""),
        ],
    );
    assert_eq!(outs[0].code, 0, "{}", outs[0].stderr);
    assert!(outs[1].stdout.contains(r#""id":3"#), "{}", outs[1].stdout);
    // `state edit` opens $EDITOR: `true` leaves the state as it was.
    let p = p.env("EDITOR", "true").env("VISUAL", "true");
    let edit = snap(&p, "state_edit_unchanged", &["state", "edit", "manual"]);
    assert_eq!(edit.code, 0, "{}", edit.stderr);
}

#[test]
fn sync() {
    let p = project();
    let (dry, _) = snap_both(&p, "sync_dry_run", &["sync", "--dry-run"]);
    assert_eq!(dry.code, 0);
    let (sync, _) = snap_both(&p, "sync", &["sync"]);
    assert_eq!(sync.code, 0);
    let unknown = snap(&p, "sync_unknown_flow", &["sync", "dayly"]);
    assert_eq!(unknown.code, 2);
}

#[test]
fn jobs() {
    let p = project();
    let outs = snap_runs(
        &p,
        "job",
        &[
            (
                &["job", "add", "people", "--tasks", "tap-people target-jsonl"],
                "",
            ),
            (&["job", "list"], ""),
            (&["--format", "json", "job", "list"], ""),
            (
                &[
                    "job",
                    "set",
                    "people",
                    "--tasks",
                    "[tap-people target-jsonl, tap-csv target-jsonl]",
                ],
                "",
            ),
            (&["job", "list", "people"], ""),
            (
                &["job", "add", "people", "--tasks", "tap-people target-jsonl"],
                "",
            ),
            (&["job", "remove", "people"], ""),
            (&["job", "remove", "people"], ""),
        ],
    );
    assert_eq!(outs[0].code, 0, "{}", outs[0].stderr);
    assert_ne!(outs[5].code, 0);
    assert!(!p.read("meltano.yml").contains("name: people"));
}

#[test]
fn schedules() {
    let p = project();
    let outs = snap_runs(
        &p,
        "schedule",
        &[
            (&["schedule", "list"], ""),
            (&["--format", "json", "schedule", "list"], ""),
            (
                &[
                    "schedule",
                    "add",
                    "hourly-people",
                    "--extractor",
                    "tap-people",
                    "--loader",
                    "target-jsonl",
                    "--interval",
                    "@hourly",
                ],
                "",
            ),
            (
                &[
                    "schedule",
                    "set",
                    "hourly-people",
                    "--interval",
                    "0 */2 * * *",
                ],
                "",
            ),
            (
                &[
                    "schedule",
                    "add",
                    "broken",
                    "--job",
                    "daily",
                    "--interval",
                    "every day",
                ],
                "",
            ),
            (&["schedule", "list"], ""),
            (&["schedule", "remove", "hourly-people"], ""),
        ],
    );
    assert_eq!(outs[2].code, 0, "{}", outs[2].stderr);
    assert_eq!(outs[4].code, 2);
    let (run, _) = snap_both(&p, "schedule_run", &["schedule", "run", "daily-schedule"]);
    assert_eq!(run.code, 0);
    // The schedule just ran, and `@daily` is not due again today.
    let (due, json) = snap_both(&p, "schedule_run_due", &["schedule", "run-due"]);
    assert_eq!(due.code, 0);
    // Nothing due is still one JSON document (it printed nothing at all before).
    let doc = crate::json_contract::assert_matches("sync", &["schedule", "run-due"], &json);
    assert_eq!(doc["flows"], serde_json::json!([]));
    for format in ["crontab", "systemd", "kubernetes"] {
        let out = snap(
            &p,
            &format!("schedule_export_{format}"),
            &[
                "schedule",
                "export",
                "--format",
                format,
                "--image",
                "registry.example/etl:1",
            ],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
}

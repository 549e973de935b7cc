//! The registry end to end: `dsm health`, `dsm metrics` and `dsm runs list|prune` against a
//! real SQLite file whose runs were written through the store API with chosen times.

#![allow(
    clippy::unwrap_used,
    reason = "test support code: a failed unwrap fails the test"
)]
#![allow(
    clippy::disallowed_methods,
    reason = "fixed spans of hours and days, never user input"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::{Duration, Utc};
use dsm::store::prelude::*;
use dsm::store::{PluginExit, RunId, RunRecord, RunStatus, SqliteStore, StateId, StreamStats};
use serde_json::Value;

mod connection_tests;
mod source_types;

struct TestProject {
    dir: tempfile::TempDir,
}

impl TestProject {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("meltano.yml"),
            "version: 1\ndefault_environment: dev\nenvironments:\n- name: dev\n",
        )
        .unwrap();
        TestProject { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn store(&self) -> SqliteStore {
        SqliteStore::open(&self.path().join(".dsm/dsm.db")).unwrap()
    }

    fn dsm(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsm"));
        cmd.args(args).current_dir(self.path());
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("DSM_") || key.starts_with("MELTANO_") {
                cmd.env_remove(key);
            }
        }
        cmd.output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
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

/// Writes a finished run of `tap` that started `ago` before now and took `secs`.
fn run(store: &dyn Store, id: &str, tap: &str, status: RunStatus, ago: Duration, secs: i64) {
    let started = Utc::now() - ago;
    let ended = started + Duration::seconds(secs);
    store
        .record_run(&RunRecord {
            run_id: RunId::new(id),
            state_id: Some(StateId::new(format!("dev:{tap}-to-target-jsonl"))),
            environment: Some("dev".into()),
            trigger: "schedule".into(),
            status,
            started_at: started,
            ended_at: Some(ended),
            heartbeat_at: ended,
            pid: 1,
            host: "cron-1".into(),
            error: (status == RunStatus::Failed).then(|| format!("`{tap}` exited with 1")),
            log_path: None,
            plugins: vec![PluginExit {
                plugin: tap.into(),
                role: "extractor".into(),
                exit_code: Some(0),
            }],
            streams: vec![StreamStats {
                stream: "users".into(),
                records: 100,
                bytes: 4_000,
            }],
            records_read: 100,
            records_sent: Some(100),
            records_confirmed: Some(100),
        })
        .unwrap();
}

fn json(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn health_reports_a_verdict_per_source_and_check_fails_on_failing_sources() {
    let p = TestProject::new();
    let s = p.store();
    run(
        &s,
        "ok1",
        "tap-good",
        RunStatus::Success,
        Duration::hours(2),
        10,
    );
    run(
        &s,
        "ok2",
        "tap-good",
        RunStatus::Success,
        Duration::hours(1),
        30,
    );
    for i in 1..=3 {
        run(
            &s,
            &format!("bad{i}"),
            "tap-bad",
            RunStatus::Failed,
            Duration::hours(i),
            5,
        );
    }
    run(
        &s,
        "st1",
        "tap-stale",
        RunStatus::Success,
        Duration::hours(5),
        5,
    );
    drop(s);

    let report = json(&p.ok(&[
        "health",
        "--since",
        "24h",
        "--expect",
        "tap-stale=1h",
        "--format",
        "json",
    ]));
    let verdicts: Vec<(String, String)> = report
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().to_owned(),
                h["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            ("tap-bad".to_owned(), "failing".to_owned()),
            ("tap-good".to_owned(), "healthy".to_owned()),
            ("tap-stale".to_owned(), "stale".to_owned()),
        ]
    );
    let good = &report[1];
    assert_eq!(good["kind"], "source");
    assert_eq!(good["runs"], 2);
    assert_eq!(good["success_rate"], 1.0);
    assert_eq!(good["records_per_second"], 5.0);
    assert_eq!(good["duration_p50"], 10.0);
    assert_eq!(good["duration_p99"], 30.0);
    assert_eq!(report[0]["last_error"], "`tap-bad` exited with 1");

    let text = p.ok(&["health"]);
    assert!(
        text.lines()
            .any(|l| l.contains("tap-bad") && l.contains("failing")),
        "{text}"
    );
    let with_flows = json(&p.ok(&["health", "--flows", "--format", "json"]));
    assert_eq!(with_flows.as_array().unwrap().len(), 6);

    let checked = p.dsm(&["health", "--check"]);
    assert_eq!(checked.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&checked.stderr)
            .contains("1 source(s) or flow(s) are failing or stale")
    );

    let bad = p.dsm(&["health", "--since", "yesterday"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("`yesterday` is not a duration"));
}

#[test]
fn metrics_are_prometheus_text_written_atomically_or_json() {
    let p = TestProject::new();
    let s = p.store();
    run(
        &s,
        "r1",
        "tap-good",
        RunStatus::Success,
        Duration::hours(2),
        10,
    );
    run(
        &s,
        "r2",
        "tap-good",
        RunStatus::Failed,
        Duration::hours(1),
        4,
    );
    drop(s);

    let text = p.ok(&["metrics"]);
    assert!(
        text.contains("# TYPE dsm_source_runs_total counter\n"),
        "{text}"
    );
    assert!(text.contains("dsm_source_runs_total{source=\"tap-good\",status=\"failed\"} 1\n"));
    assert!(text.contains("dsm_source_last_run_duration_seconds{source=\"tap-good\"} 4\n"));
    assert!(text.contains("dsm_stream_records_total{source=\"tap-good\",stream=\"users\"} 200\n"));

    let out: PathBuf = p.path().join("textfile/dsm.prom");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    p.ok(&[
        "metrics",
        "--format",
        "prometheus",
        "--output",
        out.to_str().unwrap(),
    ]);
    let written = std::fs::read_to_string(&out).unwrap();
    // Same content apart from the generation time.
    let strip = |t: &str| {
        t.lines()
            .filter(|l| !l.starts_with("dsm_metrics_generated"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&written), strip(&text));

    let j = json(&p.ok(&["metrics", "--format", "json"]));
    assert_eq!(j["sources"]["tap-good"]["runs_total"]["success"], 1);
    assert_eq!(j["streams"]["tap-good"]["users"]["bytes_total"], 8000);

    let bad = p.dsm(&["metrics", "--format", "yaml"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn runs_list_filters_and_prune_removes_old_runs_with_their_files() {
    let p = TestProject::new();
    let s = p.store();
    for day in [1, 10, 40, 50] {
        run(
            &s,
            &format!("a{day}"),
            "tap-a",
            RunStatus::Success,
            Duration::days(day),
            1,
        );
    }
    run(&s, "b1", "tap-b", RunStatus::Success, Duration::hours(1), 1);
    drop(s);
    let quarantine = p.path().join(".dsm/quarantine");
    std::fs::create_dir_all(&quarantine).unwrap();
    std::fs::write(quarantine.join("a40.users.jsonl"), "{}\n").unwrap();
    std::fs::write(quarantine.join("a1.users.jsonl"), "{}\n").unwrap();

    let ids = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["run_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(json(
            &p.ok(&["runs", "list", "--since", "7d", "--format", "json"])
        )),
        ["b1", "a1"]
    );
    assert_eq!(
        ids(json(&p.ok(&[
            "runs", "list", "--source", "tap-a", "--since", "30d", "--format", "json"
        ]))),
        ["a1", "a10"]
    );
    assert_eq!(
        ids(json(&p.ok(&[
            "runs",
            "list",
            "--flow",
            "dev:tap-b-to-target-jsonl",
            "--format",
            "json"
        ]))),
        ["b1"]
    );

    let dry = json(&p.ok(&[
        "runs",
        "prune",
        "--older-than",
        "30d",
        "--dry-run",
        "--format",
        "json",
    ]));
    assert_eq!(dry["runs"].as_array().unwrap().len(), 2);
    assert!(quarantine.join("a40.users.jsonl").exists());

    let refused = p.dsm(&["runs", "prune"]);
    assert_eq!(refused.status.code(), Some(2));

    let done = p.dsm(&["runs", "prune", "--older-than", "30d"]);
    assert!(done.status.success());
    assert!(String::from_utf8_lossy(&done.stderr).contains("removed 2 runs and 1 file"));
    assert!(!quarantine.join("a40.users.jsonl").exists());
    assert!(quarantine.join("a1.users.jsonl").exists());
    assert_eq!(
        ids(json(&p.ok(&["runs", "list", "--format", "json"]))),
        ["b1", "a1", "a10"]
    );

    p.ok(&["runs", "prune", "--keep", "1"]);
    assert_eq!(
        ids(json(&p.ok(&["runs", "list", "--format", "json"]))),
        ["b1", "a1"]
    );
}

const PROJECT: &str = r#"version: 1
default_environment: dev
environments:
- name: dev
plugins:
  extractors:
  - name: tap-github
    config:
      auth_token: ghp_secret_value
      repositories: [acme/api]
    annotations:
      dsm:
        source: {type: api, provider: GitHub, category: engineering, labels: [prod]}
  - name: tap-postgres
  loaders:
  - name: target-jsonl
"#;

#[test]
fn sources_list_show_and_operator_status_changes() {
    let p = TestProject::new();
    std::fs::write(p.path().join("meltano.yml"), PROJECT).unwrap();
    let s = p.store();
    run(
        &s,
        "g1",
        "tap-github",
        RunStatus::Failed,
        Duration::hours(1),
        3,
    );
    drop(s);

    let list = json(&p.ok(&["sources", "list", "--format", "json"]));
    let rows: Vec<(String, String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["type"].as_str().unwrap().to_owned(),
                e["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let row = |n: &str, t: &str, s: &str| (n.to_owned(), t.to_owned(), s.to_owned());
    assert_eq!(
        rows,
        [
            row("tap-github", "api", "error"),
            row("tap-postgres", "database", "active"),
            row("target-jsonl", "file", "active"),
        ]
    );
    assert_eq!(list[0]["reason"], "`tap-github` exited with 1");

    let only = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["sources", "list", "--format", "json"];
        all.extend_from_slice(args);
        json(&p.ok(&all))
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(only(&["--type", "database"]), ["tap-postgres"]);
    assert_eq!(only(&["--label", "PROD"]), ["tap-github"]);
    assert_eq!(
        only(&["--provider", "github", "--category", "engineering"]),
        ["tap-github"]
    );
    assert_eq!(only(&["--search", "sql"]), ["tap-postgres"]);
    assert_eq!(only(&["--status", "error"]), ["tap-github"]);

    // Disabling needs a reason, and an unknown name gets a did-you-mean.
    let no_reason = p.dsm(&["sources", "disable", "tap-postgres"]);
    assert_eq!(no_reason.status.code(), Some(2));
    let typo = p.dsm(&["sources", "maintenance", "tap-postgre", "--reason", "x"]);
    assert_eq!(typo.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&typo.stderr);
    assert!(
        stderr.contains("no extractor or loader `tap-postgre` in meltano.yml"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `tap-postgres`?"), "{stderr}");

    let out = p.dsm(&[
        "sources",
        "maintenance",
        "tap-postgres",
        "--reason",
        "replica rebuild",
    ]);
    assert!(out.status.success());
    // Issue 30: it said "is now maintenance".
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "`tap-postgres` is now in maintenance (syncs skip it)\n"
    );
    assert_eq!(only(&["--status", "maintenance"]), ["tap-postgres"]);
    let shown = json(&p.ok(&["sources", "show", "tap-postgres", "--format", "json"]));
    assert_eq!(shown["status"]["status"], "maintenance");
    assert_eq!(shown["status"]["reason"], "replica rebuild");
    assert_eq!(shown["status"]["skipped_by_syncs"], true);
    assert_eq!(shown["status_history"][0]["status"], "maintenance");
    p.ok(&["sources", "enable", "tap-postgres"]);
    let shown = json(&p.ok(&["sources", "show", "tap-postgres", "--format", "json"]));
    assert_eq!(shown["status"]["status"], "active");
    assert_eq!(shown["status_history"].as_array().unwrap().len(), 2);

    // Secrets never reach the output.
    let gh = p.ok(&["sources", "show", "tap-github"]);
    assert!(!gh.contains("ghp_secret_value"), "{gh}");
    assert!(gh.contains("auth_token: \"********\""), "{gh}");
    assert!(gh.contains("health (7d)  failing"), "{gh}");
    let gh_json = p.ok(&["sources", "show", "tap-github", "--format", "json"]);
    assert!(!gh_json.contains("ghp_secret_value"));
}

#[test]
fn flows_map_as_text_dot_and_mermaid_with_source_status() {
    let p = TestProject::new();
    std::fs::write(
        p.path().join("meltano.yml"),
        format!(
            "{PROJECT}schedules:\n- name: gh-hourly\n  extractor: tap-github\n  loader: target-jsonl\n  transform: skip\n  interval: '@hourly'\n"
        ),
    )
    .unwrap();
    let s = p.store();
    run(
        &s,
        "g1",
        "tap-github",
        RunStatus::Failed,
        Duration::hours(1),
        3,
    );
    drop(s);
    assert_eq!(
        p.ok(&["flows"]),
        "schedule gh-hourly (@hourly) [error]\n  tap-github → target-jsonl\n"
    );
    assert!(
        p.ok(&["flows", "--format", "dot"])
            .starts_with("digraph dsm_flows {")
    );
    assert!(
        p.ok(&["flows", "--format", "mermaid"])
            .starts_with("flowchart LR\n")
    );
    let j = json(&p.ok(&["flows", "--format", "json"]));
    assert_eq!(j[0]["chains"][0][1]["role"], "loader");
    assert_eq!(p.dsm(&["flows", "--format", "svg"]).status.code(), Some(2));
}

/// A run row damaged by hand (a time that is not a time, a count that is not a number) costs
/// that run only: every listing still works and says which row it skipped, `runs show` of that
/// run names it with a way out, and `runs prune --run-id` removes it.
#[test]
fn a_damaged_history_row_never_breaks_a_whole_command() {
    let p = TestProject::new();
    {
        let store = p.store();
        run(
            &store,
            "good",
            "tap-a",
            RunStatus::Success,
            Duration::hours(2),
            3,
        );
        run(
            &store,
            "bad",
            "tap-b",
            RunStatus::Success,
            Duration::hours(1),
            3,
        );
    }
    let db = rusqlite::Connection::open(p.path().join(".dsm/dsm.db")).unwrap();
    db.execute(
        "UPDATE runs SET started_at = 'garbage' WHERE run_id = 'bad'",
        [],
    )
    .unwrap();
    db.execute(
        "INSERT INTO run_streams (run_id, stream, records, bytes) VALUES ('good', 'odd', 1, 'zz')",
        [],
    )
    .unwrap();

    for args in [
        &["runs", "list", "--format", "json"][..],
        &["health", "--format", "json"],
        &["metrics", "--format", "json"],
        &["sources", "list", "--format", "json"],
        &["flows", "--format", "json"],
    ] {
        let out = p.dsm(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "dsm {args:?}: {stderr}");
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap_or_else(|e| panic!("dsm {args:?} printed no JSON ({e}): {stderr}"));
        assert!(
            stderr.contains("skipping an unreadable run row"),
            "dsm {args:?} says nothing of the skipped row: {stderr}"
        );
    }

    let show = p.dsm(&["runs", "show", "bad"]);
    let stderr = String::from_utf8_lossy(&show.stderr);
    assert_eq!(show.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("run `bad`"), "{stderr}");
    assert!(stderr.contains("dsm runs prune --run-id bad"), "{stderr}");

    let pruned: Value =
        serde_json::from_str(&p.ok(&["runs", "prune", "--run-id", "bad", "--format", "json"]))
            .unwrap();
    assert_eq!(pruned["runs"], serde_json::json!(["bad"]));
    let left: i64 = db
        .query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 1);
    let unknown = p.dsm(&["runs", "prune", "--run-id", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no run `nope`"));
}

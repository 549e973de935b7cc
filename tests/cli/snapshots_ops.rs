//! Snapshots of the operations commands: `runs`, `logs`, `test`, `health`, `sources`, `metrics`,
//! `flows`, `conflicts`, `store`, `webhooks`, `tokens`, `serve` (harness in `snapshots.rs`).

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use crate::snapshots::{project, project_with_history, snap, snap_both, snap_runs};
use crate::support::TestProject;

/// The run id of the newest run.
fn last_run(p: &TestProject) -> String {
    let out = p.dsm(&["--format", "json", "runs", "list"]);
    out.json()[0]["run_id"].as_str().unwrap().to_owned()
}

#[test]
fn runs_and_logs() {
    let p = project_with_history();
    let id = last_run(&p);
    let (list, _) = snap_both(&p, "runs_list", &["runs", "list"]);
    assert_eq!(list.code, 0);
    let (show, _) = snap_both(&p, "runs_show", &["runs", "show", &id]);
    assert_eq!(show.code, 0);
    let (unknown, _) = snap_both(&p, "runs_show_unknown", &["runs", "show", "no-such-run"]);
    assert_eq!(unknown.code, 2);
    let (logs, _) = snap_both(&p, "logs_list", &["logs", "list"]);
    assert_eq!(logs.code, 0);
    let (shown, _) = snap_both(&p, "logs_show", &["logs", "show", &id, "--tail", "3"]);
    assert_eq!(shown.code, 0);
    let dir = snap(&p, "logs_dir", &["logs", "dir"]);
    assert_eq!(dir.code, 0);
    let outs = snap_runs(
        &p,
        "runs_prune",
        &[
            (&["runs", "prune", "--keep", "0", "--dry-run"], ""),
            (&["runs", "prune", "--keep", "0"], ""),
            (&["runs", "list"], ""),
        ],
    );
    assert_eq!(outs[1].code, 0, "{}", outs[1].stderr);
}

#[test]
fn test_health_metrics_flows() {
    let p = project_with_history();
    let (test, _) = snap_both(&p, "test", &["test", "tap-csv", "target-jsonl"]);
    assert_eq!(test.code, 0, "{}", test.stderr);
    let (health, _) = snap_both(&p, "health", &["health"]);
    assert_eq!(health.code, 0);
    let (metrics, _) = snap_both(&p, "metrics", &["metrics"]);
    assert_eq!(metrics.code, 0);
    let (flows, _) = snap_both(&p, "flows", &["flows"]);
    assert_eq!(flows.code, 0);
    for format in ["dot", "mermaid"] {
        let out = snap(
            &p,
            &format!("flows_{format}"),
            &["flows", "--format", format],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
}

#[test]
fn sources() {
    let p = project_with_history();
    let (list, _) = snap_both(&p, "sources_list", &["sources", "list"]);
    assert_eq!(list.code, 0);
    let (show, _) = snap_both(&p, "sources_show", &["sources", "show", "tap-csv"]);
    assert_eq!(show.code, 0);
    let outs = snap_runs(
        &p,
        "sources_status",
        &[
            (
                &[
                    "sources",
                    "maintenance",
                    "tap-csv",
                    "--reason",
                    "moving the file",
                ],
                "",
            ),
            (
                &["sources", "disable", "tap-people", "--reason", "not needed"],
                "",
            ),
            (&["sources", "list"], ""),
            (&["sync"], ""),
            (&["sources", "enable", "tap-csv"], ""),
            (&["sources", "enable", "tap-people"], ""),
            (&["sources", "disable", "tap-nosuch"], ""),
        ],
    );
    assert_eq!(outs[0].code, 0, "{}", outs[0].stderr);
    assert_eq!(outs[3].code, 0, "a paused flow is not a failure");
}

#[test]
fn conflicts() {
    let p = project_with_history();
    let (list, _) = snap_both(&p, "conflicts_list", &["conflicts", "list"]);
    assert_eq!(list.code, 0);
    let (counts, _) = snap_both(&p, "conflicts_counts", &["conflicts", "counts"]);
    assert_eq!(counts.code, 0);
    let outs = snap_runs(
        &p,
        "conflicts_show_prune",
        &[
            (&["conflicts", "show", "1"], ""),
            (&["conflicts", "prune", "--older-than", "30d"], ""),
        ],
    );
    assert_ne!(outs[0].code, 0);
    assert_eq!(outs[1].code, 0, "{}", outs[1].stderr);
}

#[test]
fn store() {
    let p = project_with_history();
    let (status, _) = snap_both(&p, "store_status", &["store", "status"]);
    assert_eq!(status.code, 0);
    let migrate = snap(&p, "store_migrate", &["store", "migrate"]);
    assert_eq!(migrate.code, 0, "{}", migrate.stderr);
    let from = p.root().join(".dsm/dsm.db").display().to_string();
    let to = p.root().join("copy.db").display().to_string();
    let outs = snap_runs(
        &p,
        "store_copy",
        &[
            (&["store", "copy", "--from", &from, "--to", &to], ""),
            (&["store", "copy", "--from", &from, "--to", &to], ""),
        ],
    );
    assert_eq!(outs[0].code, 0, "{}", outs[0].stderr);
    assert_ne!(outs[1].code, 0, "the target is not empty any more");
    let reset = snap(&p, "store_reset_refused", &["store", "reset"]);
    assert_ne!(reset.code, 0);
}

#[test]
fn webhooks() {
    let p = TestProject::new(
        "version: 1\nplugins:\n  extractors:\n  - name: hooks\n    inherit_from: tap-webhook\n    variant: dsm\n    annotations: {dsm: {source: {type: webhook}}}\n  - name: tap-plain\n    namespace: tap_plain\n",
    );
    let outs = snap_runs(
        &p,
        "webhooks",
        &[
            (&["webhooks", "list", "hooks"], ""),
            (&["--format", "json", "webhooks", "list", "hooks"], ""),
            (&["webhooks", "show", "hooks", "1"], ""),
            (&["webhooks", "replay", "hooks"], ""),
            (&["webhooks", "list", "tap-plain"], ""),
        ],
    );
    assert_eq!(outs[0].code, 0, "{}", outs[0].stderr);
    assert_eq!(outs[4].code, 2);
}

#[test]
fn tokens() {
    let p = project();
    let outs = snap_runs(
        &p,
        "tokens",
        &[
            (
                &[
                    "tokens",
                    "create",
                    "ci-bot",
                    "--role",
                    "operator",
                    "--expires",
                    "30d",
                ],
                "",
            ),
            (&["tokens", "create", "ci-bot", "--role", "operator"], ""),
            (&["tokens", "create", "admin1", "--role", "superuser"], ""),
            (&["tokens", "list"], ""),
            (&["--format", "json", "tokens", "list"], ""),
            (&["tokens", "revoke", "ci-bot"], ""),
            (&["tokens", "revoke", "ci-bot"], ""),
        ],
    );
    assert_eq!(outs[0].code, 0, "{}", outs[0].stderr);
    assert_eq!(outs[1].code, 2);
    assert_eq!(outs[2].code, 2);
}

#[test]
fn serve_refuses_bad_flags() {
    let p = project();
    let outs = snap_runs(
        &p,
        "serve_errors",
        &[
            (&["serve", "--bind", "not-an-address"], ""),
            (&["serve", "--tls-cert", "cert.pem"], ""),
        ],
    );
    assert!(outs.iter().all(|o| o.code == 2), "{outs:?}");
}

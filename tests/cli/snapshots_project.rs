//! Snapshots of the project-file commands and the shell helpers: `init`, `validate`, `config`,
//! `add`, `remove`, `plugins list`, `install`, `select`, `completions`, `man` (harness in
//! `snapshots.rs`).

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use crate::snapshots::{project, snap, snap_both, snap_runs};
use crate::support::TestProject;

#[test]
fn init() {
    let p = TestProject::empty();
    let out = snap(&p, "init", &["init", "demo"]);
    assert_eq!(out.code, 0);
    assert!(p.root().join("demo/meltano.yml").is_file());
    let again = snap(&p, "init_again", &["init", "demo"]);
    assert_eq!(again.code, 2);
}

#[test]
fn validate() {
    let p = project();
    let (text, json) = snap_both(&p, "validate", &["validate"]);
    assert_eq!((text.code, json.code), (0, 0));
}

#[test]
fn config() {
    let p = project();
    let (list, _) = snap_both(&p, "config_list", &["config", "list", "tap-csv"]);
    assert_eq!(list.code, 0);
    let (print, _) = snap_both(&p, "config_print", &["config", "print", "tap-csv"]);
    assert_eq!(print.code, 0);
    let outs = snap_runs(
        &p,
        "config_set_unset",
        &[
            (&["config", "set", "tap-csv", "infer_rows", "50"], ""),
            (&["config", "set", "tap-csv", "no_such_setting", "1"], ""),
            (&["config", "unset", "tap-csv", "infer_rows"], ""),
            (&["config", "set", "tap-csv", "infer_rows", "25"], ""),
        ],
    );
    assert_eq!(outs[0].code, 0);
    assert!(p.read("meltano.yml").contains("infer_rows: 25"));
    let (history, _) = snap_both(&p, "config_history", &["config", "history", "tap-csv"]);
    assert_eq!(history.code, 0);
    let outs = snap_runs(
        &p,
        "config_rollback_reset",
        &[
            (&["config", "rollback", "tap-csv", "--to", "2"], ""),
            (&["config", "reset", "tap-csv"], ""),
        ],
    );
    assert_eq!(outs[0].code, 0, "{}", outs[0].stderr);
}

#[test]
fn add_remove_install_plugins() {
    let p = project();
    let (list, _) = snap_both(&p, "plugins_list", &["plugins", "list"]);
    assert_eq!(list.code, 0);
    let outs = snap_runs(
        &p,
        "add_remove",
        &[
            (&["add", "loader", "target-csv"], ""),
            (&["add", "loader", "target-csv"], ""),
            (&["add", "extractor", "tap-nosuch"], ""),
            (&["remove", "loader", "target-csv"], ""),
            (&["remove", "loader", "target-csv"], ""),
        ],
    );
    assert_eq!(outs[0].code, 0, "{}", outs[0].stderr);
    assert_ne!(outs[2].code, 0);
    assert!(!p.read("meltano.yml").contains("target-csv"));
    let install = snap(&p, "install", &["install"]);
    assert_eq!(install.code, 0, "{}", install.stderr);
}

#[test]
fn select() {
    let p = project();
    let outs = snap_runs(
        &p,
        "select",
        &[
            (&["select", "tap-csv", "--list"], ""),
            (&["select", "tap-csv", "--list", "--all"], ""),
            (&["select", "tap-csv", "users", "name", "--exclude"], ""),
            (&["select", "tap-csv", "--list"], ""),
            (
                &["select", "tap-csv", "--rm", "users", "name", "--exclude"],
                "",
            ),
        ],
    );
    assert!(outs.iter().all(|o| o.code == 0), "{outs:?}");
    let json = snap(
        &p,
        "select_json",
        &["select", "tap-csv", "--list", "--json"],
    );
    assert_eq!(json.code, 0);
}

#[test]
fn completions_and_man() {
    let p = project();
    // The scripts are long: their first lines show the shape; `completions.rs` tests the rest.
    for shell in ["bash", "zsh", "fish"] {
        let out = p.dsm(&["completions", shell]);
        assert_eq!(out.code, 0);
        let head: String = out
            .stdout
            .lines()
            .take(12)
            .map(|l| format!("{l}\n"))
            .collect();
        let args = ["completions", shell];
        let shown = crate::snapshots::render(
            &args,
            &crate::support::Output {
                code: out.code,
                stdout: format!("{head}[{} more lines]\n", out.stdout.lines().count() - 12),
                stderr: out.stderr.clone(),
            },
        );
        crate::snapshots::settings(&p)
            .bind(|| insta::assert_snapshot!(format!("completions_{shell}"), shown));
    }
    let bad = snap(&p, "completions_unknown_shell", &["completions", "tcsh"]);
    assert_eq!(bad.code, 2);
    let help = snap(&p, "help", &["--help"]);
    assert_eq!(help.code, 0);
    let version = snap(&p, "version", &["--version"]);
    assert_eq!(version.code, 0);
    let man = p.dsm(&["man"]);
    assert_eq!(man.code, 0);
    let head: String = man
        .stdout
        .lines()
        .take(20)
        .map(|l| format!("{l}\n"))
        .collect();
    crate::snapshots::settings(&p).bind(|| insta::assert_snapshot!("man_head", head));
}

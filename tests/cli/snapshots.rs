//! Issue 19: what users see, as reviewed snapshots. Every command and subcommand runs on a
//! deterministic project made of the built-in plugins (`tap-csv`, `target-jsonl`: no network, no
//! Python), and its exit code, stdout and stderr are compared with `tests/cli/snapshots/*.snap`,
//! in text and, where the command takes it, in `--format json`. Filters replace what changes from
//! run to run (times, durations, ids, paths, pids, the host name, the version) so a snapshot only
//! changes when the output does. A changed output is a diff to review: `cargo insta review`, or
//! `INSTA_UPDATE=always cargo test --test cli snapshots` and `git diff`. With `CI=true` insta
//! writes nothing, so a missing or different snapshot fails the test.
//!
//! The command groups live in `snapshots_*.rs` beside this file; this one holds the harness, the
//! fixture and the errors users meet most.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::io::Write as _;
use std::process::Stdio;

use crate::support::{Output, TestProject};

/// The fixture's `meltano.yml`: the built-in `tap-csv` twice (one with a password setting, so
/// secrets have something to hold), the built-in `target-jsonl`, a job and a schedule.
pub(crate) const MELTANO_YML: &str = "\
version: 1
project_id: snapshots
default_environment: dev
environments:
- name: dev
plugins:
  extractors:
  - name: tap-csv
    variant: dsm
    config:
      files: [{entity: users, path: users.csv, keys: [id]}]
  - name: tap-people
    inherit_from: tap-csv
    variant: dsm
    settings:
    - {name: api_token, kind: password}
    config:
      files: [{entity: people, path: people.csv, keys: [id]}]
  loaders:
  - name: target-jsonl
    variant: dsm
    config: {destination_path: out}
jobs:
- name: daily
  tasks: [tap-csv target-jsonl]
schedules:
- name: daily-schedule
  job: daily
  interval: '@daily'
";

/// The fixture project: `MELTANO_YML`, two CSV files and a master key file named by
/// `DSM_MASTER_KEY_FILE` (not created: `secrets init` does that).
pub(crate) fn project() -> TestProject {
    let p = TestProject::new(MELTANO_YML);
    p.write("users.csv", "id,name\n1,ada\n2,grace\n3,linus\n");
    p.write("people.csv", "id,name\n1,alan\n2,barbara\n");
    let key = p.root().join(".keys/master.key");
    // The user recorded in histories and the audit log.
    p.env("DSM_MASTER_KEY_FILE", key.to_str().unwrap())
        .env("USER", "tester")
        .env("LOGNAME", "tester")
        .env("USERNAME", "tester")
}

/// The fixture after `secrets init`, a stored secret and one run, so lists have rows.
pub(crate) fn project_with_history() -> TestProject {
    let p = project();
    let key = p.root().join(".keys/master.key");
    expect_ok(
        &p,
        &["secrets", "init", "--key-file", key.to_str().unwrap()],
        "",
    );
    expect_ok(
        &p,
        &["config", "set", "tap-people", "api_token", "--value-stdin"],
        "s3cret-token\n",
    );
    expect_ok(&p, &["run", "tap-csv", "target-jsonl"], "");
    p
}

/// Runs dsm with `stdin` and asserts it succeeded.
pub(crate) fn expect_ok(p: &TestProject, args: &[&str], stdin: &str) -> Output {
    let out = dsm_with_stdin(p, args, stdin);
    assert_eq!(out.code, 0, "{args:?}: {}\n{}", out.stdout, out.stderr);
    out
}

/// Runs dsm in the project with `stdin` written to it.
pub(crate) fn dsm_with_stdin(p: &TestProject, args: &[&str], stdin: &str) -> Output {
    let mut cmd = p.command(args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // A command that does not read stdin may exit before we write: that is not a failure.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The machine's host name, which run records and leases show.
fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())?;
    let name = name.trim().to_owned();
    (name.len() >= 2).then_some(name)
}

/// The filters that make a snapshot the same from run to run and machine to machine.
pub(crate) fn settings(p: &TestProject) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_prepend_module_to_snapshot(false);
    s.set_omit_expression(true);
    let root = p.root().display().to_string();
    s.add_filter(&regex::escape(&root), "[PROJECT]");
    if let Ok(canonical) = p.root().canonicalize() {
        s.add_filter(
            &regex::escape(&canonical.display().to_string()),
            "[PROJECT]",
        );
    }
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_dsm"))
        .parent()
        .unwrap()
        .display()
        .to_string();
    s.add_filter(&regex::escape(&bin_dir), "[BIN]");
    s.add_filter(&regex::escape(env!("CARGO_MANIFEST_DIR")), "[REPO]");
    s.add_filter(r"/tmp/\.tmp[A-Za-z0-9]+", "[TMP]");
    let version = regex::escape(env!("CARGO_PKG_VERSION"));
    s.add_filter(&format!(r"\b{version}\b"), "[VERSION]");
    // Run ids, request ids, event ids: UUIDs.
    s.add_filter(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "[UUID]",
    );
    // Timestamps: RFC 3339 with or without fractions and zone, and `YYYY-MM-DD HH:MM:SS`.
    s.add_filter(
        r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2}| UTC)?",
        "[TIME]",
    );
    s.add_filter(r"\b\d{4}-\d{2}-\d{2}\b", "[DATE]");
    // Unix times in metrics and JSON.
    s.add_filter(r"\b1[6-9]\d{8}(\.\d+)?\b", "[UNIX_TIME]");
    // A master key's id: random keys, random ids (before durations: an id of
    // digits ending in `d` reads as a number of days).
    s.add_filter(r"\bid [0-9a-f]{16}\b", "id [KEY_ID]");
    s.add_filter(r#""key_id": "[0-9a-f]{16}""#, r#""key_id": "[KEY_ID]""#);
    // Durations as people read them, and seconds in JSON.
    // (Not in backticks: those are examples in hints, the same every time.)
    s.add_filter(
        r"(^|[^`\w.])\d+(\.\d+)?(ns|µs|us|ms|s|m|h|d)( \d+(\.\d+)?(ms|s|m))?\b( ago)?",
        "${1}[DURATION]",
    );
    s.add_filter(
        r#""([a-z_0-9]*(duration|seconds|per_second|elapsed)[a-z_0-9]*)": [0-9.e+-]+"#,
        r#""$1": [NUMBER]"#,
    );
    // A rate in a table, before its duration percentiles (`dsm health`).
    s.add_filter(r"(\s)\d+(\.\d+)?(\s+\[DURATION\])", "$1[RATE]$3");
    s.add_filter(
        r#"(_duration_seconds|_seconds)(\{[^}]*\})? [0-9.e+-]+"#,
        "$1$2 [NUMBER]",
    );
    // API tokens (printed once, by `tokens create`).
    // (`dsm_` and 256 bits in URL-safe base64: 43 characters; metric names are shorter.)
    s.add_filter(r"(?m)\bdsm_[A-Za-z0-9_-]{43}$", "[TOKEN]");
    // Per-run scratch folders carry the pid.
    s.add_filter(r"dsm-run-\d+-", "dsm-run-[PID]-");
    // Process ids and the host name in run records.
    s.add_filter(r#""pid": \d+"#, r#""pid": [PID]"#);
    s.add_filter(r"\bpid \d+", "pid [PID]");
    if let Some(host) = host_name() {
        s.add_filter(&format!(r"\b{}\b", regex::escape(&host)), "[HOST]");
    }
    // Sizes that depend on the file system (record bytes do not: a record's `time_extracted`
    // has a fixed width).
    s.add_filter(r"\b\d+(\.\d+)? ?(B|KiB|MiB|GiB|bytes)\b", "[SIZE]");
    // Rates.
    s.add_filter(r"\b\d+(\.\d+)? ?(records|rows|rec)/s\b", "[RATE]");
    // Column widths follow the widest value, which the filters above just changed: keep
    // indentation, but squeeze runs of spaces between columns.
    s.add_filter(r"(\S)  +", "$1  ");
    s
}

/// How one dsm run looked to the user.
pub(crate) fn render(args: &[&str], out: &Output) -> String {
    let mut shown = format!("$ dsm {}\nexit code: {}\n", args.join(" "), out.code);
    for (name, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        if text.is_empty() {
            continue;
        }
        shown.push_str(&format!("----- {name} -----\n{text}"));
        if !text.ends_with('\n') {
            shown.push_str("\n[no newline at the end]\n");
        }
    }
    shown
}

/// Runs each command in turn (with `stdin`) and snapshots what they printed, together, under
/// `name`. Returns the outputs for behavioural checks.
pub(crate) fn snap_runs(p: &TestProject, name: &str, runs: &[(&[&str], &str)]) -> Vec<Output> {
    let mut shown = String::new();
    let mut outs = Vec::new();
    for (args, stdin) in runs {
        let out = dsm_with_stdin(p, args, stdin);
        if !shown.is_empty() {
            shown.push('\n');
        }
        shown.push_str(&render(args, &out));
        outs.push(out);
    }
    settings(p).bind(|| insta::assert_snapshot!(name, shown));
    outs
}

/// Snapshots `args` in text, then with `--format json`.
pub(crate) fn snap_both(p: &TestProject, name: &str, args: &[&str]) -> (Output, Output) {
    let mut json = vec!["--format", "json"];
    json.extend_from_slice(args);
    let mut outs = snap_runs(p, name, &[(args, ""), (&json, "")]).into_iter();
    (outs.next().unwrap(), outs.next().unwrap())
}

/// Snapshots `args` (text only).
pub(crate) fn snap(p: &TestProject, name: &str, args: &[&str]) -> Output {
    snap_runs(p, name, &[(args, "")]).pop().unwrap()
}

#[test]
fn errors_users_meet() {
    let p = project();
    // An unknown plugin, with did-you-mean.
    let out = snap_both(&p, "error_unknown_plugin", &["config", "list", "tap-cvs"]).0;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("tap-csv"), "{}", out.stderr);
    let out = snap(&p, "error_unknown_command", &["confg", "list"]);
    assert_eq!(out.code, 2);
    // A bad duration.
    let out = snap_both(
        &p,
        "error_bad_duration",
        &["runs", "list", "--since", "3 fortnights"],
    )
    .0;
    assert_eq!(out.code, 2);
    let out = snap(
        &p,
        "error_duration_too_long",
        &["runs", "prune", "--older-than", "6000w"],
    );
    assert_eq!(out.code, 2);
    // A missing master key: the secret cannot be stored.
    let out = snap_runs(
        &p,
        "error_missing_key",
        &[(
            &["config", "set", "tap-people", "api_token", "--value-stdin"],
            "a-long-enough-value\n",
        )],
    )
    .pop()
    .unwrap();
    assert_ne!(out.code, 0);
    // A meltano.yml that does not parse: the file and line.
    let bad = project();
    bad.write(
        "meltano.yml",
        "version: 1\nplugins:\n  extractors:\n  - name: tap-csv\n    config: {files: [\n",
    );
    let out = snap_both(&bad, "error_bad_meltano_yml", &["validate"]).0;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("meltano.yml"), "{}", out.stderr);
    // A meltano.yml that parses but names an unknown job task and a bad key.
    let wrong = project();
    wrong.write(
        "meltano.yml",
        &MELTANO_YML.replace(
            "tasks: [tap-csv target-jsonl]",
            "tasks: [tap-csvv target-jsonl]",
        ),
    );
    let out = snap_both(&wrong, "error_validate_unknown_task", &["validate"]).0;
    assert_ne!(out.code, 0);
    // No project at all.
    let none = TestProject::empty();
    let out = snap_both(&none, "error_no_project", &["config", "list", "tap-csv"]).0;
    assert_eq!(out.code, 2);
}

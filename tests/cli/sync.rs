//! `dsm sync`: plans with dependencies, cycles, and (with the fake plugins) a three-flow graph
//! with a dependency and a failure.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]
use crate::support::TestProject;

const TAP: &str = env!("CARGO_BIN_EXE_dsm-fake-tap");
const TARGET: &str = env!("CARGO_BIN_EXE_dsm-fake-target");

fn project(extra: &str) -> TestProject {
    let p = TestProject::empty();
    let script = |name: &str, body: String| {
        p.write(name, &format!("#!/bin/sh\n{body}\n"));
        let path = p.root().join(name);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    };
    let good = script("good-tap", format!("exec {TAP} --generate 3 \"$@\""));
    let bad = script(
        "bad-tap",
        format!("exec {TAP} --stderr 'token expired for tap-bad' --exit-code 1 \"$@\""),
    );
    let target = script(
        "target",
        format!(
            "exec {TARGET} --output {}/out.jsonl \"$@\"",
            p.root().display()
        ),
    );
    p.write(
        "meltano.yml",
        &format!(
            "\
version: 1
project_id: p
plugins:
  extractors:
  - name: tap-good
    namespace: tap_good
    executable: {good}
  - name: tap-bad
    namespace: tap_bad
    executable: {bad}
  loaders:
  - name: target-x
    namespace: target_x
    executable: {target}
{extra}"
        ),
    );
    p
}

const GRAPH: &str = "\
jobs:
- name: first
  tasks: [tap-good target-x]
- name: after-first
  tasks: [tap-good target-x]
  annotations:
    dsm:
      depends_on: [first]
- name: broken
  tasks: [tap-bad target-x]
- name: after-broken
  tasks: [tap-good target-x]
  annotations:
    dsm:
      depends_on: [broken]
";

#[test]
fn dry_run_prints_dependencies_first() {
    let p = project(GRAPH);
    let out = p.dsm(&["--format", "json", "sync", "--dry-run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let names: Vec<String> = out.json()["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    let at = |n: &str| names.iter().position(|x| x == n).unwrap();
    assert!(at("first") < at("after-first"), "{names:?}");
    assert!(at("broken") < at("after-broken"), "{names:?}");
    let text = p.dsm(&["sync", "--dry-run", "after-first"]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(text.stdout.contains("after-first"), "{}", text.stdout);
    assert!(!text.stdout.contains("broken"), "{}", text.stdout);
    // Planning changes nothing: a project that never ran still has no store.
    assert!(!p.root().join(".dsm/dsm.db").exists());
}

#[test]
fn a_dependency_cycle_is_an_error_naming_it() {
    let p = project(
        "\
jobs:
- name: a
  tasks: [tap-good target-x]
  annotations: {dsm: {depends_on: [b]}}
- name: b
  tasks: [tap-good target-x]
  annotations: {dsm: {depends_on: [a]}}
",
    );
    let out = p.dsm(&["sync", "--dry-run"]);
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(out.stderr.contains("cycle"), "{}", out.stderr);
    assert!(
        out.stderr.contains("a → b → a") || out.stderr.contains("b → a → b"),
        "{}",
        out.stderr
    );
}

#[test]
fn three_flows_with_a_dependency_and_a_failure() {
    let p = project(GRAPH);
    let out = p.dsm(&["--format", "json", "sync", "--parallel", "2"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    // One document on stdout: the summary with its `error` member; the error also on stderr.
    let doc = out.json();
    assert_eq!(doc["error"]["exit_code"], 1, "{doc}");
    assert!(out.stderr.contains("did not succeed"), "{}", out.stderr);
    let status = |name: &str| {
        doc["flows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {doc}"))["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(status("first"), "succeeded", "{doc}");
    assert_eq!(status("after-first"), "succeeded", "{doc}");
    assert_eq!(status("broken"), "failed", "{doc}");
    assert_eq!(status("after-broken"), "skipped", "{doc}");
    // The cause reaches the cron mail: the failed flow, its plugin's last stderr line, its log.
    let details = doc["error"]["details"].to_string();
    assert!(
        details.contains("`broken`: extractor `tap-bad`"),
        "{details}"
    );
    assert!(details.contains("token expired for tap-bad"), "{details}");
    assert!(details.contains(".dsm/logs/"), "{details}");
    assert!(
        out.stderr.contains("token expired for tap-bad"),
        "{}",
        out.stderr
    );

    let ok = p.dsm(&["sync", "first"]);
    assert_eq!(ok.code, 0, "{}\n{}", ok.stdout, ok.stderr);
    assert_eq!(ok.stdout.lines().count(), 1, "{}", ok.stdout);
}

/// `project` plus a tap that fails on its first start and succeeds from then on.
fn flaky_project(extra: &str) -> TestProject {
    let p = project(extra);
    let marker = p.root().join("failed-once");
    p.write(
        "flaky-tap",
        &format!(
            "#!/bin/sh\nif [ -e {m} ]; then exec {TAP} --generate 3 \"$@\"; fi\n\
             touch {m}\necho 'flaky: the first start fails' >&2\nexit 1\n",
            m = marker.display()
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        p.root().join("flaky-tap"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let yml = p.read("meltano.yml").replacen(
        "  loaders:\n",
        &format!(
            "  - name: tap-flaky\n    namespace: tap_flaky\n    executable: {}\n  loaders:\n",
            p.root().join("flaky-tap").display()
        ),
        1,
    );
    p.write("meltano.yml", &yml);
    p
}

/// The runs whose trigger starts with `prefix`, oldest first: (trigger, status, attempt).
fn runs_triggered(p: &TestProject, prefix: &str) -> Vec<(String, String, u64)> {
    let out = p.dsm(&["--format", "json", "runs", "list", "--limit", "100"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut runs: Vec<(String, String, u64)> = out
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["trigger"].as_str().unwrap().starts_with(prefix))
        .map(|r| {
            (
                r["trigger"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
                r["attempt"].as_u64().unwrap(),
            )
        })
        .collect();
    runs.reverse();
    runs
}

#[test]
fn each_retry_is_a_run_and_the_last_attempt_decides() {
    let p = flaky_project(
        "\
jobs:
- name: flaky
  tasks: [tap-flaky target-x]
  annotations: {dsm: {retries: 2, retry_backoff: 0}}
- name: hopeless
  tasks: [tap-bad target-x]
  annotations: {dsm: {retries: 1, retry_backoff: 0}}
",
    );
    let out = p.dsm(&["--format", "json", "sync", "flaky"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let doc = out.json();
    let flow = &doc["flows"][0];
    assert_eq!(flow["status"], "succeeded", "{doc}");
    let attempts: Vec<&str> = flow["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_str().unwrap())
        .collect();
    assert_eq!(attempts, ["failed", "succeeded"], "{doc}");
    assert_eq!(flow["records"], 3, "{doc}");
    assert_eq!(
        runs_triggered(&p, "sync:flaky"),
        [
            (
                "sync:flaky (attempt 1 of 3)".to_string(),
                "failed".to_string(),
                1
            ),
            (
                "sync:flaky (attempt 2 of 3)".to_string(),
                "success".to_string(),
                2
            ),
        ]
    );

    // Every attempt fails: the flow fails, each attempt has its row.
    let out = p.dsm(&["sync", "hopeless"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("failed"), "{}", out.stdout);
    assert!(out.stdout.contains("2 attempts"), "{}", out.stdout);
    let rows = runs_triggered(&p, "sync:hopeless");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r.1 == "failed"), "{rows:?}");
    assert_eq!(rows.iter().map(|r| r.2).collect::<Vec<_>>(), [1, 2]);
}

#[test]
fn parallelism_is_an_alias_of_parallel() {
    let p = project(GRAPH);
    for flag in ["-p", "--parallelism", "--parallel"] {
        let out = p.dsm(&["sync", flag, "2", "first", "after-first"]);
        assert_eq!(out.code, 0, "{flag}: {}\n{}", out.stdout, out.stderr);
        assert_eq!(out.stdout.lines().count(), 2, "{flag}: {}", out.stdout);
    }
    let out = p.dsm(&["sync", "--parallelism", "many"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
}

#[test]
fn a_name_of_several_kinds_is_a_usage_error_listing_them() {
    let p = project(
        "\
jobs:
- name: tap-good
  tasks: [tap-good target-x]
schedules:
- name: tap-good
  job: tap-good
  interval: '@manual'
",
    );
    let yml = p.read("meltano.yml").replacen(
        "    namespace: tap_good\n",
        "    namespace: tap_good\n    annotations: {dsm: {default_loader: target-x}}\n",
        1,
    );
    p.write("meltano.yml", &yml);
    let out = p.dsm(&["sync", "tap-good"]);
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("`tap-good` names more than one flow: a schedule, a job, an extractor"),
        "{}",
        out.stderr
    );
    for kind in ["schedule", "job", "extractor"] {
        assert!(
            out.stderr.contains(&format!("`{kind}:tap-good`")),
            "{}",
            out.stderr
        );
    }
    assert!(!p.root().join("out.jsonl").exists(), "nothing ran");
    // The kind prefix picks one.
    let out = p.dsm(&["sync", "extractor:tap-good"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
}

#[test]
fn sources_in_maintenance_or_disabled_are_paused_not_failed() {
    let p = project(GRAPH);
    let out = p.dsm(&[
        "sources",
        "maintenance",
        "tap-bad",
        "--reason",
        "vendor outage",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = p.dsm(&["--format", "json", "sync"]);
    // `broken` would fail; with its source in maintenance it is paused, and so is its dependant.
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("skipping `broken`: source `tap-bad` is in maintenance: vendor outage"),
        "{}",
        out.stderr
    );
    let doc = out.json();
    assert_eq!(doc["succeeded"], true, "{doc}");
    let flow = |name: &str| {
        doc["flows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {doc}"))
            .clone()
    };
    assert_eq!(flow("first")["status"], "succeeded");
    assert_eq!(flow("after-first")["status"], "succeeded");
    let broken = flow("broken");
    assert_eq!(broken["status"], "paused", "{doc}");
    assert_eq!(
        broken["paused_reason"],
        "source `tap-bad` is in maintenance: vendor outage"
    );
    assert_eq!(broken["attempts"].as_array().unwrap().len(), 0);
    let after = flow("after-broken");
    assert_eq!(after["status"], "paused", "{doc}");
    assert_eq!(after["skipped_because"], "broken");
    assert!(
        runs_triggered(&p, "sync:broken").is_empty(),
        "a paused flow starts no run"
    );
    assert!(runs_triggered(&p, "sync:after-broken").is_empty());

    // Text summary: one line per flow, the pause with its reason.
    let out = p.dsm(&["sources", "disable", "tap-good", "--reason", "retired"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = p.dsm(&["sync", "first"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        out.stdout.trim_end(),
        "first  paused     source `tap-good` is inactive: retired"
    );

    // Back in service, the failing source fails the sync again.
    let out = p.dsm(&["sources", "enable", "tap-bad"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = p.dsm(&["sync", "broken"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("failed"), "{}", out.stdout);
}

#[test]
fn a_schedule_running_a_job_pauses_when_its_source_is_disabled() {
    // Meltano's usual form (the quickstart's): a schedule names a job.
    let p = project(
        "\
jobs:
- name: load-good
  tasks: [tap-good target-x]
schedules:
- name: nightly
  interval: '@daily'
  job: load-good
",
    );
    let out = p.dsm(&["sources", "disable", "tap-good", "--reason", "retired"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for args in [
        &["sync", "nightly"][..],
        &["schedule", "run", "nightly"][..],
    ] {
        let out = p.dsm(args);
        assert_eq!(out.code, 0, "{args:?}: {}\n{}", out.stdout, out.stderr);
        assert!(
            out.stdout
                .contains("nightly  paused     source `tap-good` is inactive: retired"),
            "{args:?}: {}",
            out.stdout
        );
    }
    assert!(
        runs_triggered(&p, "").is_empty(),
        "a paused flow starts no run"
    );
}

#[test]
fn an_explicit_run_of_a_disabled_source_is_refused_unless_include_disabled() {
    let p = project(
        "\
jobs:
- name: load-good
  tasks: [tap-good target-x]
",
    );
    let out = p.dsm(&[
        "sources",
        "maintenance",
        "tap-good",
        "--reason",
        "vendor outage",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for args in [
        &["run", "tap-good", "target-x"][..],
        &["run", "load-good"][..],
        &["el", "tap-good", "target-x"][..],
    ] {
        let out = p.dsm(args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr
                .contains("error: source `tap-good` is in maintenance: vendor outage (set by "),
            "{args:?}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains("`dsm sources enable tap-good`")
                && out.stderr.contains("`--include-disabled`"),
            "{}",
            out.stderr
        );
    }
    assert!(runs_triggered(&p, "").is_empty(), "no run started");
    let out = p.dsm(&["run", "load-good", "--include-disabled"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("running it because of `--include-disabled`"),
        "{}",
        out.stderr
    );
    assert_eq!(runs_triggered(&p, "").len(), 1);
    // Another source's flow is not concerned.
    let out = p.dsm(&["run", "tap-bad", "target-x"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
}

// Issue 30: the quickstart's `dsm sync` did not say where the data went, and a second run sent
// records again without saying why.
#[test]
fn issue_30_quickstart_sync_says_where_the_data_went_and_why_it_sends_again() {
    let p = crate::support::TestProject::empty();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    crate::support::copy_dir(&example, p.root());
    let mask = |text: &str| {
        let re = regex::Regex::new(r"\d+\.\ds").unwrap();
        re.replace_all(text, "[TIME]").into_owned()
    };
    let out = p.dsm(&["sync"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    insta::assert_snapshot!(mask(&out.stdout), @"daily-warehouse-load  succeeded  21 records  [TIME]  1 attempt  → `target-sqlite` (database `output/warehouse.db`)");
    assert!(!out.stderr.contains("sent again"), "{}", out.stderr);
    let out = p.dsm(&["sync"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    insta::assert_snapshot!(mask(&out.stdout), @"daily-warehouse-load  succeeded  14 records  [TIME]  1 attempt  → `target-sqlite` (database `output/warehouse.db`)");
    let notes: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("note:"))
        .collect();
    insta::assert_snapshot!(notes.join("\n"), @"note: `daily-warehouse-load`: records sent again: `customers`, `products` are full-table (no bookmark), so every run sends all rows; `orders` is incremental and starts again from the bookmarked row (`>=`: at-least-once)");
}

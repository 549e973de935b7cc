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
    let bad = script("bad-tap", format!("exec {TAP} --exit-code 1 \"$@\""));
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

    let ok = p.dsm(&["sync", "first"]);
    assert_eq!(ok.code, 0, "{}\n{}", ok.stdout, ok.stderr);
    assert_eq!(ok.stdout.lines().count(), 1, "{}", ok.stdout);
}

//! Edits of a project split with `include_paths`: every command that edits changes the file that
//! defines the plugin, job or schedule, as real Meltano (from `DSM_TEST_VENV`) does. Each step
//! runs in two copies of one project, dsm in one and Meltano in the other: the same files must
//! change, and Meltano must read both copies the same way afterwards.

use std::collections::BTreeMap;
use std::process::Command;

use crate::support::{Output, TestProject, clean_env, meltano_venv, run};

const MAIN: &str = r#"version: 1
default_environment: dev
project_id: dsm-includes-parity
send_anonymous_usage_stats: false
include_paths:
- ./extract/*.meltano.yml
environments:
- name: dev
plugins:
  loaders:
  - name: target-inc
    namespace: target_inc
    executable: target-inc
"#;

const INCLUDED: &str = r#"plugins:
  extractors:
  - name: tap-inc
    namespace: tap_inc
    executable: tap-inc
    settings:
    - name: host
    - name: port
      kind: integer
    config:
      host: a.example
    select:
    - users.*
jobs:
- name: inc-job
  tasks:
  - tap-inc target-inc
schedules:
- name: inc-nightly
  interval: '@daily'
  job: inc-job
"#;

fn project() -> TestProject {
    let p = TestProject::new(MAIN);
    p.write("extract/taps.meltano.yml", INCLUDED);
    p
}

fn meltano(p: &TestProject, args: &[&str]) -> Output {
    let mut cmd = Command::new(meltano_venv().join("bin/meltano"));
    clean_env(&mut cmd);
    cmd.args(args)
        .current_dir(p.root())
        .env("MELTANO_SEND_ANONYMOUS_USAGE_STATS", "false");
    run(cmd)
}

/// The text of every project file.
fn files(p: &TestProject) -> BTreeMap<String, String> {
    ["meltano.yml", "extract/taps.meltano.yml"]
        .iter()
        .map(|f| (f.to_string(), p.read(f)))
        .collect()
}

fn changed(before: &BTreeMap<String, String>, p: &TestProject) -> Vec<String> {
    files(p)
        .into_iter()
        .filter(|(f, text)| before.get(f) != Some(text))
        .map(|(f, _)| f)
        .collect()
}

/// What Meltano reads: `what`'s config, or the schedules or jobs when `what` is `schedules` or
/// `jobs`.
fn meltano_view(p: &TestProject, what: &str) -> String {
    let out = if what == "schedules" || what == "jobs" {
        meltano(p, &[&what[..what.len() - 1], "list", "--format", "json"])
    } else {
        meltano(
            p,
            &["config", "--unsafe", "print", what, "--format", "json"],
        )
    };
    assert_eq!(
        out.code, 0,
        "meltano cannot read the project:\n{}",
        out.stderr
    );
    out.stdout
}

/// Runs `dsm_args` in one copy and `meltano_args` in the other; both succeed, change the same
/// files, and Meltano reads both the same way (see [`meltano_view`]).
fn same_edit(
    ours: &TestProject,
    theirs: &TestProject,
    dsm_args: &[&str],
    meltano_args: &[&str],
    plugin: &str,
) {
    let (before_ours, before_theirs) = (files(ours), files(theirs));
    let out = ours.dsm(dsm_args);
    assert_eq!(out.code, 0, "dsm {dsm_args:?}: {}", out.stderr);
    let out = meltano(theirs, meltano_args);
    assert_eq!(out.code, 0, "meltano {meltano_args:?}: {}", out.stderr);
    assert_eq!(
        changed(&before_ours, ours),
        changed(&before_theirs, theirs),
        "dsm {dsm_args:?} and meltano {meltano_args:?} changed different files"
    );
    assert_eq!(
        meltano_view(ours, plugin),
        meltano_view(theirs, plugin),
        "after dsm {dsm_args:?}"
    );
    let out = ours.dsm(&["validate"]);
    assert_eq!(
        out.code, 0,
        "after dsm {dsm_args:?}: {}{}",
        out.stdout, out.stderr
    );
}

fn included_defines(p: &TestProject, needle: &str) -> bool {
    p.read("extract/taps.meltano.yml").contains(needle)
}

fn main_has_no(p: &TestProject, needle: &str) {
    let main = p.read("meltano.yml");
    assert!(
        !main.contains(needle),
        "meltano.yml got `{needle}`:\n{main}"
    );
}

#[test]
fn config_edits_of_an_included_plugin_go_to_the_file_that_defines_it() {
    let (ours, theirs) = (project(), project());
    same_edit(
        &ours,
        &theirs,
        &["config", "set", "tap-inc", "port", "5433"],
        &["config", "set", "tap-inc", "port", "5433"],
        "tap-inc",
    );
    assert!(included_defines(&ours, "5433"));
    main_has_no(&ours, "tap-inc");
    same_edit(
        &ours,
        &theirs,
        &["config", "set", "tap-inc", "host", "b.example"],
        &["config", "set", "tap-inc", "host", "b.example"],
        "tap-inc",
    );
    same_edit(
        &ours,
        &theirs,
        &["config", "unset", "tap-inc", "host"],
        &["config", "unset", "tap-inc", "host"],
        "tap-inc",
    );
    assert!(!included_defines(&ours, "b.example"));
    same_edit(
        &ours,
        &theirs,
        &["config", "reset", "tap-inc"],
        &["config", "reset", "--yes", "tap-inc"],
        "tap-inc",
    );
    assert!(!included_defines(&ours, "5433"));
    main_has_no(&ours, "tap-inc");
}

#[test]
fn select_of_an_included_extractor_goes_to_the_file_that_defines_it() {
    let (ours, theirs) = (project(), project());
    same_edit(
        &ours,
        &theirs,
        &["select", "tap-inc", "orders", "id"],
        &["select", "tap-inc", "orders", "id"],
        "tap-inc",
    );
    assert!(included_defines(&ours, "orders.id"));
    same_edit(
        &ours,
        &theirs,
        &["select", "tap-inc", "--rm", "users", "*"],
        &["select", "tap-inc", "--rm", "users", "*"],
        "tap-inc",
    );
    assert!(!included_defines(&ours, "users.*"));
    main_has_no(&ours, "tap-inc");
}

#[test]
fn add_inherit_and_remove_of_included_plugins_keep_one_definition_each() {
    let (ours, theirs) = (project(), project());
    // A new plugin goes to meltano.yml, also when its parent is defined in an included file
    // (`meltano add` needs the hub to add one, so Meltano's copy gets the same lines by hand).
    let out = ours.dsm(&[
        "add",
        "extractor",
        "tap-inc--eu",
        "--inherit-from",
        "tap-inc",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(ours.read("meltano.yml").contains("tap-inc--eu"));
    assert!(!included_defines(&ours, "tap-inc--eu"));
    theirs.write(
        "meltano.yml",
        &format!("{MAIN}  extractors:\n  - name: tap-inc--eu\n    inherit_from: tap-inc\n"),
    );
    assert_eq!(
        meltano_view(&ours, "tap-inc--eu"),
        meltano_view(&theirs, "tap-inc--eu")
    );
    same_edit(
        &ours,
        &theirs,
        &["config", "set", "tap-inc--eu", "host", "eu.example"],
        &["config", "set", "tap-inc--eu", "host", "eu.example"],
        "tap-inc--eu",
    );
    assert!(!included_defines(&ours, "eu.example"));
    // Removing the included plugin removes it from its own file.
    same_edit(
        &ours,
        &theirs,
        &["remove", "extractor", "tap-inc--eu"],
        &["remove", "extractor", "tap-inc--eu"],
        "tap-inc",
    );
    for args in [
        &["schedule", "remove", "inc-nightly"][..],
        &["job", "remove", "inc-job"][..],
    ] {
        let out = ours.dsm(args);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    }
    let out = ours.dsm(&["remove", "extractor", "tap-inc"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        !included_defines(&ours, "name: tap-inc"),
        "{}",
        ours.read("extract/taps.meltano.yml")
    );
    main_has_no(&ours, "tap-inc");
}

#[test]
fn schedule_edits_of_an_included_schedule_go_to_the_file_that_defines_it() {
    let (ours, theirs) = (project(), project());
    same_edit(
        &ours,
        &theirs,
        &["schedule", "set", "inc-nightly", "--interval", "@hourly"],
        &["schedule", "set", "inc-nightly", "--interval", "@hourly"],
        "schedules",
    );
    assert!(included_defines(&ours, "@hourly"));
    main_has_no(&ours, "inc-nightly");
    same_edit(
        &ours,
        &theirs,
        &["schedule", "remove", "inc-nightly"],
        &["schedule", "remove", "inc-nightly"],
        "schedules",
    );
    assert!(!included_defines(&ours, "inc-nightly"));
    main_has_no(&ours, "inc-nightly");
    // A new schedule goes to meltano.yml.
    same_edit(
        &ours,
        &theirs,
        &[
            "schedule",
            "add",
            "inc-hourly",
            "--job",
            "inc-job",
            "--interval",
            "@hourly",
        ],
        &[
            "schedule",
            "add",
            "inc-hourly",
            "--job",
            "inc-job",
            "--interval",
            "@hourly",
        ],
        "schedules",
    );
    assert!(ours.read("meltano.yml").contains("inc-hourly"));
}

#[test]
fn job_edits_of_an_included_job_go_to_the_file_that_defines_it() {
    let (ours, theirs) = (project(), project());
    same_edit(
        &ours,
        &theirs,
        &[
            "job",
            "set",
            "inc-job",
            "--tasks",
            "[tap-inc target-inc, tap-inc target-inc]",
        ],
        &[
            "job",
            "set",
            "inc-job",
            "--tasks",
            "[tap-inc target-inc, tap-inc target-inc]",
        ],
        "jobs",
    );
    main_has_no(&ours, "inc-job");
    assert!(included_defines(&ours, "- name: inc-job"));
}

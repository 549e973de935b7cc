//! `dsm job` and `dsm schedule`: CRUD that keeps comments, exports, and `run-due` with the clock
//! moved by `DSM_NOW` (test-only).

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]
use crate::support::TestProject;

const PROJECT: &str = "\
version: 1
project_id: p
# the extractors we use
plugins:
  extractors:
  - name: tap-a
    namespace: tap_a
    executable: /bin/false
  loaders:
  - name: target-b
    namespace: target_b
    executable: /bin/false
jobs: # our jobs
- name: existing
  tasks:
  - tap-a target-b # keep me
";

#[test]
fn job_crud_round_trip_keeps_comments() {
    let p = TestProject::new(PROJECT);
    let out = p.dsm(&[
        "job",
        "add",
        "nightly",
        "--tasks",
        r#"["tap-a target-b", "tap-a target-b"]"#,
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = p.dsm(&["--format", "json", "job", "list"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let jobs = out.json()["jobs"].clone();
    assert_eq!(jobs[1]["job_name"], "nightly");
    assert_eq!(jobs[1]["tasks"].as_array().unwrap().len(), 2);

    let out = p.dsm(&["job", "set", "nightly", "--tasks", "tap-a target-b"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = p.dsm(&["job", "list", "nightly"]);
    assert_eq!(out.stdout.trim(), r#"nightly: ["tap-a target-b"]"#);

    assert_eq!(p.dsm(&["job", "add", "nightly", "--tasks", "x y"]).code, 2);
    let out = p.dsm(&["job", "remove", "nightly"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(p.dsm(&["job", "remove", "nightly"]).code, 2);
    assert_eq!(p.read("meltano.yml"), PROJECT);
}

#[test]
fn schedule_crud_round_trip_keeps_comments() {
    let p = TestProject::new(PROJECT);
    let out = p.dsm(&[
        "schedule",
        "add",
        "daily-ab",
        "--extractor",
        "tap-a",
        "--loader",
        "target-b",
        "--interval",
        "@daily",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = p.dsm(&[
        "schedule",
        "add",
        "job-hourly",
        "--job",
        "existing",
        "--interval",
        "0 * * * *",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let bad = p.dsm(&[
        "schedule",
        "add",
        "x",
        "--job",
        "existing",
        "--interval",
        "@dayly",
    ]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("@daily"), "{}", bad.stderr);

    let out = p.dsm(&["--format", "json", "schedule", "list"]);
    let doc = out.json();
    assert_eq!(doc["schedules"]["elt"][0]["name"], "daily-ab");
    assert_eq!(doc["schedules"]["elt"][0]["cron_interval"], "0 0 * * *");
    assert_eq!(doc["schedules"]["job"][0]["job"]["name"], "existing");

    let out = p.dsm(&["schedule", "set", "daily-ab", "--interval", "@hourly"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = p.dsm(&["schedule", "list"]).stdout;
    assert!(
        text.contains("[@hourly] daily-ab: elt tap-a target-b --transform=skip"),
        "{text}"
    );
    assert!(p.read("meltano.yml").contains("# keep me"));

    for name in ["daily-ab", "job-hourly"] {
        let out = p.dsm(&["schedule", "remove", name]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let after = p.read("meltano.yml");
    assert!(after.starts_with(PROJECT), "{after}");
    assert!(!after.contains("daily-ab"), "{after}");
}

fn scheduled_project() -> TestProject {
    let p = TestProject::new(PROJECT);
    for args in [
        [
            "schedule",
            "add",
            "hourly",
            "--job",
            "existing",
            "--interval",
            "0 * * * *",
        ],
        [
            "schedule",
            "add",
            "by-hand",
            "--job",
            "existing",
            "--interval",
            "@manual",
        ],
        [
            "schedule",
            "add",
            "yearly",
            "--job",
            "existing",
            "--interval",
            "@yearly",
        ],
    ] {
        let out = p.dsm(&args);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    p
}

#[test]
fn export_writes_crontab_systemd_and_kubernetes() {
    let p = scheduled_project();
    let out = p.dsm(&["schedule", "export", "--format", "crontab"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("0 * * * *"), "{}", out.stdout);
    assert!(out.stdout.contains("schedule run hourly"), "{}", out.stdout);
    assert!(out.stdout.contains("# by-hand skipped"), "{}", out.stdout);
    assert!(!out.stdout.contains("run by-hand"), "{}", out.stdout);

    let out = p.dsm(&["schedule", "export", "--format", "systemd"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("OnCalendar="), "{}", out.stdout);

    let out = p.dsm(&["schedule", "export", "--format", "kubernetes"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--image"), "{}", out.stderr);
    let out = p.dsm(&[
        "schedule",
        "export",
        "--format",
        "kubernetes",
        "--image",
        "etl:1",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("kind: CronJob"), "{}", out.stdout);
    assert!(
        out.stdout.contains("concurrencyPolicy: Forbid"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("etl:1"), "{}", out.stdout);
}

fn run_due(p: &TestProject, now: &str) -> crate::support::Output {
    run_due_cmd(p, now, &[])
}

fn run_due_cmd(p: &TestProject, now: &str, extra: &[&str]) -> crate::support::Output {
    let mut args = vec!["schedule", "run-due"];
    args.extend_from_slice(extra);
    let mut cmd = p.command(&args);
    cmd.env("DSM_NOW", now);
    crate::support::run(cmd)
}

#[test]
fn run_due_waits_for_the_first_tick_then_runs_once() {
    let p = scheduled_project();
    // First sight: nothing runs, nothing is printed.
    let out = run_due(&p, "2030-01-01T10:30:00Z");
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);
    let out = run_due(&p, "2030-01-01T10:59:00Z");
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);
    // The tick came: `hourly` runs (and fails: its plugins are /bin/false).
    let out = run_due(&p, "2030-01-01T11:00:30Z");
    assert_eq!(
        out.stdout.lines().count(),
        1,
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.contains("hourly"), "{}", out.stdout);
    assert_eq!(out.code, 1, "{}", out.stderr);
    // Not again within the same hour.
    let out = run_due(&p, "2030-01-01T11:40:00Z");
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);
    // Five missed ticks run once.
    let out = run_due(&p, "2030-01-01T16:10:00Z");
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    let out = run_due(&p, "2030-01-01T16:20:00Z");
    assert_eq!(out.stdout, "", "{}", out.stderr);
}

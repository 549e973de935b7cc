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

/// Issue 20 (12): the environment `DSM_ENVIRONMENT` chose is baked into the exported jobs (cron
/// and systemd start them without that variable).
#[test]
fn export_bakes_in_the_environment_chosen_by_the_variable() {
    let p = scheduled_project();
    let yml = p.read("meltano.yml");
    p.write(
        "meltano.yml",
        &format!("{yml}environments:\n- name: prod\n"),
    );
    let p = p.env("DSM_ENVIRONMENT", "prod");
    for format in ["crontab", "systemd"] {
        let out = p.dsm(&["schedule", "export", "--format", format]);
        assert_eq!(out.code, 0, "{format}: {}", out.stderr);
        assert!(
            out.stdout
                .contains("--environment prod schedule run hourly"),
            "{format}: {}",
            out.stdout
        );
    }
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

/// A project with built-in plugins: `tap-csv` into `target-jsonl`, and a tap that sleeps before
/// its records (so two `run-due` processes overlap while it runs). `schedules` is appended.
fn builtin_project(schedules: &str) -> TestProject {
    let p = TestProject::empty();
    p.write("data/people.csv", "id,name\n1,ada\n2,grace\n3,alan\n");
    let tap = env!("CARGO_BIN_EXE_dsm-fake-tap");
    p.write(
        "slow-tap",
        &format!(
            "#!/bin/sh\nexec {tap} --pid-file {} --sleep-before 2500 --generate 2 \"$@\"\n",
            p.root().join("slow.pid").display()
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        p.root().join("slow-tap"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    p.write(
        "meltano.yml",
        &format!(
            "\
version: 1
project_id: p
plugins:
  extractors:
  - name: tap-csv
    variant: dsm
    executable: tap-csv
    capabilities: [catalog, discover, state]
    config:
      files: [{{entity: people, path: data/people.csv, keys: [id]}}]
  - name: tap-slow
    namespace: tap_slow
    executable: {}
  loaders:
  - name: target-jsonl
    variant: dsm
    executable: target-jsonl
    config:
      destination_path: out
schedules:
{schedules}",
            p.root().join("slow-tap").display()
        ),
    );
    p
}

/// Waits until the slow tap has started (it writes its pid file before sleeping).
fn wait_for_slow_tap(p: &TestProject) {
    let pid = p.root().join("slow.pid");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !pid.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow tap never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// How many runs the history holds per state id.
fn runs_per_flow(p: &TestProject) -> std::collections::BTreeMap<String, usize> {
    let out = p.dsm(&["--format", "json", "runs", "list", "--limit", "1000"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut counts = std::collections::BTreeMap::new();
    for run in out.json().as_array().unwrap() {
        let id = run["state_id"].as_str().unwrap_or("-").to_string();
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

const TWO_HOURLY: &str = "\
- name: people-hourly
  extractor: tap-csv
  loader: target-jsonl
  transform: skip
  interval: '@hourly'
- name: slow-hourly
  extractor: tap-slow
  loader: target-jsonl
  transform: skip
  interval: '0 * * * *'
";

#[test]
fn two_run_due_processes_at_once_run_each_due_schedule_once() {
    let p = builtin_project(TWO_HOURLY);
    let out = run_due(&p, "2030-01-01T10:30:00Z");
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);
    // Both processes see both schedules due at 11:00:30 and start together.
    let start = |extra: &[&str]| {
        let mut args = vec!["schedule", "run-due"];
        args.extend_from_slice(extra);
        let mut cmd = p.command(&args);
        cmd.env("DSM_NOW", "2030-01-01T11:00:30Z");
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd.spawn().unwrap()
    };
    let first = start(&["--parallel", "2"]);
    let second = start(&["--parallel", "2"]);
    let outputs: Vec<_> = [first, second]
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let mut ran = Vec::new();
    for out in &outputs {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // A schedule the other process runs is skipped, not an error: cron sees success.
        assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
        for line in stdout.lines() {
            assert!(line.contains("succeeded"), "{line}\n{stderr}");
            ran.push(line.split_whitespace().next().unwrap().to_string());
        }
    }
    ran.sort();
    assert_eq!(
        ran,
        ["people-hourly", "slow-hourly"],
        "each runs exactly once"
    );
    let counts = runs_per_flow(&p);
    assert_eq!(counts.get("people-hourly"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("slow-hourly"), Some(&1), "{counts:?}");
    assert_eq!(counts.values().sum::<usize>(), 2, "{counts:?}");
    // A third process in the same hour finds nothing due and prints nothing.
    let out = run_due(&p, "2030-01-01T11:30:00Z");
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);
    assert_eq!(runs_per_flow(&p).values().sum::<usize>(), 2);
}

#[test]
fn run_due_skips_a_schedule_whose_flow_is_still_running() {
    let p = builtin_project(TWO_HOURLY);
    assert_eq!(run_due(&p, "2030-01-01T10:30:00Z").code, 0);
    let mut long = p.command(&["schedule", "run-due"]);
    long.env("DSM_NOW", "2030-01-01T11:00:10Z")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let long = long.spawn().unwrap();
    // While the first process is inside `slow-hourly`, the next minute's cron line starts.
    wait_for_slow_tap(&p);
    let next = run_due(&p, "2030-01-01T11:01:00Z");
    assert_eq!(next.code, 0, "{}\n{}", next.stdout, next.stderr);
    assert!(!next.stdout.contains("slow-hourly"), "{}", next.stdout);
    let long = long.wait_with_output().unwrap();
    assert_eq!(
        long.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&long.stderr)
    );
    assert_eq!(runs_per_flow(&p).get("slow-hourly"), Some(&1));
}

#[test]
fn once_schedule_added_from_the_cli_runs_once_ever() {
    let p = builtin_project("  []\n");
    let out = p.dsm(&[
        "schedule",
        "add",
        "backfill",
        "--extractor",
        "tap-csv",
        "--loader",
        "target-jsonl",
        "--interval",
        "@once",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // First sight records the schedule; it is due at the next whole minute.
    for now in ["2030-01-01T10:30:10Z", "2030-01-01T10:30:50Z"] {
        let out = run_due(&p, now);
        assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);
    }
    let out = run_due(&p, "2030-01-01T10:31:05Z");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("backfill"), "{}", out.stdout);
    assert!(out.stdout.contains("3 records"), "{}", out.stdout);
    // Never again: the next minute, the next day, the next year.
    for now in [
        "2030-01-01T10:32:00Z",
        "2030-01-02T10:31:00Z",
        "2031-01-01T00:00:00Z",
    ] {
        let out = run_due(&p, now);
        assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);
    }
    assert_eq!(runs_per_flow(&p).get("backfill"), Some(&1));
    // A plain `dsm sync` (the other cron line people write) leaves it out too.
    let out = p.dsm(&["sync"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(!out.stdout.contains("backfill"), "{}", out.stdout);
    assert_eq!(runs_per_flow(&p).get("backfill"), Some(&1));
}

#[test]
fn once_schedule_runs_in_the_first_plain_sync_only_unless_named() {
    let p = builtin_project(
        "\
- name: backfill
  extractor: tap-csv
  loader: target-jsonl
  transform: skip
  interval: '@once'
",
    );
    let out = p.dsm(&["sync"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.starts_with("backfill"), "{}", out.stdout);
    let out = p.dsm(&["sync"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stdout.contains("backfill"), "{}", out.stdout);
    // run-due agrees it has run.
    assert_eq!(run_due(&p, "2030-01-01T00:00:00Z").stdout, "");
    assert_eq!(run_due(&p, "2030-01-01T00:05:00Z").stdout, "");
    assert_eq!(runs_per_flow(&p).get("backfill"), Some(&1));
    // Named, it runs whatever its interval (as `dsm schedule run` does).
    let out = p.dsm(&["sync", "backfill"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(runs_per_flow(&p).get("backfill"), Some(&2));
}

#[test]
fn schedule_time_zone_moves_the_tick_to_local_midnight() {
    // Midnight in Tokyo (UTC+9, no daylight saving) is 15:00 UTC the day before.
    let p = builtin_project(
        "\
- name: tokyo-daily
  extractor: tap-csv
  loader: target-jsonl
  transform: skip
  interval: '@daily'
  annotations:
    dsm:
      timezone: Asia/Tokyo
- name: utc-daily
  extractor: tap-csv
  loader: target-jsonl
  transform: skip
  interval: '@daily'
",
    );
    assert_eq!(run_due(&p, "2030-01-01T14:00:00Z").stdout, "");
    let out = run_due(&p, "2030-01-01T14:59:00Z");
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);
    let out = run_due(&p, "2030-01-01T15:00:20Z");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    assert!(out.stdout.starts_with("tokyo-daily"), "{}", out.stdout);
    // UTC midnight comes nine hours later and runs only the UTC schedule.
    let out = run_due(&p, "2030-01-01T23:59:00Z");
    assert_eq!(out.stdout, "", "{}", out.stderr);
    let out = run_due(&p, "2030-01-02T00:00:30Z");
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    assert!(out.stdout.starts_with("utc-daily"), "{}", out.stdout);

    let out = p.dsm(&["schedule", "list"]);
    assert!(
        out.stdout
            .contains("[@daily Asia/Tokyo] tokyo-daily: elt tap-csv target-jsonl"),
        "{}",
        out.stdout
    );
    let out = p.dsm(&["--format", "json", "schedule", "list"]);
    let doc = out.json();
    assert_eq!(
        doc["schedules"]["elt"][0]["timezone"], "Asia/Tokyo",
        "{doc}"
    );
    assert_eq!(
        doc["schedules"]["elt"][1]["timezone"],
        serde_json::Value::Null
    );

    // The crontab export carries the zone.
    let out = p.dsm(&["schedule", "export", "--format", "crontab"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("Asia/Tokyo"), "{}", out.stdout);
}

#[test]
fn unknown_schedule_time_zone_is_a_config_error_naming_the_schedule() {
    let p = builtin_project(
        "\
- name: berlin-daily
  extractor: tap-csv
  loader: target-jsonl
  transform: skip
  interval: '@daily'
  annotations:
    dsm:
      timezone: Europe/Berlim
",
    );
    for args in [
        &["schedule", "run-due"][..],
        &["sync", "--dry-run"],
        &["schedule", "export"],
        &["validate"],
    ] {
        let out = p.dsm(args);
        assert_eq!(out.code, 2, "{args:?}: {}\n{}", out.stdout, out.stderr);
        assert!(out.stderr.contains("`berlin-daily`"), "{}", out.stderr);
        // Found when the project is read, with the position of the key.
        assert!(
            out.stderr.contains("meltano.yml (line 28"),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains("`Europe/Berlim`"), "{}", out.stderr);
        assert!(
            out.stderr.contains("did you mean `Europe/Berlin`?"),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn run_due_reports_a_flow_run_by_hand_as_running_elsewhere_not_failed() {
    let p = builtin_project(TWO_HOURLY);
    assert_eq!(run_due(&p, "2030-01-01T10:30:00Z").code, 0);
    // Someone runs the slow schedule's flow by hand; it holds the flow's lock.
    let mut by_hand = p.command(&["sync", "slow-hourly"]);
    by_hand
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let by_hand = by_hand.spawn().unwrap();
    wait_for_slow_tap(&p);
    let out = run_due(&p, "2030-01-01T11:00:30Z");
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let line = |name: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {}", out.stdout))
            .to_string()
    };
    assert!(
        line("people-hourly").contains("succeeded"),
        "{}",
        out.stdout
    );
    let slow = line("slow-hourly");
    assert!(slow.contains("running elsewhere"), "{slow}");
    assert!(slow.contains("1 attempt"), "{slow}");
    let by_hand = by_hand.wait_with_output().unwrap();
    assert_eq!(
        by_hand.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&by_hand.stderr)
    );
    // Only the run by hand is in the history for the slow flow.
    assert_eq!(runs_per_flow(&p).get("slow-hourly"), Some(&1));
}

#[test]
fn a_sync_asked_for_a_flow_running_elsewhere_exits_3_with_its_summary() {
    let p = builtin_project(TWO_HOURLY);
    let mut by_hand = p.command(&["sync", "slow-hourly"]);
    by_hand
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let by_hand = by_hand.spawn().unwrap();
    wait_for_slow_tap(&p);
    let out = crate::support::run(p.command(&[
        "sync",
        "slow-hourly",
        "people-hourly",
        "--format",
        "json",
    ]));
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["exit_code"], 3, "{doc}");
    assert_eq!(doc["error"]["exit_code"], 3, "{doc}");
    let status = |name: &str| {
        doc["flows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {doc}"))["status"]
            .clone()
    };
    assert_eq!(status("slow-hourly"), "already_running");
    assert_eq!(
        status("people-hourly"),
        "succeeded",
        "the other flow still runs"
    );
    let by_hand = by_hand.wait_with_output().unwrap();
    assert_eq!(by_hand.status.code(), Some(0));
}

//! `dsm run`, `dsm el` and `dsm invoke` with real processes: the fake tap and target built from
//! this package, behind small wrapper scripts that pick their behaviour.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{TestProject, copy_dir, script};

const TAP: &str = env!("CARGO_BIN_EXE_dsm-fake-tap");
const TARGET: &str = env!("CARGO_BIN_EXE_dsm-fake-target");

/// A project with `tap-fake` (the script `tap.sh`) and `target-fake` (`target.sh`).
fn project(tap_args: &str) -> TestProject {
    let p = TestProject::new(
        "plugins:
  extractors:
  - name: tap-fake
    namespace: tap_fake
    executable: ./tap.sh
    capabilities: [state]
    settings:
    - {name: host}
    - {name: password, kind: password}
    config: {host: db.example}
  - name: tap-raw
    namespace: tap_raw
    executable: ./raw.sh
  loaders:
  - name: target-fake
    namespace: target_fake
    executable: ./target.sh
    settings:
    - {name: api_key, sensitive: true}
    config: {batch: 10}
",
    );
    set_tap(&p, tap_args);
    script(
        &p,
        "target.sh",
        &format!(
            "exec {TARGET} \"$@\" --output \"$MELTANO_PROJECT_ROOT/out.jsonl\" --dump \"$MELTANO_PROJECT_ROOT/target-dump.json\"\n"
        ),
    );
    script(&p, "raw.sh", &format!("exec {TAP} \"$@\"\n"));
    p
}

/// Rewrites `tap.sh`: it copies the `--state` file it gets to `seen-state.json`, then runs the
/// fake tap with `args`.
fn set_tap(p: &TestProject, args: &str) {
    script(
        p,
        "tap.sh",
        &format!(
            r#"prev=""
for a in "$@"; do
  if [ "$prev" = "--state" ]; then cp "$a" "$MELTANO_PROJECT_ROOT/seen-state.json"; fi
  prev="$a"
done
exec {TAP} "$@" --dump "$MELTANO_PROJECT_ROOT/tap-dump.json" {args}
"#
        ),
    );
}

fn state(p: &TestProject, id: &str) -> Value {
    let out = p.dsm(&["state", "get", id]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.json()
}

fn path(p: &TestProject, rel: &str) -> PathBuf {
    p.root().join(rel)
}

fn records_in(p: &TestProject) -> usize {
    p.read("out.jsonl")
        .lines()
        .filter(|l| l.contains("\"RECORD\""))
        .count()
}

#[test]
fn records_arrive_and_the_committed_state_is_passed_back_on_the_next_run() {
    let p = project("--generate 5 --state-every 2 --stream users");
    let out = p.dsm(&["run", "tap-fake", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(records_in(&p), 5);
    assert!(
        !path(&p, "seen-state.json").exists(),
        "no state on the first run"
    );
    assert_eq!(
        state(&p, "tap-fake-to-target-fake"),
        json!({"singer_state": {"bookmarks": {"users": {"id": 5}}}})
    );

    let out = p.dsm(&["run", "tap-fake", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let seen: Value = serde_json::from_str(&p.read("seen-state.json")).expect("json");
    assert_eq!(seen, json!({"bookmarks": {"users": {"id": 5}}}));

    let runs = p.dsm(&["runs", "list", "--format", "json"]).json();
    let runs = runs.as_array().expect("a list");
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r["status"] == "success"), "{runs:?}");
    let log = runs[0]["log_path"].as_str().expect("a log path");
    assert!(log.contains(".dsm/logs/"), "{log}");
}

#[test]
fn el_uses_the_given_state_id() {
    let p = project("--generate 3 --stream users");
    let out = p.dsm(&["el", "tap-fake", "target-fake", "--state-id", "custom"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        state(&p, "custom"),
        json!({"singer_state": {"bookmarks": {"users": {"id": 3}}}})
    );
    assert_eq!(state(&p, "tap-fake-to-target-fake"), json!({}));
}

#[test]
fn a_failing_tap_keeps_the_last_confirmed_state_and_exits_1() {
    // Lines: SCHEMA, r1 r2 r3, STATE(3), r4 r5 r6, STATE(6), r7, then abort after line 10.
    let p = project("--generate 10 --state-every 3 --stream users --crash-after 10");
    let out = p.dsm(&["run", "tap-fake", "target-fake"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("tap-fake"), "{}", out.stderr);
    assert!(
        out.stderr.contains("crashing after line 10"),
        "the tap's stderr tail is shown: {}",
        out.stderr
    );
    assert_eq!(
        state(&p, "tap-fake-to-target-fake"),
        json!({"singer_state": {"bookmarks": {"users": {"id": 6}}}})
    );
    let runs = p.dsm(&["runs", "list", "--format", "json"]).json();
    assert_eq!(runs[0]["status"], "failed");
}

#[test]
fn a_second_run_of_the_same_flow_exits_3() {
    let p =
        project("--pid-file \"$MELTANO_PROJECT_ROOT/tap.pid\" --sleep-before 4000 --generate 2");
    let mut first = p.command(&["run", "tap-fake", "target-fake"]);
    first
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut first = first.spawn().expect("dsm starts");
    let started = Instant::now();
    while !path(&p, "tap.pid").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the first run never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = p.dsm(&["run", "tap-fake", "target-fake"]);
    assert_eq!(second.code, 3, "{}", second.stderr);
    assert!(
        second.stderr.contains("already running"),
        "{}",
        second.stderr
    );
    let status = first.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn full_refresh_passes_no_state_and_replaces_the_stored_one() {
    let p = project("--generate 4 --stream users");
    assert_eq!(p.dsm(&["run", "tap-fake", "target-fake"]).code, 0);
    set_tap(&p, "--generate 2 --stream users");
    let out = p.dsm(&["run", "tap-fake", "target-fake", "--full-refresh"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        !path(&p, "seen-state.json").exists(),
        "no --state with --full-refresh"
    );
    assert_eq!(
        state(&p, "tap-fake-to-target-fake"),
        json!({"singer_state": {"bookmarks": {"users": {"id": 2}}}})
    );
    // The same through Meltano's variable.
    let p = p.env("MELTANO_RUN_FULL_REFRESH", "true");
    assert_eq!(p.dsm(&["run", "tap-fake", "target-fake"]).code, 0);
    assert!(!path(&p, "seen-state.json").exists());
}

#[test]
fn no_state_update_leaves_the_store_alone() {
    let p = project("--generate 4 --stream users");
    let out = p.dsm(&["run", "tap-fake", "target-fake", "--no-state-update"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(state(&p, "tap-fake-to-target-fake"), json!({}));
}

#[test]
fn invoke_passes_the_exit_code_through() {
    let p = project("");
    let out = p.dsm(&["invoke", "tap-raw", "--exit-code", "7"]);
    assert_eq!(out.code, 7, "{}", out.stderr);
    let out = p.dsm(&["invoke", "tap-raw"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = p.dsm(&["invoke", "tap-raw", "--no-such-flag"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("unknown option"), "{}", out.stderr);
}

#[test]
fn secrets_reach_plugins_only_through_their_config_file() {
    let p = project("--generate 1")
        .env("TAP_FAKE_PASSWORD", "tap-s3cr3t")
        .env("TARGET_FAKE_API_KEY", "target-s3cr3t");
    let out = p.dsm(&["run", "tap-fake", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("s3cr3t"), "{}", out.stderr);

    let tap: Value = serde_json::from_str(&p.read("tap-dump.json")).expect("json");
    let target: Value = serde_json::from_str(&p.read("target-dump.json")).expect("json");
    assert_eq!(tap["config"]["password"], "tap-s3cr3t");
    assert_eq!(tap["config"]["host"], "db.example");
    assert_eq!(tap["config_mode"]["file"], "600");
    assert_eq!(target["config"]["api_key"], "target-s3cr3t");
    for (who, dump) in [("tap", &tap), ("target", &target)] {
        let args = dump["args"].to_string();
        let env = dump["env"].to_string();
        assert!(!args.contains("s3cr3t"), "{who} argv: {args}");
        assert!(!env.contains("s3cr3t"), "{who} environment: {env}");
    }
    // What Meltano hands over, minus the secrets.
    let env = &tap["env"];
    assert_eq!(env["TAP_FAKE_HOST"], "db.example");
    assert_eq!(env["MELTANO_EXTRACT_HOST"], "db.example");
    assert_eq!(env["MELTANO_EXTRACTOR_NAME"], "tap-fake");
    assert_eq!(env["MELTANO_EXTRACTOR_NAMESPACE"], "tap_fake");
    assert_eq!(env["MELTANO_EXTRACT__LOAD_SCHEMA"], "tap_fake");
    let root = p.root().display().to_string();
    assert_eq!(env["MELTANO_PROJECT_ROOT"], root.as_str());
    let env = &target["env"];
    assert_eq!(env["TARGET_FAKE_BATCH"], "10");
    assert_eq!(env["MELTANO_LOAD_BATCH"], "10");
    assert_eq!(env["MELTANO_LOADER_NAME"], "target-fake");
    assert_eq!(env["MELTANO_EXTRACTOR_NAME"], "tap-fake");
    assert_eq!(env["MELTANO_EXTRACT__LOAD_SCHEMA"], "tap_fake");
}

#[test]
fn unknown_blocks_and_a_missing_loader_are_usage_errors() {
    let p = project("");
    let out = p.dsm(&["run", "tap-fake"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("has no loader"), "{}", out.stderr);
    let out = p.dsm(&["run", "tap-fak", "target-fake"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("did you mean `tap-fake`?"),
        "{}",
        out.stderr
    );
}

#[test]
fn job_names_expand_into_their_tasks() {
    let p = project("--generate 2 --stream users");
    let yml = p.read("meltano.yml");
    p.write(
        "meltano.yml",
        &format!("{yml}jobs:\n- name: nightly\n  tasks: [tap-fake target-fake]\n"),
    );
    let out = p.dsm(&["run", "nightly"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(records_in(&p), 2);
}

#[test]
fn a_job_named_like_its_extractor_expands_once_as_in_meltano() {
    let p = project("--generate 3 --stream users");
    let yml = p.read("meltano.yml");
    p.write(
        "meltano.yml",
        &format!("{yml}jobs:\n- name: tap-fake\n  tasks: [tap-fake target-fake]\n"),
    );
    let out = p.dsm(&["run", "tap-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(records_in(&p), 3);
}

#[test]
fn a_run_past_its_timeout_is_stopped_with_exit_124() {
    let p = project("--sleep-before 20000 --generate 1");
    let started = Instant::now();
    let out = p.dsm(&["run", "tap-fake", "target-fake", "--timeout", "1"]);
    assert_eq!(out.code, 124, "{}", out.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let runs = p.dsm(&["runs", "list", "--format", "json"]).json();
    assert_eq!(runs[0]["status"], "failed");
}

#[test]
fn a_timeout_bounds_catalog_discovery_too() {
    let p = project("");
    let yml = p.read("meltano.yml").replace(
        "  - name: tap-raw\n",
        "  - name: tap-hang\n    namespace: tap_hang\n    executable: ./hang.sh\n    capabilities: [catalog, discover]\n  - name: tap-raw\n",
    );
    p.write("meltano.yml", &yml);
    // `--discover` never ends (a child of the script sleeps); the run must not wait for it.
    script(&p, "hang.sh", "sleep 600\n");
    let started = Instant::now();
    let out = p.dsm(&["run", "tap-hang", "target-fake", "--timeout", "2"]);
    assert_eq!(out.code, 124, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "catalog discovery of extractor `tap-hang` did not finish within the run's timeout"
        ),
        "{}",
        out.stderr
    );
    // A hang guard, not a speed check: without the fix the run waits ten minutes.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

/// Issue #21 (5): `--timeout` bounds the installs a run makes too. The package index named in
/// `pip_url` accepts connections and never answers, so pip would wait for minutes.
#[test]
fn a_timeout_bounds_the_installs_of_a_run() {
    let p = project("--generate 1");
    let index = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = index.local_addr().expect("an address").port();
    let yml = p.read("meltano.yml").replace(
        "  - name: tap-raw\n",
        &format!(
            "  - name: tap-slow-index\n    namespace: tap_slow_index\n    pip_url: --index-url http://127.0.0.1:{port}/simple dsm-never-served-package\n  - name: tap-raw\n"
        ),
    );
    p.write("meltano.yml", &yml);
    let started = Instant::now();
    let out = p.dsm(&[
        "run",
        "tap-slow-index",
        "target-fake",
        "--install",
        "--timeout",
        "3",
    ]);
    assert_eq!(out.code, 124, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "installing extractor `tap-slow-index` did not finish within the run's timeout"
        ),
        "{}",
        out.stderr
    );
    // A hang guard, not a speed check: pip alone would wait well over a minute.
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "{:?}",
        started.elapsed()
    );
    // The installer was stopped with its children, and its half-built environment removed.
    let left: Vec<String> = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("dsm-never-served-package"))
        .collect();
    assert!(left.is_empty(), "installer processes left: {left:?}");
    assert!(
        !path(&p, ".dsm/plugins/extractors/tap-slow-index/venv").exists(),
        "the half-built environment is removed"
    );
    drop(index);
}

#[test]
fn sigterm_stops_the_run_gracefully_with_exit_143() {
    let p =
        project("--pid-file \"$MELTANO_PROJECT_ROOT/tap.pid\" --sleep-before 20000 --generate 1");
    let mut cmd = p.command(&["run", "tap-fake", "target-fake"]);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().expect("dsm starts");
    let started = Instant::now();
    while !path(&p, "tap.pid").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the run never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(kill.success());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(15));
    let tap_pid: u32 = p.read("tap.pid").trim().parse().expect("a pid");
    assert!(
        !std::path::Path::new(&format!("/proc/{tap_pid}")).exists(),
        "the tap was stopped"
    );
    let runs = p.dsm(&["runs", "list", "--format", "json"]).json();
    assert_eq!(runs[0]["status"], "killed");
}

#[test]
fn dry_run_starts_nothing_and_records_nothing() {
    let p = project("--generate 1");
    let out = p.dsm(&["run", "tap-fake", "target-fake", "--dry-run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("tap.sh --config <config file>"),
        "{}",
        out.stderr
    );
    assert!(!path(&p, "tap-dump.json").exists());
    let runs = p.dsm(&["runs", "list", "--format", "json"]).json();
    assert_eq!(runs, json!([]));
}

/// Issue #22: Meltano's other spellings: `el --dry`, `-f` for `--force`, and the hidden
/// `--merge-state` (= `--state-strategy merge`).
#[test]
fn meltanos_short_and_older_flag_spellings_are_accepted() {
    let p = project("--generate 1 --stream s");
    let out = p.dsm(&["el", "tap-fake", "target-fake", "--dry"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!path(&p, "tap-dump.json").exists(), "--dry starts nothing");

    let out = p.dsm(&["run", "tap-fake", "target-fake", "-f"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Merge keeps a bookmark the run does not send; overwrite would drop it.
    let id = "tap-fake-to-target-fake";
    let set = p.dsm(&[
        "state",
        "set",
        id,
        r#"{"singer_state": {"bookmarks": {"other": {"id": 9}}}}"#,
    ]);
    assert_eq!(set.code, 0, "{}", set.stderr);
    let out = p.dsm(&["run", "tap-fake", "target-fake", "--merge-state"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        state(&p, id),
        json!({"singer_state": {"bookmarks": {"other": {"id": 9}, "s": {"id": 1}}}})
    );
    let both = p.dsm(&[
        "run",
        "tap-fake",
        "target-fake",
        "--merge-state",
        "--state-strategy",
        "overwrite",
    ]);
    assert_eq!(both.code, 2, "{}", both.stderr);
}

#[test]
fn state_id_suffix_comes_from_the_flag_or_the_environment_variable() {
    let p = project("--generate 1 --stream s");
    let out = p.dsm(&["run", "tap-fake", "target-fake", "--state-id-suffix", "a"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        state(&p, "tap-fake-to-target-fake:a"),
        json!({"singer_state": {"bookmarks": {"s": {"id": 1}}}})
    );
    let p = p.env("DSM_RUN_STATE_ID_SUFFIX", "b");
    assert_eq!(p.dsm(&["run", "tap-fake", "target-fake"]).code, 0);
    assert_ne!(state(&p, "tap-fake-to-target-fake:b"), json!({}));
}

/// Issue #22: each of `meltano run`'s variables sets its flag in `dsm run` with the flag's
/// meaning (Meltano's names: `MELTANO_RUN_<FLAG>`, `MELTANO_RUN_ID` for `--run-id`,
/// `MELTANO_STATE_ID` for `el --state-id`), and a bad value names the variable.
#[test]
fn meltanos_run_variables_set_their_flags() {
    let p = project("--generate 2 --stream users");
    let id = "tap-fake-to-target-fake";
    let with = |vars: &[(&str, &str)], args: &[&str]| {
        let mut cmd = p.command(args);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        crate::support::run(cmd)
    };
    let run = ["run", "tap-fake", "target-fake"];

    let out = with(&[("MELTANO_RUN_NO_STATE_UPDATE", "true")], &run);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(state(&p, id), json!({}), "MELTANO_RUN_NO_STATE_UPDATE");

    let uuid = "2f1c0a4e-8d1b-4c57-9a43-5b0e1f6d7c88";
    let out = with(&[("MELTANO_RUN_ID", uuid)], &run);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let runs = p.dsm(&["runs", "list", "--format", "json"]).json();
    assert_eq!(runs[0]["run_id"], uuid, "MELTANO_RUN_ID: {runs}");
    let out = with(&[("MELTANO_RUN_ID", "not-a-uuid")], &run);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("MELTANO_RUN_ID"), "{}", out.stderr);

    let out = with(&[("MELTANO_RUN_STATE_ID_SUFFIX", "m")], &run);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        state(&p, &format!("{id}:m")),
        json!({"singer_state": {"bookmarks": {"users": {"id": 2}}}}),
        "MELTANO_RUN_STATE_ID_SUFFIX"
    );

    // Merge keeps a bookmark the run does not send; the default (overwrite here) drops it.
    let keep = r#"{"singer_state": {"bookmarks": {"other": {"id": 9}}}}"#;
    assert_eq!(p.dsm(&["state", "set", id, keep]).code, 0);
    let out = with(&[("MELTANO_RUN_STATE_STRATEGY", "merge")], &run);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        state(&p, id)["singer_state"]["bookmarks"]["other"],
        json!({"id": 9}),
        "MELTANO_RUN_STATE_STRATEGY=merge"
    );
    let out = with(&[("MELTANO_RUN_STATE_STRATEGY", "sideways")], &run);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("MELTANO_RUN_STATE_STRATEGY"),
        "{}",
        out.stderr
    );
    let out = with(&[("MELTANO_RUN_FORCE", "maybe")], &run);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("MELTANO_RUN_FORCE"), "{}", out.stderr);

    // `el --state-id` from Meltano's variable.
    let out = with(
        &[("MELTANO_STATE_ID", "from-variable")],
        &["el", "tap-fake", "target-fake"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        state(&p, "from-variable"),
        json!({"singer_state": {"bookmarks": {"users": {"id": 2}}}}),
        "MELTANO_STATE_ID"
    );

    // The timeout, and force: a second run while the first holds the flow's lock.
    set_tap(
        &p,
        "--pid-file \"$MELTANO_PROJECT_ROOT/tap.pid\" --sleep-before 4000 --generate 1",
    );
    let out = with(&[("MELTANO_RUN_TIMEOUT", "1")], &run);
    assert_eq!(out.code, 124, "MELTANO_RUN_TIMEOUT: {}", out.stderr);
    std::fs::remove_file(path(&p, "tap.pid")).expect("the tap wrote its pid");
    let mut first = p.command(&run);
    first
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut first = first.spawn().expect("dsm starts");
    let started = Instant::now();
    while !path(&p, "tap.pid").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the first run never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = with(&[("MELTANO_RUN_FORCE", "1")], &run);
    assert_eq!(second.code, 0, "MELTANO_RUN_FORCE: {}", second.stderr);
    // The run forced out has lost its flow's lock: its state commits are refused (exit 1).
    assert_eq!(first.wait().expect("wait").code(), Some(1));
}

#[test]
fn discovered_catalog_is_selected_cached_and_passed_with_catalog() {
    let p = project("");
    let yml = p.read("meltano.yml").replace(
        "  - name: tap-raw\n",
        "  - name: tap-disc\n    namespace: tap_disc\n    pip_url: tap-disc==1.0\n    executable: ./disc.sh\n    capabilities: [catalog, discover, state]\n    select: [users.id, '!orders']\n  - name: tap-raw\n",
    );
    p.write("meltano.yml", &yml);
    p.write(
        "catalog.json",
        r#"{"streams": [
  {"tap_stream_id": "users", "schema": {"properties": {"id": {"type": "integer"}, "email": {"type": "string"}}}, "metadata": []},
  {"tap_stream_id": "orders", "schema": {"properties": {"id": {"type": "integer"}}}, "metadata": []}
]}"#,
    );
    script(
        &p,
        "disc.sh",
        &format!(
            r#"prev=""
for a in "$@"; do
  if [ "$a" = "--discover" ]; then echo x >> "$MELTANO_PROJECT_ROOT/discoveries"; cat "$MELTANO_PROJECT_ROOT/catalog.json"; exit 0; fi
  if [ "$prev" = "--catalog" ]; then cp "$a" "$MELTANO_PROJECT_ROOT/seen-catalog.json"; fi
  prev="$a"
done
exec {TAP} "$@" --generate 1 --stream users
"#
        ),
    );
    for i in 0..2 {
        let out = p.dsm(&["run", "tap-disc", "target-fake"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        // The run says when it uses a cached catalog.
        assert_eq!(
            out.stderr
                .contains("using the catalog of `tap-disc` discovered by an earlier run"),
            i == 1,
            "{}",
            out.stderr
        );
    }
    assert_eq!(
        p.read("discoveries").lines().count(),
        1,
        "the catalog of a plugin installed from a package is cached"
    );
    let catalog: Value = serde_json::from_str(&p.read("seen-catalog.json")).expect("json");
    let selected = |stream: usize, crumb: Value| {
        catalog["streams"][stream]["metadata"]
            .as_array()
            .expect("metadata")
            .iter()
            .find(|m| m["breadcrumb"] == crumb)
            .map(|m| m["metadata"]["selected"].clone())
    };
    assert_eq!(selected(0, json!([])), Some(json!(true)));
    assert_eq!(selected(0, json!(["properties", "id"])), Some(json!(true)));
    assert_eq!(
        selected(0, json!(["properties", "email"])),
        Some(json!(false))
    );
    assert_eq!(selected(1, json!([])), Some(json!(false)));

    let out = p.dsm(&["run", "tap-disc", "target-fake", "--refresh-catalog"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        p.read("discoveries").lines().count(),
        2,
        "--refresh-catalog discovers"
    );
    let mut cmd = p.command(&["run", "tap-disc", "target-fake"]);
    cmd.env("MELTANO_RUN_REFRESH_CATALOG", "true");
    let out = crate::support::run(cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        p.read("discoveries").lines().count(),
        3,
        "MELTANO_RUN_REFRESH_CATALOG discovers"
    );
}

#[test]
fn a_catalog_is_discovered_again_where_meltano_does_not_cache_it() {
    // A local program (no `pip_url`, as the built-in taps) or an editable install: a source
    // that gained a column is seen on the next run, as in Meltano.
    for pip_url in ["", "    pip_url: -e ./tap-disc\n"] {
        let p = project("");
        let yml = p.read("meltano.yml").replace(
            "  - name: tap-raw\n",
            &format!("  - name: tap-disc\n    namespace: tap_disc\n{pip_url}    executable: ./disc.sh\n    capabilities: [catalog, discover]\n  - name: tap-raw\n"),
        );
        p.write("meltano.yml", &yml);
        script(
            &p,
            "disc.sh",
            &format!(
                r#"prev=""
for a in "$@"; do
  if [ "$a" = "--discover" ]; then echo x >> "$MELTANO_PROJECT_ROOT/discoveries"; cat "$MELTANO_PROJECT_ROOT/catalog.json"; exit 0; fi
  if [ "$prev" = "--catalog" ]; then cp "$a" "$MELTANO_PROJECT_ROOT/seen-catalog.json"; fi
  prev="$a"
done
exec {TAP} "$@" --generate 1 --stream users
"#
            ),
        );
        let catalog = |columns: &str| {
            format!(
                r#"{{"streams": [{{"tap_stream_id": "users", "schema": {{"properties": {{{columns}}}}}, "metadata": []}}]}}"#
            )
        };
        p.write("catalog.json", &catalog(r#""id": {"type": "integer"}"#));
        let out = p.dsm(&["run", "tap-disc", "target-fake"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        p.write(
            "catalog.json",
            &catalog(r#""id": {"type": "integer"}, "email": {"type": "string"}"#),
        );
        let out = p.dsm(&["run", "tap-disc", "target-fake"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(
            !out.stderr
                .contains("using the catalog discovered by an earlier run")
        );
        assert_eq!(p.read("discoveries").lines().count(), 2, "{pip_url}");
        let seen: Value = serde_json::from_str(&p.read("seen-catalog.json")).expect("json");
        assert!(
            seen["streams"][0]["schema"]["properties"]["email"].is_object(),
            "the new column reaches the tap: {seen}"
        );
    }
}

#[test]
fn quickstart_loads_the_csv_files_into_sqlite_with_the_built_in_plugins() {
    let p = TestProject::empty();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    copy_dir(&example, p.root());
    let out = p.dsm(&["run", "tap-csv", "target-sqlite"]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    let db =
        rusqlite::Connection::open(p.root().join("output/warehouse.db")).expect("the database");
    for (table, file) in [
        ("customers", "customers.csv"),
        ("products", "products.csv"),
        ("orders", "orders.csv"),
    ] {
        let expected = std::fs::read_to_string(example.join("data").join(file))
            .expect("csv")
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .count();
        let rows: i64 = db
            .query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| {
                r.get(0)
            })
            .unwrap_or_else(|e| panic!("table `{table}`: {e}"));
        assert_eq!(rows as usize, expected, "rows of `{table}`");
    }
    assert_ne!(
        state(&p, "dev:tap-csv-to-target-sqlite"),
        json!({}),
        "the state id has the environment"
    );

    // Issue 30: it says where the data went.
    assert!(
        out.stderr
            .contains("  loaded into `target-sqlite` (database `output/warehouse.db`)\n"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("sent again"), "{}", out.stderr);

    // The job name runs the same flow; the second run says why records were sent again.
    let out = p.dsm(&["run", "load-warehouse"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("note: records sent again: `customers`, `products` are full-table"),
        "{}",
        out.stderr
    );
}

/// The README's first command, as written: `dsm --cwd examples/quickstart sync` from the folder
/// above the project (a relative `--cwd`: the paths handed to the plugins must still hold in the
/// project root, where they run).
#[test]
fn readme_first_command_syncs_the_quickstart_from_a_relative_cwd() {
    let p = TestProject::empty();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    let copy = p.root().join("examples/quickstart");
    std::fs::create_dir_all(&copy).expect("folder");
    copy_dir(&example, &copy);
    // The store at its default place, in the project (the harness points it elsewhere).
    let mut cmd = p.command(&["--cwd", "examples/quickstart", "sync"]);
    cmd.env_remove("DSM_DATABASE_URI");
    let out = crate::support::run(cmd);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("succeeded"), "{}", out.stdout);
    let db = rusqlite::Connection::open(copy.join("output/warehouse.db")).expect("the database");
    let orders: i64 = db
        .query_row("SELECT count(*) FROM orders", [], |r| r.get(0))
        .expect("orders");
    assert!(orders > 0);
    // Nothing was written beside the project.
    assert!(!p.root().join("output").exists());
    assert!(!p.root().join(".dsm").exists());
    assert!(copy.join(".dsm/dsm.db").is_file());
}

/// `project` plus a utility `util` (the script `util.sh`, which logs its arguments and whether
/// the flow's output exists yet, and exits 3 when its first argument is `fail`).
fn project_with_utility() -> TestProject {
    let p = project("--generate 2 --stream users").env("GREETING", "hi there");
    let yml = p.read("meltano.yml");
    p.write(
        "meltano.yml",
        &format!(
            "{yml}  utilities:
  - name: util
    namespace: util
    executable: ./util.sh
    commands:
      hello: hello \"$MELTANO_PROJECT_ROOT\" \"${{GREETING}}\"
      fail: {{args: fail now, description: always fails}}
jobs:
- name: load-then-fail
  tasks:
  - tap-fake target-fake
  - util:fail
  - util:hello
"
        ),
    );
    script(
        &p,
        "util.sh",
        r#"if [ -f out.jsonl ]; then seen=after; else seen=before; fi
echo "$seen|$#|$*" >> steps.log
echo "util says hello"
[ "$1" = fail ] && exit 3
exit 0
"#,
    );
    p
}

#[test]
fn plugin_command_steps_run_in_block_order_with_expanded_arguments() {
    let p = project_with_utility();
    let out = p.dsm(&[
        "run",
        "util:hello",
        "tap-fake",
        "target-fake",
        "util:hello",
        "util",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(records_in(&p), 2);
    let root = p.root().display().to_string();
    assert_eq!(
        p.read("steps.log"),
        format!("before|3|hello {root} hi there\nafter|3|hello {root} hi there\nafter|0|\n")
    );
    // The utility's stdout goes to stderr, so dsm's own stdout stays parseable.
    assert!(!out.stdout.contains("util says hello"), "{}", out.stdout);
    assert!(out.stderr.contains("util says hello"), "{}", out.stderr);
    let json = p.dsm(&[
        "--format",
        "json",
        "run",
        "tap-fake",
        "target-fake",
        "util:hello",
    ]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    let docs = json.json();
    assert_eq!(docs[1]["step"], "util:hello");
    assert_eq!(docs[1]["exit_code"], 0);
}

#[test]
fn a_failing_command_step_stops_the_job_with_exit_1() {
    let p = project_with_utility();
    let out = p.dsm(&["run", "load-then-fail"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("step `util:fail` exited with status 3"),
        "{}",
        out.stderr
    );
    // The flow before it ran and committed its state; the step after it never started.
    assert_eq!(records_in(&p), 2);
    assert_eq!(p.read("steps.log"), "after|2|fail now\n");
    assert_eq!(
        state(&p, "tap-fake-to-target-fake"),
        json!({"singer_state": {"bookmarks": {"users": {"id": 2}}}})
    );
}

#[test]
fn unknown_commands_are_usage_errors_and_invoke_runs_commands() {
    let p = project_with_utility();
    let out = p.dsm(&["run", "util:helo"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("utility `util` has no command `helo`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("did you mean `util:hello`?"),
        "{}",
        out.stderr
    );
    let out = p.dsm(&["run", "tap-fake", "util:hello", "target-fake"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("before its loader"), "{}", out.stderr);
    assert!(!path(&p, "steps.log").exists());

    let out = p.dsm(&["invoke", "util:hello", "extra arg"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("util says hello"), "{}", out.stdout);
    let root = p.root().display().to_string();
    assert_eq!(
        p.read("steps.log"),
        format!("before|4|hello {root} hi there extra arg\n")
    );
    let out = p.dsm(&["invoke", "util:fail"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
}

/// Issue 21 (10): a run says how many records it read, passed to the loader and had confirmed,
/// in its line, its JSON document, `dsm runs show` and the sync summary. Here a stream map
/// drops one record and the tap's last two records come after its last STATE.
#[test]
fn a_run_counts_records_read_sent_and_confirmed() {
    let p = TestProject::new(
        r#"plugins:
  extractors:
  - name: tap-fake
    namespace: tap_fake
    executable: ./tap.sh
    capabilities: [state]
  mappers:
  - name: meltano-map-transformer
    variant: meltano
    executable: ./no-such-dir/meltano-map-transform
    mappings:
    - name: drop-two
      config:
        stream_maps:
          users:
            __filter__: "record['id'] != 2"
  loaders:
  - name: target-fake
    namespace: target_fake
    executable: ./target.sh
jobs:
- name: users
  tasks: [tap-fake drop-two target-fake]
"#,
    );
    p.write(
        "lines.jsonl",
        r#"{"type": "SCHEMA", "stream": "users", "key_properties": ["id"], "schema": {"type": "object", "properties": {"id": {"type": "integer"}}}}
{"type": "RECORD", "stream": "users", "record": {"id": 1}}
{"type": "RECORD", "stream": "users", "record": {"id": 2}}
{"type": "RECORD", "stream": "users", "record": {"id": 3}}
{"type": "STATE", "value": {"bookmarks": {"users": {"id": 3}}}}
{"type": "RECORD", "stream": "users", "record": {"id": 4}}
{"type": "RECORD", "stream": "users", "record": {"id": 5}}
"#,
    );
    script(
        &p,
        "tap.sh",
        &format!("exec {TAP} \"$@\" --replay \"$MELTANO_PROJECT_ROOT/lines.jsonl\"\n"),
    );
    script(
        &p,
        "target.sh",
        &format!("exec {TARGET} \"$@\" --output \"$MELTANO_PROJECT_ROOT/out.jsonl\"\n"),
    );
    let out = p.dsm(&[
        "--format",
        "json",
        "run",
        "tap-fake",
        "drop-two",
        "target-fake",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(records_in(&p), 4, "the map dropped record 2");
    let doc = &out.json()[0];
    assert_eq!(doc["records_read"], 5, "{doc}");
    assert_eq!(doc["records_sent"], 4, "{doc}");
    // The loader echoed the only STATE, which came after records 1 and 3.
    assert_eq!(doc["records_confirmed"], 2, "{doc}");

    let run_id = doc["run_id"].as_str().unwrap().to_string();
    let shown = p.dsm(&["--format", "json", "runs", "show", &run_id]).json();
    assert_eq!(
        (
            &shown["records_read"],
            &shown["records_sent"],
            &shown["records_confirmed"]
        ),
        (&json!(5), &json!(4), &json!(2)),
        "{shown}"
    );

    // The line for people says it too.
    let out = p.dsm(&["run", "tap-fake", "drop-two", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("5 records (users: 5), 4 sent, 2 confirmed"),
        "{}",
        out.stderr
    );

    // The sync summary counts the same, per flow and per attempt.
    let out = p.dsm(&["--format", "json", "sync", "users"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let flow = &out.json()["flows"][0];
    for doc in [flow, &flow["attempts"][0]] {
        assert_eq!(
            (
                &doc["records_read"],
                &doc["records_sent"],
                &doc["records_confirmed"]
            ),
            (&json!(5), &json!(4), &json!(2)),
            "{flow}"
        );
    }
}

/// Issue 20 (19): `kill -9` of dsm takes its plugins with it, so a later run of the flow can
/// never find the old tap still working.
#[test]
fn a_tap_dies_with_dsm_when_dsm_is_killed() {
    let p = project("--sleep-before 120000 --pid-file \"$MELTANO_PROJECT_ROOT/tap.pid\"");
    let mut child = p
        .command(&["run", "tap-fake", "target-fake"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid_file = path(&p, "tap.pid");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&pid_file).map_or(true, |t| t.trim().is_empty()) {
        assert!(Instant::now() < deadline, "the tap never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let tap: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let alive = |pid: u32| {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
    };
    assert!(alive(tap));
    child.kill().unwrap();
    child.wait().unwrap();
    // The kernel delivers the parent-death signal when dsm's thread ends: wait for it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while alive(tap) {
        if Instant::now() > deadline {
            let _ = std::process::Command::new("kill")
                .args(["-9", &tap.to_string()])
                .status();
            panic!("the tap (pid {tap}) outlived dsm");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Issue 20 (19): what a plugin started in turn outlives a `kill -9` of dsm (the parent-death
/// signal reaches only the plugin itself); the run that takes the flow over stops it before it
/// starts its own tap, so the flow never has two at work.
#[test]
fn the_run_that_takes_a_flow_over_stops_what_the_killed_run_left_behind() {
    let p = project("--generate 3 --stream users");
    // The first time, the tap starts a helper of its own (in its process group), then waits.
    script(
        &p,
        "tap.sh",
        &format!(
            r#"if [ ! -e "$MELTANO_PROJECT_ROOT/once" ]; then
  : > "$MELTANO_PROJECT_ROOT/once"
  sleep 300 &
  echo $! > "$MELTANO_PROJECT_ROOT/helper.pid"
  exec {TAP} --sleep-before 120000 --pid-file "$MELTANO_PROJECT_ROOT/tap.pid" "$@"
fi
exec {TAP} --generate 3 --stream users "$@"
"#
        ),
    );
    let mut child = p
        .command(&["run", "tap-fake", "target-fake"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let read_pid = |name: &str| -> u32 {
        let file = path(&p, name);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(pid) = std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                return pid;
            }
            assert!(Instant::now() < deadline, "`{name}` was never written");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let alive = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
    };
    let helper = read_pid("helper.pid");
    let tap = read_pid("tap.pid");
    child.kill().unwrap();
    child.wait().unwrap();
    // The tap goes with dsm; its helper stays.
    let deadline = Instant::now() + Duration::from_secs(30);
    while alive(tap) {
        assert!(
            Instant::now() < deadline,
            "the tap (pid {tap}) outlived dsm"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        alive(helper),
        "the helper is still there before the next run"
    );

    let out = p.dsm(&["run", "tap-fake", "target-fake"]);
    let stopped = !alive(helper);
    if !stopped {
        let _ = std::process::Command::new("kill")
            .args(["-9", &helper.to_string()])
            .status();
    }
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        stopped,
        "the run that took the flow over left the killed run's helper (pid {helper}) running"
    );
}

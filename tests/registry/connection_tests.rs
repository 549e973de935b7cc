//! `dsm test` with real processes: the fake tap in its fault modes behind small wrapper scripts,
//! and dsm's built-in tap and targets (whose load tests clean up after themselves).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

const TAP: &str = env!("CARGO_BIN_EXE_dsm-fake-tap");
const TARGET: &str = env!("CARGO_BIN_EXE_dsm-fake-target");

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(meltano_yml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("meltano.yml"), meltano_yml).unwrap();
        Project { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes an executable shell script.
    fn script(&self, name: &str, body: &str) {
        let path = self.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn dsm(&self, args: &[&str]) -> Output {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dsm"));
        cmd.args(args).current_dir(self.path());
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if ["DSM_", "MELTANO_", "TAP_", "TARGET_"]
                .iter()
                .any(|p| key.starts_with(p))
            {
                cmd.env_remove(key);
            }
        }
        cmd.output().unwrap()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })
}

/// The result of `plugin`'s test `test` in a `--format json` document.
fn result<'a>(doc: &'a Value, plugin: &str, test: &str) -> &'a Value {
    doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["plugin"] == plugin && r["test"] == test)
        .unwrap_or_else(|| panic!("no result for {plugin}/{test} in {doc:#}"))
}

/// Taps in every fault mode, each a script running the fake tap.
fn fake_project() -> Project {
    let p = Project::new(
        "\
version: 1
plugins:
  extractors:
  - name: tap-good
    namespace: tap_good
    executable: ./good.sh
    commands:
      test: {executable: ./cmd.sh, args: --generate 1 --stream $MELTANO_EXTRACTOR_NAME}
      test-fails: {executable: ./cmd.sh, args: --exit-code 4 --stderr 'command-went-wrong'}
      other: --exit-code 9
  - name: tap-fails
    namespace: tap_fails
    executable: ./fails.sh
  - name: tap-hangs
    namespace: tap_hangs
    executable: ./hangs.sh
  - name: tap-empty
    namespace: tap_empty
    executable: ./empty.sh
  - name: tap-missing
    namespace: tap_missing
    executable: tap-that-is-not-installed-anywhere
  loaders:
  - name: target-other
    namespace: target_other
    executable: ./target.sh
",
    );
    // Emits one record, then would keep going for a minute: passing must stop it.
    p.script(
        "good.sh",
        &format!("exec {TAP} --pid-file \"$MELTANO_PROJECT_ROOT/good.pid\" --generate 1 --sleep-after 60000 \"$@\""),
    );
    p.script("cmd.sh", &format!("exec {TAP} \"$@\""));
    p.script(
        "fails.sh",
        &format!("exec {TAP} --stderr 'auth: 401 Unauthorized' --exit-code 3 \"$@\""),
    );
    p.script(
        "hangs.sh",
        &format!("exec {TAP} --stderr 'connecting...' --sleep-before 60000 --generate 1 \"$@\""),
    );
    p.script(
        "empty.sh",
        &format!("exec {TAP} --stderr 'no streams selected' \"$@\""),
    );
    p.script(
        "target.sh",
        &format!("exec {TARGET} --output \"$MELTANO_PROJECT_ROOT/loaded.jsonl\" \"$@\""),
    );
    p
}

#[test]
fn dsm_test_reports_pass_failure_timeout_no_record_and_not_installed() {
    let p = fake_project();
    let junit = p.path().join("reports/junit.xml");
    let started = Instant::now();
    let out = p.dsm(&[
        "--format",
        "json",
        "test",
        "--all",
        "--timeout",
        "3",
        "--parallel",
        "4",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    // A pass stops the tap (it would sleep a minute), a hang is stopped at the timeout.
    assert!(started.elapsed() < Duration::from_secs(50), "{out:?}");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("tests failed"));
    let doc = json(&out);
    assert_eq!(doc["succeeded"], false);

    let good = result(&doc, "tap-good", "connection");
    assert_eq!(good["status"], "passed", "{good:#}");
    assert_eq!(good["stderr_tail"], serde_json::json!([]));
    let pid: i32 = std::fs::read_to_string(p.path().join("good.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The tap was stopped after its first record: the process is gone.
    let alive = std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(!alive, "the passing tap is still running");

    // Its `test*` commands ran too; `other` is not a test command.
    assert_eq!(result(&doc, "tap-good", "test")["status"], "passed");
    let cmd = result(&doc, "tap-good", "test-fails");
    assert_eq!(cmd["status"], "failed");
    assert_eq!(cmd["reason"], "the command exited with status 4");
    assert_eq!(
        cmd["stderr_tail"],
        serde_json::json!(["command-went-wrong"])
    );
    assert!(
        doc["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["test"] != "other")
    );

    let fails = result(&doc, "tap-fails", "connection");
    assert_eq!(fails["status"], "failed");
    assert_eq!(fails["reason"], "it exited with status 3");
    assert_eq!(
        fails["stderr_tail"],
        serde_json::json!(["auth: 401 Unauthorized"])
    );

    let hangs = result(&doc, "tap-hangs", "connection");
    assert_eq!(hangs["status"], "timed_out", "{hangs:#}");
    assert!(
        hangs["reason"].as_str().unwrap().contains("timeout of 3s"),
        "{hangs:#}"
    );
    assert!(hangs["duration_seconds"].as_f64().unwrap() < 20.0);
    assert_eq!(hangs["stderr_tail"], serde_json::json!(["connecting..."]));

    let empty = result(&doc, "tap-empty", "connection");
    assert_eq!(empty["status"], "failed");
    assert!(
        empty["reason"]
            .as_str()
            .unwrap()
            .contains("without a RECORD or BATCH message"),
        "{empty:#}"
    );
    assert_eq!(
        empty["stderr_tail"],
        serde_json::json!(["no streams selected"])
    );

    let missing = result(&doc, "tap-missing", "connection");
    assert_eq!(missing["status"], "failed");
    let reason = missing["reason"].as_str().unwrap();
    assert!(reason.contains("is not installed"), "{reason}");
    assert!(reason.contains("dsm install"), "{reason}");

    // A loader not built into dsm is not tested without `--loaders` under `--all`.
    assert!(
        doc["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["plugin"] != "target-other")
    );
    assert!(!p.path().join("loaded.jsonl").exists());

    // The JUnit file parses and says the same.
    let xml = std::fs::read_to_string(&junit).unwrap();
    let tree = roxmltree::Document::parse(&xml).unwrap();
    let suite = tree
        .descendants()
        .find(|n| n.has_tag_name("testsuite"))
        .unwrap();
    let cases: Vec<_> = suite
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(
        suite.attribute("tests").unwrap(),
        cases.len().to_string(),
        "{xml}"
    );
    assert_eq!(suite.attribute("failures"), Some("5"), "{xml}");
    let case = |class: &str, name: &str| {
        *cases
            .iter()
            .find(|c| c.attribute("classname") == Some(class) && c.attribute("name") == Some(name))
            .unwrap_or_else(|| panic!("no testcase {class}/{name} in {xml}"))
    };
    assert!(
        case("extractor.tap-good", "connection")
            .children()
            .all(|c| !c.has_tag_name("failure"))
    );
    let failure = case("extractor.tap-fails", "connection")
        .children()
        .find(|c| c.has_tag_name("failure"))
        .unwrap();
    assert_eq!(
        failure.attribute("message"),
        Some("it exited with status 3")
    );
    assert_eq!(failure.text(), Some("auth: 401 Unauthorized"));
    let timeout = case("extractor.tap-hangs", "connection")
        .children()
        .find(|c| c.has_tag_name("failure"))
        .unwrap();
    assert_eq!(timeout.attribute("type"), Some("timeout"));

    // Results went into the status history: a failed test makes the source `error`.
    let sources = p.dsm(&["--format", "json", "sources", "list"]);
    let sources = json(&sources);
    let status_of = |name: &str| {
        sources
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["status"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(status_of("tap-fails"), "error");
    assert_eq!(status_of("tap-empty"), "error");
    // tap-good's `test-fails` command failed, so tap-good failed its tests as a whole.
    assert_eq!(status_of("tap-good"), "error");
    let show = p.dsm(&["--format", "json", "sources", "show", "tap-fails"]);
    let show = text(&show.stdout);
    assert!(show.contains("\"origin\": \"test\""), "{show}");
    assert!(show.contains("it exited with status 3"), "{show}");
}

#[test]
fn dsm_test_passes_with_exit_0_as_a_table_and_records_the_pass() {
    let p = fake_project();
    let out = p.dsm(&["test", "tap-good", "--timeout", "20"]);
    // `test-fails` is one of tap-good's test commands.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("PLUGIN"), "{stdout}");
    assert!(stdout.contains("command-went-wrong"), "{stdout}");

    let out = p.dsm(&["test", "tap-empty", "tap-fails", "--timeout", "20"]);
    assert_eq!(out.status.code(), Some(1));

    // Only passing tests: exit 0, and the status is `active` again.
    p.script("fails.sh", &format!("exec {TAP} --generate 2 \"$@\""));
    let out = p.dsm(&["--format", "json", "test", "tap-fails", "--timeout", "20"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc = json(&out);
    assert_eq!(doc["passed"], 1);
    assert_eq!(doc["succeeded"], true);
    let sources = json(&p.dsm(&["--format", "json", "sources", "list"]));
    let fails = sources
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "tap-fails")
        .unwrap();
    assert_eq!(fails["status"], "active", "{fails:#}");
}

#[test]
fn dsm_test_bad_input_unknown_name_nothing_chosen_bad_flags() {
    let p = fake_project();
    let out = p.dsm(&["test", "tap-god"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("no plugin `tap-god` in meltano.yml"), "{err}");
    assert!(err.contains("did you mean `tap-good`?"), "{err}");

    let out = p.dsm(&["test"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--all"));

    let out = p.dsm(&["test", "--all", "--parallel", "0"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn dsm_test_runs_tests_in_parallel() {
    // Each tap waits for the other to have started before it emits a record: with one test at
    // a time the first one times out, with two at a time both pass.
    let p = Project::new(
        "\
version: 1
plugins:
  extractors:
  - name: tap-a
    namespace: tap_a
    executable: ./a.sh
  - name: tap-b
    namespace: tap_b
    executable: ./b.sh
",
    );
    for (me, other) in [("a", "b"), ("b", "a")] {
        p.script(
            &format!("{me}.sh"),
            &format!(
                "touch \"$MELTANO_PROJECT_ROOT/{me}.started\"\n\
                 i=0\n\
                 while [ ! -e \"$MELTANO_PROJECT_ROOT/{other}.started\" ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done\n\
                 [ -e \"$MELTANO_PROJECT_ROOT/{other}.started\" ] || exit 7\n\
                 exec {TAP} --generate 1 \"$@\""
            ),
        );
    }
    let out = p.dsm(&[
        "--format",
        "json",
        "test",
        "--all",
        "--parallel",
        "2",
        "--timeout",
        "30",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(json(&out)["passed"], 2);

    for f in ["a.started", "b.started"] {
        std::fs::remove_file(p.path().join(f)).unwrap();
    }
    let out = p.dsm(&[
        "--format",
        "json",
        "test",
        "--all",
        "--parallel",
        "1",
        "--timeout",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let doc = json(&out);
    assert_eq!(result(&doc, "tap-a", "connection")["status"], "timed_out");
}

#[test]
fn dsm_test_built_in_tap_and_targets_clean_up_and_other_loaders_say_what_they_leave() {
    let p = Project::new(
        "\
version: 1
plugins:
  extractors:
  - name: tap-jsonl
    variant: dsm
    config:
      files:
      - {entity: users, path: users.jsonl, keys: [id]}
  loaders:
  - name: target-jsonl
    variant: dsm
    config: {destination_path: out}
  - name: target-sqlite
    variant: dsm
    config: {database: warehouse.db}
  - name: target-other
    namespace: target_other
    executable: ./target.sh
",
    );
    std::fs::write(
        p.path().join("users.jsonl"),
        "{\"id\": 1, \"name\": \"ana\"}\n{\"id\": 2, \"name\": \"bo\"}\n",
    )
    .unwrap();
    p.script(
        "target.sh",
        &format!("exec {TARGET} --output \"$MELTANO_PROJECT_ROOT/loaded.jsonl\" \"$@\""),
    );
    // A table of the user's in the same database must survive the cleanup.
    let conn = rusqlite::Connection::open(p.path().join("warehouse.db")).unwrap();
    conn.execute_batch("CREATE TABLE keep (id INTEGER); INSERT INTO keep VALUES (1);")
        .unwrap();
    drop(conn);

    let out = p.dsm(&["--format", "json", "test", "--all", "--timeout", "60"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let doc = json(&out);
    assert_eq!(result(&doc, "tap-jsonl", "connection")["status"], "passed");
    for target in ["target-jsonl", "target-sqlite"] {
        let r = result(&doc, target, "load");
        assert_eq!(r["status"], "passed", "{r:#}");
        assert_eq!(r["leaves_behind"], Value::Null, "{r:#}");
    }
    assert!(
        doc["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["plugin"] != "target-other")
    );
    // The built-in targets' test stream is gone again; the user's data is not.
    // Issue 30: the folder the test made for target-jsonl's file goes too.
    assert!(
        !p.path().join("out").exists(),
        "the test's `out` folder is left behind"
    );
    let conn = rusqlite::Connection::open(p.path().join("warehouse.db")).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(tables, ["keep"]);
    drop(conn);

    // Named without `--loaders`: skipped, with the reason; not a failure.
    let out = p.dsm(&["--format", "json", "test", "target-other"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc = json(&out);
    let r = result(&doc, "target-other", "load");
    assert_eq!(r["status"], "skipped");
    assert!(r["reason"].as_str().unwrap().contains("--loaders"));
    assert!(!p.path().join("loaded.jsonl").exists());

    // With `--loaders` it runs, and says what it leaves behind.
    let out = p.dsm(&["test", "target-other", "--loaders"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("leaves behind stream `_dsm_test`"),
        "{stderr}"
    );
    let loaded = std::fs::read_to_string(p.path().join("loaded.jsonl")).unwrap();
    assert!(loaded.contains("_dsm_test"), "{loaded}");
}

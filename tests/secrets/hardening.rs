//! Issue #20 "Security and robustness": what an attacker or an unlucky operator tries, each
//! refused or contained.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::Project;

const TAP: &str = env!("CARGO_BIN_EXE_dsm-fake-tap");
const TARGET: &str = env!("CARGO_BIN_EXE_dsm-fake-target");

/// Writes an executable shell script into the project.
fn script(p: &Project, name: &str, body: &str) {
    let path = p.path(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Every `NAME=` line of the environment dumps in `dir`, with the file it came from.
fn dumped_names(dir: &Path) -> Vec<(String, String)> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines() {
            if let Some((k, _)) = line.split_once('=') {
                names.push((
                    path.file_name().unwrap().to_string_lossy().into_owned(),
                    k.to_string(),
                ));
            }
        }
    }
    names
}

/// Issue #20 point 2: no dsm variable that grants access reaches a tap, a target, a command
/// of `dsm invoke` or a discovery run, from the shell or from `meltano.yml`; a variable dsm does
/// not own (`PGPASSWORD`) still passes.
#[test]
fn no_access_variable_reaches_any_plugin() {
    let p = Project::initialised();
    let dumps = tempfile::tempdir().unwrap();
    let d = dumps.path().display();
    script(
        &p,
        "tap.sh",
        &format!(
            "env > {d}/tap-$$.env\ncase \" $* \" in *\" --discover \"*) echo '{CATALOG}'; exit 0;; esac\nexec {TAP} --generate 2 --stream users \"$@\""
        ),
    );
    script(
        &p,
        "target.sh",
        &format!("env > {d}/target-$$.env\nexec {TARGET} \"$@\""),
    );
    std::fs::write(
        p.path("meltano.yml"),
        "\
version: 1
default_environment: dev
env:
  DSM_TOKEN: token-from-the-project-file
environments:
- name: dev
plugins:
  extractors:
  - name: tap-envdump
    namespace: tap_envdump
    executable: ./tap.sh
    capabilities: [discover, catalog]
    env:
      DSM_MASTER_KEY: key-from-the-plugin-env
  loaders:
  - name: target-envdump
    namespace: target_envdump
    executable: ./target.sh
",
    )
    .unwrap();
    let store = p.path(".dsm/dsm.db");
    for args in [
        &["run", "tap-envdump", "target-envdump"][..],
        &["invoke", "tap-envdump", "--about"][..],
        &["select", "tap-envdump", "--list"][..],
    ] {
        let out = p
            .command(args)
            .env("DSM_TOKEN", "token-from-the-shell")
            .env("DSM_DATABASE_URI", &store)
            .env("DSM_LATER_API_KEY", "a-later-access-variable")
            .env("PGPASSWORD", "the-users-own-postgres")
            .output()
            .unwrap();
        let run = Project::finish(out);
        assert_eq!(run.code, 0, "{args:?}: {}", run.all());
    }
    let names = dumped_names(dumps.path());
    let files: std::collections::BTreeSet<&str> = names.iter().map(|(f, _)| f.as_str()).collect();
    assert!(
        files.len() >= 4,
        "tap and target of the run, invoke and discovery all dumped: {files:?}"
    );
    for (file, name) in &names {
        assert!(
            !name.starts_with("DSM_") || !dsm_access(name),
            "`{name}` reached a plugin ({file})"
        );
    }
    for file in &files {
        assert!(
            names.iter().any(|(f, n)| f == file && n == "PGPASSWORD"),
            "PGPASSWORD is the user's own variable and passes ({file})"
        );
    }
}

const CATALOG: &str = r#"{"streams":[{"tap_stream_id":"users","stream":"users","schema":{"type":"object","properties":{"id":{"type":"integer"}}},"metadata":[{"breadcrumb":[],"metadata":{"selected":true}}]}]}"#;

fn dsm_access(name: &str) -> bool {
    [
        "DSM_MASTER_KEY",
        "DSM_MASTER_KEY_FILE",
        "DSM_TOKEN",
        "DSM_DATABASE_URI",
        "DSM_LATER_API_KEY",
    ]
    .contains(&name)
}

/// A project whose extractor replays `lines` (one Singer message a line) into the fake
/// target, which writes what it received to `received.jsonl`.
fn replay_project(lines: &[&str]) -> Project {
    let p = Project::initialised();
    std::fs::write(p.path("input.jsonl"), lines.join("\n") + "\n").unwrap();
    script(&p, "tap.sh", &format!("exec {TAP} --replay input.jsonl"));
    script(
        &p,
        "target.sh",
        &format!("exec {TARGET} --output received.jsonl \"$@\""),
    );
    std::fs::write(
        p.path("meltano.yml"),
        "\
version: 1
default_environment: dev
environments:
- name: dev
plugins:
  extractors:
  - name: tap-replay
    namespace: tap_replay
    executable: ./tap.sh
  loaders:
  - name: target-fake
    namespace: target_fake
    executable: ./target.sh
jobs:
- name: replay-job
  tasks: [tap-replay target-fake]
",
    )
    .unwrap();
    p
}

const SCHEMA: &str = r#"{"type":"SCHEMA","stream":"users","schema":{"type":"object","properties":{"id":{"type":"integer"}}},"key_properties":["id"]}"#;
const RECORD: &str = r#"{"type":"RECORD","stream":"users","record":{"id":1}}"#;
const STATE: &str = r#"{"type":"STATE","value":{"bookmarks":{"users":{"id":1}}}}"#;

/// Issue #20 point 18: `--run-id` (and `DSM_RUN_RUN_ID`) names files, so only a UUID is
/// accepted; a path is refused before anything is written.
#[test]
fn a_run_id_that_is_not_a_uuid_is_refused() {
    let p = replay_project(&[SCHEMA, RECORD, STATE]);
    for id in ["../../escaped", "x/../../y", "", "not-a-uuid"] {
        let run = p.dsm(&["run", "--run-id", id, "tap-replay", "target-fake"]);
        assert_eq!(run.code, 2, "--run-id {id:?}: {}", run.all());
        assert!(run.stderr.contains("must be a UUID"), "{}", run.stderr);
    }
    let out = p
        .command(&["run", "tap-replay", "target-fake"])
        .env("DSM_RUN_RUN_ID", "../../escaped")
        .output()
        .unwrap();
    let run = Project::finish(out);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(!p.dir.path().parent().unwrap().join("escaped.log").exists());
    assert!(!p.path("escaped.log").exists());

    let id = "0192f0c4-7d1e-7a3b-9c2d-4e5f60718293";
    let upper = id.to_uppercase();
    let run = p.dsm(&["run", "--run-id", &upper, "tap-replay", "target-fake"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let shown = p.dsm(&["runs", "show", id]);
    assert_eq!(
        shown.code,
        0,
        "a UUID is kept in lower case: {}",
        shown.all()
    );
}

/// Issue #20 point 21: a RECORD whose `record` is not an object and a SCHEMA whose `schema` is
/// not an object are bad lines even when no transform touches their stream.
#[test]
fn records_and_schemas_without_an_object_are_bad_lines() {
    let bad_record = r#"{"type":"RECORD","stream":"users","record":null}"#;
    let array_record = r#"{"type":"RECORD","stream":"users","record":[1,2]}"#;
    let no_record = r#"{"type":"RECORD","stream":"users"}"#;
    let bad_schema = r#"{"type":"SCHEMA","stream":"users","schema":[],"key_properties":[]}"#;
    let cases: [(&[&str], &str); 4] = [
        (&[SCHEMA, bad_record, STATE], "`record` must be an object"),
        (&[SCHEMA, array_record, STATE], "`record` must be an object"),
        (&[SCHEMA, no_record, STATE], "`record` must be an object"),
        (&[bad_schema, RECORD, STATE], "`schema` must be an object"),
    ];
    for (lines, message) in cases {
        let p = replay_project(lines);
        let run = p.dsm(&["run", "tap-replay", "target-fake"]);
        assert_eq!(run.code, 1, "{lines:?}: {}", run.all());
        assert!(run.stderr.contains(message), "{lines:?}: {}", run.stderr);
        assert!(run.stderr.contains("bad line 2") || run.stderr.contains("bad line 1"));
        let received = std::fs::read_to_string(p.path("received.jsonl")).unwrap_or_default();
        assert!(
            !received.contains("null}") && !received.contains("[1,2]") && !received.contains("[]"),
            "the bad line reached the target: {received}"
        );
    }
}

/// Issue #20 point 17: `metrics --output` replaces only a regular file; a symlink keeps
/// pointing at its file, and a FIFO or `/dev/stdout` is written through.
#[test]
fn metrics_output_writes_through_symlinks_and_devices() {
    let p = replay_project(&[SCHEMA, RECORD, STATE]);
    let run = p.dsm(&["run", "tap-replay", "target-fake"]);
    assert_eq!(run.code, 0, "{}", run.all());

    std::fs::write(p.path("real.prom"), "old\n").unwrap();
    std::os::unix::fs::symlink(p.path("real.prom"), p.path("link.prom")).unwrap();
    let run = p.dsm(&["metrics", "--output", "link.prom"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(p.path("link.prom").is_symlink(), "the symlink was replaced");
    let text = std::fs::read_to_string(p.path("real.prom")).unwrap();
    assert!(
        text.contains("dsm_metrics_generated_timestamp_seconds"),
        "{text}"
    );

    let run = p.dsm(&["metrics", "--output", "/dev/stdout"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout
            .contains("dsm_metrics_generated_timestamp_seconds"),
        "written through the pipe: {}",
        run.all()
    );

    let fifo = p.path("metrics.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    let run = p.dsm(&["metrics", "--output", "metrics.fifo"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(reader.join().unwrap().contains("dsm_metrics_generated"));
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo(),
        "the FIFO was replaced by a regular file"
    );
}

/// Issue #20 point 16: a huge duration or `--parallel` value, `--parallel 0` and a bad log
/// variable are usage errors (exit 2, a message, no panic) on every command that takes them.
#[test]
fn huge_and_zero_values_are_usage_errors_never_panics() {
    let p = replay_project(&[SCHEMA, RECORD, STATE]);
    let run = p.dsm(&["run", "tap-replay", "target-fake"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let huge = "99999999999999999999h";
    let cases: Vec<Vec<&str>> = vec![
        vec!["run", "--timeout", huge, "tap-replay", "target-fake"],
        vec!["run", "--timeout", "36600d", "tap-replay", "target-fake"],
        vec!["el", "--timeout", huge, "tap-replay", "target-fake"],
        vec!["test", "--timeout", huge, "tap-replay"],
        vec!["test", "--timeout", "99999999999999999999", "tap-replay"],
        vec!["test", "--parallel", "99999999999999999999", "tap-replay"],
        vec!["test", "--parallel", "1000000000", "tap-replay"],
        vec!["test", "--parallel", "0", "tap-replay"],
        vec!["sync", "--parallel", "0"],
        vec!["sync", "--parallel", "18446744073709551615"],
        vec!["schedule", "run-due", "--parallel", "0"],
        vec!["install", "--parallel", "0"],
        vec!["health", "--since", "99999999999999999999d"],
        vec!["health", "--since", "9999999999999w"],
        vec!["health", "--expect", "tap-replay=9999999999999w"],
        vec!["runs", "list", "--since", "9999999999999w"],
        vec!["runs", "prune", "--older-than", "99999999999999999999d"],
        vec!["runs", "prune", "--older-than", "9999999999999w"],
        vec!["conflicts", "list", "--since", "9999999999999d"],
        vec!["conflicts", "prune", "--older-than", "9999999999999d"],
    ];
    for args in &cases {
        let run = p.dsm(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.all());
        assert!(!run.all().contains("panicked"), "{args:?}: {}", run.all());
        assert!(run.stderr.contains("error"), "{args:?}: {}", run.all());
    }
    for (var, value) in [("DSM_LOG_LEVEL", "nope"), ("DSM_LOG_FORMAT", "xml")] {
        let out = p
            .command(&["runs", "list"])
            .env(var, value)
            .output()
            .unwrap();
        let run = Project::finish(out);
        assert_eq!(run.code, 2, "{var}={value}: {}", run.all());
        assert!(run.stderr.contains(var), "{}", run.stderr);
    }
    let out = p
        .command(&["runs", "list"])
        .env("DSM_LOG_LEVEL", "DEBUG")
        .env("DSM_LOG_FORMAT", "json")
        .output()
        .unwrap();
    assert_eq!(Project::finish(out).code, 0, "valid values still work");
}

/// Issue #20 point 16: a huge `timeout:` in `meltano.yml` and `N days ago` with a huge N in a
/// date setting are configuration errors (exit 2), not panics.
#[test]
fn huge_durations_and_dates_in_the_project_file_are_config_errors() {
    let p = replay_project(&[SCHEMA, RECORD, STATE]);
    let yml = std::fs::read_to_string(p.path("meltano.yml")).unwrap();
    std::fs::write(
        p.path("meltano.yml"),
        yml.replace(
            "  tasks: [tap-replay target-fake]\n",
            "  tasks: [tap-replay target-fake]\n  annotations:\n    dsm:\n      timeout: 99999999999999999999h\n",
        ),
    )
    .unwrap();
    let run = p.dsm(&["sync", "--dry-run"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("100 years"), "{}", run.stderr);
    assert!(!run.all().contains("panicked"));

    std::fs::write(
        p.path("meltano.yml"),
        yml.replace(
            "    executable: ./tap.sh\n",
            "    executable: ./tap.sh\n    settings:\n    - {name: start_date, kind: date_iso8601}\n    config:\n      start_date: 99999999999999 days ago\n",
        ),
    )
    .unwrap();
    let run = p.dsm(&["run", "tap-replay", "target-fake"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("start_date"), "{}", run.stderr);
    assert!(!run.all().contains("panicked"));
}

/// Issue #20 point 14: a stream-map expression nested past the limit (here 1,500 chained `+`
/// terms, under the source-size limit) is refused by `dsm validate`, and `dsm run` refuses it
/// before any plugin starts, where it used to abort with a stack overflow.
#[test]
fn a_too_deep_stream_map_fails_validate_and_run_before_any_plugin_starts() {
    let p = replay_project(&[SCHEMA, RECORD, STATE]);
    script(
        &p,
        "tap.sh",
        &format!("touch tap-started\nexec {TAP} --replay input.jsonl"),
    );
    let deep = format!("id{}", " + 1".repeat(1_500));
    let yml = std::fs::read_to_string(p.path("meltano.yml")).unwrap();
    std::fs::write(
        p.path("meltano.yml"),
        yml.replace(
            "    executable: ./tap.sh\n",
            &format!(
                "    executable: ./tap.sh\n    annotations:\n      dsm:\n        transforms:\n        - type: stream_maps\n          config:\n            stream_maps:\n              users:\n                total: '{deep}'\n"
            ),
        ),
    )
    .unwrap();
    let run = p.dsm(&["validate"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("nested too deeply"), "{}", run.stderr);
    let run = p.dsm(&["run", "tap-replay", "target-fake"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("nested too deeply"), "{}", run.stderr);
    assert!(!p.path("tap-started").exists(), "no plugin started");

    // A shallow expression in the same place is valid and runs.
    std::fs::write(
        p.path("meltano.yml"),
        std::fs::read_to_string(p.path("meltano.yml"))
            .unwrap()
            .replace(&deep, "id + 1"),
    )
    .unwrap();
    let run = p.dsm(&["validate"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let run = p.dsm(&["run", "tap-replay", "target-fake"]);
    assert_eq!(run.code, 0, "{}", run.all());
}

/// Issue #20 points 13 and 22: a store that is not a database or is damaged is refused at
/// once (no retries), with its path and what to do, as a configuration problem (exit 2).
#[test]
fn a_store_that_cannot_be_opened_names_its_path_and_what_to_do() {
    let p = replay_project(&[SCHEMA, RECORD, STATE]);
    let run = p.dsm(&["run", "tap-replay", "target-fake"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let db = p.path(".dsm/dsm.db");
    // Checkpoint the WAL into the file, then damage the first page after its header.
    drop(p.db().pragma_update(None, "wal_checkpoint", "TRUNCATE"));
    let mut bytes = std::fs::read(&db).unwrap();
    for b in &mut bytes[100..4096] {
        *b = 0xA5;
    }
    std::fs::write(&db, &bytes).unwrap();
    for f in [".dsm/dsm.db-wal", ".dsm/dsm.db-shm"] {
        let _ = std::fs::remove_file(p.path(f));
    }
    let run = p.dsm(&["runs", "list"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains(".dsm/dsm.db"), "{}", run.stderr);
    assert!(run.stderr.contains("damaged"), "{}", run.stderr);
    assert!(
        run.stderr.contains("hint: restore it from a backup"),
        "{}",
        run.stderr
    );

    std::fs::write(
        &db,
        "this is not a database, just some text that is long enough\n".repeat(100),
    )
    .unwrap();
    let run = p.dsm(&["runs", "list"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains("is not a dsm system database"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(".dsm/dsm.db"), "{}", run.stderr);
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);
}

/// Issue #20 point 9: `.dsm/` and what dsm creates in it are its owner's alone, and the
/// catalog cache key is keyed, not a plain hash of a config that holds secrets.
#[test]
fn the_private_folder_and_its_files_are_owner_only() {
    let p = replay_project(&[SCHEMA, RECORD, STATE]);
    let run = p.dsm(&["run", "tap-replay", "target-fake"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let mode = |rel: &str| std::fs::metadata(p.path(rel)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(".dsm"), 0o700);
    assert_eq!(mode(".dsm/dsm.db"), 0o600);
    assert_eq!(mode(".dsm/logs"), 0o700);
    for entry in std::fs::read_dir(p.path(".dsm/logs")).unwrap() {
        let path = entry.unwrap().path();
        let m = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(m, 0o600, "{}", path.display());
    }
}

/// Issue #20 point 3: a plugin that echoes its secrets on stderr (its config file, the
/// JSON-escaped, URL-encoded and basic-auth forms) leaves them nowhere dsm keeps or prints:
/// not dsm's stderr, the run log, or the run history.
#[test]
fn secrets_a_plugin_prints_are_redacted_everywhere_dsm_keeps_them() {
    use base64::Engine as _;
    let p = replay_project(&[SCHEMA, RECORD, STATE]);
    let secret = "pa ss/wo\"rd-91b2e7";
    let user = "svc-loader";
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
    let url = "pa%20ss%2Fwo%22rd-91b2e7";
    script(
        &p,
        "tap.sh",
        &format!(
            "cat \"$2\" >&2\necho \"url: {url} basic: {basic}\" >&2\necho 'raw: pa ss/wo\"rd-91b2e7' >&2\nexit 3"
        ),
    );
    let yml = std::fs::read_to_string(p.path("meltano.yml")).unwrap();
    std::fs::write(
        p.path("meltano.yml"),
        yml.replace(
            "    executable: ./tap.sh\n",
            "    executable: ./tap.sh\n    settings:\n    - {name: username}\n    - {name: password, kind: password}\n    config: {username: svc-loader}\n",
        ),
    )
    .unwrap();
    let set = p.dsm_stdin(
        &["config", "set", "tap-replay", "password", "--value-stdin"],
        &format!("{secret}\n"),
    );
    assert_eq!(set.code, 0, "{}", set.all());
    let run = p.dsm(&["run", "tap-replay", "target-fake"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.all().contains("********"), "{}", run.all());
    let runs = p.dsm(&["runs", "list", "--format", "json"]);
    let mut kept = vec![run.all(), runs.stdout.clone()];
    for entry in std::fs::read_dir(p.path(".dsm/logs")).unwrap() {
        kept.push(std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    for text in &kept {
        for form in [
            secret,
            "pa ss/wo\\\"rd-91b2e7",
            url,
            basic.as_str(),
            "rd-91b2e7",
        ] {
            assert!(!text.contains(form), "`{form}` kept in:\n{text}");
        }
    }
}

/// Issue #20 point 3: a sensitive value shorter than 6 characters cannot be redacted safely;
/// `config set` says so.
#[test]
fn config_set_warns_about_a_sensitive_value_too_short_to_redact() {
    let p = replay_project(&[SCHEMA, RECORD, STATE]);
    let yml = std::fs::read_to_string(p.path("meltano.yml")).unwrap();
    std::fs::write(
        p.path("meltano.yml"),
        yml.replace(
            "    executable: ./tap.sh\n",
            "    executable: ./tap.sh\n    settings:\n    - {name: password, kind: password}\n",
        ),
    )
    .unwrap();
    let set = p.dsm_stdin(
        &["config", "set", "tap-replay", "password", "--value-stdin"],
        "abc\n",
    );
    assert_eq!(set.code, 0, "{}", set.all());
    assert!(
        set.stderr.contains("shorter than 6 characters"),
        "{}",
        set.stderr
    );
    let set = p.dsm_stdin(
        &["config", "set", "tap-replay", "password", "--value-stdin"],
        "long-enough-value\n",
    );
    assert!(!set.stderr.contains("shorter than"), "{}", set.stderr);
}

/// Issue #20 point 20: the documented retention runs after every run, so the history stays
/// bounded under `DSM_RUNS_RETENTION_KEEP`.
#[test]
fn retention_from_the_environment_runs_after_every_run() {
    let p = replay_project(&[SCHEMA, RECORD, STATE]);
    for _ in 0..3 {
        let out = p
            .command(&["run", "tap-replay", "target-fake"])
            .env("DSM_RUNS_RETENTION_KEEP", "1")
            .output()
            .unwrap();
        let run = Project::finish(out);
        assert_eq!(run.code, 0, "{}", run.all());
    }
    let n: i64 = p
        .db()
        .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1, "only the newest run is kept");
}

/// Issue #20 point 10: `dsm sources show` masks by the plugin's declared settings (the rule
/// `config list` uses), not by words in the setting's name.
#[test]
fn sources_show_masks_what_the_plugin_declares_sensitive() {
    let p = replay_project(&[SCHEMA, RECORD, STATE]);
    let yml = std::fs::read_to_string(p.path("meltano.yml")).unwrap();
    std::fs::write(
        p.path("meltano.yml"),
        yml.replace(
            "    executable: ./tap.sh\n",
            "    executable: ./tap.sh\n    settings:\n    - {name: sqlalchemy_url, sensitive: true}\n    - {name: token_url}\n    config:\n      sqlalchemy_url: postgresql://u:hunter2-db@db/x\n      token_url: https://auth.example/token\n      api_secret: undeclared-but-secret\n",
        ),
    )
    .unwrap();
    let show = p.dsm(&["sources", "show", "tap-replay", "--format", "json"]);
    assert_eq!(show.code, 0, "{}", show.all());
    let doc: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(doc["config"]["sqlalchemy_url"], "********", "{doc}");
    assert_eq!(
        doc["config"]["token_url"], "https://auth.example/token",
        "{doc}"
    );
    assert_eq!(doc["config"]["api_secret"], "********", "{doc}");
    assert!(!show.all().contains("hunter2-db"));
    let text = p.dsm(&["sources", "show", "tap-replay"]);
    assert!(!text.all().contains("hunter2-db"), "{}", text.all());
}

/// Issue #20 point 4: a deleted or emptied store is not silently replaced by an empty one
/// when the project shows it had one; `dsm store reset` starts over on purpose, audited.
#[test]
fn a_lost_store_is_refused_until_it_is_restored_or_reset_on_purpose() {
    let p = replay_project(&[SCHEMA, RECORD, STATE]);
    let set = p.dsm_stdin(
        &["secrets", "set", "tap-replay", "password"],
        "hunter2-long\n",
    );
    assert_eq!(set.code, 0, "{}", set.all());
    let run = p.dsm(&["run", "tap-replay", "target-fake"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let db = p.path(".dsm/dsm.db");
    let remove_db = || {
        for f in [".dsm/dsm.db", ".dsm/dsm.db-wal", ".dsm/dsm.db-shm"] {
            let _ = std::fs::remove_file(p.path(f));
        }
    };
    for (how, lose) in [
        ("deleted", Box::new(remove_db) as Box<dyn Fn()>),
        (
            "emptied",
            Box::new(|| {
                remove_db();
                std::fs::write(&db, b"").unwrap();
            }),
        ),
    ] {
        lose();
        let run = p.dsm(&["run", "tap-replay", "target-fake"]);
        assert_eq!(run.code, 2, "{how}: {}", run.all());
        assert!(
            run.stderr.contains(".dsm/dsm.db")
                && run.stderr.contains("this project had one")
                && run.stderr.contains("dsm store reset")
                && run.stderr.contains("dsm import"),
            "{how}: {}",
            run.stderr
        );
        // Nothing was created in its place.
        assert!(
            std::fs::metadata(&db).map_or(true, |m| m.len() == 0),
            "{how}"
        );
    }
    // Starting over is a decision, and the audit log records it.
    let reset = p.dsm(&["store", "reset"]);
    assert_eq!(reset.code, 0, "{}", reset.all());
    assert!(p.path(".dsm/audit.head.before-reset").exists());
    let run = p.dsm(&["run", "tap-replay", "target-fake"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let audit = p.dsm(&["audit", "list", "--format", "json"]);
    assert!(audit.stdout.contains("store.reset"), "{}", audit.all());
    assert_eq!(p.dsm(&["audit", "verify"]).code, 0);
    // A store that exists is never reset.
    let again = p.dsm(&["store", "reset"]);
    assert_eq!(again.code, 2, "{}", again.all());
}

/// Issue #20 point 6: state, source status, schedule changes and reads of secrets in clear are
/// in the audit log, each with the OS user's id, not a `$USER` anyone can set.
#[test]
fn state_status_schedule_changes_and_plaintext_reads_are_audited() {
    let p = replay_project(&[SCHEMA, RECORD, STATE]);
    let ok = |args: &[&str]| {
        let out = p.dsm(args);
        assert_eq!(out.code, 0, "{args:?}: {}", out.all());
    };
    ok(&["state", "set", "dev:a", r#"{"singer_state": {"n": 1}}"#]);
    ok(&["state", "copy", "dev:a", "dev:b"]);
    ok(&["state", "move", "dev:b", "dev:c"]);
    ok(&["state", "clear", "dev:a"]);
    ok(&[
        "sources",
        "disable",
        "tap-replay",
        "--reason",
        "vendor migration",
    ]);
    ok(&["sources", "enable", "tap-replay"]);
    ok(&[
        "schedule",
        "add",
        "nightly",
        "--job",
        "replay-job",
        "--interval",
        "@daily",
    ]);
    ok(&["schedule", "remove", "nightly"]);
    ok(&["config", "--unsafe", "print", "tap-replay"]);
    let audit = p.dsm(&["audit", "list", "--format", "json"]);
    assert_eq!(audit.code, 0, "{}", audit.all());
    let entries: Vec<serde_json::Value> = serde_json::from_str(&audit.stdout).unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for wanted in [
        "state.set",
        "state.copy",
        "state.move",
        "state.clear",
        "source.status",
        "schedule.add",
        "schedule.remove",
        "config.read_plaintext",
    ] {
        assert!(
            actions.contains(&wanted),
            "{wanted} missing from {actions:?}"
        );
    }
    let uid = std::fs::metadata("/proc/self").map(|m| {
        use std::os::unix::fs::MetadataExt as _;
        m.uid()
    });
    let last = entries.last().unwrap();
    assert!(
        last["os_user"]
            .as_str()
            .unwrap()
            .ends_with(&format!("(uid {})", uid.unwrap())),
        "{last}"
    );
    assert_eq!(p.dsm(&["audit", "verify"]).code, 0);
}

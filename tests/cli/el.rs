//! `dsm el TAP TARGET` flags (`--select`, `--exclude`, `--catalog`, `--state`, `--dump`), the
//! refusal to start from empty state when Meltano keeps the state elsewhere, and the warning
//! for a run whose loader confirmed no STATE. Real processes: the fake tap and target.

use serde_json::{Value, json};

use crate::support::{TestProject, script};

const TAP: &str = env!("CARGO_BIN_EXE_dsm-fake-tap");
const TARGET: &str = env!("CARGO_BIN_EXE_dsm-fake-target");

const CATALOG: &str = r#"{"streams": [
  {"tap_stream_id": "users", "stream": "users", "schema": {"properties": {"id": {"type": "integer"}, "email": {"type": "string"}}}, "metadata": []},
  {"tap_stream_id": "orders", "stream": "orders", "schema": {"properties": {"id": {"type": "integer"}}}, "metadata": []},
  {"tap_stream_id": "events", "stream": "events", "schema": {"properties": {"id": {"type": "integer"}}}, "metadata": []}
]}"#;

/// A project whose `tap-disc` discovers [`CATALOG`] (counting discoveries in `discoveries`),
/// copies the catalog and state it is given to `seen-catalog.json` / `seen-state.json`, then
/// emits `tap_args`; `target-fake` writes what it receives to `out.jsonl`. `top` is put at the
/// top of `meltano.yml`.
fn project(top: &str, tap_args: &str) -> TestProject {
    let p = TestProject::new(&format!(
        "{top}
plugins:
  extractors:
  - name: tap-disc
    namespace: tap_disc
    pip_url: tap-disc==1.0
    executable: ./disc.sh
    capabilities: [catalog, discover, state]
    select: ['users.*', 'orders.*', '!events.*']
    settings:
    - {{name: host}}
    - {{name: password, kind: password}}
    config: {{host: db.example}}
  - name: tap-nostate
    namespace: tap_nostate
    executable: ./disc.sh
  loaders:
  - name: target-fake
    namespace: target_fake
    executable: ./target.sh
    settings:
    - {{name: api_key, sensitive: true}}
    config: {{batch: 10}}
"
    ));
    p.write("catalog.json", CATALOG);
    script(
        &p,
        "disc.sh",
        &format!(
            r#"prev=""
for a in "$@"; do
  if [ "$a" = "--discover" ]; then echo x >> "$MELTANO_PROJECT_ROOT/discoveries"; cat "$MELTANO_PROJECT_ROOT/catalog.json"; exit 0; fi
  if [ "$prev" = "--catalog" ]; then cp "$a" "$MELTANO_PROJECT_ROOT/seen-catalog.json"; fi
  if [ "$prev" = "--state" ]; then cp "$a" "$MELTANO_PROJECT_ROOT/seen-state.json"; fi
  prev="$a"
done
echo ran >> "$MELTANO_PROJECT_ROOT/tap-runs"
exec {TAP} "$@" {tap_args}
"#
        ),
    );
    script(
        &p,
        "target.sh",
        &format!("exec {TARGET} \"$@\" --output \"$MELTANO_PROJECT_ROOT/out.jsonl\"\n"),
    );
    p
}

fn exists(p: &TestProject, rel: &str) -> bool {
    p.root().join(rel).exists()
}

fn stored_state(p: &TestProject, id: &str) -> Value {
    let out = p.dsm(&["state", "get", id]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.json()
}

/// `selected` of each stream's top-level metadata entry, by stream id.
fn selected_streams(catalog: &Value) -> Vec<(String, Value)> {
    catalog["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .map(|s| {
            let top = s["metadata"]
                .as_array()
                .expect("metadata")
                .iter()
                .find(|m| m["breadcrumb"] == json!([]))
                .map(|m| m["metadata"]["selected"].clone())
                .unwrap_or(Value::Null);
            (s["tap_stream_id"].as_str().expect("id").to_string(), top)
        })
        .collect()
}

fn dump_catalog(p: &TestProject, extra: &[&str]) -> Vec<(String, Value)> {
    let mut args = vec!["el", "tap-disc", "target-fake", "--dump", "catalog"];
    args.extend_from_slice(extra);
    let out = p.dsm(&args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    selected_streams(&serde_json::from_str(&out.stdout).expect("the dump is JSON"))
}

fn sel(pairs: &[(&str, bool)]) -> Vec<(String, Value)> {
    pairs
        .iter()
        .map(|(s, b)| (s.to_string(), json!(b)))
        .collect()
}

#[test]
fn select_and_exclude_filter_after_the_project_select_rules() {
    let p = project("", "");
    assert_eq!(
        dump_catalog(&p, &[]),
        sel(&[("users", true), ("orders", true), ("events", false)])
    );
    assert_eq!(
        dump_catalog(&p, &["--select", "users"]),
        sel(&[("users", true), ("orders", false), ("events", false)])
    );
    assert_eq!(
        dump_catalog(&p, &["--exclude", "users"]),
        sel(&[("users", false), ("orders", true), ("events", false)])
    );
    // The filter narrows the project's selection; it never selects what `select` left out.
    assert_eq!(
        dump_catalog(&p, &["--select", "events", "--select", "users"]),
        sel(&[("users", true), ("orders", false), ("events", false)])
    );
    assert_eq!(
        dump_catalog(&p, &["--select", "*", "--exclude", "orders"]),
        sel(&[("users", true), ("orders", false), ("events", false)])
    );
    // A dump runs discovery (once, then the cache: the tap is installed from a package) but
    // never the tap or the target.
    assert_eq!(p.read("discoveries").lines().count(), 1);
    assert!(!exists(&p, "tap-runs") && !exists(&p, "out.jsonl"));

    // In a real run the tap gets the filtered catalog.
    let out = p.dsm(&["el", "tap-disc", "target-fake", "--select", "users"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let seen: Value = serde_json::from_str(&p.read("seen-catalog.json")).expect("json");
    assert_eq!(
        selected_streams(&seen),
        sel(&[("users", true), ("orders", false), ("events", false)])
    );
}

#[test]
fn a_filtered_run_merges_its_state_into_the_stored_one() {
    let p = project("", "--generate 2 --stream users");
    let out = p.dsm(&[
        "state",
        "set",
        "tap-disc-to-target-fake",
        r#"{"singer_state": {"bookmarks": {"orders": {"id": 9}}}}"#,
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = p.dsm(&["el", "tap-disc", "target-fake", "--select", "users"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        stored_state(&p, "tap-disc-to-target-fake")["singer_state"],
        json!({"bookmarks": {"orders": {"id": 9}, "users": {"id": 2}}})
    );
}

#[test]
fn a_filtered_full_refresh_keeps_the_bookmarks_of_the_streams_it_left_out() {
    let p = project("", "--generate 2 --stream users");
    let out = p.dsm(&[
        "state",
        "set",
        "tap-disc-to-target-fake",
        r#"{"singer_state": {"bookmarks": {"orders": {"id": 9}, "users": {"id": 50}}}}"#,
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = p.dsm(&[
        "el",
        "tap-disc",
        "target-fake",
        "--select",
        "users",
        "--full-refresh",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        !exists(&p, "seen-state.json"),
        "a full refresh passes no state"
    );
    assert_eq!(
        stored_state(&p, "tap-disc-to-target-fake")["singer_state"],
        json!({"bookmarks": {"orders": {"id": 9}, "users": {"id": 2}}})
    );
}

#[test]
fn a_user_catalog_skips_discovery_and_only_the_filter_applies() {
    let p = project("", "--generate 1 --stream users");
    // The user's own metadata stands: no `select` rule of the project touches it.
    p.write(
        "mine.json",
        r#"{"streams": [
  {"tap_stream_id": "users", "schema": {"properties": {"id": {"type": "integer"}}}, "metadata": [{"breadcrumb": [], "metadata": {"selected": true}}]},
  {"tap_stream_id": "events", "schema": {"properties": {"id": {"type": "integer"}}}, "metadata": [{"breadcrumb": [], "metadata": {"selected": true}}]},
  {"tap_stream_id": "orders", "schema": {"properties": {"id": {"type": "integer"}}}, "metadata": [{"breadcrumb": [], "metadata": {"selected": true}}]}
]}"#,
    );
    let out = p.dsm(&[
        "el",
        "tap-disc",
        "target-fake",
        "--catalog",
        "mine.json",
        "--exclude",
        "orders",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!exists(&p, "discoveries"), "no discovery with --catalog");
    let seen: Value = serde_json::from_str(&p.read("seen-catalog.json")).expect("json");
    assert_eq!(
        selected_streams(&seen),
        sel(&[("users", true), ("events", true), ("orders", false)])
    );

    let out = p.dsm(&["el", "tap-disc", "target-fake", "--catalog", "missing.json"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("missing.json"), "{}", out.stderr);
    p.write("broken.json", "{\"streams\": [\n  {,\n]}");
    let out = p.dsm(&["el", "tap-disc", "target-fake", "--catalog", "broken.json"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("broken.json") && out.stderr.contains("line 2"),
        "{}",
        out.stderr
    );
    let out = p.dsm(&["el", "tap-nostate", "target-fake", "--catalog", "mine.json"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("capabilit"), "{}", out.stderr);
    assert!(!exists(&p, "discoveries"));
}

#[test]
fn a_state_file_replaces_the_stored_state_for_the_start() {
    let p = project("", "--generate 3 --stream users");
    let out = p.dsm(&["el", "tap-disc", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!exists(&p, "seen-state.json"), "no state on the first run");

    p.write("start.json", r#"{"bookmarks": {"users": {"id": 1000}}}"#);
    let out = p.dsm(&["el", "tap-disc", "target-fake", "--state", "start.json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let seen: Value = serde_json::from_str(&p.read("seen-state.json")).expect("json");
    assert_eq!(seen, json!({"bookmarks": {"users": {"id": 1000}}}));
    // The run's own STATE is still committed under the flow's id.
    assert_eq!(
        stored_state(&p, "tap-disc-to-target-fake")["singer_state"],
        json!({"bookmarks": {"users": {"id": 3}}})
    );

    // `--full-refresh` wins over `--state`, as in Meltano.
    std::fs::remove_file(p.root().join("seen-state.json")).expect("rm");
    let out = p.dsm(&[
        "el",
        "tap-disc",
        "target-fake",
        "--state",
        "start.json",
        "--full-refresh",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!exists(&p, "seen-state.json"));

    let runs_before = p.read("tap-runs").lines().count();
    p.write("bad.json", "{\"bookmarks\":\n  {\"users\": }\n}");
    let out = p.dsm(&["el", "tap-disc", "target-fake", "--state", "bad.json"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("bad.json") && out.stderr.contains("line 2"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("hint:"), "{}", out.stderr);
    let out = p.dsm(&["el", "tap-disc", "target-fake", "--state", "nope.json"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("nope.json"), "{}", out.stderr);
    let out = p.dsm(&["el", "tap-nostate", "target-fake", "--state", "start.json"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("`state` capability"), "{}", out.stderr);
    assert_eq!(
        p.read("tap-runs").lines().count(),
        runs_before,
        "no tap ran"
    );
}

#[test]
fn dump_prints_configs_with_secrets_masked_unless_unsafe() {
    let p = project("", "")
        .env("TAP_DISC_PASSWORD", "hunter2-secret")
        .env("TARGET_FAKE_API_KEY", "key-0123456789");
    let out = p.dsm(&[
        "el",
        "tap-disc",
        "target-fake",
        "--dump",
        "extractor-config",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let config: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(config["host"], "db.example");
    assert_eq!(config["password"], "********");
    assert!(!out.stdout.contains("hunter2") && !out.stderr.contains("hunter2"));

    let out = p.dsm(&[
        "el",
        "tap-disc",
        "target-fake",
        "--dump",
        "extractor-config",
        "--unsafe",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let config: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(config["password"], "hunter2-secret");

    let out = p.dsm(&["el", "tap-disc", "target-fake", "--dump", "loader-config"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let config: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(config["batch"], 10);
    assert_eq!(config["api_key"], "********");
    assert!(!out.stdout.contains("key-0123456789"));
    let out = p.dsm(&[
        "el",
        "tap-disc",
        "target-fake",
        "--dump",
        "loader-config",
        "--unsafe",
    ]);
    let config: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(config["api_key"], "key-0123456789");

    // Config dumps start no plugin (not even discovery) and record no run.
    assert!(!exists(&p, "discoveries") && !exists(&p, "tap-runs"));
    let runs = p.dsm(&["runs", "list", "--format", "json"]).json();
    assert_eq!(runs, json!([]));

    let out = p.dsm(&["el", "tap-disc", "target-fake", "--unsafe"]);
    assert_eq!(out.code, 2, "--unsafe needs --dump: {}", out.stderr);
    let out = p.dsm(&["el", "tap-disc", "target-fake", "--dump", "everything"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
}

#[test]
fn dump_state_prints_the_state_the_tap_would_start_from() {
    let p = project("", "--generate 4 --stream users");
    let out = p.dsm(&["el", "tap-disc", "target-fake", "--dump", "state"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("there is no state to dump for `tap-disc-to-target-fake`"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("hint:"), "{}", out.stderr);

    assert_eq!(p.dsm(&["el", "tap-disc", "target-fake"]).code, 0);
    let out = p.dsm(&["el", "tap-disc", "target-fake", "--dump", "state"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let dumped: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(dumped, json!({"bookmarks": {"users": {"id": 4}}}));

    p.write("start.json", r#"{"bookmarks": {"users": {"id": 77}}}"#);
    let out = p.dsm(&[
        "el",
        "tap-disc",
        "target-fake",
        "--dump",
        "state",
        "--state",
        "start.json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let dumped: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(dumped, json!({"bookmarks": {"users": {"id": 77}}}));
    assert_eq!(p.read("tap-runs").lines().count(), 1, "dumps run no tap");
}

#[test]
fn a_flow_without_dsm_state_is_refused_when_meltano_keeps_state_elsewhere() {
    // (A `file://` or `s3://` state backend is read by dsm itself and `gs://`/`azure://` are
    // refused by name: tests/meltano_state covers those.)
    {
        let top = "database_uri: postgresql://meltano:pa55word@db.example/meltano";
        let p = project(top, "--generate 2 --stream users");
        let out = p.dsm(&["run", "tap-disc", "target-fake"]);
        assert_eq!(out.code, 2, "{top}: {}", out.stderr);
        assert!(
            out.stderr
                .contains("dsm has no state for `tap-disc-to-target-fake` and will not start"),
            "{}",
            out.stderr
        );
        let key = if top.starts_with("state_backend") {
            "`state_backend.uri`"
        } else {
            "`database_uri`"
        };
        assert!(out.stderr.contains(key), "{}", out.stderr);
        assert!(
            out.stderr.contains("dsm state import-meltano")
                && out.stderr.contains("dsm state import state.json")
                && out.stderr.contains("--full-refresh"),
            "{}",
            out.stderr
        );
        assert!(!out.stderr.contains("pa55word"), "{}", out.stderr);
        assert!(!exists(&p, "tap-runs"), "no plugin started");
        let out = p.dsm(&["el", "tap-disc", "target-fake"]);
        assert_eq!(out.code, 2, "el refuses too: {}", out.stderr);

        // `--full-refresh` starts from empty state on purpose; the next run has dsm state.
        let out = p.dsm(&["run", "tap-disc", "target-fake", "--full-refresh"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let out = p.dsm(&["run", "tap-disc", "target-fake"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let seen: Value = serde_json::from_str(&p.read("seen-state.json")).expect("json");
        assert_eq!(seen, json!({"bookmarks": {"users": {"id": 2}}}));
    }
}

#[test]
fn meltano_state_named_by_a_variable_or_dotenv_is_elsewhere_too() {
    let p = project("", "--generate 1 --stream users");
    let mut cmd = p.command(&["run", "tap-disc", "target-fake"]);
    cmd.env(
        "MELTANO_DATABASE_URI",
        "postgresql://m:pa55word@db.example/meltano",
    );
    let out = crate::support::run(cmd);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("(`MELTANO_DATABASE_URI` in the environment)"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("pa55word"), "{}", out.stderr);
    // The variable wins over meltano.yml, also when it names the system database.
    let p = project(
        "state_backend:\n  uri: s3://bucket/state",
        "--generate 1 --stream users",
    );
    let mut cmd = p.command(&["run", "tap-disc", "target-fake"]);
    cmd.env("MELTANO_STATE_BACKEND_URI", "systemdb");
    let out = crate::support::run(cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // `.env` counts like the environment.
    let p = project("", "--generate 1 --stream users");
    p.write(
        ".env",
        "MELTANO_DATABASE_URI=postgresql://m:pa55word@db/meltano\n",
    );
    let out = p.dsm(&["run", "tap-disc", "target-fake"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("(`MELTANO_DATABASE_URI` in .env)"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("pa55word"), "{}", out.stderr);
}

#[test]
fn imported_state_lets_the_flow_start_and_systemdb_is_not_elsewhere() {
    let p = project(
        "database_uri: postgresql://meltano:pa55word@db.example/meltano",
        "--generate 1 --stream users",
    );
    p.write(
        "state.json",
        r#"{"tap-disc-to-target-fake": {"completed": {"singer_state": {"bookmarks": {"users": {"id": 40}}}}, "partial": {}}}"#,
    );
    let out = p.dsm(&["state", "import", "state.json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = p.dsm(&["run", "tap-disc", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let seen: Value = serde_json::from_str(&p.read("seen-state.json")).expect("json");
    assert_eq!(seen, json!({"bookmarks": {"users": {"id": 40}}}));

    // A tap without the `state` capability loses nothing: it is never refused.
    let out = p.dsm(&["run", "tap-nostate", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    let p = project(
        "state_backend:\n  uri: systemdb",
        "--generate 1 --stream users",
    );
    let out = p.dsm(&["run", "tap-disc", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn a_run_whose_loader_emits_no_state_warns_that_the_bookmark_did_not_advance() {
    let p = project("", "--replay records.jsonl");
    p.write(
        "records.jsonl",
        r#"{"type": "SCHEMA", "stream": "users", "schema": {"properties": {"id": {"type": "integer"}}}, "key_properties": ["id"]}
{"type": "RECORD", "stream": "users", "record": {"id": 1}}
{"type": "RECORD", "stream": "users", "record": {"id": 2}}
"#,
    );
    // The tap sent no STATE (a full-table sync): there is no bookmark to advance, nothing to say.
    let out = p.dsm(&["el", "tap-disc", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("did not advance"), "{}", out.stderr);

    // The tap sends a STATE, and the loader never confirms one.
    p.write(
        "records.jsonl",
        r#"{"type": "SCHEMA", "stream": "users", "schema": {"properties": {"id": {"type": "integer"}}}, "key_properties": ["id"]}
{"type": "RECORD", "stream": "users", "record": {"id": 1}}
{"type": "RECORD", "stream": "users", "record": {"id": 2}}
{"type": "STATE", "value": {"bookmarks": {"users": {"id": 2}}}}
"#,
    );
    script(
        &p,
        "target.sh",
        &format!("exec {TARGET} \"$@\" --no-state --output \"$MELTANO_PROJECT_ROOT/out.jsonl\"\n"),
    );
    let out = p.dsm(&["el", "tap-disc", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "warning: loader `target-fake` emitted no STATE: the bookmark of `tap-disc-to-target-fake` did not advance"
        ),
        "{}",
        out.stderr
    );
    // Said once, in plain text (stderr is not a terminal here).
    assert_eq!(
        out.stderr.matches("did not advance").count(),
        1,
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains('\u{1b}'), "{}", out.stderr);
    assert_eq!(
        p.read("out.jsonl").lines().count(),
        4,
        "the records arrived"
    );
    assert_eq!(stored_state(&p, "tap-disc-to-target-fake"), json!({}));

    // With a STATE the loader confirms, there is no such warning.
    script(
        &p,
        "target.sh",
        &format!("exec {TARGET} \"$@\" --output \"$MELTANO_PROJECT_ROOT/out.jsonl\"\n"),
    );
    p.write(
        "records.jsonl",
        r#"{"type": "SCHEMA", "stream": "users", "schema": {"properties": {"id": {"type": "integer"}}}, "key_properties": ["id"]}
{"type": "RECORD", "stream": "users", "record": {"id": 3}}
{"type": "STATE", "value": {"bookmarks": {"users": {"id": 3}}}}
"#,
    );
    let out = p.dsm(&["el", "tap-disc", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("did not advance"), "{}", out.stderr);
}

/// Runs real Meltano in the project (from `DSM_TEST_VENV`), asserting it succeeds.
fn meltano(p: &TestProject, args: &[&str]) {
    let mut cmd = std::process::Command::new(crate::support::meltano_venv().join("bin/meltano"));
    crate::support::clean_env(&mut cmd);
    cmd.args(args)
        .current_dir(p.root())
        .env("MELTANO_SEND_ANONYMOUS_USAGE_STATS", "false");
    let out = crate::support::run(cmd);
    assert_eq!(out.code, 0, "meltano {args:?}: {}", out.stderr);
}

#[test]
fn a_flow_meltano_ran_is_refused_until_its_state_is_imported_from_meltanos_default_database() {
    let p = project("", "--generate 1 --stream users");
    // Real Meltano writes the bookmark to its default system database, `.meltano/meltano.db`.
    meltano(
        &p,
        &[
            "state",
            "set",
            "--force",
            "tap-disc-to-target-fake",
            r#"{"singer_state": {"bookmarks": {"users": {"id": 40}}}}"#,
        ],
    );
    // A bookmark of another flow does not stop this one's sibling.
    meltano(
        &p,
        &[
            "state",
            "set",
            "--force",
            "tap-nostate-to-target-fake",
            r#"{"singer_state": {"bookmarks": {"x": {"id": 1}}}}"#,
        ],
    );
    for args in [
        ["run", "tap-disc", "target-fake"],
        ["el", "tap-disc", "target-fake"],
    ] {
        let out = p.dsm(&args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr
                .contains("dsm has no state for `tap-disc-to-target-fake` and will not start")
                && out.stderr.contains("`.meltano/meltano.db`")
                && out
                    .stderr
                    .contains("hint: import Meltano's state first: `dsm state import-meltano`")
                && out.stderr.contains("--full-refresh"),
            "{}",
            out.stderr
        );
        assert!(!exists(&p, "tap-runs"), "no plugin started");
    }
    // The exact command the hint names brings the bookmark over; the flow then starts from it.
    let out = p.dsm(&["state", "import-meltano"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = p.dsm(&["run", "tap-disc", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let seen: Value = serde_json::from_str(&p.read("seen-state.json")).expect("json");
    assert_eq!(seen, json!({"bookmarks": {"users": {"id": 40}}}));
}

#[test]
fn full_refresh_starts_a_flow_meltano_ran_from_empty_state_on_purpose() {
    let p = project("", "--generate 1 --stream users");
    meltano(
        &p,
        &[
            "state",
            "set",
            "--force",
            "tap-disc-to-target-fake",
            r#"{"singer_state": {"bookmarks": {"users": {"id": 40}}}}"#,
        ],
    );
    let out = p.dsm(&["run", "tap-disc", "target-fake", "--full-refresh"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!exists(&p, "seen-state.json"), "no state passed");
    // The next run has dsm's own state and starts from it.
    let out = p.dsm(&["run", "tap-disc", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(exists(&p, "seen-state.json"));
}

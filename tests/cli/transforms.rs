//! Native transforms in real runs: `dsm run` with the built-in `tap-jsonl`, a recording target
//! (the fake target behind a script), and stream maps, field masks and validation configured
//! the three ways issue #5 names.

use std::os::unix::fs::PermissionsExt;

use serde_json::{Value, json};

use crate::support::{TestProject, script};

const TARGET: &str = env!("CARGO_BIN_EXE_dsm-fake-target");
const TAP_JSONL: &str = env!("CARGO_BIN_EXE_tap-jsonl");

/// Three users; the second has an `age` that does not match the schema.
const USERS: &str = r#"{"id": 1, "email": "Ann@Example.com", "age": 31, "secret": "x"}
{"id": 2, "email": "bob@example.com", "age": "old", "secret": "y"}
{"id": 3, "email": "cy@example.com", "age": 17, "secret": "z"}
"#;

/// `tap-jsonl` (built in) reading `users.jsonl` with a declared schema; `extractor_extra` is
/// laid into the extractor's entry (indented by 4), `rest` appended under `plugins:`.
fn project(extractor_extra: &str, rest: &str) -> TestProject {
    let p = TestProject::new(&format!(
        "plugins:
  extractors:
  - name: tap-jsonl
    variant: dsm
{extractor_extra}    config:
      files:
      - entity: users
        path: users.jsonl
        keys: [id]
        schema:
          type: object
          properties:
            id: {{type: integer}}
            email: {{type: string}}
            age: {{type: integer}}
            secret: {{type: string}}
  loaders:
  - name: target-fake
    namespace: target_fake
    executable: ./target.sh
{rest}"
    ));
    p.write("users.jsonl", USERS);
    script(
        &p,
        "target.sh",
        &format!("exec {TARGET} \"$@\" --output \"$MELTANO_PROJECT_ROOT/out.jsonl\"\n"),
    );
    p
}

/// What the loader received: every message but STATE, without the tap's run-dependent
/// `version` and `time_extracted`.
fn received(p: &TestProject) -> Vec<Value> {
    p.read("out.jsonl")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("the loader got JSON"))
        .filter(|m| m["type"] != "STATE" && m["type"] != "ACTIVATE_VERSION")
        .map(|mut m| {
            let o = m.as_object_mut().expect("an object");
            o.remove("version");
            o.remove("time_extracted");
            m
        })
        .collect()
}

fn records(p: &TestProject) -> Vec<Value> {
    received(p)
        .into_iter()
        .filter(|m| m["type"] == "RECORD")
        .map(|m| m["record"].clone())
        .collect()
}

fn unchanged_records() -> Vec<Value> {
    USERS
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

#[test]
fn a_meltano_map_transformer_mapping_runs_inside_dsm() {
    // The mapper's executable does not exist: the mapping can only have run natively.
    let p = project(
        "",
        r#"  mappers:
  - name: meltano-map-transformer
    variant: meltano
    pip_url: git+https://github.com/MeltanoLabs/meltano-map-transform.git
    executable: ./no-such-dir/meltano-map-transform
    mappings:
    - name: hash-emails
      config:
        stream_maps:
          users:
            __filter__: "record['id'] != 2"
            email_hash: "md5(record['email'].lower())"
            email: null
            secret: __NULL__
"#,
    );
    let out = p.dsm(&["run", "tap-jsonl", "hash-emails", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        received(&p),
        [
            json!({"type": "SCHEMA", "stream": "users", "key_properties": ["id"], "schema": {
                "type": "object", "properties": {
                    "id": {"type": "integer"},
                    "age": {"type": "integer"},
                    "email_hash": {"type": ["string", "null"]}}}}),
            json!({"type": "RECORD", "stream": "users", "record":
                {"id": 1, "age": 31, "email_hash": "257c57037d384ae37ea27a07e8a01665"}}),
            json!({"type": "RECORD", "stream": "users", "record":
                {"id": 3, "age": 17, "email_hash": "3982b055a5775cdd7fb528b3f9f1d601"}}),
        ]
    );
    // The run history lists the processes that ran: no mapper process.
    let runs = p.dsm(&["runs", "list", "--format", "json"]).json();
    let plugins: Vec<&str> = runs[0]["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .map(|x| x["plugin"].as_str().expect("a name"))
        .collect();
    assert_eq!(plugins, ["tap-jsonl", "target-fake"]);
}

/// Issue 5 (speed): a map that reads only named properties runs from each record's line,
/// without parsing it; the loader must get what the parsed path gives (property order, the
/// filter, values, `time_extracted` kept) and a failing expression must name its record.
#[test]
fn a_map_over_named_properties_gives_what_the_parsed_path_gives() {
    let mapping = |filter: &str| {
        format!(
            r#"  mappers:
  - name: meltano-map-transformer
    variant: meltano
    executable: ./no-such-dir/meltano-map-transform
    mappings:
    - name: hide
      config:
        stream_maps:
          users:
            __alias__: people
            __filter__: "{filter}"
            contact: email
            email: null
            email_hash: "md5(email.lower())"
            secret: __NULL__
"#
        )
    };
    let p = project("", &mapping("id != 2"));
    let out = p.dsm(&["run", "tap-jsonl", "hide", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<Value> = p
        .read("out.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("the loader got JSON"))
        .filter(|m: &Value| m["type"] == "RECORD")
        .collect();
    assert_eq!(lines.len(), 2);
    for m in &lines {
        assert_eq!(m["stream"], "people");
        assert!(m["time_extracted"].is_string(), "{m}");
        let keys: Vec<&str> = m["record"]
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["id", "age", "contact", "email_hash"], "{m}");
    }
    assert_eq!(
        records(&p),
        [
            json!({"id": 1, "age": 31, "contact": "Ann@Example.com",
                "email_hash": "257c57037d384ae37ea27a07e8a01665"}),
            json!({"id": 3, "age": 17, "contact": "cy@example.com",
                "email_hash": "3982b055a5775cdd7fb528b3f9f1d601"}),
        ]
    );

    // Record 2 has `"age": "old"`: comparing it with a number fails, naming the record.
    let p = project("", &mapping("age > 18"));
    let out = p.dsm(&["run", "tap-jsonl", "hide", "target-fake"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("record 2 of stream `users`")
            && out
                .stderr
                .contains("`__filter__` expression `age > 18` failed"),
        "{}",
        out.stderr
    );
}

#[test]
fn other_mappers_still_run_as_processes() {
    let p = project(
        "",
        "  mappers:
  - name: mapper-cat
    namespace: mapper_cat
    executable: ./mapper.sh
",
    );
    script(
        &p,
        "mapper.sh",
        "touch \"$MELTANO_PROJECT_ROOT/mapper-ran\"\nexec cat\n",
    );
    let out = p.dsm(&["run", "tap-jsonl", "mapper-cat", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(p.root().join("mapper-ran").exists());
    assert_eq!(records(&p), unchanged_records());
}

const EXTRACTOR_MAPS: &str = r#"    config:
      stream_maps:
        users:
          tag: "str(record['id']) + '-' + record['email'].split('@')[1].lower()"
          secret: null
"#;

/// The project with `stream_maps` in the extractor's `config`, next to `files`.
fn with_extractor_maps(capabilities: &str) -> TestProject {
    let p = project(capabilities, "");
    let text = p.read("meltano.yml").replacen(
        "    config:\n      files:",
        &format!("{}      files:", EXTRACTOR_MAPS),
        1,
    );
    p.write("meltano.yml", &text);
    p
}

#[test]
fn extractor_stream_maps_run_in_dsm_when_the_tap_lacks_the_capability() {
    let p = with_extractor_maps("");
    let out = p.dsm(&["run", "tap-jsonl", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let expected: Vec<Value> = unchanged_records()
        .into_iter()
        .map(|mut r| {
            let o = r.as_object_mut().expect("object");
            o.remove("secret");
            let tag = format!("{}-example.com", o["id"]);
            o.insert("tag".into(), json!(tag));
            r
        })
        .collect();
    assert_eq!(records(&p), expected);
}

#[test]
fn extractor_stream_maps_are_left_to_a_tap_with_the_capability() {
    // tap-jsonl ignores `stream_maps`: with the capability declared, nothing maps them.
    let p = with_extractor_maps(
        "    capabilities: [catalog, discover, state, properties, about, stream-maps]\n",
    );
    let out = p.dsm(&["run", "tap-jsonl", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(records(&p), unchanged_records());
}

#[test]
fn an_annotation_field_mask_hashes_a_column() {
    let p = project(
        "    annotations:
      dsm:
        transforms:
        - type: field_mask
          config:
            transformations:
            - {tap_stream_name: users, field_id: secret, type: HASH}
",
        "",
    );
    let out = p.dsm(&["run", "tap-jsonl", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let secrets: Vec<Value> = records(&p).iter().map(|r| r["secret"].clone()).collect();
    assert_eq!(
        secrets,
        [
            "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881",
            "a1fce4363854ff888cff4b8e7875d600c2682390412a8cf79b37d0b11148b0fa",
            "594e519ae499312b29433b7dd8a97ff068defcba9755b6d5d00e84c524d67b06",
        ]
    );
    assert_eq!(records(&p)[0]["email"], "Ann@Example.com");
}

fn validating(mode: &str) -> TestProject {
    project(
        &format!(
            "    annotations:
      dsm:
        validation:
          on_error: warn
          streams: {{users: {mode}}}
"
        ),
        "",
    )
}

#[test]
fn validation_fail_stops_the_run_naming_record_stream_and_path() {
    let p = validating("fail");
    let out = p.dsm(&["run", "tap-jsonl", "target-fake"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("record 2 of stream `users` does not match its schema"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("at `/age`: \"old\""),
        "the path and the reason: {}",
        out.stderr
    );
    let runs = p.dsm(&["runs", "list", "--format", "json"]).json();
    assert_eq!(runs[0]["status"], "failed");
}

#[test]
fn validation_skip_drops_the_bad_record() {
    let p = validating("skip");
    let out = p.dsm(&["run", "tap-jsonl", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let ids: Vec<Value> = records(&p).iter().map(|r| r["id"].clone()).collect();
    assert_eq!(ids, [json!(1), json!(3)]);
    assert!(!p.root().join(".dsm/quarantine").exists());
    // A dropped record is counted and reported, never lost without a word.
    assert!(
        out.stderr.contains(
            "1 record(s) of stream `users` failed validation and were dropped (policy `skip`)"
        ),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("did not send"), "{}", out.stderr);
}

#[test]
fn a_validation_policy_naming_a_stream_the_run_never_sent_is_reported() {
    let p = project(
        "    annotations:
      dsm:
        validation:
          on_error: warn
          streams: {userz: skip}
",
        "",
    );
    let out = p.dsm(&["run", "tap-jsonl", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "the extractor's validation policy names stream `userz`, which this run did not send"
        ),
        "{}",
        out.stderr
    );
    // The policy did not apply: the bad record went on with a warning (the default `warn`).
    assert_eq!(records(&p).len(), 3);
}

#[test]
fn validation_quarantine_writes_the_record_with_its_reason_and_lists_the_file() {
    let p = validating("quarantine");
    let out = p.dsm(&["run", "tap-jsonl", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let ids: Vec<Value> = records(&p).iter().map(|r| r["id"].clone()).collect();
    assert_eq!(ids, [json!(1), json!(3)]);

    let runs = p.dsm(&["runs", "list", "--format", "json"]).json();
    let run_id = runs[0]["run_id"].as_str().expect("a run id").to_owned();
    let show = p.dsm(&["runs", "show", &run_id, "--format", "json"]).json();
    let file = p
        .root()
        .join(format!(".dsm/quarantine/{run_id}-users.jsonl"));
    assert_eq!(
        show["artifacts"],
        json!([{"path": file.display().to_string(), "kind": "quarantine", "stream": "users", "records": 1}])
    );
    let mode = std::fs::metadata(&file)
        .expect("the file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "records set aside are private");
    let lines: Vec<Value> = std::fs::read_to_string(&file)
        .expect("the quarantine file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(
        lines,
        [json!({
            "stream": "users",
            "record_number": 2,
            "path": "/age",
            "reason": "\"old\" is not of type integer",
            "record": {"id": 2, "email": "bob@example.com", "age": "old", "secret": "y"}
        })]
    );
    let text = p.dsm(&["runs", "show", &run_id]);
    assert!(
        text.stdout.contains(&format!("{run_id}-users.jsonl")),
        "{}",
        text.stdout
    );

    // Pruning the run removes its quarantine file too.
    let out = p.dsm(&["runs", "prune", "--keep", "0"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!file.exists());
}

#[test]
fn a_bad_expression_fails_before_any_process_starts_with_exit_2() {
    let p = TestProject::new(
        r#"plugins:
  extractors:
  - name: tap-marked
    namespace: tap_marked
    executable: ./tap.sh
    capabilities: [catalog, discover]
  loaders:
  - name: target-fake
    namespace: target_fake
    executable: ./target.sh
  mappers:
  - name: meltano-map-transformer
    namespace: meltano_map_transformer
    mappings:
    - name: broken
      config:
        stream_maps:
          users:
            score: "record['age'] +* 2"
"#,
    );
    script(
        &p,
        "tap.sh",
        &format!("touch \"$MELTANO_PROJECT_ROOT/started\"\nexec {TAP_JSONL} \"$@\"\n"),
    );
    script(
        &p,
        "target.sh",
        &format!("touch \"$MELTANO_PROJECT_ROOT/started\"\nexec {TARGET} \"$@\"\n"),
    );
    let out = p.dsm(&["run", "tap-marked", "broken", "target-fake"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    for part in [
        "mapping `broken`",
        "`users`",
        "`score`",
        "record['age'] +* 2",
    ] {
        assert!(out.stderr.contains(part), "`{part}` in: {}", out.stderr);
    }
    assert!(
        !p.root().join("started").exists(),
        "no plugin (not even discovery) ran"
    );
}

/// Runs the real Singer SDK mapper (`meltano-map-transform` from the test environment) with
/// `maps` on one `users` record; whether it succeeded, and its stderr.
fn sdk_mapper(maps: &Value) -> (bool, String) {
    use std::io::Write as _;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path().join("config.json");
    std::fs::write(&config, json!({"stream_maps": maps}).to_string()).expect("write config");
    let mut cmd = std::process::Command::new(crate::real_plugins::plugin("meltano-map-transform"));
    cmd.arg("--config").arg(&config);
    crate::support::clean_env(&mut cmd);
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start meltano-map-transform");
    let input = r#"{"type": "SCHEMA", "stream": "users", "key_properties": ["id"], "schema": {"type": "object", "properties": {"id": {"type": "integer"}, "email": {"type": "string"}}}}
{"type": "RECORD", "stream": "users", "record": {"id": 1, "email": "ann@example.com"}}
"#;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("feed the mapper");
    let out = child.wait_with_output().expect("the mapper ends");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The project with one `stream_maps` transform computing `x` from `expr`; `top` goes first.
fn mapping(top: &str, expr: &str) -> TestProject {
    let p = project(
        &format!(
            "    annotations:\n      dsm:\n        transforms:\n        - type: stream_maps\n          config:\n            stream_maps:\n              users:\n                x: \"{expr}\"\n"
        ),
        "",
    );
    let text = p.read("meltano.yml");
    p.write("meltano.yml", &format!("{top}{text}"));
    p
}

#[test]
fn stream_map_functions_the_sdk_lacks_are_refused_unless_the_project_opts_into_extended() {
    for (expr, name) in [
        ("len(email)", "len"),
        ("round(id / 3, 1)", "round"),
        ("'<{}>'.format(email)", "str.format"),
        ("sorted([id, 0])", "sorted"),
    ] {
        // The reference: the SDK's own mapper fails on it.
        let (ok, stderr) = sdk_mapper(&json!({"users": {"x": expr}}));
        assert!(!ok, "the SDK ran `{expr}`:\n{stderr}");

        let p = mapping("", expr);
        let out = p.dsm(&["run", "tap-jsonl", "target-fake"]);
        assert_eq!(out.code, 2, "{expr}: {}", out.stderr);
        assert!(
            out.stderr.contains(&format!(
                "stream map `users`, property `x` uses `{name}`, which the Singer SDK's stream maps do not have"
            )) && out.stderr.contains("dialect: extended"),
            "{}",
            out.stderr
        );
        assert!(!p.root().join("out.jsonl").exists(), "nothing ran");

        // `dialect: extended` makes the project dsm-only on purpose: it runs.
        let p = mapping(
            "annotations:\n  dsm:\n    stream_maps:\n      dialect: extended\n",
            expr,
        );
        let out = p.dsm(&["run", "tap-jsonl", "target-fake"]);
        assert_eq!(out.code, 0, "{expr}: {}", out.stderr);
        assert!(records(&p).iter().all(|r| r.get("x").is_some()));
    }
    // What the SDK has runs under the default dialect, as under the SDK.
    for expr in [
        "dict([('a', id)])",
        "str(id) + email.upper()",
        "md5(email)",
        "f'{id:03d}'",
    ] {
        let (ok, stderr) = sdk_mapper(&json!({"users": {"x": expr}}));
        assert!(ok, "the SDK refused `{expr}`:\n{stderr}");
        let p = mapping("", expr);
        let out = p.dsm(&["run", "tap-jsonl", "target-fake"]);
        assert_eq!(out.code, 0, "{expr}: {}", out.stderr);
    }
}

/// The project with one `stream_maps` transform whose `users` map is `users_map` (YAML,
/// indented for the map's body); `top` goes first.
fn users_map(top: &str, users_map: &str) -> TestProject {
    let body: String = users_map
        .lines()
        .map(|l| format!("                {l}\n"))
        .collect();
    let p = project(
        &format!(
            "    annotations:\n      dsm:\n        transforms:\n        - type: stream_maps\n          config:\n            stream_maps:\n              users:\n{body}"
        ),
        "",
    );
    let text = p.read("meltano.yml");
    p.write("meltano.yml", &format!("{top}{text}"));
    p
}

#[test]
fn the_sdk_mappers_build_checks_hold_under_the_sdk_dialect() {
    const EXTENDED: &str = "annotations:\n  dsm:\n    stream_maps:\n      dialect: extended\n";
    // `__else__: null` keeps only what the map names: the key property too, in the SDK.
    let (ok, stderr) = sdk_mapper(&json!({"users": {"__else__": null, "email": "email"}}));
    assert!(
        !ok && stderr.contains("Property 'id' was not detected in schema"),
        "{stderr}"
    );
    let p = users_map("", "__else__: null\nemail: email");
    let out = p.dsm(&["run", "tap-jsonl", "target-fake"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("key property `id` is not a property after mapping")
            && out.stderr.contains("add `id: id`"),
        "{}",
        out.stderr
    );
    // Mapping the key, as the SDK needs, works in both.
    let (ok, stderr) =
        sdk_mapper(&json!({"users": {"__else__": null, "id": "id", "email": "email"}}));
    assert!(ok, "{stderr}");
    let p = users_map("", "__else__: null\nid: id\nemail: email");
    let out = p.dsm(&["run", "tap-jsonl", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        records(&p)[0]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["id", "email"]
    );
    // dsm's own dialect keeps key properties by itself.
    let p = users_map(EXTENDED, "__else__: null\nemail: email");
    let out = p.dsm(&["run", "tap-jsonl", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(records(&p).iter().all(|r| r.get("id").is_some()));

    // Beside `__source__`, the SDK makes `__alias__` a property of every record.
    let (ok, stderr) = sdk_mapper(&json!({
        "users": {"__source__": "users", "__alias__": "people"}
    }));
    assert!(!ok, "{stderr}");
    let p = users_map("", "__source__: users\n__alias__: people");
    let out = p.dsm(&["run", "tap-jsonl", "target-fake"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("stream map `users` sets both `__source__` and `__alias__`")
            && out.stderr.contains("dialect: extended"),
        "{}",
        out.stderr
    );
    assert!(!p.root().join("out.jsonl").exists(), "nothing ran");
    let p = users_map(EXTENDED, "__source__: users\n__alias__: people");
    let out = p.dsm(&["run", "tap-jsonl", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

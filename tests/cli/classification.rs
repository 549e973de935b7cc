//! Issue 26: classification labels enforced from source to destination. A flow whose stream is
//! above the loader's clearance is refused (exit 2) before the loader starts, whatever sits
//! between them; labels show in every listing. Built-in `tap-jsonl` and a recording target
//! behind a script that leaves `loader-started` when it runs.

use serde_json::Value;

use crate::support::{Output, TestProject, script};

const TARGET: &str = env!("CARGO_BIN_EXE_dsm-fake-target");

const USERS: &str = r#"{"id": 1, "email": "ann@example.com", "ssn": "123-45-6789"}
{"id": 2, "email": "bob@example.com", "ssn": "987-65-4321"}
"#;
const EVENTS: &str = r#"{"id": 1, "kind": "login"}
"#;

/// `tap-jsonl` reading `users` (with `ssn`) and `events`; `source` is laid into the extractor's
/// `annotations.dsm` (indented by 8), `loader` into the loader's (indented by 8), `project`
/// at the top of the file, `rest` under `plugins:`.
fn project(project: &str, source: &str, loader: &str, rest: &str) -> TestProject {
    let p = TestProject::new(&format!(
        "{project}plugins:
  extractors:
  - name: tap-jsonl
    variant: dsm
    annotations:
      dsm:
{source}
    config:
      files:
      - entity: users
        path: users.jsonl
        keys: [id]
        schema:
          type: object
          properties:
            id: {{type: integer}}
            email: {{type: string}}
            ssn: {{type: string}}
      - entity: events
        path: events.jsonl
        keys: [id]
        schema:
          type: object
          properties:
            id: {{type: integer}}
            kind: {{type: string}}
  loaders:
  - name: target-fake
    namespace: target_fake
    executable: ./target.sh
    annotations:
      dsm:
{loader}
{rest}"
    ));
    p.write("users.jsonl", USERS);
    p.write("events.jsonl", EVENTS);
    script(
        &p,
        "target.sh",
        &format!(
            "touch \"$MELTANO_PROJECT_ROOT/loader-started\"\nexec {TARGET} \"$@\" --output \"$MELTANO_PROJECT_ROOT/out.jsonl\"\n"
        ),
    );
    p
}

/// A source `internal` whose `users.ssn` is `confidential`.
const SSN_CONFIDENTIAL: &str = "        source:
          classification: internal
          fields:
            users: {ssn: confidential}";

const CLEARED_INTERNAL: &str = "        clearance: internal";

/// The loader never ran and received nothing.
fn assert_refused(p: &TestProject, out: &Output) {
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        !p.root().join("loader-started").exists(),
        "the loader started: {}",
        out.stderr
    );
    assert!(!p.root().join("out.jsonl").exists());
}

fn assert_sent(p: &TestProject, out: &Output) {
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(p.root().join("out.jsonl").exists(), "{}", out.stderr);
}

fn with_transform(extra: &str) -> String {
    format!("{SSN_CONFIDENTIAL}\n        transforms:\n{extra}")
}

#[test]
fn a_confidential_source_into_an_internal_loader_is_refused_before_the_loader_starts() {
    let p = project(
        "",
        "        source: {classification: confidential}",
        CLEARED_INTERNAL,
        "",
    );
    let out = p.dsm(&["run", "tap-jsonl", "target-fake"]);
    assert_refused(&p, &out);
    assert!(
        out.stderr.contains(
            "error: stream `events` is labelled `confidential`, above the clearance of loader `target-fake` (`internal`)"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("the label comes from source `tap-jsonl`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("stream `users` is labelled `confidential` too")
    );
    // Also in a dry run and through `dsm el`.
    assert_refused(
        &p,
        &p.dsm(&["run", "--dry-run", "tap-jsonl", "target-fake"]),
    );
    assert_refused(&p, &p.dsm(&["el", "tap-jsonl", "target-fake"]));
    // A loader cleared for it gets the data.
    let p = project(
        "",
        "        source: {classification: confidential}",
        "        clearance: confidential",
        "",
    );
    assert_sent(&p, &p.dsm(&["run", "tap-jsonl", "target-fake"]));
}

#[test]
fn a_confidential_field_raises_its_stream_and_names_the_field() {
    let p = project(
        "annotations:\n  dsm:\n    defaults: {default_loader: target-fake}\n",
        SSN_CONFIDENTIAL,
        CLEARED_INTERNAL,
        "",
    );
    // `dsm flows` shows the flow as refused before anything runs.
    let flows = p.dsm(&["flows"]);
    assert!(
        flows.stdout.contains(
            "tap-jsonl [internal] → target-fake [confidential above clearance internal: refused]"
        ),
        "{}",
        flows.stdout
    );
    let dot = p.dsm(&["flows", "--format", "dot"]).stdout;
    assert!(dot.contains("color=red"), "{dot}");
    let out = p.dsm(&["run", "tap-jsonl", "target-fake"]);
    assert_refused(&p, &out);
    assert!(
        out.stderr
            .contains("stream `users` is labelled `confidential`")
            && out.stderr.contains("field `ssn` of `tap-jsonl`"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("`events`"), "{}", out.stderr);
}

#[test]
fn a_field_mask_that_removes_the_field_lets_the_stream_through_and_hashing_does_not() {
    let mask = |kind: &str| {
        with_transform(&format!(
            "        - type: field_mask
          config:
            transformations:
            - {{tap_stream_name: users, field_id: ssn, type: {kind}}}"
        ))
    };
    let p = project("", &mask("MASK-HIDDEN"), CLEARED_INTERNAL, "");
    let out = p.dsm(&["run", "tap-jsonl", "target-fake"]);
    assert_sent(&p, &out);
    assert!(!p.read("out.jsonl").contains("123-45-6789"));

    let p = project("", &mask("HASH"), CLEARED_INTERNAL, "");
    let out = p.dsm(&["run", "tap-jsonl", "target-fake"]);
    assert_refused(&p, &out);
    assert!(out.stderr.contains("field `ssn`"), "{}", out.stderr);
}

#[test]
fn a_stream_map_cannot_carry_the_field_past_the_clearance() {
    // Renaming the stream keeps the label under the new name.
    let p = project(
        "",
        &with_transform(
            "        - type: stream_maps
          config:
            stream_maps:
              users: {__alias__: people}",
        ),
        CLEARED_INTERNAL,
        "",
    );
    let out = p.dsm(&["run", "tap-jsonl", "target-fake"]);
    assert_refused(&p, &out);
    assert!(
        out.stderr
            .contains("stream `people` is labelled `confidential`"),
        "{}",
        out.stderr
    );
    // Copying it into a computed property keeps it too.
    let p = project(
        "",
        &with_transform(
            "        - type: stream_maps
          config:
            stream_maps:
              users: {ssn: null, tail: 'ssn[-4:]'}",
        ),
        CLEARED_INTERNAL,
        "",
    );
    assert_refused(&p, &p.dsm(&["run", "tap-jsonl", "target-fake"]));
    // Dropping it lowers the stream.
    let p = project(
        "",
        &with_transform(
            "        - type: stream_maps
          config:
            stream_maps:
              users: {ssn: null}",
        ),
        CLEARED_INTERNAL,
        "",
    );
    let out = p.dsm(&["run", "tap-jsonl", "target-fake"]);
    assert_sent(&p, &out);
    assert!(!p.read("out.jsonl").contains("ssn"));
}

#[test]
fn a_mapper_process_takes_the_highest_label_of_all_it_receives() {
    // The mask removes `ssn` before the mapper, so what it receives is `internal`; without the
    // mask the mapper's every output is `confidential`.
    let mapper = "  mappers:
  - name: passthrough
    namespace: passthrough
    executable: ./mapper.sh
";
    let p = project("", SSN_CONFIDENTIAL, CLEARED_INTERNAL, mapper);
    script(&p, "mapper.sh", "touch mapper-started\nexec cat\n");
    let out = p.dsm(&["run", "tap-jsonl", "passthrough", "target-fake"]);
    assert_refused(&p, &out);
    assert!(!p.root().join("mapper-started").exists());
    assert!(
        out.stderr.contains(
            "every stream not known before the run is labelled `confidential`, above the clearance"
        ) && out.stderr.contains("which mapper `passthrough` receives"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_merged_stream_takes_the_highest_label_of_its_sources() {
    let merged = "annotations:
  dsm:
    merged_streams:
    - name: people
      key: [id]
      sources:
      - {extractor: tap-jsonl, stream: events}
      - {extractor: tap-hr, stream: staff}
";
    let hr = "  - name: tap-hr
    variant: dsm
    executable: tap-jsonl
    annotations:
      dsm:
        source: {classification: confidential}
    config:
      files: [{entity: staff, path: staff.jsonl, keys: [id]}]
";
    let p = project(
        merged,
        "        source: {classification: internal}",
        CLEARED_INTERNAL,
        "",
    );
    // A second extractor, listed before the loaders.
    let text = p
        .read("meltano.yml")
        .replace("  loaders:\n", &format!("{hr}  loaders:\n"));
    p.write("meltano.yml", &text);
    p.write("staff.jsonl", "{\"id\": 1, \"salary\": 100}\n");
    // `events` alone is internal, but it feeds `people`, which holds `tap-hr`'s staff.
    let out = p.dsm(&["run", "tap-jsonl", "target-fake"]);
    assert_refused(&p, &out);
    assert!(
        out.stderr
            .contains("stream `people` is labelled `confidential`")
            && out.stderr.contains("source `tap-hr`"),
        "{}",
        out.stderr
    );
}

#[test]
fn select_narrows_the_streams_checked_but_cannot_send_a_confidential_one() {
    let p = project("", SSN_CONFIDENTIAL, CLEARED_INTERNAL, "");
    let out = p.dsm(&["el", "tap-jsonl", "target-fake", "--select", "users.*"]);
    assert_refused(&p, &out);
    let out = p.dsm(&["el", "tap-jsonl", "target-fake", "--select", "events.*"]);
    assert_sent(&p, &out);
    assert!(!p.read("out.jsonl").contains("ssn"));
}

#[test]
fn a_given_catalog_is_checked_as_it_selects() {
    let p = project("", SSN_CONFIDENTIAL, CLEARED_INTERNAL, "");
    let dump = p.dsm(&["el", "tap-jsonl", "target-fake", "--dump", "catalog"]);
    assert_eq!(dump.code, 0, "{}", dump.stderr);
    p.write("all.json", &dump.stdout);
    assert_refused(
        &p,
        &p.dsm(&["el", "tap-jsonl", "target-fake", "--catalog", "all.json"]),
    );
    // The same catalog with `users` deselected goes through.
    let mut catalog: Value = serde_json::from_str(&dump.stdout).expect("a catalog");
    for stream in catalog["streams"].as_array_mut().expect("streams") {
        if stream["stream"] == "users" {
            for m in stream["metadata"].as_array_mut().expect("metadata") {
                if m["breadcrumb"] == serde_json::json!([]) {
                    m["metadata"]["selected"] = Value::Bool(false);
                }
            }
        }
    }
    p.write("events.json", &catalog.to_string());
    let out = p.dsm(&["el", "tap-jsonl", "target-fake", "--catalog", "events.json"]);
    assert_sent(&p, &out);
    assert!(!p.read("out.jsonl").contains("ssn"));
}

#[test]
fn invoking_a_loader_with_piped_input_fails_closed() {
    let p = project("", SSN_CONFIDENTIAL, CLEARED_INTERNAL, "");
    let out = p.dsm(&["invoke", "target-fake"]);
    assert_refused(&p, &out);
    assert!(
        out.stderr.contains(
            "loader `target-fake` would receive piped data whose classification dsm cannot know"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn a_loader_without_clearance_accepts_only_the_lowest_label_and_validate_lists_it() {
    let p = project(
        "",
        "        source: {classification: internal}",
        "        {}",
        "",
    );
    let out = p.dsm(&["run", "tap-jsonl", "target-fake"]);
    assert_refused(&p, &out);
    assert!(
        out.stderr.contains(
            "above the clearance of loader `target-fake` (`public`, the lowest label, since it declares no clearance)"
        ),
        "{}",
        out.stderr
    );
    let out = p.dsm(&["validate", "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let doc = out.json();
    let listed: Vec<&Value> = doc["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .filter(|d| d["code"] == "loader-without-clearance")
        .collect();
    assert_eq!(listed.len(), 1, "{doc}");
    assert!(
        listed[0]["message"]
            .as_str()
            .expect("a message")
            .contains("`target-fake`")
    );
    // An unclassified project checks nothing and lists nothing.
    let p = project("", "        {}", "        {}", "");
    assert_sent(&p, &p.dsm(&["run", "tap-jsonl", "target-fake"]));
    let out = p.dsm(&["validate", "--format", "json"]);
    assert!(
        !out.stdout.contains("loader-without-clearance"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_renamed_label_set_is_enforced_and_unknown_names_are_errors_with_their_line() {
    let labels = "annotations:
  dsm:
    classification:
      labels:
      - {name: open, rank: 0, visibility: everyone}
      - {name: educational, rank: 1, visibility: organisations}
      - {name: restricted, rank: 2, visibility: own}
      default: educational
";
    let p = project(
        labels,
        "        source: {classification: restricted}",
        "        clearance: educational",
        "",
    );
    let out = p.dsm(&["run", "tap-jsonl", "target-fake"]);
    assert_refused(&p, &out);
    assert!(
        out.stderr.contains(
            "is labelled `restricted`, above the clearance of loader `target-fake` (`educational`)"
        ),
        "{}",
        out.stderr
    );
    // A source without a label gets the default, `educational`: allowed.
    let p = project(
        labels,
        "        source: {provider: x}",
        "        clearance: educational",
        "",
    );
    assert_sent(&p, &p.dsm(&["run", "tap-jsonl", "target-fake"]));
    // The built-in names are gone.
    let p = project(
        labels,
        "        source: {classification: confidential}",
        "        clearance: educational",
        "",
    );
    let out = p.dsm(&["validate"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "unknown classification label `confidential` in `annotations.dsm.source.classification` of extractor `tap-jsonl` in meltano.yml (line 15, column 18)"
        ),
        "{}",
        out.stderr
    );
    let out = p.dsm(&["run", "tap-jsonl", "target-fake"]);
    assert_refused(&p, &out);
}

#[test]
fn labels_show_in_flows_sources_runs_the_catalog_dump_quarantine_files_and_export_bundles() {
    let p = project(
        "annotations:\n  dsm:\n    defaults: {default_loader: target-fake}\n",
        &format!(
            "{SSN_CONFIDENTIAL}\n        validation: {{on_error: quarantine}}\n        transforms:\n        - type: field_mask\n          config:\n            transformations:\n            - {{tap_stream_name: users, field_id: ssn, type: MASK-HIDDEN}}"
        ),
        "        clearance: confidential",
        "",
    );
    // One event that does not match its schema, for the quarantine file.
    p.write(
        "events.jsonl",
        "{\"id\": 1, \"kind\": \"login\"}\n{\"id\": \"two\", \"kind\": \"logout\"}\n",
    );

    let text = p.dsm(&["flows"]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(
        text.stdout.contains(
            "tap-jsonl [internal] → transform:field_mask → target-fake [internal, clearance confidential]"
        ),
        "{}",
        text.stdout
    );
    let dot = p.dsm(&["flows", "--format", "dot"]).stdout;
    assert!(
        dot.contains("label=\"target-fake [internal, clearance confidential]\""),
        "{dot}"
    );
    let mermaid = p.dsm(&["flows", "--format", "mermaid"]).stdout;
    assert!(
        mermaid.contains("\"target-fake [internal, clearance confidential]\""),
        "{mermaid}"
    );
    let json = p.dsm(&["flows", "--format", "json"]).json();
    let steps = &json[0]["chains"][0];
    assert_eq!(steps[0]["label"], "internal", "{json}");
    assert_eq!(steps[2]["label"], "internal");
    assert_eq!(steps[2]["clearance"], "confidential");
    assert_eq!(steps[2]["refused"], false);

    let list = p.dsm(&["sources", "list", "--format", "json"]).json();
    let tap = list
        .as_array()
        .expect("a list")
        .iter()
        .find(|s| s["name"] == "tap-jsonl")
        .expect("the tap");
    assert_eq!(tap["classification"], "internal");
    let loader = list
        .as_array()
        .expect("a list")
        .iter()
        .find(|s| s["name"] == "target-fake")
        .expect("the loader");
    assert_eq!(loader["classification"], "confidential");
    let text = p.dsm(&["sources", "list"]).stdout;
    assert!(text.contains("CLASSIFICATION"), "{text}");
    let show = p.dsm(&["sources", "show", "tap-jsonl"]).stdout;
    assert!(show.contains("classification internal"), "{show}");
    assert!(
        show.contains("stream users: internal (source `tap-jsonl`)"),
        "{show}"
    );

    // The dumped catalog carries each stream's label.
    let dump = p.dsm(&["el", "tap-jsonl", "target-fake", "--dump", "catalog"]);
    assert_eq!(dump.code, 0, "{}", dump.stderr);
    let catalog: Value = serde_json::from_str(&dump.stdout).expect("a catalog");
    let users = catalog["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .find(|s| s["stream"] == "users")
        .expect("users");
    let root = users["metadata"]
        .as_array()
        .expect("metadata")
        .iter()
        .find(|m| m["breadcrumb"] == serde_json::json!([]))
        .expect("stream metadata");
    assert_eq!(root["metadata"]["dsm-classification"], "internal");

    let run = p.dsm(&["run", "tap-jsonl", "target-fake"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let runs = p.dsm(&["runs", "list", "--format", "json"]).json();
    let run_id = runs[0]["run_id"].as_str().expect("a run id").to_owned();
    let shown = p.dsm(&["runs", "show", &run_id, "--format", "json"]).json();
    let labels: Vec<(&str, &str)> = shown["labels"]
        .as_array()
        .expect("labels")
        .iter()
        .map(|l| (l["stream"].as_str().unwrap(), l["label"].as_str().unwrap()))
        .collect();
    assert_eq!(labels, [("events", "internal"), ("users", "internal")]);
    let artifact = &shown["artifacts"][0];
    assert_eq!(artifact["label"], "internal", "{shown}");
    let path = artifact["path"].as_str().expect("a path");
    assert!(
        path.ends_with(&format!("{run_id}-events.internal.jsonl")),
        "{path}"
    );
    let text = p.dsm(&["runs", "show", &run_id]).stdout;
    assert!(text.contains("LABEL"), "{text}");

    // The export bundle records the labels of the data its store holds.
    let key = p.root().join(".keys/master.key");
    let key = key.to_str().expect("a path");
    let mut init = p.command(&["secrets", "init", "--key-file", key]);
    init.env("DSM_MASTER_KEY_FILE", key);
    assert_eq!(crate::support::run(init).code, 0);
    let mut export = p.command(&["export", "--output", "bundle.json"]);
    export.env("DSM_MASTER_KEY_FILE", key);
    let out = crate::support::run(export);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("the bundle holds data labelled up to `internal`"),
        "{}",
        out.stderr
    );
    let bundle: Value = serde_json::from_str(&p.read("bundle.json")).expect("a bundle");
    assert_eq!(
        bundle["labels"][0]["label"], "internal",
        "{}",
        bundle["labels"]
    );
}

#[test]
fn a_tap_that_sends_a_stream_its_catalog_did_not_select_is_stopped_at_that_stream_also_as_a_batch()
{
    const TAP: &str = env!("CARGO_BIN_EXE_dsm-fake-tap");
    let p = project("", SSN_CONFIDENTIAL, CLEARED_INTERNAL, "");
    // A tap whose catalog has only `events`, but which sends `users` as well.
    let text = p.read("meltano.yml").replace(
        "  - name: tap-jsonl\n    variant: dsm\n",
        "  - name: tap-jsonl\n    namespace: tap_rogue\n    executable: ./rogue.sh\n    capabilities: [catalog, discover]\n",
    );
    p.write("meltano.yml", &text);
    p.write(
        "catalog.json",
        r#"{"streams": [{"tap_stream_id": "events", "stream": "events",
            "schema": {"type": "object", "properties": {"id": {"type": "integer"}}},
            "metadata": [{"breadcrumb": [], "metadata": {"selected": true}}]}]}"#,
    );
    p.write(
        "messages.jsonl",
        r#"{"type": "SCHEMA", "stream": "events", "schema": {"type": "object", "properties": {"id": {"type": "integer"}}}, "key_properties": ["id"]}
{"type": "RECORD", "stream": "events", "record": {"id": 1}}
{"type": "SCHEMA", "stream": "users", "schema": {"type": "object", "properties": {"ssn": {"type": "string"}}}, "key_properties": []}
{"type": "RECORD", "stream": "users", "record": {"ssn": "123-45-6789"}}
"#,
    );
    script(
        &p,
        "rogue.sh",
        &format!(
            "case \"$*\" in *--discover*) exec cat catalog.json;; esac\nexec {TAP} --replay messages.jsonl\n"
        ),
    );
    let out = p.dsm(&["run", "tap-jsonl", "target-fake"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("the extractor sent stream `users`, which the run's plan did not name"),
        "{}",
        out.stderr
    );
    let received = p.read("out.jsonl");
    assert!(!received.contains("users"), "{received}");
    assert!(!received.contains("123-45-6789"), "{received}");

    // The same stream as a BATCH, to a loader that takes batches: stopped the same way.
    p.write("users-batch.jsonl", "{\"ssn\": \"123-45-6789\"}\n");
    let batch = serde_json::json!({"type": "BATCH", "stream": "users",
        "encoding": {"format": "jsonl", "compression": "none"},
        "manifest": [format!("file://{}", p.root().join("users-batch.jsonl").display())]});
    let messages = p.read("messages.jsonl");
    let with_batch: Vec<String> = messages
        .lines()
        .map(|l| {
            if l.contains("\"RECORD\", \"stream\": \"users\"") {
                batch.to_string()
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert!(with_batch.iter().any(|l| l.contains("BATCH")));
    p.write("messages.jsonl", &(with_batch.join("\n") + "\n"));
    let text = p.read("meltano.yml").replace(
        "    executable: ./target.sh\n",
        "    executable: ./target.sh\n    capabilities: [batch]\n",
    );
    p.write("meltano.yml", &text);
    std::fs::remove_file(p.root().join("out.jsonl")).expect("the earlier output");
    let out = p.dsm(&["run", "tap-jsonl", "target-fake"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("the extractor sent stream `users`, which the run's plan did not name"),
        "{}",
        out.stderr
    );
    let received = p.read("out.jsonl");
    assert!(!received.contains("users"), "{received}");
}

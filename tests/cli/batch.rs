//! Issue #22: Singer BATCH messages. Relayed in order to a loader that declares `batch` when
//! nothing inside dsm reads the stream; read and sent as RECORD messages when a field mask (or
//! any transform) touches the stream or the loader cannot take batches; a batch dsm cannot read
//! fails the run before the loader sees it. Real processes: the fake tap replays the lines,
//! the fake target writes what it receives.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::io::Write;

use serde_json::{Value, json};

use crate::support::{TestProject, script};

const TAP: &str = env!("CARGO_BIN_EXE_dsm-fake-tap");
const TARGET: &str = env!("CARGO_BIN_EXE_dsm-fake-target");

/// A project whose tap replays `tap.jsonl` (SCHEMA, BATCH of two gzip files, a RECORD,
/// ACTIVATE_VERSION, STATE) and whose loader's `capabilities` and tap's annotations are given.
fn project(loader_caps: &str, tap_extra: &str, encoding: &str) -> TestProject {
    let p = TestProject::new(&format!(
        "plugins:
  extractors:
  - name: tap-fake
    namespace: tap_fake
    executable: ./tap.sh
{tap_extra}  loaders:
  - name: target-fake
    namespace: target_fake
    executable: ./target.sh
    capabilities: [{loader_caps}]
"
    ));
    let dir = p.root().join("batches");
    std::fs::create_dir(&dir).unwrap();
    let mut uris = Vec::new();
    for (i, rows) in [[1, 2], [3, 4]].iter().enumerate() {
        let path = dir.join(format!("users-{i}.jsonl.gz"));
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        for id in rows {
            writeln!(
                gz,
                "{}",
                json!({"id": id, "email": format!("u{id}@example.com")})
            )
            .unwrap();
        }
        gz.finish().unwrap();
        uris.push(format!("file://{}", path.display()));
    }
    let lines = [
        json!({"type": "SCHEMA", "stream": "users", "key_properties": ["id"], "schema": {"type": "object", "properties": {"id": {"type": "integer"}, "email": {"type": "string"}}}}),
        json!({"type": "BATCH", "stream": "users", "encoding": serde_json::from_str::<Value>(encoding).unwrap(), "manifest": uris}),
        json!({"type": "RECORD", "stream": "users", "record": {"id": 5, "email": "u5@example.com"}}),
        json!({"type": "ACTIVATE_VERSION", "stream": "users", "version": 7}),
        json!({"type": "STATE", "value": {"bookmarks": {"users": {"id": 5}}}}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    p.write("tap.jsonl", &text);
    script(
        &p,
        "tap.sh",
        &format!("exec {TAP} \"$@\" --replay \"$MELTANO_PROJECT_ROOT/tap.jsonl\"\n"),
    );
    script(
        &p,
        "target.sh",
        &format!("exec {TARGET} \"$@\" --output \"$MELTANO_PROJECT_ROOT/out.jsonl\"\n"),
    );
    p
}

const JSONL_GZIP: &str = r#"{"format": "jsonl", "compression": "gzip"}"#;

const MASK: &str = "    annotations:
      dsm:
        transforms:
        - type: field_mask
          config:
            transformations:
            - {tap_stream_name: users, field_id: email, type: MASK-HIDDEN}
";

fn received(p: &TestProject) -> Vec<Value> {
    p.read("out.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

fn types(msgs: &[Value]) -> Vec<&str> {
    msgs.iter().map(|m| m["type"].as_str().unwrap()).collect()
}

#[test]
fn batch_is_relayed_in_order_to_a_loader_that_takes_batches() {
    let p = project("batch", "", JSONL_GZIP);
    let out = p.dsm(&["run", "tap-fake", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let got = received(&p);
    assert_eq!(
        types(&got),
        ["SCHEMA", "BATCH", "RECORD", "ACTIVATE_VERSION", "STATE"]
    );
    let sent: Vec<Value> = p
        .read("tap.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got[1], sent[1], "the BATCH line as the tap sent it");
}

#[test]
fn batch_under_a_field_mask_is_sent_as_masked_records_in_order() {
    let p = project("batch", MASK, JSONL_GZIP);
    let out = p.dsm(&["run", "tap-fake", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let got = received(&p);
    assert_eq!(
        types(&got),
        [
            "SCHEMA",
            "RECORD",
            "RECORD",
            "RECORD",
            "RECORD",
            "RECORD",
            "ACTIVATE_VERSION",
            "STATE"
        ]
    );
    let ids: Vec<i64> = got
        .iter()
        .filter(|m| m["type"] == "RECORD")
        .map(|m| m["record"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ids,
        [1, 2, 3, 4, 5],
        "batch records first, in manifest order, then the tap's"
    );
    let text = p.read("out.jsonl");
    assert!(
        !text.contains("@example.com"),
        "no email reaches the loader: {text}"
    );
    // The run's counts include the batch's records.
    let runs = p.dsm(&["--format", "json", "runs", "list"]).json();
    assert_eq!(runs[0]["streams"][0]["records"], 5, "{runs:#}");
}

#[test]
fn batch_to_a_loader_without_the_capability_is_sent_as_records() {
    let p = project("about", "", JSONL_GZIP);
    let out = p.dsm(&["run", "tap-fake", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let got = received(&p);
    assert!(!types(&got).contains(&"BATCH"), "{got:?}");
    assert_eq!(types(&got).iter().filter(|t| **t == "RECORD").count(), 5);
    assert!(
        p.read("out.jsonl").contains("u3@example.com"),
        "unmasked: nothing asked for a mask"
    );
}

#[test]
fn a_batch_dsm_cannot_read_fails_before_the_loader_sees_it() {
    for encoding in [
        r#"{"format": "parquet", "compression": "gzip"}"#,
        r#"{"format": "jsonl", "compression": "zstd"}"#,
    ] {
        let p = project("batch", MASK, encoding);
        let out = p.dsm(&["run", "tap-fake", "target-fake"]);
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(out.stderr.contains("not supported"), "{}", out.stderr);
        assert!(
            out.stderr.contains("line 2"),
            "names the line: {}",
            out.stderr
        );
        let text = p.read("out.jsonl");
        assert!(
            !text.contains("BATCH") && !text.contains("@example.com"),
            "{text}"
        );
    }
    // A manifest on another scheme.
    let p = project("batch", MASK, JSONL_GZIP);
    let tap = p.read("tap.jsonl").replace("file://", "s3://bucket");
    p.write("tap.jsonl", &tap);
    let out = p.dsm(&["run", "tap-fake", "target-fake"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("file://"), "{}", out.stderr);
    assert!(!p.read("out.jsonl").contains("BATCH"));
}

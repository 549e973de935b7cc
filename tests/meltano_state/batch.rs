//! Singer BATCH messages under real Meltano and dsm: one tap, one target, run by each. Meltano
//! passes every line through, so what its target receives is the reference: dsm must relay the
//! same messages to a loader that takes batches, and under a field mask send the batch's rows
//! as RECORD messages, masked, in the same order.

use std::io::{BufRead, Write};
use std::path::Path;

use serde_json::{Value, json};

use crate::support::{dsm, meltano};

const TAP: &str = env!("CARGO_BIN_EXE_dsm-fake-tap");
const TARGET: &str = env!("CARGO_BIN_EXE_dsm-fake-target");

/// A project whose tap replays SCHEMA, a BATCH of two gzip JSONL files, a RECORD,
/// ACTIVATE_VERSION and STATE; the target writes what it receives to `$OUT`.
fn project(dir: &Path, tap_extra: &str) {
    std::fs::create_dir_all(dir.join("batches")).unwrap();
    let mut manifest = Vec::new();
    for (i, ids) in [[1, 2], [3, 4]].iter().enumerate() {
        let path = dir.join(format!("batches/users-{i}.jsonl.gz"));
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        for id in ids {
            writeln!(
                gz,
                "{}",
                json!({"id": id, "email": format!("u{id}@example.com")})
            )
            .unwrap();
        }
        gz.finish().unwrap();
        manifest.push(format!("file://{}", path.display()));
    }
    let lines = [
        json!({"type": "SCHEMA", "stream": "users", "key_properties": ["id"], "schema": {"type": "object", "properties": {"id": {"type": "integer"}, "email": {"type": "string"}}}}),
        json!({"type": "BATCH", "stream": "users", "encoding": {"format": "jsonl", "compression": "gzip"}, "manifest": manifest}),
        json!({"type": "RECORD", "stream": "users", "record": {"id": 5, "email": "u5@example.com"}}),
        json!({"type": "ACTIVATE_VERSION", "stream": "users", "version": 7}),
        json!({"type": "STATE", "value": {"bookmarks": {"users": {"id": 5}}}}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join("tap.jsonl"), text).unwrap();
    let script = |name: &str, body: String| {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    script(
        "tap.sh",
        format!(
            "exec {TAP} \"$@\" --replay {}\n",
            dir.join("tap.jsonl").display()
        ),
    );
    script(
        "target.sh",
        format!("exec {TARGET} \"$@\" --output \"$OUT\"\n"),
    );
    let yml = format!(
        "version: 1
default_environment: dev
project_id: dsm-batch-test
environments:
- name: dev
plugins:
  extractors:
  - name: tap-fake
    namespace: tap_fake
    executable: {tap}
{tap_extra}  loaders:
  - name: target-fake
    namespace: target_fake
    executable: {target}
    capabilities: [batch]
",
        tap = dir.join("tap.sh").display(),
        target = dir.join("target.sh").display(),
    );
    std::fs::write(dir.join("meltano.yml"), yml).unwrap();
}

/// Runs the flow with Meltano and with dsm; what each one's target received.
fn both(dir: &Path) -> (Vec<Value>, Vec<Value>) {
    let m_out = dir.join("meltano-out.jsonl");
    let d_out = dir.join("dsm-out.jsonl");
    let m_env = [("OUT", m_out.to_str().unwrap())];
    let d_env = [("OUT", d_out.to_str().unwrap())];
    // dsm first: it keeps its state apart from Meltano's system database.
    dsm(dir, &["run", "tap-fake", "target-fake"], &d_env).ok("dsm run");
    meltano(dir, &["run", "tap-fake", "target-fake"], &m_env).ok("meltano run");
    let read = |p: &Path| -> Vec<Value> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    (read(&m_out), read(&d_out))
}

fn types(msgs: &[Value]) -> Vec<&str> {
    msgs.iter().map(|m| m["type"].as_str().unwrap()).collect()
}

/// The rows of the batch files a BATCH message names, in manifest order.
fn batch_rows(batch: &Value) -> Vec<Value> {
    let mut rows = Vec::new();
    for uri in batch["manifest"].as_array().unwrap() {
        let path = uri.as_str().unwrap().strip_prefix("file://").unwrap();
        let gz = flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap());
        for line in std::io::BufReader::new(gz).lines() {
            rows.push(serde_json::from_str(&line.unwrap()).unwrap());
        }
    }
    rows
}

#[test]
fn batch_reaches_a_batch_loader_the_same_under_meltano_and_dsm() {
    let tmp = tempfile::tempdir().unwrap();
    project(tmp.path(), "");
    let (m, d) = both(tmp.path());
    assert_eq!(
        types(&m),
        ["SCHEMA", "BATCH", "RECORD", "ACTIVATE_VERSION", "STATE"],
        "Meltano relays every line"
    );
    assert_eq!(d, m, "dsm relays the same messages in the same order");
}

#[test]
fn batch_under_a_mask_becomes_the_masked_records_meltano_would_have_sent_in_a_batch() {
    let tmp = tempfile::tempdir().unwrap();
    // dsm's field mask lives in `annotations`, which Meltano carries without reading.
    project(
        tmp.path(),
        "    annotations:
      dsm:
        transforms:
        - type: field_mask
          config:
            transformations:
            - {tap_stream_name: users, field_id: email, type: MASK-HIDDEN}
",
    );
    let (m, d) = both(tmp.path());
    assert_eq!(
        types(&m),
        ["SCHEMA", "BATCH", "RECORD", "ACTIVATE_VERSION", "STATE"]
    );
    // What Meltano's target got, with the batch opened: the rows dsm must send as RECORDs.
    let mut expected = batch_rows(&m[1]);
    expected.push(m[2]["record"].clone());
    assert_eq!(
        types(&d),
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
    let got: Vec<&Value> = d
        .iter()
        .filter(|x| x["type"] == "RECORD")
        .map(|x| &x["record"])
        .collect();
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g["id"], e["id"], "same rows in the same order");
        assert!(e["email"].as_str().unwrap().ends_with("@example.com"));
        assert_ne!(g["email"], e["email"], "the mask holds for batch rows: {g}");
    }
    assert!(
        !serde_json::to_string(&d).unwrap().contains("@example.com"),
        "no email reaches dsm's loader"
    );
    assert_eq!(d[0], m[0], "the same SCHEMA");
    assert_eq!(d.last(), m.last(), "the same STATE after the rows");
}

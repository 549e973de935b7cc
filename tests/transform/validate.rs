//! Record validation policies, end to end through the `Transform` trait.

use std::collections::HashMap;

use dsm::transform::{Policy, Transform, Validate, ValidationSettings};
use serde_json::{Value, json};

use crate::support::run;

fn input() -> Vec<Value> {
    vec![
        json!({"type": "SCHEMA", "stream": "users", "key_properties": ["id"], "schema": {"type": "object",
               "properties": {"id": {"type": "integer"}, "created_at": {"type": "string", "format": "date-time"},
                              "price": {"type": "number", "multipleOf": 0.01}}}}),
        json!({"type": "RECORD", "stream": "users", "record": {"id": 1, "created_at": "2024-01-01T00:00:00Z", "price": 0.07}}),
        json!({"type": "RECORD", "stream": "users", "record": {"id": 2, "created_at": "yesterday", "price": 1}}),
        json!({"type": "STATE", "value": {"bookmarks": {"users": {"id": 2}}}}),
        json!({"type": "RECORD", "stream": "users", "record": {"id": 3, "price": 0.005}}),
        json!({"type": "RECORD", "stream": "orders", "record": {"anything": true}}),
    ]
}

fn settings(policy: Policy, path: Option<std::path::PathBuf>) -> ValidationSettings {
    ValidationSettings {
        default: Policy::Off,
        streams: HashMap::from([("users".to_owned(), policy)]),
        quarantine_path: path,
    }
}

fn ids(out: &[Value]) -> Vec<i64> {
    out.iter()
        .filter(|m| m["type"] == "RECORD" && m["stream"] == "users")
        .map(|m| m["record"]["id"].as_i64().unwrap())
        .collect()
}

#[test]
fn fail_names_record_number_stream_path_and_reason() {
    let mut t = Validate::new(settings(Policy::Fail, None)).unwrap();
    let e = run(&mut t, &input()).unwrap_err();
    assert_eq!(
        e.message,
        "record 2 of stream `users` does not match its schema\n  at `/created_at`: \"yesterday\" is not a valid `date-time`"
    );
}

#[test]
fn skip_drops_bad_records_and_keeps_the_rest_in_order() {
    let mut t = Validate::new(settings(Policy::Skip, None)).unwrap();
    let out = run(&mut t, &input()).unwrap();
    assert_eq!(ids(&out), [1]);
    assert_eq!(
        out.len(),
        4,
        "SCHEMA, record 1, STATE, and the unvalidated `orders` record"
    );
}

#[test]
fn warn_keeps_every_record() {
    let mut t = Validate::new(settings(Policy::Warn, None)).unwrap();
    assert_eq!(ids(&run(&mut t, &input()).unwrap()), [1, 2, 3]);
}

#[test]
fn quarantine_writes_bad_records_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dead-letter.jsonl");
    let mut t = Validate::new(settings(Policy::Quarantine, Some(path.clone()))).unwrap();
    let out = run(&mut t, &input()).unwrap();
    t.finish().unwrap();
    assert_eq!(ids(&out), [1]);
    assert_eq!(t.quarantined(), 2);
    let lines: Vec<Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["record_number"], 2);
    assert_eq!(lines[0]["path"], "/created_at");
    assert_eq!(lines[0]["record"]["id"], 2);
    assert_eq!(lines[1]["path"], "/price");
    assert_eq!(lines[1]["reason"], "0.005 is not a multiple of 0.01");
}

#[test]
fn quarantine_without_a_path_is_refused() {
    assert!(Validate::new(settings(Policy::Quarantine, None)).is_err());
}

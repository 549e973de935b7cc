//! `tap-webhook` on its own (issue #28): what dsm hands it, and how it runs without dsm.

use serde_json::{Value, json};

use crate::support::{run, write_json};

fn events_file(dir: &std::path::Path, lines: &[Value]) -> String {
    let path = dir.join("events.jsonl");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn event(id: i64, seq: i64, payload: Value) -> Value {
    json!({"id": id, "seq": seq, "event_id": format!("e{id}"), "received_at": "2026-01-01T00:00:00.000Z", "payload": payload})
}

#[test]
fn issue_28_tap_webhook_sends_events_after_its_bookmark_and_bookmarks_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let file = events_file(
        dir.path(),
        &[
            event(1, 1, json!({"a": 1})),
            event(7, 2, json!([1, 2])),
            event(3, 9, json!("text")),
        ],
    );
    let cfg = write_json(dir.path(), "config.json", &json!({"events_file": file}));
    let first = run(dir.path(), "tap-webhook", &["--config", &cfg], b"");
    first.assert_ok();
    let records = first.records();
    assert_eq!(
        records
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [1, 7, 3]
    );
    assert_eq!(records[1]["payload"], json!([1, 2]));
    let schema = &first.of_type("SCHEMA")[0];
    assert_eq!(schema["stream"], "events");
    assert_eq!(schema["key_properties"], json!(["id"]));
    let state = first.last_state();
    assert_eq!(dsm::webhooks::confirmed_seq(&state), Some(9));

    // From a bookmark: only later deliveries (a replayed event has a new, higher `seq`).
    let state_file = write_json(
        dir.path(),
        "state.json",
        &json!({"bookmarks": {"events": {"replication_key": "seq", "replication_key_value": 2}}}),
    );
    let second = run(
        dir.path(),
        "tap-webhook",
        &["--config", &cfg, "--state", &state_file],
        b"",
    );
    second.assert_ok();
    assert_eq!(second.records().len(), 1);
    assert_eq!(second.records()[0]["id"], 3);

    // Discovery needs no events.
    let empty_cfg = write_json(dir.path(), "empty.json", &json!({}));
    let discovered = run(
        dir.path(),
        "tap-webhook",
        &["--config", &empty_cfg, "--discover"],
        b"",
    );
    discovered.assert_ok();
    assert!(discovered.stdout.contains("\"events\""));
}

#[test]
fn issue_28_tap_webhook_refuses_a_missing_file_setting_and_bad_lines_by_line_number() {
    let dir = tempfile::tempdir().unwrap();
    let empty_cfg = write_json(dir.path(), "empty.json", &json!({}));
    let unset = run(dir.path(), "tap-webhook", &["--config", &empty_cfg], b"");
    assert_ne!(unset.code, 0);
    assert!(unset.stderr.contains("events_file"), "{}", unset.stderr);
    assert!(unset.stderr.contains("dsm run"), "{}", unset.stderr);

    let path = dir.path().join("events.jsonl");
    std::fs::write(
        &path,
        format!("{}\n{{\"id\": 2}}\n", event(1, 1, json!({}))),
    )
    .unwrap();
    let cfg = write_json(
        dir.path(),
        "config.json",
        &json!({"events_file": path.display().to_string()}),
    );
    let bad = run(dir.path(), "tap-webhook", &["--config", &cfg], b"");
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("line 2"), "{}", bad.stderr);
    assert!(bad.stderr.contains("`seq`"), "{}", bad.stderr);

    // Out of delivery order is an error, not a silent skip.
    std::fs::write(
        &path,
        format!("{}\n{}\n", event(1, 5, json!({})), event(2, 4, json!({}))),
    )
    .unwrap();
    let unordered = run(dir.path(), "tap-webhook", &["--config", &cfg], b"");
    assert_ne!(unordered.code, 0);
    assert!(
        unordered.stderr.contains("delivery order"),
        "{}",
        unordered.stderr
    );
}

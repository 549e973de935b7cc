//! target-jsonl and target-csv: one file per stream, append or overwrite, STATE after flush.

use serde_json::json;

use crate::support::{run, write_json};

const INPUT: &str = r#"{"type":"SCHEMA","stream":"people","schema":{"properties":{"id":{"type":"integer"},"name":{"type":["string","null"]},"tags":{"type":"array"}}},"key_properties":["id"]}
{"type":"RECORD","stream":"people","record":{"id":1,"name":"Ann, \"A\"","tags":["x"]}}
{"type":"RECORD","stream":"people","record":{"id":2,"name":null}}
{"type":"STATE","value":{"n":2}}
"#;

#[test]
fn target_jsonl_writes_one_file_per_stream_appending_or_overwriting() {
    let dir = tempfile::tempdir().unwrap();
    let append = write_json(dir.path(), "a.json", &json!({"destination_path": "out"}));
    let r = run(
        dir.path(),
        "target-jsonl",
        &["--config", &append],
        INPUT.as_bytes(),
    );
    r.assert_ok();
    assert_eq!(r.messages(), vec![json!({"n": 2})]);
    run(
        dir.path(),
        "target-jsonl",
        &["--config", &append],
        INPUT.as_bytes(),
    )
    .assert_ok();
    let text = std::fs::read_to_string(dir.path().join("out/people.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(
        lines[0],
        json!({"id": 1, "name": "Ann, \"A\"", "tags": ["x"]})
    );
    let over = write_json(
        dir.path(),
        "o.json",
        &json!({"destination_path": "out", "mode": "overwrite"}),
    );
    run(
        dir.path(),
        "target-jsonl",
        &["--config", &over],
        INPUT.as_bytes(),
    )
    .assert_ok();
    let text = std::fs::read_to_string(dir.path().join("out/people.jsonl")).unwrap();
    assert_eq!(text.lines().count(), 2);
}

#[test]
fn target_csv_writes_a_header_once_and_quotes_values() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_json(dir.path(), "c.json", &json!({"destination_path": "out"}));
    run(
        dir.path(),
        "target-csv",
        &["--config", &cfg],
        INPUT.as_bytes(),
    )
    .assert_ok();
    run(
        dir.path(),
        "target-csv",
        &["--config", &cfg],
        INPUT.as_bytes(),
    )
    .assert_ok();
    let text = std::fs::read_to_string(dir.path().join("out/people.csv")).unwrap();
    assert_eq!(
        text,
        "id,name,tags\n1,\"Ann, \"\"A\"\"\",\"[\"\"x\"\"]\"\n2,,\n1,\"Ann, \"\"A\"\"\",\"[\"\"x\"\"]\"\n2,,\n"
    );
    // Appending a stream whose columns differ from the file's header is refused.
    let other = INPUT.replace(
        "\"tags\":{\"type\":\"array\"}",
        "\"age\":{\"type\":\"integer\"}",
    );
    let r = run(
        dir.path(),
        "target-csv",
        &["--config", &cfg],
        other.as_bytes(),
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("`out/people.csv` has the columns (id, name, tags)"),
        "{}",
        r.stderr
    );
    let over = write_json(
        dir.path(),
        "o.json",
        &json!({"destination_path": "out", "mode": "overwrite"}),
    );
    run(
        dir.path(),
        "target-csv",
        &["--config", &over],
        other.as_bytes(),
    )
    .assert_ok();
    let text = std::fs::read_to_string(dir.path().join("out/people.csv")).unwrap();
    assert!(text.starts_with("id,name,age\n"), "{text}");
}

#[test]
fn file_targets_reject_a_record_before_its_schema() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_json(dir.path(), "c.json", &json!({"destination_path": "out"}));
    for t in ["target-jsonl", "target-csv"] {
        let r = run(
            dir.path(),
            t,
            &["--config", &cfg],
            br#"{"type":"RECORD","stream":"x","record":{"a":1}}"#,
        );
        assert_eq!(r.code, 1, "{t}");
        assert!(
            r.stderr
                .contains("RECORD of stream `x` came before its SCHEMA"),
            "{t}: {}",
            r.stderr
        );
    }
}

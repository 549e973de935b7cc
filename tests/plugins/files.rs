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
    // Issue 4: appending a stream with a new column was refused. The file is widened instead:
    // the new column goes last, existing rows keep their values, `tags` stays.
    let other = INPUT
        .replace(
            "\"tags\":{\"type\":\"array\"}",
            "\"age\":{\"type\":\"integer\"}",
        )
        .replace("\"tags\":[\"x\"]", "\"age\":40");
    let r = run(
        dir.path(),
        "target-csv",
        &["--config", &cfg],
        other.as_bytes(),
    );
    r.assert_ok();
    assert_eq!(r.messages(), vec![json!({"n": 2})]);
    let text = std::fs::read_to_string(dir.path().join("out/people.csv")).unwrap();
    assert_eq!(
        text,
        "id,name,tags,age\n\
         1,\"Ann, \"\"A\"\"\",\"[\"\"x\"\"]\",\n2,,,\n\
         1,\"Ann, \"\"A\"\"\",\"[\"\"x\"\"]\",\n2,,,\n\
         1,\"Ann, \"\"A\"\"\",,40\n2,,,\n"
    );
    // The rewrite went through a temporary file beside it, which is gone.
    let names: Vec<_> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["people.csv"]);
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
fn issue_4_target_csv_a_second_schema_with_new_columns_widens_the_file_mid_run() {
    // Issue 4: a SCHEMA with new columns after records had been written was an error.
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_json(
        dir.path(),
        "c.json",
        &json!({"destination_path": "out", "mode": "overwrite", "delimiter": ";"}),
    );
    let input = r#"{"type":"SCHEMA","stream":"s","schema":{"properties":{"a":{"type":"integer"}}},"key_properties":[]}
{"type":"RECORD","stream":"s","record":{"a":1}}
{"type":"STATE","value":{"n":1}}
{"type":"RECORD","stream":"s","record":{"a":2}}
{"type":"SCHEMA","stream":"s","schema":{"properties":{"a":{"type":"integer"},"b":{"type":"string"}}},"key_properties":[]}
{"type":"RECORD","stream":"s","record":{"a":3,"b":"x;y"}}
{"type":"SCHEMA","stream":"s","schema":{"properties":{"b":{"type":"string"}}},"key_properties":[]}
{"type":"RECORD","stream":"s","record":{"b":"z"}}
{"type":"STATE","value":{"n":4}}
"#;
    let r = run(
        dir.path(),
        "target-csv",
        &["--config", &cfg],
        input.as_bytes(),
    );
    r.assert_ok();
    assert_eq!(r.messages(), vec![json!({"n": 1}), json!({"n": 4})]);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out/s.csv")).unwrap(),
        "a;b\n1;\n2;\n3;\"x;y\"\n;z\n"
    );
}

#[test]
fn target_csv_does_not_widen_a_file_whose_rows_do_not_match_its_header() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let broken = "id,name\n1,ann\n2,bob,extra\n";
    std::fs::write(dir.path().join("out/people.csv"), broken).unwrap();
    let cfg = write_json(dir.path(), "c.json", &json!({"destination_path": "out"}));
    let r = run(
        dir.path(),
        "target-csv",
        &["--config", &cfg],
        INPUT.as_bytes(),
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "cannot add columns to `out/people.csv`: line 3 has 3 fields, its header has 2"
        ),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("hint: the file was left unchanged"),
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out/people.csv")).unwrap(),
        broken
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("out")).unwrap().count(),
        1
    );
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

// Issue 30: the built-in file targets keep a number's JSON text exactly (no float round trip).
#[test]
fn issue_30_file_targets_keep_numbers_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_json(dir.path(), "c.json", &json!({"destination_path": "out"}));
    let input = r#"{"type":"SCHEMA","stream":"n","schema":{"properties":{"id":{"type":"integer"},"x":{"type":"number"}}},"key_properties":["id"]}
{"type":"RECORD","stream":"n","record":{"id":1,"x":99999999999999999999999}}
{"type":"RECORD","stream":"n","record":{"id":2,"x":1e999999}}
{"type":"RECORD","stream":"n","record":{"id":3,"x":0.1000000000000000000001}}
"#;
    run(
        dir.path(),
        "target-csv",
        &["--config", &cfg],
        input.as_bytes(),
    )
    .assert_ok();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out/n.csv")).unwrap(),
        "id,x\n1,99999999999999999999999\n2,1e999999\n3,0.1000000000000000000001\n"
    );
    run(
        dir.path(),
        "target-jsonl",
        &["--config", &cfg],
        input.as_bytes(),
    )
    .assert_ok();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out/n.jsonl")).unwrap(),
        "{\"id\":1,\"x\":99999999999999999999999}\n{\"id\":2,\"x\":1e999999}\n{\"id\":3,\"x\":0.1000000000000000000001}\n"
    );
}

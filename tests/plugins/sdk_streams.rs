//! The Singer SDK's standard target test streams (meltano/sdk @136de07f, copied into
//! `tests/fixtures/target-test-streams/`) fed to target-sqlite, with the outcomes the SDK's
//! target tests expect.

use serde_json::json;

use crate::support::{columns, query, rows, run, sdk_stream, write_json};

fn load(name: &str) -> (tempfile::TempDir, crate::support::Run) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_json(dir.path(), "t.json", &json!({"database": "w.db"}));
    let r = run(
        dir.path(),
        "target-sqlite",
        &["--config", &cfg],
        &sdk_stream(name),
    );
    (dir, r)
}

#[test]
fn streams_the_sdk_expects_to_load() {
    for (name, table, count) in [
        ("array_data", "test_array_data", 4),
        ("camelcase", "TestCamelcase", 2),
        ("camelcase_complex_schema", "ForecastingTypeToCategory", 0),
        ("encoded_string_data", "test_strings", 11),
        (
            "multiple_state_messages",
            "test_multiple_state_messages_a",
            6,
        ),
        ("no_primary_keys", "test_no_pk", 3),
        ("optional_attributes", "test_optional_attributes", 4),
        ("record_missing_fields", "record_missing_fields", 2),
        (
            "special_chars_in_attributes",
            "test_SpecialChars_in_attributes",
            1,
        ),
        ("user_location_data", "test_user_in_location", 3),
        ("user_location_upsert_data", "test_user_in_location", 4),
        (
            "schema_no_properties",
            "test_object_schema_no_properties",
            2,
        ),
    ] {
        let (dir, r) = load(name);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        let got = query(
            &dir.path().join("w.db"),
            &format!("SELECT count(*) FROM \"{table}\""),
        );
        assert_eq!(got, rows(&[&[&count.to_string()]]), "{name}");
    }
}

#[test]
fn duplicate_records_with_keys_leave_one_row_each_with_the_last_value() {
    let (dir, r) = load("duplicate_records");
    r.assert_ok();
    assert_eq!(
        query(
            &dir.path().join("w.db"),
            "SELECT id, metric FROM test_duplicate_records ORDER BY id"
        ),
        rows(&[&["1", "100"], &["2", "20"]])
    );
}

#[test]
fn schema_updates_add_columns() {
    let (dir, r) = load("schema_updates");
    r.assert_ok();
    let db = dir.path().join("w.db");
    let names: Vec<String> = columns(&db, "test_schema_updates")
        .into_iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(names, ["id", "a1", "a2", "a3", "a4", "a5", "a6"]);
    assert_eq!(
        query(&db, "SELECT count(*) FROM test_schema_updates"),
        rows(&[&["6"]])
    );
    assert_eq!(
        query(&db, "SELECT a4, a5 FROM test_schema_updates WHERE id = 3"),
        rows(&[&[r#"{"id": 1, "value": 1}"#, r#"[ "banana", "apple" ]"#]])
    );
}

#[test]
fn multiple_state_messages_are_echoed_after_their_rows() {
    let (_dir, r) = load("multiple_state_messages");
    r.assert_ok();
    let states: Vec<serde_json::Value> = r.messages();
    assert!(!states.is_empty());
    assert_eq!(
        states.last().unwrap().clone(),
        json!({"test_multiple_state_messages_a": 5, "test_multiple_state_messages_b": 6})
    );
}

#[test]
fn streams_the_sdk_expects_to_fail() {
    for (name, message) in [
        (
            "record_before_schema",
            "input line 1: RECORD of stream `test_record_before_schema` came before its SCHEMA",
        ),
        (
            "record_missing_key_property",
            "has no value for key property `id`",
        ),
        (
            "record_missing_required_property",
            "lacks required property `id`",
        ),
        (
            "invalid_schema",
            "the SCHEMA of stream `test_invalid_schema` has no properties",
        ),
    ] {
        let (_dir, r) = load(name);
        assert_eq!(r.code, 1, "{name}");
        assert!(r.stderr.contains(message), "{name}: {}", r.stderr);
    }
}

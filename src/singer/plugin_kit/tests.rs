use std::cmp::Ordering;
use std::path::PathBuf;

use serde_json::json;

use super::*;

fn spec() -> StreamSpec {
    StreamSpec {
        name: "users".into(),
        schema: json!({"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"}, "updated": {"type": "string"}}}),
        key_properties: vec!["id".into()],
        valid_replication_keys: vec!["updated".into()],
        replication_key: None,
    }
}

#[test]
fn parses_singer_arguments() {
    let a = PluginArgs::parse(
        [
            "--config",
            "a.json",
            "--config=b.json",
            "--properties",
            "c.json",
            "--state",
            "s.json",
        ]
        .map(String::from),
    )
    .unwrap();
    assert_eq!(a.config, vec![PathBuf::from("a.json"), "b.json".into()]);
    assert_eq!(a.catalog, Some("c.json".into()));
    assert_eq!(a.state, Some("s.json".into()));
    assert!(PluginArgs::parse(["--bogus".to_string()]).is_err());
    assert!(PluginArgs::parse(["--config".to_string()]).is_err());
}

#[test]
fn discovered_entry_selects_everything() {
    let catalog = catalog_document(vec![spec().catalog_entry()]);
    let sel = select(&spec(), Some(&catalog)).unwrap();
    assert_eq!(sel.properties, vec!["id", "name", "updated"]);
    assert_eq!(sel.method, ReplicationMethod::FullTable);
}

#[test]
fn deselected_properties_and_streams_are_left_out_but_keys_stay() {
    let mut entry = spec().catalog_entry();
    let md = entry["metadata"].as_array_mut().unwrap();
    md[1]["metadata"]["selected"] = false.into(); // id: automatic, stays
    md[2]["metadata"]["selected"] = false.into(); // name
    md[0]["metadata"]["replication-method"] = "INCREMENTAL".into();
    md[0]["metadata"]["replication-key"] = "updated".into();
    let catalog = catalog_document(vec![entry.clone()]);
    let sel = select(&spec(), Some(&catalog)).unwrap();
    assert_eq!(sel.properties, vec!["id", "updated"]);
    assert_eq!(sel.replication_key.as_deref(), Some("updated"));
    entry["metadata"][0]["metadata"]["selected"] = false.into();
    assert!(select(&spec(), Some(&catalog_document(vec![entry]))).is_none());
    assert!(select(&spec(), Some(&catalog_document(vec![]))).is_none());
}

#[test]
fn bookmarks_round_trip() {
    let mut state = Value::Null;
    set_bookmark(&mut state, "users", "updated", json!("2024-01-02"));
    assert_eq!(
        bookmark(&state, "users", "updated"),
        Some(json!("2024-01-02"))
    );
    assert_eq!(bookmark(&state, "users", "other"), None);
    assert_eq!(bookmark(&state, "orders", "updated"), None);
}

#[test]
fn rows_at_the_bookmark_are_sent_again() {
    // Issue 4: a strict `>` missed rows added later with the bookmark's own value.
    assert!(at_or_after_bookmark(&json!(5), &json!(5)));
    assert!(at_or_after_bookmark(&json!(6), &json!(5)));
    assert!(!at_or_after_bookmark(&json!(4), &json!(5)));
    assert!(at_or_after_bookmark(
        &json!("2024-01-02"),
        &json!("2024-01-02")
    ));
    assert!(!at_or_after_bookmark(&Value::Null, &json!("2024-01-02")));
}

#[test]
fn escapes_json_strings() {
    let mut out = Vec::new();
    write_json_str(&mut out, "a\"b\\c\nd\u{1}é");
    let back: String = serde_json::from_slice(&out).unwrap();
    assert_eq!(back, "a\"b\\c\nd\u{1}é");
}

#[test]
fn compares_numbers_and_strings() {
    assert_eq!(
        compare_values(&json!(10), &json!(9)),
        Some(Ordering::Greater)
    );
    assert_eq!(compare_values(&json!(1.5), &json!(2)), Some(Ordering::Less));
    assert_eq!(
        compare_values(&json!("b"), &json!("a")),
        Some(Ordering::Greater)
    );
    assert_eq!(compare_values(&json!("b"), &json!(1)), None);
}

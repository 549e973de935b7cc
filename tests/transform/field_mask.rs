//! PipelineWise `transform-field` conformance, with dsm's deliberate differences:
//! ACTIVATE_VERSION and every STATE are kept.

use dsm::singer::Message;
use dsm::transform::{FieldMask, Transform};
use serde_json::Value;

use crate::support::{fixtures, read_json, read_lines, run};

fn is_kept_by_dsm_only(m: &Value) -> bool {
    m["type"] == "STATE" || m["type"] == "ACTIVATE_VERSION"
}

fn case(id: &str) -> Value {
    read_json("transform-field/cases.json")
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap()
        .clone()
}

fn check_output_case(id: &str) {
    let case = case(id);
    let input = read_lines(&format!(
        "transform-field/{}",
        case["input"].as_str().unwrap()
    ));
    let expected = read_lines(&format!(
        "transform-field/{}",
        case["expected"].as_str().unwrap()
    ));
    let mut t = FieldMask::from_config(&case["config"]).unwrap();
    let ours = run(&mut t, &input).unwrap();

    // Every STATE and ACTIVATE_VERSION of the input is kept, in order.
    let kept: Vec<&Value> = ours.iter().filter(|m| is_kept_by_dsm_only(m)).collect();
    let sent: Vec<&Value> = input.iter().filter(|m| is_kept_by_dsm_only(m)).collect();
    assert_eq!(kept, sent, "{id}: STATE/ACTIVATE_VERSION changed");

    let ours: Vec<&Value> = ours.iter().filter(|m| !is_kept_by_dsm_only(m)).collect();
    let expected: Vec<&Value> = expected
        .iter()
        .filter(|m| !is_kept_by_dsm_only(m))
        .collect();
    assert_eq!(ours.len(), expected.len(), "{id}: message count");
    for (i, (a, b)) in ours.iter().zip(&expected).enumerate() {
        assert_eq!(a, b, "{id}: message {i}");
    }
}

#[test]
fn multiple_singer_json_messages() {
    check_output_case("multiple_singer_json_messages");
}

#[test]
fn transformation_on_json() {
    check_output_case("transformation_on_json");
}

#[test]
fn changing_schema_must_fail_before_its_records_move() {
    let case = case("changing_schema_must_fail");
    let input = read_lines(&format!(
        "transform-field/{}",
        case["input"].as_str().unwrap()
    ));
    let mut t = FieldMask::from_config(&case["config"]).unwrap();
    let mut out = Vec::new();
    let mut error = None;
    for v in &input {
        let msg = Message::parse(&serde_json::to_vec(v).unwrap()).unwrap();
        if let Err(e) = t.apply(msg, &mut out) {
            error = Some(e);
            break;
        }
    }
    let error = error.expect("the second SCHEMA makes MASK-NUMBER impossible");
    assert!(error.message.contains("MASK-NUMBER"), "{}", error.message);
    assert!(error.message.contains("`column_2`"), "{}", error.message);
    let records: Vec<Value> = out
        .iter()
        .filter_map(|m| match m {
            Message::Record(r) => Some(r.record["column_2"].clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        records,
        [0, 0, 0],
        "the first three records are masked, `ABC` never moves"
    );
}

#[test]
fn invalid_json_must_fail() {
    // The line codec rejects the line before any transform sees it.
    let text =
        std::fs::read_to_string(fixtures().join("transform-field/resources/invalid_messages.json"))
            .unwrap();
    let bad = text.lines().find(|l| l.starts_with("THIS IS")).unwrap();
    assert!(Message::parse(bad.as_bytes()).is_err());
}

#[test]
fn validate_against_catalog() {
    let catalog = read_json("transform-field/resources/catalog.json");
    let valid =
        FieldMask::from_config(&read_json("transform-field/resources/valid_config.json")).unwrap();
    valid.check_catalog(&catalog).unwrap();
    let invalid =
        FieldMask::from_config(&read_json("transform-field/resources/invalid_config.json"))
            .unwrap();
    let e = invalid.check_catalog(&catalog).unwrap_err();
    assert!(
        e.message.contains("HASH") && e.message.contains("`column_2`"),
        "{}",
        e.message
    );
}

#[test]
fn record_before_schema_is_refused() {
    let mut t = FieldMask::from_config(&serde_json::json!({"transformations": [
        {"tap_stream_name": "s", "field_id": "a", "type": "HASH"}]}))
    .unwrap();
    let msg = Message::parse(br#"{"type":"RECORD","stream":"s","record":{"a":"secret"}}"#).unwrap();
    let mut out = Vec::new();
    assert!(t.apply(msg, &mut out).is_err());
    assert!(out.is_empty(), "an unchecked record must not move");
}

//! Singer SDK stream-map conformance: tap-mode snapshots, mapper-mode outputs, and the
//! meltano-map-transform fixtures.

use dsm::transform::StreamMaps;
use serde_json::{Map, Value, json};

use crate::support::{read_json, read_lines, run, run_lines};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// SDK tap output: every key compared.
    Tap,
    /// meltano-map-transform output: its three documented quirks are normalised away.
    Mapper,
}

fn config_of(case: &Value) -> Value {
    let mut config = Map::new();
    if let Some(c) = case.get("config").and_then(Value::as_object) {
        config.extend(c.clone());
    }
    if let Some(m) = case.get("stream_maps") {
        config.insert("stream_maps".into(), m.clone());
    }
    Value::Object(config)
}

fn property_order(v: &Value) -> Vec<String> {
    v.pointer("/schema/properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// Same JSON type and same keys: how Faker output is compared (its PRNG is Python's).
fn same_shape(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_shape(v, w)))
        }
        (Value::String(_), Value::String(_)) | (Value::Number(_), Value::Number(_)) => true,
        (Value::Array(x), Value::Array(y)) => x.len() == y.len(),
        _ => a == b,
    }
}

fn normalise_mapper(ours: &[Value], expected: &mut Vec<Value>) {
    // Quirk 2: a removed stream still gets its SCHEMA and ACTIVATE_VERSION (never RECORDs).
    let has = |list: &[Value], ty: &str, stream: &Value| {
        list.iter()
            .any(|m| m["type"] == ty && &m["stream"] == stream)
    };
    let snapshot = expected.clone();
    expected.retain(|m| {
        let kind = m["type"].as_str().unwrap_or_default();
        !(matches!(kind, "SCHEMA" | "ACTIVATE_VERSION")
            && !has(&snapshot, "RECORD", &m["stream"])
            && !has(ours, kind, &m["stream"]))
    });
    for m in expected.iter_mut() {
        let obj = m.as_object_mut().unwrap();
        // Quirk 1: `bookmark_properties: []` added to every SCHEMA.
        if obj.get("bookmark_properties") == Some(&json!([])) {
            obj.shift_remove("bookmark_properties");
        }
        // `time_extracted` is overwritten with the wall clock.
        obj.shift_remove("time_extracted");
    }
    // Quirk 3 (STATE unchanged, keyed by the original name) is what dsm does as well.
}

fn compare(ours: &[Value], expected: &[Value], mode: Mode, fake: bool) -> Result<(), String> {
    let mut ours = ours.to_vec();
    let mut expected = expected.to_vec();
    if mode == Mode::Mapper {
        normalise_mapper(&ours, &mut expected);
        for m in &mut ours {
            let obj = m.as_object_mut().unwrap();
            obj.shift_remove("time_extracted");
            if obj.get("bookmark_properties") == Some(&json!([])) {
                obj.shift_remove("bookmark_properties");
            }
        }
    }
    if ours.len() != expected.len() {
        return Err(format!(
            "{} messages, expected {}:\n  ours:     {}\n  expected: {}",
            ours.len(),
            expected.len(),
            ours.iter()
                .map(|m| m["type"].as_str().unwrap_or("?"))
                .collect::<Vec<_>>()
                .join(","),
            expected
                .iter()
                .map(|m| m["type"].as_str().unwrap_or("?"))
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    for (i, (a, b)) in ours.iter().zip(&expected).enumerate() {
        let equal = if fake && a["type"] == "RECORD" {
            same_shape(a, b)
        } else {
            a == b
        };
        if !equal {
            return Err(format!(
                "message {i} differs:\n  ours:     {a}\n  expected: {b}"
            ));
        }
        if a["type"] == "SCHEMA" && property_order(a) != property_order(b) {
            return Err(format!(
                "message {i}: property order {:?}, expected {:?}",
                property_order(a),
                property_order(b)
            ));
        }
    }
    Ok(())
}

/// The input of a case: `input/mystream.singer`, except the BATCH case, whose tap emitted a
/// BATCH message: its input is its snapshot with the alias undone.
fn tap_input(case: &Value) -> Vec<Value> {
    if case["id"] == "aliased_stream_batch" {
        let text = std::fs::read_to_string(
            crate::support::fixtures()
                .join("streammaps")
                .join(case["expected"].as_str().unwrap()),
        )
        .unwrap()
        .replace("\"aliased_stream\"", "\"mystream\"");
        return text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    }
    read_lines("streammaps/input/mystream.singer")
}

/// Runs a case both ways: every message parsed, and records mapped from their line where the
/// transform can (as the pipeline runs them); the two must agree, errors included.
fn run_case(config: &Value, input: &[Value]) -> Result<Vec<Value>, String> {
    // The SDK's cases run in the `sdk` dialect, the project default.
    let mut t = StreamMaps::from_config(config)
        .map_err(|e| format!("config rejected: {}", e.message))?
        .with_sdk_schemas();
    let parsed = run(&mut t, input).map_err(|e| format!("run failed: {}", e.message));
    let mut t = StreamMaps::from_config(config)
        .expect("accepted above")
        .with_sdk_schemas();
    let lines = run_lines(&mut t, input)
        .map(|(out, _)| out)
        .map_err(|e| format!("run failed: {}", e.message));
    if parsed != lines {
        return Err(format!(
            "records mapped from their lines differ from parsed ones: {lines:?} vs {parsed:?}"
        ));
    }
    parsed
}

fn report(kind: &str, total: usize, failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} of {total} {kind} cases failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn sdk_tap_mode_snapshots() {
    let cases = read_json("streammaps/sdk_tap_cases.json");
    let cases = cases["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 35, "the shared set has 35 tap cases");
    let mut failures = Vec::new();
    for case in cases {
        let id = case["id"].as_str().unwrap();
        let expected = read_lines(&format!(
            "streammaps/{}",
            case["expected"].as_str().unwrap()
        ));
        let result = run_case(&config_of(case), &tap_input(case))
            .and_then(|ours| compare(&ours, &expected, Mode::Tap, id.starts_with("fake_")));
        if let Err(e) = result {
            failures.push(format!("{id}: {e}"));
        }
    }
    report("tap-mode", cases.len(), failures);
}

#[test]
fn meltano_map_transform_mapper_mode() {
    let cases = read_json("streammaps/mapper_mode_cases.json");
    let cases = cases.as_array().unwrap();
    let tap = read_json("streammaps/sdk_tap_cases.json");
    let mut failures = Vec::new();
    let mut repaired = Vec::new();
    for case in cases {
        let id = case["id"].as_str().unwrap();
        let input = read_lines(&format!("streammaps/{}", case["input"].as_str().unwrap()));
        let expected = read_lines(&format!(
            "streammaps/{}",
            case["expected"].as_str().unwrap()
        ));
        // The recorded mapper configs were written after the SDK ran, and the SDK pops a
        // top-level `__else__` out of the dict it is given; take `stream_maps` from the tap
        // case of the same id, which was transcribed from the test source.
        let mut config = case["config"].clone();
        let tap_case = tap["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap();
        if config["stream_maps"] != tap_case["stream_maps"] {
            repaired.push(id);
            config["stream_maps"] = tap_case["stream_maps"].clone();
        }
        let result = run_case(&config, &input)
            .and_then(|ours| compare(&ours, &expected, Mode::Mapper, id.starts_with("fake_")));
        if let Err(e) = result {
            failures.push(format!("{id}: {e}"));
        }
    }
    assert_eq!(
        repaired,
        ["sourced_stream_2"],
        "only the `__else__` case lost part of its config"
    );
    report("mapper-mode", cases.len(), failures);
}

#[test]
fn meltano_map_transform_fixtures() {
    let cases = read_json("streammaps/map_transform_fixtures/cases.json");
    let cases = cases.as_array().unwrap();
    let mut failures = Vec::new();
    for case in cases {
        let id = case["id"].as_str().unwrap();
        let input = read_lines(&format!("streammaps/{}", case["input"].as_str().unwrap()));
        let expected = read_lines(&format!(
            "streammaps/{}",
            case["expected"].as_str().unwrap()
        ));
        let mut config = case["config"].clone();
        if let Some(extra) = case.get("stream_map_config") {
            config["stream_map_config"] = extra.clone();
        }
        let result = run_case(&config, &input)
            .and_then(|ours| compare(&ours, &expected, Mode::Mapper, false));
        if let Err(e) = result {
            failures.push(format!("{id}: {e}"));
        }
    }
    report("map-transform fixture", cases.len(), failures);
}

#[test]
fn faker_output_is_reproducible_with_a_seed() {
    let config = json!({"stream_maps": {"mystream": {"cc": "fake.credit_card_number()", "__else__": null}},
                        "faker_config": {"seed": 123456}});
    let input = read_lines("streammaps/input/mystream.singer");
    let a = run_case(&config, &input).unwrap();
    let b = run_case(&config, &input).unwrap();
    assert_eq!(a, b);
    let ccs: Vec<&str> = a
        .iter()
        .filter(|m| m["type"] == "RECORD")
        .map(|m| m["record"]["cc"].as_str().unwrap())
        .collect();
    assert_eq!(ccs.len(), 3);
    assert!(ccs[0] != ccs[1], "each call draws a new number: {ccs:?}");
}

/// The SDK's `PluginMapper` unit cases: four catalog streams, records per stream, expected
/// records, schemas and key properties per output stream.
#[test]
fn sdk_plugin_mapper_cases() {
    let data = read_json("streammaps/plugin_mapper_cases.json");
    let mut input = Vec::new();
    for entry in data["catalog"]["streams"].as_array().unwrap() {
        let stream = &entry["stream"];
        input.push(json!({"type": "SCHEMA", "stream": stream, "schema": entry["schema"],
                          "key_properties": entry.get("key_properties").cloned().unwrap_or(json!([]))}));
        for r in data["input_records"][stream.as_str().unwrap()]
            .as_array()
            .unwrap()
        {
            input.push(json!({"type": "RECORD", "stream": stream, "record": r}));
        }
    }
    let mut failures = Vec::new();
    let cases = data["cases"].as_array().unwrap();
    for case in cases {
        let id = case["id"].as_str().unwrap();
        let config = json!({"stream_maps": case["stream_maps"], "stream_map_config": data["stream_map_config"]});
        if case.get("expected_error").is_some() {
            if StreamMaps::from_config(&config).is_ok() {
                failures.push(format!("{id}: accepted an expression that cannot parse"));
            }
            continue;
        }
        let out = match run_case(&config, &input) {
            Ok(out) => out,
            Err(e) => {
                failures.push(format!("{id}: {e}"));
                continue;
            }
        };
        let mut records: Map<String, Value> = Map::new();
        let mut schemas: Map<String, Value> = Map::new();
        let mut keys: Map<String, Value> = Map::new();
        for m in &out {
            let stream = m["stream"].as_str().unwrap().to_owned();
            match m["type"].as_str() {
                Some("SCHEMA") => {
                    schemas.insert(stream.clone(), m["schema"].clone());
                    keys.insert(stream, m["key_properties"].clone());
                }
                Some("RECORD") => {
                    let list = records.entry(stream).or_insert_with(|| json!([]));
                    list.as_array_mut().unwrap().push(m["record"].clone());
                }
                _ => {}
            }
        }
        let expected_records = case["expected_records"].as_object().unwrap();
        let streams_with_records = records;
        if &streams_with_records != expected_records {
            failures.push(format!(
                "{id}: records {streams_with_records:?}\n  expected {expected_records:?}"
            ));
        }
        for (stream, schema) in case["expected_schemas"].as_object().unwrap() {
            if schemas.get(stream) != Some(schema) {
                failures.push(format!(
                    "{id}: schema of `{stream}` is {:?}\n  expected {schema}",
                    schemas.get(stream)
                ));
            }
            let expected_keys = &case["expected_key_properties"][stream];
            let ours = keys.get(stream).cloned().unwrap_or(Value::Null);
            let same = ours == *expected_keys || (expected_keys.is_null() && ours == json!([]));
            if !same {
                failures.push(format!(
                    "{id}: key properties of `{stream}` are {ours}, expected {expected_keys}"
                ));
            }
        }
    }
    report("PluginMapper", cases.len(), failures);
}

/// Issue 5 (speed): records of maps that read named properties are mapped from their lines;
/// maps that read the whole record, or flatten, parse every record. (`run_case` checks that
/// both ways give the same output for every case.)
#[test]
fn tap_cases_take_the_line_path_where_they_can() {
    let cases = read_json("streammaps/sdk_tap_cases.json");
    let cases = cases["cases"].as_array().unwrap();
    for (id, by_line) in [
        ("keep_all_fields", true),
        ("drop_property", true),
        ("filter_records", true),
        ("builtin_variable_self", true),
        ("sourced_stream_1", true),
        ("fake_credit_card_number", true),
        ("record_to_column", false),
        ("builtin_variable_underscore", false),
        ("flatten_all", false),
    ] {
        let case = cases.iter().find(|c| c["id"] == id).unwrap();
        let input = tap_input(case);
        let records = input.iter().filter(|m| m["type"] == "RECORD").count();
        let mut t = StreamMaps::from_config(&config_of(case)).unwrap();
        let (_, n) = run_lines(&mut t, &input).unwrap();
        assert_eq!(n, if by_line { records } else { 0 }, "{id}");
    }
}

//! Conformance with Meltano's catalog tests (fixture: `tests/fixtures/conformance/select/`), and
//! the run-time order of rules.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::*;

const CASES: &str =
    include_str!("../../tests/fixtures/conformance/select/meltano_select_cases.json");

fn cases() -> Value {
    serde_json::from_str(CASES).expect("fixture is JSON")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

/// Applies `SelectExecutor(patterns)` as the fixture's semantics describe.
fn select(catalog: &Value, patterns: &[String]) -> Value {
    let mut c = catalog.clone();
    apply_metadata_rules(&mut c, &select_metadata_rules(patterns)).expect("rules apply");
    c
}

fn check_star_star(name: &str, catalog: &Value) -> Result<(), String> {
    let c = select(catalog, &["*.*".to_string()]);
    for stream in c["streams"].as_array().expect("streams") {
        let id = &stream["tap_stream_id"];
        let md = stream["metadata"].as_array().expect("metadata created");
        let stream_entries: Vec<&Value> =
            md.iter().filter(|m| m["breadcrumb"] == json!([])).collect();
        if stream_entries.len() != 1 {
            return Err(format!(
                "{name}: {id} has {} stream entries",
                stream_entries.len()
            ));
        }
        if stream_entries[0]["metadata"]["selected"] != json!(true)
            || stream["selected"] != json!(true)
        {
            return Err(format!("{name}: {id} is not selected"));
        }
        for m in md.iter().filter(|m| m["breadcrumb"] != json!([])) {
            let state = node_selection(m);
            let unsupported = m["metadata"]["inclusion"] == "unsupported";
            if unsupported && m["metadata"]["selected"] == json!(true) {
                return Err(format!(
                    "{name}: unsupported {} got selected",
                    m["breadcrumb"]
                ));
            }
            if !unsupported && !state.is_extracted() {
                return Err(format!("{name}: {} is {state:?}", m["breadcrumb"]));
            }
        }
    }
    Ok(())
}

#[test]
fn meltano_select_conformance() {
    let all = cases();
    let mut failures = Vec::new();
    let mut passed = 0;
    for case in all["cases"].as_array().expect("cases") {
        let id = case["id"].as_str().expect("id");
        let patterns = strings(&case["patterns"]);
        for catalog_name in strings(&case["catalogs"]) {
            let name = format!("{id} [{catalog_name}]");
            let catalog = &all["catalogs"][&catalog_name];
            let result = match case.get("expected_selected_properties") {
                Some(expected) => {
                    let got: Vec<(String, BTreeSet<String>)> =
                        selected_properties(&select(catalog, &patterns))
                            .into_iter()
                            .map(|(s, p)| (s, p.into_iter().collect()))
                            .collect();
                    let want: Vec<(String, BTreeSet<String>)> = expected
                        .as_object()
                        .expect("object")
                        .iter()
                        .map(|(s, p)| (s.clone(), strings(p).into_iter().collect()))
                        .collect();
                    if got == want {
                        Ok(())
                    } else {
                        Err(format!("{name}: got {got:?}, want {want:?}"))
                    }
                }
                None => check_star_star(&name, catalog),
            };
            match result {
                Ok(()) => passed += 1,
                Err(e) => failures.push(e),
            }
        }
    }
    for (i, case) in all["node_selection_cases"]
        .as_array()
        .expect("rows")
        .iter()
        .enumerate()
    {
        let got = node_selection(&json!({"breadcrumb": [], "metadata": case["metadata"]}));
        if got.as_str() == case["selection"] {
            passed += 1;
        } else {
            failures.push(format!(
                "node_selection row {i}: got {got:?}, want {}",
                case["selection"]
            ));
        }
    }
    for (i, case) in all["rule_expansion_cases"]
        .as_array()
        .expect("rows")
        .iter()
        .enumerate()
    {
        let (rules, with_negated) = match case.get("patterns") {
            Some(p) => (select_metadata_rules(&strings(p)), false),
            None => (
                select_filter_metadata_rules(&strings(&case["select_filter"])),
                true,
            ),
        };
        let got: Vec<Value> = rules
            .iter()
            .map(|r| {
                let mut v = json!({
                    "tap_stream_id": match &r.tap_stream_id {
                        StreamPattern::Glob(g) => json!(g),
                        StreamPattern::AnyOf(l) => json!(l),
                    },
                    "breadcrumb": r.breadcrumb, "key": r.key, "value": r.value,
                });
                if with_negated {
                    v["negated"] = json!(r.negated);
                }
                v
            })
            .collect();
        if Value::Array(got.clone()) == case["rules"] {
            passed += 1;
        } else {
            failures.push(format!(
                "rule_expansion row {i}: got {got:?}, want {}",
                case["rules"]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} passed, {} failed:\n{}",
        passed,
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(passed, 15 + 9 + 4, "every case ran");
}

fn users_catalog() -> Value {
    json!({"streams": [
        {"tap_stream_id": "users", "stream": "users",
         "schema": {"type": "object", "properties": {
             "id": {"type": "integer"}, "name": {"type": "string"},
             "secret": {"type": "string"},
             "address": {"type": "object", "properties": {"city": {"type": "string"}}}}},
         "metadata": [
             {"breadcrumb": [], "metadata": {"inclusion": "available"}},
             {"breadcrumb": ["properties", "id"], "metadata": {"inclusion": "automatic"}},
             {"breadcrumb": ["properties", "name"], "metadata": {"inclusion": "available"}},
             {"breadcrumb": ["properties", "secret"], "metadata": {"inclusion": "unsupported"}}]},
        {"tap_stream_id": "admins", "stream": "admins",
         "schema": {"type": "object", "properties": {"id": {"type": "integer"}}}}
    ]})
}

fn extracted(catalog: &Value) -> Vec<(String, Vec<String>)> {
    selected_properties(catalog)
}

#[test]
fn run_order_deselects_everything_first() {
    let mut c = users_catalog();
    apply_selection(
        &mut c,
        &["users.name".into()],
        &Value::Null,
        &Value::Null,
        &SelectFilter::default(),
    )
    .unwrap();
    // Like Meltano, entries created for a catalog that lacks them are `automatic` for streams and
    // top-level properties (so `address` and the whole `admins` stream count as extracted).
    assert_eq!(
        extracted(&c),
        vec![
            (
                "users".to_string(),
                vec!["address".into(), "id".into(), "name".into()]
            ),
            ("admins".to_string(), vec!["id".to_string()])
        ]
    );
    assert_eq!(c["streams"][1]["selected"], false);
    assert_eq!(
        c["streams"][1]["metadata"][0]["metadata"]["selected"],
        false
    );
    // Missing entries were created: nested properties as `available`.
    let md = c["streams"][0]["metadata"].as_array().unwrap();
    let city = md
        .iter()
        .find(|m| m["breadcrumb"] == json!(["properties", "address", "properties", "city"]))
        .unwrap();
    assert_eq!(city["metadata"]["inclusion"], "available");
    assert_eq!(city["metadata"]["selected"], false);
}

#[test]
fn unsupported_is_never_selected_and_metadata_rules_follow_select() {
    let mut c = users_catalog();
    let metadata =
        json!({"users": {"replication-method": "FULL_TABLE", "name": {"selected": false}}});
    apply_selection(
        &mut c,
        &["users.*".into()],
        &metadata,
        &Value::Null,
        &SelectFilter::default(),
    )
    .unwrap();
    let users = &c["streams"][0];
    assert_eq!(users["replication_method"], "FULL_TABLE");
    let md = users["metadata"].as_array().unwrap();
    assert_eq!(md[0]["metadata"]["replication-method"], "FULL_TABLE");
    assert_eq!(md[3]["metadata"].get("selected"), Some(&json!(false)));
    assert_eq!(
        extracted(&c),
        vec![
            (
                "users".to_string(),
                vec![
                    "address".to_string(),
                    "address.city".to_string(),
                    "id".to_string()
                ]
            ),
            ("admins".to_string(), vec!["id".to_string()])
        ]
    );
}

#[test]
fn select_filter_keeps_only_matching_streams() {
    let mut c = users_catalog();
    let filter = SelectFilter::new(&["adm*".into()], &[]);
    apply_selection(&mut c, &["*.*".into()], &Value::Null, &Value::Null, &filter).unwrap();
    assert_eq!(
        extracted(&c),
        vec![("admins".to_string(), vec!["id".to_string()])]
    );

    let mut c = users_catalog();
    apply_select_filter(&mut c, &SelectFilter::new(&[], &["users".into()])).unwrap();
    let states: Vec<_> = selection_report(&c)
        .into_iter()
        .map(|s| (s.tap_stream_id, s.selection))
        .collect();
    assert_eq!(states[0], ("users".into(), Some(SelectionState::Excluded)));
}

#[test]
fn schema_overrides_replace_and_add_properties() {
    let mut c = users_catalog();
    let schema = json!({"users": {"name": {"type": ["string", "null"]}, "extra": {"type": "string"}},
                        "adm*": {"*": {"type": "number"}}});
    apply_selection(
        &mut c,
        &["*.*".into()],
        &Value::Null,
        &schema,
        &SelectFilter::default(),
    )
    .unwrap();
    assert_eq!(
        c["streams"][0]["schema"]["properties"]["name"],
        json!({"type": ["string", "null"]})
    );
    assert_eq!(
        c["streams"][0]["schema"]["properties"]["extra"],
        json!({"type": "string"})
    );
    assert_eq!(
        c["streams"][1]["schema"]["properties"]["id"],
        json!({"type": "number"})
    );
    let props = &extracted(&c)[0].1;
    assert!(props.contains(&"extra".to_string()));
}

#[test]
fn list_selection_combines_stream_and_property() {
    let mut c = users_catalog();
    apply_selection(
        &mut c,
        &["users.name".into()],
        &Value::Null,
        &Value::Null,
        &SelectFilter::default(),
    )
    .unwrap();
    let list = list_selection(&c);
    assert!(list.contains(&("users".into(), "name".into(), SelectionState::Selected)));
    assert!(list.contains(&("users".into(), "id".into(), SelectionState::Automatic)));
    assert!(list.contains(&("users".into(), "secret".into(), SelectionState::Unsupported)));
    assert!(list.contains(&("admins".into(), "id".into(), SelectionState::Automatic)));
}

#[test]
fn missing_tap_stream_id_is_an_error() {
    let mut c = json!({"streams": [{"stream": "x"}]});
    let err = apply_metadata_rules(&mut c, &select_metadata_rules(&["*.*"])).unwrap_err();
    assert_eq!(
        err,
        CatalogError::MissingTapStreamId {
            path: ".streams[0]".into()
        }
    );
}

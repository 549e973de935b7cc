use super::*;
use crate::transform::{FieldMask, StreamMaps};

fn project(yml: &str) -> (tempfile::TempDir, Project) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("meltano.yml"), yml).unwrap();
    let p = Project::load(dir.path()).unwrap();
    (dir, p)
}

const BASE: &str = "plugins:
  extractors:
  - name: tap-x
    namespace: tap_x
    annotations:
      dsm:
        source:
          classification: internal
          fields:
            users: {ssn: confidential}
  loaders:
  - name: target-y
    namespace: target_y
    annotations:
      dsm:
        clearance: internal
";

fn users(p: &Project) -> Derivation {
    let scheme = Scheme::of(p).unwrap();
    let tap = p.find_plugin("tap-x", None).unwrap();
    Derivation::of_source(&scheme, tap, Some(&["users".into(), "events".into()])).unwrap()
}

fn label_of<'a>(labels: &'a [StreamLabel], stream: &str) -> &'a StreamLabel {
    labels.iter().find(|l| l.stream == stream).unwrap()
}

#[test]
fn a_labelled_field_raises_its_stream_and_only_its_stream() {
    let (_d, p) = project(BASE);
    let labels = users(&p).labels();
    assert_eq!(label_of(&labels, "users").label, "confidential");
    assert_eq!(label_of(&labels, "users").because, "field `ssn` of `tap-x`");
    assert_eq!(label_of(&labels, "events").label, "internal");
}

#[test]
fn set_null_removes_the_field_and_hashing_keeps_it() {
    let (_d, p) = project(BASE);
    let mask = |kind: &str| {
        FieldMask::from_config(&serde_json::json!({"transformations": [
            {"tap_stream_name": "users", "field_id": "ssn", "type": kind}
        ]}))
        .unwrap()
    };
    let mut d = users(&p);
    d.through(&mask("SET-NULL"));
    assert_eq!(label_of(&d.labels(), "users").label, "internal");
    let mut d = users(&p);
    d.through(&mask("HASH"));
    assert_eq!(label_of(&d.labels(), "users").label, "confidential");
    // A mask with a condition leaves the value on some records.
    let conditional = FieldMask::from_config(&serde_json::json!({"transformations": [
        {"tap_stream_name": "users", "field_id": "ssn", "type": "SET-NULL",
         "when": [{"column": "kind", "equals": "x"}]}
    ]}))
    .unwrap();
    let mut d = users(&p);
    d.through(&conditional);
    assert_eq!(label_of(&d.labels(), "users").label, "confidential");
}

#[test]
fn stream_maps_follow_fields_through_drops_renames_and_expressions() {
    let (_d, p) = project(BASE);
    let maps = |cfg: serde_json::Value| StreamMaps::from_config(&cfg).unwrap();
    let mut d = users(&p);
    d.through(&maps(
        serde_json::json!({"stream_maps": {"users": {"ssn": null}}}),
    ));
    assert_eq!(label_of(&d.labels(), "users").label, "internal");
    // Hashed into a new property: still there.
    let mut d = users(&p);
    d.through(&maps(
        serde_json::json!({"stream_maps": {"users": {"ssn": null, "h": "md5(ssn)"}}}),
    ));
    assert_eq!(label_of(&d.labels(), "users").label, "confidential");
    // Renamed stream and a copy into a second stream keep the label.
    let mut d = users(&p);
    d.through(&maps(serde_json::json!({"stream_maps": {
        "users": {"__alias__": "people"},
        "copy": {"__source__": "users"}
    }})));
    let labels = d.labels();
    assert_eq!(label_of(&labels, "people").label, "confidential");
    assert_eq!(label_of(&labels, "copy").label, "confidential");
    // A map that reads the whole record carries everything.
    let mut d = users(&p);
    d.through(&maps(
        serde_json::json!({"stream_maps": {"users": {"ssn": null, "j": "json.dumps(record)"}}}),
    ));
    assert_eq!(label_of(&d.labels(), "users").label, "confidential");
}

#[test]
fn a_mapper_process_gets_the_highest_label_of_all_it_receives() {
    let (_d, p) = project(BASE);
    let mut d = users(&p);
    d.through_process("mapper-z");
    let labels = d.labels();
    assert_eq!(labels.len(), 1);
    assert_eq!(labels[0].stream, OTHER_STREAMS);
    assert_eq!(labels[0].label, "confidential");
    assert!(
        labels[0].because.contains("mapper `mapper-z`"),
        "{labels:?}"
    );
}

#[test]
fn enforcement_names_stream_label_field_and_clearance() {
    let (_d, p) = project(BASE);
    let scheme = Scheme::of(&p).unwrap();
    let loader = p.find_plugin("target-y", None).unwrap();
    let c = clearance(&p, &scheme, loader).unwrap().unwrap();
    let e = enforce(&users(&p).labels(), "target-y", &c).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert_eq!(
        e.message(),
        "stream `users` is labelled `confidential`, above the clearance of loader `target-y` (`internal`)"
    );
    assert_eq!(
        e.details()[0],
        "the label comes from field `ssn` of `tap-x`"
    );
}

#[test]
fn an_unclassified_project_checks_nothing_and_a_loader_without_clearance_gets_the_lowest() {
    let (_d, p) =
        project("plugins:\n  extractors:\n  - name: tap-x\n  loaders:\n  - name: target-y\n");
    let scheme = Scheme::of(&p).unwrap();
    let loader = p.find_plugin("target-y", None).unwrap();
    assert_eq!(clearance(&p, &scheme, loader).unwrap(), None);
    assert!(loaders_without_clearance(&p).is_empty());
    let (_d, p) = project(&BASE.replace("        clearance: internal\n", "        {}\n"));
    let loader = p.find_plugin("target-y", None).unwrap();
    let c = clearance(&p, &Scheme::of(&p).unwrap(), loader)
        .unwrap()
        .unwrap();
    assert_eq!((c.label.name.as_str(), c.declared), ("public", false));
    assert_eq!(loaders_without_clearance(&p), ["target-y"]);
}

#[test]
fn declarations_that_do_not_hold_are_refused() {
    use crate::project::annotations::LabelDecl;
    let decl = |labels: Vec<(&str, u32)>, default: Option<&str>| ClassificationDecl {
        labels: labels
            .into_iter()
            .map(|(n, r)| LabelDecl {
                name: n.into(),
                rank: r,
                visibility: None,
            })
            .collect(),
        default: default.map(str::to_owned),
    };
    let ok = Scheme::from_decl(Some(&decl(
        vec![("open", 0), ("educational", 1), ("secret", 3)],
        Some("educational"),
    )))
    .unwrap();
    assert_eq!(ok.default_label().name, "educational");
    assert_eq!(ok.highest().name, "secret");
    assert_eq!(
        Scheme::from_decl(Some(&decl(vec![("a", 0), ("a", 1)], Some("a")))).unwrap_err(),
        ["label `a` is declared twice"]
    );
    assert_eq!(
        Scheme::from_decl(Some(&decl(vec![("a", 0)], Some("b")))).unwrap_err(),
        ["the default label `b` is not one of the labels"]
    );
    assert!(Scheme::from_decl(Some(&decl(vec![("a", 0)], None))).is_err());
}

#[test]
fn unknown_labels_are_validation_errors_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("meltano.yml"),
        BASE.replace("classification: internal", "classification: secrte"),
    )
    .unwrap();
    let p = Project::check(dir.path()).unwrap();
    let d = p
        .diagnostics()
        .iter()
        .find(|d| d.code == "unknown-classification-label")
        .unwrap();
    assert_eq!(d.pos.unwrap().line, 8);
    assert!(d.message.contains("`secrte`"), "{}", d.message);
    assert!(Project::load(dir.path()).is_err());
}

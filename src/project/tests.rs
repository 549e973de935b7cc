use serde_json::Value as J;

use super::*;

fn project(files: &[(&str, &str)]) -> (tempfile::TempDir, Result<Project>) {
    let tmp = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = tmp.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let root = tmp.path().to_path_buf();
    (tmp, Project::load(&root))
}

#[test]
fn finds_the_project_from_a_subdirectory() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join(PROJECT_FILE), "version: 1\n").unwrap();
    let sub = tmp.path().join("a/b");
    std::fs::create_dir_all(&sub).unwrap();
    assert_eq!(find_root(&sub).unwrap(), tmp.path());
}

#[test]
fn no_project_is_a_config_error_with_a_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let err = find_root(tmp.path()).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.hints()[0].contains("dsm init"));
}

const BASE: &str = "\
plugins:
  extractors:
  - name: tap-base
    namespace: tap_base
    pip_url: tap-base==1.0
    executable: tap-base-exe
    capabilities: [catalog, state]
    settings:
    - name: host
      value: localhost
    - name: password
      sensitive: true
    config:
      host: db
  - name: tap-child
    inherit_from: tap-base
    settings:
    - name: extra
    config:
      extra: 1
";

#[test]
fn inheritance_takes_the_parents_definition() {
    let (_t, p) = project(&[("meltano.yml", BASE)]);
    let p = p.unwrap();
    let child = p.plugin("tap-child").unwrap();
    assert_eq!(
        child.definition,
        Definition::Inherited {
            parent: "tap-base".into()
        }
    );
    // As in Meltano, an inheriting plugin's namespace comes from its own name.
    assert_eq!(child.namespace, "tap_child");
    assert_eq!(child.executable, "tap-base-exe");
    assert_eq!(child.pip_url.as_deref(), Some("tap-base==1.0"));
    assert!(child.has_capability("state"));
    let names: Vec<&str> = child.settings.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["host", "password", "extra"]);
    // Only the child's own config; the parent's comes in through settings resolution.
    assert_eq!(
        J::Object(child.config.clone()),
        serde_json::json!({"extra": 1})
    );
    assert_eq!(p.plugin("tap-base").unwrap().definition, Definition::Custom);
}

#[test]
fn inherit_from_cycle_is_an_error_with_position() {
    let yaml = "plugins:\n  extractors:\n  - name: a\n    inherit_from: b\n  - name: b\n    inherit_from: a\n";
    let (_t, p) = project(&[("meltano.yml", yaml)]);
    let e = p.unwrap_err();
    assert!(e.message().contains("cycle"), "{}", e.message());
    assert!(e.message().contains("line 4"), "{}", e.message());
}

#[test]
fn missing_parent_is_an_error_with_did_you_mean() {
    let yaml = "plugins:\n  extractors:\n  - name: tap-base\n    namespace: x\n  - name: c\n    inherit_from: tap-bse\n";
    let (_t, p) = project(&[("meltano.yml", yaml)]);
    let e = p.unwrap_err();
    assert!(e.message().contains("`tap-bse`"), "{}", e.message());
    assert_eq!(e.hints(), ["did you mean `tap-base`?"]);
}

#[test]
fn inherit_from_with_a_variant_takes_the_known_plugin_not_the_projects() {
    // As in Meltano: a `variant` makes the parent the known plugin of that variant (its lock
    // file, else dsm's catalog), even when the project has a plugin of that name.
    let lock = r#"{"plugin_type": "extractors", "name": "tap-csv", "namespace": "tap_csv",
        "variant": "meltanolabs", "pip_url": "from-the-lock", "executable": "tap-csv",
        "settings": [{"name": "files", "kind": "array"}]}"#;
    let yaml = "plugins:\n  extractors:\n  - name: tap-csv\n    variant: dsm\n  - name: a\n    inherit_from: tap-csv\n    variant: meltanolabs\n  - name: b\n    inherit_from: tap-github\n  - name: c\n    inherit_from: tap-csv\n";
    let (_t, p) = project(&[
        ("meltano.yml", yaml),
        ("plugins/extractors/tap-csv--meltanolabs.lock", lock),
    ]);
    let p = p.unwrap();
    let a = p.plugin("a").unwrap();
    assert_eq!(a.pip_url.as_deref(), Some("from-the-lock"));
    assert!(
        matches!(a.definition, Definition::Locked { .. }),
        "{:?}",
        a.definition
    );
    assert_eq!(a.parent, None);
    // Not in the project and no variant: the catalog's default variant of that name.
    let b = p.plugin("b").unwrap();
    assert_eq!(b.definition, Definition::Catalog);
    assert_eq!(b.variant.as_deref(), Some("meltanolabs"));
    assert_eq!(b.executable, "tap-github");
    // No variant and in the project: the project's plugin, as before.
    let c = p.plugin("c").unwrap();
    assert_eq!(
        c.definition,
        Definition::Inherited {
            parent: "tap-csv".into()
        }
    );
}

#[test]
fn inherit_from_an_unknown_variant_is_an_error_listing_the_known_ones() {
    let yaml = "plugins:\n  extractors:\n  - name: tap-csv\n    variant: dsm\n  - name: a\n    inherit_from: tap-csv\n    variant: nope\n";
    let (_t, p) = project(&[("meltano.yml", yaml)]);
    let e = p.unwrap_err();
    assert!(
        e.message()
            .contains("inherits from `tap-csv` variant `nope`"),
        "{}",
        e.message()
    );
    assert!(e.message().contains("line 7"), "{}", e.message());
    assert!(
        e.hints()[0].contains("`dsm`, `meltanolabs`"),
        "{:?}",
        e.hints()
    );
}

#[test]
fn shadowing_plugin_reads_its_lock_file() {
    let lock = r#"{"plugin_type": "loaders", "name": "target-jsonl", "namespace": "target_jsonl",
        "variant": "andyh1203", "pip_url": "target-jsonl", "settings": [{"name": "destination_path", "value": "output"}]}"#;
    let yaml = "plugins:\n  loaders:\n  - name: target-jsonl\n    variant: andyh1203\n";
    let (_t, p) = project(&[
        ("meltano.yml", yaml),
        ("plugins/loaders/target-jsonl--andyh1203.lock", lock),
    ]);
    let p = p.unwrap();
    let t = p.plugin("target-jsonl").unwrap();
    assert_eq!(
        t.definition,
        Definition::Locked {
            lock_file: "plugins/loaders/target-jsonl--andyh1203.lock".into()
        }
    );
    assert_eq!(t.namespace, "target_jsonl");
    assert_eq!(t.settings[0].name, "destination_path");
}

#[test]
fn include_paths_merge_plugins_and_an_empty_glob_is_an_error() {
    let main = "include_paths: ['./sub/*.meltano.yml']\nplugins:\n  loaders:\n  - name: l\n    namespace: l\n";
    let inc = "plugins:\n  extractors:\n  - name: e\n    namespace: e\njobs:\n- name: j\n  tasks: [e l]\n";
    let (_t, p) = project(&[("meltano.yml", main), ("sub/x.meltano.yml", inc)]);
    let p = p.unwrap();
    assert!(p.plugin("e").is_ok());
    assert_eq!(p.job("j").unwrap().task_list(), ["e l"]);

    let (_t, p) = project(&[("meltano.yml", "include_paths: ['./nothing/*.yml']\n")]);
    let e = p.unwrap_err();
    assert!(e.message().contains("matches no file"), "{}", e.message());
}

#[test]
fn errors_in_included_files_name_that_file() {
    let main = "include_paths: ['inc.yml']\n";
    let (_t, p) = project(&[
        ("meltano.yml", main),
        ("inc.yml", "plugins:\n  loader: []\n"),
    ]);
    let e = p.unwrap_err();
    assert!(
        e.message().contains("in inc.yml (line 2, column 3)"),
        "{}",
        e.message()
    );
}

#[test]
fn malformed_yaml_is_an_error_with_position_not_a_panic() {
    let (_t, p) = project(&[("meltano.yml", "plugins:\n  extractors: [\n")]);
    let e = p.unwrap_err();
    assert!(e.message().contains("not valid YAML"), "{}", e.message());
    assert!(e.message().contains("line"), "{}", e.message());
}

#[test]
fn unknown_environment_has_did_you_mean() {
    let (_t, p) = project(&[("meltano.yml", "environments:\n- name: dev\n- name: prod\n")]);
    let p = p.unwrap();
    let choice = EnvironmentChoice {
        flag: Some("prd".into()),
        ..Default::default()
    };
    let e = p.active_environment(&choice).unwrap_err();
    assert_eq!(e.hints(), ["did you mean `prod`?"]);
}

#[test]
fn undeclared_config_key_is_a_warning_with_position() {
    let yaml = "plugins:\n  extractors:\n  - name: t\n    namespace: t\n    settings: [{name: host}]\n    config:\n      hots: x\n";
    let (_t, p) = project(&[("meltano.yml", yaml)]);
    let p = p.unwrap();
    let w = &p.diagnostics()[0];
    assert_eq!(w.severity, Severity::Warning);
    assert_eq!(w.pos, Some(Pos { line: 7, column: 7 }));
    assert_eq!(w.hint.as_deref(), Some("did you mean `host`?"));
}

#[test]
fn dsm_annotations_are_typed_at_every_level() {
    let yaml = "\
annotations:
  dsm:
    merged_streams:
    - name: customers
      key: [email]
      policy: {rule: latest, field: updated_at}
      sources:
      - {extractor: tap-a, stream: users}
plugins:
  extractors:
  - name: tap-a
    namespace: a
    annotations:
      dsm:
        default_loader: target-x
        source: {type: api, provider: stripe}
jobs:
- name: j
  tasks: tap-a target-x
  annotations:
    dsm: {retries: 2, timeout: 5m, depends_on: [k]}
";
    let (_t, p) = project(&[("meltano.yml", yaml)]);
    let p = p.unwrap();
    assert_eq!(p.dsm().merged_streams[0].key, ["email"]);
    assert_eq!(
        p.plugin("tap-a")
            .unwrap()
            .annotations
            .default_loader
            .as_deref(),
        Some("target-x")
    );
    let job = p
        .job("j")
        .unwrap()
        .annotations
        .clone()
        .unwrap()
        .dsm
        .unwrap();
    assert_eq!(job.retries, Some(2));
    assert_eq!(
        job.timeout,
        Some(crate::project::annotations::Duration::Text("5m".into()))
    );
}

#[test]
fn deserialiser_messages_lose_the_values_they_quote() {
    // A value that fails typing may be a secret typed into the wrong key: keep the shape only.
    for (message, kept) in [
        (
            r#"invalid type: string "hunter2", expected a sequence"#,
            "invalid type: string, expected a sequence",
        ),
        (
            "unknown variant `hunter2`, expected one of `a`, `b`",
            "unknown variant, expected one of `a`, `b`",
        ),
        (
            r#"invalid value: integer 4242, expected a boolean"#,
            "invalid value: integer, expected a boolean",
        ),
        ("missing field `name`", "missing field `name`"),
    ] {
        assert_eq!(super::without_values(message), kept);
    }
}

#[test]
fn an_extractor_loader_schedule_missing_transform_is_told_about_transform() {
    let yaml =
        "schedules:\n- name: s\n  extractor: tap-a\n  loader: target-b\n  interval: '@daily'\n";
    let (_t, p) = project(&[("meltano.yml", yaml)]);
    let e = p.unwrap_err();
    let all = format!("{}\n{}", e.message(), e.details().join("\n"));
    assert!(all.contains("missing key `transform`"), "{all}");
    assert!(!all.contains("`job`"), "{all}");
    // A job schedule missing its interval still hears about the interval.
    let yaml = "schedules:\n- name: s\n  job: j\n";
    let (_t, p) = project(&[("meltano.yml", yaml)]);
    let e = p.unwrap_err();
    let all = format!("{}\n{}", e.message(), e.details().join("\n"));
    assert!(all.contains("missing key `interval`"), "{all}");
    assert!(!all.contains("`transform`"), "{all}");
}

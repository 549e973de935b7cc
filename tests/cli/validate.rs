use crate::support::TestProject;

#[test]
fn typo_in_a_structural_key_names_file_line_column_and_suggestion() {
    let p = TestProject::new("plugins:\n  extractor:\n  - name: tap-x\n");
    let out = p.dsm(&["validate"]);
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr.trim_end(),
        "error: unknown key `extractor` under `plugins` in meltano.yml (line 2, column 3)\n\nhint: did you mean `extractors`?"
    );
}

#[test]
fn every_error_of_the_file_is_reported_at_once() {
    let p = TestProject::new(
        "defualt_environment: dev\nplugins:\n  extractors:\n  - name: tap-x\n    namespace: x\n    select: all\nschedules:\n- name: s\n  job: j\n  interval: sometimes\n",
    );
    let out = p.dsm(&["validate"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .starts_with("error: 3 problems in the project file"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("(line 1, column 1)"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("must be an array, found a string in meltano.yml (line 6, column 13)"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("`schedules[0].interval`"),
        "{}",
        out.stderr
    );
}

#[test]
fn malformed_yaml_is_a_clear_error() {
    let p = TestProject::new("plugins:\n  extractors: [\n");
    let out = p.dsm(&["validate"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("is not valid YAML"), "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[test]
fn undeclared_config_keys_are_warnings_and_json_output_lists_them() {
    let p = TestProject::new(
        "plugins:\n  extractors:\n  - name: tap-x\n    namespace: x\n    settings: [{name: host}]\n    config: {hots: a}\n",
    );
    let out = p.dsm(&["validate", "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let doc = out.json();
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["warnings"], 1);
    assert_eq!(doc["diagnostics"][0]["hint"], "did you mean `host`?");
    assert_eq!(doc["diagnostics"][0]["code"], "undeclared-setting");
    assert_eq!(doc["diagnostics"][0]["severity"], "warning");
    assert!(out.stderr.contains("warning: `hots`"), "{}", out.stderr);
}

#[test]
fn a_glob_that_matches_nothing_is_an_error() {
    let p = TestProject::new("include_paths: ['./extract/*.yml']\n");
    let out = p.dsm(&["validate"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("`./extract/*.yml` matches no file"),
        "{}",
        out.stderr
    );
}

#[test]
fn json_error_output_is_valid_json_on_stdout() {
    let p = TestProject::new("plugins:\n  extractor: []\n");
    let out = p.dsm(&["validate", "--format", "json"]);
    assert_eq!(out.code, 2);
    assert_eq!(out.json()["error"]["exit_code"], 2);
}

#[test]
fn json_lists_every_error_with_position_code_and_hint_and_exits_2() {
    let p = TestProject::new(
        "defualt_environment: dev\nplugins:\n  extractors:\n  - name: tap-x\n    namespace: x\n    select: all\n",
    );
    let out = p.dsm(&["validate", "--format", "json"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let doc = out.json();
    assert_eq!(doc["valid"], false, "{doc}");
    assert_eq!(doc["errors"], 2, "{doc}");
    assert_eq!(doc["error"]["exit_code"], 2, "{doc}");
    let first = &doc["diagnostics"][0];
    assert_eq!(first["file"], "meltano.yml", "{doc}");
    assert_eq!(
        (first["line"].clone(), first["column"].clone()),
        (1.into(), 1.into()),
        "{doc}"
    );
    assert_eq!(first["code"], "unknown-key", "{doc}");
    assert_eq!(first["severity"], "error", "{doc}");
    assert_eq!(
        first["hint"], "did you mean `default_environment`?",
        "{doc}"
    );
    assert_eq!(doc["diagnostics"][1]["code"], "wrong-type", "{doc}");
    assert_eq!(doc["diagnostics"][1]["line"], 6, "{doc}");
}

// Issue 30: "1 jobs", "1 environments".
#[test]
fn issue_30_validate_counts_in_the_singular_for_one() {
    let p = TestProject::new(
        "\
environments:
- name: dev
plugins:
  extractors:
  - name: tap-x
    namespace: tap_x
  loaders:
  - name: target-x
    namespace: target_x
jobs:
- name: j
  tasks: [tap-x target-x]
",
    );
    let out = p.dsm(&["validate"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "meltano.yml is valid: 2 plugins, 1 environment, 1 job, 0 schedules\n"
    );
}

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
        out.stderr.contains("error: 2 problems in the project file"),
        "{}",
        out.stderr
    );
    // A key Meltano accepts at the top of the file is a warning, not an error.
    assert!(
        out.stderr
            .contains("warning: unknown key `defualt_environment` at the top level in meltano.yml (line 1, column 1)"),
        "{}",
        out.stderr
    );
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
    assert_eq!(doc["errors"], 1, "{doc}");
    assert_eq!(doc["warnings"], 1, "{doc}");
    assert_eq!(doc["error"]["exit_code"], 2, "{doc}");
    let first = &doc["diagnostics"][0];
    assert_eq!(first["file"], "meltano.yml", "{doc}");
    assert_eq!(
        (first["line"].clone(), first["column"].clone()),
        (1.into(), 1.into()),
        "{doc}"
    );
    assert_eq!(first["code"], "unknown-key", "{doc}");
    assert_eq!(first["severity"], "warning", "{doc}");
    assert_eq!(
        first["hint"], "Meltano accepts it and dsm ignores it; did you mean `default_environment`?",
        "{doc}"
    );
    assert_eq!(doc["diagnostics"][1]["code"], "wrong-type", "{doc}");
    assert_eq!(doc["diagnostics"][1]["line"], 6, "{doc}");
}

/// A project with the extra keys real Meltano 4.4 runs with (hub and lock-file keys, `_` keys,
/// unknown keys on a plugin, a setting and a schedule). `meltano-compat/projects/extra-keys`
/// holds the same project, checked against Meltano's `config print`.
const EXTRA_KEYS: &str = r#"version: 1
default_environment: dev
project_id: extra-keys
environments:
- name: dev
plugins:
  extractors:
  - name: tap-x
    namespace: tap_x
    executable: tap-x
    hidden: false
    keywords: [database, sql]
    maintenance_status: active
    supported_python_versions: ['3.9', '3.10']
    domain_url: https://example.com
    quality: gold
    _private_note: kept as an extra
    made_up_key: 4
    settings:
    - name: host
      made_up_setting_key: 1
    config:
      host: db.example
jobs:
- name: j
  tasks: [tap-x]
schedules:
- name: s
  interval: '@daily'
  job: j
  made_up_schedule_key: 1
"#;

#[test]
fn extra_keys_meltano_accepts_are_accepted_and_unknown_ones_are_warnings() {
    let p = TestProject::new(EXTRA_KEYS);
    let out = p.dsm(&["validate", "--format", "json"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let doc = out.json();
    assert_eq!(doc["valid"], true, "{doc}");
    let warned: Vec<(String, u64)> = doc["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["severity"], "warning", "{doc}");
            assert_eq!(d["code"], "unknown-key", "{doc}");
            (
                d["message"].as_str().unwrap().to_string(),
                d["line"].as_u64().unwrap(),
            )
        })
        .collect();
    // Meltano's own keys and `_` keys pass without a word; made-up keys are named with their line.
    assert_eq!(
        warned,
        [
            (
                "unknown key `made_up_key` under `plugins.extractors[0]`".to_string(),
                18
            ),
            (
                "unknown key `made_up_setting_key` under `plugins.extractors[0].settings[0]`"
                    .to_string(),
                21
            ),
            (
                "unknown key `made_up_schedule_key` under `schedules[0]`".to_string(),
                31
            ),
        ],
        "{doc}"
    );
    // Every other command reads the project.
    let out = p.dsm(&["config", "print", "tap-x", "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["host"], "db.example");
}

#[test]
fn keys_meltano_rejects_and_unknown_dsm_annotations_stay_errors() {
    // Meltano 4.4 refuses an unknown key on an environment or a job; dsm's own annotations
    // are dsm's to check.
    for (yml, key) in [
        (
            EXTRA_KEYS.replace("- name: dev\n", "- name: dev\n  made_up_env_key: 1\n"),
            "made_up_env_key",
        ),
        (
            EXTRA_KEYS.replace(
                "  tasks: [tap-x]\n",
                "  tasks: [tap-x]\n  made_up_job_key: 1\n",
            ),
            "made_up_job_key",
        ),
        (
            EXTRA_KEYS.replace(
                "    made_up_key: 4\n",
                "    made_up_key: 4\n    annotations:\n      dsm:\n        made_up_dsm_key: 1\n",
            ),
            "made_up_dsm_key",
        ),
    ] {
        let p = TestProject::new(&yml);
        let out = p.dsm(&["validate"]);
        assert_eq!(out.code, 2, "{key}: {}", out.stderr);
        assert!(
            out.stderr.contains(&format!("error: unknown key `{key}`")),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn validate_reports_what_would_break_at_run_time_with_file_line_and_hint() {
    let p = TestProject::new(
        "\
version: 1
include_paths: [./schedules.meltano.yml]
plugins:
  extractors:
  - name: tap-x
    namespace: tap_x
  loaders:
  - name: target-y
    namespace: target_y
jobs:
- name: load
  tasks:
  - tap-x target-yy
- name: a
  tasks: [tap-x target-y]
  annotations:
    dsm:
      depends_on: [b]
- name: b
  tasks: [tap-x target-y]
  annotations:
    dsm:
      depends_on: [a]
",
    );
    p.write(
        "schedules.meltano.yml",
        "\
schedules:
- name: nightly
  interval: '@daily'
  job: laod
- name: odd
  interval: 61 * * * *
  extractor: tap-x
  loader: target-y
  transform: skip
",
    );
    let out = p.dsm(&["validate", "--format", "json"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let doc = out.json();
    let found: Vec<(String, String, u64, String)> = doc["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["code"].as_str().unwrap().to_string(),
                d["file"].as_str().unwrap().to_string(),
                d["line"].as_u64().unwrap_or(0),
                d["hint"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let has = |code: &str, file: &str, line: u64, hint: &str| {
        assert!(
            found
                .iter()
                .any(|(c, f, l, h)| c == code && f == file && *l == line && h.contains(hint)),
            "no {code} at {file}:{line} with hint `{hint}` in {doc:#}"
        );
    };
    has(
        "unknown-task",
        "meltano.yml",
        12,
        "did you mean `target-y`?",
    );
    has(
        "unknown-job",
        "schedules.meltano.yml",
        4,
        "did you mean `load`?",
    );
    has(
        "invalid-interval",
        "schedules.meltano.yml",
        6,
        "cron fields",
    );
    // Messages speak of the project, never of a library's types.
    for d in doc["diagnostics"].as_array().unwrap() {
        let m = d["message"].as_str().unwrap();
        assert!(!m.contains("Error(") && !m.contains("Policy"), "{m}");
    }
    // With valid schedules, a `depends_on` cycle is found too.
    std::fs::remove_file(p.root().join("schedules.meltano.yml")).unwrap();
    let yml = p
        .read("meltano.yml")
        .replace("include_paths: [./schedules.meltano.yml]\n", "")
        .replace("target-yy", "target-y");
    p.write("meltano.yml", &yml);
    let out = p.dsm(&["validate"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("flows depend on each other in a cycle: a → b → a in meltano.yml"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("hint: remove one `depends_on` entry along the cycle"),
        "{}",
        out.stderr
    );
}

#[test]
fn duplicates_in_one_file_are_errors_with_the_line_of_the_second() {
    let p = TestProject::new(
        "\
plugins:
  extractors:
  - name: tap-x
    namespace: tap_x
  - name: tap-x
    namespace: tap_x
jobs:
- name: j
  tasks: [tap-x]
- name: j
  tasks: [tap-x]
",
    );
    let out = p.dsm(&["validate"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("extractor `tap-x` is defined twice in meltano.yml (line 5, column 5)"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("job `j` is defined twice in meltano.yml (line 10, column 3)"),
        "{}",
        out.stderr
    );
    // A key twice in one mapping: named in words, not with the parser's option names.
    let p = TestProject::new(
        "plugins:\n  extractors:\n  - name: tap-x\n    namespace: a\n    namespace: b\n",
    );
    let out = p.dsm(&["validate"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("the key `namespace` appears twice in the same mapping"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("Policy"), "{}", out.stderr);
}

#[test]
fn validate_reports_values_of_the_wrong_kind_and_stream_maps_that_cannot_run() {
    let p = TestProject::new(
        "\
plugins:
  extractors:
  - name: tap-x
    namespace: tap_x
    settings:
    - {name: port, kind: integer}
    - {name: ssl, kind: boolean}
    - {name: host}
    - {name: stream_maps, kind: object}
    config:
      port: abc
      ssl: $TAP_X_SSL
      host: 1
      stream_maps:
        users:
          x: 'len(name)'
  mappers:
  - name: meltano-map-transformer
    namespace: meltano_map_transformer
    pip_url: meltano-map-transform
    mappings:
    - name: hide
      config:
        stream_maps:
          users:
            y: '1 +'
",
    );
    let out = p.dsm(&["validate", "--format", "json"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let doc = out.json();
    let found: Vec<(String, u64, String)> = doc["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["code"].as_str().unwrap().to_string(),
                d["line"].as_u64().unwrap_or(0),
                d["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let has = |code: &str, line: u64, text: &str| {
        assert!(
            found
                .iter()
                .any(|(c, l, m)| c == code && *l == line && m.contains(text)),
            "no {code} at line {line} with `{text}` in {doc:#}"
        );
    };
    has(
        "wrong-kind",
        11,
        "setting `port` of extractor `tap-x` is of kind `integer`",
    );
    has(
        "invalid-stream-map",
        14,
        "uses `len`, which the Singer SDK's stream maps do not have",
    );
    has("invalid-stream-map", 21, "mapping `hide`");
    // An environment variable reference is checked when the run resolves it; a string setting
    // takes any value.
    assert_eq!(
        found.iter().filter(|(c, _, _)| c == "wrong-kind").count(),
        1,
        "{doc:#}"
    );
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

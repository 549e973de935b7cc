use super::*;
use crate::project::EnvironmentChoice;

const YAML: &str = "\
env:
  PROJ: projval
environments:
- name: dev
  env:
    ENV_LEVEL: from-dev
  config:
    plugins:
      extractors:
      - name: tap-x
        config:
          port: 7
plugins:
  extractors:
  - name: tap-x
    namespace: tap_x
    settings:
    - name: host
      value: localhost
    - name: port
      kind: integer
    - name: password
      kind: password
    - name: flag
      kind: boolean
    - name: start
      kind: date_iso8601
    - name: choice
      kind: options
      options: [{label: A, value: a}, {label: B, value: b}]
    - name: aliased
      aliases: [old_name]
      env: CUSTOM_VAR
    config:
      password: hunter2
      expanded: ${PROJ}-$HOME-\\$x-\\$HOME
      only_missing: $DSM_TEST_SURELY_UNDEFINED
      nested:
        b: 2
      old_name: via-alias
  - name: tap-y
    inherit_from: tap-x
    config:
      host: other
";

fn setup(dotenv: Option<&str>) -> (tempfile::TempDir, Project) {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("meltano.yml"), YAML).unwrap();
    if let Some(d) = dotenv {
        std::fs::write(tmp.path().join(".env"), d).unwrap();
    }
    let p = Project::load(tmp.path()).unwrap();
    (tmp, p)
}

fn run(
    p: &Project,
    plugin: &str,
    env: Option<&str>,
    vars: &[(&str, &str)],
) -> Result<ResolvedSettings> {
    let environment = p
        .active_environment(&EnvironmentChoice {
            flag: env.map(String::from),
            ..Default::default()
        })
        .unwrap();
    let mut process_env: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    process_env.insert("HOME".into(), "/home/me".into());
    let inputs = Inputs {
        environment,
        process_env,
        dotenv: p.dotenv().unwrap().into_iter().collect(),
        store: &NoStore,
    };
    resolve(p, p.plugin(plugin).unwrap(), &inputs)
}

#[test]
fn precedence_follows_meltano_and_keeps_the_origin() {
    let (_t, p) = setup(Some("TAP_X_HOST=from-dotenv\n"));
    let r = run(&p, "tap-x", Some("dev"), &[]).unwrap();
    assert_eq!(r.get("host").unwrap().source, Source::Dotenv);
    assert_eq!(r.get("port").unwrap().value, Some(J::from(7)));
    assert_eq!(r.get("port").unwrap().source, Source::Environment);

    let r = run(
        &p,
        "tap-x",
        Some("dev"),
        &[("TAP_X_HOST", "from-shell"), ("TAP_X_PORT", "9")],
    )
    .unwrap();
    assert_eq!(r.get("host").unwrap().value, Some(J::from("from-shell")));
    assert_eq!(r.get("host").unwrap().source, Source::Env);
    assert_eq!(
        r.get("port").unwrap().value,
        Some(J::from(9)),
        "env var is cast to integer"
    );

    let (_t2, p) = setup(None);
    let r = run(&p, "tap-x", None, &[]).unwrap();
    assert_eq!(r.get("host").unwrap().source, Source::Default);
    assert_eq!(r.get("port").unwrap().source, Source::Unset);
}

#[test]
fn system_store_sits_between_meltano_yml_and_the_default() {
    struct Store;
    impl SystemStore for Store {
        fn plugin_values(&self, _: PluginType, plugin: &str) -> crate::error::Result<Object> {
            assert_eq!(plugin, "tap-x");
            Ok(
                serde_json::json!({"host": "from-store", "password": "not-this"})
                    .as_object()
                    .unwrap()
                    .clone(),
            )
        }
    }
    let (_t, p) = setup(None);
    let inputs = Inputs {
        environment: None,
        process_env: BTreeMap::new(),
        dotenv: BTreeMap::new(),
        store: &Store,
    };
    let r = resolve(&p, p.plugin("tap-x").unwrap(), &inputs).unwrap();
    assert_eq!(r.get("host").unwrap().source, Source::SystemStore);
    assert_eq!(r.get("password").unwrap().source, Source::MeltanoYml);
}

#[test]
fn child_inherits_parent_values_and_reads_namespace_variables() {
    let (_t, p) = setup(None);
    let r = run(&p, "tap-y", Some("dev"), &[("TAP_X_FLAG", "yes")]).unwrap();
    assert_eq!(r.get("host").unwrap().value, Some(J::from("other")));
    assert_eq!(r.get("port").unwrap().source, Source::Inherited);
    assert_eq!(r.get("port").unwrap().value, Some(J::from(7)));
    // As in Meltano, an inheriting plugin's namespace is its own (`tap_y`): the parent's
    // variable reaches it through the inherited layer, below anything the child sets.
    assert_eq!(r.get("flag").unwrap().value, Some(J::Bool(true)));
    assert_eq!(r.get("flag").unwrap().source, Source::Inherited);
    let r = run(&p, "tap-y", Some("dev"), &[("TAP_X_HOST", "parent-env")]).unwrap();
    assert_eq!(r.get("host").unwrap().value, Some(J::from("other")));
    let r = run(&p, "tap-y", Some("dev"), &[("TAP_Y_HOST", "own-env")]).unwrap();
    assert_eq!(r.get("host").unwrap().value, Some(J::from("own-env")));
    assert_eq!(r.get("host").unwrap().source, Source::Env);
}

#[test]
fn expansion_escapes_and_undefined_variables() {
    let (_t, p) = setup(None);
    let r = run(&p, "tap-x", None, &[]).unwrap();
    assert_eq!(
        r.get("expanded").unwrap().value,
        Some(J::from("projval-/home/me-\\$x-$HOME"))
    );
    assert_eq!(r.get("only_missing").unwrap().value, None);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("$DSM_TEST_SURELY_UNDEFINED")),
        "{:?}",
        r.warnings
    );
}

#[test]
fn strict_env_var_mode_makes_undefined_variables_errors() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("meltano.yml"),
        format!("ff:\n  strict_env_var_mode: true\n{YAML}"),
    )
    .unwrap();
    let p = Project::load(tmp.path()).unwrap();
    let e = run(&p, "tap-x", None, &[]).unwrap_err();
    assert!(
        e.message().contains("$DSM_TEST_SURELY_UNDEFINED"),
        "{}",
        e.message()
    );
}

#[test]
fn nested_and_alias_keys() {
    let (_t, p) = setup(None);
    let r = run(&p, "tap-x", None, &[("TAP_X_NESTED_B", "3")]).unwrap();
    assert_eq!(r.get("nested.b").unwrap().value, Some(J::from("3")));
    assert_eq!(r.get("aliased").unwrap().value, Some(J::from("via-alias")));
    let config = r.config_json();
    assert_eq!(config["nested"], serde_json::json!({"b": "3"}));
    assert_eq!(config["aliased"], J::from("via-alias"));
}

#[test]
fn bad_values_are_clear_errors_and_secrets_stay_masked() {
    let (_t, p) = setup(None);
    let e = run(&p, "tap-x", None, &[("TAP_X_PORT", "seven")]).unwrap_err();
    assert_eq!(
        e.message(),
        "setting `port` of `tap-x` must be an integer, but its value from environment is \"seven\""
    );
    let e = run(&p, "tap-x", None, &[("TAP_X_CHOICE", "c")]).unwrap_err();
    assert!(e.hints()[0].contains("\"a\""), "{:?}", e.hints());
    let e = run(&p, "tap-x", None, &[("TAP_X_START", "someday")]).unwrap_err();
    assert!(e.message().contains("ISO 8601"));
    // A relative date is accepted and reaches the config file as an ISO time.
    let r = run(&p, "tap-x", None, &[("TAP_X_START", "yesterday")]).unwrap();
    assert_eq!(r.get("start").unwrap().value, Some(J::from("yesterday")));
    let start = r.config_json()["start"].as_str().unwrap().to_string();
    assert!(
        chrono::NaiveDateTime::parse_from_str(&start, "%Y-%m-%dT%H:%M:%S%.f").is_ok(),
        "{start}"
    );
    let r = run(&p, "tap-x", None, &[]).unwrap();
    assert_eq!(r.config_json_masked(true)["password"], J::from(MASK));
    assert_eq!(r.config_json()["password"], J::from("hunter2"));
    assert!(r.plugin_env(true).iter().all(|(_, v)| v != "hunter2"));
}

#[test]
fn plugin_env_uses_meltanos_names() {
    let (_t, p) = setup(None);
    let r = run(&p, "tap-y", None, &[]).unwrap();
    let env: BTreeMap<String, String> = r.plugin_env(false).into_iter().collect();
    assert_eq!(env["TAP_Y_HOST"], "other");
    assert_eq!(env["TAP_X_HOST"], "other");
    assert_eq!(env["MELTANO_EXTRACT_HOST"], "other");
    assert_eq!(env["TAP_Y_NESTED_B"], "2");
    assert_eq!(env["CUSTOM_VAR"], "via-alias");
}

#[test]
fn env_var_names_are_built_like_meltano() {
    assert_eq!(env_var_name("tap-x", "a.b"), "TAP_X_A_B");
    assert_eq!(env_var_name("tap_x", "_select"), "TAP_X__SELECT");
}

#[test]
fn arrays_and_objects_reach_variables_as_python_writes_them() {
    let v: J = serde_json::from_str(
        r#"{"b": [1, "x", true, null], "a": {"é": "tab\there", "q": "\"😀\u007f"}}"#,
    )
    .unwrap();
    assert_eq!(
        env_text(&v),
        r#"{"b": [1, "x", true, null], "a": {"\u00e9": "tab\there", "q": "\"\ud83d\ude00\u007f"}}"#
    );
    assert_eq!(env_text(&J::from("plain")), "plain");
    assert_eq!(env_text(&J::Null), "");
}

const PROCESSED: &str = "\
plugins:
  extractors:
  - name: tap-p
    namespace: tap_p
    settings:
    - name: region
      value_processor: upcase_string
    - name: opts
      kind: object
      value_processor: nest_object
    - name: label
      value_post_processor: upcase_string
    - name: blob
      kind: object
      value_post_processor: stringify
    - name: api_key
      annotations:
        dsm:
          sensitive: true
    config:
      region: eu-west
      opts: {a.b: 1, a.c: 2}
      label: quiet
      blob: {k: [1, 2]}
      api_key: s3cr3t
";

#[test]
fn value_processors_and_a_setting_marked_sensitive_in_annotations() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("meltano.yml"), PROCESSED).unwrap();
    let p = Project::load(tmp.path()).unwrap();
    let inputs = |vars: &[(&str, &str)]| Inputs {
        environment: None,
        process_env: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        dotenv: BTreeMap::new(),
        store: &NoStore,
    };
    let r = resolve(&p, p.plugin("tap-p").unwrap(), &inputs(&[])).unwrap();
    // The processor changes the typed value; the post-processor only what the plugin gets.
    assert_eq!(r.get("region").unwrap().value, Some(J::from("EU-WEST")));
    assert_eq!(
        r.get("opts").unwrap().value,
        Some(serde_json::json!({"a": {"b": 1, "c": 2}}))
    );
    assert_eq!(r.get("label").unwrap().value, Some(J::from("quiet")));
    let config = r.config_json();
    assert_eq!(config["label"], J::from("QUIET"));
    assert_eq!(config["blob"], J::from(r#"{"k": [1, 2]}"#));
    assert_eq!(config["api_key"], J::from("s3cr3t"));
    assert!(r.get("api_key").unwrap().sensitive);
    assert_eq!(r.config_json_masked(true)["api_key"], J::from(MASK));
    assert!(r.plugin_env(true).iter().all(|(_, v)| v != "s3cr3t"));
    // A processor that does not exist stops the project from loading, naming the line.
    let bad = PROCESSED.replace("value_processor: upcase_string", "value_processor: shout");
    std::fs::write(tmp.path().join("meltano.yml"), bad).unwrap();
    let e = Project::load(tmp.path()).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(e.message().contains("\"shout\""), "{}", e.message());
    assert!(e.message().contains("line 7"), "{}", e.message());
}

// Issue 19: the `env:` blocks are expanded once, with the settings: the variables a plugin
// gets carry the project's block, `.env` (over it, unless the shell sets the variable) and the
// environment's block, and under `ff.strict_env_var_mode` an undefined variable in a block is
// an error before anything runs.
#[test]
fn env_overlay_comes_from_the_one_resolution_with_its_checks() {
    let (_t, p) = setup(Some("PROJ=from-dotenv\nONLY_DOTENV=d\n"));
    let r = run(&p, "tap-x", Some("dev"), &[]).unwrap();
    let env = &r.env_overlay;
    assert_eq!(env["PROJ"], "from-dotenv");
    assert_eq!(env["ONLY_DOTENV"], "d");
    assert_eq!(env["ENV_LEVEL"], "from-dev");
    assert_eq!(env["MELTANO_ENVIRONMENT"], "dev");
    // The shell's own value wins over `.env`: the variable is inherited, not set.
    let r = run(&p, "tap-x", Some("dev"), &[("ONLY_DOTENV", "shell")]).unwrap();
    assert!(!r.env_overlay.contains_key("ONLY_DOTENV"));

    let tmp = tempfile::tempdir().unwrap();
    let yaml = format!(
        "{}ff:\n  strict_env_var_mode: true\n",
        YAML.replace("  PROJ: projval", "  PROJ: ${DSM_TEST_NOT_SET_ANYWHERE}")
    );
    std::fs::write(tmp.path().join("meltano.yml"), yaml).unwrap();
    let p = Project::load(tmp.path()).unwrap();
    let e = run(&p, "tap-y", None, &[]).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(
        e.message()
            .contains("`env` variable `PROJ` refers to `$DSM_TEST_NOT_SET_ANYWHERE`"),
        "{}",
        e.message()
    );
}

use crate::support::TestProject;

const YML: &str = "\
# keep this comment
default_environment: dev
environments:
- name: dev
  config:
    plugins:
      extractors:
      - name: tap-x
        config:
          port: 7
- name: prod
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
      sensitive: true
    config:
      password: hunter2
";

#[test]
fn print_uses_an_environment_only_when_named() {
    let p = TestProject::new(YML);
    let out = p.dsm(&["config", "--unsafe", "print", "tap-x"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.json(),
        serde_json::json!({"host": "localhost", "password": "hunter2"})
    );
    let out = p.dsm(&[
        "--environment",
        "dev",
        "config",
        "print",
        "tap-x",
        "--format",
        "json",
    ]);
    assert_eq!(
        out.json(),
        serde_json::json!({"host": "localhost", "port": 7, "password": "********"})
    );
    let p = p.env("MELTANO_ENVIRONMENT", "dev").env("TAP_X_HOST", "h");
    let out = p.dsm(&["config", "print", "tap-x"]);
    assert_eq!(out.json()["port"], 7);
    assert_eq!(out.json()["host"], "h");
}

#[test]
fn secrets_are_masked_in_list_and_env_output() {
    let p = TestProject::new(YML);
    for args in [
        vec!["config", "list", "tap-x"],
        vec!["config", "list", "tap-x", "--format", "json"],
        vec!["config", "print", "tap-x", "--format", "env"],
    ] {
        let out = p.dsm(&args);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        assert!(
            !out.stdout.contains("hunter2") && !out.stderr.contains("hunter2"),
            "{args:?}: {}",
            out.stdout
        );
    }
    let out = p.dsm(&["config", "print", "tap-x", "--format", "env"]);
    assert!(
        out.stdout.contains("TAP_X_HOST='localhost'\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("MELTANO_EXTRACT_HOST='localhost'\n"),
        "{}",
        out.stdout
    );
    let out = p.dsm(&["config", "list", "tap-x", "--format", "json"]);
    let host = &out.json()["settings"][0];
    assert_eq!(host["source"], "default");
    assert_eq!(host["env_var"], "TAP_X_HOST");
}

#[test]
fn set_writes_where_meltano_would_and_keeps_comments() {
    let p = TestProject::new(YML);
    let out = p.dsm(&["config", "set", "tap-x", "host", "db.example.com"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let yml = p.read("meltano.yml");
    assert!(yml.starts_with("# keep this comment\n"), "{yml}");
    assert!(yml.contains("      host: db.example.com\n"), "{yml}");

    // With an environment named, the value goes to its block.
    let out = p.dsm(&[
        "--environment",
        "dev",
        "config",
        "set",
        "tap-x",
        "port",
        "9",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(p.read("meltano.yml").contains("          port: 9\n"));

    // A sensitive value never goes into meltano.yml, and is never echoed.
    let out = p.dsm(&["config", "set", "tap-x", "password", "s3cret"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!p.read("meltano.yml").contains("s3cret"));
    assert!(!out.stderr.contains("s3cret"));
    assert_eq!(p.read(".env"), "TAP_X_PASSWORD='s3cret'\n");
    let out = p.dsm(&["config", "--unsafe", "print", "tap-x"]);
    assert_eq!(out.json()["password"], "s3cret");
    assert_eq!(out.json()["host"], "db.example.com");
}

#[test]
fn set_rejects_a_bad_value_for_the_kind() {
    let p = TestProject::new(YML);
    let out = p.dsm(&["config", "set", "tap-x", "port", "seven"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("must be an integer"), "{}", out.stderr);
    assert_eq!(p.read("meltano.yml"), YML);
}

#[test]
fn unset_and_reset_remove_values() {
    let p = TestProject::new(YML);
    let out = p.dsm(&["config", "unset", "tap-x", "password"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = p.dsm(&["config", "--unsafe", "print", "tap-x"]);
    assert_eq!(out.json(), serde_json::json!({"host": "localhost"}));
    p.dsm(&["config", "set", "tap-x", "host", "h"]);
    let out = p.dsm(&["config", "reset", "tap-x"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        p.dsm(&["config", "print", "tap-x"]).json(),
        serde_json::json!({"host": "localhost"})
    );
    assert_eq!(p.dsm(&["validate"]).code, 0);
}

#[test]
fn unknown_plugin_and_environment_have_hints() {
    let p = TestProject::new(YML);
    let out = p.dsm(&["config", "print", "tap-y"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("hint: did you mean `tap-x`?"),
        "{}",
        out.stderr
    );
    let out = p.dsm(&["--environment", "prd", "config", "print", "tap-x"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("hint: did you mean `prod`?"),
        "{}",
        out.stderr
    );
}

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

    // A sensitive value goes to the encrypted store by default; without a master key that is
    // an error that says how to create one, or how to write `.env` like Meltano.
    let out = p.dsm(&["config", "set", "tap-x", "password", "s3cret"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("dsm secrets init"), "{}", out.stderr);
    assert!(out.stderr.contains("--store dotenv"), "{}", out.stderr);
    assert!(!p.root().join(".env").exists());

    // With `--store dotenv` it never goes into meltano.yml, and is never echoed.
    let out = p.dsm(&[
        "config", "set", "--store", "dotenv", "tap-x", "password", "s3cret",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("shell history"), "{}", out.stderr);
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
    assert!(
        out.stderr
            .contains("setting `port` of `tap-x` is of kind `integer` and takes a whole number; `seven` is not"),
        "{}",
        out.stderr
    );
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

/// Runs dsm in the project with `input` on standard input.
fn dsm_stdin(p: &TestProject, args: &[&str], input: &str) -> crate::support::Output {
    use std::io::Write;
    let mut cmd = p.command(args);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("dsm starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .expect("dsm reads its input");
    let out = child.wait_with_output().expect("dsm finishes");
    crate::support::Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A project whose master key is a key file in the project's temp dir.
fn with_key(yml: &str) -> TestProject {
    let p = TestProject::new(yml);
    let key = p.root().join(".test-config/master.key");
    let key = key.to_str().expect("temp paths are UTF-8");
    let p = p.env("DSM_MASTER_KEY_FILE", key);
    let out = p.dsm(&["secrets", "init", "--key-file", key]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    p
}

const SECRET_YML: &str = "\
plugins:
  extractors:
  - name: tap-x
    namespace: tap_x
    settings:
    - name: host
    - name: password
      sensitive: true
";

#[test]
fn sensitive_set_goes_to_the_encrypted_store_which_sits_below_the_shell() {
    let p = with_key(SECRET_YML);
    let out = dsm_stdin(
        &p,
        &["config", "set", "tap-x", "password", "--value-stdin"],
        "pa55-in-store\n",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("shell history"), "{}", out.stderr);
    assert!(
        out.stderr.contains("encrypted secret store"),
        "{}",
        out.stderr
    );
    assert!(!p.read("meltano.yml").contains("pa55"));
    assert!(!p.root().join(".env").exists());
    let db = std::fs::read(p.root().join(".dsm/dsm.db")).unwrap();
    assert!(!String::from_utf8_lossy(&db).contains("pa55-in-store"));

    let out = p.dsm(&["config", "list", "tap-x"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(
            "password [env: TAP_X_PASSWORD] current value: (redacted) (from encrypted secret store for the whole project)"
        ),
        "{}",
        out.stdout
    );
    let out = p.dsm(&["config", "list", "tap-x", "--format", "json"]);
    assert_eq!(out.json()["settings"][1]["source"], "secret_store");
    assert_eq!(out.json()["settings"][1]["value"], "********");
    let out = p.dsm(&["config", "--unsafe", "print", "tap-x"]);
    assert_eq!(out.json()["password"], "pa55-in-store");

    // Without the key, masked output still works, a clear value is a clear error.
    let p2 = TestProject::new(SECRET_YML);
    std::fs::create_dir_all(p2.root().join(".dsm")).unwrap();
    std::fs::copy(p.root().join(".dsm/dsm.db"), p2.root().join(".dsm/dsm.db")).unwrap();
    assert_eq!(p2.dsm(&["config", "list", "tap-x"]).code, 0);
    let out = p2.dsm(&["config", "--unsafe", "print", "tap-x"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    // The store names the key it needs and where dsm looked.
    assert!(out.stderr.contains("master key id"), "{}", out.stderr);
    assert!(out.stderr.contains("looked at"), "{}", out.stderr);
    assert!(
        out.stderr.contains("`password` of `tap-x`"),
        "{}",
        out.stderr
    );

    // The shell's variable wins over the store.
    let shell = p.env("TAP_X_PASSWORD", "from-shell");
    assert_eq!(
        shell.dsm(&["config", "--unsafe", "print", "tap-x"]).json()["password"],
        "from-shell"
    );
}

#[test]
fn sensitive_value_as_an_argument_warns_about_shell_history() {
    let p = with_key(SECRET_YML);
    let out = p.dsm(&["config", "set", "tap-x", "password", "argv-secret"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("shell history"), "{}", out.stderr);
    assert!(out.stderr.contains("--value-stdin"), "{}", out.stderr);
    assert!(!out.stderr.contains("argv-secret"), "{}", out.stderr);
    // Refused where it would be plain text in meltano.yml or the database.
    for store in ["meltano_yml", "db"] {
        let out = dsm_stdin(
            &p,
            &[
                "config",
                "set",
                "--store",
                store,
                "tap-x",
                "password",
                "--value-stdin",
            ],
            "x",
        );
        assert_eq!(out.code, 2, "{store}: {}", out.stderr);
    }
}

#[test]
fn history_records_each_change_and_rollback_restores_a_version() {
    let p = with_key(SECRET_YML);
    assert_eq!(p.dsm(&["config", "set", "tap-x", "host", "first"]).code, 0);
    assert_eq!(p.dsm(&["config", "set", "tap-x", "host", "second"]).code, 0);
    let out = dsm_stdin(
        &p,
        &["config", "set", "tap-x", "password", "--value-stdin"],
        "hist-secret",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = p.dsm(&["secrets", "set", "tap-x", "token"]);
    assert_eq!(out.code, 2, "no value on stdin: {}", out.stderr);
    let out = dsm_stdin(&p, &["secrets", "set", "tap-x", "token"], "tok-secret");
    assert_eq!(out.code, 0, "{}", out.stderr);

    let out = p.dsm(&["config", "history", "tap-x", "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let versions = out.json()["versions"].as_array().unwrap().clone();
    let actions: Vec<&str> = versions
        .iter()
        .map(|v| v["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["baseline", "set", "set", "set", "secret.set"]);
    assert_eq!(versions[2]["config"]["meltano.yml"]["host"], "second");
    assert_eq!(versions[3]["secrets"], serde_json::json!(["password"]));
    assert!(!out.stdout.contains("hist-secret") && !out.stdout.contains("tok-secret"));
    let text = p.dsm(&["config", "history", "tap-x"]);
    assert!(text.stdout.contains("VERSION"), "{}", text.stdout);

    // Back to version 2: host `first`, no secrets.
    let out = p.dsm(&["config", "rollback", "tap-x", "--to", "2"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = p.dsm(&["config", "--unsafe", "print", "tap-x"]);
    assert_eq!(out.json(), serde_json::json!({"host": "first"}));
    // And forward again to version 5: the secrets come back, still decryptable.
    let out = p.dsm(&["config", "rollback", "tap-x", "--to", "5"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = p.dsm(&["config", "--unsafe", "print", "tap-x"]);
    assert_eq!(
        out.json(),
        serde_json::json!({"host": "second", "password": "hist-secret", "token": "tok-secret"})
    );

    // A hand edit of the plugin's block since the last version: refused, with a hint.
    let yml = p
        .read("meltano.yml")
        .replace("host: second", "host: by-hand");
    p.write("meltano.yml", &yml);
    let out = p.dsm(&["config", "rollback", "tap-x", "--to", "1"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("edited by hand"), "{}", out.stderr);
    assert!(out.stderr.contains("hint:"), "{}", out.stderr);
    assert!(p.read("meltano.yml").contains("host: by-hand"));
    let out = p.dsm(&["config", "rollback", "tap-x", "--to", "99"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
}

// Issue 30: `config list` showed one variable, no default and not the value as written.
#[test]
fn issue_30_list_shows_defaults_raw_values_and_every_variable() {
    let p = TestProject::new(
        "\
plugins:
  extractors:
  - name: tap-x
    namespace: tap_ex
    settings:
    - name: host
      value: localhost
    - name: port
      kind: integer
      value: 5432
    - name: path
    - name: password
      sensitive: true
      value: default-secret
    config:
      port: 6000
      path: $DATA_DIR/in
      password: $PW
",
    )
    .env("DATA_DIR", "/srv")
    .env("PW", "hunter2");
    let out = p.dsm(&["config", "list", "tap-x"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    insta::assert_snapshot!(out.stdout, @r#"
    Settings:
    host [env: TAP_X_HOST, TAP_EX_HOST] current value: "localhost" (from default)
    port [env: TAP_X_PORT, TAP_EX_PORT] (default: 5432) current value: 6000 (from meltano.yml)
    path [env: TAP_X_PATH, TAP_EX_PATH] current value: "/srv/in" (from meltano.yml: "$DATA_DIR/in")
    password [env: TAP_X_PASSWORD, TAP_EX_PASSWORD] (default: (redacted)) current value: (redacted) (from meltano.yml: (redacted))
    "#);
    let out = p.dsm(&["config", "list", "tap-x", "--format", "json"]);
    let settings = out.json()["settings"].clone();
    assert_eq!(settings[2]["unexpanded"], "$DATA_DIR/in");
    assert_eq!(settings[2]["value"], "/srv/in");
    assert_eq!(
        settings[2]["env_vars"],
        serde_json::json!(["TAP_X_PATH", "TAP_EX_PATH"])
    );
    assert_eq!(settings[0]["unexpanded"], serde_json::Value::Null);
    assert_eq!(settings[3]["unexpanded"], "********");
    assert!(!out.stdout.contains("hunter2") && !out.stdout.contains("default-secret"));
}

// Issue 30: a value the setting's kind refuses was stored, and failed only at the next run.
#[test]
fn issue_30_set_checks_the_kind_at_set_time() {
    let p = with_key(
        "\
plugins:
  extractors:
  - name: tap-x
    namespace: tap_x
    settings:
    - name: flag
      kind: boolean
    - name: mode
      kind: options
      options:
      - {label: Fast, value: fast}
      - {label: Safe, value: safe}
    - name: ratio
      kind: integer
    - name: pin
      kind: integer
      sensitive: true
",
    );
    let before = p.read("meltano.yml");
    for (args, expected) in [
        (
            vec!["config", "set", "tap-x", "flag", "maybe"],
            "setting `flag` of `tap-x` is of kind `boolean` and takes `true` or `false`; `maybe` is not",
        ),
        (
            vec!["config", "set", "tap-x", "mode", "quick"],
            "setting `mode` of `tap-x` is of kind `options` and takes one of its options; `quick` is not",
        ),
        (
            vec!["config", "set", "tap-x", "ratio", "2.5"],
            "setting `ratio` of `tap-x` is of kind `integer` and takes a whole number; `2.5` is not",
        ),
    ] {
        let out = p.dsm(&args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(expected), "{}", out.stderr);
    }
    let out = p.dsm(&["config", "set", "tap-x", "mode", "quick"]);
    assert!(
        out.stderr.contains("use one of: \"fast\", \"safe\""),
        "{}",
        out.stderr
    );
    assert_eq!(p.read("meltano.yml"), before);
    // A sensitive integer through `secrets set`: refused without showing the value.
    let out = dsm_stdin(&p, &["secrets", "set", "tap-x", "pin"], "12ab");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("setting `pin` of `tap-x` is of kind `integer` and takes a whole number; the value given (not shown) is not"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("12ab"), "{}", out.stderr);
    assert_eq!(
        p.dsm(&["secrets", "list", "--format", "json"]).json(),
        serde_json::json!([])
    );
    let out = dsm_stdin(&p, &["secrets", "set", "tap-x", "pin"], "1234");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(p.dsm(&["config", "set", "tap-x", "flag", "yes"]).code, 0);
    // A `$VAR` reference is checked when a run expands it, not at set time.
    let out = p.dsm(&["config", "set", "tap-x", "ratio", "${RATIO}"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        p.read("meltano.yml").contains("${RATIO}"),
        "{}",
        p.read("meltano.yml")
    );
}

// Issue 30: a rollback left empty environment stubs, dropped comments and re-quoted values;
// `config history` did not say in which environment a change was made.
#[test]
fn issue_30_rollback_restores_the_file_byte_for_byte_and_history_names_the_environment() {
    let yml = "\
# the team's project
default_environment: dev
env:
  GREETING: hello $USER
environments:
- name: dev
- name: prod
  env:
    LEVEL: \"3\"
plugins:
  extractors:
  - name: tap-x
    namespace: tap_x
    env:
      FOO: 'bar'
    settings:
    - name: host
    - name: port
      kind: integer
    config:
      host: a   # the first host
";
    let p = TestProject::new(yml).env("USER", "ann");
    assert_eq!(p.dsm(&["config", "set", "tap-x", "port", "1"]).code, 0);
    let out = p.dsm(&[
        "--environment",
        "prod",
        "config",
        "set",
        "tap-x",
        "host",
        "b",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = p.dsm(&["config", "history", "tap-x"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let re = regex::Regex::new(r"\d{4}-\d\d-\d\dT[\d:.]+Z").unwrap();
    insta::assert_snapshot!(re.replace_all(&out.stdout, "[AT]"), @r"
    VERSION  AT                        BY   ENVIRONMENT  ACTION    SETTING  COMMAND
    1        [AT]  ann  -            baseline           dsm config set tap-x port
    2        [AT]  ann  -            set       port     dsm config set tap-x port
    3        [AT]  ann  prod         set       host     dsm config set tap-x host
    ");
    let out = p.dsm(&["config", "history", "tap-x", "--format", "json"]);
    let envs: Vec<serde_json::Value> = out.json()["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["environment"].clone())
        .collect();
    assert_eq!(
        envs,
        [
            serde_json::Value::Null,
            serde_json::Value::Null,
            "prod".into()
        ]
    );

    let out = p.dsm(&["config", "rollback", "tap-x", "--to", "1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(p.read("meltano.yml"), yml);
    // Forward again to version 3, also exactly as it was then.
    let out = p.dsm(&["config", "rollback", "tap-x", "--to", "3"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let now = p.read("meltano.yml");
    assert!(now.contains("host: a   # the first host"), "{now}");
    assert!(now.contains("LEVEL: \"3\""), "{now}");
}

const ENV_SECRET_YML: &str = "\
environments:
- name: dev
- name: prod
plugins:
  extractors:
  - name: tap-x
    namespace: tap_x
    executable: ./tap.sh
    settings:
    - name: password
      sensitive: true
  loaders:
  - name: target-y
    namespace: target_y
    executable: ./target.sh
";

/// Issue 20, point 7: a secret set with `--environment` belongs to that environment; without
/// it, to the whole project. A run in an environment gets its own value, else the project's.
#[test]
fn secrets_are_per_environment_with_the_project_value_as_fallback() {
    let p = with_key(ENV_SECRET_YML);
    // The tap keeps the config it was given, per environment; the target reads nothing.
    crate::support::script(
        &p,
        "tap.sh",
        r#"prev=""
for a in "$@"; do
  if [ "$prev" = "--config" ]; then cp "$a" "$MELTANO_PROJECT_ROOT/seen-${MELTANO_ENVIRONMENT:-none}.json"; fi
  prev="$a"
done
"#,
    );
    crate::support::script(&p, "target.sh", "cat > /dev/null\n");
    let set = |args: &[&str], value: &str| {
        let out = dsm_stdin(&p, args, value);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        out
    };
    let out = set(
        &["config", "set", "tap-x", "password", "--value-stdin"],
        "project-pa55word\n",
    );
    assert!(
        out.stderr.contains("for the whole project"),
        "{}",
        out.stderr
    );
    let out = set(
        &[
            "--environment",
            "prod",
            "config",
            "set",
            "tap-x",
            "password",
            "--value-stdin",
        ],
        "prod-pa55word\n",
    );
    assert!(
        out.stderr.contains("for environment `prod`"),
        "{}",
        out.stderr
    );

    // Which value applies, and from which scope.
    let print = |env: Option<&str>| {
        let mut args = vec![];
        if let Some(e) = env {
            args.extend(["--environment", e]);
        }
        args.extend(["config", "--unsafe", "print", "tap-x"]);
        let out = p.dsm(&args);
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.json()["password"].clone()
    };
    assert_eq!(print(Some("prod")), "prod-pa55word");
    assert_eq!(print(Some("dev")), "project-pa55word");
    assert_eq!(print(None), "project-pa55word");
    let scope = |env: &str| {
        let out = p.dsm(&[
            "--environment",
            env,
            "--format",
            "json",
            "config",
            "list",
            "tap-x",
        ]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let doc = out.json();
        let row = doc["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "password")
            .unwrap()
            .clone();
        (row["source"].clone(), row["scope"].clone())
    };
    assert_eq!(scope("prod"), ("secret_store".into(), "environment".into()));
    assert_eq!(scope("dev"), ("secret_store".into(), "project".into()));
    let out = p.dsm(&["--environment", "prod", "config", "list", "tap-x"]);
    assert!(
        out.stdout
            .contains("(from encrypted secret store for environment `prod`)"),
        "{}",
        out.stdout
    );
    let out = p.dsm(&["secrets", "list"]);
    assert!(
        out.stdout.contains("SCOPE") && out.stdout.contains("environment prod"),
        "{}",
        out.stdout
    );
    let listed = p.dsm(&["--format", "json", "secrets", "list"]).json();
    let scopes: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["environment"].clone())
        .collect();
    assert_eq!(scopes, [serde_json::Value::Null, "prod".into()]);

    // Runs: each environment's tap gets its value.
    for env in ["prod", "dev"] {
        let out = p.dsm(&["--environment", env, "el", "tap-x", "target-y"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let seen = |env: &str| -> serde_json::Value {
        serde_json::from_str(&p.read(&format!("seen-{env}.json"))).unwrap()
    };
    assert_eq!(seen("prod")["password"], "prod-pa55word");
    assert_eq!(seen("dev")["password"], "project-pa55word");

    // The audit log names the scope; unset works per scope.
    let log = p.dsm(&["--format", "json", "audit", "list"]).stdout;
    assert!(log.contains("tap-x.password (environment prod)"), "{log}");
    let out = p.dsm(&[
        "--environment",
        "prod",
        "config",
        "unset",
        "tap-x",
        "password",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(print(Some("prod")), "project-pa55word");
    let out = p.dsm(&["config", "unset", "tap-x", "password"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(print(Some("prod")), serde_json::Value::Null);
}

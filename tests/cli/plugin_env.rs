//! The environment a plugin gets, compared with real Meltano's: the same project is run with
//! `meltano run` and `dsm run`, and the fake tap and target dump the environment and config
//! file they were handed. Needs Meltano in `DSM_TEST_VENV` (fails loudly without it).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

use crate::support::{TestProject, clean_env, meltano_venv, run, script};

const TAP: &str = env!("CARGO_BIN_EXE_dsm-fake-tap");
const TARGET: &str = env!("CARGO_BIN_EXE_dsm-fake-target");

const MELTANO_YML: &str = r#"version: 1
default_environment: dev
project_id: dsm-plugin-env-parity
send_anonymous_usage_stats: false
env:
  PROJECT_VAR: project-level
  SHARED: from-project
  FROM_SHELL: shell-${SHELL_VAR}
environments:
- name: dev
  env:
    ENV_VAR: env-level
    SHARED: from-environment
  config:
    plugins:
      extractors:
      - name: tap-envdump
        config:
          region: eu-west
        env:
          ENV_PLUGIN_VAR: env-plugin
plugins:
  extractors:
  - name: tap-envdump
    namespace: tap_env
    executable: ./tap.sh
    capabilities: [state]
    env:
      PLUGIN_VAR: plugin-${ENV_VAR}
    settings:
    - {name: host}
    - {name: port, kind: integer}
    - {name: region}
    - {name: password, kind: password}
    - {name: options, kind: object}
    config:
      host: db.example
      port: 5432
      options: {ssl: true, name: café}
    load_schema: raw_env
    select: [users.*, '!orders.secret']
    metadata:
      users.id: {is-primary: true}
      users:
        replication-method: INCREMENTAL
    schema:
      users:
        id: {type: integer}
  loaders:
  - name: target-envdump
    namespace: target_env
    executable: ./target.sh
    dialect: sqlite
    settings:
    - {name: schema}
    - {name: api_key, kind: password}
    config:
      schema: $MELTANO_EXTRACT__LOAD_SCHEMA
      api_key: k3y-in-meltano-yml
"#;

/// Variables that carry a secret: Meltano exports them, dsm hands secrets over only in the
/// config file (a deliberate difference).
const SECRET_VARS: &[&str] = &[
    "TAP_ENVDUMP_PASSWORD",
    "TAP_ENV_PASSWORD",
    "MELTANO_EXTRACT_PASSWORD",
    "TARGET_ENVDUMP_API_KEY",
    "TARGET_ENV_API_KEY",
    "MELTANO_LOAD_API_KEY",
];

/// Meltano's own runtime files and Python knobs, which dsm has no use for.
const MELTANO_RUNTIME: &[&str] = &[
    "LOGGING_CONF_FILE",
    "SINGER_SDK_LOG_CONFIG",
    "PYTHONWARNINGS",
];

/// Runs `program run tap-envdump target-envdump` and returns the tap's and target's dumps.
fn run_and_collect(p: &TestProject, mut cmd: Command, who: &str) -> (Value, Value) {
    cmd.env("SHELL_VAR", "from-the-shell")
        .env("MELTANO_SEND_ANONYMOUS_USAGE_STATS", "false")
        .env("MELTANO_DISABLE_TRACKING", "true");
    let out = run(cmd);
    assert_eq!(
        out.code, 0,
        "{who} run failed:\n{}\n{}",
        out.stdout, out.stderr
    );
    let read = |name: &str| -> Value {
        let path = p.root().join(name);
        let doc = serde_json::from_str(&std::fs::read_to_string(&path).expect("dump written"))
            .expect("dump is JSON");
        std::fs::remove_file(path).expect("rm dump");
        doc
    };
    (read("tap-dump.json"), read("target-dump.json"))
}

fn env_of(dump: &Value) -> BTreeMap<String, String> {
    dump["env"]
        .as_object()
        .expect("env")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string").to_string()))
        .collect()
}

/// Whether a variable is one of Meltano's own settings (`MELTANO_DATABASE_URI`,
/// `MELTANO_CLI_LOG_LEVEL` ...), which Meltano exports to every plugin and dsm does not.
fn meltano_setting(k: &str) -> bool {
    k.starts_with("MELTANO_")
        && ![
            "MELTANO_EXTRACT_",
            "MELTANO_EXTRACTOR_",
            "MELTANO_LOAD_",
            "MELTANO_LOADER_",
        ]
        .iter()
        .any(|p| k.starts_with(p))
        && !["MELTANO_PROJECT_ROOT", "MELTANO_ENVIRONMENT"].contains(&k)
}

#[test]
fn dsm_hands_plugins_the_environment_meltano_does_except_secrets() {
    let venv = meltano_venv();
    let p = TestProject::new(MELTANO_YML);
    // The secret in `.env`, where `meltano config set` writes sensitive values.
    p.write(
        ".env",
        "DOTENV_VAR=from-dotenv\nTAP_ENVDUMP_PASSWORD=s3cret-in-dotenv\n",
    );
    script(
        &p,
        "tap.sh",
        &format!(
            "exec {TAP} \"$@\" --dump \"$MELTANO_PROJECT_ROOT/tap-dump.json\" --generate 2 --stream users --state-every 1\n"
        ),
    );
    script(
        &p,
        "target.sh",
        &format!("exec {TARGET} \"$@\" --dump \"$MELTANO_PROJECT_ROOT/target-dump.json\"\n"),
    );

    // Meltano gets exactly dsm's process environment (same clean-up, same extra variables).
    let dsm_cmd = p.command(&["run", "tap-envdump", "target-envdump"]);
    let mut meltano_cmd = Command::new(venv.join("bin/meltano"));
    meltano_cmd
        .args(["run", "tap-envdump", "target-envdump"])
        .current_dir(p.root());
    clean_env(&mut meltano_cmd);
    for (k, v) in dsm_cmd.get_envs() {
        match v {
            Some(v) => meltano_cmd.env(k, v),
            None => meltano_cmd.env_remove(k),
        };
    }
    let (m_tap, m_target) = run_and_collect(&p, meltano_cmd, "meltano");
    // Meltano's run left its bookmark in `.meltano/meltano.db`: dsm refuses to start the flow
    // from empty state until it is imported, as its error says.
    let refused = p.dsm(&["run", "tap-envdump", "target-envdump"]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("`dsm state import-meltano`"),
        "{}",
        refused.stderr
    );
    let imported = p.dsm(&["state", "import-meltano"]);
    assert_eq!(imported.code, 0, "{}", imported.stderr);
    let (d_tap, d_target) = run_and_collect(&p, dsm_cmd, "dsm");

    for (plugin, m, d) in [("tap", &m_tap, &d_tap), ("target", &m_target, &d_target)] {
        // The config files are the same, secrets included.
        assert_eq!(m["config"], d["config"], "{plugin} config");
        let (m_env, d_env) = (env_of(m), env_of(d));
        let mut compared = 0;
        let keys: BTreeSet<&String> = m_env.keys().chain(d_env.keys()).collect();
        for k in keys {
            let (mv, dv) = (m_env.get(k), d_env.get(k));
            if SECRET_VARS.contains(&k.as_str()) {
                assert!(mv.is_some(), "{plugin}: Meltano exports `{k}`");
                assert_eq!(dv, None, "{plugin}: dsm must not export secret `{k}`");
                continue;
            }
            if dsm::envvars::grants_access(k) {
                // dsm's access variables (the store's address here) never reach a plugin
                // (issue #20); Meltano passes the shell's on. A deliberate difference.
                assert_eq!(dv, None, "{plugin}: dsm must not pass `{k}` to a plugin");
                continue;
            }
            if MELTANO_RUNTIME.contains(&k.as_str()) || meltano_setting(k) {
                continue;
            }
            if k == dsm::envvars::OWNER_RUN {
                // dsm marks its plugins with their run's id, so the run that takes a flow over
                // after a `kill -9` finds what they left behind (issue #20). Meltano has none.
                assert_eq!(mv, None, "{plugin}: Meltano sets no `{k}`");
                let run = dv.unwrap_or_else(|| panic!("{plugin}: dsm sets `{k}`"));
                assert!(
                    uuid::Uuid::parse_str(run).is_ok(),
                    "{plugin}: `{k}` is `{run}`"
                );
                continue;
            }
            if k == "FROM_SHELL" {
                // Meltano 4.4.1 hands a project-level `env:` value over unexpanded (its settings
                // environment, laid over the expanded block, carries the raw text); dsm expands
                // it, as Meltano's docs describe. A deliberate difference.
                assert_eq!(mv.map(String::as_str), Some("shell-${SHELL_VAR}"));
                assert_eq!(dv.map(String::as_str), Some("shell-from-the-shell"));
                continue;
            }
            assert_eq!(
                mv, dv,
                "{plugin}: `{k}` differs (meltano {mv:?}, dsm {dv:?})"
            );
            compared += 1;
        }
        assert!(
            compared > 60,
            "{plugin}: only {compared} variables compared"
        );
        for v in d_env.values() {
            assert!(
                !v.contains("s3cret") && !v.contains("k3y-in"),
                "{plugin}: a secret leaked into dsm's environment"
            );
        }
    }

    // What the comparison covered, spelled out (so both tools being wrong the same way fails).
    let tap = env_of(&d_tap);
    let target = env_of(&d_target);
    let expect = [
        (&tap, "SHARED", "from-environment"),
        (&tap, "PLUGIN_VAR", "plugin-env-level"),
        (&tap, "ENV_PLUGIN_VAR", "env-plugin"),
        (&tap, "DOTENV_VAR", "from-dotenv"),
        (&tap, "MELTANO_ENVIRONMENT", "dev"),
        (&tap, "TAP_ENV_REGION", "eu-west"),
        (
            &tap,
            "TAP_ENVDUMP_OPTIONS",
            r#"{"ssl": true, "name": "caf\u00e9"}"#,
        ),
        (&tap, "TAP_ENV__SELECT", r#"["users.*", "!orders.secret"]"#),
        (
            &tap,
            "TAP_ENV__METADATA_USERS_REPLICATION_METHOD",
            "INCREMENTAL",
        ),
        (&tap, "MELTANO_EXTRACT__LOAD_SCHEMA", "raw_env"),
        (&target, "TARGET_ENV_SCHEMA", "raw_env"),
        (&target, "MELTANO_LOAD__DIALECT", "sqlite"),
        (&target, "MELTANO_EXTRACTOR_NAMESPACE", "tap_env"),
        (&target, "TAP_ENV_HOST", "db.example"),
    ];
    for (env, k, v) in expect {
        assert_eq!(env.get(k).map(String::as_str), Some(v), "`{k}`");
    }
    assert_eq!(d_tap["config"]["password"], "s3cret-in-dotenv");
    assert_eq!(d_target["config"]["schema"], "raw_env");
}

/// Issue #19: the variables of the `env:` blocks a plugin gets are expanded once, with its
/// settings: they see `.env` like settings do (a block referring to a `.env` variable used to
/// reach the plugin empty), an undefined variable is a warning, and under
/// `ff.strict_env_var_mode` an error that stops the plugin from starting.
#[test]
fn env_blocks_reach_the_plugin_expanded_once_with_the_strict_mode_checks() {
    let yml = "version: 1
project_id: dsm-env-overlay
send_anonymous_usage_stats: false
env:
  GREETING: hello-${FROM_DOTENV}
plugins:
  utilities:
  - name: echoer
    executable: ./echo.sh
    env:
      TARGETED: to-${NEVER_SET_ANYWHERE}
";
    let p = TestProject::new(yml);
    p.write(".env", "FROM_DOTENV=dotenv-value\n");
    script(
        &p,
        "echo.sh",
        "echo \"GREETING=$GREETING TARGETED=$TARGETED\" > echoed.txt\n",
    );
    let out = p.dsm(&["invoke", "echoer"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        p.read("echoed.txt").trim(),
        "GREETING=hello-dotenv-value TARGETED=to-"
    );
    assert!(
        out.stderr.contains("`NEVER_SET_ANYWHERE`") || out.stderr.contains("NEVER_SET_ANYWHERE"),
        "the undefined variable is named in a warning: {}",
        out.stderr
    );
    std::fs::remove_file(p.root().join("echoed.txt")).expect("rm");

    p.write(
        "meltano.yml",
        &format!("{yml}ff:\n  strict_env_var_mode: true\n"),
    );
    let out = p.dsm(&["invoke", "echoer"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "`env` variable `TARGETED` refers to `$NEVER_SET_ANYWHERE`, which is not set"
        ),
        "{}",
        out.stderr
    );
    assert!(
        !p.root().join("echoed.txt").exists(),
        "the plugin did not start"
    );
}

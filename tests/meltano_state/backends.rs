//! `file://` and `s3://` state backends shared by real Meltano and dsm: each continues from the
//! bookmark the other wrote, in Meltano's layout; a held lock makes dsm wait, then fail clearly.

use std::path::Path;

use serde_json::{Value, json};

use crate::support::{Moto, Out, dsm, meltano, query};

const STATE_ID: &str = "dev:tap-csv-to-target-sqlite";

/// A project loading a CSV into SQLite incrementally (`updated_at`), with `state_backend`.
fn project(dir: &Path, state_backend: &str) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let yml = format!(
        r#"version: 1
default_environment: dev
project_id: dsm-state-backend-test
environments:
- name: dev
state_backend:
{state_backend}
plugins:
  extractors:
  - name: tap-csv
    namespace: tap_csv
    executable: {tap}
    capabilities: [catalog, discover, state, about]
    settings:
    - name: files
      kind: array
    config:
      files:
      - entity: customers
        path: data/customers.csv
        keys: [id]
        replication_key: updated_at
  loaders:
  - name: target-sqlite
    namespace: target_sqlite
    executable: {target}
    settings:
    - name: database
    config:
      database: output/warehouse.db
"#,
        tap = env!("CARGO_BIN_EXE_tap-csv"),
        target = env!("CARGO_BIN_EXE_target-sqlite"),
    );
    std::fs::write(dir.join("meltano.yml"), yml).unwrap();
}

fn csv(dir: &Path, rows: &[(&str, &str, &str)]) {
    let mut text = "id,name,updated_at\n".to_string();
    for (id, name, day) in rows {
        text.push_str(&format!("{id},{name},2024-01-{day}T00:00:00Z\n"));
    }
    std::fs::write(dir.join("data/customers.csv"), text).unwrap();
}

fn names(dir: &Path) -> Vec<String> {
    query(
        &dir.join("output/warehouse.db"),
        "SELECT name FROM customers ORDER BY id",
    )
    .into_iter()
    .map(|r| r[0].clone())
    .collect()
}

fn run_meltano(dir: &Path, env: &[(&str, &str)]) -> Out {
    meltano(dir, &["run", "tap-csv", "target-sqlite"], env).ok("meltano run")
}

fn run_dsm(dir: &Path, env: &[(&str, &str)]) -> Out {
    dsm(dir, &["run", "tap-csv", "target-sqlite"], env).ok("dsm run")
}

/// The flow's state as each tool prints it (`{"singer_state": ...}`).
fn states(dir: &Path, env: &[(&str, &str)]) -> (Value, Value) {
    let m = meltano(dir, &["state", "get", STATE_ID], env).ok("meltano state get");
    let d = dsm(dir, &["state", "get", STATE_ID], env).ok("dsm state get");
    // Meltano prints log lines around the JSON on some versions: take the JSON line.
    let m_line = m
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON from meltano state get: {}", m.stdout));
    (serde_json::from_str(m_line).unwrap(), d.json())
}

/// Meltano, dsm, Meltano on one backend: each run reads only what is newer than the bookmark
/// the previous one (of the other tool) wrote. `state_json` reads the backend's `state.json`.
fn take_turns(dir: &Path, env: &[(&str, &str)], state_json: &dyn Fn() -> Option<String>) {
    csv(dir, &[("1", "Ada", "01"), ("2", "Bo", "02")]);
    run_meltano(dir, env);
    assert_eq!(names(dir), ["Ada", "Bo"]);
    let written: Value =
        serde_json::from_str(&state_json().expect("Meltano wrote state.json")).unwrap();
    assert!(
        written["completed"]["singer_state"]["bookmarks"].is_object(),
        "Meltano's layout: {written}"
    );
    assert!(written["partial"].is_object(), "{written}");
    let (m, d) = states(dir, env);
    assert_eq!(m, d, "dsm reads Meltano's state from the backend");

    // dsm continues from Meltano's bookmark: the edited old row is not read again.
    csv(
        dir,
        &[("1", "CHANGED", "01"), ("2", "Bo", "02"), ("3", "Cy", "03")],
    );
    run_dsm(dir, env);
    assert_eq!(names(dir), ["Ada", "Bo", "Cy"]);
    let written = state_json().unwrap();
    assert!(
        written.contains("2024-01-03"),
        "dsm wrote its bookmark to the backend: {written}"
    );
    // dsm's own store keeps the run history, not the state.
    assert_eq!(
        query(&dir.join(".dsm/dsm.db"), "SELECT count(*) FROM state"),
        [["0"]]
    );
    assert_eq!(
        dsm(dir, &["--format", "json", "runs", "list"], env)
            .ok("runs list")
            .json()[0]["status"],
        "success"
    );

    // And Meltano continues from dsm's.
    csv(
        dir,
        &[
            ("1", "CHANGED", "01"),
            ("2", "CHANGED", "02"),
            ("3", "Cy", "03"),
            ("4", "Dee", "04"),
        ],
    );
    run_meltano(dir, env);
    assert_eq!(names(dir), ["Ada", "Bo", "Cy", "Dee"]);
    let (m, d) = states(dir, env);
    assert_eq!(m, d);
    assert!(m.to_string().contains("2024-01-04"), "{m}");
}

#[test]
fn file_backend_meltano_and_dsm_take_turns() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("project");
    let store = tmp.path().join("shared-state");
    project(&dir, &format!("  uri: file://{}", store.display()));
    let path = store.join(STATE_ID).join("state.json");
    take_turns(&dir, &[], &|| std::fs::read_to_string(&path).ok());
    assert!(
        !store.join(STATE_ID).join("lock").exists(),
        "no lock left behind"
    );
}

#[test]
fn file_backend_from_meltanos_environment_variable() {
    // `MELTANO_STATE_BACKEND_URI` wins over meltano.yml, for Meltano and dsm alike.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("project");
    let store = tmp.path().join("from-env");
    project(&dir, "  uri: systemdb");
    let uri = format!("file://{}", store.display());
    let env = [("MELTANO_STATE_BACKEND_URI", uri.as_str())];
    csv(&dir, &[("1", "Ada", "01")]);
    run_dsm(&dir, &env);
    let written = std::fs::read_to_string(store.join(STATE_ID).join("state.json")).unwrap();
    let (m, d) = states(&dir, &env);
    assert_eq!(m, d, "{written}");
    // `dsm state set` writes there too, and Meltano reads it.
    let payload = json!({"singer_state": {"bookmarks": {"customers": {"replication_key": "updated_at", "replication_key_value": "2030-01-01T00:00:00+00:00"}}}});
    dsm(
        &dir,
        &["state", "set", STATE_ID, &payload.to_string()],
        &env,
    )
    .ok("dsm state set");
    let (m, _) = states(&dir, &env);
    assert_eq!(m, payload);
}

#[test]
fn s3_backend_meltano_and_dsm_take_turns() {
    let moto = Moto::start();
    moto.create_bucket("dsm-state");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("project");
    project(
        &dir,
        &format!(
            "  uri: s3://dsm-state/team/meltano\n  s3:\n    endpoint_url: {}",
            moto.endpoint
        ),
    );
    let env = [
        (
            "MELTANO_STATE_BACKEND_S3_AWS_ACCESS_KEY_ID",
            "testing-key-id",
        ),
        (
            "MELTANO_STATE_BACKEND_S3_AWS_SECRET_ACCESS_KEY",
            "testing-secret-access-key",
        ),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ];
    let key = format!("team/meltano/{STATE_ID}/state.json");
    take_turns(&dir, &env, &|| moto.get("dsm-state", &key));
    assert!(
        moto.get("dsm-state", &key.replace("state.json", "lock"))
            .is_none(),
        "no lock left behind"
    );
    // The secret never shows in what dsm prints.
    let out = dsm(&dir, &["state", "list"], &env).ok("dsm state list");
    assert_eq!(out.stdout.trim(), STATE_ID);
    assert!(!out.stderr.contains("testing-secret-access-key"));
}

#[test]
fn s3_backend_credentials_are_checked_without_showing_them() {
    let moto = Moto::start();
    moto.create_bucket("dsm-state");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("project");
    project(
        &dir,
        &format!(
            "  uri: s3://dsm-state/p\n  s3:\n    endpoint_url: {}",
            moto.endpoint
        ),
    );
    // No credentials at all: a configuration error naming the variables to set.
    let out = dsm(&dir, &["state", "list"], &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("MELTANO_STATE_BACKEND_S3_AWS_ACCESS_KEY_ID"),
        "{}",
        out.stderr
    );
    // A missing bucket is named.
    project(
        &dir,
        &format!(
            "  uri: s3://no-such-bucket/p\n  s3:\n    endpoint_url: {}",
            moto.endpoint
        ),
    );
    let env = [
        ("MELTANO_STATE_BACKEND_S3_AWS_ACCESS_KEY_ID", "k"),
        (
            "MELTANO_STATE_BACKEND_S3_AWS_SECRET_ACCESS_KEY",
            "very-secret-value",
        ),
    ];
    let out = dsm(&dir, &["state", "get", "x"], &env);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("no-such-bucket"), "{}", out.stderr);
    assert!(!out.stderr.contains("very-secret-value"));
}

#[test]
fn a_held_lock_makes_dsm_wait_then_fail_and_a_stale_one_is_taken_over() {
    let moto = Moto::start();
    moto.create_bucket("dsm-state");
    let tmp = tempfile::tempdir().unwrap();
    for backend in ["file", "s3"] {
        let dir = tmp.path().join(backend);
        let store = tmp.path().join(format!("{backend}-state"));
        let uri = match backend {
            "file" => format!("  uri: file://{}", store.display()),
            _ => format!(
                "  uri: s3://dsm-state/{backend}\n  s3:\n    endpoint_url: {}",
                moto.endpoint
            ),
        };
        project(
            &dir,
            &format!("{uri}\n  lock_timeout_seconds: 2\n  lock_retry_seconds: 1"),
        );
        let env = [
            ("MELTANO_STATE_BACKEND_S3_AWS_ACCESS_KEY_ID", "k"),
            ("MELTANO_STATE_BACKEND_S3_AWS_SECRET_ACCESS_KEY", "s"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
        ];
        let write_lock = |text: &str| match backend {
            "file" => {
                std::fs::create_dir_all(store.join("flow")).unwrap();
                std::fs::write(store.join("flow/lock"), text).unwrap();
            }
            _ => moto.put("dsm-state", "s3/flow/lock", text),
        };
        let lock_exists = || match backend {
            "file" => store.join("flow/lock").exists(),
            _ => moto.get("dsm-state", "s3/flow/lock").is_some(),
        };
        let set = |v: i64| {
            dsm(
                &dir,
                &[
                    "state",
                    "set",
                    "flow",
                    &json!({"singer_state": {"v": v}}).to_string(),
                ],
                &env,
            )
        };
        set(1).ok("dsm state set");
        // A lock that stays live (its holder keeps it, or its clock is ahead): dsm waits
        // `lock_timeout_seconds`, then fails naming the lock; the state is unchanged.
        let future = chrono::Utc::now().timestamp() + 3600;
        write_lock(&format!("{future}.0"));
        let out = set(2);
        assert_eq!(out.code, 1, "{backend}: {}", out.stderr);
        assert!(out.stderr.contains("stayed locked"), "{}", out.stderr);
        assert!(
            out.stderr.contains("lock_timeout_seconds"),
            "{}",
            out.stderr
        );
        assert!(lock_exists(), "{backend}: a live lock is not removed");
        let get = || {
            dsm(&dir, &["state", "get", "flow"], &env)
                .ok("state get")
                .json()
        };
        assert_eq!(get(), json!({"singer_state": {"v": 1}}));
        // Real Meltano reads through the same backend and sees the same.
        let m = meltano(&dir, &["state", "get", "flow"], &env).ok("meltano state get");
        assert!(
            m.stdout.contains(r#""v": 1"#) || m.stdout.contains(r#""v":1"#),
            "{}",
            m.stdout
        );
        // A lock left by a crashed process (older than the timeout) is taken over, as Meltano does.
        write_lock("1000000000.5");
        set(3).ok("dsm state set over a stale lock");
        assert_eq!(get(), json!({"singer_state": {"v": 3}}));
        assert!(!lock_exists(), "{backend}: the lock is released");
    }
}

#[test]
fn gcs_and_azure_backends_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    for (uri, name) in [
        ("gs://bucket/state", "gs://"),
        ("azure://container/state", "azure://"),
    ] {
        let dir = tmp.path().join(&name[..2]);
        project(&dir, &format!("  uri: {uri}"));
        for args in [
            &["state", "list"][..],
            &["run", "tap-csv", "target-sqlite"][..],
        ] {
            let out = dsm(&dir, args, &[]);
            assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
            assert!(out.stderr.contains(name), "{}", out.stderr);
        }
    }
}

#[test]
fn s3_secret_from_dsms_secret_store() {
    let moto = Moto::start();
    moto.create_bucket("dsm-state");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("project");
    // The key id is not secret and sits in meltano.yml; the secret key is in dsm's store.
    project(
        &dir,
        &format!(
            "  uri: s3://dsm-state/p\n  s3:\n    endpoint_url: {}\n    aws_access_key_id: testing-key-id",
            moto.endpoint
        ),
    );
    let key = tmp.path().join("master.key");
    let key_env = [("DSM_MASTER_KEY_FILE", key.to_str().unwrap())];
    dsm(
        &dir,
        &["secrets", "init", "--key-file", key.to_str().unwrap()],
        &[],
    )
    .ok("secrets init");
    // Without the secret: refused, naming where it can come from.
    let out = dsm(&dir, &["state", "list"], &key_env);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("aws_secret_access_key"),
        "{}",
        out.stderr
    );
    let secret = tmp.path().join("secret.txt");
    std::fs::write(&secret, "stored-secret-access-key\n").unwrap();
    dsm(
        &dir,
        &[
            "secrets",
            "set",
            "meltano",
            "state_backend.s3.aws_secret_access_key",
            "--from-file",
            secret.to_str().unwrap(),
        ],
        &key_env,
    )
    .ok("secrets set");
    let payload = json!({"singer_state": {"from": "dsm"}}).to_string();
    dsm(&dir, &["state", "set", "flow", &payload], &key_env).ok("state set");
    assert_eq!(
        moto.get("dsm-state", "p/flow/state.json").unwrap(),
        r#"{"completed":{"singer_state":{"from":"dsm"}},"partial":{}}"#
    );
    // Meltano reads it with the same secret from its own variable.
    let out = meltano(
        &dir,
        &["state", "get", "flow"],
        &[
            (
                "MELTANO_STATE_BACKEND_S3_AWS_SECRET_ACCESS_KEY",
                "stored-secret-access-key",
            ),
            ("AWS_DEFAULT_REGION", "us-east-1"),
        ],
    )
    .ok("meltano state get");
    assert!(out.stdout.contains("dsm"), "{}", out.stdout);
}

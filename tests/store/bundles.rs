//! Bundles (`dsm export`/`dsm import`) with a PostgreSQL store, both ways: the bundle is the
//! same authenticated SQLite snapshot whichever backend it comes from or goes to.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::parsed;
use crate::pg::TestDb;

const PASSPHRASE: &str = "correct horse battery\n";

fn project(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("meltano.yml"),
        "version: 1\nproject_id: bundled\nsend_anonymous_usage_stats: false
plugins:
  extractors:
  - name: tap-csv
    variant: dsm
    executable: tap-csv
    settings:
    - {name: password, sensitive: true}
",
    )
    .unwrap();
}

/// `dsm` in `dir` with the store at `uri` (none: the project's SQLite file).
fn dsm(dir: &Path, uri: Option<&str>, args: &[&str], stdin: &str) -> Output {
    use std::io::Write as _;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsm"));
    crate::clean_env(&mut cmd);
    if let Some(uri) = uri {
        cmd.env("DSM_DATABASE_URI", uri);
    }
    let mut child = cmd
        .args(args)
        .current_dir(dir)
        .env("XDG_CONFIG_HOME", dir.join(".test-config"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.as_bytes()).unwrap();
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn ok(dir: &Path, uri: Option<&str>, args: &[&str], stdin: &str) -> String {
    let out = dsm(dir, uri, args, stdin);
    assert!(
        out.status.success(),
        "dsm {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// What a project's store holds, as the commands show it.
fn contents(dir: &Path, uri: Option<&str>) -> (Value, Vec<String>) {
    let state = parsed(&ok(dir, uri, &["state", "get", "flow-a"], ""));
    let secrets = parsed(&ok(dir, uri, &["secrets", "list", "--format", "json"], ""));
    let names = secrets
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}.{}",
                s["plugin"].as_str().unwrap(),
                s["setting"].as_str().unwrap()
            )
        })
        .collect();
    (state, names)
}

#[test]
fn bundles_go_from_postgresql_to_sqlite_and_from_sqlite_to_postgresql() {
    let tmp = tempfile::tempdir().unwrap();
    let (team_a, team_b) = (TestDb::new("bundle_a"), TestDb::new("bundle_b"));
    let (uri_a, uri_b) = (team_a.uri(None), team_b.uri(None));

    // A project on PostgreSQL, exported: nothing of it lands on the local disk but the bundle.
    let first = tmp.path().join("first");
    project(&first);
    let a = Some(uri_a.as_str());
    ok(&first, a, &["secrets", "init"], "");
    ok(
        &first,
        a,
        &["secrets", "set", "tap-csv", "password"],
        "s3cret-value\n",
    );
    ok(
        &first,
        a,
        &[
            "state",
            "set",
            "flow-a",
            r#"{"singer_state":{"bookmarks":{"people":{"id":3}}}}"#,
        ],
        "",
    );
    let bundle = tmp.path().join("from-pg.json");
    ok(
        &first,
        a,
        &[
            "export",
            "--output",
            bundle.to_str().unwrap(),
            "--passphrase",
        ],
        PASSPHRASE,
    );
    assert!(!first.join(".dsm/dsm.db").exists());
    let text = std::fs::read_to_string(&bundle).unwrap();
    assert!(
        !text.contains("s3cret-value"),
        "the bundle holds the secret in the clear"
    );
    let expected = contents(&first, a);
    assert_eq!(
        expected,
        (
            json!({"singer_state": {"bookmarks": {"people": {"id": 3}}}}),
            vec!["tap-csv.password".to_owned()]
        )
    );

    // Into a project on SQLite, under another master key.
    let second = tmp.path().join("second");
    project(&second);
    ok(&second, None, &["secrets", "init"], "");
    ok(
        &second,
        None,
        &["import", bundle.to_str().unwrap(), "--passphrase"],
        PASSPHRASE,
    );
    assert_eq!(contents(&second, None), expected);
    ok(&second, None, &["audit", "verify"], "");

    // Back out of SQLite, into another PostgreSQL database.
    let bundle2 = tmp.path().join("from-sqlite.json");
    ok(
        &second,
        None,
        &[
            "export",
            "--output",
            bundle2.to_str().unwrap(),
            "--passphrase",
        ],
        PASSPHRASE,
    );
    let third = tmp.path().join("third");
    project(&third);
    let b = Some(uri_b.as_str());
    ok(&third, b, &["secrets", "init"], "");
    // A wrong passphrase writes nothing.
    let wrong = dsm(
        &third,
        b,
        &["import", bundle2.to_str().unwrap(), "--passphrase"],
        "not it\n",
    );
    assert_eq!(
        wrong.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    let none = parsed(&ok(&third, b, &["state", "get", "flow-a"], ""));
    assert_eq!(none, json!({}), "a failed import left state behind");
    let out = ok(
        &third,
        b,
        &["import", bundle2.to_str().unwrap(), "--passphrase"],
        PASSPHRASE,
    );
    assert!(out.contains("imported 1 secrets"), "{out}");
    assert_eq!(contents(&third, b), expected);
    ok(&third, b, &["audit", "verify"], "");
    assert!(!third.join(".dsm/dsm.db").exists());
    // The secret decrypts under the third project's own key: a run would get it.
    let rows: i64 = team_b
        .client()
        .query_one(
            "SELECT count(*) FROM dsm.secrets WHERE project_id = 'bundled'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
    // A store that holds the project already is never overwritten.
    let again = dsm(
        &third,
        b,
        &["import", bundle2.to_str().unwrap(), "--passphrase"],
        PASSPHRASE,
    );
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("not empty"), "{stderr}");
    assert_eq!(contents(&third, b), expected);
}

//! The built-in plugins under real Meltano: a temporary project whose custom extractor and
//! loader have `executable:` pointing at the built binaries, run with `meltano run`.

use std::path::PathBuf;
use std::process::Command;

use crate::support::{bin, query, rows};

pub fn meltano() -> PathBuf {
    let venv = std::env::var_os("DSM_TEST_VENV").unwrap_or_else(|| {
        panic!(
            "DSM_TEST_VENV is not set: run `scripts/setup-test-env.sh` and point DSM_TEST_VENV \
             at target/test-env/venv (the venv with real Meltano)"
        )
    });
    let exe = PathBuf::from(venv).join("bin/meltano");
    assert!(
        exe.is_file(),
        "{} is missing: run `scripts/setup-test-env.sh`",
        exe.display()
    );
    exe
}

fn meltano_yml(tap: &str, target: &str) -> String {
    format!(
        r#"version: 1
default_environment: dev
project_id: dsm-plugins-meltano-test
environments:
- name: dev
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
"#
    )
}

fn meltano_run(dir: &std::path::Path) {
    let out = Command::new(meltano())
        .args(["run", "tap-csv", "target-sqlite"])
        .current_dir(dir)
        .env("MELTANO_SEND_ANONYMOUS_USAGE_STATS", "false")
        .env("MELTANO_DISABLE_TRACKING", "true")
        .env_remove("MELTANO_PROJECT_ROOT")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "meltano run failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn meltano_runs_tap_csv_into_target_sqlite_incrementally() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let csv = dir.path().join("data/customers.csv");
    std::fs::write(
        &csv,
        "id,name,updated_at\n1,Ada,2024-01-01T00:00:00Z\n2,Bo,2024-01-02T00:00:00Z\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("meltano.yml"),
        meltano_yml(
            &bin("tap-csv").display().to_string(),
            &bin("target-sqlite").display().to_string(),
        ),
    )
    .unwrap();
    meltano_run(dir.path());
    let db = dir.path().join("output/warehouse.db");
    assert_eq!(
        query(&db, "SELECT id, name FROM customers ORDER BY id"),
        rows(&[&["1", "Ada"], &["2", "Bo"]])
    );
    // Meltano saved the bookmark; the second run sends only the new row, and the edited old
    // row (same `updated_at`) is not read again.
    std::fs::write(
        &csv,
        "id,name,updated_at\n1,CHANGED,2024-01-01T00:00:00Z\n2,Bo,2024-01-02T00:00:00Z\n3,Cy,2024-01-03T00:00:00Z\n",
    )
    .unwrap();
    meltano_run(dir.path());
    assert_eq!(
        query(&db, "SELECT id, name FROM customers ORDER BY id"),
        rows(&[&["1", "Ada"], &["2", "Bo"], &["3", "Cy"]])
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "output" || name == ".meltano" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

#[test]
fn quickstart_example_is_a_meltano_project_whose_job_loads_the_warehouse() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    copy_dir(&example, dir.path());
    let bin_dir = bin("tap-csv").parent().unwrap().to_path_buf();
    let path = std::env::join_paths(
        std::iter::once(bin_dir).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let out = Command::new(meltano())
        .args(["run", "load-warehouse"])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("MELTANO_SEND_ANONYMOUS_USAGE_STATS", "false")
        .env_remove("MELTANO_PROJECT_ROOT")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "meltano run load-warehouse failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = dir.path().join("output/warehouse.db");
    assert_eq!(
        query(&db, "SELECT count(*) FROM customers"),
        rows(&[&["8"]])
    );
    assert_eq!(
        query(&db, "SELECT count(*), sum(quantity) FROM orders"),
        rows(&[&["8", "15"]])
    );
    assert_eq!(
        query(&db, "SELECT name FROM customers WHERE customer_id = 7"),
        rows(&[&["O'Brien, Siobhán"]])
    );
    assert_eq!(
        query(&db, "SELECT count(*) FROM products WHERE unit_price > 20"),
        rows(&[&["2"]])
    );
}

/// Runs `meltano` in `dir` (no network: definitions come from the lock files) and returns stdout.
fn meltano_ok(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(meltano())
        .args(args)
        .current_dir(dir)
        .env("MELTANO_SEND_ANONYMOUS_USAGE_STATS", "false")
        .env("MELTANO_DISABLE_TRACKING", "true")
        .env_remove("MELTANO_PROJECT_ROOT")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "meltano {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn meltano_accepts_what_dsm_add_writes_for_catalog_plugins() {
    let p = crate::support::Project::new(
        "default_environment: dev\nproject_id: dsm-catalog-test\nenvironments:\n- name: dev\n",
    );
    // Plugins of the catalog from Meltano's index (an SDK tap, a classic tap, an SDK target, a
    // mapper) and one inheriting from a known plugin's variant.
    p.dsm(&["add", "extractor", "tap-github"]).assert_ok();
    p.dsm(&["add", "extractor", "tap-hubspot"]).assert_ok();
    p.dsm(&[
        "add",
        "loader",
        "target-postgres",
        "--variant",
        "meltanolabs",
    ])
    .assert_ok();
    p.dsm(&["add", "mapper", "meltano-map-transformer"])
        .assert_ok();
    p.dsm(&[
        "add",
        "extractor",
        "tap-github",
        "--variant",
        "meltanolabs",
        "--as",
        "github-prod",
    ])
    .assert_ok();
    for (name, setting) in [
        ("tap-github", "repositories"),
        ("tap-hubspot", "client_id"),
        ("target-postgres", "database"),
        ("meltano-map-transformer", "stream_maps"),
        ("github-prod", "GITHUB_PROD_REPOSITORIES"),
    ] {
        let out = meltano_ok(p.root(), &["config", "list", name, "--all"]);
        assert!(out.contains(setting), "meltano config list {name}:\n{out}");
    }
}

//! Meltano parity: for every case of every project in `meltano-compat/projects/`, real Meltano's
//! `config --unsafe print PLUGIN --format json` (with `--extras` for a case that says
//! `"extras": true`) and dsm's must print the same JSON.
//!
//! Needs real Meltano in the venv named by `DSM_TEST_VENV` (`scripts/setup-test-env.sh`); fails
//! loudly without it. A case with `"expected"` is one where Meltano itself crashes: dsm must print
//! the expected document, and Meltano is checked to still fail (so the case is revisited when
//! Meltano is fixed).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as J;

fn venv() -> PathBuf {
    let venv = std::env::var_os("DSM_TEST_VENV").unwrap_or_else(|| {
        panic!(
            "DSM_TEST_VENV is not set: run `scripts/setup-test-env.sh` and export DSM_TEST_VENV=target/test-env/venv"
        )
    });
    let venv = PathBuf::from(venv);
    assert!(
        venv.join("bin/meltano").is_file(),
        "no meltano in `{}`: run `scripts/setup-test-env.sh`",
        venv.display()
    );
    venv
}

fn copy_project(from: &Path) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name != "cases.json" && entry.path().is_file() {
            std::fs::copy(entry.path(), tmp.path().join(&name)).unwrap();
        }
    }
    tmp
}

fn command(program: &Path, dir: &Path, case: &J) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir);
    for (k, _) in std::env::vars() {
        if ["TAP_", "TARGET_", "MELTANO_", "DSM_", "MAPPER_"]
            .iter()
            .any(|p| k.starts_with(p))
        {
            cmd.env_remove(k);
        }
    }
    if let Some(env) = case.get("env").and_then(J::as_object) {
        for (k, v) in env {
            cmd.env(k, v.as_str().unwrap());
        }
    }
    if let Some(e) = case.get("environment").and_then(J::as_str) {
        cmd.args(["--environment", e]);
    }
    let plugin = case["plugin"].as_str().unwrap();
    cmd.args(["config", "--unsafe", "print", plugin, "--format", "json"]);
    if case.get("extras").and_then(J::as_bool) == Some(true) {
        cmd.arg("--extras");
    }
    cmd
}

/// For an `--extras` case: Meltano also prints each leaf of a `metadata` or `schema` written in
/// meltano.yml as a custom extra of its own (`_metadata.users.replication-method`), a by-product
/// of flattening the plugin's config that nothing reads; dsm prints the extras themselves only.
fn without_flattened_extras(case: &J, doc: J) -> J {
    match doc {
        J::Object(map) if case.get("extras").and_then(J::as_bool) == Some(true) => {
            J::Object(map.into_iter().filter(|(k, _)| !k.contains('.')).collect())
        }
        other => other,
    }
}

fn run_json(mut cmd: Command, who: &str, case: &J) -> Result<J, String> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {who}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("{who} failed on {case}: {}\n{stderr}", out.status));
    }
    serde_json::from_str(&stdout)
        .map_err(|e| format!("{who} printed no JSON on {case} ({e}):\n{stdout}\n{stderr}"))
}

fn check_project(dir: &Path, meltano: &Path) -> Vec<String> {
    let cases: Vec<J> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    assert!(!cases.is_empty(), "{} has no cases", dir.display());
    let dsm = Path::new(env!("CARGO_BIN_EXE_dsm"));
    let mut failures = Vec::new();
    for case in &cases {
        let ours_dir = copy_project(dir);
        let ours = run_json(command(dsm, ours_dir.path(), case), "dsm", case);
        let theirs_dir = copy_project(dir);
        let theirs = run_json(command(meltano, theirs_dir.path(), case), "meltano", case);
        let name = dir.file_name().unwrap().to_string_lossy();
        match (case.get("expected"), ours, theirs) {
            (Some(expected), Ok(ours), Err(_)) => {
                let root = ours_dir.path().display().to_string();
                let ours: J = serde_json::from_str(&ours.to_string().replace(&root, "[ROOT]")).unwrap();
                if &ours != expected {
                    failures.push(format!("{name} {case}: dsm printed\n{ours:#}"));
                }
            }
            (Some(_), _, Ok(_)) => failures.push(format!(
                "{name} {case}: Meltano no longer crashes on this case; drop `expected` to compare with it"
            )),
            (Some(_), Err(e), _) | (None, Err(e), _) => failures.push(e),
            (None, Ok(_), Err(e)) => failures.push(e),
            (None, Ok(ours), Ok(theirs)) => {
                let theirs = without_flattened_extras(case, theirs);
                // Both print with paths of their own copy of the project.
                let ours = ours.to_string().replace(&ours_dir.path().display().to_string(), "[ROOT]");
                let theirs = theirs.to_string().replace(&theirs_dir.path().display().to_string(), "[ROOT]");
                if ours != theirs {
                    failures.push(format!("{name} {case}:\n  meltano: {theirs}\n  dsm:     {ours}"));
                }
            }
        }
    }
    failures
}

#[test]
fn dsm_config_print_matches_meltano() {
    let meltano = venv().join("bin/meltano");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("meltano-compat/projects");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("cases.json").is_file())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 3,
        "expected the sample projects in {}",
        root.display()
    );
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = dirs
            .iter()
            .map(|d| s.spawn(|| check_project(d, &meltano)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

//! `dsm install` with real packages from PyPI into real virtual environments (needs Python 3
//! and network access to the package index).

use crate::support::Project;

fn project(extra: &str) -> Project {
    let p = Project::new(&format!(
        "\
version: 1
{extra}plugins:
  extractors:
  - name: tap-csv
    variant: dsm
    config:
      files:
      - entity: people
        path: people.csv
        keys: [id]
  loaders:
  - name: target-jsonl
    variant: andyh1203
    pip_url: target-jsonl==0.1.4
    config:
      destination_path: out
"
    ));
    std::fs::write(p.root().join("people.csv"), "id,name\n1,ada\n2,alan\n").unwrap();
    std::fs::create_dir(p.root().join("out")).unwrap();
    p
}

#[test]
fn auto_install_installs_then_runs_the_installed_plugin_and_reinstall_is_skipped() {
    let p = project("auto_install: true\n");
    let run = p.dsm(&["run", "tap-csv", "target-jsonl"]);
    run.assert_ok();
    assert!(
        run.stderr.contains("loader `target-jsonl`: installed with"),
        "{}",
        run.stderr
    );
    // The Python target wrote the records, so the run used the installed executable.
    let written: Vec<_> = std::fs::read_dir(p.root().join("out"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    let out = std::fs::read_to_string(&written[0]).unwrap();
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains("\"ada\""), "{out}");
    let venv = p
        .root()
        .join(".dsm/plugins/loaders/target-jsonl/venv/bin/target-jsonl");
    assert!(venv.is_file());

    let again = p.dsm(&["install"]);
    again.assert_ok();
    assert!(
        again
            .stderr
            .contains("loader `target-jsonl`: already installed, skipped"),
        "{}",
        again.stderr
    );
    let list = p.dsm(&["plugins", "list"]);
    assert!(list.stdout.contains("installed"), "{}", list.stdout);

    // A changed pip_url is seen as such (the reinstall itself is the same code path as above).
    let yml = p
        .read("meltano.yml")
        .replace("target-jsonl==0.1.4", "target-jsonl==0.1.2");
    std::fs::write(p.root().join("meltano.yml"), yml).unwrap();
    let list = p.dsm(&["plugins", "list", "--format", "json"]);
    assert!(list.stdout.contains("\"changed\""), "{}", list.stdout);
}

#[test]
fn a_bad_pip_url_fails_with_pips_own_message_and_exit_1() {
    let p = project("");
    let yml = p.read("meltano.yml").replace(
        "target-jsonl==0.1.4",
        "dsm-no-such-package-for-tests==9.9.9",
    );
    std::fs::write(p.root().join("meltano.yml"), yml).unwrap();
    let run = p.dsm(&["install", "target-jsonl"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "error: installing loader `target-jsonl` failed: `pip install` exited with status 1"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(
            "| ERROR: No matching distribution found for dsm-no-such-package-for-tests==9.9.9"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("hint: check `pip_url`"),
        "{}",
        run.stderr
    );
    // Nothing half-installed counts as installed.
    let list = p.dsm(&["plugins", "list", "--format", "json"]);
    assert!(list.stdout.contains("\"missing\""), "{}", list.stdout);
}

#[test]
fn no_python_on_the_machine_is_a_clear_error() {
    let p = project("");
    let empty = tempfile::tempdir().unwrap();
    let out = p
        .command(&["install"])
        .env("PATH", empty.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no Python interpreter found: `python3` or `python` not on PATH"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: install Python 3"), "{stderr}");
}

#[test]
fn built_in_plugins_need_no_install() {
    let p = Project::new(
        "version: 1\nplugins:\n  loaders:\n  - name: target-sqlite\n    variant: dsm\n",
    );
    let run = p.dsm(&["install"]);
    run.assert_ok();
    assert!(run.stderr.contains("nothing to install"), "{}", run.stderr);
    assert!(!p.root().join(".dsm/plugins").exists());
}

/// Issue #22: `dsm run`/`el` take Meltano's `--install`, `--no-install` and `--only-install`.
#[test]
fn run_install_flags_choose_whether_to_install_and_whether_to_run() {
    let p = project("auto_install: true\n");
    let venv = p
        .root()
        .join(".dsm/plugins/loaders/target-jsonl/venv/bin/target-jsonl");
    let written = |p: &Project| std::fs::read_dir(p.root().join("out")).unwrap().count();

    // `--no-install` wins over `auto_install: true`: nothing installed, so the run fails.
    let run = p.dsm(&["run", "tap-csv", "target-jsonl", "--no-install"]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(!venv.exists(), "--no-install installed nothing");

    // `--only-install` installs and stops before any plugin runs.
    let only = p.dsm(&["el", "tap-csv", "target-jsonl", "--only-install"]);
    only.assert_ok();
    assert!(venv.is_file(), "{}", only.stderr);
    assert_eq!(written(&p), 0, "nothing ran");
    let runs = p.dsm(&["--format", "json", "runs", "list"]);
    let runs: serde_json::Value = serde_json::from_str(&runs.stdout).unwrap();
    assert_eq!(
        runs.as_array().unwrap().len(),
        1,
        "only the failed run: {runs}"
    );

    // `--install` without `auto_install` installs what is missing, then runs.
    std::fs::remove_dir_all(p.root().join(".dsm/plugins")).unwrap();
    let yml = p.read("meltano.yml").replace("auto_install: true\n", "");
    std::fs::write(p.root().join("meltano.yml"), yml).unwrap();
    let run = p.dsm(&["run", "tap-csv", "target-jsonl", "--install"]);
    run.assert_ok();
    assert!(venv.is_file());
    assert_eq!(written(&p), 1);
}

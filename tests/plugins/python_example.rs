//! `examples/python-plugins/`: `dsm install` then `dsm run` on a copy of the example, with the
//! Python target from the package index (needs network access to it, and `DSM_TEST_VENV` for
//! `uv`).

use serde_json::{Value, json};

use crate::support::{Project, copy_dir};

/// The parsed lines of the one output file whose name starts with `stream-`.
fn output(p: &Project, stream: &str) -> Vec<Value> {
    let files: Vec<_> = std::fs::read_dir(p.root().join("output"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|f| {
            f.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{stream}-")) && n.ends_with(".jsonl"))
        })
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    std::fs::read_to_string(&files[0])
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn python_plugins_example_installs_its_target_and_runs() {
    let Some(venv) = std::env::var_os("DSM_TEST_VENV") else {
        eprintln!(
            "skipped: DSM_TEST_VENV is not set (run `scripts/setup-test-env.sh` and export \
             DSM_TEST_VENV=target/test-env/venv to run this test)"
        );
        return;
    };
    let p = Project::new("");
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python-plugins");
    copy_dir(&example, p.root());
    // `uv` from the test venv comes first on PATH, so the install uses it.
    let path = std::env::join_paths(
        std::iter::once(std::path::PathBuf::from(&venv).join("bin")).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )),
    )
    .unwrap();
    let p = p.env("PATH", path.to_str().unwrap());

    let install = p.dsm(&["install"]);
    install.assert_ok();
    assert!(
        install
            .stderr
            .contains("loader `target-jsonl`: installed with uv"),
        "{}",
        install.stderr
    );
    assert!(
        p.root()
            .join(".dsm/plugins/loaders/target-jsonl/venv/bin/target-jsonl")
            .is_file()
    );

    let run = p.dsm(&["run", "tap-csv", "target-jsonl"]);
    run.assert_ok();
    assert!(
        run.stderr.contains("7 records (books: 4, loans: 3)"),
        "{}",
        run.stderr
    );
    let books = output(&p, "books");
    assert_eq!(books.len(), 4);
    // The declared schema keeps ISBNs as text; the Python target wrote what dsm passed on.
    assert_eq!(
        books[1],
        json!({"isbn": "9780201633610", "title": "Design Patterns", "author": "Gamma et al.", "year": 1994, "pages": 395})
    );
    let loans = output(&p, "loans");
    assert_eq!(loans.len(), 3);
    assert_eq!(loans[2]["returned"], false);
    assert_eq!(loans[2]["loaned_at"], "2024-03-04T11:05:00Z");

    // The job runs the same flow; `loans` is incremental, so only the bookmarked row is re-sent.
    let again = p.dsm(&["run", "books-to-jsonl"]);
    again.assert_ok();
    assert!(
        again.stderr.contains("5 records (books: 4, loans: 1)"),
        "{}",
        again.stderr
    );
}

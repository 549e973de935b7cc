//! Parity with real Meltano (from `DSM_TEST_VENV`): state written by `meltano state set/merge`
//! reads back identically through `dsm state import-meltano` and `dsm state import`.

use std::path::PathBuf;
use std::process::Command;

use crate::{TestProject, clean_env, parse};

fn meltano_bin() -> PathBuf {
    let venv = std::env::var_os("DSM_TEST_VENV").unwrap_or_else(|| {
        panic!("DSM_TEST_VENV is not set: run `scripts/setup-test-env.sh` and export DSM_TEST_VENV (the venv with Meltano)")
    });
    let bin = PathBuf::from(venv).join("bin/meltano");
    assert!(
        bin.is_file(),
        "{} is missing: run `scripts/setup-test-env.sh`",
        bin.display()
    );
    bin
}

fn meltano(p: &TestProject, args: &[&str]) -> String {
    let mut cmd = Command::new(meltano_bin());
    clean_env(&mut cmd);
    let out = cmd
        .args(args)
        .current_dir(p.path())
        .env("MELTANO_SEND_ANONYMOUS_USAGE_STATS", "false")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "meltano {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const IDS: [&str; 3] = [
    "dev:tap-a-to-target-b",
    "dev:tap-c-to-target-d:suffix",
    "prod:tap-a-to-target-b",
];

fn seed_meltano_state(p: &TestProject) {
    meltano(
        p,
        &[
            "state",
            "set",
            "--force",
            IDS[0],
            r#"{"singer_state":{"bookmarks":{"users":{"replication_key_value":"2024-01-01T00:00:00Z","n":1.5}}}}"#,
        ],
    );
    meltano(
        p,
        &[
            "state",
            "merge",
            IDS[0],
            r#"{"singer_state":{"bookmarks":{"orders":{"id":5},"users":{"extra":true}}}}"#,
        ],
    );
    meltano(
        p,
        &[
            "state",
            "set",
            "--force",
            IDS[1],
            r#"{"singer_state":{"v":[1,2,{"k":null}]}}"#,
        ],
    );
    // Only partial state (merge onto nothing).
    meltano(
        p,
        &[
            "state",
            "merge",
            IDS[2],
            r#"{"singer_state":{"bookmarks":{"x":{"y":"z"}}}}"#,
        ],
    );
}

#[test]
fn import_meltano_reads_real_meltano_state_without_touching_it() {
    let p = TestProject::new();
    seed_meltano_state(&p);
    let meltano_db = p.path().join(".meltano/meltano.db");
    let before = std::fs::read(&meltano_db).unwrap();

    let out = p.ok(&["--format", "json", "state", "import-meltano"]);
    assert_eq!(
        parse(&out)["imported"].as_array().unwrap().len(),
        3,
        "{out}"
    );
    assert_eq!(
        std::fs::read(&meltano_db).unwrap(),
        before,
        "Meltano's database changed"
    );
    // Meltano's database is in WAL mode: SQLite's read-only reader may leave an empty `-wal`
    // and a `-shm` index behind, but never writes a page.
    let wal = p.path().join(".meltano/meltano.db-wal");
    assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0);

    for id in IDS {
        assert_eq!(
            p.ok(&["state", "get", id]),
            meltano(&p, &["state", "get", id]),
            "state of {id}"
        );
    }
    assert_eq!(p.ok(&["state", "list"]), meltano(&p, &["state", "list"]));

    // A second import keeps what dsm has advanced since.
    p.ok(&["state", "set", IDS[1], r#"{"singer_state":{"v":"dsm"}}"#]);
    let out = p.ok(&["--format", "json", "state", "import-meltano"]);
    assert_eq!(parse(&out)["skipped"].as_array().unwrap().len(), 3);
    assert_eq!(
        p.ok(&["state", "get", IDS[1]]),
        "{\"singer_state\":{\"v\":\"dsm\"}}\n"
    );
    p.ok(&[
        "state",
        "import-meltano",
        "--overwrite",
        meltano_db.to_str().unwrap(),
    ]);
    assert_eq!(
        p.ok(&["state", "get", IDS[1]]),
        meltano(&p, &["state", "get", IDS[1]])
    );
    assert_eq!(
        std::fs::read(&meltano_db).unwrap(),
        before,
        "Meltano's database changed"
    );

    // dsm refuses to use Meltano's database as its own store.
    let out = p.dsm(&[
        "--database-uri",
        meltano_db.to_str().unwrap(),
        "state",
        "list",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        std::fs::read(&meltano_db).unwrap(),
        before,
        "Meltano's database changed"
    );
}

#[test]
fn state_import_accepts_meltano_state_export() {
    let p = TestProject::new();
    seed_meltano_state(&p);
    let export = meltano(&p, &["state", "export"]);
    let out = p.dsm_with_stdin(&["state", "import"], Some(&export));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(parse(&p.ok(&["state", "export"])), parse(&export));
    for id in IDS {
        assert_eq!(
            p.ok(&["state", "get", id]),
            meltano(&p, &["state", "get", id])
        );
    }
    // And the other way: Meltano imports dsm's export.
    p.ok(&[
        "state",
        "merge",
        IDS[0],
        r#"{"singer_state":{"bookmarks":{"new":{"a":1}}}}"#,
    ]);
    let file = p.path().join("dsm-export.json");
    std::fs::write(&file, p.ok(&["state", "export"])).unwrap();
    meltano(&p, &["state", "import", file.to_str().unwrap()]);
    assert_eq!(
        p.ok(&["state", "get", IDS[0]]),
        meltano(&p, &["state", "get", IDS[0]])
    );
}

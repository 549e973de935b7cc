//! Snapshots of the credential commands: `secrets`, `audit`, `export`, `import`, `requests`
//! (harness in `snapshots.rs`). Each also checks that the secret value is in none of them.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use crate::snapshots::{expect_ok, project, project_with_history, snap, snap_both, snap_runs};
use crate::support::Output;

const SECRET: &str = "s3cret-token";

fn never_shows_the_secret(outs: &[Output]) {
    for o in outs {
        assert!(
            !o.stdout.contains(SECRET) && !o.stderr.contains(SECRET),
            "{o:?}"
        );
    }
}

#[test]
fn secrets() {
    let p = project();
    let key = p.root().join(".keys/master.key").display().to_string();
    let new_key = p.root().join(".keys/next.key").display().to_string();
    let env = format!("TAP_PEOPLE_API_TOKEN={SECRET}-from-env\nOTHER=1\n");
    p.write(".env", &env);
    let outs = snap_runs(
        &p,
        "secrets",
        &[
            (&["secrets", "list"], ""),
            (&["secrets", "init", "--key-file", &key], ""),
            (&["secrets", "init", "--key-file", &key], ""),
            (
                &["secrets", "set", "tap-people", "api_token"],
                &format!("{SECRET}\n"),
            ),
            (&["secrets", "set", "tap-people", "no_such"], "x\n"),
            (&["secrets", "list"], ""),
            (&["--format", "json", "secrets", "list"], ""),
            (&["secrets", "verify"], ""),
            (&["--format", "json", "secrets", "verify"], ""),
            (&["secrets", "unset", "tap-people", "api_token"], ""),
            (&["secrets", "import-env"], ""),
            (&["secrets", "list"], ""),
            (&["secrets", "rotate", "--new-key-file", &new_key], ""),
        ],
    );
    never_shows_the_secret(&outs);
    assert_eq!(outs[1].code, 0, "{}", outs[1].stderr);
    assert_eq!(outs[3].code, 0, "{}", outs[3].stderr);
    assert!(outs[9..].iter().all(|o| o.code == 0), "{outs:?}");
    assert!(!p.read(".env").contains(SECRET), "import-env moved it out");
}

#[test]
fn audit() {
    let p = project_with_history();
    let (list, json) = snap_both(&p, "audit_list", &["audit", "list"]);
    assert_eq!(list.code, 0);
    never_shows_the_secret(&[list, json]);
    let (verify, _) = snap_both(&p, "audit_verify", &["audit", "verify"]);
    assert_eq!(verify.code, 0);
    let prune = snap(
        &p,
        "audit_prune",
        &["audit", "prune", "--before", "2000-01-01T00:00:00Z"],
    );
    assert_eq!(prune.code, 0, "{}", prune.stderr);
}

#[test]
fn export_import() {
    let p = project_with_history();
    let bundle = p.root().join("backup.dsmb").display().to_string();
    let outs = snap_runs(
        &p,
        "export_import",
        &[
            (&["export", "--output", &bundle], ""),
            (&["export", "--output", &bundle], ""),
            (&["import", &bundle], ""),
            (&["import", "users.csv"], ""),
        ],
    );
    never_shows_the_secret(&outs);
    assert_eq!(outs[0].code, 0, "{}", outs[0].stderr);
    assert_ne!(outs[3].code, 0);
}

#[test]
fn requests() {
    let p = project();
    let key = p.root().join(".keys/master.key").display().to_string();
    expect_ok(&p, &["secrets", "init", "--key-file", &key], "");
    let requester = expect_ok(
        &p,
        &[
            "tokens",
            "create",
            "rita",
            "--role",
            "requester",
            "--organisation",
            "acme",
        ],
        "",
    )
    .stdout
    .trim()
    .to_owned();
    let approver = expect_ok(&p, &["tokens", "create", "alex", "--role", "approver"], "")
        .stdout
        .trim()
        .to_owned();
    let files = r#"files=[{"entity":"people","path":"people.csv","keys":["id"]}]"#;
    let as_requester = p.env("DSM_TOKEN", &requester);
    let outs = snap_runs(
        &as_requester,
        "requests_submit",
        &[
            (
                &[
                    "requests",
                    "submit",
                    "crm-people",
                    "--template",
                    "tap-csv",
                    "--config",
                    files,
                    "--secret",
                    "api_password",
                    "--classification",
                    "public",
                    "--description",
                    "the people list",
                ],
                &format!("{SECRET}\n"),
            ),
            (&["requests", "list"], ""),
            (&["--format", "json", "requests", "list"], ""),
        ],
    );
    never_shows_the_secret(&outs);
    assert_eq!(outs[0].code, 0, "{}", outs[0].stderr);
    let id = outs[2].json()["requests"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let as_approver = as_requester.env("DSM_TOKEN", &approver);
    let outs = snap_runs(
        &as_approver,
        "requests_review",
        &[
            (&["requests", "show", &id], ""),
            (&["requests", "test", &id], ""),
            (&["requests", "reject", &id, "--reason", "wrong file"], ""),
            (&["requests", "approve", &id], ""),
        ],
    );
    never_shows_the_secret(&outs);
    assert_eq!(outs[2].code, 0, "{}", outs[2].stderr);
    assert_ne!(outs[3].code, 0, "a rejected request is not approved");
    let outs = snap_runs(
        &as_approver.env("DSM_TOKEN", &requester),
        "requests_resubmit_cancel",
        &[
            (&["requests", "resubmit", &id], ""),
            (&["requests", "cancel", &id], ""),
            (&["--format", "json", "requests", "show", &id], ""),
        ],
    );
    assert_eq!(outs[1].code, 0, "{}", outs[1].stderr);
}

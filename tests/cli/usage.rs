//! Usage errors: exit 2, helpful, and never echoing a value that was typed (issue #7's leak:
//! clap printed a stray positional, which can be a secret, back in "unexpected argument").

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]
use crate::support::TestProject;

const SECRET: &str = "hunter2-s3cret";

#[test]
fn issue_7_a_stray_secret_argument_is_not_echoed() {
    // `secrets set` reads the value from a prompt, stdin or a file; typing it as an argument
    // printed it back in clap's usage error.
    let p = TestProject::new("version: 1\nproject_id: p\n");
    let out = p.dsm(&["secrets", "set", "tap-x", "password", SECRET]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(!out.stderr.contains(SECRET), "{}", out.stderr);
    assert!(!out.stdout.contains(SECRET), "{}", out.stdout);
    assert!(out.stderr.contains("argument 5"), "{}", out.stderr);
    assert!(
        out.stderr.contains("hint: see `dsm secrets set --help`"),
        "{}",
        out.stderr
    );

    let out = p.dsm(&[
        "--format", "json", "secrets", "set", "tap-x", "password", SECRET,
    ]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(!out.stderr.contains(SECRET), "{}", out.stderr);
    assert!(!out.stdout.contains(SECRET), "{}", out.stdout);
    let doc = out.json();
    assert_eq!(doc["error"]["exit_code"], 2, "{doc}");
    assert_eq!(doc["error"]["kind"], "config", "{doc}");
}

#[test]
fn flag_values_and_invalid_values_are_not_echoed() {
    let p = TestProject::new("version: 1\nproject_id: p\n");
    for args in [
        vec![
            "secrets",
            "set",
            "tap-x",
            "password",
            "--value=hunter2-s3cret",
        ],
        vec!["--log-level", SECRET, "validate"],
        vec![SECRET],
        vec!["secrets", SECRET],
    ] {
        let out = p.dsm(&args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.starts_with("error: "), "{}", out.stderr);
        assert!(!out.stderr.contains(SECRET), "{args:?}: {}", out.stderr);
    }
    let out = p.dsm(&["--log-level", "loud", "validate"]);
    assert!(
        out.stderr.contains("accepted values: debug, info"),
        "{}",
        out.stderr
    );
    let out = p.dsm(&["valdate"]);
    assert!(
        out.stderr.contains("did you mean `validate`?"),
        "{}",
        out.stderr
    );
}

// Issue 30: `dsm sycn` said only "unrecognized subcommand (argument 1)".
#[test]
fn issue_30_a_near_miss_of_a_command_is_named() {
    let p = TestProject::new("version: 1\nproject_id: p\n");
    let out = p.dsm(&["sycn"]);
    assert_eq!(out.code, 2);
    insta::assert_snapshot!(out.stderr, @r"
    error: unknown command `sycn`; did you mean `sync`?
      Usage: dsm [OPTIONS] <COMMAND>

    hint: see `dsm --help`
    ");
    let out = p.dsm(&["secrets", SECRET]);
    assert_eq!(out.code, 2);
    assert!(!out.stderr.contains(SECRET), "{}", out.stderr);
}

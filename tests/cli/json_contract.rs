//! Issue #2's JSON contract: every command with `--format json` prints one document that its
//! schema in `schemas/` accepts, on success and on failure (the top-level `error` object).

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::{Output, TestProject};

const TAP: &str = env!("CARGO_BIN_EXE_dsm-fake-tap");

fn schema_path(name: &str) -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    if name == "sync" {
        // The sync summary's schema predates `schemas/cli/` and is also used by its unit test.
        return root.join("sync-summary.schema.json");
    }
    root.join("cli").join(format!("{name}.schema.json"))
}

fn validator(name: &str) -> jsonschema::Validator {
    let path = schema_path(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("no schema `{}`: {e}", path.display()));
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema)
        .unwrap_or_else(|e| panic!("`{}` is not a valid schema: {e}", path.display()))
}

/// Asserts that stdout is one JSON document accepted by schema `name`, and returns it.
pub(crate) fn assert_matches(name: &str, args: &[&str], out: &Output) -> serde_json::Value {
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
            out.stdout, out.stderr
        )
    });
    let v = validator(name);
    let problems: Vec<String> = v
        .iter_errors(&doc)
        .map(|e| format!("at `{}`: {e}", e.instance_path()))
        .collect();
    assert!(
        problems.is_empty(),
        "{args:?} does not match schemas for `{name}`:\n{}\n{doc:#}",
        problems.join("\n")
    );
    doc
}

/// A project with a fake tap, the built-in `target-jsonl`, a job, a schedule, a stored secret
/// and two finished runs, so every list has something in it.
fn fixture() -> TestProject {
    let p = TestProject::empty();
    p.write(
        "tap.sh",
        &format!("#!/bin/sh\nexec {TAP} --generate 3 --stream users \"$@\"\n"),
    );
    std::fs::set_permissions(
        p.root().join("tap.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    p.write(
        "meltano.yml",
        "\
version: 1
project_id: contract
default_environment: dev
environments:
- name: dev
plugins:
  extractors:
  - name: tap-fake
    namespace: tap_fake
    executable: ./tap.sh
    capabilities: [state]
    settings:
    - {name: api_token, kind: password}
    - {name: region}
    config: {region: eu}
  loaders:
  - name: target-jsonl
    variant: dsm
    config: {destination_path: out}
jobs:
- name: daily
  tasks: [tap-fake target-jsonl]
schedules:
- name: daily-schedule
  job: daily
  interval: '@daily'
",
    );
    let key = p.root().join(".keys/master.key");
    let p = p.env("DSM_MASTER_KEY_FILE", key.to_str().unwrap());
    let init = p.dsm(&["secrets", "init", "--key-file", key.to_str().unwrap()]);
    assert_eq!(init.code, 0, "{}", init.stderr);
    let mut set = p.command(&["config", "set", "tap-fake", "api_token", "--value-stdin"]);
    set.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = set.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"contract-token\n")
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let sync = p.dsm(&["sync"]);
    assert_eq!(sync.code, 0, "{}", sync.stderr);
    p
}

#[test]
fn issue_2_every_json_output_matches_its_schema() {
    let p = fixture();
    let run_id = {
        let out = p.dsm(&["--format", "json", "runs", "list"]);
        out.json()[0]["run_id"].as_str().unwrap().to_string()
    };
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("validate", vec!["validate"]),
        ("config-list", vec!["config", "list", "tap-fake"]),
        ("config-print", vec!["config", "print", "tap-fake"]),
        ("state-list", vec!["state", "list"]),
        (
            "state-get",
            vec!["state", "get", "dev:tap-fake-to-target-jsonl"],
        ),
        ("runs-list", vec!["runs", "list"]),
        ("runs-show", vec!["runs", "show", &run_id]),
        ("logs-list", vec!["logs", "list"]),
        ("logs-show", vec!["logs", "show", &run_id]),
        ("logs-show", vec!["logs", "show", &run_id, "--tail", "2"]),
        ("sync", vec!["sync"]),
        ("test", vec!["test", "tap-fake"]),
        ("sources-list", vec!["sources", "list"]),
        ("health", vec!["health"]),
        ("metrics", vec!["metrics"]),
        ("plugins-list", vec!["plugins", "list"]),
        (
            "plugins-list-available",
            vec!["plugins", "list", "--available"],
        ),
        ("schedule-list", vec!["schedule", "list"]),
        ("secrets-list", vec!["secrets", "list"]),
        ("audit-list", vec!["audit", "list"]),
        ("conflicts-list", vec!["conflicts", "list"]),
        ("conflicts-counts", vec!["conflicts", "counts"]),
        ("flows", vec!["flows"]),
        ("job-list", vec!["job", "list"]),
        ("state-export", vec!["state", "export"]),
        ("config-history", vec!["config", "history", "tap-fake"]),
        ("secrets-verify", vec!["secrets", "verify"]),
        ("audit-verify", vec!["audit", "verify"]),
    ];
    for (name, args) in &cases {
        let mut full = vec!["--format", "json"];
        full.extend(args.iter().copied());
        let out = p.dsm(&full);
        assert_eq!(out.code, 0, "{full:?}: {}", out.stderr);
        let doc = assert_matches(name, &full, &out);
        // (A run's own `error` field is a string or null; the contract's error is an object.)
        assert!(!doc["error"].is_object(), "{full:?}: {doc}");
    }
    // The lists are not vacuously empty: the fixture's data went through the schemas.
    let count = |args: &[&str]| {
        let mut full = vec!["--format", "json"];
        full.extend(args);
        p.dsm(&full).json().as_array().unwrap().len()
    };
    assert_eq!(count(&["runs", "list"]), 2);
    assert_eq!(count(&["secrets", "list"]), 1);
    assert!(count(&["audit", "list"]) >= 2);
    assert_eq!(count(&["plugins", "list"]), 2);
    assert!(count(&["plugins", "list", "--available"]) > 200);
}

#[test]
fn issue_21_run_and_el_documents_match_their_schema() {
    let p = fixture();
    for args in [
        vec!["--format", "json", "run", "tap-fake", "target-jsonl"],
        vec!["--format", "json", "el", "tap-fake", "target-jsonl"],
        vec![
            "--format",
            "json",
            "run",
            "--dry-run",
            "tap-fake",
            "target-jsonl",
        ],
    ] {
        let out = p.dsm(&args);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        let doc = assert_matches("run", &args, &out);
        let flow = &doc[0];
        if args.contains(&"--dry-run") {
            assert!(flow["run_id"].is_null() && !flow["plan"].as_array().unwrap().is_empty());
        } else {
            // The fixture's tap writes 3 records and target-jsonl confirms its state.
            assert_eq!(flow["records_read"], 3, "{doc}");
            assert_eq!(flow["records_sent"], 3, "{doc}");
        }
    }
}

#[test]
fn issue_2_failures_print_the_error_shape_on_stdout() {
    let p = fixture();
    // A project file that does not parse, and a store that cannot be opened: every command
    // fails, whether it reads the project, the store or both.
    p.write("meltano.yml", "version: 1\nplugins: [\n");
    // `blocked` is a file, so no database can be created under it; `garbage.db` is not SQLite.
    p.write("blocked", "a file, not a folder");
    p.write("garbage.db", &"not a database ".repeat(20));
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("validate", vec!["validate"]),
        (
            "error",
            vec!["--database-uri", "garbage.db", "runs", "list"],
        ),
        ("error", vec!["config", "list", "tap-fake"]),
        ("error", vec!["config", "print", "tap-fake"]),
        (
            "error",
            vec!["--database-uri", "blocked/dsm.db", "state", "list"],
        ),
        (
            "error",
            vec!["--database-uri", "blocked/dsm.db", "state", "get", "x"],
        ),
        (
            "error",
            vec!["--database-uri", "blocked/dsm.db", "runs", "list"],
        ),
        ("error", vec!["runs", "show", "no-such-run"]),
        ("error", vec!["sync"]),
        ("error", vec!["test", "tap-fake"]),
        ("error", vec!["sources", "list"]),
        ("error", vec!["health"]),
        ("error", vec!["--database-uri", "blocked/dsm.db", "metrics"]),
        ("error", vec!["plugins", "list"]),
        ("error", vec!["schedule", "list"]),
        (
            "error",
            vec!["--database-uri", "blocked/dsm.db", "secrets", "list"],
        ),
        (
            "error",
            vec!["--database-uri", "blocked/dsm.db", "audit", "list"],
        ),
        (
            "error",
            vec!["--database-uri", "blocked/dsm.db", "conflicts", "list"],
        ),
        (
            "error",
            vec!["--database-uri", "blocked/dsm.db", "conflicts", "counts"],
        ),
        ("error", vec!["flows"]),
        ("error", vec!["job", "list"]),
        (
            "error",
            vec!["--database-uri", "blocked/dsm.db", "state", "export"],
        ),
        ("error", vec!["config", "history", "tap-fake"]),
        (
            "error",
            vec!["--database-uri", "blocked/dsm.db", "secrets", "verify"],
        ),
        (
            "error",
            vec!["--database-uri", "blocked/dsm.db", "audit", "verify"],
        ),
        ("error", vec!["runs", "list", "--no-such-flag"]),
    ];
    for (name, args) in &cases {
        let mut full = vec!["--format", "json"];
        full.extend(args.iter().copied());
        let out = p.dsm(&full);
        assert_ne!(out.code, 0, "{full:?} succeeded: {}", out.stdout);
        let doc = assert_matches(name, &full, &out);
        // Whatever else the document holds, the error is there with the exit code.
        assert_eq!(doc["error"]["exit_code"], out.code, "{full:?}: {doc}");
        assert!(
            out.stderr
                .contains(doc["error"]["message"].as_str().unwrap()),
            "{full:?}: the error is also on stderr: {}",
            out.stderr
        );
    }
}

/// A secret that no longer decrypts and an audit entry cut from the middle of the chain.
fn corrupt(p: &TestProject) {
    let db = rusqlite::Connection::open(p.root().join(".dsm/dsm.db")).unwrap();
    let changed = db
        .execute("UPDATE secrets SET ciphertext = x'00112233'", [])
        .unwrap();
    assert_eq!(changed, 1);
    let cut = db
        .execute("DELETE FROM audit_log WHERE seq = 2", [])
        .unwrap();
    assert_eq!(cut, 1);
}

#[test]
fn issue_2_a_failed_run_and_test_keep_their_own_shape_with_an_error() {
    let p = fixture();
    p.write(
        "tap.sh",
        &format!("#!/bin/sh\nexec {TAP} --exit-code 3 \"$@\"\n"),
    );
    for (name, args) in [
        ("sync", vec!["--format", "json", "sync"]),
        ("test", vec!["--format", "json", "test", "tap-fake"]),
        (
            "secrets-verify",
            vec!["--format", "json", "secrets", "verify"],
        ),
        ("audit-verify", vec!["--format", "json", "audit", "verify"]),
    ] {
        if name == "secrets-verify" {
            // Only now: `test` needs the secret to decrypt before it runs anything.
            corrupt(&p);
        }
        let out = p.dsm(&args);
        assert_eq!(out.code, 1, "{args:?}: {}{}", out.stdout, out.stderr);
        let doc = assert_matches(name, &args, &out);
        assert_eq!(doc["error"]["exit_code"], 1, "{doc}");
        assert!(
            !validator("error").is_valid(&doc),
            "{args:?}: the data is kept beside the error"
        );
    }
}

#[test]
fn issue_2_every_schema_in_schemas_cli_is_used_and_valid() {
    // A schema nobody checks drifts; each file here belongs to a command tested above.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/cli");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let expected = [
        "audit-list",
        "audit-verify",
        "config-history",
        "config-list",
        "config-print",
        "conflicts-counts",
        "conflicts-list",
        "error",
        "flows",
        "health",
        "job-list",
        "logs-list",
        "logs-show",
        "metrics",
        "plugins-list-available",
        "plugins-list",
        "requests-approve",
        "requests-change",
        "requests-list",
        "requests-show",
        "requests-test",
        "run",
        "runs-list",
        "runs-show",
        "schedule-list",
        "secrets-list",
        "secrets-verify",
        "sources-list",
        "state-export",
        "state-get",
        "state-list",
        "store-copy",
        "store-status",
        "test",
        "tokens-create",
        "tokens-list",
        "validate",
        "webhooks-list",
        "webhooks-replay",
        "webhooks-show",
    ]
    .map(|n| format!("{n}.schema.json"));
    assert_eq!(names, expected);
    for n in &names {
        validator(n.trim_end_matches(".schema.json"));
    }
}

/// Issue 26: in a classified project the label fields are filled in, and the documents still
/// match their schemas.
#[test]
fn issue_26_classification_labels_match_the_schemas() {
    let p = fixture();
    let text = p.read("meltano.yml").replace(
        "    capabilities: [state]\n",
        "    capabilities: [state]\n    annotations:\n      dsm:\n        source: {classification: internal}\n",
    );
    let text = text.replace(
        "    config: {destination_path: out}\n",
        "    config: {destination_path: out}\n    annotations:\n      dsm: {clearance: confidential}\n",
    );
    p.write("meltano.yml", &text);
    let sync = p.dsm(&["sync"]);
    assert_eq!(sync.code, 0, "{}", sync.stderr);
    let run_id = {
        let out = p.dsm(&["--format", "json", "runs", "list"]);
        out.json()[0]["run_id"].as_str().unwrap().to_string()
    };
    let check = |name: &str, args: &[&str]| {
        let mut full = vec!["--format", "json"];
        full.extend(args);
        let out = p.dsm(&full);
        assert_eq!(out.code, 0, "{full:?}: {}", out.stderr);
        assert_matches(name, &full, &out)
    };
    let flows = check("flows", &["flows"]);
    assert_eq!(flows[0]["chains"][0][1]["clearance"], "confidential");
    let sources = check("sources-list", &["sources", "list"]);
    assert_eq!(sources[0]["classification"], "internal");
    assert_eq!(sources[0]["stream_labels"][0]["label"], "internal");
    let shown = check("runs-show", &["runs", "show", &run_id]);
    assert_eq!(shown["labels"][0]["label"], "internal", "{shown}");
}

#[test]
fn issue_24_tokens_create_and_list_match_their_schemas_and_never_list_the_token() {
    let p = TestProject::new("version: 1\n");
    let args = [
        "--format",
        "json",
        "tokens",
        "create",
        "ci-bot",
        "--role",
        "operator",
        "--organisation",
        "acme",
        "--expires",
        "30d",
    ];
    let out = p.dsm(&args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let created = assert_matches("tokens-create", &args, &out);
    assert_eq!(created["role"], "operator");
    assert_eq!(created["organisation"], "acme");
    let token = created["token"].as_str().unwrap().to_owned();
    let expires: chrono::DateTime<chrono::Utc> =
        created["expires_at"].as_str().unwrap().parse().unwrap();
    let days = (expires - chrono::Utc::now()).num_hours() as f64 / 24.0;
    assert!((29.9..=30.0).contains(&days), "{days}");
    // No organisation, no expiry: both null.
    let args2 = [
        "--format", "json", "tokens", "create", "viewer1", "--role", "viewer",
    ];
    let plain = assert_matches("tokens-create", &args2, &p.dsm(&args2));
    assert!(plain["organisation"].is_null() && plain["expires_at"].is_null());

    let list_args = ["--format", "json", "tokens", "list"];
    let list = p.dsm(&list_args);
    let doc = assert_matches("tokens-list", &list_args, &list);
    let names: Vec<&str> = doc
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ci-bot", "viewer1"]);
    let text = p.dsm(&["tokens", "list"]);
    assert!(!list.stdout.contains(&token) && !text.stdout.contains(&token));
    // The store keeps a hash, not the token.
    let db = std::fs::read(p.root().join(".dsm/dsm.db")).unwrap();
    assert!(!db.windows(token.len()).any(|w| w == token.as_bytes()));

    // A second token of the same name is refused; revoking an unknown name says so.
    let again = p.dsm(&["tokens", "create", "ci-bot", "--role", "admin"]);
    assert_eq!(again.code, 2, "{}", again.stderr);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    let revoked = p.dsm(&["tokens", "revoke", "ci-bot"]);
    assert_eq!(revoked.code, 0, "{}", revoked.stderr);
    let unknown = p.dsm(&["tokens", "revoke", "ci-bot"]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("no token named `ci-bot`"),
        "{}",
        unknown.stderr
    );
    assert_eq!(p.dsm(&list_args).json().as_array().unwrap().len(), 1);
}

#[test]
fn issue_24_token_create_and_revoke_are_audited_by_name() {
    let p = TestProject::new("version: 1\n");
    let key = p.root().join(".keys/master.key");
    let p = p.env("DSM_MASTER_KEY_FILE", key.to_str().unwrap());
    let init = p.dsm(&["secrets", "init", "--key-file", key.to_str().unwrap()]);
    assert_eq!(init.code, 0, "{}", init.stderr);
    let created = p.dsm(&["tokens", "create", "ops", "--role", "admin"]);
    assert_eq!(created.code, 0, "{}", created.stderr);
    let token = created.stdout.trim().to_owned();
    assert!(token.starts_with("dsm_"), "{}", created.stdout);
    assert_eq!(p.dsm(&["tokens", "revoke", "ops"]).code, 0);
    let audit = p.dsm(&["--format", "json", "audit", "list"]);
    let entries = audit.json();
    let actions: Vec<(&str, &str)> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["targets"][0].as_str().unwrap(),
            )
        })
        .collect();
    assert!(actions.contains(&("token.create", "ops")), "{actions:?}");
    assert!(actions.contains(&("token.revoke", "ops")), "{actions:?}");
    assert!(!audit.stdout.contains(&token));
    assert_eq!(p.dsm(&["audit", "verify"]).code, 0);
}

/// Issue 28: `dsm webhooks list|show|replay --format json` match their schemas (events stored
/// through the store's own trait, as the server stores them).
#[test]
fn issue_28_webhooks_documents_match_their_schemas() {
    use dsm::store::{NewWebhookEvent, WebhookLimits};
    let p = TestProject::new(
        "version: 1\nplugins:\n  extractors:\n  - name: hooks\n    inherit_from: tap-webhook\n    variant: dsm\n    annotations: {dsm: {source: {type: webhook}}}\n  - name: tap-plain\n    namespace: tap_plain\n",
    );
    let store = dsm::store::SqliteStore::open(&p.root().join(".dsm/dsm.db")).unwrap();
    let limits = WebhookLimits {
        max_events: 10,
        max_bytes: 1000,
    };
    for (id, payload) in [(Some("a-1"), r#"{"x":[1,2]}"#), (None, "\"text\"")] {
        dsm::store::WebhookStore::receive_webhook(
            &store,
            &NewWebhookEvent {
                source: "hooks".into(),
                event_id: id.map(str::to_owned),
                payload: payload.into(),
                received_at: chrono::Utc::now(),
            },
            &limits,
        )
        .unwrap();
    }
    let first = dsm::store::WebhookStore::webhook_events(&store, "hooks", i64::MIN, false, 1)
        .unwrap()[0]
        .clone();
    dsm::store::WebhookStore::consume_webhooks(&store, "hooks", first.seq, chrono::Utc::now())
        .unwrap();
    drop(store);
    let check = |name: &str, args: &[&str]| {
        let mut full = vec!["--format", "json"];
        full.extend(args);
        let out = p.dsm(&full);
        assert_eq!(out.code, 0, "{full:?}: {}", out.stderr);
        assert_matches(name, &full, &out)
    };
    let list = check("webhooks-list", &["webhooks", "list", "hooks"]);
    assert_eq!(list[0]["status"], "consumed");
    assert_eq!(list[1]["status"], "pending");
    let pending = check("webhooks-list", &["webhooks", "list", "hooks", "--pending"]);
    assert_eq!(pending.as_array().unwrap().len(), 1);
    let id = first.id.to_string();
    let shown = check("webhooks-show", &["webhooks", "show", "hooks", &id]);
    assert_eq!(shown["payload"]["x"][1], 2);
    let replayed = check("webhooks-replay", &["webhooks", "replay", "hooks"]);
    assert_eq!(replayed["replayed"], serde_json::json!([first.id]));
    // Not a webhook source, and an unknown event: errors in the error schema.
    for args in [
        vec!["--format", "json", "webhooks", "list", "tap-plain"],
        vec!["--format", "json", "webhooks", "show", "hooks", "999"],
    ] {
        let out = p.dsm(&args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert_matches("error", &args, &out);
    }
}

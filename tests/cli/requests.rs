//! Issue 27: source requests from the command line, with a distinct token per person (the
//! actor is the token in `DSM_TOKEN`), the built-in tap-csv as the requested source and the
//! real audit log.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::io::Write as _;
use std::process::Stdio;

use serde_json::Value;

use crate::json_contract::assert_matches;
use crate::support::{Output, TestProject};

/// A value that must never be printed, written to `meltano.yml` or logged.
const SECRET: &str = "hunter2-never-shown";

struct Reqs {
    p: TestProject,
    /// Every output so far, to look for the secret in.
    seen: std::cell::RefCell<String>,
}

impl Reqs {
    fn new(first_sync: bool) -> Self {
        let p = TestProject::new(&format!(
            "\
version: 1
project_id: requests
default_environment: dev
environments:
- name: dev
annotations:
  dsm:
    defaults:
      default_loader: target-jsonl
    requests:
      first_sync: {first_sync}
plugins:
  loaders:
  - name: target-jsonl
    variant: dsm
    config: {{destination_path: out}}
"
        ));
        p.write("people.csv", "id,name\n1,ada\n2,grace\n");
        let key = p.root().join(".keys/master.key");
        let p = p.env("DSM_MASTER_KEY_FILE", key.to_str().unwrap());
        let init = p.dsm(&["secrets", "init", "--key-file", key.to_str().unwrap()]);
        assert_eq!(init.code, 0, "{}", init.stderr);
        Reqs {
            p,
            seen: std::cell::RefCell::new(String::new()),
        }
    }

    fn token(&self, name: &str, role: &str, org: Option<&str>) -> String {
        let mut args = vec!["tokens", "create", name, "--role", role];
        if let Some(org) = org {
            args.extend(["--organisation", org]);
        }
        let out = self.p.dsm(&args);
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.stdout.trim().to_owned()
    }

    /// Runs dsm as the holder of `token` (`None`: the local user) with `stdin`.
    fn as_(&self, token: Option<&str>, args: &[&str], stdin: &str) -> Output {
        let mut cmd = self.p.command(args);
        if let Some(t) = token {
            cmd.env("DSM_TOKEN", t);
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let out = Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        let mut seen = self.seen.borrow_mut();
        seen.push_str(&out.stdout);
        seen.push_str(&out.stderr);
        out
    }

    fn ok(&self, token: Option<&str>, args: &[&str], stdin: &str) -> Output {
        let out = self.as_(token, args, stdin);
        assert_eq!(out.code, 0, "{args:?}: {}\n{}", out.stdout, out.stderr);
        out
    }

    /// Submits a tap-csv request reading `file`, with the secret on stdin; returns its id.
    fn submit(&self, token: &str, name: &str, file: &str) -> String {
        let files = format!(r#"files=[{{"entity":"people","path":"{file}","keys":["id"]}}]"#);
        let args = [
            "requests",
            "submit",
            name,
            "--template",
            "tap-csv",
            "--config",
            &files,
            "--secret",
            "api_password",
            "--classification",
            "public",
            "--description",
            "the people list",
            "--notes",
            "nightly export",
            "--format",
            "json",
        ];
        let out = self.ok(Some(token), &args, &format!("{SECRET}\n"));
        let doc = assert_matches("requests-change", &args, &out);
        assert_eq!(doc["status"], "pending");
        doc["id"].as_str().unwrap().to_owned()
    }

    fn show(&self, token: &str, id: &str) -> Value {
        let args = ["requests", "show", id, "--format", "json"];
        let out = self.ok(Some(token), &args, "");
        assert_matches("requests-show", &args, &out)
    }
}

#[test]
fn issue_27_a_request_goes_from_submission_through_rejection_and_resubmission_to_a_running_source()
{
    let r = Reqs::new(true);
    // A requester needs an organisation.
    let bare =
        r.p.dsm(&["tokens", "create", "nobody", "--role", "requester"]);
    assert_eq!(bare.code, 2, "{}", bare.stderr);
    assert!(
        bare.stderr.contains("needs an organisation"),
        "{}",
        bare.stderr
    );
    let alice = r.token("alice", "requester", Some("uni"));
    let dave = r.token("dave", "requester", Some("ministry"));
    let bob = r.token("bob", "approver", None);
    let vic = r.token("vic", "viewer", None);

    let id = r.submit(&alice, "tap-people", "people.csv");
    assert!(
        !r.p.read("meltano.yml").contains("tap-people"),
        "a pending request lives only in the store"
    );

    // Who sees it: its requester and approvers; another organisation's requester gets "no
    // such request"; a viewer may not read requests at all.
    let shown = r.show(&alice, &id);
    assert_eq!(shown["organisation"], "uni");
    assert_eq!(shown["requester"], "token:alice");
    assert_eq!(
        shown["request"]["secrets"],
        serde_json::json!(["api_password"])
    );
    let other = r.as_(Some(&dave), &["requests", "show", &id], "");
    assert_eq!(other.code, 2);
    assert!(
        other.stderr.contains("no source request"),
        "{}",
        other.stderr
    );
    let list = r.ok(Some(&dave), &["requests", "list", "--format", "json"], "");
    assert_eq!(list.json()["requests"], serde_json::json!([]));
    let viewer = r.as_(Some(&vic), &["requests", "list"], "");
    assert_eq!(viewer.code, 2, "{}", viewer.stderr);
    let args = [
        "requests", "list", "--status", "pending", "--format", "json",
    ];
    let all = r.ok(Some(&bob), &args, "");
    let all = assert_matches("requests-list", &args, &all);
    assert_eq!(all["requests"][0]["id"], id.as_str());

    // The requester cannot decide it; a rejection needs a reason.
    let own = r.as_(Some(&alice), &["requests", "approve", &id], "");
    assert_eq!(own.code, 2, "{}", own.stderr);
    let bare = r.as_(Some(&bob), &["requests", "reject", &id], "");
    assert_eq!(bare.code, 2, "{}", bare.stderr);
    assert!(bare.stderr.contains("needs a reason"), "{}", bare.stderr);
    let args = [
        "requests",
        "reject",
        &id,
        "--reason",
        "say which team owns it",
        "--format",
        "json",
    ];
    let rejected = r.ok(Some(&bob), &args, "");
    assert_eq!(
        assert_matches("requests-change", &args, &rejected)["status"],
        "rejected"
    );
    let mine = r.ok(
        Some(&alice),
        &["requests", "list", "--mine", "--status", "rejected"],
        "",
    );
    assert!(
        mine.stdout.contains("say which team owns it"),
        "{}",
        mine.stdout
    );

    // Resubmitted with a note; tested; approved: the source is in meltano.yml, its secret in
    // the secret store, and its first sync ran.
    let again = r.ok(
        Some(&alice),
        &[
            "requests",
            "resubmit",
            &id,
            "--notes",
            "owned by the registry team",
        ],
        "",
    );
    assert!(again.stdout.contains("pending"), "{}", again.stdout);
    // A key rotation re-seals the request's secrets with every other secret.
    r.ok(None, &["secrets", "rotate"], "");
    let args = ["requests", "test", &id, "--format", "json"];
    let tested = r.ok(Some(&bob), &args, "");
    assert_eq!(
        assert_matches("requests-test", &args, &tested)["succeeded"],
        true
    );
    let args = ["requests", "approve", &id, "--format", "json"];
    let approved = r.ok(Some(&bob), &args, "");
    let approved = assert_matches("requests-approve", &args, &approved);
    assert_eq!(approved["source"], "tap-people");
    assert_eq!(approved["first_sync"], "succeeded");
    let yml = r.p.read("meltano.yml");
    assert!(yml.contains("- name: tap-people"), "{yml}");
    assert!(yml.contains("classification: public"), "{yml}");
    let out = r.p.read("out/people.jsonl");
    assert_eq!(out.lines().count(), 2, "{out}");
    let secrets = r.ok(None, &["secrets", "list", "--format", "json"], "");
    assert!(secrets.stdout.contains("tap-people"), "{}", secrets.stdout);
    assert!(!secrets.stdout.contains("request:"), "{}", secrets.stdout);
    r.ok(None, &["secrets", "verify"], "");
    let run = r.ok(None, &["run", "tap-people", "target-jsonl"], "");
    assert_eq!(run.code, 0);

    let history: Vec<String> = r.show(&bob, &id)["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        history,
        [
            "submitted",
            "rejected",
            "resubmitted",
            "tested",
            "approved",
            "first_sync"
        ]
    );
    // A decided request is not decided again.
    let twice = r.as_(
        Some(&bob),
        &["requests", "reject", &id, "--reason", "x"],
        "",
    );
    assert_eq!(twice.code, 2, "{}", twice.stderr);

    // Every transition is in the audit log, which verifies.
    let audit = r.ok(None, &["audit", "list", "--format", "json"], "");
    for action in [
        "request.submit",
        "request.reject",
        "request.resubmit",
        "request.test",
        "request.approve",
        "request.first_sync",
    ] {
        assert!(audit.stdout.contains(action), "{action}: {}", audit.stdout);
    }
    assert!(audit.stdout.contains("reason:say which team owns it"));
    r.ok(None, &["audit", "verify"], "");

    let seen = r.seen.borrow();
    assert!(!seen.contains(SECRET), "a secret was printed");
    assert!(!yml.contains(SECRET));
}

#[test]
fn issue_27_no_one_decides_their_own_request_and_a_failing_test_blocks_approval_unless_overridden()
{
    let r = Reqs::new(false);
    let carol = r.token("carol", "admin", None);
    let alice = r.token("alice", "requester", Some("uni"));
    let bob = r.token("bob", "approver", None);

    // An admin may submit, but not approve or reject what they submitted.
    let own = r.submit(&carol, "tap-own", "people.csv");
    for args in [
        vec!["requests", "approve", own.as_str()],
        vec!["requests", "reject", own.as_str(), "--reason", "mine"],
    ] {
        let refused = r.as_(Some(&carol), &args, "");
        assert_eq!(refused.code, 2, "{args:?}: {}", refused.stderr);
        assert!(refused.stderr.contains("cannot"), "{}", refused.stderr);
    }
    assert_eq!(r.show(&carol, &own)["status"], "pending");

    // A request whose file does not exist fails its test: approval is refused (exit 1) and
    // nothing is written, until an approver overrides it with a reason.
    let id = r.submit(&alice, "tap-missing", "missing.csv");
    let before = r.p.read("meltano.yml");
    let blocked = r.as_(Some(&bob), &["requests", "approve", &id], "");
    assert_eq!(blocked.code, 1, "{}", blocked.stderr);
    assert!(
        blocked.stderr.contains("connection test failed"),
        "{}",
        blocked.stderr
    );
    assert_eq!(r.p.read("meltano.yml"), before);
    assert_eq!(r.show(&bob, &id)["status"], "pending");
    let no_reason = r.as_(
        Some(&bob),
        &["requests", "approve", &id, "--override-test"],
        "",
    );
    assert_eq!(no_reason.code, 2, "{}", no_reason.stderr);
    let args = [
        "requests",
        "approve",
        &id,
        "--override-test",
        "--reason",
        "the file lands tonight",
        "--format",
        "json",
    ];
    let over = r.ok(Some(&bob), &args, "");
    let over = assert_matches("requests-approve", &args, &over);
    assert_eq!(over["test"]["succeeded"], false);
    assert_eq!(over["first_sync"], Value::Null);
    assert!(r.p.read("meltano.yml").contains("- name: tap-missing"));
    let shown = r.show(&alice, &id);
    assert!(
        shown["reason"]
            .as_str()
            .unwrap()
            .contains("the file lands tonight")
    );

    // Cancelling destroys the request's secrets.
    let gone = r.submit(&alice, "tap-gone", "people.csv");
    let listed = r.ok(None, &["secrets", "list"], "");
    assert!(
        listed.stdout.contains(&format!("request:{gone}")),
        "{}",
        listed.stdout
    );
    let args = ["requests", "cancel", &gone, "--format", "json"];
    let cancelled = r.ok(Some(&alice), &args, "");
    assert_eq!(
        assert_matches("requests-change", &args, &cancelled)["status"],
        "cancelled"
    );
    let listed = r.ok(None, &["secrets", "list"], "");
    assert!(!listed.stdout.contains(&gone), "{}", listed.stdout);
    r.ok(None, &["audit", "verify"], "");
    assert!(!r.seen.borrow().contains(SECRET), "a secret was printed");
}

/// Issue 27: the project's receivers hear of a submission, a rejection with its reason and an
/// approval, each once, with who did it.
#[test]
fn issue_27_receivers_are_told_of_submissions_rejections_and_approvals() {
    use std::os::unix::fs::PermissionsExt as _;
    let r = Reqs::new(false);
    let yml = r.p.read("meltano.yml").replace(
        "    requests:\n",
        "    notifications:\n    - {events: [request_submitted, request_approved, request_rejected], command: [./receiver.sh]}\n    requests:\n",
    );
    r.p.write("meltano.yml", &yml);
    r.p.write(
        "receiver.sh",
        "#!/bin/sh\ncat >> events.jsonl\necho >> events.jsonl\n",
    );
    std::fs::set_permissions(
        r.p.root().join("receiver.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let alice = r.token("alice", "requester", Some("uni"));
    let bob = r.token("bob", "approver", None);
    let id = r.submit(&alice, "tap-people", "people.csv");
    r.ok(
        Some(&bob),
        &["requests", "reject", &id, "--reason", "say who owns it"],
        "",
    );
    r.ok(
        Some(&alice),
        &["requests", "resubmit", &id, "--notes", "the registry team"],
        &format!("{SECRET}\n"),
    );
    r.ok(Some(&bob), &["requests", "approve", &id], "");
    let events: Vec<Value> =
        r.p.read("events.jsonl")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "request_submitted",
            "request_rejected",
            "request_submitted",
            "request_approved"
        ],
        "{events:?}"
    );
    assert!(events.iter().all(|e| e["request_id"] == id.as_str()));
    assert_eq!(events[0]["by"], "token:alice");
    assert_eq!(events[1]["by"], "token:bob");
    assert_eq!(events[1]["reason"], "say who owns it");
    assert!(!r.p.read("events.jsonl").contains(SECRET));
}

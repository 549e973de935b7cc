//! Notifications (issue #27): `annotations.dsm.notifications` receivers told by real runs: a
//! webhook on loopback (a real HTTP server in the test) gets signed deliveries and a retry
//! after a 500; a command gets the event as JSON on stdin with nothing that grants access in
//! its environment; a delivery that never succeeds shows in `dsm health`.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::support::{TestProject, script};

const TAP: &str = env!("CARGO_BIN_EXE_dsm-fake-tap");
const SECRET: &str = "n0tify-s3cret-value";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Got {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// An HTTP receiver on loopback answering the statuses in `answers` in turn (the last one
/// from then on), keeping every request.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Got>>>,
}

impl Receiver {
    fn start(answers: &[u16]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/hooks/secret-path?token=abc",
            listener.local_addr().unwrap()
        );
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let answers = answers.to_vec();
        let seen = got.clone();
        std::thread::spawn(move || {
            for (i, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    let (k, v) = h.split_once(':').unwrap();
                    headers.push((k.trim().to_owned(), v.trim().to_owned()));
                }
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, v)| v.parse().unwrap());
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                seen.lock().unwrap().push(Got { headers, body });
                let status = answers[i.min(answers.len() - 1)];
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Receiver { url, got }
    }

    fn requests(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

/// A project with a tap that fails (`tap-bad`) and one that works (`tap-good`), both into
/// `target-jsonl`, and `notifications` as given (YAML flow style).
fn project(notifications: &str) -> TestProject {
    let p = TestProject::empty();
    script(
        &p,
        "good.sh",
        &format!("exec {TAP} --generate 3 --stream users \"$@\"\n"),
    );
    script(
        &p,
        "bad.sh",
        &format!("exec {TAP} --generate 1 --stream users --exit-code 3 \"$@\"\n"),
    );
    p.write(
        "meltano.yml",
        &format!(
            "\
version: 1
annotations:
  dsm:
    notifications: {notifications}
plugins:
  extractors:
  - name: tap-good
    namespace: tap_good
    executable: ./good.sh
  - name: tap-bad
    namespace: tap_bad
    executable: ./bad.sh
  loaders:
  - name: target-jsonl
    variant: dsm
    config: {{destination_path: out}}
"
        ),
    );
    p
}

/// Makes a master key and stores the webhook secret as the secret store's `notifications`
/// entry `NOTIFY_SECRET`.
fn with_stored_secret(p: TestProject) -> TestProject {
    let key = p.root().join(".keys/master.key");
    let out = p.dsm(&["secrets", "init", "--key-file", key.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let p = p.env("DSM_MASTER_KEY_FILE", key.to_str().unwrap());
    p.write(".keys/notify-secret", SECRET);
    let file = p.root().join(".keys/notify-secret");
    let out = p.dsm(&[
        "secrets",
        "set",
        "notifications",
        "NOTIFY_SECRET",
        "--from-file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    p
}

#[test]
fn issue_27_a_webhook_gets_a_signed_source_error_and_a_retry_after_a_500() {
    let receiver = Receiver::start(&[500, 200]);
    let p = with_stored_secret(project(&format!(
        "[{{events: [source_error], webhook: {{url: '{}', secret: $NOTIFY_SECRET}}}}]",
        receiver.url
    )));
    let out = p.dsm(&["run", "tap-bad", "target-jsonl"]);
    assert_ne!(out.code, 0, "the run fails: {}", out.stderr);
    // The command waited for the delivery before it exited: a 500, then a retry that took.
    let got = receiver.requests();
    assert_eq!(got.len(), 2, "{got:?}");
    for request in &got {
        assert_eq!(request.header("content-type"), Some("application/json"));
        dsm::webhooks::verify(
            SECRET.as_bytes(),
            request.header("x-dsm-timestamp"),
            request.header("x-dsm-signature"),
            &request.body,
            chrono::Utc::now().timestamp(),
        )
        .unwrap_or_else(|e| panic!("a bad signature: {e:?}"));
        // Signed with this secret and no other.
        assert!(
            dsm::webhooks::verify(
                b"another-secret",
                request.header("x-dsm-timestamp"),
                request.header("x-dsm-signature"),
                &request.body,
                chrono::Utc::now().timestamp(),
            )
            .is_err()
        );
        assert_eq!(request.header("x-dsm-event"), Some("source_error"));
    }
    let doc = got[1].json();
    assert_eq!(doc["event"], "source_error");
    assert_eq!(doc["source"], "tap-bad");
    assert!(doc["text"].as_str().unwrap().contains("tap-bad"), "{doc}");
    assert!(
        doc["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{doc}"
    );
    assert!(doc["run_id"].is_string(), "{doc}");
    // One delivery, two attempts.
    assert_eq!(got[0].json()["delivery_id"], doc["delivery_id"]);
    // The secret is nowhere but in the signature.
    assert!(!out.stderr.contains(SECRET) && !out.stdout.contains(SECRET));
    assert!(!String::from_utf8_lossy(&got[1].body).contains(SECRET));
    // A second failure in a row is not news: no new delivery.
    let out = p.dsm(&["run", "tap-bad", "target-jsonl"]);
    assert_ne!(out.code, 0);
    assert_eq!(receiver.requests().len(), 2);
    // Delivered in the end: nothing in `dsm health` about it.
    let health = p.dsm(&["health", "--format", "json"]).json();
    assert!(
        health
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["kind"] != "notification"),
        "{health}"
    );
}

#[test]
fn issue_27_a_command_gets_the_event_on_stdin_and_a_failed_delivery_shows_in_health() {
    // Nothing listens on this port: every attempt of the webhook fails.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let p = project(&format!(
        "[{{events: [first_sync_finished, source_error], command: [./receiver.sh, one arg]}}, \
          {{events: [source_error], webhook: {{url: '{dead_url}', secret: '${{NOTIFY_SECRET}}'}}}}]"
    ))
    .env("NOTIFY_SECRET", SECRET)
    .env("DSM_TOKEN", "dsm_token_that_must_not_leak");
    script(
        &p,
        "receiver.sh",
        "cat > \"event-$DSM_EVENT.json\"\nprintf '%s\\n' \"$1\" > args.txt\nenv > \"env-$DSM_EVENT.txt\"\n",
    );
    // The first good sync of tap-good.
    let out = p.dsm(&["run", "tap-good", "target-jsonl"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let first: Value = serde_json::from_str(&p.read("event-first_sync_finished.json")).unwrap();
    assert_eq!(first["event"], "first_sync_finished");
    assert_eq!(first["source"], "tap-good");
    assert_eq!(first["records"], 3);
    assert!(
        first["text"].as_str().unwrap().contains("3 records"),
        "{first}"
    );
    assert_eq!(p.read("args.txt"), "one arg\n");
    // A second good sync is not the first.
    std::fs::remove_file(p.root().join("event-first_sync_finished.json")).unwrap();
    let out = p.dsm(&["run", "tap-good", "target-jsonl"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!p.root().join("event-first_sync_finished.json").exists());

    // tap-bad fails: the command hears of it, the webhook cannot be reached.
    let out = p.dsm(&["run", "tap-bad", "target-jsonl"]);
    assert_ne!(out.code, 0);
    let error: Value = serde_json::from_str(&p.read("event-source_error.json")).unwrap();
    assert_eq!(error["source"], "tap-bad");
    // The command's environment: no token, key or notification secret.
    let env = p.read("env-source_error.txt");
    assert!(env.contains("DSM_EVENT=source_error"), "{env}");
    for leaked in [
        "DSM_TOKEN",
        "dsm_token_that_must_not_leak",
        "DSM_DATABASE_URI",
        SECRET,
    ] {
        assert!(
            !env.contains(leaked),
            "`{leaked}` reached the command:\n{env}"
        );
    }

    // Every attempt at the webhook failed: `dsm health` says so, in JSON and text.
    let health = p.dsm(&["health", "--format", "json"]);
    let doc = crate::json_contract::assert_matches("health", &["health"], &health);
    let line = doc
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["kind"] == "notification")
        .unwrap_or_else(|| panic!("no notification line: {doc}"))
        .clone();
    assert_eq!(line["verdict"], "failing", "{line}");
    assert_eq!(line["failures"], 1, "{line}");
    assert_eq!(line["runs"], 1, "{line}");
    let name = line["name"].as_str().unwrap();
    assert!(
        name.contains("notifications[1] webhook http://127.0.0.1"),
        "{name}"
    );
    assert!(
        !name.contains("/hook"),
        "the URL's path is not shown: {name}"
    );
    assert!(
        line["last_error"]
            .as_str()
            .unwrap()
            .contains("source_error after 5 attempts"),
        "{line}"
    );
    let text = p.dsm(&["health"]);
    assert!(text.stdout.contains("notification"), "{}", text.stdout);
    let checked = p.dsm(&["health", "--check"]);
    assert_eq!(checked.code, 1, "{}", checked.stderr);
    assert!(
        checked
            .stderr
            .contains("1 notification receiver(s) had failed deliveries"),
        "{}",
        checked.stderr
    );
    // The command's delivery went through: it has no line.
    assert!(
        doc.as_array()
            .unwrap()
            .iter()
            .filter(|h| h["kind"] == "notification")
            .count()
            == 1
    );
}

#[test]
fn issue_27_a_literal_webhook_secret_or_an_unknown_event_is_refused_by_validate() {
    let p = project(
        "[{events: [source_error], webhook: {url: 'https://h.example/x', secret: hunter2-literal}}]",
    );
    let out = p.dsm(&["validate"]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("notifications"), "{all}");
    assert!(all.contains("secret"), "{all}");
    assert!(!all.contains("hunter2"), "the value is not shown: {all}");
    let p = project("[{events: [source_eror], command: [./x.sh]}]");
    let out = p.dsm(&["validate"]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("source_eror"), "{all}");
}

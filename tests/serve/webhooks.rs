//! Webhooks in (issue #28): signed events posted to a real `dsm serve`, stored durably, then
//! delivered by `dsm run tap-webhook ...` exactly once.

use super::*;

pub(super) const HOOK_SECRET: &str = "whsec-0123456789abcdef";
const TARGET: &str = env!("CARGO_BIN_EXE_dsm-fake-target");

/// A project made the way a user would: `dsm add tap-webhook` (whose template makes it a
/// webhook source), the secret in the encrypted store, `target-jsonl` and a loader that never
/// confirms a STATE and fails.
pub(super) fn webhook_project() -> Project {
    let p = Project::new("version: 1\ndefault_environment: dev\nenvironments:\n- name: dev\n")
        .with_master_key();
    for plugin in ["tap-webhook", "target-jsonl"] {
        let (code, _, err) = p.dsm(&["add", plugin]);
        assert_eq!(code, 0, "{err}");
    }
    let yml = std::fs::read_to_string(p.root().join("meltano.yml")).unwrap();
    assert!(
        yml.contains("type: webhook"),
        "the template sets the type:\n{yml}"
    );
    p.write(
        "broken.sh",
        &format!("#!/bin/sh\nexec {TARGET} --no-state --exit-code 1 \"$@\"\n"),
    );
    std::fs::set_permissions(
        p.root().join("broken.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    p.write(
        "meltano.yml",
        &format!(
            "{yml}  - name: target-broken\n    namespace: target_broken\n    executable: ./broken.sh\n"
        ),
    );
    let (code, _, err) = p.dsm(&["config", "set", "target-jsonl", "destination_path", "out"]);
    assert_eq!(code, 0, "{err}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsm"));
    cmd.args(["config", "set", "tap-webhook", "secret", "--value-stdin"]);
    clean(&mut cmd, p.root());
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), HOOK_SECRET.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    p
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Server {
    /// Posts `body` to a source, signed with `secret` at `ts`.
    fn hook(
        &self,
        source: &str,
        body: &[u8],
        secret: &str,
        ts: i64,
        event_id: Option<&str>,
    ) -> Answer {
        let sig = dsm::webhooks::sign(secret.as_bytes(), ts, body);
        let ts = ts.to_string();
        let mut headers = vec![
            ("Content-Type", "application/json"),
            ("X-DSM-Timestamp", ts.as_str()),
            ("X-DSM-Signature", sig.as_str()),
        ];
        if let Some(id) = event_id {
            headers.push(("X-DSM-Event-Id", id));
        }
        self.call(
            "POST",
            &format!("/api/webhooks/{source}"),
            &headers,
            Some(body),
        )
    }
}

/// The `events` records target-jsonl wrote, as (id, payload).
fn delivered(p: &Project) -> Vec<(i64, Value)> {
    let path = p.root().join("out/events.jsonl");
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["id"].as_i64().unwrap(), v["payload"].clone())
        })
        .collect()
}

fn listed(p: &Project) -> Vec<Value> {
    let (code, out, err) = p.dsm(&["--format", "json", "webhooks", "list", "tap-webhook"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn statuses(p: &Project) -> Vec<(i64, String)> {
    listed(p)
        .iter()
        .map(|e| {
            (
                e["id"].as_i64().unwrap(),
                e["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn issue_28_signed_events_are_checked_stored_before_the_answer_and_survive_a_restart() {
    let p = webhook_project();
    let server = p.serve(&[]);
    let mut answers = Vec::new();

    let first = server.hook(
        "tap-webhook",
        br#"{"order":1}"#,
        HOOK_SECRET,
        now(),
        Some("evt-1"),
    );
    assert_eq!(first.status, 202, "{}", first.body);
    assert_eq!(first.json()["duplicate"], false);
    let id1 = first.json()["id"].as_i64().unwrap();
    // The same event id again: not stored twice, the first id answered.
    let dup = server.hook(
        "tap-webhook",
        br#"{"order":1}"#,
        HOOK_SECRET,
        now(),
        Some("evt-1"),
    );
    assert_eq!((dup.status, dup.json()["id"].as_i64()), (200, Some(id1)));
    assert_eq!(dup.json()["duplicate"], true);
    let second = server.hook("tap-webhook", br#"{"order":2}"#, HOOK_SECRET, now(), None);
    assert_eq!(second.status, 202, "{}", second.body);
    answers.extend([first.body, dup.body, second.body]);

    // Every refusal is a problem document and stores nothing.
    let body = br#"{"order":3}"#;
    let bad_sig = server.hook("tap-webhook", body, "not-the-secret", now(), None);
    bad_sig.problem(401);
    let stale = server.hook("tap-webhook", body, HOOK_SECRET, now() - 301, None);
    assert!(
        stale.problem(401)["title"]
            .as_str()
            .unwrap()
            .contains("too old")
    );
    let future = server.hook("tap-webhook", body, HOOK_SECRET, now() + 301, None);
    assert!(
        future.problem(401)["title"]
            .as_str()
            .unwrap()
            .contains("future")
    );
    let unsigned = server.call(
        "POST",
        "/api/webhooks/tap-webhook",
        &[("Content-Type", "application/json")],
        Some(body),
    );
    unsigned.problem(401);
    // A signature over another body (the body was changed on the way).
    let sig = dsm::webhooks::sign(HOOK_SECRET.as_bytes(), now(), br#"{"order":4}"#);
    let ts = now().to_string();
    server
        .call(
            "POST",
            "/api/webhooks/tap-webhook",
            &[("X-DSM-Timestamp", &ts), ("X-DSM-Signature", &sig)],
            Some(body),
        )
        .problem(401);
    let malformed = server.hook("tap-webhook", b"{\"order\": ", HOOK_SECRET, now(), None);
    malformed.problem(400);
    let bad_id = server.hook("tap-webhook", body, HOOK_SECRET, now(), Some("has space"));
    bad_id.problem(400);
    // Over 1 MiB, announced or sent chunked: 413 (a raw client, since the server may close
    // the connection before a client insisting on sending all of it is done).
    let addr = server.base.trim_start_matches("http://").to_owned();
    let raw = |head: &str, chunked_body: Option<&[u8]>| {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        write!(stream, "POST /api/webhooks/tap-webhook HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nConnection: close\r\n{head}\r\n").unwrap();
        if let Some(b) = chunked_body {
            let _ = write!(stream, "{:x}\r\n", b.len());
            let _ = stream.write_all(b);
            let _ = stream.write_all(b"\r\n0\r\n\r\n");
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    };
    let announced = raw("Content-Length: 2097152\r\n", None);
    assert!(announced.starts_with("HTTP/1.1 413"), "{announced}");
    let mut big = b"{\"pad\":\"".to_vec();
    big.extend(std::iter::repeat_n(b'x', 1024 * 1024));
    big.extend(b"\"}");
    let ts = now();
    let sig = dsm::webhooks::sign(HOOK_SECRET.as_bytes(), ts, &big);
    let chunked = raw(
        &format!(
            "Transfer-Encoding: chunked\r\nX-DSM-Timestamp: {ts}\r\nX-DSM-Signature: {sig}\r\n"
        ),
        Some(&big),
    );
    assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");
    assert!(chunked.contains("application/problem+json"), "{chunked}");
    server
        .hook("tap-nope", body, HOOK_SECRET, now(), None)
        .problem(404);
    // A loader is not a webhook source.
    server
        .hook("target-jsonl", body, HOOK_SECRET, now(), None)
        .problem(404);
    answers.extend([bad_sig.body, stale.body, future.body, malformed.body]);
    assert_eq!(
        statuses(&p),
        [(id1, "pending".into()), (id1 + 1, "pending".into())],
        "only the two good events are stored"
    );
    let (code, out, err) = p.dsm(&[
        "--format",
        "json",
        "webhooks",
        "show",
        "tap-webhook",
        &id1.to_string(),
    ]);
    assert_eq!(code, 0, "{err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["payload"], serde_json::json!({"order": 1}));
    assert_eq!(shown["event_id"], "evt-1");

    // Failures are limited per address like failed logins: 7 so far, the 10th is the last.
    for _ in 0..3 {
        server
            .hook("tap-webhook", body, "wrong", now(), None)
            .problem(401);
    }
    let limited = server.hook("tap-webhook", body, HOOK_SECRET, now(), None);
    limited.problem(429);
    assert!(limited.header("retry-after").is_some());
    // The token API of the same address is not locked out by a misbehaving sender.
    assert_eq!(server.call("GET", "/readyz", &[], None).status, 200);

    // The secret is in no answer and no log line.
    let log = server.log();
    for text in answers.iter().chain([&log]) {
        assert!(!text.contains(HOOK_SECRET), "{text}");
    }
    let (code, _) = server.stop();
    assert_eq!(code, 0);

    // A new server process: the events are still there and the dedupe still holds.
    let server = p.serve(&[]);
    let again = server.hook(
        "tap-webhook",
        br#"{"order":1}"#,
        HOOK_SECRET,
        now(),
        Some("evt-1"),
    );
    assert_eq!(
        (again.status, again.json()["id"].as_i64()),
        (200, Some(id1))
    );
    assert_eq!(listed(&p).len(), 2);
}

#[test]
fn issue_28_a_run_delivers_each_event_once_a_failed_run_leaves_them_pending_and_replay_resends() {
    let p = webhook_project();
    let server = p.serve(&[]);
    let mut ids = Vec::new();
    for n in 1..=3 {
        let body = format!(r#"{{"n":{n}}}"#);
        let a = server.hook(
            "tap-webhook",
            body.as_bytes(),
            HOOK_SECRET,
            now(),
            Some(&format!("e{n}")),
        );
        assert_eq!(a.status, 202, "{}", a.body);
        ids.push(a.json()["id"].as_i64().unwrap());
    }
    // A loader that fails without confirming: nothing is consumed.
    let (code, _, err) = p.dsm(&["run", "tap-webhook", "target-broken"]);
    assert_ne!(code, 0, "{err}");
    assert!(statuses(&p).iter().all(|(_, s)| s == "pending"));

    let (code, _, err) = p.dsm(&["run", "tap-webhook", "target-jsonl"]);
    assert_eq!(code, 0, "{err}");
    let got = delivered(&p);
    assert_eq!(got.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids);
    assert_eq!(got[2].1, serde_json::json!({"n": 3}));
    assert!(statuses(&p).iter().all(|(_, s)| s == "consumed"));
    // The secret reached neither the tap nor the loader: dsm hands the tap its events only.
    for entry in std::fs::read_dir(p.root().join(".dsm/logs")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!text.contains(HOOK_SECRET));
    }

    // Nothing is sent twice; an event that came after the run is sent by the next one.
    let (code, _, err) = p.dsm(&["run", "tap-webhook", "target-jsonl"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(delivered(&p).len(), 3);
    let late = server.hook("tap-webhook", br#"{"n":4}"#, HOOK_SECRET, now(), None);
    let late_id = late.json()["id"].as_i64().unwrap();
    let (code, _, err) = p.dsm(&["run", "tap-webhook", "target-jsonl"]);
    assert_eq!(code, 0, "{err}");
    let got: Vec<i64> = delivered(&p).iter().map(|(id, _)| *id).collect();
    assert_eq!(got, [ids[0], ids[1], ids[2], late_id]);

    // Replay: the event is pending again, sent once more, and the replay is audited.
    let (code, out, err) = p.dsm(&[
        "--format",
        "json",
        "webhooks",
        "replay",
        "tap-webhook",
        &ids[1].to_string(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["replayed"],
        serde_json::json!([ids[1]])
    );
    let (code, _, err) = p.dsm(&["run", "tap-webhook", "target-jsonl"]);
    assert_eq!(code, 0, "{err}");
    let got: Vec<i64> = delivered(&p).iter().map(|(id, _)| *id).collect();
    assert_eq!(got, [ids[0], ids[1], ids[2], late_id, ids[1]]);
    let (code, audit, err) = p.dsm(&["audit", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(audit.contains("webhooks.replay"), "{audit}");
}

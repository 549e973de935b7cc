//! Source requests over HTTP (issue #27): a requester submits, an approver rejects, the
//! requester resubmits, the approver approves and the source runs; each with a token of its
//! own, every transition in the audit log, the secret nowhere in an answer.

use super::*;

const REQ_SECRET: &str = "api-request-secret-never-shown";

fn post(server: &Server, path: &str, token: &str, body: &Value) -> Answer {
    let auth = format!("Bearer {token}");
    server.call(
        "POST",
        path,
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        Some(body.to_string().as_bytes()),
    )
}

fn token_in(p: &Project, name: &str, role: &str, org: &str) -> String {
    let (code, out, err) = p.dsm(&[
        "tokens",
        "create",
        name,
        "--role",
        role,
        "--organisation",
        org,
    ]);
    assert_eq!(code, 0, "{err}");
    out.trim().to_owned()
}

fn request_body(name: &str, file: &str) -> Value {
    serde_json::json!({
        "name": name,
        "description": "the people list",
        "template": "tap-csv",
        "config": {"files": [{"entity": "people", "path": file, "keys": ["id"]}]},
        "secrets": {"api_password": REQ_SECRET},
        "classification": "public",
        "notes": "nightly export",
    })
}

#[test]
fn issue_27_requests_over_http_from_submission_to_a_running_source() {
    let p = Project::new(
        "\
version: 1
project_id: api-requests
default_environment: dev
environments:
- name: dev
annotations:
  dsm:
    defaults:
      default_loader: target-jsonl
    requests:
      first_sync: true
plugins:
  loaders:
  - name: target-jsonl
    variant: dsm
    config: {destination_path: out}
",
    )
    .with_master_key();
    p.write("people.csv", "id,name\n1,ada\n2,grace\n");
    let alice = token_in(&p, "alice", "requester", "uni");
    let dave = token_in(&p, "dave", "requester", "ministry");
    let bob = p.token("bob", "approver");
    let carol = p.token("carol", "admin");
    let vic = p.token("vic", "viewer");
    let server = p.serve(&[]);
    let mut answers = String::new();

    // Submitted: 201 with its id and status; only in the store.
    let made = post(
        &server,
        "/api/requests",
        &alice,
        &request_body("tap-people", "people.csv"),
    );
    assert_eq!(made.status, 201, "{}", made.body);
    let id = made.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(made.json()["status"], "pending");
    assert_eq!(
        made.header("location"),
        Some(format!("/api/requests/{id}").as_str())
    );
    answers.push_str(&made.body);
    assert!(
        !std::fs::read_to_string(p.root().join("meltano.yml"))
            .unwrap()
            .contains("tap-people")
    );
    let viewer = post(
        &server,
        "/api/requests",
        &vic,
        &request_body("tap-v", "people.csv"),
    );
    viewer.problem(403);

    // Visibility: 404 for another organisation's requester, in the list and by id.
    let path = format!("/api/requests/{id}");
    let mine = server.get(&path, &alice);
    assert_eq!(mine.status, 200, "{}", mine.body);
    assert_eq!(
        mine.json()["request"]["secrets"],
        serde_json::json!(["api_password"])
    );
    answers.push_str(&mine.body);
    server.get(&path, &dave).problem(404);
    let theirs = server.get("/api/requests", &dave);
    assert_eq!(theirs.json()["requests"], serde_json::json!([]));
    let all = server.get("/api/requests?status=pending", &bob);
    assert_eq!(all.json()["requests"][0]["id"], id.as_str());
    answers.push_str(&all.body);
    server.get("/api/requests", &vic).problem(403);

    // No reason: 422. Its requester may not decide it: 403. Rejected with a reason.
    let reject = format!("{path}/reject");
    post(&server, &reject, &bob, &serde_json::json!({})).problem(422);
    post(&server, &reject, &bob, &serde_json::json!({"reason": " "})).problem(422);
    post(
        &server,
        &reject,
        &alice,
        &serde_json::json!({"reason": "x"}),
    )
    .problem(403);
    let rejected = post(
        &server,
        &reject,
        &bob,
        &serde_json::json!({"reason": "name the owner"}),
    );
    assert_eq!(rejected.status, 200, "{}", rejected.body);
    assert_eq!(rejected.json()["status"], "rejected");
    let seen = server.get(&path, &alice).json();
    assert_eq!(seen["reason"], "name the owner");

    // An admin's own request: 403 for the admin, whatever the role.
    let own = post(
        &server,
        "/api/requests",
        &carol,
        &request_body("tap-own", "people.csv"),
    );
    assert_eq!(own.status, 201, "{}", own.body);
    let own_id = own.json()["id"].as_str().unwrap().to_owned();
    post(
        &server,
        &format!("/api/requests/{own_id}/approve"),
        &carol,
        &serde_json::json!({}),
    )
    .problem(403);

    // Resubmitted by its requester only; tested; approved: the source is in meltano.yml and
    // runs.
    let resubmit = format!("{path}/resubmit");
    post(&server, &resubmit, &dave, &serde_json::json!({})).problem(404);
    let again = post(
        &server,
        &resubmit,
        &alice,
        &serde_json::json!({"notes": "owned by registry"}),
    );
    assert_eq!(again.json()["status"], "pending", "{}", again.body);
    let tested = post(
        &server,
        &format!("{path}/test"),
        &bob,
        &serde_json::json!({}),
    );
    assert_eq!(tested.status, 200, "{}", tested.body);
    assert_eq!(tested.json()["succeeded"], true, "{}", tested.body);
    answers.push_str(&tested.body);
    let approved = post(
        &server,
        &format!("{path}/approve"),
        &bob,
        &serde_json::json!({}),
    );
    assert_eq!(approved.status, 200, "{}", approved.body);
    assert_eq!(approved.json()["source"], "tap-people");
    assert_eq!(approved.json()["first_sync"], true);
    answers.push_str(&approved.body);
    // The first sync runs after the answer; its outcome becomes the request's last step.
    let deadline = Instant::now() + Duration::from_secs(60);
    let last = loop {
        let doc = server.get(&path, &bob).json();
        let last = doc["history"].as_array().unwrap().last().unwrap().clone();
        if last["action"] == "first_sync" || Instant::now() > deadline {
            break last;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(last["action"], "first_sync", "{last}");
    assert_eq!(last["reason"], "succeeded", "{last}");
    let synced = std::fs::read_to_string(p.root().join("out/people.jsonl")).unwrap();
    assert_eq!(synced.lines().count(), 2, "{synced}");
    let yml = std::fs::read_to_string(p.root().join("meltano.yml")).unwrap();
    assert!(yml.contains("- name: tap-people"), "{yml}");
    let source = server.get("/api/sources/tap-people", &bob);
    assert_eq!(source.status, 200, "{}", source.body);
    post(
        &server,
        &reject,
        &bob,
        &serde_json::json!({"reason": "late"}),
    )
    .problem(409);

    // A failing test blocks approval (422) until overridden with a reason.
    let bad = post(
        &server,
        "/api/requests",
        &alice,
        &request_body("tap-bad", "missing.csv"),
    );
    let bad_path = format!("/api/requests/{}", bad.json()["id"].as_str().unwrap());
    post(
        &server,
        &format!("{bad_path}/approve"),
        &bob,
        &serde_json::json!({}),
    )
    .problem(422);
    post(
        &server,
        &format!("{bad_path}/approve"),
        &bob,
        &serde_json::json!({"override_test": true}),
    )
    .problem(422);
    let over = post(
        &server,
        &format!("{bad_path}/approve"),
        &bob,
        &serde_json::json!({"override_test": true, "reason": "the file lands tonight"}),
    );
    assert_eq!(over.status, 200, "{}", over.body);
    assert_eq!(over.json()["test"]["succeeded"], false);

    // Cancelled by its requester.
    let gone = post(
        &server,
        "/api/requests",
        &alice,
        &request_body("tap-gone", "people.csv"),
    );
    let cancel = post(
        &server,
        &format!(
            "/api/requests/{}/cancel",
            gone.json()["id"].as_str().unwrap()
        ),
        &alice,
        &serde_json::json!({}),
    );
    assert_eq!(cancel.json()["status"], "cancelled", "{}", cancel.body);
    let log = server.log();
    drop(server);

    let (code, out, err) = p.dsm(&["run", "tap-people", "target-jsonl"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, audit, err) = p.dsm(&["audit", "list", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    for action in [
        "request.submit",
        "request.reject",
        "request.resubmit",
        "request.test",
        "request.approve",
        "request.cancel",
        "request.first_sync",
    ] {
        assert!(audit.contains(action), "{action}: {audit}");
    }
    assert!(audit.contains("dsm serve (token:bob)"), "{audit}");
    let (code, out, err) = p.dsm(&["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!answers.contains(REQ_SECRET), "a secret was in an answer");
    assert!(!log.contains(REQ_SECRET), "a secret was logged");
    assert!(!yml.contains(REQ_SECRET));
}

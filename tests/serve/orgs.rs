//! Organisations and visibility over HTTP (issue #27): a source belongs to an organisation or
//! to the platform, and its classification label's visibility decides who else sees it. Tokens
//! of different organisations and roles, one real server.

use super::*;

/// Two organisations' sources and the platform's, with every visibility (built-in labels:
/// `public` everyone, `internal` organisations, `confidential` own).
fn orgs_project() -> Project {
    let p = Project::new("version: 1\n");
    p.write(
        "tap.sh",
        &format!("#!/bin/sh\nexec {TAP} --generate 3 --stream users \"$@\"\n"),
    );
    std::fs::set_permissions(
        p.root().join("tap.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let tap = |name: &str, org: Option<&str>, label: Option<&str>| {
        let mut source = Vec::new();
        if let Some(o) = org {
            source.push(format!("organisation: {o}"));
        }
        if let Some(l) = label {
            source.push(format!("classification: {l}"));
        }
        format!(
            "  - name: {name}\n    namespace: {}\n    executable: ./tap.sh\n    annotations: {{dsm: {{default_loader: target-jsonl, source: {{{}}}}}}}\n",
            name.replace('-', "_"),
            source.join(", ")
        )
    };
    let mut yml = String::from("version: 1\nplugins:\n  extractors:\n");
    yml += &tap("tap-a-own", Some("ministry-a"), Some("confidential"));
    yml += &tap("tap-a-shared", Some("ministry-a"), Some("internal"));
    yml += &tap("tap-a-public", Some("ministry-a"), Some("public"));
    yml += &tap("tap-b-own", Some("uni-b"), Some("confidential"));
    yml += &tap("tap-platform-own", None, Some("confidential"));
    yml += &tap("tap-platform", None, None);
    yml += "  loaders:\n  - name: target-jsonl\n    variant: dsm\n    config: {destination_path: out}\n    annotations: {dsm: {clearance: confidential}}\n";
    p.write("meltano.yml", &yml);
    p
}

impl Project {
    /// Creates a token limited to `org` and returns it.
    fn org_token(&self, name: &str, role: &str, org: &str) -> String {
        let (code, out, err) = self.dsm(&[
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
}

/// The names of every page of `GET /api/sources` (two per page, so paging is walked).
fn listed(server: &Server, token: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut path = "/api/sources?limit=2".to_owned();
    loop {
        let page = server.get(&path, token);
        assert_eq!(page.status, 200, "{}", page.body);
        let page = page.json();
        let items = page["items"].as_array().unwrap();
        assert!(!items.is_empty(), "an empty page: {page}");
        names.extend(items.iter().map(|i| i["name"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/sources?limit=2&cursor={c}"),
            None => return names,
        }
    }
}

fn post_json(server: &Server, path: &str, token: &str, body: &Value) -> Answer {
    let auth = format!("Bearer {token}");
    server.call(
        "POST",
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(body.to_string().as_bytes()),
    )
}

#[test]
fn issue_27_each_organisation_sees_its_sources_and_what_labels_share() {
    let p = orgs_project();
    // A finished run of ministry-a's own source, before the server starts.
    let (code, _, err) = p.dsm(&["run", "tap-a-own", "target-jsonl"]);
    assert_eq!(code, 0, "{err}");
    let a_viewer = p.org_token("a-viewer", "viewer", "ministry-a");
    let b_ops = p.org_token("b-ops", "operator", "uni-b");
    let platform = p.token("platform-viewer", "viewer");
    let admin = p.token("admin", "admin");
    let server = p.serve(&[]);

    // The list, walked page by page: another organisation's `own` source is not in it, nor
    // the platform's; `organisations` and `everyone` sources are.
    let shared = [
        "tap-a-public",
        "tap-a-shared",
        "tap-platform",
        "target-jsonl",
    ];
    let mut want_b: Vec<&str> = shared.to_vec();
    want_b.push("tap-b-own");
    want_b.sort();
    assert_eq!(listed(&server, &b_ops), want_b);
    let mut want_a: Vec<&str> = shared.to_vec();
    want_a.push("tap-a-own");
    want_a.sort();
    assert_eq!(listed(&server, &a_viewer), want_a);
    // The platform (no organisation) sees its own sources and the shared ones, not an
    // organisation's `own` ones; the organisation-less admin sees everything.
    let mut want_platform: Vec<&str> = shared.to_vec();
    want_platform.push("tap-platform-own");
    want_platform.sort();
    assert_eq!(listed(&server, &platform), want_platform);
    assert_eq!(listed(&server, &admin).len(), 7);
    // Filters and search do not find a hidden source either.
    let found = server.get("/api/sources?q=a-own", &b_ops).json();
    assert_eq!(found["items"], serde_json::json!([]), "{found}");

    // By id: 404 for a source the caller does not see, like one that does not exist, and
    // the did-you-mean does not name it.
    for path in [
        "/api/sources/tap-a-own",
        "/api/sources/tap-a-own/health",
        "/api/sources/tap-platform-own",
    ] {
        server.get(path, &b_ops).problem(404);
    }
    for path in ["/api/sources/tap-a-own/test", "/api/sources/tap-a-own/sync"] {
        server.post(path, &b_ops).problem(404);
    }
    let credentials = post_json(
        &server,
        "/api/sources/tap-a-own/credentials",
        &b_ops,
        &serde_json::json!({"settings": {"password": "x"}}),
    );
    credentials.problem(404);
    let status = post_json(
        &server,
        "/api/sources/tap-a-own/status",
        &b_ops,
        &serde_json::json!({"status": "maintenance", "reason": "x"}),
    );
    status.problem(404);
    let near = server.get("/api/sources/tap-a-ow", &b_ops).problem(404);
    assert!(!near.to_string().contains("tap-a-own"), "{near}");
    let near = server.get("/api/sources/tap-a-ow", &a_viewer).problem(404);
    assert!(near.to_string().contains("tap-a-own"), "{near}");

    // Visible ones answer, and the document shows the organisation.
    let doc = server.get("/api/sources/tap-a-own", &a_viewer);
    assert_eq!(doc.status, 200, "{}", doc.body);
    assert_eq!(doc.json()["organisation"], "ministry-a");
    let doc = server.get("/api/sources/tap-a-shared", &b_ops).json();
    assert_eq!(doc["organisation"], "ministry-a");
    let doc = server.get("/api/sources/tap-a-public", &b_ops).json();
    assert_eq!(doc["organisation"], "ministry-a");
    let doc = server.get("/api/sources/tap-platform", &b_ops).json();
    assert_eq!(doc["organisation"], Value::Null);
    // Seen is not owned: uni-b's operator acts only on uni-b's sources.
    let refused = server
        .post("/api/sources/tap-a-shared/sync", &b_ops)
        .problem(403);
    assert!(
        refused["title"].as_str().unwrap().contains("ministry-a"),
        "{refused}"
    );
    server
        .post("/api/sources/tap-platform/test", &b_ops)
        .problem(403);

    // The overview counts only what the caller sees.
    assert_eq!(server.get("/api/overview", &b_ops).json()["total"], 5);
    assert_eq!(server.get("/api/overview", &admin).json()["total"], 7);

    // Runs of a hidden source: not listed, 404 by id.
    let runs = server.get("/api/runs", &a_viewer).json();
    let run_id = runs["items"][0]["run_id"].as_str().unwrap().to_owned();
    assert_eq!(runs["items"].as_array().unwrap().len(), 1, "{runs}");
    let runs = server.get("/api/runs", &b_ops).json();
    assert_eq!(runs["items"], serde_json::json!([]), "{runs}");
    server
        .get(&format!("/api/runs/{run_id}"), &b_ops)
        .problem(404);
    server
        .delete(&format!("/api/runs/{run_id}"), &b_ops)
        .problem(404);
    assert_eq!(
        server.get(&format!("/api/runs/{run_id}"), &a_viewer).status,
        200
    );
    // Nor in the flow map or the metrics; the audit log spans every organisation.
    let flows = server.get("/api/flows", &b_ops).body;
    assert!(
        !flows.contains("tap-a-own") && flows.contains("tap-b-own"),
        "{flows}"
    );
    assert!(
        server
            .get("/api/flows", &a_viewer)
            .body
            .contains("tap-a-own")
    );
    let metrics = server.get("/metrics", &b_ops).body;
    assert!(!metrics.contains("tap-a-own"), "{metrics}");
    assert!(server.get("/metrics", &a_viewer).body.contains("tap-a-own"));
    let a_admin = p.org_token("a-admin", "admin", "ministry-a");
    server.get("/api/audit", &a_admin).problem(403);
    assert_eq!(server.get("/api/audit", &admin).status, 200);
}

#[test]
fn issue_27_the_event_stream_tells_nothing_of_a_hidden_source() {
    let p = orgs_project();
    let a_ops = p.org_token("a-ops", "operator", "ministry-a");
    let b_ops = p.org_token("b-ops", "operator", "uni-b");
    let server = p.serve(&[]);
    let b_events = server.events(&b_ops);
    let a_events = server.events(&a_ops);
    // ministry-a syncs its own source, then uni-b its own.
    let started = server.post("/api/sources/tap-a-own/sync", &a_ops);
    assert_eq!(started.status, 202, "{}", started.body);
    let hidden_run = started.json()["run_id"].as_str().unwrap().to_owned();
    let heard = a_events.until("run_finished", |v| v["run_id"] == hidden_run.as_str());
    assert!(
        heard
            .iter()
            .any(|(k, v)| k == "run_started" && v["source"] == "tap-a-own"),
        "{heard:?}"
    );
    let started = server.post("/api/sources/tap-b-own/sync", &b_ops);
    assert_eq!(started.status, 202, "{}", started.body);
    let b_run = started.json()["run_id"].as_str().unwrap().to_owned();
    // Everything uni-b heard until its own run ended: nothing of ministry-a's run.
    let heard = b_events.until("run_finished", |v| v["run_id"] == b_run.as_str());
    assert!(
        heard
            .iter()
            .any(|(k, v)| k == "run_started" && v["source"] == "tap-b-own"),
        "{heard:?}"
    );
    for (kind, event) in &heard {
        assert_ne!(event["source"], "tap-a-own", "{kind}: {event}");
        assert_ne!(event["run_id"], hidden_run.as_str(), "{kind}: {event}");
    }
}

#[test]
fn issue_27_an_organisations_admin_registers_and_keeps_sources_in_its_organisation() {
    let p = orgs_project();
    let a_admin = p.org_token("a-admin", "admin", "ministry-a");
    let b_ops = p.org_token("b-ops", "operator", "uni-b");
    let server = p.serve(&[]);
    let plugin = serde_json::json!({"namespace": "tap_new", "executable": "./tap.sh"});
    // Registered without an organisation: it is ministry-a's.
    let made = post_json(
        &server,
        "/api/sources",
        &a_admin,
        &serde_json::json!({"name": "tap-new", "plugin_type": "extractor", "plugin": plugin,
            "source": {"classification": "confidential"}}),
    );
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(made.json()["organisation"], "ministry-a");
    let yml = std::fs::read_to_string(p.root().join("meltano.yml")).unwrap();
    assert!(yml.contains("organisation: ministry-a"), "{yml}");
    server.get("/api/sources/tap-new", &b_ops).problem(404);
    // Not in another organisation, and not moved out of its own.
    let refused = post_json(
        &server,
        "/api/sources",
        &a_admin,
        &serde_json::json!({"name": "tap-other", "plugin_type": "extractor", "plugin": plugin,
            "source": {"organisation": "uni-b"}}),
    )
    .problem(422);
    assert_eq!(
        refused["errors"][0]["pointer"], "/source/organisation",
        "{refused}"
    );
    let auth = format!("Bearer {a_admin}");
    let moved = server.call(
        "PATCH",
        "/api/sources/tap-new",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/merge-patch+json"),
        ],
        Some(br#"{"annotations": {"dsm": {"source": {"organisation": "uni-b"}}}}"#),
    );
    moved.problem(422);
    let doc = server.get("/api/sources/tap-new", &a_admin).json();
    assert_eq!(doc["organisation"], "ministry-a", "{doc}");
    // Another organisation's `own` source is not there to change or delete.
    server
        .call(
            "DELETE",
            "/api/sources/tap-b-own",
            &[("Authorization", &auth)],
            None,
        )
        .problem(404);
}

#[test]
fn issue_27_failed_notification_deliveries_show_in_the_overview_for_the_platform() {
    let p = Project::new("version: 1\n");
    for (name, body) in [
        (
            "bad.sh",
            format!("#!/bin/sh\nexec {TAP} --generate 1 --stream users --exit-code 3 \"$@\"\n"),
        ),
        ("refuse.sh", "#!/bin/sh\nexit 1\n".to_owned()),
        (
            "dead.sh",
            "#!/bin/sh\necho 'cannot connect' >&2\nexit 3\n".to_owned(),
        ),
        (
            "record.sh",
            "#!/bin/sh\ncat > \"event-$$.json\"\n".to_owned(),
        ),
    ] {
        p.write(name, &body);
        std::fs::set_permissions(p.root().join(name), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    p.write(
        "meltano.yml",
        "\
version: 1
annotations:
  dsm:
    notifications:
    - {events: [source_error], command: [./refuse.sh]}
    - {events: [source_error], command: [./record.sh]}
plugins:
  extractors:
  - name: tap-bad
    namespace: tap_bad
    executable: ./bad.sh
  - name: tap-bad-too
    namespace: tap_bad_too
    executable: ./dead.sh
  loaders:
  - name: target-jsonl
    variant: dsm
    config: {destination_path: out}
",
    );
    // The run fails; the receiver refuses all 5 attempts before the command exits.
    let (code, _, _) = p.dsm(&["run", "tap-bad", "target-jsonl"]);
    assert_ne!(code, 0);
    let platform = p.token("platform-viewer", "viewer");
    let org = p.org_token("a-viewer", "viewer", "ministry-a");
    let server = p.serve(&[]);
    let overview = server.get("/api/overview", &platform).json();
    let failed = overview["failed_deliveries"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{overview}");
    assert_eq!(
        failed[0]["receiver"],
        "notifications[0] command ./refuse.sh"
    );
    assert_eq!(failed[0]["failed"], 1);
    assert!(
        failed[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("source_error after 5 attempts"),
        "{overview}"
    );
    let overview = server.get("/api/overview", &org).json();
    assert_eq!(overview["failed_deliveries"], serde_json::json!([]));

    // A connection test over HTTP that fails takes a source into error: `source_error`, in
    // the background (the answer does not wait for the receivers).
    let ops = p.token("ops", "operator");
    let tested = server.post("/api/sources/tap-bad-too/test", &ops);
    assert_eq!(tested.status, 200, "{}", tested.body);
    assert_eq!(tested.json()["succeeded"], false);
    let events = |source: &str| -> Vec<Value> {
        std::fs::read_dir(p.root())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("event-"))
            .filter_map(|e| serde_json::from_str(&std::fs::read_to_string(e.path()).ok()?).ok())
            .filter(|v: &Value| v["source"] == source)
            .collect()
    };
    assert_eq!(events("tap-bad").len(), 1, "the CLI run's event");
    let deadline = Instant::now() + Duration::from_secs(30);
    while events("tap-bad-too").is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = events("tap-bad-too");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["event"], "source_error");
    assert_eq!(got[0]["run_id"], Value::Null);
    assert!(
        got[0]["error"].as_str().unwrap().contains("test"),
        "{got:?}"
    );
    // Failing again while in error is not news.
    let tested = server.post("/api/sources/tap-bad-too/test", &ops);
    assert_eq!(tested.status, 200, "{}", tested.body);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(events("tap-bad-too").len(), 1);
}

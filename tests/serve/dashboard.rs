//! What `dsm serve` adds for the web dashboard (issue #25): its embedded files, the plugin
//! catalog, the overview and operator status changes. The pages themselves are driven in a
//! real browser by tests/dashboard.

use super::*;
use serde_json::json;

#[test]
fn issue_25_dashboard_files_need_no_token_carry_their_type_csp_and_revalidate() {
    let p = fixture();
    let server = p.serve(&[]);
    let page = server.call("GET", "/", &[], None);
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.body.contains("/assets/app.js"), "{}", page.body);
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    let tag = page.header("etag").unwrap().to_owned();
    let again = server.call("GET", "/", &[("If-None-Match", &tag)], None);
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    for (path, kind) in [
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/style.css", "text/css; charset=utf-8"),
        ("/assets/favicon.svg", "image/svg+xml"),
        ("/favicon.ico", "image/svg+xml"),
    ] {
        let answer = server.call("GET", path, &[], None);
        assert_eq!(answer.status, 200, "{path}");
        assert_eq!(answer.header("content-type"), Some(kind), "{path}");
    }
    let missing = server.call("GET", "/assets/..%2Fmeltano.yml", &[], None);
    let doc = missing.problem(404);
    assert!(
        doc["title"].as_str().unwrap().contains("no dashboard file"),
        "{doc}"
    );
    // The API keeps its own caching rule.
    let api = server.call("GET", "/api/sources", &[], None);
    api.problem(401);
    assert_eq!(api.header("cache-control"), Some("no-store"));
}

#[test]
fn issue_25_the_plugin_catalog_lists_templates_with_their_declared_settings() {
    let p = fixture();
    let viewer = p.token("viewer", "viewer");
    let server = p.serve(&[]);
    let page = server
        .get("/api/plugins?plugin_type=extractor&q=csv&limit=5", &viewer)
        .json();
    let items = page["items"].as_array().unwrap();
    assert!(!items.is_empty() && items.len() <= 5, "{page}");
    assert!(items.iter().all(|i| i["type"] == "extractor"), "{page}");
    let builtin = items
        .iter()
        .find(|i| i["name"] == "tap-csv" && i["variant"] == "dsm")
        .unwrap_or_else(|| panic!("the built-in tap-csv: {page}"));
    let files = builtin["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "files")
        .unwrap();
    assert_eq!(files["kind"], "array");
    assert!(files["description"].as_str().unwrap().contains("entity"));
    assert!(files["required"].is_boolean(), "{files}");
    // A template with a sensitive setting never shows its default.
    let pg = server
        .get("/api/plugins?q=postgres&plugin_type=extractor", &viewer)
        .json();
    let password = pg["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["settings"].as_array().unwrap())
        .find(|s| s["sensitive"] == true)
        .unwrap_or_else(|| panic!("a sensitive setting of a postgres tap: {pg}"));
    assert!(password["value"].is_null(), "{password}");
    // Paging and bad filters.
    let first = server.get("/api/plugins?limit=2", &viewer).json();
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = server
        .get(&format!("/api/plugins?limit=2&cursor={cursor}"), &viewer)
        .json();
    assert_ne!(first["items"][0], second["items"][0]);
    let bad = server.get("/api/plugins?plugin_type=mapper", &viewer);
    let doc = bad.problem(400);
    assert_eq!(doc["errors"][0]["pointer"], "#/query/plugin_type", "{doc}");
}

#[test]
fn issue_25_overview_and_status_changes_with_a_reason() {
    let p = fixture().with_master_key();
    let viewer = p.token("viewer", "viewer");
    let operator = p.token("ops", "operator");
    let admin = p.token("admin", "admin");
    let server = p.serve(&[]);
    let overview = server.get("/api/overview", &viewer).json();
    assert_eq!(overview["total"], 4, "{overview}");
    let count = |doc: &Value, status: &str| {
        doc["by_status"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["status"] == status)
            .unwrap()["count"]
            .clone()
    };
    assert_eq!(count(&overview, "active"), 4, "{overview}");
    let healthy = overview["by_verdict"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["verdict"] == "healthy")
        .unwrap();
    assert_eq!(healthy["count"], 1, "tap-fake ran once: {overview}");

    let path = "/api/sources/tap-fake/status";
    let body = |v: Value| v.to_string().into_bytes();
    let post = |token: &str, v: Value| {
        server.call(
            "POST",
            path,
            &[
                ("Authorization", &format!("Bearer {token}")),
                ("Content-Type", "application/json"),
            ],
            Some(&body(v)),
        )
    };
    post(&viewer, json!({"status": "inactive", "reason": "x"})).problem(403);
    let doc = post(&operator, json!({"status": "inactive"})).problem(422);
    assert_eq!(doc["errors"][0]["pointer"], "/reason", "{doc}");
    assert!(
        doc["detail"].as_str().unwrap().contains("status history"),
        "{doc}"
    );
    post(&operator, json!({"status": "off", "reason": "x"})).problem(422);
    post(
        &operator,
        json!({"status": "inactive", "reason": "x", "extra": 1}),
    )
    .problem(422);
    let changed = post(
        &operator,
        json!({"status": "inactive", "reason": "vendor API migration"}),
    );
    assert_eq!(changed.status, 200, "{}", changed.body);
    let entry = changed.json();
    assert_eq!(entry["status"], "inactive");
    assert_eq!(entry["reason"], "vendor API migration");
    assert!(entry["skipped_by_syncs"] == true, "{entry}");
    // The CLI sees the same registry.
    let (code, out, err) = p.dsm(&["sources", "show", "tap-fake", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("vendor API migration"), "{out}");
    let overview = server.get("/api/overview", &viewer).json();
    assert_eq!(count(&overview, "inactive"), 1, "{overview}");
    let back = post(&operator, json!({"status": "active"}));
    assert_eq!(back.status, 200, "{}", back.body);
    assert_eq!(back.json()["status"], "active");
    let audit = server.get("/api/audit", &admin).json();
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "source.status")
        .map(|e| e["command"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["dsm serve (token ops)"; 2], "{audit}");
    post(&operator, json!({"status": "maintenance", "reason": "y"}));
    let missing = server.call(
        "POST",
        "/api/sources/tap-nope/status",
        &[
            ("Authorization", &format!("Bearer {operator}")),
            ("Content-Type", "application/json"),
        ],
        Some(&body(json!({"status": "active"}))),
    );
    missing.problem(404);
}

//! `tap-rest` against `dsm-fake-api`, a real HTTP server on loopback: every paginator, auth
//! kinds, parent/child resources, incremental runs, a looping API, the rate limit observed by
//! the server, and random 500s, 429s and dropped connections.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Run, run, write_json};

/// A running fake API; killed when dropped.
struct Api {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Api {
    fn start(dir: &Path, args: &[&str]) -> Api {
        let port_file = dir.join(format!("port-{}", rand_suffix()));
        let log = dir.join(format!("requests-{}.jsonl", rand_suffix()));
        let child = Command::new(env!("CARGO_BIN_EXE_dsm-fake-api"))
            .args(["--port-file", port_file.to_str().unwrap()])
            .args(["--log", log.to_str().unwrap()])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let port = loop {
            if let Ok(p) = std::fs::read_to_string(&port_file) {
                break p.trim().parse().unwrap();
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "fake API did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        Api { child, port, log }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The requests the server saw, in order.
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Fast retries for tests: delays in milliseconds.
fn client(api: &Api, extra: Value) -> Value {
    let mut c = json!({"base_url": api.url(), "retry": {"max_attempts": 8, "backoff": 0.002, "max_delay": 2}});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn tap(dir: &Path, config: &Value, extra_args: &[&str]) -> Run {
    let cfg = write_json(dir, "config.json", config);
    let mut args = vec!["--config", cfg.as_str()];
    args.extend_from_slice(extra_args);
    run(dir, "tap-rest", &args, b"")
}

fn ids(r: &Run, stream: &str) -> Vec<u64> {
    r.of_type("RECORD")
        .into_iter()
        .filter(|m| m["stream"] == stream)
        .map(|m| m["record"]["id"].as_u64().unwrap())
        .collect()
}

fn all_paginators() -> Value {
    json!([
        {"name": "page_number", "endpoint": {"path": "page_number",
            "paginator": {"type": "page_number", "base_page": 1, "total_path": "total_pages"}}},
        {"name": "offset", "endpoint": {"path": "offset",
            "paginator": {"type": "offset", "limit": 7}}},
        {"name": "cursor", "endpoint": {"path": "cursor",
            "paginator": {"type": "cursor", "cursor_path": "next_cursor", "cursor_param": "cursor"}}},
        {"name": "json_link", "endpoint": {"path": "json_link", "paginator": "json_link"}},
        {"name": "header_link", "endpoint": {"path": "header_link", "paginator": "header_link"}},
        {"name": "header_cursor", "endpoint": {"path": "header_cursor", "paginator": "header_cursor"}},
        {"name": "has_more", "endpoint": {"path": "has_more", "data_selector": "entries",
            "paginator": {"type": "page_number", "has_more_path": "has_more"}}}
    ])
}

#[test]
fn every_paginator_reads_every_record_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path(), &["--items", "95"]);
    let r = tap(
        dir.path(),
        &json!({"client": client(&api, json!({})), "resources": all_paginators()}),
        &[],
    );
    r.assert_ok();
    let want: Vec<u64> = (1..=95).collect();
    for name in [
        "page_number",
        "offset",
        "cursor",
        "json_link",
        "header_link",
        "header_cursor",
        "has_more",
    ] {
        assert_eq!(ids(&r, name), want, "{name}");
    }
    // One request per page and no more: 10 pages each, offset pages of 7, has_more no extra.
    let reqs = api.requests();
    let count = |p: &str| reqs.iter().filter(|q| q["path"] == p).count();
    assert_eq!(count("/page_number"), 10);
    assert_eq!(count("/offset"), 14);
    assert_eq!(count("/json_link"), 10);
    assert_eq!(count("/has_more"), 10);
}

#[test]
fn random_failures_429s_and_dropped_connections_lose_and_repeat_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(
        dir.path(),
        &[
            "--items",
            "95",
            "--seed",
            "7",
            "--fail-rate",
            "0.15",
            "--reset-rate",
            "0.1",
            "--throttle-every",
            "9",
            "--retry-after",
            "0.05",
        ],
    );
    let r = tap(
        dir.path(),
        &json!({"client": client(&api, json!({})), "resources": all_paginators()}),
        &[],
    );
    r.assert_ok();
    for name in [
        "page_number",
        "offset",
        "cursor",
        "json_link",
        "header_link",
        "header_cursor",
        "has_more",
    ] {
        assert_eq!(ids(&r, name), (1..=95).collect::<Vec<_>>(), "{name}");
    }
    let reqs = api.requests();
    let by_status = |s: u64| reqs.iter().filter(|q| q["status"] == s).count();
    assert!(
        by_status(500) > 0 && by_status(429) > 0 && by_status(0) > 0,
        "faults happened: {reqs:?}"
    );
    assert!(r.stderr.contains("retrying"), "{}", r.stderr);
}

#[test]
fn requests_never_exceed_the_rate_limit_across_parents_and_children() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(
        dir.path(),
        &["--items", "60", "--users", "6", "--page-size", "5"],
    );
    // A slow rate, so that scheduling delays on a loaded machine (the server stamps arrivals)
    // stay well under one request's interval (100 ms).
    let (rps, burst) = (10.0, 2.0);
    let r = tap(
        dir.path(),
        &json!({
            "client": client(&api, json!({"rate_limit": {"requests_per_second": rps, "burst": burst}})),
            "resources": [
                {"name": "page_number", "endpoint": {"path": "page_number",
                    "paginator": {"type": "page_number", "base_page": 1, "total_path": "total_pages"}}},
                "users",
                {"name": "posts", "endpoint": "users/{resources.users.id}/posts"}
            ]
        }),
        &[],
    );
    r.assert_ok();
    assert_eq!(ids(&r, "posts").len(), 12);
    let times: Vec<f64> = api
        .requests()
        .iter()
        .map(|q| q["t"].as_f64().unwrap())
        .collect();
    assert_eq!(times.len(), 12 + 1 + 6);
    // In any window of w seconds at most burst + rps * w requests. The server stamps arrivals,
    // and on a loaded machine one request can reach it later than it was sent (the first one
    // also connects), bunching it with the next: 50 ms of slack on the window, half of one
    // request's interval at this rate, so one request over the limit still fails the test.
    for i in 0..times.len() {
        for j in i..times.len() {
            let w = times[j] - times[i];
            let n = (j - i + 1) as f64;
            assert!(
                n <= burst + rps * (w + 0.050),
                "{n} requests in {w:.4} s (requests {i}..={j})"
            );
        }
    }
    // And the limit is what paced them: 19 requests at 10/s after a burst of 2 take 1.7 s by
    // the tap's clock; the server's stamps may shorten that by the first request's late
    // arrival (it also connects), so one interval of slack: unpaced requests take milliseconds.
    let span = times.last().unwrap() - times[0];
    assert!(span >= (19.0 - burst) / rps - 1.0 / rps, "{span:.3} s");
}

#[test]
fn incremental_second_run_asks_only_for_new_data() {
    let dir = tempfile::tempdir().unwrap();
    let resources = json!([{
        "name": "events",
        "primary_key": "id",
        "write_disposition": "merge",
        "endpoint": {"path": "incremental", "incremental": {
            "cursor_path": "updated_at", "start_param": "since",
            "initial_value": "2024-01-01T00:00:00Z"}}
    }]);
    let first = {
        let api = Api::start(dir.path(), &["--items", "50"]);
        let r = tap(
            dir.path(),
            &json!({"client": client(&api, json!({})), "resources": resources}),
            &[],
        );
        r.assert_ok();
        assert_eq!(api.requests()[0]["query"], "since=2024-01-01T00%3A00%3A00Z");
        r
    };
    assert_eq!(ids(&first, "events"), (1..=50).collect::<Vec<_>>());
    let state = first.last_state();
    assert_eq!(
        state["bookmarks"]["events"],
        json!({"replication_key": "updated_at", "replication_key_value": "2024-01-01T00:50:00Z"})
    );
    let schema = &first.of_type("SCHEMA")[0];
    assert_eq!(schema["key_properties"], json!(["id"]));
    assert_eq!(schema["bookmark_properties"], json!(["updated_at"]));
    // The API has grown by 10 items; the second run starts at the bookmark.
    write_json(dir.path(), "state.json", &state);
    let api = Api::start(dir.path(), &["--items", "60"]);
    let second = tap(
        dir.path(),
        &json!({"client": client(&api, json!({})), "resources": resources}),
        &["--state", "state.json"],
    );
    second.assert_ok();
    assert_eq!(api.requests()[0]["query"], "since=2024-01-01T00%3A50%3A00Z");
    // The bookmarked record again (at-least-once, as the Singer SDK does), then only new ones.
    assert_eq!(ids(&second, "events"), (50..=60).collect::<Vec<_>>());
    assert_eq!(
        second.last_state()["bookmarks"]["events"]["replication_key_value"],
        "2024-01-01T01:00:00Z"
    );
}

#[test]
fn a_looping_api_is_an_error_not_an_endless_run() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path(), &[]);
    for (path, paginator, says) in [
        (
            "loop/cursor",
            json!({"type": "cursor", "cursor_path": "next_cursor"}),
            "cursor `again`",
        ),
        ("loop/json_link", json!("json_link"), "was already read"),
        (
            "loop/page",
            json!({"type": "page_number", "total_path": null}),
            "the same 10 items",
        ),
    ] {
        let r = tap(
            dir.path(),
            &json!({"client": client(&api, json!({})),
                "resources": [{"name": "x", "endpoint": {"path": path, "paginator": paginator}}]}),
            &[],
        );
        assert_eq!(r.code, 1, "{path}: {}", r.stderr);
        assert!(
            r.stderr.contains("the API is looping") && r.stderr.contains(says),
            "{path}: {}",
            r.stderr
        );
    }
    assert!(api.requests().len() < 10, "stopped at the first repeat");
}

#[test]
fn auth_kinds_reach_the_api_and_secrets_stay_out_of_messages() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path(), &["--token-ttl", "0.3"]);
    let cases = [
        ("bearer", json!({"type": "bearer", "token": "s3cret-token"})),
        (
            "api_key",
            json!({"type": "api_key", "name": "X-API-Key", "api_key": "k3y"}),
        ),
        (
            "api_key",
            json!({"type": "api_key", "name": "api_key", "api_key": "k3y", "location": "query"}),
        ),
        (
            "basic",
            json!({"type": "http_basic", "username": "ann", "password": "pa55"}),
        ),
        (
            "oauth",
            json!({"type": "oauth2_client_credentials",
            "access_token_url": format!("{}oauth/token", api.url()),
            "client_id": "app", "client_secret": "cl13nt-secret",
            "access_token_request_data": {"scope": "read"}}),
        ),
    ];
    for (path, auth) in &cases {
        let r = tap(
            dir.path(),
            &json!({"client": client(&api, json!({"auth": auth})),
                "resources": [{"name": "s", "endpoint": format!("secure/{path}")}]}),
            &[],
        );
        r.assert_ok();
        assert_eq!(ids(&r, "s").len(), 10, "{auth}");
    }
    // Wrong credentials: a clear error that names the request, never the secret.
    let r = tap(
        dir.path(),
        &json!({"client": client(&api, json!({"auth": {"type": "api_key", "name": "api_key",
                "api_key": "wr0ng-key", "location": "query"}})),
            "resources": [{"name": "s", "endpoint": "secure/api_key"}]}),
        &[],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("answered 401") && r.stderr.contains("api_key=********"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("wr0ng-key"), "{}", r.stderr);
}

#[test]
fn oauth_tokens_are_refreshed_before_they_expire() {
    let dir = tempfile::tempdir().unwrap();
    // Tokens live 1 s; a rate of 5 requests/s makes the run last over a second.
    let api = Api::start(dir.path(), &["--token-ttl", "1"]);
    let r = tap(
        dir.path(),
        &json!({"client": client(&api, json!({
                "rate_limit": {"requests_per_second": 5},
                "auth": {"type": "oauth2_client_credentials",
                    "access_token_url": format!("{}oauth/token", api.url()),
                    "client_id": "app", "client_secret": "cl13nt-secret"}})),
            "resources": [{"name": "s", "endpoint": "secure/oauth"},
                {"name": "t", "endpoint": "secure/oauth"}, {"name": "u", "endpoint": "secure/oauth"},
                {"name": "v", "endpoint": "secure/oauth"}, {"name": "w", "endpoint": "secure/oauth"},
                {"name": "x", "endpoint": "secure/oauth"}, {"name": "y", "endpoint": "secure/oauth"}]}),
        &[],
    );
    r.assert_ok();
    let reqs = api.requests();
    let tokens = reqs.iter().filter(|q| q["path"] == "/oauth/token").count();
    assert!(tokens >= 2, "refreshed: {reqs:?}");
    // No request was refused for an expired token.
    assert!(reqs.iter().all(|q| q["status"] == 200), "{reqs:?}");
}

#[test]
fn parent_child_resources_with_fields_from_the_parent() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path(), &["--users", "3"]);
    let r = tap(
        dir.path(),
        &json!({"client": client(&api, json!({})),
        "resources": [
            {"name": "users", "selected": false},
            {"name": "posts", "endpoint": {"path": "users/{resources.users.id}/posts"},
             "include_from_parent": ["name"]},
            {"name": "posts_old_style", "table_name": "posts2", "endpoint": {"path": "users/{uid}/posts",
                "params": {"uid": {"type": "resolve", "resource": "users", "field": "id"}}}}
        ]}),
        &[],
    );
    r.assert_ok();
    assert!(
        ids(&r, "users").is_empty(),
        "a deselected parent is read, not sent"
    );
    assert_eq!(ids(&r, "posts"), vec![101, 102, 201, 202, 301, 302]);
    let first = &r.records()[0];
    assert_eq!(first["_users_name"], "user-1");
    // dlt's older `resolve` form: the value goes into the path's `{uid}`.
    assert_eq!(ids(&r, "posts2"), vec![101, 102, 201, 202, 301, 302]);
    let reqs = api.requests();
    assert_eq!(reqs.iter().filter(|q| q["path"] == "/users").count(), 1);
    assert_eq!(
        reqs.len(),
        1 + 3 + 3,
        "the parent once, each child once per parent record"
    );
}

#[test]
fn write_dispositions_schema_and_response_actions() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path(), &["--items", "12"]);
    let r = tap(
        dir.path(),
        &json!({"client": client(&api, json!({})),
        "resource_defaults": {"primary_key": "id"},
        "resources": [
            {"name": "full", "write_disposition": "replace", "endpoint": {"path": "offset",
                "paginator": {"type": "offset", "limit": 5}},
             "columns": {"updated_at": {"data_type": "timestamp"}}},
            {"name": "log", "endpoint": "offset"},
            {"name": "gone", "endpoint": {"path": "missing",
                "response_actions": [{"status_code": 404, "action": "ignore"}]}}
        ]}),
        &[],
    );
    r.assert_ok();
    let schemas = r.of_type("SCHEMA");
    let full = schemas.iter().find(|s| s["stream"] == "full").unwrap();
    assert_eq!(full["key_properties"], json!(["id"]));
    assert_eq!(
        full["schema"]["properties"],
        json!({"updated_at": {"type": ["string", "null"], "format": "date-time"},
            "id": {"type": ["integer", "null"]}, "name": {"type": ["string", "null"]}})
    );
    let log = schemas.iter().find(|s| s["stream"] == "log").unwrap();
    assert_eq!(log["key_properties"], json!([]), "append has no key");
    let versions: Vec<Value> = r
        .of_type("RECORD")
        .iter()
        .filter(|m| m["stream"] == "full")
        .map(|m| m["version"].clone())
        .collect();
    assert_eq!(versions.len(), 12);
    assert!(versions.iter().all(|v| v.is_u64() && v == &versions[0]));
    let activate = r.of_type("ACTIVATE_VERSION");
    assert_eq!(activate.len(), 1);
    assert_eq!(activate[0]["version"], versions[0]);
    assert!(ids(&r, "gone").is_empty());
}

#[test]
fn a_new_field_sends_a_new_schema() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path(), &["--users", "2"]);
    // Two resources into one stream: the posts bring a field the users did not have.
    let r = tap(
        dir.path(),
        &json!({"client": client(&api, json!({})),
        "resources": [
            {"name": "users"},
            {"name": "posts", "table_name": "users", "endpoint": "users/{resources.users.id}/posts"}
        ]}),
        &[],
    );
    r.assert_ok();
    let schemas: Vec<Value> = r
        .of_type("SCHEMA")
        .into_iter()
        .filter(|s| s["stream"] == "users")
        .collect();
    let fields = |s: &Value| -> Vec<String> {
        s["schema"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    assert_eq!(fields(&schemas[0]), vec!["id", "name"]);
    assert_eq!(
        schemas.len(),
        2,
        "one more SCHEMA, when `title` first appears"
    );
    assert_eq!(fields(&schemas[1]), vec!["id", "name", "title"]);
}

#[test]
fn discover_lists_resources_and_bad_configs_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let r = tap(
        dir.path(),
        &json!({"client": {"base_url": "http://127.0.0.1:9/"},
            "resources": ["users", {"name": "events", "primary_key": "id", "write_disposition": "merge",
                "endpoint": {"incremental": {"cursor_path": "updated_at", "start_param": "since"}}}]}),
        &["--discover"],
    );
    r.assert_ok();
    let cat: Value = serde_json::from_str(&r.stdout).unwrap();
    let streams: BTreeMap<String, Value> = cat["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["tap_stream_id"].as_str().unwrap().to_owned(), s.clone()))
        .collect();
    assert_eq!(streams.len(), 2);
    assert_eq!(streams["events"]["replication_key"], "updated_at");
    assert_eq!(streams["events"]["key_properties"], json!(["id"]));
    let bad = tap(
        dir.path(),
        &json!({"client": {"base_url": "http://x/", "paginator": "auto"}, "resources": ["a"]}),
        &[],
    );
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("`auto` is not supported"),
        "{}",
        bad.stderr
    );
    assert!(
        bad.stderr
            .contains("hint: name the paginator the API uses: single_page, page_number"),
        "{}",
        bad.stderr
    );
    // Nothing listens on port 9: the error names the request and what to check, after retries.
    let down = tap(
        dir.path(),
        &json!({"client": {"base_url": "http://127.0.0.1:9/", "retry": {"max_attempts": 2, "backoff": 0.001}},
            "resources": ["users"]}),
        &[],
    );
    std::fs::write(dir.path().join("not-a-bundle.pem"), "hello").unwrap();
    let bundle = tap(
        dir.path(),
        &json!({"client": {"base_url": "https://127.0.0.1:9/", "ca_bundle": "not-a-bundle.pem"},
            "resources": ["users"]}),
        &[],
    );
    assert_eq!(bundle.code, 2);
    assert!(
        bundle
            .stderr
            .contains("`client.ca_bundle` file `not-a-bundle.pem` holds no certificate"),
        "{}",
        bundle.stderr
    );
    assert_eq!(down.code, 1);
    assert!(
        down.stderr.contains("page 1 of resource `users`")
            && down.stderr.contains("after 2 attempts"),
        "{}",
        down.stderr
    );
}

/// `examples/rest-api`, as its README runs it (on a free port instead of 8765): a first run
/// loads every resource, a second one asks for events from the bookmark on.
#[test]
fn the_rest_api_example_loads_sqlite_and_resumes_from_its_bookmark() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path(), &["--items", "95"]);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rest-api/meltano.yml");
    let yml = std::fs::read_to_string(example)
        .unwrap()
        .replace("127.0.0.1:8765", &format!("127.0.0.1:{}", api.port));
    let p = crate::support::Project::new(&yml);
    let out = p.dsm(&["run", "tap-rest", "target-sqlite"]);
    out.assert_ok();
    let db = p.root().join("output/api.db");
    let count =
        |t: &str| crate::support::query(&db, &format!("SELECT count(*) FROM {t}"))[0][0].clone();
    assert_eq!(count("users"), "3");
    assert_eq!(count("posts"), "6");
    assert_eq!(count("events"), "95");
    assert_eq!(count("items"), "95");
    let again = p.dsm(&["run", "tap-rest", "target-sqlite"]);
    again.assert_ok();
    let asked: Vec<String> = api
        .requests()
        .iter()
        .filter(|q| q["path"] == "/incremental")
        .map(|q| q["query"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        asked,
        [
            "since=2024-01-01T00%3A00%3A00Z",
            "since=2024-01-01T01%3A35%3A00Z"
        ]
    );
    // Merged on the key and replaced by version: the same rows, no duplicates.
    assert_eq!(count("events"), "95");
    assert_eq!(count("items"), "95");
    assert_eq!(count("posts"), "6");
}

/// The same example under real Meltano: tap-rest is an ordinary Singer tap to it.
#[test]
fn the_rest_api_example_runs_under_meltano() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path(), &["--items", "30"]);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rest-api/meltano.yml");
    let yml = std::fs::read_to_string(example)
        .unwrap()
        .replace("127.0.0.1:8765", &format!("127.0.0.1:{}", api.port));
    let project = dir.path().join("project");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(project.join("meltano.yml"), yml).unwrap();
    let bin_dir = crate::support::bin("tap-rest")
        .parent()
        .unwrap()
        .to_path_buf();
    let path = std::env::join_paths(
        std::iter::once(bin_dir).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let out = Command::new(crate::meltano::meltano())
        .args(["run", "load-api"])
        .current_dir(&project)
        .env("PATH", path)
        .env("MELTANO_SEND_ANONYMOUS_USAGE_STATS", "false")
        .env_remove("MELTANO_PROJECT_ROOT")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "meltano run load-api failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = project.join("output/api.db");
    let count =
        |t: &str| crate::support::query(&db, &format!("SELECT count(*) FROM {t}"))[0][0].clone();
    assert_eq!(count("posts"), "6");
    assert_eq!(count("events"), "30");
    assert_eq!(count("items"), "30");
}

#[test]
fn rate_limit_headers_pause_requests_until_the_reset() {
    let dir = tempfile::tempdir().unwrap();
    // 4 requests per 0.3 s window; one more in the window is refused with 429.
    let api = Api::start(
        dir.path(),
        &["--items", "95", "--budget", "4", "--budget-window", "0.3"],
    );
    let mut c = client(&api, json!({}));
    // No retries: a single 429 fails the run, so only waiting for the reset gets through.
    c["retry"]["max_attempts"] = 1.into();
    let r = tap(
        dir.path(),
        &json!({"client": c, "resources": [{"name": "p", "endpoint": {"path": "page_number",
            "paginator": {"type": "page_number", "base_page": 1, "total_path": "total_pages"}}}]}),
        &[],
    );
    r.assert_ok();
    assert_eq!(ids(&r, "p"), (1..=95).collect::<Vec<_>>());
    let reqs = api.requests();
    assert_eq!(reqs.len(), 10);
    assert!(reqs.iter().all(|q| q["status"] == 200), "{reqs:?}");
}

#[test]
fn a_catalog_schema_is_used_as_given_and_deselection_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path(), &["--items", "5"]);
    let config = json!({"client": client(&api, json!({})),
        "resources": [{"name": "items", "endpoint": "offset"}, {"name": "users"}]});
    let discovered = tap(dir.path(), &config, &["--discover"]);
    discovered.assert_ok();
    let mut catalog: Value = serde_json::from_str(&discovered.stdout).unwrap();
    // What Meltano's `schema` extra does to the catalog: a declared type for `id`.
    let items = &mut catalog["streams"][0];
    assert_eq!(items["tap_stream_id"], "items");
    items["schema"]["properties"] = json!({"id": {"type": ["string", "null"]}});
    items["metadata"]
        .as_array_mut()
        .unwrap()
        .push(json!({"breadcrumb": ["properties", "name"], "metadata": {"selected": false}}));
    // `users` deselected as a stream.
    catalog["streams"][1]["metadata"][0]["metadata"]["selected"] = false.into();
    write_json(dir.path(), "catalog.json", &catalog);
    let r = tap(dir.path(), &config, &["--catalog", "catalog.json"]);
    r.assert_ok();
    let schema = &r.of_type("SCHEMA")[0];
    assert_eq!(
        schema["schema"]["properties"],
        json!({"id": {"type": ["string", "null"]}, "updated_at": {"type": ["string", "null"]}})
    );
    assert_eq!(
        r.records()[0],
        json!({"id": 1, "updated_at": "2024-01-01T00:01:00Z"})
    );
    assert!(ids(&r, "users").is_empty());
    assert!(
        api.requests().iter().all(|q| q["path"] != "/users"),
        "not requested at all"
    );
}

//! `dsm serve` end to end (issue #24): a real server process on a free loopback port, driven
//! over HTTP.

#![allow(
    clippy::unwrap_used,
    reason = "test support code: a failed unwrap fails the test"
)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

mod actions;
mod dashboard;
mod orgs;
mod properties;
mod requests;
mod sources_edit;
mod webhooks;

const TAP: &str = env!("CARGO_BIN_EXE_dsm-fake-tap");
const SECRET: &str = "s3cr3t-value-in-yml";

/// A throwaway project.
struct Project {
    dir: tempfile::TempDir,
}

fn clean(cmd: &mut Command, root: &Path) {
    let key = root.join(".keys/master.key");
    if key.exists() {
        cmd.env("DSM_MASTER_KEY_FILE", &key);
    }
    for (k, _) in std::env::vars() {
        if ["TAP_", "TARGET_", "MELTANO_", "DSM_", "MAPPER_"]
            .iter()
            .any(|p| k.starts_with(p))
        {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(root)
        .env("DSM_DATABASE_URI", root.join(".dsm/dsm.db"))
        .env("XDG_CONFIG_HOME", root.join(".test-config"));
}

impl Project {
    fn new(meltano_yml: &str) -> Self {
        let p = Project {
            dir: tempfile::tempdir().unwrap(),
        };
        p.write("meltano.yml", meltano_yml);
        p
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.root().join(rel), text).unwrap();
    }

    fn dsm(&self, args: &[&str]) -> (i32, String, String) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsm"));
        cmd.args(args);
        clean(&mut cmd, self.root());
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Makes a master key (so secrets can be stored and changes are audited).
    fn with_master_key(self) -> Self {
        let key = self.root().join(".keys/master.key");
        let (code, _, err) = self.dsm(&["secrets", "init", "--key-file", key.to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
        self
    }

    /// Creates a token and returns it.
    fn token(&self, name: &str, role: &str) -> String {
        let (code, out, err) = self.dsm(&["tokens", "create", name, "--role", role]);
        assert_eq!(code, 0, "{err}");
        out.trim().to_owned()
    }

    fn serve(&self, extra: &[&str]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsm"));
        cmd.args(["serve", "--bind", "127.0.0.1:0"]).args(extra);
        clean(&mut cmd, self.root());
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // Into the log first, so a test that reads it after the start sees this line.
                {
                    let mut log = sink.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
                if let Some(at) = line.find("http://") {
                    let _ = tx.send(line[at..].split_whitespace().next().unwrap().to_owned());
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("dsm serve did not start:\n{}", log.lock().unwrap()));
        Server {
            child,
            base,
            log,
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .build()
                .new_agent(),
        }
    }
}

/// A running `dsm serve`.
struct Server {
    child: Child,
    base: String,
    log: Arc<Mutex<String>>,
    agent: ureq::Agent,
}

/// An answer.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// Asserts an RFC 9457 problem document with this status, and returns it.
    fn problem(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.body
        );
        let doc = self.json();
        assert_eq!(doc["status"], status);
        assert!(
            doc["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{doc}"
        );
        doc
    }
}

impl Server {
    fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Answer {
        let url = format!("{}{path}", self.base);
        let send = || {
            let mut request = ureq::http::Request::builder().method(method).uri(&url);
            for (k, v) in headers {
                request = request.header(*k, *v);
            }
            match body {
                Some(b) => self.agent.run(request.body(b.to_vec()).unwrap()),
                None => self.agent.run(request.body(()).unwrap()),
            }
        };
        // A pooled keep-alive connection the server closed while it sat idle fails the next
        // request before the server sees it ("Peer disconnected"); a client sends it again on a
        // new connection, and so does this one, once (a second failure fails the test).
        let result = match send() {
            Err(ureq::Error::Io(_)) => send(),
            other => other,
        };
        let mut response = result.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        Answer {
            status: response.status().as_u16(),
            headers,
            body: response.body_mut().read_to_string().unwrap_or_default(),
        }
    }

    fn get(&self, path: &str, token: &str) -> Answer {
        let auth = format!("Bearer {token}");
        self.call("GET", path, &[("Authorization", &auth)], None)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for the exit code.
    fn stop(mut self) -> (i32, String) {
        #[allow(unsafe_code, reason = "kill(2) on our own child")]
        // SAFETY: plain syscall on a PID we spawned and have not reaped.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                return (status.code().unwrap_or(-1), self.log());
            }
            assert!(
                Instant::now() < deadline,
                "dsm serve did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A project with a fake tap that logs a secret and a URL with credentials, a JSONL loader, a
/// few more sources for filters and paging, and one finished run.
fn fixture() -> Project {
    let p = Project::new("version: 1\n");
    p.write(
        "tap.sh",
        &format!(
            "#!/bin/sh\nexec {TAP} --stderr 'connecting with {SECRET} to postgres://bob:hunter22@db/x' --generate 3 --stream users \"$@\"\n"
        ),
    );
    std::fs::set_permissions(
        p.root().join("tap.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    p.write(
        "meltano.yml",
        &format!(
            "\
version: 1
default_environment: dev
environments:
- name: dev
plugins:
  extractors:
  - name: tap-fake
    namespace: tap_fake
    executable: ./tap.sh
    settings:
    - {{name: api_token, kind: password}}
    - {{name: region}}
    - {{name: unset_secret, sensitive: true}}
    config: {{region: eu, api_token: {SECRET}}}
    annotations: {{dsm: {{source: {{provider: Fake, category: engineering, labels: [pii, core]}}}}}}
  - name: tap-github
    namespace: tap_github
    executable: ./tap.sh
  - name: tap-postgres
    namespace: tap_postgres
    executable: ./tap.sh
  loaders:
  - name: target-jsonl
    variant: dsm
    config: {{destination_path: out}}
jobs:
- name: daily
  tasks: [tap-fake target-jsonl]
"
        ),
    );
    let (code, _, err) = p.dsm(&["run", "tap-fake", "target-jsonl"]);
    assert_eq!(code, 0, "{err}");
    p
}

#[test]
fn issue_24_probes_need_no_token_and_everything_else_does() {
    let p = fixture();
    let viewer = p.token("viewer", "viewer");
    let server = p.serve(&[]);
    assert_eq!(
        server.call("GET", "/healthz", &[], None).json()["status"],
        "ok"
    );
    assert_eq!(
        server.call("GET", "/readyz", &[], None).json()["status"],
        "ready"
    );
    let anonymous = server.call("GET", "/api/sources", &[], None);
    anonymous.problem(401);
    assert!(
        anonymous
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    server
        .get("/api/sources", "dsm_not-a-real-token")
        .problem(401);
    server
        .call(
            "GET",
            "/metrics",
            &[("Authorization", "Basic dXNlcjpwdw==")],
            None,
        )
        .problem(401);
    let ok = server.get("/api/sources", &viewer);
    assert_eq!(ok.status, 200, "{}", ok.body);
    // The token's last use was recorded (off the request's path, so soon after).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, list, _) = p.dsm(&["--format", "json", "tokens", "list"]);
        let list: Value = serde_json::from_str(&list).unwrap();
        if list[0]["last_used_at"].is_string() {
            break;
        }
        assert!(Instant::now() < deadline, "{list}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A revoked token stops working at once.
    assert_eq!(p.dsm(&["tokens", "revoke", "viewer"]).0, 0);
    server.get("/api/sources", &viewer).problem(401);
    // The access log names the token, never the token itself.
    let log = server.log();
    assert!(log.contains("path=/api/sources"), "{log}");
    assert!(log.contains("token=viewer"), "{log}");
    assert!(!log.contains(&viewer), "{log}");
}

#[test]
fn issue_24_ten_failures_a_minute_from_one_address_get_429_with_retry_after() {
    let p = fixture();
    let admin = p.token("admin", "admin");
    let server = p.serve(&[]);
    for i in 0..10 {
        let wrong = server.get("/api/sources", &format!("dsm_wrong{i}"));
        wrong.problem(401);
    }
    // Now even the right token waits: the address is blocked, not the token.
    let blocked = server.get("/api/sources", &admin);
    blocked.problem(429);
    let wait: u64 = blocked.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // Probes stay open.
    assert_eq!(server.call("GET", "/healthz", &[], None).status, 200);
}

#[test]
fn issue_24_roles_read_only_and_unknown_routes() {
    let p = fixture();
    let viewer = p.token("viewer", "viewer");
    let admin = p.token("admin", "admin");
    let server = p.serve(&[]);
    server.get("/api/audit", &viewer).problem(403);
    let audit = server.get("/api/audit", &admin);
    assert_eq!(audit.status, 200, "{}", audit.body);
    assert!(audit.json()["items"].is_array());
    server.get("/api/nothing-here", &admin).problem(404);
    let auth = format!("Bearer {admin}");
    server
        .call(
            "POST",
            "/api/flows",
            &[("Authorization", &auth)],
            Some(b"{}"),
        )
        .problem(405);
    drop(server);

    let read_only = p.serve(&["--read-only"]);
    assert!(read_only.log().contains("(read-only)"));
    let refused = read_only.call(
        "POST",
        "/api/flows",
        &[("Authorization", &auth)],
        Some(b"{}"),
    );
    let doc = refused.problem(403);
    assert!(
        doc["title"].as_str().unwrap().contains("read-only"),
        "{doc}"
    );
    assert_eq!(read_only.get("/api/flows", &viewer).status, 200);
    // Testing a definition before saving it runs a plugin: refused too.
    let refused = read_only.call(
        "POST",
        "/api/source-tests",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(br#"{"name": "tap-new", "template": "tap-csv--dsm"}"#),
    );
    refused.problem(403);
}

#[test]
fn issue_24_security_headers_no_cors_and_bad_requests_are_problems() {
    let p = fixture();
    let viewer = p.token("viewer", "viewer");
    let server = p.serve(&[]);
    let auth = format!("Bearer {viewer}");
    for answer in [
        server.call("GET", "/healthz", &[], None),
        server.call(
            "GET",
            "/api/sources",
            &[("Authorization", &auth), ("Origin", "https://evil.example")],
            None,
        ),
        server.get("/api/sources?limit=0", &viewer),
    ] {
        let csp = answer.header("content-security-policy").unwrap();
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
        assert!(answer.header("access-control-allow-origin").is_none());
    }
    // A CORS preflight is not answered with permissions.
    let preflight = server.call(
        "OPTIONS",
        "/api/sources",
        &[
            ("Origin", "https://evil.example"),
            ("Access-Control-Request-Method", "GET"),
        ],
        None,
    );
    assert!(preflight.status >= 400, "{}", preflight.status);
    assert!(preflight.header("access-control-allow-origin").is_none());

    let bad_limit = server.get("/api/sources?limit=501", &viewer).problem(400);
    assert_eq!(bad_limit["errors"][0]["pointer"], "#/query/limit");
    server.get("/api/sources?limit=abc", &viewer).problem(400);
    server.get("/api/sources?cursor=%%%", &viewer).problem(400);
    server
        .get("/api/sources?status=sleepy", &viewer)
        .problem(400);
    server.get("/api/sources?colour=red", &viewer).problem(400);
    server
        .get("/api/runs?since=yesterday", &viewer)
        .problem(400);
    server
        .get("/api/sources/..%2F..%2Fetc%2Fpasswd", &viewer)
        .problem(404);
    server
        .get("/api/runs/..%2Fmeltano.yml", &viewer)
        .problem(404);
    // A body announced as 2 MiB is refused before it is read (a raw client: the server may
    // close the connection before a client that insists on sending the whole body is done).
    let addr = server.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    use std::io::{Read, Write};
    write!(
        stream,
        "POST /api/flows HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: 2097152\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    // A body larger than the limit without a length (chunked) is refused too.
    let huge = vec![b' '; 2 * 1024 * 1024];
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST /api/sources/tap-fake/credentials HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n",
        huge.len()
    )
    .unwrap();
    let _ = stream.write_all(&huge);
    let _ = stream.write_all(b"\r\n0\r\n\r\n");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[test]
fn issue_24_sources_filter_page_and_never_show_a_sensitive_value() {
    let p = fixture();
    let viewer = p.token("viewer", "viewer");
    let server = p.serve(&[]);
    let names = |doc: &Value| -> Vec<String> {
        doc["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = server.get("/api/sources", &viewer).json();
    assert_eq!(
        names(&all),
        ["tap-fake", "tap-github", "tap-postgres", "target-jsonl"]
    );
    assert!(all["next_cursor"].is_null());
    // Pages of two, following the cursor.
    let first = server.get("/api/sources?limit=2", &viewer).json();
    assert_eq!(names(&first), ["tap-fake", "tap-github"]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = server
        .get(&format!("/api/sources?limit=2&cursor={cursor}"), &viewer)
        .json();
    assert_eq!(names(&second), ["tap-postgres", "target-jsonl"]);
    assert!(second["next_cursor"].is_null());
    // Filters.
    let q = |query: &str| names(&server.get(&format!("/api/sources?{query}"), &viewer).json());
    assert_eq!(q("plugin_type=loader"), ["target-jsonl"]);
    assert_eq!(q("provider=fake"), ["tap-fake"]);
    assert_eq!(q("category=Engineering&label=pii,core"), ["tap-fake"]);
    assert_eq!(q("label=pii,other"), Vec::<String>::new());
    assert_eq!(q("q=github"), ["tap-github"]);
    assert_eq!(q("status=active&plugin_type=extractor").len(), 3);
    assert_eq!(q("type=database"), ["tap-postgres"]);

    let one = server.get("/api/sources/tap-fake", &viewer);
    assert_eq!(one.status, 200, "{}", one.body);
    assert!(!one.body.contains(SECRET), "{}", one.body);
    let doc = one.json();
    assert_eq!(doc["name"], "tap-fake");
    assert_eq!(doc["last_run"].as_str().map(str::len), Some(36));
    let setting = |name: &str| {
        doc["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no setting {name}: {doc}"))
            .clone()
    };
    assert_eq!(
        setting("api_token"),
        serde_json::json!({"name": "api_token", "sensitive": true, "is_set": true})
    );
    assert_eq!(
        setting("unset_secret"),
        serde_json::json!({"name": "unset_secret", "sensitive": true, "is_set": false})
    );
    assert_eq!(setting("region")["value"], "eu");
    assert_eq!(setting("region")["sensitive"], false);
    let missing = server.get("/api/sources/tap-fak", &viewer).problem(404);
    assert!(
        missing["detail"].as_str().unwrap().contains("tap-fake"),
        "{missing}"
    );
    let health = server.get("/api/sources/tap-fake/health", &viewer);
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(health.json()["runs"], 1);
}

#[test]
fn issue_24_runs_flows_metrics_and_the_log_tail_is_redacted() {
    let p = fixture();
    let viewer = p.token("viewer", "viewer");
    let server = p.serve(&[]);
    let runs = server
        .get("/api/runs?source=tap-fake&status=success", &viewer)
        .json();
    let items = runs["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{runs}");
    let id = items[0]["run_id"].as_str().unwrap();
    assert_eq!(
        server.get("/api/runs?source=tap-github", &viewer).json()["items"],
        serde_json::json!([])
    );
    assert_eq!(
        server.get("/api/runs?until=2000-01-01", &viewer).json()["items"],
        serde_json::json!([])
    );
    let run = server.get(&format!("/api/runs/{id}"), &viewer);
    assert_eq!(run.status, 200, "{}", run.body);
    let doc = run.json();
    assert_eq!(doc["status"], "success");
    let tail = doc["log_tail"].as_array().unwrap();
    let text: Vec<&str> = tail.iter().map(|l| l.as_str().unwrap()).collect();
    assert!(
        text.iter().any(|l| l.contains("connecting with")),
        "{text:?}"
    );
    assert!(!run.body.contains(SECRET), "{text:?}");
    assert!(!run.body.contains("hunter22"), "{text:?}");
    server.get("/api/runs/no-such-run", &viewer).problem(404);

    let flows = server.get("/api/flows", &viewer).json();
    assert!(flows.as_array().is_some_and(|f| !f.is_empty()), "{flows}");
    let metrics = server.get("/metrics", &viewer);
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(metrics.body.contains("tap-fake"), "{}", metrics.body);
}

/// Validates `value` against the response schema of `method path` (status 200) in the served
/// OpenAPI document.
fn assert_documented(doc: &Value, method: &str, path: &str, value: &Value) {
    let op = &doc["paths"][path][method];
    let schema = op["responses"]["200"]["content"]["application/json"]["schema"].clone();
    assert!(!schema.is_null(), "{method} {path} has no 200 JSON schema");
    let mut root = serde_json::json!({ "components": doc["components"].clone() });
    for (k, v) in schema.as_object().unwrap() {
        root[k] = v.clone();
    }
    let validator = jsonschema::validator_for(&root).unwrap();
    let problems: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("at `{}`: {e}", e.instance_path()))
        .collect();
    assert!(
        problems.is_empty(),
        "{method} {path}:\n{}\n{value:#}",
        problems.join("\n")
    );
}

#[test]
fn issue_24_openapi_document_matches_the_handlers_and_the_answers() {
    let p = fixture();
    let admin = p.token("admin", "admin");
    let server = p.serve(&[]);
    let doc = server.get("/api/openapi.json", &admin).json();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    // The checked-in copy is the served one (regenerate with DSM_UPDATE_SCHEMAS=1).
    let checked_in = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/api/openapi.json");
    let pretty = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    if std::env::var_os("DSM_UPDATE_SCHEMAS").is_some() {
        std::fs::create_dir_all(checked_in.parent().unwrap()).unwrap();
        std::fs::write(&checked_in, &pretty).unwrap();
    }
    let on_disk = std::fs::read_to_string(&checked_in).unwrap_or_default();
    assert!(
        on_disk == pretty,
        "schemas/api/openapi.json is stale: run `DSM_UPDATE_SCHEMAS=1 cargo test --test serve openapi`"
    );
    // Every documented operation is routed (no 404/405 from the router for it).
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        // The event stream does not end; tests/serve/actions.rs reads it.
        if path == "/api/events" {
            operations += 1;
            continue;
        }
        for method in item.as_object().unwrap().keys() {
            // Actions that would change the project or start a run go to a source that does
            // not exist: routed, they answer 404 from the handler.
            let acts = method != "get"
                && (path.ends_with("/sync") || path.ends_with("/test") || method == "delete");
            let id = if acts { "tap-no-such" } else { "tap-fake" };
            let concrete = path.replace("{id}", id);
            let answer = server.call(
                &method.to_uppercase(),
                &concrete,
                &[("Authorization", &format!("Bearer {admin}"))],
                None,
            );
            let title = if [404, 405].contains(&answer.status) {
                answer.json()["title"].as_str().unwrap_or("").to_owned()
            } else {
                String::new()
            };
            assert!(
                ![404, 405].contains(&answer.status)
                    || title.starts_with("no run")
                    || title.starts_with("no extractor or loader")
                    || title.starts_with("no webhook source")
                    || title.starts_with("no source request"),
                "{method} {concrete} is documented but answers {}: {}",
                answer.status,
                answer.body
            );
            operations += 1;
        }
    }
    assert!(operations >= 20, "{operations}");
    // Answers match their documented schemas.
    let run_id = server.get("/api/runs", &admin).json()["items"][0]["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (path, concrete) in [
        ("/api/sources", "/api/sources".to_owned()),
        ("/api/sources/{id}", "/api/sources/tap-fake".to_owned()),
        (
            "/api/sources/{id}/health",
            "/api/sources/tap-fake/health".to_owned(),
        ),
        ("/api/runs", "/api/runs".to_owned()),
        ("/api/runs/{id}", format!("/api/runs/{run_id}")),
        ("/api/flows", "/api/flows".to_owned()),
        ("/api/audit", "/api/audit".to_owned()),
        ("/api/plugins", "/api/plugins?q=csv".to_owned()),
        ("/api/overview", "/api/overview".to_owned()),
        ("/healthz", "/healthz".to_owned()),
    ] {
        let answer = server.get(&concrete, &admin);
        assert_eq!(answer.status, 200, "{concrete}: {}", answer.body);
        assert_documented(&doc, "get", path, &answer.json());
    }
}

#[test]
fn issue_24_reloads_meltano_yml_and_stops_gracefully_on_sigterm() {
    let p = fixture();
    let viewer = p.token("viewer", "viewer");
    let server = p.serve(&[]);
    let yml = std::fs::read_to_string(p.root().join("meltano.yml")).unwrap();
    p.write(
        "meltano.yml",
        &yml.replace(
            "  loaders:\n",
            "  - name: tap-added\n    namespace: tap_added\n    executable: ./tap.sh\n  loaders:\n",
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let doc = server.get("/api/sources/tap-added", &viewer);
        if doc.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the new source never appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A broken file keeps the last good project and is reported by /readyz.
    p.write("meltano.yml", "version: 1\nplugins: [\n");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if server.call("GET", "/readyz", &[], None).status == 503 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never reported the broken file"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(server.get("/api/sources/tap-added", &viewer).status, 200);
    let (code, log) = server.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("stopped"), "{log}");
}

#[test]
fn issue_24_warns_without_tls_off_loopback_and_refuses_bad_flags() {
    let p = fixture();
    let (code, _, err) = p.dsm(&["serve", "--bind", "localhost"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not an address and port"), "{err}");
    let (code, _, err) = p.dsm(&["serve", "--tls-cert", "nope.pem"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = p.dsm(&["serve", "--tls-cert", "nope.pem", "--tls-key", "nope.key"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cannot read the certificate `nope.pem`"),
        "{err}"
    );
}

#[test]
fn issue_24_operators_set_credentials_by_name_and_the_values_never_come_back() {
    let p = fixture().with_master_key();
    let viewer = p.token("viewer", "viewer");
    let ops = p.token("ops", "operator");
    let server = p.serve(&[]);
    let post = |token: &str, body: &str, content_type: &str| {
        let auth = format!("Bearer {token}");
        server.call(
            "POST",
            "/api/sources/tap-fake/credentials",
            &[("Authorization", &auth), ("Content-Type", content_type)],
            Some(body.as_bytes()),
        )
    };
    let json = "application/json";
    let new_value = "rotated-credential-0042";
    let body = format!(r#"{{"settings": {{"api_token": "{new_value}"}}}}"#);
    post(&viewer, &body, json).problem(403);
    let ok = post(&ops, &body, json);
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(
        ok.json(),
        serde_json::json!({"source": "tap-fake", "settings": ["api_token"]})
    );
    assert!(!ok.body.contains(new_value));
    // It is in the encrypted store, audited with the token's name; the value is nowhere.
    let (_, secrets, _) = p.dsm(&["--format", "json", "secrets", "list"]);
    assert!(secrets.contains("\"api_token\""), "{secrets}");
    let (_, audit, _) = p.dsm(&["--format", "json", "audit", "list"]);
    let audit: Value = serde_json::from_str(&audit).unwrap();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "secret.set"
                && e["command"] == "dsm serve (token ops)"
                && e["targets"][0] == "tap-fake.api_token"),
        "{audit:#}"
    );
    assert!(!server.log().contains(new_value));
    let shown = server.get("/api/sources/tap-fake", &viewer);
    assert!(!shown.body.contains(new_value));

    // Bad bodies are problems that say where.
    let region = post(&ops, r#"{"settings": {"region": "us"}}"#, json).problem(422);
    assert_eq!(region["errors"][0]["pointer"], "/settings/region");
    let typed = post(&ops, r#"{"settings": {"api_token": 5}}"#, json).problem(422);
    assert_eq!(typed["errors"][0]["pointer"], "/settings/api_token");
    post(&ops, r#"{"settings": {}, "extra": 1}"#, json).problem(422);
    post(&ops, r#"{"settings": {}}"#, json).problem(422);
    post(&ops, r#"{"settings": "#, json).problem(400);
    post(&ops, "settings=1", "application/x-www-form-urlencoded").problem(415);
    let auth = format!("Bearer {ops}");
    server
        .call(
            "POST",
            "/api/sources/nope/credentials",
            &[("Authorization", &auth), ("Content-Type", json)],
            Some(body.as_bytes()),
        )
        .problem(404);
}

/// The `dsm_session` cookie of a `Set-Cookie` header, as a `Cookie` header value.
fn session_cookie(answer: &Answer) -> String {
    let set = answer.header("set-cookie").unwrap();
    set.split(';').next().unwrap().trim().to_owned()
}

#[test]
fn issue_24_browser_sessions_use_a_strict_cookie_and_refuse_cross_site_changes() {
    let p = fixture().with_master_key();
    let ops = p.token("ops", "operator");
    let server = p.serve(&[]);
    let json = ("Content-Type", "application/json");
    server
        .call(
            "POST",
            "/api/session",
            &[json],
            Some(br#"{"token": "dsm_nope"}"#),
        )
        .problem(401);
    let body = format!(r#"{{"token": "{ops}"}}"#);
    let signed_in = server.call("POST", "/api/session", &[json], Some(body.as_bytes()));
    assert_eq!(signed_in.status, 201, "{}", signed_in.body);
    assert_eq!(signed_in.json()["role"], "operator");
    let set = signed_in.header("set-cookie").unwrap().to_owned();
    for attribute in ["dsm_session=", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!set.contains(&ops), "the cookie is not the token: {set}");
    let cookie = session_cookie(&signed_in);
    let with_cookie = [("Cookie", cookie.as_str())];
    assert_eq!(
        server
            .call("GET", "/api/sources", &with_cookie, None)
            .status,
        200
    );

    // A state-changing request by cookie needs the server's own Origin.
    let origin = server.base.clone();
    let change = |extra: &[(&str, &str)]| {
        let mut headers = vec![("Cookie", cookie.as_str()), json];
        headers.extend_from_slice(extra);
        server.call(
            "POST",
            "/api/sources/tap-fake/credentials",
            &headers,
            Some(br#"{"settings": {"api_token": "from-the-browser"}}"#),
        )
    };
    change(&[]).problem(403);
    change(&[("Origin", "https://evil.example")]).problem(403);
    let cross_site_test = server.call(
        "POST",
        "/api/source-tests",
        &[
            ("Cookie", cookie.as_str()),
            json,
            ("Origin", "https://evil.example"),
        ],
        Some(br#"{"name": "tap-new", "template": "tap-csv--dsm"}"#),
    );
    let doc = cross_site_test.problem(403);
    assert!(
        doc["title"].as_str().unwrap().contains("cross-site"),
        "{doc}"
    );
    let ok = change(&[("Origin", &origin)]);
    assert_eq!(ok.status, 200, "{}", ok.body);

    // Signing out ends the session; so does revoking its token.
    let out = server.call("DELETE", "/api/session", &with_cookie, None);
    assert_eq!(out.status, 204);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    server
        .call("GET", "/api/sources", &with_cookie, None)
        .problem(401);
    let again = server.call("POST", "/api/session", &[json], Some(body.as_bytes()));
    let cookie2 = session_cookie(&again);
    assert_eq!(
        server
            .call("GET", "/api/flows", &[("Cookie", &cookie2)], None)
            .status,
        200
    );
    assert_eq!(p.dsm(&["tokens", "revoke", "ops"]).0, 0);
    server
        .call("GET", "/api/flows", &[("Cookie", &cookie2)], None)
        .problem(401);
}

#[test]
fn issue_24_schemathesis_finds_no_server_error_and_no_answer_outside_its_schema() {
    let st = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/schemathesis/bin/st");
    assert!(
        st.exists(),
        "schemathesis is not installed at `{}`: run `bash scripts/setup-test-env.sh`",
        st.display()
    );
    let p = fixture().with_master_key();
    let admin = p.token("admin", "admin");
    let server = p.serve(&[]);
    // Path ids that exist, so the operations behind them are reached (not only their 404s).
    p.write(
        "schemathesis.toml",
        "[parameters]\n\"path.id\" = \"tap-fake\"\n",
    );
    let out = Command::new(&st)
        .current_dir(p.root())
        .args([
            "--config-file",
            "schemathesis.toml",
            "run",
            &format!("{}/api/openapi.json", server.base),
            "--header",
            &format!("Authorization: Bearer {admin}"),
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
            "--max-examples",
            "15",
            "--seed",
            "24",
            "--no-color",
            // The event stream never ends; tests/serve/actions.rs reads it.
            "--exclude-path",
            "/api/events",
        ])
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every operation schemathesis selected (all but the event stream's) was tested, and the
    // new ones are among them: at least the 20 of the API's write endpoints and reads.
    let selected = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Selected: "))
        .and_then(|t| t.split('/').next())
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no `Selected:` line: {stdout}"));
    assert!(selected >= 20, "{stdout}");
    assert!(stdout.contains(&format!("Tested: {selected}")), "{stdout}");
    // The server never failed on its own account.
    assert!(!server.log().contains("status=5"), "{}", server.log());
}

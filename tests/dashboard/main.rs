//! The web dashboard (issue #25) in a real browser: Debian's Chromium, headless with a fresh
//! profile, driven through WebDriver by `chromedriver`, against `dsm serve` on a loopback port
//! over a throwaway project with the built-in tap-csv and target-jsonl.
//!
//! One test walks every scenario in named steps so one browser serves them all (starting
//! Chromium is most of the cost). Screenshots of every page at 1280x800 and at phone width go
//! to `target/dashboard-screenshots/` for a reviewer.

#![allow(
    clippy::unwrap_used,
    clippy::print_stderr,
    reason = "test code: a failed unwrap fails the test; step names go to the test's output"
)]

mod webdriver;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use webdriver::{Browser, Driver};

/// The credential typed into the dashboard: it must never come back from anywhere.
const SECRET: &str = "dash-S3CRET-7f3a9c2e";
/// A value of a sensitive setting written in `meltano.yml` itself.
const YML_SECRET: &str = "yml-S3CRET-41bd";
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const TAB: &str = "\u{E004}";

fn meltano_yml() -> String {
    format!(
        "\
version: 1
plugins:
  extractors:
  - name: tap-csv
    variant: dsm
    config:
      files:
      - {{entity: people, path: people.csv, keys: [id]}}
    annotations: {{dsm: {{default_loader: target-jsonl}}}}
  - name: vault-api
    namespace: vault_api
    executable: tap-vault-api
    settings:
    - {{name: api_token, kind: password}}
    - {{name: client_secret, sensitive: true}}
    - {{name: base_url}}
    config:
      base_url: https://vault.example
      client_secret: {YML_SECRET}
  - name: tap-github
    variant: meltanolabs
  loaders:
  - name: target-jsonl
    variant: dsm
    config: {{destination_path: out}}
"
    )
}

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, args: &[&str]) -> Command {
        let root = self.root();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsm"));
        cmd.args(args);
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
            .env("XDG_CONFIG_HOME", root.join(".test-config"))
            .env("DSM_MASTER_KEY_FILE", root.join(".keys/master.key"));
        cmd
    }

    fn dsm(&self, args: &[&str]) -> String {
        let out = self.command(args).output().unwrap();
        assert!(
            out.status.success(),
            "dsm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// `dsm serve` on a free loopback port.
struct Server {
    child: Child,
    base: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    fn start(p: &Project) -> Server {
        let mut child = p
            .command(&["serve", "--bind", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push_str(&format!("{line}\n"));
                if let Some(at) = line.find("http://") {
                    let _ = tx.send(line[at..].split_whitespace().next().unwrap().to_owned());
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("dsm serve did not start:\n{}", log.lock().unwrap()));
        Server { child, base, log }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the walk collects to search for secrets at the end.
#[derive(Default)]
struct Seen {
    pages: Vec<(String, String)>,
}

struct Walk {
    browser: Browser,
    base: String,
    shots: PathBuf,
    seen: Seen,
}

fn step(name: &str) {
    eprintln!("dashboard step: {name}");
}

impl Walk {
    /// Opens a page: the first load by URL, then by changing the hash as the links do (the
    /// document stays, with what the test injected into it).
    fn open(&self, hash: &str) {
        if hash.is_empty() {
            self.browser.goto(&format!("{}/", self.base));
        } else {
            self.browser
                .run("location.hash = arguments[0];", json!([hash]));
        }
    }

    /// Keeps the page's markup for the secret search, checks the console stayed clean, that
    /// every field has a label and that nothing is wider than the window, and screenshots it.
    fn page_done(&mut self, name: &str, size: &str) {
        self.seen
            .pages
            .push((format!("{name} ({size})"), self.browser.html()));
        self.no_console_errors(name, &[]);
        let unlabelled = self.browser.run(
            "return [...document.querySelectorAll('input, select, textarea')]
               .filter((e) => e.type !== 'hidden' && e.labels.length === 0 && !e.getAttribute('aria-label'))
               .map((e) => e.id || e.name);",
            json!([]),
        );
        assert_eq!(unlabelled, json!([]), "fields without a label on {name}");
        let overflow = self.browser.run(
            "return document.documentElement.scrollWidth - window.innerWidth;",
            json!([]),
        );
        assert!(
            overflow.as_i64().unwrap() <= 1,
            "{name} is {overflow} px wider than the window at {size}"
        );
        self.browser
            .screenshot(&self.shots.join(format!("{name}-{size}.png")));
    }

    /// No console message at warning level or worse, except the ones `allowed` (substrings of
    /// messages a step provokes on purpose, like a 401 for a wrong token).
    fn no_console_errors(&self, page: &str, allowed: &[&str]) {
        let bad: Vec<(String, String)> = self
            .browser
            .log()
            .into_iter()
            .filter(|(level, _)| level == "SEVERE" || level == "WARNING")
            .filter(|(_, m)| !allowed.iter().any(|a| m.contains(a)))
            .collect();
        assert!(bad.is_empty(), "console messages on {page}: {bad:#?}");
    }
}

fn browser_paths() -> (PathBuf, PathBuf) {
    let chromium = PathBuf::from(CHROMIUM);
    let driver = PathBuf::from(CHROMEDRIVER);
    assert!(
        chromium.exists() && driver.exists(),
        "the dashboard tests need Debian's Chromium and chromedriver: as root, \
         apt-get install -y chromium chromium-driver (scripts/test.sh does it when missing)"
    );
    (chromium, driver)
}

#[test]
fn issue_25_the_dashboard_in_a_real_browser() {
    let (chromium, chromedriver) = browser_paths();
    let p = Project {
        dir: tempfile::tempdir().unwrap(),
    };
    std::fs::write(p.root().join("meltano.yml"), meltano_yml()).unwrap();
    std::fs::write(
        p.root().join("people.csv"),
        "id,name\n1,Ada\n2,Grace\n3,Edsger\n",
    )
    .unwrap();
    let key = p.root().join(".keys/master.key");
    p.dsm(&["secrets", "init", "--key-file", key.to_str().unwrap()]);
    // Two earlier runs, so the source's charts have history.
    for _ in 0..2 {
        p.dsm(&["run", "tap-csv", "target-jsonl"]);
    }
    let admin = p.dsm(&["tokens", "create", "web-admin", "--role", "admin"]);
    let admin = admin.trim();
    let server = Server::start(&p);

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("dashboard-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let browser = Browser::start(Driver::start(&chromedriver), &chromium);
    browser.resize(1280, 800);
    let mut w = Walk {
        browser,
        base: server.base.clone(),
        shots,
        seen: Seen::default(),
    };

    step("log in: a wrong token shows the API's detail, the right one opens the overview");
    w.open("");
    let token = w.browser.find("#token");
    w.page_done("login", "desktop");
    w.browser.type_into(&token, "not-a-token");
    w.browser.click(&w.browser.find("#login-form button"));
    let problem = w.browser.wait_text(".problem", 10, |t| !t.is_empty());
    assert!(problem.contains("the token is not valid"), "{problem}");
    assert!(problem.contains("dsm tokens list"), "the detail: {problem}");
    w.no_console_errors("login", &["status of 401"]);
    w.browser.type_into(&w.browser.find("#token"), admin);
    w.browser.click(&w.browser.find("#login-form button"));
    w.browser.wait_text("h1", 10, |t| t == "Overview");
    let text = w
        .browser
        .wait_text("main", 10, |t| t.contains("Recent runs"));
    assert!(text.contains("Sources by status (4)"), "{text}");
    assert!(text.contains("success"), "the earlier runs: {text}");

    step("keyboard: Tab reaches the skip link first, focus is visible");
    w.browser
        .run("window.dsmOld = true; location.reload();", json!([]));
    for _ in 0..100 {
        let fresh = w.browser.run(
            "return window.dsmOld === undefined && document.body.innerText.includes('Recent runs');",
            json!([]),
        );
        if fresh == true {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // From here on every answer the pages fetch is kept for the secret search at the end
    // (the pages change by their hash: the document, and this wrapper, stay).
    w.browser.run(
        "const original = window.fetch; window.dsmCaptured = [];
         window.fetch = async (...args) => {
           const r = await original(...args);
           r.clone().text().then((t) => window.dsmCaptured.push([String(args[0]), t]));
           return r;
         };",
        json!([]),
    );
    w.browser.press(TAB);
    let focus = w.browser.run(
        "const a = document.activeElement; const s = getComputedStyle(a);
         return [a.textContent, s.outlineStyle, s.outlineWidth];",
        json!([]),
    );
    assert_eq!(focus[0], "Skip to content", "{focus}");
    assert_ne!(focus[1], "none", "the focused link has no outline: {focus}");
    w.browser.press(TAB);
    let focus = w
        .browser
        .run("return document.activeElement.textContent;", json!([]));
    assert_eq!(focus, "dsm", "Tab moves on to the brand link");
    w.page_done("overview", "desktop");

    step("sources: text search and filters narrow the list");
    w.open("#/sources");
    w.browser
        .wait_text("#results", 10, |t| t.contains("vault-api"));
    let q = w.browser.find("#q");
    w.browser.type_into(&q, "csv");
    let list = w
        .browser
        .wait_text("#results", 10, |t| !t.contains("vault-api"));
    assert!(list.contains("tap-csv"), "{list}");
    assert!(!list.contains("tap-github"), "{list}");
    w.browser.type_into(&q, "");
    w.browser.run(
        "const s = document.getElementById('plugin_type'); s.value = 'loader';
         s.dispatchEvent(new Event('change'));",
        json!([]),
    );
    let list = w
        .browser
        .wait_text("#results", 10, |t| !t.contains("tap-csv"));
    assert!(list.contains("target-jsonl"), "{list}");
    w.browser.run(
        "const s = document.getElementById('plugin_type'); s.value = '';
         s.dispatchEvent(new Event('change'));",
        json!([]),
    );
    w.browser
        .wait_text("#results", 10, |t| t.contains("tap-csv"));
    // The health verdicts fill in after the rows.
    w.browser
        .wait_text(".health[data-source='tap-csv']", 10, |t| t == "healthy");
    w.page_done("sources", "desktop");

    step("a source: its charts from the run history");
    w.open("#/source/tap-csv");
    w.browser
        .wait_text("#charts", 10, |t| t.contains("Throughput"));
    let bars = w.browser.run(
        "return document.querySelectorAll('#charts svg rect.bar').length;",
        json!([]),
    );
    assert_eq!(bars, json!(6), "two runs in each of three charts");
    // Whose it is (issue #27): no organisation, so the platform's.
    w.browser.wait_text("#source-about", 10, |t| {
        t.contains("organisation: the platform")
    });
    w.page_done("source", "desktop");

    step("test the connection and sync: both finish live");
    w.browser.click(&w.browser.find("#test"));
    let tested = w
        .browser
        .wait_text("#test-result", 60, |t| t.contains("passed ("));
    assert!(tested.contains("1 passed"), "{tested}");
    w.browser.click(&w.browser.find("#sync"));
    let synced = w.browser.wait_text("#sync-result", 60, |t| !t.is_empty());
    assert_eq!(synced, "success");
    // The charts and runs were refreshed from the finished run.
    w.browser
        .wait_text("#runs", 10, |t| t.matches("success").count() >= 3);
    let out = std::fs::read_dir(p.root().join("out")).unwrap().count();
    assert!(out >= 1, "the sync wrote its output");
    w.no_console_errors("source actions", &[]);

    step("disable with a reason (none given: the API's detail shows)");
    w.browser.run(
        "document.getElementById('new-status').value = 'inactive';",
        json!([]),
    );
    w.browser.click(&w.browser.find("#status-form button"));
    let refused = w
        .browser
        .wait_text("#status-form .problem", 10, |t| !t.is_empty());
    assert!(refused.contains("a reason is required"), "{refused}");
    assert!(
        refused.contains("for the status history"),
        "the detail: {refused}"
    );
    w.no_console_errors("status form", &["status of 422"]);
    w.browser
        .type_into(&w.browser.find("#status-why"), "vendor API migration");
    w.browser.click(&w.browser.find("#status-form button"));
    w.browser
        .wait_text("#status-reason", 10, |t| t.contains("vendor API migration"));
    w.browser.wait_text("h1", 10, |t| t.contains("inactive"));
    let listed = p.dsm(&["sources", "list", "--format", "json"]);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let csv = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "tap-csv")
        .unwrap();
    assert_eq!(csv["status"], "inactive", "{csv}");
    assert_eq!(csv["reason"], "vendor API migration", "{csv}");

    step("credentials: set through the form, shown only as set");
    w.open("#/source/vault-api");
    let field = w.browser.find("#cred-api_token");
    let label = w
        .browser
        .wait_text("#cred-form", 10, |t| t.contains("api_token"));
    assert!(label.contains("api_token (not set)"), "{label}");
    assert!(label.contains("client_secret (set)"), "{label}");
    w.browser.type_into(&field, SECRET);
    w.browser
        .click(&w.browser.find("#cred-form button[type=submit]"));
    w.browser
        .wait_text("#cred-saved", 10, |t| t == "Saved: api_token");
    let value = w.browser.run(
        "return document.getElementById('cred-api_token').value;",
        json!([]),
    );
    assert_eq!(value, "", "the field is emptied after saving");
    w.open("#/sources");
    w.open("#/source/vault-api");
    w.browser
        .wait_text("#cred-form", 10, |t| t.contains("api_token (set)"));
    w.page_done("source-credentials", "desktop");

    step("add a source through the wizard; it lands in meltano.yml");
    w.open("#/add");
    w.browser.type_into(&w.browser.find("#template-q"), "csv");
    w.browser
        .click(&w.browser.find("button[data-template='tap-csv--dsm']"));
    w.browser
        .type_into(&w.browser.find("#source-name"), "landing");
    let help = w
        .browser
        .wait_text("#source-form", 10, |t| t.contains("Advanced settings"));
    assert!(help.contains("Files"), "{help}");
    w.page_done("wizard", "desktop");
    w.browser.run(
        "document.querySelector('#source-form details').open = true;",
        json!([]),
    );
    let rows = w.browser.find("#set-infer_rows");
    w.browser.type_into(&rows, "50");
    // The connection is tested before anything is written: a failing test shows why and
    // offers only "save anyway"; a change afterwards asks for a new test.
    let before = std::fs::read_to_string(p.root().join("meltano.yml")).unwrap();
    w.browser.type_into(
        &w.browser.find("#set-files"),
        r#"[{"entity": "people", "path": "nowhere.csv", "keys": ["id"]}]"#,
    );
    w.browser.click(&w.browser.find("#test"));
    let failed = w
        .browser
        .wait_text("#wizard-result", 60, |t| t.contains("Connection test"));
    assert!(failed.contains("failed"), "{failed}");
    let offered = w.browser.run(
        "return [!!document.querySelector('#save'), !!document.querySelector('#save-anyway')];",
        json!([]),
    );
    assert_eq!(offered, json!([false, true]), "{failed}");
    w.browser.run(
        "document.querySelector('#set-files').value = '';",
        json!([]),
    );
    w.browser.type_into(
        &w.browser.find("#set-files"),
        r#"[{"entity": "people", "path": "people.csv", "keys": ["id"]}]"#,
    );
    w.browser.wait_text("#wizard-result", 10, |t| {
        t.contains("test the connection again")
    });
    // Save comes after a passing test.
    w.browser.click(&w.browser.find("#test"));
    let tested = w
        .browser
        .wait_text("#wizard-result", 60, |t| t.contains("Connection test"));
    assert!(tested.contains("passed"), "{tested}");
    assert!(tested.contains("connection"), "{tested}");
    assert_eq!(
        std::fs::read_to_string(p.root().join("meltano.yml")).unwrap(),
        before,
        "testing writes nothing"
    );
    w.page_done("wizard-tested", "desktop");
    w.browser.click(&w.browser.find("#save"));
    let saved = w
        .browser
        .wait_text("#saved", 30, |t| t.contains("Saved landing"));
    assert!(saved.contains("meltano.yml"), "{saved}");
    let yml = std::fs::read_to_string(p.root().join("meltano.yml")).unwrap();
    let added = &yml[yml.find("- name: landing").expect("landing in meltano.yml")..];
    assert!(added.contains("inherit_from: tap-csv"), "{yml}");
    assert!(added.contains("infer_rows: 50"), "{yml}");
    assert!(added.contains("people.csv"), "{yml}");

    step("flows, runs with their logs, the audit log");
    w.open("#/flows");
    w.browser
        .wait_text("main", 10, |t| t.contains("Every flow"));
    let drawn = w.browser.run(
        "return [...document.querySelectorAll('.flowmap svg .node text')].map((t) => t.textContent);",
        json!([]),
    );
    let drawn = drawn.to_string();
    assert!(
        drawn.contains("tap-csv") && drawn.contains("target-jsonl"),
        "{drawn}"
    );
    w.page_done("flows", "desktop");
    w.open("#/runs");
    w.browser
        .wait_text("main table", 10, |t| t.contains("success"));
    w.page_done("runs", "desktop");
    w.browser
        .click(&w.browser.find("main table a[href^='#/run/']"));
    let log = w.browser.wait_text("pre.log", 10, |t| !t.is_empty());
    assert!(!log.contains(SECRET));
    w.page_done("run", "desktop");
    w.open("#/audit");
    let audit = w
        .browser
        .wait_text("main table", 10, |t| t.contains("source.status"));
    assert!(audit.contains("dsm serve (token web-admin)"), "{audit}");
    w.page_done("audit", "desktop");

    step("every page at phone width");
    w.browser.resize(390, 844);
    for (name, hash, ready) in [
        ("overview", "#/", "Recent runs"),
        ("sources", "#/sources", "tap-csv"),
        ("source", "#/source/tap-csv", "Throughput"),
        ("source-credentials", "#/source/vault-api", "Credentials"),
        ("wizard", "#/add", "Pick a template"),
        ("flows", "#/flows", "Every flow"),
        ("runs", "#/runs", "success"),
        ("audit", "#/audit", "source.status"),
    ] {
        w.open(hash);
        w.browser.wait_text("main", 10, |t| t.contains(ready));
        w.page_done(name, "phone");
    }
    w.browser.resize(1280, 800);

    step("no stored secret in any page, response, cookie or storage");
    let captured = w.browser.run("return window.dsmCaptured || [];", json!([]));
    let captured = captured.as_array().unwrap();
    let posted = captured
        .iter()
        .filter(|c| c[0].as_str().unwrap().ends_with("/credentials"))
        .count();
    assert!(posted >= 1 && captured.len() > 20, "{captured:?}");
    for c in captured {
        for secret in [SECRET, YML_SECRET] {
            assert!(
                !c[1].as_str().unwrap().contains(secret),
                "{} answered a secret",
                c[0]
            );
        }
    }
    // And every GET the document made since it loaded (its files too), fetched again.
    let urls = w.browser.run(
        "return [...new Set(performance.getEntriesByType('resource').map((e) => e.name))]
           .filter((u) => !u.includes('/api/events') && !/(status|sync|test|source-tests|credentials|session)$/.test(u));",
        json!([]),
    );
    let fetched = w.browser.run_async(
        "const done = arguments[arguments.length - 1];
         Promise.all(arguments[0].map((u) => fetch(u).then((r) => r.text()).then((t) => [u, t])))
           .then(done, (e) => done([['error', String(e)]]));",
        json!([urls]),
    );
    let fetched = fetched.as_array().unwrap();
    assert!(
        fetched.len() > 10,
        "the responses the pages loaded: {fetched:?}"
    );
    let api_answers = fetched
        .iter()
        .filter(|f| f[0].as_str().unwrap().contains("/api/"))
        .count();
    assert!(api_answers > 5, "{fetched:?}");
    for f in fetched {
        let body = f[1].as_str().unwrap();
        for secret in [SECRET, YML_SECRET] {
            assert!(!body.contains(secret), "{} answered a secret", f[0]);
        }
    }
    for (page, html) in &w.seen.pages {
        for secret in [SECRET, YML_SECRET] {
            assert!(!html.contains(secret), "page {page} holds a secret");
        }
    }
    let storage = w.browser.run(
        "return JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)]);",
        json!([]),
    );
    let cookies = w.browser.cookies();
    assert!(
        cookies.iter().any(|(n, _)| n == "dsm_session"),
        "{cookies:?}"
    );
    for secret in [SECRET, YML_SECRET, admin] {
        assert!(!storage.as_str().unwrap().contains(secret), "{storage}");
        assert!(
            !cookies.iter().any(|(_, v)| v.contains(secret)),
            "{cookies:?}"
        );
    }
    let script_cookie = w.browser.run("return document.cookie;", json!([]));
    assert_eq!(script_cookie, "", "the session cookie is HttpOnly");
    let log = server.log.lock().unwrap().clone();
    for secret in [SECRET, YML_SECRET, admin] {
        assert!(!log.contains(secret), "the server's log holds a secret");
    }

    step("log out: the session ends");
    w.open("#/");
    w.browser.wait_text("h1", 10, |t| t == "Overview");
    w.browser.click(&w.browser.find("#logout"));
    w.browser.find("#token");
    let after = w.browser.run_async(
        "const done = arguments[arguments.length - 1];
         fetch('/api/sources').then((r) => done(r.status));",
        json!([]),
    );
    assert_eq!(after, 401, "the cookie no longer opens the API");
    w.no_console_errors("logout", &["status of 401"]);
}

/// Issue 27: a requester asks for a source in the browser, an approver rejects it from the
/// approval queue with a reason, and the requester sees the reason in "my requests".
#[test]
fn issue_27_requests_in_a_real_browser() {
    let (chromium, chromedriver) = browser_paths();
    let p = Project {
        dir: tempfile::tempdir().unwrap(),
    };
    std::fs::write(
        p.root().join("meltano.yml"),
        "\
version: 1
project_id: requests-in-a-browser
annotations:
  dsm:
    defaults:
      default_loader: target-jsonl
plugins:
  loaders:
  - name: target-jsonl
    variant: dsm
    config: {destination_path: out}
",
    )
    .unwrap();
    std::fs::write(p.root().join("people.csv"), "id,name\n1,Ada\n").unwrap();
    let key = p.root().join(".keys/master.key");
    p.dsm(&["secrets", "init", "--key-file", key.to_str().unwrap()]);
    let alice = p.dsm(&[
        "tokens",
        "create",
        "alice",
        "--role",
        "requester",
        "--organisation",
        "uni",
    ]);
    let bob = p.dsm(&["tokens", "create", "bob", "--role", "approver"]);
    let (alice, bob) = (alice.trim().to_owned(), bob.trim().to_owned());
    let server = Server::start(&p);
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("dashboard-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let browser = Browser::start(Driver::start(&chromedriver), &chromium);
    browser.resize(1280, 800);
    let mut w = Walk {
        browser,
        base: server.base.clone(),
        shots,
        seen: Seen::default(),
    };
    let log_in = |w: &Walk, token: &str| {
        w.browser.type_into(&w.browser.find("#token"), token);
        w.browser.click(&w.browser.find("#login-form button"));
        w.browser.wait_text("h1", 10, |t| t == "Overview");
    };

    step("requests: the requester fills in the request form");
    w.open("");
    log_in(&w, &alice);
    w.open("#/ask");
    w.browser
        .wait_text("h1", 10, |t| t == "Ask for a new source");
    w.page_done("request-form", "desktop");
    let b = &w.browser;
    b.type_into(&b.find("#ask-name"), "tap-people");
    b.type_into(&b.find("#ask-template"), "tap-csv");
    b.type_into(
        &b.find("#ask-config"),
        r#"{"files": [{"entity": "people", "path": "people.csv", "keys": ["id"]}]}"#,
    );
    b.type_into(&b.find("#ask-secret-name"), "api_password");
    b.type_into(&b.find("#ask-secret-value"), SECRET);
    b.type_into(&b.find("#ask-classification"), "public");
    b.type_into(&b.find("#ask-notes"), "the people list, nightly");
    b.click(&b.find("#ask-submit"));
    w.browser
        .wait_text("h1", 10, |t| t == "Request for tap-people");
    let text = w.browser.wait_text("main", 10, |t| t.contains("History"));
    assert!(
        text.contains("pending") && text.contains("api_password"),
        "{text}"
    );
    // Its requester may cancel it, never approve or reject it.
    assert!(text.contains("Cancel the request"), "{text}");
    assert!(
        !text.contains("Approve") && !text.contains("Reject"),
        "a requester cannot decide: {text}"
    );
    w.page_done("request", "desktop");

    step("requests: it is in the requester's list, pending");
    w.open("#/requests");
    let list = w
        .browser
        .wait_text("main", 10, |t| t.contains("tap-people"));
    assert!(
        list.contains("My requests") && list.contains("pending"),
        "{list}"
    );
    w.page_done("my-requests", "desktop");

    step("requests: the approver finds it in the queue and rejects it with a reason");
    w.browser.click(&w.browser.find("#logout"));
    w.browser.find("#token");
    log_in(&w, &bob);
    w.open("#/requests");
    let queue = w
        .browser
        .wait_text("main", 10, |t| t.contains("tap-people"));
    assert!(queue.contains("Approval queue"), "{queue}");
    w.page_done("approval-queue", "desktop");
    w.browser.click(&w.browser.find("main table a"));
    w.browser.find("#reject-form");
    w.page_done("request-review", "desktop");
    // A rejection needs its reason: the browser holds the empty form back.
    w.browser
        .type_into(&w.browser.find("#reject-reason"), "say which team owns it");
    w.browser.click(&w.browser.find("#reject-form button"));
    let after = w
        .browser
        .wait_text("#request-reason", 15, |t| t.contains("say which team"));
    assert!(after.contains("Rejected"), "{after}");
    w.open("#/requests?status=rejected");
    w.browser
        .wait_text("main", 10, |t| t.contains("tap-people"));
    w.open("#/requests?status=pending");
    w.browser
        .wait_text("#requests-empty", 10, |t| t.contains("No pending requests"));

    step("requests: the requester sees the rejection and its reason");
    w.browser.click(&w.browser.find("#logout"));
    w.browser.find("#token");
    log_in(&w, &alice);
    w.open("#/requests");
    let mine = w
        .browser
        .wait_text("main", 10, |t| t.contains("say which team owns it"));
    assert!(mine.contains("rejected"), "{mine}");
    w.page_done("my-requests-rejected", "desktop");

    // The secret typed into the form never came back in any page.
    for (page, html) in &w.seen.pages {
        assert!(!html.contains(SECRET), "page {page} holds the secret");
    }
    let log = server.log.lock().unwrap().clone();
    assert!(!log.contains(SECRET), "the server's log holds the secret");
}

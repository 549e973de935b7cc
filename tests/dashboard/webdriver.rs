//! A small WebDriver client over plain HTTP: the dozen W3C WebDriver commands the dashboard
//! test uses, sent to Debian's `chromedriver` driving Debian's Chromium. (WebDriver is JSON
//! over HTTP; the test's HTTP client is enough, so no browser-automation crate and its async
//! stack are compiled for one test binary.)

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// `chromedriver` on a free loopback port.
pub struct Driver {
    child: Child,
    base: String,
    agent: ureq::Agent,
}

/// A browser session.
pub struct Browser {
    driver: Driver,
    session: String,
    _profile: tempfile::TempDir,
}

/// An element of the page.
#[derive(Clone, Debug)]
pub struct El(String);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Driver {
    /// Starts `chromedriver`.
    pub fn start(chromedriver: &Path) -> Driver {
        let port = free_port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", chromedriver.display()));
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(120)))
                .build()
                .new_agent(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut r) = driver.agent.get(format!("{}/status", driver.base)).call()
                && r.body_mut()
                    .read_json::<Value>()
                    .is_ok_and(|v| v["value"]["ready"] == true)
            {
                return driver;
            }
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn send(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let request = ureq::http::Request::builder().method(method).uri(&url);
        let result = match body {
            Some(b) => self.agent.run(
                request
                    .header("Content-Type", "application/json")
                    .body(b.to_string())
                    .expect("a request"),
            ),
            None => self.agent.run(request.body(()).expect("a request")),
        };
        let mut response = result.unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = response.status().as_u16();
        let doc: Value = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_json()
            .unwrap_or(Value::Null);
        assert!(
            status < 300,
            "WebDriver {method} {path} answered {status}: {}",
            doc["value"]["message"]
        );
        doc["value"].clone()
    }

    fn try_send(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("Content-Type", "application/json");
        let mut response = self
            .agent
            .run(
                request
                    .body(body.unwrap_or(json!({})).to_string())
                    .expect("a request"),
            )
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let doc: Value = response.body_mut().read_json().unwrap_or(Value::Null);
        if status < 300 {
            Ok(doc["value"].clone())
        } else {
            Err(doc["value"]["message"].to_string())
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// A headless Chromium with a fresh profile, its console log kept for [`Browser::log`].
    pub fn start(driver: Driver, chromium: &Path) -> Browser {
        let profile = tempfile::tempdir().expect("a profile folder");
        let args = [
            "--headless=new".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--window-size=1280,800".into(),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
            "timeouts": {"script": 60000, "pageLoad": 30000, "implicit": 0}
        }}});
        let session = driver.send("POST", "/session", Some(caps));
        let id = session["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        Browser {
            driver,
            session: id,
            _profile: profile,
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.driver
            .send(method, &format!("/session/{}{path}", self.session), body)
    }

    /// Opens a URL.
    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    /// Sets the window's size.
    pub fn resize(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// Runs a script (its `arguments` are `args`) and returns what it returns.
    pub fn run(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Runs an async script: it calls `arguments[arguments.length - 1]` with its result.
    pub fn run_async(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": args})),
        )
    }

    fn find_now(&self, css: &str) -> Option<El> {
        let found = self
            .driver
            .try_send(
                "POST",
                &format!("/session/{}/element", self.session),
                Some(json!({"using": "css selector", "value": css})),
            )
            .ok()?;
        found[ELEMENT].as_str().map(|s| El(s.to_owned()))
    }

    /// Waits (up to `secs`) until `css` matches an element and `pred` holds for its text.
    pub fn wait_text(&self, css: &str, secs: u64, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut last = String::new();
        loop {
            if let Some(el) = self.find_now(css)
                && let Ok(v) = self.driver.try_send(
                    "GET",
                    &format!("/session/{}/element/{}/text", self.session, el.0),
                    None,
                )
            {
                last = v.as_str().unwrap_or_default().to_owned();
                if pred(&last) {
                    return last;
                }
            }
            assert!(
                Instant::now() < deadline,
                "`{css}` did not show what was expected within {secs} s; it shows {last:?}; the page:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (up to 20 s) for an element.
    pub fn find(&self, css: &str) -> El {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(el) = self.find_now(css) {
                return el;
            }
            assert!(
                Instant::now() < deadline,
                "no `{css}` on the page:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Clicks an element.
    pub fn click(&self, el: &El) {
        self.cmd("POST", &format!("/element/{}/click", el.0), Some(json!({})));
    }

    /// Clears a field and types into it.
    pub fn type_into(&self, el: &El, text: &str) {
        self.cmd("POST", &format!("/element/{}/clear", el.0), Some(json!({})));
        self.cmd(
            "POST",
            &format!("/element/{}/value", el.0),
            Some(json!({ "text": text })),
        );
    }

    /// Presses a key (a WebDriver key code like `\u{E004}` for Tab) on whatever has focus.
    pub fn press(&self, key: &str) {
        self.cmd(
            "POST",
            "/actions",
            Some(
                json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                    {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}
                ]}]}),
            ),
        );
    }

    /// The visible text of the page.
    pub fn text(&self) -> String {
        self.run("return document.body.innerText;", json!([]))
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page's markup as it is now.
    pub fn html(&self) -> String {
        self.run("return document.documentElement.outerHTML;", json!([]))
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The browser's cookies for the current page (name and value).
    pub fn cookies(&self) -> Vec<(String, String)> {
        self.cmd("GET", "/cookie", None)
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or_default().to_owned(),
                    c["value"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// Writes a PNG screenshot.
    pub fn screenshot(&self, path: &Path) {
        let data = self.cmd("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().expect("a base64 screenshot"))
            .expect("valid base64");
        std::fs::write(path, png).expect("the screenshot is written");
    }

    /// The console messages logged since the last call (level and message).
    pub fn log(&self) -> Vec<(String, String)> {
        let entries = self
            .driver
            .try_send(
                "POST",
                &format!("/session/{}/se/log", self.session),
                Some(json!({"type": "browser"})),
            )
            .unwrap_or_else(|e| panic!("chromedriver does not give the browser log: {e}"));
        entries
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["level"].as_str().unwrap_or_default().to_owned(),
                    e["message"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .driver
            .try_send("DELETE", &format!("/session/{}", self.session), None);
    }
}

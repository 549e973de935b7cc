//! Actions over HTTP (issue #24): connection tests, syncs started by the server, stopping them,
//! the event stream, and SIGTERM stopping the runs the server started.

use super::*;

/// The events of one `GET /api/events` stream, read on their own thread.
pub(crate) struct Events {
    rx: std::sync::mpsc::Receiver<(String, Value)>,
}

impl Events {
    /// Waits for the next event of `kind` for which `pred` holds (others are skipped).
    pub(crate) fn wait(&self, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((k, v)) if k == kind && pred(&v) => return v,
                Ok(_) => {}
                Err(e) => panic!("no `{kind}` event came ({e})"),
            }
        }
    }
}

impl Events {
    /// Every event up to and including the next `kind` for which `pred` holds.
    pub(crate) fn until(&self, kind: &str, pred: impl Fn(&Value) -> bool) -> Vec<(String, Value)> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((k, v)) => {
                    let done = k == kind && pred(&v);
                    seen.push((k, v));
                    if done {
                        return seen;
                    }
                }
                Err(e) => panic!("no `{kind}` event came ({e}); got {seen:?}"),
            }
        }
    }
}

impl Server {
    pub(crate) fn post(&self, path: &str, token: &str) -> Answer {
        let auth = format!("Bearer {token}");
        self.call("POST", path, &[("Authorization", &auth)], None)
    }

    pub(crate) fn delete(&self, path: &str, token: &str) -> Answer {
        let auth = format!("Bearer {token}");
        self.call("DELETE", path, &[("Authorization", &auth)], None)
    }

    pub(crate) fn events(&self, token: &str) -> Events {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let response = agent
            .get(format!("{}/api/events", self.base))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = response.into_body().into_reader();
        std::thread::spawn(move || {
            let mut kind = String::new();
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                if let Some(k) = line.strip_prefix("event:") {
                    kind = k.trim().to_owned();
                } else if let Some(d) = line.strip_prefix("data:") {
                    let v = serde_json::from_str(d.trim()).unwrap_or(Value::Null);
                    if tx.send((kind.clone(), v)).is_err() {
                        break;
                    }
                }
            }
        });
        Events { rx }
    }
}

/// A project whose extractor sends 3 records of `users` and then sleeps for two minutes, with
/// a default loader, so `dsm sync tap-slow` (and `POST .../sync`) runs it.
fn slow_project() -> Project {
    let p = Project::new("version: 1\n");
    p.write(
        "slow.sh",
        &format!(
            "#!/bin/sh\nexec {TAP} --pid-file '{}' --generate 3 --stream users --sleep-after 120000 \"$@\"\n",
            p.root().join("tap.pid").display()
        ),
    );
    std::fs::set_permissions(
        p.root().join("slow.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    p.write(
        "meltano.yml",
        "\
version: 1
plugins:
  extractors:
  - name: tap-slow
    namespace: tap_slow
    executable: ./slow.sh
    annotations: {dsm: {default_loader: target-jsonl}}
  - name: tap-alone
    namespace: tap_alone
    executable: ./slow.sh
  loaders:
  - name: target-jsonl
    variant: dsm
    config: {destination_path: out}
",
    );
    p
}

fn run_status(p: &Project, run_id: &str) -> String {
    let (code, out, err) = p.dsm(&["runs", "show", run_id, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str::<Value>(&out).unwrap()["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn issue_24_test_endpoint_answers_with_the_sources_entry_of_dsm_test() {
    let p = fixture();
    let viewer = p.token("viewer", "viewer");
    let ops = p.token("ops", "operator");
    let server = p.serve(&[]);
    let events = server.events(&viewer);
    server
        .post("/api/sources/tap-fake/test", &viewer)
        .problem(403);
    server
        .post("/api/sources/tap-fake/test?timeout=0", &ops)
        .problem(400);
    server
        .post("/api/sources/tap-fake/test?timeout=abc", &ops)
        .problem(400);
    server.post("/api/sources/tap-nope/test", &ops).problem(404);
    let answer = server.post("/api/sources/tap-fake/test?timeout=30", &ops);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let doc = answer.json();
    // The same document as `dsm test tap-fake --format json` gives, less `error`.
    let (_, cli, _) = p.dsm(&["test", "tap-fake", "--format", "json"]);
    let cli: Value = serde_json::from_str(&cli).unwrap();
    let shape = |d: &Value| -> Vec<(String, String, String)> {
        d["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["plugin"].as_str().unwrap().to_owned(),
                    r["test"].as_str().unwrap().to_owned(),
                    r["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert!(!shape(&doc).is_empty(), "{doc}");
    assert_eq!(shape(&doc), shape(&cli), "{doc}\n{cli}");
    assert_eq!(doc["succeeded"], cli["succeeded"]);
    // The result is the source's status now, and the event stream says so.
    let status = events.wait("source_status", |v| v["source"] == "tap-fake");
    assert!(status["status"].is_string(), "{status}");
    let api = server.get("/api/openapi.json", &viewer).json();
    assert_documented(&api, "post", "/api/sources/{id}/test", &doc);
}

#[test]
fn issue_24_sync_runs_the_flow_reports_progress_and_delete_stops_it() {
    let p = slow_project();
    let viewer = p.token("viewer", "viewer");
    let ops = p.token("ops", "operator");
    let server = p.serve(&[]);
    let events = server.events(&viewer);
    server
        .post("/api/sources/tap-slow/sync", &viewer)
        .problem(403);
    // No default loader, no job, no schedule: nothing to run.
    let none = server
        .post("/api/sources/tap-alone/sync", &ops)
        .problem(422);
    assert!(
        none["title"].as_str().unwrap().contains("no flow"),
        "{none}"
    );
    server.post("/api/sources/tap-nope/sync", &ops).problem(404);

    let started = server.post("/api/sources/tap-slow/sync", &ops);
    assert_eq!(started.status, 202, "{}", started.body);
    let run_id = started.json()["run_id"].as_str().unwrap().to_owned();
    let ev = events.wait("run_started", |v| v["run_id"] == run_id.as_str());
    assert_eq!(ev["source"], "tap-slow");
    let progress = events.wait("run_progress", |v| {
        v["run_id"] == run_id.as_str() && v["records"] == 3
    });
    assert_eq!(progress["stream"], "users");
    // Already running here.
    let again = server.post("/api/sources/tap-slow/sync", &ops).problem(409);
    assert!(again["title"].as_str().unwrap().contains("already running"));
    // The history has it as running, and only an operator stops it.
    assert_eq!(
        server.get(&format!("/api/runs/{run_id}"), &viewer).json()["status"],
        "running"
    );
    server
        .delete(&format!("/api/runs/{run_id}"), &viewer)
        .problem(403);
    let stopping = server.delete(&format!("/api/runs/{run_id}"), &ops);
    assert_eq!(stopping.status, 202, "{}", stopping.body);
    let finished = events.wait("run_finished", |v| v["run_id"] == run_id.as_str());
    assert_eq!(finished["status"], "killed", "{finished}");
    assert_eq!(run_status(&p, &run_id), "killed");
    // No longer running: 409; an unknown run: 404.
    server
        .delete(&format!("/api/runs/{run_id}"), &ops)
        .problem(409);
    server.delete("/api/runs/no-such-run", &ops).problem(404);
}

#[test]
fn issue_24_sync_is_refused_while_a_cli_run_holds_the_same_lock() {
    let p = slow_project();
    let ops = p.token("ops", "operator");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsm"));
    cmd.args(["sync", "tap-slow"]);
    clean(&mut cmd, p.root());
    let mut cli = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = p.serve(&[]);
    // Wait until the CLI's run holds the flow's lock.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let doc = server.get("/api/sources/tap-slow", &ops).json();
        if doc["running_run"].is_string() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the CLI run never started: {doc}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let refused = server.post("/api/sources/tap-slow/sync", &ops).problem(409);
    assert!(
        refused["detail"].as_str().unwrap().contains("pid"),
        "{refused}"
    );
    // A run another process holds is not this server's to stop.
    let cli_run = server.get("/api/sources/tap-slow", &ops).json()["running_run"]
        .as_str()
        .unwrap()
        .to_owned();
    server
        .delete(&format!("/api/runs/{cli_run}"), &ops)
        .problem(409);
    #[allow(unsafe_code, reason = "kill(2) on our own child")]
    // SAFETY: plain syscall on a PID we spawned and have not reaped.
    unsafe {
        libc::kill(cli.id() as i32, libc::SIGTERM);
    }
    let _ = cli.wait();
}

#[test]
fn issue_24_sigterm_stops_the_runs_the_server_started_and_records_them_killed() {
    let p = slow_project();
    let ops = p.token("ops", "operator");
    let server = p.serve(&[]);
    let events = server.events(&ops);
    let started = server.post("/api/sources/tap-slow/sync", &ops);
    assert_eq!(started.status, 202, "{}", started.body);
    let run_id = started.json()["run_id"].as_str().unwrap().to_owned();
    events.wait("run_progress", |v| {
        v["run_id"] == run_id.as_str() && v["records"] == 3
    });
    let (code, log) = server.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("stopped"), "{log}");
    assert_eq!(run_status(&p, &run_id), "killed", "{log}");
    // The extractor did not outlive the server.
    let pid = std::fs::read_to_string(p.root().join("tap.pid")).unwrap();
    let proc = Path::new("/proc").join(pid.trim());
    let deadline = Instant::now() + Duration::from_secs(10);
    while proc.exists()
        && !std::fs::read_to_string(proc.join("stat")).is_ok_and(|s| s.contains(") Z "))
    {
        assert!(
            Instant::now() < deadline,
            "the extractor {pid} outlived the server"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

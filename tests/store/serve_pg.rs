//! `dsm serve` on a PostgreSQL store: the server lists the project's sources, runs a sync
//! through the API, and the run is in `/api/runs` and in the shared store for every host.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::pg::TestDb;

fn command(dir: &Path, uri: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsm"));
    crate::clean_env(&mut cmd);
    let bins = Path::new(env!("CARGO_BIN_EXE_dsm")).parent().unwrap();
    let mut dirs = vec![bins.to_path_buf()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    cmd.args(args)
        .current_dir(dir)
        .env("DSM_DATABASE_URI", uri)
        .env("PATH", std::env::join_paths(dirs).unwrap())
        .env("XDG_CONFIG_HOME", dir.join(".test-config"));
    cmd
}

fn ok(dir: &Path, uri: &str, args: &[&str]) -> String {
    let out = command(dir, uri, args).output().unwrap();
    assert!(
        out.status.success(),
        "dsm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_on_a_postgresql_store_lists_sources_syncs_and_shows_the_run() {
    let db = TestDb::new("serve");
    let uri = db.uri(None);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(
        dir.join("data/people.csv"),
        "id,name\n1,ada\n2,grace\n3,alan\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("meltano.yml"),
        "version: 1\nproject_id: served\nsend_anonymous_usage_stats: false
plugins:
  extractors:
  - name: tap-csv
    variant: dsm
    executable: tap-csv
    capabilities: [catalog, discover, state]
    config:
      files: [{entity: people, path: data/people.csv, keys: [id], replication_key: id}]
    annotations: {dsm: {default_loader: target-jsonl}}
  loaders:
  - name: target-jsonl
    variant: dsm
    executable: target-jsonl
    config:
      destination_path: out
",
    )
    .unwrap();
    let viewer = ok(
        dir,
        &uri,
        &["tokens", "create", "viewer", "--role", "viewer"],
    );
    let ops = ok(
        dir,
        &uri,
        &["tokens", "create", "ops", "--role", "operator"],
    );
    let (viewer, ops) = (viewer.trim().to_owned(), ops.trim().to_owned());

    let mut child = command(dir, &uri, &["serve", "--bind", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let server = Server(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(at) = line.find("http://") {
                let _ = tx.send(line[at..].split_whitespace().next().unwrap().to_owned());
            }
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("dsm serve did not start on the PostgreSQL store");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let call = |method: &str, path: &str, token: &str| -> (u16, Value) {
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{base}{path}"))
            .header("Authorization", format!("Bearer {token}"))
            .body(())
            .unwrap();
        let mut answer = agent.run(request).unwrap();
        let status = answer.status().as_u16();
        let body = answer.body_mut().read_to_string().unwrap();
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    };

    let (status, sources) = call("GET", "/api/sources", &viewer);
    assert_eq!(status, 200, "{sources}");
    let names: Vec<&str> = sources["items"]
        .as_array()
        .or(sources.as_array())
        .unwrap_or_else(|| panic!("a list of sources: {sources}"))
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(names.contains(&"tap-csv"), "{sources}");

    let (status, started) = call("POST", "/api/sources/tap-csv/sync", &ops);
    assert_eq!(status, 202, "{started}");
    let run_id = started["run_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    let run = loop {
        let (status, run) = call("GET", &format!("/api/runs/{run_id}"), &viewer);
        // Not recorded yet (404) or still going.
        assert!(status == 200 || status == 404, "{run}");
        if status == 200 && run["status"] != "running" {
            break run;
        }
        assert!(Instant::now() < deadline, "the run did not end: {run}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(run["status"], "success", "{run}");
    let (status, runs) = call("GET", "/api/runs", &viewer);
    assert_eq!(status, 200, "{runs}");
    assert!(runs.to_string().contains(&run_id), "{runs}");
    drop(server);

    // The run is in the shared store, as any host sees it; nothing went to a local file.
    let shown: Value = serde_json::from_str(&ok(
        dir,
        &uri,
        &["runs", "show", &run_id, "--format", "json"],
    ))
    .unwrap();
    assert_eq!(shown["status"], "success");
    assert!(!dir.join(".dsm/dsm.db").exists());
    let state = ok(dir, &uri, &["state", "list"]);
    assert!(state.contains("tap-csv-to-target-jsonl"), "{state}");
}

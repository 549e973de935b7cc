//! Team mode end to end: real `dsm` processes of several copies of a project sharing one
//! PostgreSQL store (a database per test on the server `DSM_TEST_PG_URL` names). The store URI,
//! password included, reaches dsm through `DSM_DATABASE_URI`, never argv.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::clean_env;
use crate::pg::TestDb;

/// A copy of a project with built-in plugins (`tap-csv` into `target-jsonl`).
struct Copy {
    dir: tempfile::TempDir,
}

impl Copy {
    fn new(project_id: Option<&str>) -> Copy {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::write(
            dir.path().join("data/people.csv"),
            "id,name\n1,ada\n2,grace\n3,alan\n",
        )
        .unwrap();
        let id_line = project_id
            .map(|id| format!("project_id: {id}\n"))
            .unwrap_or_default();
        std::fs::write(
            dir.path().join("meltano.yml"),
            format!(
                "version: 1\n{id_line}send_anonymous_usage_stats: false
plugins:
  extractors:
  - name: tap-csv
    variant: dsm
    executable: tap-csv
    capabilities: [catalog, discover, state]
    config:
      files: [{{entity: people, path: data/people.csv, keys: [id], replication_key: id}}]
  loaders:
  - name: target-jsonl
    variant: dsm
    executable: target-jsonl
    config:
      destination_path: out
"
            ),
        )
        .unwrap();
        Copy { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn dsm(&self, uri: &str, args: &[&str]) -> Output {
        self.dsm_with_stdin(uri, args, "")
    }

    fn dsm_with_stdin(&self, uri: &str, args: &[&str], stdin: &str) -> Output {
        use std::io::Write as _;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsm"));
        clean_env(&mut cmd);
        let bins = Path::new(env!("CARGO_BIN_EXE_dsm")).parent().unwrap();
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![bins.to_path_buf()];
        dirs.extend(std::env::split_paths(&path));
        cmd.args(args)
            .current_dir(self.path())
            .env("DSM_DATABASE_URI", uri)
            .env("PATH", std::env::join_paths(dirs).unwrap())
            .env("XDG_CONFIG_HOME", self.path().join(".test-config"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(stdin.as_bytes()).unwrap();
        drop(pipe);
        child.wait_with_output().unwrap()
    }

    fn ok(&self, uri: &str, args: &[&str]) -> String {
        let out = self.dsm(uri, args);
        assert!(
            out.status.success(),
            "dsm {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

fn json(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn a_run_on_one_copy_leaves_its_state_and_history_for_every_other_copy() {
    let db = TestDb::new("team");
    let uri = db.uri(None);
    let (a, b) = (Copy::new(Some("team-one")), Copy::new(Some("team-one")));
    let flow = "tap-csv-to-target-jsonl";

    a.ok(&uri, &["run", "tap-csv", "target-jsonl"]);
    assert!(
        !a.path().join(".dsm/dsm.db").exists(),
        "nothing of the store stays local"
    );
    // The other copy never ran, and sees the bookmark and the run.
    let state = json(&b.ok(&uri, &["state", "get", flow]));
    assert_eq!(
        state["singer_state"]["bookmarks"]["people"]["replication_key_value"], 3,
        "the run left its bookmark: {state}"
    );
    assert_eq!(json(&a.ok(&uri, &["state", "get", flow])), state);
    let runs = json(&b.ok(&uri, &["--format", "json", "runs", "list"]));
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    assert_eq!(runs[0]["status"], "success");
    assert_eq!(runs[0]["state_id"], flow);
    // The lease was released at the end of the run; its fence counted one taking.
    let mut c = db.client();
    let row = c
        .query_one(
            "SELECT token IS NULL, fence, run_id FROM dsm.flow_locks WHERE project_id = 'team-one' AND state_id = $1",
            &[&flow],
        )
        .unwrap();
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, i64>(1), 1);
    assert_eq!(
        row.get::<_, Option<String>>(2).as_deref(),
        runs[0]["run_id"].as_str()
    );

    // A second run from the other copy takes the lease again (fence 2) and starts from the
    // bookmark the first one left.
    b.ok(&uri, &["run", "tap-csv", "target-jsonl"]);
    let fence: i64 = c
        .query_one(
            "SELECT fence FROM dsm.flow_locks WHERE project_id = 'team-one' AND state_id = $1",
            &[&flow],
        )
        .unwrap()
        .get(0);
    assert_eq!(fence, 2);
    let runs = json(&a.ok(&uri, &["--format", "json", "runs", "list"]));
    assert_eq!(runs.as_array().unwrap().len(), 2, "{runs}");

    // Another project in the same database sees none of it.
    let other = Copy::new(Some("team-two"));
    assert_eq!(other.ok(&uri, &["state", "list"]), "");
    assert_eq!(
        json(&other.ok(&uri, &["--format", "json", "runs", "list"])),
        json("[]")
    );
}

#[test]
fn team_mode_needs_a_project_id_and_names_what_it_cannot_do_yet() {
    let db = TestDb::new("team_refusals");
    let uri = db.uri(Some("ops"));
    let anonymous = Copy::new(None);
    let out = anonymous.dsm(&uri, &["state", "list"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("project_id"), "{stderr}");
    assert!(stderr.contains("hint: add a line `project_id:"), "{stderr}");

    let p = Copy::new(Some("p"));
    p.ok(&uri, &["state", "set", "x", r#"{"singer_state":{"a":1}}"#]);
    // The tables live in the schema the URI named.
    let n: i64 = db
        .client()
        .query_one("SELECT count(*) FROM ops.state WHERE project_id = 'p'", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // Secrets are not kept in PostgreSQL yet: an error naming them, nothing written locally.
    p.ok(&uri, &["secrets", "init"]);
    let out = p.dsm_with_stdin(&uri, &["secrets", "set", "tap-csv", "password"], "s3cret\n");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot use a PostgreSQL store yet"),
        "{stderr}"
    );
    assert!(!p.path().join(".dsm/dsm.db").exists());
    // Nor are source requests.
    let out = p.dsm(&uri, &["requests", "list"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("source requests cannot use a PostgreSQL store yet"),
        "{stderr}"
    );
    // The password never shows in messages.
    let bad = uri.replace("sslmode=disable", "sslmode=sometimes");
    let out = p.dsm(&bad, &["state", "list"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sslmode=sometimes"), "{stderr}");
    if let Some(pw) = password_of(&uri) {
        assert!(!stderr.contains(&pw), "{stderr}");
    }
}

#[test]
fn a_schema_from_a_newer_dsm_is_refused_and_an_older_one_needs_migrate() {
    let db = TestDb::new("team_versions");
    let uri = db.uri(None);
    let p = Copy::new(Some("p"));
    p.ok(&uri, &["state", "list"]);
    let mut c = db.client();
    c.batch_execute(
        "INSERT INTO dsm.dsm_schema_migrations (version, name) VALUES (1000, 'future')",
    )
    .unwrap();
    let out = p.dsm(&uri, &["state", "list"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("schema version 1000"), "{stderr}");
    assert!(stderr.contains("hint: upgrade dsm"), "{stderr}");
    // An older schema (as if written by an earlier dsm: version 13, none of 14's tables) is
    // not upgraded behind anyone's back.
    c.batch_execute(
        "DROP SCHEMA dsm CASCADE; CREATE SCHEMA dsm;
         CREATE TABLE dsm.dsm_schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
         INSERT INTO dsm.dsm_schema_migrations (version, name) VALUES (13, 'older')",
    )
    .unwrap();
    let out = p.dsm(&uri, &["state", "list"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("dsm store migrate"), "{stderr}");
    // `dsm store migrate` is the explicit upgrade.
    let done = json(&p.ok(&uri, &["--format", "json", "store", "migrate"]));
    assert_eq!(done["from_version"], 13);
    p.ok(&uri, &["state", "list"]);
}

#[test]
fn store_status_shows_backend_version_projects_and_leases() {
    let db = TestDb::new("team_status");
    let uri = db.uri(None);
    let (a, b) = (Copy::new(Some("alpha")), Copy::new(Some("beta")));
    a.ok(&uri, &["state", "set", "x", r#"{"singer_state":{"a":1}}"#]);
    b.ok(&uri, &["state", "set", "y", r#"{"singer_state":{"b":1}}"#]);
    // A lease held by a run of `alpha` (taken through the library, as a run does).
    let target = dsm::store::postgres::PgTarget::parse(&uri).unwrap();
    let store = dsm::store::postgres::PgStore::open(
        &target,
        "alpha",
        dsm::store::postgres::Upgrade::FirstUseOnly,
    )
    .unwrap();
    use dsm::store::RunLocks as _;
    let run = dsm::store::RunId::generate();
    let _lock = store
        .acquire_lock(&dsm::store::StateId::new("x"), Some(&run), false)
        .unwrap();
    let doc = json(&a.ok(&uri, &["--format", "json", "store", "status"]));
    // The lease timings come from `annotations.dsm.store` too; a bad one is named.
    let yml = std::fs::read_to_string(a.path().join("meltano.yml")).unwrap();
    std::fs::write(
        a.path().join("meltano.yml"),
        format!(
            "{yml}annotations:\n  dsm:\n    store: {{lease_heartbeat: 5s, lease_expiry: 2s}}\n"
        ),
    )
    .unwrap();
    let out = a.dsm(&uri, &["state", "list"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("annotations.dsm.store.lease_expiry"),
        "{stderr}"
    );
    std::fs::write(
        a.path().join("meltano.yml"),
        format!(
            "{yml}annotations:\n  dsm:\n    store: {{lease_heartbeat: 1s, lease_expiry: 5s}}\n"
        ),
    )
    .unwrap();
    a.ok(&uri, &["state", "list"]);
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/cli/store-status.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let problems: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(problems.is_empty(), "{problems:?}\n{doc:#}");
    assert_eq!(doc["backend"], "postgresql");
    assert_eq!(doc["schema_version"], doc["latest_version"]);
    assert_eq!(doc["project_id"], "alpha");
    assert_eq!(doc["projects"], serde_json::json!(["alpha", "beta"]));
    assert_eq!(doc["leases"][0]["state_id"], "x");
    assert_eq!(doc["leases"][0]["run_id"], run.as_str());
    assert_eq!(doc["leases"][0]["stale"], false);
    let location = doc["location"].as_str().unwrap();
    assert!(location.ends_with("?schema=dsm"), "{location}");
    if let Some(pw) = password_of(&uri) {
        assert!(!location.contains(&pw));
    }
    // `beta` holds no lease; the text form says so.
    let text = b.ok(&uri, &["store", "status"]);
    assert!(text.contains("backend:  postgresql"), "{text}");
    assert!(text.contains("leases:   none held"), "{text}");
    // The same command on a project's SQLite store.
    let local = Copy::new(Some("alpha"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsm"));
    clean_env(&mut cmd);
    let out = cmd
        .args(["--format", "json", "store", "status"])
        .current_dir(local.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json(&String::from_utf8_lossy(&out.stdout));
    assert!(validator.iter_errors(&doc).next().is_none(), "{doc:#}");
    assert_eq!(doc["backend"], "sqlite");
    assert_eq!(doc["leases"], serde_json::json!([]));
}

fn password_of(uri: &str) -> Option<String> {
    let rest = uri.split_once("://")?.1;
    let user = rest.split_once('@')?.0;
    user.split_once(':').map(|(_, pw)| pw.to_owned())
}

/// A copy whose extractor is the fake tap behind a script: it writes its pid file, sleeps
/// `$SLOW_MS` milliseconds, then sends 3 records with a STATE after each.
fn slow_copy(project_id: &str) -> Copy {
    let c = Copy::new(Some(project_id));
    let script = c.path().join("slow-tap");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nenv > {}\nexec {} --pid-file {} --sleep-before \"${{SLOW_MS:-0}}\" --generate 3 --state-every 1 \"$@\"\n",
            c.path().join("tap.env").display(),
            env!("CARGO_BIN_EXE_dsm-fake-tap"),
            c.path().join("tap.pid").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let yml = std::fs::read_to_string(c.path().join("meltano.yml")).unwrap();
    let yml = yml.replace(
        "  loaders:",
        &format!(
            "  - name: tap-slow\n    namespace: tap_slow\n    executable: {}\n  loaders:",
            script.display()
        ),
    );
    std::fs::write(c.path().join("meltano.yml"), yml).unwrap();
    c
}

/// Issue 23: a run paused (a VM frozen, a process stopped) past its lease's expiry finds its
/// flow taken over when it wakes up: none of its states is committed, it exits 1 and is
/// recorded `killed` with reason `lease lost`; the run that took over keeps its bookmark.
#[test]
fn a_paused_run_whose_lease_was_taken_over_cannot_write_state() {
    let db = TestDb::new("team_paused");
    let uri = db.uri(None);
    let (a, b) = (slow_copy("paused"), slow_copy("paused"));
    let flow = "tap-slow-to-target-jsonl";
    let lease = |cmd: &mut Command| {
        cmd.env("DSM_LEASE_HEARTBEAT", "100ms")
            .env("DSM_LEASE_EXPIRY", "700ms");
    };

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsm"));
    clean_env(&mut cmd);
    lease(&mut cmd);
    let bins = Path::new(env!("CARGO_BIN_EXE_dsm")).parent().unwrap();
    let mut dirs = vec![bins.to_path_buf()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let first = cmd
        .args(["run", "tap-slow", "target-jsonl"])
        .current_dir(a.path())
        .env("DSM_DATABASE_URI", &uri)
        .env("PATH", std::env::join_paths(dirs).unwrap())
        .env("SLOW_MS", "3000")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !a.path().join("tap.pid").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the tap never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &first.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    };
    signal("-STOP");
    // Long enough for the lease to lapse on the server's clock.
    std::thread::sleep(std::time::Duration::from_millis(1500));

    // Another host takes the flow over and runs it to the end.
    let mut second = Command::new(env!("CARGO_BIN_EXE_dsm"));
    clean_env(&mut second);
    lease(&mut second);
    let bins = Path::new(env!("CARGO_BIN_EXE_dsm")).parent().unwrap();
    let mut dirs = vec![bins.to_path_buf()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let out = second
        .args(["run", "tap-slow", "target-jsonl"])
        .current_dir(b.path())
        .env("DSM_DATABASE_URI", &uri)
        .env("PATH", std::env::join_paths(dirs).unwrap())
        .env("SLOW_MS", "0")
        .env("PGPASSWORD", "not-for-plugins")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The store's password variables and URI never reach a plugin.
    let tap_env = std::fs::read_to_string(b.path().join("tap.env")).unwrap();
    assert!(tap_env.contains("SLOW_MS=0"), "{tap_env}");
    for withheld in ["PGPASSWORD", "DSM_DATABASE_URI"] {
        assert!(!tap_env.contains(withheld), "{withheld} reached the tap");
    }
    let taken_over = json(&b.ok(&uri, &["state", "get", flow]));
    assert_eq!(taken_over["singer_state"]["bookmarks"]["bench"]["id"], 3);

    // The paused run wakes up: its states are refused and it stops.
    signal("-CONT");
    let out = first.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("lease lost"), "{stderr}");
    let runs = json(&a.ok(&uri, &["--format", "json", "runs", "list"]));
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    let paused = runs
        .iter()
        .find(|r| r["status"] != "success")
        .unwrap_or_else(|| panic!("{runs:?}"));
    assert_eq!(paused["status"], "killed", "{paused}");
    assert!(
        paused["error"]
            .as_str()
            .unwrap_or_default()
            .contains("lease lost"),
        "{paused}"
    );
    // Nothing the paused run sent was committed; the bookmark is the other run's.
    let paused_id = paused["run_id"].as_str().unwrap();
    let n: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM dsm.state_events WHERE run_id = $1",
            &[&paused_id],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    assert_eq!(json(&a.ok(&uri, &["state", "get", flow])), taken_over);
    let fence: i64 = db
        .client()
        .query_one(
            "SELECT fence FROM dsm.flow_locks WHERE project_id = 'paused' AND state_id = $1",
            &[&flow],
        )
        .unwrap()
        .get(0);
    assert_eq!(fence, 2, "two takings of the lease");
}

//! Team mode end to end: real `dsm` processes of several copies of a project sharing one
//! PostgreSQL store (a database per test on the server `DSM_TEST_PG_URL` names). The store URI,
//! password included, reaches dsm through `DSM_DATABASE_URI`, never argv.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::pg::TestDb;
use crate::{clean_env, parsed as json};

/// A copy of a project with built-in plugins (`tap-csv` into `target-jsonl`).
pub(crate) struct Copy {
    dir: tempfile::TempDir,
}

impl Copy {
    pub(crate) fn new(project_id: Option<&str>) -> Copy {
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

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn dsm(&self, uri: &str, args: &[&str]) -> Output {
        self.dsm_with_stdin(uri, args, "")
    }

    pub(crate) fn dsm_with_stdin(&self, uri: &str, args: &[&str], stdin: &str) -> Output {
        self.dsm_with(uri, args, stdin, &[])
    }

    pub(crate) fn dsm_with(
        &self,
        uri: &str,
        args: &[&str],
        stdin: &str,
        env: &[(&str, &str)],
    ) -> Output {
        use std::io::Write as _;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsm"));
        clean_env(&mut cmd);
        cmd.envs(env.iter().copied());
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

    pub(crate) fn ok(&self, uri: &str, args: &[&str]) -> String {
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
    // A bundle is made from the shared store, never from a local file.
    p.ok(&uri, &["secrets", "init"]);
    p.ok(&uri, &["export", "--output", "bundle.dsm"]);
    assert!(p.path().join("bundle.dsm").is_file());
    assert!(!p.path().join(".dsm/dsm.db").exists());
    // Source requests are kept there, like everything the CLI changes.
    let out = p.dsm(&uri, &["requests", "list", "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!p.path().join(".dsm/dsm.db").exists());
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

/// Schema version 24 numbers each state id's events (`seq`), which keeping the newest 1,000
/// relies on: a store upgraded from 23 numbers the events it already has in their order, and
/// new ones carry on from there.
#[test]
fn upgrading_to_version_24_numbers_the_events_already_stored() {
    let db = TestDb::new("team_event_seq");
    let uri = db.uri(None);
    let p = Copy::new(Some("p"));
    for (id, n) in [("x", 1), ("y", 1), ("x", 2), ("x", 3), ("y", 2)] {
        let value = format!(r#"{{"singer_state":{{"n":{n}}}}}"#);
        p.ok(&uri, &["state", "set", id, &value]);
    }
    // Back to version 23, as an earlier dsm left it.
    let mut c = db.client();
    c.batch_execute(
        "DROP FUNCTION dsm.commit_state(TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, BIGINT, TEXT);
         ALTER TABLE dsm.state DROP COLUMN last_commit;
         DROP FUNCTION dsm.prune_state_events(TEXT, TEXT, BIGINT, BIGINT);
         DROP FUNCTION dsm.lease_lets_commit(TEXT, TEXT, TEXT);
         DROP TRIGGER state_events_numbered ON dsm.state_events;
         DROP FUNCTION dsm.number_state_event();
         ALTER TABLE dsm.state_events DROP COLUMN seq;
         CREATE INDEX state_events_by_id ON dsm.state_events (project_id, state_id, event_id);
         DELETE FROM dsm.dsm_schema_migrations WHERE version = 24",
    )
    .unwrap();
    let done = json(&p.ok(&uri, &["--format", "json", "store", "migrate"]));
    assert_eq!(done["from_version"], 23);
    p.ok(&uri, &["state", "set", "x", r#"{"singer_state":{"n":4}}"#]);
    let numbered: Vec<(String, i64)> = c
        .query(
            "SELECT state_id, seq FROM dsm.state_events ORDER BY event_id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let expected = [("x", 1), ("y", 1), ("x", 2), ("x", 3), ("y", 2), ("x", 4)]
        .map(|(id, n)| (id.to_owned(), n));
    assert_eq!(numbered, expected);
}

/// A commit deletes the one event that falls out of the newest 1,000 by its number; events
/// left over beyond that (written by a path that did not prune) are swept at the latest when
/// the 1,000th commit after them comes, and never make the count grow.
#[test]
fn state_events_left_over_are_swept_within_a_thousand_commits() {
    use dsm::store::postgres::{PgStore, PgTarget, Upgrade};
    use dsm::store::prelude::*;
    use dsm::store::state::STATE_EVENTS_KEPT;
    use dsm::store::{RunId, StateId};

    let db = TestDb::new("team_event_sweep");
    let target = PgTarget::parse(&db.uri(None)).unwrap();
    let store = PgStore::open(&target, "sweep", Upgrade::FirstUseOnly).unwrap();
    let id = StateId::new("busy");
    let run = RunId::new("r1");
    store
        .commit_state(&id, r#"{"n": 0}"#, false, Some(&run))
        .unwrap();
    // 1,199 more events written behind the store's back: 200 over the bound.
    let mut c = db.client();
    c.execute(
        "INSERT INTO dsm.state_events (project_id, state_id, at, action)
         SELECT 'sweep', 'busy', clock_timestamp(), 'set' FROM generate_series(1, 1199)",
        &[],
    )
    .unwrap();
    let count = |c: &mut postgres::Client| -> i64 {
        c.query_one(
            "SELECT count(*) FROM dsm.state_events WHERE state_id = 'busy'",
            &[],
        )
        .unwrap()
        .get(0)
    };
    let mut before = count(&mut c);
    assert_eq!(before, 1200);
    for n in 1..=STATE_EVENTS_KEPT {
        store
            .commit_state(&id, &format!(r#"{{"n": {n}}}"#), false, Some(&run))
            .unwrap();
        let now = count(&mut c);
        assert!(
            now <= before,
            "commit {n} grew the events from {before} to {now}"
        );
        before = now;
    }
    assert_eq!(before, STATE_EVENTS_KEPT);
    // The ones kept are the newest, and the run's bookmark is the last commit's.
    let oldest: i64 = c
        .query_one(
            "SELECT min(seq) FROM dsm.state_events WHERE state_id = 'busy'",
            &[],
        )
        .unwrap()
        .get(0);
    let newest = 1200 + STATE_EVENTS_KEPT;
    assert_eq!(oldest, newest - STATE_EVENTS_KEPT + 1);
    assert_eq!(
        store.get_state(&id).unwrap().unwrap()["singer_state"]["n"],
        serde_json::json!(STATE_EVENTS_KEPT)
    );
}

/// A run's bookmark commit is one statement that dsm sends again on a new connection when the
/// answer to the first was lost (the server restarted, the network dropped): the second call of
/// the same commit finds it made and writes nothing twice, while a new commit is written.
#[test]
fn a_bookmark_commit_sent_twice_is_made_once() {
    use dsm::store::postgres::{PgStore, PgTarget, Upgrade};
    let db = TestDb::new("team_commit_twice");
    let target = PgTarget::parse(&db.uri(None)).unwrap();
    PgStore::open(&target, "twice", Upgrade::FirstUseOnly).unwrap();
    let mut c = db.client();
    let commit = |c: &mut postgres::Client, payload: &str, id: &str| -> bool {
        c.query_one(
            "SELECT dsm.commit_state('twice', 'a-to-b', NULL, $1, 'committed', 'complete', 1000, $2)",
            &[&payload, &id],
        )
        .unwrap()
        .get(0)
    };
    let events = |c: &mut postgres::Client| -> Vec<String> {
        c.query(
            "SELECT payload FROM dsm.state_events WHERE state_id = 'a-to-b' ORDER BY seq",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    assert!(commit(&mut c, r#"{"n":1}"#, "c1"));
    assert!(commit(&mut c, r#"{"n":1}"#, "c1"));
    assert_eq!(events(&mut c), [r#"{"n":1}"#]);
    assert!(commit(&mut c, r#"{"n":2}"#, "c2"));
    assert!(commit(&mut c, r#"{"n":2}"#, "c2"));
    assert_eq!(events(&mut c), [r#"{"n":1}"#, r#"{"n":2}"#]);
    let stored: String = c
        .query_one(
            "SELECT completed_state FROM dsm.state WHERE state_id = 'a-to-b'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored, r#"{"n":2}"#);
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

/// Issue 23: secrets, the audit chain, config history and API tokens live in the shared store:
/// a value set on one host is listed, verified and audited on another that holds the same
/// master key; the chain verifies there, and an edited or cut chain is caught; only ciphertext
/// reaches the database.
#[test]
fn secrets_audit_config_history_and_tokens_are_shared_by_every_host() {
    let db = TestDb::new("team_secrets");
    let uri = db.uri(None);
    let (a, b) = (Copy::new(Some("sec")), Copy::new(Some("sec")));
    a.ok(&uri, &["secrets", "init"]);
    // The key is handed to the second host as a file (how the README says to distribute it):
    // the project's own key file, named by its `project_id`.
    let key = a.path().join(".test-config/dsm/keys/sec.key");
    let other = b.path().join(".test-config/dsm/keys/sec.key");
    std::fs::create_dir_all(other.parent().unwrap()).unwrap();
    std::fs::copy(&key, &other).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();

    let secret = "s3cret-team-value";
    let out = a.dsm_with_stdin(
        &uri,
        &["secrets", "set", "tap-csv", "password"],
        &format!("{secret}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    a.ok(
        &uri,
        &[
            "config",
            "set",
            "tap-csv",
            "infer_rows",
            "5",
            "--store",
            "db",
        ],
    );
    assert!(
        !a.path().join(".dsm/dsm.db").exists(),
        "nothing stays local"
    );

    // The other host sees the secret (by name), verifies it decrypts, and sees the value set.
    let listed = b.ok(&uri, &["--format", "json", "secrets", "list"]);
    assert!(
        listed.contains("password") && !listed.contains(secret),
        "{listed}"
    );
    b.ok(&uri, &["secrets", "verify"]);
    let shown = json(&b.ok(&uri, &["--format", "json", "config", "list", "tap-csv"]));
    let rows = shown["settings"].as_array().unwrap();
    let infer = rows.iter().find(|s| s["name"] == "infer_rows").unwrap();
    assert_eq!(
        (&infer["value"], &infer["source"]),
        (&json("5"), &json("\"system_store\"")),
        "{shown}"
    );
    let history = json(&b.ok(&uri, &["--format", "json", "config", "history", "tap-csv"]));
    assert!(
        !history["versions"].as_array().unwrap().is_empty(),
        "{history}"
    );
    let verified = json(&b.ok(&uri, &["--format", "json", "audit", "verify"]));
    assert_eq!(verified["problems"], serde_json::json!([]), "{verified}");
    assert_eq!(verified["entries"], 1, "{verified}");
    // The second host writes with the same key; the chain goes on from the first host's entry.
    let out = b.dsm_with_stdin(
        &uri,
        &["secrets", "set", "tap-csv", "api_key"],
        "another-team-value\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verified = json(&a.ok(&uri, &["--format", "json", "audit", "verify"]));
    assert_eq!(verified["entries"], 2, "{verified}");
    let log = b.ok(&uri, &["--format", "json", "audit", "list"]);
    assert!(
        log.contains("tap-csv.password") && !log.contains(secret),
        "{log}"
    );

    // Only ciphertext and MACs in the database.
    let mut c = db.client();
    let rows = c
        .query(
            "SELECT ciphertext FROM dsm.secrets WHERE project_id = 'sec'",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        let sealed: Vec<u8> = row.get(0);
        assert!(!sealed.windows(secret.len()).any(|w| w == secret.as_bytes()));
    }

    // Tokens made on one host are known on the other.
    let made = json(&a.ok(
        &uri,
        &[
            "--format", "json", "tokens", "create", "ci", "--role", "viewer",
        ],
    ));
    assert_eq!(made["name"], "ci", "{made}");
    let tokens = b.ok(&uri, &["--format", "json", "tokens", "list"]);
    assert!(tokens.contains("\"ci\""), "{tokens}");

    // An edited entry, then an entry cut from the end, are caught on any host.
    c.execute(
        "UPDATE dsm.audit_log SET action = 'secret.unset' WHERE project_id = 'sec' AND seq = 1",
        &[],
    )
    .unwrap();
    let out = a.dsm(&uri, &["audit", "verify"]);
    assert_ne!(out.status.code(), Some(0));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("entry 1"), "{text}");
    c.execute(
        "UPDATE dsm.audit_log SET action = 'secret.set' WHERE project_id = 'sec' AND seq = 1",
        &[],
    )
    .unwrap();
    a.ok(&uri, &["audit", "verify"]);
    c.execute(
        "DELETE FROM dsm.audit_log WHERE project_id = 'sec'
         AND seq = (SELECT max(seq) FROM dsm.audit_log WHERE project_id = 'sec')",
        &[],
    )
    .unwrap();
    let out = b.dsm(&uri, &["audit", "verify"]);
    assert_ne!(out.status.code(), Some(0));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("cut from the end"), "{text}");
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

/// Issue 23: the run history keeps the end of each run's log (secrets redacted, as in the file)
/// and the host that ran it, so `dsm logs show` on a host without the file shows that, saying
/// so.
#[test]
fn the_end_of_a_runs_log_is_kept_for_hosts_without_the_file() {
    let db = TestDb::new("team_logs");
    let uri = db.uri(None);
    let a = Copy::new(Some("logs"));
    // An extractor that prints its config (with the secret) on stderr, then sends 3 records.
    let script = a.path().join("chatty-tap");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho starting >&2\ncat \"$2\" >&2\necho >&2\nexec {} --generate 3 --state-every 1 \"$@\"\n",
            env!("CARGO_BIN_EXE_dsm-fake-tap")
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let yml = std::fs::read_to_string(a.path().join("meltano.yml"))
        .unwrap()
        .replace(
            "  loaders:",
            &format!(
                "  - name: tap-chatty\n    namespace: tap_chatty\n    executable: {}\n    settings:\n    - name: password\n      sensitive: true\n  loaders:",
                script.display()
            ),
        );
    std::fs::write(a.path().join("meltano.yml"), yml).unwrap();
    a.ok(&uri, &["secrets", "init"]);
    let secret = "hunter2-kept-out-of-logs";
    let out = a.dsm_with_stdin(
        &uri,
        &["secrets", "set", "tap-chatty", "password"],
        &format!("{secret}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    a.ok(&uri, &["run", "tap-chatty", "target-jsonl"]);
    let runs = json(&a.ok(&uri, &["--format", "json", "runs", "list"]));
    let run_id = runs[0]["run_id"].as_str().unwrap().to_owned();
    let host = runs[0]["host"].as_str().unwrap().to_owned();
    let file =
        std::fs::read_to_string(a.path().join(".dsm/logs").join(format!("{run_id}.log"))).unwrap();
    assert!(file.contains("[tap-chatty] starting"), "{file}");

    // Another copy (another host: the file is not there) shows the kept end, and says so.
    std::fs::remove_dir_all(a.path().join(".dsm/logs")).unwrap();
    let b = Copy::new(Some("logs"));
    let doc = json(&b.ok(&uri, &["--format", "json", "logs", "show", &run_id]));
    assert_eq!(doc["from_store"], true, "{doc}");
    assert_eq!(doc["host"], host.as_str(), "{doc}");
    assert_eq!(doc["content"], file.as_str(), "a short log is kept whole");
    let content = doc["content"].as_str().unwrap();
    assert!(
        content.contains("\"password\":\"********\"") && !content.contains(secret),
        "{content}"
    );
    let out = b.dsm(&uri, &["logs", "show", &run_id, "--tail", "1"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot be read on this host") && stderr.contains(&host),
        "{stderr}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        1,
        "--tail applies to the kept end"
    );
    // Nothing of the secret in the database's copy either.
    let kept: String = db
        .client()
        .query_one(
            "SELECT log_tail FROM dsm.runs WHERE project_id = 'logs' AND run_id = $1",
            &[&run_id],
        )
        .unwrap()
        .get(0);
    assert!(!kept.contains(secret));
}

/// The URI without its password, and the password (for `PGPASSWORD`: never in argv).
pub(crate) fn without_password(uri: &str) -> (String, String) {
    let pw = password_of(uri).unwrap_or_default();
    (uri.replacen(&format!(":{pw}@"), "@", 1), pw)
}

/// Issue 23: `dsm store copy` moves a project's whole store from SQLite to PostgreSQL and
/// back: every table's rows, the audit chain (MACs checked), and the copy serves the project
/// as the original did; a non-empty target is refused.
#[test]
fn store_copy_moves_a_project_to_postgresql_and_back() {
    let db = TestDb::new("team_copy");
    let (pg, pw) = without_password(&db.uri(Some("moved")));
    let env = [("PGPASSWORD", pw.as_str())];
    let a = Copy::new(Some("copied"));
    let sqlite = format!("sqlite://{}", a.path().join(".dsm/dsm.db").display());
    let flow = "tap-csv-to-target-jsonl";
    a.ok(&sqlite, &["run", "tap-csv", "target-jsonl"]);
    a.ok(&sqlite, &["secrets", "init"]);
    for (setting, value) in [
        ("password", "first-value-1\n"),
        ("token", "second-value-2\n"),
    ] {
        let out = a.dsm_with_stdin(&sqlite, &["secrets", "set", "tap-csv", setting], value);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    a.ok(
        &sqlite,
        &[
            "config",
            "set",
            "tap-csv",
            "infer_rows",
            "5",
            "--store",
            "db",
        ],
    );
    a.ok(&sqlite, &["tokens", "create", "ci", "--role", "viewer"]);

    let args = |from: &str, to: &str| -> Vec<String> {
        [
            "--format", "json", "store", "copy", "--from", from, "--to", to,
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let run = |args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        a.dsm_with(&sqlite, &args, "", &env)
    };
    let out = run(&args(&sqlite, &pg));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json(&String::from_utf8_lossy(&out.stdout));
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/cli/store-copy.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    assert!(validator.iter_errors(&doc).next().is_none(), "{doc:#}");
    assert_eq!(doc["audit_entries"], 3, "two secrets and a token: {doc}");
    assert_eq!(doc["audit_macs_checked"], true, "{doc}");
    let rows = |doc: &Value, table: &str| {
        doc["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == table)
            .unwrap()["rows"]
            .as_u64()
            .unwrap()
    };
    for (table, n) in [
        ("state", 1),
        ("runs", 1),
        ("run_plugins", 2),
        ("secrets", 2),
        ("secret_keys", 1),
        ("audit_log", 3),
        ("api_tokens", 1),
    ] {
        assert_eq!(rows(&doc, table), n, "{table}: {doc}");
    }
    assert!(rows(&doc, "config_history") >= 1 && rows(&doc, "state_events") >= 1);

    // The PostgreSQL copy serves the project as the SQLite store did.
    let on = |uri: &str, args: &[&str]| {
        let out = a.dsm_with(uri, args, "", &env);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(
        on(&pg, &["state", "get", flow]),
        on(&sqlite, &["state", "get", flow])
    );
    assert_eq!(
        on(&pg, &["--format", "json", "runs", "list"]),
        on(&sqlite, &["--format", "json", "runs", "list"])
    );
    on(&pg, &["secrets", "verify"]);
    assert_eq!(
        json(&on(&pg, &["--format", "json", "audit", "verify"]))["entries"],
        3
    );
    assert!(on(&pg, &["--format", "json", "tokens", "list"]).contains("\"ci\""));
    let listed = on(&pg, &["config", "list", "tap-csv"]);
    assert!(
        listed.contains("current value: 5 (from system store)"),
        "{listed}"
    );

    // A second copy into the same project's rows is refused, and changes nothing.
    let out = run(&args(&sqlite, &pg));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not empty"), "{stderr}");
    assert!(!stderr.contains(&pw) || pw.is_empty(), "{stderr}");

    // And back, into a new SQLite file: the same rows, a chain that verifies there (its head
    // file written beside it).
    let back_dir = tempfile::tempdir().unwrap();
    let back = format!("sqlite://{}", back_dir.path().join("dsm.db").display());
    let out = run(&args(&pg, &back));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(again["tables"], doc["tables"]);
    assert!(back_dir.path().join("audit.head").is_file());
    assert_eq!(
        json(&on(&back, &["--format", "json", "audit", "verify"]))["entries"],
        3
    );
    assert_eq!(
        on(&back, &["state", "get", flow]),
        on(&sqlite, &["state", "get", flow])
    );
    assert_eq!(
        on(&back, &["--format", "json", "runs", "list"]),
        on(&sqlite, &["--format", "json", "runs", "list"])
    );
}

/// Issue 23: with a PostgreSQL store, the Kubernetes export is runnable as is: the image's
/// `dsm`, the store and key from a Secret, no volume claim.
#[test]
fn kubernetes_export_for_a_shared_store_needs_a_secret_and_no_claim() {
    let db = TestDb::new("team_k8s");
    let uri = db.uri(None);
    let p = Copy::new(Some("k8s"));
    p.ok(
        &uri,
        &[
            "schedule",
            "add",
            "nightly",
            "--extractor",
            "tap-csv",
            "--loader",
            "target-jsonl",
            "--interval",
            "@daily",
        ],
    );
    let export = [
        "schedule",
        "export",
        "--format",
        "kubernetes",
        "--image",
        "etl:1",
    ];
    let out = p.dsm(&uri, &export);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--secret NAME"));
    let mut args = export.to_vec();
    args.extend(["--secret", "dsm-store"]);
    let yaml = p.ok(&uri, &args);
    assert!(!yaml.contains("PersistentVolumeClaim"), "{yaml}");
    assert!(
        yaml.contains("secretRef:") && yaml.contains("name: \"dsm-store\""),
        "{yaml}"
    );
    assert!(
        yaml.contains(r#"command: ["dsm", "schedule", "run", "nightly"]"#),
        "{yaml}"
    );
    assert!(!yaml.contains(env!("CARGO_BIN_EXE_dsm")), "{yaml}");
}

/// A PgBouncer in transaction mode in front of the test server (Debian's `pgbouncer`, which
/// scripts/test.sh installs where missing), with two server connections shared by every
/// client; stopped when dropped.
struct Bouncer {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Bouncer {
    fn start() -> Bouncer {
        let bin = Path::new("/usr/sbin/pgbouncer");
        assert!(
            bin.is_file(),
            "the pooler test needs Debian's pgbouncer: apt-get install -y pgbouncer (scripts/test.sh does)"
        );
        let server: postgres::Config = crate::pg::server_url().parse().unwrap();
        let port = match server.get_ports() {
            [p, ..] => *p,
            [] => 5432,
        };
        let password = server
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        let user = server.get_user().unwrap_or("postgres").to_owned();
        let listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let own = listen.local_addr().unwrap().port();
        drop(listen);
        let dir = tempfile::tempdir().unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let users = dir.path().join("users.txt");
        std::fs::write(&users, format!("\"{user}\" \"\"\n")).unwrap();
        let ini = dir.path().join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n* = host=127.0.0.1 port={port} user={user} password={password}\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {own}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {}\npool_mode = transaction\n\
                 default_pool_size = 2\nmax_client_conn = 200\nlogfile =\npidfile =\n",
                users.display()
            ),
        )
        .unwrap();
        for f in [&users, &ini] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        // PgBouncer refuses to run as root.
        let mut cmd = if nix_is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin);
            c
        } else {
            Command::new(bin)
        };
        let child = cmd
            .arg(&ini)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", own)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "pgbouncer did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Bouncer {
            child,
            port: own,
            _dir: dir,
        }
    }

    /// The URI of `db` through the pooler (no password: the pooler trusts loopback clients).
    fn uri(&self, db: &TestDb) -> String {
        format!(
            "postgresql://postgres@127.0.0.1:{}/{}?sslmode=disable&schema=pooled",
            self.port, db.name
        )
    }
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        // runuser passes the signal on to pgbouncer.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Issue 23: team mode works through a transaction-pooling pooler (two server connections
/// shared by every client): runs racing for one flow's lease (one wins, the others exit 3),
/// state, secrets and the audit chain.
#[test]
fn team_mode_works_through_pgbouncer_in_transaction_mode() {
    let db = TestDb::new("team_pooler");
    let bouncer = Bouncer::start();
    let uri = bouncer.uri(&db);
    let copies: Vec<Copy> = (0..4).map(|_| slow_copy("pooled")).collect();
    copies[0].ok(&uri, &["secrets", "init"]);
    let out = copies[0].dsm_with_stdin(
        &uri,
        &["secrets", "set", "tap-slow", "password"],
        "through-the-pooler\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Four copies start the same flow at once, twice over.
    for round in 0..2 {
        let children: Vec<_> = copies
            .iter()
            .map(|c| {
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsm"));
                clean_env(&mut cmd);
                let bins = Path::new(env!("CARGO_BIN_EXE_dsm")).parent().unwrap();
                let path = std::env::var_os("PATH").unwrap_or_default();
                let mut dirs = vec![bins.to_path_buf()];
                dirs.extend(std::env::split_paths(&path));
                cmd.args(["run", "tap-slow", "target-jsonl"])
                    .current_dir(c.path())
                    .env("DSM_DATABASE_URI", &uri)
                    .env("DSM_LEASE_HEARTBEAT", "100ms")
                    .env("DSM_LEASE_EXPIRY", "2s")
                    .env("SLOW_MS", "400")
                    .env("XDG_CONFIG_HOME", copies[0].path().join(".test-config"))
                    .env("PATH", std::env::join_paths(dirs).unwrap())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let codes: Vec<Option<i32>> = children
            .into_iter()
            .map(|c| {
                let out = c.wait_with_output().unwrap();
                if !matches!(out.status.code(), Some(0 | 3)) {
                    panic!(
                        "round {round}: {:?}\n{}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                out.status.code()
            })
            .collect();
        assert!(codes.contains(&Some(0)), "round {round}: {codes:?}");
    }
    let b = &copies[3];
    let state = json(&b.ok(&uri, &["state", "get", "tap-slow-to-target-jsonl"]));
    assert!(state["singer_state"].is_object(), "{state}");
    let runs = json(&b.ok(&uri, &["--format", "json", "runs", "list"]));
    assert!(
        runs.as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "success"),
        "{runs}"
    );
    copies[0].ok(&uri, &["audit", "verify"]);
    copies[0].ok(&uri, &["secrets", "verify"]);
}

/// `dsm schedule run-due` started at the same moment on several hosts (each its own copy of
/// the project, with `DSM_NOW` as their clock) starts a due schedule once per interval: the
/// winner of the lease re-reads the schedule's record under it, so a host that saw the schedule
/// due before the winner recorded its run does not run it again.
#[test]
fn run_due_on_several_hosts_at_once_starts_each_due_schedule_once_per_interval() {
    let db = TestDb::new("rundue");
    let uri = db.uri(None);
    let hosts: Vec<Copy> = (0..4).map(|_| Copy::new(Some("run-due"))).collect();
    for host in &hosts {
        let file = host.path().join("meltano.yml");
        let mut text = std::fs::read_to_string(&file).unwrap();
        text.push_str(
            "schedules:
- name: people-hourly
  extractor: tap-csv
  loader: target-jsonl
  transform: skip
  interval: '@hourly'
",
        );
        std::fs::write(&file, text).unwrap();
    }
    let all_at = |now: &str| {
        let outputs: Vec<Output> = std::thread::scope(|scope| {
            let children: Vec<_> = hosts
                .iter()
                .map(|host| {
                    let uri = uri.as_str();
                    scope.spawn(move || {
                        host.dsm_with(uri, &["schedule", "run-due"], "", &[("DSM_NOW", now)])
                    })
                })
                .collect();
            children.into_iter().map(|c| c.join().unwrap()).collect()
        });
        let mut started = 0;
        for out in outputs {
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            // A schedule another host runs is skipped, not an error: cron sees success.
            assert_eq!(
                out.status.code(),
                Some(0),
                "{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            started += stdout.lines().filter(|l| l.contains("succeeded")).count();
        }
        started
    };
    let runs = || {
        json(&hosts[0].ok(
            &uri,
            &["--format", "json", "runs", "list", "--limit", "1000"],
        ))
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "success")
        .count()
    };
    // First seen at 10:30: nothing runs before the first tick.
    assert_eq!(all_at("2030-01-01T10:30:00Z"), 0);
    // Each tick: all four hosts see it due, exactly one starts it; later in the same hour no
    // host starts it again.
    for (tick, later, total) in [
        ("2030-01-01T11:00:30Z", "2030-01-01T11:40:00Z", 1),
        ("2030-01-01T12:00:10Z", "2030-01-01T12:59:00Z", 2),
        ("2030-01-01T13:00:01Z", "2030-01-01T13:00:02Z", 3),
    ] {
        assert_eq!(all_at(tick), 1, "one host starts the schedule at {tick}");
        assert_eq!(runs(), total, "runs recorded after {tick}");
        assert_eq!(all_at(later), 0, "nothing is due again at {later}");
        assert_eq!(runs(), total);
    }
}

//! Issue 23's chaos test: four worker "hosts", each with its own copy of the project, share one
//! PostgreSQL store (a cluster of the test's own, restarted in the middle) and race `dsm run`,
//! `dsm sync` and `dsm schedule run-due` while random workers' processes are killed with
//! SIGKILL at random moments. Sub-second leases.
//!
//! What must hold: no flow's extractor ever runs twice at once (the extractor itself checks,
//! with a marker folder per flow); no committed bookmark is lost or goes backwards (a monitor
//! polls the store, and every extractor starts from a bookmark no lower than the one before it);
//! every run ends recorded `success`, `failed` or `killed`; no lease stays held past its expiry
//! (a last run of each flow takes it). The counts are printed.
//!
//! `DSM_CHAOS_SECONDS` bounds it (default 60); `scripts/chaos.sh` runs it longer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::clean_env;

const WORKERS: usize = 4;
const EXPIRY: Duration = Duration::from_millis(1000);

/// The extractor: reads its bookmark `n`, claims its flow's marker (recording a violation when
/// a live extractor holds it), appends where it starts, then sends five records with a STATE
/// after each. A write to a closed pipe (its dsm was killed) ends it; the marker goes with it.
fn tap_script(shared: &Path) -> String {
    format!(
        r#"#!/usr/bin/env python3
import json, os, sys, time
shared = {shared:?}
flow = os.path.basename(sys.argv[0])
n = 0
if "--state" in sys.argv:
    try:
        n = int(json.load(open(sys.argv[sys.argv.index("--state") + 1])).get("n", 0))
    except Exception:
        # Only an orphan (its dsm was killed as it started it, and a later dsm on this host
        # cleared the dead run's folder) misses its state file: it is no run.
        sys.exit(1)
marker = os.path.join(shared, flow + ".running")
def claim():
    try:
        os.mkdir(marker)
    except FileExistsError:
        return False
    open(os.path.join(marker, "pid"), "w").write(str(os.getpid()))
    return True
held = claim()
if not held:
    # A holder killed with its dsm (the parent-death signal) may linger as a zombie until
    # something reaps it: that is no run.
    try:
        other = int(open(os.path.join(marker, "pid")).read())
        with open(f"/proc/{{other}}/stat") as f:
            alive = f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except Exception:
        alive = False
    if alive:
        with open(os.path.join(shared, "violations"), "a") as f:
            f.write(f"{{flow}}: started at n={{n}} while pid {{other}} runs it\n")
    else:
        # Its holder was killed outright (a run that lost its lease stops its plugins).
        try:
            os.remove(os.path.join(marker, "pid"))
            os.rmdir(marker)
        except OSError:
            pass
        held = claim()
with open(os.path.join(shared, flow + ".starts"), "a") as f:
    f.write(f"{{n}}\n")
out = sys.stdout
try:
    out.write(json.dumps({{"type": "SCHEMA", "stream": "ticks", "key_properties": ["n"],
        "schema": {{"type": "object", "properties": {{"n": {{"type": "integer"}}}}}}}}) + "\n")
    for i in range(1, 6):
        out.write(json.dumps({{"type": "RECORD", "stream": "ticks", "record": {{"n": n + i}}}}) + "\n")
        out.write(json.dumps({{"type": "STATE", "value": {{"n": n + i}}}}) + "\n")
        out.flush()
        time.sleep(0.04)
finally:
    if held:
        try:
            os.remove(os.path.join(marker, "pid"))
            os.rmdir(marker)
        except OSError:
            pass
"#
    )
}

/// A worker's copy of the project.
fn project(dir: &Path, shared: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let script = shared.join("chaos-tap.py");
    let mut extractors = String::new();
    for name in ["tap-one", "tap-two"] {
        let link = dir.join(name);
        std::os::unix::fs::symlink(&script, &link).unwrap();
        extractors.push_str(&format!(
            "  - name: {name}\n    namespace: {}\n    executable: {}\n    capabilities: [state]\n",
            name.replace('-', "_"),
            link.display()
        ));
    }
    std::fs::write(
        dir.join("meltano.yml"),
        format!(
            "version: 1
project_id: chaos
send_anonymous_usage_stats: false
plugins:
  extractors:
{extractors}  loaders:
  - name: target-jsonl
    variant: dsm
    executable: target-jsonl
    config:
      destination_path: out
schedules:
- name: two-every-minute
  extractor: tap-two
  loader: target-jsonl
  transform: skip
  interval: '* * * * *'
"
        ),
    )
    .unwrap();
}

/// A cluster of the test's own (it is restarted in the middle), stopped when dropped.
struct Cluster {
    dir: PathBuf,
    url: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-test-cluster.sh")
}

impl Cluster {
    fn start() -> Cluster {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "dsm-chaos-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let out = Command::new(script())
            .arg("start")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Cluster {
            dir,
            url: String::from_utf8(out.stdout).unwrap().trim().to_owned(),
        }
    }

    fn restart(&self) {
        let out = Command::new(script())
            .arg("restart")
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").arg(&self.dir).output();
    }
}

fn dsm(dir: &Path, uri: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsm"));
    clean_env(&mut cmd);
    let bins = Path::new(env!("CARGO_BIN_EXE_dsm")).parent().unwrap();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![bins.to_path_buf()];
    dirs.extend(std::env::split_paths(&path));
    cmd.args(args)
        .current_dir(dir)
        .env("DSM_DATABASE_URI", uri)
        .env("DSM_LEASE_HEARTBEAT", "200ms")
        .env("DSM_LEASE_EXPIRY", "1s")
        .env("PATH", std::env::join_paths(dirs).unwrap())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd
}

/// The bookmark of each flow, as the store has it now (`None` while it cannot be read).
fn bookmarks(store: &dsm::store::postgres::PgStore) -> Option<BTreeMap<String, i64>> {
    use dsm::store::StateStore as _;
    let mut out = BTreeMap::new();
    for id in ["tap-one-to-target-jsonl", "two-every-minute"] {
        let state = store.get_state(&dsm::store::StateId::new(id)).ok()?;
        let n = state
            .and_then(|s| s["singer_state"]["n"].as_i64())
            .unwrap_or(0);
        out.insert(id.to_owned(), n);
    }
    Some(out)
}

#[test]
fn workers_racing_and_killed_never_double_run_or_lose_state() {
    let seconds: u64 = std::env::var("DSM_CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let cluster = Cluster::start();
    let (server, _) = cluster.url.rsplit_once('/').unwrap();
    let uri = format!("{server}/postgres?sslmode=disable&schema=chaos");
    let work = tempfile::tempdir().unwrap();
    let shared = work.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let tap = shared.join("chaos-tap.py");
    std::fs::write(&tap, tap_script(&shared)).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&tap, std::fs::Permissions::from_mode(0o755)).unwrap();
    let copies: Vec<PathBuf> = (0..WORKERS)
        .map(|i| {
            let dir = work.path().join(format!("host-{i}"));
            project(&dir, &shared);
            dir
        })
        .collect();
    // The schema is made once, before the race.
    let status = dsm(&copies[0], &uri, &["state", "list"]).status().unwrap();
    assert!(status.success());

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let running: Arc<Mutex<Vec<Option<u32>>>> = Arc::new(Mutex::new(vec![None; WORKERS]));
    let exits: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
    let backwards: Arc<Mutex<Vec<String>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let mut kills = 0u32;
    let mut restarted = false;
    std::thread::scope(|scope| {
        for (i, dir) in copies.iter().enumerate() {
            let (running, exits, uri) = (running.clone(), exits.clone(), uri.clone());
            scope.spawn(move || {
                let mut rng = rand::rng();
                while Instant::now() < deadline {
                    let (what, args): (&str, &[&str]) = match rng.random_range(0..4) {
                        0 | 1 => ("run", &["run", "tap-one", "target-jsonl"]),
                        2 => ("sync", &["sync"]),
                        _ => ("run-due", &["schedule", "run-due"]),
                    };
                    let mut child = dsm(dir, &uri, args).spawn().unwrap();
                    running.lock().unwrap()[i] = Some(child.id());
                    let status = child.wait().unwrap();
                    running.lock().unwrap()[i] = None;
                    let how = match status.code() {
                        Some(code) => format!("{what} exit {code}"),
                        None => format!("{what} killed"),
                    };
                    *exits.lock().unwrap().entry(how).or_default() += 1;
                }
            });
        }
        // The monitor: a committed bookmark never goes back.
        {
            let (backwards, done, uri) = (backwards.clone(), done.clone(), uri.clone());
            scope.spawn(move || {
                use dsm::store::postgres::{PgStore, PgTarget, Upgrade};
                let target = PgTarget::parse(&uri).unwrap();
                let store = PgStore::open(&target, "chaos", Upgrade::FirstUseOnly).unwrap();
                let mut seen: BTreeMap<String, i64> = BTreeMap::new();
                while !done.load(Ordering::SeqCst) {
                    if let Some(now) = bookmarks(&store) {
                        for (flow, n) in now {
                            let before = seen.entry(flow.clone()).or_insert(0);
                            if n < *before {
                                backwards
                                    .lock()
                                    .unwrap()
                                    .push(format!("{flow}: {before} then {n}"));
                            }
                            *before = n.max(*before);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(25));
                }
            });
        }
        // The killer, and the server restart half way.
        let mut rng = rand::rng();
        let half = deadline - Duration::from_secs(seconds) / 2;
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(rng.random_range(50..600)));
            if !restarted && Instant::now() >= half {
                cluster.restart();
                restarted = true;
            }
            let victim = rng.random_range(0..WORKERS);
            if let Some(pid) = running.lock().unwrap()[victim] {
                let killed = Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .stderr(std::process::Stdio::null())
                    .status()
                    .unwrap();
                if killed.success() {
                    kills += 1;
                }
            }
        }
        // Workers finish the process they started; then the monitor stops.
        while running.lock().unwrap().iter().any(Option::is_some) {
            std::thread::sleep(Duration::from_millis(50));
        }
        done.store(true, Ordering::SeqCst);
    });

    // Every lease lapses within its expiry once its holder is gone.
    std::thread::sleep(EXPIRY * 2);
    use dsm::store::postgres::{PgStore, PgTarget, Upgrade};
    use dsm::store::prelude::*;
    let store = PgStore::open(
        &PgTarget::parse(&uri).unwrap(),
        "chaos",
        Upgrade::FirstUseOnly,
    )
    .unwrap();
    let held: Vec<_> = store
        .lock_holders()
        .unwrap()
        .into_iter()
        .filter(|h| !h.stale)
        .collect();
    assert!(
        held.is_empty(),
        "leases held after every run ended: {held:?}"
    );
    let before_last = bookmarks(&store).unwrap();
    // A last run of each flow takes its lease and starts from the last bookmark.
    for args in [
        &["run", "tap-one", "target-jsonl"][..],
        &["sync", "two-every-minute"],
    ] {
        let status = dsm(&copies[0], &uri, args).status().unwrap();
        assert!(status.success(), "{args:?} after the race: {status}");
    }
    let after = bookmarks(&store).unwrap();
    for (flow, n) in &before_last {
        assert_eq!(after[flow], n + 5, "{flow} went on from its bookmark");
    }

    let runs = store.list_runs(&dsm::store::RunFilter::default()).unwrap();
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    for run in &runs {
        *by_status.entry(run.status.as_str()).or_default() += 1;
    }
    let violations = std::fs::read_to_string(shared.join("violations")).unwrap_or_default();
    let exits = exits.lock().unwrap().clone();
    println!(
        "chaos: {seconds}s, {WORKERS} workers, {kills} kill -9, server restarted: {restarted}\n  \
         processes: {exits:?}\n  runs recorded: {by_status:?}\n  bookmarks: {after:?}"
    );
    assert_eq!(violations, "", "a flow ran twice at once");
    let backwards = backwards.lock().unwrap().clone();
    assert!(backwards.is_empty(), "bookmarks went back: {backwards:?}");
    for flow in ["tap-one", "tap-two"] {
        let starts: Vec<i64> = std::fs::read_to_string(shared.join(format!("{flow}.starts")))
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        assert!(
            starts.windows(2).all(|w| w[0] <= w[1]),
            "{flow} started below an earlier start: {starts:?}"
        );
    }
    assert!(
        runs.iter().all(|r| matches!(
            r.status,
            dsm::store::RunStatus::Success
                | dsm::store::RunStatus::Failed
                | dsm::store::RunStatus::Killed
        )),
        "{by_status:?}"
    );
    // Exit codes: success, failure (a lost lease, the server away), a lost race, or killed.
    for how in exits.keys() {
        assert!(
            how.ends_with("exit 0")
                || how.ends_with("exit 1")
                || how.ends_with("exit 3")
                || how.ends_with("killed"),
            "unexpected: {how} ({exits:?})"
        );
    }
    assert!(
        by_status.get("success").copied().unwrap_or(0) > 0,
        "{by_status:?}"
    );
    assert!(restarted);
}

/// Issue 23: a connection lost mid-run (the server restarted) is tried again within
/// `DSM_STORE_RECONNECT`, so the next commit lands; with no window the commit fails and
/// nothing is written.
#[test]
fn a_lost_connection_is_retried_within_the_reconnect_window() {
    use dsm::store::postgres::{PgStore, PgTarget, Upgrade};
    use dsm::store::{StateId, StateStore as _};
    let cluster = Cluster::start();
    let (server, _) = cluster.url.rsplit_once('/').unwrap();
    let target = PgTarget::parse(&format!("{server}/postgres?sslmode=disable")).unwrap();
    let open = |window: Duration| {
        PgStore::open(&target, "reconnect", Upgrade::FirstUseOnly)
            .unwrap()
            .with_reconnect(window)
    };
    let (patient, impatient) = (open(Duration::from_secs(30)), open(Duration::ZERO));
    let id = StateId::new("a-to-b");
    patient
        .commit_state(&id, r#"{"n":1}"#, false, None)
        .unwrap();
    impatient.get_state(&id).unwrap();
    cluster.restart();
    patient
        .commit_state(&id, r#"{"n":2}"#, false, None)
        .unwrap();
    let err = impatient
        .commit_state(&id, r#"{"n":3}"#, false, None)
        .unwrap_err();
    assert!(err.message().contains("PostgreSQL"), "{}", err.message());
    assert_eq!(
        patient.get_state(&id).unwrap().unwrap()["singer_state"]["n"],
        2
    );
}

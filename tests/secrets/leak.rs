//! Issue #7 "Never leaked": a whole `dsm sync` and `dsm run` with known secret values, and a
//! search of every byte dsm wrote, every process's argv and the plugins' environments for them.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{Project, Run, dump, tables, tree_contains};

/// Stored with `dsm config set --value-stdin` into the encrypted store.
const STORED: &str = "STORED-sk-91b2e7d4";
/// Given to dsm through the environment (`TAP_SLOW_PASSWORD`).
const FROM_ENV: &str = "ENVVAR-pw-5c08aa31";
/// The loader's sensitive setting, also stored with `dsm config set`.
const LOADER: &str = "LOADER-key-3e9f0b62";
const SECRETS: [&str; 3] = [STORED, FROM_ENV, LOADER];

const TAP: &str = env!("CARGO_BIN_EXE_dsm-fake-tap");

/// A project whose extractor is the fake tap behind a script that sleeps before extracting (so
/// the plugin processes live long enough to be sampled) and whose loader is the built-in
/// `target-jsonl` with a sensitive setting declared on top. `outside` receives the tap's dump.
fn leaky_project(outside: &Path) -> Project {
    let p = Project::initialised();
    let script = p.path("slow-tap.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec {TAP} --dump {dump}/tap-$$.json --pid-file {dump}/tap.pid --sleep-before 1500 --generate 5 --stream users \"$@\"\n",
            dump = outside.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        p.path("meltano.yml"),
        "\
version: 1
default_environment: dev
environments:
- name: dev
plugins:
  extractors:
  - name: tap-slow
    namespace: tap_slow
    executable: ./slow-tap.sh
    settings:
    - {name: api_token, kind: password}
    - {name: password, kind: password}
    - {name: region}
    config: {region: eu}
  loaders:
  - name: target-out
    namespace: target_out
    executable: target-jsonl
    settings:
    - {name: destination_path}
    - {name: api_key, sensitive: true}
    config: {destination_path: out}
jobs:
- name: slow-job
  tasks: [tap-slow target-out]
",
    )
    .unwrap();
    for (plugin, setting, value) in [
        ("tap-slow", "api_token", STORED),
        ("target-out", "api_key", LOADER),
    ] {
        let set = p.dsm_stdin(
            &["config", "set", plugin, setting, "--value-stdin"],
            &format!("{value}\n"),
        );
        assert_eq!(set.code, 0, "{}", set.all());
    }
    p
}

/// Every process's argv, and the environment of every process descended from `root` (but not
/// `root` itself, whose environment the user gave it).
#[derive(Default)]
struct Samples {
    cmdlines: Vec<Vec<u8>>,
    environs: Vec<(u32, Vec<u8>)>,
    /// Descendants of `root` seen at least once.
    children: BTreeSet<u32>,
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may hold spaces and parentheses, so split after the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn descends_from(mut pid: u32, root: u32) -> bool {
    for _ in 0..64 {
        match parent_of(pid) {
            Some(p) if p == root => return true,
            Some(p) if p > 1 => pid = p,
            _ => return false,
        }
    }
    false
}

fn sample_once(root: u32, into: &mut Samples) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            into.cmdlines.push(cmdline);
        }
        if pid != root && descends_from(pid, root) {
            // A child between fork and exec is still a copy of dsm, with dsm's environment
            // (what the user gave it): it is not a plugin yet.
            let exe = |p: u32| std::fs::read_link(format!("/proc/{p}/exe")).ok();
            if exe(pid).is_some() && exe(pid) == exe(root) {
                continue;
            }
            into.children.insert(pid);
            if let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) {
                into.environs.push((pid, environ));
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Runs dsm with `args`, sampling `/proc` every few milliseconds until it exits.
fn run_sampled(p: &Project, args: &[&str]) -> (Run, Samples) {
    let mut cmd = p.command(args);
    cmd.env("TAP_SLOW_PASSWORD", FROM_ENV)
        .env("DSM_RUNTIME_DIR", p.path(".dsm/private-run"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let root = child.id();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut samples = Samples::default();
            while !done.load(Ordering::Relaxed) {
                sample_once(root, &mut samples);
                std::thread::sleep(Duration::from_millis(20));
            }
            samples
        })
    };
    let out = child.wait_with_output().unwrap();
    done.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap();
    (Project::finish(out), samples)
}

fn assert_no_secret_in_store(p: &Project) {
    // The file bytes (database, WAL) are covered by the tree search; the text columns here.
    let conn = p.db();
    for table in tables(&conn) {
        for row in dump(&conn, &table) {
            for secret in SECRETS {
                assert!(!row.contains(secret), "`{secret}` in table {table}: {row}");
            }
        }
    }
}

fn assert_nothing_leaked(p: &Project, run: &Run, samples: &Samples) {
    for secret in SECRETS {
        assert!(!run.stdout.contains(secret), "`{secret}` on stdout");
        assert!(!run.stderr.contains(secret), "`{secret}` on stderr");
        assert_eq!(
            tree_contains(p.dir.path(), secret),
            Vec::<PathBuf>::new(),
            "`{secret}` in the project tree"
        );
        for cmdline in &samples.cmdlines {
            assert!(
                !contains(cmdline, secret),
                "`{secret}` in an argv: {}",
                String::from_utf8_lossy(cmdline)
            );
        }
        for (pid, environ) in &samples.environs {
            assert!(
                !contains(environ, secret),
                "`{secret}` in the environment of plugin process {pid}"
            );
        }
    }
    assert_no_secret_in_store(p);
}

/// The tap's own record of what it got: the config file held the secrets (so they did reach
/// it), its environment did not.
fn assert_tap_got_secrets_by_file_only(outside: &Path) {
    let dumps: Vec<PathBuf> = std::fs::read_dir(outside)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name().unwrap().to_string_lossy().starts_with("tap-")
                && p.extension().is_some_and(|e| e == "json")
        })
        .collect();
    assert!(!dumps.is_empty(), "the tap did not run");
    for path in dumps {
        let d: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let config = &d["config"];
        assert_eq!(config["api_token"], STORED, "{config}");
        assert_eq!(config["password"], FROM_ENV, "{config}");
        assert_eq!(d["config_mode"]["file"], "600", "{d}");
        assert_eq!(d["config_mode"]["dir"], "700", "{d}");
        let env = d["env"].to_string();
        for secret in SECRETS {
            assert!(!env.contains(secret), "`{secret}` in the tap's environment");
        }
    }
}

#[test]
fn issue_7_a_whole_sync_and_run_leak_no_secret_anywhere() {
    let outside = tempfile::tempdir().unwrap();
    let p = leaky_project(outside.path());

    let (sync, sync_samples) = run_sampled(
        &p,
        &[
            "--log-level",
            "debug",
            "--format",
            "json",
            "sync",
            "slow-job",
        ],
    );
    assert_eq!(sync.code, 0, "{}", sync.all());
    let (run, run_samples) = run_sampled(
        &p,
        &[
            "--log-level",
            "debug",
            "--log-format",
            "json",
            "run",
            "tap-slow",
            "target-out",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.all());

    // The sampling saw the plugins while they ran, so a leak into their argv or environment
    // would have been caught.
    let tap_pid: u32 = std::fs::read_to_string(outside.path().join("tap.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        run_samples.children.contains(&tap_pid),
        "the tap {tap_pid} was never sampled: {:?}",
        run_samples.children
    );
    assert!(!sync_samples.environs.is_empty());

    // The records arrived, and per-run logs exist (and are searched by the tree walk).
    let out = std::fs::read_to_string(p.path("out/users.jsonl")).unwrap();
    assert_eq!(out.lines().count(), 10, "{out}");
    assert!(
        std::fs::read_dir(p.path(".dsm/logs")).unwrap().count() >= 2,
        "no per-run logs"
    );
    // The private run directories are gone.
    assert_eq!(
        std::fs::read_dir(p.path(".dsm/private-run"))
            .unwrap()
            .count(),
        0
    );

    for (r, s) in [(&sync, &sync_samples), (&run, &run_samples)] {
        assert_nothing_leaked(&p, r, s);
    }
    assert_tap_got_secrets_by_file_only(outside.path());
}

#[test]
fn issue_7_config_files_of_a_run_killed_with_sigkill_are_removed_at_the_next_start() {
    let outside = tempfile::tempdir().unwrap();
    let p = leaky_project(outside.path());
    let private = p.path(".dsm/private-run");
    let mut cmd = p.command(&["run", "tap-slow", "target-out"]);
    cmd.env("TAP_SLOW_PASSWORD", FROM_ENV)
        .env("DSM_RUNTIME_DIR", &private)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    // Wait until the tap runs: its config file is then on disk.
    let pid_file = outside.path().join("tap.pid");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pid_file.exists() {
        assert!(Instant::now() < deadline, "the tap never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<PathBuf> = std::fs::read_dir(&private)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        std::fs::read_dir(&left[0]).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".config.json")),
        "no config file in {}",
        left[0].display()
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // The orphaned tap is not dsm's to clean up here; stop it so it does not outlive the test.
    let tap: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-9", &tap.to_string()])
        .status();
    assert!(left[0].exists(), "SIGKILL cannot clean up");

    let mut next = p.command(&["run", "tap-slow", "target-out"]);
    next.env("DSM_RUNTIME_DIR", &private);
    let run = Project::finish(next.stdin(Stdio::null()).output().unwrap());
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        !left[0].exists(),
        "the killed run's config is still on disk"
    );
    assert_eq!(std::fs::read_dir(&private).unwrap().count(), 0);
}

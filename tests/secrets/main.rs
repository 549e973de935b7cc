//! CLI tests of `dsm secrets` and `dsm audit`: real `dsm` processes on a temporary project.

#![allow(
    clippy::unwrap_used,
    reason = "a test binary: a failed unwrap is a failed test"
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod hardening;
mod keys;
mod leak;

const CANARY: &str = "CANARY-ghp-7f3a9c";

struct Project {
    dir: tempfile::TempDir,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl Project {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("meltano.yml"),
            "version: 1\nplugins:\n  extractors:\n  - name: tap-github\n  loaders:\n  - name: target-postgres\n",
        )
        .unwrap();
        Project { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn key_file(&self) -> PathBuf {
        self.path("home/master.key")
    }

    /// `dsm` in the project, with the key file of this project and nothing inherited that could
    /// reach a real key or keyring.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsm"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_remove("DSM_MASTER_KEY")
            .env_remove("DSM_DATABASE_URI")
            .env_remove("DSM_PROJECT_ROOT")
            .env_remove("MELTANO_PROJECT_ROOT")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env("HOME", self.path("home"))
            .env("XDG_CONFIG_HOME", self.path("home/.config"))
            .env("DSM_MASTER_KEY_FILE", self.key_file());
        cmd
    }

    fn finish(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn dsm(&self, args: &[&str]) -> Run {
        let out = self.command(args).stdin(Stdio::null()).output().unwrap();
        Self::finish(out)
    }

    fn dsm_stdin(&self, args: &[&str], input: &str) -> Run {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        Self::finish(child.wait_with_output().unwrap())
    }

    fn initialised() -> Self {
        let p = Project::new();
        let key_file = p.key_file();
        let run = p.dsm(&["secrets", "init", "--key-file", key_file.to_str().unwrap()]);
        assert_eq!(run.code, 0, "{}", run.all());
        p
    }

    fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.path(".dsm/dsm.db")).unwrap()
    }

    /// The project's store, for the library's secret and audit functions.
    fn store(&self) -> dsm::store::SqliteStore {
        dsm::store::SqliteStore::open(&self.path(".dsm/dsm.db")).unwrap()
    }
}

fn tree_contains(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            hits.extend(tree_contains(&path, needle));
        } else {
            let bytes = std::fs::read(&path).unwrap();
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                hits.push(path);
            }
        }
    }
    hits
}

#[test]
fn set_list_verify_and_audit_never_show_the_value() {
    let p = Project::initialised();
    let set = p.dsm_stdin(
        &["secrets", "set", "tap-github", "auth_token"],
        &format!("{CANARY}\n"),
    );
    assert_eq!(set.code, 0, "{}", set.all());
    let list = p.dsm(&["secrets", "list", "--format", "json"]);
    assert_eq!(list.code, 0, "{}", list.all());
    let listed: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(listed[0]["plugin"], "tap-github");
    assert_eq!(listed[0]["setting"], "auth_token");
    let verify = p.dsm(&["secrets", "verify"]);
    assert_eq!(verify.code, 0, "{}", verify.all());
    assert!(verify.stdout.contains("1 secrets decrypt"));
    let audit = p.dsm(&["audit", "list", "--format", "json"]);
    let entries: serde_json::Value = serde_json::from_str(&audit.stdout).unwrap();
    assert_eq!(entries[0]["action"], "secret.set");
    assert_eq!(entries[0]["targets"][0], "tap-github.auth_token");
    assert_eq!(p.dsm(&["audit", "verify"]).code, 0);
    for run in [&set, &list, &verify, &audit] {
        assert!(!run.all().contains(CANARY));
    }
    // Nothing in the project tree (database, head file) holds the value in plain text.
    assert_eq!(tree_contains(p.dir.path(), CANARY), Vec::<PathBuf>::new());
}

#[test]
fn a_value_is_never_accepted_as_an_argument() {
    let p = Project::initialised();
    let run = p.dsm(&["secrets", "set", "tap-github", "auth_token", CANARY]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains("unexpected extra argument"),
        "{}",
        run.stderr
    );
    assert!(!run.all().contains(CANARY), "{}", run.all());
    assert!(!p.path(".dsm/dsm.db").exists());
}

#[test]
fn from_file_reads_the_value_and_drops_one_newline() {
    let p = Project::initialised();
    std::fs::write(p.path("token.txt"), format!("{CANARY}\n")).unwrap();
    let run = p.dsm(&[
        "secrets",
        "set",
        "tap-github",
        "auth_token",
        "--from-file",
        "token.txt",
    ]);
    assert_eq!(run.code, 0, "{}", run.all());
    let key = dsm::secrets::master_key::read_key_file(&p.key_file()).unwrap();
    let value = dsm::secrets::get_secret(&p.store(), &key, "tap-github", "auth_token")
        .unwrap()
        .unwrap();
    assert_eq!(value.expose(), CANARY);
}

#[test]
fn a_key_file_readable_by_others_is_refused_with_a_chmod_hint() {
    use std::os::unix::fs::PermissionsExt;
    let p = Project::initialised();
    std::fs::set_permissions(p.key_file(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = p.dsm_stdin(&["secrets", "set", "tap-github", "auth_token"], CANARY);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains("readable by other users"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("hint: run `chmod 600"),
        "{}",
        run.stderr
    );
}

#[test]
fn no_key_says_how_to_create_one() {
    let p = Project::new();
    let run = p.dsm_stdin(&["secrets", "set", "tap-github", "auth_token"], CANARY);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("does not exist"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("hint: create it with `dsm secrets init --key-file"),
        "{}",
        run.stderr
    );
    let mut cmd = p.command(&["secrets", "verify"]);
    let run = Project::finish(cmd.env_remove("DSM_MASTER_KEY_FILE").output().unwrap());
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("no master key found"), "{}", run.stderr);
    assert!(
        run.stderr.contains("no D-Bus session bus"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("hint: create a key with `dsm secrets init`"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_wrong_key_is_refused_before_anything_is_decrypted() {
    let p = Project::initialised();
    assert_eq!(
        p.dsm_stdin(&["secrets", "set", "tap-github", "auth_token"], CANARY)
            .code,
        0
    );
    let other = dsm::secrets::MasterKey::generate();
    let mut cmd = p.command(&["secrets", "verify"]);
    let run = Project::finish(
        cmd.env("DSM_MASTER_KEY", &*other.to_base64())
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains("does not match the key"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"));
}

#[test]
fn rotate_replaces_the_key_file_and_every_value_survives() {
    let p = Project::initialised();
    assert_eq!(
        p.dsm_stdin(&["secrets", "set", "tap-github", "auth_token"], CANARY)
            .code,
        0
    );
    assert_eq!(
        p.dsm_stdin(&["secrets", "set", "target-postgres", "password"], "pw")
            .code,
        0
    );
    let before = std::fs::read(p.key_file()).unwrap();
    let run = p.dsm(&["secrets", "rotate"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains("re-encrypted 2 secrets"),
        "{}",
        run.stdout
    );
    assert_ne!(std::fs::read(p.key_file()).unwrap(), before);
    assert_eq!(p.dsm(&["secrets", "verify"]).code, 0);
    assert_eq!(p.dsm(&["audit", "verify"]).code, 0);
    let key = dsm::secrets::master_key::read_key_file(&p.key_file()).unwrap();
    let value = dsm::secrets::get_secret(&p.store(), &key, "tap-github", "auth_token")
        .unwrap()
        .unwrap();
    assert_eq!(value.expose(), CANARY);
}

#[test]
fn import_env_moves_plaintext_secrets_out_of_dotenv() {
    let p = Project::initialised();
    std::fs::write(
        p.path(".env"),
        format!("TAP_GITHUB_AUTH_TOKEN='{CANARY}'\nTAP_GITHUB_START_DATE=2024-01-01\n"),
    )
    .unwrap();
    let run = p.dsm(&["secrets", "import-env"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout
            .contains("moved `TAP_GITHUB_AUTH_TOKEN` to `auth_token` of `tap-github`")
    );
    assert_eq!(
        std::fs::read_to_string(p.path(".env")).unwrap(),
        "TAP_GITHUB_START_DATE=2024-01-01\n"
    );
    assert_eq!(tree_contains(p.dir.path(), CANARY), Vec::<PathBuf>::new());
    assert!(p.dsm(&["secrets", "list"]).stdout.contains("auth_token"));
}

/// Issue 20 (11): a variable `meltano.yml` expands elsewhere stays in `.env`, with why.
#[test]
fn import_env_keeps_a_variable_the_project_file_refers_to() {
    let p = Project::initialised();
    let yml = std::fs::read_to_string(p.path("meltano.yml")).unwrap();
    std::fs::write(
        p.path("meltano.yml"),
        format!("{yml}\n# the token also feeds a URL\nenv:\n  GH_URL: https://x:${{TAP_GITHUB_AUTH_TOKEN}}@github.com\n"),
    )
    .unwrap();
    std::fs::write(
        p.path(".env"),
        format!("TAP_GITHUB_AUTH_TOKEN='{CANARY}'\n"),
    )
    .unwrap();
    let run = p.dsm(&["secrets", "import-env"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stderr
            .contains("left `TAP_GITHUB_AUTH_TOKEN` in `.env`")
            && run.stderr.contains("meltano.yml` refers to it"),
        "{}",
        run.all()
    );
    assert!(
        std::fs::read_to_string(p.path(".env"))
            .unwrap()
            .contains(CANARY),
        "the referenced value stays where the reference finds it"
    );
}

#[test]
fn audit_verify_fails_when_entries_are_cut_from_the_end() {
    let p = Project::initialised();
    for setting in ["a_token", "b_token", "c_token"] {
        assert_eq!(
            p.dsm_stdin(&["secrets", "set", "tap-github", setting], "v")
                .code,
            0
        );
    }
    p.db()
        .execute("DELETE FROM audit_log WHERE seq = 3", [])
        .unwrap();
    let run = p.dsm(&["audit", "verify"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("entries 3 to 3 were cut from the end"),
        "{}",
        run.stderr
    );
}

/// Issue 20, point 6: cutting entries from the end and rewriting the head to name the new last
/// entry (its MAC is in the table for anyone to copy) is detected: the head carries a MAC
/// only the master key makes.
#[test]
fn audit_verify_fails_when_entries_are_cut_and_the_head_is_rewritten() {
    let p = Project::initialised();
    for setting in ["a_token", "b_token", "c_token"] {
        assert_eq!(
            p.dsm_stdin(&["secrets", "set", "tap-github", setting], "value-1234")
                .code,
            0
        );
    }
    assert_eq!(p.dsm(&["audit", "verify"]).code, 0);
    let head = p.path(".dsm/audit.head");
    let recorded = std::fs::read_to_string(&head).unwrap();
    let mac_of = |seq: i64| -> Vec<u8> {
        p.db()
            .query_row("SELECT mac FROM audit_log WHERE seq = ?1", [seq], |r| {
                r.get(0)
            })
            .unwrap()
    };
    // The head is not the entry's MAC.
    assert!(!recorded.contains(&hex::encode(mac_of(3))), "{recorded}");

    p.db()
        .execute("DELETE FROM audit_log WHERE seq = 3", [])
        .unwrap();
    std::fs::write(&head, format!("2 {}\n", hex::encode(mac_of(2)))).unwrap();
    let run = p.dsm(&["audit", "verify"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("not authenticated"), "{}", run.stderr);
    // Any other made-up MAC does not authenticate either.
    std::fs::write(&head, format!("2 {}\n", "ab".repeat(32))).unwrap();
    let run = p.dsm(&["audit", "verify"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr
            .contains("does not authenticate under the master key"),
        "{}",
        run.stderr
    );
}

/// Issue 20, point 6: an audit entry names the OS user with its uid, and the API token's name
/// when the command runs with `DSM_TOKEN`; a value that is no token is recorded as such.
#[test]
fn audit_entries_name_the_token_a_command_runs_with() {
    let p = Project::initialised();
    let made = p.dsm(&[
        "--format",
        "json",
        "tokens",
        "create",
        "deploy-bot",
        "--role",
        "admin",
    ]);
    assert_eq!(made.code, 0, "{}", made.all());
    let made: serde_json::Value = serde_json::from_str(&made.stdout).unwrap();
    let token = made["token"].as_str().unwrap().to_owned();
    let set = |setting: &str, token: Option<&str>| {
        let mut cmd = p.command(&["secrets", "set", "tap-github", setting]);
        if let Some(t) = token {
            cmd.env("DSM_TOKEN", t);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"value-1234")
            .unwrap();
        let run = Project::finish(child.wait_with_output().unwrap());
        assert_eq!(run.code, 0, "{}", run.all());
    };
    set("a_token", Some(&token));
    set("b_token", Some("dsm_not-a-token"));
    set("c_token", None);
    let actors: Vec<String> = dsm::secrets::audit::list(&p.store(), None)
        .unwrap()
        .into_iter()
        .filter(|r| r.action == "secret.set")
        .map(|r| r.os_user)
        .collect();
    assert_eq!(actors.len(), 3, "{actors:?}");
    assert!(actors.iter().all(|a| a.contains("(uid ")), "{actors:?}");
    assert!(actors[0].ends_with(", token deploy-bot)"), "{actors:?}");
    assert!(actors[1].contains("an invalid `DSM_TOKEN`"), "{actors:?}");
    assert!(!actors[1].contains("not-a-token"), "{actors:?}");
    assert!(!actors[2].contains("token"), "{actors:?}");
    assert_eq!(p.dsm(&["audit", "verify"]).code, 0);
}

/// Runs `cmd`, killing it and failing the test if it is still running after `limit` (a
/// watchdog against a hang, not a speed check).
fn output_within(mut cmd: Command, limit: std::time::Duration) -> Run {
    use std::io::Read;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("dsm was still looking for a key after {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Run {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

#[test]
fn issue_7_keyring_lookup_on_a_headless_machine_ends_with_the_fix() {
    // A session bus that accepts connections but never answers made the keyring lookup block
    // for good; without any bus it must not be asked at all.
    let p = Project::new();
    std::fs::create_dir_all(p.path("home")).unwrap();
    let silent = p.path("silent-bus");
    let _listener = std::os::unix::net::UnixListener::bind(&silent).unwrap();
    let buses = [
        (None, "no D-Bus session bus"),
        (
            Some(format!("unix:path={}", p.path("no-bus").display())),
            "no D-Bus session bus",
        ),
        (
            Some(format!("unix:path={}", silent.display())),
            "the secret service did not answer",
        ),
    ];
    for (bus, why) in buses {
        for args in [
            &["secrets", "verify"][..],
            &["config", "set", "tap-github", "auth_token", "--value-stdin"][..],
        ] {
            let mut cmd = p.command(args);
            cmd.env_remove("DSM_MASTER_KEY_FILE");
            if let Some(bus) = &bus {
                cmd.env("DBUS_SESSION_BUS_ADDRESS", bus);
            }
            let run = output_within(cmd, std::time::Duration::from_secs(120));
            let at = format!("{args:?} with bus {bus:?}");
            assert_eq!(run.code, 2, "{at}: {}", run.all());
            assert!(
                run.stderr.contains("no master key found"),
                "{at}: {}",
                run.stderr
            );
            assert!(
                run.stderr.contains(&format!("the OS keyring ({why}")),
                "{at}: {}",
                run.stderr
            );
            assert!(
                run.stderr
                    .contains("hint: create a key with `dsm secrets init`"),
                "{at}: {}",
                run.stderr
            );
            assert!(!run.stderr.contains("panicked"), "{at}: {}", run.stderr);
        }
    }
    let mut cmd = p.command(&["secrets", "init", "--keyring"]);
    cmd.env(
        "DBUS_SESSION_BUS_ADDRESS",
        format!("unix:path={}", silent.display()),
    );
    let keyring = output_within(cmd, std::time::Duration::from_secs(120));
    assert_eq!(keyring.code, 2, "{}", keyring.all());
    assert!(
        keyring
            .stderr
            .contains("hint: use `dsm secrets init --key-file PATH`"),
        "{}",
        keyring.stderr
    );
}

/// Every row of `table` as text, sorted (tables may be `WITHOUT ROWID`, so no rowid order).
fn dump(conn: &rusqlite::Connection, table: &str) -> Vec<String> {
    let mut stmt = conn.prepare(&format!("SELECT * FROM {table}")).unwrap();
    let columns = stmt.column_count();
    let mut rows = stmt
        .query_map([], |row| {
            Ok((0..columns)
                .map(|i| format!("{:?}", row.get_ref(i).unwrap()))
                .collect::<Vec<_>>()
                .join("|"))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect::<Vec<_>>();
    rows.sort();
    rows
}

fn tables(conn: &rusqlite::Connection) -> Vec<String> {
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// A project with two secrets, a state and a stored setting.
fn populated() -> Project {
    use dsm::store::prelude::*;
    let p = Project::initialised();
    assert_eq!(
        p.dsm_stdin(&["secrets", "set", "tap-github", "auth_token"], CANARY)
            .code,
        0
    );
    assert_eq!(
        p.dsm_stdin(&["secrets", "set", "target-postgres", "password"], "pw-2")
            .code,
        0
    );
    let store = dsm::store::SqliteStore::open(&p.path(".dsm/dsm.db")).unwrap();
    let id = dsm::store::StateId::new("dev:tap-github-to-target-postgres");
    store
        .write_state(
            &id,
            &serde_json::json!({"singer_state": {"bookmarks": {"issues": {"since": "2026-01-01"}}}}),
            false,
            dsm::store::StateAction::Set,
            None,
        )
        .unwrap();
    store
        .set_setting("tap-github", "start_date", &serde_json::json!("2024-01-01"))
        .unwrap();
    p
}

#[test]
fn export_with_a_passphrase_restores_everything_under_another_key() {
    let source = populated();
    let bundle = source.path("bundle.json");
    let out = source.dsm_stdin(
        &[
            "export",
            "--output",
            bundle.to_str().unwrap(),
            "--passphrase",
        ],
        "correct horse\n",
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("2 secrets"), "{}", out.stdout);
    assert!(!String::from_utf8_lossy(&std::fs::read(&bundle).unwrap()).contains(CANARY));

    // A wrong passphrase restores nothing.
    let wrong = Project::initialised();
    let run = wrong.dsm_stdin(
        &["import", bundle.to_str().unwrap(), "--passphrase"],
        "nope\n",
    );
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains("the passphrase is wrong"),
        "{}",
        run.stderr
    );
    assert!(
        wrong
            .dsm(&["secrets", "list", "--format", "json"])
            .stdout
            .trim()
            == "[]"
    );
    assert!(!wrong.path(".dsm/audit.head").exists());

    let target = Project::initialised();
    let run = target.dsm_stdin(
        &["import", bundle.to_str().unwrap(), "--passphrase"],
        "correct horse\n",
    );
    assert_eq!(run.code, 0, "{}", run.all());
    let (a, b) = (source.db(), target.db());
    assert_eq!(tables(&a), tables(&b));
    for table in tables(&a) {
        if !["secrets", "secret_keys", "audit_log"].contains(&table.as_str()) {
            assert_eq!(dump(&a, &table), dump(&b, &table), "table {table}");
        }
    }
    let key = dsm::secrets::master_key::read_key_file(&target.key_file()).unwrap();
    let token = dsm::secrets::get_secret(&target.store(), &key, "tap-github", "auth_token")
        .unwrap()
        .unwrap();
    assert_eq!(token.expose(), CANARY);
    let names = |c: &dsm::store::SqliteStore| -> Vec<(String, String, String)> {
        dsm::secrets::list(c)
            .unwrap()
            .into_iter()
            .map(|s| (s.plugin, s.setting, s.updated_at))
            .collect()
    };
    let (sa, sb) = (source.store(), target.store());
    assert_eq!(names(&sa), names(&sb));
    // The audit history came along, re-keyed, and still verifies.
    assert_eq!(target.dsm(&["audit", "verify"]).code, 0);
    let actions = |c: &dsm::store::SqliteStore| -> Vec<String> {
        dsm::secrets::audit::list(c, None)
            .unwrap()
            .into_iter()
            .map(|r| r.action)
            .collect()
    };
    let (before, after) = (actions(&sa), actions(&sb));
    assert_eq!(after[..before.len()], before[..]);
    assert_eq!(
        after[before.len()..],
        ["secrets.rotate", "secrets.rotate", "bundle.import"]
    );
}

#[test]
fn export_without_a_passphrase_needs_the_same_master_key() {
    let source = populated();
    let bundle = source.path("bundle.json");
    let out = source.dsm(&["export", "--output", bundle.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.all());

    let stranger = Project::initialised();
    let run = stranger.dsm(&["import", bundle.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains("dsm export --passphrase"),
        "{}",
        run.stderr
    );

    let twin = Project::new();
    std::fs::create_dir_all(twin.path("home")).unwrap();
    std::fs::copy(source.key_file(), twin.key_file()).unwrap();
    let run = twin.dsm(&["import", bundle.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(dump(&source.db(), "state"), dump(&twin.db(), "state"));
    assert_eq!(twin.dsm(&["secrets", "verify"]).code, 0);
    // Importing again over a store with data is refused.
    let again = twin.dsm(&["import", bundle.to_str().unwrap()]);
    assert_eq!(again.code, 2, "{}", again.all());
    assert!(
        again.stderr.contains("already holds data"),
        "{}",
        again.stderr
    );
}

/// Issue 20 (5, 8): a bundle is authenticated with the key that protects it, and its Argon2id
/// parameters are bounded; a changed or hostile bundle writes nothing.
#[test]
fn issue_20_a_changed_or_hostile_bundle_is_refused_before_anything_is_written() {
    use base64::Engine as _;
    use sha2::Digest as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let source = populated();
    let bundle = source.path("bundle.json");
    let out = source.dsm_stdin(
        &[
            "export",
            "--output",
            bundle.to_str().unwrap(),
            "--passphrase",
        ],
        "correct horse\n",
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let original: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    assert_eq!(original["version"], 2);
    let write = |doc: &serde_json::Value, name: &str| -> PathBuf {
        let path = source.path(name);
        std::fs::write(&path, serde_json::to_vec(doc).unwrap()).unwrap();
        path
    };
    let import = |path: &Path| {
        let target = Project::initialised();
        let run = target.dsm_stdin(
            &["import", path.to_str().unwrap(), "--passphrase"],
            "correct horse\n",
        );
        let leftovers: Vec<_> = std::fs::read_dir(target.path(".dsm"))
            .into_iter()
            .flatten()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".import-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        assert!(
            !target.path(".dsm/audit.head").exists(),
            "nothing was imported: {}",
            run.all()
        );
        run
    };

    // The state inside is changed and the checksum recomputed: the MAC still catches it.
    let mut changed = original.clone();
    let db_bytes = b64.decode(original["database"].as_str().unwrap()).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let db = scratch.path().join("x.db");
    std::fs::write(&db, &db_bytes).unwrap();
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let n = conn
            .execute("UPDATE settings SET value = '\"2000-01-01\"'", [])
            .unwrap();
        assert!(n > 0, "the bundle holds the setting to change");
    }
    let edited = std::fs::read(&db).unwrap();
    changed["database"] = b64.encode(&edited).into();
    changed["sha256"] = hex::encode(sha2::Sha256::digest(&edited)).into();
    let run = import(&write(&changed, "changed.json"));
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains("does not authenticate"),
        "{}",
        run.stderr
    );

    // A header field changed (the labels) is caught as well.
    let mut relabelled = original.clone();
    relabelled["labels"] = serde_json::json!([{"stream": "x", "label": "public", "rank": 0}]);
    let run = import(&write(&relabelled, "relabelled.json"));
    assert_eq!(run.code, 2, "{}", run.all());

    // Argon2id parameters past the limits are refused before any memory is taken.
    for (field, value) in [
        ("m_cost", 64 * 1024 * 1024),
        ("t_cost", 1_000_000),
        ("p_cost", 64),
    ] {
        let mut hostile = original.clone();
        hostile["secrets"][field] = value.into();
        let run = import(&write(&hostile, "hostile.json"));
        assert_eq!(run.code, 2, "{field}: {}", run.all());
        assert!(run.stderr.contains("Argon2id"), "{}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }

    // A bundle of the unauthenticated first version is refused with what to do.
    let mut old = original.clone();
    old["version"] = 1.into();
    let run = import(&write(&old, "old.json"));
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("export it again"), "{}", run.stderr);

    // The untouched bundle still imports.
    let target = Project::initialised();
    let run = target.dsm_stdin(
        &["import", bundle.to_str().unwrap(), "--passphrase"],
        "correct horse\n",
    );
    assert_eq!(run.code, 0, "{}", run.all());
}

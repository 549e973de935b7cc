//! Master keys per project: several projects on one machine (one user config folder), each
//! found by its `project_id`; rotating one never touches another's key.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::{CANARY, Project, Run};

/// A user's machine: the config folder every project of the user shares.
struct Machine {
    home: tempfile::TempDir,
}

impl Machine {
    fn new() -> Machine {
        Machine {
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn config(&self) -> PathBuf {
        self.home.path().join(".config/dsm")
    }

    /// The shared key file of dsm before per-project keys.
    fn shared_key(&self) -> PathBuf {
        self.config().join("master.key")
    }

    fn project_key(&self, project_id: &str) -> PathBuf {
        self.config().join("keys").join(format!("{project_id}.key"))
    }

    /// A project on this machine, with `project_id` when given.
    fn project(&self, project_id: Option<&str>) -> Project {
        let p = Project::new();
        if let Some(id) = project_id {
            let file = p.path("meltano.yml");
            let text = std::fs::read_to_string(&file).unwrap();
            std::fs::write(&file, format!("project_id: {id}\n{text}")).unwrap();
        }
        p
    }

    /// `dsm` in `p`, finding keys the way it does without `DSM_MASTER_KEY_FILE`.
    fn dsm(&self, p: &Project, args: &[&str], input: Option<&str>) -> Run {
        use std::io::Write as _;
        let mut cmd = p.command(args);
        cmd.env_remove("DSM_MASTER_KEY_FILE")
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join(".config"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.unwrap_or("").as_bytes()).unwrap();
        drop(pipe);
        Project::finish(child.wait_with_output().unwrap())
    }

    fn ok(&self, p: &Project, args: &[&str], input: Option<&str>) -> Run {
        let run = self.dsm(p, args, input);
        assert_eq!(run.code, 0, "dsm {args:?}: {}", run.all());
        run
    }
}

fn bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn rotating_one_projects_key_leaves_every_other_project_working() {
    let m = Machine::new();
    // Stores made the old way: both projects use the one shared key file.
    dsm::secrets::master_key::write_key_file(&m.shared_key(), &dsm::secrets::MasterKey::generate())
        .unwrap();
    let a = m.project(Some("project-a"));
    let b = m.project(Some("project-b"));
    let legacy = m.project(None);
    for p in [&a, &b, &legacy] {
        m.ok(
            p,
            &["secrets", "set", "tap-github", "auth_token"],
            Some(CANARY),
        );
    }
    let shared_before = bytes(&m.shared_key());

    let run = m.ok(&a, &["secrets", "rotate"], None);
    assert!(
        run.stdout.contains("re-encrypted 1 secrets"),
        "{}",
        run.all()
    );
    // The new key is project A's own; the shared file is untouched.
    assert_eq!(bytes(&m.shared_key()), shared_before);
    let a_key = dsm::secrets::master_key::read_key_file(&m.project_key("project-a")).unwrap();
    assert!(run.stdout.contains(&a_key.key_id()), "{}", run.stdout);
    assert!(
        !m.project_key("project-a")
            .with_extension("key.new")
            .exists()
    );
    for p in [&a, &b, &legacy] {
        m.ok(p, &["secrets", "verify"], None);
        m.ok(p, &["audit", "verify"], None);
    }
    let value = dsm::secrets::get_secret(&a.store(), &a_key, "tap-github", "auth_token")
        .unwrap()
        .unwrap();
    assert_eq!(value.expose(), CANARY);

    // B rotates too; A keeps working, and a project without a `project_id` is not allowed to
    // replace the shared file.
    m.ok(&b, &["secrets", "rotate"], None);
    m.ok(&a, &["secrets", "verify"], None);
    let run = m.dsm(&legacy, &["secrets", "rotate"], None);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("project_id"), "{}", run.stderr);
    assert_eq!(bytes(&m.shared_key()), shared_before);
    m.ok(&legacy, &["secrets", "verify"], None);
}

#[test]
fn a_new_project_gets_a_key_file_of_its_own() {
    let m = Machine::new();
    let a = m.project(Some("fresh-a"));
    let b = m.project(Some("fresh-b"));
    for p in [&a, &b] {
        m.ok(p, &["secrets", "init"], None);
        m.ok(
            p,
            &["secrets", "set", "tap-github", "auth_token"],
            Some(CANARY),
        );
    }
    assert!(m.project_key("fresh-a").is_file());
    assert!(m.project_key("fresh-b").is_file());
    assert!(!m.shared_key().exists());
    // The project's own store, opened by its path (as `dsm serve` does), knows whose key it
    // needs; a database elsewhere does not.
    let store = dsm::store::open_path(&a.path(".dsm/dsm.db")).unwrap();
    assert_eq!(store.key_owner().as_deref(), Some("fresh-a"));
    std::fs::copy(a.path(".dsm/dsm.db"), a.path("elsewhere.db")).unwrap();
    let elsewhere = dsm::store::open_path(&a.path("elsewhere.db")).unwrap();
    assert_eq!(elsewhere.key_owner(), None);
    let b_before = bytes(&m.project_key("fresh-b"));
    m.ok(&a, &["secrets", "rotate"], None);
    assert_eq!(bytes(&m.project_key("fresh-b")), b_before);
    m.ok(&b, &["secrets", "verify"], None);
    m.ok(&a, &["secrets", "verify"], None);
}

#[test]
fn a_missing_or_wrong_key_names_the_key_id_the_store_needs() {
    let m = Machine::new();
    let p = m.project(Some("lost-key"));
    m.ok(&p, &["secrets", "init"], None);
    m.ok(
        &p,
        &["secrets", "set", "tap-github", "auth_token"],
        Some(CANARY),
    );
    let file = m.project_key("lost-key");
    let id = dsm::secrets::master_key::read_key_file(&file)
        .unwrap()
        .key_id();

    // Gone: the id, where dsm looked and where the key belongs.
    let kept = m.home.path().join("kept.key");
    std::fs::rename(&file, &kept).unwrap();
    let run = m.dsm(&p, &["secrets", "verify"], None);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains(&id), "{}", run.stderr);
    assert!(
        run.stderr.contains(&file.display().to_string()),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(CANARY));

    // Another key in its place: passed over, named with its own id.
    let other = dsm::secrets::MasterKey::generate();
    dsm::secrets::master_key::write_key_file(&file, &other).unwrap();
    let run = m.dsm(&p, &["secrets", "verify"], None);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains(&id) && run.stderr.contains(&other.key_id()),
        "{}",
        run.stderr
    );
    // A wrong key given explicitly: both ids.
    let mut cmd = p.command(&["secrets", "verify"]);
    cmd.env("HOME", m.home.path())
        .env("XDG_CONFIG_HOME", m.home.path().join(".config"))
        .env("DSM_MASTER_KEY", &*other.to_base64());
    let run = Project::finish(cmd.output().unwrap());
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains(&id) && run.stderr.contains(&other.key_id()),
        "{}",
        run.stderr
    );

    // Under any name in the keys folder (a copy, a rotation interrupted after its commit), the
    // key with the right id is found.
    std::fs::remove_file(&file).unwrap();
    std::fs::rename(&kept, file.with_file_name("renamed.key.new")).unwrap();
    m.ok(&p, &["secrets", "verify"], None);
}

/// Issue 20, point 7: an export bundle carries each secret's environment, also when its
/// secrets are re-encrypted under a passphrase.
#[test]
fn a_bundle_keeps_each_secrets_environment() {
    let with_prod = || {
        let p = Project::initialised();
        let yml = p.path("meltano.yml");
        let text = std::fs::read_to_string(&yml).unwrap();
        std::fs::write(&yml, format!("{text}environments:\n- name: prod\n")).unwrap();
        p
    };
    let source = with_prod();
    let set = |args: &[&str], value: &str| {
        let run = source.dsm_stdin(args, value);
        assert_eq!(run.code, 0, "{}", run.all());
    };
    set(&["secrets", "set", "tap-github", "auth_token"], CANARY);
    set(
        &[
            "--environment",
            "prod",
            "secrets",
            "set",
            "tap-github",
            "auth_token",
        ],
        "prod-token-value",
    );
    // An environment the project does not define is refused, and nothing is stored.
    let run = source.dsm_stdin(
        &[
            "--environment",
            "nope",
            "secrets",
            "set",
            "tap-github",
            "auth_token",
        ],
        "stray-value-123",
    );
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("nope"), "{}", run.stderr);
    let bundle = source.path("bundle.json");
    let run = source.dsm_stdin(
        &[
            "export",
            "--output",
            bundle.to_str().unwrap(),
            "--passphrase",
        ],
        "correct horse\n",
    );
    assert_eq!(run.code, 0, "{}", run.all());
    let target = with_prod();
    let run = target.dsm_stdin(
        &["import", bundle.to_str().unwrap(), "--passphrase"],
        "correct horse\n",
    );
    assert_eq!(run.code, 0, "{}", run.all());
    let key = dsm::secrets::master_key::read_key_file(&target.key_file()).unwrap();
    let get = |scope: Option<&str>| {
        dsm::secrets::store::get_secret_in(&target.store(), &key, "tap-github", "auth_token", scope)
            .unwrap()
            .map(|s| s.expose().to_owned())
    };
    assert_eq!(get(Some("prod")).as_deref(), Some("prod-token-value"));
    assert_eq!(get(None).as_deref(), Some(CANARY));
    let listed = target.dsm(&["secrets", "list"]);
    assert!(
        listed.stdout.contains("environment prod"),
        "{}",
        listed.all()
    );
}

//! `TestProject`: a temp directory with a `meltano.yml`, and a way to run the real `dsm` binary in
//! it with a clean environment (no inherited `TAP_*`, `TARGET_*`, `MELTANO_*` or `DSM_*`).

#![allow(
    dead_code,
    reason = "each test module uses a different part of the helper"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// What a dsm run produced.
#[derive(Debug)]
pub struct Output {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Stdout parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// A throwaway project directory.
pub struct TestProject {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl TestProject {
    /// An empty directory (no meltano.yml yet).
    pub fn empty() -> Self {
        TestProject {
            dir: tempfile::tempdir().expect("temp dir"),
            env: Vec::new(),
        }
    }

    /// A project with this `meltano.yml`.
    pub fn new(meltano_yml: &str) -> Self {
        let p = Self::empty();
        p.write("meltano.yml", meltano_yml);
        p
    }

    /// The project directory.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file (parents created).
    pub fn write(&self, rel: &str, text: &str) {
        let path = self.dir.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    /// Reads a file.
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(rel)).expect("read")
    }

    /// Sets an environment variable for every later run.
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// The command, ready to run in the project with a clean environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsm"));
        cmd.args(args).current_dir(self.dir.path());
        clean_env(&mut cmd);
        cmd.env("DSM_DATABASE_URI", self.dir.path().join(".dsm/dsm.db"));
        // The default master key file is under the user config dir: keep the user's out.
        cmd.env("XDG_CONFIG_HOME", self.dir.path().join(".test-config"));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs dsm with `args` in the project.
    pub fn dsm(&self, args: &[&str]) -> Output {
        run(self.command(args))
    }
}

/// Removes every inherited variable that could change a plugin's settings or dsm's behaviour.
pub fn clean_env(cmd: &mut Command) {
    for (k, _) in std::env::vars() {
        if ["TAP_", "TARGET_", "MELTANO_", "DSM_", "MAPPER_"]
            .iter()
            .any(|p| k.starts_with(p))
        {
            cmd.env_remove(k);
        }
    }
}

/// Runs a command and collects its output.
pub fn run(mut cmd: Command) -> Output {
    let out = cmd.output().expect("the program starts");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The Python venv with real Meltano, from `DSM_TEST_VENV`; panics with the setup command when
/// it is missing (tests that need it fail loudly instead of skipping).
pub fn meltano_venv() -> PathBuf {
    let venv = std::env::var_os("DSM_TEST_VENV").unwrap_or_else(|| {
        panic!("DSM_TEST_VENV is not set: run `scripts/setup-test-env.sh` and export DSM_TEST_VENV=target/test-env/venv")
    });
    let venv = PathBuf::from(venv);
    assert!(
        venv.join("bin/meltano").is_file(),
        "no meltano in `{}`: run `scripts/setup-test-env.sh`",
        venv.display()
    );
    venv
}

/// Copies an example project's folder, leaving out what running it in place leaves behind
/// (`.dsm`, `output`, `.meltano`: each example's `.gitignore` lists them).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        if [".dsm", "output", ".meltano"].iter().any(|n| name == *n) {
            continue;
        }
        let dest = to.join(&name);
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).expect("copy");
        }
    }
}

/// Writes an executable shell script `name` in the project: `#!/bin/sh` and `body`.
pub fn script(p: &TestProject, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    p.write(name, &format!("#!/bin/sh\n{body}"));
    let path = p.root().join(name);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

//! Helpers: locate the plugin binaries, run them, read SQLite tables.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// The path of a built-in plugin's executable.
pub fn bin(name: &str) -> PathBuf {
    PathBuf::from(match name {
        "tap-csv" => env!("CARGO_BIN_EXE_tap-csv"),
        "tap-jsonl" => env!("CARGO_BIN_EXE_tap-jsonl"),
        "tap-sqlite" => env!("CARGO_BIN_EXE_tap-sqlite"),
        "tap-rest" => env!("CARGO_BIN_EXE_tap-rest"),
        "target-jsonl" => env!("CARGO_BIN_EXE_target-jsonl"),
        "target-csv" => env!("CARGO_BIN_EXE_target-csv"),
        "target-sqlite" => env!("CARGO_BIN_EXE_target-sqlite"),
        "tap-postgres" => env!("CARGO_BIN_EXE_tap-postgres"),
        "target-postgres" => env!("CARGO_BIN_EXE_target-postgres"),
        "tap-webhook" => env!("CARGO_BIN_EXE_tap-webhook"),
        other => panic!("no plugin `{other}`"),
    })
}

/// The names of all built-in plugins.
pub const PLUGINS: [&str; 10] = [
    "tap-csv",
    "tap-jsonl",
    "tap-sqlite",
    "tap-rest",
    "tap-webhook",
    "target-jsonl",
    "target-csv",
    "target-sqlite",
    "tap-postgres",
    "target-postgres",
];

/// What a plugin run produced.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The stdout lines parsed as JSON.
    pub fn messages(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// Messages of one type.
    pub fn of_type(&self, kind: &str) -> Vec<Value> {
        self.messages()
            .into_iter()
            .filter(|m| m["type"] == kind)
            .collect()
    }

    /// The `record` objects of RECORD messages.
    pub fn records(&self) -> Vec<Value> {
        self.of_type("RECORD")
            .into_iter()
            .map(|m| m["record"].clone())
            .collect()
    }

    /// The value of the last STATE message.
    pub fn last_state(&self) -> Value {
        self.of_type("STATE").last().expect("a STATE message")["value"].clone()
    }

    pub fn assert_ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "stderr:\n{}\nstdout:\n{}",
            self.stderr, self.stdout
        );
        self
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs a plugin in `dir` with `args`, feeding `stdin`.
pub fn run(dir: &Path, name: &str, args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(bin(name))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plugin");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out.into()
}

/// Writes a JSON file and returns its name (relative to `dir`).
pub fn write_json(dir: &Path, name: &str, value: &Value) -> String {
    std::fs::write(dir.join(name), serde_json::to_vec_pretty(value).unwrap()).unwrap();
    name.to_owned()
}

/// Rows of a query, each value rendered as text (`NULL` for null).
pub fn query(db: &Path, sql: &str) -> Vec<Vec<String>> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        (0..n)
            .map(|i| {
                Ok(match r.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => "NULL".to_owned(),
                    rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                    rusqlite::types::ValueRef::Real(f) => f.to_string(),
                    rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    rusqlite::types::ValueRef::Blob(b) => format!("{b:?}"),
                })
            })
            .collect()
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// Column names and declared types of a table.
pub fn columns(db: &Path, table: &str) -> Vec<(String, String)> {
    query(db, &format!("PRAGMA table_info(\"{table}\")"))
        .into_iter()
        .map(|r| (r[1].clone(), r[2].clone()))
        .collect()
}

/// Rows as `Vec<Vec<&str>>`-comparable strings.
pub fn rows(v: &[&[&str]]) -> Vec<Vec<String>> {
    v.iter()
        .map(|r| r.iter().map(|s| (*s).to_owned()).collect())
        .collect()
}

/// The bundled SDK target test stream `name`.
pub fn sdk_stream(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/target-test-streams")
            .join(format!("{name}.singer")),
    )
    .unwrap()
}

/// A temporary Meltano project driven through the `dsm` binary, with a clean environment.
pub struct Project {
    pub dir: tempfile::TempDir,
    envs: Vec<(String, String)>,
}

impl Project {
    pub fn new(meltano_yml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("meltano.yml"), meltano_yml).unwrap();
        Project {
            dir,
            envs: Vec::new(),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.envs.push((k.into(), v.into()));
        self
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.root().join(rel)).unwrap()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsm"));
        cmd.args(args).current_dir(self.root());
        for (k, _) in std::env::vars() {
            if ["TAP_", "TARGET_", "MELTANO_", "DSM_", "MAPPER_"]
                .iter()
                .any(|p| k.starts_with(p))
            {
                cmd.env_remove(k);
            }
        }
        cmd.env("DSM_DATABASE_URI", self.root().join(".dsm/dsm.db"));
        cmd.env("XDG_CONFIG_HOME", self.root().join(".config"));
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    pub fn dsm(&self, args: &[&str]) -> Run {
        self.command(args).output().unwrap().into()
    }
}

/// Copies the files and folders under `from` into `to` (which exists), leaving out what a run
/// of an example in place leaves behind (`output/`, `.dsm/`, `.meltano/`).
pub fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if ["output", ".dsm", ".meltano"].contains(&entry.file_name().to_str().unwrap_or("")) {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

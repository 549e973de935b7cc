//! Running real Meltano and dsm on one project, and a moto S3 server for the duration of a test.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// What a command printed and how it ended.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn ok(self, what: &str) -> Self {
        assert_eq!(
            self.code, 0,
            "{what} failed:\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

fn venv() -> PathBuf {
    let venv = std::env::var_os("DSM_TEST_VENV").unwrap_or_else(|| {
        panic!(
            "DSM_TEST_VENV is not set: run `scripts/setup-test-env.sh` and export DSM_TEST_VENV=target/test-env/venv"
        )
    });
    let venv = PathBuf::from(venv);
    assert!(
        venv.join("bin/meltano").is_file(),
        "no meltano in `{}`: run `scripts/setup-test-env.sh`",
        venv.display()
    );
    venv
}

/// A command with the inherited Meltano, dsm, plugin and AWS variables cleared.
fn clean(program: &Path, dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir);
    for (k, _) in std::env::vars() {
        if ["TAP_", "TARGET_", "MELTANO_", "DSM_", "MAPPER_", "AWS_"]
            .iter()
            .any(|p| k.starts_with(p))
        {
            cmd.env_remove(k);
        }
    }
    cmd.env("MELTANO_SEND_ANONYMOUS_USAGE_STATS", "false")
        .env("MELTANO_DISABLE_TRACKING", "true")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn output(mut cmd: Command) -> Out {
    let o = cmd.stdin(Stdio::null()).output().unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Runs real Meltano in `dir`.
pub fn meltano(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = clean(&venv().join("bin/meltano"), dir, env);
    cmd.args(args);
    output(cmd)
}

/// Runs dsm in `dir`.
pub fn dsm(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = clean(Path::new(env!("CARGO_BIN_EXE_dsm")), dir, env);
    cmd.args(args);
    output(cmd)
}

/// moto's S3 server on a free loopback port, stopped when dropped.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        let exe = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/moto/bin/moto_server");
        assert!(
            exe.is_file(),
            "{} is missing: run `scripts/setup-test-env.sh`",
            exe.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&exe)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = moto.child.try_wait().unwrap() {
                panic!("moto_server exited with {status} before it listened on port {port}");
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on port {port} within 60s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// Runs `code` with boto3 from the Meltano venv (installed with `meltano[s3]`), with a client
    /// `s3` signed by the credentials the tests give moto; what it prints is returned. The requests
    /// are signed as any S3 client signs them: moto refuses anonymous reads of private objects.
    fn boto3(&self, code: &str, args: &[&str]) -> Out {
        let script = format!(
            "import sys, boto3\n\
             s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1',\n\
                 aws_access_key_id='testing', aws_secret_access_key='testing')\n\
             {code}\n"
        );
        let mut cmd = Command::new(venv().join("bin/python"));
        cmd.arg("-c").arg(script).arg(&self.endpoint).args(args);
        output(cmd)
    }

    /// Creates a bucket.
    pub fn create_bucket(&self, bucket: &str) {
        self.boto3("s3.create_bucket(Bucket=sys.argv[2])", &[bucket])
            .ok(&format!("creating bucket `{bucket}`"));
    }

    /// The object at `key` of `bucket`, if any.
    pub fn get(&self, bucket: &str, key: &str) -> Option<String> {
        let out = self.boto3(
            "try:\n    body = s3.get_object(Bucket=sys.argv[2], Key=sys.argv[3])['Body'].read()\n\
             except s3.exceptions.NoSuchKey:\n    sys.exit(44)\n\
             sys.stdout.write(body.decode())",
            &[bucket, key],
        );
        match out.code {
            0 => Some(out.stdout),
            44 => None,
            _ => panic!("GET {key}: {out:?}"),
        }
    }

    /// Writes an object.
    pub fn put(&self, bucket: &str, key: &str, body: &str) {
        self.boto3(
            "s3.put_object(Bucket=sys.argv[2], Key=sys.argv[3], Body=sys.argv[4].encode())",
            &[bucket, key, body],
        )
        .ok(&format!("PUT {key}"));
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A SQLite query's rows as text.
pub fn query(db: &Path, sql: &str) -> Vec<Vec<String>> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        (0..n)
            .map(|i| {
                r.get::<_, rusqlite::types::Value>(i).map(|v| match v {
                    rusqlite::types::Value::Null => "NULL".to_string(),
                    rusqlite::types::Value::Integer(i) => i.to_string(),
                    rusqlite::types::Value::Real(f) => f.to_string(),
                    rusqlite::types::Value::Text(t) => t,
                    rusqlite::types::Value::Blob(_) => "<blob>".to_string(),
                })
            })
            .collect()
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

//! Fault-injection tap for the test suite and the benchmark: a real program speaking Singer.
//!
//! Options (all optional, applied in this order):
//! `--dump FILE` (write args, environment and the `--config` file's content as JSON),
//! `--pid-file FILE`, `--stderr TEXT` (repeatable), `--stderr-lines N`, `--sleep-before MS`,
//! `--replay FILE` (copy a JSONL fixture), `--generate N` (N ~250-byte records of `--stream`,
//! default `bench`, with a STATE every `--state-every` records, default 10000),
//! `--crash-after N` (abort after N lines), `--garbage` (a line that is not JSON),
//! `--huge BYTES` (one RECORD line of that size), `--sleep-after MS`, `--exit-code C`.

#![allow(clippy::print_stderr, reason = "a test plugin talks to its stderr")]

use std::io::{self, BufRead, BufWriter, Write};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Default)]
struct Opts {
    config: Option<String>,
    dump: Option<String>,
    pid_file: Option<String>,
    stderr: Vec<String>,
    stderr_lines: u64,
    sleep_before: u64,
    replay: Option<String>,
    generate: u64,
    state_every: u64,
    stream: String,
    crash_after: Option<u64>,
    garbage: bool,
    huge: Option<usize>,
    sleep_after: u64,
    exit_code: u8,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        state_every: 10_000,
        stream: "bench".into(),
        ..Opts::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{v}: {e}"));
        match a.as_str() {
            "--config" => o.config = Some(val()?),
            "--dump" => o.dump = Some(val()?),
            "--pid-file" => o.pid_file = Some(val()?),
            "--stderr" => o.stderr.push(val()?),
            "--stderr-lines" => o.stderr_lines = num(val()?)?,
            "--sleep-before" => o.sleep_before = num(val()?)?,
            "--replay" => o.replay = Some(val()?),
            "--generate" => o.generate = num(val()?)?,
            "--state-every" => o.state_every = num(val()?)?.max(1),
            "--stream" => o.stream = val()?,
            "--crash-after" => o.crash_after = Some(num(val()?)?),
            "--garbage" => o.garbage = true,
            "--huge" => o.huge = Some(num(val()?)? as usize),
            "--sleep-after" => o.sleep_after = num(val()?)?,
            "--exit-code" => o.exit_code = num(val()?)? as u8,
            // Accepted and ignored, like a tap that has no use for them.
            "--catalog" | "--properties" | "--state" => {
                val()?;
            }
            "--discover" | "--about" => {}
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(o)
}

/// Writes args, environment and config file (content and mode) as JSON.
pub fn dump(path: &str, config: Option<&str>) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let env: serde_json::Map<String, serde_json::Value> = std::env::vars()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    let (content, mode) = match config {
        Some(c) => {
            let text = std::fs::read_to_string(c)?;
            let mode = std::fs::metadata(c)?.permissions().mode() & 0o777;
            let dir_mode = std::path::Path::new(c)
                .parent()
                .map(|d| std::fs::metadata(d).map(|m| m.permissions().mode() & 0o777))
                .transpose()?;
            (
                serde_json::from_str::<serde_json::Value>(&text).map_err(io::Error::other)?,
                serde_json::json!({"file": format!("{mode:o}"), "dir": dir_mode.map(|m| format!("{m:o}"))}),
            )
        }
        None => (serde_json::Value::Null, serde_json::Value::Null),
    };
    let doc = serde_json::json!({
        "args": std::env::args().collect::<Vec<_>>(),
        "env": env,
        "config_path": config,
        "config": content,
        "config_mode": mode,
        "pid": std::process::id(),
    });
    std::fs::write(
        path,
        serde_json::to_vec_pretty(&doc).map_err(io::Error::other)?,
    )
}

struct Out<W: Write> {
    w: W,
    lines: u64,
    crash_after: Option<u64>,
}

impl<W: Write> Out<W> {
    fn line(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.w.write_all(bytes)?;
        if !bytes.ends_with(b"\n") {
            self.w.write_all(b"\n")?;
        }
        self.lines += 1;
        if self.crash_after == Some(self.lines) {
            self.w.flush()?;
            eprintln!("fake tap: crashing after line {}", self.lines);
            std::process::abort();
        }
        Ok(())
    }
}

fn record(stream: &str, i: u64) -> String {
    let mut line = format!(
        r#"{{"type":"RECORD","stream":"{stream}","record":{{"id":{i},"name":"user-{i:08}","email":"user{i}@example.com","lat":40.748817,"lon":-73.985130,"active":true,"note":""#
    );
    // Pad to about 250 bytes.
    while line.len() < 225 {
        line.push('x');
    }
    line.push_str(r#""},"time_extracted":"2024-01-01T00:00:00Z"}"#);
    line
}

fn run(o: &Opts) -> io::Result<()> {
    if let Some(path) = &o.dump {
        dump(path, o.config.as_deref())?;
    }
    if let Some(path) = &o.pid_file {
        std::fs::write(path, std::process::id().to_string())?;
    }
    for s in &o.stderr {
        eprintln!("{s}");
    }
    for i in 0..o.stderr_lines {
        eprintln!("fake tap: chatty stderr line {i} {}", "-".repeat(100));
    }
    if o.sleep_before > 0 {
        std::thread::sleep(Duration::from_millis(o.sleep_before));
    }
    let stdout = io::stdout().lock();
    let mut out = Out {
        w: BufWriter::with_capacity(1 << 16, stdout),
        lines: 0,
        crash_after: o.crash_after,
    };
    if let Some(path) = &o.replay {
        let file = std::fs::File::open(path)?;
        if o.crash_after.is_none() {
            // As fast as `cat`.
            io::copy(&mut io::BufReader::with_capacity(1 << 16, file), &mut out.w)?;
        } else {
            for line in io::BufReader::new(file).split(b'\n') {
                out.line(&line?)?;
            }
        }
    }
    if o.generate > 0 {
        let schema = format!(
            r#"{{"type":"SCHEMA","stream":"{}","schema":{{"type":"object","properties":{{"id":{{"type":"integer"}}}}}},"key_properties":["id"]}}"#,
            o.stream
        );
        out.line(schema.as_bytes())?;
        for i in 1..=o.generate {
            out.line(record(&o.stream, i).as_bytes())?;
            if i % o.state_every == 0 || i == o.generate {
                let state = format!(
                    r#"{{"type":"STATE","value":{{"bookmarks":{{"{}":{{"id":{i}}}}}}}}}"#,
                    o.stream
                );
                out.line(state.as_bytes())?;
            }
        }
    }
    if o.garbage {
        out.line(b"this is not json {")?;
    }
    if let Some(size) = o.huge {
        let head = r#"{"type":"RECORD","stream":"huge","record":{"x":""#;
        let tail = r#""}}"#;
        out.w.write_all(head.as_bytes())?;
        let fill = vec![b'x'; 1 << 16];
        let mut left = size.saturating_sub(head.len() + tail.len());
        while left > 0 {
            let n = left.min(fill.len());
            out.w.write_all(&fill[..n])?;
            left -= n;
        }
        out.line(tail.as_bytes())?;
    }
    out.w.flush()?;
    if o.sleep_after > 0 {
        std::thread::sleep(Duration::from_millis(o.sleep_after));
    }
    Ok(())
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("fake tap: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = run(&o) {
        eprintln!("fake tap: {e}");
        return ExitCode::from(1);
    }
    ExitCode::from(o.exit_code)
}

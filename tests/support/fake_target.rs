//! Fault-injection target for the test suite and the benchmark: a real program speaking Singer.
//!
//! It reads Singer lines from stdin; on each STATE it "flushes" (writes what it received to
//! `--output`) and then prints the state value on stdout, as singer targets do.
//! Options: `--output FILE`, `--dump FILE` (args, environment, config as JSON), `--pid-file FILE`,
//! `--stderr TEXT` (repeatable), `--bad-states` (print `{}` and a non-JSON line first),
//! `--read-delay-ms MS` (per line: a slow loader), `--exit-after N` (stop reading after N lines),
//! `--summary FILE` (counts as JSON at the end), `--exit-code C`, `--no-state` (flush on STATE
//! but print nothing: a loader that never confirms).

#![allow(clippy::print_stderr, reason = "a test plugin talks to its stderr")]

use std::io::{self, BufRead, BufWriter, Write};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Default)]
struct Opts {
    config: Option<String>,
    output: Option<String>,
    dump: Option<String>,
    pid_file: Option<String>,
    stderr: Vec<String>,
    bad_states: bool,
    no_state: bool,
    read_delay_ms: u64,
    exit_after: Option<u64>,
    summary: Option<String>,
    exit_code: u8,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{v}: {e}"));
        match a.as_str() {
            "--config" => o.config = Some(val()?),
            "--output" => o.output = Some(val()?),
            "--dump" => o.dump = Some(val()?),
            "--pid-file" => o.pid_file = Some(val()?),
            "--stderr" => o.stderr.push(val()?),
            "--bad-states" => o.bad_states = true,
            "--no-state" => o.no_state = true,
            "--read-delay-ms" => o.read_delay_ms = num(val()?)?,
            "--exit-after" => o.exit_after = Some(num(val()?)?),
            "--summary" => o.summary = Some(val()?),
            "--exit-code" => o.exit_code = num(val()?)? as u8,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(o)
}

#[path = "fake_tap.rs"]
#[allow(dead_code, reason = "only `dump` is shared")]
mod tap;

fn run(o: &Opts) -> io::Result<()> {
    if let Some(path) = &o.dump {
        tap::dump(path, o.config.as_deref())?;
    }
    if let Some(path) = &o.pid_file {
        std::fs::write(path, std::process::id().to_string())?;
    }
    for s in &o.stderr {
        eprintln!("{s}");
    }
    let mut stdout = io::stdout().lock();
    if o.bad_states {
        stdout.write_all(b"{}\nnot a state\n")?;
        stdout.flush()?;
    }
    let mut output = match &o.output {
        Some(p) => Some(BufWriter::with_capacity(1 << 16, std::fs::File::create(p)?)),
        None => None,
    };
    let mut input = io::BufReader::with_capacity(1 << 18, io::stdin().lock());
    let mut line = Vec::with_capacity(1024);
    let (mut lines, mut records, mut states, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    let finder = memchr::memmem::Finder::new(b"STATE");
    loop {
        if o.exit_after == Some(lines) {
            break;
        }
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        lines += 1;
        bytes += line.len() as u64;
        if o.read_delay_ms > 0 {
            std::thread::sleep(Duration::from_millis(o.read_delay_ms));
        }
        if let Some(out) = output.as_mut() {
            out.write_all(&line)?;
        }
        let trimmed = line.strip_suffix(b"\n").unwrap_or(&line);
        let is_state = finder.find(trimmed).is_some()
            && dsm::singer::scan(trimmed).is_ok_and(|e| e.kind == dsm::singer::MessageKind::State);
        if is_state {
            states += 1;
            if let Some(out) = output.as_mut() {
                out.flush()?;
            }
            if !o.no_state {
                let msg: serde_json::Value =
                    serde_json::from_slice(trimmed).map_err(io::Error::other)?;
                serde_json::to_writer(&mut stdout, &msg["value"]).map_err(io::Error::other)?;
                stdout.write_all(b"\n")?;
                stdout.flush()?;
            }
        } else if memchr::memmem::find(trimmed, b"\"RECORD\"").is_some() {
            records += 1;
        }
    }
    if let Some(mut out) = output {
        out.flush()?;
    }
    if let Some(path) = &o.summary {
        let doc = serde_json::json!({"lines": lines, "records": records, "states": states, "bytes": bytes});
        std::fs::write(path, doc.to_string())?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("fake target: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = run(&o) {
        eprintln!("fake target: {e}");
        return ExitCode::from(1);
    }
    ExitCode::from(o.exit_code)
}

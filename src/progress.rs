//! Progress of a running pipeline: a live per-stream display on a terminal (records, rate,
//! elapsed), one summary line per run elsewhere, nothing with `--quiet`.
//!
//! The pipeline calls [`Progress::stream_started`], [`Progress::records`] and
//! [`Progress::finished`]. Log lines go through [`LogWriter`], which hides the live display
//! while a line is written and redraws it after, so bars and logs never interleave.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A live display per stream on stderr.
    Live,
    /// One summary line per run on stderr.
    Summary,
    /// Nothing.
    Quiet,
}

impl ProgressMode {
    /// Live on a terminal, a summary line otherwise (also with JSON logs, which are for
    /// machines), nothing with `--quiet`.
    pub fn choose(quiet: bool, stderr_is_terminal: bool, json_logs: bool) -> Self {
        if quiet {
            ProgressMode::Quiet
        } else if stderr_is_terminal && !json_logs {
            ProgressMode::Live
        } else {
            ProgressMode::Summary
        }
    }
}

/// Counts of one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamCounts {
    /// Records so far.
    pub records: u64,
    /// Bytes of RECORD lines so far.
    pub bytes: u64,
}

struct StreamLine {
    counts: StreamCounts,
    bar: Option<ProgressBar>,
}

struct Inner {
    started: Instant,
    streams: BTreeMap<String, StreamLine>,
    out: Box<dyn Write + Send>,
}

/// The live display that [`LogWriter`] hides while writing a log line (at most one at a time).
/// Tagged with the owning reporter's id, so a finished reporter only clears its own display.
static ACTIVE: Mutex<Option<(u64, MultiProgress)>> = Mutex::new(None);
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn active() -> MutexGuard<'static, Option<(u64, MultiProgress)>> {
    ACTIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reports a run's progress. Cheap to clone and safe to share between pipeline tasks.
#[derive(Clone)]
pub struct Progress {
    id: u64,
    mode: ProgressMode,
    multi: Option<MultiProgress>,
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("mode", &self.mode)
            .finish()
    }
}

impl Progress {
    /// A reporter drawing on stderr.
    pub fn new(mode: ProgressMode) -> Self {
        Self::with_output(
            mode,
            ProgressDrawTarget::stderr(),
            Box::new(std::io::stderr()),
        )
    }

    /// A reporter drawing the live display on `target` and writing summary lines to `out`
    /// (tests pass a hidden target and a buffer).
    pub fn with_output(
        mode: ProgressMode,
        target: ProgressDrawTarget,
        out: Box<dyn Write + Send>,
    ) -> Self {
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let multi = (mode == ProgressMode::Live).then(|| {
            let m = MultiProgress::with_draw_target(target);
            *active() = Some((id, m.clone()));
            m
        });
        Progress {
            id,
            mode,
            multi,
            inner: Arc::new(Mutex::new(Inner {
                started: Instant::now(),
                streams: BTreeMap::new(),
                out,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How progress is shown.
    pub fn mode(&self) -> ProgressMode {
        self.mode
    }

    /// A stream's first SCHEMA or RECORD arrived.
    pub fn stream_started(&self, stream: &str) {
        let mut inner = self.lock();
        if inner.streams.contains_key(stream) {
            return;
        }
        let bar = self.multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {prefix:<28!} {human_pos:>12} records {per_sec:>14} {elapsed:>5}",
                )
                .expect("the template is valid"),
            );
            bar.set_prefix(stream.to_owned());
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        inner.streams.insert(
            stream.to_owned(),
            StreamLine {
                counts: StreamCounts::default(),
                bar,
            },
        );
    }

    /// `n` more records of `bytes` bytes arrived on `stream` (started implicitly).
    pub fn records(&self, stream: &str, n: u64, bytes: u64) {
        if !self.lock().streams.contains_key(stream) {
            self.stream_started(stream);
        }
        let mut inner = self.lock();
        if let Some(line) = inner.streams.get_mut(stream) {
            line.counts.records += n;
            line.counts.bytes += bytes;
            if let Some(bar) = &line.bar {
                bar.inc(n);
            }
        }
    }

    /// The counts so far, by stream.
    pub fn counts(&self) -> BTreeMap<String, StreamCounts> {
        self.lock()
            .streams
            .iter()
            .map(|(k, v)| (k.clone(), v.counts))
            .collect()
    }

    /// The run ended: the live display is finished (its last state stays on screen), and
    /// outside a terminal one summary line is written. Returns that line (also when quiet).
    pub fn finished(&self, run: &str, outcome: &str) -> String {
        let mut inner = self.lock();
        let elapsed = inner.started.elapsed();
        let (records, bytes) = inner.streams.values().fold((0, 0), |(r, b), l| {
            (r + l.counts.records, b + l.counts.bytes)
        });
        let secs = elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            records as f64 / secs
        } else {
            0.0
        };
        let line = format!(
            "run {run} {outcome} in {secs:.1}s: {}, {} record{} ({}), {rate:.0} records/s",
            crate::printer::count(inner.streams.len() as u64, "stream"),
            group_thousands(records),
            if records == 1 { "" } else { "s" },
            human_bytes(bytes),
        );
        for l in inner.streams.values() {
            if let Some(bar) = &l.bar {
                bar.finish();
            }
        }
        if self.mode == ProgressMode::Summary {
            let _ = writeln!(inner.out, "{line}");
            let _ = inner.out.flush();
        }
        let mut slot = active();
        if slot.as_ref().is_some_and(|(id, _)| *id == self.id) {
            *slot = None;
        }
        line
    }
}

/// `1234567` as `1,234,567`.
pub fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes as `812 B`, `85.2 KiB`, `3.1 MiB`, `2.0 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A log writer for `tracing_subscriber::fmt().with_writer(LogWriter)`: writes to stderr,
/// hiding the live progress display (if one is up) while the line is written.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let multi = active().as_ref().map(|(_, m)| m.clone());
        match multi {
            Some(m) => m.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shared buffer standing in for stderr.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn progress_mode_follows_quiet_terminal_and_json_logs() {
        assert_eq!(ProgressMode::choose(true, true, false), ProgressMode::Quiet);
        assert_eq!(ProgressMode::choose(false, true, false), ProgressMode::Live);
        assert_eq!(
            ProgressMode::choose(false, false, false),
            ProgressMode::Summary
        );
        assert_eq!(
            ProgressMode::choose(false, true, true),
            ProgressMode::Summary
        );
    }

    #[test]
    fn progress_summary_mode_prints_one_line_per_run() {
        let buf = Buffer::default();
        let p = Progress::with_output(
            ProgressMode::Summary,
            ProgressDrawTarget::hidden(),
            Box::new(buf.clone()),
        );
        p.stream_started("users");
        p.records("users", 1_000, 2_048);
        p.records("users", 500, 1_024);
        p.records("orders", 2, 10); // started implicitly
        assert_eq!(buf.text(), "", "nothing before the run ends");
        let line = p.finished("dev:tap-a-to-target-b", "succeeded");
        assert_eq!(buf.text(), format!("{line}\n"));
        assert!(
            line.starts_with("run dev:tap-a-to-target-b succeeded in "),
            "{line}"
        );
        assert!(
            line.contains(": 2 streams, 1,502 records (3.0 KiB), "),
            "{line}"
        );
        let counts = p.counts();
        assert_eq!(
            counts["users"],
            StreamCounts {
                records: 1_500,
                bytes: 3_072
            }
        );
        assert_eq!(counts["orders"].records, 2);
    }

    #[test]
    fn progress_quiet_and_live_modes_write_no_summary_line() {
        for mode in [ProgressMode::Quiet, ProgressMode::Live] {
            let buf = Buffer::default();
            let p =
                Progress::with_output(mode, ProgressDrawTarget::hidden(), Box::new(buf.clone()));
            p.records("users", 3, 30);
            let line = p.finished("r1", "failed");
            assert!(line.contains("1 stream, 3 records (30 B)"), "{line}");
            assert_eq!(buf.text(), "", "{mode:?}");
            assert_eq!(p.counts()["users"].records, 3);
        }
    }

    #[test]
    fn progress_formats_numbers_for_people() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1_000), "1,000");
        assert_eq!(group_thousands(1_234_567), "1,234,567");
        assert_eq!(human_bytes(812), "812 B");
        assert_eq!(human_bytes(87_245), "85.2 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}

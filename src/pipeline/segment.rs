//! The hot path: one process's stdout to the next process's stdin.
//!
//! A reader task scans each line's envelope only (`type`, `stream`), keeps counts, applies the
//! native transforms to the streams they touch, and batches raw lines into chunks; a writer task
//! writes the chunks to the next process. A bounded channel joins the two, so a slow consumer
//! stops the reader, and the OS pipe then pauses the producer.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::mpsc;

use super::Event;
#[cfg(target_os = "linux")]
use super::shadow::{SpliceSide, TeeRead, TeeSide};
use crate::error::Error;
use crate::singer::codec::excerpt;
use crate::singer::envelope::{Envelope, MessageKind, sanitize, scan};
use crate::singer::message::Message;
use crate::transform::Transform;

/// Records and bytes one stream carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StreamCounts {
    /// RECORD messages.
    pub records: u64,
    /// Bytes of all the stream's lines (SCHEMA, RECORD, ...), newlines excluded.
    pub bytes: u64,
}

/// What a reader hands its writer, in stream order.
pub(super) enum Chunk {
    /// Bytes to write.
    Bytes(Vec<u8>),
    /// Move this many bytes on from the shadow pipe (zero-copy forwarding).
    #[cfg(target_os = "linux")]
    Splice(usize),
    /// Drop this many bytes from the shadow pipe (sent by copy instead, or not at all).
    #[cfg(target_os = "linux")]
    Discard(usize),
}

/// Where a writer writes: the next process's stdin as is, or through the shadow pipe.
pub(super) enum Sink {
    /// Plain writes of [`Chunk::Bytes`].
    Plain(ChildStdin),
    /// Zero-copy forwarding (see the `shadow` module).
    #[cfg(target_os = "linux")]
    Spliced(SpliceSide),
}

/// What a reader learned by the end of its input.
#[derive(Debug, Default)]
pub(super) struct SegmentReport {
    pub lines: u64,
    pub bad_lines: u64,
    /// STATE messages read (counted for the extractor's output only).
    pub states: u64,
    pub streams: BTreeMap<String, StreamCounts>,
    /// RECORD messages passed on to the next process, after the transforms (counted by the
    /// segment that feeds the loader only).
    pub records_out: u64,
    pub error: Option<Error>,
    /// Counts of the stream of the latest lines, moved to `streams` when the stream changes
    /// (most lines belong to the same stream as the one before: no map lookup for them).
    current: (String, StreamCounts),
}

impl SegmentReport {
    fn count(&mut self, stream: &str, bytes: usize, record: bool) {
        if self.current.0 != stream {
            self.flush_current();
            self.current.0.push_str(stream);
        }
        self.current.1.bytes += bytes as u64;
        if record {
            self.current.1.records += 1;
        }
    }

    fn flush_current(&mut self) {
        if self.current.0.is_empty() {
            return;
        }
        let (name, add) = std::mem::take(&mut self.current);
        let c = match self.streams.get_mut(name.as_str()) {
            Some(c) => c,
            None => self.streams.entry(name).or_default(),
        };
        c.records += add.records;
        c.bytes += add.bytes;
    }
}

pub(super) struct Reader {
    pub index: usize,
    pub label: String,
    pub stdout: Option<ChildStdout>,
    pub transforms: Vec<Box<dyn Transform>>,
    pub max_line: usize,
    pub lenient: bool,
    pub records_need_schema: bool,
    pub chunk_bytes: usize,
    /// Set for zero-copy forwarding: the producer's output with its shadow pipe (then `stdout`
    /// is `None`).
    #[cfg(target_os = "linux")]
    pub tee: Option<TeeSide>,
    pub tx: mpsc::Sender<Chunk>,
    /// Written chunks coming back from the writer for reuse (no allocation per chunk).
    pub recycled: mpsc::Receiver<Vec<u8>>,
    pub events: mpsc::Sender<Event>,
    /// Where the live display learns the counts (extractor segment on a terminal only).
    pub progress: Option<crate::progress::Progress>,
    /// Records and bytes per stream already passed to `progress`.
    pub shown: BTreeMap<String, StreamCounts>,
    /// Read every BATCH message's files and send RECORD messages instead (the next plugin is
    /// a loader that does not declare the `batch` capability). Batches of streams a transform
    /// of this segment touches are always read.
    pub expand_all_batches: bool,
    /// Set on the segment that feeds the loader: the records it passes on are counted, and
    /// each STATE is noted with the count before it.
    pub ledger: Option<std::sync::Arc<super::state::StateLedger>>,
}

/// The most record bytes one BATCH message may expand to (its records are sent on as one
/// block): a larger batch is an error that says to make the tap's batches smaller.
const MAX_BATCH_BYTES: u64 = 256 * 1024 * 1024;

impl Reader {
    /// Passes the counts gathered since the last call to the live display: once per block
    /// read, never per line.
    fn show_progress(&mut self, report: &mut SegmentReport) {
        let Some(progress) = &self.progress else {
            return;
        };
        report.flush_current();
        for (stream, now) in &report.streams {
            let shown = self.shown.entry(stream.clone()).or_default();
            if now.records != shown.records || now.bytes != shown.bytes {
                progress.records(stream, now.records - shown.records, now.bytes - shown.bytes);
                *shown = *now;
            }
        }
    }

    pub async fn run(mut self) {
        let mut report = SegmentReport::default();
        if let Err(error) = self.pump(&mut report).await {
            report.error = Some(error);
        }
        // On success and on failure alike: transforms flush their files (the validation
        // dead-letter file holds the records set aside before a failure too).
        for t in &mut self.transforms {
            if let Err(e) = t.finish() {
                report.error.get_or_insert(Error::from(e));
            }
        }
        report.flush_current();
        let index = self.index;
        // The producer's output stays open until the report is sent: a producer that dies of
        // the closed pipe must not be seen before the reader's reason for stopping.
        let stdout = self.stdout.take();
        #[cfg(target_os = "linux")]
        let tee = self.tee.take();
        // Dropping the chunk sender (with `self`) closes the next process's stdin.
        let events = self.events.clone();
        drop(self);
        let _ = events.send(Event::SegmentDone(index, report)).await;
        drop(stdout);
        #[cfg(target_os = "linux")]
        drop(tee);
    }

    fn bad_line(
        &self,
        report: &mut SegmentReport,
        line_number: u64,
        what: &str,
        line: &[u8],
    ) -> Result<(), Error> {
        if self.lenient {
            report.bad_lines += 1;
            tracing::warn!(plugin = %self.label, line = line_number, excerpt = %excerpt(line, 80), "skipped a bad line: {what}");
            Ok(())
        } else {
            Err(Error::failed(format!(
                "{} wrote a bad line {line_number}: {what}",
                self.label
            ))
            .detail(format!("| {}", excerpt(line, 120))))
        }
    }

    /// Checks the unfinished line `buf[end..]` after the block's complete lines: `Ok(true)`
    /// when it is already over the length limit and is to be skipped (lenient mode), an error
    /// naming its line number otherwise.
    fn unfinished_line(
        &self,
        report: &mut SegmentReport,
        buf: &[u8],
        end: usize,
    ) -> Result<bool, Error> {
        if buf.len() - end <= self.max_line {
            return Ok(false);
        }
        let number = report.lines + memchr::memchr_iter(b'\n', &buf[..end]).count() as u64 + 1;
        let what = format!("longer than the limit of {} bytes", self.max_line);
        let head = &buf[end..(end + 320).min(buf.len())];
        self.bad_line(report, number, &what, head)
            .map(|()| true)
            .map_err(|e| {
                e.hint(format!(
                    "the limit is the `elt.buffer_size` setting, in bytes: raise it in \
                     meltano.yml (`elt: {{buffer_size: {}}}`)",
                    self.max_line.saturating_mul(2)
                ))
            })
    }

    /// A fresh or recycled buffer with room for `want` bytes.
    fn buffer(&mut self, want: usize) -> Vec<u8> {
        let mut b = self
            .recycled
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(want));
        b.clear();
        b.reserve(want);
        b
    }

    /// Reads the source in large blocks and passes every block's complete lines on in one
    /// write. Lines are checked in place; only a batch with a changed, dropped or sanitized
    /// line is copied, so plain records are never copied in user space.
    async fn pump(&mut self, report: &mut SegmentReport) -> Result<(), Error> {
        #[cfg(target_os = "linux")]
        if let Some(mut tee) = self.tee.take() {
            let done = self.pump_spliced(report, &mut tee).await;
            self.tee = Some(tee);
            return done;
        }
        let mut stdout = self.stdout.take().expect("the reader runs once");
        let done = self.pump_plain(report, &mut stdout).await;
        self.stdout = Some(stdout);
        done
    }

    /// [`Self::pump`] with plain reads.
    async fn pump_plain(
        &mut self,
        report: &mut SegmentReport,
        stdout: &mut ChildStdout,
    ) -> Result<(), Error> {
        let block = self.chunk_bytes.max(1 << 16);
        let mut buf = self.buffer(block);
        let mut state = LineState::default();
        // Set while the rest of an over-long line is being thrown away (lenient mode).
        let mut skipping = false;
        loop {
            if buf.capacity() - buf.len() < block / 4 {
                buf.reserve(block.max(buf.len()));
            }
            let n = match stdout.read_buf(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(plugin = %self.label, error = %e, "could not read the plugin's output");
                    0
                }
            };
            let eof = n == 0;
            if skipping {
                match memchr::memchr(b'\n', &buf) {
                    Some(i) => {
                        buf.drain(..=i);
                        skipping = false;
                    }
                    None => {
                        buf.clear();
                        if eof {
                            return Ok(());
                        }
                        continue;
                    }
                }
            }
            if eof && !buf.is_empty() && buf.last() != Some(&b'\n') {
                buf.push(b'\n');
            }
            // The complete lines in the buffer.
            let mut end = match memchr::memrchr(b'\n', &buf) {
                Some(i) => i + 1,
                None => 0,
            };
            match self.unfinished_line(report, &buf, end) {
                Ok(false) => {}
                Ok(true) => {
                    buf.truncate(end);
                    skipping = true;
                }
                Err(e) => {
                    // Pass on the complete lines before it, then fail.
                    buf.truncate(end);
                    state.fatal = Some(e);
                }
            }
            let out = self.process(&mut buf, &mut end, report, &mut state);
            self.show_progress(report);
            let fatal = state.fatal.take();
            let batch = match out {
                Some(out) => {
                    buf.drain(..end);
                    out
                }
                None => {
                    // Zero-copy: the block itself goes to the writer; the partial last line
                    // moves to the next buffer.
                    let mut next = self.buffer(block.max(buf.len() - end));
                    next.extend_from_slice(&buf[end..]);
                    buf.truncate(end);
                    std::mem::replace(&mut buf, next)
                }
            };
            if !batch.is_empty() && self.tx.send(Chunk::Bytes(batch)).await.is_err() {
                // The writer stopped: the next process closed its input. The driver stops
                // this producer; nothing more to do here.
                return Ok(());
            }
            if let Some(e) = fatal {
                return Err(e);
            }
            if eof {
                return Ok(());
            }
        }
    }

    /// [`Self::pump`] with zero-copy forwarding: the bytes are read from a tee of the
    /// producer's pipe, checked, and moved on from the shadow pipe by splice; only a batch with
    /// a changed or dropped line goes by copy. The buffer stays with the reader.
    #[cfg(target_os = "linux")]
    async fn pump_spliced(
        &mut self,
        report: &mut SegmentReport,
        tee: &mut TeeSide,
    ) -> Result<(), Error> {
        let block = self.chunk_bytes.max(1 << 16);
        let mut buf = vec![0u8; 2 * block];
        let mut filled = 0;
        // `buf[..unmirrored]` is not in the shadow: it goes on by copy.
        let mut unmirrored = 0;
        let mut state = LineState::default();
        // Set while the rest of an over-long line is being thrown away (lenient mode).
        let mut skipping = false;
        loop {
            if buf.len() - filled < block / 4 {
                let grow = block.max(filled);
                buf.resize(buf.len() + grow, 0);
            }
            let room = (filled + block).min(buf.len());
            let n = match tee.read(&mut buf[filled..room], filled - unmirrored).await {
                Ok(TeeRead::Data(n)) => n,
                Ok(TeeRead::Copied(n)) => {
                    // Not in the shadow: everything read so far goes on by copy.
                    unmirrored = filled + n;
                    n
                }
                Ok(TeeRead::Eof) => 0,
                Ok(TeeRead::Full) => {
                    // Only our unfinished line is in the shadow: it will go on by copy.
                    if !self.send(Chunk::Discard(filled - unmirrored)).await {
                        return Ok(());
                    }
                    unmirrored = filled;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(plugin = %self.label, error = %e, "could not read the plugin's output");
                    0
                }
            };
            filled += n;
            let eof = n == 0;
            if skipping {
                let cut = match memchr::memchr(b'\n', &buf[..filled]) {
                    Some(i) => {
                        skipping = false;
                        i + 1
                    }
                    None => filled,
                };
                if !self
                    .drop_front(&mut buf, &mut filled, &mut unmirrored, cut)
                    .await
                {
                    return Ok(());
                }
                if skipping {
                    if eof {
                        return Ok(());
                    }
                    continue;
                }
            }
            // A last line without its newline gets one; that byte is not in the shadow.
            let synthetic = eof && filled > 0 && buf[filled - 1] != b'\n';
            if synthetic {
                if filled == buf.len() {
                    buf.push(b'\n');
                } else {
                    buf[filled] = b'\n';
                }
                filled += 1;
            }
            let mut end = memchr::memrchr(b'\n', &buf[..filled]).map_or(0, |i| i + 1);
            let mut drop_tail = false;
            match self.unfinished_line(report, &buf[..filled], end) {
                Ok(false) => {}
                Ok(true) => {
                    drop_tail = true;
                    skipping = true;
                }
                Err(e) => state.fatal = Some(e),
            }
            let out = self.process(&mut buf[..filled], &mut end, report, &mut state);
            self.show_progress(report);
            let fatal = state.fatal.take();
            // The bytes of `buf[..end]` that are in the shadow.
            let synthetic_in_shadow_range = synthetic && end == filled && unmirrored < end;
            let copied = unmirrored.min(end);
            let mirrored = end - copied - usize::from(synthetic_in_shadow_range);
            let sent = match out {
                Some(bytes) => {
                    (mirrored == 0 || self.send(Chunk::Discard(mirrored)).await)
                        && (bytes.is_empty() || self.send(Chunk::Bytes(bytes)).await)
                }
                None => {
                    (copied == 0 || self.send(Chunk::Bytes(buf[..copied].to_vec())).await)
                        && (mirrored == 0 || self.send(Chunk::Splice(mirrored)).await)
                        && (!synthetic_in_shadow_range
                            || self.send(Chunk::Bytes(b"\n".to_vec())).await)
                }
            };
            if !sent {
                return Ok(());
            }
            buf.copy_within(end..filled, 0);
            filled -= end;
            unmirrored = unmirrored.saturating_sub(end);
            if let Some(e) = fatal {
                return Err(e);
            }
            let all = filled;
            if drop_tail
                && !self
                    .drop_front(&mut buf, &mut filled, &mut unmirrored, all)
                    .await
            {
                return Ok(());
            }
            if eof {
                return Ok(());
            }
        }
    }

    /// Drops `buf[..cut]` (the bytes of a line thrown away), from the shadow too.
    #[cfg(target_os = "linux")]
    async fn drop_front(
        &mut self,
        buf: &mut [u8],
        filled: &mut usize,
        unmirrored: &mut usize,
        cut: usize,
    ) -> bool {
        let mirrored = cut - (*unmirrored).min(cut);
        if mirrored > 0 && !self.send(Chunk::Discard(mirrored)).await {
            return false;
        }
        buf.copy_within(cut..*filled, 0);
        *filled -= cut;
        *unmirrored = unmirrored.saturating_sub(cut);
        true
    }

    /// Hands a chunk to the writer; `false` when it has stopped (the next process closed its
    /// input: the driver stops this producer).
    async fn send(&mut self, chunk: Chunk) -> bool {
        self.tx.send(chunk).await.is_ok()
    }

    /// Checks the complete lines `buf[..end]`. Returns `None` when they all pass unchanged,
    /// else the bytes to send instead. On a fatal line, `end` is cut to before it.
    ///
    /// Consecutive RECORD lines that the last transform maps from their bytes are gathered and
    /// handed over as one run (see [`Transform::apply_record_lines`]); any other line first
    /// maps the run before it, so transforms see every message in stream order.
    fn process(
        &mut self,
        buf: &mut [u8],
        end: &mut usize,
        report: &mut SegmentReport,
        state: &mut LineState,
    ) -> Option<Vec<u8>> {
        let mut out: Option<Vec<u8>> = None;
        let mut copied = 0;
        let mut pos = 0;
        state.run.clear();
        while pos < *end {
            let nl = memchr::memchr(b'\n', &buf[pos..*end]).map_or(*end, |k| pos + k);
            let line = &buf[pos..nl];
            report.lines += 1;
            let head = self.head(line, report, state);
            if let Ok(Head::Defer(len)) = head {
                if !state.run.is_empty()
                    && state.run_stream != state.last_checked
                    && let Err(stop) = self.map_run(buf, &mut out, &mut copied, report, state)
                {
                    *end = stop;
                    break;
                }
                if state.run.is_empty() {
                    state.run_stream.clone_from(&state.last_checked);
                }
                state.run.push(RunLine {
                    range: pos..pos + len,
                    next: nl + 1,
                    number: report.lines,
                });
                pos = nl + 1;
                continue;
            }
            if let Err(stop) = self.map_run(buf, &mut out, &mut copied, report, state) {
                *end = stop;
                break;
            }
            if let (Some(ledger), Some(fingerprint)) = (&self.ledger, state.pending_state.take()) {
                // After the run before it was mapped: every record ahead of the STATE counts.
                ledger.passed(fingerprint, report.records_out);
            }
            let action = head.and_then(|head| match head {
                Head::Done(action) => Ok(action),
                Head::Tail(env, sanitized) => self.tail(line, env, sanitized, report, state),
                Head::Defer(_) => unreachable!("handled above"),
            });
            match action {
                Ok(Action::Pass) => {}
                Ok(action) => {
                    let o = out.get_or_insert_with(|| Vec::with_capacity(*end));
                    o.extend_from_slice(&buf[copied..pos]);
                    match action {
                        Action::Replace(bytes) => o.extend_from_slice(&bytes),
                        Action::Transformed => o.extend_from_slice(&state.transformed),
                        Action::Pass | Action::Skip => {}
                    }
                    copied = nl + 1;
                }
                Err(e) => {
                    report.lines -= 1;
                    state.fatal = Some(e);
                    *end = pos;
                    break;
                }
            }
            pos = nl + 1;
        }
        if state.fatal.is_none()
            && let Err(stop) = self.map_run(buf, &mut out, &mut copied, report, state)
        {
            *end = stop;
        }
        if let Some(o) = out.as_mut() {
            o.extend_from_slice(&buf[copied.min(*end)..*end]);
        }
        out
    }

    /// Maps the gathered run of record lines into `out`. On a fatal line, sets `state.fatal`
    /// and the line count, and returns the line's offset (the new end of the block).
    fn map_run(
        &mut self,
        buf: &[u8],
        out: &mut Option<Vec<u8>>,
        copied: &mut usize,
        report: &mut SegmentReport,
        state: &mut LineState,
    ) -> Result<(), usize> {
        let Some(first) = state.run.first() else {
            return Ok(());
        };
        let o = out.get_or_insert_with(|| Vec::with_capacity(buf.len()));
        o.extend_from_slice(&buf[*copied..first.range.start]);
        let run = std::mem::take(&mut state.run);
        let mut ranges = std::mem::take(&mut state.run_ranges);
        ranges.clear();
        ranges.extend(run.iter().map(|l| l.range.clone()));
        let mut i = 0;
        let result = loop {
            let Some(last) = self.transforms.last_mut() else {
                break Ok(());
            };
            let before = o.len();
            let mapped = last.apply_record_lines(&state.run_stream, buf, &ranges[i..], o);
            if self.ledger.is_some() {
                report.records_out += lines_in(&o[before..]);
            }
            i += mapped.done;
            let Some(at) = run.get(i) else {
                *copied = run[i - 1].next;
                break Ok(());
            };
            *copied = at.range.start;
            if let Some(e) = mapped.error {
                break Err((
                    at,
                    Error::from(e).detail(format!("at line {} of {}", at.number, self.label)),
                ));
            }
            // A line the run could not map from its bytes takes the full path.
            let line = &buf[at.range.clone()];
            // The full path names the line by the count, which is further on by now.
            let counted = std::mem::replace(&mut report.lines, at.number);
            let action = match scan(line) {
                Ok(env) => self.tail(line, env, None, report, state),
                Err(e) => Err(Error::failed(format!(
                    "{} wrote a bad line {}: {e}",
                    self.label, at.number
                ))),
            };
            report.lines = counted;
            match action {
                Ok(action) => {
                    match action {
                        Action::Pass => o.extend_from_slice(&buf[at.range.start..at.next]),
                        Action::Replace(bytes) => o.extend_from_slice(&bytes),
                        Action::Transformed => o.extend_from_slice(&state.transformed),
                        Action::Skip => {}
                    }
                    *copied = at.next;
                }
                Err(e) => break Err((at, e)),
            }
            i += 1;
            if i == run.len() {
                break Ok(());
            }
        };
        let outcome = match result {
            Ok(()) => Ok(()),
            Err((at, e)) => {
                report.lines = at.number - 1;
                state.fatal = Some(e);
                Err(at.range.start)
            }
        };
        state.run = run;
        state.run.clear();
        state.run_ranges = ranges;
        outcome
    }

    /// The checks and counts of one line (without its newline) that need no transform; says
    /// whether the line is done, joins the run of record lines, or goes on to [`Self::tail`].
    fn head<'a>(
        &mut self,
        raw: &'a [u8],
        report: &mut SegmentReport,
        state: &mut LineState,
    ) -> Result<Head<'a>, Error> {
        let n = report.lines;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(Head::Done(Action::Skip));
        }
        let env = match scan(line) {
            Ok(env) => env,
            Err(e) => {
                self.bad_line(report, n, &format!("not a Singer message ({e})"), line)?;
                return Ok(Head::Done(Action::Skip));
            }
        };
        let sanitized = env
            .needs_sanitizing()
            .then(|| sanitize(line, &env.non_finite));
        let bytes: &[u8] = sanitized.as_deref().unwrap_or(line);
        match &env.kind {
            MessageKind::Schema => {
                if let Some(s) = env.stream.as_deref()
                    && !state.schemas.contains(s)
                {
                    state.schemas.insert(s.to_owned());
                }
            }
            MessageKind::Record => {
                // Most records are of the same stream as the one before: skip the hash.
                if let Some(s) = env.stream.as_deref()
                    && s != state.last_checked
                {
                    if self.records_need_schema && !state.schemas.contains(s) {
                        self.bad_line(
                            report,
                            n,
                            &format!("RECORD of stream `{s}` before its SCHEMA"),
                            line,
                        )?;
                        return Ok(Head::Done(Action::Skip));
                    }
                    state.last_checked.clear();
                    state.last_checked.push_str(s);
                }
            }
            MessageKind::Unknown(t) if state.warned_types.insert(t.clone()) => {
                tracing::warn!(plugin = %self.label, line = n, "passing on a message of unknown type `{t}`");
            }
            _ => {}
        }
        if self.index == 0 {
            if let Some(s) = env.stream.as_deref() {
                report.count(s, bytes.len(), env.kind == MessageKind::Record);
            } else if env.kind == MessageKind::State {
                report.states += 1;
            }
        }
        if self.ledger.is_some()
            && env.kind == MessageKind::State
            && let Ok(Message::State(s)) = Message::parse(bytes)
        {
            state.pending_state = Some(super::state::fingerprint(&s.value));
        }
        if env.kind == MessageKind::Batch
            && env
                .stream
                .as_deref()
                .is_some_and(|s| self.expands_batches_of(s))
        {
            return Ok(Head::Tail(env, sanitized));
        }
        if self.transforms.is_empty() {
            if env.kind == MessageKind::Record {
                self.count_out(report, 1);
            }
            return Ok(Head::Done(pass_on(sanitized, line, raw)));
        }
        if sanitized.is_none()
            && env.kind == MessageKind::Record
            && let Some(stream) = env.stream.as_deref()
            && let Some((last, before)) = self.transforms.split_last()
            && last.touches(stream)
            && last.maps_record_lines(stream)
            && before.iter().all(|t| !t.touches(stream))
        {
            return Ok(Head::Defer(line.len()));
        }
        Ok(Head::Tail(env, sanitized))
    }

    /// What the transforms make of a line [`Self::head`] passed on (`raw` may end in `\r`).
    fn tail(
        &mut self,
        raw: &[u8],
        env: Envelope<'_>,
        sanitized: Option<Vec<u8>>,
        report: &mut SegmentReport,
        state: &mut LineState,
    ) -> Result<Action, Error> {
        let n = report.lines;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let bytes: &[u8] = sanitized.as_deref().unwrap_or(line);
        if env.kind == MessageKind::State && !self.transforms.is_empty() {
            // STATE passes unchanged; transforms only learn where it is in the stream.
            if let Ok(Message::State(s)) = Message::parse(bytes) {
                for t in &mut self.transforms {
                    t.on_state(&s.value).map_err(|e| {
                        Error::from(e).detail(format!("at line {n} of {}", self.label))
                    })?;
                }
            }
        }
        if env.kind == MessageKind::Batch
            && env
                .stream
                .as_deref()
                .is_some_and(|s| self.expands_batches_of(s))
        {
            return self.expand_batch(bytes, line, report, state);
        }
        let touched = !self.transforms.is_empty()
            && env.kind != MessageKind::State
            && env
                .stream
                .as_deref()
                .is_some_and(|s| self.transforms.iter().any(|t| t.touches(s)));
        if touched {
            // A record that only the last transform of the chain touches can be mapped from its
            // line, when that transform knows how: no message is built.
            if env.kind == MessageKind::Record
                && let Some(stream) = env.stream.as_deref()
                && let Some((last, before)) = self.transforms.split_last_mut()
                && before.iter().all(|t| !t.touches(stream))
            {
                state.transformed.clear();
                let done = last
                    .apply_record_line(stream, bytes, &mut state.transformed)
                    .map_err(|e| Error::from(e).detail(format!("at line {n} of {}", self.label)))?;
                if done {
                    self.count_out(report, lines_in(&state.transformed));
                    return Ok(Action::Transformed);
                }
            }
            let message = match Message::parse_scanned(bytes, env.kind.clone()) {
                Ok(m) => m,
                Err(e) => {
                    self.bad_line(report, n, &format!("not a Singer message ({e})"), line)?;
                    return Ok(Action::Skip);
                }
            };
            if let Message::Record(record) = &message
                && self
                    .transforms
                    .iter()
                    .all(|t| !t.touches(&record.stream) || t.filters_only(&record.stream))
            {
                // Only filters (validation) touch this record: it passes as the bytes it came
                // in, or not at all. Nothing is re-serialised.
                for t in &mut self.transforms {
                    if t.touches(&record.stream)
                        && !t.keep(record).map_err(|e| {
                            Error::from(e).detail(format!("at line {n} of {}", self.label))
                        })?
                    {
                        return Ok(Action::Skip);
                    }
                }
                self.count_out(report, 1);
                return Ok(pass_on(sanitized, line, raw));
            }
            // The message buffers and the output bytes are reused from line to line: a
            // transformed record costs no allocation here.
            let LineState {
                produced,
                spare,
                transformed,
                ..
            } = state;
            apply_chain(&mut self.transforms, message, produced, spare)
                .map_err(|e| Error::from(e).detail(format!("at line {n} of {}", self.label)))?;
            if self.ledger.is_some() {
                report.records_out += records_in(produced);
            }
            transformed.clear();
            for m in produced.drain(..) {
                m.write_line(transformed);
                transformed.push(b'\n');
            }
            return Ok(Action::Transformed);
        }
        if env.kind == MessageKind::Record {
            self.count_out(report, 1);
        }
        Ok(pass_on(sanitized, line, raw))
    }

    /// Counts records passed on, on the segment that feeds the loader.
    fn count_out(&self, report: &mut SegmentReport, records: u64) {
        if self.ledger.is_some() {
            report.records_out += records;
        }
    }
}

impl Reader {
    /// Whether a BATCH message of `stream` is read here rather than relayed.
    fn expands_batches_of(&self, stream: &str) -> bool {
        self.expand_all_batches || self.transforms.iter().any(|t| t.touches(stream))
    }

    /// Reads the files of a BATCH message and puts its records through the transforms as if the
    /// producer had sent them as RECORD lines; what comes out replaces the BATCH line.
    fn expand_batch(
        &mut self,
        bytes: &[u8],
        line: &[u8],
        report: &mut SegmentReport,
        state: &mut LineState,
    ) -> Result<Action, Error> {
        let n = report.lines;
        let batch = match Message::parse_scanned(bytes, MessageKind::Batch) {
            Ok(Message::Batch(b)) => b,
            Ok(_) => unreachable!("a BATCH line parses as BATCH"),
            Err(e) => {
                self.bad_line(report, n, &format!("not a Singer message ({e})"), line)?;
                return Ok(Action::Skip);
            }
        };
        let at = |e: Error| e.detail(format!("at line {n} of {}", self.label));
        let batch_error = |e: crate::singer::batch::BatchError| {
            let hint = match &e {
                crate::singer::batch::BatchError::TooLarge { .. } => {
                    "make the tap's batches smaller (the Singer SDK's `batch_config.batch_size`)"
                }
                _ => {
                    "turn off the tap's `batch_config` to send records, or declare nothing in dsm that reads this stream"
                }
            };
            Error::failed(e.to_string()).hint(hint)
        };
        crate::singer::batch::check(&batch).map_err(|e| at(batch_error(e)))?;
        let LineState {
            produced,
            spare,
            transformed,
            ..
        } = state;
        transformed.clear();
        let stream = batch.stream.clone();
        let mut record_bytes = 0u64;
        let mut records = 0u64;
        let transforms = &mut self.transforms;
        let mut records_out = 0u64;
        let read = crate::singer::batch::for_each_record(&batch, MAX_BATCH_BYTES, |record| {
            let message = Message::Record(crate::singer::message::RecordMessage {
                stream: stream.clone(),
                record,
                version: None,
                time_extracted: None,
                extra: serde_json::Map::new(),
            });
            let before = transformed.len();
            if transforms.is_empty() {
                message.write_line(transformed);
                transformed.push(b'\n');
                records_out += 1;
            } else {
                apply_chain(transforms, message, produced, spare)?;
                records_out += records_in(produced);
                for m in produced.drain(..) {
                    m.write_line(transformed);
                    transformed.push(b'\n');
                }
            }
            record_bytes += (transformed.len() - before) as u64;
            records += 1;
            Ok::<(), crate::transform::TransformError>(())
        })
        .map_err(|e| at(batch_error(e)))?;
        read.map_err(|e| at(Error::from(e)))?;
        self.count_out(report, records_out);
        if self.index == 0 {
            // The records count as the stream's, as if the tap had sent them one by one.
            report.count(&stream, 0, false);
            report.current.1.records += records;
            report.current.1.bytes += record_bytes;
        }
        tracing::debug!(plugin = %self.label, stream = %stream, records, "read a BATCH message's files and sent its records");
        Ok(Action::Transformed)
    }
}

/// A line that goes on as it came: sanitized (`NaN` → `null`) or without its `\r` if need be.
fn pass_on(sanitized: Option<Vec<u8>>, line: &[u8], raw: &[u8]) -> Action {
    match sanitized {
        Some(mut clean) => {
            clean.push(b'\n');
            Action::Replace(clean)
        }
        None if line.len() != raw.len() => {
            // Drop a trailing `\r`.
            let mut clean = line.to_vec();
            clean.push(b'\n');
            Action::Replace(clean)
        }
        None => Action::Pass,
    }
}

/// What the reader remembers between lines.
#[derive(Default)]
struct LineState {
    schemas: HashSet<String>,
    warned_types: HashSet<String>,
    last_checked: String,
    fatal: Option<Error>,
    /// What the transforms made of the current line, and their spare buffer.
    produced: Vec<Message>,
    spare: Vec<Message>,
    /// The bytes of [`Action::Transformed`].
    transformed: Vec<u8>,
    /// The record lines gathered for the last transform, all of stream `run_stream`.
    run: Vec<RunLine>,
    run_stream: String,
    /// Scratch: the ranges of `run`.
    run_ranges: Vec<std::ops::Range<usize>>,
    /// The fingerprint of the STATE line being handled, for the ledger.
    pending_state: Option<u64>,
}

/// Lines (messages) in transform output: one per newline.
fn lines_in(bytes: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', bytes).count() as u64
}

/// RECORD messages among transform output.
fn records_in(messages: &[Message]) -> u64 {
    messages
        .iter()
        .filter(|m| matches!(m, Message::Record(_)))
        .count() as u64
}

/// A line after the checks that need no transform.
enum Head<'a> {
    /// Nothing for the transforms to do.
    Done(Action),
    /// A RECORD line (this many bytes, without `\r`) for the run the last transform maps.
    Defer(usize),
    /// The transforms see it.
    Tail(Envelope<'a>, Option<Vec<u8>>),
}

/// A line of the run of record lines.
struct RunLine {
    /// The line's bytes in the block, without `\r` and newline.
    range: std::ops::Range<usize>,
    /// Where the next line starts.
    next: usize,
    /// The line's number in the producer's output.
    number: u64,
}

/// What becomes of one line.
enum Action {
    /// Passed on unchanged.
    Pass,
    /// Dropped (blank, or bad in lenient mode).
    Skip,
    /// Replaced by these bytes (newline included; may be empty or several lines).
    Replace(Vec<u8>),
    /// Replaced by the bytes in [`LineState::transformed`] (the same shape as `Replace`).
    Transformed,
}

/// Runs a message through each transform in order, leaving the results in `out`; `spare`
/// is scratch space. STATE never reaches them.
fn apply_chain(
    transforms: &mut [Box<dyn Transform>],
    message: Message,
    out: &mut Vec<Message>,
    spare: &mut Vec<Message>,
) -> Result<(), crate::transform::TransformError> {
    out.clear();
    out.push(message);
    for t in transforms.iter_mut() {
        spare.clear();
        for m in out.drain(..) {
            let touched =
                !matches!(m, Message::State(_)) && m.stream().is_some_and(|s| t.touches(s));
            if touched {
                t.apply(m, spare)?;
            } else {
                spare.push(m);
            }
        }
        std::mem::swap(out, spare);
    }
    Ok(())
}

/// Writes chunks to the next process's stdin; closes it when the reader is done.
pub(super) async fn write(
    index: usize,
    mut rx: mpsc::Receiver<Chunk>,
    sink: Sink,
    recycle: mpsc::Sender<Vec<u8>>,
    events: mpsc::Sender<Event>,
) {
    let mut stdin = match sink {
        Sink::Plain(stdin) => stdin,
        #[cfg(target_os = "linux")]
        Sink::Spliced(side) => return write_spliced(index, rx, side, recycle, events).await,
    };
    while let Some(chunk) = rx.recv().await {
        #[cfg_attr(not(target_os = "linux"), allow(irrefutable_let_patterns))]
        let Chunk::Bytes(mut chunk) = chunk else {
            // Only a reader with a shadow pipe sends these, and its writer has the shadow.
            debug_assert!(false, "a splice chunk reached a plain writer");
            continue;
        };
        if let Err(error) = stdin.write_all(&chunk).await {
            tracing::debug!(%error, "the next plugin stopped reading its input");
            let _ = events.send(Event::InputBroken(index)).await;
            return;
        }
        chunk.clear();
        let _ = recycle.try_send(chunk);
    }
    let _ = stdin.flush().await;
    // Announce before closing: the consumer's exit (which follows its EOF) must be seen after.
    let _ = events.send(Event::InputClosed(index)).await;
    drop(stdin);
}

/// [`write`] through the shadow pipe: spliced chunks move pages, byte chunks are written.
#[cfg(target_os = "linux")]
async fn write_spliced(
    index: usize,
    mut rx: mpsc::Receiver<Chunk>,
    mut side: SpliceSide,
    recycle: mpsc::Sender<Vec<u8>>,
    events: mpsc::Sender<Event>,
) {
    while let Some(chunk) = rx.recv().await {
        let done = match chunk {
            Chunk::Bytes(mut bytes) => {
                let done = side.write(&bytes).await;
                bytes.clear();
                let _ = recycle.try_send(bytes);
                done
            }
            Chunk::Splice(n) => side.forward(n).await,
            Chunk::Discard(n) => side.discard(n),
        };
        if let Err(error) = done {
            tracing::debug!(%error, "the next plugin stopped reading its input");
            let _ = events.send(Event::InputBroken(index)).await;
            return;
        }
    }
    // Announce before closing: the consumer's exit (which follows its EOF) must be seen after.
    let _ = events.send(Event::InputClosed(index)).await;
    drop(side);
}
